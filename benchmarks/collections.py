"""Collections (issue 18, item 5): one shared index filtered at search time, or one index per collection
merged at question time, each against a reference index that holds only the articles in scope.

Not part of `make test`: it needs SQuAD from outside the repository, passed by path. Example:

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.collections \
        --squad ../shared/data/squad-dev-v2.0-half.json --out collections.json

SQuAD half's articles are split by article, in order, into four collections: ``base`` (the first
quarter, the operator's corpus), ``guild-1``, ``guild-2`` and ``guild-3``. A question in server g searches
``{base, g}``; for each g its questions are those of base's and g's articles. Systems, for each g:

- ``ref``: one index of only base's and g's articles, asked with no filter (what a single-collection index
  of those articles answers);
- ``shared``: ONE index of every article, each in its collection, asked with ``collections=("base", g)``
  (what the library ships: an exact filter at search time);
- ``separate``: one index per collection; the question is embedded once (the real query path, no cache
  across questions) and asked to base's index and to g's; merged at question time by ``merge``: the answer
  of the index whose answer is more confident (base's on a tie), with the sources of both listed best
  score first.

All three use ``Engine.ask`` with the settings Herald ships for the model, listing 5 sources (recall@5;
the answerer still reads ``top_k``). Latency is wall time around the whole call (for ``separate``: both
asks and the merge), the systems taking turns per question (round-robin, the first one rotating) so the
machine's load falls on all alike. Indexes are built with Herald's own ``build_index`` into ``--cache``
(incremental, so a rerun embeds nothing), through one embedder that embeds each distinct document text
once for all eight indexes. Exactness: for each question, every chunk of ``{base, g}`` that an unfiltered
``Engine.retrieve`` over the shared index ranks in its top 5 is in the filtered top 5.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from index import threads
from index.build import build_index
from index.embed.base import Embedder
from index.embed.models import DEFAULT_MODEL, get_embedder
from index.engine import Engine
from index.ingest.chunking import ChunkSettings
from index.ingest.collections import BASE, CollectionsSource, qualified
from index.ingest.sources import FolderSource
from index.search.retrieval import search_for
from index.store import load_index
from index.text import clean_question
from index.types import Answer, Source

from .common import (
    ROOT,
    Question,
    contains_answer,
    map_gold,
    md_table,
    percentile,
    squad_articles,
    squad_doc_id,
    squad_questions,
    write_squad,
)

log = logging.getLogger("collections")

COLLECTIONS = (BASE, "guild-1", "guild-2", "guild-3")
SYSTEMS = ("ref", "shared", "separate")
LISTED = 5  # sources listed per answer: recall@5
HIT_BAR = 0.005  # |answer hit - ref's| at most this
P50_BAR = 1.3  # p50 / ref's p50 at most this


# ------------------------------------------------------------------------------------- pure logic


def split_articles(n: int, names: Sequence[str] = COLLECTIONS) -> dict[str, range]:
    """Articles 0..n-1 split in order into ``len(names)`` runs as even as can be (16 -> 4 each)."""
    bounds = [round(i * n / len(names)) for i in range(len(names) + 1)]
    return {name: range(bounds[i], bounds[i + 1]) for i, name in enumerate(names)}


def merge(answers: Sequence[Answer], k: int = LISTED) -> Answer:
    """Separate indexes merged at question time: the most confident index's answer (the first on a tie),
    its sources replaced by every index's sources, best score first, ``k`` of them."""
    best = max(answers, key=lambda a: a.confidence)  # max keeps the first of equals
    sources = sorted((s for a in answers for s in a.sources), key=lambda s: -s.score)[:k]
    return dataclasses.replace(best, sources=sources)


def exact(unfiltered: Sequence[int], filtered: Sequence[int], allowed: Callable[[int], bool], k: int = 5) -> bool:
    """Every row an unfiltered search ranks in its top ``k`` that the filter allows is in the filtered top ``k``."""
    return {r for r in unfiltered[:k] if allowed(r)} <= set(filtered[:k])


def deeper(unfiltered: Sequence[tuple[int, float]], filtered: Sequence[tuple[int, float]],
           allowed: Callable[[int], bool], k: int = 5) -> bool:
    """A case ``exact`` fails that the re-scoring depth explains, not the filter: every in-scope chunk the
    filtered top ``k`` lost keeps its score there (to float32 precision: FAISS's filtered and unfiltered scans
    differ by ~1e-9), and every chunk that took its place was not among the
    unfiltered search's candidates at all (other collections' chunks had pushed it past the
    ``rescore_candidates`` that are re-scored). Lists are ``(row, score)``, best first, every candidate."""
    u, f = dict(unfiltered), dict(filtered)
    top_u, top_f = [r for r, _ in unfiltered[:k]], [r for r, _ in filtered[:k]]
    lost = [r for r in top_u if allowed(r) and r not in top_f]
    newcomers = [r for r in top_f if r not in top_u]
    return bool(lost) and all(r in f and abs(f[r] - u[r]) < 1e-6 for r in lost) and all(r not in u for r in newcomers)


def gold_rank(sources: Sequence[Source], q: Question, k: int = LISTED) -> int:
    """1-based rank of the first source whose chunk holds a gold answer span (0: none in the top ``k``)."""
    for rank, s in enumerate(sources[:k], 1):
        if s.doc_id == q.doc_id and any(s.start <= a and b <= s.end for a, b in q.gold_spans):
            return rank
    return 0


class TextCache(Embedder):
    """The real embedder behind a cache keyed by text, for builds: eight indexes of overlapping articles
    embed each distinct text once. Same name, dimension and weights, so each manifest is the one the real
    embedder writes and the engines open them with the real one. Documents only: questions are not cached."""

    def __init__(self, real: Embedder) -> None:
        self.real = real
        self.name, self.dim, self.weights, self.multilingual = real.name, real.dim, real.weights, real.multilingual
        self.cache: dict[str, np.ndarray] = {}
        self.embedded = 0  # distinct texts the real embedder embedded

    def _through(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, encode(missing)))
            self.embedded += len(missing)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.cache[t] for t in texts]).astype(np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._through(texts, lambda m: self.real.encode(m, batch_size=batch_size))

    def encode_all(self, texts: Sequence[str], progress: Callable[[int], None] | None = None,
                   batch_size: int = 64) -> np.ndarray:
        out = self._through(texts, lambda m: self.real.encode_all(m, batch_size=batch_size))
        if progress:
            progress(len(texts))
        return out


class QuestionOnce(Embedder):
    """The real embedder, keeping the current question's vector: the separate system's indexes share one
    query embedding per question (``forget`` before each question, so nothing is kept across questions)."""

    def __init__(self, real: Embedder) -> None:
        self.real = real
        self.name, self.dim, self.weights, self.multilingual = real.name, real.dim, real.weights, real.multilingual
        self._last: tuple[tuple[str, ...], np.ndarray] | None = None

    def forget(self) -> None:
        self._last = None

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self.real.encode(texts, batch_size=batch_size, progress=progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        key = tuple(texts)
        if self._last is None or self._last[0] != key:
            self._last = (key, self.real.encode_queries(texts))
        return self._last[1]


# -------------------------------------------------------------------------------------------- indexes


def index_sources(base: Path, root: Path) -> dict[str, CollectionsSource]:
    """What each index is built from: shared (all), ref-<g> (base + g), sep-<c> (one collection)."""
    whole = FolderSource(base)
    out = {"shared": CollectionsSource(whole, root)}
    for g in COLLECTIONS[1:]:
        out[f"ref-{g}"] = CollectionsSource(whole, root, only=(BASE, g))
    for c in COLLECTIONS:
        out[f"sep-{c}"] = CollectionsSource(whole, root, only=(c,))
    return out


def build_all(articles: list[dict], cache: Path, model: str, chunking: ChunkSettings) -> tuple[dict, int]:
    """Write the collections' corpora, build (or update) the eight indexes; returns their folders by name
    and how many distinct texts were embedded (0 on a rerun)."""
    split = split_articles(len(articles))
    base, root = cache / "corpora" / BASE, cache / "corpora" / "collections"
    write_squad(articles, base, split[BASE])
    for g in COLLECTIONS[1:]:
        write_squad(articles, root / g, split[g])
    embedder = TextCache(get_embedder(model))
    folders = {}
    tag = f"s{chunking.sentences}o{chunking.overlap}p{chunking.min_paragraph_chars}"
    for name, source in index_sources(base, root).items():  # shared first: the others hit the cache
        folders[name] = cache / "indexes" / tag / name
        started = time.perf_counter()
        report = build_index(source, folders[name], embedder, chunking)
        if report.embedded_texts:
            log.info("built %s: %d documents, %d chunks in %.0f s", name, report.documents, report.chunks,
                     time.perf_counter() - started)
    return folders, embedder.embedded


def open_engines(folders: dict[str, Path], model: str) -> dict[str, Engine]:
    """Every index as an Engine with the real embedder (the separate ones share one ``QuestionOnce``)."""
    real = get_embedder(model)
    once = QuestionOnce(real)
    settings = search_for(model)
    threads.serving()  # as open_engine does: one BLAS/torch thread per answering worker
    return {name: Engine(load_index(folder, model, real.dim, real.weights), once if name.startswith("sep-") else real,
                         settings) for name, folder in folders.items()}


# ------------------------------------------------------------------------------------------ questions


def questions_by_collection(articles: list[dict], shared: Engine) -> dict[str, list[Question]]:
    """Every answerable question, by its article's collection, with doc ids as the indexes know them and
    gold spans mapped into the cleaned text (a question whose span cannot be mapped counts as a miss)."""
    split = split_articles(len(articles))
    coll_of = {i: c for c, r in split.items() for i in r}
    qs = squad_questions(articles, range(len(articles)))
    docs = {squad_doc_id(i, a): shared.index.doc_by_id.get(qualified(coll_of[i], squad_doc_id(i, a)))
            for i, a in enumerate(articles)}
    failed = map_gold(SimpleNamespace(doc_by_id={k: d for k, d in docs.items() if d is not None}), articles, qs)
    if failed:
        log.warning("%d questions' answers could not be located in the cleaned text; they count as misses", failed)
    by_doc = {squad_doc_id(i, a): coll_of[i] for i, a in enumerate(articles)}
    out: dict[str, list[Question]] = {c: [] for c in COLLECTIONS}
    for q in qs:
        c = by_doc[q.doc_id]
        out[c].append(dataclasses.replace(q, doc_id=qualified(c, q.doc_id)))
    return out


# ------------------------------------------------------------------------------------------ measuring


@dataclasses.dataclass
class Tally:
    """One system's figures for one scope."""

    ranks: list[int] = dataclasses.field(default_factory=list)
    hits: list[bool] = dataclasses.field(default_factory=list)
    ms: list[float] = dataclasses.field(default_factory=list)
    answers: list[str] = dataclasses.field(default_factory=list)  # "" when it abstained

    def add(self, other: Tally) -> None:
        self.ranks += other.ranks
        self.hits += other.hits
        self.ms += other.ms
        self.answers += other.answers

    def figures(self) -> dict[str, float]:
        return {"questions": len(self.hits), "recall@5": float(np.mean([r > 0 for r in self.ranks])),
                "answer_hit": float(np.mean(self.hits)), "p50_ms": percentile(self.ms, 50),
                "p95_ms": percentile(self.ms, 95)}


def askers(engines: dict[str, Engine], g: str) -> dict[str, Callable[[str], Answer]]:
    """The three systems for a question in server ``g`` (scope ``{base, g}``)."""
    ref, shared = engines[f"ref-{g}"], engines["shared"]
    parts = (engines[f"sep-{BASE}"], engines[f"sep-{g}"])
    scope = (BASE, g)

    def separate(q: str) -> Answer:
        parts[0].embedder.forget()  # type: ignore[attr-defined]  # a QuestionOnce: a new question
        return merge([e.ask(q, list_sources=LISTED) for e in parts])

    return {"ref": lambda q: ref.ask(q, list_sources=LISTED),
            "shared": lambda q: shared.ask(q, list_sources=LISTED, collections=scope),
            "separate": separate}


def run_scope(engines: dict[str, Engine], g: str, questions: list[Question], warm: int = 5) -> dict[str, Tally]:
    """Every question in server ``g`` to the three systems in turn, the first one rotating per question."""
    ask = askers(engines, g)
    for q in questions[:warm]:  # warm up each system's first calls (not counted)
        for fn in ask.values():
            fn(q.text)
    out = {name: Tally() for name in SYSTEMS}
    for i, q in enumerate(questions):
        for name in SYSTEMS[i % 3:] + SYSTEMS[:i % 3]:
            started = time.perf_counter()
            ans = ask[name](q.text)
            out[name].ms.append((time.perf_counter() - started) * 1000)
            out[name].ranks.append(gold_rank(ans.sources, q))
            out[name].hits.append(not ans.abstained and contains_answer(ans.answer, q.answers))
            out[name].answers.append("" if ans.abstained else ans.answer)
    return out


def exactness(shared: Engine, g: str, questions: list[Question]) -> dict[str, int]:
    """Questions whose filtered top 5 keeps every in-scope chunk of the unfiltered top 5 (``exact``); of the
    others, those ``deeper`` explains; and those whose unfiltered top 5 held a chunk from outside the scope
    (where the filter had work to do)."""
    scope = {BASE, g}
    index = shared.index

    def allowed(row: int) -> bool:
        return index.doc_by_id[index.chunks[row].doc_id].collection in scope

    out = {"questions": len(questions), "exact": 0, "not_exact_by_rescoring_depth": 0,
           "outside_chunks_in_unfiltered_top5": 0}
    for q in questions:
        text = clean_question(q.text, shared.settings.max_question_chars)
        vec = shared.embedder.encode_queries([text])[0]
        everywhere = [(c.row, c.score) for c in shared.retrieve(text, vec, k=5)]
        within = [(c.row, c.score) for c in shared.retrieve(text, vec, k=5, collections=tuple(scope))]
        ok = exact([r for r, _ in everywhere], [r for r, _ in within], allowed)
        out["exact"] += ok
        out["not_exact_by_rescoring_depth"] += not ok and deeper(everywhere, within, allowed)
        out["outside_chunks_in_unfiltered_top5"] += not all(allowed(r) for r, _ in everywhere[:5])
    return out


# ---------------------------------------------------------------------------------------------- report


def bars(fig: dict[str, float], ref: dict[str, float]) -> dict[str, object]:
    """The issue's two bars for one system against ref's figures."""
    delta, ratio = fig["answer_hit"] - ref["answer_hit"], fig["p50_ms"] / ref["p50_ms"]
    return {"answer_hit_delta": delta, "p50_ratio": ratio, "answer_hit_met": abs(delta) <= HIT_BAR + 1e-12,
            "p50_met": ratio <= P50_BAR}


def table(results: dict[str, dict[str, dict]]) -> str:
    """One row per scope and system, ``all`` last (every scope's questions together)."""
    rows = []
    for scope, systems in results.items():
        for name, fig in systems.items():
            b = fig.get("bars")
            rows.append([scope, name, fig["questions"], f"{fig['recall@5']:.3f}", f"{fig['answer_hit']:.3f}",
                         f"{fig['same_answer_as_ref']:.3f}",
                         f"{b['answer_hit_delta']:+.3f} ({'met' if b['answer_hit_met'] else 'NOT met'})" if b else "-",
                         f"{fig['p50_ms']:.1f}", f"{fig['p95_ms']:.1f}",
                         f"{b['p50_ratio']:.2f}x ({'met' if b['p50_met'] else 'NOT met'})" if b else "-"])
    head = ["scope", "system", "questions", "recall@5", "answer hit", "same answer as ref",
            "Δ answer hit vs ref (bar ±0.005)", "p50 ms", "p95 ms", "p50 / ref (bar 1.3x)"]
    return md_table(head, rows, align="ll" + "r" * 8)


def machine(stage: str) -> dict[str, object]:
    return {"stage": stage, "cpu_count": os.cpu_count(), "cores_usable": threads.cores(),
            "machine": platform.machine(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "(unset)"),
            "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "when": time.strftime("%Y-%m-%d %H:%M:%S")}


def figures(tallies: dict[str, Tally]) -> dict[str, dict]:
    """Each system's figures, with the share of questions answered exactly as ref answered them."""
    out = {name: t.figures() for name, t in tallies.items()}
    for name, t in tallies.items():
        out[name]["same_answer_as_ref"] = float(np.mean([a == b for a, b in zip(t.answers, tallies["ref"].answers)]))
    return out


def measure(engines: dict[str, Engine], qs: dict[str, list[Question]], every: int) -> tuple[dict, dict]:
    """The table's figures per scope and pooled, and exactness per scope."""
    results: dict[str, dict[str, dict]] = {}
    pooled = {name: Tally() for name in SYSTEMS}
    exact_counts: dict[str, dict[str, int]] = {}
    for g in COLLECTIONS[1:]:
        asked = (qs[BASE] + qs[g])[::every]
        log.info("%s: %d questions (scope base + %s)", g, len(asked), g)
        tallies = run_scope(engines, g, asked)
        for name, t in tallies.items():
            pooled[name].add(t)
        results[f"base + {g}"] = figures(tallies)
        exact_counts[g] = exactness(engines["shared"], g, asked)
    results["all"] = figures(pooled)
    for systems in results.values():
        for name in ("shared", "separate"):
            systems[name]["bars"] = bars(systems[name], systems["ref"])
    return results, exact_counts


def report(run: dict) -> str:
    """The table, exactness, the command and the machine's state, as printed."""
    exact_line = "; ".join(f"{g}: {c['exact']}/{c['questions']} exact, {c['not_exact_by_rescoring_depth']} of the "
                           f"other {c['questions'] - c['exact']} explained by re-scoring depth "
                           f"({c['outside_chunks_in_unfiltered_top5']} with another collection's chunk in the "
                           f"unfiltered top 5)" for g, c in run["exactness"].items())
    lines = [table(run["results"]), "",
             f"Exactness (shared index: the filtered top 5 keeps every in-scope chunk of the unfiltered top 5): "
             f"{exact_line}", "", f"Command: {run['command']}"]
    for m in run["machine"]:
        lines.append(f"Machine at {m['stage']} ({m['when']}): {m['cpu_count']} cores ({m['machine']}, "
                     f"{m['cores_usable']} usable), OMP_NUM_THREADS={m['OMP_NUM_THREADS']}, "
                     f"load average (1/5/15 min) {m['loadavg_1_5_15']}")
    lines.append(f"Indexes built or checked in {run['build_seconds']:.0f} s ({run['texts_embedded']} distinct texts "
                 f"embedded); all done in {run['seconds']:.0f} s")
    return "\n".join(lines)


def command(argv: list[str] | None) -> str:
    given = argv if argv is not None else sys.argv[1:]
    omp = os.environ.get("OMP_NUM_THREADS", "(unset)")
    return (f"OMP_NUM_THREADS={omp} .venv/bin/python -m benchmarks.collections "
            + " ".join(os.path.relpath(a, ROOT) if a.startswith(str(ROOT.parent) + "/") else a for a in given))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--squad", type=Path, required=True, help="SQuAD v2.0 dev (half) JSON")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/herald-collections-cache"),
                    help="corpora and built indexes go here (a rerun embeds nothing)")
    ap.add_argument("--model", default=os.environ.get("HERALD_MODEL", DEFAULT_MODEL))
    ap.add_argument("--every", type=int, default=1, help="take every Nth question (quick iteration)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    for noisy in ("faiss", "sentence_transformers", "index", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    started = time.perf_counter()
    before = machine("start")
    articles = squad_articles(args.squad)
    folders, embedded = build_all(articles, args.cache, args.model, ChunkSettings())
    build_s = time.perf_counter() - started
    engines = open_engines(folders, args.model)
    qs = questions_by_collection(articles, engines["shared"])
    timed = machine("questions start")
    results, exact_counts = measure(engines, qs, max(1, args.every))
    run = {"command": command(argv), "model": args.model, "chunking": ChunkSettings().to_dict(),
           "machine": [before, timed, machine("end")], "texts_embedded": embedded, "build_seconds": round(build_s, 1),
           "split": {c: [articles[i]["title"] for i in r] for c, r in split_articles(len(articles)).items()},
           "indexes": {n: {"documents": len(e.index.documents), "chunks": len(e.index.chunks)}
                       for n, e in engines.items()},
           "merge_rule": " ".join((merge.__doc__ or "").split()),
           "bars": {"answer_hit_abs_delta": HIT_BAR, "p50_ratio": P50_BAR},
           "results": results, "exactness": exact_counts, "seconds": round(time.perf_counter() - started, 1)}
    print(report(run))
    if args.out:
        args.out.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
