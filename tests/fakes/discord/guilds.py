"""Which guilds the bot is in, and taking it out of one (GUILD_DELETE) or putting it back (GUILD_CREATE).

``GuildsMixin`` is one part of :class:`~.server.FakeDiscord` (state in ``FakeDiscord.__init__``:
``removed_guild_ids``). It also resolves where a user acts: a channel and the guild it belongs to.
"""

from __future__ import annotations

from .config import FakeChannel, FakeGuild
from .constants import Intents, now_iso


class GuildsMixin:
    """The bot's guilds, as Discord tells a bot about them."""

    def bot_guild_ids(self) -> list[int]:
        """Guilds the bot is in now (the primary first), in the order it hears of them at connect."""
        return [gid for gid in self.config.guild_ids() if gid not in self.removed_guild_ids]

    def bot_in_guild(self, guild_id: int) -> bool:
        return guild_id in self.config.guild_ids() and guild_id not in self.removed_guild_ids

    def guild(self, ref: FakeGuild | int | None = None) -> FakeGuild:
        """A guild by id or object (default: the primary one)."""
        return self.config.guild(ref.id if isinstance(ref, FakeGuild) else ref)

    async def remove_bot_from_guild(self, guild: FakeGuild | int | None = None, *, timeout: float = 10.0) -> bool:
        """Kick the bot out of a guild (default: the primary one): GUILD_DELETE ``{"id": ...}`` with no
        ``unavailable`` key, as Discord sends it, so discord.py calls ``on_guild_remove``.

        From then on the bot gets no GUILD_CREATE for it on (re)connect, its REST calls to the guild or its
        channels fail with 403 Missing Access, and ``send_message`` / ``send_slash_command`` there raise.
        Returns ``False`` if the session's intents filtered the event (no GUILDS intent).
        """
        gid = self.guild(guild).id
        if gid in self.removed_guild_ids:
            raise AssertionError(f"the bot is not in guild {gid}")
        self.removed_guild_ids.add(gid)
        return await self.dispatch("GUILD_DELETE", {"id": str(gid)}, timeout=timeout)

    async def add_bot_to_guild(self, guild: FakeGuild | int | None = None, *, timeout: float = 10.0) -> bool:
        """Put the bot back into a guild it was removed from: a full GUILD_CREATE without ``unavailable``, as
        Discord sends for a join, so discord.py calls ``on_guild_join``.  Returns ``False`` if the session's
        intents filtered the event."""
        gid = self.guild(guild).id
        if gid not in self.removed_guild_ids:
            raise AssertionError(f"the bot is already in guild {gid}")
        self.removed_guild_ids.discard(gid)
        sess = self.live_session()
        if sess is None:
            sess = await self.wait_until_identified(timeout)
        with_members = sess.intents is None or bool(sess.intents & Intents.GUILD_MEMBERS)
        payload = self.guild_create_payload(include_all_members=with_members, guild_id=gid)
        # a join's GUILD_CREATE has no "unavailable" key: discord.py takes ``False`` for an outage ending
        # (on_guild_available), a missing key for a join (on_guild_join)
        del payload["unavailable"]
        payload["joined_at"] = now_iso()
        return await self.dispatch("GUILD_CREATE", payload, timeout=timeout)

    def _require_bot_in(self, guild_id: int) -> None:
        if not self.bot_in_guild(guild_id):
            raise AssertionError(
                f"the bot is not in guild {guild_id} (removed with remove_bot_from_guild): Discord would not "
                "deliver this; add it back with add_bot_to_guild")

    def _guild_place(self, channel_id: int | None, guild_id: int | None) -> tuple[FakeChannel, int]:
        """(channel, guild id) where a user acts in a guild: ``channel_id`` if given (it must belong to
        ``guild_id`` when both are given), else the first channel of ``guild_id`` (default: the primary)."""
        if channel_id is None:
            channel_id = self.config.guild(guild_id).channel_id
        ch = self.guild_channel(channel_id)
        gid = self.channel_guild_id(channel_id)
        if ch is None or gid is None:
            raise KeyError(f"channel {channel_id} is not a fake guild channel")
        if guild_id is not None and gid != guild_id:
            raise KeyError(f"channel {channel_id} belongs to guild {gid}, not {guild_id}")
        self._require_bot_in(gid)
        return ch, gid
