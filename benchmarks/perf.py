"""Performance of Herald on the article corpus: build, warm queries, cold `herald ask`, `--help`, memory.

    .venv/bin/python benchmarks/perf.py            # about 1.5 minutes on a laptop CPU
    .venv/bin/python benchmarks/perf.py --runs 3   # more cold-start runs, steadier medians

Everything is written to a temporary folder (removed afterwards); the corpus is only read. Prints a
Markdown table to paste into the README, followed by the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def herald_cmd() -> list[str]:
    script = Path(sys.executable).parent / "herald"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


def run_cli(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run(herald_cmd() + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"`herald {' '.join(args)}` failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed, proc


def questions(path: Path) -> list[str]:
    return [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "corpus")
    parser.add_argument("--questions", type=Path, default=REPO / "tests" / "data" / "article_qa.jsonl")
    parser.add_argument("--model", default=None, help="embedding model (default: Herald's default)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each cold `herald ask` (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the questions for warm latency")
    args = parser.parse_args()

    from index.embed import DEFAULT_MODEL, get_embedder
    from index.search import Engine, SearchSettings
    from index.store import build_index, load_index

    model = args.model or DEFAULT_MODEL
    load_before = os.getloadavg()[0]
    qs = questions(args.questions)
    work = Path(tempfile.mkdtemp(prefix="herald-perf-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_") and k != "DISCORD_TOKEN"}
    no_env = str(work / "no.env")
    rows: list[tuple[str, str]] = []
    try:
        # ---- subprocesses first: `herald --help`, cold `herald ask`. A child's peak RSS counts the memory
        # of the process it was forked from, so they start before this one loads the model.
        help_s = [run_cli(["--env-file", no_env, "--help"], work, env)[0] for _ in range(5)]
        base = ["--env-file", no_env, "ask", "--corpus", str(args.corpus), "--model", model]
        fresh_s, existing_s = [], []
        for i in range(args.runs):
            fresh = work / f"fresh-{i}"
            fresh_s.append(run_cli(base + ["--index", str(fresh), "Who vetoed the resolution?"], work, env)[0])
            existing_s.append(run_cli(base + ["--index", str(fresh), "Who vetoed the resolution?"], work, env)[0])
        child_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

        # ---- in-process: model load, build, warm queries -------------------------------------
        t0 = time.perf_counter()
        embedder = get_embedder(model)
        embedder.encode(["warm-up"])
        load_s = time.perf_counter() - t0

        index_dir = work / "index"
        t0 = time.perf_counter()
        report = build_index(args.corpus, index_dir, embedder)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = build_index(args.corpus, index_dir, embedder)
        rebuild_s = time.perf_counter() - t0
        assert not again.changed_anything

        engine = Engine(load_index(index_dir, model, embedder.dim), embedder, SearchSettings())
        for q in qs[:5]:
            engine.ask(q)
        ask_ms, embed_ms = [], []
        for _ in range(args.rounds):
            for q in qs:
                t = time.perf_counter()
                engine.ask(q)
                ask_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                embedder.encode([q])
                embed_ms.append((time.perf_counter() - t) * 1000)
        self_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        # ---- bulk: why builds over 8k tokens go to torch, and how closely the two paths agree
        bulk = None
        from index.embed import BertEmbedder, SentenceTransformerEmbedder

        if isinstance(embedder, BertEmbedder):
            texts = [c.text for c in engine.index.chunks] * 16
            t = time.perf_counter()
            via_numpy = embedder._numpy.encode(texts)
            numpy_s = time.perf_counter() - t
            st = SentenceTransformerEmbedder(model)
            st.encode(["warm-up"])
            t = time.perf_counter()
            via_torch = st.encode(texts)
            torch_s = time.perf_counter() - t
            bulk = (len(texts), numpy_s, torch_s, float(abs(via_numpy - via_torch).max()))

    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = len(ask_ms)
    rows = [
        ("Corpus", f"{report.documents} article(s), {report.chunks} chunks, "
                   f"{report.embedded_texts} texts embedded (chunks + sentences)"),
        ("Model load (in process)", f"{load_s:.1f} s"),
        ("Build, first (chunk + embed + write)", f"{build_s:.2f} s"),
        ("Build again, nothing changed", f"{rebuild_s:.2f} s"),
        (f"Warm answer `Engine.ask`, p50 / p95 ({n} asks)", f"{pct(ask_ms, 50):.1f} / {pct(ask_ms, 95):.1f} ms"),
        ("Query embedding alone (the floor), p50 / p95", f"{pct(embed_ms, 50):.1f} / {pct(embed_ms, 95):.1f} ms"),
        (f"`herald ask` cold, no index yet (builds it), median of {args.runs}",
         f"{statistics.median(fresh_s):.1f} s"),
        (f"`herald ask` cold, index exists, median of {args.runs}", f"{statistics.median(existing_s):.1f} s"),
        ("`herald --help`, median of 5", f"{statistics.median(help_s) * 1000:.0f} ms"),
        ("Peak RSS, `herald ask` process", f"{child_rss_mb:.0f} MB"),
        ("Peak RSS, this benchmark (model + index + queries)", f"{self_rss_mb:.0f} MB"),
    ]
    if bulk is not None:
        rows.append((f"Bulk embedding of {bulk[0]} chunk texts: NumPy / sentence-transformers (torch)",
                     f"{bulk[1]:.1f} s / {bulk[2]:.1f} s"))
        rows.append(("Largest difference between the two paths' vector components", f"{bulk[3]:.1e}"))
    import torch

    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} " \
          f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    print(f"| Measure ({model}) | Value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print()
    load_after = os.getloadavg()[0]
    print(f"Machine: {cpu}; load average {load_before:.1f} at start, {load_after:.1f} at end. "
          f"Cold = a new process (OS file cache warm).")
    if max(load_before, load_after) > (os.cpu_count() or 1) * 0.75:
        print("Warning: the machine was busy with other work; latencies are inflated. Re-run on a quiet machine.")
    extra = "" if args.runs == 2 else f" --runs {args.runs}"
    print(f"Command: `.venv/bin/python benchmarks/perf.py{extra}` (or `make bench`)")


if __name__ == "__main__":
    main()
