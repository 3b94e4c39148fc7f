"""Document sources: where articles come from. Each yields ``Document``s (id, title, text, url, date,
fingerprint) and, cheaply, the fingerprints alone, so staleness is checked without parsing anything.

``folder`` (the default) reads .txt, .md and .html files under the corpus folder (index/ingest/corpus.py does the
cleaning). Fetching by URL and following feeds are more classes registered in ``SOURCES`` and named in
settings.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from index.ingest.corpus import Document, corpus_files, corpus_fingerprints, load_corpus
from index.registry import Registry


@runtime_checkable
class DocumentSource(Protocol):
    """What builds and staleness checks need of a source of articles; a source class subclasses it for
    the defaults (``check``)."""

    kind: str
    location: str  # what the manifest records as the corpus (a folder, a feed URL, ...)

    def fingerprints(self) -> dict[str, str]:
        """``{document id: fingerprint}`` of everything the source holds, usable or not (cheap)."""

    def documents(self) -> Iterator[Document]:
        """Every usable document, parsed and cleaned (raises CorpusError when there is none)."""

    def check(self) -> None:
        """Raise the error a build would, before any work (by default: nothing to check cheaply)."""
        return None

    def documents_of(self, ids: Collection[str]) -> Iterator[Document]:
        """The usable documents among ``ids`` (an update parses only what changed; by default every
        document is parsed and the others dropped: a source that can read one document alone overrides it)."""
        wanted = set(ids)
        return (d for d in self.documents() if d.id in wanted)


SOURCES: Registry[DocumentSource] = Registry("document source")


class FolderSource(DocumentSource):
    """Article files under a folder (hidden files and folders are skipped); ids are relative paths."""

    kind = "folder"

    def __init__(self, location: str | Path) -> None:
        self.path = Path(location)
        self.location = str(self.path)

    def fingerprints(self) -> dict[str, str]:
        return corpus_fingerprints(self.path)

    def documents(self) -> Iterator[Document]:
        yield from load_corpus(self.path)

    def documents_of(self, ids: Collection[str]) -> Iterator[Document]:
        yield from load_corpus(self.path, only=set(ids))

    def check(self) -> None:
        """Raise the CorpusError a build would, before any work (a missing folder, no articles)."""
        if not corpus_files(self.path):
            load_corpus(self.path)


SOURCES.register("folder", FolderSource)


def open_source(kind: str, location: str | Path) -> DocumentSource:
    return SOURCES.create(kind, location)
