"""What one update of the folder index costs as the corpus grows (issue 19): the BBC corpus, copied
``--copies`` times (each copy a distinct article: one sentence added), built once; then one new article is
added and the update timed, step by step.

    .venv/bin/python -m benchmarks.update_cost --bbc ../shared/data/bbc-news --copies 1
    .venv/bin/python -m benchmarks.update_cost --bbc ../shared/data/bbc-news --copies 10 --cheap

"open before" and "open after" load the index (every file checked, as a serving process opens it) before and
after the update: an update written as a delta segment is assembled with the base at load.

``--cheap`` embeds with a hash of each text instead of the model (a one-hot as wide as the default model's
vectors, so the files are as large), so what is timed is the index's own work (reading, planning,
writing), not the model's: the first build of 10 copies with the model would take hours on one core. With
the model, the new article's embedding is part of it.
Prints a Markdown table with the command and the machine state; ``--out`` writes JSON. To compare with an
older checkout, copy this file into its ``benchmarks/`` and run it there (steps it lacks show 0.00).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from index.embed.base import Embedder

from .common import md_table

NEW_ARTICLE = ("Harbour bridge reopens after repairs\n\nThe Valmouth harbour bridge reopened on Tuesday after "
               "eighteen months of repairs. Engineers replaced forty steel cables, the port authority said.\n")


class CheapEmbedder(Embedder):
    """A one-hot of each text's hash: no model, so only the index's own work is timed."""

    name, dim = "cheap-hash", 384

    def encode(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            out[i, int(hashlib.blake2b(t.encode("utf-8"), digest_size=4).hexdigest(), 16) % self.dim] = 1.0
        return out


def write_corpus(bbc: Path, corpus: Path, copies: int) -> int:
    """BBC articles ``copies`` times (copy k under copy-k/, its text ending in a sentence naming k)."""
    n = 0
    files = sorted(f for f in Path(bbc).rglob("*.txt"))
    for k in range(copies):
        for f in files:
            dst = corpus / f"copy-{k}" / f.parent.name / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            raw = f.read_bytes()
            dst.write_bytes(raw if k == 0 else raw + f"\n\nThis is copy number {k} of the story.\n".encode())
            n += 1
    return n


STEPS = (("index.build", "_previous", "load previous"), ("index.build", "_read", "read"),
         ("index.build", "_plan", "plan"), ("index.build", "_embed_new", "embed"),
         ("index.store.writer", "FolderWriter._store", "vectors"),
         ("index.store.writer", "FolderWriter._records", "records"), ("index.store.writer", "write_index", "write"),
         ("index.store.writer", "DeltaWriter._segment", "records"), ("index.store.writer", "write_folder", "write"))


def timed_update(corpus: Path, index_dir: Path, embedder: Embedder) -> dict[str, float]:
    """One update adding NEW_ARTICLE, timed in total and in its steps (the build's own functions wrapped)."""
    import importlib

    import index.build as build

    steps: dict[str, float] = {}

    def timing(name: str, func: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                steps[name] = steps.get(name, 0.0) + time.perf_counter() - t
        return wrapped

    patched = []
    for module_name, attr, label in STEPS:
        try:  # an older checkout lacks some steps (this file copied into it to compare): they stay untimed
            owner: Any = importlib.import_module(module_name)
            *path, leaf = attr.split(".")
            for part in path:
                owner = getattr(owner, part)
            func = getattr(owner, leaf)
        except (ImportError, AttributeError):
            continue
        patched.append((owner, leaf, func))
        setattr(owner, leaf, timing(label, func))
    try:
        (corpus / "new-article.txt").write_text(NEW_ARTICLE, encoding="utf-8")
        os.sync()  # the first build's writes are flushed before, not inside, the timed update
        t = time.perf_counter()
        report = build.build_index(corpus, index_dir, embedder)
        steps["total"] = time.perf_counter() - t
    finally:
        for owner, leaf, func in patched:
            setattr(owner, leaf, func)
    assert report.added == ["new-article.txt"], report.added
    steps["chunks"] = report.chunks
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    steps["delta"] = float(bool(manifest.get("deltas")))  # 1: written as a delta segment (index/store/segments.py)
    return steps


def timed_open(index_dir: Path) -> float:
    """Seconds to load the index (every file checked), as a serving process opens it."""
    from index.store import load_index

    t = time.perf_counter()
    load_index(index_dir)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bbc", type=Path, required=True, help="the BBC News folder (one sub-folder per category)")
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--cheap", action="store_true", help="hash embedder instead of the model (see the doc)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/herald-update-cost"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.cheap:
        embedder: Embedder = CheapEmbedder()
    else:
        from index.embed.models import DEFAULT_MODEL, get_embedder

        embedder = get_embedder(DEFAULT_MODEL)
    work = args.work / f"{'cheap' if args.cheap else 'model'}-x{args.copies}"
    shutil.rmtree(work, ignore_errors=True)
    corpus, index_dir = work / "corpus", work / "index"
    files = write_corpus(args.bbc, corpus, args.copies)
    from index.build import build_index

    t = time.perf_counter()
    first = build_index(corpus, index_dir, embedder)
    first_s = time.perf_counter() - t
    open_before = timed_open(index_dir)
    steps = timed_update(corpus, index_dir, embedder)
    steps["open before"], steps["open after"] = open_before, timed_open(index_dir)
    load = os.getloadavg()[0]
    labels = [*dict.fromkeys(label for _, _, label in STEPS), "open before", "open after"]
    rows = [[f"{files:,} files, {first.chunks:,} chunks", f"{first_s:.1f}", f"{steps['total']:.2f}",
             "delta" if steps.get("delta") else "whole", *(f"{steps.get(label, 0.0):.2f}" for label in labels)]]
    print(md_table(["corpus", "first build s", "update s", "written", *labels], rows))
    print(f"\n`python -m benchmarks.update_cost --bbc {args.bbc} --copies {args.copies}"
          f"{' --cheap' if args.cheap else ''}`; {os.cpu_count()} cores, load {load:.2f}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    if args.out:
        args.out.write_text(json.dumps({"files": files, "first_build_s": first_s, "steps": steps,
                                        "copies": args.copies, "cheap": args.cheap, "load": load}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
