"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for the language-model tests.

It speaks the real wire format (``POST /v1/chat/completions``, JSON or server-sent events when
``stream`` is true), so the real ``openai`` client and Herald's code run unchanged. ``mode`` picks the
behaviour: ``ok`` (reply with ``reply``, or ``reply_for(request)``), ``500``, ``429``, ``slow`` (sleep
``delay`` seconds first), ``malformed`` (a body that is not JSON), ``empty`` (an empty answer), ``down``
(the connection is closed without a reply). ``chunk_delay`` spaces a stream's pieces (a model writing at
a visible pace). Every request body is kept in ``requests``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeLLM:
    mode: str = "ok"
    reply: str = "Russia vetoed the resolution [1]."
    reply_for: Callable[[dict], str] | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0  # seconds between two streamed pieces (a model writing at a human-visible pace)
    requests: list[dict] = field(default_factory=list)
    url: str = ""

    def answer_for(self, body: dict) -> str:
        return self.reply_for(body) if self.reply_for else self.reply

    @property
    def prompts(self) -> list[str]:
        """The last user message of each request (where the passages and question are)."""
        return [r["messages"][-1]["content"] for r in self.requests]


def _handler(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            fake.requests.append(body)
            if fake.mode == "down":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if fake.mode == "slow":
                time.sleep(fake.delay)
            if fake.mode in ("500", "429"):
                self._send(int(fake.mode), b'{"error": {"message": "nope"}}')
                return
            if fake.mode == "malformed":
                self._send(200, b"this is not json")
                return
            text = "" if fake.mode == "empty" else fake.answer_for(body)
            if body.get("stream"):
                self._stream(text, body.get("model", "fake"))
            else:
                self._send(200, json.dumps(_completion(text, body.get("model", "fake"))).encode())

        def _send(self, status: int, payload: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _stream(self, text: str, model: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, piece in enumerate(_pieces(text)):
                if i and fake.chunk_delay:
                    time.sleep(fake.chunk_delay)
                self._chunk(b"data: " + json.dumps(_delta(piece, model)).encode() + b"\n\n")
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler


def _pieces(text: str) -> Iterator[str]:
    words = text.split(" ")
    for i, w in enumerate(words):
        yield w if i == len(words) - 1 else w + " "


def _completion(text: str, model: str) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def _delta(piece: str, model: str) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}


@contextmanager
def fake_llm_server(**kwargs: Any) -> Iterator[FakeLLM]:
    """A running fake on 127.0.0.1 (an ephemeral port); ``fake.url`` is its base URL (…/v1)."""
    fake = FakeLLM(**kwargs)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
