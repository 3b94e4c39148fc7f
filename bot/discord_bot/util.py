"""Small Discord helpers shared by the client (``bot.discord_bot.client``) and the cogs.

A leaf module (only discord, the stdlib, ``bot.format`` and ``bot.messages``), so the cogs can use these helpers
without importing the client, which loads the cogs: that was an import cycle.
"""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot.format import NO_MENTIONS, OutgoingMessage, check_limits
from bot.messages import polite

__all__ = ["allowed_mentions", "guard_limits", "polite", "reply_to", "to_embed", "where_of"]

log = logging.getLogger("herald.bot")


def allowed_mentions() -> discord.AllowedMentions:
    """Ping nobody: no @everyone/@here, no roles, no users, not even the person replied to."""
    return discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=False)


assert NO_MENTIONS["parse"] == []  # the JSON twin of allowed_mentions() used by the pure formatter


def to_embed(msg: OutgoingMessage) -> discord.Embed | None:
    return discord.Embed.from_dict(msg.embed) if msg.embed else None


def where_of(channel: Any, guild: Any) -> str:
    """Where a question was asked, for the log line."""
    if guild is None:
        return "dm"
    return f"guild:{guild.id}/channel:{getattr(channel, 'id', '?')}"


async def reply_to(message: discord.Message, *, content: str | None = None, embed: discord.Embed | None = None,
                   view: discord.ui.View | None = None) -> discord.Message:
    """Reply without pinging anyone; if the question was deleted meanwhile, just send to the channel."""
    kwargs: dict[str, Any] = {"content": content, "embed": embed, "allowed_mentions": allowed_mentions()}
    if view is not None:
        kwargs["view"] = view
    try:
        return await message.reply(mention_author=False, **kwargs)
    except discord.HTTPException as exc:
        if exc.status != 400:
            raise
        return await message.channel.send(**kwargs)


def guard_limits(msg: OutgoingMessage) -> OutgoingMessage:
    """Last line of defence: a message that would be rejected is logged and replaced by a short notice."""
    problems = check_limits(msg)
    if problems:  # pragma: no cover - format_answer is tested to never do this
        log.error("answer message breaks Discord limits (%s); sending a notice instead", "; ".join(problems))
        return OutgoingMessage(content="Sorry, I could not fit that answer into a Discord message.")
    return msg
