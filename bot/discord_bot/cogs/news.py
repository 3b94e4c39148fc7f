"""News in from Discord, into each server's own collection (``guild-<id>``, bot.discord_bot.guilds):
/add <url> and /forget <url> (Manage Server), /feeds add|remove|list (in bot.discord_bot.cogs.feeds).
Over a quota (articles, /adds an hour) the command says so and changes nothing.

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

from bot.discord_bot.guilds import collection_name
from bot.format import neutralise
from bot.messages import add_result
from index import add_url, redact_url

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
    """/add and /forget (Manage Server), /feeds: each server's own articles, in its own collection."""

    def __init__(self, bot: HeraldBot) -> None:
        self.bot = bot

    @app_commands.command(name="add", description="Add a news article to this server's articles by its web "
                                                   "address, then update the index (Manage Server).")
    @app_commands.describe(url="The article's address (http:// or https://)")
    @app_commands.default_permissions(manage_guild=True)  # hidden from others in the client...
    @app_commands.guild_only()
    async def add(self, interaction: discord.Interaction, url: str) -> None:
        if not await self.bot.manager_only(interaction, "add articles"):  # ...and checked here too
            return
        gid, url = int(interaction.guild_id or 0), clean_url(url)
        servers = self.bot.servers
        refusal = servers.add_refusal(gid, url)
        if refusal:
            await self.bot.send_notice(refusal, interaction=interaction)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        servers.record_add(gid, interaction.guild.name if interaction.guild else None)
        name = collection_name(gid)
        res = await self.bot.run_fetch(add_url, servers.store.folder(name), url, self.bot.settings.fetch)
        # The title and outlet came from the page: shown as text, never as Markdown or a link.
        line = add_result(dataclasses.replace(res, title=neutralise(res.title), outlet=neutralise(res.outlet or "")))
        log.info("/add by user=%s in server %s: %s %s%s", interaction.user.id, gid, res.status, res.url,
                 f" -> {res.path}" if res.path else "")
        if not res.changed:
            await self.bot.send_notice(line, interaction=interaction)
            return
        await self._update(interaction, f"{line} to this server's articles", name)

    async def _update(self, interaction: discord.Interaction, line: str, name: str) -> None:
        """Rebuild the server's collection in the background and say so; the result follows privately."""
        async def report(summary: str) -> None:
            await interaction.followup.send(summary, ephemeral=True)

        busy = self.bot.reindexing
        await self.bot.send_notice(
            f"{line}. Updating the index" + (" after the rebuild already running" if busy else "")
            + "; I keep answering meanwhile and will tell you here when the new index is in use.",
            interaction=interaction)
        self.bot.reindex_soon(done=report, collections=[name])

    @app_commands.command(name="forget", description="Remove an article this server added (Manage Server).")
    @app_commands.describe(url="The article's address, as it was added")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    async def forget(self, interaction: discord.Interaction, url: str) -> None:
        if not await self.bot.manager_only(interaction, "remove articles"):
            return
        name = collection_name(int(interaction.guild_id or 0))
        removed = self.bot.servers.store.forget(name, clean_url(url))  # [] when the server has added nothing
        log.info("/forget by user=%s in %s: %s (%d file(s))", interaction.user.id, name, redact_url(clean_url(url)),
                 len(removed))
        if not removed:
            await self.bot.send_notice("This server has not added an article with that address (see `/sources`); "
                                       "nothing was removed.", interaction=interaction)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self._update(interaction, f"Removed {len(removed)} article(s) from this server's articles", name)


async def setup(bot: HeraldBot) -> None:
    """Extension entry point (``HeraldBot.initial_extensions``)."""
    await bot.add_cog(NewsCog(bot))
