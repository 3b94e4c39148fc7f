"""Updates do work in proportion to what changed (issue 19, item 5): an unchanged article's file is not
parsed again (its fingerprint says it is the same), and the result is the index a full build makes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index.build import build_index
from index.store import load_index

STORY = "---\ntitle: {title}\n---\n{title} happened on Monday, officials said.\n\nIt was the {n}th time this year.\n"


@pytest.fixture
def parses(monkeypatch) -> list[str]:
    """The ids of the documents parsed, in order."""
    import index.ingest.corpus as corpus

    seen: list[str] = []
    real = corpus.parse_document

    def counting(path, doc_id, raw):
        seen.append(doc_id)
        return real(path, doc_id, raw)

    monkeypatch.setattr(corpus, "parse_document", counting)
    return seen


def _write(folder, name: str, title: str, n: int) -> None:
    (folder / name).write_text(STORY.format(title=title, n=n), encoding="utf-8")


def _records(index_dir) -> list[dict]:
    return [json.loads(line) for line in (index_dir / "documents.jsonl").read_text(encoding="utf-8").splitlines()]


def test_an_update_parses_only_new_and_changed_files(herald_paths, fake_embedder, parses) -> None:
    corpus, index_dir = herald_paths.corpus, herald_paths.index
    for i in range(5):
        _write(corpus, f"s{i}.md", f"Story {i} of the harbour", i)
    build_index(corpus, index_dir, fake_embedder)
    assert sorted(parses) == [f"s{i}.md" for i in range(5)]
    parses.clear()
    _write(corpus, "s5.md", "A new story about ferries", 5)
    _write(corpus, "s2.md", "Story 2, corrected", 2)
    report = build_index(corpus, index_dir, fake_embedder)
    assert sorted(parses) == ["s2.md", "s5.md"]
    assert report.added == ["s5.md"] and report.changed == ["s2.md"] and len(report.unchanged) == 4
    parses.clear()
    assert not build_index(corpus, index_dir, fake_embedder).changed_anything and parses == []


@pytest.mark.parametrize("share", [0.0, 1e9], ids=["written whole", "delta segment"])
def test_the_update_is_the_index_a_full_build_makes(herald_paths, fake_embedder, tmp_path, monkeypatch,
                                                    share) -> None:
    """Written whole or as a delta segment (index/store/segments.py), the update loads as the full build."""
    import index.store.writer

    monkeypatch.setattr(index.store.writer, "REWRITE_SHARE", share)
    corpus, index_dir = herald_paths.corpus, herald_paths.index
    for i in range(4):
        _write(corpus, f"s{i}.md", f"Story {i} of the harbour", i)
    build_index(corpus, index_dir, fake_embedder)
    _write(corpus, "s1.md", "Story 1, corrected", 1)
    (corpus / "s3.md").unlink()
    _write(corpus, "s4.md", "Story 4 arrives", 4)
    build_index(corpus, index_dir, fake_embedder)
    fresh = tmp_path / "fresh"
    build_index(corpus, fresh, fake_embedder)
    updated, built = load_index(index_dir), load_index(fresh)
    assert bool(updated.manifest["deltas"]) == (share > 1)
    assert updated.documents == built.documents and updated.doc_sentences == built.doc_sentences
    if share == 0.0:
        assert _records(index_dir) == _records(fresh)
    assert updated.chunks == built.chunks
    assert np.array_equal(updated.sentence_vectors, built.sentence_vectors)  # the same rows, in the same order
    assert np.array_equal(updated.chunk_vectors(), built.chunk_vectors())


def test_a_chunk_record_has_every_field_in_order() -> None:
    """chunks.jsonl is written by hand (Chunk.to_dict): a new field must not be left out of it."""
    from dataclasses import fields

    from index.ingest.chunking import Chunk

    chunk = Chunk("d", "T", "text", 0, 4, [(0, 2), (2, 4)], "https://x.example/")
    assert list(chunk.to_dict()) == [f.name for f in fields(Chunk)]
    assert Chunk.from_dict(chunk.to_dict()) == chunk


def test_a_copy_waits_for_its_original_to_go(herald_paths, fake_embedder, caplog) -> None:
    corpus, index_dir = herald_paths.corpus, herald_paths.index
    _write(corpus, "a.md", "The harbour story", 1)
    _write(corpus, "b.md", "Another story", 2)
    build_index(corpus, index_dir, fake_embedder)
    (corpus / "z-copy.md").write_bytes((corpus / "a.md").read_bytes())
    build_index(corpus, index_dir, fake_embedder)
    assert [d.id for d in load_index(index_dir).documents] == ["a.md", "b.md"]
    assert any("z-copy.md" in r.getMessage() and "same article as a.md" in r.getMessage() for r in caplog.records)
    (corpus / "a.md").unlink()
    build_index(corpus, index_dir, fake_embedder)
    assert [d.id for d in load_index(index_dir).documents] == ["b.md", "z-copy.md"]


def test_the_same_article_in_two_collections_is_kept_in_each(herald_paths, fake_embedder, tmp_path) -> None:
    """Two servers that follow the same feed each get the article: one copy per collection, as a full build keeps
    (an update used to skip the second server's copy, which that server then could not find)."""
    from index.ingest.collections import CollectionsSource
    from index.ingest.sources import FolderSource

    root = herald_paths.root / "collections"
    _write(herald_paths.corpus, "base.md", "The base story", 1)
    source = CollectionsSource(FolderSource(herald_paths.corpus), root)
    build_index(source, herald_paths.index, fake_embedder)
    for name in ("guild-1", "guild-2"):  # one poll of the servers' feeds, one scoped rebuild
        (root / name).mkdir(parents=True)
        _write(root / name, "wire.md", "A wire story about ferries", 7)
    build_index(source, herald_paths.index, fake_embedder, collections=["guild-1", "guild-2"])
    ids = [d.id for d in load_index(herald_paths.index).documents]
    assert ids == ["base.md", "guild-1:wire.md", "guild-2:wire.md"]
    build_index(source, tmp_path / "fresh", fake_embedder)
    assert [d.id for d in load_index(tmp_path / "fresh").documents] == ids
