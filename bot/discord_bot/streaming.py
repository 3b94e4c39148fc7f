"""Showing a language model's answer while it is written: one message, updated at most once a second.

Tokens arrive in the worker thread that runs ``Engine.ask``; ``on_token`` only hands each one to the
event loop (``call_soon_threadsafe``), where one task shows the text so far through the ``show``
callback (the first call sends the message, later ones edit it). The next update waits ``interval``
seconds counted from when the previous request *finished*, so Discord never receives two updates less
than a second apart (edits are rate-limited). The caller then replaces the preview with the final embed;
``finish`` stops the task first, waiting for a request in flight so it cannot land after the final edit.

A leaf module (discord, the stdlib and ``bot.format``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.format import fit_content, neutralise

__all__ = ["PREVIEW_INTERVAL", "StreamPreview", "preview_text"]

log = logging.getLogger("herald.bot")

PREVIEW_INTERVAL = 1.0  # seconds between two updates of a preview, at least
CURSOR = " \u258c"
# The model's text is checked (citations) only once it is complete; say so while it is being written.
WRITING_NOTE = "*\u270d\ufe0f Writing\u2026 checked against the sources when done.*"


def preview_text(text: str) -> str:
    """What a preview shows: the model's text so far as plain text (``neutralise``: no link, no Markdown,
    no ping), a cursor, and the note; it fits."""
    return fit_content(f"{neutralise(text)}{CURSOR}\n{WRITING_NOTE}")


class StreamPreview:
    """The preview of one answer. ``shown``: a preview message exists (the final answer edits it)."""

    def __init__(self, show: Callable[[str], Awaitable[Any]], *, interval: float = PREVIEW_INTERVAL,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._show = show
        self.interval = interval
        self._loop = loop or asyncio.get_running_loop()
        self._parts: list[str] = []
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight = False
        self._closed = False
        self.shown = False
        self.updates = 0  # requests made (the first sends, the rest edit)

    def on_token(self, piece: str) -> None:
        """Called in the worker thread: never touch Discord or the loop's state from here."""
        try:
            self._loop.call_soon_threadsafe(self._add, piece)
        except RuntimeError:  # the loop is closed (shutting down): nothing to show any more
            pass

    def _add(self, piece: str) -> None:
        if self._closed:
            return
        self._parts.append(piece)
        self._pending.set()
        if self._task is None:
            self._task = self._loop.create_task(self._run(), name="herald-stream-preview")

    @property
    def text(self) -> str:
        return "".join(self._parts)

    async def _run(self) -> None:
        next_at = 0.0
        while not self._closed:
            await self._pending.wait()
            delay = next_at - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._pending.clear()
            self._in_flight = True
            try:
                await self._show(preview_text(self.text))
                self.shown = True
            except Exception as exc:  # noqa: BLE001 - a failed preview must not lose the answer
                log.warning("stopped previewing a streamed answer: %s", exc)
                return
            finally:
                self._in_flight = False
                self.updates += 1
            next_at = self._loop.time() + self.interval

    async def finish(self) -> None:
        """Stop updating: cancel a waiting update, or let one in flight complete (never cut it off)."""
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        if not self._in_flight:
            task.cancel()
        await asyncio.wait([task])
