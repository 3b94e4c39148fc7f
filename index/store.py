"""The index on disk: the vector store's files, chunk and document records, sentence vectors, and a
manifest that describes them.

Text to vectors (the embedder), vectors to ids (the vector store) and ids to documents (JSONL records)
are kept apart, as in txtai, and the manifest beside them says which model, vector store, chunking and
corpus made them, so an index is self-describing and a mismatched one is refused rather than silently
answering nonsense. Writes go to a temporary folder renamed into place, so a failed build never harms the
old index.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from index.chunking import Chunk
from index.corpus import Document
from index.errors import (BuildBusyError, HeraldError, IndexCorruptError, IndexMismatchError, IndexMissingError, IndexPathError,
                          IndexWriteError, UnknownBackendError)
from index.vectors import VECTOR_STORES, VectorStore, load_store

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RECORD_FILES = ("manifest.json", "documents.jsonl", "chunks.jsonl", "sentences.npy")
DEFAULT_STORE = "faiss"


def index_files() -> set[str]:
    """Every file name an index folder may hold (records plus any registered store's files)."""
    names = set(RECORD_FILES)
    for kind in VECTOR_STORES:
        factory = VECTOR_STORES._factories[kind]
        names.update(getattr(factory, "FILES", (getattr(factory, "FILE", ""),)))
    return names - {""}



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
        self._units: dict[int, list[tuple[int, int]]] = {}

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def chunk_vectors(self) -> np.ndarray:
        """Every chunk's vector in row order, read back from the store (tests and benchmarks)."""
        get = getattr(self.store, "get", None)
        if get is None:
            raise TypeError(f"the {self.store.kind} store cannot return stored vectors")
        return get(self.chunk_ids)

    def sentence_termset(self, sid: int) -> frozenset[str]:
        """Content words of one sentence, computed on first use (most sentences are never candidates)."""
        from index.text import content_terms

        ts = self._termsets[sid]
        if ts is None:
            ts = frozenset(content_terms(self.sentence_text[sid]))
            self._termsets[sid] = ts
        return ts

    def answer_units(self, fragment_chars: int) -> list[tuple[int, int]]:
        """(first, last) sentence of the answer unit of every sentence (see answerers.answer_units)."""
        units = self._units.get(fragment_chars)
        if units is None:
            from index.answerers import answer_units

            units = []
            for doc in self.documents:
                spans = self.doc_sentences[doc.id]
                units.extend(answer_units([doc.text[a:b] for a, b in spans], len(units), fragment_chars))
            self._units[fragment_chars] = units
        return units

    @cached_property
    def duplicate_of(self) -> dict[str, str]:
        """``{document id: the first document of its near-duplicate group}`` (index/dedup.py)."""
        from index.dedup import groups, simhash

        recorded = self.manifest.get("documents", {})
        hashes = {}
        for d in self.documents:
            h = (recorded.get(d.id) or {}).get("simhash")
            hashes[d.id] = int(h, 16) if isinstance(h, str) else simhash(d.text)  # older indexes: computed now
        return groups(hashes)

    @cached_property
    def chunk_rows_by_doc(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for row, chunk in enumerate(self.chunks):
            out.setdefault(chunk.doc_id, []).append(row)
        return out

    @cached_property
    def sentence_rows_by_doc(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        offset = 0
        for d in self.documents:
            n = len(self.doc_sentences[d.id])
            out[d.id] = list(range(offset, offset + n))
            offset += n
        return out

    def staleness(self, fingerprints: dict[str, str]) -> Staleness:
        """Compare a source's fingerprints now with the ones the manifest recorded."""
        return compare_fingerprints(built_fingerprints(self.manifest), fingerprints, self.manifest.get("skipped", {}))


def built_fingerprints(manifest: dict) -> dict[str, str]:
    return {k: v["fingerprint"] for k, v in manifest.get("documents", {}).items()}


def compare_fingerprints(built: dict[str, str], now: dict[str, str], skipped: dict[str, str] | None = None) -> Staleness:
    skipped = skipped or {}
    # Files skipped at build time (empty, binary) are not "new" until their bytes change.
    added = sorted(k for k in now if k not in built and skipped.get(k) != now[k])
    changed = sorted(k for k in now if k in built and built[k] != now[k])
    removed = sorted(k for k in built if k not in now)
    return Staleness(added, changed, removed)


# ------------------------------------------------------------------------------------------ loading


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
    embedder's fingerprint, index.embed.weights_id): its vectors would be meaningless."""
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
            if path.stat().st_size != want.get("bytes"):
                bad.append(name)
            elif hashes and file_digest(path)["sha256"] != want.get("sha256"):
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
        raise IndexCorruptError(index_dir, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}") from exc
    n_sent = sum(len(v) for v in doc_sentences.values())
    if (len(store) != len(chunks) or sentence_vectors.shape != (n_sent, int(manifest["dim"]))
            or len(set(chunk_ids)) != len(chunk_ids)):
        raise IndexCorruptError(index_dir, "inconsistent files")
    return LoadedIndex(index_dir, manifest, documents, doc_sentences, chunks, chunk_sentence_ids, store,
                       sentence_vectors, chunk_ids)


# ----------------------------------------------------------------------------------------- writing


def _journal(index_dir: Path) -> Path:
    return index_dir.parent / f".{index_dir.name}.swap"


def _recover_interrupted_swap(index_dir: Path) -> None:
    """If a crash fell between the two renames of a swap, put the previous index back.

    Only a swap's journal (written before the first rename, removed after the second) says a swap was
    interrupted: an ``.old-*`` folder left because it could not be deleted must never bring a stale index
    back after the user removed the index on purpose. Called by builds, under the build lock; readers
    never change the disk.
    """
    journal = _journal(index_dir)
    if not journal.exists():
        return
    try:
        old = index_dir.parent / journal.read_text(encoding="utf-8").strip()
    except OSError:
        return
    if (not os.path.lexists(index_dir) and old.name.startswith(f".{index_dir.name}.old-")
            and old.is_dir() and not old.is_symlink()):
        os.replace(old, index_dir)
        log.warning("restored the previous index at %s after an interrupted swap", index_dir)
    journal.unlink(missing_ok=True)


def _discard(path: Path) -> bool:
    """Delete a folder of ours, making read-only parts writable first; True when it is gone.

    Never follows a link: a link named like our leftovers is removed itself, and only folders inside
    ``path`` are ever made writable (never its parent, never what a link points to)."""
    if os.path.islink(path) or not os.path.isdir(path):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return not os.path.lexists(path)
    top = os.path.abspath(path)

    def make_writable(func, p, _exc) -> None:
        try:
            parent = os.path.dirname(os.path.abspath(p))
            if (parent == top or parent.startswith(top + os.sep)) and not os.path.islink(parent):
                os.chmod(parent, 0o700)
            if not os.path.islink(p):
                os.chmod(p, 0o700 if os.path.isdir(p) else 0o600)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=make_writable)
    return not os.path.lexists(path)


def clean_leftovers(index_dir: Path) -> list[str]:
    """Remove what interrupted builds left beside the index (temporary folders, set-aside old indexes).

    Call only under the build lock: then no other build is writing any of them. Returns the names left
    that could not be removed (logged).
    """
    index_dir = Path(index_dir)
    if not index_dir.parent.is_dir():
        return []
    _recover_interrupted_swap(index_dir)
    stuck = []
    for p in sorted(index_dir.parent.glob(f".{index_dir.name}.tmp-*")) + sorted(
            index_dir.parent.glob(f".{index_dir.name}.old-*")):
        if not _discard(p):
            stuck.append(p.name)
            log.warning("could not remove %s (left by an earlier build)", p)
    return stuck


@contextlib.contextmanager
def build_lock(index_dir: Path, on_wait: Callable[[], None] | None = None, wait: bool = True) -> Iterator[None]:
    """One build at a time per index, across processes (an flock on ``.<index>.lock`` beside it).

    A second builder calls ``on_wait`` and waits, or with ``wait=False`` gets BuildBusyError at once.
    The lock is released by the OS when the process dies, so a killed build never blocks the next one.
    """
    import fcntl

    index_dir = Path(index_dir)
    try:
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        fh = open(index_dir.parent / f".{index_dir.name}.lock", "a+b")
    except OSError as exc:
        raise IndexWriteError(index_dir, getattr(exc, "strerror", None) or str(exc)) from exc
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise BuildBusyError(index_dir) from None
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()  # closing releases the lock


def check_replaceable(index_dir: Path) -> None:
    """A build replaces ``index_dir`` wholesale, so it must be an index (or nothing): a mistyped
    index folder must never delete a user's folder."""
    index_dir = Path(index_dir)
    if not os.path.lexists(index_dir):
        return
    if index_dir.is_symlink() or not index_dir.is_dir():
        raise IndexPathError("not_folder", index_dir)
    known = index_files()
    foreign = sorted(p.name for p in index_dir.iterdir() if p.name not in known)
    if foreign:
        raise IndexPathError("foreign", index_dir, foreign)


def write_index(index_dir: Path, manifest: dict, docs: list[dict], chunks: list[dict], store: VectorStore,
                sentences: np.ndarray) -> None:
    """Write everything into a fresh folder beside ``index_dir``, then swap it into place."""

    def cannot_write(exc: BaseException) -> HeraldError:
        why = getattr(exc, "strerror", None) or (str(exc).splitlines()[0][:160] if str(exc) else "") or type(exc).__name__
        return IndexWriteError(index_dir, why)

    try:
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = _fresh_dir(index_dir.parent, f".{index_dir.name}.tmp-")
    except OSError as exc:
        raise cannot_write(exc) from exc
    try:
        with open(tmp / "documents.jsonl", "w", encoding="utf-8") as fh:
            for rec in docs:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
            for rec in chunks:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        written = store.save(tmp)
        np.save(tmp / "sentences.npy", sentences, allow_pickle=False)
        # A checksum of every file, so a flipped bit is "damaged, rebuild", not confident nonsense.
        manifest = {**manifest, "files": {name: file_digest(tmp / name)
                                          for name in (*RECORD_FILES[1:], *written)}}
        # The manifest goes last: a folder without one is never mistaken for an index.
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        for name in (*RECORD_FILES, *written):
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        _swap_into_place(tmp, index_dir)
    except (OSError, RuntimeError) as exc:  # disk full, permissions, a concurrent build; faiss raises RuntimeError
        raise cannot_write(exc) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _fresh_dir(parent: Path, prefix: str) -> Path:
    """A new, uniquely named folder. Unlike tempfile.mkdtemp (mode 0700) it gets the umask's usual
    mode, so the index stays readable by, say, a bot running as another user."""
    while True:
        path = parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def _swap_into_place(tmp: Path, index_dir: Path) -> None:
    """Replace ``index_dir`` with ``tmp``: two renames with a journal, so the next build puts the old
    index back if we die between them."""
    if index_dir.exists():
        old = index_dir.parent / f".{index_dir.name}.old-{time.time_ns()}-{os.getpid()}"
        journal = _journal(index_dir)
        journal.write_text(old.name, encoding="utf-8")
        os.replace(index_dir, old)
        os.replace(tmp, index_dir)
        journal.unlink(missing_ok=True)
        if not _discard(old):
            log.warning("could not remove the previous index at %s; the next build will try again", old)
    else:
        os.replace(tmp, index_dir)
