"""The guilds as Discord describes them: users and members, roles and permissions, channels, threads and DMs.

``WorldMixin`` is one part of :class:`~.server.FakeDiscord`; the state it reads (``config``, ``threads``,
``_dm_channels``, ``snowflakes``) is set up in ``FakeDiscord.__init__``.  Every guild-scoped method takes a
``guild_id`` (``None``: the primary guild ``config.guild_id``), so one-guild callers need not name it.
"""

from __future__ import annotations

from .config import FakeChannel, FakeUser
from .constants import JSON, MISSING_ACCESS, UNKNOWN_CHANNEL, Perm, now_iso
from .records import DiscordAPIError


class WorldMixin:
    """Who and what exists in the fake guilds, and their payloads."""

    def user(self, ref: FakeUser | int | str | None = None) -> FakeUser:
        """Resolve a user reference; default is the plain member ``config.user``."""
        if ref is None:
            return self.config.user
        if isinstance(ref, FakeUser):
            return ref
        uid = int(ref)
        for u in self.config.all_users():
            if u.id == uid:
                return u
        raise KeyError(f"unknown fake user {ref!r}")

    def _maybe_user(self, uid: int) -> FakeUser | None:
        try:
            return self.user(uid)
        except KeyError:
            return None

    def role_permissions(self, user: FakeUser, guild_id: int | None = None) -> int:
        """Guild-level permissions of ``user`` in a guild (owner/admin => everything)."""
        cfg = self.config
        guild = cfg.guild(guild_id)
        if user.id == guild.owner.id:
            return Perm.ALL
        if user.id == cfg.bot.id:
            return guild.app_permissions if guild.app_permissions is not None else cfg.app_permissions
        perms = guild.everyone_permissions
        held = cfg.member_role_ids(user, guild_id)
        for role in cfg.roles(guild_id):
            if role.id in held:
                perms |= role.permissions
        if perms & Perm.ADMINISTRATOR:
            return Perm.ALL
        return perms

    def member_payload(self, user: FakeUser, *, with_user: bool = True, permissions: int | None = None,
                       guild_id: int | None = None) -> dict[str, JSON]:
        """``user`` as a member of a guild (its roles there)."""
        data: dict[str, JSON] = {
            "roles": [str(r) for r in self.config.member_role_ids(user, guild_id)],
            "joined_at": "2024-01-01T00:00:00+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": user.nick,
            "avatar": None,
            "banner": None,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = user.payload()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data

    def role_payloads(self, guild_id: int | None = None) -> list[dict[str, JSON]]:
        return [
            {
                "id": str(r.id),
                "name": r.name,
                "permissions": str(r.permissions),
                "position": r.position,
                "color": 0,
                "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
                "hoist": False,
                "managed": False,
                "mentionable": False,
                "icon": None,
                "unicode_emoji": None,
                "flags": 0,
            }
            for r in self.config.roles(guild_id)
        ]

    def _all_guild_channels(self) -> list[FakeChannel]:
        """Channels of every guild, and the threads the bot made."""
        extra = [c for g in self.config.extra_guilds for c in g.channels]
        return [*self.config.channels, *extra, *self.threads.values()]

    def channel_guild_id(self, channel_id: int) -> int | None:
        """The guild a channel (or a thread, by its parent) belongs to; ``None`` if it is no guild channel."""
        thread = self.threads.get(channel_id)
        if thread is not None and thread.parent_id is not None:
            channel_id = thread.parent_id
        if any(c.id == channel_id for c in self.config.channels):
            return self.config.guild_id
        for g in self.config.extra_guilds:
            if any(c.id == channel_id for c in g.channels):
                return g.id
        return None

    def guild_channel(self, channel_id: int) -> FakeChannel | None:
        for ch in self._all_guild_channels():
            if ch.id == channel_id:
                return ch
        return None

    def channel_payload(self, channel: FakeChannel) -> dict[str, JSON]:
        data: dict[str, JSON] = {
            "id": str(channel.id),
            "type": channel.type,
            "name": channel.name,
            "position": channel.position,
            "guild_id": str(self.channel_guild_id(channel.id) or self.config.guild_id),
            "permission_overwrites": [],
            "nsfw": channel.nsfw,
            "parent_id": str(channel.parent_id) if channel.parent_id else None,
            "topic": channel.topic,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if channel.type in (10, 11, 12):
            data.update(
                owner_id=str(self.config.bot.id),
                member_count=1,
                message_count=0,
                total_message_sent=0,
                thread_metadata={
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": now_iso(),
                    "locked": False,
                },
            )
        return data

    def dm_channel_id(self, user: FakeUser | int | None = None) -> int:
        """The (stable) DM channel id between the bot and ``user``."""
        u = self.user(user)
        if u.id not in self._dm_channels:
            self._dm_channels[u.id] = self.snowflakes.next()
        return self._dm_channels[u.id]

    def dm_channel_payload(self, user: FakeUser) -> dict[str, JSON]:
        return {
            "id": str(self.dm_channel_id(user)),
            "type": 1,
            "last_message_id": None,
            "flags": 0,
            "recipients": [user.payload()],
        }

    def _dm_user_for_channel(self, channel_id: int) -> FakeUser | None:
        for uid, cid in self._dm_channels.items():
            if cid == channel_id:
                return self.user(uid)
        return None

    def _channel_guild_id(self, channel_id: int, *, require_bot: bool = True) -> int | None:
        """Guild id for a guild channel, ``None`` for a DM; 404 if unknown, 403 (Missing Access) if the
        channel's guild no longer has the bot (``require_bot``)."""
        if self.guild_channel(channel_id) is not None:
            gid = self.channel_guild_id(channel_id)
            if require_bot and gid is not None and not self.bot_in_guild(gid):
                raise DiscordAPIError(403, MISSING_ACCESS, "Missing Access")
            return gid
        if self._dm_user_for_channel(channel_id) is not None:
            return None
        raise DiscordAPIError(404, UNKNOWN_CHANNEL, "Unknown Channel")

    def guild_members(self, guild_id: int | None = None) -> list[FakeUser]:
        """Members of a guild (default: the primary one), the bot included."""
        return self.config.guild_members(guild_id)

    def is_member(self, user: FakeUser, guild_id: int | None = None) -> bool:
        return any(u.id == user.id for u in self.guild_members(guild_id))

    def guild_create_payload(self, *, include_all_members: bool = True,
                             guild_id: int | None = None) -> dict[str, JSON]:
        """The GUILD_CREATE of a guild (default: the primary one)."""
        cfg = self.config
        guild = cfg.guild(guild_id)
        members = self.guild_members(guild.id)
        shown = members if include_all_members else [cfg.bot]
        threads = [t for t in self.threads.values() if self.channel_guild_id(t.id) == guild.id]
        return {
            "id": str(guild.id),
            "name": guild.name,
            **_guild_settings(),
            "owner_id": str(guild.owner.id),
            "preferred_locale": guild.locale,
            "roles": self.role_payloads(guild.id),
            "channels": [self.channel_payload(c) for c in guild.channels],
            "threads": [self.channel_payload(t) for t in threads],
            "members": [self.member_payload(u, guild_id=guild.id) for u in shown],
            "member_count": len(members),
            **_guild_empty_lists(),
            "incidents_data": None,
            "large": False,
            "unavailable": False,
            "lazy": True,
            "joined_at": "2024-01-01T00:00:00+00:00",
        }


def _guild_settings() -> dict[str, JSON]:
    """The guild's fixed settings: no icon, no boosts, no verification, no special channels."""
    return {
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "premium_progress_bar_enabled": False,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "vanity_url_code": None,
        "application_id": None,
        "max_members": 500000,
        "max_video_channel_users": 25,
        "features": [],
    }


def _guild_empty_lists() -> dict[str, JSON]:
    """What the fake guild has none of (a fresh dict each time: discord.py may keep the lists)."""
    keys = ("emojis", "stickers", "presences", "voice_states", "stage_instances", "guild_scheduled_events",
            "soundboard_sounds")
    return {key: [] for key in keys}
