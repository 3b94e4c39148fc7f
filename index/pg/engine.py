"""Opening, rebuilding and describing an index kept in PostgreSQL (``EngineConfig.database_url``): what
index/engine.py does for the folder, with the database as the index. Each process keeps one pool per
database (``shared_database``); an engine reads through ``PostgresReader``, which sees other processes'
changes at its next question, so nothing is reloaded after a build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from index.build import BuildReport, Progress
from index.embed.models import Embedder, get_embedder
from index.engine import ENGINES, DocumentInfo, Engine, EngineConfig, IndexInfo, Notice, _engine, outlet_of
from index.errors import HeraldError, IndexMissingError
from index.ingest.collections import collection_of
from index.ingest.corpus import Document
from index.pg.build import _settings_changed, build_database, read_about, stored_fingerprints
from index.pg.db import Database, shared_database
from index.pg.reader import PostgresReader
from index.store import compare_fingerprints


def database_of(config: EngineConfig, dim: int | None) -> Database:
    """This process's pool for the configured database, its schema migrated for ``dim``-wide vectors."""
    assert config.database_url
    return shared_database(config.database_url, dim)


def open_database_engine(config: EngineConfig, auto_build: bool = True,
                         notify: Callable[[Notice], None] = lambda n: None,
                         progress: Progress | None = None) -> Engine:
    """An Engine over the database's index, building it first when the database is empty. Unlike a folder
    index it is not updated when this process's corpus differs from it: ``notify`` hears ``differs``, and
    the index as it is answers (the database is shared; see the comment below)."""
    embedder = get_embedder(config.model)
    db = database_of(config, embedder.dim)
    source = config.open_source()
    with db.connection() as conn:
        about = read_about(conn)
        built, skipped = stored_fingerprints(conn)
    settings_changed = _settings_changed(about, embedder, config.chunking)  # another model: refused
    here = (Path(config.index_dir), source.location)
    if not about:
        if not auto_build:
            raise IndexMissingError(db.where)
        source.check()
        notify(Notice("building", *here, database=db.where))
        waiting = Notice("waiting", *here, database=db.where)
        _rebuild(config, db, embedder, progress, on_wait=lambda: notify(waiting))
    elif auto_build:
        # The database is shared: a process opening it does not rewrite it from its own folder (another
        # machine's copy may be older, or lack a server's articles); it says how they differ instead, and
        # explicit writes (a build, a server adding an article, the feed watcher) update it.
        try:
            stale = compare_fingerprints(built, source.fingerprints(), skipped)
        except HeraldError as exc:  # the corpus is gone or unreadable: the database still answers
            notify(Notice("stale", *here, error=exc, database=db.where))
        else:
            if stale.stale or settings_changed:
                notify(Notice("differs", *here, stale, settings_changed, database=db.where))
    return _engine(config, PostgresReader(db, config.store_options), embedder)


def _rebuild(config: EngineConfig, db: Database, embedder: Embedder, progress: Progress | None,
             full: bool = False, busy_threads: int = 0, on_wait: Callable[[], None] | None = None,
             wait: bool = True, collections: Sequence[str] | None = None) -> BuildReport:
    return build_database(config.open_source(), db, embedder, config.chunking, progress, full, busy_threads,
                          on_wait, wait, collections, seed_from=Path(config.index_dir))


def rebuild_database(config: EngineConfig, progress: Progress | None = None, full: bool = False,
                     busy_threads: int = 0, on_wait: Callable[[], None] | None = None,
                     collections: Sequence[str] | None = None) -> BuildReport:
    """``index.rebuild`` for an index in the database."""
    embedder = get_embedder(config.model)
    return _rebuild(config, database_of(config, embedder.dim), embedder, progress, full, busy_threads, on_wait,
                    collections=collections)


def describe_database(config: EngineConfig) -> IndexInfo:
    """What the database's index holds (no model is loaded; IndexMissingError before its first build)."""
    db = database_of(config, None)
    with db.connection() as conn:
        about = read_about(conn)
        if not about:
            raise IndexMissingError(db.where)
        built, skipped = stored_fingerprints(conn)
        rows = conn.execute("SELECT d.id, d.title, d.url, d.date, d.meta, d.collection, count(c.id) FROM documents d "
                            "LEFT JOIN chunks c ON c.doc_id = d.id GROUP BY d.id ORDER BY d.position").fetchall()
        chunks, sentences, size = conn.execute(
            "SELECT (SELECT count(*) FROM chunks), (SELECT count(*) FROM sentences), "
            "pg_database_size(current_database())").fetchone()
    docs = [DocumentInfo(i, t or i, u, d, int(n), outlet_of(_doc(i, t, u, m)), c or collection_of(i))
            for i, t, u, d, m, c, n in rows]
    info = IndexInfo(Path(config.index_dir), about.get("model", config.model), int(about.get("dim", 0)), "postgres",
                     docs, int(chunks), int(sentences), about.get("built_at"), about.get("chunking"),
                     str(config.corpus), database=db.where, index_bytes=int(size))
    try:
        info.stale = compare_fingerprints(built, config.open_source().fingerprints(), skipped)
    except HeraldError as exc:
        info.stale_error = exc
    return info


def _doc(doc_id: str, title: str, url: str | None, meta: dict | None) -> Document:
    return Document(doc_id, title, "", url=url, meta=meta or {})


class PostgresEngine:
    """The ``postgres`` index engine (index/engine.py's ``IndexEngine``)."""

    def open(self, config: EngineConfig, auto_build: bool, notify: Callable[[Notice], None],
             progress: Progress | None) -> Engine:
        return open_database_engine(config, auto_build, notify, progress)

    def rebuild(self, config: EngineConfig, progress: Progress | None, full: bool, busy_threads: int,
                on_wait: Callable[[], None] | None, collections: Sequence[str] | None) -> BuildReport:
        return rebuild_database(config, progress, full, busy_threads, on_wait, collections)

    def describe(self, config: EngineConfig) -> IndexInfo:
        return describe_database(config)


ENGINES.register("postgres", PostgresEngine)
