"""Building into PostgreSQL: the folder build's steps (index/build.py: split, chunk, embed only what is new
or changed) with the database as the previous index. What it holds is read from its tables (fingerprints,
skipped files, text keys), never loaded whole, so adding one article costs that article, not the corpus.

One build at a time per collection: a build holds an advisory lock for each collection it reads (a full
build one lock that every scoped build shares), across reading, embedding and writing; the write itself is
one transaction (index/pg/writer.py), so other processes answer from the state before it until it commits.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from index.build import BuildProgress, BuildReport, Progress, _about, _embed_new, _plan, _updates
from index.embed.models import Embedder
from index.errors import BuildBusyError, CorpusError, HeraldError, IndexMismatchError
from index.ingest.chunking import ChunkSettings
from index.ingest.collections import CollectionsSource, collection_of
from index.ingest.corpus import CLEANER_VERSION, Document, first_copies
from index.ingest.sources import DocumentSource
from index.pg.db import Database
from index.pg.writer import PostgresWriter
from index.store import LoadedIndex, load_index
from index.store.writer import DocumentUpdate, IndexChange

log = logging.getLogger(__name__)

_BUILD = 0x48454242  # "HEBB": builds' advisory locks are (this, 0) for every collection, (this, crc) for one




def read_about(conn: Any) -> dict:
    """What the database says about its index (model, chunking, cleaner, built_at...; {} before any build)."""
    row = conn.execute("SELECT value FROM herald_meta WHERE key = 'about'").fetchone()
    return json.loads(row[0]) if row else {}


def stored_fingerprints(conn: Any, scope: Sequence[str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """``({document id: fingerprint}, {skipped file id: fingerprint})`` (of ``scope``'s collections only)."""
    where, args = ("", ()) if scope is None else (" WHERE collection = ANY(%s)", (list(scope),))
    built = dict(conn.execute("SELECT id, fingerprint FROM documents" + where, args).fetchall())
    skipped = dict(conn.execute("SELECT id, fingerprint FROM skipped" + where, args).fetchall())
    return built, skipped


@contextmanager
def build_locks(conn: Any, scope: Sequence[str] | None, wait: bool,
                on_wait: Callable[[], None] | None) -> Iterator[None]:
    """Hold the build locks of ``scope`` (None: every collection) on ``conn`` for the block.

    A full build takes (_BUILD, 0) exclusively; a scoped build shares it and takes each of its collections'
    own lock: two builds of one collection, or a full build and any other, run one after the other."""
    keys = [(0, True)] if scope is None else [(0, False)] + [(_key(c), True) for c in sorted(set(scope))]
    conn.execute("SET statement_timeout = 0")  # waiting for another build is not a slow statement
    conn.commit()
    taken: list[tuple[int, bool]] = []
    try:
        for key, exclusive in keys:
            kind = "" if exclusive else "_shared"
            if not conn.execute(f"SELECT pg_try_advisory_lock{kind}(%s, %s)", (_BUILD, key)).fetchone()[0]:
                if not wait:
                    raise BuildBusyError("database")
                if on_wait is not None:
                    on_wait()
                conn.execute(f"SELECT pg_advisory_lock{kind}(%s, %s)", (_BUILD, key))
            taken.append((key, exclusive))
        conn.execute("RESET statement_timeout")
        conn.commit()
        yield
    finally:
        for key, exclusive in reversed(taken):
            conn.execute(f"SELECT pg_advisory_unlock{'' if exclusive else '_shared'}(%s, %s)", (_BUILD, key))
        conn.commit()


def _key(collection: str) -> int:
    return zlib.crc32(collection.encode("utf-8")) & 0x7FFFFFFF or 1


def build_database(source: DocumentSource, db: Database, embedder: Embedder,
                   chunking: ChunkSettings = ChunkSettings(), progress: Progress | None = None,
                   full: bool = False, busy_threads: int = 0, on_wait: Callable[[], None] | None = None,
                   wait: bool = True, collections: Sequence[str] | None = None,
                   seed_from: Path | None = None) -> BuildReport:
    """Build or update the index in ``db`` from ``source``, as ``index.build.build_index`` does a folder's:
    only new and changed documents are read, split and embedded; ``collections`` limits it to those
    collections (the others are not read at all). Raises BuildBusyError with ``wait=False`` when another
    build holds one of its locks. ``seed_from``: a folder index that an empty database starts from (its
    records and vectors copied as they are, when it was made the same way), so moving an index from the
    folder to the database embeds nothing again."""
    with db.connection() as conn:
        empty = seed_from is not None and not read_about(conn)  # seeding writes every collection: lock them all
        with build_locks(conn, None if empty else collections, wait, on_wait):
            # Asked again under the lock: another build may have filled the database while this one waited.
            if seed_from is not None and empty and not full and not read_about(conn):
                _seed(conn, seed_from, embedder, chunking)
            return _build_locked(source, conn, embedder, chunking, progress, full, busy_threads, collections)


def folder_change(loaded: LoadedIndex) -> IndexChange:
    """Every document of a folder index with its records and vectors, as one change (moving it into a
    database embeds nothing)."""
    updates = []
    for d in loaded.documents:
        rows = loaded.chunk_rows_by_doc.get(d.id, [])
        start, count = loaded.sentence_span(d.id)
        updates.append(DocumentUpdate(d, [loaded.chunks[r] for r in rows], list(loaded.doc_sentences[d.id]),
                                      loaded.store.get([loaded.chunk_ids[r] for r in rows]),
                                      loaded.sentence_vectors[start:start + count]))
    about = {k: v for k, v in loaded.manifest.items() if k in _ABOUT}
    return IndexChange([d.id for d in loaded.documents], updates, [], dict(loaded.manifest.get("skipped", {})),
                       {**about, "vector_store": "postgres", "seeded_from": str(loaded.path)})


_ABOUT = ("format_version", "model", "model_weights", "dim", "metric", "chunking", "cleaner_version", "built_at",
          "build_seconds", "corpus", "source")


def _seed(conn: Any, folder: Path, embedder: Embedder, chunking: ChunkSettings) -> None:
    """Copy the folder index at ``folder`` into the empty database when it was made by this model, chunking
    and cleaner (anything else, or no index there: nothing is copied, the build embeds as usual)."""
    try:
        loaded = load_index(folder, embedder.name, embedder.dim, embedder.weights)
    except HeraldError:
        return
    m = loaded.manifest
    if m.get("chunking") != chunking.to_dict() or m.get("cleaner_version") != CLEANER_VERSION:
        return
    log.info("copying the folder index at %s into the database (%d documents)", folder, len(loaded.documents))
    PostgresWriter(conn).apply(folder_change(loaded))


def _settings_changed(about: dict, embedder: Embedder, chunking: ChunkSettings) -> bool:
    """Whether the stored vectors were made another way (then every document is embedded again)."""
    if about.get("model") and about["model"] != embedder.name:
        raise IndexMismatchError("model", about["model"], embedder.name)
    if embedder.weights and about.get("model_weights") and about["model_weights"] != embedder.weights:
        raise IndexMismatchError("weights", about["model_weights"], embedder.weights)
    return bool(about) and (about.get("chunking") != chunking.to_dict()
                            or about.get("cleaner_version") != CLEANER_VERSION)


def _build_locked(source: DocumentSource, conn: Any, embedder: Embedder, chunking: ChunkSettings,
                  progress: Progress | None, full: bool, busy_threads: int,
                  collections: Sequence[str] | None) -> BuildReport:
    started = time.perf_counter()
    scope = tuple(sorted(set(collections))) if collections is not None else None
    if scope is not None and isinstance(source, CollectionsSource):
        source = source.scoped(scope)
    about = read_about(conn)
    full = full or _settings_changed(about, embedder, chunking)
    built, skipped_before = stored_fingerprints(conn, scope)
    prints = {k: v for k, v in source.fingerprints().items() if scope is None or collection_of(k) in scope}
    old_fp = {} if full else built
    docs = _changed(source, conn, prints, old_fp, skipped_before)
    conn.commit()  # no transaction stays open while the new documents are embedded
    kept = [i for i in prints if i in old_fp and old_fp[i] == prints[i]]
    report = BuildReport(documents=len(kept) + len(docs))
    if not report.documents and (scope is None or not _others(conn, scope)):
        raise CorpusError("empty", source.location)
    stage = progress.stage if isinstance(progress, BuildProgress) else None
    plan = _plan(docs, {}, chunking, report, stage, embedder)
    report.added = [p.doc.id for p in plan if p.doc.id not in built]
    report.changed = [p.doc.id for p in plan if p.doc.id in built]
    report.unchanged = kept
    report.removed = sorted(set(built) - set(prints))
    skipped = {k: v for k, v in prints.items() if k not in kept and k not in {d.id for d in docs}}
    if not report.changed_anything and skipped == skipped_before and about:
        report.chunks = _chunks(conn)
        report.seconds = time.perf_counter() - started
        return report
    if plan and not any(p.chunks for p in plan) and not kept:
        raise CorpusError("no_sentences", source.location)
    chunk_vecs, sent_vecs = _embed_new(plan, embedder, report, progress, busy_threads)
    report.seconds = time.perf_counter() - started
    change = IndexChange([], _updates(plan, chunk_vecs, sent_vecs), report.removed, skipped,
                         _about(source, embedder, chunking, "postgres", report), scope)
    report.chunks = PostgresWriter(conn).apply(change).chunks
    if sum(len(u.chunks) for u in change.upserts) > max(1_000, report.chunks // 10):
        _vacuum(conn)
    return report


def _vacuum(conn: Any) -> None:
    """After a large write (a first build): mark the new pages all-visible, so BM25 reads each word's rows
    from chunk_terms' primary key alone (an index-only scan) without waiting for autovacuum."""
    import psycopg

    conn.commit()
    conn.autocommit = True
    try:
        conn.execute("SET statement_timeout = 0")  # minutes at a million chunks: not a slow statement
        conn.execute("VACUUM (ANALYZE) chunk_terms, term_df")
    except psycopg.Error as exc:  # the build is committed; autovacuum will do it later
        log.warning("vacuuming after the build failed (%s); autovacuum will do it", exc)
    finally:
        conn.execute("RESET statement_timeout")
        conn.autocommit = False


def _changed(source: DocumentSource, conn: Any, prints: dict[str, str], old_fp: dict[str, str],
             skipped: dict[str, str]) -> list[Document]:
    """The new and changed documents, parsed (as index/build.py's ``_changed_documents``: a file skipped
    last time is read again only when it changed or an article was removed; one copy of an article)."""
    removed = any(i not in prints for i in old_fp)
    need = [i for i, fp in prints.items() if old_fp.get(i) != fp and (removed or skipped.get(i) != fp)]
    if not need:
        return []
    same = [i for i, fp in prints.items() if old_fp.get(i) == fp]
    seen = {(c, k): i for c, k, i in conn.execute(
        "SELECT collection, text_key, id FROM documents WHERE id = ANY(%s)", (same,)).fetchall()}
    return first_copies(source.documents_of(need), seen)


def _others(conn: Any, scope: Sequence[str]) -> bool:
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM documents WHERE NOT collection = ANY(%s))",
                             (list(scope),)).fetchone()[0])


def _chunks(conn: Any) -> int:
    """The chunk count the writer keeps (counting the rows is a scan of a million at that size)."""
    row = conn.execute("SELECT value FROM herald_meta WHERE key = 'chunk_count'").fetchone()
    return int(row[0]) if row else 0
