"""Per-model SearchSettings, tuned on SQuAD only (never on the article set, which stays a held-out check).

The defaults were tuned for all-MiniLM-L6-v2. multilingual-e5-small-q4's cosines sit high for everything
(0.6-0.9), so its confidence never falls below the shipped ``abstain_threshold`` 0.4 (docs/models.md).
This script measures, per model, on benchmarks/quality.py's SQuAD indexes:

- a grid (coordinate descent) over the ranking weights: each point is one pass of ``Engine.ask`` over the
  2,910 SQuAD questions on "squad-all" (recall@1/@5, answer hit) and over the 8/8 split on "squad-half"
  (in-corpus vs out-of-corpus confidences, for abstention at 5% false);
- ``coverage_weight`` for free at every point: it only enters the confidence, which is
  (1 - w) x similarity + w x coverage, so both parts are recorded once per question and mixed afterwards;
- the shipped thresholds: ``abstain_threshold`` is the confidence below which the same share of SQuAD
  in-corpus questions falls as MiniLM's does below its shipped 0.4 (``tentative_below`` likewise at 0.55).
  Asks run with both thresholds at 0, so an answer is always written and abstaining is applied afterwards.

Question vectors are memoised per model (MemoEmbedder), so each question is embedded once for all points.

    taskset -c 1 env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.tune \\
        --model all-MiniLM-L6-v2          # first: the reference shares
    ... -m benchmarks.tune --model multilingual-e5-small-q4
    ... -m benchmarks.tune --model multilingual-e5-small-q4 --build-only   # just the indexes
    ... -m benchmarks.tune --article --model multilingual-e5-small-q4 --set dense_weight=0.3 ...

Outputs go under --out (default /tmp/tune): <model>.md (tables), <model>.json (chosen settings),
runs/<model>/<point>.npz (per-question results, reused on a rerun).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.embed.models import DEFAULT_MODEL, Embedder, get_embedder, query_encoder
from index.engine import Engine
from index.ingest.chunking import ChunkSettings
from index.search.retrieval import SearchSettings

from . import quality
from .common import (
    SQUAD,
    SQUAD_IN_CORPUS,
    Question,
    Row,
    contains_answer,
    map_gold,
    md_row,
    md_table,
    percentile,
    source_is_gold,
    squad_doc_id,
    squad_questions,
)

log = logging.getLogger("tune")

REFERENCE = DEFAULT_MODEL  # the model whose shipped thresholds define the abstention shares
SHIPPED = SearchSettings()
RANKING_GRID: dict[str, tuple[float, ...]] = {  # coordinate descent, in this order
    "dense_weight": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),  # e5's cosines are compressed: dense may need more weight
    "sentence_weight": (0.3, 0.5, 0.7),
    "sentence_lexical_weight": (0.0, 0.1, 0.2, 0.4, 0.6, 0.8),
    "answer_type_weight": (0.0, 0.1, 0.2),
}
COVERAGE_WEIGHTS = (0.0, 0.15, 0.25, 0.35, 0.5, 0.65, 0.8)
PERCENTILES = (1, 2, 5)
HIT_TOL = 0.002  # answer hits this close (6 of 2,910 questions) are a tie: the better abstention wins


class MemoEmbedder(Embedder):
    """The model, with questions embedded once per text: every grid point asks the same questions.

    Passages go to the wrapped model unchanged. ``Retriever.query`` embeds questions through
    ``query_encoder``, which finds ``encode_queries`` here; for a model without one (MiniLM) this calls its
    ``encode``, as ``query_encoder`` would have.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.multilingual = inner.multilingual  # the engine reads it (no "ask in English")
        self._encode_queries = query_encoder(inner)
        self._memo: dict[str, np.ndarray] = {}
        self.misses = 0

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self.inner.encode(texts, batch_size=batch_size, progress=progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        for t in texts:
            if t not in self._memo:
                self.misses += 1
                self._memo[t] = self._encode_queries([t])[0]  # one at a time, as Engine.ask embeds it
        return np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


@dataclass
class SquadSet:
    """The SQuAD indexes and questions, as benchmarks/quality.py's SQuAD row uses them."""

    all_index: object
    half_index: object
    questions: list[Question]  # every answerable question, gold spans mapped into squad-all
    ins: list[Question]  # asked on squad-half: their article is indexed
    outs: list[Question]  # asked on squad-half: their article is not


def load_squad(squad: Path, cache: Path, model: str) -> SquadSet:
    """Build (first time: e5 takes ~18 min on one core) or load the indexes through quality.prepare_squad."""
    articles, idx = quality.prepare_squad(squad, cache, ChunkSettings(), model)
    qs = squad_questions(articles, range(len(articles)))
    failed = map_gold(idx["squad-all"], articles, qs)
    if failed:
        log.warning("%d questions' answers not located in the cleaned text: they count as misses", failed)
    in_docs = {squad_doc_id(i, articles[i]) for i in range(SQUAD_IN_CORPUS)}
    return SquadSet(idx["squad-all"], idx["squad-half"], qs, [q for q in qs if q.doc_id in in_docs],
                    [q for q in qs if q.doc_id not in in_docs])


@dataclass
class Run:
    """Per-question results of one ranking point; confidence parts let any coverage_weight be mixed in."""

    rank: np.ndarray  # squad-all: 1-based rank of the first gold source in the top 5, 0 = none
    hit: np.ndarray  # squad-all: a gold answer string is in the short answer (never abstaining)
    sim_all: np.ndarray  # squad-all: the similarity and coverage parts of the confidence
    cov_all: np.ndarray
    sim_in: np.ndarray  # squad-half, in-corpus questions
    cov_in: np.ndarray
    sim_out: np.ndarray  # squad-half, out-of-corpus questions
    cov_out: np.ndarray

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path) -> Run:
        with np.load(path) as z:
            return cls(**{f.name: z[f.name] for f in dataclasses.fields(cls)})


def _recording(engine: Engine) -> list[tuple[float, float]]:
    """Make ``engine`` record each answer's confidence as (similarity part, coverage part).

    Both come from Retriever.confidence itself, on copies whose coverage_weight is 0 and 1, so the
    formula is not restated here; the engine's own confidence is unchanged. The class's method is called,
    not the instance's: a copy would carry a recorder installed earlier on the same engine.
    """
    r = engine.retriever
    method = type(r).confidence
    parts: list[tuple[float, float]] = []
    sim_only, cov_only = copy.copy(r), copy.copy(r)
    sim_only.settings = dataclasses.replace(r.settings, coverage_weight=0.0)
    cov_only.settings = dataclasses.replace(r.settings, coverage_weight=1.0)

    def confidence(cand, q_terms, mode="hybrid"):  # noqa: ANN001, ANN202 - Retriever.confidence's signature
        parts.append((method(sim_only, cand, q_terms, mode), method(cov_only, cand, q_terms, mode)))
        return method(r, cand, q_terms, mode)

    r.confidence = confidence  # type: ignore[method-assign]
    return parts


def _ask_all(engine: Engine, questions: list[Question]) -> tuple[list, np.ndarray, np.ndarray]:
    """Answers and confidence parts; checks the parts mix back into the engine's own confidence."""
    parts = _recording(engine)
    answers = [engine.ask(q.text) for q in questions]
    sim, cov = np.array([p[0] for p in parts]), np.array([p[1] for p in parts])
    w = engine.settings.coverage_weight
    mixed = (1 - w) * sim + w * cov
    assert np.allclose(mixed, [a.confidence for a in answers], atol=1e-9), "confidence is no longer linear in w"
    assert len(sim) < 2 or np.any(sim != cov), "the parts were not recorded apart"
    return answers, sim, cov


def run_point(data: SquadSet, embedder: MemoEmbedder, settings: SearchSettings) -> Run:
    """One ranking point: every question asked once on squad-all and once on squad-half, never abstaining."""
    s = dataclasses.replace(settings, top_k=max(5, settings.top_k), abstain_threshold=0.0, tentative_below=0.0)
    eng = Engine(data.all_index, embedder, s)
    answers, sim_all, cov_all = _ask_all(eng, data.questions)
    rank = [next((k + 1 for k, src in enumerate(a.sources[:5]) if source_is_gold(eng, src, q)), 0)
            for a, q in zip(answers, data.questions)]
    hit = [contains_answer(a.answer, q.answers) for a, q in zip(answers, data.questions)]
    half = Engine(data.half_index, embedder, s)
    _, sim_in, cov_in = _ask_all(half, data.ins)
    _, sim_out, cov_out = _ask_all(half, data.outs)
    return Run(np.array(rank), np.array(hit), sim_all, cov_all, sim_in, cov_in, sim_out, cov_out)


@dataclass
class Scores:
    """One (ranking point, coverage_weight): the figures the choice is made on."""

    recall1: float
    recall5: float
    hit_open: float  # answer hit never abstaining
    abstain5: float  # out-of-corpus abstained at 5% false abstention (quality.Row.abstention)
    t5: float  # the threshold at that point
    pct: dict[int, float]  # in-corpus confidence percentiles (p5 = t5)
    abstain_t: float  # the shipped threshold: MiniLM's in-corpus share below 0.4
    tentative_t: float  # and below 0.55
    hit: float  # answer hit at abstain_t (abstaining is a miss), as quality.py counts it
    out_abstained: float  # out-of-corpus abstained at abstain_t
    all_abstained: float  # squad-all answerable questions abstained at abstain_t


def score(run: Run, w: float, shares: tuple[float, float]) -> Scores:
    """The figures at coverage_weight ``w``, with thresholds matched to the reference ``shares``."""
    conf_all = (1 - w) * run.sim_all + w * run.cov_all
    conf_in = (1 - w) * run.sim_in + w * run.cov_in
    conf_out = (1 - w) * run.sim_out + w * run.cov_out
    row = Row("herald", in_scores=list(conf_in), out_scores=list(conf_out))
    ab5, t5 = row.abstention(0.05)
    t_ab, t_tent = (float(np.quantile(conf_in, share)) for share in shares)
    return Scores(float(np.mean(run.rank == 1)), float(np.mean(run.rank > 0)),
                  float(run.hit.mean()), ab5, t5, {p: percentile(conf_in, p) for p in PERCENTILES},
                  t_ab, t_tent, float(np.mean(run.hit & (conf_all >= t_ab))), float(np.mean(conf_out < t_ab)),
                  float(np.mean(conf_all < t_ab)))


def shipped_shares(run: Run, settings: SearchSettings) -> tuple[float, float]:
    """Shares of in-corpus SQuAD questions below the shipped abstain_threshold and tentative_below."""
    w = settings.coverage_weight
    conf_in = (1 - w) * run.sim_in + w * run.cov_in
    return float(np.mean(conf_in < settings.abstain_threshold)), float(np.mean(conf_in < settings.tentative_below))


def point_key(settings: SearchSettings) -> str:
    """A ranking point's file name: its RANKING_GRID values (coverage_weight is not a point)."""
    return "_".join(f"{k[:3]}{getattr(settings, k):g}" for k in RANKING_GRID)


class Tuner:
    """Runs (or reloads) ranking points for one model and keeps every result for the table."""

    def __init__(self, data: SquadSet, embedder: MemoEmbedder, runs: Path) -> None:
        self.data, self.embedder, self.runs = data, embedder, runs
        self.done: dict[str, tuple[SearchSettings, Run]] = {}

    def run(self, settings: SearchSettings) -> Run:
        key = point_key(settings)
        if key not in self.done:
            path = self.runs / f"{key}.npz"
            if path.exists():
                run = Run.load(path)
            else:
                started = time.perf_counter()
                run = run_point(self.data, self.embedder, settings)
                run.save(path)
                log.info("%s: %.0f s (%d questions embedded so far)", key, time.perf_counter() - started,
                         self.embedder.misses)
            self.done[key] = (settings, run)
        return self.done[key][1]

    def best_w(self, settings: SearchSettings, shares: tuple[float, float], floor: float) -> tuple[float, Scores]:
        """The coverage_weight with the best abstention among those within HIT_TOL of the best answer hit at
        the shipped threshold and with abstention >= floor (when none reaches the floor: the best abstention)."""
        run = self.run(settings)
        cands = [(w, score(run, w, shares)) for w in COVERAGE_WEIGHTS]
        ok = [c for c in cands if c[1].abstain5 >= floor - 1e-12]
        if not ok:
            return max(cands, key=lambda c: c[1].abstain5)
        top = max(c[1].hit for c in ok)
        return max((c for c in ok if c[1].hit >= top - HIT_TOL), key=lambda c: (c[1].abstain5, c[1].hit))

    def descend(self, start: SearchSettings, shares: tuple[float, float], floor: float,
                passes: int) -> tuple[SearchSettings, float]:
        """Coordinate descent over RANKING_GRID (coverage_weight chosen at each point)."""
        best = start
        best_w, best_s = self.best_w(best, shares, floor)
        for _ in range(passes):
            moved = False
            for knob, values in RANKING_GRID.items():
                for v in values:
                    trial = dataclasses.replace(best, **{knob: v})
                    w, s = self.best_w(trial, shares, floor)
                    if s.abstain5 >= floor - 1e-12 and s.hit > best_s.hit + 1e-9:
                        best, best_w, best_s, moved = trial, w, s, True
                log.info("after %s: %s w=%.2f hit %.4f abstain5 %.3f", knob, point_key(best), best_w,
                         best_s.hit, best_s.abstain5)
            if not moved:
                break
        return best, best_w


def _row(settings: SearchSettings, w: float, s: Scores, bold: bool = False) -> str:
    cells = [f"{getattr(settings, k):g}" for k in RANKING_GRID] + [f"{w:g}"] + [
        f"{x:.3f}" for x in (s.recall1, s.recall5, s.hit_open, s.abstain5, *s.pct.values(), s.abstain_t,
                             s.tentative_t, s.hit, s.out_abstained, s.all_abstained)]
    return md_row(f"**{c}**" if bold else c for c in cells)


TABLE_HEAD = ["dense", "sentence", "sent. lexical", "answer type", "coverage", "recall@1", "recall@5",
              "hit (never abstaining)", "abstain @5% false", *(f"p{p} in" for p in PERCENTILES), "abstain_t",
              "tentative_t", "hit @abstain_t", "out abstained @abstain_t", "all-q abstained @abstain_t"]


def table(tuner: Tuner, shares: tuple[float, float], floor: float, chosen: tuple[str, float]) -> str:
    """Every ranking point at its best coverage_weight, then the chosen point at every coverage_weight."""
    points = []
    for key, (settings, _) in tuner.done.items():
        w, s = tuner.best_w(settings, shares, floor)
        points.append(_row(settings, w, s, (key, w) == chosen))
    settings, run = tuner.done[chosen[0]]
    sweep = [_row(settings, w, score(run, w, shares), w == chosen[1]) for w in COVERAGE_WEIGHTS]
    head = md_table(TABLE_HEAD, [], align="r" * len(TABLE_HEAD))  # header and rule; _row writes the rows
    return ("Every ranking point, at its best coverage_weight:\n\n" + "\n".join([head, *points])
            + "\n\nThe chosen ranking point at every coverage_weight:\n\n" + "\n".join([head, *sweep]))


def article(argv: list[str], out: Path) -> None:
    """`python -m benchmarks.quality --article` once, as is, plus what its table leaves out: how many questions
    abstain at the settings' own abstain_threshold (read from the confidences it measured)."""
    captured: dict = {}
    own_table = quality.table

    def keep(results, counts):  # noqa: ANN001, ANN202 - quality.table's signature
        captured.update(results)
        return own_table(results, counts)

    quality.table = keep
    quality.main(argv)
    settings = SearchSettings()
    for key, value in (a.split("=", 1) for prev, a in zip(argv, argv[1:]) if prev == "--set"):
        settings = dataclasses.replace(settings, **{key: type(getattr(settings, key))(value)})
    row = captured["article"]["herald"]
    ins, outs = np.array(row.in_scores), np.array(row.out_scores)
    t, tent = settings.abstain_threshold, settings.tentative_below
    text = (f"at abstain_threshold {t:g}: answerable abstained {int((ins < t).sum())}/{len(ins)}, off-topic "
            f"abstained {int((outs < t).sum())}/{len(outs)}; answered but tentative (below {tent:g}): "
            f"{int(((ins >= t) & (ins < tent)).sum())} answerable, "
            f"{int(((outs >= t) & (outs < tent)).sum())} off-topic")
    print(text)
    (out / "article-counts.txt").write_text(text + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--squad", type=Path, default=SQUAD)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/tune/cache"), help="indexes under <cache>/<model>")
    ap.add_argument("--out", type=Path, default=Path("/tmp/tune"))
    ap.add_argument("--build-only", action="store_true", help="build the SQuAD indexes and stop")
    ap.add_argument("--passes", type=int, default=1, help="coordinate-descent passes")
    ap.add_argument("--every", type=int, default=1, help="take every Nth question (a quick look, not a result)")
    ap.add_argument("--article", action="store_true",
                    help="report only: the rest of the arguments go to quality.py --article")
    args, rest = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    for noisy in ("faiss", "sentence_transformers", "index", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.article:
        article(["--article", "--model", args.model, "--cache", str(args.out / f"article-{args.model}"),
                 "--out", str(args.out / f"article-{args.model}.md"),
                 "--plot", str(args.out / f"article-{args.model}.png"), *rest], args.out)
        return 0
    if rest:
        ap.error(f"unrecognised arguments: {' '.join(rest)}")
    started = time.perf_counter()
    data = load_squad(args.squad, args.cache / args.model, args.model)
    if args.every > 1:
        data = dataclasses.replace(data, **{k: getattr(data, k)[::args.every] for k in ("questions", "ins", "outs")})
    log.info("indexes ready in %.0f s", time.perf_counter() - started)
    if args.build_only:
        return 0
    tuner = Tuner(data, MemoEmbedder(get_embedder(args.model)), args.out / "runs" / args.model
                  / ("all" if args.every == 1 else f"every{args.every}"))
    base = tuner.run(SHIPPED)
    if args.model == REFERENCE:
        shares = shipped_shares(base, SHIPPED)
    else:
        ref = args.out / f"{REFERENCE}.json"
        if not ref.exists():
            ap.error(f"run --model {REFERENCE} first: its shares at the shipped thresholds come from {ref}")
        shares = tuple(json.loads(ref.read_text(encoding="utf-8"))["shares"])
    floor = score(base, SHIPPED.coverage_weight, shares).abstain5
    best, w = tuner.descend(SHIPPED, shares, floor, args.passes)
    s = score(tuner.run(best), w, shares)
    chosen = dataclasses.replace(best, coverage_weight=w, abstain_threshold=round(s.abstain_t, 3),
                                 tentative_below=round(max(s.tentative_t, s.abstain_t), 3))
    # quality.py applies --set in order and checks each step: raise tentative_below before abstain_threshold
    order = sorted(dataclasses.fields(chosen), key=lambda f: f.name != "tentative_below")
    changed = {f.name: getattr(chosen, f.name) for f in order if getattr(chosen, f.name) != f.default}
    md = (f"# {args.model}: SearchSettings on SQuAD\n\nReference shares (in-corpus SQuAD questions below "
          f"{REFERENCE}'s shipped {SHIPPED.abstain_threshold} / {SHIPPED.tentative_below}): "
          f"{shares[0]:.4f} / {shares[1]:.4f}. Abstention floor (shipped weights, this model): {floor:.3f}. "
          f"Questions embedded: {tuner.embedder.misses}.\n\nChosen: {changed}\n\n"
          + table(tuner, shares, floor, (point_key(best), w)) + "\n")
    (args.out / f"{args.model}.md").write_text(md, encoding="utf-8")
    (args.out / f"{args.model}.json").write_text(json.dumps(
        {"model": args.model, "shares": shares, "floor": floor, "chosen": changed,
         "scores": dataclasses.asdict(s)}, indent=2), encoding="utf-8")
    print(md)
    print("quality.py overrides:", " ".join(f"--set {k}={v}" for k, v in changed.items()))
    log.info("done in %.0f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
