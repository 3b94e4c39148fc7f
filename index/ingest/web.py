"""News in: an article fetched by URL, saved into the corpus folder (feeds: index/ingest/feeds.py).

A fetched page goes through trafilatura, which keeps the article's text and drops navigation, ads,
share widgets, related links and comments, and reads the title, author, date and site name from the
page's metadata. The article is saved as markdown with front matter (title, url, date, outlet), so the
folder source indexes it like any other file and an operator can read or delete it. The file name comes
from the URL: adding the same URL again finds the same file (unchanged, or updated when its text
changed).

Every fetch (a page, a feed, each redirect hop) goes through one outbound policy, because anyone who can
get a URL into Herald (an /add, a feed item) chooses where it connects:

* http and https only; no user name or password in the URL (it would be stored and shown).
* The host is resolved once and every address checked: loopback, private, link-local, multicast,
  reserved, unspecified and shared addresses are refused (also inside IPv4-mapped, 6to4 and NAT64
  IPv6 addresses, and numeric forms such as ``127.1`` or ``2130706433``), unless ``allow_private`` lists
  the address or its network. The connection goes to the address that was checked (a custom httpcore
  network backend), so a second DNS answer cannot rebind the name; TLS still checks the host name.
* Redirects are followed here, one hop at a time, each hop checked the same way.
* The body is decoded here, not by httpx, in bounded steps, and the decoded bytes are counted against
  ``max_bytes`` as they stream (a 2 KB ``gzip, gzip`` body can inflate to gigabytes).
* ``timeout`` bounds each read; ``deadline`` bounds the whole fetch (every lookup, connect, read and
  write gets at most what is left), so a server sending a byte a second cannot hold a worker.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import math
import os
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse, urlsplit

from index.errors import HeraldError
from index.text import site_of

#: Larger files are not news articles (a 20 MB file took minutes to split, then hours to embed); the corpus
#: reader skips them (index/ingest/corpus.py) and ``add_url`` refuses to save one.
MAX_ARTICLE_BYTES = 2_000_000

log = logging.getLogger(__name__)

USER_AGENT = "HeraldBot/0.1 (a news question-answering bot; +https://github.com/herald-bot)"
HTML_TYPES = ("text/html", "application/xhtml+xml")
FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/xml", "text/xml", "application/rdf+xml")
_HTML_TYPES, _FEED_TYPES = HTML_TYPES, FEED_TYPES  # the names this module used before
MIN_ARTICLE_CHARS = 400  # less text than this, after extraction, is a listing or a stub, not an article
MIN_ARTICLE_SENTENCES = 4
MAX_URL_CHARS = 2048  # longer addresses are not articles' (sitemaps and most servers stop here too)
_REDIRECTS = (301, 302, 303, 307, 308)
_DECODE_STEP = 64 * 1024  # the most one decompression step may produce
_MAX_ENCODINGS = 2
#: A resolver answers (host, port) with the host's addresses as strings; tests pass a stub.
Resolver = Callable[[str, int], list[str]]


@functools.lru_cache(maxsize=32)
def allowed_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks of an ``allow_private`` value: addresses or CIDR networks, separated by commas."""
    nets = []
    for part in re.split(r"[,;\s]+", text.strip()):
        if part:
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"allow_private: {part!r} is not an address or a network such as "
                                 f"10.0.0.0/8") from None
    return tuple(nets)


@dataclass(frozen=True)
class FetchSettings:
    """How patient and how trusting a fetch is. ``allow_private``: addresses or networks (comma-separated)
    that may be fetched although they are private or internal; nothing else widens the policy."""

    timeout: float = 15.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    user_agent: str = USER_AGENT
    deadline: float = 30.0
    allow_private: str = ""

    def __post_init__(self) -> None:
        if not (self.timeout > 0 and self.max_bytes > 0 and self.max_redirects >= 0):
            raise ValueError("timeout and max_bytes must be positive, max_redirects not negative")
        if not (self.deadline > 0 and math.isfinite(self.deadline)):
            raise ValueError("deadline must be a positive number of seconds")
        allowed_networks(self.allow_private)


class FetchError(HeraldError):
    """A URL could not be added. ``problem``: ``bad_url`` (``detail``: ``scheme``, ``malformed``,
    ``too_long``, ``credentials`` or ``redirect``), ``refused`` (a private or internal address; ``detail``
    ``redirect`` when a redirect led there), ``unreachable``, ``timeout``, ``http_status`` (``status`` says
    which), ``not_html``, ``not_feed``, ``bad_encoding``, ``too_large`` or ``not_article``."""

    def __init__(self, url: str, problem: str, status: int = 0, detail: str = "") -> None:
        url = shown_url(url)
        self.url, self.problem, self.status, self.detail = url, problem, status, detail
        super().__init__(f"{url}: {problem}" + (f" {status}" if status else "") + (f" ({detail})" if detail else ""))


def redact_url(url: str) -> str:
    """``url`` without a user name or password (``http://user:pass@host/`` → ``http://host/``)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*:)?//[^/?#]*@", lambda m: (m.group(1) or "") + "//", str(url))


def shown_url(url: str, limit: int = 200) -> str:
    """``url`` as it may be stored, shown or logged: no credentials, no control characters, not too long."""
    text = "".join(c if c.isprintable() else "?" for c in redact_url(url))
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass
class Page:
    """A fetched body (``status`` 304: unchanged since the ETag / date given, no body)."""

    url: str
    status: int
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None


def check_url(url: str) -> str:
    """``url`` if Herald may ask for it (before any address is looked at), else FetchError ``bad_url``."""
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        raise FetchError(str(url), "bad_url", detail="too_long")
    if any(not c.isprintable() or c.isspace() for c in url):
        raise FetchError(url, "bad_url", detail="malformed")
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port
    except ValueError:
        raise FetchError(url, "bad_url", detail="malformed") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise FetchError(url, "bad_url", detail="scheme")
    if "@" in parts.netloc:
        raise FetchError(url, "bad_url", detail="credentials")
    import httpx

    try:
        httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise FetchError(url, "bad_url", detail="malformed") from None
    return url


# ------------------------------------------------------------------------------- the address policy


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` spells, in any form the C library would accept (``127.1``, ``0x7f000001``,
    ``2130706433``, ``0177.0.0.1``), or None for a name."""
    host = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if re.fullmatch(r"[0-9][0-9a-fA-FxX.]*", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64): each is checked too."""
    found = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    if ip.teredo:
        found.extend(ip.teredo)
    if ip in ipaddress.ip_network("64:ff9b::/96") or ip in ipaddress.ip_network("64:ff9b:1::/48"):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                                 or ip.is_reserved or ip.is_unspecified
                                 or (ip.version == 6 and ip.is_site_local))


def _carried_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped or NAT64 address only carries (it reaches that host and no other)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow: Iterable[Any] = ()) -> bool:
    """Whether Herald may connect to ``ip``: a public address, or one inside an ``allow`` network. A mapped
    or NAT64 address is judged by the IPv4 address it carries (an IPv6-only host reaches public sites so)."""
    carried = _carried_v4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if carried is not None:
        candidates = [carried]
    elif isinstance(ip, ipaddress.IPv6Address):
        candidates.extend(_embedded_v4(ip))
    nets = tuple(allow)
    if any(c in n for c in candidates for n in nets if c.version == n.version):
        return True
    return all(_public(c) for c in candidates)


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of ``host`` from the system's resolver (getaddrinfo), each once."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _Refused(Exception):
    """The host's address is not one Herald may connect to."""


class _Unresolved(Exception):
    """The host has no address."""


class _DeadlinePassed(Exception):
    """The fetch's total time is used up."""


class _Guard:
    """The policy of one Fetcher: the allowed networks, the resolver, and the running fetch's deadline."""

    def __init__(self, settings: FetchSettings, resolver: Resolver | None) -> None:
        self.allow = allowed_networks(settings.allow_private)
        self.resolver = resolver or system_resolver
        self.deadline = math.inf

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline - 0.05

    def cap(self, timeout: float | None) -> float | None:
        """``timeout`` cut to what is left of the deadline (and _DeadlinePassed when nothing is)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed()
        if math.isinf(left):
            return timeout
        return left if timeout is None else min(timeout, left)

    def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses to connect to for ``host``; _Refused if any answer is not allowed."""
        literal = _literal(host)
        answers = [literal] if literal is not None else self._lookup(host, port)
        if not answers:
            raise _Unresolved()
        if not all(address_allowed(ip, self.allow) for ip in answers):
            raise _Refused()
        # An IPv4-mapped IPv6 address is reached as the IPv4 address it is.
        return list(dict.fromkeys(str(getattr(ip, "ipv4_mapped", None) or ip) for ip in answers))

    def _lookup(self, host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """The resolver's answers, within the deadline (getaddrinfo cannot be given a timeout: it runs in a
        thread of its own that is abandoned when the deadline passes)."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["answers"] = self.resolver(host, port)
            except Exception as exc:  # noqa: BLE001 - handed to the caller below
                box["error"] = exc

        worker = threading.Thread(target=run, name="herald-resolve", daemon=True)
        worker.start()
        worker.join(self.cap(None))
        if worker.is_alive():
            raise _DeadlinePassed()
        if "error" in box:
            raise _Unresolved() from box["error"]
        try:
            return [ipaddress.ip_address(str(a).split("%")[0]) for a in box.get("answers") or []]
        except ValueError:
            raise _Unresolved() from None


def _guarded_transport(guard: _Guard) -> Any:
    """An httpx transport whose connections go only to addresses the guard checked, within its deadline."""
    import httpcore
    import httpx

    class DeadlineStream(httpcore.NetworkStream):
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._inner.read(max_bytes, guard.cap(timeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._inner.write(buffer, guard.cap(timeout))

        def close(self) -> None:
            self._inner.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                      timeout: float | None = None) -> Any:
            return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, guard.cap(timeout)))

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class GuardedBackend(httpcore.SyncBackend):
        def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                        local_address: str | None = None, socket_options: Any = None) -> Any:
            error: Exception | None = None
            for address in guard.addresses(host, port):  # the checked addresses, never the name again
                try:
                    return DeadlineStream(super().connect_tcp(address, port, guard.cap(timeout), local_address,
                                                              socket_options))
                except httpcore.ConnectError as exc:
                    error = exc
            raise error or _Unresolved()

    transport = httpx.HTTPTransport(trust_env=False)
    # httpx has no parameter for a network backend: its pool is replaced by one with ours, same defaults.
    transport._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(trust_env=False),
                                              network_backend=GuardedBackend(), max_connections=10,
                                              keepalive_expiry=5.0)
    return transport


# ------------------------------------------------------------------------------------------ fetching


def _decoders(header: str, url: str) -> list[Any]:
    """One zlib decompressor per content coding, the last applied first; others are refused."""
    names = [n.strip().lower() for n in header.split(",") if n.strip() and n.strip().lower() != "identity"]
    if len(names) > _MAX_ENCODINGS:
        raise FetchError(url, "bad_encoding", detail=header.strip()[:60])
    out = []
    for name in reversed(names):
        if name in ("gzip", "x-gzip"):
            out.append(zlib.decompressobj(16 + zlib.MAX_WBITS))
        elif name == "deflate":
            out.append(zlib.decompressobj(32 + zlib.MAX_WBITS))  # zlib-wrapped (or gzip), as servers send it
        else:
            raise FetchError(url, "bad_encoding", detail=name[:60])
    return out


def _inflate(decoder: Any, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Decompressed ``pieces`` at most _DECODE_STEP bytes at a time (one small piece may inflate to GBs)."""
    for data in pieces:
        while True:
            out = decoder.decompress(data, _DECODE_STEP)
            if out:
                yield out
            data = decoder.unconsumed_tail
            if decoder.eof:
                return
            if not data and len(out) < _DECODE_STEP:
                break


class Fetcher:
    """An HTTP client under the outbound policy. Reuse one for many fetches (a poll of feeds), from one thread
    at a time (the running fetch's deadline is its state), and close it."""

    def __init__(self, settings: FetchSettings = FetchSettings(), resolver: Resolver | None = None) -> None:
        import httpx

        self.settings = settings
        self._guard = _Guard(settings, resolver)
        self._hops = 0
        self._client = httpx.Client(transport=_guarded_transport(self._guard), follow_redirects=False,
                                    timeout=settings.timeout, trust_env=False,
                                    headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"})

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def get(self, url: str, kinds: tuple[str, ...] = HTML_TYPES, etag: str | None = None,
            last_modified: str | None = None) -> Page:
        """GET ``url`` under the policy, refusing other content types and bodies over ``max_bytes``."""
        import httpx

        check_url(url)
        headers = {"Accept": ", ".join(kinds) + ";q=1.0, */*;q=0.1"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        s = self.settings
        self._guard.deadline = time.monotonic() + s.deadline
        try:
            return self._follow(url, kinds, headers)
        except FetchError:
            raise
        except _Refused:
            raise FetchError(url, "refused", detail="redirect" if self._hops else "") from None
        except _Unresolved:
            raise FetchError(url, "unreachable", detail="no such host") from None
        except (_DeadlinePassed, httpx.TimeoutException) as exc:
            late = isinstance(exc, _DeadlinePassed) or self._guard.expired()
            raise FetchError(url, "timeout", detail=f"not done within {s.deadline:g} s" if late
                             else f"no answer in {s.timeout:g} s") from None
        except httpx.InvalidURL:  # the address was checked above: httpx read a redirect's Location
            raise FetchError(url, "bad_url", detail="redirect") from None
        except zlib.error:
            raise FetchError(url, "bad_encoding", detail="corrupt compressed data") from None
        except (httpx.HTTPError, OSError) as exc:
            what = "could not connect" if isinstance(exc, httpx.ConnectError) else "the connection failed"
            raise FetchError(url, "unreachable", detail=what) from None
        finally:
            self._guard.deadline = math.inf

    def _follow(self, url: str, kinds: tuple[str, ...], headers: dict[str, str]) -> Page:
        """Each hop checked like the first: a redirect elsewhere is a new URL under the same policy."""
        current = url
        for hop in range(self.settings.max_redirects + 1):
            self._hops = hop
            with self._client.stream("GET", current, headers=headers) as r:
                location = r.headers.get("location")
                if r.status_code in _REDIRECTS and location:
                    try:
                        current = check_url(urljoin(current, location.strip()))
                    except (FetchError, ValueError):
                        raise FetchError(url, "bad_url", detail="redirect") from None
                    continue
                return self._read(url, r, kinds)
            # a redirect to a refused address raises _Refused on the next hop: reported for ``url``
        raise FetchError(url, "http_status", detail="too many redirects")

    def _read(self, url: str, r: Any, kinds: tuple[str, ...]) -> Page:
        final = str(r.url)
        if r.status_code == 304:
            return Page(final, 304, etag=r.headers.get("etag"), last_modified=r.headers.get("last-modified"))
        if r.status_code >= 400:
            raise FetchError(url, "http_status", r.status_code)
        ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and ctype not in kinds:
            raise FetchError(url, "not_html" if kinds == HTML_TYPES else "not_feed", detail=ctype[:60])
        limit = self.settings.max_bytes
        declared = r.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(url, "too_large", detail=f"{int(declared):,} bytes")
        stream: Iterable[bytes] = r.iter_raw()
        for decoder in _decoders(r.headers.get("content-encoding", ""), url):
            stream = _inflate(decoder, stream)
        body = bytearray()
        for chunk in stream:  # counted after decoding, as it arrives
            body += chunk
            if len(body) > limit:
                raise FetchError(url, "too_large", detail=f"over {limit:,} bytes")
        return Page(final, r.status_code, bytes(body), ctype, r.headers.get("etag"), r.headers.get("last-modified"))


def fetch(url: str, settings: FetchSettings = FetchSettings(), kinds: tuple[str, ...] = HTML_TYPES,
          etag: str | None = None, last_modified: str | None = None, *, resolver: Resolver | None = None) -> Page:
    """One GET under the outbound policy (a Fetcher used once)."""
    with Fetcher(settings, resolver) as fetcher:
        return fetcher.get(url, kinds, etag, last_modified)


@dataclass
class Article:
    """What the extractor found on a page."""

    url: str
    title: str
    text: str
    date: str | None = None
    outlet: str | None = None
    author: str | None = None




_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*(?=\s|$)")


def count_sentences(text: str) -> int:
    """Sentence ends in ``text``, at the end of a line too (wire copy has one sentence a paragraph)."""
    return len(_SENTENCE_END.findall(text))


def extract(html: bytes | str, url: str) -> Article:
    """The article on a page (trafilatura), or FetchError ``not_article`` for a listing, a stub, a form."""
    import trafilatura

    found: Any = trafilatura.bare_extraction(html, url=url, with_metadata=True, include_comments=False,
                                        include_tables=False, include_images=False, include_links=False,
                                        favor_recall=True, favor_precision=False)
    doc = found.as_dict() if hasattr(found, "as_dict") else (found or {})
    text = (doc or {}).get("text") or ""
    if len(text) < MIN_ARTICLE_CHARS or count_sentences(text) < MIN_ARTICLE_SENTENCES:
        raise FetchError(url, "not_article", detail=f"{len(text)} characters of article text")
    # trafilatura gives one paragraph a line; the corpus reads paragraphs separated by blank lines.
    paragraphs = [p.strip() for p in text.splitlines() if p.strip()]
    return Article(url=url, title=(doc.get("title") or "").strip() or site_of(url),
                   text="\n\n".join(paragraphs), date=doc.get("date") or None,
                   outlet=(doc.get("sitename") or "").strip() or site_of(url),
                   author=(doc.get("author") or "").strip() or None)


def article_path(corpus_dir: Path, url: str) -> Path:
    """Where the article of ``url`` is saved: ``web/<host>/<slug>-<hash>.md`` (stable for a URL)."""
    parts = urlparse(url)
    host = re.sub(r"[^a-z0-9.-]+", "-", (parts.hostname or "site").lower()).strip("-.") or "site"
    stem = Path(parts.path).stem or "index"
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:60] or "article"
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]
    return Path(corpus_dir) / "web" / host / f"{slug}-{digest}.md"


def _front_value(value: str) -> str:
    return " ".join(str(value).split()).replace("---", "—")


def article_markdown(art: Article) -> str:
    meta = {"title": art.title, "url": art.url, "date": art.date, "outlet": art.outlet, "author": art.author}
    front = [f"{k}: {_front_value(v)}" for k, v in meta.items() if v]
    lines = ["---", *front, "---", "", f"# {_front_value(art.title)}", "", art.text.strip(), ""]
    return "\n".join(lines)


@dataclass
class AddResult:
    """What happened to one URL: ``added``, ``updated``, ``unchanged`` or ``failed`` (with ``error``)."""

    url: str
    status: str
    path: Path | None = None
    title: str = ""
    outlet: str = ""
    date: str | None = None
    error: FetchError | None = None

    @property
    def changed(self) -> bool:
        """The article is new or its text changed: the index needs updating."""
        return self.status in ("added", "updated")

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def save_article(corpus_dir: Path, art: Article) -> AddResult:
    """Write the article's markdown (atomically) unless the same text is already there. An article larger
    than the index reads (``MAX_ARTICLE_BYTES``) is FetchError ``too_large``: saving it
    would say "added" for a file the index then skips."""
    path = article_path(corpus_dir, art.url)
    text = article_markdown(art)
    if len(text.encode("utf-8")) > MAX_ARTICLE_BYTES:
        raise FetchError(art.url, "too_large", detail=f"article over {MAX_ARTICLE_BYTES:,} bytes")
    status = "added"
    if path.exists():
        if path.read_text(encoding="utf-8", errors="replace") == text:
            return AddResult(art.url, "unchanged", path, art.title, art.outlet or "", art.date)
        status = "updated"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")  # one per saving thread
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return AddResult(art.url, status, path, art.title, art.outlet or "", art.date)


def add_url(corpus_dir: Path, url: str, settings: FetchSettings = FetchSettings(),
            fetcher: Fetcher | None = None) -> AddResult:
    """Fetch, extract and save one article (with ``fetcher``, or a client of its own); every failure is an
    AddResult with the FetchError, its URL without credentials."""
    try:
        page = fetch(url, settings) if fetcher is None else fetcher.get(url)
        return save_article(corpus_dir, extract(page.body, page.url if page.url else url))
    except FetchError as exc:
        return AddResult(shown_url(url), "failed", error=exc)
