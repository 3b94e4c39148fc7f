"""News in from Discord: /add <url> (Manage Server only) fetches one article into the corpus and updates the index.

The fetch runs in the bot's fetch pool (``HeraldBot.run_fetch``; ``index.add_url``: the outbound policy,
extraction, size and time limits, polite errors), never in the threads that answer, so the bot keeps
answering meanwhile. When the article is new or changed, the index is rebuilt in the background
(``HeraldBot.reindex_soon``) and the person who added it is told, privately, when the new index is in use.
The feed watcher (``bot.discord_bot.tasks.FeedWatcher``) does the same for ``HERALD_FEEDS``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.format import neutralise
from bot.messages import add_result
from index import add_url

if TYPE_CHECKING:
    from bot.discord_bot.client import HeraldBot

log = logging.getLogger("herald.bot")


def clean_url(text: str) -> str:
    """The URL as typed, without the white space or the ``<...>`` people put round links to hide a preview."""
    url = text.strip()
    if url.startswith("<") and url.endswith(">"):
        url = url[1:-1].strip()
    return url


class NewsCog(commands.Cog):
    def __init__(self, bot: HeraldBot) -> None:
        self.bot = bot

    @app_commands.command(name="add", description="Add a news article by its web address, then update the index "
                                                   "(Manage Server).")
    @app_commands.describe(url="The article's address (http:// or https://)")
    @app_commands.default_permissions(manage_guild=True)  # hidden from others in the client...
    @app_commands.guild_only()
    async def add(self, interaction: discord.Interaction, url: str) -> None:
        # ...and checked here too: server admins can override default permissions per channel or role.
        if not interaction.permissions.manage_guild:
            await self.bot.send_notice("Only members with the Manage Server permission can add articles.",
                                       interaction=interaction)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        settings = self.bot.settings
        res = await self.bot.run_fetch(add_url, settings.corpus_dir, clean_url(url), settings.fetch)
        # The title and outlet came from the page: shown as text, never as Markdown or a link.
        line = add_result(dataclasses.replace(res, title=neutralise(res.title), outlet=neutralise(res.outlet or "")))
        log.info("/add by user=%s: %s %s%s", interaction.user.id, res.status, res.url,
                 f" -> {res.path}" if res.path else "")
        if not res.changed:
            await self.bot.send_notice(line, interaction=interaction)
            return

        async def report(summary: str) -> None:
            await interaction.followup.send(summary, ephemeral=True)

        busy = self.bot.reindexing
        await self.bot.send_notice(
            f"{line}. Updating the index" + (" after the rebuild already running" if busy else "")
            + "; I keep answering meanwhile and will tell you here when the new index is in use.",
            interaction=interaction)
        self.bot.reindex_soon(done=report)


async def setup(bot: HeraldBot) -> None:
    """Extension entry point (``HeraldBot.initial_extensions``)."""
    await bot.add_cog(NewsCog(bot))
