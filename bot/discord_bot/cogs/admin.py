"""Operators' commands: /reindex (Manage Server only: the server's own collection) and /sources (what the
server can see, its own articles first)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot.guilds import collection_name
from bot.format import format_sources
from index import BASE_COLLECTION, DocumentInfo

if TYPE_CHECKING:
    from bot.discord_bot.client import HeraldBot


class AdminCog(commands.Cog):
    def __init__(self, bot: HeraldBot) -> None:
        self.bot = bot

    @app_commands.command(name="reindex",
                          description="Rebuild this server's articles in the index (Manage Server).")
    @app_commands.default_permissions(manage_guild=True)  # hidden from others in the client...
    @app_commands.guild_only()
    async def reindex(self, interaction: discord.Interaction) -> None:
        if not await self.bot.manager_only(interaction, "rebuild the index"):  # ...and checked here too
            return

        async def report(summary: str) -> None:
            await interaction.followup.send(summary, ephemeral=True)

        scope = self.rebuilt_by(interaction.guild_id)
        if self.bot.start_reindex(done=report, collections=scope):
            await self.bot.send_notice("Rebuilding this server's articles in the background; I keep answering "
                                       "questions meanwhile and will tell you here when it is done.",
                                       interaction=interaction)
            return
        self.bot.reindex_soon(done=report, collections=scope)
        await self.bot.send_notice("A rebuild is already running; this server's articles are rebuilt right after "
                                   "it, and I'll tell you here when that is done.", interaction=interaction)

    def rebuilt_by(self, guild_id: int | None) -> list[str]:
        """What /reindex rebuilds: the server's own collection; in the operator's server (HERALD_DEV_GUILD_ID)
        the operator's corpus (``base``) too. Another server's articles are never touched."""
        own = [collection_name(int(guild_id or 0))]
        operator = guild_id is not None and guild_id == self.bot.settings.dev_guild_id
        return [BASE_COLLECTION, *own] if operator else own

    @app_commands.command(name="sources", description="List the news articles Herald answers from here.")
    async def sources(self, interaction: discord.Interaction) -> None:
        from bot.messages import source_label

        gid = interaction.guild_id
        scope = self.bot.servers.scope(gid)
        own = [c for c in scope if c != BASE_COLLECTION]
        docs = self.bot.engine.documents(own) + (self.bot.engine.documents([BASE_COLLECTION])
                                                 if BASE_COLLECTION in scope else [])

        def label(d: DocumentInfo) -> str:
            where = self.bot.servers.label(d.collection, gid)
            return " · ".join(p for p in (where, source_label(d.outlet, d.date) if (d.outlet or d.date) else "") if p)

        msg = format_sources([(d.title, d.url, label(d)) for d in docs])
        await self.bot.send_notice(msg.content or "", interaction=interaction)


async def setup(bot: HeraldBot) -> None:
    """Extension entry point (``HeraldBot.initial_extensions``)."""
    await bot.add_cog(AdminCog(bot))
