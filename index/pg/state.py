"""Feed state and feedback votes in the database (tables ``feed_state`` and ``feedback``), so several bot
processes and ``herald watch`` on other machines share them.

``PostgresFeedStates`` is ``FeedStates`` (index/ingest/feeds.py) with one row per feed of a collection.
Processes poll the same collection at once, so a save writes only the feeds this object changed since it
loaded them, under a per-collection advisory lock, merged with what another process saved meanwhile: the
links either added stay seen (no article is fetched twice for it), and the later poll's ETag is kept.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from index.errors import DatabaseError
from index.ingest.feeds import MAX_SEEN, FeedState, _state_from
from index.ingest.web import shown_url
from index.pg.db import Database, shared_database
from index.pg.schema import _first_line, connect, schema_version

log = logging.getLogger(__name__)

_FEEDS = 0x48454644  # "HEFD": a save takes the advisory lock (this, hashtext(collection))
_EMPTY = asdict(FeedState())
_DIMS: dict[str, int] = {}  # url -> the vector width its schema was migrated for


def state_database(url: str, model: str) -> Database:
    """This process's pool for ``url``, the one its engine uses (keyed by the vector width the database
    was migrated for, so no second pool is opened). A database never migrated is migrated first, for
    ``model``'s vectors (loading the model once: the index it is about to get needs it anyway)."""
    dim = _DIMS.get(url) or _stored_dim(url)
    if dim is None:  # e.g. `herald add --feed` before the first build
        from index.embed.models import get_embedder

        dim = get_embedder(model).dim
    db = shared_database(url, dim)
    _DIMS[url] = dim
    return db


def _stored_dim(url: str) -> int | None:
    conn = connect(url)
    try:
        if schema_version(conn) == 0:
            return None
        row = conn.execute("SELECT value FROM herald_meta WHERE key = 'dim'").fetchone()
        return int(row[0]) if row else None
    finally:
        conn.close()


class PostgresFeedStates:
    """One collection's feed states, read at once; ``save`` writes back the feeds changed since."""

    def __init__(self, db: Database, collection: str) -> None:
        self.db, self.collection = db, collection
        self.states: dict[str, FeedState] = {}
        self._saved: dict[str, dict[str, Any]] = {}  # each feed as last read or written (what "changed" means)
        with db.connection() as conn:
            rows = conn.execute("SELECT feed, state FROM feed_state WHERE collection = %s", (collection,)).fetchall()
        for url, raw in rows:
            try:
                self.states[url] = _state_from(raw)
            except ValueError as exc:
                log.warning("feed state of %s in the database: dropped the entry for %s (%s)", collection,
                            shown_url(url), exc)
                continue
            self._saved[url] = asdict(self.states[url])

    def get(self, url: str) -> FeedState:
        return self.states.setdefault(url, FeedState())

    def save(self) -> None:
        """One transaction; a database that fails is a warning, as an unwritable state file is (the next
        poll fetches the same items again and finds them unchanged)."""
        import psycopg

        changed = {u: s for u, s in self.states.items() if asdict(s) != self._saved.get(u, _EMPTY)}
        if not changed:
            return
        try:
            self._write(changed)
        except (DatabaseError, psycopg.Error) as exc:
            log.warning("could not save the feed state of %s in the database: %s", self.collection,
                        exc if isinstance(exc, DatabaseError) else _first_line(exc))

    def _write(self, changed: dict[str, FeedState]) -> None:
        from psycopg.types.json import Jsonb

        with self.db.connection() as conn:  # committed at the end of the block: the lock is held until then
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_FEEDS, self.collection))
            rows = conn.execute("SELECT feed, state FROM feed_state WHERE collection = %s AND feed = ANY(%s)",
                                (self.collection, list(changed))).fetchall()
            theirs = dict(rows)
            merged = {u: _merge(s, _parsed(theirs.get(u)), self._saved.get(u, _EMPTY)) for u, s in changed.items()}
            for url, state in merged.items():
                conn.execute("INSERT INTO feed_state (collection, feed, state) VALUES (%s, %s, %s) "
                             "ON CONFLICT (collection, feed) DO UPDATE SET state = EXCLUDED.state",
                             (self.collection, url, Jsonb(asdict(state))))
        for url, state in merged.items():
            current = self.states[url]
            current.__dict__.update(state.__dict__)  # in place: a poll may still hold the object
            self._saved[url] = asdict(current)


def _parsed(raw: Any) -> FeedState | None:
    try:
        return None if raw is None else _state_from(raw)
    except ValueError:
        return None


def _merge(ours: FeedState, theirs: FeedState | None, base: dict[str, Any]) -> FeedState:
    """Ours, plus what another process saved since we read ``base``: the links it added stay seen, the
    failures it met stay to retry (unless either added them), and the later poll's ETag wins."""
    if theirs is None:
        return ours
    known = set(base["seen"]) | set(ours.seen)
    seen = (ours.seen + [link for link in theirs.seen if link not in known])[-MAX_SEEN:]
    done = set(seen)
    failed = {k: r for k, r in ours.failed.items() if k not in done}
    for link, retry in theirs.failed.items():
        if link not in done and link not in failed and link not in base["failed"]:
            failed[link] = retry
    later = theirs if (theirs.checked_at or "") > (ours.checked_at or "") else ours
    return FeedState(etag=later.etag, last_modified=later.last_modified, seen=seen, checked_at=later.checked_at,
                     failed=failed)


class PostgresVotes:
    """Feedback votes as rows of ``feedback`` (the vote line as its ``record``; ``at`` set by the server)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, line: dict[str, Any]) -> None:
        from psycopg.types.json import Jsonb

        with self.db.connection() as conn:
            conn.execute("INSERT INTO feedback (record) VALUES (%s)", (Jsonb(line),))
