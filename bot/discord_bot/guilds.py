"""Each server's own news: which collections a question searches, the operator's quotas, what is kept
about a server's collection (owner, last use, feeds, recent /adds) and its removal after the bot leaves.

A server's articles and feeds are the collection ``guild-<id>`` (index.Collections keeps its folder and a
metadata file). A question in a server searches ``base`` (when HERALD_BASE_VISIBLE) plus that server's
collection, never another's; a DM searches ``base`` only. Everything here runs on the event loop, so the
metadata is never written by two tasks at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from bot.settings import Settings
from index import BASE_COLLECTION, Collections

_TOUCH_EVERY = 600.0  # seconds between two writes of a collection's "last used"


def collection_name(guild_id: int) -> str:
    return f"guild-{int(guild_id)}"


def guild_of(collection: str) -> int | None:
    """The server id of a ``guild-<id>`` collection (None for ``base`` or another name)."""
    prefix, _, rest = collection.partition("-")
    return int(rest) if prefix == "guild" and rest.isdigit() else None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ServerCollections:
    """The servers' collections, their quotas and their lifecycle (one per bot)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Collections(settings.collections_root)
        self._touched: dict[str, float] = {}

    # ------------------------------------------------------------------------------------ scope

    def scope(self, guild_id: int | None) -> tuple[str, ...]:
        """What a question searches: ``base`` when visible, plus the server's own collection."""
        return self.settings.scope(BASE_COLLECTION if guild_id is None else collection_name(guild_id))

    def label(self, collection: str, guild_id: int | None, names: dict[int, str] | None = None) -> str:
        """How a source's collection is named to people ("" for ``base``): "this server's articles" in the
        server itself, elsewhere (a DM) the server's name from ``names``."""
        if collection == BASE_COLLECTION:
            return ""
        gid = guild_of(collection)
        if gid is not None and gid == guild_id:
            return "this server's articles"
        name = (names or {}).get(gid) if gid is not None else None
        return f"the articles of the server {name}" if name else f"collection {collection}"

    def dm_scope(self, shared: list[int]) -> tuple[str, ...]:
        """What a DM searches: ``base`` (when visible), plus, where the operator allows it
        (HERALD_DM_SERVERS), the collections of ``shared``, the servers the asker is in with the bot."""
        extra = tuple(collection_name(g) for g in shared) if self.settings.dm_servers else ()
        return self.scope(None) + extra

    def _servers(self) -> Iterator[tuple[int, str, dict]]:
        """(server id, collection name, metadata) of every server's collection on disk."""
        for name in self.store.names():
            gid = guild_of(name)
            if gid is not None:
                yield gid, name, self.store.meta(name)

    def _exists(self, name: str) -> bool:
        """Whether the collection has a folder (one stat, not a listing of every collection)."""
        return self.store.folder(name).is_dir()

    def servers_with_collections(self) -> list[int]:
        """Servers that have a collection and have not been left."""
        return [gid for gid, _, meta in self._servers() if not meta.get("left_at")]

    # ----------------------------------------------------------------------------------- quotas

    def add_refusal(self, guild_id: int, url: str, now: float | None = None) -> str | None:
        """Why an /add must not run (None: it may); a quota refusal changes nothing."""
        s, name = self.settings, collection_name(guild_id)
        now = time.time() if now is None else now
        if s.guild_max_articles == 0 or s.guild_adds_per_hour == 0:
            return "Adding articles is turned off on this bot."
        recent = [t for t in self.store.meta(name).get("adds", []) if isinstance(t, (int, float)) and now - t < 3600]
        if len(recent) >= s.guild_adds_per_hour:
            wait = int(3600 - (now - min(recent))) // 60 + 1
            return (f"This server has used its {s.guild_adds_per_hour} /add commands for this hour; "
                    f"try again in about {wait} min.")
        if self.store.articles(name) >= s.guild_max_articles and not self.store.holds(name, url):
            return (f"This server already has {s.guild_max_articles} articles, the most this bot keeps per server: "
                    f"remove one with /forget first.")
        return None

    def room(self, guild_id: int) -> int:
        """Articles the server may still gain (its feeds fetch at most this many)."""
        return max(0, self.settings.guild_max_articles - self.store.articles(collection_name(guild_id)))

    # ----------------------------------------------------------------------------- bookkeeping

    def _update(self, guild_id: int, guild_name: str | None = None, **changes: Any) -> dict:
        name = collection_name(guild_id)
        meta = self.store.meta(name)
        meta.setdefault("created", _now_iso())
        meta["owner_id"] = int(guild_id)
        if guild_name:
            meta["owner_name"] = guild_name
        meta.update(changes)
        self.store.set_meta(name, meta)
        return meta

    def record_add(self, guild_id: int, guild_name: str | None, now: float | None = None) -> None:
        now = time.time() if now is None else now
        adds = [t for t in self.store.meta(collection_name(guild_id)).get("adds", [])
                if isinstance(t, (int, float)) and now - t < 3600]
        self._update(guild_id, guild_name, adds=[*adds, now], last_used=_now_iso())

    def touch(self, guild_id: int | None) -> None:
        """Note that the server's collection was used (at most one write per ``_TOUCH_EVERY`` seconds)."""
        if guild_id is None:
            return
        name = collection_name(guild_id)
        now = time.monotonic()
        if now - self._touched.get(name, -_TOUCH_EVERY) < _TOUCH_EVERY or not self._exists(name):
            return
        self._touched[name] = now
        self._update(guild_id, last_used=_now_iso())

    # ------------------------------------------------------------------------------------ feeds

    def feeds(self, guild_id: int) -> list[str]:
        name = collection_name(guild_id)
        feeds = self.store.meta(name).get("feeds", [])  # {} when the server has no collection yet
        return [f for f in feeds if isinstance(f, str)]

    def follow(self, guild_id: int, guild_name: str | None, url: str) -> str | None:
        """Add a feed; the refusal (quota, already followed) or None."""
        feeds = self.feeds(guild_id)
        if url in feeds:
            return "This server already follows that feed."
        if len(feeds) >= self.settings.guild_max_feeds:
            return (f"This server already follows {self.settings.guild_max_feeds} feed(s), the most this bot allows; "
                    f"remove one with /feeds remove first." if self.settings.guild_max_feeds else
                    "Following feeds is turned off on this bot.")
        self._update(guild_id, guild_name, feeds=[*feeds, url])
        return None

    def unfollow(self, guild_id: int, url: str) -> bool:
        feeds = self.feeds(guild_id)
        if url not in feeds:
            return False
        self._update(guild_id, feeds=[f for f in feeds if f != url])
        return True

    def with_feeds(self) -> list[int]:
        """Servers that follow at least one feed (and are not being removed)."""
        return [gid for gid, _, meta in self._servers() if meta.get("feeds") and not meta.get("left_at")]

    # -------------------------------------------------------------------------------- lifecycle

    def left(self, guild_id: int, when: float | None = None) -> bool:
        """The bot left the server: its collection goes after the grace period (False: it has none)."""
        name = collection_name(guild_id)
        if not self._exists(name):
            return False
        if not self.store.meta(name).get("left_at"):
            self._update(guild_id, left_at=time.time() if when is None else when)
        return True

    def rejoined(self, guild_id: int) -> bool:
        """The bot is back in the server within the grace period: its collection stays."""
        name = collection_name(guild_id)
        if not self._exists(name) or not self.store.meta(name).get("left_at"):
            return False
        self._update(guild_id, left_at=None)
        return True

    def orphans(self, guild_ids: set[int]) -> list[int]:
        """Collections of servers the bot is not in (it was removed while offline), not yet marked."""
        return [gid for gid, _, meta in self._servers() if gid not in guild_ids and not meta.get("left_at")]

    def expired(self, now: float | None = None) -> list[str]:
        """Collections whose grace period is over."""
        now = time.time() if now is None else now
        grace = self.settings.guild_grace_hours * 3600
        return [name for _, name, meta in self._servers()
                if isinstance(meta.get("left_at"), (int, float)) and now - meta["left_at"] >= grace]
