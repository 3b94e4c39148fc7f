"""The fake world a test can tweak: users, channels, roles and the guilds around them (``FakeDiscordConfig``,
``FakeGuild`` for guilds beyond the first)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .constants import JSON, Perm


@dataclass
class FakeUser:
    """A user (and, if ``in_guild``, a member of the primary fake guild ``config.guild_id``).

    ``role_ids`` and ``in_guild`` are about the primary guild only; membership and roles in another guild are
    that :class:`FakeGuild`'s (``members()``, ``member_roles``).
    """

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
class FakeGuild:
    """A guild besides the primary one (``FakeDiscordConfig.extra_guilds``), with its own members and roles.

    Its members are ``owner``, ``admin`` (holds ``moderator_role_id``, which has Manage Server), ``user`` (a
    plain member), ``extra_members`` and the bot. A user's roles here are ``member_roles[user.id]``, never
    ``FakeUser.role_ids`` (those belong to the primary guild), so one user can be an admin in one guild and a
    plain member in another. ``FakeDiscordConfig.guild(gid)`` also describes the primary guild this way.
    """

    id: int
    name: str
    owner: FakeUser
    admin: FakeUser
    user: FakeUser
    channels: list[FakeChannel]
    moderator_role_id: int
    everyone_permissions: int = Perm.EVERYONE_DEFAULT
    moderator_permissions: int = Perm.MODERATOR_DEFAULT
    extra_roles: list[FakeRole] = field(default_factory=list)
    extra_members: list[FakeUser] = field(default_factory=list)
    #: role ids per member (user id); ``admin`` gets ``[moderator_role_id]`` unless listed
    member_roles: dict[int, list[int]] = field(default_factory=dict)
    locale: str = "en-US"
    #: the bot's permissions here (``None``: ``FakeDiscordConfig.app_permissions``)
    app_permissions: int | None = None

    def __post_init__(self) -> None:
        self.member_roles.setdefault(self.admin.id, [self.moderator_role_id])

    @property
    def channel_id(self) -> int:
        """The first text channel."""
        return self.channels[0].id

    @property
    def other_channel_id(self) -> int:
        """A second text channel, if the guild has one."""
        return self.channels[1].id

    def members(self) -> list[FakeUser]:
        """The human (and other) members, without the bot (the config adds it)."""
        return _unique([self.owner, self.admin, self.user, *self.extra_members])

    def role_ids_of(self, user: FakeUser) -> list[int]:
        return list(self.member_roles.get(user.id, []))

    def roles(self) -> list[FakeRole]:
        """@everyone (its id is the guild's), Moderator, then ``extra_roles``."""
        return [
            FakeRole(self.id, "@everyone", self.everyone_permissions, position=0),
            FakeRole(self.moderator_role_id, "Moderator", self.moderator_permissions, position=1),
            *self.extra_roles,
        ]


def _unique(users: list[FakeUser]) -> list[FakeUser]:
    """``users`` without repeats (by id), first occurrence kept."""
    seen: set[int] = set()
    out: list[FakeUser] = []
    for u in users:
        if u.id not in seen:
            seen.add(u.id)
            out.append(u)
    return out


SECOND_GUILD_ID = 1300000000000000500


def default_second_guild(config: FakeDiscordConfig) -> FakeGuild:
    """Guild B of ``FakeDiscordConfig(second_guild=True)``: its own owner (dave) and admin (erin), who are not
    in the primary guild; ``config.user`` (bob) is its plain member, as in the primary guild, and
    ``config.admin`` (alice, an admin in the primary guild) is a plain member here."""
    return FakeGuild(
        id=SECOND_GUILD_ID,
        name="Herald Second Guild",
        owner=FakeUser(1300000000000000311, "dave", global_name="Dave (owner B)", in_guild=False),
        admin=FakeUser(1300000000000000312, "erin", global_name="Erin (mod B)", in_guild=False),
        user=config.user,
        channels=[
            FakeChannel(1300000000000000601, "b-general", position=0, topic="Guild B chat"),
            FakeChannel(1300000000000000602, "b-news", position=1, topic="Guild B news"),
        ],
        moderator_role_id=1300000000000000700,
        extra_members=[config.admin],
        locale=config.locale,
    )


@dataclass
class FakeDiscordConfig:
    """Everything about the fake world that tests may want to tweak.

    Defaults: one guild with two text channels, an owner, ``admin`` (has a
    role with Manage Server 0x20), ``user`` (plain member), ``other_bot`` (a
    bot member) and ``outsider`` (not in the guild; DM only).  The bot user id
    differs from the application id on purpose, to catch code mixing them up.

    More guilds: ``second_guild=True`` adds guild B (:func:`default_second_guild`, as ``guild_b``), or pass
    ``extra_guilds``.  The bot is in all of them at connect (a GUILD_CREATE each).
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
    #: guilds besides the primary one (the fields above describe the primary guild)
    extra_guilds: list[FakeGuild] = field(default_factory=list)
    #: add guild B (:func:`default_second_guild`) when ``extra_guilds`` is empty
    second_guild: bool = False

    def __post_init__(self) -> None:
        if self.second_guild and not self.extra_guilds:
            self.extra_guilds.append(default_second_guild(self))

    @property
    def channel_id(self) -> int:
        """The first text channel (where messages go by default)."""
        return self.channels[0].id

    @property
    def other_channel_id(self) -> int:
        """A second text channel (for allowlist tests)."""
        return self.channels[1].id

    @property
    def guild_b(self) -> FakeGuild:
        """The second guild (``second_guild=True`` or the first of ``extra_guilds``)."""
        if not self.extra_guilds:
            raise AssertionError("no second guild: use FakeDiscordConfig(second_guild=True)")
        return self.extra_guilds[0]

    def all_users(self) -> list[FakeUser]:
        """Every user the fake knows (members of any guild, and DM-only ones), each once."""
        users = [self.bot, self.owner, self.admin, self.user, self.other_bot, self.outsider, *self.extra_users]
        for g in self.extra_guilds:
            users += g.members()
        return _unique(users)

    def guild_ids(self) -> list[int]:
        """The primary guild first, then ``extra_guilds``."""
        return [self.guild_id, *(g.id for g in self.extra_guilds)]

    def guild(self, guild_id: int | None = None) -> FakeGuild:
        """A guild by id (default: the primary one, described from this config's fields, read-only)."""
        if guild_id is None or guild_id == self.guild_id:
            members = [u for u in self.all_users() if u.in_guild and u.id != self.bot.id]
            return FakeGuild(
                id=self.guild_id, name=self.guild_name, owner=self.owner, admin=self.admin, user=self.user,
                channels=self.channels, moderator_role_id=self.moderator_role_id,
                everyone_permissions=self.everyone_permissions, moderator_permissions=self.moderator_permissions,
                extra_roles=self.extra_roles, extra_members=members,
                member_roles={u.id: list(u.role_ids) for u in members}, locale=self.locale,
                app_permissions=self.app_permissions,
            )
        for g in self.extra_guilds:
            if g.id == guild_id:
                return g
        raise KeyError(f"unknown fake guild {guild_id!r}")

    def guild_members(self, guild_id: int | None = None) -> list[FakeUser]:
        """Members of a guild, the bot included."""
        if guild_id is None or guild_id == self.guild_id:
            return [u for u in self.all_users() if u.in_guild]
        return _unique([self.bot, *self.guild(guild_id).members()])

    def member_role_ids(self, user: FakeUser, guild_id: int | None = None) -> list[int]:
        """``user``'s roles in a guild (``FakeUser.role_ids`` in the primary one)."""
        if guild_id is None or guild_id == self.guild_id:
            return list(user.role_ids)
        return self.guild(guild_id).role_ids_of(user)

    def roles(self, guild_id: int | None = None) -> list[FakeRole]:
        """Roles of a guild (default: the primary one)."""
        if guild_id is not None and guild_id != self.guild_id:
            return self.guild(guild_id).roles()
        return [
            FakeRole(self.guild_id, "@everyone", self.everyone_permissions, position=0),
            FakeRole(self.moderator_role_id, "Moderator", self.moderator_permissions, position=1),
            *self.extra_roles,
        ]
