"""What the fake records and raises: requests, uploads, interactions, gateway sessions, API errors."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Dict, List, Optional, Pattern, Tuple, Union

from aiohttp import web

from .constants import JSON


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
class ErrorRule:
    method: str
    path: Pattern[str]
    status: int
    body: JSON
    headers: Dict[str, str]
    remaining: int


@dataclass
class RestContext:
    method: str
    path: str
    params: Dict[str, str]
    query: Dict[str, str]
    json: JSON
    files: List[UploadedFile]
    token: Optional[str]


Handler = Callable[[RestContext], Awaitable[Tuple[int, JSON]]]
