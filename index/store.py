"""The on-disk index: FAISS vectors, chunk and document records, and a manifest that describes them.

Text to vectors (the embedder), vectors to ids (FAISS) and ids to documents (JSONL records) are kept
apart, as in txtai, and the manifest beside them says which model, chunking and corpus made them, so an
index is self-describing and a mismatched one is refused rather than silently answering nonsense.
Builds go to a temporary folder that is renamed into place, so a failed build never harms the old index.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from index.chunking import Chunk, ChunkSettings, chunk_document, document_sentences
from index.corpus import CLEANER_VERSION, Document, corpus_fingerprints, load_corpus
from index.embed import Embedder
from index.errors import CorpusError, HeraldError, IndexCorruptError, IndexMismatchError, IndexMissingError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES = ("manifest.json", "documents.jsonl", "chunks.jsonl", "index.faiss", "sentences.npy")

Progress = Callable[[int, int], None]


@dataclass
class BuildReport:
    """What a build did, for the operator."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    documents: int = 0
    chunks: int = 0
    embedded_texts: int = 0
    seconds: float = 0.0
    full_rebuild: bool = False

    @property
    def changed_anything(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.full_rebuild)


@dataclass
class Staleness:
    """How the corpus on disk differs from what the index was built from."""

    added: list[str]
    changed: list[str]
    removed: list[str]

    @property
    def stale(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def describe(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in (("new", self.added), ("changed", self.changed),
                                               ("removed", self.removed)) if v]
        return ", ".join(parts) if parts else "up to date"


class LoadedIndex:
    """An index in memory: manifest, documents, chunks, the FAISS index and sentence vectors."""

    def __init__(self, path: Path, manifest: dict, documents: list[Document], doc_sentences: dict[str, list],
                 chunks: list[Chunk], chunk_sentence_ids: list[list[int]], faiss_index, sentence_vectors: np.ndarray):
        self.path = path
        self.manifest = manifest
        self.documents = documents
        self.doc_sentences = doc_sentences
        self.chunks = chunks
        self.chunk_sentence_ids = chunk_sentence_ids
        self.faiss = faiss_index
        self.sentence_vectors = sentence_vectors
        self.doc_by_id = {d.id: d for d in documents}

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def chunk_vectors(self) -> np.ndarray:
        """All chunk vectors (exact copies: the index is a flat one)."""
        if self.faiss.ntotal == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.faiss.reconstruct_n(0, self.faiss.ntotal)

    def staleness(self, corpus_dir: Path) -> Staleness:
        """Compare the corpus on disk with the fingerprints the manifest recorded."""
        built = {k: v["fingerprint"] for k, v in self.manifest.get("documents", {}).items()}
        return compare_fingerprints(built, corpus_fingerprints(corpus_dir), self.manifest.get("skipped", {}))


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
    _recover_interrupted_swap(index_dir)
    path = index_dir / MANIFEST
    if index_dir.exists() and not index_dir.is_dir():
        raise HeraldError(f"index path {index_dir} is not a folder; pass a new or empty folder with --index "
                          f"or HERALD_INDEX")
    if not path.exists():
        raise IndexMissingError(f"no index at {index_dir}; build one with `herald build`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        # Everything later code indexes into without a check: a half-written or hand-edited manifest
        # must be "damaged, rebuild", never a KeyError traceback in `herald info` or `herald build`.
        if not (isinstance(manifest, dict) and isinstance(manifest["model"], str)
                and isinstance(manifest["documents"], dict) and isinstance(manifest["counts"], dict)):
            raise TypeError("manifest is not an object with model, documents and counts")
        int(manifest["dim"]), manifest["format_version"], manifest["counts"]["chunks"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptError(
            f"index manifest {path} is unreadable ({type(exc).__name__}); rebuild it with `herald build`"
        ) from exc
    return manifest


def check_compatible(manifest: dict, model: str | None = None, dim: int | None = None) -> None:
    """Refuse an index made by another format, model or dimension: its vectors would be meaningless."""
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(
            f"index format {manifest.get('format_version')} is not this Herald's ({FORMAT_VERSION}); "
            f"rebuild it with `herald build`"
        )
    if model is not None and manifest["model"] != model:
        raise IndexMismatchError(
            f"the index was built with model {manifest['model']!r}, not {model!r}; rebuild it with "
            f"`herald build --model {model}` or set HERALD_MODEL={manifest['model']}"
        )
    if dim is not None and int(manifest["dim"]) != dim:
        raise IndexMismatchError(
            f"the index holds {manifest['dim']}-dimensional vectors but the model gives {dim}; "
            f"rebuild it with `herald build`"
        )


def load_index(index_dir: Path, model: str | None = None, dim: int | None = None) -> LoadedIndex:
    """Load and check an index; every failure is a HeraldError that says how to fix it."""
    import faiss

    index_dir = Path(index_dir)
    manifest = read_manifest(index_dir)
    check_compatible(manifest, model, dim)
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
        chunk_sentence_ids: list[list[int]] = []
        with open(index_dir / "chunks.jsonl", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                chunk_sentence_ids.append([int(i) for i in d.pop("sentence_ids")])
                chunks.append(Chunk.from_dict(d))
        faiss_index = faiss.read_index(str(index_dir / "index.faiss"))
        sentence_vectors = np.load(index_dir / "sentences.npy", allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexCorruptError(
            f"index at {index_dir} is damaged ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            f"rebuild it with `herald build`"
        ) from exc
    n_sent = sum(len(v) for v in doc_sentences.values())
    if (faiss_index.ntotal != len(chunks) or faiss_index.d != int(manifest["dim"])
            or sentence_vectors.shape != (n_sent, int(manifest["dim"]))):
        raise IndexCorruptError(f"index at {index_dir} is inconsistent; rebuild it with `herald build`")
    return LoadedIndex(index_dir, manifest, documents, doc_sentences, chunks, chunk_sentence_ids,
                       faiss_index, sentence_vectors)


# ----------------------------------------------------------------------------------------- building


def _recover_interrupted_swap(index_dir: Path) -> None:
    """If a crash fell between the two renames of a swap, put the previous index back."""
    if index_dir.exists():
        return
    olds = sorted(index_dir.parent.glob(f".{index_dir.name}.old-*")) if index_dir.parent.exists() else []
    if olds:
        os.replace(olds[-1], index_dir)
        log.warning("restored the previous index at %s after an interrupted swap", index_dir)


def check_replaceable(index_dir: Path) -> None:
    """A build replaces ``index_dir`` wholesale, so it must be an index (or nothing): a mistyped
    ``--index ~/Documents`` must never delete a user's folder."""
    _recover_interrupted_swap(index_dir)
    if not os.path.lexists(index_dir):
        return
    if index_dir.is_symlink() or not index_dir.is_dir():
        raise HeraldError(f"index path {index_dir} is not a folder; pass a new or empty folder with --index "
                          f"or HERALD_INDEX")
    foreign = sorted(p.name for p in index_dir.iterdir() if p.name not in FILES)
    if foreign:
        raise HeraldError(f"{index_dir} is not a Herald index (it holds {foreign[0]!r}"
                          f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}); refusing to replace it: "
                          f"pass a new or empty folder with --index or HERALD_INDEX")


def _embed_in_batches(embedder: Embedder, texts: list[str], progress: Progress | None, done: int, total: int,
                      batch: int = 128) -> tuple[np.ndarray, int]:
    out = []
    for i in range(0, len(texts), batch):
        out.append(embedder.encode(texts[i:i + batch], batch_size=64))
        done += len(texts[i:i + batch])
        if progress:
            progress(done, total)
    vecs = np.vstack(out) if out else np.zeros((0, embedder.dim), dtype=np.float32)
    return vecs.astype(np.float32, copy=False), done


def build_index(corpus_dir: Path, index_dir: Path, embedder: Embedder,
                chunking: ChunkSettings = ChunkSettings(), progress: Progress | None = None,
                full: bool = False) -> BuildReport:
    """Build or update the index at ``index_dir`` from the articles in ``corpus_dir``.

    Documents whose fingerprint is unchanged keep their vectors (no re-embedding); changed and new ones
    are embedded; removed ones are dropped. The new index is written beside the old one and renamed
    into place only when complete.
    """
    import faiss

    started = time.perf_counter()
    index_dir = Path(index_dir)
    check_replaceable(index_dir)
    docs = load_corpus(corpus_dir)
    all_prints = corpus_fingerprints(corpus_dir)
    loaded_ids = {d.id for d in docs}
    skipped = {k: v for k, v in all_prints.items() if k not in loaded_ids}
    report = BuildReport(documents=len(docs))

    previous: LoadedIndex | None = None
    if not full:
        try:
            previous = load_index(index_dir, embedder.name, embedder.dim)
            if previous.manifest.get("chunking") != chunking.to_dict() or \
                    previous.manifest.get("cleaner_version") != CLEANER_VERSION:
                previous = None
        except (IndexMissingError, IndexCorruptError, IndexMismatchError):
            previous = None
    report.full_rebuild = previous is None and (Path(index_dir) / MANIFEST).exists()

    old_fp = {k: v["fingerprint"] for k, v in (previous.manifest["documents"].items() if previous else [])}
    old_chunk_rows: dict[str, list[int]] = {}
    old_sent_rows: dict[str, list[int]] = {}
    old_chunk_vecs = previous.chunk_vectors() if previous else None
    if previous:
        for row, chunk in enumerate(previous.chunks):
            old_chunk_rows.setdefault(chunk.doc_id, []).append(row)
        offset = 0
        for d in previous.documents:
            n = len(previous.doc_sentences[d.id])
            old_sent_rows[d.id] = list(range(offset, offset + n))
            offset += n

    # Plan: per document, reuse or (re)compute chunks and sentences.
    plan: list[tuple[Document, list[Chunk], list[tuple[int, int]], bool]] = []
    to_embed_chunks: list[str] = []
    to_embed_sents: list[str] = []
    for doc in docs:
        reuse = previous is not None and old_fp.get(doc.id) == doc.fingerprint
        if reuse:
            chunks = [previous.chunks[r] for r in old_chunk_rows.get(doc.id, [])]
            sents = list(previous.doc_sentences[doc.id])
            report.unchanged.append(doc.id)
        else:
            chunks = chunk_document(doc, chunking)
            sents = [s for section in document_sentences(doc, chunking) for s in section]
            (report.changed if doc.id in old_fp else report.added).append(doc.id)
            to_embed_chunks.extend(c.text for c in chunks)
            to_embed_sents.extend(doc.text[a:b] for a, b in sents)
        plan.append((doc, chunks, sents, reuse))
    report.removed = sorted(set(old_fp) - {d.id for d in docs})

    total = len(to_embed_chunks) + len(to_embed_sents)
    report.embedded_texts = total
    if progress:
        progress(0, total)
    new_chunk_vecs, done = _embed_in_batches(embedder, to_embed_chunks, progress, 0, total)
    new_sent_vecs, _ = _embed_in_batches(embedder, to_embed_sents, progress, done, total)

    chunk_vecs: list[np.ndarray] = []
    sent_vecs: list[np.ndarray] = []
    records_docs: list[dict] = []
    records_chunks: list[dict] = []
    manifest_docs: dict[str, dict] = {}
    ci = si = 0
    sent_base = 0
    for doc, chunks, sents, reuse in plan:
        if reuse:
            chunk_vecs.append(old_chunk_vecs[old_chunk_rows.get(doc.id, [])])
            sent_vecs.append(previous.sentence_vectors[old_sent_rows[doc.id]])
        else:
            chunk_vecs.append(new_chunk_vecs[ci:ci + len(chunks)])
            sent_vecs.append(new_sent_vecs[si:si + len(sents)])
            ci += len(chunks)
            si += len(sents)
        row_of = {span: sent_base + i for i, span in enumerate(sents)}
        for chunk in chunks:
            rec = chunk.to_dict()
            rec["sentence_ids"] = [row_of[tuple(s)] for s in chunk.sentences]
            records_chunks.append(rec)
        sent_base += len(sents)
        records_docs.append({
            "id": doc.id, "title": doc.title, "text": doc.text, "path": doc.path, "url": doc.url,
            "date": doc.date, "fingerprint": doc.fingerprint, "meta": doc.meta,
            "sentences": [list(s) for s in sents],
        })
        manifest_docs[doc.id] = {"fingerprint": doc.fingerprint, "title": doc.title, "chunks": len(chunks),
                                 "url": doc.url}
    vectors = np.vstack(chunk_vecs).astype(np.float32) if chunk_vecs else np.zeros((0, embedder.dim), np.float32)
    sentence_matrix = np.vstack(sent_vecs).astype(np.float32) if sent_vecs else np.zeros((0, embedder.dim), np.float32)
    report.chunks = len(records_chunks)
    if report.chunks == 0:
        raise CorpusError(f"the articles in {corpus_dir} hold no sentences to index")

    faiss_index = faiss.IndexFlatIP(embedder.dim)  # exact search: at this size nothing approximate pays
    faiss_index.add(vectors)
    report.seconds = time.perf_counter() - started
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": embedder.name,
        "dim": embedder.dim,
        "metric": "inner_product (normalised vectors: cosine)",
        "chunking": chunking.to_dict(),
        "cleaner_version": CLEANER_VERSION,
        "documents": manifest_docs,
        "skipped": skipped,
        "counts": {"documents": len(records_docs), "chunks": report.chunks,
                   "sentences": int(sentence_matrix.shape[0])},
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(report.seconds, 3),
        "corpus": str(Path(corpus_dir)),
    }
    _write_atomically(index_dir, manifest, records_docs, records_chunks, faiss_index, sentence_matrix)
    return report


def _write_atomically(index_dir: Path, manifest: dict, docs: list[dict], chunks: list[dict], faiss_index,
                      sentences: np.ndarray) -> None:
    import faiss

    def cannot_write(exc: BaseException) -> HeraldError:
        why = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:160] or type(exc).__name__
        return HeraldError(f"cannot write the index at {index_dir}: {why}; check that its folder is writable "
                           f"and has free space, or pass another with --index (the previous index is unchanged)")

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
        faiss.write_index(faiss_index, str(tmp / "index.faiss"))
        np.save(tmp / "sentences.npy", sentences, allow_pickle=False)
        # The manifest goes last: a folder without one is never mistaken for an index.
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        for name in FILES:
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
    """Replace ``index_dir`` with ``tmp``: two renames, and a reader recovers if we die between them."""
    if index_dir.exists():
        old = index_dir.parent / f".{index_dir.name}.old-{time.time_ns()}-{os.getpid()}"
        os.replace(index_dir, old)
        os.replace(tmp, index_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, index_dir)
