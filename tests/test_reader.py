"""The index seam (index/search/reader.py, issue 19): answering reads an index only through IndexReader.

``RecordsReader`` is a second reader, as a database would be: its rows are chunk ids (not positions), its
sentence ids start at 10,000, it searches by brute force over dicts. The engine over it must answer exactly
as over the folder index: same answer, sources, confidence, abstentions and collection filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pytest

from index import Engine, EngineConfig, open_engine, rebuild
from index.ingest.chunking import Chunk
from index.ingest.corpus import Document
from index.search.lexical import BM25Index, searched_title
from index.search.reader import FolderReader, Hits, IndexReader, Scores
from index.store import LoadedIndex

SENTENCE_BASE = 10_000


class RecordsReader(IndexReader):
    """An index as a database would hand it over: records by id, nothing by position."""

    def __init__(self, loaded: LoadedIndex) -> None:
        self.manifest = loaded.manifest
        self._chunks = {cid: loaded.chunks[r] for r, cid in enumerate(loaded.chunk_ids)}
        self._chunk_sids = {cid: [SENTENCE_BASE + s for s in loaded.chunk_sentence_ids[r]]
                            for r, cid in enumerate(loaded.chunk_ids)}
        self._vectors = dict(zip(loaded.chunk_ids, loaded.chunk_vectors()))
        self._sentences = {SENTENCE_BASE + i: (t, d, v) for i, (t, d, v) in
                           enumerate(zip(loaded.sentence_text, loaded.sentence_doc, loaded.sentence_vectors))}
        self._docs = {d.id: d for d in loaded.documents}
        self._order = [d.id for d in loaded.documents]
        self._spans = {d.id: loaded.sentence_span(d.id) for d in loaded.documents}
        self._dup = dict(loaded.duplicate_of)
        ids = sorted(self._chunks)
        self._ids = np.asarray(ids, dtype=np.int64)
        self._bm25 = BM25Index(ids, [self._chunks[i].text for i in ids], [searched_title(self._chunks[i]) for i in ids])
        self._pos = {cid: n for n, cid in enumerate(ids)}

    def count(self) -> int:
        return len(self._chunks)

    def rows_of(self, collections: Iterable[str] | None) -> np.ndarray | None:
        if collections is None:
            return None
        wanted = set(collections)
        return np.asarray([c for c in self._ids if self._docs[self._chunks[c].doc_id].collection in wanted],
                          dtype=np.int64)

    def dense_top(self, vector: np.ndarray, k: int, rows: np.ndarray | None = None) -> Hits:
        ids = self._ids if rows is None else np.asarray(rows, dtype=np.int64)
        scores = np.asarray([float(self._vectors[int(i)] @ vector) for i in ids])
        order = np.lexsort((ids, -scores))[:k]
        return [(int(ids[o]), float(scores[o])) for o in order]

    def dense_scores(self, vector: np.ndarray) -> Scores | None:
        return lambda rows: np.asarray([float(self._vectors[int(r)].astype(np.float64) @ vector) for r in rows])

    def lexical_top(self, terms: list[str], k: int, rows: np.ndarray | None = None) -> tuple[Hits, Scores]:
        scores = self._bm25.scores(terms)
        if rows is not None:
            masked = np.full(len(scores), -np.inf)
            keep = [self._pos[int(r)] for r in rows]
            masked[keep] = scores[keep]
            scores_for_hits, k = masked, min(k, len(rows))
        else:
            scores_for_hits = scores
        return self._bm25.hits(scores_for_hits, k), lambda chosen: scores[[self._pos[int(r)] for r in chosen]]

    @property
    def idf(self) -> Mapping[str, float]:
        return self._bm25.idf

    @property
    def idf_unknown(self) -> float:
        return self._bm25.idf_unknown

    def chunk(self, row: int) -> Chunk:
        return self._chunks[row]

    def chunk_id(self, row: int) -> int:
        return row

    def chunk_sentences(self, row: int) -> list[int]:
        return self._chunk_sids[row]

    def chunk_terms(self, row: int) -> frozenset[str]:
        return self._bm25.termsets[self._pos[row]]

    def sentence_vectors(self, sids: Sequence[int]) -> np.ndarray:
        return np.vstack([self._sentences[s][2] for s in sids])

    def sentence_text(self, sid: int) -> str:
        return self._sentences[sid][0]

    def sentence_doc(self, sid: int) -> tuple[str, int, int]:
        return self._sentences[sid][1]

    def sentence_terms(self, sid: int) -> frozenset[str]:
        from index.text import content_terms

        return frozenset(content_terms(self._sentences[sid][0]))

    def document(self, doc_id: str) -> Document | None:
        return self._docs.get(doc_id)

    def document_sentences(self, doc_id: str) -> range:
        start, count = self._spans[doc_id]
        return range(SENTENCE_BASE + start, SENTENCE_BASE + start + count)

    def duplicate_of(self, doc_id: str) -> str:
        return self._dup.get(doc_id, doc_id)

    def documents(self) -> list[Document]:
        return [self._docs[d] for d in self._order]

    def chunk_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self._chunks.values():
            out[c.doc_id] = out.get(c.doc_id, 0) + 1
        return out


QUESTIONS = ["Who vetoed the resolution?", "Why can't the ICC act on Syria?", "Where did Ayrault go after Moscow?",
             "How many members supported the resolution?", "What did the French foreign minister say to Lavrov?",
             "How much did the Valparaiso harbour bridge repairs cost?", "What is the capital of Peru?",
             "and why?"]


@pytest.fixture
def two_engines(article_corpus, fake_embedder) -> tuple[Engine, Engine]:
    from test_collections import BRIDGE, ORCHIDS

    root = article_corpus.root / "collections"
    for name, text in (("guild-1", BRIDGE), ("guild-2", ORCHIDS)):
        (root / name).mkdir(parents=True)
        (root / name / "story.md").write_text(text, encoding="utf-8")
    config = EngineConfig(corpus=article_corpus.corpus, index_dir=article_corpus.index, model=fake_embedder.name,
                          collections_dir=root)
    rebuild(config)
    folder = open_engine(config, auto_build=False)
    assert isinstance(folder.reader, FolderReader)
    return folder, Engine(RecordsReader(folder.index), fake_embedder, folder.settings)


@pytest.mark.parametrize("scope", [None, ("base",), ("base", "guild-1"), ("guild-2",)])
def test_another_reader_answers_as_the_folder_index_does(two_engines, scope) -> None:
    folder, records = two_engines
    for q in QUESTIONS:
        a, b = folder.ask(q, list_sources=5, collections=scope), records.ask(q, list_sources=5, collections=scope)
        assert (a.answer, a.abstained, a.answer_spans) == (b.answer, b.abstained, b.answer_spans), q
        assert a.confidence == pytest.approx(b.confidence, abs=1e-9), q
        assert [(s.doc_id, s.start, s.end, s.chunk_id, s.collection, s.also_reported_by) for s in a.sources] == \
            [(s.doc_id, s.start, s.end, s.chunk_id, s.collection, s.also_reported_by) for s in b.sources], q
    assert folder.documents() == records.documents() and folder.collections() == records.collections()
    assert folder.passages == records.passages
