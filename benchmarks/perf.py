"""Performance of Herald on the article corpus: build, warm queries, cold `herald ask`, `--help`, memory;
warm answers with a CPU-bound process alongside; and, given ``--bbc``, a bulk `herald build` of BBC
articles against a bare sentence-transformers encode of the same texts.

    .venv/bin/python -m benchmarks.perf            # about 2 minutes on a laptop CPU
    .venv/bin/python -m benchmarks.perf --runs 3   # more cold-start runs, steadier medians
    .venv/bin/python -m benchmarks.perf --bbc ../shared/data/bbc-news   # + bulk build (~6 more minutes)

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

from .common import ARTICLE_QA, CORPUS, md_table, percentile, question_texts
from .common import ROOT as REPO


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


def warm_with_neighbour(engine, qs: list[str], rounds: int) -> dict[str, float]:
    """p50 of ``engine.ask`` idle, then with one CPU-bound process on the machine: under Herald's thread
    budget (one BLAS/OpenMP thread per answering worker), and with the pools at one thread per core."""
    from threadpoolctl import threadpool_limits

    from index import threads

    def p50() -> float:
        times = []
        for _ in range(rounds):
            for q in qs:
                t = time.perf_counter()
                engine.ask(q)
                times.append((time.perf_counter() - t) * 1000)
        return percentile(times, 50)

    threads.serving()
    out = {"idle": p50()}
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        out["budget"] = p50()
        with threadpool_limits(limits=threads.cores()):
            out["default"] = p50()
    finally:
        hog.kill()
        hog.wait()
        threads.serving()
    return out


def bbc_corpus(folder: Path, n: int, dest: Path) -> int:
    """The first ``n`` BBC articles (sorted by category and number) copied into ``dest``."""
    dest.mkdir(parents=True)
    files = sorted(folder.glob("*/*.txt"))[:n]
    for f in files:
        (dest / f"{f.parent.name}-{f.name}").write_bytes(f.read_bytes())
    return len(files)


def bulk_build(folder: Path, n: int, work: Path, env: dict[str, str], no_env: str, model: str) -> dict:
    """`herald build` (a real CLI process) on ``n`` BBC articles, then a bare sentence-transformers
    encode of exactly the texts that build embedded (chunks and sentences, read back from the index)."""
    import re as _re

    corpus, index_dir = work / "bbc", work / "bbc-index"
    articles = bbc_corpus(folder, n, corpus)
    wall, proc = run_cli(["--env-file", no_env, "build", "--corpus", str(corpus), "--index", str(index_dir),
                          "--model", model], work, env)
    m = _re.search(r"(\d+) texts embedded in ([\d.]+) s", proc.stdout)
    if not m:
        raise SystemExit(f"could not read the build's report:\n{proc.stdout}")
    # The build embeds each distinct text once; the index holds a vector for every chunk and sentence.
    docs = {}
    for line in (index_dir / "documents.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        docs[d["id"]] = d
    texts = [json.loads(line)["text"] for line in (index_dir / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    texts += [d["text"][a:b] for d in docs.values() for a, b in d["sentences"]]
    if len(set(texts)) != int(m.group(1)):
        raise SystemExit(f"the build embedded {m.group(1)} texts, the index holds {len(set(texts))} distinct ones")
    code = ("import json,sys,time,os; os.environ['HF_HUB_OFFLINE']='1'\n"
            "from sentence_transformers import SentenceTransformer\n"
            "from index.embed import resolve_model_path\n"
            "texts=json.load(open(sys.argv[1])); m=SentenceTransformer(resolve_model_path(sys.argv[2]), device='cpu')\n"
            "m.encode(['warm-up']); t=time.perf_counter()\n"
            "m.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)\n"
            "print(time.perf_counter()-t)\n")
    def bare(batch: list[str]) -> float:
        (work / "texts.json").write_text(json.dumps(batch), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-c", code, str(work / "texts.json"), model], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise SystemExit(f"bare encode failed:\n{proc.stderr}")
        return float(proc.stdout.strip().splitlines()[-1])

    return {"articles": articles, "texts": len(texts), "distinct": len(set(texts)), "build_s": float(m.group(2)),
            "wall_s": wall, "bare_s": bare(texts), "bare_distinct_s": bare(list(dict.fromkeys(texts)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--questions", type=Path, default=ARTICLE_QA)
    parser.add_argument("--model", default=None, help="embedding model (default: Herald's default)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each cold `herald ask` (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the questions for warm latency")
    parser.add_argument("--bbc", type=Path, default=None, help="BBC News folder: also measure a bulk build")
    parser.add_argument("--bbc-articles", type=int, default=300, help="articles of --bbc to build (default 300)")
    args = parser.parse_args()

    from index.build import build_index
    from index.embed.models import DEFAULT_MODEL, get_embedder
    from index.engine import Engine
    from index.search.retrieval import SearchSettings
    from index.store import load_index

    model = args.model or DEFAULT_MODEL
    load_before = os.getloadavg()[0]
    qs = question_texts(args.questions)
    work = Path(tempfile.mkdtemp(prefix="herald-perf-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_") and k != "DISCORD_TOKEN"}
    no_env = str(work / "empty.env")
    Path(no_env).write_text("", encoding="utf-8")
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

        # ---- a busy machine: the same warm answers with one CPU-bound process alongside, under Herald's
        # thread budget and (the defect it fixes) under the libraries' default of one thread per core.
        busy = warm_with_neighbour(engine, qs, args.rounds)

        # ---- bulk: why builds over 8k tokens go to torch, and how closely the two paths agree
        bulk = None
        from index.embed.models import BertEmbedder, SentenceTransformerEmbedder

        if isinstance(embedder, BertEmbedder):
            texts = [c.text for c in engine.index.chunks] * 16
            t = time.perf_counter()
            via_numpy = embedder._numpy.encode(texts)
            numpy_s = time.perf_counter() - t
            from index import threads

            with threads.build_threads(0):  # as a build runs it
                torch_path = embedder._bulk_model()
                torch_path.encode(["warm-up"])
                t = time.perf_counter()
                via_torch = torch_path.encode(texts)
                torch_s = time.perf_counter() - t
                st = SentenceTransformerEmbedder(model)
                st.encode(["warm-up"])
                t = time.perf_counter()
                via_st = st.encode(texts)
                st_s = time.perf_counter() - t
            bulk = (len(texts), numpy_s, torch_s, st_s,
                    float(max(abs(via_numpy - via_st).max(), abs(via_torch - via_st).max())))

        bbc = bulk_build(args.bbc, args.bbc_articles, work, env, no_env, model) if args.bbc else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = len(ask_ms)
    rows = [
        ("Corpus", f"{report.documents} article(s), {report.chunks} chunks, "
                   f"{report.embedded_texts} texts embedded (chunks + sentences)"),
        ("Model load (in process)", f"{load_s:.1f} s"),
        ("Build, first (chunk + embed + write)", f"{build_s:.2f} s"),
        ("Build again, nothing changed", f"{rebuild_s:.2f} s"),
        (f"Warm answer `Engine.ask`, p50 / p95 ({n} asks)",
         f"{percentile(ask_ms, 50):.1f} / {percentile(ask_ms, 95):.1f} ms"),
        ("Query embedding alone (the floor), p50 / p95",
         f"{percentile(embed_ms, 50):.1f} / {percentile(embed_ms, 95):.1f} ms"),
        (f"`herald ask` cold, no index yet (builds it), median of {args.runs}",
         f"{statistics.median(fresh_s):.1f} s"),
        (f"`herald ask` cold, index exists, median of {args.runs}", f"{statistics.median(existing_s):.1f} s"),
        ("`herald --help`, median of 5", f"{statistics.median(help_s) * 1000:.0f} ms"),
        ("Peak RSS, `herald ask` process", f"{child_rss_mb:.0f} MB"),
        ("Peak RSS, this benchmark (model + index + queries)", f"{self_rss_mb:.0f} MB"),
    ]
    rows.append(("Warm answer p50, one CPU-bound process alongside (Herald's thread budget)",
                 f"{busy['budget']:.1f} ms ({busy['budget'] / busy['idle']:.1f}x idle {busy['idle']:.1f} ms)"))
    rows.append(("... the same with BLAS/OpenMP at their default, one thread per core",
                 f"{busy['default']:.1f} ms ({busy['default'] / busy['idle']:.1f}x idle)"))
    if bbc is not None:
        rows.append((f"`herald build` of {bbc['articles']} BBC files: vectors for {bbc['texts']} chunk and sentence "
                     f"texts ({bbc['distinct']} distinct, each embedded once)",
                     f"{bbc['build_s']:.1f} s in the build, with the model load ({bbc['wall_s']:.1f} s wall)"))
        rows.append(("Bare sentence-transformers `encode` of the same texts, model loaded: all / distinct only",
                     f"{bbc['bare_s']:.1f} s / {bbc['bare_distinct_s']:.1f} s; build throughput / bare = "
                     f"{bbc['bare_s'] / bbc['build_s']:.2f} / {bbc['bare_distinct_s'] / bbc['build_s']:.2f}"))
    if bulk is not None:
        rows.append((f"Bulk embedding of {bulk[0]} chunk texts: NumPy / Herald's torch path / sentence-transformers",
                     f"{bulk[1]:.1f} s / {bulk[2]:.1f} s / {bulk[3]:.1f} s"))
        rows.append(("Largest difference from sentence-transformers' vector components (NumPy, torch path)",
                     f"{bulk[4]:.1e}"))
    import torch

    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} " \
          f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    print(md_table([f"Measure ({model})", "Value"], rows, align="ll", tight=True))
    print()
    load_after = os.getloadavg()[0]
    print(f"Machine: {cpu}; load average {load_before:.1f} at start, {load_after:.1f} at end. "
          f"Cold = a new process (OS file cache warm).")
    if max(load_before, load_after) > (os.cpu_count() or 1) * 0.75:
        print("Warning: the machine was busy with other work; latencies are inflated. Re-run on a quiet machine.")
    extra = ("" if args.runs == 2 else f" --runs {args.runs}") + (f" --bbc {args.bbc}" if args.bbc else "") + \
        (f" --bbc-articles {args.bbc_articles}" if args.bbc and args.bbc_articles != 300 else "")
    print(f"Command: `.venv/bin/python -m benchmarks.perf{extra}` (or `make bench`)")


if __name__ == "__main__":
    main()
