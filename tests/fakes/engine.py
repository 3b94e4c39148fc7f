"""An engine double for load tests: the real engine, made to cost a fixed time per question.

It lives with the fakes (not in ``bot_fixtures``) so that ``benchmarks/bot_load.py`` can use it without
importing pytest fixtures.
"""

from __future__ import annotations

import time
from typing import Any


class WorkingEngine:
    """The real engine plus a fixed amount of blocking work per question (time.sleep holds the thread, not
    the GIL), so a question costs the same on any machine however fast the model is."""

    def __init__(self, engine: Any, seconds: float) -> None:
        self._engine, self._seconds = engine, seconds

    def ask(self, question: str, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self._seconds)
        return self._engine.ask(question, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)
