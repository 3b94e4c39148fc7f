"""Herald's retrieval library: documents in, vectors stored, answers written.

The public API is what this module exports (``__all__``); the application (``bot/``) uses nothing else,
and a test holds it to that. It never imports ``discord`` or ``bot`` and holds no words meant for people:
failures are typed errors carrying data (index.errors), which the application words.

    from index import EngineConfig, open_engine
    engine = open_engine(EngineConfig(corpus="corpus"))
    print(engine.ask("Who vetoed the resolution?").answer)

Seams (docs/architecture.md): ``SOURCES`` (where documents come from), ``VECTOR_STORES`` (where vectors
live and how they are searched), ``ANSWERERS`` (who writes the answer), plus ``register_embedder`` for
models (``EMBEDDERS``). Each is a Protocol with a registry by name (index/registry.py); settings choose the
name. Optional capabilities are declared on the Protocols with defaults (``Answerer.streams``,
``Embedder.multilingual``, ``VectorStore.files``), never probed.
"""

from index.answer.answerers import ANSWERERS, Answerer, ExtractiveAnswerer
from index.answer.llm import FALLBACK_REASONS, LLMAnswerer, LLMSettings
from index.build import BuildProgress, BuildReport
from index.embed.models import DEFAULT_MODEL, EMBEDDERS, Embedder, register_embedder
from index.engine import (
    ENGINES,
    DocumentInfo,
    Engine,
    EngineConfig,
    IndexEngine,
    IndexInfo,
    Notice,
    describe_index,
    open_engine,
    rebuild,
)
from index.errors import (
    BuildBusyError,
    CollectionError,
    CorpusError,
    DatabaseError,
    HeraldError,
    IndexCorruptError,
    IndexMismatchError,
    IndexMissingError,
    IndexPathError,
    IndexWriteError,
    ModelLoadError,
    QuestionError,
    QuestionSetError,
    UnknownBackendError,
)
from index.evaluate import EvalResult, QAItem, evaluate, load_qa
from index.ingest.chunking import ChunkSettings
from index.ingest.collections import BASE as BASE_COLLECTION
from index.ingest.collections import CollectionInfo, Collections, CollectionsSource, check_name, collection_of
from index.ingest.corpus import Document
from index.ingest.feeds import FeedResult, poll_feeds
from index.ingest.sources import SOURCES, DocumentSource, FolderSource
from index.ingest.web import AddResult, FetchError, FetchSettings, add_url, redact_url
from index.pg import engine as _postgres  # noqa: F401 - registers the "postgres" index engine
from index.search.reader import FolderReader, IndexReader
from index.search.retrieval import SearchSettings, search_for, tuned_values
from index.state import VoteLog, feed_states, vote_log
from index.store import Staleness
from index.store.vectors import VECTOR_STORES, FaissStore, VectorStore
from index.text import clean_question
from index.types import Answer, Draft, Source, Turn

__all__ = [
    # opening, asking, building, describing
    "EngineConfig", "Engine", "open_engine", "rebuild", "describe_index", "clean_question",
    "Answer", "Source", "Turn", "Notice", "BuildReport", "BuildProgress", "IndexInfo", "DocumentInfo", "Staleness",
    "SearchSettings", "search_for", "tuned_values", "ChunkSettings", "DEFAULT_MODEL",
    # evaluation
    "QAItem", "EvalResult", "load_qa", "evaluate",
    # collections (a server's own articles beside the operator's base corpus)
    "BASE_COLLECTION", "Collections", "CollectionInfo", "CollectionsSource", "collection_of", "check_name",
    # news in
    "add_url", "poll_feeds", "AddResult", "FeedResult", "FetchSettings", "FetchError", "redact_url",
    # state shared between processes (files, or the database when one is configured)
    "feed_states", "vote_log", "VoteLog",
    # seams
    "DocumentSource", "Document", "FolderSource", "SOURCES",
    "VectorStore", "FaissStore", "VECTOR_STORES", "IndexReader", "FolderReader", "IndexEngine", "ENGINES",
    "Answerer", "ExtractiveAnswerer", "LLMAnswerer", "LLMSettings", "FALLBACK_REASONS", "Draft", "ANSWERERS",
    "Embedder", "register_embedder", "EMBEDDERS",
    # errors
    "HeraldError", "BuildBusyError", "CollectionError", "CorpusError", "DatabaseError", "IndexMissingError",
    "IndexPathError",
    "IndexCorruptError", "IndexMismatchError", "IndexWriteError", "ModelLoadError", "QuestionError", "QuestionSetError",
    "UnknownBackendError",
]
