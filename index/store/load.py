"""Reading an index back: the manifest, its compatibility with the model, every file against its checksum.

Every failure is a typed HeraldError (missing, damaged, made by another model), never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from index.errors import IndexCorruptError, IndexMismatchError, IndexMissingError, IndexPathError, UnknownBackendError
from index.ingest.chunking import Chunk
from index.ingest.corpus import Document
from index.store.records import DEFAULT_STORE, FORMAT_VERSION, MANIFEST, READABLE_FORMATS, LoadedIndex
from index.store.segments import Segment, file_digest, read_delta, read_records
from index.store.vectors import VectorStore, load_store

__all__ = ["read_manifest", "check_compatible", "file_digest", "verify_files", "load_index"]


def read_manifest(index_dir: Path) -> dict:
    index_dir = Path(index_dir)
    path = index_dir / MANIFEST
    if index_dir.exists() and not index_dir.is_dir():
        raise IndexPathError("not_folder", index_dir)
    if not path.exists():
        raise IndexMissingError(index_dir)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        # Everything later code indexes into without a check: a half-written or hand-edited manifest
        # must be "damaged, rebuild", never a KeyError traceback when describing or building.
        if not (isinstance(manifest, dict) and isinstance(manifest["model"], str)
                and isinstance(manifest["documents"], dict) and isinstance(manifest["counts"], dict)):
            raise TypeError("manifest is not an object with model, documents and counts")
        int(manifest["dim"]), manifest["format_version"], manifest["counts"]["chunks"]
        for entry in manifest["documents"].values():
            if not (isinstance(entry, dict) and isinstance(entry["fingerprint"], str)):
                raise TypeError("a document entry is not an object with a fingerprint")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptError(index_dir, f"manifest unreadable ({type(exc).__name__})") from exc
    return manifest


def check_compatible(manifest: dict, model: str | None = None, dim: int | None = None,
                     weights: str | None = None) -> None:
    """Refuse an index made by another format, model, dimension or model weights (``weights``: the
    embedder's fingerprint, index.embed.models.weights_id): its vectors would be meaningless."""
    if manifest.get("format_version") not in READABLE_FORMATS:
        raise IndexMismatchError("format", manifest.get("format_version"), FORMAT_VERSION)
    if model is not None and manifest["model"] != model:
        raise IndexMismatchError("model", manifest["model"], model)
    if dim is not None and int(manifest["dim"]) != dim:
        raise IndexMismatchError("dim", int(manifest["dim"]), dim)
    if weights and manifest.get("model_weights") and manifest["model_weights"] != weights:
        raise IndexMismatchError("weights", manifest["model_weights"], weights)


def verify_files(index_dir: Path, manifest: dict, hashes: bool = True) -> list[str]:
    """Files whose size (and, with ``hashes``, checksum) differs from the manifest's record, or that
    are missing; empty when all match. Indexes written before checksums have none to check."""
    bad = []
    for name, want in manifest.get("files", {}).items():
        path = Path(index_dir) / name
        try:
            wrong_size = path.stat().st_size != want.get("bytes")
            if wrong_size or (hashes and file_digest(path)["sha256"] != want.get("sha256")):
                bad.append(name)
        except OSError:
            bad.append(name)
    return bad


def load_index(index_dir: Path, model: str | None = None, dim: int | None = None,
               weights: str | None = None) -> LoadedIndex:
    """Load and check an index (every file against its checksum); every failure is a typed HeraldError."""
    index_dir = Path(index_dir)
    manifest = read_manifest(index_dir)
    check_compatible(manifest, model, dim, weights)
    bad = verify_files(index_dir, manifest)
    if bad:
        raise IndexCorruptError(index_dir, f"{', '.join(bad)} do not match their checksums")
    kind = manifest.get("vector_store", DEFAULT_STORE)
    try:
        names = [str(d["name"]) for d in manifest.get("deltas", [])]
        # With deltas the base's sentence rows are gathered into a new matrix: map the file, copy once.
        base = Segment(read_records(index_dir / "documents.jsonl"), read_records(index_dir / "chunks.jsonl"),
                       np.load(index_dir / "sentences.npy", allow_pickle=False, mmap_mode="r" if names else None))
        segments = {"": base, **{name: read_delta(index_dir, name) for name in names}}
        store = load_store(kind, index_dir, int(manifest["dim"]), **manifest.get("vector_store_options", {}))
        parts = _assemble(manifest["documents"], segments, store)
    except UnknownBackendError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        first_line = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise IndexCorruptError(index_dir, f"{type(exc).__name__}: {first_line}") from exc
    documents, doc_sentences, chunks, chunk_sentence_ids, sentence_vectors, chunk_ids = parts
    n_sent = sum(len(v) for v in doc_sentences.values())
    if (len(store) != len(chunks) or sentence_vectors.shape != (n_sent, int(manifest["dim"]))
            or len(set(chunk_ids)) != len(chunk_ids)):
        raise IndexCorruptError(index_dir, "inconsistent files")
    return LoadedIndex(index_dir, manifest, documents, doc_sentences, chunks, chunk_sentence_ids, store,
                       sentence_vectors, chunk_ids)


def _assemble(entries: dict[str, dict], segments: dict[str, Segment], store: VectorStore) -> tuple:
    """The live documents of every segment in the manifest's order (index/store/segments.py), their chunks and
    sentence rows renumbered into one matrix; the store gets the deltas' live vectors, and the base's stale
    chunk ids are marked deleted."""
    base = segments[""]
    if len(segments) == 1 and [d["id"] for d in base.docs] == list(entries):  # a whole base: nothing moves
        chunk_ids = [int(c.get("id", row)) for row, c in enumerate(base.chunks)]
        return (*_objects(base.docs, base.chunks), [[int(i) for i in c["sentence_ids"]] for c in base.chunks],
                np.asarray(base.sentences), chunk_ids)
    docs, chunks, chunk_sentence_ids, chunk_ids, pieces = [], [], [], [], []
    added: dict[str, list[int]] = {}
    row = 0
    for doc_id, entry in entries.items():
        name = entry.get("segment", "")
        seg = segments[name]
        start, count = seg.span(doc_id)
        docs.append(seg.doc(doc_id))
        pieces.append((name, start, start + count))
        for r in seg.chunk_rows.get(doc_id, []):
            c = seg.chunks[r]
            chunks.append(c)
            chunk_sentence_ids.append([row + int(s) - start for s in c["sentence_ids"]])
            chunk_ids.append(int(c.get("id", r)))
            if name:
                added.setdefault(name, []).append(r)
        row += count
    live = set(chunk_ids)
    stale = [int(c.get("id", r)) for r, c in enumerate(base.chunks) if int(c.get("id", r)) not in live]
    if stale:
        mark_deleted(store, stale)
    for name, rows in added.items():
        seg = segments[name]
        assert seg.vectors is not None
        store.add([int(seg.chunks[r]["id"]) for r in rows], seg.vectors[np.asarray(rows, dtype=np.int64)])
    sentences = gather(segments, pieces, int(base.sentences.shape[1]) if base.sentences.ndim == 2 else 0)
    return (*_objects(docs, chunks), chunk_sentence_ids, sentences, chunk_ids)


def _objects(docs: list[dict], chunks: list[dict]) -> tuple[list[Document], dict[str, list], list[Chunk]]:
    documents, doc_sentences = [], {}
    for d in docs:
        fields = {k: v for k, v in d.items() if k != "sentences"}
        doc = Document(**fields)
        documents.append(doc)
        doc_sentences[doc.id] = [tuple(s) for s in d["sentences"]]
    return documents, doc_sentences, [Chunk.from_dict(c) for c in chunks]


def mark_deleted(store: VectorStore, ids: list[int]) -> None:
    """Stale ids out of a loaded store: marked where the store can (no graph rebuild while loading)."""
    marker = getattr(store, "mark_deleted", None)
    (marker or store.delete)(ids)


def gather(segments: dict[str, Segment], pieces: list[tuple[str, int, int]], dim: int) -> np.ndarray:
    """One float32 matrix of the pieces' sentence rows (adjacent pieces of a segment copied as one block)."""
    blocks: list[list] = []
    for name, a, b in pieces:
        if blocks and blocks[-1][0] == name and blocks[-1][2] == a:
            blocks[-1][2] = b
        elif b > a:
            blocks.append([name, a, b])
    if not blocks:
        return np.zeros((0, dim), np.float32)
    return np.concatenate([segments[n].sentences[a:b] for n, a, b in blocks]).astype(np.float32, copy=False)
