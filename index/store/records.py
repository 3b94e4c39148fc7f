"""The index's records in memory: the manifest's constants, a loaded index's documents, chunks, vectors and
per-sentence tables, and how the corpus differs from what an index was built from.

Text to vectors (the embedder), vectors to ids (the vector store) and ids to documents (JSONL records)
are kept apart, as in txtai, and the manifest beside them says which model, vector store, chunking and
corpus made them, so an index is self-describing and a mismatched one is refused (index/store/load.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from index.ingest.chunking import Chunk
from index.ingest.corpus import Document
from index.ingest.dedup import groups, simhash
from index.store.segments import is_delta_file, rows_by_doc, spans_of
from index.store.vectors import VectorStore, store_files
from index.text import content_terms

#: 2: delta segments (index/store/segments.py); 3: the base's document entries in ``catalog.json``, the manifest
#: holding only what changed since (an update writes what it changed, not a line per article). An index of an
#: older format is read as it is and its next update writes it whole in this one.
FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
MANIFEST = "manifest.json"
CATALOG = "catalog.json"
RECORD_FILES = ("manifest.json", "documents.jsonl", "chunks.jsonl", "sentences.npy", CATALOG)
DEFAULT_STORE = "faiss"


def is_index_file(name: str) -> bool:
    """Whether an index folder may hold a file of this name (its own records, a store's, a delta's)."""
    return name in index_files() or is_delta_file(name)


def index_files() -> set[str]:
    """Every file name an index folder may hold (records plus any registered store's files)."""
    names = set(RECORD_FILES)
    for files in store_files().values():
        names.update(files)
    return names



@dataclass
class Staleness:
    """How the corpus differs from what the index was built from (document ids)."""

    added: list[str]
    changed: list[str]
    removed: list[str]

    @property
    def stale(self) -> bool:
        return bool(self.added or self.changed or self.removed)


class LoadedIndex:
    """An index in memory: manifest, documents, chunks (with their store ids), the vector store and the
    sentence vectors, plus the per-sentence tables retrieval and answerers read."""

    def __init__(self, path: Path, manifest: dict, documents: list[Document], doc_sentences: dict[str, list],
                 chunks: list[Chunk], chunk_sentence_ids: list[list[int]], store: VectorStore,
                 sentence_vectors: np.ndarray, chunk_ids: list[int] | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self.documents = documents
        self.doc_sentences = doc_sentences
        self.chunks = chunks
        self.chunk_sentence_ids = chunk_sentence_ids
        self.store = store
        self.sentence_vectors = sentence_vectors
        self.chunk_ids = list(chunk_ids) if chunk_ids is not None else list(range(len(chunks)))
        self.row_of_id = {cid: row for row, cid in enumerate(self.chunk_ids)}
        self.doc_by_id = {d.id: d for d in documents}
        # Sentences of every document in index order: text and (doc, start, end).
        self.sentence_text: list[str] = []
        self.sentence_doc: list[tuple[str, int, int]] = []
        for doc in documents:
            for a, b in doc_sentences[doc.id]:
                self.sentence_text.append(doc.text[a:b])
                self.sentence_doc.append((doc.id, a, b))
        self._termsets: list[frozenset[str] | None] = [None] * len(self.sentence_text)
        self._rows_cache: dict[frozenset[str], np.ndarray] = {}

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def chunk_vectors(self) -> np.ndarray:
        """Every chunk's vector in row order, read back from the store (tests and benchmarks)."""
        return self.store.get(self.chunk_ids)

    def sentence_termset(self, sid: int) -> frozenset[str]:
        """Content words of one sentence, computed on first use (most sentences are never candidates)."""
        ts = self._termsets[sid]
        if ts is None:
            ts = frozenset(content_terms(self.sentence_text[sid]))
            self._termsets[sid] = ts
        return ts

    @cached_property
    def duplicate_of(self) -> dict[str, str]:
        """``{document id: the first document of its near-duplicate group}`` (index/ingest/dedup.py)."""
        recorded = self.manifest.get("documents", {})
        hashes = {}
        for d in self.documents:
            h = (recorded.get(d.id) or {}).get("simhash")
            hashes[d.id] = int(h, 16) if isinstance(h, str) else simhash(d.text)  # older indexes: computed now
        return groups(hashes)

    @cached_property
    def rows_by_collection(self) -> dict[str, np.ndarray]:
        """``{collection: its chunks' rows}``, ascending (what a filtered search may return)."""
        out: dict[str, list[int]] = {}
        for row, chunk in enumerate(self.chunks):
            doc = self.doc_by_id.get(chunk.doc_id)
            out.setdefault(doc.collection if doc is not None else "base", []).append(row)
        return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}

    def rows_of(self, collections: Iterable[str] | None) -> np.ndarray | None:
        """The rows of the chunks in ``collections`` (sorted), or None when that is every chunk (no filter).
        Kept per set of collections: a server asks with the same set every time."""
        if collections is None:
            return None
        wanted = frozenset(collections)
        if wanted >= set(self.rows_by_collection):
            return None
        rows = self._rows_cache.get(wanted)
        if rows is None:
            parts = [rows for name, rows in self.rows_by_collection.items() if name in wanted]
            rows = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
            if len(self._rows_cache) >= 256:  # many servers: keep the memory bounded
                self._rows_cache.clear()
            self._rows_cache[wanted] = rows
        return rows

    @cached_property
    def chunk_id_array(self) -> np.ndarray:
        """``chunk_ids`` as an array (a filter turns rows into store ids with one indexing step)."""
        return np.asarray(self.chunk_ids, dtype=np.int64)

    @cached_property
    def chunk_rows_by_doc(self) -> dict[str, list[int]]:
        return rows_by_doc(chunk.doc_id for chunk in self.chunks)

    def sentence_span(self, doc_id: str) -> tuple[int, int]:
        """(first row, count) of a document's sentences: they are contiguous, in index order."""
        return self._sentence_spans[doc_id]

    @cached_property
    def _sentence_spans(self) -> dict[str, tuple[int, int]]:
        return spans_of((d.id, len(self.doc_sentences[d.id])) for d in self.documents)

    def staleness(self, fingerprints: dict[str, str]) -> Staleness:
        """Compare a source's fingerprints now with the ones the manifest recorded."""
        return compare_fingerprints(built_fingerprints(self.manifest), fingerprints, self.manifest.get("skipped", {}))


def built_fingerprints(manifest: dict) -> dict[str, str]:
    return {k: v["fingerprint"] for k, v in manifest.get("documents", {}).items()}


def compare_fingerprints(built: dict[str, str], now: dict[str, str],
                         skipped: dict[str, str] | None = None) -> Staleness:
    skipped = skipped or {}
    # Files skipped at build time (empty, binary) are not "new" until their bytes change.
    added = sorted(k for k in now if k not in built and skipped.get(k) != now[k])
    changed = sorted(k for k in now if k in built and built[k] != now[k])
    removed = sorted(k for k in built if k not in now)
    return Staleness(added, changed, removed)
