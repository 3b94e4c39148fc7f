"""``FakeDiscord``: the aiohttp server on 127.0.0.1 that ties the fake's parts together.

It owns the state (REST records, world, gateway records), serves it, and offers the waits and queries tests
use. What it does with a request is in its parts: ``world.py`` (guild, users, channels), ``messages.py``,
``interactions.py`` (what users do), ``gateway.py`` (websocket), ``rest.py`` with ``routes.py`` and
``callbacks.py`` (what the bot does over REST).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Callable, Mapping
from re import Pattern
from typing import TypeVar

from aiohttp import web

from .callbacks import CallbacksMixin
from .command_data import CommandDataMixin
from .config import FakeChannel, FakeDiscordConfig
from .constants import API_PREFIX, JSON, SnowflakeFactory, log
from .gateway import GatewayMixin
from .guilds import GuildsMixin
from .interactions import InteractionsMixin
from .messages import MessagesMixin
from .records import (
    ErrorRule,
    FakeDiscordTimeout,
    FakeInteraction,
    GatewaySession,
    Handler,
    RecordedRequest,
)
from .rest import RestMixin
from .routes import RoutesMixin
from .world import WorldMixin

T = TypeVar("T")
Predicate = Callable[[RecordedRequest], bool]


class FakeDiscord(GatewayMixin, InteractionsMixin, CommandDataMixin, CallbacksMixin, RoutesMixin, RestMixin,
                  MessagesMixin, GuildsMixin, WorldMixin):
    """Fake Discord REST API (``/api/v10``) and gateway (``/gateway``).

    One bot, in one guild (or more: ``FakeDiscordConfig(second_guild=True)``).  All state is public so tests
    can inspect it:
    ``requests``, ``messages``, ``bot_messages``, ``interactions``,
    ``guild_commands``/``global_commands``, ``sessions``, heartbeat stats.
    """

    def __init__(self, config: FakeDiscordConfig | None = None) -> None:
        self.config: FakeDiscordConfig = config or FakeDiscordConfig()
        self.snowflakes = SnowflakeFactory()
        self.port: int = 0
        self._runner: web.AppRunner | None = None
        self._changed: asyncio.Event = asyncio.Event()

        # REST records
        self.requests: list[RecordedRequest] = []
        self.unhandled_requests: list[RecordedRequest] = []
        self.internal_errors: list[str] = []
        self._error_rules: list[ErrorRule] = []

        # world state
        self.messages: dict[int, dict[str, JSON]] = {}
        self.bot_messages: list[dict[str, JSON]] = []
        self.deleted_message_ids: list[int] = []
        self.attachment_data: dict[int, bytes] = {}
        self.threads: dict[int, FakeChannel] = {}
        self._dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self.interactions: dict[int, FakeInteraction] = {}
        self._interactions_by_token: dict[str, FakeInteraction] = {}
        self.global_commands: list[dict[str, JSON]] = []
        self.guild_commands: dict[int, list[dict[str, JSON]]] = {}
        self._command_ids: dict[tuple[int | None, str, int], int] = {}
        #: guilds the bot was removed from (``remove_bot_from_guild``)
        self.removed_guild_ids: set[int] = set()

        # gateway records
        self.sessions: list[GatewaySession] = []
        self.identify_payloads: list[dict[str, JSON]] = []
        self.presence_updates: list[dict[str, JSON]] = []
        self.dispatched_events: list[tuple[str, dict[str, JSON]]] = []
        self.suppressed_events: list[tuple[str, dict[str, JSON]]] = []
        self.sequence: int = 0
        self.heartbeat_acks_sent: int = 0
        #: set False to simulate a zombie connection (no HEARTBEAT_ACK)
        self.ack_heartbeats: bool = True
        self._session_counter = 0

        self._routes: list[tuple[str, Pattern[str], Handler]] = []
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
        log.debug("fake discord listening on %s", self.base_url)

    async def stop(self) -> None:
        """Close open websockets and shut the server down."""
        for sess in self.sessions:
            if not sess.ws.closed:
                with contextlib.suppress(Exception):
                    await sess.ws.close(code=1001, message=b"fake discord shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
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
        problems: list[str] = list(self.internal_errors)
        problems += [f"unhandled route: {r.summary()}" for r in self.unhandled_requests]
        if problems:
            raise AssertionError("fake discord problems:\n  " + "\n  ".join(problems))

    # ------------------------------------------------------------- waiting
    def _notify(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    async def wait_until(
        self, condition: Callable[[], T | None], *, timeout: float = 10.0, description: str = "condition"
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
        predicate: Predicate | None = None,
        *,
        method: str | None = None,
        path: str | Pattern[str] | None = None,
        since: int = 0,
    ) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests[since:]
            if r.matches(method, path) and (predicate is None or predicate(r))
        ]

    async def wait_for_request(
        self,
        predicate: Predicate | None = None,
        *,
        method: str | None = None,
        path: str | Pattern[str] | None = None,
        timeout: float = 10.0,
        since: int = 0,
    ) -> RecordedRequest:
        """First recorded request (index >= ``since``) matching all filters."""

        def check() -> RecordedRequest | None:
            found = self.find_requests(predicate, method=method, path=path, since=since)
            return found[0] if found else None

        return await self.wait_until(check, timeout=timeout, description=f"request method={method} path={path}")

    async def wait_for_requests(
        self,
        count: int,
        predicate: Predicate | None = None,
        *,
        method: str | None = None,
        path: str | Pattern[str] | None = None,
        timeout: float = 10.0,
        since: int = 0,
    ) -> list[RecordedRequest]:
        def check() -> list[RecordedRequest] | None:
            found = self.find_requests(predicate, method=method, path=path, since=since)
            return found[:count] if len(found) >= count else None

        return await self.wait_until(check, timeout=timeout, description=f"{count} requests {method} {path}")

    async def assert_no_request(
        self,
        predicate: Predicate | None = None,
        *,
        method: str | None = None,
        path: str | Pattern[str] | None = None,
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
        predicate: Callable[[dict[str, JSON]], bool] | None = None,
        *,
        channel_id: int | None = None,
        timeout: float = 10.0,
        since: int = 0,
    ) -> dict[str, JSON]:
        """First message the bot created (``bot_messages[since:]``) matching; current (edited) state."""

        def check() -> dict[str, JSON] | None:
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
        message: str | None = None,
        body: JSON = None,
        headers: Mapping[str, str] | None = None,
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
        self._error_rules.append(ErrorRule(method.upper(), re.compile(path), status, body, hdrs, times))
