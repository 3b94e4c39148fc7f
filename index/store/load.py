"""Reading an index back: the manifest, its compatibility with the model, every file against its checksum.

Every failure is a typed HeraldError (missing, damaged, made by another model), never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from index.errors import IndexCorruptError, IndexMismatchError, IndexMissingError, IndexPathError, UnknownBackendError
from index.ingest.chunking import Chunk
from index.ingest.corpus import Document
from index.store.records import DEFAULT_STORE, FORMAT_VERSION, MANIFEST, LoadedIndex
from index.store.vectors import load_store


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
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError("format", manifest.get("format_version"), FORMAT_VERSION)
    if model is not None and manifest["model"] != model:
        raise IndexMismatchError("model", manifest["model"], model)
    if dim is not None and int(manifest["dim"]) != dim:
        raise IndexMismatchError("dim", int(manifest["dim"]), dim)
    if weights and manifest.get("model_weights") and manifest["model_weights"] != weights:
        raise IndexMismatchError("weights", manifest["model_weights"], weights)


def file_digest(path: Path) -> dict:
    """Size and SHA-256 of one file (hashlib reads it in C at about a gigabyte a second)."""
    with open(path, "rb") as fh:
        return {"bytes": os.fstat(fh.fileno()).st_size, "sha256": hashlib.file_digest(fh, "sha256").hexdigest()}


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
        documents: list[Document] = []
        doc_sentences: dict[str, list] = {}
        with open(index_dir / "documents.jsonl", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                sentences = [tuple(s) for s in d.pop("sentences")]
                doc = Document(**d)
                documents.append(doc)
                doc_sentences[doc.id] = sentences
        chunks: list[Chunk] = []
        chunk_ids: list[int] = []
        chunk_sentence_ids: list[list[int]] = []
        with open(index_dir / "chunks.jsonl", encoding="utf-8") as fh:
            for row, line in enumerate(fh):
                d = json.loads(line)
                chunk_sentence_ids.append([int(i) for i in d.pop("sentence_ids")])
                chunk_ids.append(int(d.pop("id", row)))
                chunks.append(Chunk.from_dict(d))
        store = load_store(kind, index_dir, int(manifest["dim"]), **manifest.get("vector_store_options", {}))
        sentence_vectors = np.load(index_dir / "sentences.npy", allow_pickle=False)
    except UnknownBackendError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        first_line = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise IndexCorruptError(index_dir, f"{type(exc).__name__}: {first_line}") from exc
    n_sent = sum(len(v) for v in doc_sentences.values())
    if (len(store) != len(chunks) or sentence_vectors.shape != (n_sent, int(manifest["dim"]))
            or len(set(chunk_ids)) != len(chunk_ids)):
        raise IndexCorruptError(index_dir, "inconsistent files")
    return LoadedIndex(index_dir, manifest, documents, doc_sentences, chunks, chunk_sentence_ids, store,
                       sentence_vectors, chunk_ids)
