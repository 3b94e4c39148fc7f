"""One database handle per process: a psycopg-pool of connections with Herald's settings, the schema
migrated once at open. The reader, the writer, feed state and feedback votes all borrow connections from
it, so a bot answering on several threads never opens a connection per question.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from index.errors import DatabaseError
from index.ingest.web import redact_url
from index.pg.schema import _first_line, connect, migrate


class Database:
    """A pool of connections to ``url`` (opened at once: a server that is down is a DatabaseError here,
    not at the first question). ``dim``: migrate the schema for vectors of this width first (None: the
    schema must already be there)."""

    def __init__(self, url: str, dim: int | None = None, *, max_size: int = 4, connect_timeout: float = 10.0,
                 statement_timeout_ms: int = 30_000) -> None:
        self.url, self.where = url, redact_url(url)
        first = connect(url, connect_timeout=connect_timeout, statement_timeout_ms=statement_timeout_ms)
        try:
            if dim is not None:
                migrate(first, dim)
        finally:
            first.close()
        from psycopg_pool import ConnectionPool

        kwargs = {"prepare_threshold": None, "connect_timeout": max(1, int(connect_timeout)),
                  "options": f"-c statement_timeout={int(statement_timeout_ms)}"}
        self.pool = ConnectionPool(url, min_size=1, max_size=max(1, max_size), kwargs=kwargs,
                                   configure=_configure, open=False, name="herald")
        try:
            self.pool.open(wait=True, timeout=connect_timeout)
        except Exception as exc:  # noqa: BLE001 - PoolTimeout or a driver error: the same for the operator
            self.pool.close()
            raise DatabaseError("unreachable", self.where, _first_line(exc)) from exc

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection for a few statements (returned to the pool after; a failure rolls back)."""
        import psycopg

        try:
            with self.pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise DatabaseError("unreachable", self.where, _first_line(exc)) from exc

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SHARED: dict[tuple[str, int | None], Database] = {}
_SHARED_LOCK = threading.Lock()


def shared_database(url: str, dim: int | None = None, **options: Any) -> Database:
    """This process's pool for ``url`` (opened once; an engine reopened after a rebuild reuses it)."""
    with _SHARED_LOCK:
        db = _SHARED.get((url, dim))
        if db is None or db.pool.closed:
            db = _SHARED[(url, dim)] = Database(url, dim, **options)
        return db


def _configure(conn: Any) -> None:
    from pgvector.psycopg import register_vector

    register_vector(conn)
    conn.commit()
