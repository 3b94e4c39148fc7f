"""Asking: the /ask slash command, and messages that mention the bot or are sent to it directly.

Every question goes through the same gate, in this order: the channel allowlist, the question itself
(empty, too long, only control characters: a polite reply), then the per-user cooldown. Refusals are
private for /ask (ephemeral) and short replies for mentions.
"""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_util import allowed_mentions, guard_limits, polite, reply_to, to_embed, where_of
from bot.format import format_answer
from index import QuestionError, clean_question

if TYPE_CHECKING:
    from bot.discord_app import HeraldBot

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

    def __init__(self, bot: "HeraldBot") -> None:
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
        self.cooldowns.mark(user_id)
        return None, question

    async def answer_message(self, question: str, *, started: float, user_id: int, where: str,
                             via: str) -> tuple[discord.Embed | None, discord.ui.View, str | None]:
        from bot.cogs.feedback import feedback_view
        from bot.feedback import AnswerRecord

        ans = await self.bot.answer(question)
        elapsed = (time.perf_counter() - started) * 1000
        self.bot.log_question(ans, user_id=user_id, where=where, via=via, elapsed_ms=elapsed)
        msg = guard_limits(format_answer(ans, elapsed_ms=elapsed))
        key = self.bot.answers.remember(AnswerRecord.from_answer(ans))
        return to_embed(msg), feedback_view(key), msg.content

    # ----------------------------------------------------------------------------------- /ask

    @app_commands.command(name="ask", description="Ask a question about the news articles; the answer quotes its sources.")
    @app_commands.describe(question="Your question, e.g. Who vetoed the resolution?")
    async def ask(self, interaction: discord.Interaction, question: str) -> None:
        started = time.perf_counter()
        refusal, cleaned = self.check(interaction.user.id, interaction.channel, interaction.guild, question)
        if refusal:
            await self.bot.send_notice(refusal, interaction=interaction)
            return
        await interaction.response.defer(thinking=True)  # within Discord's 3 s; the answer follows
        embed, view, content = await self.answer_message(
            cleaned, started=started, user_id=interaction.user.id,
            where=where_of(interaction.channel, interaction.guild), via="slash")
        kwargs: dict[str, Any] = {"allowed_mentions": allowed_mentions(), "view": view}
        if embed is not None:
            kwargs["embed"] = embed
        if content:
            kwargs["content"] = content
        await interaction.followup.send(**kwargs)

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
        async with message.channel.typing():
            embed, view, content = await self.answer_message(
                question, started=started, user_id=message.author.id,
                where=where_of(message.channel, message.guild), via="dm" if message.guild is None else "mention")
        await reply_to(message, content=content, embed=embed, view=view)


async def setup(bot: "HeraldBot") -> None:
    """Extension entry point (``HeraldBot.initial_extensions``)."""
    await bot.add_cog(AskingCog(bot))
