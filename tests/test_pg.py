"""The PostgreSQL schema (index/pg/schema.py, issue 19) against a real PostgreSQL with pgvector, started by
the tests themselves from PyPI's pgserver (`make test` installs it; without it these tests are skipped and
say so). Nothing here reaches a network: pgserver listens on a unix socket in a temporary folder."""

from __future__ import annotations

import threading

import pytest

pgserver = pytest.importorskip("pgserver", reason="the PostgreSQL tests need pgserver (make test installs it)")
pytest.importorskip("psycopg", reason="the PostgreSQL tests need herald[postgres] (make test installs it)")

from index.errors import DatabaseError, IndexMismatchError  # noqa: E402
from index.pg.schema import SCHEMA_VERSION, connect, migrate, schema_version  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One PostgreSQL for this module, its data in a temporary folder removed at the end."""
    srv = pgserver.get_server(str(tmp_path_factory.mktemp("pg")), cleanup_mode="delete")
    yield srv
    srv.cleanup()


@pytest.fixture
def database(server):
    """A fresh, empty database for one test; its URL."""
    import uuid

    name = "t_" + uuid.uuid4().hex[:12]
    admin = connect(server.get_uri())
    admin.autocommit = True
    admin.execute(f"CREATE DATABASE {name}")
    admin.close()
    yield server.get_uri().replace("/postgres?", f"/{name}?")


def test_migrate_creates_the_schema_once(database) -> None:
    conn = connect(database)
    assert schema_version(conn) == 0
    assert migrate(conn, 384) == SCHEMA_VERSION and schema_version(conn) == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"documents", "chunks", "sentences", "chunk_terms", "feed_state", "feedback", "herald_meta"} <= tables
    assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
    indexes = {r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'chunks'")}
    assert any("hnsw" in i and "vector_ip_ops" in i for i in indexes)
    assert migrate(conn, 384) == SCHEMA_VERSION  # again: nothing to do, nothing fails


def test_two_processes_migrating_at_once_both_succeed(database) -> None:
    """The advisory lock: the second waits for the first, then finds the schema done."""
    results: list[object] = []

    def run() -> None:
        try:
            results.append(migrate(connect(database), 64))
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [SCHEMA_VERSION, SCHEMA_VERSION]


def test_a_newer_schema_or_another_width_is_refused(database) -> None:
    conn = connect(database)
    migrate(conn, 384)
    with pytest.raises(IndexMismatchError) as mismatch:
        migrate(conn, 768)
    assert (mismatch.value.found, mismatch.value.expected) == (384, 768)
    conn.execute("UPDATE herald_meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    with pytest.raises(DatabaseError) as newer:
        migrate(conn, 384)
    assert newer.value.problem == "schema_newer"


def test_a_database_that_is_not_there_is_a_typed_error(tmp_path) -> None:
    with pytest.raises(DatabaseError) as err:
        connect(f"postgresql://herald:s3cret@/herald?host={tmp_path}", connect_timeout=2)
    assert err.value.problem == "unreachable" and "s3cret" not in str(err.value)


@pytest.mark.parametrize("problem, said", [
    ("unreachable", "cannot reach the database at postgresql://db.example/h (connection refused); check that"),
    ("no_vector", "has no pgvector extension"), ("schema_newer", "set up by a newer Herald"),
    ("driver_missing", "pip install 'herald[postgres]'")])
def test_database_errors_are_one_clear_line(problem: str, said: str) -> None:
    from bot.messages import explain

    text = explain(DatabaseError(problem, "postgresql://db.example/h", "connection refused"))
    assert said in text and "\n" not in text
