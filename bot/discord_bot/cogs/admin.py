"""Operators' commands: /reindex (Manage Server only) and /sources."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.format import format_sources

if TYPE_CHECKING:
    from bot.discord_bot.client import HeraldBot


class AdminCog(commands.Cog):
    def __init__(self, bot: HeraldBot) -> None:
        self.bot = bot

    @app_commands.command(name="reindex",
                          description="Rebuild the article index from the corpus folder (Manage Server).")
    @app_commands.default_permissions(manage_guild=True)  # hidden from others in the client...
    @app_commands.guild_only()
    async def reindex(self, interaction: discord.Interaction) -> None:
        # ...and checked here too: server admins can override default permissions per channel or role.
        if not interaction.permissions.manage_guild:
            await self.bot.send_notice("Only members with the Manage Server permission can rebuild the index.",
                                       interaction=interaction)
            return

        async def report(summary: str) -> None:
            await interaction.followup.send(summary, ephemeral=True)

        if not self.bot.start_reindex(done=report):
            await self.bot.send_notice("A rebuild is already running; I'll use the new index as soon as it is ready.",
                                       interaction=interaction)
            return
        await self.bot.send_notice("Rebuilding the index in the background; I keep answering questions meanwhile "
                                   "and will tell you here when it is done.", interaction=interaction)

    @app_commands.command(name="sources", description="List the news articles Herald answers from.")
    async def sources(self, interaction: discord.Interaction) -> None:
        from bot.messages import source_label

        docs = self.bot.engine.documents()
        msg = format_sources([(d.title, d.url, source_label(d.outlet, d.date) if (d.outlet or d.date) else "")
                              for d in docs])
        await self.bot.send_notice(msg.content or "", interaction=interaction)


async def setup(bot: HeraldBot) -> None:
    """Extension entry point (``HeraldBot.initial_extensions``)."""
    await bot.add_cog(AdminCog(bot))
