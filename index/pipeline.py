"""Opening an index ready to answer: load it, or build it first when it is missing or stale."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from index.chunking import ChunkSettings
from index.corpus import corpus_files, load_corpus
from index.embed import get_embedder
from index.errors import IndexMissingError
from index.search import Engine, SearchSettings
from index.store import (BuildReport, Progress, build_index, check_compatible, check_replaceable, load_index,
                         read_manifest)


def open_engine(corpus_dir: Path, index_dir: Path, model: str, search: SearchSettings = SearchSettings(),
                chunking: ChunkSettings = ChunkSettings(), auto_build: bool = True,
                notify: Callable[[str], None] = lambda msg: None,
                progress: Progress | None = None) -> Engine:
    """An Engine over an up-to-date index, building it first (and saying so) when needed.

    An index made with another model is refused, not rebuilt behind the user's back: rebuilding
    re-embeds everything and the user may simply have the wrong setting.
    """
    embedder = get_embedder(model)
    try:
        manifest = read_manifest(index_dir)
    except IndexMissingError:
        if not auto_build:
            raise
        # Say what is wrong (no corpus, an --index that is not ours), not "building..." and then the error.
        if not corpus_files(corpus_dir):
            load_corpus(corpus_dir)  # raises the usual CorpusError
        check_replaceable(Path(index_dir))
        notify(f"No index at {index_dir} yet; building it from {corpus_dir} (once).")
        build_index(corpus_dir, index_dir, embedder, chunking, progress=progress)
        return Engine(load_index(index_dir, model, embedder.dim), embedder, search)
    check_compatible(manifest, model, embedder.dim)
    loaded = load_index(index_dir, model, embedder.dim)
    if auto_build:
        stale = loaded.staleness(corpus_dir)
        if stale.stale or manifest.get("chunking") != chunking.to_dict():
            why = stale.describe() if stale.stale else "chunking settings changed"
            notify(f"The corpus changed since the index was built ({why}); updating the index.")
            build_index(corpus_dir, index_dir, embedder, chunking, progress=progress)
            loaded = load_index(index_dir, model, embedder.dim)
    return Engine(loaded, embedder, search)


def rebuild(corpus_dir: Path, index_dir: Path, model: str, chunking: ChunkSettings = ChunkSettings(),
            progress: Progress | None = None, full: bool = False) -> BuildReport:
    """Build or update the index (only changed documents are re-embedded unless ``full``)."""
    return build_index(corpus_dir, index_dir, get_embedder(model), chunking, progress=progress, full=full)
