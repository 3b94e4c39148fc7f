"""Herald on Discord: the client, how it starts and stops, and the one place errors are handled.

Structure (after discord.py's ``examples/advanced_startup.py`` and RoboDanny): ``HeraldBot`` is given
everything it needs (settings, an open ``Engine``, the feedback log) instead of reaching for globals;
``setup_hook`` loads one extension per feature (``initial_extensions``: asking, admin, news (/add),
feedback buttons), syncs the slash commands and starts the feed watcher when ``HERALD_FEEDS`` is set;
``serve`` runs it with ``async with bot: await bot.start(token)``.
``run_bot`` is what ``herald bot`` calls: it checks the token, opens (and if needed builds) the index and
warms the model *before* connecting, then serves until Ctrl-C or SIGTERM.

Answering never blocks the event loop: ``HeraldBot.answer`` runs ``Engine.ask`` in a worker thread under
an ``asyncio.Semaphore(max_concurrency)``, so gateway heartbeats keep flowing; a language model's answer
streams from that thread to the loop (``bot.streaming``), and follow-ups get their earlier turns from
``conversations`` (``bot.conversation``). ``/reindex`` builds a new
Engine in a thread and swaps the ``engine`` reference in one assignment; a question already being
answered keeps the Engine it started with. ``/add`` and the feed watcher (``herald-feeds``: ``poll_feeds``
every ``feed_interval`` seconds) save articles into the corpus and then ask for such a rebuild
(``reindex_soon``: after the one running, if any). Fetches run in a pool of their own (``fetch_workers``
threads, ``run_fetch``), never in the default pool the answers use: slow or hostile sites cannot make a
question wait. ``close`` cancels the watcher and those waits, and tells a running poll to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.conversation import Conversations
from bot.feedback import AnswerMemory, FeedbackLog
from bot.discord_util import allowed_mentions, polite, reply_to
from bot.format import RedactCredentials, fit_content
from bot.settings import Settings
from index import Answer, Engine, HeraldError, Turn

log = logging.getLogger("herald.bot")

WARM_UP_QUESTION = "Who vetoed the resolution?"


class HeraldTree(app_commands.CommandTree):
    """Slash-command errors all go to the bot's one error handler."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await self.client.report_error(error, interaction=interaction,  # type: ignore[attr-defined]
                                       context=f"/{interaction.command.name if interaction.command else '?'}")


class HeraldBot(commands.Bot):
    """The Discord client. Text commands are off: questions come from /ask, mentions and DMs."""

    initial_extensions: tuple[str, ...] = ("bot.cogs.asking", "bot.cogs.admin", "bot.cogs.news",
                                           "bot.cogs.feedback")
    fetch_workers = 3  # /adds and feed polls at once; more wait their turn (each ends by HERALD_FETCH_DEADLINE)

    def __init__(self, *, settings: Settings, engine: Engine, feedback: FeedbackLog | None = None,
                 answers: AnswerMemory | None = None,
                 engine_factory: Callable[[], Engine] | None = None, **kwargs: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True          # channels and threads, for the allowlist
        intents.guild_messages = True  # mentions in servers (content comes with the mention)
        intents.dm_messages = True     # direct messages (content always comes in DMs)
        # Not message_content: a mention or a DM carries its content without that privileged intent.
        kwargs.setdefault("allowed_mentions", allowed_mentions())
        kwargs.setdefault("max_messages", 200)
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None,
                         tree_cls=HeraldTree, **kwargs)
        self.settings = settings
        self.engine = engine
        self.feedback = feedback or FeedbackLog(settings.feedback_file)
        self.answers = answers or AnswerMemory()
        self.conversations = Conversations()
        self.limiter = asyncio.Semaphore(settings.max_concurrency)
        self._engine_factory = engine_factory
        self._reindex_task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._feed_task: asyncio.Task | None = None
        self._fetch_pool = ThreadPoolExecutor(max_workers=self.fetch_workers, thread_name_prefix="herald-fetch")
        self._stopping = threading.Event()  # a feed poll under way ends before its next item once set
        self.synced_commands: list[app_commands.AppCommand] = []

    # ------------------------------------------------------------------------------------ startup

    async def setup_hook(self) -> None:
        """Load each feature as an extension (its ``setup`` adds the cog), then sync the slash commands."""
        for name in self.initial_extensions:
            await self.load_extension(name)
        await self.sync_commands()
        self.start_feed_watcher()

    async def sync_commands(self) -> None:
        """To the dev guild (instant) when one is set, else globally (can take up to an hour to show)."""
        try:
            if self.settings.dev_guild_id:
                guild = discord.Object(id=self.settings.dev_guild_id)
                self.tree.copy_global_to(guild=guild)
                self.synced_commands = await self.tree.sync(guild=guild)
                log.info("slash commands synced to guild %s: %s", self.settings.dev_guild_id,
                         ", ".join("/" + c.name for c in self.synced_commands))
            else:
                self.synced_commands = await self.tree.sync()
                log.info("slash commands synced globally (they can take up to an hour to appear): %s",
                         ", ".join("/" + c.name for c in self.synced_commands))
        except discord.Forbidden:
            log.warning("could not sync slash commands: the bot was invited without the applications.commands "
                        "scope, or is not in guild %s; mentions still work", self.settings.dev_guild_id)
        except discord.HTTPException as exc:
            log.warning("could not sync slash commands (%s %s); mentions still work", exc.status, exc.text[:200])

    async def on_ready(self) -> None:
        where = (f"channels {', '.join(str(c) for c in sorted(self.settings.channel_allowlist))}"
                 if self.settings.channel_allowlist else "every channel it can read")
        log.info("connected as %s (id %s) in %d server(s); answering in %s", self.user,
                 self.user.id if self.user else "?", len(self.guilds), where)

    async def on_message(self, message: discord.Message) -> None:
        """No text commands: the asking cog listens for mentions and DMs."""

    # ---------------------------------------------------------------------------------- answering

    async def answer(self, question: str, history: Sequence[Turn] = (),
                     on_token: Callable[[str], None] | None = None) -> Answer:
        """``Engine.ask`` in a worker thread, at most ``max_concurrency`` at a time.

        ``on_token`` is called in that worker thread (hand the pieces to the loop, never touch Discord
        there). Only the arguments given are passed on, so a plain question is ``engine.ask(question)``.
        """
        engine = self.engine  # this question keeps this engine even if /reindex swaps in another
        kwargs: dict[str, Any] = {}
        if history:
            kwargs["history"] = tuple(history)
        if on_token is not None:
            kwargs["on_token"] = on_token
        async with self.limiter:
            return await asyncio.to_thread(engine.ask, question, **kwargs)

    @property
    def history_turns(self) -> int:
        """Earlier turns given with a follow-up: the model's ``history_turns``; without a model at least
        one (the library then searches with the previous question's words added)."""
        turns = self.settings.llm.history_turns
        return turns if self.settings.answerer == "llm" else max(1, turns)

    @property
    def streams(self) -> bool:
        """Whether answers are written by a language model (they arrive in pieces, shown as they come)."""
        return self.settings.answerer == "llm"

    def log_question(self, ans: Answer, *, user_id: int, where: str, via: str, elapsed_ms: float,
                     turns: int = 0) -> None:
        top = ans.sources[0].score if ans.sources else 0.0
        log.info("question user=%s where=%s via=%s latency_ms=%.0f top_score=%.3f confidence=%.3f abstained=%s "
                 "history=%d answered_by=%s%s", user_id, where, via, elapsed_ms, top, ans.confidence, ans.abstained,
                 turns, ans.answered_by, f" fallback={ans.fallback}" if ans.fallback else "")

    # ------------------------------------------------------------------------------------ reindex

    @property
    def reindexing(self) -> bool:
        return self._reindex_task is not None and not self._reindex_task.done()

    def _open_fresh_engine(self) -> Engine:
        if self._engine_factory is not None:
            return self._engine_factory()
        from index import open_engine

        return open_engine(self.settings.engine_config(), auto_build=False)

    def _rebuild_blocking(self) -> tuple[Any, Engine]:
        from index import rebuild

        # The workers keep answering meanwhile: the build gets the cores they leave.
        report = rebuild(self.settings.engine_config(), busy_threads=self.settings.max_concurrency)
        return report, self._open_fresh_engine()

    def start_reindex(self, done: Callable[[str], Any] | None = None) -> bool:
        """Rebuild in the background and swap the new Engine in; False if a rebuild is already running.

        ``done`` is called (and awaited if it returns an awaitable) with a one-line summary for the operator.
        """
        if self.reindexing:
            return False

        async def run() -> None:
            started = time.perf_counter()
            try:
                report, engine = await asyncio.to_thread(self._rebuild_blocking)
            except HeraldError as exc:
                summary = f"The index was not rebuilt: {polite(exc)} The old index is still in use."
                log.warning("reindex failed: %s", exc)
            except Exception as exc:  # noqa: BLE001 - keep serving with the old index, and say so
                log.error("reindex failed", exc_info=exc)
                summary = "The index was not rebuilt because of an unexpected error (logged). The old index is still in use."
            else:
                self.engine = engine  # one assignment: new questions see the new index from here on
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

        self._reindex_task = asyncio.create_task(run(), name="herald-reindex")
        return True

    async def wait_reindexed(self) -> None:
        if self._reindex_task is not None:
            await asyncio.shield(self._reindex_task)

    def reindex_soon(self, done: Callable[[str], Any] | None = None) -> None:
        """A rebuild for a change just made to the corpus: now, or, when one is running (it may have read the
        corpus before the change), as soon as that one is done. ``done`` as for ``start_reindex``."""
        if self.start_reindex(done=done):
            return

        async def after_the_running_one() -> None:
            while not self.start_reindex(done=done):
                await self.wait_reindexed()

        self._keep(asyncio.create_task(after_the_running_one(), name="herald-reindex-next"))

    def _keep(self, task: asyncio.Task) -> None:
        """Hold a strong reference until the task ends (the loop keeps only weak ones); ``close`` cancels it."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -------------------------------------------------------------------------------------- feeds

    async def run_fetch(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)`` in the fetch pool (not the default pool, which answers questions)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._fetch_pool, functools.partial(func, *args, **kwargs))

    def start_feed_watcher(self) -> bool:
        """Start polling ``settings.feeds`` in the background (False when there are none or it runs already)."""
        if not self.settings.feeds or (self._feed_task is not None and not self._feed_task.done()):
            return False
        self._feed_task = asyncio.create_task(self._watch_feeds(), name="herald-feeds")
        return True

    async def _watch_feeds(self) -> None:
        """Every ``feed_interval`` seconds (the first poll at once): poll the feeds in a worker thread, log each
        article added or failing, and rebuild the index when anything was added or updated."""
        from bot.messages import explain
        from index import poll_feeds, redact_url

        s = self.settings
        log.info("watching %d feed(s) every %g s (state in %s): %s", len(s.feeds), s.feed_interval,
                 s.feed_state_file, ", ".join(redact_url(f) for f in s.feeds))
        while True:
            try:
                results = await self.run_fetch(poll_feeds, s.corpus_dir, s.feeds, s.feed_state_file, s.fetch,
                                               s.feed_max_items, stop=self._stopping)
            except HeraldError as exc:
                log.warning("feeds: could not poll: %s", explain(exc))
            except Exception as exc:  # noqa: BLE001 - one bad poll must not stop the watcher
                log.error("feeds: the poll failed unexpectedly; trying again in %g s", s.feed_interval, exc_info=exc)
            else:
                if self._log_feed_results(results):
                    # Wait for a rebuild already running: it may have read the corpus before these articles.
                    while not self.start_reindex():
                        await self.wait_reindexed()
            await asyncio.sleep(s.feed_interval)

    @staticmethod
    def _log_feed_results(results: Sequence[Any]) -> int:
        """One log line per feed failure and per item added, updated or failed; the number added or updated."""
        from bot.messages import add_result, explain

        changed = 0
        for res in results:
            if res.error is not None:
                log.warning("feed %s: failed: %s", res.feed, explain(res.error))
                continue
            if res.unchanged:
                log.debug("feed %s: unchanged since the last poll", res.feed)
            for item in res.items:
                if item.status == "failed":
                    why = explain(item.error) if item.error is not None else f"{item.url} could not be added"
                    later = "given up" if item.url in res.given_up else "tried again later"
                    log.warning("feed %s: item failed (%s): %s", res.feed, later, why)
                elif item.status in ("added", "updated"):
                    changed += 1
                    log.info("feed %s: %s -> %s", res.feed, add_result(item), item.path)
                else:
                    log.debug("feed %s: %s", res.feed, add_result(item))
        if changed:
            log.info("feeds: %d new or updated article(s); rebuilding the index", changed)
        return changed

    async def close(self) -> None:
        """Stop the feed watcher and pending rebuild requests first (no new rebuild starts), then disconnect."""
        self._stopping.set()
        tasks = [t for t in (self._feed_task, *self._background) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # Fetches still waiting for a thread are dropped; running ones end by their deadline.
        self._fetch_pool.shutdown(wait=False, cancel_futures=True)
        await super().close()

    # ------------------------------------------------------------------------------------- errors

    async def report_error(self, error: BaseException, *, interaction: discord.Interaction | None = None,
                           message: discord.Message | None = None, context: str = "") -> None:
        """The one error handler: log it, then tell the user politely (never a traceback)."""
        original = getattr(error, "original", None) or error
        if isinstance(original, HeraldError):
            log.warning("%s: %s", context or "request", original)
            text = f"Sorry: {polite(original)}"
        elif isinstance(original, app_commands.CheckFailure):
            text = "Sorry, you can't use that command here."
        else:
            log.error("unexpected error in %s", context or "a request", exc_info=original)
            text = ("Sorry, something went wrong on my side while handling that. "
                    "It has been logged; please try again in a moment.")
        try:
            await self.send_notice(text, interaction=interaction, message=message)
        except discord.HTTPException as exc:
            log.warning("could not tell the user about an error: %s", exc)

    async def send_notice(self, text: str, *, interaction: discord.Interaction | None = None,
                          message: discord.Message | None = None) -> None:
        """A short reply: private (ephemeral) to an interaction, a non-pinging reply to a message."""
        content = fit_content(text)
        if interaction is not None:
            if interaction.response.is_done():
                await interaction.followup.send(content, ephemeral=True, allowed_mentions=allowed_mentions())
            else:
                await interaction.response.send_message(content, ephemeral=True, allowed_mentions=allowed_mentions())
        elif message is not None:
            await reply_to(message, content=content)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        """Exceptions escaping event handlers land here, not in discord.py's own logger."""
        exc = sys.exc_info()[1]
        message = args[0] if args and isinstance(args[0], discord.Message) else None
        await self.report_error(exc or RuntimeError("unknown error"), message=message, context=event_method)


# ------------------------------------------------------------------------------------ running it


class _RedactToken(logging.Filter):
    """Replaces the token wherever it would appear in a log line (belt and braces: nothing logs it)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.token:
            return True
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call must not break logging
            return True
        if self.token in text:
            record.msg, record.args = text.replace(self.token, "[DISCORD_TOKEN]"), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info).replace(self.token, "[DISCORD_TOKEN]")
        elif record.exc_text and self.token in record.exc_text:
            record.exc_text = record.exc_text.replace(self.token, "[DISCORD_TOKEN]")
        return True


def configure_logging(level_name: str, token: str) -> None:
    """Timestamped lines for the bot on stderr (``herald -v bot`` keeps DEBUG), the token redacted.

    Only Herald's own stderr handler (the CLI's, or one added here) is changed, so a host application's
    or pytest's handlers are left alone.
    """
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise HeraldError(f"HERALD_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level_name!r}")
    root = logging.getLogger()
    if root.level != logging.DEBUG:  # -v asked for everything; keep it
        root.setLevel(level)
    handlers = [h for h in root.handlers if getattr(h, "_herald", False)]
    if not handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler._herald = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        handlers = [handler]
    fmt = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    for handler in handlers:
        handler.setLevel(root.level)
        handler.setFormatter(fmt)
        for old in [f for f in handler.filters if isinstance(f, _RedactToken)]:
            handler.removeFilter(old)
        handler.addFilter(_RedactToken(token))
        if not any(isinstance(f, RedactCredentials) for f in handler.filters):
            handler.addFilter(RedactCredentials())  # no URL's user:password@ (HERALD_LLM_URL) in a log line
    logging.getLogger("discord").setLevel(max(root.level, logging.INFO))
    client_log = logging.getLogger("discord.client")
    if not any(isinstance(f, _NoVoiceWarning) for f in client_log.filters):
        client_log.addFilter(_NoVoiceWarning())


class _NoVoiceWarning(logging.Filter):
    """Herald has no voice features; "PyNaCl is not installed, voice will NOT be supported" is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


async def serve(settings: Settings, engine: Engine, token: str, **bot_kwargs: Any) -> None:
    """Connect and answer until closed (Ctrl-C / SIGTERM close it cleanly). Login failures are HeraldErrors."""
    bot = HeraldBot(settings=settings, engine=engine, **bot_kwargs)
    loop = asyncio.get_running_loop()
    installed = []
    closing: list[asyncio.Task] = []

    async def shutdown() -> None:
        # Closing in the middle of the READY handshake makes discord.py log a spurious error; let it finish.
        if bot.ws is not None and not bot.is_ready():
            with contextlib.suppress(asyncio.TimeoutError, RuntimeError):
                await asyncio.wait_for(bot.wait_until_ready(), 5)
        await bot.close()

    def stop(name: str) -> None:
        log.info("%s received; disconnecting", name)
        if not closing:
            closing.append(loop.create_task(shutdown(), name="herald-shutdown"))  # kept: tasks are weakly held

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop, sig.name)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            pass
    try:
        async with bot:
            await bot.start(token)
    except discord.LoginFailure:
        raise HeraldError("Discord rejected the bot token (DISCORD_TOKEN). Copy a new one from the developer "
                          "portal: your application -> Bot -> Reset Token") from None
    except discord.PrivilegedIntentsRequired:  # pragma: no cover - Herald asks for no privileged intent
        raise HeraldError("Discord refused a privileged intent; Herald needs none, so check the bot code") from None
    except (discord.GatewayNotFound, discord.HTTPException, OSError) as exc:
        detail = f"{exc.status}" if isinstance(exc, discord.HTTPException) else type(exc).__name__
        raise HeraldError(f"cannot reach Discord ({detail}); check the network and try again") from None
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    log.info("Herald stopped")


def open_and_warm(settings: Settings) -> Engine:
    """The Engine (index built first if missing or stale) with the model loaded and one question answered."""
    from bot.messages import notice
    from index import open_engine

    started = time.perf_counter()
    engine = open_engine(settings.engine_config(), notify=lambda n: log.info("%s", notice(n)))
    engine.ask(WARM_UP_QUESTION)  # loads the model weights and warms every code path before connecting
    log.info("index ready: %d article(s), %d passages, model %s (%.1f s)", len(engine.documents()),
             engine.passages, settings.model, time.perf_counter() - started)
    return engine


def run_bot(settings: Settings, **bot_kwargs: Any) -> None:
    """``herald bot``: check the token, load the index and model, then connect until stopped."""
    token = (settings.discord_token or "").strip()
    if not token:
        raise HeraldError("DISCORD_TOKEN is not set. Put the bot token from the Discord developer portal "
                          "(your application -> Bot) in .env or the environment; see docs/run-the-bot.md")
    configure_logging(settings.log_level, token)
    engine = open_and_warm(settings)
    log.info("connecting to Discord")
    asyncio.run(serve(settings, engine, token, **bot_kwargs))
