"""What the fake records and raises: requests, uploads, interactions, gateway sessions, API errors."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from re import Pattern

from aiohttp import web

from .constants import JSON


@dataclass
class UploadedFile:
    """A file part of a multipart request."""

    field_name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class RecordedRequest:
    """One REST request the bot made (path is relative to ``/api/v10``)."""

    index: int
    method: str
    path: str
    query: dict[str, str]
    json: JSON
    headers: dict[str, str]
    files: list[UploadedFile]
    timestamp: float
    status: int = 0
    response: JSON = None

    def matches(self, method: str | None = None, path: str | Pattern[str] | None = None) -> bool:
        """``path`` is a regex that must match the whole path."""
        if method is not None and self.method != method.upper():
            return False
        return path is None or re.fullmatch(path, self.path) is not None

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
    payload: dict[str, JSON]
    channel_id: int
    guild_id: int | None
    user_id: int
    dispatched_at: float
    callback_types: list[int] = field(default_factory=list)
    callback_data: list[JSON] = field(default_factory=list)
    original_message_id: int | None = None
    followup_message_ids: list[int] = field(default_factory=list)
    #: for component/modal interactions: the message the component lives on
    source_message_id: int | None = None
    expired: bool = False

    @property
    def acknowledged(self) -> bool:
        return bool(self.callback_types)

    @property
    def callback_type(self) -> int | None:
        return self.callback_types[0] if self.callback_types else None


@dataclass
class GatewaySession:
    """One websocket connection from the bot."""

    ws: web.WebSocketResponse
    query: dict[str, str]
    opened_at: float
    session_id: str | None = None
    intents: int | None = None
    identified: bool = False
    resumed: bool = False
    #: (shard id, shard count) from IDENTIFY; None: the session gets every guild's events
    shard: tuple[int, int] | None = None
    closed_at: float | None = None
    close_code: int | None = None
    heartbeat_times: list[float] = field(default_factory=list)
    received: list[dict[str, JSON]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def live(self) -> bool:
        return self.identified and not self.ws.closed and self.closed_at is None

    def heartbeat_gaps(self) -> list[float]:
        t = self.heartbeat_times
        return [b - a for a, b in zip(t, t[1:])]


class DiscordAPIError(Exception):
    """Raised inside REST handlers to produce a Discord-style JSON error."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, JSON] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, JSON]:
        body: dict[str, JSON] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


class FakeDiscordTimeout(AssertionError):
    """A ``wait_*`` helper gave up; the message lists what *did* happen."""


@dataclass
class ErrorRule:
    method: str
    path: Pattern[str]
    status: int
    body: JSON
    headers: dict[str, str]
    remaining: int


@dataclass
class RestContext:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    json: JSON
    files: list[UploadedFile]
    token: str | None


Handler = Callable[[RestContext], Awaitable[tuple[int, JSON]]]
