"""Several processes sharing one index in PostgreSQL (issue 19): answering processes (what each bot shard
does per question) and a writer (what the feed watcher does: an article file written into a collection
folder, then a scoped build), side by side on this machine.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.pg_processes --index /tmp/herald-ann-cache/index-bbc

A local PostgreSQL with pgvector is started from pgserver in a temporary folder and seeded with the folder
index given (records and vectors copied: nothing embedded). Then ``--askers`` processes each open an Engine
over ``PostgresReader`` with the real model and ask questions (sentences of the index's documents, each
asker its own seeded sample) back to back: for ``--seconds`` with no writer, then for ``--seconds`` while a
writer process adds one article every ``--every`` seconds through ``index.rebuild(config,
collections=["feeds"])``. Reported: the askers' answer latency p50/p95 in both phases, the writer's time
per article, how long after each write's commit each asker first answered from the new state, and whether
each asker, at the end, answers every added article from that article. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .common import percentile

NAME = "Zorvath"  # a name no BBC article uses: the added articles' questions can only be answered by them


def _config(work: Path, url: str):
    from index import EngineConfig
    from index.embed.models import DEFAULT_MODEL

    return EngineConfig(corpus=work / "base", index_dir=work / "index", model=DEFAULT_MODEL,
                        collections_dir=work / "collections", database_url=url)


def _seed(folder_index: Path, url: str) -> int:
    from index.embed.models import DEFAULT_MODEL, get_embedder
    from index.pg.build import folder_change
    from index.pg.schema import connect, migrate
    from index.pg.writer import PostgresWriter
    from index.store import load_index

    emb = get_embedder(DEFAULT_MODEL)
    loaded = load_index(folder_index, emb.name, emb.dim)
    conn = connect(url, statement_timeout_ms=0)
    migrate(conn, emb.dim)
    PostgresWriter(conn).apply(folder_change(loaded))
    conn.close()
    return len(loaded.chunks)


def _questions(url: str, n: int, seed: int) -> list[str]:
    from index.pg.schema import connect

    conn = connect(url)
    rows = conn.execute("SELECT substr(d.body, s.start_at + 1, s.end_at - s.start_at) FROM sentences s "
                        "JOIN documents d ON d.id = s.doc_id WHERE s.end_at - s.start_at BETWEEN 60 AND 200 "
                        "ORDER BY s.id").fetchall()
    conn.close()
    return [r[0] for r in random.Random(seed).sample(rows, min(n, len(rows)))]


def ask_loop(args: argparse.Namespace) -> None:
    """One answering process: questions back to back until the deadline; then the probe questions."""
    from index import open_engine

    engine = open_engine(_config(Path(args.work), args.url), auto_build=False)
    qs = _questions(args.url, 400, args.seed)
    engine.ask(qs[0])
    out: dict = {"asks": []}
    i = 0
    while time.time() < args.until:
        t = time.perf_counter()
        engine.ask(qs[i % len(qs)])
        out["asks"].append([time.time(), (time.perf_counter() - t) * 1000, engine.reader.generation])
        i += 1
    probes = json.loads(Path(args.work, "probes.json").read_text()) if Path(args.work, "probes.json").exists() else []
    answers = [engine.ask(q) for q, _ in probes]
    out["probes"] = [bool(a.sources) and a.sources[0].doc_id == doc for a, (_, doc) in zip(answers, probes)]
    Path(args.out).write_text(json.dumps(out))


def write_loop(args: argparse.Namespace) -> None:
    """The writer: one article every ``--every`` s into the ``feeds`` collection, built at once."""
    from index import rebuild
    from index.pg.schema import connect

    work = Path(args.work)
    folder = work / "collections" / "feeds"
    folder.mkdir(parents=True, exist_ok=True)
    texts = [t for t in _bodies(args.url) if len(t) > 800][:50]
    writes, probes, k = [], [], 0
    while time.time() < args.until - args.every:
        start = time.time()
        text = texts[k % len(texts)]
        first = text.split(". ")[0]
        name = _name(k)
        body = f"{name} of the harbour council said {first}. " + text
        (folder / f"story{k}.txt").write_text(f"{name} report\n\n{body}", encoding="utf-8")
        t = time.perf_counter()
        rebuild(_config(work, args.url), collections=["feeds"])
        took = time.perf_counter() - t
        gen = int(connect(args.url).execute("SELECT value FROM herald_meta WHERE key='generation'").fetchone()[0])
        writes.append([time.time(), took, gen])
        probes.append([f"What did {name} of the harbour council say?", f"feeds:story{k}.txt"])
        Path(work, "probes.json").write_text(json.dumps(probes))  # the askers ask these at the end
        k += 1
        time.sleep(max(0.0, args.every - (time.time() - start)))
    Path(args.out).write_text(json.dumps({"writes": writes}))


def _name(k: int) -> str:
    """A made-up name per article, in letters (a number alone is no word to search by): Zorvathab, ..."""
    return NAME + "".join("abcdefghij"[int(d)] for d in f"{k:02d}")


def _bodies(url: str) -> list[str]:
    from index.pg.schema import connect

    conn = connect(url)
    rows = conn.execute("SELECT body FROM documents ORDER BY position DESC LIMIT 200").fetchall()
    conn.close()
    return [r[0] for r in rows]


def _spawn(role: str, work: Path, url: str, until: float, out: Path, seed: int = 0,
           every: float = 0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "benchmarks.pg_processes", "--role", role, "--work", str(work), "--url", url,
           "--until", str(until), "--out", str(out), "--seed", str(seed), "--every", str(every)]
    return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _phase(work: Path, url: str, askers: int, seconds: float, every: float | None, tag: str) -> tuple[list, dict]:
    until = time.time() + seconds + 8  # the askers load the model first (a few seconds)
    procs = [_spawn("ask", work, url, until, work / f"{tag}-ask{i}.json", seed=i) for i in range(askers)]
    writer = _spawn("write", work, url, until, work / f"{tag}-write.json", every=every) if every else None
    for p in procs + ([writer] if writer else []):
        p.wait()
    asks = [json.loads((work / f"{tag}-ask{i}.json").read_text()) for i in range(askers)]
    return asks, json.loads((work / f"{tag}-write.json").read_text()) if writer else {}


def _fresh_after(writes: list, asks: list) -> list[float]:
    """Seconds from each write's commit to each asker's first answer at (or past) its generation."""
    out = []
    for done_at, _, gen in writes:
        for a in asks:
            first = next((t for t, _, g in a["asks"] if g >= gen), None)
            if first is not None:
                out.append(max(0.0, first - done_at))
    return out


def report(args: argparse.Namespace, chunks: int, quiet: list, busy: list, writes: dict, load: tuple) -> str:
    lat = {tag: [ms for a in asks for _, ms, _ in a["asks"]] for tag, asks in (("quiet", quiet), ("busy", busy))}
    fresh = _fresh_after(writes["writes"], busy)
    probes = [ok for a in busy for ok in a["probes"]]
    rows = [("answering processes", f"{args.askers}"), ("index", f"{chunks:,} chunks (seeded from {args.index})"),
            ("questions answered, no writer / with writer", f"{len(lat['quiet'])} / {len(lat['busy'])}"),
            ("answer p50 / p95 ms, no writer",
             f"{percentile(lat['quiet'], 50):.1f} / {percentile(lat['quiet'], 95):.1f}"),
            ("answer p50 / p95 ms, writer adding an article every "
             f"{args.every:g} s", f"{percentile(lat['busy'], 50):.1f} / {percentile(lat['busy'], 95):.1f}"),
            ("articles added; writer s per article p50 / max",
             f"{len(writes['writes'])}; {percentile([w[1] for w in writes['writes']], 50):.2f} / "
             f"{max(w[1] for w in writes['writes']):.2f}"),
            ("s from a write's commit to each asker's first answer from it, p50 / max",
             f"{percentile(fresh, 50):.2f} / {max(fresh):.2f}"),
            ("added articles answered from themselves by every asker at the end", f"{sum(probes)} / {len(probes)}")]
    return measure_table(rows, load, "pg_processes")


def measure_table(rows: list[tuple[str, str]], load: tuple[float, float], module: str) -> str:
    """A two-column Markdown table and the machine state under it (load, time, cores, the command)."""
    lines = ["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    lines.append(f"\nload average (1 min) {load[0]:.2f} before, {load[1]:.2f} after; "
                 f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; OMP_NUM_THREADS=1 "
                 f"in every process; command: python -m benchmarks.{module} {' '.join(sys.argv[1:])}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, default=Path("/tmp/herald-ann-cache/index-bbc"),
                    help="a folder index built with the default model, copied into the database")
    ap.add_argument("--askers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=40.0, help="length of each phase")
    ap.add_argument("--every", type=float, default=4.0, help="seconds between the writer's articles")
    ap.add_argument("--role", choices=["ask", "write"], help=argparse.SUPPRESS)
    for hidden in ("--work", "--url", "--out"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    ap.add_argument("--until", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        (ask_loop if args.role == "ask" else write_loop)(args)
        return
    load_before = os.getloadavg()[0]
    with seeded_database(args.index, "herald-pgproc-") as (work, url, chunks):
        quiet, _ = _phase(work, url, args.askers, args.seconds, None, "quiet")
        busy, writes = _phase(work, url, args.askers, args.seconds, args.every, "busy")
        print(report(args, chunks, quiet, busy, writes, (load_before, os.getloadavg()[0])))


@contextlib.contextmanager
def seeded_database(index: Path, prefix: str) -> Iterator[tuple[Path, str, int]]:
    """A temporary folder (with an empty ``base`` corpus) and a local PostgreSQL holding the folder index at
    ``index``: (folder, URL, chunks). Both go on exit."""
    import pgserver

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        (work / "base").mkdir()
        srv = pgserver.get_server(str(work / "pg"), cleanup_mode="delete")
        try:
            url = srv.get_uri()
            yield work, url, _seed(index, url)
        finally:
            srv.cleanup()


if __name__ == "__main__":
    main()
