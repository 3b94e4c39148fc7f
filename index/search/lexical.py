"""The lexical side of retrieval: BM25 over chunk texts (each with its document's title), with the same
``search -> [(id, score)]`` shape as a vector store so fusion treats both alike.

Built in memory when an index is loaded (a second or two for tens of thousands of chunks), so it never
goes stale against the chunk records it reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from index.ingest.chunking import Chunk
from index.text import content_terms

Hits = list[tuple[int, float]]


class BM25Index:
    """bm25s (k1=1.2, b=0.75) over the stemmed content words of each chunk, plus document frequencies
    for the IDF-weighted coverage that sentence scoring and confidence use.

    ``titles`` (one per text, may be empty) are searched by BM25 with their text but kept out of
    ``termsets`` and ``idf``: a question naming an article's title finds it, while coverage, sentence
    scores and confidence stay those of the text that is quoted (a title is not a sentence to quote).
    """

    def __init__(self, ids: Sequence[int], texts: Sequence[str], titles: Sequence[str] | None = None) -> None:
        import bm25s

        self.ids = np.asarray(ids, dtype=np.int64)
        terms = [content_terms(t) for t in texts]
        self.termsets = [frozenset(t) for t in terms]
        searched = [content_terms(h) + t if h else t for h, t in zip(titles, terms)] if titles else terms
        self._bm25 = bm25s.BM25(k1=1.2, b=0.75)
        self._bm25.index([t or [""] for t in searched], show_progress=False)
        df: dict[str, int] = {}
        for ts in self.termsets:
            for t in ts:
                df[t] = df.get(t, 0) + 1
        n = max(1, len(terms))
        self.idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self.idf_unknown = math.log(1 + (n + 0.5) / 0.5)

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, q_terms: list[str]) -> np.ndarray:
        """Raw BM25 score of every chunk, in ``ids`` order."""
        if not q_terms or not len(self.ids):
            return np.zeros(len(self.ids))
        return np.asarray(self._bm25.get_scores(q_terms), dtype=np.float64)

    def search(self, q_terms: list[str], k: int) -> Hits:
        """The ``k`` best ``(id, bm25)`` pairs, best first (ties by position)."""
        return self.hits(self.scores(q_terms), k)

    def hits(self, scores: np.ndarray, k: int) -> Hits:
        """The ``k`` best of scores already computed (hybrid retrieval needs the list and every score)."""
        return [(int(self.ids[r]), float(scores[r])) for r in top(scores, k)]


def searched_title(chunk: Chunk) -> str:
    """The title BM25 searches with a chunk: its document's, unless the chunk already begins with it (a
    ``.txt`` whose first line is a sentence keeps that line in the body; counting it twice would not help)."""
    title = " ".join(chunk.title.split())
    return "" if " ".join(chunk.text[:len(title) + 8].split()).casefold().startswith(title.casefold()) else title


def top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first (ties by index)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]
