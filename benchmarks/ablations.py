"""Ablations: retrieval and answering ideas measured against the defaults, on fixed question slices.

Not part of `make test` (SQuAD comes from outside the repository, by path). Every figure about a
variant that docs/quality.md quotes under "Measured and not adopted" comes from this script:

    .venv/bin/python -m benchmarks.ablations --squad ../shared/data/squad-dev-v2.0-half.json

SQuAD part: the 2,910 answerable questions cut into three disjoint slices (every third question, offsets
0, 1 and 2), so a variant's gain can be set against the spread between slices of the same system. Each
variant is an Engine with the default SearchSettings and one change; recall@1/@5 of the de-duplicated
sources and answer hit (a gold string in the short answer, abstention ignored) as in benchmarks/quality.py.

Article part (tests/data/article_qa.jsonl over corpus/): how often the sentence an answer needs is the
single best-scored sentence of the article, under the default sentence score and under alternatives.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from index.answer.units import document_units
from index.embed.models import DEFAULT_MODEL, SentenceTransformerEmbedder, get_embedder
from index.engine import Engine
from index.ingest.chunking import ChunkSettings
from index.search.retrieval import Retriever, SearchSettings, answer_type_of
from index.text import STOPWORDS, _stemmer, clean_question, content_terms

from .common import (
    ARTICLE_QA,
    CORPUS,
    SQUAD_IN_CORPUS,
    contains_answer,
    is_gold,
    map_gold,
    md_table,
    squad_doc_id,
    squad_questions,
)
from .quality import prepare_squad

log = logging.getLogger("ablations")


# ------------------------------------------------------------------------------------ SQuAD variants


class SentencePoolRetriever(Retriever):
    """A chunk's dense score mixed half and half with its best sentence's cosine (over every chunk)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        pairs = [(r, sid) for r, sids in enumerate(self.index.chunk_sentence_ids) for sid in sids]
        self._rows = np.array([p[0] for p in pairs], dtype=np.int64)
        self._sids = np.array([p[1] for p in pairs], dtype=np.int64)
        self._vectors = self.index.chunk_vectors()
        self.store = None  # no exact per-id scores: fusion uses the pooled list's own

    def pooled(self, q_vec: np.ndarray) -> np.ndarray:
        dense = self._vectors @ q_vec
        best = dense.copy()
        np.maximum.at(best, self._rows, (self.index.sentence_vectors @ q_vec)[self._sids])
        return 0.5 * dense + 0.5 * best

    def dense_hits(self, q_vec: np.ndarray, k: int) -> list[tuple[int, float]]:
        from index.search.lexical import top

        scores = self.pooled(q_vec)
        return [(int(r), float(scores[r])) for r in top(scores, k)]

    def _dense_of(self, q_vec: np.ndarray):
        scores = self.pooled(q_vec)
        return lambda rows: scores[rows]


def SentencePoolEngine(index, emb, settings) -> Engine:
    engine = Engine(index, emb, settings)
    engine.retriever = SentencePoolRetriever(index, emb, settings)
    return engine


def with_bm25(engine: Engine, k1: float = 1.2, b: float = 0.75, title: bool = True) -> Engine:
    """The engine with its BM25 index rebuilt (other k1/b, or without the document title it searches)."""
    import bm25s

    from index.search.retrieval import searched_title

    lexical = engine.retriever.lexical
    lexical._bm25 = bm25s.BM25(k1=k1, b=b)
    lexical._bm25.index([content_terms((searched_title(c) + " " if title else "") + c.text) or [""]
                        for c in engine.index.chunks], show_progress=False)
    return engine


def squad_variants(index, emb) -> dict[str, Engine]:
    s = SearchSettings(top_k=5)
    return {
        "default": Engine(index, emb, s),
        "BM25 k1=0.9 b=0.4": with_bm25(Engine(index, emb, s), 0.9, 0.4),
        "BM25 k1=1.2 b=0.4": with_bm25(Engine(index, emb, s), 1.2, 0.4),
        "no document title in BM25": with_bm25(Engine(index, emb, s), title=False),
        "chunk cosine + best sentence cosine": SentencePoolEngine(index, emb, s),
        "short answer from the better of the top 2": Engine(index, emb, s),
    }


def measure_slice(engine: Engine, name: str, questions: list, q_vecs: np.ndarray) -> tuple[float, float, float]:
    r1 = r5 = hit = 0
    for q, v in zip(questions, q_vecs):
        cands = engine.retrieve(q.text, v)
        shown = engine.retriever.dedupe(cands)[:5]
        ranks = [i for i, c in enumerate(shown) if is_gold(engine, c.row, q)]
        r1 += bool(ranks and ranks[0] == 0)
        r5 += bool(ranks)
        best = cands[0]
        if name.startswith("short answer from the better"):
            best = max(cands[:2], key=lambda c: 0.5 * c.score + 0.5 * c.sentence)
        query = engine.retriever.query(q.text, v)
        answer, _ = engine.answerer.short_answer(best, query, engine.retriever)
        hit += contains_answer(answer, q.answers)
    n = len(questions)
    return r1 / n, r5 / n, hit / n


BANDS = [(0.4, 0.45), (0.45, 0.5), (0.5, 0.55), (0.55, 0.6), (0.6, 0.7), (0.7, float("inf"))]


def confidence_bands(index, half, articles, questions: list, emb) -> str:
    """How often an answer (not an abstention) is right, by confidence: what ``tentative_below`` rests on.

    In-corpus: every answerable question against the full index (right = a gold string in the short
    answer). Out-of-corpus: the questions of the articles the half index lacks, against the half index;
    every answer there is wrong.
    """
    full, part = Engine(index, emb, SearchSettings()), Engine(half, emb, SearchSettings())
    in_docs = {squad_doc_id(i, articles[i]) for i in range(SQUAD_IN_CORPUS)}
    right, wrong, outside = ([0] * len(BANDS) for _ in range(3))

    def band(conf: float) -> int:
        return next(i for i, (lo, hi) in enumerate(BANDS) if lo <= conf < hi)

    for q in questions:
        a = full.ask(q.text)
        if not a.abstained:
            (right if contains_answer(a.answer, q.answers) else wrong)[band(a.confidence)] += 1
        if q.doc_id not in in_docs:
            b = part.ask(q.text)
            if not b.abstained:
                outside[band(b.confidence)] += 1
    rows = []
    for i, (lo, hi) in enumerate(BANDS):
        n = right[i] + wrong[i]
        label = f"{lo:.2f}-{hi:.2f}" if hi != float("inf") else f">= {lo:.2f}"
        rows.append([label, right[i], wrong[i], f"{right[i] / n if n else float('nan'):.2f}", outside[i]])
    head = ["confidence", "in-corpus answers right", "wrong", "share right", "out-of-corpus questions answered"]
    return md_table(head, rows)


def squad_part(path: Path, cache: Path, model: str) -> str:
    articles, idx = prepare_squad(path, cache, ChunkSettings(), model)
    index = idx["squad-all"]
    allq = squad_questions(articles, range(len(articles)))
    map_gold(index, articles, allq)
    emb = get_embedder(model)
    slices = [allq[o::3] for o in range(3)]
    vecs = [emb.encode([q.text for q in qs], batch_size=64) for qs in slices]
    lines = ["| variant | " + " | ".join(f"slice {o}: r@1 / r@5 / hit" for o in range(3)) + " |",
             "| --- | ---: | ---: | ---: |"]
    for name, engine in squad_variants(index, emb).items():
        cells = [" / ".join(f"{x:.3f}" for x in measure_slice(engine, name, qs, v)) for qs, v in zip(slices, vecs)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        log.info("%s", lines[-1])
    bands = confidence_bands(index, idx["squad-half"], articles, allq, emb)
    return "\n".join(lines) + "\n\nConfidence of answered questions (all 2,910; default settings):\n\n" + bands


# ---------------------------------------------------------------------------------- article variants


_WH_RE = re.compile(r"^\s*(who|whom|whose|what|which|where|when|why|how)(\s+(many|much|long|old|far|often))?('s)?\s+"
                    r"((did|does|do|is|are|was|were|has|have|had|can|could|would|will|should)\b\s*)?", re.I)
_CLAUSE_RE = re.compile(r"(?<=[,;:–—])\s+|\s+(?=(?:but|and|where|which|who) )")


def _token_vectors(model, texts: list[str]) -> list[tuple[np.ndarray, list]]:
    """Normalised contextual token vectors of each text and the word each token belongs to."""
    out = model.encode(texts, output_value="token_embeddings", convert_to_numpy=False, batch_size=64)
    res = []
    for text, vecs in zip(texts, out):
        enc = model.tokenizer(text, truncation=True, max_length=256)
        v = vecs.numpy()
        res.append((v / np.linalg.norm(v, axis=1, keepdims=True), enc))
    return res


def article_part(qa_file: Path, corpus: Path, model: str) -> str:
    from index import EngineConfig, open_engine

    with tempfile.TemporaryDirectory() as tmp:
        eng = open_engine(EngineConfig(corpus=corpus, index_dir=Path(tmp) / "index", model=model))
    fc = eng.settings.fragment_chars
    units = [u for d in eng.reader.documents() for u in document_units(eng.reader, d.id, fc)[1]]
    sents, emb = eng.index.sentence_text, eng.embedder
    items = [json.loads(line) for line in qa_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    items = [it for it in items if it["answers"]]
    qs = [clean_question(it["question"]) for it in items]

    def gold(answers: list[str]) -> set[int]:
        unit_text = [" ".join(sents[a:b + 1]).lower() for a, b in units]
        return {i for i, t in enumerate(unit_text) if any(x.lower() in t for x in answers)}

    golds = [gold(it["answers"]) for it in items]
    sv = eng.index.sentence_vectors
    qv = emb.encode(qs)
    rv = emb.encode([(_WH_RE.sub("", q).rstrip("?").strip() or q) for q in qs])
    ctx = emb.encode([(sents[i - 1] + " " + sents[i]) if i else sents[i] for i in range(len(sents))])
    clauses = [(i, p.strip()) for i, s in enumerate(sents) for p in _CLAUSE_RE.split(s) if len(p.strip()) > 15]
    cv = emb.encode([p for _, p in clauses])
    c_sid = np.array([i for i, _ in clauses])
    st_model = SentenceTransformerEmbedder(model).model  # token vectors need the full library
    st = _token_vectors(st_model, sents)
    s_tok = [v[[j for j, w in enumerate(enc.word_ids()) if w is not None]] for v, enc in st]
    q_tok = _token_vectors(st_model, qs)

    def soft_coverage(k: int) -> np.ndarray:
        """BERTScore-style: IDF-weighted mean over the question's content tokens of their best match."""
        v, enc = q_tok[k]
        rows, weights = [], []
        for j, w in enumerate(enc.word_ids()):
            if w is None:
                continue
            span = enc.word_to_chars(w)
            word = qs[k][span.start:span.end].lower()
            if len(word) > 1 and word[:1].isalnum() and word not in STOPWORDS:
                rows.append(j)
                weights.append(eng.retriever._idf_of(_stemmer().stemWord(word)))
        if not rows:
            return np.zeros(len(sents))
        w = np.asarray(weights)
        return np.array([(w * (v[rows] @ m.T).max(axis=1)).sum() / w.sum() for m in s_tok])

    feats = []
    for k, q in enumerate(qs):
        terms, at = content_terms(q), answer_type_of(q)
        cov = np.array([eng.retriever.coverage(terms, eng.index.sentence_termset(i)) for i in range(len(sents))])
        typed = np.array([bool(at and at.search(s)) for s in sents], dtype=float)
        clause = np.full(len(sents), -1.0)
        np.maximum.at(clause, c_sid, cv @ qv[k])
        feats.append(dict(sim=sv @ qv[k], rw=sv @ rv[k], ctx=ctx @ qv[k], clause=np.maximum(sv @ qv[k], clause),
                          soft=soft_coverage(k), cov=cov, typed=typed))
    s = SearchSettings()
    w, bonus = s.sentence_lexical_weight, s.answer_type_weight
    variants = {
        "default sentence score (0.4 cosine + 0.6 coverage + type bonus)":
            lambda f: (1 - w) * f["sim"] + w * f["cov"] + bonus * f["typed"],
        "cosine alone": lambda f: f["sim"],
        "cosine of (previous + this sentence) alone": lambda f: f["ctx"],
        "default, cosine = mean of sentence and context cosine":
            lambda f: (1 - w) * (f["sim"] + f["ctx"]) / 2 + w * f["cov"] + bonus * f["typed"],
        "default, question without its wh-words":
            lambda f: (1 - w) * f["rw"] + w * f["cov"] + bonus * f["typed"],
        "default, cosine = max(sentence, best clause)":
            lambda f: (1 - w) * f["clause"] + w * f["cov"] + bonus * f["typed"],
        "token-level soft coverage alone": lambda f: f["soft"],
        "default, cosine = 0.2 cosine + 0.8 soft coverage":
            lambda f: (1 - w) * (0.2 * f["sim"] + 0.8 * f["soft"]) + w * f["cov"] + bonus * f["typed"],
        "default, coverage = mean of exact and soft coverage":
            lambda f: (1 - w) * f["sim"] + w * (f["cov"] + f["soft"]) / 2 + bonus * f["typed"],
    }
    head = [f"sentence score ({len(items)} answerable questions)", "best sentence holds the answer"]
    return md_table(head, ([name, sum(int(np.argmax(fn(f))) in g for f, g in zip(feats, golds))]
                           for name, fn in variants.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--squad", type=Path, help="SQuAD v2.0 dev (half) JSON")
    ap.add_argument("--qa", type=Path, default=ARTICLE_QA)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/herald-quality-cache"))
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    for noisy in ("faiss", "sentence_transformers", "index", "httpx", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    print(article_part(args.qa, args.corpus, args.model))
    if args.squad:
        print()
        print(squad_part(args.squad, args.cache, args.model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
