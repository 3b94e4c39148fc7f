"""The Discord client: ``HeraldBot``, and the one place errors are handled.

Structure (after discord.py's ``examples/advanced_startup.py`` and RoboDanny): ``HeraldBot`` is given
everything it needs (settings, an open ``Engine``, the feedback log) instead of reaching for globals;
``setup_hook`` loads one extension per feature (``initial_extensions``: asking, admin, news (/add),
feedback buttons), syncs the slash commands and starts the feed watcher when ``HERALD_FEEDS`` is set.
How it is started and stopped is ``bot.discord_bot.launcher``; its background work (fetch pool, rebuilds,
feed watcher) is ``bot.discord_bot.tasks``.

Answering never blocks the event loop: ``HeraldBot.answer`` runs ``Engine.ask`` in a worker thread under
an ``asyncio.Semaphore(max_concurrency)``, so gateway heartbeats keep flowing; a language model's answer
streams from that thread to the loop (``bot.discord_bot.streaming``), and follow-ups get their earlier
turns from ``conversations`` (``bot.discord_bot.conversation``). ``/reindex``, ``/add`` and the feed
watcher rebuild through ``reindexer``, which swaps the ``engine`` reference in one assignment; a question
already being answered keeps the Engine it started with. ``close`` stops the watcher and pending rebuild
requests, then disconnects.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot.conversation import Conversations
from bot.discord_bot.feedback import AnswerMemory, FeedbackLog
from bot.discord_bot.guilds import ServerCollections
from bot.discord_bot.tasks import CollectionJanitor, Done, FeedWatcher, FetchPool, Reindexer
from bot.discord_bot.util import allowed_mentions, polite, reply_to
from bot.format import fit_content
from bot.settings import Settings
from index import Answer, Engine, HeraldError, Turn

log = logging.getLogger("herald.bot")


class HeraldTree(app_commands.CommandTree):
    """Slash-command errors all go to the bot's one error handler."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await self.client.report_error(error, interaction=interaction,  # type: ignore[attr-defined]
                                       context=f"/{interaction.command.name if interaction.command else '?'}")


class HeraldBot(commands.Bot):
    """The Discord client. Text commands are off: questions come from /ask, mentions and DMs."""

    initial_extensions: tuple[str, ...] = ("bot.discord_bot.cogs.asking", "bot.discord_bot.cogs.admin",
                                           "bot.discord_bot.cogs.news", "bot.discord_bot.cogs.feeds",
                                           "bot.discord_bot.cogs.feedback")
    fetch_workers = 3  # /adds and feed polls at once; more wait their turn (each ends by HERALD_FETCH_DEADLINE)
    SHARED_FOR = 600.0  # seconds a DM asker's servers are remembered (HERALD_DM_SERVERS)

    def __init__(self, *, settings: Settings, engine: Engine, feedback: FeedbackLog | None = None,
                 answers: AnswerMemory | None = None,
                 engine_factory: Callable[[], Engine] | None = None, **kwargs: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True          # channels and threads, for the allowlist
        intents.guild_messages = True  # mentions in servers (content comes with the mention)
        intents.dm_messages = True     # direct messages (content always comes in DMs)
        # Not message_content: a mention or a DM carries its content without that privileged intent.
        kwargs.setdefault("allowed_mentions", allowed_mentions())
        if settings.shard_count is not None:  # one of several processes (they share the index's database)
            kwargs.setdefault("shard_id", settings.shard_id)
            kwargs.setdefault("shard_count", settings.shard_count)
        kwargs.setdefault("max_messages", 200)
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None,
                         tree_cls=HeraldTree, **kwargs)
        self.settings = settings
        self.engine = engine
        self.feedback = feedback or FeedbackLog(settings.feedback_file,  # the database's table when one is set
                                                settings.engine_config() if settings.database_url else None)
        self.answers = answers or AnswerMemory()
        self.conversations = Conversations()
        self.limiter = asyncio.Semaphore(settings.max_concurrency)
        self.fetches = FetchPool(self.fetch_workers)
        self.servers = ServerCollections(settings)
        self.reindexer = Reindexer(settings, self._install, engine_factory)
        self.feed_watcher = FeedWatcher(settings, self.fetches, self.reindexer, self.servers)
        self.janitor = CollectionJanitor(self.servers, self.reindexer)
        self._shared: dict[int, tuple[float, list[int]]] = {}  # user -> (when, servers shared with the bot)
        self.synced_commands: list[app_commands.AppCommand] = []

    # ------------------------------------------------------------------------------------ startup

    async def setup_hook(self) -> None:
        """Load each feature as an extension (its ``setup`` adds the cog), then sync the slash commands."""
        for name in self.initial_extensions:
            await self.load_extension(name)
        await self.sync_commands()
        if self.settings.runs_background:  # with several shards, shard 0 alone polls feeds and sweeps
            self.feed_watcher.start()
            self.janitor.start()

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
        for gid in self.servers.orphans({g.id for g in self.guilds}):  # removed from them while offline
            if not self.settings.serves_guild(gid):
                continue  # another shard's server: this process never sees it
            self.servers.left(gid)
            log.info("not in server %s any more: its articles are removed in %g h unless the bot is added back",
                     gid, self.settings.guild_grace_hours)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """Removed from a server (kicked, or the server deleted): its collection goes after the grace period."""
        if self.servers.left(guild.id):
            log.info("left server %s (%s): its articles are removed in %g h unless the bot is added back",
                     guild.name, guild.id, self.settings.guild_grace_hours)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        if self.servers.rejoined(guild.id):
            log.info("back in server %s (%s) within the grace period: its articles are kept", guild.name, guild.id)

    async def on_message(self, message: discord.Message) -> None:
        """No text commands: the asking cog listens for mentions and DMs."""

    # ---------------------------------------------------------------------------------- answering

    async def answer(self, question: str, history: Sequence[Turn] = (),
                     on_token: Callable[[str], None] | None = None, guild_id: int | None = None,
                     collections: Sequence[str] | None = None) -> Answer:
        """``Engine.ask`` in a worker thread, at most ``max_concurrency`` at a time, over ``collections``
        (default: what a question from ``guild_id``, None for a DM, may see: ``ServerCollections.scope``).

        ``on_token`` is called in that worker thread (hand the pieces to the loop, never touch Discord
        there).
        """
        engine = self.engine  # this question keeps this engine even if /reindex swaps in another
        self.servers.touch(guild_id)
        scope = self.servers.scope(guild_id) if collections is None else tuple(collections)
        kwargs: dict[str, Any] = {"collections": scope}
        if history:
            kwargs["history"] = tuple(history)
        if on_token is not None:
            kwargs["on_token"] = on_token
        async with self.limiter:
            return await asyncio.to_thread(engine.ask, question, **kwargs)

    async def scope_for(self, guild_id: int | None, user_id: int) -> tuple[str, ...]:
        """What a question from ``user_id`` in ``guild_id`` (None: a DM) searches: the server's scope, or
        for a DM ``base`` plus, with HERALD_DM_SERVERS, the servers the asker shares with the bot."""
        if guild_id is not None or not self.settings.dm_servers:
            return self.servers.scope(guild_id)
        return self.servers.dm_scope(await self.shared_servers(user_id))

    async def shared_servers(self, user_id: int) -> list[int]:
        """Servers with articles that ``user_id`` is a member of: one member lookup per server (the bot has
        no member list: no privileged intent), remembered for ``SHARED_FOR`` seconds."""
        now = time.monotonic()
        cached = self._shared.get(user_id)
        if cached is not None and now - cached[0] < self.SHARED_FOR:
            return cached[1]
        found = []
        for gid in self.servers.servers_with_collections():
            guild = self.get_guild(gid)
            if guild is None:
                continue
            if guild.get_member(user_id) is None:
                try:
                    await guild.fetch_member(user_id)
                except discord.NotFound:
                    continue
                except discord.HTTPException as exc:
                    log.warning("could not look up user %s in server %s: %s %s", user_id, gid, exc.status, exc.text)
                    continue
            found.append(gid)
        if len(self._shared) > 10_000:
            self._shared.clear()
        self._shared[user_id] = (now, found)
        return found

    @property
    def history_turns(self) -> int:
        """Earlier turns given with a follow-up: the model's ``history_turns``; without a model at least
        one (the library then searches with the previous question's words added)."""
        turns = self.settings.llm.history_turns
        return turns if self.streams else max(1, turns)

    @property
    def streams(self) -> bool:
        """Whether the engine's answerer writes answers in pieces (a language model), shown as they come: the
        answerer declares it (``Answerer.streams``), the bot does not guess it from a name."""
        return self.engine.streams

    def log_question(self, ans: Answer, *, user_id: int, where: str, via: str, elapsed_ms: float,
                     turns: int = 0) -> None:
        top = ans.sources[0].score if ans.sources else 0.0
        log.info("question user=%s where=%s via=%s latency_ms=%.0f top_score=%.3f confidence=%.3f abstained=%s "
                 "history=%d answered_by=%s%s", user_id, where, via, elapsed_ms, top, ans.confidence, ans.abstained,
                 turns, ans.answered_by, f" fallback={ans.fallback}" if ans.fallback else "")

    # --------------------------------------------------------------- background work (bot.discord_bot.tasks)

    def _install(self, engine: Engine) -> None:
        """One assignment: new questions see the rebuilt index from here on."""
        self.engine = engine

    @property
    def reindexing(self) -> bool:
        return self.reindexer.running

    def start_reindex(self, done: Done | None = None, collections: Sequence[str] | None = None) -> bool:
        """``Reindexer.start``: rebuild now, False if a rebuild is already running."""
        return self.reindexer.start(done=done, collections=collections)

    def reindex_soon(self, done: Done | None = None, collections: Sequence[str] | None = None) -> None:
        """``Reindexer.soon``: rebuild now, or after the rebuild running."""
        self.reindexer.soon(done=done, collections=collections)

    async def wait_reindexed(self) -> None:
        await self.reindexer.wait()

    async def run_fetch(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)`` in the fetch pool (not the default pool, which answers questions)."""
        return await self.fetches.run(func, *args, **kwargs)

    async def close(self) -> None:
        """Stop the feed watcher and pending rebuild requests first (no new rebuild starts), then disconnect."""
        tasks = self.feed_watcher.stop() + self.janitor.stop() + self.reindexer.cancel_pending()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.fetches.close()
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

    async def manager_only(self, interaction: discord.Interaction, action: str) -> bool:
        """Whether the member may run a Manage Server command; if not, they are told so (privately).

        Default permissions hide these commands from others in the client, but server admins can override
        them per channel or role, so every such command checks again when it runs."""
        if interaction.permissions.manage_guild:
            return True
        await self.send_notice(f"Only members with the Manage Server permission can {action}.",
                               interaction=interaction)
        return False

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
