"""The folder index's delta segments (issue 19, item 5; index/store/segments.py): an update writes and hashes only
its own new files, links every other file of the index unchanged, and loads as the index a full build makes."""

from __future__ import annotations

import json

import numpy as np
import pytest

import index.store.writer
from conftest import raises_said
from index.build import build_index
from index.errors import HeraldError, IndexCorruptError
from index.store import MANIFEST, load_index, read_manifest
from index.store.segments import delta_files

STORY = "---\ntitle: {title}\n---\n{title} happened on Monday, officials said.\n\nIt was the {n}th time this year.\n"


def _write(folder, name: str, title: str, n: int) -> None:
    (folder / name).write_text(STORY.format(title=title, n=n), encoding="utf-8")


def _corpus(folder, n: int) -> None:
    for i in range(n):
        _write(folder, f"s{i:02d}.md", f"Story {i} of the harbour", i)


@pytest.fixture
def share(monkeypatch):
    """Sets the share of the base past which an update writes the index whole (default: deltas only)."""

    def set_share(value: float) -> None:
        monkeypatch.setattr(index.store.writer, "REWRITE_SHARE", value)

    set_share(1e9)
    return set_share


def _same_as_a_full_build(paths, embedder, tmp_path) -> None:
    fresh = tmp_path / "fresh"
    build_index(paths.corpus, fresh, embedder)
    updated, built = load_index(paths.index), load_index(fresh)
    assert updated.documents == built.documents and updated.doc_sentences == built.doc_sentences
    assert updated.chunks == built.chunks
    assert np.array_equal(updated.sentence_vectors, built.sentence_vectors)
    assert np.array_equal(updated.chunk_vectors(), built.chunk_vectors())


def test_an_update_writes_and_hashes_only_its_delta(herald_paths, fake_embedder, monkeypatch, share, tmp_path):
    import index.build
    import index.store.disk

    _corpus(herald_paths.corpus, 12)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    inodes = {p.name: p.stat().st_ino for p in herald_paths.index.iterdir() if p.name != MANIFEST}
    hashed: list[str] = []
    real = index.store.disk.file_digest
    monkeypatch.setattr(index.store.disk, "file_digest", lambda p: hashed.append(p.name) or real(p))

    def no_load(*args, **kwargs):
        raise AssertionError("an update loaded the whole index")

    monkeypatch.setattr(index.build, "load_index", no_load)
    _write(herald_paths.corpus, "z-new.md", "A ferry strike", 99)
    report = build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    assert report.added == ["z-new.md"]
    manifest = read_manifest(herald_paths.index)
    assert [d["name"] for d in manifest["deltas"]] == ["delta-000001"]
    assert sorted(hashed) == sorted(delta_files("delta-000001"))  # nothing else read or hashed again
    after = {p.name: p.stat().st_ino for p in herald_paths.index.iterdir()}
    assert all(after[name] == ino for name, ino in inodes.items())  # the same files, linked, not rewritten
    monkeypatch.undo()
    share(1e9)
    loaded = load_index(herald_paths.index)
    assert loaded.documents[-1].id == "z-new.md" and manifest["documents"]["z-new.md"]["segment"] == "delta-000001"
    _same_as_a_full_build(herald_paths, fake_embedder, tmp_path)


@pytest.mark.parametrize("hnsw_above", [50_000, 5], ids=["flat", "hnsw"])
def test_a_changed_or_removed_article_is_never_found_in_its_stale_copy(herald_paths, fake_embedder, share,
                                                                       tmp_path, hnsw_above):
    options = {"hnsw_above": hnsw_above}
    _corpus(herald_paths.corpus, 10)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder, store_options=options)
    before = load_index(herald_paths.index)
    stale = [before.chunk_ids[r] for d in ("s02.md", "s03.md") for r in before.chunk_rows_by_doc[d]]
    _write(herald_paths.corpus, "s02.md", "Story 2, corrected", 2)
    (herald_paths.corpus / "s03.md").unlink()
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder, store_options=options)
    after = load_index(herald_paths.index)
    assert after.manifest["deltas"] and after.store.approximate == (hnsw_above == 5)
    assert "s03.md" not in after.doc_by_id and after.doc_by_id["s02.md"].title == "Story 2, corrected"
    assert len(after.store) == len(after.chunks)
    for vector in before.store.get(stale):
        found = {i for i, _ in after.store.search(vector, len(after.chunks))}
        assert found == set(after.chunk_ids)  # every live chunk, no stale one
    fresh = tmp_path / "fresh"
    build_index(herald_paths.corpus, fresh, fake_embedder, store_options=options)
    assert load_index(fresh).documents == after.documents


def test_deltas_merge_as_they_grow_and_the_base_is_rewritten_past_its_share(herald_paths, fake_embedder, share,
                                                                           tmp_path):
    _corpus(herald_paths.corpus, 20)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    base = read_manifest(herald_paths.index)["base_chunks"]
    share(0.5)
    counts, rewrites = [], 0
    for i in range(int(base * 0.5) + 2):
        _write(herald_paths.corpus, f"z{i:02d}.md", f"News item {i} from the port", 100 + i)
        build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
        manifest = read_manifest(herald_paths.index)
        counts.append(len(manifest["deltas"]))
        rewrites += not manifest["deltas"]
        on_disk = sorted(p.name for p in herald_paths.index.iterdir() if p.name.startswith("delta-"))
        assert on_disk == sorted(f for d in manifest["deltas"] for f in delta_files(d["name"]))
        assert sum(d["rows"] for d in manifest["deltas"]) <= 0.5 * manifest["base_chunks"] + 2
    assert rewrites == 1 and max(counts) <= 3 and counts[0] == 1
    _same_as_a_full_build(herald_paths, fake_embedder, tmp_path)


def test_a_damaged_delta_is_caught_and_the_next_build_repairs_it(herald_paths, fake_embedder, share):
    _corpus(herald_paths.corpus, 8)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    _write(herald_paths.corpus, "z1.md", "A ferry strike", 1)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    vectors = herald_paths.index / "delta-000001.vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-3] ^= 0x40  # same size: only its checksum tells
    vectors.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="delta-000001.vectors.npy do not match their checksums"):
        load_index(herald_paths.index)
    _write(herald_paths.corpus, "z2.md", "A second strike", 2)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)  # the merge reads it: built again
    repaired = load_index(herald_paths.index)
    assert repaired.manifest["deltas"] == [] and {"z1.md", "z2.md"} <= set(repaired.doc_by_id)
    _write(herald_paths.corpus, "z3.md", "A third strike", 3)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    sentences = herald_paths.index / "delta-000001.sentences.npy"
    assert read_manifest(herald_paths.index)["deltas"][0]["name"] == "delta-000001"
    sentences.write_bytes(sentences.read_bytes()[:-8])  # another size: a build notices without hashing
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    assert "z3.md" in load_index(herald_paths.index).doc_by_id


def _as_older_format(index_dir, version: int) -> None:
    """Turn a freshly built index into what format ``version`` wrote: its document entries inside the manifest
    (no catalog); format 1 also without segments' keys and the entries' sentence counts and text keys."""
    manifest = read_manifest(index_dir)
    (index_dir / "catalog.json").unlink()
    del manifest["files"]["catalog.json"]
    for key in ("catalog", "changes", "placed", "base_stale_rows"):
        del manifest[key]
    manifest["format_version"] = version
    if version == 1:
        for key in ("next_chunk_id", "base_chunks", "deltas", "next_delta"):
            del manifest[key]
        for entry in manifest["documents"].values():
            del entry["sentences"], entry["text_key"]
    (index_dir / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


@pytest.mark.parametrize("version", [1, 2])
def test_an_index_of_an_older_format_loads_and_its_next_update_is_written_whole(herald_paths, fake_embedder,
                                                                               share, version):
    _corpus(herald_paths.corpus, 6)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    _as_older_format(herald_paths.index, version)
    assert len(load_index(herald_paths.index).documents) == 6
    _write(herald_paths.corpus, "z1.md", "A ferry strike", 1)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    assert read_manifest(herald_paths.index)["format_version"] == 3
    assert read_manifest(herald_paths.index)["deltas"] == []
    _write(herald_paths.corpus, "z2.md", "A second strike", 2)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    assert len(read_manifest(herald_paths.index)["deltas"]) == 1 and len(load_index(herald_paths.index).documents) == 8


def test_a_failed_delta_write_leaves_the_previous_index(herald_paths, fake_embedder, share, monkeypatch):
    _corpus(herald_paths.corpus, 6)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(index.store.writer, "write_delta", full_disk)
    _write(herald_paths.corpus, "z1.md", "A ferry strike", 1)
    with raises_said(HeraldError, "No space left on device"):
        build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    assert [p.name for p in herald_paths.index.parent.iterdir() if p.name.startswith(".index.tmp-")] == []
    assert "z1.md" not in load_index(herald_paths.index).doc_by_id
    monkeypatch.undo()
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    assert "z1.md" in load_index(herald_paths.index).doc_by_id


def test_delta_names_stay_index_files_past_a_million_updates():
    from index.store.segments import delta_name, is_delta_file

    assert all(is_delta_file(f) for f in delta_files(delta_name(1_234_567)))
    assert not is_delta_file("delta-12.vectors.npy") and not is_delta_file("delta-000001.notes.txt")


def test_info_says_how_many_delta_segments_the_index_has(herald_paths, fake_embedder, share, invoke):
    import json as json_

    _corpus(herald_paths.corpus, 6)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    where = ["--corpus", str(herald_paths.corpus), "--index", str(herald_paths.index), "--model", "test-hash"]
    assert "Segments:" not in invoke("info", *where).stdout
    _write(herald_paths.corpus, "z1.md", "A ferry strike", 1)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    r = invoke("info", "--check", *where)
    assert r.exit_code == 0 and "Segments:  the base and 1 delta segment(s)" in r.stdout
    assert "every file matches its checksum" in r.stdout
    assert json_.loads(invoke("info", "--json", *where).stdout)["delta_segments"] == 1


def test_the_manifest_holds_only_what_changed_since_the_base(herald_paths, fake_embedder, share):
    """An update writes its delta and a manifest of the changes since the base; the base's catalog of entries is
    carried over untouched (at a million chunks rewriting a line per article took most of an update)."""
    _corpus(herald_paths.corpus, 12)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    catalog = herald_paths.index / "catalog.json"
    inode, base = catalog.stat().st_ino, json.loads(catalog.read_text(encoding="utf-8"))
    assert list(base) == [f"s{i:02d}.md" for i in range(12)]
    _write(herald_paths.corpus, "s03b.md", "A ferry strike", 1)
    (herald_paths.corpus / "s07.md").unlink()
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    raw = json.loads((herald_paths.index / MANIFEST).read_text(encoding="utf-8"))
    assert "documents" not in raw and catalog.stat().st_ino == inode
    assert raw["changes"] == {"s03b.md": raw["changes"]["s03b.md"], "s07.md": None}
    assert raw["placed"] == {"s03b.md": "s03.md"}
    merged = read_manifest(herald_paths.index)
    assert list(merged["documents"])[3:5] == ["s03.md", "s03b.md"] and "s07.md" not in merged["documents"]
    assert merged["counts"]["documents"] == 12


def test_updates_in_any_place_load_as_a_full_build(herald_paths, fake_embedder, share, tmp_path):
    """New documents before, between and after the base's, removed ones (the base's and new ones), changed and
    re-added ones: the index loads record for record as a full build of the same corpus."""
    _corpus(herald_paths.corpus, 8)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    corpus = herald_paths.corpus
    steps = [
        lambda: _write(corpus, "a0.md", "A first story", 1),
        lambda: (_write(corpus, "s03b.md", "A ferry strike", 2), _write(corpus, "s03c.md", "A bus strike", 3)),
        lambda: (corpus / "s04.md").unlink(),
        lambda: _write(corpus, "s03d.md", "A taxi strike", 4),
        lambda: ((corpus / "s03c.md").unlink(), _write(corpus, "s03bb.md", "A tram strike", 5)),
        lambda: _write(corpus, "s04.md", "Story 4 of the harbour", 4),
        lambda: _write(corpus, "s03b.md", "A ferry strike ends", 6),
        lambda: ((corpus / "a0.md").unlink(), _write(corpus, "a1.md", "Another first story", 7),
                 _write(corpus, "z9.md", "A last story", 8)),
    ]
    for i, step in enumerate(steps):
        step()
        build_index(corpus, herald_paths.index, fake_embedder)
        assert read_manifest(herald_paths.index)["deltas"], i
        _same_as_a_full_build(herald_paths, fake_embedder, tmp_path / f"step{i}")


def test_placement_keeps_any_order_of_inserts_and_removals():
    """The catalog's order with documents placed and removed at random matches the order they were put in."""
    import random

    from index.store.segments import Placement, merged_entries

    for seed in range(30):
        rnd = random.Random(seed)
        catalog = {f"b{i}": {"n": i} for i in range(rnd.randint(0, 6))}
        order, changes, placement, made = list(catalog), {}, Placement({}), 0
        for _ in range(40):
            if order and rnd.random() < 0.35:
                doc_id = order.pop(rnd.randrange(len(order)))
                if doc_id in placement.placed:
                    placement.unplace(doc_id)
                    del changes[doc_id]
                else:
                    changes[doc_id] = None
            else:
                made += 1
                doc_id, at = f"n{made}", rnd.randint(0, len(order))
                order.insert(at, doc_id)
                changes[doc_id] = {"n": made}
                placement.place(doc_id, order[at - 1] if at else None)
            assert list(merged_entries(catalog, changes, placement.placed)) == order, seed


@pytest.mark.parametrize("key, value", [
    ("changes", []), ("placed", "s01.md"), ("changes", {"s01.md": 3}),
    ("placed", {"x.md": "y.md", "y.md": "x.md"}),  # a loop: never a hang
    ("placed", {"x.md": "nowhere.md"}),  # after no document of the index
])
def test_a_manifest_with_damaged_changes_is_corrupt_and_rebuilt(herald_paths, fake_embedder, share, key, value):
    _corpus(herald_paths.corpus, 4)
    build_index(herald_paths.corpus, herald_paths.index, fake_embedder)
    path = herald_paths.index / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest[key] = value
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with raises_said(IndexCorruptError, "herald build"):
        read_manifest(herald_paths.index)
    assert build_index(herald_paths.corpus, herald_paths.index, fake_embedder).full_rebuild
    assert len(load_index(herald_paths.index).documents) == 4
