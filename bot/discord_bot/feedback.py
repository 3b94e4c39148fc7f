"""👍/👎 votes: an append-only JSONL file, and the short-lived memory of what each answer said.

A vote line holds the vote, the question, the answer, the source ids, who voted and when. The buttons
carry only a short key in their ``custom_id`` (Discord allows 100 characters); the full record is kept
in memory for recent answers, and after a restart it is read back from the message the button is on.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from index import Answer


@dataclass
class AnswerRecord:
    """What was asked and answered, as the feedback line reports it."""

    question: str
    answer: str
    abstained: bool
    sources: list[str] = field(default_factory=list)  # "doc_id#chunk" ids, or titles after a restart
    confidence: float | None = None
    tentative: bool = False  # shown with "Not sure the articles answer this": votes on these calibrate it

    @classmethod
    def from_answer(cls, ans: Answer) -> AnswerRecord:
        return cls(ans.question, ans.answer, ans.abstained,
                   [f"{s.doc_id}#{s.chunk_id}" for s in ans.sources], round(float(ans.confidence), 4),
                   ans.tentative)


class AnswerMemory:
    """key -> AnswerRecord for the most recent answers (bounded, thread-safe)."""

    def __init__(self, capacity: int = 5000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, AnswerRecord] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, record: AnswerRecord) -> str:
        key = secrets.token_hex(6)
        with self._lock:
            self._items[key] = record
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> AnswerRecord | None:
        with self._lock:
            return self._items.get(key)


class FeedbackLog:
    """Appends one JSON object per vote to ``path`` (parent folders created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, vote: str, record: AnswerRecord, *, user_id: int, channel_id: int | None = None,
               guild_id: int | None = None, message_id: int | None = None) -> dict[str, Any]:
        """Write one vote line (blocking: call it in a worker thread from async code)."""
        line = {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "vote": vote,
            "user_id": user_id,
            **asdict(record),
            "message_id": message_id,
            "channel_id": channel_id,
            "guild_id": guild_id,
        }
        data = json.dumps(line, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(data)
        return line
