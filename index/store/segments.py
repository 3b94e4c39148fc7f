"""The folder index in segments: a base written whole, then small delta segments, so that adding an article to
a large index writes only that article (issue 19, item 5).

A full build writes the base: ``documents.jsonl``, ``chunks.jsonl``, ``sentences.npy`` and the vector store's
files. An update writes one delta segment (``delta-NNNNNN.documents.jsonl``, ``.chunks.jsonl``,
``.sentences.npy``, ``.vectors.npy``: the same records, the chunk vectors as an array) holding only its new
and changed documents; every other file of the index is hard-linked into the new folder and keeps the
checksum the manifest recorded, so it is neither rewritten nor hashed again. The manifest says which segment
holds each live document (``segment``: "" for the base): a record elsewhere is a stale copy, skipped when the
index is loaded, and its chunk ids are marked deleted in the store.

Segments are merged as they grow (``FolderWriter``, index/store/writer.py): the newest deltas are folded
together while the one before is at most ``MERGE_FACTOR`` times the newer (a binary counter: a few deltas,
each row merged a logarithmic number of times), and the whole index is written as a new base once the deltas
and the base's stale rows pass ``REWRITE_SHARE`` of the base, so the base is rewritten only after a fixed share
of new rows (its cost, spread over those articles, does not grow with the index).

The base's per-document entries (what a build plans from: fingerprints, counts, text keys) are in
``catalog.json``, written with the base and hard-linked by every update; the manifest holds only what changed
since the base (``changes``: an entry, or null for a removed document) and where each document new since the
base goes (``placed``: the document it follows, so the merged order is a full build's). An update writes its
delta and that small manifest: at a million chunks the manifest of a line per article took most of an update's
time (docs/scale.md). Reading the index still reads the catalog (one ``json.loads`` in C).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from index.errors import IndexCorruptError
from index.ingest.corpus import Document, text_key

#: The deltas' and the base's stale rows, as a share of the base's rows, past which an update writes a new base.
REWRITE_SHARE = 0.1
#: The newest delta is folded into the one before while that one has at most this many times its rows.
MERGE_FACTOR = 2
#: Never more deltas than this (a merge is forced).
MAX_DELTAS = 12
DELTA_PARTS = ("documents.jsonl", "chunks.jsonl", "sentences.npy", "vectors.npy")
_DELTA_FILE = re.compile(r"^delta-\d{6,}\.(documents\.jsonl|chunks\.jsonl|sentences\.npy|vectors\.npy)$")


def file_digest(path: Path) -> dict:
    """Size and SHA-256 of one file (hashlib reads it in C at about a gigabyte a second)."""
    with open(path, "rb") as fh:
        return {"bytes": os.fstat(fh.fileno()).st_size, "sha256": hashlib.file_digest(fh, "sha256").hexdigest()}


def is_delta_file(name: str) -> bool:
    return bool(_DELTA_FILE.match(name))


def delta_name(seq: int) -> str:
    return f"delta-{seq:06d}"


def delta_files(name: str) -> list[str]:
    return [f"{name}.{part}" for part in DELTA_PARTS]


@dataclass
class Segment:
    """One segment's records as stored: document records (with their sentence spans), chunk records (``id``,
    ``sentence_ids``: rows of this segment's sentence matrix), the sentence matrix and, for a delta, the chunk
    vectors in chunk-record order."""

    docs: list[dict]
    chunks: list[dict]
    sentences: np.ndarray
    vectors: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.chunks)

    def span(self, doc_id: str) -> tuple[int, int]:
        """(first sentence row, count) of a document of this segment: its sentences are contiguous."""
        return self._spans[doc_id]

    @cached_property
    def _spans(self) -> dict[str, tuple[int, int]]:
        return spans_of((d["id"], len(d["sentences"])) for d in self.docs)

    def doc(self, doc_id: str) -> dict:
        return self.docs[self._doc_rows[doc_id]]

    @cached_property
    def _doc_rows(self) -> dict[str, int]:
        return {d["id"]: i for i, d in enumerate(self.docs)}

    @cached_property
    def chunk_rows(self) -> dict[str, list[int]]:
        return rows_by_doc(c["doc_id"] for c in self.chunks)

    def select(self, doc_ids: Iterable[str]) -> Segment:
        """A segment of just these documents (in this order), sentence rows renumbered."""
        docs, chunks, rows, base = [], [], [], 0
        pieces: list[tuple[np.ndarray, int, int]] = []
        for doc_id in doc_ids:
            start, count = self.span(doc_id)
            docs.append(self.doc(doc_id))
            pieces.append((self.sentences, start, start + count))
            for r in self.chunk_rows.get(doc_id, []):
                c = dict(self.chunks[r])
                c["sentence_ids"] = [base + int(s) - start for s in c["sentence_ids"]]
                chunks.append(c)
                rows.append(r)
            base += count
        sentences = stack_rows(pieces, self.sentences.shape[1] if self.sentences.ndim == 2 else 0)
        vectors = self.vectors[np.asarray(rows, dtype=np.int64)] if self.vectors is not None else None
        return Segment(docs, chunks, sentences, vectors)

    def __add__(self, other: Segment) -> Segment:
        """This segment's documents, then ``other``'s (sentence rows of ``other`` shifted)."""
        shift = int(self.sentences.shape[0])
        moved = [{**c, "sentence_ids": [shift + int(s) for s in c["sentence_ids"]]} for c in other.chunks]
        vectors = None
        if self.vectors is not None and other.vectors is not None:
            vectors = np.concatenate([self.vectors, other.vectors]).astype(np.float32, copy=False)
        return Segment(self.docs + other.docs, self.chunks + moved,
                       np.concatenate([self.sentences, other.sentences]).astype(np.float32, copy=False), vectors)


def spans_of(counts: Iterable[tuple[str, int]]) -> dict[str, tuple[int, int]]:
    """``{document id: (first row, count)}`` of documents whose rows follow each other in this order."""
    out, offset = {}, 0
    for doc_id, n in counts:
        out[doc_id] = (offset, n)
        offset += n
    return out


def rows_by_doc(doc_ids: Iterable[str]) -> dict[str, list[int]]:
    """``{document id: its rows}`` of rows given by their document ids (a document's chunks)."""
    out: dict[str, list[int]] = {}
    for row, doc_id in enumerate(doc_ids):
        out.setdefault(doc_id, []).append(row)
    return out


def stack_rows(pieces: Iterable[tuple[np.ndarray, int, int]], dim: int) -> np.ndarray:
    """One float32 matrix of rows ``a:b`` of each piece's matrix, in order; rows that continue the previous
    piece's in the same matrix are copied with it as one block (a kept run of documents is one copy)."""
    blocks: list[list] = []
    for matrix, a, b in pieces:
        if blocks and blocks[-1][0] is matrix and blocks[-1][2] == a:
            blocks[-1][2] = b
        elif b > a:
            blocks.append([matrix, a, b])
    if not blocks:
        return np.zeros((0, dim), np.float32)
    return np.concatenate([m[a:b] for m, a, b in blocks]).astype(np.float32, copy=False)


def read_records(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def write_records(path: Path, records: Iterable[dict]) -> None:
    """A JSONL file of records (documents.jsonl, chunks.jsonl and a delta's)."""
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def read_delta(folder: Path, name: str) -> Segment:
    """A delta segment read back as records (a merge writes them again; check its files first)."""
    files = delta_files(name)
    docs, chunks = read_records(folder / files[0]), read_records(folder / files[1])
    sentences = np.load(folder / files[2], allow_pickle=False)
    vectors = np.load(folder / files[3], allow_pickle=False)
    if vectors.shape[0] != len(chunks) or sentences.shape[0] != sum(len(d["sentences"]) for d in docs):
        raise IndexCorruptError(folder, f"{name} is inconsistent")
    return Segment(docs, chunks, sentences, vectors)


def write_delta(folder: Path, name: str, segment: Segment) -> list[str]:
    """Write a delta's four files into ``folder``; their names."""
    files = delta_files(name)
    write_records(folder / files[0], segment.docs)
    write_records(folder / files[1], segment.chunks)
    np.save(folder / files[2], np.asarray(segment.sentences, dtype=np.float32), allow_pickle=False)
    assert segment.vectors is not None
    np.save(folder / files[3], np.asarray(segment.vectors, dtype=np.float32), allow_pickle=False)
    return files


# ---------------------------------------------------------------------------------------------- the catalog


def merged_entries(catalog: dict[str, dict], changes: dict[str, dict | None],
                   placed: dict[str, str | None]) -> dict[str, dict]:
    """Every live document's entry in the index's order: the catalog's (the base's order) with ``changes``
    applied, each placed document right after the one it follows (a removed document still anchors the ones
    placed after it; each document has at most one placed follower: ``place`` keeps it so)."""
    follower = {after: doc_id for doc_id, after in placed.items()}
    out: dict[str, dict] = {}
    emitted = 0

    def emit(doc_id: str | None) -> None:
        nonlocal emitted
        while doc_id in follower:
            doc_id, emitted = follower[doc_id], emitted + 1
            if emitted > len(placed):
                raise ValueError("placed documents follow each other in a loop")
            entry = changes.get(doc_id)
            if entry is not None:
                out[doc_id] = entry

    emit(None)
    for doc_id, entry in catalog.items():
        now = changes.get(doc_id, entry)  # None: removed
        if now is not None:
            out[doc_id] = now
        emit(doc_id)
    if emitted != len(placed):  # a document placed after one neither in the catalog nor placed
        raise ValueError("a placed document follows no document of the index")
    return out


class Placement:
    """``placed`` (a document new since the base -> the document it follows) with its inverse, kept so that
    each document has at most one placed follower."""

    def __init__(self, placed: dict[str, str | None]) -> None:
        self.placed = dict(placed)
        self._follower = {after: doc_id for doc_id, after in self.placed.items()}

    def place(self, doc_id: str, after: str | None) -> None:
        """Put a new document right after ``after`` (None: first): the one placed there before now follows it."""
        before = self._follower.get(after)
        if before is not None and before != doc_id:
            self.placed[before] = doc_id
            self._follower[doc_id] = before
        self.placed[doc_id] = after
        self._follower[after] = doc_id

    def unplace(self, doc_id: str) -> None:
        """Remove a placed document: the one placed after it takes its place."""
        after = self.placed.pop(doc_id)
        nxt = self._follower.pop(doc_id, None)
        if nxt is not None:
            self.placed[nxt] = after
            self._follower[after] = nxt
        else:
            del self._follower[after]


# ------------------------------------------------------------------------------------ the prior index


#: What a manifest entry must hold for a build to plan from the manifest alone (older indexes are loaded).
_ENTRY_KEYS = frozenset(("fingerprint", "chunks", "sentences", "text_key", "collection"))


class PriorIndex:
    """The index a build updates, known from its manifest: which documents it holds, their fingerprints,
    chunk counts and text keys. Nothing else is read unless the writer must rewrite the whole index
    (``loaded``, every file checked)."""

    def __init__(self, path: Path, manifest: dict, loader: Callable[[], object]) -> None:
        self.path, self.manifest, self._loader = Path(path), manifest, loader

    @cached_property
    def loaded(self):  # -> LoadedIndex (import cycle)
        return self._loader()

    @cached_property
    def planned_from_manifest(self) -> bool:
        """True when the manifest alone says all a build needs (written by this format's writer)."""
        return "catalog" in self.manifest or "next_chunk_id" in self.manifest and all(
            e.keys() >= _ENTRY_KEYS for e in self.manifest["documents"].values())

    @cached_property
    def documents(self) -> list[Document]:
        """The indexed documents, in order. From the manifest they are stand-ins (no text, no sentences): a
        build only carries them over by id."""
        if not self.planned_from_manifest:
            return list(self.loaded.documents)
        return [Document(id=i, title=e.get("title") or "", text="", url=e.get("url"), date=e.get("date"),
                         fingerprint=e["fingerprint"], collection=e["collection"])
                for i, e in self.manifest["documents"].items()]

    @cached_property
    def doc_by_id(self) -> dict[str, Document]:
        return {d.id: d for d in self.documents}

    def text_key(self, doc_id: str) -> str:
        entry = self.manifest["documents"][doc_id]
        return entry["text_key"] if "text_key" in entry else text_key(self.loaded.doc_by_id[doc_id].text)

    def chunk_count(self, doc_id: str) -> int:
        return int(self.manifest["documents"].get(doc_id, {}).get("chunks", 0))
