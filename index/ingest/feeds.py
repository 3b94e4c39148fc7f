"""Feeds: the new items of RSS and Atom feeds, fetched into the corpus (index/ingest/web.py fetches and saves).

Feeds are read with feedparser, asking with ETag / Last-Modified so an unchanged feed costs one 304. A
feed publisher chooses every item link, with nobody looking, so a poll is bounded:

* one HTTP client (``Fetcher``, under the outbound policy) for every feed and item of a poll;
* at most ``max_items`` item fetches per feed per poll; the rest come at the next polls (the feed is then
  fetched whole again, not answered by a 304, until none are left);
* relative item links are resolved against the feed's address;
* a failed item is remembered with its attempts and the time of its next try (``RETRY_AFTER`` seconds,
  doubling), and given up after ``RETRY_LIMIT`` attempts, or at once when trying again cannot help (a
  404, a refused address, a page that is not an article); it never stops the ETag being saved.

The state (per feed: ETag, Last-Modified, the links already added, the failures) is one JSON file, read
entry by entry: a hand-edited or damaged entry is dropped alone, with a warning; or, with a database, one
row per feed (index/pg/state.py), which any ``FeedStateStore`` can stand for (``index.state.feed_states``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin

from index.ingest.web import (
    FEED_TYPES,
    HTML_TYPES,
    AddResult,
    Fetcher,
    FetchError,
    FetchSettings,
    add_url,
    redact_url,
    shown_url,
)

log = logging.getLogger(__name__)

MAX_ITEMS = 50  # item fetches per feed per poll
RETRY_AFTER = 900.0  # seconds before a failed item's first retry; doubled for each later one
RETRY_LIMIT = 5  # attempts before an item is given up
MAX_SEEN = 5000  # links remembered per feed


@dataclass
class Retry:
    """A failed item: how often it was tried and when it may be tried again (seconds since the epoch)."""

    attempts: int
    next_try: float


@dataclass
class FeedState:
    """What Herald remembers of one feed between polls."""

    etag: str | None = None
    last_modified: str | None = None
    seen: list[str] = field(default_factory=list)
    checked_at: str | None = None
    failed: dict[str, Retry] = field(default_factory=dict)


def _optional_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} is not text")
    return value


def _state_from(raw: Any) -> FeedState:
    """One feed's state from its JSON, or ValueError saying what is wrong with it."""
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    seen = raw.get("seen", [])
    if not isinstance(seen, list):
        raise ValueError("seen is not a list")
    failed: dict[str, Retry] = {}
    for link, retry in (raw.get("failed") or {}).items() if isinstance(raw.get("failed"), dict) else ():
        if isinstance(retry, dict) and isinstance(retry.get("attempts"), int) and \
                isinstance(retry.get("next_try"), (int, float)):
            failed[str(link)] = Retry(retry["attempts"], float(retry["next_try"]))
    return FeedState(etag=_optional_str(raw, "etag"), last_modified=_optional_str(raw, "last_modified"),
                     seen=[s for s in seen if isinstance(s, str)], checked_at=_optional_str(raw, "checked_at"),
                     failed=failed)


class FeedStateStore(Protocol):
    """Where the feeds' states are kept between polls: ``get`` one feed's (created empty if new; changed in
    place by the poll), ``save`` what changed."""

    def get(self, url: str) -> FeedState: ...

    def save(self) -> None: ...


class FeedStates:
    """The feeds' states in one JSON file, read entry by entry and written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.states: dict[str, FeedState] = {}
        if not self.path.exists():
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not an object of feeds")
        except (OSError, ValueError) as exc:
            log.warning("feed state %s is unreadable (%s); starting afresh", self.path, exc)
            return
        for url, entry in raw.items():
            try:
                self.states[url] = _state_from(entry)
            except ValueError as exc:
                log.warning("feed state %s: dropped the entry for %s (%s)", self.path, shown_url(url), exc)

    def get(self, url: str) -> FeedState:
        return self.states.setdefault(url, FeedState())

    def save(self) -> None:
        """Written beside itself and renamed over, so a crash leaves the old file or the new one."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
            tmp.write_text(json.dumps({u: asdict(s) for u, s in self.states.items()}, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("could not save the feed state %s: %s", self.path, exc.strerror or exc)


@dataclass
class FeedResult:
    """One poll of one feed: ``unchanged`` (304), the items fetched (new ones and retries), the links given
    up this poll, or the feed's own failure."""

    feed: str
    unchanged: bool = False
    items: list[AddResult] = field(default_factory=list)
    error: FetchError | None = None
    given_up: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        """Articles this poll added or updated (the index needs updating when any)."""
        return sum(1 for item in self.items if item.changed)

    @property
    def failed(self) -> int:
        """Items that failed this poll, plus one when the feed itself failed."""
        return sum(1 for item in self.items if item.failed) + int(self.error is not None)


def feed_links(body: bytes, url: str) -> list[str]:
    """Item links of an RSS or Atom feed, absolute (resolved against ``url``), oldest first."""
    import feedparser

    parsed = feedparser.parse(body)
    if parsed.bozo and not parsed.entries:
        raise FetchError(url, "not_feed", detail=type(parsed.get("bozo_exception")).__name__)
    links = []
    for entry in parsed.entries:
        link = entry.get("link")
        if isinstance(link, str) and link.strip():
            try:
                links.append(urljoin(url, link.strip()))
            except ValueError:
                links.append(link.strip())  # add_url says what is wrong with it
    return list(reversed(list(dict.fromkeys(links))))


def _worth_retrying(error: FetchError | None) -> bool:
    """Failures that may pass: the network, a timeout, a server error or rate limit."""
    if error is None:
        return True
    if error.problem in ("unreachable", "timeout"):
        return True
    return error.problem == "http_status" and (error.status >= 500 or error.status == 429)


def _record(state: FeedState, key: str, item: AddResult, clock: float, result: FeedResult) -> None:
    """Remember what happened to one item: added (seen), failed (a retry later) or given up (seen)."""
    if not item.failed:
        state.failed.pop(key, None)
        state.seen.append(key)
        return
    retry = state.failed.get(key) or Retry(0, clock)
    retry.attempts += 1
    if retry.attempts >= RETRY_LIMIT or not _worth_retrying(item.error):
        state.failed.pop(key, None)
        state.seen.append(key)
        result.given_up.append(key)
    else:
        retry.next_try = clock + RETRY_AFTER * 2 ** (retry.attempts - 1)
        state.failed[key] = retry


def poll_feed(corpus_dir: Path, feed_url: str, states: FeedStateStore, settings: FetchSettings = FetchSettings(), *,
              fetcher: Fetcher | None = None, max_items: int = MAX_ITEMS, now: Callable[[], float] = time.time,
              adder: Callable[..., AddResult] = add_url, stop: threading.Event | None = None) -> FeedResult:
    """Add the feed's items not added before (at most ``max_items``) and retry the failures that are due."""
    if fetcher is None:
        with Fetcher(settings) as own:
            return poll_feed(corpus_dir, feed_url, states, settings, fetcher=own, max_items=max_items, now=now,
                             adder=adder, stop=stop)
    key = shown_url(feed_url, limit=2048)
    state, result = states.get(key), FeedResult(key)
    try:
        page = fetcher.get(feed_url, FEED_TYPES + HTML_TYPES, state.etag, state.last_modified)
        links = [] if page.status == 304 else feed_links(page.body, page.url or feed_url)
    except FetchError as exc:
        result.error = exc
        return result
    clock = now()
    state.checked_at = datetime.fromtimestamp(clock, UTC).isoformat(timespec="seconds")
    result.unchanged = page.status == 304
    seen = set(state.seen)
    fresh = [link for link in links if (item_key := redact_url(link)) not in seen and item_key not in state.failed]
    due = [link for link, retry in state.failed.items() if retry.next_try <= clock]
    todo = (due + fresh)[:max(0, max_items)]
    for link in todo:
        if stop is not None and stop.is_set():
            break
        item = adder(corpus_dir, link, settings, fetcher)
        result.items.append(item)
        _record(state, redact_url(link), item, clock, result)
    if not result.unchanged:  # left-over new items: the whole feed again next time, not a 304
        left = len(due) + len(fresh) > len(result.items)
        state.etag, state.last_modified = (None, None) if left else (page.etag, page.last_modified)
    state.seen = state.seen[-MAX_SEEN:]
    states.save()
    return result


def poll_feeds(corpus_dir: Path, feeds: Iterable[str], states: Path | str | FeedStateStore,
               settings: FetchSettings = FetchSettings(), max_items: int = MAX_ITEMS,
               stop: threading.Event | None = None) -> list[FeedResult]:
    """One poll of every feed, with one HTTP client; ``states``: the JSON file's path, or a store (the
    database's); ``stop`` (set when the application closes) ends it before the next feed."""
    if isinstance(states, (str, os.PathLike)):
        states = FeedStates(Path(states))
    results = []
    with Fetcher(settings) as fetcher:
        for url in feeds:
            if stop is not None and stop.is_set():
                break
            results.append(poll_feed(corpus_dir, url, states, settings, fetcher=fetcher, max_items=max_items,
                                     stop=stop))
    return results
