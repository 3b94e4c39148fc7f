"""The index on disk: the vector store's files, chunk and document records, sentence vectors, and a
manifest that describes them.

``records`` (an index in memory), ``load`` (reading one back, checked), ``disk`` (writing one: a fresh
folder swapped into place with a journal, and cleanup), ``lock`` (one build at a time), ``vectors`` (the
vector store seam). This package re-exports what builds and the engine use.
"""

from index.store.disk import check_replaceable, clean_leftovers, write_index
from index.store.load import check_compatible, file_digest, load_index, read_manifest, verify_files
from index.store.lock import build_lock
from index.store.records import (
    DEFAULT_STORE,
    FORMAT_VERSION,
    MANIFEST,
    RECORD_FILES,
    LoadedIndex,
    Staleness,
    built_fingerprints,
    compare_fingerprints,
    index_files,
)

__all__ = ["check_replaceable", "clean_leftovers", "write_index", "check_compatible", "file_digest", "load_index",
           "read_manifest", "verify_files", "build_lock", "DEFAULT_STORE", "FORMAT_VERSION", "MANIFEST",
           "RECORD_FILES", "LoadedIndex", "Staleness", "built_fingerprints", "compare_fingerprints", "index_files"]
