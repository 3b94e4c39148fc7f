"""Collections: every document belongs to one. ``base`` is the operator's corpus folder; every other
collection is a folder of its own under one root (``<root>/<name>/``), e.g. ``guild-<id>`` for a Discord
server's articles and feeds.

All collections live in one index and are filtered at search time (docs/quality.md, "Collections", has the
measurement that chose this over one index per collection). A collection's document ids are
``<name>:<path in its folder>`` so they never meet the base corpus's plain paths.

A collection folder also holds what its owner keeps about it, in hidden files the corpus reader skips:
``.collection.json`` (free-form metadata the application writes: owner, last use, feeds, ...) and
``.feeds.json`` (its feeds' polling state). The library reads and writes them; it never words them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from index.errors import CollectionError, CorpusError
from index.ingest.corpus import Document, corpus_files, corpus_fingerprints, load_corpus
from index.ingest.sources import DocumentSource
from index.ingest.web import article_path

BASE = "base"
META_FILE = ".collection.json"
FEED_STATE_FILE = ".feeds.json"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def check_name(name: str) -> str:
    """``name`` if it can name a collection (a folder name on every system), else CollectionError."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise CollectionError("bad_name", str(name))
    return name


def collection_of(doc_id: str) -> str:
    """The collection a document id belongs to (``guild-1:a.md`` -> ``guild-1``; a plain path -> ``base``)."""
    name, sep, _ = doc_id.partition(":")
    return name if sep and _NAME_RE.fullmatch(name) else BASE


def qualified(name: str, doc_id: str) -> str:
    """A document id as the index knows it: ``<name>:<id>`` outside ``base``."""
    return doc_id if name == BASE else f"{name}:{doc_id}"


def collection_dir(root: Path | str, name: str) -> Path:
    """Where collection ``name`` keeps its articles (``base`` has no folder here: it is the corpus)."""
    if check_name(name) == BASE:
        raise CollectionError("bad_name", name)
    return Path(root) / name


def collection_names(root: Path | str | None) -> list[str]:
    """The collections with a folder under ``root`` (sorted; none when ``root`` is None or missing)."""
    if root is None or not Path(root).is_dir():
        return []
    return sorted(e.name for e in os.scandir(root)
                  if e.is_dir() and not e.is_symlink() and _NAME_RE.fullmatch(e.name) and e.name != BASE)


@dataclass
class CollectionInfo:
    """One collection on disk: its articles' count and bytes, and the metadata its owner keeps."""

    name: str
    folder: Path
    articles: int = 0
    bytes: int = 0
    meta: dict = field(default_factory=dict)


def describe_collection(root: Path | str, name: str) -> CollectionInfo:
    folder = collection_dir(root, name)
    files = corpus_files(folder) if folder.is_dir() else []
    size = 0
    for _, path in files:
        try:
            size += path.stat().st_size
        except OSError:
            continue
    return CollectionInfo(name, folder, len(files), size, read_meta(root, name))


def list_collections(root: Path | str | None) -> list[CollectionInfo]:
    return [describe_collection(root, n) for n in collection_names(root)] if root is not None else []


def read_meta(root: Path | str, name: str) -> dict:
    """The collection's metadata ({} when none, or unreadable: it is never worth failing a question)."""
    path = collection_dir(root, name) / META_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_meta(root: Path | str, name: str, meta: dict) -> None:
    """Replace the collection's metadata atomically (creating its folder on first use)."""
    folder = collection_dir(root, name)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".collection-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=1, sort_keys=True)
        os.replace(tmp, folder / META_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_collection(root: Path | str, name: str) -> bool:
    """Delete the collection's folder (articles, metadata, feed state); False when there was none.
    A link in its place is unlinked, never followed."""
    folder = collection_dir(root, name)
    if folder.is_symlink():
        folder.unlink()
        return True
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True


def feed_state_file(root: Path | str, name: str) -> Path:
    """Where the polling state of the collection's feeds is kept (beside its articles, hidden)."""
    return collection_dir(root, name) / FEED_STATE_FILE


def article_count(folder: Path | str) -> int:
    """Article files in a collection folder (0 when it does not exist yet): what a quota counts."""
    return len(corpus_files(Path(folder))) if Path(folder).is_dir() else 0


def holds_url(folder: Path | str, url: str) -> bool:
    """Whether the article of ``url`` is saved in ``folder`` already (adding it again is an update)."""
    return article_path(Path(folder), url).is_file()


def forget_url(folder: Path | str, url: str) -> list[Path]:
    """Delete the saved article(s) of ``url`` from a collection folder: the file ``add_url`` wrote for it,
    and any article whose recorded URL is ``url`` (a redirect saved it under its final address). Returns
    the files removed ([] when the folder holds no such article)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    wanted = {url.strip(), url.strip().rstrip("/")}
    found = {article_path(folder, url.strip())} if article_path(folder, url.strip()).is_file() else set()
    found.update(Path(d.path) for d in _documents_or_none(folder) if d.url and d.url.rstrip("/") in wanted)
    removed = []
    for path in sorted(found):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            continue
    return removed


def _documents_or_none(folder: Path) -> list[Document]:
    try:
        return load_corpus(folder)
    except CorpusError:
        return []


class CollectionsSource(DocumentSource):
    """The base source (the operator's corpus, any registered source) plus every collection folder under
    ``root``, their ids qualified by collection.

    ``only``: read just these collections (a scoped rebuild keeps the others as the index has them).
    A collection folder with no articles is simply empty; the base must hold some, as before, unless
    other collections do.
    """

    def __init__(self, base: DocumentSource, root: str | Path | None = None,
                 only: tuple[str, ...] | None = None) -> None:
        self.base = base
        self.kind = base.kind
        self.location = base.location
        self.root = Path(root) if root is not None else None
        self.only = only

    def scoped(self, only: tuple[str, ...]) -> CollectionsSource:
        """The same source reading only the collections in ``only``."""
        return CollectionsSource(self.base, self.root, tuple(only))

    def _wanted(self, name: str) -> bool:
        return self.only is None or name in self.only

    def _others(self) -> list[tuple[str, Path]]:
        """(name, folder) of each collection besides ``base`` that is read."""
        root = self.root
        return [] if root is None else [(n, root / n) for n in collection_names(root) if self._wanted(n)]

    def fingerprints(self) -> dict[str, str]:
        prints = self.base.fingerprints() if self._wanted(BASE) else {}
        for name, folder in self._others():
            prints.update((qualified(name, k), v) for k, v in corpus_fingerprints(folder).items())
        return prints

    def documents(self) -> Iterator[Document]:
        if self._wanted(BASE):
            yield from self.base.documents()
        for name, folder in self._others():
            try:
                docs = load_corpus(folder)  # one walk of the folder
            except CorpusError as exc:
                if exc.problem == "empty":  # no usable article (none yet, or only empty files): nothing to add
                    continue
                raise
            for doc in docs:
                doc.id, doc.collection = qualified(name, doc.id), name
                yield doc

    def documents_of(self, ids: Collection[str]) -> Iterator[Document]:
        wanted = set(ids)
        base_ids = {i for i in wanted if collection_of(i) == BASE}
        if base_ids and self._wanted(BASE):
            yield from self.base.documents_of(base_ids)
        for name, folder in self._others():
            mine = {i.split(":", 1)[1] for i in wanted if collection_of(i) == name}
            if mine:
                for doc in load_corpus(folder, only=mine):
                    doc.id, doc.collection = qualified(name, doc.id), name
                    yield doc

    def check(self) -> None:
        if self._wanted(BASE):
            self.base.check()



class Collections:
    """The collection folders under one root, as the application manages them (one object, not a dozen
    functions in the public API)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def folder(self, name: str) -> Path:
        return collection_dir(self.root, name)

    def names(self) -> list[str]:
        return collection_names(self.root)

    def describe_all(self) -> list[CollectionInfo]:
        return list_collections(self.root)

    def describe(self, name: str) -> CollectionInfo:
        return describe_collection(self.root, name)

    def meta(self, name: str) -> dict:
        return read_meta(self.root, name)

    def set_meta(self, name: str, meta: dict) -> None:
        write_meta(self.root, name, meta)

    def remove(self, name: str) -> bool:
        return remove_collection(self.root, name)

    def feed_state(self, name: str) -> Path:
        return feed_state_file(self.root, name)

    def articles(self, name: str) -> int:
        return article_count(self.folder(name))

    def holds(self, name: str, url: str) -> bool:
        return holds_url(self.folder(name), url)

    def forget(self, name: str, url: str) -> list[Path]:
        return forget_url(self.folder(name), url)
