"""The fake world a test can tweak: users, channels, roles and the guild around them (``FakeDiscordConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .constants import JSON, Perm


@dataclass
class FakeUser:
    """A user (and, if ``in_guild``, a member of the fake guild)."""

    id: int
    username: str
    bot: bool = False
    global_name: str | None = None
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    in_guild: bool = True

    def payload(self) -> dict[str, JSON]:
        """User object as Discord sends it (no avatar, so no CDN access)."""
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass
class FakeChannel:
    """A guild channel (type 0 = text, 4 = category, 11 = public thread...)."""

    id: int
    name: str
    type: int = 0
    position: int = 0
    topic: str | None = None
    parent_id: int | None = None
    nsfw: bool = False


@dataclass
class FakeRole:
    """A guild role; ``permissions`` is an int bitfield (see :class:`Perm`)."""

    id: int
    name: str
    permissions: int
    position: int = 1


def _default_bot() -> FakeUser:
    return FakeUser(1300000000000000002, "herald", bot=True, global_name="Herald")


def _default_channels() -> list[FakeChannel]:
    return [
        FakeChannel(1300000000000000201, "general", position=0, topic="General chat"),
        FakeChannel(1300000000000000202, "off-topic", position=1, topic="Another text channel"),
    ]


@dataclass
class FakeDiscordConfig:
    """Everything about the fake world that tests may want to tweak.

    Defaults: one guild with two text channels, an owner, ``admin`` (has a
    role with Manage Server 0x20), ``user`` (plain member), ``other_bot`` (a
    bot member) and ``outsider`` (not in the guild; DM only).  The bot user id
    differs from the application id on purpose, to catch code mixing them up.
    """

    application_id: int = 1300000000000000001
    application_name: str = "Herald"
    bot: FakeUser = field(default_factory=_default_bot)
    guild_id: int = 1300000000000000100
    guild_name: str = "Herald Test Guild"
    channels: list[FakeChannel] = field(default_factory=_default_channels)
    moderator_role_id: int = 1300000000000000400
    everyone_permissions: int = Perm.EVERYONE_DEFAULT
    moderator_permissions: int = Perm.MODERATOR_DEFAULT
    extra_roles: list[FakeRole] = field(default_factory=list)
    owner: FakeUser = field(
        default_factory=lambda: FakeUser(1300000000000000301, "owner", global_name="Guild Owner")
    )
    admin: FakeUser = field(
        default_factory=lambda: FakeUser(
            1300000000000000302, "alice", global_name="Alice (mod)", role_ids=[1300000000000000400]
        )
    )
    user: FakeUser = field(default_factory=lambda: FakeUser(1300000000000000303, "bob", global_name="Bob"))
    other_bot: FakeUser = field(
        default_factory=lambda: FakeUser(1300000000000000304, "otherbot", bot=True, global_name="Other Bot")
    )
    outsider: FakeUser = field(
        default_factory=lambda: FakeUser(1300000000000000305, "carol", global_name="Carol", in_guild=False)
    )
    extra_users: list[FakeUser] = field(default_factory=list)
    #: the only token accepted (``None``: accept anything not in ``bad_tokens``)
    token: str | None = "fake-bot-token"
    bad_tokens: tuple[str, ...] = ("bad-token",)
    heartbeat_interval_ms: int = 1000
    #: Discord rejects callbacks >3 s after the interaction was created (10062)
    interaction_callback_deadline: float | None = 3.0
    #: send MESSAGE_CREATE/UPDATE for the bot's own messages like Discord does
    echo_bot_messages: bool = True
    #: blank content/embeds/attachments like Discord does without the intent
    enforce_message_content_intent: bool = True
    #: intents the "developer portal" allows; IDENTIFY asking for more -> 4014
    allowed_intents: int | None = None
    app_permissions: int = Perm.BOT_DEFAULT
    attachment_size_limit: int = 10 * 1024 * 1024
    locale: str = "en-US"

    @property
    def channel_id(self) -> int:
        """The first text channel (where messages go by default)."""
        return self.channels[0].id

    @property
    def other_channel_id(self) -> int:
        """A second text channel (for allowlist tests)."""
        return self.channels[1].id

    def all_users(self) -> list[FakeUser]:
        return [self.bot, self.owner, self.admin, self.user, self.other_bot, self.outsider, *self.extra_users]

    def roles(self) -> list[FakeRole]:
        return [
            FakeRole(self.guild_id, "@everyone", self.everyone_permissions, position=0),
            FakeRole(self.moderator_role_id, "Moderator", self.moderator_permissions, position=1),
            *self.extra_roles,
        ]
