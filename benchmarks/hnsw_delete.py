"""What changing one article costs the HNSW graph (issue 19): the time to delete a few ids from a
FaissStore past its HNSW threshold, and how often the graph is rebuilt as changes accumulate.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.hnsw_delete --vectors 60000 --changes 20

Vectors are synthetic (clustered unit vectors, 384 dimensions: the default model's width); only the
store's own work is timed. Each change deletes ``--per-change`` ids (an article's chunks) and adds as many.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from index.store.vectors import FaissStore


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((300, dim)).astype(np.float32)
    x = centres[rng.integers(0, 300, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vectors", type=int, default=60000)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--per-change", type=int, default=10)
    args = ap.parse_args(argv)
    dim, n = 384, args.vectors
    store = FaissStore(dim)
    t = time.perf_counter()
    store.add(np.arange(n), clustered(n, dim, 0))
    build = time.perf_counter() - t
    fresh = clustered(args.changes * args.per_change, dim, 1)
    times, rebuilds, next_id = [], 0, n
    for c in range(args.changes):
        graph = store._index
        t = time.perf_counter()
        store.delete(np.arange(c * args.per_change, (c + 1) * args.per_change))
        store.add(np.arange(next_id, next_id + args.per_change), fresh[c * args.per_change:(c + 1) * args.per_change])
        times.append(time.perf_counter() - t)
        rebuilds += store._index is not graph
        next_id += args.per_change
    print(f"| vectors | HNSW build s | changes | change p50 s | change max s | graph rebuilds |\n"
          f"|---:|---:|---:|---:|---:|---:|\n"
          f"| {n:,} | {build:.1f} | {args.changes} x {args.per_change} ids | {statistics.median(times):.3f} | "
          f"{max(times):.3f} | {rebuilds} |")
    print(f"\n`OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} python -m benchmarks.hnsw_delete "
          f"--vectors {n} --changes {args.changes} --per-change {args.per_change}`; {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
