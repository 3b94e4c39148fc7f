"""The index in PostgreSQL end to end (issue 19): ``HERALD_DATABASE_URL`` makes `herald build` and `herald ask`
use the database; answers are the folder index's; what one process writes another answers at its next
question; builds lock per collection; a build killed mid-write leaves the database answering as before.

Against a real PostgreSQL with pgvector started by the tests (conftest's ``pg_server``: pgserver from PyPI).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("pgserver", reason="the PostgreSQL tests need pgserver (make test installs it)")
pytest.importorskip("psycopg", reason="the PostgreSQL tests need herald[postgres] (make test installs it)")

from test_collections import BRIDGE, ORCHIDS  # noqa: E402
from test_pg import SLOW_INSERT  # noqa: E402

from index import BuildBusyError, Collections, EngineConfig, load_qa, open_engine, rebuild  # noqa: E402

TESTS = Path(__file__).resolve().parent
QUESTIONS = [item.question for item in load_qa(TESTS / "data" / "article_qa.jsonl")]
BRIDGE_Q = "How much did the Valparaiso harbour bridge repairs cost?"
SCOPES = [None, ("base",), ("base", "guild-1"), ("guild-2",)]


@pytest.fixture
def three(article_corpus, fake_embedder):
    """The seed article in ``base``, a bridge story in ``guild-1``, an orchid story in ``guild-2``."""
    cols = Collections(article_corpus.root / "collections")
    for name, text in (("guild-1", BRIDGE), ("guild-2", ORCHIDS)):
        cols.folder(name).mkdir(parents=True)
        (cols.folder(name) / "story.md").write_text(text, encoding="utf-8")
    return article_corpus


def folder_config(paths) -> EngineConfig:
    return EngineConfig(corpus=paths.corpus, index_dir=paths.index, model="test-hash",
                        collections_dir=paths.root / "collections")


def _same(a, b) -> None:
    assert (a.answer, a.abstained, a.tentative) == (b.answer, b.abstained, b.tentative), a.question
    assert [(s.doc_id, s.text, s.start) for s in a.sources] == [(s.doc_id, s.text, s.start) for s in b.sources]
    assert a.confidence == pytest.approx(b.confidence, abs=1e-5)
    assert [round(s.score, 5) for s in a.sources] == [round(s.score, 5) for s in b.sources]


def test_the_database_answers_every_question_as_the_folder_does(three, database) -> None:
    folder = open_engine(folder_config(three))
    # Built into the empty database from the articles (another index_dir: not copied from the folder index).
    db = open_engine(replace(folder_config(three), database_url=database, index_dir=three.root / "none"))
    assert db.passages == folder.passages
    assert [(d.id, d.chunks, d.collection) for d in db.documents()] == \
        [(d.id, d.chunks, d.collection) for d in folder.documents()]
    for scope in SCOPES:
        for q in QUESTIONS + [BRIDGE_Q]:
            _same(db.ask(q, collections=scope), folder.ask(q, collections=scope))


def test_an_empty_database_starts_from_the_folder_index_without_embedding(three, database, fake_embedder) -> None:
    folder = open_engine(folder_config(three))
    seen = len(fake_embedder.seen)
    report = rebuild(replace(folder_config(three), database_url=database))
    assert report.embedded_texts == 0 and len(fake_embedder.seen) == seen  # copied, not embedded again
    assert report.unchanged and not report.added
    db = open_engine(replace(folder_config(three), database_url=database), auto_build=False)
    for q in QUESTIONS[:10]:
        _same(db.ask(q), folder.ask(q))


def test_opening_does_not_rewrite_the_shared_database_from_this_folder(three, database) -> None:
    """Another machine's folder may be older or lack a server's articles: opening says how it differs and
    answers from the database as it is; an explicit build updates it."""
    config = replace(folder_config(three), database_url=database)
    open_engine(config)
    (three.root / "collections" / "guild-1" / "story.md").unlink()  # as on a machine without guild-1's folder
    (three.corpus / "bridge.md").write_text(BRIDGE.replace("Valparaiso", "Arica"), encoding="utf-8")
    heard = []
    engine = open_engine(config, notify=heard.append)
    assert [(n.kind, n.stale.added, n.stale.removed) for n in heard] == \
        [("differs", ["bridge.md"], ["guild-1:story.md"])]
    assert "guild-1:story.md" in {d.id for d in engine.documents()}  # nothing removed
    assert "bridge.md" not in {d.id for d in engine.documents()}  # nor added
    rebuild(config, collections=["base"])
    assert "bridge.md" in {d.id for d in engine.documents()}  # the explicit build, scoped: guild-1 untouched
    assert "guild-1:story.md" in {d.id for d in engine.documents()}


def _cli(invoke, paths, *args, database: str | None = None):
    env = {"HERALD_DATABASE_URL": database} if database else None
    return invoke(*args, "--corpus", str(paths.corpus), "--index", str(paths.index), "--model", "test-hash",
                  env=env)


def test_herald_build_then_ask_with_a_database_url(three, database, invoke) -> None:
    built = _cli(invoke, three, "build", database=database)
    assert built.exit_code == 0, built.output
    assert "postgresql://" in built.output and not (three.index / "manifest.json").exists()  # no folder index
    again = _cli(invoke, three, "build", database=database)
    assert again.exit_code == 0 and "Nothing changed" in again.output
    info = json.loads(_cli(invoke, three, "info", "--json", database=database).stdout)
    assert (info["vector_store"], info["documents"], info["state"]) == ("postgres", 3, "up to date")
    for q in QUESTIONS[:12]:
        pg = _cli(invoke, three, "ask", "--json", q, database=database)
        folder = _cli(invoke, three, "ask", "--json", q)
        assert pg.exit_code == folder.exit_code == 0, pg.output
        a, b = json.loads(pg.stdout), json.loads(folder.stdout)
        assert (a["answer"], [s["doc_id"] for s in a["sources"]]) == (b["answer"], [s["doc_id"] for s in b["sources"]])


_OTHER_PROCESS = """
import sys
sys.path.insert(0, {tests!r})
from conftest import HashEmbedder
from index import EngineConfig, rebuild
from index.embed.models import register_embedder

embedder = HashEmbedder()
register_embedder("test-hash", lambda name: embedder)
config = EngineConfig(corpus={corpus!r}, index_dir={index!r}, model="test-hash", collections_dir={cols!r},
                      database_url={url!r})
{before}
report = rebuild(config, collections={scope!r})
print(report.embedded_texts, len(report.added), len(report.removed))
"""


def _other_process(paths, database: str, scope, before: str = "") -> subprocess.Popen:
    script = _OTHER_PROCESS.format(tests=str(TESTS), corpus=str(paths.corpus), index=str(paths.index),
                                   cols=str(paths.root / "collections"), url=database, scope=scope,
                                   before=textwrap.dedent(before))
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_an_article_added_by_another_process_is_answered_without_a_restart(three, database) -> None:
    engine = open_engine(replace(folder_config(three), database_url=database))
    before = engine.ask(BRIDGE_Q, collections=["guild-3"])
    assert before.abstained and not before.sources  # guild-3 holds nothing yet
    folder = three.root / "collections" / "guild-3"
    folder.mkdir()
    (folder / "story.md").write_text(BRIDGE.replace("Valparaiso", "Antofagasta"), encoding="utf-8")
    out, err = _other_process(three, database, ["guild-3"]).communicate(timeout=120)
    assert not err.strip() or "Traceback" not in err, err
    embedded, added, removed = map(int, out.split())
    assert (added, removed) == (1, 0)
    assert embedded < 40  # one short article's chunks and sentences, not the corpus
    after = engine.ask(BRIDGE_Q.replace("Valparaiso", "Antofagasta"), collections=["guild-3"])
    assert not after.abstained and after.sources[0].doc_id == "guild-3:story.md"
    assert "Antofagasta" in after.answer
    (folder / "story.md").unlink()
    out, _ = _other_process(three, database, ["guild-3"]).communicate(timeout=120)
    assert out.split()[2] == "1"  # removed
    gone = engine.ask(BRIDGE_Q.replace("Valparaiso", "Antofagasta"), collections=["guild-3"])
    assert gone.abstained and not gone.sources
    assert engine.passages == open_engine(folder_config(three)).passages  # as the folder index, rebuilt fresh


def test_one_build_at_a_time_per_collection(three, database) -> None:
    from index.embed.models import get_embedder
    from index.pg.build import build_locks
    from index.pg.db import Database

    config = replace(folder_config(three), database_url=database)
    open_engine(config)
    db = Database(database, get_embedder("test-hash").dim)
    with db, db.connection() as conn, build_locks(conn, ["guild-1"], wait=True, on_wait=None):
        with pytest.raises(BuildBusyError):
            _build(config, ["guild-1"])
        with pytest.raises(BuildBusyError):
            _build(config, None)  # a full build reads guild-1 too
        (three.root / "collections" / "guild-2" / "more.md").write_text(ORCHIDS.replace("orchid", "lotus"))
        report = _build(config, ["guild-2"])  # another collection: not in the way
        assert report.added == ["guild-2:more.md"]
    assert _build(config, ["guild-1"]).changed_anything is False  # the lock is free again


def _build(config: EngineConfig, scope):
    from index.embed.models import get_embedder
    from index.pg.build import build_database
    from index.pg.engine import database_of

    return build_database(config.open_source(), database_of(config, 64), get_embedder("test-hash"),
                          wait=False, collections=scope)




def test_a_build_killed_mid_write_leaves_the_previous_index_answering(three, database, tmp_path) -> None:
    engine = open_engine(replace(folder_config(three), database_url=database))
    answers = [engine.ask(q) for q in QUESTIONS[:10]]
    (three.corpus / "bridge.md").write_text(BRIDGE.replace("Valparaiso", "Iquique"), encoding="utf-8")
    marker = tmp_path / "inside"
    child = _other_process(three, database, None, SLOW_INSERT.format(marker=str(marker)))
    deadline = time.monotonic() + 120
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), child.communicate()[1]
    for q, a in zip(QUESTIONS[:10], answers):  # the open transaction is invisible
        _same(engine.ask(q), a)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    for q, a in zip(QUESTIONS[:10], answers):  # and so is the killed one
        _same(engine.ask(q), a)
    assert "Iquique" not in engine.ask(BRIDGE_Q.replace("Valparaiso", "Iquique")).answer
    report = rebuild(replace(folder_config(three), database_url=database))  # the next run completes
    assert report.added == ["bridge.md"]
    assert "Iquique" in engine.ask(BRIDGE_Q.replace("Valparaiso", "Iquique")).answer


# ------------------------------------------------------------------------------------------ errors


def test_a_database_that_is_down_is_one_clear_line(three, invoke) -> None:
    r = _cli(invoke, three, "ask", "Who vetoed the resolution?", database="postgresql://herald:secret@127.0.0.1:9/x")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "cannot reach the database at postgresql://127.0.0.1:9/x" in r.stderr
    assert "secret" not in r.output


def test_a_url_that_is_not_postgresql_is_a_settings_error(three, invoke) -> None:
    r = _cli(invoke, three, "ask", "Who vetoed the resolution?", database="mysql://herald@localhost/x")
    assert r.exit_code != 0 and "HERALD_DATABASE_URL must be a PostgreSQL URL" in r.output


def test_another_model_than_the_databases_is_refused(three, database, make_embedder) -> None:
    from conftest import raises_said

    open_engine(replace(folder_config(three), database_url=database))
    make_embedder("test-hash-2")
    with raises_said(Exception, "test-hash"):
        open_engine(replace(folder_config(three), database_url=database, model="test-hash-2"))



def test_herald_add_feed_with_a_database_is_answered_by_an_engine_opened_before(three, database, invoke) -> None:
    """The CLI as another writer (what `herald watch` does at each poll): a feed's articles go to the folder,
    the feed's state and the new rows to the database, and an engine opened earlier answers them."""
    from fakes.news import fake_news_server

    config = replace(folder_config(three), database_url=database)
    engine = open_engine(config)
    q = "Who found the cracks in the harbour bridge?"
    assert "Valmouth" not in engine.ask(q, collections=["guild-7"]).answer
    env = {"HERALD_DATABASE_URL": database, "HERALD_FETCH_ALLOW_PRIVATE": "127.0.0.1", "HERALD_FETCH_TIMEOUT": "2"}
    with fake_news_server(slow_seconds=1) as site:
        args = ("add", "--feed", "--corpus", str(three.corpus), "--index", str(three.index), "--model", "test-hash",
                "--collection", "guild-7", site.url("/feed.xml"))
        r = invoke(*args, env=env)
        assert r.exit_code == 0, r.output
        assert "2 new item(s)" in r.stdout and "Index updated" in r.stdout
        again = invoke(*args, env=env)
        assert "unchanged since the last poll" in again.stdout  # the state came back from the database
    assert not (three.root / "collections" / "guild-7" / ".feeds.json").exists()  # not in a file
    answer = engine.ask(q, collections=["guild-7"])  # the engine opened before the add: no reload
    assert "Valmouth" in answer.answer and answer.sources[0].collection == "guild-7"


def test_the_same_article_in_two_collections_is_kept_in_each(herald_paths, database, fake_embedder) -> None:
    """As the folder index (tests/test_incremental.py): one copy of an article per collection."""
    from index import rebuild

    config = replace(folder_config(herald_paths), database_url=database)
    (herald_paths.corpus / "base.md").write_text("The base story\n\nThe base story happened today.\n", encoding="utf-8")
    open_engine(config)
    for name in ("guild-1", "guild-2"):
        folder = herald_paths.root / "collections" / name
        folder.mkdir(parents=True)
        (folder / "wire.md").write_text(BRIDGE, encoding="utf-8")
    rebuild(config, collections=["guild-1", "guild-2"])
    ids = sorted(d.id for d in open_engine(config).documents())
    assert ids == ["base.md", "guild-1:wire.md", "guild-2:wire.md"]
