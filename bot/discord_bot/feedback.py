"""👍/👎 votes: an append-only JSONL file (or, with a database, its ``feedback`` table, shared by every bot
process), and the short-lived memory of what each answer said.

A vote line holds the vote, the question, the answer, the source ids, who voted and when. The buttons
carry only a short key in their ``custom_id`` (Discord allows 100 characters); the full record is kept
in memory for recent answers, and after a restart it is read back from the message the button is on.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from index import Answer, EngineConfig, VoteLog, vote_log


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
    """Appends one JSON object per vote to ``path`` (parent folders created on first use), or, when
    ``config`` names a database, to its feedback table (chosen at the first vote: that may open the pool)."""

    def __init__(self, path: Path, config: EngineConfig | None = None) -> None:
        self.path = Path(path)
        self.config = config
        self._votes: VoteLog | None = None
        self._lock = threading.Lock()

    def votes(self) -> VoteLog:
        """Where the votes go (blocking the first time, with a database)."""
        with self._lock:
            if self._votes is None:
                self._votes = vote_log(self.config or EngineConfig(), self.path)
            return self._votes

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
        self.votes().record(line)
        return line
