"""Retrieval: the ranked passages for a question, and how sure we are that the best one answers it.

One query embedding per question: sentence vectors were computed at build time, so re-scoring the
candidates' sentences is a matrix product, not another model call. Every knob is a SearchSettings field;
the defaults are the ones benchmarks/quality.py measured best (docs/quality.md).

Ranking, per question:
1. candidates: the top ``candidates`` of the vector store's ``search`` and of BM25's (two top-k lists);
2. fusion over those lists: ``dense_weight`` x cosine + (1 - ``dense_weight``) x BM25 normalised
   (saturating ``bm25 / (bm25 + bm25_saturation)`` by default, or divided by the query's best BM25
   score), or reciprocal rank fusion when ``fusion = "rrf"``. A chunk only one list found gets the other
   side's exact score where the store can give it (``score(vector, ids)``), else that list's lowest score;
3. sentence re-scoring of the best ``rescore_candidates``: each sentence scores
   (1 - ``sentence_lexical_weight``) x cosine + ``sentence_lexical_weight`` x IDF-weighted coverage of
   the question's content words, and a chunk is ranked by (1 - ``sentence_weight``) x fused +
   ``sentence_weight`` x its best sentence;
4. optionally a cross-encoder (``reranker``) re-scores the best ``reranker_candidates``.

Confidence (compared with ``abstain_threshold`` by the engine): the best sentence's similarity, the
coverage of the question's content words in the best sentence and its chunk, and the share of the
question's weight carried by words the corpus never uses.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from index.embed.base import EMBEDDERS, Embedder, search_values
from index.errors import ModelLoadError, describe
from index.search.lexical import BM25Index, searched_title, top  # noqa: F401 - searched_title: re-exported
from index.search.reader import IndexReader
from index.store import LoadedIndex
from index.text import content_terms

MODES = ("hybrid", "dense", "bm25")
FUSIONS = ("score", "rrf")
BM25_NORMS = ("saturate", "max")
RRF_K = 60

# The kind of answer a question asks for, and what a sentence holding one looks like.
_NUMBER_WORDS = (r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|"
                 r"fifty|hundred|hundreds|thousand|thousands|million|millions|billion|billions|dozen|dozens|half")
_MONTHS = (r"january|february|march|april|may|june|july|august|september|october|november|december|"
           r"monday|tuesday|wednesday|thursday|friday|saturday|sunday")
_ANSWER_TYPES = [
    (re.compile(r"^\s*(how (many|much|long|old|far|big|large|tall)"
                r"|what (number|percentage|proportion|amount))\b", re.I),
     re.compile(rf"\d|\b({_NUMBER_WORDS})\b", re.I)),
    (re.compile(r"^\s*(when|since when|what (year|date|day|time|month|century|decade))\b|\bwhat year\b", re.I),
     re.compile(rf"\b(\d{{3,4}}s?|\d{{1,2}}(st|nd|rd|th)?|{_MONTHS}|yesterday|today|tomorrow|tonight|last|next|"
                rf"century|decade|ago|since|until|during|after|before)\b", re.I)),
]


@dataclass(frozen=True)
class SearchSettings:
    """Retrieval and answering knobs; defaults are the ones measured best (see docs/quality.md)."""

    mode: str = "hybrid"
    top_k: int = 3
    candidates: int = 40
    rescore_candidates: int = 20
    fusion: str = "score"
    dense_weight: float = 0.5
    bm25_norm: str = "saturate"
    bm25_saturation: float = 10.0
    sentence_weight: float = 0.5
    sentence_lexical_weight: float = 0.6
    dedupe_sources: bool = True
    coverage_weight: float = 0.35
    unknown_weight: float = 0.0
    abstain_threshold: float = 0.4
    tentative_below: float = 0.55
    answer_type_weight: float = 0.1
    answer_sentences: int = 2
    adjacent_margin: float = 0.06
    fragment_chars: int = 16
    reranker: str = ""
    reranker_weight: float = 0.5
    reranker_candidates: int = 10
    max_question_chars: int = 500

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}")
        if self.bm25_norm not in BM25_NORMS:
            raise ValueError(f"bm25_norm must be one of {', '.join(BM25_NORMS)}")
        for name in ("dense_weight", "sentence_weight", "sentence_lexical_weight", "coverage_weight",
                     "reranker_weight", "tentative_below", "abstain_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.tentative_below < self.abstain_threshold:
            raise ValueError("tentative_below must not be below abstain_threshold (answers between the two "
                             "are the tentative ones)")
        for name in ("unknown_weight", "answer_type_weight", "adjacent_margin", "fragment_chars"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative")
        if self.max_question_chars < 1 or self.reranker_candidates < 1:
            raise ValueError("max_question_chars and reranker_candidates must be at least 1")
        if self.top_k < 1 or self.candidates < 1 or self.rescore_candidates < 1:
            raise ValueError("top_k, candidates and rescore_candidates must be at least 1")
        if self.answer_sentences < 1:
            raise ValueError("answer_sentences must be at least 1")
        if self.bm25_saturation <= 0:
            raise ValueError("bm25_saturation must be positive")


def tune_for_model(model: str, **values: Any) -> None:
    """Record SearchSettings ``values`` tuned for ``model`` (checked now: a bad value fails here).

    A model's own registration usually carries them (``search=`` in index/embed/e5.py); this is for a
    model registered elsewhere."""
    dataclasses.replace(SearchSettings(), **values)
    EMBEDDERS.declare(model, search=dict(values))


def tuned_values(model: str) -> dict[str, Any]:
    """The SearchSettings values tuned for ``model`` ({} when the defaults are its own), from its registration."""
    return search_values(model)


def search_for(model: str, search: SearchSettings | None = None, keep: Iterable[str] = ()) -> SearchSettings:
    """``search`` (default: the defaults) with ``model``'s tuned values, except in the fields named in
    ``keep`` (the ones a user set). Raises ValueError when the mix is inconsistent."""
    kept = set(keep)
    tuned = {k: v for k, v in search_values(model).items() if k not in kept}
    base = search if search is not None else SearchSettings()
    return dataclasses.replace(base, **tuned) if tuned else base


@dataclass
class Query:
    """A cleaned question as retrieval and answerers use it: text, content words, vector, answer type."""

    text: str
    terms: list[str]
    vector: np.ndarray | None = None
    answer_type: re.Pattern | None = None


@dataclass
class Candidate:
    """A ranked chunk (``row`` in the loaded index) with the scores that ranked it."""

    row: int
    dense: float
    bm25: float
    fused: float = 0.0
    sentence: float = 0.0
    best_sentence: int = -1
    score: float = 0.0
    sentence_scores: list[float] = field(default_factory=list)
    sentence_sims: list[float] = field(default_factory=list)
    sentence_coverage: list[float] = field(default_factory=list)


def answer_type_of(question: str) -> re.Pattern | None:
    """What a sentence holding the kind of answer asked for matches ("how many" -> a number), or None."""
    for asks, holds in _ANSWER_TYPES:
        if asks.search(question):
            return holds
    return None


def fuse_scores(dense: np.ndarray, bm25: np.ndarray, settings: SearchSettings,
                bm25_best: float | None = None) -> np.ndarray:
    """Fused scores of aligned dense and raw BM25 arrays (see the module doc)."""
    dense = np.asarray(dense, dtype=np.float64)
    bm25 = np.asarray(bm25, dtype=np.float64)
    if settings.fusion == "rrf":
        rank_d = np.argsort(np.argsort(-dense, kind="stable"), kind="stable")
        rank_b = np.argsort(np.argsort(-bm25, kind="stable"), kind="stable")
        return (1.0 / (RRF_K + 1 + rank_d) + 1.0 / (RRF_K + 1 + rank_b)) * (RRF_K + 1) / 2
    if settings.bm25_norm == "max":
        best = float(bm25.max()) if bm25_best is None and bm25.size else (bm25_best or 0.0)
        norm = bm25 / best if best > 0 else np.zeros_like(bm25)
    else:
        norm = bm25 / (bm25 + settings.bm25_saturation)
    return settings.dense_weight * dense + (1 - settings.dense_weight) * norm


def fuse(dense_hits: list[tuple[int, float]], lexical_hits: list[tuple[int, float]], settings: SearchSettings,
         dense_of=None, lexical_of=None) -> list[tuple[int, float, float, float]]:
    """Fusion over two top-k lists (as txtai and LangChain do): ``(id, dense, lexical, fused)``, best first.

    A chunk found by one list only gets the other side's score from ``dense_of(ids)`` / ``lexical_of(ids)``
    when given (exact), else that list's lowest score (the most it can have, having missed the list).
    """
    dense = dict(dense_hits)
    lexical = dict(lexical_hits)
    ids = sorted(set(dense) | set(lexical))
    for side, of, hits in ((dense, dense_of, dense_hits), (lexical, lexical_of, lexical_hits)):
        missing = [i for i in ids if i not in side]
        if not missing:
            continue
        if of is not None:
            side.update(zip(missing, (float(x) for x in of(missing))))
        else:
            floor = min((s for _, s in hits), default=0.0)
            side.update((i, floor) for i in missing)
    d = np.array([dense[i] for i in ids])
    b = np.array([lexical[i] for i in ids])
    best = max((s for _, s in lexical_hits), default=0.0)
    fused = fuse_scores(d, b, settings, best)
    out = [(i, float(x), float(y), float(f)) for i, x, y, f in zip(ids, d, b, fused)]
    out.sort(key=lambda t: -t[3])  # stable: ties keep id order
    return out


class Retriever:
    """Ranks an index's chunks for a question. Read-only after construction, so safe across threads."""

    def __init__(self, index: IndexReader | LoadedIndex, embedder: Embedder,
                 settings: SearchSettings = SearchSettings()) -> None:
        from index.search.reader import FolderReader

        # A folder index loaded in memory is read through FolderReader; any other reader as it is.
        self.reader: IndexReader = FolderReader(index) if isinstance(index, LoadedIndex) else index
        self.index = index if isinstance(index, LoadedIndex) else None  # the folder index (benchmarks read it)
        self.embedder = embedder
        self.settings = settings
        self._reranker = load_reranker(settings.reranker) if settings.reranker else None

    @property
    def lexical(self) -> BM25Index:
        """The folder index's BM25 (benchmarks/ablations.py reads it)."""
        return self.reader.lexical  # type: ignore[attr-defined]

    # ------------------------------------------------------------------------------------ scoring

    def _idf_of(self, term: str) -> float:
        return self.reader.idf.get(term, self.reader.idf_unknown)  # read live: another process may have written

    def coverage(self, q_terms: list[str], termset: frozenset[str]) -> float:
        """IDF-weighted share of the question's content words found in a passage (0..1)."""
        if not q_terms:
            return 0.0
        total = sum(self._idf_of(t) for t in set(q_terms))
        hit = sum(self._idf_of(t) for t in set(q_terms) if t in termset)
        return hit / total if total else 0.0

    def unknown_share(self, q_terms: list[str]) -> float:
        """IDF-weighted share of the question's content words that no passage of the corpus uses."""
        if not q_terms:
            return 0.0
        total = sum(self._idf_of(t) for t in set(q_terms))
        idf, unknown = self.reader.idf, self.reader.idf_unknown
        return sum(unknown for t in set(q_terms) if t not in idf) / total

    def sentence_termset(self, sid: int) -> frozenset[str]:
        return self.reader.sentence_terms(sid)

    def sentence_scores(self, sims: list[float], covs: list[float], typed: list[bool] | None = None) -> list[float]:
        """A sentence's score: its cosine to the question mixed with its coverage of the question's words,
        plus ``answer_type_weight`` when it holds the kind of answer asked for (a number, a date)."""
        w = self.settings.sentence_lexical_weight
        bonus = self.settings.answer_type_weight
        typed = typed or [False] * len(sims)
        return [(1 - w) * a + w * b + (bonus if t else 0.0) for a, b, t in zip(sims, covs, typed)]

    def typed(self, answer_type: re.Pattern | None, sids: list[int]) -> list[bool] | None:
        if answer_type is None or not self.settings.answer_type_weight:
            return None
        return [bool(answer_type.search(self.reader.sentence_text(sid))) for sid in sids]

    def sentence_score(self, sid: int, query: Query) -> float:
        """One sentence's score for the query (what answerers compare neighbouring sentences with)."""
        sim = float(self.reader.sentence_vectors([sid])[0] @ query.vector) if query.vector is not None else 0.0
        return self.sentence_scores([sim], [self.coverage(query.terms, self.sentence_termset(sid))],
                                    self.typed(query.answer_type, [sid]))[0]

    # ---------------------------------------------------------------------------------- retrieval

    def query(self, text: str, vector: np.ndarray | None = None, mode: str | None = None) -> Query:
        mode = mode or self.settings.mode
        if vector is None and mode != "bm25":
            # A model with separate question and passage embeddings (E5's prefixes) embeds questions apart.
            vector = self.embedder.encode_queries([text])[0]
        return Query(text, content_terms(text), vector, answer_type_of(text))

    def dense_hits(self, q_vec: np.ndarray, k: int, rows: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The reader's dense top-k as (row, cosine), among ``rows`` only when given (exact); subclasses in
        benchmarks/ablations.py change it."""
        return self.reader.dense_top(q_vec, k, rows)

    @staticmethod
    def _vector(query: Query) -> np.ndarray:
        """The question's vector (made by ``query`` for every mode but bm25)."""
        if query.vector is None:
            raise ValueError("this query was made for bm25 only: it has no vector")
        return query.vector

    def _dense_of(self, q_vec: np.ndarray):
        return self.reader.dense_scores(q_vec)

    def retrieve(self, question: str, q_vec: np.ndarray | None = None, mode: str | None = None,
                 k: int | None = None, query: Query | None = None, rows: np.ndarray | None = None) -> list[Candidate]:
        """Ranked candidates for a cleaned question under the given mode (at least ``k`` when possible).

        ``query``: the question already prepared by ``query()`` (the engine needs it too: made once).
        ``rows``: rank only these chunks (a collection filter, ``LoadedIndex.rows_of``; None: all of them).
        Both lists are exact within them: every chunk of ``rows`` in an unfiltered candidate list is in the
        filtered one with the same scores. The filtered ranking re-scores at least as deep among ``rows``
        (other collections no longer take re-scoring places), so its top k can differ from the unfiltered
        top k's chunks of ``rows`` only by a chunk that Herald's own score ranks higher (10 of 4,360
        questions in benchmarks/collections.py).
        """
        s = self.settings
        mode = mode or s.mode
        k = k or s.top_k
        n = self.reader.count() if rows is None else len(rows)
        if not n:
            return []
        query = query or self.query(question, q_vec, mode)
        if mode == "dense":
            return [Candidate(r, d, 0.0, d, score=d) for r, d in self._dense(self._vector(query), k, rows)]
        if mode == "bm25":
            return [Candidate(r, 0.0, b, b, score=b) for r, b in self.reader.lexical_top(query.terms, k, rows)[0]]
        pool = min(n, s.candidates)
        lexical_hits, lexical_of = (self.reader.lexical_top(query.terms, pool, rows) if query.terms
                                    else ([], lambda chosen: np.zeros(len(chosen))))
        q_vec = self._vector(query)
        fused = fuse(self._dense(q_vec, pool, rows), lexical_hits, s, self._dense_of(q_vec), lexical_of)
        cands = [Candidate(r, d, b, f) for r, d, b, f in fused][:max(k, s.rescore_candidates)]
        self.rescore(cands, query)
        if self._reranker is not None:
            self._rerank(question, cands)
        cands.sort(key=lambda c: -c.score)
        return cands

    def _dense(self, q_vec: np.ndarray, k: int, rows: np.ndarray | None) -> list[tuple[int, float]]:
        # Two arguments when unfiltered, so a subclass overriding dense_hits(q_vec, k) keeps working.
        return self.dense_hits(q_vec, k) if rows is None else self.dense_hits(q_vec, k, rows)

    def rescore(self, cands: list[Candidate], query: Query) -> None:
        """Score each candidate's sentences against the question; a chunk is as good as its best sentence."""
        s = self.settings
        for c in cands:
            sids = self.reader.chunk_sentences(c.row)
            sims = (self.reader.sentence_vectors(sids) @ query.vector).tolist() if sids else []
            covs = [self.coverage(query.terms, self.sentence_termset(sid)) for sid in sids]
            scores = self.sentence_scores(sims, covs, self.typed(query.answer_type, sids))
            c.sentence_sims, c.sentence_coverage, c.sentence_scores = sims, covs, scores
            if scores:
                best = int(np.argmax(scores))
                c.best_sentence = sids[best]
                c.sentence = scores[best]
            c.score = (1 - s.sentence_weight) * c.fused + s.sentence_weight * c.sentence

    def _rerank(self, question: str, cands: list[Candidate]) -> None:
        s = self.settings
        cands.sort(key=lambda c: -c.score)
        head = cands[:s.reranker_candidates]
        if not head:
            return
        reranker = self._reranker
        assert reranker is not None  # called only when a reranker is set
        logits = np.asarray(reranker.predict([(question, self.reader.chunk(c.row).text) for c in head]),
                            dtype=np.float64).reshape(-1)
        probs = 1.0 / (1.0 + np.exp(-logits))
        for c, p in zip(head, probs):
            c.score = (1 - s.reranker_weight) * c.score + s.reranker_weight * float(p)

    def confidence(self, cand: Candidate, q_terms: list[str], mode: str = "hybrid") -> float:
        """How sure we are that the top passage answers (0..1-ish; compared with ``abstain_threshold``).

        Hybrid: semantic evidence (the better of the chunk's and its best sentence's cosine) mixed with
        lexical evidence (IDF-weighted coverage of the question's content words by the best sentence and
        its chunk), minus the weight of question words the corpus never uses. The single-signal modes
        use their own evidence on the same 0..1 scale: dense its cosine, bm25 the IDF-weighted share of
        the question's words the top chunk holds (a raw BM25 score of 8 is not "more sure" than a
        threshold of 0.4: compared raw, bm25 mode never abstained).
        """
        s = self.settings
        if mode == "dense":
            return cand.dense
        if mode == "bm25":
            return self.coverage(q_terms, self.reader.chunk_terms(cand.row))
        cov_chunk = self.coverage(q_terms, self.reader.chunk_terms(cand.row))
        sim = max(cand.dense, max(cand.sentence_sims, default=cand.dense))
        if cand.best_sentence >= 0:
            pos = self.reader.chunk_sentences(cand.row).index(cand.best_sentence)
            cov = 0.5 * (cand.sentence_coverage[pos] + cov_chunk)
        else:
            cov = cov_chunk
        conf = (1 - s.coverage_weight) * sim + s.coverage_weight * cov
        return conf - s.unknown_weight * self.unknown_share(q_terms)

    def dedupe(self, cands: list[Candidate]) -> list[Candidate]:
        """Drop a source whose best sentence a higher-ranked source already shows (overlapping windows)."""
        seen: set[int] = set()
        out = []
        for c in cands:
            if c.best_sentence >= 0 and c.best_sentence in seen:
                continue
            seen.update(self.reader.chunk_sentences(c.row) if c.best_sentence >= 0 else ())
            out.append(c)
        return out


def load_reranker(name: str):
    """A sentence-transformers CrossEncoder by name or folder; a typed error if it cannot be loaded."""
    try:
        from sentence_transformers import CrossEncoder

        return CrossEncoder(name, device="cpu")
    except Exception as exc:  # the library raises many types for "not found / offline / not a model"
        raise ModelLoadError("reranker", name, describe(exc, 160)) from exc


__all__ = ["SearchSettings", "search_for", "tune_for_model", "tuned_values", "Query", "Candidate", "Retriever",
           "fuse", "fuse_scores", "answer_type_of", "top"]
