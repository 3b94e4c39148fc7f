"""/feeds add|remove|list: the news feeds a server follows, polled by the bot's one watcher into that
server's collection only (bot.discord_bot.tasks.FeedWatcher). Adding one polls it at once, so the admin
sees straight away whether it works; changing feeds needs Manage Server, listing them does not.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot.cogs.news import clean_url
from bot.discord_bot.guilds import collection_name
from bot.discord_bot.tasks import poll_collection
from bot.format import neutralise, safe_url
from bot.messages import explain
from index import redact_url

if TYPE_CHECKING:
    from bot.discord_bot.client import HeraldBot

log = logging.getLogger("herald.bot")
MAX_FEED_URL = 2048


def every(seconds: float) -> str:
    """``every 15 min`` (or ``every 20 s``, ``every 2 h``): how often the watcher polls, as people say it."""
    if seconds < 90:
        return f"every {seconds:.0f} s"
    if seconds < 5400:
        return f"every {seconds / 60:.0f} min"
    return f"every {seconds / 3600:.1f} h".replace(".0 h", " h")


def _shown(url: str) -> str:
    link = safe_url(url)
    return f"<{link}>" if link else neutralise(url)


class FeedsCog(commands.GroupCog, group_name="feeds", group_description="The news feeds this server follows."):
    def __init__(self, bot: HeraldBot) -> None:
        self.bot = bot

    @app_commands.command(name="add", description="Follow an RSS or Atom feed: its articles join this server's "
                                                   "(Manage Server).")
    @app_commands.describe(url="The feed's address (http:// or https://)")
    @app_commands.guild_only()
    async def add(self, interaction: discord.Interaction, url: str) -> None:
        if not await self.bot.manager_only(interaction, "change this server's feeds"):
            return
        gid, url = int(interaction.guild_id or 0), clean_url(url)
        if not url.lower().startswith(("http://", "https://")) or len(url) > MAX_FEED_URL or any(c.isspace()
                                                                                                  for c in url):
            await self.bot.send_notice("That is not a feed address: give one starting with http:// or https://.",
                                       interaction=interaction)
            return
        servers = self.bot.servers
        refusal = servers.follow(gid, interaction.guild.name if interaction.guild else None, url)
        if refusal:
            await self.bot.send_notice(refusal, interaction=interaction)
            return
        log.info("/feeds add by user=%s in server %s: %s", interaction.user.id, gid, redact_url(url))
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.feed_watcher.lock(collection_name(gid)):  # never beside the watcher's poll of it
            await self._first_poll(interaction, gid, url)
        self.bot.feed_watcher.start()  # it may have had nothing to watch until now

    async def _first_poll(self, interaction: discord.Interaction, gid: int, url: str) -> None:
        servers, name, s = self.bot.servers, collection_name(gid), self.bot.settings
        room = servers.room(gid)
        head = f"Following {_shown(url)}."
        if not room:
            await self.bot.send_notice(f"{head} This server has its {s.guild_max_articles} articles, so nothing is "
                                       f"fetched until some are removed with /forget.", interaction=interaction)
            return
        [res] = await self.bot.run_fetch(poll_collection, s, name, servers.store.folder(name), [url],
                                         servers.store.feed_state(name), min(s.feed_max_items, room))
        if res.error is not None:
            await self.bot.send_notice(f"{head} Its first poll failed: {explain(res.error)} I'll keep trying "
                                       f"{every(s.feed_interval)}; `/feeds remove` stops it.",
                                       interaction=interaction)
            return
        if not res.changed:
            await self.bot.send_notice(f"{head} No new articles in it yet; I check it {every(s.feed_interval)}.",
                                       interaction=interaction)
            return

        async def report(summary: str) -> None:
            await interaction.followup.send(summary, ephemeral=True)

        await self.bot.send_notice(f"{head} {res.changed} article(s) added to this server's articles; updating the "
                                   f"index, and I'll tell you here when it is in use.", interaction=interaction)
        self.bot.reindex_soon(done=report, collections=[name])

    @app_commands.command(name="remove", description="Stop following a feed (Manage Server); its articles stay "
                                                      "until removed with /forget.")
    @app_commands.describe(url="The feed's address, as listed by /feeds list")
    @app_commands.guild_only()
    async def remove(self, interaction: discord.Interaction, url: str) -> None:
        if not await self.bot.manager_only(interaction, "change this server's feeds"):
            return
        gid = int(interaction.guild_id or 0)
        if not self.bot.servers.unfollow(gid, clean_url(url)):
            await self.bot.send_notice("This server does not follow that feed (see `/feeds list`).",
                                       interaction=interaction)
            return
        log.info("/feeds remove by user=%s in server %s: %s", interaction.user.id, gid, redact_url(clean_url(url)))
        await self.bot.send_notice(f"No longer following {_shown(clean_url(url))}. The articles it brought stay "
                                   f"until removed with `/forget`.", interaction=interaction)

    @app_commands.command(name="list", description="The feeds this server follows.")
    @app_commands.guild_only()
    async def list_feeds(self, interaction: discord.Interaction) -> None:
        feeds = self.bot.servers.feeds(int(interaction.guild_id or 0))
        limit = self.bot.settings.guild_max_feeds
        if not feeds:
            await self.bot.send_notice(f"This server follows no feeds (it may follow up to {limit}); "
                                       f"add one with `/feeds add`.", interaction=interaction)
            return
        lines = [f"This server follows {len(feeds)} of at most {limit} feed(s):"]
        lines += [f"{i}. {_shown(f)}" for i, f in enumerate(feeds, 1)]
        await self.bot.send_notice("\n".join(lines), interaction=interaction)


async def setup(bot: HeraldBot) -> None:
    """Extension entry point (``HeraldBot.initial_extensions``)."""
    await bot.add_cog(FeedsCog(bot))
