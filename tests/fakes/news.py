"""A fake news website on 127.0.0.1, for the tests that fetch articles and poll feeds (issue 11).

It serves the saved pages in ``tests/data/news/`` (real page furniture: navigation, cookie banners,
analytics scripts, share widgets, related links, comments) and two feeds, with the headers a real
site sends (ETag, Last-Modified, 304 on a matching conditional request), plus the failure cases a
fetcher must survive. ``{BASE}`` in a saved file is replaced by the server's base URL, so feed links
and canonical URLs point back at this server.

Routes:

* ``/news/<name>.html``: every ``*.html`` in ``tests/data/news/`` (``text/html; charset=utf-8``).
* ``/feed.xml`` (RSS 2.0, ``application/rss+xml``): Coastal Times, harbour-bridge-closure and
  wire-story-outlet-a. ``/atom.xml`` (``application/atom+xml``): Northern Ledger, ferry-strike and
  wire-story-outlet-b.
* ``/section``: section-front.html, a listing page (not an article).
* ``/slow.html``: waits ``site.slow_seconds`` (default 5), then the harbour bridge article.
* ``/image.png``: a 1x1 PNG (``image/png``).
* ``/huge.html``: a 7 MiB ``text/html`` body with its Content-Length; ``/huge-chunked.html``: the same
  body chunked, with no Content-Length (a size cap must count bytes, not trust the header).
* ``/redirect``: 302 to ``/news/harbour-bridge-closure.html``; ``/redirect-loop``: 302 to itself.
* ``/error.html``: 500. ``/missing.html`` and any other path: 404.
* ``/trickle.html``: a ``text/html`` page sent one byte every ``site.trickle_seconds`` (default 1), as
  a server does that keeps a fetcher busy; it stops when the client hangs up or the server stops.
* ``/bomb.html``: ``bomb_body()`` (under 2 KB) sent with ``Content-Encoding: gzip, gzip``: decoded
  whole it is ``BOMB_DECODED_BYTES`` (1 GiB) of zeros.

``site.redirect(path, location)`` makes ``path`` answer 302 to any ``location`` (another host, another
scheme). ``site.serve(..., headers={...})`` adds response headers (e.g. ``Content-Encoding``).

``site.serve(path, filename)`` (or ``body=``) swaps what a path serves, with a new ETag and a later
Last-Modified, e.g. ``site.serve("/news/ferry-strike.html", "ferry-strike-updated.html")``;
``site.remove(path)`` makes it a 404. ``site.hits[path]`` counts requests (0 for a path never asked
for), ``site.last_headers[path]`` holds the last request's headers (``.get("User-Agent")``), and
``site.requests`` lists ``(method, path)`` in order.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "news"
HTML = "text/html; charset=utf-8"
RSS = "application/rss+xml"
ATOM = "application/atom+xml"
HUGE_BYTES = 7 * 1024 * 1024  # over any sane cap for one article page (Herald's default is 5 MB)
# Last-Modified of everything at start; each swap moves a path's date later, so If-Modified-Since sees it.
START = int(datetime(2024, 3, 9, 12, 0, tzinfo=UTC).timestamp())
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


@dataclass(frozen=True)
class Resource:
    """One path's current content; the ETag is a digest of the body, so new content has a new tag."""

    body: bytes
    content_type: str
    last_modified: int  # seconds since the epoch
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'

    @property
    def last_modified_http(self) -> str:
        return format_datetime(datetime.fromtimestamp(self.last_modified, UTC), usegmt=True)


def _type_of(filename: str, text: str) -> str:
    if filename.endswith(".xml"):
        return ATOM if "<feed" in text[:1000] else RSS
    if filename.endswith(".png"):
        return "image/png"
    return HTML


@dataclass
class Site:
    """The running site: where it is, what it was asked, and what each path serves."""

    base: str
    slow_seconds: float = 5.0
    trickle_seconds: float = 1.0
    hits: Counter[str] = field(default_factory=Counter)
    last_headers: dict[str, Message] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _routes: dict[str, Resource] = field(default_factory=dict, repr=False)
    _redirects: dict[str, str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _closing: threading.Event = field(default_factory=threading.Event, repr=False)

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this server (``/news/ferry-strike.html`` → ``http://127.0.0.1:…/news/…``)."""
        return self.base + ("" if path.startswith("/") else "/") + path

    def serve(self, path: str, filename: str | None = None, *, body: str | bytes | None = None,
              content_type: str | None = None, headers: dict[str, str] | None = None) -> None:
        """Make ``path`` serve ``tests/data/news/<filename>`` (or ``body``) from now on, with a new ETag and
        a Last-Modified later than before, as a site does when an article is updated."""
        if (filename is None) == (body is None):
            raise ValueError("give a filename or a body")
        if filename is not None:
            body = (DATA_DIR / filename).read_bytes()
        assert body is not None
        raw = body.encode("utf-8") if isinstance(body, str) else body
        name = filename or path
        if content_type is None:
            content_type = _type_of(name, raw[:1000].decode("utf-8", "replace"))
        if not content_type.startswith("image/"):
            raw = raw.replace(b"{BASE}", self.base.encode())
        with self._lock:
            old = self._routes.get(path)
            modified = START if old is None else max(old.last_modified + 1, int(datetime.now(UTC).timestamp()))
            self._routes[path] = Resource(raw, content_type, modified, tuple((headers or {}).items()))

    def redirect(self, path: str, location: str) -> None:
        """``path`` answers 302 to ``location`` from now on (any URL: another host, port or scheme)."""
        with self._lock:
            self._redirects[path] = location

    def remove(self, path: str) -> None:
        """``path`` answers 404 from now on (an article taken down)."""
        with self._lock:
            self._routes.pop(path, None)

    def resource(self, path: str) -> Resource | None:
        """What ``path`` serves now (its ``.body``, ``.etag``, ``.last_modified_http``), None for a 404."""
        with self._lock:
            return self._routes.get(path)

    def _record(self, method: str, path: str, headers: Message) -> None:
        with self._lock:
            self.hits[path] += 1
            self.last_headers[path] = headers
            self.requests.append((method, path))

    def _load_defaults(self) -> None:
        for page in sorted(DATA_DIR.glob("*.html")):
            self.serve(f"/news/{page.name}", page.name)
        self.serve("/feed.xml", "feed.xml")
        self.serve("/atom.xml", "atom.xml")
        self.serve("/section", "section-front.html")
        self.serve("/slow.html", "harbour-bridge-closure.html")
        self.serve("/image.png", body=PNG_1X1, content_type="image/png")


def _not_modified(res: Resource, headers: Message) -> bool:
    """RFC 9110: If-None-Match decides when present; otherwise If-Modified-Since."""
    inm = headers.get("If-None-Match")
    if inm is not None:
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return "*" in tags or res.etag in tags
    ims = headers.get("If-Modified-Since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return res.last_modified <= since.timestamp()
    return False


def _huge_chunks() -> Iterator[bytes]:
    """HUGE_BYTES of valid-looking HTML, made on the fly (never stored)."""
    head = b"<!doctype html><html><head><title>An enormous page</title></head><body><article>\n"
    tail = b"</article></body></html>\n"
    para = (b"<p>This paragraph repeats until the page is far larger than any news article should be, "
            b"so that a fetcher's size limit is what stops it.</p>\n")
    block = para * (65536 // len(para))
    left = HUGE_BYTES - len(head) - len(tail)
    yield head
    while left > 0:
        piece = block[:left]
        left -= len(piece)
        yield piece
    yield tail


BOMB_DECODED_BYTES = 1 << 30


@functools.lru_cache(maxsize=1)
def bomb_body() -> bytes:
    """1 GiB of zeros gzipped twice: about 1.5 KB on the wire (made once per test run, in about 2 s)."""
    inner = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    once = b"".join(inner.compress(block) for _ in range(BOMB_DECODED_BYTES >> 20)) + inner.flush()
    return gzip.compress(once, 9)


class _NewsHandler(BaseHTTPRequestHandler):
    """One request to the fake site; ``site`` is set on the subclass ``_handler`` makes per server."""

    site: Site
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection does not hold a thread for ever

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._respond()

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond()

    def _respond(self) -> None:
        path = urlsplit(self.path).path
        self.site._record(self.command, path, self.headers)
        try:
            if path == "/slow.html" and self.site._closing.wait(self.site.slow_seconds):
                self.close_connection = True  # the server is stopping: hang up without an answer
                return
            if path in ("/huge.html", "/huge-chunked.html"):
                self._huge(chunked=path == "/huge-chunked.html")
            elif path == "/trickle.html":
                self._trickle()
            elif path == "/bomb.html":  # made at the first request, not at every start
                self._send(200, bomb_body(), HTML, {"Content-Encoding": "gzip, gzip"})
            elif (location := self.site._redirects.get(path)) is not None:
                self._redirect(location)
            elif path == "/redirect":
                self._redirect(self.site.url("/news/harbour-bridge-closure.html"))
            elif path == "/redirect-loop":
                self._redirect(self.site.url("/redirect-loop"))
            elif path == "/error.html":
                self._send(500, b"<html><body><h1>500 Internal Server Error</h1></body></html>", HTML)
            elif (res := self.site.resource(path)) is None:
                self._send(404, b"<html><head><title>Page not found</title></head><body><h1>Sorry, "
                                b"we couldn't find that page</h1><p><a href=\"/\">Home</a></p></body></html>", HTML)
            elif _not_modified(res, self.headers):
                self.send_response(304)
                self.send_header("ETag", res.etag)
                self.send_header("Last-Modified", res.last_modified_http)
                self.end_headers()
            else:
                self._send(200, res.body, res.content_type,
                           {"ETag": res.etag, "Last-Modified": res.last_modified_http, **dict(res.headers)})
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client gave up (a size cap, a timeout): nothing to do

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _trickle(self) -> None:
        body = (DATA_DIR / "harbour-bridge-closure.html").read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", HTML)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(len(body)):
            if self.site._closing.wait(self.site.trickle_seconds):
                break
            self.wfile.write(body[i:i + 1])
            self.wfile.flush()
        self.close_connection = True

    def _huge(self, chunked: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", HTML)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(HUGE_BYTES))
        self.end_headers()
        if self.command == "HEAD":
            return
        for piece in _huge_chunks():
            if chunked:
                piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            self.wfile.write(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to ``site`` (http.server makes one handler instance per request)."""
    return type("Handler", (_NewsHandler,), {"site": site})


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-answer is a normal test case, not a traceback on stderr."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@contextmanager
def fake_news_server(slow_seconds: float = 5.0) -> Iterator[Site]:
    """A running fake site on 127.0.0.1 (an ephemeral port); stopped, slow requests included, on exit."""
    site = Site(base="", slow_seconds=slow_seconds)
    server = _QuietServer(("127.0.0.1", 0), _handler(site))
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    site._load_defaults()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site._closing.set()
        server.shutdown()
        server.server_close()
