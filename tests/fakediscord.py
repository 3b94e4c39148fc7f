"""A fake Discord API + gateway server for end-to-end tests of discord.py bots.

Why this exists: Herald's end-to-end tests must drive the *real* discord.py
networking code (REST client, gateway websocket, heartbeat thread, interaction
webhooks) without any internet access.  ``FakeDiscord`` is an aiohttp server on
127.0.0.1 (ephemeral port) that speaks enough of Discord's v10 REST API and
gateway for a bot to log in, receive messages / slash commands / button clicks
and answer them.  Everything the bot sends is recorded so tests can assert on
it.

Typical use (the lead wires these into ``conftest.py``)::

    guard = block_external_network(monkeypatch)
    async with FakeDiscord(FakeDiscordConfig()) as fake:
        patch_discord(monkeypatch, fake)
        with DiscordErrorCollector() as errors:
            bot = make_bot(guild_ready_timeout=0.1)
            async with running_bot(bot, fake.config.token):
                msg = await fake.send_message(f"<@{fake.config.bot.id}> hi")
                req = await fake.wait_for_request(
                    lambda r: r.method == "POST" and r.path.endswith("/messages"))
        fake.assert_healthy()
    assert guard.attempts == []

discord.py 2.7 facts this relies on (verified against the installed source):

* every REST ``Route`` (including interaction callbacks and webhook
  follow-ups, see ``discord/webhook/async_.py``) builds its URL from the class
  attribute ``discord.http.Route.BASE`` at construction time;
  ``discord.http._set_api_version()`` resets it to discord.com.
* a plain ``Client`` connects to ``DiscordWebSocket.DEFAULT_GATEWAY`` (a
  ``yarl.URL``); it never calls ``GET /gateway/bot`` (only
  ``AutoShardedClient`` does; the fake serves it anyway).
* ``json_or_text`` only parses JSON when ``Content-Type`` is *exactly*
  ``application/json``; ``web.Response(text=..., content_type=...)`` appends
  ``; charset=utf-8`` so the fake sends ``body=`` bytes instead.
* the client asks for ``compress=zlib-stream`` but only decompresses *binary*
  frames, so plain text JSON frames work.
* ``client.latency`` is racy (can read ~one heartbeat interval even on a
  healthy loop); assert on ``fake.longest_heartbeat_gap`` instead.
* a failed ``client.start()`` (e.g. ``LoginFailure``) leaves the HTTP session
  open; ``await client.close()`` (``running_bot`` does it).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import logging
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Pattern,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)

import yarl
from aiohttp import WSMsgType, web

if TYPE_CHECKING:  # pragma: no cover - typing only
    import discord
    import pytest

__all__ = [
    "API_PREFIX",
    "FLAG_EPHEMERAL",
    "FLAG_LOADING",
    "FLAG_COMPONENTS_V2",
    "Intents",
    "Perm",
    "FakeUser",
    "FakeChannel",
    "FakeRole",
    "FakeDiscordConfig",
    "RecordedRequest",
    "UploadedFile",
    "FakeInteraction",
    "GatewaySession",
    "DiscordAPIError",
    "FakeDiscordTimeout",
    "FakeDiscord",
    "patch_discord",
    "block_external_network",
    "NetworkGuard",
    "DiscordErrorCollector",
    "running_bot",
    "stop_views",
    "task_snapshot",
    "assert_no_leaked_tasks",
]

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000
_log = logging.getLogger("fakediscord")

T = TypeVar("T")
JSON = Any
Predicate = Callable[["RecordedRequest"], bool]


# --------------------------------------------------------------------------- #
# Constants
# --------------------------------------------------------------------------- #


class Intents:
    """Gateway intent bits the fake cares about (so it can filter like Discord)."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15


class Perm:
    """Permission bits used to build roles / ``member.permissions`` strings."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    SEND_MESSAGES_IN_THREADS = 1 << 38
    ALL = (1 << 51) - 1

    EVERYONE_DEFAULT = (
        CREATE_INSTANT_INVITE
        | ADD_REACTIONS
        | VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | USE_EXTERNAL_EMOJIS
        | USE_APPLICATION_COMMANDS
        | CREATE_PUBLIC_THREADS
        | SEND_MESSAGES_IN_THREADS
    )
    MODERATOR_DEFAULT = MANAGE_GUILD | MANAGE_MESSAGES | MANAGE_THREADS | MANAGE_CHANNELS
    BOT_DEFAULT = EVERYONE_DEFAULT | MANAGE_MESSAGES | MANAGE_THREADS


# Discord error codes the fake returns (so bots see realistic HTTPException.code)
UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
UNKNOWN_USER = 10013
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
CANNOT_EDIT_OTHERS_MESSAGE = 50005
CANNOT_SEND_EMPTY_MESSAGE = 50006
INVALID_FORM_BODY = 50035
ALREADY_ACKNOWLEDGED = 40060

FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_COMPONENTS_V2 = 1 << 15


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class SnowflakeFactory:
    """Monotonic snowflakes with a real timestamp, so ``created_at`` is sane."""

    def __init__(self) -> None:
        self._last_ms = 0
        self._increment = 0

    def next(self) -> int:
        ms = int(time.time() * 1000)
        if ms <= self._last_ms:
            ms = self._last_ms
            self._increment += 1
            if self._increment >= 4096:
                ms += 1
                self._increment = 0
        else:
            self._increment = 0
        self._last_ms = ms
        return ((ms - DISCORD_EPOCH_MS) << 22) | (1 << 17) | self._increment


# --------------------------------------------------------------------------- #
# Configuration
# --------------------------------------------------------------------------- #


@dataclass
class FakeUser:
    """A user (and, if ``in_guild``, a member of the fake guild)."""

    id: int
    username: str
    bot: bool = False
    global_name: Optional[str] = None
    role_ids: List[int] = field(default_factory=list)
    nick: Optional[str] = None
    in_guild: bool = True

    def payload(self) -> Dict[str, JSON]:
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
    topic: Optional[str] = None
    parent_id: Optional[int] = None
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


def _default_channels() -> List[FakeChannel]:
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
    channels: List[FakeChannel] = field(default_factory=_default_channels)
    moderator_role_id: int = 1300000000000000400
    everyone_permissions: int = Perm.EVERYONE_DEFAULT
    moderator_permissions: int = Perm.MODERATOR_DEFAULT
    extra_roles: List[FakeRole] = field(default_factory=list)
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
    extra_users: List[FakeUser] = field(default_factory=list)
    #: the only token accepted (``None``: accept anything not in ``bad_tokens``)
    token: Optional[str] = "fake-bot-token"
    bad_tokens: Tuple[str, ...] = ("bad-token",)
    heartbeat_interval_ms: int = 1000
    #: Discord rejects callbacks >3 s after the interaction was created (10062)
    interaction_callback_deadline: Optional[float] = 3.0
    #: send MESSAGE_CREATE/UPDATE for the bot's own messages like Discord does
    echo_bot_messages: bool = True
    #: blank content/embeds/attachments like Discord does without the intent
    enforce_message_content_intent: bool = True
    #: intents the "developer portal" allows; IDENTIFY asking for more -> 4014
    allowed_intents: Optional[int] = None
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

    def all_users(self) -> List[FakeUser]:
        return [self.bot, self.owner, self.admin, self.user, self.other_bot, self.outsider, *self.extra_users]

    def roles(self) -> List[FakeRole]:
        return [
            FakeRole(self.guild_id, "@everyone", self.everyone_permissions, position=0),
            FakeRole(self.moderator_role_id, "Moderator", self.moderator_permissions, position=1),
            *self.extra_roles,
        ]


# --------------------------------------------------------------------------- #
# Records
# --------------------------------------------------------------------------- #


@dataclass
class UploadedFile:
    """A file part of a multipart request."""

    field_name: str
    filename: Optional[str]
    content_type: Optional[str]
    data: bytes


@dataclass
class RecordedRequest:
    """One REST request the bot made (path is relative to ``/api/v10``)."""

    index: int
    method: str
    path: str
    query: Dict[str, str]
    json: JSON
    headers: Dict[str, str]
    files: List[UploadedFile]
    timestamp: float
    status: int = 0
    response: JSON = None

    def matches(self, method: Optional[str] = None, path: Union[str, Pattern[str], None] = None) -> bool:
        """``path`` is a regex that must match the whole path."""
        if method is not None and self.method != method.upper():
            return False
        if path is not None and re.fullmatch(path, self.path) is None:
            return False
        return True

    def summary(self) -> str:
        q = ("?" + "&".join(f"{k}={v}" for k, v in self.query.items())) if self.query else ""
        body = json.dumps(self.json)[:200] if self.json is not None else ""
        return f"#{self.index} {self.method} {self.path}{q} -> {self.status} {body}"


@dataclass
class FakeInteraction:
    """An interaction the fake dispatched, and what the bot did with it."""

    id: int
    token: str
    type: int
    payload: Dict[str, JSON]
    channel_id: int
    guild_id: Optional[int]
    user_id: int
    dispatched_at: float
    callback_types: List[int] = field(default_factory=list)
    callback_data: List[JSON] = field(default_factory=list)
    original_message_id: Optional[int] = None
    followup_message_ids: List[int] = field(default_factory=list)
    #: for component/modal interactions: the message the component lives on
    source_message_id: Optional[int] = None
    expired: bool = False

    @property
    def acknowledged(self) -> bool:
        return bool(self.callback_types)

    @property
    def callback_type(self) -> Optional[int]:
        return self.callback_types[0] if self.callback_types else None


@dataclass
class GatewaySession:
    """One websocket connection from the bot."""

    ws: web.WebSocketResponse
    query: Dict[str, str]
    opened_at: float
    session_id: Optional[str] = None
    intents: Optional[int] = None
    identified: bool = False
    resumed: bool = False
    closed_at: Optional[float] = None
    close_code: Optional[int] = None
    heartbeat_times: List[float] = field(default_factory=list)
    received: List[Dict[str, JSON]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def live(self) -> bool:
        return self.identified and not self.ws.closed and self.closed_at is None

    def heartbeat_gaps(self) -> List[float]:
        t = self.heartbeat_times
        return [b - a for a, b in zip(t, t[1:])]


class DiscordAPIError(Exception):
    """Raised inside REST handlers to produce a Discord-style JSON error."""

    def __init__(self, status: int, code: int, message: str, errors: Optional[Dict[str, JSON]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> Dict[str, JSON]:
        body: Dict[str, JSON] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


class FakeDiscordTimeout(AssertionError):
    """A ``wait_*`` helper gave up; the message lists what *did* happen."""


@dataclass
class _ErrorRule:
    method: str
    path: Pattern[str]
    status: int
    body: JSON
    headers: Dict[str, str]
    remaining: int


@dataclass
class _RestContext:
    method: str
    path: str
    params: Dict[str, str]
    query: Dict[str, str]
    json: JSON
    files: List[UploadedFile]
    token: Optional[str]


Handler = Callable[[_RestContext], Awaitable[Tuple[int, JSON]]]


def _form_error(field_name: str, code: str, message: str) -> DiscordAPIError:
    return DiscordAPIError(
        400,
        INVALID_FORM_BODY,
        "Invalid Form Body",
        {field_name: {"_errors": [{"code": code, "message": message}]}},
    )


def validate_message_payload(payload: Mapping[str, JSON], *, require_content: bool = True) -> None:
    """Apply Discord's message limits so over-long answers fail like in prod."""
    content = payload.get("content")
    embeds = payload.get("embeds") or []
    components = payload.get("components") or []
    attachments = payload.get("attachments") or []
    if require_content and not (content or embeds or components or attachments or payload.get("sticker_ids")
                                or payload.get("poll")):
        raise DiscordAPIError(400, CANNOT_SEND_EMPTY_MESSAGE, "Cannot send an empty message")
    if content is not None and len(str(content)) > 2000:
        raise _form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    if len(embeds) > 10:
        raise _form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    limits = {"title": 256, "description": 4096}
    for i, embed in enumerate(embeds):
        for key, limit in limits.items():
            value = embed.get(key) or ""
            total += len(value)
            if len(value) > limit:
                raise _form_error(f"embeds.{i}.{key}", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise _form_error(f"embeds.{i}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for j, f in enumerate(fields):
            name, value = str(f.get("name", "")), str(f.get("value", ""))
            total += len(name) + len(value)
            if not name or len(name) > 256:
                raise _form_error(f"embeds.{i}.fields.{j}.name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 256 in length.")
            if not value or len(value) > 1024:
                raise _form_error(f"embeds.{i}.fields.{j}.value", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 1024 in length.")
        footer = (embed.get("footer") or {}).get("text") or ""
        author = (embed.get("author") or {}).get("name") or ""
        total += len(footer) + len(author)
        if len(footer) > 2048:
            raise _form_error(f"embeds.{i}.footer.text", "BASE_TYPE_MAX_LENGTH", "Must be 2048 or fewer in length.")
        if len(author) > 256:
            raise _form_error(f"embeds.{i}.author.name", "BASE_TYPE_MAX_LENGTH", "Must be 256 or fewer in length.")
    if total > 6000:
        raise _form_error("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    flags = int(payload.get("flags") or 0)
    if components and not flags & FLAG_COMPONENTS_V2:
        if len(components) > 5:
            raise _form_error("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        for i, row in enumerate(components):
            children = row.get("components") or []
            if row.get("type") == 1 and not 1 <= len(children) <= 5:
                raise _form_error(f"components.{i}.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
            for j, child in enumerate(children):
                cid = child.get("custom_id")
                if cid is not None and not 1 <= len(cid) <= 100:
                    raise _form_error(f"components.{i}.components.{j}.custom_id", "BASE_TYPE_BAD_LENGTH",
                                      "Must be between 1 and 100 in length.")
                label = child.get("label")
                if label is not None and len(label) > 80:
                    raise _form_error(f"components.{i}.components.{j}.label", "BASE_TYPE_MAX_LENGTH",
                                      "Must be 80 or fewer in length.")


def _iter_components(components: Iterable[Mapping[str, JSON]]) -> Iterator[Mapping[str, JSON]]:
    for comp in components:
        yield comp
        yield from _iter_components(comp.get("components") or [])
        if isinstance(comp.get("component"), Mapping):
            yield from _iter_components([comp["component"]])
        if isinstance(comp.get("accessory"), Mapping):
            yield from _iter_components([comp["accessory"]])


_MENTION_RE = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION_RE = re.compile(r"<@&(\d+)>")


# --------------------------------------------------------------------------- #
# The server
# --------------------------------------------------------------------------- #


class FakeDiscord:
    """Fake Discord REST API (``/api/v10``) and gateway (``/gateway``).

    One guild, one bot.  All state is public so tests can inspect it:
    ``requests``, ``messages``, ``bot_messages``, ``interactions``,
    ``guild_commands``/``global_commands``, ``sessions``, heartbeat stats.
    """

    def __init__(self, config: Optional[FakeDiscordConfig] = None) -> None:
        self.config: FakeDiscordConfig = config or FakeDiscordConfig()
        self.snowflakes = SnowflakeFactory()
        self.port: int = 0
        self._runner: Optional[web.AppRunner] = None
        self._changed: asyncio.Event = asyncio.Event()

        # REST records
        self.requests: List[RecordedRequest] = []
        self.unhandled_requests: List[RecordedRequest] = []
        self.internal_errors: List[str] = []
        self._error_rules: List[_ErrorRule] = []

        # world state
        self.messages: Dict[int, Dict[str, JSON]] = {}
        self.bot_messages: List[Dict[str, JSON]] = []
        self.deleted_message_ids: List[int] = []
        self.attachment_data: Dict[int, bytes] = {}
        self.threads: Dict[int, FakeChannel] = {}
        self._dm_channels: Dict[int, int] = {}  # user id -> DM channel id
        self.interactions: Dict[int, FakeInteraction] = {}
        self._interactions_by_token: Dict[str, FakeInteraction] = {}
        self.global_commands: List[Dict[str, JSON]] = []
        self.guild_commands: Dict[int, List[Dict[str, JSON]]] = {}
        self._command_ids: Dict[Tuple[Optional[int], str, int], int] = {}

        # gateway records
        self.sessions: List[GatewaySession] = []
        self.identify_payloads: List[Dict[str, JSON]] = []
        self.presence_updates: List[Dict[str, JSON]] = []
        self.dispatched_events: List[Tuple[str, Dict[str, JSON]]] = []
        self.suppressed_events: List[Tuple[str, Dict[str, JSON]]] = []
        self.sequence: int = 0
        self.heartbeat_acks_sent: int = 0
        #: set False to simulate a zombie connection (no HEARTBEAT_ACK)
        self.ack_heartbeats: bool = True
        self._session_counter = 0

        self._routes: List[Tuple[str, Pattern[str], Handler]] = []
        self._register_routes()

    # ------------------------------------------------------------------ life
    async def start(self) -> None:
        """Bind 127.0.0.1 on an ephemeral port and start serving."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest_entry)
        app.router.add_get("/gateway", self._gateway_entry)
        app.router.add_get("/gateway/", self._gateway_entry)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._attachment_entry)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        _log.debug("fake discord listening on %s", self.base_url)

    async def stop(self) -> None:
        """Close open websockets and shut the server down."""
        for sess in self.sessions:
            if not sess.ws.closed:
                with contextlib.suppress(Exception):
                    await sess.ws.close(code=1001, message=b"fake discord shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeDiscord":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """Value for ``discord.http.Route.BASE``."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """Value (as ``yarl.URL``) for ``DiscordWebSocket.DEFAULT_GATEWAY``."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    def assert_healthy(self) -> None:
        """Fail if the fake hit an internal error or an unimplemented route."""
        problems: List[str] = list(self.internal_errors)
        problems += [f"unhandled route: {r.summary()}" for r in self.unhandled_requests]
        if problems:
            raise AssertionError("fake discord problems:\n  " + "\n  ".join(problems))

    # ------------------------------------------------------------- waiting
    def _notify(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    async def wait_until(
        self, condition: Callable[[], Optional[T]], *, timeout: float = 10.0, description: str = "condition"
    ) -> T:
        """Re-evaluate ``condition`` whenever the fake sees traffic; return its truthy value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            ev = self._changed
            result = condition()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise FakeDiscordTimeout(f"timed out after {timeout}s waiting for {description}\n{self.describe()}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ev.wait(), min(remaining, 0.25))

    def describe(self, last: int = 25) -> str:
        """Human-readable recent history, used in timeout messages."""
        lines = ["recent REST requests:"]
        lines += ["  " + r.summary() for r in self.requests[-last:]] or ["  (none)"]
        lines.append(f"gateway sessions: {len(self.sessions)}, live: {sum(s.live for s in self.sessions)}")
        if self.internal_errors:
            lines.append("fake internal errors: " + "; ".join(self.internal_errors))
        return "\n".join(lines)

    def mark(self) -> int:
        """Index to pass as ``since=`` so later waits ignore earlier requests."""
        return len(self.requests)

    def find_requests(
        self,
        predicate: Optional[Predicate] = None,
        *,
        method: Optional[str] = None,
        path: Union[str, Pattern[str], None] = None,
        since: int = 0,
    ) -> List[RecordedRequest]:
        return [
            r
            for r in self.requests[since:]
            if r.matches(method, path) and (predicate is None or predicate(r))
        ]

    async def wait_for_request(
        self,
        predicate: Optional[Predicate] = None,
        *,
        method: Optional[str] = None,
        path: Union[str, Pattern[str], None] = None,
        timeout: float = 10.0,
        since: int = 0,
    ) -> RecordedRequest:
        """First recorded request (index >= ``since``) matching all filters."""

        def check() -> Optional[RecordedRequest]:
            found = self.find_requests(predicate, method=method, path=path, since=since)
            return found[0] if found else None

        return await self.wait_until(check, timeout=timeout, description=f"request method={method} path={path}")

    async def wait_for_requests(
        self,
        count: int,
        predicate: Optional[Predicate] = None,
        *,
        method: Optional[str] = None,
        path: Union[str, Pattern[str], None] = None,
        timeout: float = 10.0,
        since: int = 0,
    ) -> List[RecordedRequest]:
        def check() -> Optional[List[RecordedRequest]]:
            found = self.find_requests(predicate, method=method, path=path, since=since)
            return found[:count] if len(found) >= count else None

        return await self.wait_until(check, timeout=timeout, description=f"{count} requests {method} {path}")

    async def assert_no_request(
        self,
        predicate: Optional[Predicate] = None,
        *,
        method: Optional[str] = None,
        path: Union[str, Pattern[str], None] = None,
        duration: float = 0.5,
        since: int = 0,
    ) -> None:
        """Wait ``duration`` seconds and fail if a matching request showed up."""
        await asyncio.sleep(duration)
        found = self.find_requests(predicate, method=method, path=path, since=since)
        if found:
            raise AssertionError("unexpected request(s):\n  " + "\n  ".join(r.summary() for r in found))

    async def wait_for_bot_message(
        self,
        predicate: Optional[Callable[[Dict[str, JSON]], bool]] = None,
        *,
        channel_id: Optional[int] = None,
        timeout: float = 10.0,
        since: int = 0,
    ) -> Dict[str, JSON]:
        """First message the bot created (``bot_messages[since:]``) matching; current (edited) state."""

        def check() -> Optional[Dict[str, JSON]]:
            for msg in self.bot_messages[since:]:
                if channel_id is not None and msg["channel_id"] != str(channel_id):
                    continue
                if predicate is None or predicate(msg):
                    return msg
            return None

        return await self.wait_until(check, timeout=timeout, description=f"bot message in channel {channel_id}")

    def inject_error(
        self,
        method: str,
        path: str,
        status: int,
        *,
        code: int = 0,
        message: Optional[str] = None,
        body: JSON = None,
        headers: Optional[Mapping[str, str]] = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` requests matching (method, path regex) fail.

        For 429 a Discord-like body/``Via`` header is filled in so discord.py
        retries after ``retry_after`` (default 0.1 s) instead of raising.
        """
        hdrs = dict(headers or {})
        if body is None:
            if status == 429:
                body = {"message": "You are being rate limited.", "retry_after": 0.1, "global": False, "code": 0}
                hdrs.setdefault("Via", "1.1 google")
                hdrs.setdefault("Retry-After", "1")
            else:
                body = {"message": message or f"{status}: injected error", "code": code}
        self._error_rules.append(_ErrorRule(method.upper(), re.compile(path), status, body, hdrs, times))

    # ----------------------------------------------------------- world data
    def user(self, ref: Union[FakeUser, int, str, None] = None) -> FakeUser:
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

    def _maybe_user(self, uid: int) -> Optional[FakeUser]:
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

    def member_payload(self, user: FakeUser, *, with_user: bool = True, permissions: Optional[int] = None) -> Dict[str, JSON]:
        data: Dict[str, JSON] = {
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

    def role_payloads(self) -> List[Dict[str, JSON]]:
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

    def _all_guild_channels(self) -> List[FakeChannel]:
        return [*self.config.channels, *self.threads.values()]

    def guild_channel(self, channel_id: int) -> Optional[FakeChannel]:
        for ch in self._all_guild_channels():
            if ch.id == channel_id:
                return ch
        return None

    def channel_payload(self, channel: FakeChannel) -> Dict[str, JSON]:
        data: Dict[str, JSON] = {
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
                    "archive_timestamp": _now_iso(),
                    "locked": False,
                },
            )
        return data

    def dm_channel_id(self, user: Union[FakeUser, int, None] = None) -> int:
        """The (stable) DM channel id between the bot and ``user``."""
        u = self.user(user)
        if u.id not in self._dm_channels:
            self._dm_channels[u.id] = self.snowflakes.next()
        return self._dm_channels[u.id]

    def dm_channel_payload(self, user: FakeUser) -> Dict[str, JSON]:
        return {
            "id": str(self.dm_channel_id(user)),
            "type": 1,
            "last_message_id": None,
            "flags": 0,
            "recipients": [user.payload()],
        }

    def _dm_user_for_channel(self, channel_id: int) -> Optional[FakeUser]:
        for uid, cid in self._dm_channels.items():
            if cid == channel_id:
                return self.user(uid)
        return None

    def _channel_guild_id(self, channel_id: int) -> Optional[int]:
        """Guild id for a guild channel, ``None`` for a DM; 404 if unknown."""
        if self.guild_channel(channel_id) is not None:
            return self.config.guild_id
        if self._dm_user_for_channel(channel_id) is not None:
            return None
        raise DiscordAPIError(404, UNKNOWN_CHANNEL, "Unknown Channel")

    def guild_members(self) -> List[FakeUser]:
        return [u for u in self.config.all_users() if u.in_guild]

    def guild_create_payload(self, *, include_all_members: bool = True) -> Dict[str, JSON]:
        cfg = self.config
        members = self.guild_members()
        shown = members if include_all_members else [cfg.bot]
        return {
            "id": str(cfg.guild_id),
            "name": cfg.guild_name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(cfg.owner.id),
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
            "preferred_locale": cfg.locale,
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
            "roles": self.role_payloads(),
            "emojis": [],
            "stickers": [],
            "channels": [self.channel_payload(c) for c in cfg.channels],
            "threads": [self.channel_payload(t) for t in self.threads.values()],
            "members": [self.member_payload(u) for u in shown],
            "member_count": len(members),
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "incidents_data": None,
            "large": False,
            "unavailable": False,
            "lazy": True,
            "joined_at": "2024-01-01T00:00:00+00:00",
        }

    # ------------------------------------------------------------ messages
    def _mentions_from_content(self, content: str, guild_id: Optional[int]) -> List[FakeUser]:
        found: List[FakeUser] = []
        for m in _MENTION_RE.finditer(content or ""):
            u = self._maybe_user(int(m.group(1)))
            if u is not None and u not in found:
                found.append(u)
        return found

    def _mention_payloads(self, users: Sequence[FakeUser], guild_id: Optional[int]) -> List[Dict[str, JSON]]:
        out: List[Dict[str, JSON]] = []
        for u in users:
            p = u.payload()
            if guild_id is not None and u.in_guild:
                p["member"] = self.member_payload(u, with_user=False)
            out.append(p)
        return out

    def _store_attachments(self, channel_id: int, files: Sequence[Tuple[str, bytes, Optional[str]]]) -> List[Dict[str, JSON]]:
        out: List[Dict[str, JSON]] = []
        for filename, data, content_type in files:
            att_id = self.snowflakes.next()
            self.attachment_data[att_id] = data
            url = f"{self.base_url}/attachments/{channel_id}/{att_id}/{filename}"
            out.append(
                {
                    "id": str(att_id),
                    "filename": filename,
                    "size": len(data),
                    "url": url,
                    "proxy_url": url,
                    "content_type": content_type,
                    "height": None,
                    "width": None,
                    "ephemeral": False,
                    "description": None,
                    "flags": 0,
                }
            )
        return out

    def _reference_fields(self, ref_id: int, channel_id: int, guild_id: Optional[int]) -> Dict[str, JSON]:
        ref: Dict[str, JSON] = {"type": 0, "message_id": str(ref_id), "channel_id": str(channel_id)}
        if guild_id is not None:
            ref["guild_id"] = str(guild_id)
        referenced = self.messages.get(ref_id)
        resolved: Optional[Dict[str, JSON]] = None
        if referenced is not None:  # Discord does not nest referenced_message chains
            resolved = {k: v for k, v in referenced.items() if k != "referenced_message"}
        return {"message_reference": ref, "referenced_message": resolved}

    def build_user_message(
        self,
        content: str,
        *,
        author: Union[FakeUser, int, None] = None,
        channel_id: Optional[int] = None,
        guild: bool = True,
        mentions: Optional[Sequence[Union[FakeUser, int]]] = None,
        reply_to: Union[Mapping[str, JSON], int, None] = None,
        attachments: Optional[Sequence[Tuple[str, bytes]]] = None,
        embeds: Optional[List[Dict[str, JSON]]] = None,
        extra: Optional[Mapping[str, JSON]] = None,
    ) -> Dict[str, JSON]:
        """A complete MESSAGE_CREATE payload from a (human) user.

        ``mentions=None`` derives mentions from ``<@id>`` tokens in the content
        like Discord does; pass a list to override (discord.py's
        ``message.mentions`` reads this list, never the text).
        """
        cfg = self.config
        u = self.user(author)
        if guild:
            cid = channel_id if channel_id is not None else cfg.channel_id
            if self.guild_channel(cid) is None:
                raise KeyError(f"channel {cid} is not a fake guild channel")
            gid: Optional[int] = cfg.guild_id
        else:
            cid = channel_id if channel_id is not None else self.dm_channel_id(u)
            gid = None
        if mentions is None:
            mention_users = self._mentions_from_content(content, gid)
        else:
            mention_users = [self.user(m) for m in mentions]
        mid = self.snowflakes.next()
        msg: Dict[str, JSON] = {
            "id": str(mid),
            "channel_id": str(cid),
            "author": u.payload(),
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": "@everyone" in content or "@here" in content,
            "mentions": self._mention_payloads(mention_users, gid),
            "mention_roles": _ROLE_MENTION_RE.findall(content),
            "attachments": self._store_attachments(cid, [(n, d, None) for n, d in (attachments or [])]),
            "embeds": list(embeds or []),
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
            "nonce": str(self.snowflakes.next()),
        }
        if gid is not None:
            msg["guild_id"] = str(gid)
            if u.in_guild:
                msg["member"] = self.member_payload(u, with_user=False)
        if reply_to is not None:
            ref_id = int(reply_to["id"]) if isinstance(reply_to, Mapping) else int(reply_to)
            msg.update(self._reference_fields(ref_id, cid, gid))
            msg["type"] = 19
        if extra:
            msg.update(extra)
        return msg

    async def send_message(
        self,
        content: str,
        *,
        author: Union[FakeUser, int, None] = None,
        channel_id: Optional[int] = None,
        guild: bool = True,
        mentions: Optional[Sequence[Union[FakeUser, int]]] = None,
        reply_to: Union[Mapping[str, JSON], int, None] = None,
        attachments: Optional[Sequence[Tuple[str, bytes]]] = None,
        embeds: Optional[List[Dict[str, JSON]]] = None,
        extra: Optional[Mapping[str, JSON]] = None,
        timeout: float = 10.0,
    ) -> Dict[str, JSON]:
        """Dispatch MESSAGE_CREATE from a user; returns the (unstripped) payload.

        ``guild=False`` sends a DM (channel type 1, no ``guild_id``/``member``).
        Default author is ``config.user``; default channel is ``config.channel_id``.
        """
        msg = self.build_user_message(
            content,
            author=author,
            channel_id=channel_id,
            guild=guild,
            mentions=mentions,
            reply_to=reply_to,
            attachments=attachments,
            embeds=embeds,
            extra=extra,
        )
        self.messages[int(msg["id"])] = msg
        await self.dispatch("MESSAGE_CREATE", msg, timeout=timeout)
        return msg

    def _bot_member_fields(self, guild_id: Optional[int]) -> Dict[str, JSON]:
        if guild_id is None:
            return {}
        return {"guild_id": str(guild_id), "member": self.member_payload(self.config.bot, with_user=False)}

    def _create_bot_message(
        self,
        channel_id: int,
        body: Mapping[str, JSON],
        files: Sequence[UploadedFile],
        *,
        message_type: int = 0,
        interaction: Optional[FakeInteraction] = None,
        flags: Optional[int] = None,
        validate: bool = True,
    ) -> Dict[str, JSON]:
        gid = self._channel_guild_id(channel_id)
        if validate:
            validate_message_payload({**body, "attachments": list(body.get("attachments") or []) + list(files)})
        content = str(body.get("content") or "")
        mid = self.snowflakes.next()
        msg: Dict[str, JSON] = {
            "id": str(mid),
            "channel_id": str(channel_id),
            "author": self.config.bot.payload(),
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": self._attachments_from_upload(channel_id, body, files),
            "embeds": list(body.get("embeds") or []),
            "components": list(body.get("components") or []),
            "pinned": False,
            "type": message_type,
            "flags": int(flags if flags is not None else (body.get("flags") or 0)),
            "sticker_items": [],
        }
        msg.update(self._bot_member_fields(gid))
        if body.get("nonce") is not None:
            msg["nonce"] = body["nonce"]
        ref = body.get("message_reference")
        if ref:
            ref_id = int(ref["message_id"])
            if ref_id not in self.messages and ref.get("fail_if_not_exists", True):
                raise _form_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
            msg.update(self._reference_fields(ref_id, channel_id, gid))
            if message_type == 0:
                msg["type"] = 19
        self._apply_mentions(msg, body)
        if interaction is not None:
            user = self.user(interaction.user_id)
            msg["webhook_id"] = str(self.config.application_id)
            msg["application_id"] = str(self.config.application_id)
            meta: Dict[str, JSON] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": user.payload(),
                "authorizing_integration_owners": interaction.payload.get("authorizing_integration_owners", {}),
            }
            if interaction.original_message_id and interaction.original_message_id != mid:
                meta["original_response_message_id"] = str(interaction.original_message_id)
            if interaction.source_message_id:
                meta["interacted_message_id"] = str(interaction.source_message_id)
            msg["interaction_metadata"] = meta
        self.messages[mid] = msg
        self.bot_messages.append(msg)
        return msg

    def _apply_mentions(self, msg: Dict[str, JSON], body: Mapping[str, JSON]) -> None:
        """Recompute ``mentions`` from content/allowed_mentions/reply like Discord."""
        gid = int(msg["guild_id"]) if msg.get("guild_id") else None
        allowed = body.get("allowed_mentions")
        users = self._mentions_from_content(str(msg.get("content") or ""), gid)
        if isinstance(allowed, Mapping):
            parse = allowed.get("parse") or []
            explicit = {int(x) for x in allowed.get("users") or []}
            users = [u for u in users if "users" in parse or u.id in explicit]
        replied = msg.get("referenced_message")
        if isinstance(replied, Mapping) and (not isinstance(allowed, Mapping) or allowed.get("replied_user", True)):
            author = self._maybe_user(int(replied["author"]["id"]))
            if author is not None and author not in users:
                users.append(author)
        msg["mentions"] = self._mention_payloads(users, gid)

    def _attachments_from_upload(
        self, channel_id: int, body: Mapping[str, JSON], files: Sequence[UploadedFile]
    ) -> List[Dict[str, JSON]]:
        uploads = [(f.filename or f.field_name, f.data, f.content_type) for f in files]
        out = self._store_attachments(channel_id, uploads)
        # keep already-uploaded attachments referenced by id (edits)
        for att in body.get("attachments") or []:
            aid = att.get("id")
            if aid is not None and int(aid) in self.attachment_data:
                existing = next(
                    (a for m in self.messages.values() for a in m.get("attachments", []) if a["id"] == str(aid)),
                    None,
                )
                if existing:
                    out.append(existing)
        return out

    def _edit_message(self, msg: Dict[str, JSON], body: Mapping[str, JSON], files: Sequence[UploadedFile]) -> Dict[str, JSON]:
        validate_message_payload(body, require_content=False)
        channel_id = int(msg["channel_id"])
        for key in ("content", "embeds", "components"):
            if key in body:
                msg[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "flags" in body and body["flags"] is not None:
            msg["flags"] = (int(msg.get("flags") or 0) & FLAG_EPHEMERAL) | int(body["flags"])
        if "attachments" in body or files:
            msg["attachments"] = self._attachments_from_upload(channel_id, body, files)
        msg["flags"] = int(msg.get("flags") or 0) & ~FLAG_LOADING
        msg["edited_timestamp"] = _now_iso()
        if "content" in body:
            self._apply_mentions(msg, body)
        return msg

    async def _echo(self, event: str, msg: Dict[str, JSON]) -> None:
        """Tell the bot about its own message like Discord does (not ephemeral)."""
        if not self.config.echo_bot_messages or int(msg.get("flags") or 0) & FLAG_EPHEMERAL:
            return
        if self.live_session() is None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):  # bot is disconnecting
            await self.dispatch(event, dict(msg), timeout=0)

    # --------------------------------------------------------- interactions
    def _new_interaction(
        self,
        itype: int,
        data: Dict[str, JSON],
        *,
        user: Union[FakeUser, int, None],
        channel_id: Optional[int],
        guild: bool,
        permissions: Union[int, str, None],
        locale: Optional[str],
        message: Optional[Dict[str, JSON]] = None,
        extra: Optional[Mapping[str, JSON]] = None,
    ) -> FakeInteraction:
        cfg = self.config
        u = self.user(user)
        iid = self.snowflakes.next()
        token = f"fake-interaction-token-{iid}"
        if guild:
            cid = channel_id if channel_id is not None else cfg.channel_id
            ch = self.guild_channel(cid)
            if ch is None:
                raise KeyError(f"channel {cid} is not a fake guild channel")
            perms = int(permissions) if permissions is not None else self.role_permissions(u)
            channel = self.channel_payload(ch)
            channel["permissions"] = str(perms)
            gid: Optional[int] = cfg.guild_id
        else:
            cid = channel_id if channel_id is not None else self.dm_channel_id(u)
            channel = self.dm_channel_payload(u)
            channel["id"] = str(cid)
            perms = 0
            gid = None
        payload: Dict[str, JSON] = {
            "id": str(iid),
            "application_id": str(cfg.application_id),
            "type": itype,
            "data": data,
            "channel_id": str(cid),
            "channel": channel,
            "token": token,
            "version": 1,
            "app_permissions": str(cfg.app_permissions),
            "locale": locale or cfg.locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": cfg.attachment_size_limit,
        }
        if gid is not None:
            payload["guild_id"] = str(gid)
            payload["guild"] = {"id": str(gid), "locale": cfg.locale, "features": []}
            payload["guild_locale"] = cfg.locale
            payload["member"] = self.member_payload(u, permissions=perms)
            payload["authorizing_integration_owners"] = {"0": str(gid)}
            payload["context"] = 0
        else:
            payload["user"] = u.payload()
            payload["authorizing_integration_owners"] = {"0": "0"}
            payload["context"] = 1
        if message is not None:
            payload["message"] = message
        if extra:
            payload.update(extra)
        inter = FakeInteraction(
            id=iid,
            token=token,
            type=itype,
            payload=payload,
            channel_id=cid,
            guild_id=gid,
            user_id=u.id,
            dispatched_at=time.monotonic(),
            source_message_id=int(message["id"]) if message else None,
        )
        self.interactions[iid] = inter
        self._interactions_by_token[token] = inter
        return inter

    def registered_command(self, name: str, guild_id: Optional[int] = None) -> Optional[Dict[str, JSON]]:
        """The command as last synced (guild first, then global)."""
        if guild_id is not None:
            for cmd in self.guild_commands.get(guild_id, []):
                if cmd["name"] == name and cmd.get("type", 1) == 1:
                    return cmd
        for cmd in self.global_commands:
            if cmd["name"] == name and cmd.get("type", 1) == 1:
                return cmd
        return None

    def _build_options(
        self, schema: Sequence[Mapping[str, JSON]], values: Mapping[str, Any], resolved: Dict[str, Dict[str, JSON]]
    ) -> List[Dict[str, JSON]]:
        out: List[Dict[str, JSON]] = []
        by_name = {o["name"]: o for o in schema}
        for name, value in values.items():
            opt_schema = by_name.get(name)
            if opt_schema is not None:
                otype = int(opt_schema["type"])
            elif isinstance(value, bool):
                otype = 5
            elif isinstance(value, int):
                otype = 4
            elif isinstance(value, float):
                otype = 10
            elif isinstance(value, FakeUser):
                otype = 6
            elif isinstance(value, FakeChannel):
                otype = 7
            else:
                otype = 3
            if otype in (6, 9) and not isinstance(value, FakeRole):
                u = self.user(value)
                value = str(u.id)
                resolved.setdefault("users", {})[value] = u.payload()
                if u.in_guild:
                    resolved.setdefault("members", {})[value] = self.member_payload(
                        u, with_user=False, permissions=self.role_permissions(u)
                    )
            elif otype == 7:
                ch = value if isinstance(value, FakeChannel) else self.guild_channel(int(value))
                if ch is None:
                    raise KeyError(f"unknown channel option {value!r}")
                value = str(ch.id)
                cp = self.channel_payload(ch)
                cp["permissions"] = str(Perm.ALL)
                resolved.setdefault("channels", {})[value] = cp
            elif otype == 8:
                role = value if isinstance(value, FakeRole) else next(
                    r for r in self.config.roles() if r.id == int(value)
                )
                value = str(role.id)
                resolved.setdefault("roles", {})[value] = next(
                    p for p in self.role_payloads() if p["id"] == value
                )
            out.append({"name": name, "type": otype, "value": value})
        return out

    async def send_slash_command(
        self,
        name: str,
        options: Union[Mapping[str, Any], List[Dict[str, JSON]], None] = None,
        *,
        user: Union[FakeUser, int, None] = None,
        channel_id: Optional[int] = None,
        guild: bool = True,
        permissions: Union[int, str, None] = None,
        subcommand: Optional[str] = None,
        locale: Optional[str] = None,
        require_registered: bool = True,
        extra: Optional[Mapping[str, JSON]] = None,
        timeout: float = 10.0,
    ) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE type 2 (a user ran ``/name``).

        ``options`` is ``{"name": value}`` (types are taken from the synced
        command schema, else inferred) or a raw option list.  ``subcommand``
        is ``"sub"`` or ``"group sub"``.  ``permissions`` overrides the member
        permission string (default: computed from roles; owner => all).  The
        command must have been synced (``PUT .../commands``) unless
        ``require_registered=False``; guild commands get ``data.guild_id`` so
        discord.py's tree finds them.
        """
        gid = self.config.guild_id if guild else None
        cmd = self.registered_command(name, gid)
        if cmd is None and require_registered:
            raise AssertionError(
                f"/{name} is not registered (synced) for guild={guild}; "
                f"global={[c['name'] for c in self.global_commands]} "
                f"guild={[c['name'] for c in self.guild_commands.get(self.config.guild_id, [])]}"
            )
        schema: List[Mapping[str, JSON]] = list(cmd.get("options") or []) if cmd else []
        resolved: Dict[str, Dict[str, JSON]] = {}
        path = subcommand.split() if subcommand else []
        for part in path:
            match = next((o for o in schema if o.get("name") == part), None)
            schema = list(match.get("options") or []) if match else []
        if isinstance(options, list):
            built: List[Dict[str, JSON]] = options
        else:
            built = self._build_options(schema, options or {}, resolved)
        for depth, part in reversed(list(enumerate(path))):
            kind = 2 if depth == 0 and len(path) == 2 else 1
            built = [{"name": part, "type": kind, "options": built}]
        data: Dict[str, JSON] = {
            "id": cmd["id"] if cmd else str(self.snowflakes.next()),
            "name": name,
            "type": 1,
            "options": built,
        }
        if cmd is not None and cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        if resolved:
            data["resolved"] = resolved
        inter = self._new_interaction(
            2, data, user=user, channel_id=channel_id, guild=guild, permissions=permissions, locale=locale, extra=extra
        )
        await self.dispatch("INTERACTION_CREATE", inter.payload, timeout=timeout)
        inter.dispatched_at = time.monotonic()
        return inter

    def find_message_with_component(self, custom_id: str) -> Optional[Dict[str, JSON]]:
        """Newest stored message carrying a component with ``custom_id``."""
        for msg in sorted(self.messages.values(), key=lambda m: int(m["id"]), reverse=True):
            for comp in _iter_components(msg.get("components") or []):
                if comp.get("custom_id") == custom_id:
                    return msg
        return None

    async def send_component_click(
        self,
        custom_id: str,
        *,
        message: Union[Mapping[str, JSON], int, None] = None,
        user: Union[FakeUser, int, None] = None,
        component_type: int = 2,
        values: Optional[List[str]] = None,
        permissions: Union[int, str, None] = None,
        locale: Optional[str] = None,
        extra: Optional[Mapping[str, JSON]] = None,
        timeout: float = 10.0,
    ) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE type 3 (button click / select).

        ``message`` defaults to the newest stored message that has a
        component with this ``custom_id`` (usually the bot's own message).
        """
        if message is None:
            found = self.find_message_with_component(custom_id)
            if found is None:
                raise AssertionError(f"no stored message has a component with custom_id={custom_id!r}\n{self.describe()}")
            msg = found
        elif isinstance(message, Mapping):
            msg = self.messages.get(int(message["id"]), dict(message))
        else:
            msg = self.messages[int(message)]
        cid = int(msg["channel_id"])
        data: Dict[str, JSON] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        inter = self._new_interaction(
            3,
            data,
            user=user,
            channel_id=cid,
            guild=msg.get("guild_id") is not None,
            permissions=permissions,
            locale=locale,
            message=dict(msg),
            extra=extra,
        )
        await self.dispatch("INTERACTION_CREATE", inter.payload, timeout=timeout)
        inter.dispatched_at = time.monotonic()
        return inter

    async def send_modal_submit(
        self,
        custom_id: str,
        values: Mapping[str, str],
        *,
        user: Union[FakeUser, int, None] = None,
        channel_id: Optional[int] = None,
        guild: bool = True,
        message: Union[Mapping[str, JSON], int, None] = None,
        timeout: float = 10.0,
    ) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE type 5 (modal submitted with text inputs)."""
        rows = [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
        msg: Optional[Dict[str, JSON]] = None
        if message is not None:
            msg = self.messages[int(message["id"] if isinstance(message, Mapping) else message)]
            channel_id = int(msg["channel_id"])
            guild = msg.get("guild_id") is not None
        inter = self._new_interaction(
            5,
            {"custom_id": custom_id, "components": rows},
            user=user,
            channel_id=channel_id,
            guild=guild,
            permissions=None,
            locale=None,
            message=dict(msg) if msg else None,
        )
        await self.dispatch("INTERACTION_CREATE", inter.payload, timeout=timeout)
        inter.dispatched_at = time.monotonic()
        return inter

    def _callback_path(self, inter: FakeInteraction) -> str:
        return f"/interactions/{inter.id}/{inter.token}/callback"

    async def wait_for_callback(self, inter: FakeInteraction, *, timeout: float = 10.0) -> RecordedRequest:
        """The (first) successful ``POST /interactions/{id}/{token}/callback``."""
        path = self._callback_path(inter)
        return await self.wait_for_request(
            lambda r: r.method == "POST" and r.path == path and 200 <= r.status < 300, timeout=timeout
        )

    async def wait_for_followup(
        self, inter: FakeInteraction, *, timeout: float = 10.0, index: int = 0
    ) -> RecordedRequest:
        """The ``index``-th ``POST /webhooks/{app}/{token}`` for this interaction."""
        path = f"/webhooks/{self.config.application_id}/{inter.token}"
        reqs = await self.wait_for_requests(
            index + 1, lambda r: r.method == "POST" and r.path == path, timeout=timeout
        )
        return reqs[index]

    def original_message(self, inter: FakeInteraction) -> Optional[Dict[str, JSON]]:
        """Current state of the interaction's original response (after edits)."""
        return self.messages.get(inter.original_message_id) if inter.original_message_id else None

    # -------------------------------------------------------------- gateway
    def live_session(self) -> Optional[GatewaySession]:
        for sess in reversed(self.sessions):
            if sess.live:
                return sess
        return None

    @property
    def identify_intents(self) -> Optional[int]:
        """Intents bitfield from the latest IDENTIFY."""
        return self.identify_payloads[-1].get("intents") if self.identify_payloads else None

    async def wait_until_identified(self, timeout: float = 10.0) -> GatewaySession:
        return await self.wait_until(self.live_session, timeout=timeout, description="a gateway IDENTIFY")

    @property
    def heartbeat_interval(self) -> float:
        """Heartbeat interval sent in HELLO, in seconds."""
        return self.config.heartbeat_interval_ms / 1000.0

    @property
    def heartbeat_times(self) -> List[float]:
        return [t for s in self.sessions for t in s.heartbeat_times]

    @property
    def heartbeats_received(self) -> int:
        return sum(len(s.heartbeat_times) for s in self.sessions)

    @property
    def heartbeat_gaps(self) -> List[float]:
        """Gaps between consecutive heartbeats within each connection (seconds)."""
        return [g for s in self.sessions for g in s.heartbeat_gaps()]

    @property
    def longest_heartbeat_gap(self) -> float:
        """Largest gap between consecutive heartbeats (0.0 if fewer than two).

        A value well above ``heartbeat_interval`` means the bot's event loop
        was blocked (the heartbeat thread can only send via the loop).  Prefer
        this over ``client.latency``: discord.py updates ``_last_send`` in the
        heartbeat thread only after the send completes, so when the loop
        handles the ACK first, ``latency`` reads ~one interval (a race).
        """
        return max(self.heartbeat_gaps, default=0.0)

    async def wait_for_heartbeats(self, count: int, *, timeout: float = 10.0) -> None:
        await self.wait_until(
            lambda: self.heartbeats_received >= count, timeout=timeout, description=f"{count} heartbeats"
        )

    def _event_allowed(self, sess: GatewaySession, event: str, data: Mapping[str, JSON]) -> bool:
        intents = sess.intents if sess.intents is not None else -1
        is_dm = data.get("guild_id") is None
        if event.startswith("MESSAGE_REACTION"):
            return bool(intents & (1 << 13 if is_dm else Intents.GUILD_MESSAGE_REACTIONS))
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_DELETE_BULK"):
            return bool(intents & (Intents.DIRECT_MESSAGES if is_dm else Intents.GUILD_MESSAGES))
        if event.startswith("GUILD_MEMBER") and event != "GUILD_MEMBERS_CHUNK":
            return bool(intents & Intents.GUILD_MEMBERS)
        if event in ("GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE") or event.startswith(("CHANNEL_", "THREAD_")):
            return bool(intents & Intents.GUILDS)
        return True

    def _strip_content(self, sess: GatewaySession, event: str, data: Dict[str, JSON]) -> Dict[str, JSON]:
        """Mimic missing MESSAGE_CONTENT intent: blank content unless DM / mention / own message."""
        if not self.config.enforce_message_content_intent or event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
            return data
        if sess.intents is None or sess.intents & Intents.MESSAGE_CONTENT:
            return data
        bot_id = str(self.config.bot.id)
        if data.get("guild_id") is None or (data.get("author") or {}).get("id") == bot_id:
            return data
        if any(m.get("id") == bot_id for m in data.get("mentions") or []):
            return data
        stripped = dict(data)
        stripped.update(content="", embeds=[], attachments=[], components=[])
        stripped.pop("poll", None)
        return stripped

    async def dispatch(self, event: str, data: Dict[str, JSON], *, timeout: float = 10.0) -> bool:
        """Send a DISPATCH (op 0) to the live session; ``False`` if intents filtered it.

        Waits up to ``timeout`` for a session that has IDENTIFY'd.
        """
        sess = self.live_session()
        if sess is None:
            if timeout <= 0:
                return False
            sess = await self.wait_until_identified(timeout)
        if not self._event_allowed(sess, event, data):
            self.suppressed_events.append((event, data))
            return False
        await self._send_dispatch(sess, event, self._strip_content(sess, event, data))
        return True

    async def _send_dispatch(self, sess: GatewaySession, event: str, data: Dict[str, JSON]) -> None:
        async with sess.lock:
            self.sequence += 1
            frame = {"op": 0, "t": event, "s": self.sequence, "d": data}
            self.dispatched_events.append((event, data))
            await sess.ws.send_str(json.dumps(frame))
        self._notify()

    async def _send_op(self, sess: GatewaySession, op: int, d: JSON) -> None:
        async with sess.lock:
            if sess.ws.closed:  # e.g. a heartbeat raced the client's close frame
                return
            await sess.ws.send_str(json.dumps({"op": op, "d": d, "s": None, "t": None}))

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT; discord.py reconnects and RESUMEs."""
        sess = self.live_session()
        if sess is not None:
            await self._send_op(sess, 7, None)

    async def invalidate_session(self, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION."""
        sess = self.live_session()
        if sess is not None:
            await self._send_op(sess, 9, resumable)

    async def close_gateway(self, code: int = 4000) -> None:
        """Drop the live websocket with ``code`` (4000 => client resumes)."""
        sess = self.live_session()
        if sess is not None:
            await sess.ws.close(code=code, message=b"closed by fake discord")

    def _token_ok(self, token: Optional[str]) -> bool:
        if token is None or token in self.config.bad_tokens:
            return False
        return self.config.token is None or token == self.config.token

    async def _gateway_entry(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoclose=True, heartbeat=None)
        await ws.prepare(request)
        sess = GatewaySession(ws=ws, query=dict(request.query), opened_at=time.monotonic())
        self.sessions.append(sess)
        try:
            if request.query.get("encoding", "json") != "json":
                await ws.close(code=4002, message=b"fake discord only speaks json")
                return ws
            await self._send_op(sess, 10, {"heartbeat_interval": self.config.heartbeat_interval_ms})
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    frame = json.loads(msg.data)
                    sess.received.append(frame)
                    await self._on_gateway_frame(sess, frame)
                elif msg.type == WSMsgType.BINARY:
                    self.internal_errors.append("client sent a binary gateway frame")
                    await ws.close(code=4002, message=b"decode error")
                elif msg.type == WSMsgType.ERROR:
                    break
        except ConnectionError:
            pass  # the client went away mid-send: a normal disconnect
        except Exception as exc:  # noqa: BLE001 - report, never crash the server
            _log.exception("fake gateway error")
            self.internal_errors.append(f"gateway handler: {exc!r}")
        finally:
            sess.closed_at = time.monotonic()
            sess.close_code = ws.close_code
            self._notify()
        return ws

    async def _on_gateway_frame(self, sess: GatewaySession, frame: Mapping[str, JSON]) -> None:
        op = frame.get("op")
        d = frame.get("d")
        if op == 1:  # HEARTBEAT
            sess.heartbeat_times.append(time.monotonic())
            if self.ack_heartbeats:
                await self._send_op(sess, 11, None)
                self.heartbeat_acks_sent += 1
            self._notify()
        elif op == 2:  # IDENTIFY
            await self._identify(sess, dict(d or {}))
        elif op == 3:  # PRESENCE_UPDATE
            self.presence_updates.append(dict(d or {}))
        elif op == 6:  # RESUME
            await self._resume(sess, dict(d or {}))
        elif op == 8:  # REQUEST_GUILD_MEMBERS
            await self._member_chunk(sess, dict(d or {}))
        elif op == 4:  # VOICE_STATE_UPDATE - ignored
            pass
        else:
            self.internal_errors.append(f"unexpected gateway op {op}: {frame!r}")
        self._notify()

    async def _identify(self, sess: GatewaySession, d: Dict[str, JSON]) -> None:
        self.identify_payloads.append(d)
        if not self._token_ok(d.get("token")):
            await sess.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = d.get("intents")
        if intents is None:
            await sess.ws.close(code=4013, message=b"Invalid intent(s).")
            return
        allowed = self.config.allowed_intents
        if allowed is not None and int(intents) & ~allowed:
            await sess.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        self._session_counter += 1
        sess.session_id = f"fake-session-{self._session_counter}"
        sess.intents = int(intents)
        sess.identified = True
        cfg = self.config
        ready = {
            "v": 10,
            "user": {**cfg.bot.payload(), "verified": True, "mfa_enabled": False, "email": None, "locale": cfg.locale},
            "guilds": [{"id": str(cfg.guild_id), "unavailable": True}],
            "session_id": sess.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(cfg.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"],
            "user_settings": {},
        }
        if d.get("shard"):
            ready["shard"] = d["shard"]
        await self._send_dispatch(sess, "READY", ready)
        if sess.intents & Intents.GUILDS:
            payload = self.guild_create_payload(include_all_members=bool(sess.intents & Intents.GUILD_MEMBERS))
            await self._send_dispatch(sess, "GUILD_CREATE", payload)

    async def _resume(self, sess: GatewaySession, d: Dict[str, JSON]) -> None:
        previous = next((s for s in self.sessions if s.session_id == d.get("session_id") and s is not sess), None)
        if previous is None or not self._token_ok(d.get("token")):
            await self._send_op(sess, 9, False)
            return
        sess.session_id = previous.session_id
        sess.intents = previous.intents
        sess.identified = True
        sess.resumed = True
        await self._send_dispatch(sess, "RESUMED", {})

    async def _member_chunk(self, sess: GatewaySession, d: Dict[str, JSON]) -> None:
        members = self.guild_members()
        if d.get("user_ids"):
            ids = {int(x) for x in d["user_ids"]}
            members = [m for m in members if m.id in ids]
        elif d.get("query"):
            members = [m for m in members if m.username.startswith(str(d["query"]))]
        limit = int(d.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: Dict[str, JSON] = {
            "guild_id": str(self.config.guild_id),
            "members": [self.member_payload(m) for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if d.get("nonce"):
            chunk["nonce"] = d["nonce"]
        await self._send_dispatch(sess, "GUILD_MEMBERS_CHUNK", chunk)

    # ------------------------------------------------------------------ REST
    def _route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern), handler))

    def _register_routes(self) -> None:
        ch = r"/channels/(?P<channel_id>\d+)"
        msg = ch + r"/messages/(?P<message_id>\d+)"
        app = r"/applications/(?P<app_id>\d+)"
        hook = r"/webhooks/(?P<app_id>\d+)/(?P<token>[^/]+)"
        r = self._route
        r("GET", r"/users/@me", self._get_me)
        r("GET", r"/users/(?P<user_id>\d+)", self._get_user)
        r("POST", r"/users/@me/channels", self._create_dm)
        r("GET", r"/oauth2/applications/@me", self._get_application)
        r("GET", r"/applications/@me", self._get_application)
        r("GET", r"/gateway/bot", self._get_gateway_bot)
        r("GET", r"/gateway", self._get_gateway)
        r("GET", app + r"/commands", self._get_commands)
        r("PUT", app + r"/commands", self._put_commands)
        r("GET", app + r"/guilds/(?P<guild_id>\d+)/commands", self._get_commands)
        r("PUT", app + r"/guilds/(?P<guild_id>\d+)/commands", self._put_commands)
        r("GET", ch, self._get_channel)
        r("POST", ch + r"/typing", self._typing)
        r("GET", ch + r"/messages", self._get_messages)
        r("POST", ch + r"/messages", self._post_message)
        r("POST", ch + r"/threads", self._create_thread)
        r("GET", msg, self._get_message)
        r("PATCH", msg, self._patch_message)
        r("DELETE", msg, self._delete_message)
        r("POST", msg + r"/threads", self._create_thread)
        r("PUT", msg + r"/reactions/(?P<emoji>[^/]+)/@me", self._no_content)
        r("DELETE", msg + r"/reactions/(?P<emoji>[^/]+)/(?P<who>@me|\d+)", self._no_content)
        r("GET", r"/guilds/(?P<guild_id>\d+)", self._get_guild)
        r("GET", r"/guilds/(?P<guild_id>\d+)/channels", self._get_guild_channels)
        r("GET", r"/guilds/(?P<guild_id>\d+)/roles", self._get_roles)
        r("GET", r"/guilds/(?P<guild_id>\d+)/members/(?P<user_id>\d+)", self._get_member)
        r("POST", r"/interactions/(?P<interaction_id>\d+)/(?P<token>[^/]+)/callback", self._interaction_callback)
        r("POST", hook, self._webhook_execute)
        r("GET", hook + r"/messages/(?P<message_id>@original|\d+)", self._webhook_get_message)
        r("PATCH", hook + r"/messages/(?P<message_id>@original|\d+)", self._webhook_edit_message)
        r("DELETE", hook + r"/messages/(?P<message_id>@original|\d+)", self._webhook_delete_message)

    async def _read_body(self, request: web.Request) -> Tuple[JSON, List[UploadedFile]]:
        """JSON body, or multipart (``payload_json`` + ``files[n]``)."""
        files: List[UploadedFile] = []
        if not request.body_exists:
            return None, files
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            payload: JSON = None
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not hasattr(part, "read_chunk"):  # nested multipart: not used by discord.py
                    continue
                data = await part.read(decode=False)  # type: ignore[union-attr]
                name = part.name or ""
                if name == "payload_json":
                    payload = json.loads(bytes(data).decode("utf-8"))
                else:
                    files.append(
                        UploadedFile(name, part.filename, part.headers.get("Content-Type"), bytes(data))
                    )
            return payload, files
        raw = await request.read()
        if not raw:
            return None, files
        if ctype == "application/json":
            return json.loads(raw.decode("utf-8")), files
        return raw.decode("utf-8", "replace"), files

    def _json_response(self, status: int, body: JSON, headers: Optional[Mapping[str, str]] = None) -> web.Response:
        if status == 204 or body is None:
            return web.Response(status=204 if status < 300 else status, headers=headers)
        # body= (bytes) keeps Content-Type exactly "application/json" (no charset)
        return web.Response(
            status=status, body=json.dumps(body).encode("utf-8"), content_type="application/json", headers=headers
        )

    async def _rest_entry(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        method = request.method.upper()
        try:
            body, files = await self._read_body(request)
        except Exception as exc:  # noqa: BLE001
            body, files = None, []
            self.internal_errors.append(f"could not parse body of {method} {path}: {exc!r}")
        auth = request.headers.get("Authorization")
        rec = RecordedRequest(
            index=-1,  # assigned on completion so concurrent requests never collide
            method=method,
            path=path,
            query=dict(request.query),
            json=body,
            headers=dict(request.headers),
            files=files,
            timestamp=time.monotonic(),
        )
        token = auth[4:] if auth and auth.startswith("Bot ") else None
        status, resp, headers = await self._handle_rest(rec, token)
        rec.status, rec.response = status, resp
        rec.index = len(self.requests)
        self.requests.append(rec)
        self._notify()
        return self._json_response(status, resp, headers)

    async def _handle_rest(self, rec: RecordedRequest, token: Optional[str]) -> Tuple[int, JSON, Dict[str, str]]:
        for rule in self._error_rules:
            if rule.remaining > 0 and rule.method == rec.method and rule.path.fullmatch(rec.path):
                rule.remaining -= 1
                return rule.status, rule.body, rule.headers
        for method, pattern, handler in self._routes:
            m = pattern.fullmatch(rec.path)
            if m is None or method != rec.method:
                continue
            needs_auth = not rec.path.startswith(("/interactions/", "/webhooks/"))
            if needs_auth and not self._token_ok(token):
                return 401, {"message": "401: Unauthorized", "code": 0}, {}
            ctx = _RestContext(rec.method, rec.path, m.groupdict(), rec.query, rec.json, rec.files, token)
            try:
                status, resp = await handler(ctx)
            except DiscordAPIError as exc:
                return exc.status, exc.body(), {}
            except Exception as exc:  # noqa: BLE001 - a fake bug must not look like a bot bug
                _log.exception("fake REST handler failed")
                self.internal_errors.append(f"{rec.method} {rec.path}: {exc!r}")
                return 500, {"message": f"fake discord internal error: {exc!r}", "code": 0}, {}
            return status, resp, {}
        self.unhandled_requests.append(rec)
        return 404, {"message": "404: Not Found", "code": 0}, {}

    async def _attachment_entry(self, request: web.Request) -> web.StreamResponse:
        data = self.attachment_data.get(int(request.match_info["attachment_id"]))
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    # --- REST handlers ----------------------------------------------------
    async def _no_content(self, ctx: _RestContext) -> Tuple[int, JSON]:
        return 204, None

    async def _get_me(self, ctx: _RestContext) -> Tuple[int, JSON]:
        return 200, {**self.config.bot.payload(), "verified": True, "mfa_enabled": False, "locale": self.config.locale}

    async def _get_user(self, ctx: _RestContext) -> Tuple[int, JSON]:
        u = self._maybe_user(int(ctx.params["user_id"]))
        if u is None:
            raise DiscordAPIError(404, UNKNOWN_USER, "Unknown User")
        return 200, u.payload()

    async def _create_dm(self, ctx: _RestContext) -> Tuple[int, JSON]:
        u = self._maybe_user(int((ctx.json or {}).get("recipient_id", 0)))
        if u is None:
            raise DiscordAPIError(400, INVALID_FORM_BODY, "Invalid Recipient(s)")
        return 200, self.dm_channel_payload(u)

    async def _get_application(self, ctx: _RestContext) -> Tuple[int, JSON]:
        cfg = self.config
        return 200, {
            "id": str(cfg.application_id),
            "name": cfg.application_name,
            "description": "Fake application for tests",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": cfg.owner.payload(),
            "verify_key": "0" * 64,
            "team": None,
            "flags": 0,
            "tags": [],
            "redirect_uris": [],
            "summary": "",
        }

    async def _get_gateway_bot(self, ctx: _RestContext) -> Tuple[int, JSON]:
        return 200, {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        }

    async def _get_gateway(self, ctx: _RestContext) -> Tuple[int, JSON]:
        return 200, {"url": self.gateway_url}

    def _check_app(self, ctx: _RestContext) -> None:
        if int(ctx.params["app_id"]) != self.config.application_id:
            raise DiscordAPIError(403, 20012, "You are not authorized to perform this action on this application")

    def _check_guild(self, ctx: _RestContext) -> Optional[int]:
        gid = ctx.params.get("guild_id")
        if gid is None:
            return None
        if int(gid) != self.config.guild_id:
            raise DiscordAPIError(404, 10004, "Unknown Guild")
        return int(gid)

    async def _get_commands(self, ctx: _RestContext) -> Tuple[int, JSON]:
        self._check_app(ctx)
        gid = self._check_guild(ctx)
        return 200, list(self.guild_commands.get(gid, []) if gid else self.global_commands)

    async def _put_commands(self, ctx: _RestContext) -> Tuple[int, JSON]:
        """Bulk overwrite; ids stay stable per (guild, name, type) like Discord."""
        self._check_app(ctx)
        gid = self._check_guild(ctx)
        out: List[Dict[str, JSON]] = []
        for cmd in ctx.json or []:
            ctype = int(cmd.get("type", 1))
            key = (gid, cmd["name"], ctype)
            cmd_id = self._command_ids.setdefault(key, self.snowflakes.next())
            echo: Dict[str, JSON] = {
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                **cmd,
                "id": str(cmd_id),
                "application_id": str(self.config.application_id),
                "version": str(self.snowflakes.next()),
                "type": ctype,
            }
            if gid is not None:
                echo["guild_id"] = str(gid)
            out.append(echo)
        if gid is None:
            self.global_commands = out
        else:
            self.guild_commands[gid] = out
        return 200, out

    async def _get_channel(self, ctx: _RestContext) -> Tuple[int, JSON]:
        cid = int(ctx.params["channel_id"])
        ch = self.guild_channel(cid)
        if ch is not None:
            return 200, self.channel_payload(ch)
        u = self._dm_user_for_channel(cid)
        if u is not None:
            return 200, self.dm_channel_payload(u)
        raise DiscordAPIError(404, UNKNOWN_CHANNEL, "Unknown Channel")

    async def _typing(self, ctx: _RestContext) -> Tuple[int, JSON]:
        self._channel_guild_id(int(ctx.params["channel_id"]))
        return 204, None

    async def _get_messages(self, ctx: _RestContext) -> Tuple[int, JSON]:
        cid = int(ctx.params["channel_id"])
        self._channel_guild_id(cid)
        limit = int(ctx.query.get("limit", 50))
        msgs = [m for m in self.messages.values() if m["channel_id"] == str(cid)]
        if "before" in ctx.query:
            msgs = [m for m in msgs if int(m["id"]) < int(ctx.query["before"])]
        if "after" in ctx.query:
            msgs = [m for m in msgs if int(m["id"]) > int(ctx.query["after"])]
        msgs.sort(key=lambda m: int(m["id"]), reverse=True)
        return 200, msgs[:limit]

    async def _post_message(self, ctx: _RestContext) -> Tuple[int, JSON]:
        cid = int(ctx.params["channel_id"])
        msg = self._create_bot_message(cid, ctx.json or {}, ctx.files)
        await self._echo("MESSAGE_CREATE", msg)
        return 200, msg

    def _stored_message(self, ctx: _RestContext) -> Dict[str, JSON]:
        cid = int(ctx.params["channel_id"])
        self._channel_guild_id(cid)
        msg = self.messages.get(int(ctx.params["message_id"]))
        if msg is None or msg["channel_id"] != str(cid):
            raise DiscordAPIError(404, UNKNOWN_MESSAGE, "Unknown Message")
        return msg

    async def _get_message(self, ctx: _RestContext) -> Tuple[int, JSON]:
        return 200, self._stored_message(ctx)

    async def _patch_message(self, ctx: _RestContext) -> Tuple[int, JSON]:
        msg = self._stored_message(ctx)
        if msg["author"]["id"] != str(self.config.bot.id):
            raise DiscordAPIError(403, CANNOT_EDIT_OTHERS_MESSAGE, "Cannot edit a message authored by another user")
        self._edit_message(msg, ctx.json or {}, ctx.files)
        await self._echo("MESSAGE_UPDATE", msg)
        return 200, msg

    async def _delete_message(self, ctx: _RestContext) -> Tuple[int, JSON]:
        msg = self._stored_message(ctx)
        self._forget_message(int(msg["id"]))
        return 204, None

    def _forget_message(self, mid: int) -> None:
        msg = self.messages.pop(mid, None)
        if msg is not None:
            self.deleted_message_ids.append(mid)

    async def _create_thread(self, ctx: _RestContext) -> Tuple[int, JSON]:
        parent_id = int(ctx.params["channel_id"])
        parent = self.guild_channel(parent_id)
        if parent is None:
            raise DiscordAPIError(404, UNKNOWN_CHANNEL, "Unknown Channel")
        body = ctx.json or {}
        if "message_id" in ctx.params:
            self._stored_message(ctx)
            thread_id = int(ctx.params["message_id"])  # Discord reuses the message id
            ttype = 11
        else:
            thread_id = self.snowflakes.next()
            ttype = int(body.get("type", 11))
        thread = FakeChannel(thread_id, str(body.get("name", "thread"))[:100], type=ttype, parent_id=parent_id)
        self.threads[thread_id] = thread
        payload = self.channel_payload(thread)
        if self.config.echo_bot_messages and self.live_session() is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.dispatch("THREAD_CREATE", {**payload, "newly_created": True}, timeout=0)
        return 201, payload

    async def _get_guild(self, ctx: _RestContext) -> Tuple[int, JSON]:
        self._check_guild(ctx)
        payload = self.guild_create_payload()
        for key in ("channels", "members", "threads", "presences", "voice_states"):
            payload.pop(key, None)
        return 200, payload

    async def _get_guild_channels(self, ctx: _RestContext) -> Tuple[int, JSON]:
        self._check_guild(ctx)
        return 200, [self.channel_payload(c) for c in self.config.channels]

    async def _get_roles(self, ctx: _RestContext) -> Tuple[int, JSON]:
        self._check_guild(ctx)
        return 200, self.role_payloads()

    async def _get_member(self, ctx: _RestContext) -> Tuple[int, JSON]:
        self._check_guild(ctx)
        u = self._maybe_user(int(ctx.params["user_id"]))
        if u is None or not u.in_guild:
            raise DiscordAPIError(404, 10007, "Unknown Member")
        return 200, self.member_payload(u)

    # --- interactions -------------------------------------------------------
    def _interaction_for_token(self, ctx: _RestContext) -> FakeInteraction:
        self._check_app_webhook(ctx)
        inter = self._interactions_by_token.get(ctx.params["token"])
        if inter is None or not inter.acknowledged:
            # Discord: follow-ups before the initial callback hit an unknown webhook
            raise DiscordAPIError(404, UNKNOWN_WEBHOOK, "Unknown Webhook")
        return inter

    def _check_app_webhook(self, ctx: _RestContext) -> None:
        if int(ctx.params["app_id"]) != self.config.application_id:
            raise DiscordAPIError(404, UNKNOWN_WEBHOOK, "Unknown Webhook")

    async def _interaction_callback(self, ctx: _RestContext) -> Tuple[int, JSON]:
        inter = self.interactions.get(int(ctx.params["interaction_id"]))
        if inter is None or inter.token != ctx.params["token"]:
            raise DiscordAPIError(404, UNKNOWN_INTERACTION, "Unknown interaction")
        deadline = self.config.interaction_callback_deadline
        if deadline is not None and time.monotonic() - inter.dispatched_at > deadline:
            inter.expired = True
            raise DiscordAPIError(404, UNKNOWN_INTERACTION, "Unknown interaction")
        if inter.acknowledged:
            raise DiscordAPIError(400, ALREADY_ACKNOWLEDGED, "Interaction has already been acknowledged.")
        body = ctx.json or {}
        cb_type = int(body.get("type", 0))
        data = body.get("data") or {}
        resource: Dict[str, JSON] = {"type": cb_type}
        msg: Optional[Dict[str, JSON]] = None
        echo_event: Optional[str] = None
        ephemeral = bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)
        source = self.messages.get(inter.source_message_id) if inter.source_message_id else None
        if cb_type == 4:  # CHANNEL_MESSAGE_WITH_SOURCE
            validate_message_payload({**data, "attachments": list(data.get("attachments") or []) + list(ctx.files)})
            inter.callback_types.append(cb_type)
            msg = self._create_bot_message(
                inter.channel_id, data, ctx.files, message_type=20 if inter.type == 2 else 19,
                interaction=inter, validate=False,
            )
            inter.original_message_id = int(msg["id"])
            echo_event = "MESSAGE_CREATE"
        elif cb_type == 5:  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE ("thinking")
            inter.callback_types.append(cb_type)
            flags = FLAG_LOADING | (FLAG_EPHEMERAL if ephemeral else 0)
            msg = self._create_bot_message(
                inter.channel_id, {}, [], message_type=20 if inter.type == 2 else 19,
                interaction=inter, flags=flags, validate=False,
            )
            inter.original_message_id = int(msg["id"])
            echo_event = "MESSAGE_CREATE"
        elif cb_type in (6, 7):  # DEFERRED_UPDATE_MESSAGE / UPDATE_MESSAGE
            if source is None:
                raise DiscordAPIError(400, 40004, "Interaction has no message to update")
            inter.callback_types.append(cb_type)
            if cb_type == 7:
                self._edit_message(source, data, ctx.files)
                echo_event = "MESSAGE_UPDATE"
            msg = source
            inter.original_message_id = int(source["id"])
        elif cb_type in (1, 8, 9, 10, 12):  # PONG / AUTOCOMPLETE / MODAL / PREMIUM / ACTIVITY
            inter.callback_types.append(cb_type)
        else:
            raise _form_error("type", "BASE_TYPE_CHOICES", "Value must be one of (1, 4, 5, 6, 7, 8, 9, 10, 12).")
        inter.callback_data.append(data)
        interaction_info: Dict[str, JSON] = {
            "id": str(inter.id),
            "type": inter.type,
            "activity_instance_id": None,
            "response_message_id": str(msg["id"]) if msg else None,
            "response_message_loading": cb_type == 5,
            "response_message_ephemeral": ephemeral,
        }
        if msg is not None:
            resource["message"] = msg
        if echo_event is not None and msg is not None:
            await self._echo(echo_event, msg)
        return 200, {"interaction": interaction_info, "resource": resource}

    async def _webhook_execute(self, ctx: _RestContext) -> Tuple[int, JSON]:
        inter = self._interaction_for_token(ctx)
        body = ctx.json or {}
        original = self.original_message(inter)
        if original is not None and int(original.get("flags") or 0) & FLAG_LOADING:
            # first follow-up after a "thinking" defer replaces the loading message
            validate_message_payload({**body, "attachments": list(body.get("attachments") or []) + list(ctx.files)})
            flags_body = {k: v for k, v in body.items() if k != "flags"}
            msg = self._edit_message(original, {**flags_body, "flags": 0}, ctx.files)
            inter.followup_message_ids.append(int(msg["id"]))
            await self._echo("MESSAGE_UPDATE", msg)
        else:
            msg = self._create_bot_message(
                inter.channel_id, body, ctx.files, message_type=20 if inter.type == 2 else 19, interaction=inter
            )
            inter.followup_message_ids.append(int(msg["id"]))
            await self._echo("MESSAGE_CREATE", msg)
        if ctx.query.get("wait", "0").lower() in ("1", "true"):
            return 200, msg
        return 204, None

    def _webhook_message(self, ctx: _RestContext) -> Tuple[FakeInteraction, Dict[str, JSON]]:
        inter = self._interaction_for_token(ctx)
        ref = ctx.params["message_id"]
        mid = inter.original_message_id if ref == "@original" else int(ref)
        if mid is None or (ref != "@original" and mid not in inter.followup_message_ids):
            raise DiscordAPIError(404, UNKNOWN_MESSAGE, "Unknown Message")
        msg = self.messages.get(mid)
        if msg is None:
            raise DiscordAPIError(404, UNKNOWN_MESSAGE, "Unknown Message")
        return inter, msg

    async def _webhook_get_message(self, ctx: _RestContext) -> Tuple[int, JSON]:
        return 200, self._webhook_message(ctx)[1]

    async def _webhook_edit_message(self, ctx: _RestContext) -> Tuple[int, JSON]:
        _, msg = self._webhook_message(ctx)
        self._edit_message(msg, ctx.json or {}, ctx.files)
        await self._echo("MESSAGE_UPDATE", msg)
        return 200, msg

    async def _webhook_delete_message(self, ctx: _RestContext) -> Tuple[int, JSON]:
        _, msg = self._webhook_message(ctx)
        self._forget_message(int(msg["id"]))
        return 204, None


# --------------------------------------------------------------------------- #
# discord.py / pytest helpers
# --------------------------------------------------------------------------- #


def patch_discord(monkeypatch: "pytest.MonkeyPatch", fake: FakeDiscord) -> None:
    """Point discord.py's REST base and default gateway at ``fake``.

    Must run before the client is started.  Don't call
    ``discord.http._set_api_version()`` afterwards: it resets ``Route.BASE``.
    """
    import discord.gateway
    import discord.http

    if discord.http.INTERNAL_API_VERSION != 10:
        raise RuntimeError(f"fake discord speaks v10, discord.py uses v{discord.http.INTERNAL_API_VERSION}")
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))


def _is_local_host(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None:
        return True  # getaddrinfo(None, port) == wildcard/loopback for binding
    host = str(host).strip("[]")
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@dataclass
class NetworkGuard:
    """What :func:`block_external_network` refused (assert it stays empty)."""

    attempts: List[str] = field(default_factory=list)


def block_external_network(monkeypatch: "pytest.MonkeyPatch") -> NetworkGuard:
    """Make any DNS lookup / TCP connect to a non-loopback host fail loudly.

    discord.py retries or swallows some network errors, so tests should also
    assert ``guard.attempts == []`` at teardown.
    """
    guard = NetworkGuard()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def _check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            if not _is_local_host(address[0]):
                guard.attempts.append(f"connect {address!r}")
                raise ConnectionRefusedError(f"fakediscord: blocked external connection to {address!r}")

    def guarded_connect(self: socket.socket, address: Any) -> None:
        _check(self, address)
        return real_connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        _check(self, address)
        return real_connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local_host(host):
            guard.attempts.append(f"getaddrinfo {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"fakediscord: blocked DNS lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return guard


class DiscordErrorCollector(logging.Handler):
    """Collect log records so swallowed errors fail the test.

    discord.py catches exceptions in event handlers, app commands and views
    and only *logs* them (``Ignoring exception in ...``), and asyncio only
    logs "Unclosed client session" / "Task exception was never retrieved".
    Install this on those loggers; ``assert_clean()`` raises if any ERROR+
    record arrived (WARNINGs are kept in ``warnings`` for inspection).
    """

    def __init__(self, logger_names: Sequence[str] = ("discord", "asyncio")) -> None:
        super().__init__(level=logging.WARNING)
        self.logger_names: Tuple[str, ...] = tuple(logger_names)
        self.records: List[logging.LogRecord] = []
        self._allowed: List[Pattern[str]] = []
        self._saved_levels: Dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def allow(self, pattern: str) -> None:
        """Tolerate ERROR records whose message matches ``pattern`` (regex search)."""
        self._allowed.append(re.compile(pattern))

    @property
    def warnings(self) -> List[logging.LogRecord]:
        return [r for r in self.records if r.levelno == logging.WARNING]

    @property
    def errors(self) -> List[logging.LogRecord]:
        return [
            r
            for r in self.records
            if r.levelno >= logging.ERROR and not any(p.search(r.getMessage()) for p in self._allowed)
        ]

    def clear(self) -> None:
        self.records.clear()

    def install(self) -> None:
        for name in self.logger_names:
            logger = logging.getLogger(name)
            self._saved_levels[name] = logger.level
            if logger.getEffectiveLevel() > logging.WARNING:
                logger.setLevel(logging.WARNING)
            logger.addHandler(self)

    def uninstall(self) -> None:
        for name in self.logger_names:
            logger = logging.getLogger(name)
            logger.removeHandler(self)
            if name in self._saved_levels:
                logger.setLevel(self._saved_levels.pop(name))

    def assert_clean(self) -> None:
        gc.collect()  # surface "Unclosed client session" now, not in a later test
        errors = self.errors
        if errors:
            fmt = logging.Formatter("%(name)s %(levelname)s: %(message)s")
            raise AssertionError(
                "errors were logged:\n" + "\n".join(fmt.format(r) for r in errors)
            )

    def __enter__(self) -> "DiscordErrorCollector":
        self.install()
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Any) -> None:
        try:
            if exc_type is None:
                self.assert_clean()
        finally:
            self.uninstall()


def stop_views(client: "discord.Client") -> None:
    """Stop every stored ``ui.View`` (timeout tasks otherwise outlive ``close()``)."""
    store = getattr(getattr(client, "_connection", None), "_view_store", None)
    views: Dict[Any, Dict[Any, Any]] = getattr(store, "_views", {}) or {}
    seen: Set[int] = set()
    for items in list(views.values()):
        for item in list(items.values()):
            view = getattr(item, "view", None)
            if view is not None and id(view) not in seen:
                seen.add(id(view))
                view.stop()


@contextlib.asynccontextmanager
async def running_bot(
    client: "discord.Client", token: str, *, ready_timeout: float = 10.0, close_timeout: float = 10.0
) -> AsyncIterator["discord.Client"]:
    """Run ``client.start(token)`` as a task until ``on_ready``; close it on exit.

    Use ``guild_ready_timeout=0.1`` on the client or on_ready takes 2 s.  If
    ``start`` fails (e.g. ``LoginFailure``) the client is closed and the error
    re-raised.  A crash of the start task while the body runs is re-raised on
    exit.
    """
    task: asyncio.Task[None] = asyncio.create_task(client.start(token), name="fakediscord-bot")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ready_timeout
    try:
        while not client.is_ready():
            if task.done():
                await client.close()
                task.result()  # raises the start() error
                raise AssertionError("client.start() returned before the client became ready")
            if loop.time() > deadline:
                raise FakeDiscordTimeout(f"client not ready after {ready_timeout}s")
            await asyncio.sleep(0.01)
    except BaseException:
        if not task.done():
            await client.close()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, close_timeout)
        raise
    try:
        yield client
    finally:
        stop_views(client)
        await client.close()
        try:
            await asyncio.wait_for(task, close_timeout)
        except asyncio.TimeoutError:
            task.cancel()
            raise


def task_snapshot() -> Set["asyncio.Task[Any]"]:
    """All tasks now; pass to :func:`assert_no_leaked_tasks` later."""
    return set(asyncio.all_tasks())


async def assert_no_leaked_tasks(baseline: Set["asyncio.Task[Any]"], *, grace: float = 2.0) -> None:
    """Fail (and cancel them) if tasks created since ``baseline`` are still pending."""
    me = asyncio.current_task()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while True:
        leftover = [t for t in asyncio.all_tasks() if t not in baseline and t is not me and not t.done()]
        if not leftover or loop.time() > deadline:
            break
        await asyncio.sleep(0.02)
    if leftover:
        names = [f"{t.get_name()}: {t.get_coro()!r}" for t in leftover]
        for t in leftover:
            t.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
        raise AssertionError("leaked asyncio tasks:\n  " + "\n  ".join(names))
