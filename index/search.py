"""Answering: hybrid retrieval (dense + BM25), sentence re-scoring, a short answer, and abstention.

One query embedding per question: sentence vectors were computed at build time, so re-scoring the
candidates' sentences is a matrix product, not another model call. Every knob is a SearchSettings field;
the defaults are the ones benchmarks/quality.py measured best (docs/quality.md).

Ranking, per question:
1. candidates: the ``candidates`` nearest chunks by cosine and the ``candidates`` best by BM25;
2. fusion: ``dense_weight`` x cosine + (1 - ``dense_weight``) x BM25 normalised (saturating
   ``bm25 / (bm25 + bm25_saturation)`` by default, or divided by the query's best BM25 score), or
   reciprocal rank fusion when ``fusion = "rrf"``;
3. sentence re-scoring of the best ``rescore_candidates``: each sentence scores
   (1 - ``sentence_lexical_weight``) x cosine + ``sentence_lexical_weight`` x IDF-weighted coverage of
   the question's content words, and a chunk is ranked by (1 - ``sentence_weight``) x fused +
   ``sentence_weight`` x its best sentence;
4. optionally a cross-encoder (``reranker``) re-scores the best ``reranker_candidates``.

Abstention uses ``confidence()``: the best sentence's similarity, the coverage of the question's content
words in the best sentence and its chunk, and the share of the question's weight carried by words the
corpus never uses (a question about something the articles never mention).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from index.embed import Embedder
from index.errors import HeraldError, describe
from index.store import LoadedIndex
from index.text import clean_question, content_terms, looks_english

ABSTAIN_MESSAGE = "The articles don't say."
# Put before an answer whose confidence is under ``tentative_below``: readers should check the sources.
TENTATIVE_MESSAGE = "Not sure the articles answer this; the closest they come:"
MODES = ("hybrid", "dense", "bm25")
FUSIONS = ("score", "rrf")
BM25_NORMS = ("saturate", "max")
RRF_K = 60

# A "sentence" that is really part of its neighbour: a tweet's attribution line ("— Name (@handle) date"),
# an exclamation fragment ("Bloody." "Hell."), a caption/byline with no full stop before a quote.
_ATTRIBUTION_RE = re.compile(r"^\s*[—–-]\s")
_TERMINAL_RE = re.compile(r"[.!?…”\"’')\]]\s*$")
# The kind of answer a question asks for, and what a sentence holding one looks like.
_NUMBER_WORDS = (r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|"
                 r"fifty|hundred|hundreds|thousand|thousands|million|millions|billion|billions|dozen|dozens|half")
_MONTHS = (r"january|february|march|april|may|june|july|august|september|october|november|december|"
           r"monday|tuesday|wednesday|thursday|friday|saturday|sunday")
_ANSWER_TYPES = [
    (re.compile(r"^\s*(how (many|much|long|old|far|big|large|tall)|what (number|percentage|proportion|amount))\b", re.I),
     re.compile(rf"\d|\b({_NUMBER_WORDS})\b", re.I)),
    (re.compile(r"^\s*(when|since when|what (year|date|day|time|month|century|decade))\b|\bwhat year\b", re.I),
     re.compile(rf"\b(\d{{3,4}}s?|\d{{1,2}}(st|nd|rd|th)?|{_MONTHS}|yesterday|today|tomorrow|tonight|last|next|"
                rf"century|decade|ago|since|until|during|after|before)\b", re.I)),
]
# Residue of page widgets left at the edges of a sentence: dangling separators and link ellipses.
_EDGE_RESIDUE_RE = re.compile(r"^(?:\s*[|:•·…]+)+\s*|(?:\s*(?:[|:•·…]+|\bcc))+\s*$")


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
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}")
        if self.bm25_norm not in BM25_NORMS:
            raise ValueError(f"bm25_norm must be one of {', '.join(BM25_NORMS)}")
        for name in ("dense_weight", "sentence_weight", "sentence_lexical_weight", "coverage_weight",
                     "reranker_weight", "tentative_below"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.top_k < 1 or self.candidates < 1 or self.rescore_candidates < 1:
            raise ValueError("top_k, candidates and rescore_candidates must be at least 1")
        if self.answer_sentences < 1:
            raise ValueError("answer_sentences must be at least 1")
        if self.bm25_saturation <= 0:
            raise ValueError("bm25_saturation must be positive")



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
    tentative: bool = False  # answered, but with a confidence at which answers are often wrong


    @property
    def hint(self) -> Source | None:
        """The closest passage, offered when abstaining."""
        return self.sources[0] if self.sources else None

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "answer": self.answer,
            "abstained": self.abstained,
            "tentative": self.tentative,
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
    sentence_sims: list[float] = field(default_factory=list)
    sentence_coverage: list[float] = field(default_factory=list)


def fuse_scores(dense: np.ndarray, bm25: np.ndarray, settings: SearchSettings,
                bm25_best: float | None = None) -> np.ndarray:
    """Fused chunk scores of aligned dense and raw BM25 arrays (see the module doc)."""
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
        # Sentences of every document in index order: text, (doc, start, end), and the answer unit
        # (first and last sentence id) each belongs to.
        self._sentence_text: list[str] = []
        self._sentence_doc: list[tuple[str, int, int]] = []
        self._unit: list[tuple[int, int]] = []
        for doc in index.documents:
            base = len(self._sentence_text)
            spans = index.doc_sentences[doc.id]
            for a, b in spans:
                self._sentence_text.append(doc.text[a:b])
                self._sentence_doc.append((doc.id, a, b))
            self._unit.extend(_answer_units([doc.text[a:b] for a, b in spans], base, settings.fragment_chars))
        self._sentence_terms: list[frozenset[str] | None] = [None] * len(self._sentence_text)
        self._reranker = load_reranker(settings.reranker) if settings.reranker else None

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

    def unknown_share(self, q_terms: list[str]) -> float:
        """IDF-weighted share of the question's content words that no passage of the corpus uses."""
        if not q_terms:
            return 0.0
        total = sum(self._idf_of(t) for t in set(q_terms))
        return sum(self._idf_unknown for t in set(q_terms) if t not in self._idf) / total

    def _sentence_termset(self, sid: int) -> frozenset[str]:
        ts = self._sentence_terms[sid]
        if ts is None:
            ts = frozenset(content_terms(self._sentence_text[sid]))
            self._sentence_terms[sid] = ts
        return ts

    def retrieve(self, question: str, q_vec: np.ndarray | None = None, mode: str | None = None,
                 k: int | None = None) -> list[_Candidate]:
        """Ranked candidates for a cleaned question under the given mode (at least ``k`` when possible)."""
        s = self.settings
        mode = mode or s.mode
        k = k or s.top_k
        n = len(self.index.chunks)
        if n == 0:
            return []
        q_terms = content_terms(question)
        if mode in ("hybrid", "dense") and q_vec is None:
            q_vec = self.embedder.encode([question])[0]
        if mode == "dense":
            dense_all = self.dense_scores(q_vec)
            order = _top(dense_all, k)
            return [_Candidate(int(r), float(dense_all[r]), 0.0, float(dense_all[r]), score=float(dense_all[r]))
                    for r in order]
        bm25_all = self._bm25.get_scores(q_terms) if q_terms else np.zeros(n)
        if mode == "bm25":
            order = _top(bm25_all, k)
            return [_Candidate(int(r), 0.0, float(bm25_all[r]), float(bm25_all[r]), score=float(bm25_all[r]))
                    for r in order]
        dense_all = self.dense_scores(q_vec)
        pool = min(n, s.candidates)
        rows = set(_top(dense_all, pool).tolist())
        if q_terms:
            rows |= set(_top(bm25_all, pool).tolist())
        rows_l = sorted(rows)
        fused = fuse_scores(dense_all[rows_l], bm25_all[rows_l], s, float(bm25_all.max()))
        cands = [_Candidate(r, float(dense_all[r]), float(bm25_all[r]), float(f)) for r, f in zip(rows_l, fused)]
        cands.sort(key=lambda c: -c.fused)
        cands = cands[:max(k, s.rescore_candidates)]
        self._rescore_sentences(cands, q_vec, q_terms, answer_type_of(question))
        if self._reranker is not None:
            self._rerank(question, cands)
        cands.sort(key=lambda c: -c.score)
        return cands

    def dense_scores(self, q_vec: np.ndarray) -> np.ndarray:
        """Cosine of every chunk to the question (vectors are normalised, so an inner product)."""
        return self._chunk_vectors @ q_vec

    def sentence_scores(self, sims: list[float], covs: list[float], typed: list[bool] | None = None) -> list[float]:
        """A sentence's score: its cosine to the question mixed with its coverage of the question's words,
        plus ``answer_type_weight`` when it holds the kind of answer asked for (a number, a date)."""
        w = self.settings.sentence_lexical_weight
        bonus = self.settings.answer_type_weight
        typed = typed or [False] * len(sims)
        return [(1 - w) * a + w * b + (bonus if t else 0.0) for a, b, t in zip(sims, covs, typed)]

    def _typed(self, answer_type: re.Pattern | None, sids: list[int]) -> list[bool] | None:
        if answer_type is None or not self.settings.answer_type_weight:
            return None
        return [bool(answer_type.search(self._sentence_text[sid])) for sid in sids]

    def _rescore_sentences(self, cands: list[_Candidate], q_vec: np.ndarray, q_terms: list[str],
                           answer_type: re.Pattern | None = None) -> None:
        """Score each candidate's sentences against the question; a chunk is as good as its best sentence."""
        s = self.settings
        for c in cands:
            sids = self.index.chunk_sentence_ids[c.row]
            sims = (self.index.sentence_vectors[sids] @ q_vec).tolist() if sids else []
            covs = [self.coverage(q_terms, self._sentence_termset(sid)) for sid in sids]
            scores = self.sentence_scores(sims, covs, self._typed(answer_type, sids))
            c.sentence_sims, c.sentence_coverage, c.sentence_scores = sims, covs, scores
            if scores:
                best = int(np.argmax(scores))
                c.best_sentence = sids[best]
                c.sentence = scores[best]
            c.score = (1 - s.sentence_weight) * c.fused + s.sentence_weight * c.sentence

    def _rerank(self, question: str, cands: list[_Candidate]) -> None:
        s = self.settings
        cands.sort(key=lambda c: -c.score)
        head = cands[:s.reranker_candidates]
        if not head:
            return
        logits = np.asarray(self._reranker.predict([(question, self.index.chunks[c.row].text) for c in head]),
                            dtype=np.float64).reshape(-1)
        probs = 1.0 / (1.0 + np.exp(-logits))
        for c, p in zip(head, probs):
            c.score = (1 - s.reranker_weight) * c.score + s.reranker_weight * float(p)

    def confidence(self, cand: _Candidate, q_terms: list[str]) -> float:
        """How sure we are that the top passage answers (0..1-ish; compared with ``abstain_threshold``).

        Semantic evidence (the better of the chunk's and its best sentence's cosine) mixed with lexical
        evidence (IDF-weighted coverage of the question's content words by the best sentence and its
        chunk), minus the weight of question words the corpus never uses.
        """
        s = self.settings
        cov_chunk = self.coverage(q_terms, self._chunk_termsets[cand.row])
        sim = max(cand.dense, max(cand.sentence_sims, default=cand.dense))
        if cand.best_sentence >= 0:
            pos = self.index.chunk_sentence_ids[cand.row].index(cand.best_sentence)
            cov = 0.5 * (cand.sentence_coverage[pos] + cov_chunk)
        else:
            cov = cov_chunk
        conf = (1 - s.coverage_weight) * sim + s.coverage_weight * cov
        return conf - s.unknown_weight * self.unknown_share(q_terms)

    # ----------------------------------------------------------------------------------- answering

    def _sentence_score(self, sid: int, q_vec: np.ndarray | None, q_terms: list[str],
                        answer_type: re.Pattern | None = None) -> float:
        sim = float(self.index.sentence_vectors[sid] @ q_vec) if q_vec is not None else 0.0
        return self.sentence_scores([sim], [self.coverage(q_terms, self._sentence_termset(sid))],
                                    self._typed(answer_type, [sid]))[0]

    def _short_answer(self, best: _Candidate, q_vec: np.ndarray | None, q_terms: list[str],
                      answer_type: re.Pattern | None = None) -> tuple[str, list[tuple[str, int, int]]]:
        """The best answer unit, plus the adjacent one when it scores nearly as well or the best runs on.

        An answer unit is a sentence with the fragments that belong to it (see ``_answer_units``); the
        answer is given in reading order.
        """
        s = self.settings
        if best.best_sentence < 0:
            chunk = self.index.chunks[best.row]
            return " ".join(chunk.text.split()), [(chunk.doc_id, chunk.start, chunk.end)]
        first, last = self._unit[best.best_sentence]
        doc_id = self._sentence_doc[best.best_sentence][0]

        def unit_score(a: int, b: int) -> float:
            return max(self._sentence_score(i, q_vec, q_terms, answer_type) for i in range(a, b + 1))

        top = unit_score(first, last)
        if s.answer_sentences > 1:
            options = []
            if last + 1 < len(self._unit) and self._sentence_doc[last + 1][0] == doc_id:
                nxt = self._unit[last + 1]
                runs_on = self._sentence_text[last].rstrip().endswith(":")
                options.append((unit_score(*nxt) + (1.0 if runs_on else 0.0), nxt))
            if first > 0 and self._sentence_doc[first - 1][0] == doc_id:
                prv = self._unit[first - 1]
                options.append((unit_score(*prv), prv))
            for score, (a, b) in sorted(options, reverse=True)[:1]:
                if score >= top - s.adjacent_margin:
                    first, last = min(first, a), max(last, b)
        spans = [self._sentence_doc[i] for i in range(first, last + 1)]
        doc = self.index.doc_by_id[doc_id]
        text = " ".join(doc.text[spans[0][1]:spans[-1][2]].split())
        return trim_residue(text), spans

    def ask(self, question: str) -> Answer:
        """Answer one question (raises QuestionError for unusable input)."""
        started = time.perf_counter()
        s = self.settings
        q = clean_question(question, s.max_question_chars)
        q_terms = content_terms(q)
        q_vec = self.embedder.encode([q])[0] if s.mode != "bm25" else None
        cands = self.retrieve(q, q_vec)
        note = "" if looks_english(q) else "Herald reads questions in English best; try asking in English."
        if not cands:
            return Answer(q, "", True, [], 0.0, (time.perf_counter() - started) * 1000, note=note)
        shown = self._dedupe(cands) if s.dedupe_sources else cands
        sources = [self._source(c) for c in shown[:s.top_k]]
        best = cands[0]
        conf = self.confidence(best, q_terms) if s.mode == "hybrid" else best.score
        abstained = conf < s.abstain_threshold
        answer, spans = ("", []) if abstained else self._short_answer(best, q_vec, q_terms, answer_type_of(q))
        tentative = not abstained and conf < s.tentative_below
        return Answer(q, answer, abstained, sources, conf, (time.perf_counter() - started) * 1000, spans, note,
                      tentative)

    def _dedupe(self, cands: list[_Candidate]) -> list[_Candidate]:
        """Drop a source whose best sentence a higher-ranked source already shows (overlapping windows)."""
        seen: set[int] = set()
        out = []
        for c in cands:
            if c.best_sentence >= 0 and c.best_sentence in seen:
                continue
            seen.update(self.index.chunk_sentence_ids[c.row] if c.best_sentence >= 0 else ())
            out.append(c)
        return out

    def _source(self, c: _Candidate) -> Source:
        chunk = self.index.chunks[c.row]
        return Source(chunk.text, chunk.title, chunk.doc_id, c.score, chunk.start, chunk.end, chunk.url, c.row)


def answer_type_of(question: str) -> re.Pattern | None:
    """What a sentence holding the kind of answer asked for matches ("how many" -> a number), or None."""
    for asks, holds in _ANSWER_TYPES:
        if asks.search(question):
            return holds
    return None


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first (ties by index)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


def _answer_units(texts: list[str], base: int, fragment_chars: int) -> list[tuple[int, int]]:
    """(first, last) sentence id of the answer unit of each sentence of one document.

    A sentence joins the one before it when it is a tweet's attribution line ("— Name (@handle) date"),
    a fragment shorter than ``fragment_chars`` ("Bloody." "Hell."), or follows a sentence ending in ":";
    a short label with no closing punctuation (a byline before a quote) joins the sentence after it.
    """
    n = len(texts)
    group = list(range(n))
    for i in range(1, n):
        t, prev = texts[i].strip(), texts[i - 1].rstrip()
        if (_ATTRIBUTION_RE.match(t) or (len(t) < fragment_chars and _TERMINAL_RE.search(t)) or prev.endswith(":")
                or (len(prev) < 60 and not _TERMINAL_RE.search(prev) and not _ATTRIBUTION_RE.match(prev))):
            group[i] = group[i - 1]
    units: list[tuple[int, int]] = []
    i = 0
    while i < n:
        j = i
        while j + 1 < n and group[j + 1] == group[i]:
            j += 1
        units.extend([(base + i, base + j)] * (j - i + 1))
        i = j + 1
    return units


def trim_residue(text: str) -> str:
    """Strip widget residue (dangling separators, link ellipses, a trailing "cc") from an answer's edges."""
    trimmed = _EDGE_RESIDUE_RE.sub("", text).strip()
    return trimmed or text.strip()


def load_reranker(name: str):
    """A sentence-transformers CrossEncoder by name or folder; a HeraldError that says what to do if not."""
    try:
        from sentence_transformers import CrossEncoder

        return CrossEncoder(name, device="cpu")
    except Exception as exc:  # the library raises many types for "not found / offline / not a model"
        raise HeraldError(
            f"cannot load the re-ranker {name!r}: {describe(exc, 160)}. "
            f"Set HERALD_RERANKER to a cross-encoder folder (or a model name the machine can download), "
            f"or leave it empty to answer without one"
        ) from exc
