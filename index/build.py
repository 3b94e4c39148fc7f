"""Building an index from a document source: only new or changed documents are split and embedded.

The steps are separate functions (what to reuse, how to cut, what to embed, how to assemble) so each
stays small; ``build_index`` runs them in order and writes the result atomically (index/store/).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from index import threads
from index.embed.models import Embedder, embed_all
from index.errors import CorpusError, IndexCorruptError, IndexMismatchError, IndexMissingError
from index.ingest.chunking import Chunk, ChunkSettings, chunk_sections, document_sentences
from index.ingest.collections import BASE, CollectionsSource, collection_of
from index.ingest.corpus import CLEANER_VERSION, Document, first_copies
from index.ingest.sources import DocumentSource, FolderSource
from index.store import (
    DEFAULT_STORE,
    FORMAT_VERSION,
    MANIFEST,
    build_lock,
    built_fingerprints,
    check_compatible,
    check_replaceable,
    clean_leftovers,
    load_index,
    read_manifest,
    verify_files,
)
from index.store.segments import PriorIndex
from index.store.writer import DocumentUpdate, FolderWriter, IndexChange
from index.threads import build_threads

# Called with (texts embedded, texts to embed); a BuildProgress also hears about sentence splitting (the CLI
# shows both).
Progress = Callable[[int, int], None]


class BuildProgress:
    """A build's progress reporter that also hears about the slow steps before embedding (``stage``)."""

    def __call__(self, done: int, total: int) -> None:
        """``done`` of ``total`` texts embedded."""
        return None

    def stage(self, name: str, done: int, total: int) -> None:
        """``done`` of ``total`` items through step ``name`` (``splitting``: documents into sentences)."""
        return None
log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """What a build did (document ids), for the operator."""

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
class _Planned:
    """A document of the build: its new chunks and sentence spans, or ``reused`` (then both empty)."""

    doc: Document
    chunks: list[Chunk]
    sentences: list[tuple[int, int]]
    reused: bool


def _previous(index_dir: Path, embedder: Embedder, chunking: ChunkSettings, store_kind: str,
              full: bool) -> PriorIndex | None:
    """The current index if its vectors can be reused (same model, chunking, cleaner and store kind), known
    from its manifest: its files' sizes are checked, not their checksums (an update does not read what it
    keeps; opening the index checks every checksum). An index written before segments is loaded (checked)."""
    if full:
        return None
    try:
        manifest = read_manifest(index_dir)
        check_compatible(manifest, embedder.name, embedder.dim, embedder.weights)
        if verify_files(index_dir, manifest, hashes=False):
            return None
        previous = PriorIndex(index_dir, manifest,
                              lambda: load_index(index_dir, embedder.name, embedder.dim, embedder.weights))
        if not previous.planned_from_manifest:
            previous.loaded  # noqa: B018 - load now: a damaged one is rebuilt, as before
    except (IndexMissingError, IndexCorruptError, IndexMismatchError):
        return None
    m = previous.manifest
    if (m.get("chunking") != chunking.to_dict() or m.get("cleaner_version") != CLEANER_VERSION
            or m.get("vector_store", DEFAULT_STORE) != store_kind):
        return None
    return previous


_SPLIT_APART = 16  # documents worth a child process for splitting (it costs ~0.5 s to start)


def _split(docs: list[Document], chunking: ChunkSettings, stage: Callable[[str, int, int], None] | None,
           meanwhile: Callable[[], None] | None) -> list[list[list[tuple[int, int]]]]:
    """Sentence spans of each document's sections.

    Splitting (pysbd, pure Python) and loading torch for the bulk path (7 s) each take seconds and both
    hold the GIL, so when there is bulk to embed and a spare core, splitting runs in a child process
    (index/ingest/splitter.py) while this one runs ``meanwhile`` (the model load): the two overlap instead of
    adding up. If the child fails for any reason, splitting happens here as before.
    """
    if meanwhile is not None and len(docs) >= _SPLIT_APART and threads.cores() >= 2:
        load = meanwhile
        # The child takes about 60% of the text; this process loads the model (about a third of the
        # time splitting the whole build takes), then splits the rest: both finish at about the same time.
        sizes = [len(d.text) for d in docs]
        k, acc = 0, 0
        while k < len(docs) - 1 and acc < 0.6 * sum(sizes):
            acc += sizes[k]
            k += 1

        def here() -> list[list[list[tuple[int, int]]]]:
            load()
            return [document_sentences(doc, chunking) for doc in docs[k:]]

        spans = _split_apart(docs[:k], chunking, stage, here, len(docs))
        if spans is not None:
            return spans
        meanwhile = None  # it ran
    out = []
    for i, doc in enumerate(docs):
        if stage is not None:
            stage("splitting", i, len(docs))
        out.append(document_sentences(doc, chunking))
    if meanwhile is not None:
        meanwhile()
    return out


def _split_apart(docs: list[Document], chunking: ChunkSettings, stage: Callable[[str, int, int], None] | None,
                 meanwhile: Callable[[], list], total: int) -> list[list[list[tuple[int, int]]]] | None:
    """Split ``docs`` in a child process while ``meanwhile`` runs here (it returns the spans of the
    documents after ``docs``); None when the child failed (then everything is split here)."""
    import pickle
    import subprocess
    import sys
    import threading

    if stage is not None:
        stage("splitting", 0, total)
    child = subprocess.Popen([sys.executable, "-m", "index.ingest.splitter"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    result: dict[str, bytes] = {}

    def talk() -> None:  # in a thread: the pipe must be fed and drained while this one loads the model
        result["out"], _ = child.communicate(pickle.dumps((docs, chunking), protocol=pickle.HIGHEST_PROTOCOL))

    talker = threading.Thread(target=talk, daemon=True)
    talker.start()
    try:
        rest = meanwhile()
    finally:
        talker.join()
    if child.returncode != 0:
        log.warning("splitting in a child process failed (exit %s); splitting here instead", child.returncode)
        return None
    spans = pickle.loads(result["out"]) + rest
    if stage is not None:
        stage("splitting", total, total)
    return spans


def _plan(docs: list[Document], old_fp: dict[str, str], chunking: ChunkSettings,
          report: BuildReport, stage: Callable[[str, int, int], None] | None = None,
          embedder: Embedder | None = None) -> list[_Planned]:
    """Per document: split it (once) into new chunks and sentences, or mark it reused when the index holds
    it with the same fingerprint (``old_fp``; the writer carries its records and vectors over: nothing of it
    is copied here)."""
    reuse = {d.id for d in docs if old_fp.get(d.id) == d.fingerprint}
    new = [d for d in docs if d.id not in reuse]
    # Chunks and sentences together come to about 2.5 times a document's characters.
    chars = int(2.5 * sum(len(d.text) for d in new))
    meanwhile = (lambda: embedder.prefetch(chars)) if embedder is not None and embedder.wants_bulk(chars) else None
    split = dict(zip((d.id for d in new), _split(new, chunking, stage, meanwhile)))
    plan = []
    for doc in docs:
        if doc.id in reuse:
            plan.append(_Planned(doc, [], [], True))
            report.unchanged.append(doc.id)
            continue
        sections = split[doc.id]
        sentences = [s for section in sections for s in section]
        plan.append(_Planned(doc, chunk_sections(doc, sections, chunking), sentences, False))
        (report.changed if doc.id in old_fp else report.added).append(doc.id)
    report.removed = sorted(set(old_fp) - {d.id for d in docs})
    return plan


def build_index(source: DocumentSource | Path | str, index_dir: Path, embedder: Embedder,
                chunking: ChunkSettings = ChunkSettings(), progress: Progress | None = None,
                full: bool = False, store_kind: str = DEFAULT_STORE, busy_threads: int = 0,
                on_wait: Callable[[], None] | None = None, wait: bool = True,
                collections: Sequence[str] | None = None, store_options: dict | None = None) -> BuildReport:
    """Build or update the index at ``index_dir`` from ``source`` (a DocumentSource, or a corpus folder).

    ``collections``: update only these collections' documents; every other document stays exactly as the
    index has it (its rows and vectors are carried over, its folder is not even read). Without an index
    to carry them from, everything is built. ``store_options``: the vector store's options (saved in the
    manifest, used again at every load); other options than the index's move its vectors into a new store.

    Documents whose fingerprint is unchanged keep their vectors (no re-embedding); changed and new ones
    are embedded, all in one call so the embedder can take its bulk path; removed ones are dropped; when
    nothing changed, nothing is written. One build at a time per index: a second one calls ``on_wait``
    and waits for the lock (with ``wait=False`` it raises BuildBusyError instead). ``busy_threads``: threads
    of this process that keep answering meanwhile (the bot's workers), left their cores.
    """
    if isinstance(source, (str, Path)):
        source = FolderSource(source)
    index_dir = Path(index_dir)
    check_replaceable(index_dir)
    with build_lock(index_dir, on_wait, wait):
        clean_leftovers(index_dir)
        check_replaceable(index_dir)
        return _build_locked(source, index_dir, embedder, chunking, progress, full, store_kind, busy_threads,
                             collections, store_options)


def _read(source: DocumentSource, previous: PriorIndex | None,
          collections: Sequence[str] | None) -> tuple[list[Document], dict[str, str]]:
    """The documents to build from and the fingerprints of everything their source holds: with a scope
    (and an index to keep the rest from), the scope's documents read now and the others' as indexed."""
    if previous is None:
        return list(source.documents()), source.fingerprints()
    scope = set(collections) if collections is not None else None
    if scope is not None and isinstance(source, CollectionsSource):
        source = source.scoped(tuple(scope))
    prints = {k: v for k, v in source.fingerprints().items() if scope is None or collection_of(k) in scope}
    docs = _changed_documents(source, previous, prints)
    if scope is not None:
        prints.update({k: v for k, v in built_fingerprints(previous.manifest).items()
                       if collection_of(k) not in scope})
        prints.update({k: v for k, v in previous.manifest.get("skipped", {}).items() if collection_of(k) not in scope})
        kept = [d for d in previous.documents if d.collection not in scope]
        docs = sorted(kept + docs, key=lambda d: (d.collection != BASE, d.collection))
    if not docs:  # what reading every file would have said
        raise CorpusError("empty", source.location)
    return docs, prints


def _changed_documents(source: DocumentSource, previous: PriorIndex, prints: dict[str, str]) -> list[Document]:
    """The documents behind ``prints``, in their order: an unchanged one as the index has it (its file is not
    parsed again: its fingerprint says it is the same), a new or changed one parsed now. A file skipped last
    time (empty, unreadable, a copy of another article) is read again only when it changed or when an
    article was removed (it may have been the copy's original)."""
    built = built_fingerprints(previous.manifest)
    skipped = previous.manifest.get("skipped", {})
    same = {i for i, fp in prints.items() if built.get(i) == fp and i in previous.doc_by_id}
    removed = any(i not in prints for i in built)
    need = [i for i, fp in prints.items() if i not in same and (removed or skipped.get(i) != fp)]
    seen = {(previous.doc_by_id[i].collection, previous.text_key(i)): i for i in same}
    parsed = {d.id: d for d in first_copies(source.documents_of(need) if need else (), seen)}
    return [previous.doc_by_id[i] if i in same else parsed[i] for i in prints if i in same or i in parsed]


def _build_locked(source: DocumentSource, index_dir: Path, embedder: Embedder, chunking: ChunkSettings,
                  progress: Progress | None, full: bool, store_kind: str, busy_threads: int,
                  collections: Sequence[str] | None = None, store_options: dict | None = None) -> BuildReport:
    started = time.perf_counter()
    previous = _previous(index_dir, embedder, chunking, store_kind, full)
    docs, all_prints = _read(source, previous, collections)
    loaded_ids = {d.id for d in docs}
    report = BuildReport(documents=len(docs))
    report.full_rebuild = previous is None and (index_dir / MANIFEST).exists()
    # A progress object may also hear about the slow steps before embedding.
    stage = progress.stage if isinstance(progress, BuildProgress) else None
    plan = _plan(docs, built_fingerprints(previous.manifest) if previous else {}, chunking, report, stage, embedder)
    if stage is not None:
        stage("splitting", len(docs), len(docs))
    skipped = {k: v for k, v in all_prints.items() if k not in loaded_ids}
    same_store = previous is not None and previous.manifest.get("vector_store_options", {}) == (store_options or {})
    if previous is not None and not report.changed_anything and previous.manifest.get("skipped", {}) == skipped \
            and same_store:
        report.chunks = int(previous.manifest["counts"]["chunks"])  # nothing to do: the index on disk is left as it is
        report.seconds = time.perf_counter() - started
        return report

    chunk_vecs, sent_vecs = _embed_new(plan, embedder, report, progress, busy_threads)
    change = IndexChange([p.doc.id for p in plan], _updates(plan, chunk_vecs, sent_vecs), report.removed, skipped)
    if not any(p.chunks or (p.reused and previous is not None and previous.chunk_count(p.doc.id)) for p in plan):
        raise CorpusError("no_sentences", source.location)
    report.seconds = time.perf_counter() - started
    change.about = _about(source, embedder, chunking, store_kind, report)
    try:
        written = FolderWriter(index_dir, previous, store_kind, embedder.dim, store_options).apply(change)
    except IndexCorruptError:
        if previous is None:
            raise
        # A file the manifest vouched for was damaged after all (its checksum is read only when the index is
        # written whole or a delta merged): build everything, as a damaged index always was.
        log.warning("the index at %s is damaged; building it again from the corpus", index_dir)
        return _build_locked(source, index_dir, embedder, chunking, progress, True, store_kind, busy_threads,
                             collections, store_options)
    report.chunks = written.chunks
    return report


def _updates(plan: list[_Planned], chunk_vecs: np.ndarray, sent_vecs: np.ndarray) -> list[DocumentUpdate]:
    """The new and changed documents with their vectors (``_embed_new``'s rows, in plan order)."""
    out, ci, si = [], 0, 0
    for p in plan:
        if p.reused:
            continue
        out.append(DocumentUpdate(p.doc, p.chunks, p.sentences, chunk_vecs[ci:ci + len(p.chunks)],
                                  sent_vecs[si:si + len(p.sentences)]))
        ci += len(p.chunks)
        si += len(p.sentences)
    return out


def _embed_new(plan: list[_Planned], embedder: Embedder, report: BuildReport, progress: Progress | None,
               busy_threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of the new documents' chunks and sentences (plan order), each distinct text embedded once."""
    new = [p for p in plan if not p.reused]
    texts = [c.text for p in new for c in p.chunks] + [p.doc.text[a:b] for p in new for a, b in p.sentences]
    n_chunks = sum(len(p.chunks) for p in new)
    report.embedded_texts = len(set(texts))
    if progress:
        progress(0, report.embedded_texts)
    # A one-sentence chunk is its sentence, and wire copy repeats sentences: embed each text once.
    distinct = list(dict.fromkeys(texts))
    row = {t: i for i, t in enumerate(distinct)}
    with build_threads(busy_threads, work=len(distinct)):
        unique_vecs = embed_all(embedder, distinct,
                                (lambda done: progress(done, len(distinct))) if progress else None)
    vecs = unique_vecs[[row[t] for t in texts]] if texts else unique_vecs
    return vecs[:n_chunks], vecs[n_chunks:]


def _about(source: DocumentSource, embedder: Embedder, chunking: ChunkSettings, store_kind: str,
           report: BuildReport) -> dict:
    """What the index says about itself: the model, store, chunking and corpus that made it (the writer
    adds its documents and counts)."""
    return {
        "format_version": FORMAT_VERSION,
        "model": embedder.name,
        "model_weights": embedder.weights or "",
        "dim": embedder.dim,
        "metric": "inner_product (normalised vectors: cosine)",
        "vector_store": store_kind,
        "chunking": chunking.to_dict(),
        "cleaner_version": CLEANER_VERSION,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": round(report.seconds, 3),
        "corpus": source.location,
        "source": source.kind,
    }
