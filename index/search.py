"""Answering: hybrid retrieval (dense + BM25), sentence re-scoring, a short answer, and abstention.

One query embedding per question: sentence vectors were computed at build time, so re-scoring the
candidates' sentences is a matrix product, not another model call.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from index.embed import Embedder
from index.store import LoadedIndex
from index.text import clean_question, content_terms, looks_english

ABSTAIN_MESSAGE = "The articles don't say."
MODES = ("hybrid", "dense", "bm25")


@dataclass(frozen=True)
class SearchSettings:
    """Retrieval and answering knobs; defaults are the ones measured best (see docs/quality.md)."""

    mode: str = "hybrid"
    top_k: int = 3
    candidates: int = 40
    dense_weight: float = 0.55
    sentence_weight: float = 0.5
    coverage_weight: float = 0.35
    abstain_threshold: float = 0.5
    answer_sentences: int = 2
    adjacent_margin: float = 0.06
    max_question_chars: int = 500

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")


@dataclass
class Source:
    """A passage shown to the user as evidence."""

    text: str
    title: str
    doc_id: str
    score: float
    start: int
    end: int
    url: str | None = None
    chunk_id: int = -1


@dataclass
class Answer:
    """The result of one question, as both the CLI and the bot present it."""

    question: str
    answer: str
    abstained: bool
    sources: list[Source]
    confidence: float
    latency_ms: float
    answer_spans: list[tuple[str, int, int]] = field(default_factory=list)
    note: str = ""

    @property
    def hint(self) -> Source | None:
        """The closest passage, offered when abstaining."""
        return self.sources[0] if self.sources else None

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "answer": self.answer,
            "abstained": self.abstained,
            "confidence": round(self.confidence, 4),
            "sources": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(s).items()}
                        for s in self.sources],
            "latency_ms": round(self.latency_ms, 2),
            "note": self.note,
        }


@dataclass
class _Candidate:
    row: int
    dense: float
    bm25: float
    fused: float = 0.0
    sentence: float = 0.0
    best_sentence: int = -1
    score: float = 0.0
    sentence_scores: list[float] = field(default_factory=list)


class Engine:
    """Answers questions from one loaded index. Read-only after construction, so safe across threads."""

    def __init__(self, index: LoadedIndex, embedder: Embedder, settings: SearchSettings = SearchSettings()):
        import bm25s

        self.index = index
        self.embedder = embedder
        self.settings = settings
        self._chunk_vectors = index.chunk_vectors()
        chunk_terms = [content_terms(c.text) for c in index.chunks]
        self._chunk_termsets = [frozenset(t) for t in chunk_terms]
        self._bm25 = bm25s.BM25(k1=1.2, b=0.75)
        self._bm25.index([t or [""] for t in chunk_terms], show_progress=False)
        df: dict[str, int] = {}
        for ts in self._chunk_termsets:
            for t in ts:
                df[t] = df.get(t, 0) + 1
        n = max(1, len(chunk_terms))
        self._idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self._idf_unknown = math.log(1 + (n + 0.5) / 0.5)
        # sentence id -> (chunk row, position) for adjacency, and the text of each sentence
        self._sentence_text: list[str] = []
        self._sentence_doc: list[tuple[str, int, int]] = []
        for doc in index.documents:
            for a, b in index.doc_sentences[doc.id]:
                self._sentence_text.append(doc.text[a:b])
                self._sentence_doc.append((doc.id, a, b))
        self._sentence_terms: list[frozenset[str] | None] = [None] * len(self._sentence_text)

    # ------------------------------------------------------------------------------------ scoring

    def _idf_of(self, term: str) -> float:
        return self._idf.get(term, self._idf_unknown)

    def coverage(self, q_terms: list[str], termset: frozenset[str]) -> float:
        """IDF-weighted share of the question's content words found in a passage (0..1)."""
        if not q_terms:
            return 0.0
        total = sum(self._idf_of(t) for t in set(q_terms))
        hit = sum(self._idf_of(t) for t in set(q_terms) if t in termset)
        return hit / total if total else 0.0

    def _sentence_termset(self, sid: int) -> frozenset[str]:
        ts = self._sentence_terms[sid]
        if ts is None:
            ts = frozenset(content_terms(self._sentence_text[sid]))
            self._sentence_terms[sid] = ts
        return ts

    def retrieve(self, question: str, q_vec: np.ndarray | None = None, mode: str | None = None,
                 k: int | None = None) -> list[_Candidate]:
        """Ranked candidates for a cleaned question under the given mode."""
        s = self.settings
        mode = mode or s.mode
        k = k or s.top_k
        n = len(self.index.chunks)
        q_terms = content_terms(question)
        pool = min(n, max(s.candidates, k))
        dense_all = None
        if mode in ("hybrid", "dense"):
            if q_vec is None:
                q_vec = self.embedder.encode([question])[0]
            dense_all = self._chunk_vectors @ q_vec
        bm25_all = self._bm25.get_scores(q_terms) if (q_terms and mode in ("hybrid", "bm25")) else np.zeros(n)
        if mode == "dense":
            order = np.argsort(-dense_all)[:pool]
            return [_Candidate(int(r), float(dense_all[r]), 0.0, float(dense_all[r]), score=float(dense_all[r]))
                    for r in order[:k]]
        if mode == "bm25":
            order = np.argsort(-bm25_all, kind="stable")[:k]
            return [_Candidate(int(r), 0.0, float(bm25_all[r]), float(bm25_all[r]), score=float(bm25_all[r]))
                    for r in order]
        rows = set(np.argpartition(-dense_all, pool - 1)[:pool].tolist()) if pool < n else set(range(n))
        if q_terms and pool < n:
            rows |= set(np.argpartition(-bm25_all, pool - 1)[:pool].tolist())
        bm_max = float(bm25_all.max()) if q_terms else 0.0
        cands = []
        for r in rows:
            bm = float(bm25_all[r]) / bm_max if bm_max > 0 else 0.0
            fused = s.dense_weight * float(dense_all[r]) + (1 - s.dense_weight) * bm
            cands.append(_Candidate(r, float(dense_all[r]), bm, fused))
        cands.sort(key=lambda c: -c.fused)
        cands = cands[:max(k, min(len(cands), 12))]
        self._rescore_sentences(cands, q_vec, q_terms)
        cands.sort(key=lambda c: -c.score)
        return cands

    def _rescore_sentences(self, cands: list[_Candidate], q_vec: np.ndarray, q_terms: list[str]) -> None:
        """Score each candidate's sentences against the question; a chunk is as good as its best sentence."""
        s = self.settings
        for c in cands:
            sids = self.index.chunk_sentence_ids[c.row]
            sims = self.index.sentence_vectors[sids] @ q_vec if sids else np.zeros(0)
            scores = [0.7 * float(sim) + 0.3 * self.coverage(q_terms, self._sentence_termset(sid))
                      for sid, sim in zip(sids, sims)]
            c.sentence_scores = scores
            if scores:
                best = int(np.argmax(scores))
                c.best_sentence = sids[best]
                c.sentence = scores[best]
            c.score = (1 - s.sentence_weight) * c.fused + s.sentence_weight * c.sentence

    def confidence(self, cand: _Candidate, q_terms: list[str]) -> float:
        """How sure we are that the top passage answers: dense similarity plus lexical coverage."""
        s = self.settings
        cov = self.coverage(q_terms, self._chunk_termsets[cand.row])
        return (1 - s.coverage_weight) * max(cand.dense, cand.sentence) + s.coverage_weight * cov

    # ----------------------------------------------------------------------------------- answering

    def _short_answer(self, best: _Candidate) -> tuple[str, list[tuple[str, int, int]]]:
        """The best sentence, plus its neighbour when the answer plainly runs on into it."""
        s = self.settings
        sids = self.index.chunk_sentence_ids[best.row]
        if best.best_sentence < 0:
            chunk = self.index.chunks[best.row]
            return chunk.text, [(chunk.doc_id, chunk.start, chunk.end)]
        pos = sids.index(best.best_sentence)
        chosen = [best.best_sentence]
        top = best.sentence_scores[pos]
        first_text = self._sentence_text[best.best_sentence]
        if s.answer_sentences > 1:
            neighbours = []
            if pos + 1 < len(sids):
                neighbours.append((best.sentence_scores[pos + 1], sids[pos + 1]))
            if pos > 0:
                neighbours.append((best.sentence_scores[pos - 1], sids[pos - 1]))
            for score, sid in sorted(neighbours, reverse=True):
                runs_on = first_text.rstrip().endswith(":") or len(first_text) < 40
                if score >= top - s.adjacent_margin or (runs_on and sid == chosen[0] + 1):
                    chosen.append(sid)
                    break
        chosen.sort()
        doc_id = self._sentence_doc[chosen[0]][0]
        spans = [self._sentence_doc[sid] for sid in chosen]
        doc = self.index.doc_by_id[doc_id]
        text = doc.text[spans[0][1]:spans[-1][2]]
        return " ".join(text.split()), spans

    def ask(self, question: str) -> Answer:
        """Answer one question (raises QuestionError for unusable input)."""
        started = time.perf_counter()
        s = self.settings
        q = clean_question(question, s.max_question_chars)
        q_terms = content_terms(q)
        q_vec = self.embedder.encode([q])[0] if s.mode != "bm25" else None
        cands = self.retrieve(q, q_vec)
        sources = [self._source(c) for c in cands[:s.top_k]]
        if not cands:
            return Answer(q, "", True, [], 0.0, (time.perf_counter() - started) * 1000)
        best = cands[0]
        conf = self.confidence(best, q_terms) if s.mode == "hybrid" else best.score
        abstained = conf < s.abstain_threshold
        answer, spans = ("", []) if abstained else self._short_answer(best)
        note = "" if looks_english(q) else "Herald reads questions in English best; try asking in English."
        return Answer(q, answer, abstained, sources, conf, (time.perf_counter() - started) * 1000, spans, note)

    def _source(self, c: _Candidate) -> Source:
        chunk = self.index.chunks[c.row]
        return Source(chunk.text, chunk.title, chunk.doc_id, c.score, chunk.start, chunk.end, chunk.url, c.row)
