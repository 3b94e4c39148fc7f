"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for the language-model tests.

It speaks the real wire format (``POST /v1/chat/completions``, JSON or server-sent events when
``stream`` is true), so the real ``openai`` client and Herald's code run unchanged. ``mode`` picks the
behaviour: ``ok`` (reply with ``reply``, or ``reply_for(request)``), ``500``, ``429``, ``slow`` (sleep
``delay`` seconds first), ``malformed`` (a body that is not JSON), ``empty`` (an empty answer), ``down``
(the connection is closed without a reply), ``huge`` (a reply of ``huge_chars`` characters, 10 MB by
default), ``endless`` (a stream that never ends: a word every ``chunk_delay`` seconds; without ``stream``,
like ``trickle``), ``trickle`` (a byte of the reply every ``delay`` seconds; a stream gets an SSE comment
every ``delay`` seconds and never a word). ``chunk_delay`` spaces a stream's pieces (a model writing at
a visible pace). Every request body is kept in ``requests``; ``sent`` counts the bytes written.
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
    huge_chars: int = 10_000_000
    requests: list[dict] = field(default_factory=list)
    url: str = ""
    sent: int = 0
    _huge: dict = field(default_factory=dict)  # built once: a memory measurement must not count the server's copy
    stopped: threading.Event = field(default_factory=threading.Event)

    def answer_for(self, body: dict) -> str:
        if self.mode == "huge":
            if "text" not in self._huge:
                self._huge["text"] = "Russia vetoed it [1]. " + "word " * (self.huge_chars // 5)
            return self._huge["text"]
        return self.reply_for(body) if self.reply_for else self.reply

    @property
    def prompts(self) -> list[str]:
        """The last user message of each request (where the passages and question are)."""
        return [r["messages"][-1]["content"] for r in self.requests]


class _LLMHandler(BaseHTTPRequestHandler):
    """One chat-completions request; ``fake`` is set on the subclass ``_handler`` makes per server."""

    fake: FakeLLM
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.fake.requests.append(body)
        if self.fake.mode == "down":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if self.fake.mode == "slow":
            time.sleep(self.fake.delay)
        if self.fake.mode in ("500", "429"):
            self._send(int(self.fake.mode), b'{"error": {"message": "nope"}}')
            return
        if self.fake.mode == "malformed":
            self._send(200, b"this is not json")
            return
        if self.fake.mode == "endless" and body.get("stream"):
            self._endless(body.get("model", "fake"))
            return
        if self.fake.mode in ("trickle", "endless"):
            self._trickle(body)
            return
        text = "" if self.fake.mode == "empty" else self.fake.answer_for(body)
        if body.get("stream"):
            self._stream(text, body.get("model", "fake"))
        elif self.fake.mode == "huge":
            if "json" not in self.fake._huge:
                self.fake._huge["json"] = json.dumps(_completion(text, body.get("model", "fake"))).encode()
            self._send(200, self.fake._huge["json"])
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
            if i and self.fake.chunk_delay:
                time.sleep(self.fake.chunk_delay)
            self._chunk(b"data: " + json.dumps(_delta(piece, model)).encode() + b"\n\n")
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
        self.fake.sent += len(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _endless(self, model: str) -> None:
        """A model that never stops writing (until the client hangs up or the server stops)."""
        self._start_stream()
        while not self.fake.stopped.is_set():
            self._chunk(b"data: " + json.dumps(_delta("and ", model)).encode() + b"\n\n")
            time.sleep(self.fake.chunk_delay)

    def _trickle(self, body: dict) -> None:
        """Never a silence long enough for a per-read timeout, never a complete reply."""
        if body.get("stream"):
            self._start_stream()
            while not self.fake.stopped.is_set():
                self._chunk(b": still thinking\n\n")
                time.sleep(self.fake.delay)
            return
        payload = json.dumps(_completion("Russia vetoed it [1]. " * 1000, body.get("model", "fake"))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        for i in range(len(payload)):
            if self.fake.stopped.is_set():
                return
            self.wfile.write(payload[i:i + 1])
            self.wfile.flush()
            self.fake.sent += 1
            time.sleep(self.fake.delay)


def _handler(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to ``fake`` (http.server makes one handler instance per request)."""
    return type("Handler", (_LLMHandler,), {"fake": fake})


def _pieces(text: str) -> Iterator[str]:
    """Word by word, each with its following space (lazily: a 10 MB reply is not split up front)."""
    if not text:
        yield ""
    start = 0
    while start < len(text):
        end = text.find(" ", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


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
    server.handle_error = lambda *_: None  # a client hanging up on a huge or endless reply is expected
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        fake.stopped.set()
        server.shutdown()
        server.server_close()
