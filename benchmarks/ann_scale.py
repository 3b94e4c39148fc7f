"""HNSW recall as the corpus grows: recall@10 and p50 latency of FaissStore's HNSW against exact search,
for several efSearch values and the automatic one (index.store.vectors.auto_ef_search), at growing sizes.

Issue 19 found recall@10 at the old fixed efSearch 128 falling from 0.948 (190k chunks) to 0.870 (951k);
this measures what efSearch keeps it at 0.95 or more. Not part of `make test`: it needs BBC News, by path.

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python -m benchmarks.ann_scale --bbc ../shared/data/bbc-news \\
        --json /tmp/herald-ann-cache/scale.json   # docs/scale.md's table: 100,000 to 1,000,000, ~5 minutes

Data: the BBC News index built with Herald's own code (index.build.build_index, default chunking and
model, all-MiniLM-L6-v2) into --cache, so a rerun embeds nothing (the first build embeds ~53,000 texts:
about 15 minutes on one core). Base vectors are its chunk vectors, then noisy renormalised copies of them
(benchmarks.ann.synthesise: real + N(0, noise^2) per component) up to each size: a stand-in for a bigger
corpus, as in the issue. Queries are --queries of the index's sentence vectors (a question resembles a
sentence of the passage that answers it). The vectors go through the library's store (FaissStore with its
defaults: HNSW above 50,000, M 32, efConstruction 80), added size after size as a growing index would;
truth is exact inner-product top-k by NumPy. One thread throughout; per query the minimum over --rounds
passes, then the median over queries. Each size's rows are written to --json as soon as they are measured.
--real-chunks N starts from N of the real chunks instead, so each has more copies at a given size: how many
copies each chunk has, more than the size, sets how hard this data is (docs/scale.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .ann import cpu_name, int_list, synthesise
from .common import md_table, percentile

DEFAULT_CACHE = Path("/tmp/herald-ann-cache")


@dataclass
class Row:
    """One efSearch on the store at one size."""

    size: int
    ef_search: int
    auto: bool  # the value the store picks by itself (ef_search option None)
    p50_ms: float
    p90_ms: float
    recall10: float
    missed: int  # queries with recall@10 under 0.5 (the search ended in the wrong region)
    build_s: float  # seconds the store's add() took to reach this size from the previous one


def bbc_vectors(bbc: Path, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(chunk vectors, sentence vectors) of the BBC index under ``cache``, built first if need be."""
    from index.build import build_index
    from index.embed.models import get_embedder
    from index.store import load_index

    index_dir = cache / "index-bbc"
    embedder = get_embedder()
    report = build_index(bbc, index_dir, embedder)
    if report.embedded_texts:
        print(f"embedded {report.embedded_texts:,} texts into {index_dir}", file=sys.stderr)
    loaded = load_index(index_dir, embedder.name, embedder.dim)
    chunks = loaded.store.get(loaded.chunk_ids)
    return np.ascontiguousarray(chunks, dtype=np.float32), np.asarray(loaded.sentence_vectors, dtype=np.float32)


def exact_top(base: np.ndarray, queries: np.ndarray, k: int, block: int = 100_000) -> np.ndarray:
    """Exact top-k ids (rows of ``base``) per query by inner product, a block of rows at a time."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(base), block):
        sims = queries @ base[start:start + block].T
        kk = min(k, sims.shape[1])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        best_s = np.hstack([best_s, np.take_along_axis(sims, part, axis=1)])
        best_i = np.hstack([best_i, part + start])
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, axis=1), np.take_along_axis(best_i, keep, axis=1)
    return best_i


def time_store(store, queries: np.ndarray, k: int, rounds: int) -> tuple[list[float], list[set[int]]]:
    """Per-query latency of store.search in ms (min over rounds) and the ids it found."""
    for q in queries[:10]:  # warm caches and code paths
        store.search(q, k)
    best = [float("inf")] * len(queries)
    found: list[set[int]] = [set() for _ in queries]
    for _ in range(rounds):
        for i, q in enumerate(queries):
            t = time.perf_counter()
            hits = store.search(q, k)
            best[i] = min(best[i], (time.perf_counter() - t) * 1e3)
            found[i] = {h for h, _ in hits}
    return best, found


def measure(store, size: int, queries: np.ndarray, truth: np.ndarray, efs: list[int], rounds: int,
            build_s: float) -> list[Row]:
    """Each explicit efSearch, then the automatic one, on the store as it is."""
    rows = []
    for ef in [*efs, None]:
        store.set_ef_search(ef)
        times, found = time_store(store, queries, truth.shape[1], rounds)
        per_query = [len(f & set(t.tolist())) / truth.shape[1] for f, t in zip(found, truth)]
        rows.append(Row(size, store.search_ef, ef is None, percentile(times, 50), percentile(times, 90),
                        float(np.mean(per_query)), sum(r < 0.5 for r in per_query), build_s))
    store.set_ef_search(None)
    return rows


def table(rows: list[Row]) -> str:
    """Markdown, one line per (size, efSearch); the automatic value is marked."""
    head = ["vectors", "efSearch", "recall@10", "queries < 0.5", "p50 ms", "p90 ms"]
    cells = [[f"{r.size:,}", f"{r.ef_search}" + (" (auto)" if r.auto else ""), f"{r.recall10:.3f}",
              str(r.missed), f"{r.p50_ms:.3f}", f"{r.p90_ms:.3f}"] for r in rows]
    return md_table(head, cells, align="lrrrrr", tight=True)


def ef_needed(rows: list[Row], target: float) -> float | None:
    """The efSearch at which recall@10 reaches ``target``, interpolated in log efSearch between the measured
    values; None when the smallest already reaches it, inf when the largest does not."""
    pts = sorted((r.ef_search, r.recall10) for r in rows if not r.auto)
    if pts[0][1] >= target:
        return None
    for (e0, r0), (e1, r1) in zip(pts, pts[1:]):
        if r0 < target <= r1:
            return float(np.exp(np.log(e0) + (target - r0) / (r1 - r0) * np.log(e1 / e0)))
    return float("inf")


def needed_table(rows: list[Row], targets: tuple[float, ...] = (0.95, 0.96)) -> str:
    """Per size: the efSearch each target needs, and the automatic value with its measured recall."""
    sizes = sorted({r.size for r in rows})
    head = ["vectors", *(f"efSearch for {t:.2f}" for t in targets), "auto efSearch", "its recall@10"]
    cells = []
    for n in sizes:
        at = [r for r in rows if r.size == n]
        need = [ef_needed(at, t) for t in targets]
        auto = next(r for r in at if r.auto)
        cells.append([f"{n:,}", *("< " + str(min(r.ef_search for r in at)) if e is None else
                                  "> " + str(max(r.ef_search for r in at)) if e == float("inf") else f"{e:.0f}"
                                  for e in need), str(auto.ef_search), f"{auto.recall10:.3f}"])
    return md_table(head, cells, align="l" + "r" * (len(head) - 1), tight=True)


def machine(started: float, load_before: float) -> str:
    import faiss

    return (f"{cpu_name()}, {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}, "
            f"faiss {faiss.__version__}, numpy {np.__version__}, Python {platform.python_version()}; load average "
            f"(1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; {time.strftime('%Y-%m-%d %H:%M')}, "
            f"the run took {time.perf_counter() - started:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bbc", type=Path, required=True, help="BBC News folder (<category>/NNN.txt)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"where the BBC index is kept ({DEFAULT_CACHE})")
    ap.add_argument("--sizes", type=int_list, default=[100_000, 200_000, 300_000, 500_000, 750_000, 1_000_000],
                    help="store sizes, comma-separated, each reached by adding to the one before")
    ap.add_argument("--ef-search", type=int_list, default=[64, 128, 192, 256, 384, 512], help="efSearch values")
    ap.add_argument("--queries", type=int, default=500, help="sentence vectors used as queries (default 500)")
    ap.add_argument("--k", type=int, default=10, help="neighbours per query (default 10: recall@10)")
    ap.add_argument("--real-chunks", type=int, default=0,
                    help="use only this many of the real chunks (seeded sample): more copies of each per size")
    ap.add_argument("--noise", type=float, default=0.02, help="per-component std-dev of the copies' noise (0.02)")
    ap.add_argument("--rounds", type=int, default=2, help="timed passes over the queries; min per query (2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the rows here after every size")
    args = ap.parse_args(argv)

    import faiss
    from threadpoolctl import threadpool_limits

    from index.store.vectors import FaissStore

    faiss.omp_set_num_threads(1)  # Herald answers one query on one thread; the graph is built on one too
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    real, sentences = bbc_vectors(args.bbc, args.cache)
    if args.real_chunks:
        real = real[np.sort(np.random.default_rng(args.seed + 2).permutation(len(real))[:args.real_chunks])]
    threadpool_limits(1)
    queries = sentences[np.random.default_rng(args.seed).permutation(len(sentences))[:args.queries]]
    base, copy_cos = synthesise(real, max(args.sizes), args.noise, args.seed + 1)
    print(f"{len(real):,} real chunk vectors, copies at mean cosine {copy_cos:.3f} to their source",
          file=sys.stderr, flush=True)
    store, rows, done = FaissStore(real.shape[1]), [], 0
    for size in sorted(args.sizes):
        t = time.perf_counter()
        store.add(range(done, size), base[done:size])
        build_s, done = time.perf_counter() - t, size
        print(f"{size:,}: store built in {build_s:.0f} s; measuring", file=sys.stderr, flush=True)
        truth = exact_top(base[:size], queries, args.k)
        rows += measure(store, size, queries, truth, args.ef_search, args.rounds, build_s)
        if args.json:
            args.json.write_text(json.dumps({"real_chunks": len(real), "copy_cosine": copy_cos, "argv": argv or
                                             sys.argv[1:], "rows": [asdict(r) for r in rows]}, indent=1) + "\n")
    print(table(rows))
    print()
    print(needed_table(rows))
    print(f"\n- Base: {len(real):,} BBC chunk vectors ({args.cache / 'index-bbc'}) plus copies with N(0, "
          f"{args.noise}^2) noise, mean cosine {copy_cos:.3f} to their source; {len(queries)} sentence queries, "
          f"k={args.k}.")
    print(f"- Store: FaissStore defaults (M {store.hnsw_m}, efConstruction {store.ef_construction}), grown size "
          f"after size; store add() seconds per step: " + ", ".join(f"{r.size:,}: {r.build_s:.0f}" for r in rows
                                                                    if r.auto) + ".")
    print(f"- Machine: {machine(started, load_before)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
