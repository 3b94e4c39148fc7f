"""The index as answering reads it: a small seam a database can fill (issue 19).

Retrieval, the engine and the answerers read an index only through ``IndexReader``. A chunk is named by its
*row*, an int the reader chooses (a position in the folder index, a chunk id in a database), and so is a
sentence (``sid``). What is read per question is small and asked for by id (the candidates' chunks, their
sentences and vectors), so a reader may fetch it on demand; the two top-k searches (dense and lexical)
and the word weights (IDF) are the reader's own. ``FolderReader`` is the folder index loaded in memory
(``LoadedIndex`` plus BM25 built at load), unchanged in behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import Protocol, runtime_checkable

import numpy as np

from index.ingest.chunking import Chunk
from index.ingest.corpus import Document
from index.search.lexical import BM25Index, searched_title
from index.store import LoadedIndex

Hits = list[tuple[int, float]]
Scores = Callable[[Sequence[int]], np.ndarray]  # exact scores of chosen rows


@runtime_checkable
class IndexReader(Protocol):
    """What answering reads from an index (see the module doc)."""

    manifest: dict

    def count(self) -> int:
        """Chunks in the index."""

    def rows_of(self, collections: Iterable[str] | None) -> np.ndarray | None:
        """The rows of these collections' chunks (None: no filter, every row)."""

    # ------------------------------------------------------------------------------ the two searches

    def dense_top(self, vector: np.ndarray, k: int, rows: np.ndarray | None = None) -> Hits:
        """The ``k`` best ``(row, inner product)``, among ``rows`` only when given (exactly)."""

    def dense_scores(self, vector: np.ndarray) -> Scores | None:
        """Exact inner products for chosen rows, or None when the store cannot give them."""

    def lexical_top(self, terms: list[str], k: int, rows: np.ndarray | None = None) -> tuple[Hits, Scores]:
        """BM25's ``k`` best ``(row, score)`` (among ``rows`` when given) and the scores of chosen rows."""

    @property
    def idf(self) -> Mapping[str, float]:
        """Word weights of the corpus's content words (coverage and confidence use them)."""

    @property
    def idf_unknown(self) -> float:
        """The weight of a word the corpus never uses."""

    # ------------------------------------------------------------------------------------- records

    def chunk(self, row: int) -> Chunk: ...

    def chunk_id(self, row: int) -> int:
        """The chunk's id in the store (stable across updates; what a Source names)."""

    def chunk_sentences(self, row: int) -> list[int]: ...

    def chunk_terms(self, row: int) -> frozenset[str]: ...

    def sentence_vectors(self, sids: Sequence[int]) -> np.ndarray: ...

    def sentence_text(self, sid: int) -> str: ...

    def sentence_doc(self, sid: int) -> tuple[str, int, int]:
        """(document id, start, end) of a sentence."""

    def sentence_terms(self, sid: int) -> frozenset[str]: ...

    def document(self, doc_id: str) -> Document | None: ...

    def document_sentences(self, doc_id: str) -> range:
        """The sids of a document's sentences, in order (they are consecutive)."""

    def duplicate_of(self, doc_id: str) -> str:
        """The first document of its near-duplicate group (itself when it has none)."""

    def documents(self) -> list[Document]:
        """Every document, in index order."""

    def chunk_counts(self) -> dict[str, int]:
        """``{document id: its chunks}``."""


class FolderReader(IndexReader):
    """The folder index in memory: ``LoadedIndex``, with BM25 over its chunks built at load."""

    def __init__(self, index: LoadedIndex) -> None:
        self.index = index
        self.manifest = index.manifest
        self.lexical = BM25Index(range(len(index.chunks)), [c.text for c in index.chunks],
                                 [searched_title(c) for c in index.chunks])

    def count(self) -> int:
        return len(self.index.chunks)

    def rows_of(self, collections: Iterable[str] | None) -> np.ndarray | None:
        return self.index.rows_of(collections)

    def dense_top(self, vector: np.ndarray, k: int, rows: np.ndarray | None = None) -> Hits:
        store, idx = self.index.store, self.index
        hits = store.search(vector, k) if rows is None else store.search_within(vector, k, idx.chunk_id_array[rows])
        return [(idx.row_of_id[i], s) for i, s in hits]

    def dense_scores(self, vector: np.ndarray) -> Scores | None:
        store, ids = self.index.store, self.index.chunk_ids
        if not store.scores:
            return None
        return lambda rows: store.score(vector, [ids[r] for r in rows])

    def lexical_top(self, terms: list[str], k: int, rows: np.ndarray | None = None) -> tuple[Hits, Scores]:
        scores = self.lexical.scores(terms)  # every chunk's, once: the list and the fill
        if rows is None:
            return self.lexical.hits(scores, k), lambda chosen: scores[list(chosen)]
        masked = np.full(len(scores), -np.inf)
        masked[rows] = scores[rows]
        return self.lexical.hits(masked, min(k, len(rows))), lambda chosen: scores[list(chosen)]

    @property
    def idf(self) -> Mapping[str, float]:
        return self.lexical.idf

    @property
    def idf_unknown(self) -> float:
        return self.lexical.idf_unknown

    def chunk(self, row: int) -> Chunk:
        return self.index.chunks[row]

    def chunk_id(self, row: int) -> int:
        return self.index.chunk_ids[row]

    def chunk_sentences(self, row: int) -> list[int]:
        return self.index.chunk_sentence_ids[row]

    def chunk_terms(self, row: int) -> frozenset[str]:
        return self.lexical.termsets[row]

    def sentence_vectors(self, sids: Sequence[int]) -> np.ndarray:
        return self.index.sentence_vectors[sids]

    def sentence_text(self, sid: int) -> str:
        return self.index.sentence_text[sid]

    def sentence_doc(self, sid: int) -> tuple[str, int, int]:
        return self.index.sentence_doc[sid]

    def sentence_terms(self, sid: int) -> frozenset[str]:
        return self.index.sentence_termset(sid)

    def document(self, doc_id: str) -> Document | None:
        return self.index.doc_by_id.get(doc_id)

    def document_sentences(self, doc_id: str) -> range:
        start, count = self.index.sentence_span(doc_id)
        return range(start, start + count)

    def duplicate_of(self, doc_id: str) -> str:
        return self.index.duplicate_of.get(doc_id, doc_id)

    def documents(self) -> list[Document]:
        return self.index.documents

    @cached_property
    def _chunk_counts(self) -> dict[str, int]:
        return {d: len(rows) for d, rows in self.index.chunk_rows_by_doc.items()}

    def chunk_counts(self) -> dict[str, int]:
        return self._chunk_counts
