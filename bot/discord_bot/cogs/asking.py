"""Asking: the /ask slash command, and messages that mention the bot or are sent to it directly.

Every question goes through the same gate, in this order: the channel allowlist, the question itself
(empty, too long, only control characters: a polite reply), then the per-user cooldown. Refusals are
private for /ask (ephemeral) and short replies for mentions.

Follow-ups: a mention that replies to one of Herald's answers (a reply pings Herald, which is how its
content reaches a bot without the message-content intent), or a question in a thread started from an
answer, is asked with the earlier turns (``bot.discord_bot.conversation``). Replying without the ping, or
writing in such a thread without mentioning Herald, sends Herald nothing to read.

Streaming: with a language model the answer is shown while it is written (``bot.discord_bot.streaming``:
the first piece sends the reply, or fills the deferred /ask response; then one edit a second at most), and
the final embed with the numbered sources replaces it. Extractive answers are one message, as before.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot.conversation import turn_from_message, turn_of
from bot.discord_bot.guilds import guild_of
from bot.discord_bot.streaming import StreamPreview
from bot.discord_bot.util import allowed_mentions, guard_limits, polite, reply_to, to_embed, where_of
from bot.format import format_answer
from index import Answer, QuestionError, Turn, clean_question

if TYPE_CHECKING:
    from bot.discord_bot.client import HeraldBot

EXAMPLE = "Who vetoed the resolution?"


class Cooldowns:
    """Per-user: when each user may ask again (monotonic clock)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: dict[int, float] = {}

    def retry_after(self, user_id: int, now: float | None = None) -> float:
        """Seconds the user must still wait (0 when they may ask)."""
        if self.seconds <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        last = self._last.get(user_id)
        return 0.0 if last is None else max(0.0, last + self.seconds - now)

    def mark(self, user_id: int, now: float | None = None) -> None:
        if self.seconds <= 0:
            return
        now = time.monotonic() if now is None else now
        self._last[user_id] = now
        if len(self._last) > 10_000:  # forget users whose cooldown is long over
            self._last = {u: t for u, t in self._last.items() if t + self.seconds > now}


class AskingCog(commands.Cog):
    """/ask, mentions and DMs, all answered the same way."""

    def __init__(self, bot: HeraldBot) -> None:
        self.bot = bot
        self.cooldowns = Cooldowns(bot.settings.cooldown_seconds)

    # -------------------------------------------------------------------------------------- gate

    def channel_allowed(self, channel: Any, guild: Any) -> bool:
        allow = self.bot.settings.channel_allowlist
        if not allow or guild is None:  # DMs are always answered; the allowlist is about server channels
            return True
        ids = {getattr(channel, "id", None), getattr(channel, "parent_id", None)}  # a thread counts as its parent
        return bool(ids & allow)

    def where_allowed(self) -> str:
        chans = ", ".join(f"<#{c}>" for c in sorted(self.bot.settings.channel_allowlist))
        return f"I only answer questions in {chans} (or in a direct message)."

    def check(self, user_id: int, channel: Any, guild: Any, raw: str) -> tuple[str | None, str]:
        """(refusal text or None, cleaned question). Marks the cooldown when the question is accepted."""
        if not self.channel_allowed(channel, guild):
            return self.where_allowed(), ""
        try:
            question = clean_question(raw, self.bot.settings.max_question_chars)
        except QuestionError as exc:
            return f"Sorry: {polite(exc)}", ""
        wait = self.cooldowns.retry_after(user_id)
        if wait > 0:
            return f"\u23f3 You're asking a little fast: try again in {math.ceil(wait)} s.", ""
        if not self.bot.servers.scope(getattr(guild, "id", None)) and not (guild is None
                                                                           and self.bot.settings.dm_servers):
            return "There are no articles I can answer from here: ask in a server that has added some.", ""
        self.cooldowns.mark(user_id)
        return None, question

    async def answer_message(self, question: str, *, started: float, user_id: int, where: str, via: str,
                             history: Sequence[Turn] = (), guild_id: int | None = None,
                             on_token: Callable[[str], None] | None = None) -> Reply:
        """The answer to one question from ``guild_id`` (None: a DM), over what that server may see."""
        from bot.discord_bot.cogs.feedback import feedback_view
        from bot.discord_bot.feedback import AnswerRecord

        extra: dict[str, Any] = {k: v for k, v in (("history", history), ("on_token", on_token)) if v}
        scope = await self.bot.scope_for(guild_id, user_id)
        ans = await self.bot.answer(question, guild_id=guild_id, collections=scope, **extra)
        elapsed = (time.perf_counter() - started) * 1000
        self.bot.log_question(ans, user_id=user_id, where=where, via=via, elapsed_ms=elapsed, turns=len(history))
        names = {gid: g.name for gid in {guild_of(s.collection) for s in ans.sources} - {None, guild_id}
                 if gid is not None and (g := self.bot.get_guild(gid)) is not None}
        msg = guard_limits(format_answer(ans, elapsed_ms=elapsed,
                                         collection_label=lambda c: self.bot.servers.label(c, guild_id, names)))
        key = self.bot.answers.remember(AnswerRecord.from_answer(ans))
        return Reply(ans, msg.content, to_embed(msg), feedback_view(key))

    async def answer_streamed(self, question: str, show: Callable[[str], Awaitable[Any]],
                              remove: Callable[[], Awaitable[Any]], **kwargs: Any) -> tuple[Reply, bool]:
        """``answer_message``, previewing a streamed answer through ``show``; (reply, whether a preview is
        on screen, which the final answer must then replace). A failed question removes its preview."""
        if not self.bot.streams:
            return await self.answer_message(question, **kwargs), False
        preview = StreamPreview(show)
        try:
            reply = await self.answer_message(question, on_token=preview.on_token, **kwargs)
        except Exception:
            await preview.finish()
            if preview.shown:
                with contextlib.suppress(discord.HTTPException):
                    await remove()
            raise
        finally:
            await preview.finish()  # also when cancelled (shutting down): no preview task left behind
        return reply, preview.shown

    # ------------------------------------------------------------------------------- follow-ups

    def history_for(self, channel: Any, reference: discord.MessageReference | None = None) -> tuple[Turn, ...]:
        """The earlier turns of the conversation a question continues (empty when it starts one)."""
        limit = self.bot.history_turns
        if limit <= 0:
            return ()
        memory = self.bot.conversations
        turns: Sequence[Turn] | None = None
        if reference is not None and reference.message_id is not None:
            turns = memory.get("message", reference.message_id)
            if turns is None:  # an answer given before a restart: read its turn back from the message
                resolved = reference.resolved
                me = self.bot.user
                if isinstance(resolved, discord.Message) and me is not None and resolved.author.id == me.id:
                    turn = turn_from_message(resolved)
                    turns = (turn,) if turn is not None else None
        channel_id = getattr(channel, "id", None)
        if turns is None:  # a thread's latest turns, or (thread ids are their starter's id) the answer it began from
            turns = memory.get("thread", channel_id) or memory.get("message", channel_id)
        return tuple(turns or ())[-limit:]

    def remember_turn(self, reply_id: int | None, channel: Any, history: Sequence[Turn], ans: Answer) -> None:
        """Keep this answer's turns under Herald's reply (and its thread's, when the thread is a conversation)."""
        limit = self.bot.history_turns
        if limit <= 0 or reply_id is None:
            return
        memory = self.bot.conversations
        turns = (*history, turn_of(ans))[-limit:]
        memory.remember("message", reply_id, turns)
        channel_id = getattr(channel, "id", None)
        if channel_id is not None and (memory.get("thread", channel_id) is not None
                                       or memory.get("message", channel_id) is not None):
            memory.remember("thread", channel_id, turns)

    # ----------------------------------------------------------------------------------- /ask

    @app_commands.command(name="ask",
                          description="Ask a question about the news articles; the answer quotes its sources.")
    @app_commands.describe(question="Your question, e.g. Who vetoed the resolution?")
    async def ask(self, interaction: discord.Interaction, question: str) -> None:
        started = time.perf_counter()
        refusal, cleaned = self.check(interaction.user.id, interaction.channel, interaction.guild, question)
        if refusal:
            await self.bot.send_notice(refusal, interaction=interaction)
            return
        await interaction.response.defer(thinking=True)  # within Discord's 3 s; the answer follows
        history = self.history_for(interaction.channel)

        async def show(text: str) -> None:
            await interaction.edit_original_response(content=text, allowed_mentions=allowed_mentions())

        reply, previewed = await self.answer_streamed(
            cleaned, show, interaction.delete_original_response, started=started, user_id=interaction.user.id,
            where=where_of(interaction.channel, interaction.guild), via="slash", history=history,
            guild_id=interaction.guild_id)
        if previewed:  # the preview is the deferred response: the answer replaces it
            sent: Any = await interaction.edit_original_response(
                content=reply.content, embed=reply.embed, view=reply.view, allowed_mentions=allowed_mentions())
        else:
            kwargs: dict[str, Any] = {"allowed_mentions": allowed_mentions(), "view": reply.view}
            if reply.embed is not None:
                kwargs["embed"] = reply.embed
            if reply.content:
                kwargs["content"] = reply.content
            sent = await interaction.followup.send(wait=True, **kwargs)
        self.remember_turn(getattr(sent, "id", None), interaction.channel, history, reply.answer)

    # ------------------------------------------------------------------------- mentions and DMs

    def question_from(self, message: discord.Message) -> str | None:
        """The question in a message for the bot, or None when the message is not for it."""
        me = self.bot.user
        if me is None or message.author.bot or message.author.id == me.id or message.webhook_id:
            return None
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return None
        is_dm = message.guild is None
        if not is_dm and not any(u.id == me.id for u in message.mentions):
            return None
        return re.sub(rf"<@!?{me.id}>", " ", message.content or "").strip()

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        started = time.perf_counter()
        raw = self.question_from(message)
        if raw is None:
            return
        try:
            await self._answer_mention(message, raw, started)
        except Exception as exc:  # noqa: BLE001 - the one error handler logs it and replies politely
            await self.bot.report_error(exc, message=message, context="mention")

    async def _answer_mention(self, message: discord.Message, raw: str, started: float) -> None:
        if not raw:
            if self.channel_allowed(message.channel, message.guild):
                await reply_to(message, content=f"Ask me something about the news articles, e.g. "
                                                f"`@{self.bot.user.name} {EXAMPLE}` or `/ask`.")
            else:
                await reply_to(message, content=self.where_allowed())
            return
        refusal, question = self.check(message.author.id, message.channel, message.guild, raw)
        if refusal:
            await self.bot.send_notice(refusal, message=message)
            return
        history = self.history_for(message.channel, message.reference)
        preview: discord.Message | None = None

        async def show(text: str) -> None:
            nonlocal preview
            if preview is None:
                preview = await reply_to(message, content=text)
            else:
                await preview.edit(content=text, allowed_mentions=allowed_mentions())

        async def remove() -> None:
            if preview is not None:
                await preview.delete()

        async with message.channel.typing():
            reply, previewed = await self.answer_streamed(
                question, show, remove, started=started, user_id=message.author.id,
                where=where_of(message.channel, message.guild), via="dm" if message.guild is None else "mention",
                history=history, guild_id=message.guild.id if message.guild is not None else None)
        sent: discord.Message | None = None
        if previewed and preview is not None:  # the answer replaces the preview (content cleared)
            try:
                await preview.edit(content=reply.content, embed=reply.embed, view=reply.view,
                                   allowed_mentions=allowed_mentions())
                sent = preview
            except discord.NotFound:  # someone deleted the preview meanwhile: reply afresh
                pass
        if sent is None:
            sent = await reply_to(message, content=reply.content, embed=reply.embed, view=reply.view)
        self.remember_turn(sent.id, message.channel, history, reply.answer)


@dataclass
class Reply:
    """One answer as Discord shows it, and the Answer it came from (its turn is remembered)."""

    answer: Answer
    content: str | None
    embed: discord.Embed | None
    view: discord.ui.View


async def setup(bot: HeraldBot) -> None:
    """Extension entry point (``HeraldBot.initial_extensions``)."""
    await bot.add_cog(AskingCog(bot))
