"""Fixtures and helpers for Herald's bot tests against the fake Discord in ``tests/fakes/discord/``.

Import the fixtures into a test module with ``from bot_fixtures import *``. The bot under test is the
real ``HeraldBot`` (unmodified); only ``discord.http.Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY``
are patched to point at the fake on 127.0.0.1, any non-loopback connection fails the test, and ERROR
logs from the ``discord`` and ``asyncio`` loggers fail it too (discord.py swallows handler exceptions).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.settings import Settings
from fakes.discord import (
    DiscordErrorCollector,
    FakeDiscord,
    FakeDiscordConfig,
    NetworkGuard,
    assert_no_leaked_tasks,
    block_external_network,
    patch_discord,
    running_bot,
    task_snapshot,
)
from fakes.engine import WorkingEngine  # noqa: F401 - re-exported for the bot tests
from index.embed.base import Embedder

TOKEN = "fake-bot-token"
HERALD_LOGGER = "herald"

__all__ = [
    "TOKEN", "network_guard", "discord_errors", "herald_logs", "fake", "start_herald", "bot_settings",
    "StubEngine", "StubIndex", "fake_config", "mention", "embed_of", "replies_to", "SlowBuildEmbedder",
    "slow_embedder",
]


@pytest.fixture
def network_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkGuard]:
    guard = block_external_network(monkeypatch)
    yield guard
    assert guard.attempts == [], f"something tried to leave 127.0.0.1: {guard.attempts}"


@pytest.fixture
def discord_errors() -> Iterator[DiscordErrorCollector]:
    with DiscordErrorCollector() as collector:
        yield collector


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, name_prefix: str = "") -> list[str]:
        return [r.getMessage() for r in self.records if r.name.startswith(name_prefix)]


@pytest.fixture
def herald_logs() -> Iterator[_Records]:
    """Every log record at DEBUG and up, from all loggers (to check the token never appears)."""
    handler = _Records()
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


@pytest.fixture
def fake_config(request: pytest.FixtureRequest) -> FakeDiscordConfig:
    """The fake world; parametrize it indirectly to change it for one test."""
    return getattr(request, "param", None) or FakeDiscordConfig(token=TOKEN, heartbeat_interval_ms=1000)


@pytest_asyncio.fixture
async def fake(monkeypatch: pytest.MonkeyPatch, network_guard: NetworkGuard,
               discord_errors: DiscordErrorCollector, fake_config: FakeDiscordConfig) -> AsyncIterator[FakeDiscord]:
    baseline = task_snapshot()
    server = FakeDiscord(fake_config)
    await server.start()
    patch_discord(monkeypatch, server)
    try:
        yield server
    finally:
        await server.stop()
    server.assert_healthy()
    await assert_no_leaked_tasks(baseline)


@pytest.fixture
def bot_settings(tmp_path: Path) -> Settings:
    """Settings for a test bot: no cooldown, feedback in tmp, commands synced to the fake guild."""
    return Settings(discord_token=TOKEN, cooldown_seconds=0.0, feedback_file=tmp_path / "feedback.jsonl",
                    dev_guild_id=FakeDiscordConfig().guild_id, max_concurrency=2,
                    corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")


@pytest_asyncio.fixture
async def start_herald(fake: FakeDiscord, bot_settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    """``bot = await start_herald(engine, **setting_overrides)``: a ready HeraldBot on the fake."""
    from bot.discord_bot.client import HeraldBot

    async with contextlib.AsyncExitStack() as stack:
        async def start(engine: Any, *, bot_kwargs: dict[str, Any] | None = None, **overrides: Any) -> HeraldBot:
            settings = dataclasses.replace(bot_settings, **overrides)
            bot = HeraldBot(settings=settings, engine=engine, guild_ready_timeout=0.05, **(bot_kwargs or {}))
            await stack.enter_async_context(running_bot(bot, TOKEN))
            stack.push_async_callback(_finish_background, bot)
            return bot

        yield start


async def _finish_background(bot: Any) -> None:
    """Let a /reindex still running finish before the loop closes (it runs in a thread)."""
    reindexer = getattr(bot, "reindexer", None)  # a test may have started no HeraldBot
    task = reindexer.task if reindexer is not None else None
    if task is not None and not task.done():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), 30)


# ------------------------------------------------------------------------------------ stub engine


@dataclasses.dataclass
class StubDoc:
    id: str
    title: str
    url: str | None = None
    date: str | None = None
    outlet: str | None = None
    collection: str = "base"


@dataclasses.dataclass
class StubIndex:
    documents: list[StubDoc]


class StubEngine:
    """An Engine stand-in that returns a prepared Answer (or raises), to test formatting and errors.

    ``histories`` records the earlier turns each question came with (follow-ups); ``tokens``, when given,
    are fed to ``on_token`` one by one (``token_delay`` seconds apart) as a streaming answerer would, and
    the engine then says it streams (``Engine.streams``), as one with a language model does.
    """

    def __init__(self, make: Callable[[str], Any], documents: list[StubDoc] | None = None,
                 tokens: list[str] | None = None, token_delay: float = 0.0) -> None:
        self.streams = bool(tokens)
        self._make = make
        self.index = StubIndex(documents or [StubDoc("a", "Stub article")])
        self.questions: list[str] = []
        self.histories: list[tuple[Any, ...]] = []
        self.scopes: list[tuple[str, ...] | None] = []  # the collections each question searched
        self.tokens = tokens or []
        self.token_delay = token_delay

    def ask(self, question: str, history: Any = (), on_token: Callable[[str], None] | None = None,
            collections: Any = None) -> Any:
        self.questions.append(question)
        self.histories.append(tuple(history))
        self.scopes.append(None if collections is None else tuple(collections))
        if on_token is not None:
            for piece in self.tokens:
                time.sleep(self.token_delay)
                on_token(piece)
        return self._make(question)

    def documents(self, collections: Any = None) -> list[StubDoc]:
        return [d for d in self.index.documents if collections is None or d.collection in collections]


class SlowBuildEmbedder(Embedder):
    """Delegates to the test-hash embedder; batch encodes (builds) sleep, single questions do not."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim = inner, "slow-hash", inner.dim
        self.delay = 0.0
        self.building = threading.Event()

    def encode(self, texts, batch_size: int = 64, progress: bool = False):
        if len(texts) > 1 and self.delay:
            self.building.set()
            time.sleep(self.delay)
        return self.inner.encode(texts, batch_size, progress)


@pytest.fixture
def slow_embedder(fake_embedder):
    from index.embed import models as embed

    slow = SlowBuildEmbedder(fake_embedder)
    embed.register_embedder("slow-hash", lambda _name: slow)
    yield slow
    embed.unregister_embedder("slow-hash")


# ---------------------------------------------------------------------------------------- helpers


def mention(fake: FakeDiscord, text: str) -> str:
    return f"<@{fake.config.bot.id}> {text}"


def embed_of(msg: dict[str, Any]) -> dict[str, Any]:
    embeds = msg.get("embeds") or []
    assert embeds, f"message has no embed: {msg.get('content')!r}"
    return embeds[0]


def replies_to(question: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """Predicate for bot messages replying to ``question`` (a MESSAGE_CREATE payload)."""
    qid = question["id"]
    return lambda m: (m.get("message_reference") or {}).get("message_id") == qid

