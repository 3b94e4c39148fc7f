"""One embedding model, as a user meets it: load, build the article index, answer its questions, memory.

Run once per model, each in a fresh process (peak RSS is the process's own), e.g.:

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python -m benchmarks.models --model all-MiniLM-L6-v2
    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python -m benchmarks.models --model multilingual-e5-small-q4

Prints one JSON object: seconds to import Herald and load the model, to build the article index (in a
temporary folder, so from scratch) and to answer the first question; then, warm, the p50 and p90 of
``Engine.ask`` and of embedding the question alone over the question set (each question once after one
untimed pass), and the peak resident memory (ru_maxrss). Answering runs as the CLI and the bot run it:
``open_engine``, one thread per question (index/threads.py). docs/models.md has the results.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "corpus"  # benchmarks.common has it too, but is imported
ARTICLE_QA = CORPUS.parent / "tests" / "data" / "article_qa.jsonl"  # after the clock starts (import time)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--questions", type=Path, default=ARTICLE_QA)
    args = ap.parse_args(argv)

    started = time.perf_counter()
    from index import EngineConfig, open_engine
    from index.embed.models import get_embedder, query_encoder
    from index.threads import cores

    from .common import percentile, question_texts

    imported = time.perf_counter()
    embedder = get_embedder(args.model)
    loaded = time.perf_counter()
    questions = question_texts(args.questions)
    with tempfile.TemporaryDirectory(prefix="herald-models-") as tmp:
        corpus = Path(tmp) / "corpus"
        shutil.copytree(args.corpus, corpus)
        t0 = time.perf_counter()
        engine = open_engine(EngineConfig(corpus=corpus, index_dir=Path(tmp) / "index", model=args.model))
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        engine.ask(questions[0])
        first = time.perf_counter() - t0
        encode = query_encoder(embedder)
        for q in questions:  # warm-up pass, untimed
            engine.ask(q)
        ask_ms, embed_ms = [], []
        for q in questions:
            t0 = time.perf_counter()
            engine.ask(q)
            ask_ms.append(1000 * (time.perf_counter() - t0))
            t0 = time.perf_counter()
            encode([q])
            embed_ms.append(1000 * (time.perf_counter() - t0))
        chunks = len(engine.index.chunks)
    out = {
        "model": args.model, "dim": embedder.dim, "cores": cores(), "questions": len(questions), "chunks": chunks,
        "import_s": round(imported - started, 2), "load_s": round(loaded - imported, 2),
        "build_article_s": round(built, 2), "first_answer_s": round(first, 3),
        "ask_p50_ms": round(percentile(ask_ms, 50), 1), "ask_p90_ms": round(percentile(ask_ms, 90), 1),
        "embed_question_p50_ms": round(percentile(embed_ms, 50), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "torch_imported": "torch" in sys.modules,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
