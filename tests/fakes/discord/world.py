"""The guild as Discord describes it: users and members, roles and permissions, channels, threads and DMs.

``WorldMixin`` is one part of :class:`~.server.FakeDiscord`; the state it reads (``config``, ``threads``,
``_dm_channels``, ``snowflakes``) is set up in ``FakeDiscord.__init__``.
"""

from __future__ import annotations

from .config import FakeChannel, FakeUser
from .constants import JSON, UNKNOWN_CHANNEL, Perm, now_iso
from .records import DiscordAPIError


class WorldMixin:
    """Who and what exists in the fake guild, and their payloads."""

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

    def role_permissions(self, user: FakeUser) -> int:
        """Guild-level permissions of ``user`` (owner/admin => everything)."""
        cfg = self.config
        if user.id == cfg.owner.id:
            return Perm.ALL
        if user.id == cfg.bot.id:
            return cfg.app_permissions
        perms = cfg.everyone_permissions
        for role in cfg.roles():
            if role.id in user.role_ids:
                perms |= role.permissions
        if perms & Perm.ADMINISTRATOR:
            return Perm.ALL
        return perms

    def member_payload(self, user: FakeUser, *, with_user: bool = True,
                       permissions: int | None = None) -> dict[str, JSON]:
        data: dict[str, JSON] = {
            "roles": [str(r) for r in user.role_ids],
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

    def role_payloads(self) -> list[dict[str, JSON]]:
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
            for r in self.config.roles()
        ]

    def _all_guild_channels(self) -> list[FakeChannel]:
        return [*self.config.channels, *self.threads.values()]

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
            "guild_id": str(self.config.guild_id),
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

    def _channel_guild_id(self, channel_id: int) -> int | None:
        """Guild id for a guild channel, ``None`` for a DM; 404 if unknown."""
        if self.guild_channel(channel_id) is not None:
            return self.config.guild_id
        if self._dm_user_for_channel(channel_id) is not None:
            return None
        raise DiscordAPIError(404, UNKNOWN_CHANNEL, "Unknown Channel")

    def guild_members(self) -> list[FakeUser]:
        return [u for u in self.config.all_users() if u.in_guild]

    def guild_create_payload(self, *, include_all_members: bool = True) -> dict[str, JSON]:
        cfg = self.config
        members = self.guild_members()
        shown = members if include_all_members else [cfg.bot]
        return {
            "id": str(cfg.guild_id),
            "name": cfg.guild_name,
            **_guild_settings(),
            "owner_id": str(cfg.owner.id),
            "preferred_locale": cfg.locale,
            "roles": self.role_payloads(),
            "channels": [self.channel_payload(c) for c in cfg.channels],
            "threads": [self.channel_payload(t) for t in self.threads.values()],
            "members": [self.member_payload(u) for u in shown],
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
