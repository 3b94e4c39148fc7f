"""Shared fixtures: a fast fake embedder, per-test data folders, settings isolated from the developer.

Fixtures (all function-scoped unless noted):

* ``real_article`` (session): path of the real seed article in ``corpus/``.
* ``real_corpus_dir`` (session): the repository's ``corpus/`` folder (read it, never write to it).
* ``fake_embedder``: a ``HashEmbedder`` registered as ``"test-hash"`` (64 dims); ``.calls`` counts
  ``encode`` calls, ``.seen`` lists every text it embedded, ``.loads`` counts how often the registry
  built it (``get_embedder`` caches, so one CLI run should load it once).
* ``make_embedder``: ``make_embedder(name, dim=64, fail_after=None, exc=RuntimeError)`` registers another
  fake; ``fail_after=n`` makes the (n+1)-th ``encode`` call raise ``exc`` (interrupted builds).
* ``herald_paths``: ``HeraldPaths(root, corpus, index)`` under ``tmp_path``; ``corpus`` exists and is empty,
  ``index`` does not exist yet.
* ``article_corpus``: ``herald_paths`` with the real article copied into the corpus folder.
* ``built_index``: ``article_corpus`` built with the fake embedder (returns the same ``HeraldPaths``).
* ``isolated_settings``: chdir to ``tmp_path`` (so no ``.env`` is found) with HERALD_* / DISCORD_TOKEN
  removed; returns ``tmp_path``.
* ``invoke``: ``invoke(*args, input=None, env=None)`` runs ``bot.cli:cli`` in-process (CliRunner,
  ``obj={}``, ``--env-file`` pointed at an empty file) and returns the click Result.
* ``real_engine`` (session, real model): an Engine over the article built with the packaged model in a
  temp folder; mark tests that use it ``@pytest.mark.model``.

Every test also runs with HERALD_* and DISCORD_TOKEN removed from the environment (autouse), so a
developer's own settings never change what a test sees.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from index.embed.base import Embedder

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
ARTICLE_NAME = "euronews-frosty-franco-russian-relations.txt"
FAKE_MODEL = "test-hash"


# ----------------------------------------------------------------------------------- fake embedder


class HashEmbedder(Embedder):
    """Deterministic bag-of-words embedder: stemmed content words hashed into ``dim`` signed buckets.

    Texts that share words get similar vectors, which is enough for retrieval tests; it needs no model
    and encodes thousands of texts a second.
    """

    def __init__(self, name: str = FAKE_MODEL, dim: int = 64, fail_after: int | None = None,
                 exc: type[BaseException] = RuntimeError) -> None:
        self.name = name
        self.dim = dim
        self.fail_after = fail_after
        self.exc = exc
        self.calls = 0
        self.loads = 0
        self.seen: list[str] = []

    def _vector(self, text: str) -> np.ndarray:
        from index.text import content_terms

        vec = np.zeros(self.dim, dtype=np.float32)
        for term in content_terms(text):
            digest = hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dim
            vec[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else vec

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise self.exc("fake embedder failed on purpose")
        self.calls += 1
        self.seen.extend(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([self._vector(t) for t in texts]).astype(np.float32)


def _unregister(name: str) -> None:
    from index.embed import models as embed

    embed.unregister_embedder(name)  # drop the fake so tests cannot leak it


@pytest.fixture
def make_embedder() -> Callable[..., HashEmbedder]:
    from index.embed.models import register_embedder

    names: list[str] = []

    def make(name: str = FAKE_MODEL, dim: int = 64, fail_after: int | None = None,
             exc: type[BaseException] = RuntimeError) -> HashEmbedder:
        emb = HashEmbedder(name, dim, fail_after, exc)

        def factory(_name: str) -> HashEmbedder:
            emb.loads += 1
            return emb

        register_embedder(name, factory)
        names.append(name)
        return emb

    yield make
    for name in names:
        _unregister(name)


@pytest.fixture
def fake_embedder(make_embedder) -> HashEmbedder:
    return make_embedder(FAKE_MODEL)


# ------------------------------------------------------------------------------ paths and settings


@pytest.fixture(scope="session")
def real_corpus_dir() -> Path:
    return REPO_DIR / "corpus"


@pytest.fixture(scope="session")
def real_article(real_corpus_dir) -> Path:
    path = real_corpus_dir / ARTICLE_NAME
    assert path.is_file(), f"the seed article is missing: {path}"
    return path


@dataclass
class HeraldPaths:
    root: Path
    corpus: Path
    index: Path


@pytest.fixture
def herald_paths(tmp_path) -> HeraldPaths:
    root = tmp_path / "herald-data"
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    return HeraldPaths(root, corpus, root / "index")


@pytest.fixture
def article_corpus(herald_paths, real_article) -> HeraldPaths:
    shutil.copy(real_article, herald_paths.corpus / real_article.name)
    return herald_paths


@pytest.fixture
def built_index(article_corpus, fake_embedder) -> HeraldPaths:
    from index.build import build_index

    build_index(article_corpus.corpus, article_corpus.index, fake_embedder)
    return article_corpus


@pytest.fixture(autouse=True)
def _no_herald_env(monkeypatch) -> None:
    """Keep the developer's HERALD_* and DISCORD_TOKEN out of every test."""
    for name in list(os.environ):
        if name.startswith("HERALD_") or name == "DISCORD_TOKEN":
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def isolated_settings(tmp_path, monkeypatch) -> Path:
    """Run in an empty folder, so neither a developer's .env nor relative paths leak in."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def invoke(tmp_path):
    """Run the CLI in-process; settings come only from the arguments and ``env`` given."""
    from click.testing import CliRunner

    from bot.cli import cli

    runner = CliRunner()
    no_env_file = tmp_path / "empty.env"  # an explicit --env-file must exist; this one sets nothing
    no_env_file.write_text("", encoding="utf-8")

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None):
        argv = [str(a) for a in args]
        if "--env-file" not in argv:
            argv = ["--env-file", str(no_env_file), *argv]
        return runner.invoke(cli, argv, obj={}, input=input, env=env, catch_exceptions=False)

    return run


# --------------------------------------------------------------------------------------- real model


@pytest.fixture(scope="session")
def real_engine(tmp_path_factory, real_article):
    """The article indexed with the packaged all-MiniLM-L6-v2 (loads once per test session)."""
    from index import EngineConfig, open_engine
    from index.embed.models import DEFAULT_MODEL

    root = tmp_path_factory.mktemp("real-model")
    corpus = root / "corpus"
    corpus.mkdir()
    shutil.copy(real_article, corpus / real_article.name)
    return open_engine(EngineConfig(corpus=corpus, index_dir=root / "index", model=DEFAULT_MODEL))


# ----------------------------------------------------------------------------- what people read


@contextlib.contextmanager
def raises_said(exc_type: type[BaseException], match: str) -> Iterator[pytest.ExceptionInfo]:
    """Like ``pytest.raises(exc_type, match=...)``, but ``match`` is searched in what a person reads:
    the library raises typed errors and ``bot.messages.explain`` words them."""
    import re

    from bot.messages import explain

    with pytest.raises(exc_type) as info:
        yield info
    said = explain(info.value)
    assert re.search(match, said), f"{match!r} not in {said!r}"


# ------------------------------------------------------------------------------------------ PostgreSQL


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """One real PostgreSQL with pgvector for the whole run, from PyPI's pgserver (make test installs it), its
    data in a temporary folder removed at the end; it listens on a unix socket, never on a network."""
    pgserver = pytest.importorskip("pgserver", reason="the PostgreSQL tests need pgserver (make test installs it)")
    pytest.importorskip("psycopg", reason="the PostgreSQL tests need herald[postgres] (make test installs it)")
    srv = pgserver.get_server(str(tmp_path_factory.mktemp("pg")), cleanup_mode="delete")
    yield srv
    srv.cleanup()


@pytest.fixture
def database(pg_server) -> str:
    """A fresh, empty database for one test; its URL."""
    import uuid

    from index.pg.schema import connect

    name = "t_" + uuid.uuid4().hex[:12]
    admin = connect(pg_server.get_uri())
    admin.autocommit = True
    admin.execute(f"CREATE DATABASE {name}")
    admin.close()
    return pg_server.get_uri().replace("/postgres?", f"/{name}?")
