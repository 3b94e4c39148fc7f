"""News in: an article fetched by URL, or the new items of a feed, saved into the corpus folder.

A fetched page goes through trafilatura, which keeps the article's text and drops navigation, ads,
share widgets, related links and comments, and reads the title, author, date and site name from the
page's metadata. The article is saved as markdown with front matter (title, url, date, outlet), so the
folder source indexes it like any other file and an operator can read or delete it. The file name comes
from the URL: adding the same URL again finds the same file (unchanged, or updated when its text
changed).

Fetching is httpx with a timeout, a size cap, a content-type check, a bounded number of redirects and a
user agent naming Herald. Feeds are read with feedparser, asking with ETag / Last-Modified so an
unchanged feed costs one 304; the links already added are remembered per feed in a small JSON state file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from index.errors import HeraldError

log = logging.getLogger(__name__)

USER_AGENT = "HeraldBot/0.1 (a news question-answering bot; +https://github.com/herald-bot)"
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/xml", "text/xml", "application/rdf+xml")
MIN_ARTICLE_CHARS = 400  # less text than this, after extraction, is a listing or a stub, not an article


@dataclass(frozen=True)
class FetchSettings:
    """How patient and how trusting a fetch is."""

    timeout: float = 15.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    user_agent: str = USER_AGENT

    def __post_init__(self) -> None:
        if not (self.timeout > 0 and self.max_bytes > 0 and self.max_redirects >= 0):
            raise ValueError("timeout and max_bytes must be positive, max_redirects not negative")


class FetchError(HeraldError):
    """A URL could not be added. ``problem``: ``bad_url``, ``unreachable``, ``timeout``, ``http_status``
    (``status`` says which), ``not_html``, ``not_feed``, ``too_large`` or ``not_article``."""

    def __init__(self, url: str, problem: str, status: int = 0, detail: str = "") -> None:
        self.url, self.problem, self.status, self.detail = url, problem, status, detail
        super().__init__(f"{url}: {problem}" + (f" {status}" if status else "") + (f" ({detail})" if detail else ""))


@dataclass
class Page:
    """A fetched body (``status`` 304: unchanged since the ETag / date given, no body)."""

    url: str
    status: int
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None


def _check_url(url: str) -> None:
    parts = urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(url, "bad_url", detail="give an http:// or https:// address")


def fetch(url: str, settings: FetchSettings = FetchSettings(), kinds: tuple[str, ...] = _HTML_TYPES,
          etag: str | None = None, last_modified: str | None = None) -> Page:
    """GET ``url`` (following at most ``max_redirects``), refusing other content types and bodies over
    ``max_bytes`` (read as it streams, so a huge body is never held whole)."""
    import httpx

    _check_url(url)
    headers = {"User-Agent": settings.user_agent, "Accept": ", ".join(kinds) + ";q=1.0, */*;q=0.1"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        with httpx.Client(follow_redirects=True, max_redirects=settings.max_redirects, timeout=settings.timeout,
                          headers=headers, trust_env=False) as client:
            with client.stream("GET", url) as r:
                final = str(r.url)
                if r.status_code == 304:
                    return Page(final, 304, etag=etag, last_modified=last_modified)
                if r.status_code >= 400:
                    raise FetchError(url, "http_status", r.status_code)
                ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype and ctype not in kinds:
                    raise FetchError(url, "not_html" if kinds == _HTML_TYPES else "not_feed", detail=ctype)
                declared = int(r.headers.get("content-length") or 0)
                if declared > settings.max_bytes:
                    raise FetchError(url, "too_large", detail=f"{declared:,} bytes")
                body = bytearray()
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > settings.max_bytes:
                        raise FetchError(url, "too_large", detail=f"over {settings.max_bytes:,} bytes")
                return Page(final, r.status_code, bytes(body), ctype, r.headers.get("etag"),
                            r.headers.get("last-modified"))
    except FetchError:
        raise
    except httpx.TimeoutException as exc:
        raise FetchError(url, "timeout", detail=f"no answer in {settings.timeout:g} s") from exc
    except httpx.TooManyRedirects as exc:
        raise FetchError(url, "http_status", detail="too many redirects") from exc
    except (httpx.HTTPError, OSError) as exc:
        raise FetchError(url, "unreachable", detail=type(exc).__name__) from exc


@dataclass
class Article:
    """What the extractor found on a page."""

    url: str
    title: str
    text: str
    date: str | None = None
    outlet: str | None = None
    author: str | None = None


def outlet_from_url(url: str) -> str:
    host = (urlparse(url).hostname or "").removeprefix("www.")
    return host


def extract(html: bytes | str, url: str) -> Article:
    """The article on a page (trafilatura), or FetchError ``not_article`` for a listing, a stub, a form."""
    import trafilatura

    found = trafilatura.bare_extraction(html, url=url, with_metadata=True, include_comments=False,
                                        include_tables=False, include_images=False, include_links=False,
                                        favor_recall=True, favor_precision=False)
    doc = found.as_dict() if hasattr(found, "as_dict") else (found or {})
    text = (doc or {}).get("text") or ""
    if len(text) < MIN_ARTICLE_CHARS or text.count(". ") < 3:
        raise FetchError(url, "not_article", detail=f"{len(text)} characters of article text")
    # trafilatura gives one paragraph a line; the corpus reads paragraphs separated by blank lines.
    paragraphs = [p.strip() for p in text.splitlines() if p.strip()]
    return Article(url=url, title=(doc.get("title") or "").strip() or outlet_from_url(url), text="\n\n".join(paragraphs),
                   date=doc.get("date") or None, outlet=(doc.get("sitename") or "").strip() or outlet_from_url(url),
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
    lines = ["---"] + [f"{k}: {_front_value(v)}" for k, v in meta.items() if v] + ["---", "", f"# {_front_value(art.title)}",
                                                                                   "", art.text.strip(), ""]
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


def save_article(corpus_dir: Path, art: Article) -> AddResult:
    """Write the article's markdown (atomically) unless the same text is already there."""
    path = article_path(corpus_dir, art.url)
    text = article_markdown(art)
    status = "added"
    if path.exists():
        if path.read_text(encoding="utf-8", errors="replace") == text:
            return AddResult(art.url, "unchanged", path, art.title, art.outlet or "", art.date)
        status = "updated"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return AddResult(art.url, status, path, art.title, art.outlet or "", art.date)


def add_url(corpus_dir: Path, url: str, settings: FetchSettings = FetchSettings()) -> AddResult:
    """Fetch, extract and save one article; every failure is an AddResult with the FetchError."""
    try:
        page = fetch(url, settings)
        return save_article(corpus_dir, extract(page.body, page.url if page.url else url))
    except FetchError as exc:
        return AddResult(url, "failed", error=exc)


# -------------------------------------------------------------------------------------------- feeds


@dataclass
class FeedState:
    """What Herald remembers of one feed between polls."""

    etag: str | None = None
    last_modified: str | None = None
    seen: list[str] = field(default_factory=list)
    checked_at: str | None = None


class FeedStates:
    """The feeds' states in one JSON file, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.states: dict[str, FeedState] = {}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self.states = {url: FeedState(**s) for url, s in raw.items()}
            except (ValueError, TypeError) as exc:
                log.warning("feed state %s is unreadable (%s); starting afresh", self.path, type(exc).__name__)

    def get(self, url: str) -> FeedState:
        return self.states.setdefault(url, FeedState())

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({u: asdict(s) for u, s in self.states.items()}, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)


@dataclass
class FeedResult:
    """One poll of one feed: ``unchanged`` (304), the items added, or the feed's own failure."""

    feed: str
    unchanged: bool = False
    items: list[AddResult] = field(default_factory=list)
    error: FetchError | None = None


def feed_links(body: bytes, url: str) -> list[str]:
    """Item links of an RSS or Atom feed, oldest first (so the corpus grows in publication order)."""
    import feedparser

    parsed = feedparser.parse(body)
    if parsed.bozo and not parsed.entries:
        raise FetchError(url, "not_feed", detail=type(parsed.get("bozo_exception")).__name__)
    links = [e.get("link") for e in parsed.entries if e.get("link")]
    return list(reversed(links))


def poll_feed(corpus_dir: Path, feed_url: str, states: FeedStates, settings: FetchSettings = FetchSettings(),
              adder: Callable[[Path, str, FetchSettings], AddResult] = add_url) -> FeedResult:
    """Add every item of the feed not added before; an unchanged feed (304) costs one request."""
    state = states.get(feed_url)
    result = FeedResult(feed_url)
    try:
        page = fetch(feed_url, settings, _FEED_TYPES + _HTML_TYPES, state.etag, state.last_modified)
    except FetchError as exc:
        result.error = exc
        return result
    state.checked_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if page.status == 304:
        result.unchanged = True
        states.save()
        return result
    try:
        links = feed_links(page.body, feed_url)
    except FetchError as exc:
        result.error = exc
        return result
    seen = set(state.seen)
    for link in links:
        if link in seen:
            continue
        item = adder(corpus_dir, link, settings)
        result.items.append(item)
        if item.status != "failed":  # a failed item is tried again at the next poll
            state.seen.append(link)
            seen.add(link)
    if not any(i.status == "failed" for i in result.items):  # else fetch the whole feed again next time
        state.etag, state.last_modified = page.etag, page.last_modified
    state.seen = state.seen[-5000:]
    states.save()
    return result


def poll_feeds(corpus_dir: Path, feeds: Iterable[str], state_path: Path,
               settings: FetchSettings = FetchSettings()) -> list[FeedResult]:
    states = FeedStates(state_path)
    return [poll_feed(corpus_dir, url, states, settings) for url in feeds]
