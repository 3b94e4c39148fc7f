"""Herald's retrieval library: documents in, vectors stored, answers written.

The public API is what this module exports (``__all__``); the application (``bot/``) uses nothing else,
and a test holds it to that. It never imports ``discord`` or ``bot`` and holds no words meant for people:
failures are typed errors carrying data (index.errors), which the application words.

    from index import EngineConfig, open_engine
    engine = open_engine(EngineConfig(corpus="corpus"))
    print(engine.ask("Who vetoed the resolution?").answer)

Seams (docs/architecture.md): ``SOURCES`` (where documents come from), ``VECTOR_STORES`` (where vectors
live and how they are searched), ``ANSWERERS`` (who writes the answer), plus ``register_embedder`` for
models. Each is a Protocol with a registry by name; settings choose the name.
"""

from index.answerers import ANSWERERS, Answerer, ExtractiveAnswerer
from index.build import BuildReport
from index.chunking import ChunkSettings
from index.corpus import Document
from index.embed import DEFAULT_MODEL, Embedder, register_embedder
from index.engine import (DocumentInfo, Engine, EngineConfig, IndexInfo, Notice, describe_index, open_engine,
                          rebuild)
from index.errors import (BuildBusyError, CorpusError, HeraldError, IndexCorruptError, IndexMismatchError, IndexMissingError,
                          IndexPathError, IndexWriteError, ModelLoadError, QuestionError, QuestionSetError,
                          UnknownBackendError)
from index.evaluate import EvalResult, QAItem, evaluate, load_qa
from index.llm import FALLBACK_REASONS, LLMAnswerer, LLMSettings
from index.retrieval import SearchSettings, search_for, tuned_values
from index.sources import SOURCES, DocumentSource, FolderSource
from index.store import Staleness
from index.text import clean_question
from index.types import Answer, Draft, Source, Turn
from index.vectors import VECTOR_STORES, FaissStore, VectorStore
from index.feeds import FeedResult, poll_feeds
from index.web import AddResult, FetchError, FetchSettings, add_url, redact_url

__all__ = [
    # opening, asking, building, describing
    "EngineConfig", "Engine", "open_engine", "rebuild", "describe_index", "clean_question",
    "Answer", "Source", "Turn", "Notice", "BuildReport", "IndexInfo", "DocumentInfo", "Staleness",
    "SearchSettings", "search_for", "tuned_values", "ChunkSettings", "DEFAULT_MODEL",
    # evaluation
    "QAItem", "EvalResult", "load_qa", "evaluate",
    # news in
    "add_url", "poll_feeds", "AddResult", "FeedResult", "FetchSettings", "FetchError", "redact_url",
    # seams
    "DocumentSource", "Document", "FolderSource", "SOURCES",
    "VectorStore", "FaissStore", "VECTOR_STORES",
    "Answerer", "ExtractiveAnswerer", "LLMAnswerer", "LLMSettings", "FALLBACK_REASONS", "Draft", "ANSWERERS",
    "Embedder", "register_embedder",
    # errors
    "HeraldError", "BuildBusyError", "CorpusError", "IndexMissingError", "IndexPathError", "IndexCorruptError",
    "IndexMismatchError", "IndexWriteError", "ModelLoadError", "QuestionError", "QuestionSetError",
    "UnknownBackendError",
]
