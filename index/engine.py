"""The engine: one object that answers questions from an index, and the calls that open, rebuild and
describe one. This is what ``index/__init__.py`` exports; the CLI and the bot use nothing else.

    engine = open_engine(EngineConfig(corpus="corpus", index_dir=".herald/index"))
    answer = engine.ask("Who vetoed the resolution?")

Three seams meet here, each chosen by name in ``EngineConfig``: the document source (``source``), the
vector store (``vector_store``) and the answerer (``answerer``); see docs/architecture.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from index import threads
from index.answer.answerers import ANSWERERS, Answerer, ExtractiveAnswerer
from index.answer.phrases import answer_phrase
from index.build import BuildReport, Progress, build_index
from index.embed.models import DEFAULT_MODEL, Embedder, get_embedder
from index.errors import BuildBusyError, HeraldError, IndexMissingError
from index.ingest.chunking import ChunkSettings
from index.ingest.collections import CollectionsSource, collection_of
from index.ingest.corpus import CLEANER_VERSION, Document
from index.ingest.sources import DocumentSource, open_source
from index.registry import Registry
from index.search.reader import IndexReader
from index.search.retrieval import Candidate, Retriever, SearchSettings, answer_type_of, search_for
from index.store import (
    DEFAULT_STORE,
    LoadedIndex,
    Staleness,
    built_fingerprints,
    check_compatible,
    check_replaceable,
    compare_fingerprints,
    load_index,
    read_manifest,
    verify_files,
)
from index.text import clean_question, content_terms, looks_english, site_of
from index.types import Answer, Draft, Source, Turn


@dataclass(frozen=True)
class EngineConfig:
    """Everything the library needs to open an engine; the application fills it from its settings."""

    corpus: str | Path = "corpus"
    index_dir: Path = Path(".herald/index")
    model: str = DEFAULT_MODEL
    source: str = "folder"
    vector_store: str = DEFAULT_STORE
    answerer: str = "extractive"
    search: SearchSettings | None = None  # None: the values tuned for ``model`` (index.search.retrieval.search_for)
    chunking: ChunkSettings = ChunkSettings()
    workers: int = 1  # threads that may answer at once (the bot's max_concurrency)
    answerer_options: dict = field(default_factory=dict)  # e.g. {"llm": LLMSettings(...)} for "llm"
    # One folder per collection besides ``base`` (index/ingest/collections.py); None: ``base`` only.
    collections_dir: Path | None = None
    store_options: dict = field(default_factory=dict)  # the vector store's (e.g. {"ef_search": 256} for faiss)
    # The index in PostgreSQL with pgvector instead of the folder (index/pg/; needs herald[postgres]). Several
    # processes share it: what one writes the others answer from at their next question.
    database_url: str | None = None

    def open_source(self) -> DocumentSource:
        """The corpus (``base``) and every collection folder, as one source."""
        return CollectionsSource(open_source(self.source, self.corpus), self.collections_dir)


@dataclass
class Notice:
    """Something the engine is about to do, or did instead, that a person may want to hear about.

    ``kind``: ``building`` (no index yet), ``updating`` (``stale`` says what changed, or ``settings`` is
    True when chunking or cleaning changed), ``waiting`` (another process is building it), ``busy``
    (another process is updating it: answering from the current one meanwhile), ``stale`` (the update
    failed with ``error``: answering from the previous index, which is intact) or ``differs`` (a shared
    database's index differs from this process's corpus as ``stale`` says; it is not rewritten at open).
    """

    kind: str
    index_dir: Path
    corpus: str
    stale: Staleness | None = None
    settings: bool = False
    error: Exception | None = None
    database: str = ""  # the index's database (its URL without a password) when it lives in one
    deltas: int = 0  # the folder index's delta segments (index/store/segments.py) beside its base


@dataclass
class DocumentInfo:
    """One indexed article, as `herald info` and /sources list them."""

    id: str
    title: str
    url: str | None = None
    date: str | None = None
    chunks: int = 0
    outlet: str | None = None
    collection: str = "base"


@dataclass
class IndexInfo:
    """What an index holds, and whether the source changed since it was built (``stale`` None: unknown,
    with ``stale_error`` saying why)."""

    index_dir: Path
    model: str
    dim: int
    vector_store: str
    documents: list[DocumentInfo]
    chunks: int
    sentences: int | None
    built_at: str | None
    chunking: dict | None
    corpus: str
    stale: Staleness | None = None
    stale_error: Exception | None = None
    damaged: list[str] = field(default_factory=list)  # files that fail their size (or, hashed, checksum) record
    damage_error: Exception | None = None  # with check=True: why the full load failed
    checksums_verified: bool = False  # every file was hashed (False: only sizes compared; the index is big)
    index_bytes: int = 0  # total size of the index's files, as the manifest records them
    database: str = ""  # the index's database (its URL without a password) when it lives in one
    deltas: int = 0  # the folder index's delta segments (index/store/segments.py) beside its base


# "What is the latest on ...": newer articles first among the passages nearly as good as the best.
_LATEST_RE = re.compile(r"\b(latest|newest|most recent|recent(ly)?|currently|right now|update on|so far)\b", re.I)
_LATEST_MARGIN = 0.1
_FOLLOW_UP_WORDS = 4  # a question with at most this many content words may lean on the previous turn


class Engine:
    """Answers questions from one loaded index: retrieval ranks, the engine abstains or not, the answerer
    writes. Read-only after construction, so one engine serves many threads."""

    def __init__(self, index: LoadedIndex | IndexReader, embedder: Embedder,
                 settings: SearchSettings = SearchSettings(), answerer: Answerer | str = "extractive",
                 answerer_options: dict | None = None) -> None:
        self.embedder = embedder
        self.settings = settings
        self.retriever = Retriever(index, embedder, settings)
        self.reader: IndexReader = self.retriever.reader  # everything answering reads (index/search/reader.py)
        self.index = index  # what it was opened on (the folder index: benchmarks and tests read it)
        self.answerer = (ANSWERERS.create(answerer, settings, **(answerer_options or {}))
                         if isinstance(answerer, str) else answerer)

    # ---------------------------------------------------------------------------------- the API

    def ask(self, question: str, history: Sequence[Turn] = (),
            on_token: Callable[[str], None] | None = None, list_sources: int = 0,
            collections: Iterable[str] | None = None) -> Answer:
        """Answer one question (raises QuestionError for unusable input).

        ``history``: earlier turns of the conversation, oldest first. A follow-up ("and why?") is
        rewritten into a standalone question by an answerer that can (a language model), else searched
        together with the previous question's content words. ``on_token``: called with each piece of a
        streamed answer as it arrives (answerers that stream; the final Answer is still returned).
        ``list_sources``: list this many sources if more than ``top_k`` (evaluation's recall@5); the
        answerer still reads only the ``top_k`` best, as a user's question would.
        ``collections``: search only the documents of these collections (None: every one). The filter is
        exact (``Retriever.retrieve``: no candidate of these collections is lost to it), and everything after
        it (abstention, near-duplicates, sources) sees only what it let through, so a question about
        another collection's article is not answered.
        """
        started = time.perf_counter()
        s = self.settings
        q = clean_question(question, s.max_question_chars)
        search_text = self._with_history(q, history)
        rows = self.reader.rows_of(collections)
        query = self.retriever.query(search_text)
        cands = self.retriever.retrieve(search_text, query=query, rows=rows)
        english = looks_english(q) or self.embedder.multilingual  # a model that reads other languages
        if not cands:
            return Answer(question=q, answer="", abstained=True, sources=[], confidence=0.0,
                          latency_ms=(time.perf_counter() - started) * 1000, english=english,
                          retrieval_query=search_text if search_text != q else "")
        if _LATEST_RE.search(q):
            cands = self._newest_first(cands)
        shown = self.retriever.dedupe(cands) if s.dedupe_sources else cands
        sources = self._sources(shown, max(s.top_k, list_sources))
        conf = self.retriever.confidence(cands[0], query.terms, s.mode)
        abstained = conf < s.abstain_threshold
        draft = Draft("")
        if not abstained:
            kwargs = {"on_token": on_token} if on_token is not None and self.answerer.streams else {}
            draft = self.answerer.answer(query, sources[:s.top_k], cands, self.retriever, history, **kwargs)
            conf = conf if draft.confidence is None else draft.confidence
        by = draft.answered_by or (self.answerer.name if not draft.fallback else ExtractiveAnswerer.name)
        if abstained:
            by = ""  # nobody answered: not the model, not the extractive reader
        phrase = answer_phrase(q, draft.text) if draft.text else None
        return Answer(question=q, answer=draft.text, abstained=abstained, sources=sources, confidence=conf,
                      latency_ms=(time.perf_counter() - started) * 1000, answer_spans=draft.spans, english=english,
                      tentative=not abstained and conf < s.tentative_below, answered_by=by,
                      retrieval_query=search_text if search_text != q else "", citations=draft.citations,
                      fallback=draft.fallback, fallback_detail=draft.fallback_detail, phrase=phrase)

    def documents(self, collections: Iterable[str] | None = None) -> list[DocumentInfo]:
        """The indexed articles (of ``collections`` only, when given), in index order."""
        counts = self.reader.chunk_counts()
        wanted = None if collections is None else set(collections)
        return [DocumentInfo(d.id, d.title, d.url, d.date, counts.get(d.id, 0), outlet_of(d), d.collection)
                for d in self.reader.documents() if wanted is None or d.collection in wanted]

    def collections(self) -> dict[str, int]:
        """``{collection: its number of articles}`` in this index."""
        out: dict[str, int] = {}
        for d in self.reader.documents():
            out[d.collection] = out.get(d.collection, 0) + 1
        return out

    @property
    def streams(self) -> bool:
        """Whether ``ask`` calls ``on_token`` as the answer is written (the answerer streams)."""
        return self.answerer.streams

    @property
    def passages(self) -> int:
        return self.reader.count()

    # ------------------------------------------------------------------------------ internals

    def retrieve(self, question: str, q_vec=None, mode: str | None = None, k: int | None = None,
                 collections: Iterable[str] | None = None) -> list[Candidate]:
        """Ranked candidates (benchmarks compare modes with this)."""
        return self.retriever.retrieve(question, q_vec, mode, k, rows=self.reader.rows_of(collections))

    def _with_history(self, question: str, history: Sequence[Turn]) -> str:
        if not history:
            return question
        standalone = self.answerer.rewrite(question, history)
        if standalone:
            return standalone
        terms = content_terms(question)
        if len(terms) > _FOLLOW_UP_WORDS:
            return question
        previous = history[-1].question
        extra = [w for w in re.findall(r"[^\W_]+(?:['’][^\W_]+)*", previous)
                 if content_terms(w) and content_terms(w)[0] not in terms]
        return f"{question} {' '.join(extra)}".strip() if extra else question

    def _sources(self, shown: list[Candidate], k: int) -> list[Source]:
        """The top ``k`` sources, a wire story published by several outlets shown once ("also reported by")."""
        reader = self.reader
        out: list[Source] = []
        first_of: dict[str, Source] = {}
        for c in shown:
            doc_id = reader.chunk(c.row).doc_id
            group = reader.duplicate_of(doc_id)
            if group in first_of and first_of[group].doc_id != doc_id:
                other = self._source(c)
                label = other.outlet or other.title
                if label not in first_of[group].also_reported_by and label != first_of[group].outlet:
                    first_of[group].also_reported_by.append(label)
                continue
            src = self._source(c)
            first_of.setdefault(group, src)
            if len(out) < k:
                out.append(src)
        return out

    def _newest_first(self, cands: list[Candidate]) -> list[Candidate]:
        """For "the latest ..." questions: among candidates nearly as good as the best, newer articles first."""
        best = cands[0].score
        close = [c for c in cands if c.score >= best - _LATEST_MARGIN]
        rest = [c for c in cands if c.score < best - _LATEST_MARGIN]

        def date_of(c: Candidate) -> str:
            doc = self.reader.document(self.reader.chunk(c.row).doc_id)
            return (doc.date or "") if doc else ""

        return sorted(close, key=date_of, reverse=True) + rest

    def _source(self, c: Candidate) -> Source:
        chunk = self.reader.chunk(c.row)
        doc = self.reader.document(chunk.doc_id)
        return Source(chunk.text, chunk.title, chunk.doc_id, c.score, chunk.start, chunk.end, chunk.url,
                      self.reader.chunk_id(c.row), doc.date if doc else None, outlet_of(doc) if doc else None,
                      collection=doc.collection if doc else "base")


class IndexEngine(Protocol):
    """Where an index lives when it is not the folder (a database): opening an Engine over it, building
    into it, describing it. Registered in ``ENGINES`` by name; ``EngineConfig`` chooses one
    (``database_url``: ``postgres``, index/pg/engine.py)."""

    def open(self, config: EngineConfig, auto_build: bool, notify: Callable[[Notice], None],
             progress: Progress | None) -> Engine: ...

    def rebuild(self, config: EngineConfig, progress: Progress | None, full: bool, busy_threads: int,
                on_wait: Callable[[], None] | None, collections: Sequence[str] | None) -> BuildReport: ...

    def describe(self, config: EngineConfig) -> IndexInfo: ...


#: Index engines other than the folder (the folder is this module's own code).
ENGINES: Registry[IndexEngine] = Registry("index engine")


def engine_backend(config: EngineConfig) -> IndexEngine | None:
    """The engine ``config`` chooses, or None for the folder index."""
    return ENGINES.create("postgres") if config.database_url else None


def outlet_of(doc: Document) -> str | None:
    """Who published a document: its front matter's outlet, else its URL's site."""
    return (doc.meta or {}).get("outlet") or site_of(doc.url) or None


# ------------------------------------------------------------------------------------- opening


def _load(config: EngineConfig, embedder: Embedder) -> LoadedIndex:
    return load_index(config.index_dir, config.model, embedder.dim, embedder.weights)


def open_engine(config: EngineConfig, auto_build: bool = True, notify: Callable[[Notice], None] = lambda n: None,
                progress: Progress | None = None) -> Engine:
    """An Engine over an up-to-date index, building or updating it first (``notify`` is told) when needed.

    An index made with another model is refused, not rebuilt behind the user's back: rebuilding
    re-embeds everything and the user may simply have the wrong setting.
    """
    other = engine_backend(config)
    if other is not None:
        return other.open(config, auto_build, notify, progress)
    embedder = get_embedder(config.model)
    source = config.open_source()
    try:
        manifest = read_manifest(config.index_dir)
    except IndexMissingError:
        if not auto_build:
            raise
        # Say what is wrong (no corpus, an index folder that is not ours), not "building..." and then the error.
        source.check()
        check_replaceable(Path(config.index_dir))
        notify(Notice("building", Path(config.index_dir), source.location))
        waiting = Notice("waiting", Path(config.index_dir), source.location)
        _build(config, source, embedder, progress, on_wait=lambda: notify(waiting))
        return _engine(config, _load(config, embedder), embedder)
    check_compatible(manifest, config.model, embedder.dim, embedder.weights)
    loaded = _load(config, embedder)
    if auto_build:
        try:
            stale = loaded.staleness(source.fingerprints())
        except HeraldError as exc:  # the corpus is gone or unreadable: the index it made still answers
            notify(Notice("stale", Path(config.index_dir), source.location, error=exc))
            return _engine(config, loaded, embedder)
        settings_changed = (manifest.get("chunking") != config.chunking.to_dict()
                            or manifest.get("cleaner_version") != CLEANER_VERSION
                            or manifest.get("vector_store_options", {}) != config.store_options)
        if stale.stale or settings_changed:
            where = (Path(config.index_dir), source.location, stale, settings_changed)
            notify(Notice("updating", *where))
            try:
                _build(config, source, embedder, progress, wait=False)
            except BuildBusyError:
                notify(Notice("busy", *where))
            except HeraldError as exc:  # read-only folder, full disk, corpus gone: the old index still answers
                notify(Notice("stale", *where, error=exc))
            else:
                loaded = _load(config, embedder)
    return _engine(config, loaded, embedder)


def _engine(config: EngineConfig, loaded: LoadedIndex | IndexReader, embedder: Embedder) -> Engine:
    threads.serving()
    search = config.search if config.search is not None else search_for(config.model)
    return Engine(loaded, embedder, search, config.answerer, config.answerer_options)


def _build(config: EngineConfig, source: DocumentSource, embedder: Embedder, progress: Progress | None,
           full: bool = False, busy_threads: int = 0, on_wait: Callable[[], None] | None = None,
           wait: bool = True, collections: Sequence[str] | None = None) -> BuildReport:
    return build_index(source, config.index_dir, embedder, config.chunking, progress=progress, full=full,
                       store_kind=config.vector_store, busy_threads=busy_threads, on_wait=on_wait, wait=wait,
                       collections=collections, store_options=config.store_options)


def rebuild(config: EngineConfig, progress: Progress | None = None, full: bool = False,
            busy_threads: int = 0, on_wait: Callable[[], None] | None = None,
            collections: Sequence[str] | None = None) -> BuildReport:
    """Build or update the index (only changed documents are re-embedded unless ``full``).

    ``busy_threads``: threads of this process answering questions meanwhile (a bot's workers);
    ``on_wait``: called when another process is building the same index and this one waits for it;
    ``collections``: update only these collections, every other document kept exactly as indexed.
    """
    other = engine_backend(config)
    if other is not None:
        return other.rebuild(config, progress, full, busy_threads, on_wait, collections)
    return _build(config, config.open_source(), get_embedder(config.model), progress, full, busy_threads, on_wait,
                  collections=collections)


#: Up to this size ``describe_index`` hashes every file (hashlib reads about a gigabyte a second).
HASH_ON_DESCRIBE_BYTES = 256_000_000


def describe_index(config: EngineConfig, check: bool = False) -> IndexInfo:
    """What the index at ``config.index_dir`` holds, read from its manifest (no model is loaded).

    File sizes are always compared with the manifest's record (a stat each), and checksums too when the
    index is at most ``HASH_ON_DESCRIBE_BYTES`` (a flipped byte keeps the size: only a hash sees it);
    ``check`` verifies every checksum whatever the size and loads the whole index, as answering would.
    """
    other = engine_backend(config)
    if other is not None:
        return other.describe(config)
    manifest = read_manifest(config.index_dir)
    docs = [DocumentInfo(doc_id, d.get("title") or doc_id, d.get("url"), d.get("date"), int(d.get("chunks") or 0),
                         d.get("outlet"), d.get("collection") or collection_of(doc_id))
            for doc_id, d in manifest.get("documents", {}).items()]
    info = IndexInfo(Path(config.index_dir), manifest["model"], int(manifest["dim"]),
                     manifest.get("vector_store", DEFAULT_STORE), docs, int(manifest["counts"]["chunks"]),
                     manifest["counts"].get("sentences"), manifest.get("built_at"), manifest.get("chunking"),
                     str(config.corpus))
    info.deltas = len(manifest.get("deltas") or [])
    files = manifest.get("files")
    info.index_bytes = sum(f["bytes"] for f in (files.values() if isinstance(files, dict) else ())
                           if isinstance(f, dict) and isinstance(f.get("bytes"), int))
    info.checksums_verified = bool(files) and (check or info.index_bytes <= HASH_ON_DESCRIBE_BYTES)
    info.damaged = verify_files(config.index_dir, manifest, hashes=info.checksums_verified)
    if check and not info.damaged:
        try:
            load_index(config.index_dir, manifest["model"], int(manifest["dim"]))
        except HeraldError as exc:
            info.damage_error = exc
    try:
        now = config.open_source().fingerprints()
        info.stale = compare_fingerprints(built_fingerprints(manifest), now, manifest.get("skipped"))
    except HeraldError as exc:  # the corpus is gone or unreadable: the index is still described
        info.stale_error = exc
    return info


__all__ = ["Engine", "EngineConfig", "Notice", "DocumentInfo", "IndexInfo", "open_engine", "rebuild",
           "describe_index", "answer_type_of"]
