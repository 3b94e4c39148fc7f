"""Changing an index: the writing half of the index seam (issue 19; the reading half is
index/search/reader.py).

A build decides *what* changes (index/build.py: which documents are new, changed or gone, their chunks,
sentences and vectors) and hands an ``IndexChange`` to an ``IndexWriter``, which applies all of it or
none: a reader sees the index before or after, never between. ``FolderWriter`` is the folder index: it
carries every unchanged document over from the previous index and swaps a new folder into place
(index/store/disk.py). A database writer applies the same change in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from index.errors import IndexCorruptError
from index.ingest.chunking import Chunk
from index.ingest.corpus import Document, text_key
from index.ingest.dedup import simhash
from index.store.disk import write_folder, write_index
from index.store.load import verify_files
from index.store.records import CATALOG, FORMAT_VERSION, LoadedIndex
from index.store.segments import (
    MAX_DELTAS,
    MERGE_FACTOR,
    REWRITE_SHARE,
    Placement,
    PriorIndex,
    Segment,
    delta_files,
    delta_name,
    read_delta,
    stack_rows,
    write_delta,
)
from index.store.vectors import VectorStore, new_store, store_class


@dataclass
class DocumentUpdate:
    """A new or changed document, ready to store: its chunks and sentence spans, and their vectors."""

    doc: Document
    chunks: list[Chunk]
    sentences: list[tuple[int, int]]
    chunk_vectors: np.ndarray
    sentence_vectors: np.ndarray


@dataclass
class IndexChange:
    """What a build changes. ``upserts`` replace any document of the same id; ``removed`` go; every other
    document of ``order`` (the new index's documents, in order) stays as it is. ``about`` describes the
    index (model, dimension, chunking, corpus...), ``skipped`` the source's files that hold no article."""

    order: list[str]
    upserts: list[DocumentUpdate] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    about: dict = field(default_factory=dict)
    scope: tuple[str, ...] | None = None  # the collections read ("skipped" is theirs); None: every one


@dataclass
class Written:
    """What the index holds once a change is applied."""

    documents: int
    chunks: int
    sentences: int


@runtime_checkable
class IndexWriter(Protocol):
    """Applies an ``IndexChange`` whole (see the module doc)."""

    def apply(self, change: IndexChange) -> Written: ...


class FolderWriter(IndexWriter):
    """The folder index. ``previous`` is the index the change is relative to (None for a first build): a
    ``PriorIndex`` (its manifest; a build's) lets the change go into a delta segment that leaves every other
    file as it is (index/store/segments.py); a ``LoadedIndex``, or a change the segments' rules say is due for
    it, writes the whole index as a new base, carrying the unchanged documents' records and vectors over."""

    def __init__(self, index_dir: Path, previous: LoadedIndex | PriorIndex | None, store_kind: str, dim: int,
                 options: dict | None = None) -> None:
        self.index_dir, self.store_kind, self.dim = Path(index_dir), store_kind, dim
        self.prior = previous if isinstance(previous, PriorIndex) else None
        self._loaded = previous if isinstance(previous, LoadedIndex) else None
        self.options = dict(options or {})  # the store's options, from settings; saved in the manifest

    @property
    def previous(self) -> LoadedIndex | None:
        """The previous index in memory (loaded, every file checked, only when the index is written whole)."""
        if self._loaded is None and self.prior is not None:
            self._loaded = self.prior.loaded
        return self._loaded

    def apply(self, change: IndexChange) -> Written:
        if self.prior is not None and self._loaded is None:
            written = DeltaWriter(self, self.prior).apply(change)
            if written is not None:
                return written
        fresh = {u.doc.id: u for u in change.upserts}
        store, ids, next_id = self._store(change, fresh)
        docs, chunks, entries, sentences = self._records(change, fresh, ids)
        counts = Written(len(docs), len(chunks), int(sentences.shape[0]))
        prev = self.previous
        manifest = {**change.about, "format_version": FORMAT_VERSION, "vector_store_options": self.options,
                    "catalog": CATALOG, "changes": {}, "placed": {}, "skipped": change.skipped,
                    "counts": {"documents": counts.documents, "chunks": counts.chunks, "sentences": counts.sentences},
                    "next_chunk_id": next_id, "base_chunks": counts.chunks, "base_stale_rows": 0, "deltas": [],
                    "next_delta": int(prev.manifest.get("next_delta", 1)) if prev else 1}
        write_index(self.index_dir, manifest, entries, docs, chunks, store, sentences)
        return counts

    def _kept(self, doc_id: str, fresh: dict[str, DocumentUpdate]) -> bool:
        return doc_id not in fresh and self.previous is not None and doc_id in self.previous.doc_by_id

    def _store(self, change: IndexChange,
               fresh: dict[str, DocumentUpdate]) -> tuple[VectorStore, dict[str, list[int]], int]:
        """The vector store (the previous one minus stale chunks, plus the new ones), each document's chunk ids
        and the next id to give (ids are never given twice: a store may still mark an old one deleted)."""
        prev, ids = self.previous, {}
        if prev is not None:
            kept = {d for d in change.order if self._kept(d, fresh)}
            ids = {d: [prev.chunk_ids[r] for r in prev.chunk_rows_by_doc.get(d, [])] for d in kept}
            if prev.manifest.get("vector_store_options", {}) == self.options:
                store = prev.store
                store.delete([prev.chunk_ids[r] for d, rows in prev.chunk_rows_by_doc.items() if d not in kept
                              for r in rows])
            else:  # other options: a new store, the kept vectors moved into it (nothing is embedded again)
                store = new_store(self.store_kind, self.dim, **self.options)
                moved = [i for d in change.order if d in kept for i in ids[d]]
                store.add(moved, prev.store.get(moved))
            next_id = max(max(prev.chunk_ids, default=-1) + 1, int(prev.manifest.get("next_chunk_id", 0)))
        else:
            store, next_id = new_store(self.store_kind, self.dim, **self.options), 0
        new_ids: list[int] = []
        vectors = []
        for doc_id in change.order:
            if doc_id in fresh:
                n = len(fresh[doc_id].chunks)
                ids[doc_id] = list(range(next_id, next_id + n))
                next_id += n
                new_ids.extend(ids[doc_id])
                vectors.append(fresh[doc_id].chunk_vectors)
        store.add(new_ids, np.vstack(vectors) if vectors else np.zeros((0, self.dim), np.float32))
        return store, ids, next_id

    def _records(self, change: IndexChange, fresh: dict[str, DocumentUpdate],
                 ids: dict[str, list[int]]) -> tuple[list[dict], list[dict], dict[str, dict], np.ndarray]:
        """documents.jsonl and chunks.jsonl records, the manifest's per-document entries and the sentence
        matrix, in ``order``. A kept document keeps the SimHash its entry recorded (hashing every article
        again made updates O(corpus)); its sentence rows are copied in a few contiguous blocks."""
        prev = self.previous
        recorded = prev.manifest.get("documents", {}) if prev is not None else {}
        docs, chunks, entries = [], [], {}
        pieces: list[tuple[np.ndarray, int, int]] = []
        sent_base = 0
        for doc_id in change.order:
            if doc_id in fresh:
                u = fresh[doc_id]
                doc, doc_chunks, spans, hashed, key = u.doc, u.chunks, u.sentences, None, None
                pieces.append((u.sentence_vectors, 0, len(spans)))
            else:
                assert prev is not None  # a document is kept only from a previous index
                doc = prev.doc_by_id[doc_id]
                doc_chunks = [prev.chunks[r] for r in prev.chunk_rows_by_doc.get(doc_id, [])]
                spans = list(prev.doc_sentences[doc_id])
                start, count = prev.sentence_span(doc_id)
                pieces.append((prev.sentence_vectors, start, start + count))
                hashed = (recorded.get(doc_id) or {}).get("simhash")
                key = (recorded.get(doc_id) or {}).get("text_key")
            chunks.extend(_chunk_records(doc_chunks, ids[doc_id], spans, sent_base))
            sent_base += len(spans)
            docs.append(_document_record(doc, spans))
            entries[doc_id] = _manifest_entry(doc, len(doc_chunks), len(spans), hashed, key)
        return docs, chunks, entries, stack_rows(pieces, self.dim)


def _chunk_records(chunks: list[Chunk], ids: list[int], spans: list[tuple[int, int]], base: int) -> list[dict]:
    row_of = {span: base + i for i, span in enumerate(spans)}
    out = []
    for chunk, cid in zip(chunks, ids):
        rec = chunk.to_dict()
        rec["id"] = cid
        rec["sentence_ids"] = [row_of[(s[0], s[1])] for s in chunk.sentences]
        out.append(rec)
    return out


def _document_record(d: Document, spans: list[tuple[int, int]]) -> dict:
    return {"id": d.id, "title": d.title, "text": d.text, "path": d.path, "url": d.url, "date": d.date,
            "fingerprint": d.fingerprint, "meta": d.meta, "collection": d.collection,
            "sentences": [list(s) for s in spans]}


def _manifest_entry(d: Document, n_chunks: int, n_sentences: int, hashed: str | None = None,
                    key: str | None = None) -> dict:
    """A document's line in the manifest: what a build plans from and describes without reading the records
    (``hashed``, ``key``: the SimHash and text key already recorded for it)."""
    return {"fingerprint": d.fingerprint, "title": d.title, "chunks": n_chunks, "sentences": n_sentences,
            "collection": d.collection, "url": d.url, "date": d.date, "outlet": (d.meta or {}).get("outlet"),
            "simhash": hashed if isinstance(hashed, str) else format(simhash(d.text), "016x"),
            "text_key": key if isinstance(key, str) else text_key(d.text)}


class DeltaWriter:
    """A change written as one delta segment (index/store/segments.py), every other file hard-linked, and a
    manifest of what changed since the base: the work is the change's, not the index's."""

    def __init__(self, folder: FolderWriter, prior: PriorIndex) -> None:
        self.folder, self.prior, self.manifest = folder, prior, prior.manifest

    def apply(self, change: IndexChange) -> Written | None:
        """The change applied; None when the index is due to be written whole instead (an index from before
        the catalog, other store options, or past the segments' rules)."""
        m, index_dir = self.manifest, self.folder.index_dir
        if "catalog" not in m or m.get("vector_store_options", {}) != self.folder.options:
            return None
        seq = int(m.get("next_delta", 1))
        name = delta_name(seq)
        segment, entries = self._segment(change)
        gone = set(m["documents"]).difference(change.order)
        counts, stale = self._counts(entries, gone)
        deltas = [dict(d) for d in m.get("deltas", [])]
        if self._rewrite_due(stale, deltas, segment.rows, counts["chunks"]):
            return None
        segment, dropped = self._merge(deltas, segment, entries, gone)
        changes, placement = dict(m["changes"]), Placement(m["placed"])
        for doc_id in gone:
            if doc_id in placement.placed:  # new since the base: forgotten
                placement.unplace(doc_id)
                changes.pop(doc_id, None)
            else:  # the base's: marked removed
                changes[doc_id] = None
        for d in segment.docs:  # the change's documents and the ones merged into this delta
            changes[d["id"]] = {**(entries.get(d["id"]) or m["documents"][d["id"]]), "segment": name}
        self._place(change, changes, placement)
        if segment.docs:
            deltas.append({"name": name, "rows": segment.rows})
        manifest = {**change.about, "format_version": FORMAT_VERSION, "vector_store_options": self.folder.options,
                    "catalog": CATALOG, "changes": changes, "placed": placement.placed, "skipped": change.skipped,
                    "counts": counts,
                    "next_chunk_id": int(m["next_chunk_id"]) + sum(len(u.chunks) for u in change.upserts),
                    "base_chunks": int(m["base_chunks"]), "base_stale_rows": stale, "deltas": deltas,
                    "next_delta": seq + 1}
        carried = {f: digest for f, digest in m["files"].items() if f not in dropped}
        write_folder(index_dir, manifest, lambda tmp: write_delta(tmp, name, segment) if segment.docs else [],
                     carried)
        return Written(counts["documents"], counts["chunks"], counts["sentences"])

    def _segment(self, change: IndexChange) -> tuple[Segment, dict[str, dict]]:
        """The change's new and changed documents as a segment and their entries (the segment's name is added
        when the entries go into the manifest)."""
        next_id = int(self.manifest["next_chunk_id"])
        docs, chunks, entries = [], [], {}
        sentences: list[tuple[np.ndarray, int, int]] = []
        vectors: list[tuple[np.ndarray, int, int]] = []
        rows = 0
        for u in change.upserts:
            ids = list(range(next_id, next_id + len(u.chunks)))
            next_id += len(u.chunks)
            docs.append(_document_record(u.doc, u.sentences))
            chunks.extend(_chunk_records(u.chunks, ids, u.sentences, rows))
            rows += len(u.sentences)
            sentences.append((u.sentence_vectors, 0, len(u.sentences)))
            vectors.append((u.chunk_vectors, 0, len(u.chunks)))
            entries[u.doc.id] = _manifest_entry(u.doc, len(u.chunks), len(u.sentences))
        dim = self.folder.dim
        return Segment(docs, chunks, stack_rows(sentences, dim), stack_rows(vectors, dim)), entries

    def _counts(self, entries: dict[str, dict], gone: set[str]) -> tuple[dict[str, int], int]:
        """The index's counts once the change is in (the manifest's, minus what leaves, plus what comes), and
        the base's rows it no longer uses."""
        m = self.manifest
        counts = {k: int(m["counts"][k]) for k in ("documents", "chunks", "sentences")}
        stale = int(m.get("base_stale_rows", 0))
        for doc_id in gone | entries.keys():
            old = m["documents"].get(doc_id)
            if old is not None:
                counts["documents"] -= 1
                counts["chunks"] -= int(old["chunks"])
                counts["sentences"] -= int(old["sentences"])
                stale += 0 if old.get("segment") else int(old["chunks"])
        for e in entries.values():
            counts["documents"] += 1
            counts["chunks"] += int(e["chunks"])
            counts["sentences"] += int(e["sentences"])
        return counts, stale

    def _merge(self, deltas: list[dict], segment: Segment, entries: dict[str, dict],
               gone: set[str]) -> tuple[Segment, list[str]]:
        """Fold the newest deltas into this one as the segments' rules say; the merged deltas' files."""
        m, index_dir = self.manifest, self.folder.index_dir
        dropped: list[str] = []
        while deltas and (len(deltas) >= MAX_DELTAS or deltas[-1]["rows"] <= MERGE_FACTOR * segment.rows):
            older = deltas.pop()
            # a merge writes what it reads again: a damaged delta must not be carried into the new one
            files = delta_files(older["name"])
            bad = verify_files(index_dir, {"files": {f: m["files"].get(f, {}) for f in files}})
            if bad:
                raise IndexCorruptError(index_dir, f"{', '.join(bad)} do not match their checksums")
            old = read_delta(index_dir, older["name"])
            live = [d["id"] for d in old.docs if d["id"] not in entries and d["id"] not in gone
                    and m["documents"].get(d["id"], {}).get("segment") == older["name"]]
            segment = old.select(live) + segment
            dropped.extend(files)
        return segment, dropped

    def _place(self, change: IndexChange, changes: dict[str, dict | None], placement: Placement) -> None:
        """Place each document new since the base after the one before it in the change's order."""
        m = self.manifest
        new = [u.doc.id for u in change.upserts if u.doc.id not in m["documents"]
               and u.doc.id not in placement.placed and m["changes"].get(u.doc.id, {}) is not None]
        if not new:
            return
        at = {d: i for i, d in enumerate(change.order)} if len(new) > 16 else None
        for doc_id in sorted(new, key=at.__getitem__ if at else change.order.index):
            i = at[doc_id] if at else change.order.index(doc_id)
            placement.place(doc_id, change.order[i - 1] if i else None)

    def _rewrite_due(self, stale: int, deltas: list[dict], new_rows: int, total: int) -> bool:
        """Whether the index should be written whole: the deltas' rows and the base's stale ones pass
        ``REWRITE_SHARE`` of the base, or the store would become another kind of index once the deltas join it."""
        base = int(self.manifest["base_chunks"])
        if stale + sum(d["rows"] for d in deltas) + new_rows > REWRITE_SHARE * base:
            return True
        return store_class(self.folder.store_kind).changes_kind(base, total, **self.folder.options)
