"""The bot's background work, each a small class ``HeraldBot`` owns: its fetch pool, the index rebuilds and
the feed watcher.

``FetchPool``: /add and the feed polls fetch in ``workers`` threads of their own, never in the default
pool the answers use, so slow or hostile sites cannot make a question wait.

``Reindexer``: ``/reindex``, ``/add`` and the watcher rebuild the index in a worker thread and swap the
new Engine in with one assignment (``install``); a question already being answered keeps the Engine it
started with. ``soon`` asks for a rebuild after the one running, if any (it may have read the corpus
before the change).

``FeedWatcher``: every ``feed_interval`` seconds (the first poll at once) ``poll_feeds`` runs in the fetch
pool, each feed's result is logged (``bot.messages.feed_report``), and the index is rebuilt when anything
was added or updated. ``stop`` tells a running poll to end before its next item and cancels the task. The
feeds' state is read afresh for each poll (``poll_collection``): with a database, other processes share it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import discord

from bot.discord_bot.guilds import ServerCollections, collection_name
from bot.messages import explain, feed_report, polite
from bot.settings import Settings
from index import BASE_COLLECTION, Engine, FeedResult, HeraldError, feed_states, poll_feeds, redact_url

log = logging.getLogger("herald.bot")

Done = Callable[[str], Any]  # told the one-line summary of a rebuild; may return an awaitable
Collections_ = Sequence[str]  # the collections a rebuild updates (None: all of them)


def poll_collection(settings: Settings, collection: str, folder: Path, feeds: Sequence[str], state_file: Path,
                    max_items: int, stop: threading.Event | None = None) -> list[FeedResult]:
    """Blocking (a fetch thread): poll ``feeds`` into ``folder`` with ``collection``'s feed states, in the
    database when one is configured (other bot processes and `herald watch` share them), else in ``state_file``."""
    states = feed_states(settings.engine_config(), collection, state_file) if settings.database_url else state_file
    return poll_feeds(folder, feeds, states, settings.fetch, max_items, stop=stop)


class FetchPool:
    """Threads for the bot's fetches only (each fetch ends by HERALD_FETCH_DEADLINE)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="herald-fetch")

    async def run(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)`` in the fetch pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(func, *args, **kwargs))

    def close(self) -> None:
        """Fetches still waiting for a thread are dropped; running ones end by their deadline."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class Reindexer:
    """One rebuild at a time, in a worker thread; the new Engine is handed to ``install`` when it is ready."""

    def __init__(self, settings: Settings, install: Callable[[Engine], None],
                 engine_factory: Callable[[], Engine] | None = None) -> None:
        self.settings = settings
        self._install = install
        self._engine_factory = engine_factory
        self.task: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()  # requests waiting for the running rebuild

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def _open_fresh_engine(self) -> Engine:
        if self._engine_factory is not None:
            return self._engine_factory()
        from index import open_engine

        return open_engine(self.settings.engine_config(), auto_build=False)

    def _rebuild_blocking(self, collections: Collections_ | None = None) -> tuple[Any, Engine]:
        from index import rebuild

        # The workers keep answering meanwhile: the build gets the cores they leave.
        report = rebuild(self.settings.engine_config(), busy_threads=self.settings.max_concurrency,
                         collections=collections)
        return report, self._open_fresh_engine()

    def start(self, done: Done | None = None, collections: Collections_ | None = None) -> bool:
        """Rebuild in the background and swap the new Engine in; False if a rebuild is already running.

        ``done`` is called (and awaited if it returns an awaitable) with a one-line summary for the operator;
        ``collections``: rebuild only these (a server's), every other collection kept exactly as indexed.
        """
        if self.running:
            return False
        self.task = asyncio.create_task(self._run(done, collections), name="herald-reindex")
        return True

    async def _run(self, done: Done | None, collections: Collections_ | None = None) -> None:
        started = time.perf_counter()
        try:
            report, engine = await asyncio.to_thread(self._rebuild_blocking, collections)
        except HeraldError as exc:
            summary = f"The index was not rebuilt: {polite(exc)} The old index is still in use."
            log.warning("reindex failed: %s", exc)
        except Exception as exc:  # noqa: BLE001 - keep serving with the old index, and say so
            log.error("reindex failed", exc_info=exc)
            summary = ("The index was not rebuilt because of an unexpected error (logged). "
                       "The old index is still in use.")
        else:
            self._install(engine)  # new questions see the new index from here on
            seconds = time.perf_counter() - started
            summary = (f"Index rebuilt in {seconds:.1f} s: {report.documents} article(s), {report.chunks} passages "
                       f"({len(report.added)} added, {len(report.changed)} changed, {len(report.removed)} removed); "
                       f"new questions are answered from it.")
            log.info("reindex done: %s", summary)
        if done is not None:
            try:
                result = done(summary)
                if asyncio.iscoroutine(result):
                    await result
            except discord.HTTPException as exc:
                log.warning("could not report the reindex result: %s", exc)

    async def wait(self) -> None:
        """Until the rebuild running (if any) is done; cancelling the wait leaves the rebuild running."""
        if self.task is not None:
            await asyncio.shield(self.task)

    async def start_after_running(self, done: Done | None = None, collections: Collections_ | None = None) -> None:
        """Start a rebuild as soon as none is running."""
        while not self.start(done=done, collections=collections):
            await self.wait()

    def soon(self, done: Done | None = None, collections: Collections_ | None = None) -> None:
        """A rebuild for a change just made to the corpus: now, or, when one is running (it may have read the
        corpus before the change), as soon as that one is done. ``done`` and ``collections`` as for ``start``."""
        if self.start(done=done, collections=collections):
            return
        task = asyncio.create_task(self.start_after_running(done, collections), name="herald-reindex-next")
        self._pending.add(task)  # a strong reference until it ends (the loop keeps only weak ones)
        task.add_done_callback(self._pending.discard)

    def cancel_pending(self) -> list[asyncio.Task]:
        """Cancel the requests still waiting (no new rebuild starts); the running rebuild is left to end."""
        tasks = [t for t in self._pending if not t.done()]
        for task in tasks:
            task.cancel()
        return tasks


class FeedWatcher:
    """Polls the operator's feeds (``settings.feeds``, into the corpus) and each server's (``/feeds``, into
    that server's collection only) every ``feed_interval`` seconds, and rebuilds the collections that got
    news. A server's feeds fetch at most the articles its quota leaves room for."""

    def __init__(self, settings: Settings, fetches: FetchPool, reindexer: Reindexer,
                 servers: ServerCollections | None = None) -> None:
        self.settings = settings
        self._fetches = fetches
        self._reindexer = reindexer
        self._servers = servers or ServerCollections(settings)
        self.task: asyncio.Task | None = None
        self.stopping = threading.Event()  # a poll under way ends before its next item once set
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, collection: str) -> asyncio.Lock:
        """One poll at a time per collection (its feeds' state file): the watcher and /feeds add take it."""
        return self._locks.setdefault(collection, asyncio.Lock())

    def start(self) -> bool:
        """Start polling in the background (False when no feed is followed or it runs already)."""
        if not (self.settings.feeds or self._servers.with_feeds()) or (self.task is not None and not self.task.done()):
            return False
        self.task = asyncio.create_task(self._watch(), name="herald-feeds")
        return True

    async def _watch(self) -> None:
        s = self.settings
        if s.feeds:
            log.info("watching %d feed(s) every %g s (state in %s): %s", len(s.feeds), s.feed_interval,
                     s.index_place if s.database_url else s.feed_state_file, ", ".join(redact_url(f) for f in s.feeds))
        while True:
            try:
                await self.poll_once()
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive one bad poll, and say so
                log.error("feeds: a poll failed unexpectedly; trying again in %g s", s.feed_interval, exc_info=exc)
            await asyncio.sleep(s.feed_interval)

    async def poll_once(self) -> list[str]:
        """One poll of every feed; the collections that got news (rebuilt, after any rebuild running)."""
        s, changed = self.settings, []
        if s.feeds:
            async with self.lock(BASE_COLLECTION):
                if await self._poll("", BASE_COLLECTION, s.corpus_dir, s.feeds, s.feed_state_file, s.feed_max_items):
                    changed.append(BASE_COLLECTION)
        for gid in self._servers.with_feeds():
            name, store = collection_name(gid), self._servers.store
            who = f"server {store.meta(name).get('owner_name') or '?'} ({gid}): "
            room = self._servers.room(gid)
            if not room:
                log.warning("%sfeeds not polled: the server has its %d articles", who, s.guild_max_articles)
                continue
            async with self.lock(name):
                if await self._poll(who, name, store.folder(name), self._servers.feeds(gid), store.feed_state(name),
                                    min(s.feed_max_items, room)):
                    changed.append(name)
        if changed:
            # Wait for a rebuild already running: it may have read the folders before these articles.
            await self._reindexer.start_after_running(collections=changed)
        return changed

    async def _poll(self, who: str, collection: str, folder: Any, feeds: Sequence[str], state: Any,
                    max_items: int) -> int:
        """Poll ``feeds`` into ``folder``; the number of articles added or updated (logged with ``who``)."""
        try:
            results = await self._fetches.run(poll_collection, self.settings, collection, folder, feeds, state,
                                              max_items, stop=self.stopping)
        except HeraldError as exc:
            log.warning("%sfeeds: could not poll: %s", who, explain(exc))
            return 0
        except Exception as exc:  # noqa: BLE001 - one bad poll must not stop the watcher
            log.error("%sfeeds: the poll failed unexpectedly; trying again in %g s", who, self.settings.feed_interval,
                      exc_info=exc)
            return 0
        return self._log(results, who)

    @staticmethod
    def _log(results: list[Any], who: str = "") -> int:
        """Each feed's report in the log (``who``: the server's name first); the articles added or updated."""
        for res in results:
            for line in feed_report(res):
                log.log(line.level, "%s%s", who, line.text)
        changed = sum(res.changed for res in results)
        if changed:
            log.info("%sfeeds: %d new or updated article(s); rebuilding the index", who, changed)
        return changed

    def stop(self) -> list[asyncio.Task]:
        """Tell a running poll to stop and cancel the watcher; the task, to be awaited, if it was running."""
        self.stopping.set()
        if self.task is None or self.task.done():
            return []
        self.task.cancel()
        return [self.task]


class CollectionJanitor:
    """Removes a server's collection (its articles, feeds and index rows) once the grace period after the
    bot left the server is over; checks every quarter of the grace period, at most hourly."""

    def __init__(self, servers: ServerCollections, reindexer: Reindexer) -> None:
        self._servers = servers
        self._reindexer = reindexer
        self.task: asyncio.Task | None = None

    @property
    def interval(self) -> float:
        return min(3600.0, max(0.05, self._servers.settings.guild_grace_hours * 3600 / 4))

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="herald-collections")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - a failed sweep is tried again at the next one
                log.error("collections: removing expired collections failed", exc_info=exc)

    async def sweep(self) -> list[str]:
        """Remove every collection past its grace period and rebuild those collections (their rows go)."""
        gone = [name for name in self._servers.expired() if self._servers.store.remove(name)]
        if gone:
            log.info("collections: removed %s (the bot left the server more than %g h ago)", ", ".join(gone),
                     self._servers.settings.guild_grace_hours)
            await self._reindexer.start_after_running(collections=gone)
        return gone

    def stop(self) -> list[asyncio.Task]:
        if self.task is None or self.task.done():
            return []
        self.task.cancel()
        return [self.task]
