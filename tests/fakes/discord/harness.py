"""Test harness around the fake: point discord.py at it, keep the test off the internet, fail on swallowed
errors, run a bot for the length of a ``with`` block, and catch leaked tasks."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import re
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from re import Pattern
from typing import TYPE_CHECKING, Any

import yarl

from .records import FakeDiscordTimeout
from .server import FakeDiscord

if TYPE_CHECKING:  # pragma: no cover - typing only
    import discord
    import pytest


def patch_discord(monkeypatch: pytest.MonkeyPatch, fake: FakeDiscord) -> None:
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

    attempts: list[str] = field(default_factory=list)


def block_external_network(monkeypatch: pytest.MonkeyPatch) -> NetworkGuard:
    """Make any DNS lookup / TCP connect to a non-loopback host fail loudly.

    discord.py retries or swallows some network errors, so tests should also
    assert ``guard.attempts == []`` at teardown.
    """
    guard = NetworkGuard()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def _check(sock: socket.socket, address: Any) -> None:
        inet = sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple)
        if inet and not _is_local_host(address[0]):
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
        self.logger_names: tuple[str, ...] = tuple(logger_names)
        self.records: list[logging.LogRecord] = []
        self._allowed: list[Pattern[str]] = []
        self._saved_levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def allow(self, pattern: str) -> None:
        """Tolerate ERROR records whose message matches ``pattern`` (regex search)."""
        self._allowed.append(re.compile(pattern))

    @property
    def warnings(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno == logging.WARNING]

    @property
    def errors(self) -> list[logging.LogRecord]:
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

    def __enter__(self) -> DiscordErrorCollector:
        self.install()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc_type is None:
                self.assert_clean()
        finally:
            self.uninstall()


def stop_views(client: discord.Client) -> None:
    """Stop every stored ``ui.View`` (timeout tasks otherwise outlive ``close()``)."""
    store = getattr(getattr(client, "_connection", None), "_view_store", None)
    views: dict[Any, dict[Any, Any]] = getattr(store, "_views", {}) or {}
    seen: set[int] = set()
    for items in list(views.values()):
        for item in list(items.values()):
            view = getattr(item, "view", None)
            if view is not None and id(view) not in seen:
                seen.add(id(view))
                view.stop()


@contextlib.asynccontextmanager
async def running_bot(
    client: discord.Client, token: str, *, ready_timeout: float = 10.0, close_timeout: float = 10.0
) -> AsyncIterator[discord.Client]:
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
        except TimeoutError:
            task.cancel()
            raise


def task_snapshot() -> set[asyncio.Task[Any]]:
    """All tasks now; pass to :func:`assert_no_leaked_tasks` later."""
    return set(asyncio.all_tasks())


async def assert_no_leaked_tasks(baseline: set[asyncio.Task[Any]], *, grace: float = 2.0) -> None:
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
