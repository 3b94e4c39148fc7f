"""Reading an index back: the manifest, its compatibility with the model, every file against its checksum.

Every failure is a typed HeraldError (missing, damaged, made by another model), never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from index.errors import IndexCorruptError, IndexMismatchError, IndexMissingError, IndexPathError, UnknownBackendError
from index.ingest.chunking import Chunk
from index.ingest.corpus import Document
from index.store.records import CATALOG, DEFAULT_STORE, FORMAT_VERSION, MANIFEST, READABLE_FORMATS, LoadedIndex
from index.store.segments import delta_files, file_digest, merged_entries, rows_by_doc, spans_of, stack_rows
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
        if isinstance(manifest, dict) and "catalog" in manifest:  # format 3: the base's entries, then the changes
            catalog = json.loads((index_dir / CATALOG).read_text(encoding="utf-8"))
            parts = (catalog, manifest["changes"], manifest["placed"])
            if not all(isinstance(part, dict) for part in parts):
                raise TypeError("the catalog, changes or placed documents are not objects")
            manifest["documents"] = merged_entries(*parts)
        # Everything later code indexes into without a check: a half-written or hand-edited manifest
        # must be "damaged, rebuild", never a KeyError traceback when describing or building.
        if not (isinstance(manifest, dict) and isinstance(manifest["model"], str)
                and isinstance(manifest["documents"], dict) and isinstance(manifest["counts"], dict)):
            raise TypeError("manifest is not an object with model, documents and counts")
        int(manifest["dim"]), manifest["format_version"], manifest["counts"]["chunks"]
        for entry in manifest["documents"].values():
            if not (isinstance(entry, dict) and isinstance(entry["fingerprint"], str)):
                raise TypeError("a document entry is not an object with a fingerprint")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
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
        parts = {"": _read_part(index_dir, "", np.load(index_dir / "sentences.npy", allow_pickle=False,
                                                          mmap_mode="r" if names else None))}
        for name in names:
            files = [index_dir / f for f in delta_files(name)]
            parts[name] = _read_part(index_dir, f"{name}.", np.load(files[2], allow_pickle=False),
                                     np.load(files[3], allow_pickle=False))
        store = load_store(kind, index_dir, int(manifest["dim"]), **manifest.get("vector_store_options", {}))
        live = _assemble(manifest["documents"], parts, store)
    except UnknownBackendError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        first_line = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise IndexCorruptError(index_dir, f"{type(exc).__name__}: {first_line}") from exc
    n_sent = sum(len(v) for v in live.spans.values())
    if (len(store) != len(live.chunks) or live.sentences.shape != (n_sent, int(manifest["dim"]))
            or len(set(live.ids)) != len(live.ids)):
        raise IndexCorruptError(index_dir, "inconsistent files")
    return LoadedIndex(index_dir, manifest, live.documents, live.spans, live.chunks, live.sentence_ids, store,
                       live.sentences, live.ids)


@dataclass
class _Part:
    """A segment's records as objects (index/store/segments.py), parsed line by line as they are read."""

    documents: list[Document]
    spans: dict[str, list]  # document id -> its sentence spans
    chunks: list[Chunk]
    ids: list[int]
    sentence_ids: list[list[int]]  # each chunk's sentence rows in ``sentences``
    sentences: np.ndarray
    vectors: np.ndarray | None = None  # a delta's chunk vectors, in chunk order

    def sentence_spans(self) -> dict[str, tuple[int, int]]:
        """Each document's (first sentence row, count)."""
        return spans_of((d.id, len(self.spans[d.id])) for d in self.documents)

    def rows_by_doc(self) -> dict[str, list[int]]:
        return rows_by_doc(c.doc_id for c in self.chunks)


def _read_part(folder: Path, prefix: str, sentences: np.ndarray, vectors: np.ndarray | None = None) -> _Part:
    part = _Part([], {}, [], [], [], sentences, vectors)
    with open(folder / f"{prefix}documents.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            spans = [tuple(s) for s in d.pop("sentences")]
            doc = Document(**d)
            part.documents.append(doc)
            part.spans[doc.id] = spans
    with open(folder / f"{prefix}chunks.jsonl", encoding="utf-8") as fh:
        for row, line in enumerate(fh):
            d = json.loads(line)
            part.sentence_ids.append([int(i) for i in d.pop("sentence_ids")])
            part.ids.append(int(d.pop("id", row)))
            part.chunks.append(Chunk.from_dict(d))
    return part


def _assemble(entries: dict[str, dict], parts: dict[str, _Part], store: VectorStore) -> _Part:
    """The live documents of every segment in the manifest's order (index/store/segments.py), their chunks and
    sentence rows renumbered into one matrix; the store gets the deltas' live vectors, and the base's stale
    chunk ids are marked deleted."""
    base = parts[""]
    if len(parts) == 1 and [d.id for d in base.documents] == list(entries):  # a whole base: nothing moves
        return replace(base, sentences=np.asarray(base.sentences))
    out = _Part([], {}, [], [], [], base.sentences)
    spans = {name: p.sentence_spans() for name, p in parts.items()}
    rows_by_doc = {name: p.rows_by_doc() for name, p in parts.items()}
    index_of = {name: {d.id: i for i, d in enumerate(p.documents)} for name, p in parts.items()}
    pieces: list[tuple[np.ndarray, int, int]] = []
    added: dict[str, list[int]] = {}
    row = 0
    for doc_id, entry in entries.items():
        name = entry.get("segment", "")
        part, (start, count) = parts[name], spans[name][doc_id]
        out.documents.append(part.documents[index_of[name][doc_id]])
        out.spans[doc_id] = part.spans[doc_id]
        pieces.append((part.sentences, start, start + count))
        for r in rows_by_doc[name].get(doc_id, []):
            out.chunks.append(part.chunks[r])
            own = part.sentence_ids[r]  # rows unmoved (the base before any change): the same list
            out.sentence_ids.append(own if row == start else [row + s - start for s in own])
            out.ids.append(part.ids[r])
            if name:
                added.setdefault(name, []).append(r)
        row += count
    live = set(out.ids)
    stale = [i for i in base.ids if i not in live]
    if stale:
        store.mark_deleted(stale)
    for name, rows in added.items():
        vectors = parts[name].vectors
        assert vectors is not None
        store.add([parts[name].ids[r] for r in rows], vectors[np.asarray(rows, dtype=np.int64)])
    out.sentences = stack_rows(pieces, int(base.sentences.shape[1]) if base.sentences.ndim == 2 else 0)
    return out
