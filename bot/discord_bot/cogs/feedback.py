"""👍/👎 under each answer. The buttons are dynamic items (``herald:fb:<up|down>:<key>``), registered at
startup, so a click is handled even after the bot restarted: the record comes from memory, or else is
read back from the answer message itself.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

import discord

from bot.discord_bot.feedback import AnswerRecord
from bot.format import CITED_MARK, TENTATIVE_LEAD
from bot.messages import ABSTAIN_MESSAGE

if TYPE_CHECKING:
    from bot.discord_bot.client import HeraldBot

VOTES = {"up": "\N{THUMBS UP SIGN}", "down": "\N{THUMBS DOWN SIGN}"}


class FeedbackButton(discord.ui.DynamicItem[discord.ui.Button],
                     template=r"herald:fb:(?P<vote>up|down):(?P<key>[0-9a-f]{1,32})"):
    def __init__(self, vote: str, key: str) -> None:
        super().__init__(discord.ui.Button(style=discord.ButtonStyle.secondary, emoji=VOTES[vote],
                                           custom_id=f"herald:fb:{vote}:{key}"))
        self.vote = vote
        self.key = key

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> FeedbackButton:
        return cls(match["vote"], match["key"])

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        bot: HeraldBot = interaction.client  # type: ignore[assignment]
        try:
            record = bot.answers.get(self.key) or record_from_message(interaction.message)
            await asyncio.to_thread(
                bot.feedback.append, self.vote, record, user_id=interaction.user.id,
                channel_id=interaction.channel_id, guild_id=interaction.guild_id,
                message_id=interaction.message.id if interaction.message else None)
            thanks = "Thanks, glad it helped!" if self.vote == "up" else "Thanks, noted: that answer missed."
            await bot.send_notice(thanks, interaction=interaction)
        except Exception as exc:  # noqa: BLE001 - the one error handler
            await bot.report_error(exc, interaction=interaction, context="feedback button")


def feedback_view(key: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(FeedbackButton("up", key))
    view.add_item(FeedbackButton("down", key))
    return view


def record_from_message(message: discord.Message | None) -> AnswerRecord:
    """After a restart: what the answer message shows (question in the title, answer, source titles)."""
    if message is None or not message.embeds:
        return AnswerRecord(question="", answer="", abstained=False)
    e = message.embeds[0]
    desc = e.description or ""
    abstained = desc.startswith(ABSTAIN_MESSAGE)
    tentative = desc.startswith(TENTATIVE_LEAD)
    if tentative:
        desc = desc[len(TENTATIVE_LEAD):]
    sources = [(f.name or "").removesuffix(CITED_MARK) for f in e.fields]
    return AnswerRecord(question=e.title or "", answer="" if abstained else desc, abstained=abstained,
                        sources=sources, tentative=tentative)


async def setup(bot: HeraldBot) -> None:
    """Extension entry point: registering the dynamic item keeps buttons working after a restart."""
    bot.add_dynamic_items(FeedbackButton)


async def teardown(bot: HeraldBot) -> None:
    """Unloading the extension removes its cogs but not dynamic items, so drop the button here."""
    bot.remove_dynamic_items(FeedbackButton)
