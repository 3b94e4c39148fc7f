"""Where the state that outlives a poll or a vote is kept: the feeds' polling state and the feedback votes.
In files, or, when the index is in a database (``EngineConfig.database_url``), in that database, so several
bot processes and ``herald watch`` on other machines share them. Nothing of PostgreSQL is imported
without a database.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from index.ingest.feeds import FeedStates, FeedStateStore

if TYPE_CHECKING:
    from index.engine import EngineConfig


class VoteLog(Protocol):
    """Where feedback votes go: one record (a JSON object) per vote, appended."""

    def record(self, line: dict[str, Any]) -> None: ...


class FileVotes:
    """Votes as JSON lines appended to ``path`` (parent folders created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, line: dict[str, Any]) -> None:
        data = json.dumps(line, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(data)


def feed_states(config: EngineConfig, collection: str, path: Path) -> FeedStateStore:
    """``collection``'s feed states as they are now: the database's when one is configured (read afresh:
    another process may have polled since), else the JSON file at ``path``. Blocking (it reads them)."""
    if not config.database_url:
        return FeedStates(path)
    from index.pg.state import PostgresFeedStates, state_database

    return PostgresFeedStates(state_database(config.database_url, config.model), collection)


def vote_log(config: EngineConfig, path: Path) -> VoteLog:
    """The database's feedback table when one is configured, else JSON lines in ``path``. With a
    database this opens (or borrows) its pool: call it where blocking is fine."""
    if not config.database_url:
        return FileVotes(path)
    from index.pg.state import PostgresVotes, state_database

    return PostgresVotes(state_database(config.database_url, config.model))
