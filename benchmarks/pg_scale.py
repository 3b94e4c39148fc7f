"""The folder index and PostgreSQL side by side as the corpus grows (issue 19): what adding one article, opening
the index, a question and the serving process's memory cost on each, and the recall of each one's HNSW search.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.pg_scale --sizes 18991,100000 --out /tmp/pg_scale.json
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.pg_scale --sizes 1000000 --engines postgres \\
        --out /tmp/pg_scale.json

Data: the BBC News folder index in --bbc-index (built by benchmarks/ann_scale.py with the default model,
all-MiniLM-L6-v2), one article held out (--held-out: the new article whose addition is timed, a real BBC
article the index does not hold). Above the BBC size the corpus is SYNTHETIC: copies of every document under
``copy<k>/<id>`` (collection "base") with the same text, chunks and sentences, their vectors the originals plus
N(0, noise^2) per component, renormalised (benchmarks.ann.synthesise's recipe), whole documents until a size's
chunk count is reached. Both engines get the same documents; the folder index is written by FolderWriter, the
database filled by PostgresWriter in batches with its HNSW index dropped, then rebuilt as the schema defines it,
and VACUUM ANALYZEd (what a build does after a large write).

Per size and engine a FRESH child process (this module, --serve) opens the index (the model loaded and warmed
first, not counted), asks one question (the open time includes it), then --questions questions (sentences of the
BBC articles, seeded) through Engine.ask; its peak RSS is its own (VmHWM, read before the article is added;
for PostgreSQL the server's processes are summed separately, as PSS so shared buffers count once). Recall@10
is the reader's dense_top against exact NumPy inner products over every chunk vector (FaissStore searches
exactly up to 50,000 chunks, PostgresReader up to its hnsw_above; its query plan is kept). Last, the child
adds the held-out article as an update would: split and embedded with the model (timed apart), then one
IndexChange through the engine's writer (FolderWriter with the loaded index as the previous one;
PostgresWriter).
``--out`` keeps every run's rows (a rerun of a size and engine replaces them) and the table covers them all.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .ann import int_list
from .ann_scale import exact_top
from .common import md_table, percentile

DEFAULT_BBC_INDEX = Path("/tmp/herald-ann-cache/index-bbc")
DIM = 384
#: index/ingest/corpus.py's caption joins leave a NUL ("\0caption") in 12 BBC articles' text, which PostgreSQL's
#: text type refuses (PostgresWriter fails on the corpus): both engines get them with a space in its place.
NUL_NOTE = ("NUL characters that cleaner version 5 left in 12 BBC articles (the cached index was built with it) are "
            "replaced by spaces for both engines")
METRICS = ("add one article", "open the index, first question included", "serving RSS", "question p50 / p95",
           "HNSW recall@10 against exact", "load / index build", "size on disk")


# ------------------------------------------------------------------------------------------------ data


def base_updates(loaded: Any, held_out: str) -> tuple[list[Any], Any]:
    """Every document of the BBC index but ``held_out`` as DocumentUpdates (tests/test_pg.py's recipe), and the
    held-out Document."""
    from index.store.writer import DocumentUpdate

    updates = []
    for d in loaded.documents:
        if d.id == held_out:
            continue
        rows = loaded.chunk_rows_by_doc.get(d.id, [])
        start, count = loaded.sentence_span(d.id)
        chunks = [loaded.chunks[r] for r in rows]
        if "\0" in d.text:  # see NUL_NOTE; a space keeps every offset
            d = replace(d, text=d.text.replace("\0", " "))
            chunks = [replace(c, text=c.text.replace("\0", " ")) for c in chunks]
        updates.append(DocumentUpdate(d, chunks, list(loaded.doc_sentences[d.id]),
                                      loaded.store.get([loaded.chunk_ids[r] for r in rows]),
                                      loaded.sentence_vectors[start:start + count]))
    return updates, loaded.doc_by_id[held_out]


def _noisy(vectors: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    out = vectors + noise * rng.standard_normal(vectors.shape, dtype=np.float32)
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def _copy(base: list[Any], k: int, noise: float, seed: int) -> list[Any]:
    """Copy ``k`` of every base document: id ``copy<k>/<id>``, same text, noisy renormalised vectors."""
    rng = np.random.default_rng([seed, k])
    chunk_vecs = _noisy(np.vstack([u.chunk_vectors for u in base]), noise, rng)
    sent_vecs = _noisy(np.vstack([u.sentence_vectors for u in base]), noise, rng)
    out, ci, si = [], 0, 0
    for u in base:
        nc, ns = len(u.chunks), len(u.sentences)
        out.append(renamed(u, f"copy{k}/{u.doc.id}", chunk_vectors=chunk_vecs[ci:ci + nc],
                           sentence_vectors=sent_vecs[si:si + ns]))
        ci, si = ci + nc, si + ns
    return out


def renamed(u: Any, doc_id: str, **changes: Any) -> Any:
    """A DocumentUpdate under another id (its document's and its chunks'), with ``changes`` made too."""
    return replace(u, doc=replace(u.doc, id=doc_id), chunks=[replace(c, doc_id=doc_id) for c in u.chunks], **changes)


def corpus_of(base: list[Any], size: int, noise: float, seed: int) -> list[Any]:
    """The base documents, then copies of them, whole documents until ``size`` chunks (at least the base)."""
    out, chunks, k = list(base), sum(len(u.chunks) for u in base), 1
    while chunks < size:
        for u in _copy(base, k, noise, seed):
            if chunks >= size:
                break
            out.append(u)
            chunks += len(u.chunks)
        k += 1
    return out


def sample_questions(loaded: Any, held_out: str, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``n`` + 1 sentences of the BBC articles (seeded; the held-out one excluded): their texts are the
    questions (the first opens the index) and their vectors the recall queries."""
    skip_start, skip_n = loaded.sentence_span(held_out)
    pool = [i for i in range(len(loaded.sentence_text)) if not skip_start <= i < skip_start + skip_n
            and len(loaded.sentence_text[i].split()) >= 5]
    rows = np.random.default_rng(seed).choice(pool, n + 1, replace=False)
    return [loaded.sentence_text[i] for i in rows], np.asarray(loaded.sentence_vectors[rows], dtype=np.float32)


def about_of(loaded: Any) -> dict:
    """What the index says about itself, as the BBC build wrote it (index/build.py's ``_about``)."""
    drop = {"documents", "skipped", "counts", "files", "vector_store_options", "catalog", "changes", "placed",
            "base_stale_rows"}
    return {k: v for k, v in loaded.manifest.items() if k not in drop} | {"corpus": "synthetic (benchmarks/pg_scale)"}


# --------------------------------------------------------------------------------------------- writing


def write_folder(index_dir: Path, updates: list[Any], about: dict) -> dict:
    """A folder index of ``updates`` as a first build writes it (FolderWriter, FAISS with its defaults)."""
    import shutil

    from index.store.writer import FolderWriter, IndexChange

    shutil.rmtree(index_dir, ignore_errors=True)
    t = time.perf_counter()
    written = FolderWriter(index_dir, None, "faiss", DIM, {}).apply(
        IndexChange([u.doc.id for u in updates], updates, about=about))
    seconds = time.perf_counter() - t
    size = sum(f.stat().st_size for f in index_dir.iterdir())
    return {"write_s": seconds, "chunks": written.chunks, "documents": written.documents,
            "sentences": written.sentences, "bytes": size}


def new_database(admin_url: str, name: str) -> str:
    """An empty database ``name`` on the server (dropped first if there); its URL."""
    from index.pg.schema import connect

    admin = connect(admin_url)
    admin.autocommit = True
    admin.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.execute(f"CREATE DATABASE {name}")
    admin.close()
    return admin_url.replace("/postgres?", f"/{name}?")


def load_postgres(url: str, updates: list[Any], about: dict, batch_docs: int) -> dict:
    """Fill a fresh database: migrate, drop the HNSW index, PostgresWriter in batches, rebuild the index, ANALYZE."""
    from index.pg.schema import connect, migrate
    from index.pg.writer import PostgresWriter
    from index.store.writer import IndexChange

    conn = connect(url, statement_timeout_ms=0)
    migrate(conn, DIM)
    hnsw = conn.execute("SELECT pg_get_indexdef('chunks_embedding'::regclass)").fetchone()[0]  # the schema's own
    conn.execute("DROP INDEX chunks_embedding")
    conn.commit()
    writer, t = PostgresWriter(conn), time.perf_counter()
    for start in range(0, len(updates), batch_docs):
        written = writer.apply(IndexChange([], updates[start:start + batch_docs], about=about))
        print(f"  postgres: {written.chunks:,} chunks loaded, {time.perf_counter() - t:.0f} s",
              file=sys.stderr, flush=True)
    load_s, t = time.perf_counter() - t, time.perf_counter()
    conn.execute("SET maintenance_work_mem = '6GB'")
    conn.execute("SET max_parallel_maintenance_workers = 1")
    conn.execute(hnsw)
    conn.commit()
    index_s, t = time.perf_counter() - t, time.perf_counter()
    conn.autocommit = True  # as a build does after a large write (index/pg/build.py): all-visible pages
    conn.execute("VACUUM (ANALYZE)")
    conn.autocommit = False
    analyze_s = time.perf_counter() - t
    size, hnsw = conn.execute("SELECT pg_database_size(current_database()), "
                              "pg_relation_size('chunks_embedding')").fetchone()
    conn.close()
    return {"load_s": load_s, "index_s": index_s, "analyze_s": analyze_s, "bytes": int(size),
            "hnsw_bytes": int(hnsw), "chunks": written.chunks, "documents": written.documents,
            "sentences": written.sentences}


# --------------------------------------------------------------------------------- the serving child


def _open(spec: dict, embedder: Any) -> Any:
    """The engine over the index, as the bot opens it (index/engine.py's ``_engine``)."""
    from index.engine import Engine
    from index.search.retrieval import search_for

    if spec["engine"] == "folder":
        from index.store import load_index

        reader: Any = load_index(Path(spec["index_dir"]), embedder.name, embedder.dim)
    else:
        from index.pg.db import Database
        from index.pg.reader import PostgresReader

        reader = PostgresReader(Database(spec["url"], DIM), {})
    return Engine(reader, embedder, search_for(embedder.name))


def _recall(engine: Any, queries: np.ndarray, truth: np.ndarray, kth: np.ndarray) -> tuple[float, list[float]]:
    """Mean recall@10 of the reader's dense_top against the exact ids, and each search's ms. A hit scoring the
    exact k-th score (to float32 rounding) counts: the BBC holds identical chunks, and which of a tie an exact
    search keeps is arbitrary."""
    found, ms = [], []
    for q, want, last in zip(queries, truth, kth):
        t = time.perf_counter()
        hits = engine.reader.dense_top(q, truth.shape[1])
        ms.append((time.perf_counter() - t) * 1e3)
        wanted = {int(i) for i in want}
        found.append(sum(int(i) in wanted or s >= last - 1e-5 for i, s in hits) / truth.shape[1])
    return float(np.mean(found)), ms


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM: ru_maxrss keeps the parent's RSS at fork across exec on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def server_memory(pid: int) -> dict:
    """RSS and PSS summed over the PostgreSQL server's processes (the postmaster and its children)."""
    import psutil

    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    rss = pss = 0
    for p in procs:
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue
        rss, pss = rss + info.rss, pss + info.pss
    return {"server_rss_mb": rss / 2**20, "server_pss_mb": pss / 2**20, "server_processes": len(procs)}


def _add_article(spec: dict, engine: Any, embedder: Any) -> dict:
    """The held-out article added as an update does it: split, embedded (timed apart), written as one change;
    ``spec["adds"]`` times in a row under distinct ids (one figure is too noisy: their median and maximum)."""
    from index.build import BuildReport, _embed_new, _plan, _updates
    from index.ingest.chunking import ChunkSettings
    from index.ingest.corpus import Document
    from index.store.writer import IndexChange

    doc = Document(**spec["new_doc"])
    t = time.perf_counter()
    report = BuildReport()
    plan = _plan([doc], {}, ChunkSettings(), report)
    split_s, t = time.perf_counter() - t, time.perf_counter()
    chunk_vecs, sent_vecs = _embed_new(plan, embedder, report, None, 0)
    embed_s = time.perf_counter() - t
    updates = _updates(plan, chunk_vecs, sent_vecs)
    adds = [[renamed(u, f"{u.doc.id}#{k}") for u in updates] for k in range(1, int(spec.get("adds", 5)) + 1)]
    out: dict[str, Any] = {}
    if spec["engine"] == "folder":
        written, out = _add_to_folder(spec, engine, adds, updates)
    else:
        from index.pg.schema import connect
        from index.pg.writer import PostgresWriter

        conn = connect(spec["url"], statement_timeout_ms=0)
        times = []
        for change in adds:
            t = time.perf_counter()
            written = PostgresWriter(conn).apply(IndexChange([], change))
            times.append(time.perf_counter() - t)
        conn.close()
        out["add_times_s"] = times
    out["add_index_s"], out["add_max_s"] = float(np.median(out["add_times_s"])), max(out["add_times_s"])
    return {**out, "add_split_s": split_s, "add_embed_s": embed_s, "adds": len(adds),
            "add_chunks": len(updates[0].chunks), "after_chunks": written.chunks}


def _add_to_folder(spec: dict, engine: Any, adds: list[list[Any]], updates: list[Any]) -> tuple[Any, dict]:
    """The article added to the folder index as a build adds it, once per change of ``adds`` (from the manifest
    alone: a delta segment each, index/store/segments.py, merged as they go; each time includes reading the
    manifest and the base's catalog, also reported apart as ``add_read_s``), then, under another id, written
    whole (FolderWriter with the loaded index as the previous one: every update before segments, and the periodic
    rewrite now). The disk is synced before each (``os.sync``): what was written before is not flushed inside a
    timed step."""
    from index.store import read_manifest
    from index.store.segments import PriorIndex
    from index.store.writer import FolderWriter, IndexChange

    def no_load() -> Any:
        raise RuntimeError("the delta path loaded the whole index")

    index_dir, prev = Path(spec["index_dir"]), engine.index
    times, reads = [], []
    for change_updates in adds:
        os.sync()
        t = time.perf_counter()
        prior = PriorIndex(index_dir, read_manifest(index_dir), no_load)
        reads.append(time.perf_counter() - t)
        change = IndexChange([*prior.manifest["documents"], change_updates[0].doc.id], change_updates,
                             about=spec["about"])
        written = FolderWriter(index_dir, prior, "faiss", DIM, {}).apply(change)
        times.append(time.perf_counter() - t)
    deltas = read_manifest(index_dir)["deltas"]
    os.sync()
    t = time.perf_counter()
    whole = [renamed(u, f"whole-{u.doc.id}") for u in updates]
    change = IndexChange([d.id for d in prev.documents] + [u.doc.id for u in whole], whole, about=spec["about"])
    FolderWriter(index_dir, prev, "faiss", DIM, {}).apply(change)
    return written, {"add_times_s": times, "add_read_s": float(np.median(reads)),
                     "add_whole_s": time.perf_counter() - t, "add_path": "delta" if deltas else "whole"}


def profile(engine: Any, questions: list[str], top: int = 12) -> list[tuple[str, float]]:
    """Where a question's time goes: Herald's functions by cumulative ms per question (a separate, profiled
    pass after the timed one, so the profiler's overhead is not in p50)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for q in questions:
        engine.ask(q)
    prof.disable()
    stats: dict = getattr(pstats.Stats(prof), "stats")  # noqa: B009 - typeshed lacks it
    rows = [(f"{Path(f).parent.name}/{Path(f).name}:{name}", ct * 1e3 / len(questions))
            for (f, _, name), (_, _, _, ct, _) in stats.items() if "/index/" in f and "/site-packages/" not in f]
    return sorted(rows, key=lambda r: -r[1])[:top]


def serve(spec: dict) -> dict:
    """Everything one engine is measured on, in this (fresh) process; RSS is read before the article is added."""
    from index import threads
    from index.embed.models import get_embedder

    t = time.perf_counter()
    embedder = get_embedder(spec["model"])
    embedder.encode(["warm the model up"])
    model_s = time.perf_counter() - t
    threads.serving()
    questions, queries = spec["questions"], np.load(spec["queries"])
    t = time.perf_counter()
    engine = _open(spec, embedder)
    engine.ask(questions[0])
    out: dict[str, Any] = {"model_load_s": model_s, "open_s": time.perf_counter() - t}
    ms = []
    for q in questions[1:]:
        t = time.perf_counter()
        engine.ask(q)
        ms.append((time.perf_counter() - t) * 1e3)
    out.update(p50_ms=percentile(ms, 50), p95_ms=percentile(ms, 95), questions=len(ms))
    out["recall10"], dense_ms = _recall(engine, queries, np.load(spec["truth"]), np.load(spec["kth"]))
    out["dense_p50_ms"] = percentile(dense_ms, 50)
    for ef in [*spec.get("ef_also", []), None]:  # the same searches at fixed efSearch values, then back to auto
        if spec["engine"] == "folder":
            engine.reader.index.store.set_ef_search(ef)
        else:
            engine.reader.ef_search = ef
        if ef is not None:
            recall, ms = _recall(engine, queries, np.load(spec["truth"]), np.load(spec["kth"]))
            out.setdefault("recall10_at_ef", {})[str(ef)] = [recall, percentile(ms, 50)]
    out["rss_mb"], out["ru_maxrss_mb"] = peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["profile"] = profile(engine, questions[1:21])
    if spec["engine"] == "postgres":
        out.update(server_memory(spec["postmaster"]))
        plan = engine.reader.dense_plan(queries[0], 10)
        out["plan_uses_hnsw"], out["plan"] = "chunks_embedding" in plan, plan
    try:  # a failed update still leaves the serving figures
        out.update(_add_article(spec, engine, embedder))
    except Exception as exc:  # noqa: BLE001 - reported in the table, not raised
        out["add_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    out["rss_after_add_mb"] = peak_rss_mb()
    return out


# ------------------------------------------------------------------------------------------- the parent


def spawn(spec: dict, work: Path) -> dict:
    """Run ``serve(spec)`` in a fresh process (this module with --serve); its result."""
    path = work / f"spec-{spec['engine']}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.pg_scale", "--serve", str(path)], env=env,
                          stdout=subprocess.PIPE, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def postmaster_pid(server: Any) -> int:
    return int((Path(server.pgdata) / "postmaster.pid").read_text().split()[0])


def drop(work: Path, engine: str, server: Any, size: int) -> None:
    """Free the disk a measured index took (the folder, or the size's database)."""
    import shutil

    if engine == "folder":
        shutil.rmtree(work / "index", ignore_errors=True)
        return
    from index.pg.schema import connect

    admin = connect(server.get_uri())
    admin.autocommit = True
    admin.execute(f"DROP DATABASE IF EXISTS scale_{size}")
    admin.close()


def measure_size(args: argparse.Namespace, data: dict, size: int, server: Any) -> list[dict]:
    """Both engines at one size: written, then measured in a child each."""
    updates = corpus_of(data["base"], size if size > data["bbc_chunks"] else 0, args.noise, args.seed)
    chunks = np.vstack([u.chunk_vectors for u in updates])
    work = args.work / f"size-{size}"
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "queries.npy", data["queries"])
    truth = exact_top(chunks, data["queries"], 10)
    np.save(work / "truth.npy", truth)
    np.save(work / "kth.npy", np.einsum("ij,ij->i", data["queries"], chunks[truth[:, -1]]))
    n_chunks = len(chunks)
    del chunks  # at 1,000,000 chunks every gigabyte the parent holds is one the child cannot have
    spec = {"model": data["model"], "questions": data["questions"], "queries": str(work / "queries.npy"),
            "truth": str(work / "truth.npy"), "kth": str(work / "kth.npy"), "new_doc": data["new_doc"],
            "adds": args.adds, "about": data["about"], "ef_also": args.ef_also}
    rows = []
    for engine in args.engines:
        stamp = {"size": size, "engine": engine, "chunks": n_chunks, "documents": len(updates),
                 "synthetic": len(updates) > len(data["base"]), "load_before": os.getloadavg()[0],
                 "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "command": data["command"]}
        print(f"{size:,} {engine}: writing {n_chunks:,} chunks", file=sys.stderr, flush=True)
        if engine == "folder":
            built = write_folder(work / "index", updates, data["about"])
            spec.update(engine="folder", index_dir=str(work / "index"))
        else:
            url = new_database(server.get_uri(), f"scale_{size}")
            built = load_postgres(url, updates, data["about"], args.batch_docs)
            spec.update(engine="postgres", url=url, postmaster=postmaster_pid(server))
        if engine == args.engines[-1]:
            updates.clear()  # written: the memory is the child's now
        print(f"{size:,} {engine}: {built}; serving in a fresh process", file=sys.stderr, flush=True)
        row = {**stamp, **built, **spawn(spec, work), "load_after": os.getloadavg()[0]}
        drop(work, engine, server, size)
        rows.append(row)
        save(args.out, [row])
        print(table(load_rows(args.out) if args.out else rows), file=sys.stderr, flush=True)
    return rows


def _cells(r: dict) -> list[str]:
    """One column of the table (METRICS' order)."""
    pg = r["engine"] == "postgres"
    server = f" + server {r['server_pss_mb']:,.0f} MB PSS" if pg else ""
    walked = r.get("plan_uses_hnsw") if pg else r["chunks"] > 50_000  # FaissStore: HNSW above 50,000
    exact = "" if walked else " (exact search)"
    built = (f"{r['load_s']:.0f} s load + {r['index_s']:.0f} s HNSW + {r['analyze_s']:.0f} s (vacuum) analyze" if pg
             else f"{r['write_s']:.0f} s write")
    added = (f"{r['add_index_s']:.2f} s + {r['add_embed_s']:.2f} s embedding" if "add_index_s" in r
             else f"failed ({r.get('add_error', '?')})")
    if "add_max_s" in r:
        added += f" (median of {r['adds']}, max {r['add_max_s']:.2f} s)"
    if "add_whole_s" in r:
        read = f", {r['add_read_s']:.2f} s of each reading the manifest" if "add_read_s" in r else ""
        added += f" ({r['add_path']}{read}; written whole: {r['add_whole_s']:.2f} s)"
    return [added, f"{r['open_s']:.2f} s",
            f"{r['rss_mb']:,.0f} MB{server}", f"{r['p50_ms']:.0f} / {r['p95_ms']:.0f} ms",
            f"{r['recall10']:.3f}{exact}{_at_ef(r)}", built, f"{r['bytes'] / 2**20:,.0f} MB"]


def _at_ef(r: dict) -> str:
    """The recall at the fixed efSearch values measured too (``--ef-also``), with the search's p50."""
    cells = [f"{v[0]:.3f} at efSearch {ef} ({v[1]:.1f} ms)" for ef, v in r.get("recall10_at_ef", {}).items()]
    return f" ({'; '.join(cells)})" if cells else ""


def table(rows: list[dict]) -> str:
    """Rows as the issue has them, one column per size and engine."""
    rows = sorted(rows, key=lambda r: (r["size"], r["engine"]))
    head = ["", *(f"{r['chunks']:,} chunks, {r['engine']}" + (" (synthetic)" if r["synthetic"] else "")
                  for r in rows)]
    columns = [_cells(r) for r in rows]
    return md_table(head, [[m, *(c[i] for c in columns)] for i, m in enumerate(METRICS)])


def load_rows(path: Path | None) -> list[dict]:
    if path is None or not path.exists():
        return []
    return json.loads(path.read_text(encoding="utf-8"))["rows"]


def save(path: Path | None, rows: list[dict]) -> None:
    """Add ``rows`` to the JSON at ``path`` (a row of the same size and engine is replaced)."""
    if path is None:
        return
    new = {(r["size"], r["engine"]) for r in rows}
    kept = [r for r in load_rows(path) if (r["size"], r["engine"]) not in new]
    path.write_text(json.dumps({"rows": kept + rows}, indent=1) + "\n", encoding="utf-8")


def versions(server_version: str) -> str:
    import hashlib

    import faiss
    import pgserver
    import psycopg

    return (f"Python {platform.python_version()}, numpy {np.__version__}, faiss {faiss.__version__}, "
            f"psycopg {psycopg.__version__}, pgserver {getattr(pgserver, '__version__', '0.1.4')}, {server_version}; "
            "index/pg/*.py as run: sha256 " + hashlib.sha256(b"".join(
                p.read_bytes() for p in sorted((Path(__file__).resolve().parents[1] / "index/pg").glob("*.py")))
            ).hexdigest()[:12])


def server_info(server: Any) -> str:
    """PostgreSQL's and pgvector's versions and the settings that matter here."""
    from index.pg.schema import connect

    conn = connect(server.get_uri())
    version = conn.execute("SHOW server_version").fetchone()[0]
    shared = conn.execute("SHOW shared_buffers").fetchone()[0]
    vector = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    conn.close()
    return f"PostgreSQL {version} (shared_buffers {shared}), pgvector {vector[0] if vector else '?'}"


def prepare(args: argparse.Namespace, command: str) -> dict:
    """The BBC index's documents (one held out), the questions and their vectors."""
    from index.store import load_index

    if not (args.bbc_index / "manifest.json").exists():
        raise SystemExit(f"no BBC index at {args.bbc_index} (benchmarks/ann_scale.py builds it)")
    loaded = load_index(args.bbc_index)
    base, held = base_updates(loaded, args.held_out)
    questions, queries = sample_questions(loaded, args.held_out, args.questions, args.seed)
    new_doc = {"id": held.id, "title": held.title, "text": held.text, "path": held.path, "url": held.url,
               "date": held.date, "fingerprint": held.fingerprint, "meta": held.meta, "collection": held.collection}
    return {"base": base, "questions": questions, "queries": queries[1:], "new_doc": new_doc,
            "about": about_of(loaded), "bbc_chunks": len(loaded.chunks), "model": loaded.manifest["model"],
            "command": command}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the child: measure one engine, print JSON
    ap.add_argument("--bbc-index", type=Path, default=DEFAULT_BBC_INDEX, help=f"the BBC index ({DEFAULT_BBC_INDEX})")
    ap.add_argument("--sizes", type=int_list, default=[18_991, 100_000], help="chunk counts, comma-separated")
    ap.add_argument("--engines", type=lambda s: s.split(","), default=["folder", "postgres"])
    ap.add_argument("--held-out", default="tech/397.txt", help="the BBC article added as the new one")
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--noise", type=float, default=0.02, help="per-component std-dev of the copies' noise")
    ap.add_argument("--batch-docs", type=int, default=2000, help="documents per PostgresWriter change at load")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--adds", type=int, default=5, help="times the new article is added (under distinct ids)")
    ap.add_argument("--ef-also", type=int_list, default=[], help="efSearch values whose recall@10 is measured too")
    ap.add_argument("--work", type=Path, default=Path("/tmp/herald-pg-scale"))
    ap.add_argument("--out", type=Path, help="JSON of every run's rows (kept across runs)")
    ap.add_argument("--report", action="store_true", help="only print the table of the rows in --out")
    args = ap.parse_args(argv)
    if args.report:
        print(table(load_rows(args.out)))
        return 0
    if args.serve:
        print(json.dumps(serve(json.loads(args.serve.read_text(encoding="utf-8")))))
        return 0
    import pgserver

    started, load_before = time.perf_counter(), os.getloadavg()
    command = "OMP_NUM_THREADS=1 python -m benchmarks.pg_scale " + " ".join(argv if argv is not None else sys.argv[1:])
    data = prepare(args, command)
    args.work.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(args.work / "pgdata"), cleanup_mode="delete")
    try:
        info = server_info(server)
        rows = [r for size in args.sizes for r in measure_size(args, data, size, server)]
    finally:
        server.cleanup()
    print(table(load_rows(args.out) if args.out else rows))
    print(f"\n- This run: `{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{time.perf_counter() - started:.0f} s; load average {' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} after; {os.cpu_count()} cores shared with other work.")
    print(f"- Versions: {versions(info)}.")
    print(f"- {NUL_NOTE}.")
    print("- Texts are repeated and vectors synthetic above the BBC size (copies of every article, noisy vectors).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
