"""The PostgreSQL schema (index/pg/schema.py, issue 19) against a real PostgreSQL with pgvector, started by
the tests themselves from PyPI's pgserver (`make test` installs it; without it these tests are skipped and
say so). Nothing here reaches a network: pgserver listens on a unix socket in a temporary folder."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("pgserver", reason="the PostgreSQL tests need pgserver (make test installs it)")
pytest.importorskip("psycopg", reason="the PostgreSQL tests need herald[postgres] (make test installs it)")

from index.errors import DatabaseError, IndexMismatchError  # noqa: E402
from index.pg.schema import SCHEMA_VERSION, connect, migrate, schema_version  # noqa: E402
from index.store.writer import IndexChange  # noqa: E402


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
    ("driver_missing", "pip install 'herald[postgres]'"), ("changed", "ask it again")])
def test_database_errors_are_one_clear_line(problem: str, said: str) -> None:
    from bot.messages import explain

    text = explain(DatabaseError(problem, "postgresql://db.example/h", "connection refused"))
    assert said in text and "\n" not in text


# ------------------------------------------------------------------------------------------ the writer


def _everything(loaded) -> IndexChange:
    """Every document of a folder index as one change (how an index moves into the database)."""
    from index.pg.build import folder_change

    return folder_change(loaded)


@pytest.fixture
def folder_index(article_corpus, fake_embedder):
    from test_collections import BRIDGE, ORCHIDS

    from index import EngineConfig, rebuild
    from index.store import load_index

    root = article_corpus.root / "collections"
    for name, text in (("guild-1", BRIDGE), ("guild-2", ORCHIDS)):
        (root / name).mkdir(parents=True)
        (root / name / "story.md").write_text(text, encoding="utf-8")
    rebuild(EngineConfig(corpus=article_corpus.corpus, index_dir=article_corpus.index, model=fake_embedder.name,
                         collections_dir=root))
    return load_index(article_corpus.index)


def _counts(conn) -> tuple[int, int, int, int]:
    return conn.execute("SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks), "
                        "(SELECT count(*) FROM sentences), (SELECT count(*) FROM chunk_terms)").fetchone()


def test_the_writer_stores_a_whole_index(database, folder_index) -> None:
    import numpy as np

    from index.pg.writer import PostgresWriter

    conn = connect(database)
    migrate(conn, folder_index.dim)
    written = PostgresWriter(conn).apply(_everything(folder_index))
    assert (written.documents, written.chunks, written.sentences) == \
        (len(folder_index.documents), len(folder_index.chunks), len(folder_index.sentence_text))
    for d in folder_index.documents:  # each document's sentence ids are one contiguous block
        first, n = conn.execute("SELECT first_sentence, sentences FROM documents WHERE id = %s", (d.id,)).fetchone()
        ids = [r[0] for r in conn.execute("SELECT id FROM sentences WHERE doc_id = %s ORDER BY id", (d.id,))]
        assert ids == list(range(first, first + n)) and n == len(folder_index.doc_sentences[d.id])
    stored = conn.execute("SELECT embedding FROM chunks ORDER BY id").fetchall()
    assert np.allclose(np.vstack([r[0].to_numpy() for r in stored]), folder_index.chunk_vectors(), atol=1e-6)
    bad = conn.execute("SELECT count(*) FROM chunks c WHERE terms <> (SELECT coalesce(sum(tf), 0) FROM chunk_terms t "
                       "WHERE t.chunk_id = c.id)").fetchone()[0]
    assert bad == 0  # BM25's document lengths agree with the stored term frequencies
    assert {r[0] for r in conn.execute("SELECT DISTINCT collection FROM chunks")} == {"base", "guild-1", "guild-2"}


@pytest.fixture
def stored(database, folder_index):
    """A migrated database holding the whole folder index: (connection, its writer, the change that filled it)."""
    from index.pg.writer import PostgresWriter

    conn = connect(database)
    migrate(conn, folder_index.dim)
    writer, everything = PostgresWriter(conn), _everything(folder_index)
    writer.apply(everything)
    return conn, writer, everything


def test_a_change_replaces_and_removes_and_keeps_the_rest(stored, folder_index) -> None:
    from dataclasses import replace

    from index.store.writer import IndexChange

    conn, writer, everything = stored
    kept_before = conn.execute("SELECT id, body FROM chunks WHERE doc_id = %s ORDER BY id",
                               (folder_index.documents[0].id,)).fetchall()
    orchids = next(u for u in everything.upserts if u.doc.collection == "guild-2")
    changed = replace(orchids, doc=replace(orchids.doc, fingerprint="c5-changed"))
    written = writer.apply(IndexChange([], [changed], removed=["guild-1:story.md"]))
    assert written.documents == len(folder_index.documents) - 1
    assert conn.execute("SELECT count(*) FROM chunks WHERE doc_id = 'guild-1:story.md'").fetchone()[0] == 0
    assert conn.execute("SELECT fingerprint FROM documents WHERE id = %s", (orchids.doc.id,)).fetchone()[0] == \
        "c5-changed"
    assert conn.execute("SELECT id, body FROM chunks WHERE doc_id = %s ORDER BY id",
                        (folder_index.documents[0].id,)).fetchall() == kept_before
    kept = dict(conn.execute("SELECT key, value FROM herald_meta WHERE key IN ('chunk_count', 'total_terms')"))
    assert (int(kept["chunk_count"]), int(kept["total_terms"])) == \
        conn.execute("SELECT count(*), sum(terms) FROM chunks").fetchone()  # BM25's statistics kept by the writer
    kept_df = set(conn.execute("SELECT term, df, df_text FROM term_df WHERE df > 0"))
    assert kept_df == set(conn.execute("SELECT term, count(*), count(*) FILTER (WHERE in_text) FROM chunk_terms "
                                       "GROUP BY term"))  # and each word's document frequencies
    assert conn.execute("SELECT count(*) FROM term_df WHERE df < 0 OR df_text < 0 OR df_text > df").fetchone()[0] == 0
    assert (written.documents, written.chunks, written.sentences) == _counts(conn)[:3]  # kept, not counted


def test_counts_kept_by_the_writer_start_from_a_count_where_a_database_lacks_them(stored, folder_index) -> None:
    """A database written before the writer kept the counts and the next position (issue 19: counting every
    row took most of an update at a million chunks) has them counted once by its next change."""
    from dataclasses import replace

    from index.store.writer import IndexChange

    conn, writer, everything = stored
    conn.execute("DELETE FROM herald_meta WHERE key IN ('document_count', 'sentence_count', 'next_position')")
    conn.execute("UPDATE herald_meta SET value = '0' WHERE key = 'chunk_count'")
    conn.commit()
    last = conn.execute("SELECT max(position) FROM documents").fetchone()[0]
    moved = replace(everything.upserts[0], doc=replace(everything.upserts[0].doc, fingerprint="c5-moved"))
    written = writer.apply(IndexChange([], [moved], removed=[everything.upserts[1].doc.id]))
    assert (written.documents, written.chunks, written.sentences) == _counts(conn)[:3]
    assert conn.execute("SELECT position FROM documents WHERE id = %s", (moved.doc.id,)).fetchone()[0] == last + 1
    written = writer.apply(IndexChange([], [], removed=[everything.upserts[2].doc.id]))
    assert (written.documents, written.chunks, written.sentences) == _counts(conn)[:3]


def test_nul_characters_become_spaces_and_offsets_hold(stored) -> None:
    """PostgreSQL text cannot hold NUL (a scraped page may carry one): each becomes a space, so every stored
    offset still points at the same characters."""
    from dataclasses import replace

    from index.store.writer import IndexChange

    conn, writer, everything = stored
    u = everything.upserts[-1]
    at = u.doc.text.index(" ")
    text = u.doc.text[:at] + "\x00" + u.doc.text[at + 1:]
    chunks = [replace(c, text=text[c.start:c.end]) for c in u.chunks]
    writer.apply(IndexChange([], [replace(u, doc=replace(u.doc, text=text), chunks=chunks)]))
    body = conn.execute("SELECT body FROM documents WHERE id = %s", (u.doc.id,)).fetchone()[0]
    assert body == u.doc.text  # the NUL is the space it replaced
    for start, end, stored_text in conn.execute("SELECT start_at, end_at, body FROM chunks WHERE doc_id = %s",
                                                (u.doc.id,)):
        assert body[start:end] == stored_text


def test_a_failed_change_leaves_the_previous_state(stored) -> None:
    """All or nothing: a change that fails half way (a vector of the wrong width) writes nothing."""
    from dataclasses import replace

    import numpy as np
    import psycopg

    from index.store.writer import IndexChange

    conn, writer, everything = stored
    before = _counts(conn)
    good, bad = everything.upserts[0], everything.upserts[1]
    broken = replace(bad, chunk_vectors=np.zeros((len(bad.chunks), 3), np.float32))
    with pytest.raises(psycopg.Error):
        writer.apply(IndexChange([], [good, broken], removed=[everything.upserts[2].doc.id]))
    assert _counts(conn) == before


#: Code for a child process: PostgresWriter stops inside its transaction after one document (it writes the
#: file ``marker`` and sleeps), for a test to kill it there. test_pg_engine.py uses it too.
SLOW_INSERT = """
import time
from pathlib import Path
from index.pg.writer import PostgresWriter
real = PostgresWriter._insert
def slow(self, *args):
    real(self, *args)
    Path({marker!r}).write_text("inside")  # one document written, the transaction still open
    time.sleep(60)
PostgresWriter._insert = slow
"""

_KILLED_WRITER = """
import sys
sys.path.insert(0, {tests!r})
from index.pg.schema import connect
from index.pg.writer import PostgresWriter
from index.store import load_index
from test_pg import _everything
""" + SLOW_INSERT + """
PostgresWriter(connect({url!r})).apply(_everything(load_index({index!r})))
"""


def test_a_writer_killed_mid_change_leaves_the_previous_state(database, folder_index, tmp_path) -> None:
    """SIGKILL in the middle of a change: the database answers from the state before it, and the next
    writer (waiting for the lock the dead one held) completes."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from index.pg.writer import PostgresWriter

    conn = connect(database)
    migrate(conn, folder_index.dim)
    first = _everything(folder_index)
    PostgresWriter(conn).apply(IndexChange([], first.upserts[:2]))
    before = _counts(conn)
    marker = tmp_path / "inside"
    script = _KILLED_WRITER.format(tests=str(Path(__file__).parent), url=database, marker=str(marker),
                                   index=str(folder_index.path))
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the writer never got inside its transaction"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert _counts(conn) == before  # nothing of the killed change is visible
    written = PostgresWriter(connect(database)).apply(first)  # the next run completes
    assert written.documents == len(folder_index.documents)


def test_a_change_is_committed_even_after_a_read_on_the_same_connection(database, folder_index) -> None:
    """psycopg opens a transaction for a SELECT; a change applied after one must still be committed whole,
    not left as a savepoint that closing the connection rolls back."""
    from index.pg.writer import PostgresWriter

    conn = connect(database)
    migrate(conn, folder_index.dim)
    conn.execute("SELECT count(*) FROM documents").fetchone()  # a read: the connection is now in a transaction
    PostgresWriter(conn).apply(_everything(folder_index))
    conn.close()  # no commit by the caller
    assert _counts(connect(database))[0] == len(folder_index.documents)
