"""The on-disk index: round trip, manifest, refusal of mismatched or damaged indexes, incremental and
atomic builds."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bot.messages import explain
from conftest import raises_said
from index.build import build_index
from index.errors import HeraldError, IndexCorruptError, IndexMismatchError, IndexMissingError
from index.ingest.chunking import ChunkSettings, chunk_document, document_sentences
from index.ingest.corpus import CLEANER_VERSION, corpus_fingerprints, fingerprint_bytes, load_corpus
from index.store import FORMAT_VERSION, MANIFEST, RECORD_FILES, check_compatible, load_index, read_manifest
from index.store.vectors import FaissStore


def leftovers(index_dir):
    """Temporary or swapped-out folders a build left beside the index (not the lock file, which stays:
    it is how builds take turns)."""
    return sorted(p.name for p in index_dir.parent.iterdir()
                  if p.name.startswith(f".{index_dir.name}.") and not p.name.endswith(".lock"))


def write(path, title, *paragraphs):
    path.write_text(title + "\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")


def assert_vectors_match_texts(loaded, emb):
    """Every stored vector is the embedding of the text it claims to be (row bookkeeping is right)."""
    vecs = loaded.chunk_vectors()
    assert vecs.shape == (len(loaded.chunks), emb.dim)
    for row, chunk in enumerate(loaded.chunks):
        np.testing.assert_allclose(vecs[row], emb._vector(chunk.text), atol=1e-6)
    sid = 0
    for doc in loaded.documents:
        for a, b in loaded.doc_sentences[doc.id]:
            np.testing.assert_allclose(loaded.sentence_vectors[sid], emb._vector(doc.text[a:b]), atol=1e-6)
            sid += 1
    assert sid == loaded.sentence_vectors.shape[0]
    for chunk, ids in zip(loaded.chunks, loaded.chunk_sentence_ids):
        doc = loaded.doc_by_id[chunk.doc_id]
        texts = [loaded.sentence_vectors[i] for i in ids]
        assert [doc.text[a:b] for a, b in chunk.sentences] == [
            doc.text[a:b] for a, b in (_sentence_span(loaded, i) for i in ids)]
        assert len(texts) == len(chunk.sentences)


def _sentence_span(loaded, sid):
    for doc in loaded.documents:
        spans = loaded.doc_sentences[doc.id]
        if sid < len(spans):
            return spans[sid]
        sid -= len(spans)
    raise IndexError(sid)


# ------------------------------------------------------------------------------------- round trip


def test_round_trip(built_index, fake_embedder):
    loaded = load_index(built_index.index, "test-hash", 64)
    docs = load_corpus(built_index.corpus)
    assert [(d.id, d.title, d.text, d.fingerprint) for d in loaded.documents] == \
           [(d.id, d.title, d.text, d.fingerprint) for d in docs]
    expected_chunks = [c for d in docs for c in chunk_document(d)]
    assert loaded.chunks == expected_chunks
    assert loaded.doc_sentences[docs[0].id] == [
        s for section in document_sentences(docs[0], ChunkSettings()) for s in section]
    assert len(loaded.store) == len(expected_chunks) and loaded.store.dim == 64
    assert loaded.model == "test-hash" and loaded.dim == 64
    assert_vectors_match_texts(loaded, fake_embedder)
    assert sorted(p.name for p in built_index.index.iterdir()) == sorted([*RECORD_FILES, *FaissStore.files])
    assert leftovers(built_index.index) == []


def test_faiss_search_finds_the_exact_chunk(built_index, fake_embedder):
    loaded = load_index(built_index.index)
    chunk = loaded.chunks[5]
    [(chunk_id, score)] = loaded.store.search(fake_embedder.encode([chunk.text])[0], 1)
    assert loaded.row_of_id[chunk_id] == 5 and score == pytest.approx(1.0, abs=1e-5)


def test_manifest_contents(built_index, real_article):
    manifest = read_manifest(built_index.index)  # the manifest with its catalog's entries
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["model"] == "test-hash"
    assert manifest["dim"] == 64
    assert manifest["chunking"] == {"sentences": 3, "overlap": 1, "min_paragraph_chars": 80}
    assert manifest["cleaner_version"] == CLEANER_VERSION
    doc = manifest["documents"][real_article.name]
    assert doc["fingerprint"] == fingerprint_bytes(real_article.read_bytes())
    assert doc["title"] == "Frosty Franco-Russian relations"
    n_chunks = len(load_index(built_index.index).chunks)
    assert doc["chunks"] == n_chunks
    assert manifest["counts"]["documents"] == 1
    assert manifest["counts"]["chunks"] == n_chunks
    assert manifest["counts"]["sentences"] > n_chunks
    built = datetime.fromisoformat(manifest["built_at"])
    assert built.tzinfo is not None
    assert abs(datetime.now(UTC) - built) < timedelta(minutes=5)
    assert manifest["build_seconds"] >= 0


# ---------------------------------------------------------------------------------------- refusal


def test_index_from_another_model_is_refused_with_rebuild_hint(built_index):
    with pytest.raises(IndexMismatchError) as err:
        load_index(built_index.index, "all-MiniLM-L6-v2", 384)
    assert (err.value.what, err.value.found, err.value.expected) == ("model", "test-hash", "all-MiniLM-L6-v2")
    msg = explain(err.value)
    assert "'test-hash'" in msg and "herald build --model all-MiniLM-L6-v2" in msg
    assert "HERALD_MODEL=test-hash" in msg


def test_index_of_another_dimension_is_refused_with_rebuild_hint(built_index):
    with raises_said(IndexMismatchError, r"64-dimensional .* gives 32.*herald build"):
        load_index(built_index.index, "test-hash", 32)


def test_index_of_another_format_is_refused(built_index):
    path = built_index.index / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with raises_said(IndexMismatchError, "herald build"):
        load_index(built_index.index)
    with pytest.raises(IndexMismatchError):
        check_compatible(manifest)


def test_missing_index_says_how_to_build(herald_paths):
    with raises_said(IndexMissingError, "herald build"):
        load_index(herald_paths.index)
    assert not herald_paths.index.exists()


def _delete(p):
    p.unlink()


def _truncate(p):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _empty(p):
    p.write_bytes(b"")


def _drop_last_line(p):
    lines = p.read_text(encoding="utf-8").splitlines(keepends=True)
    p.write_text("".join(lines[:-1]), encoding="utf-8")


@pytest.mark.parametrize("name, damage", [
    ("index.faiss", _delete), ("index.faiss", _truncate), ("index.faiss", _empty),
    ("chunks.jsonl", _delete), ("chunks.jsonl", _truncate), ("chunks.jsonl", _drop_last_line),
    ("documents.jsonl", _delete), ("documents.jsonl", _truncate),
    ("sentences.npy", _delete), ("sentences.npy", _truncate),
    ("manifest.json", _truncate), ("manifest.json", _empty),
    ("catalog.json", _delete), ("catalog.json", _truncate), ("catalog.json", _empty),
])
def test_damaged_index_is_corrupt_with_rebuild_hint(built_index, fake_embedder, name, damage):
    damage(built_index.index / name)
    with raises_said(IndexCorruptError, "rebuild it with `herald build`"):
        load_index(built_index.index, "test-hash", 64)
    # and a build repairs it
    build_index(built_index.corpus, built_index.index, fake_embedder)
    assert_vectors_match_texts(load_index(built_index.index, "test-hash", 64), fake_embedder)


@pytest.mark.parametrize("content", [
    "{not json", "[]", '"a string"', "null", '{"model": "test-hash"}',
    '{"model": "test-hash", "dim": "sixty-four", "format_version": 1, "documents": {}, "counts": {"chunks": 1}}',
    '{"model": "test-hash", "dim": 64, "format_version": 1, "counts": {"chunks": 1}}',
    # issue 10: a document entry without a fingerprint, and one that is not an object
    '{"model": "test-hash", "dim": 64, "format_version": 1, "counts": {"chunks": 1}, "documents": {"a.txt": {}}}',
    '{"model": "test-hash", "dim": 64, "format_version": 1, "counts": {"chunks": 1}, "documents": {"a.txt": 3}}',
    '{"model": "test-hash", "dim": 64, "format_version": 1, "documents": [], "counts": {"chunks": 1}}',
    '{"model": "test-hash", "dim": 64, "format_version": 1, "documents": {}}',
])
def test_garbage_manifest_is_corrupt(built_index, fake_embedder, content):
    (built_index.index / MANIFEST).write_text(content, encoding="utf-8")
    with raises_said(IndexCorruptError, "herald build"):
        read_manifest(built_index.index)
    with pytest.raises(IndexCorruptError):
        load_index(built_index.index)
    report = build_index(built_index.corpus, built_index.index, fake_embedder)
    assert report.full_rebuild and report.added == ["euronews-frosty-franco-russian-relations.txt"]
    load_index(built_index.index, "test-hash", 64)


def test_binary_manifest_is_corrupt(built_index):
    (built_index.index / MANIFEST).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(IndexCorruptError):
        read_manifest(built_index.index)


# ------------------------------------------------------------------------------ incremental builds


@pytest.fixture
def three_docs(herald_paths):
    c = herald_paths.corpus
    write(c / "alpha.txt", "Alpha", "Alpha apples grow in orchards near the river. Farmers pick alpha apples.")
    write(c / "beta.txt", "Beta", "Beta bridges span the wide canyon. Engineers inspect beta bridges yearly.")
    write(c / "gamma.md", "Gamma", "Gamma gardens bloom with tulips in spring. Visitors admire gamma gardens.")
    return herald_paths


def test_incremental_rebuild(three_docs, fake_embedder):
    p = three_docs
    first = build_index(p.corpus, p.index, fake_embedder)
    assert first.added == ["alpha.txt", "beta.txt", "gamma.md"] and not first.full_rebuild
    before = load_index(p.index)
    alpha_vecs = before.chunk_vectors()[[i for i, c in enumerate(before.chunks) if c.doc_id == "alpha.txt"]]

    write(p.corpus / "beta.txt", "Beta", "Beta bridges were closed for repairs after the storm. Traffic waited.")
    (p.corpus / "gamma.md").unlink()
    write(p.corpus / "delta.html", "Delta", "Delta dolphins swim along the coast. Divers film delta dolphins.")
    fake_embedder.seen.clear()
    report = build_index(p.corpus, p.index, fake_embedder)

    assert report.unchanged == ["alpha.txt"]
    assert report.changed == ["beta.txt"]
    assert report.removed == ["gamma.md"]
    assert report.added == ["delta.html"]
    assert report.changed_anything and not report.full_rebuild
    seen = " ".join(fake_embedder.seen)
    assert "repairs" in seen and "dolphins" in seen
    assert "apples" not in seen and "gardens" not in seen  # unchanged and removed: not re-embedded
    assert report.embedded_texts == len(fake_embedder.seen)

    after = load_index(p.index)
    assert [d.id for d in after.documents] == ["alpha.txt", "beta.txt", "delta.html"]
    assert not any("gardens" in c.text for c in after.chunks)
    assert any("repairs" in c.text for c in after.chunks)
    assert set(after.manifest["documents"]) == {"alpha.txt", "beta.txt", "delta.html"}
    np.testing.assert_array_equal(
        after.chunk_vectors()[[i for i, c in enumerate(after.chunks) if c.doc_id == "alpha.txt"]], alpha_vecs)
    assert_vectors_match_texts(after, fake_embedder)
    assert not after.staleness(corpus_fingerprints(p.corpus)).stale


def test_nothing_changed_embeds_nothing(three_docs, fake_embedder):
    build_index(three_docs.corpus, three_docs.index, fake_embedder)
    calls = fake_embedder.calls
    report = build_index(three_docs.corpus, three_docs.index, fake_embedder)
    assert fake_embedder.calls == calls
    assert report.embedded_texts == 0 and not report.changed_anything
    assert report.unchanged == ["alpha.txt", "beta.txt", "gamma.md"]
    assert_vectors_match_texts(load_index(three_docs.index), fake_embedder)


def test_full_flag_re_embeds_everything(three_docs, fake_embedder):
    build_index(three_docs.corpus, three_docs.index, fake_embedder)
    fake_embedder.seen.clear()
    report = build_index(three_docs.corpus, three_docs.index, fake_embedder, full=True)
    assert report.full_rebuild and "apples" in " ".join(fake_embedder.seen)


def test_chunking_change_re_embeds_everything(three_docs, fake_embedder):
    build_index(three_docs.corpus, three_docs.index, fake_embedder)
    fake_embedder.seen.clear()
    report = build_index(three_docs.corpus, three_docs.index, fake_embedder, ChunkSettings(1, 0))
    assert report.full_rebuild and sorted(report.added) == ["alpha.txt", "beta.txt", "gamma.md"]
    loaded = load_index(three_docs.index)
    assert loaded.manifest["chunking"]["sentences"] == 1
    assert all(len(c.sentences) == 1 for c in loaded.chunks)
    assert_vectors_match_texts(loaded, fake_embedder)


def test_model_change_rebuilds_with_the_new_model(three_docs, fake_embedder, make_embedder):
    build_index(three_docs.corpus, three_docs.index, fake_embedder)
    other = make_embedder("test-hash-32", dim=32)
    report = build_index(three_docs.corpus, three_docs.index, other)
    assert report.full_rebuild and other.seen
    loaded = load_index(three_docs.index, "test-hash-32", 32)
    assert_vectors_match_texts(loaded, other)


def test_staleness_reports_changes(three_docs, fake_embedder):
    build_index(three_docs.corpus, three_docs.index, fake_embedder)
    loaded = load_index(three_docs.index)
    assert loaded.staleness(corpus_fingerprints(three_docs.corpus)).stale is False
    write(three_docs.corpus / "alpha.txt", "Alpha", "Changed text about apples.")
    (three_docs.corpus / "beta.txt").unlink()
    write(three_docs.corpus / "new.txt", "New", "Brand new article.")
    stale = loaded.staleness(corpus_fingerprints(three_docs.corpus))
    assert (stale.added, stale.changed, stale.removed) == (["new.txt"], ["alpha.txt"], ["beta.txt"])
    from bot.messages import staleness
    assert staleness(stale) == "1 new, 1 changed, 1 removed"


def test_skipped_files_are_not_stale_until_they_change(three_docs, fake_embedder):
    (three_docs.corpus / "empty.txt").write_bytes(b"")
    build_index(three_docs.corpus, three_docs.index, fake_embedder)
    loaded = load_index(three_docs.index)
    assert "empty.txt" in loaded.manifest["skipped"]
    assert not loaded.staleness(corpus_fingerprints(three_docs.corpus)).stale
    write(three_docs.corpus / "empty.txt", "Now", "It has words about zebras.")
    assert loaded.staleness(corpus_fingerprints(three_docs.corpus)).added == ["empty.txt"]
    report = build_index(three_docs.corpus, three_docs.index, fake_embedder)
    assert report.added == ["empty.txt"]


def test_index_folder_gets_normal_permissions(built_index):
    probe = built_index.root / "probe"
    probe.mkdir()
    assert (built_index.index.stat().st_mode & 0o777) == (probe.stat().st_mode & 0o777)


# ---------------------------------------------------------------------------- interrupted builds


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_build_leaves_old_index(three_docs, fake_embedder, make_embedder, exc):
    p = three_docs
    build_index(p.corpus, p.index, fake_embedder)
    manifest_before = (p.index / MANIFEST).read_text(encoding="utf-8")
    write(p.corpus / "beta.txt", "Beta", " ".join(f"A change number {i}." for i in range(200)))  # several batches
    failing = make_embedder("test-hash", fail_after=1, exc=exc)
    with pytest.raises(exc):
        build_index(p.corpus, p.index, failing)
    assert failing.calls == 1  # it really failed midway
    assert (p.index / MANIFEST).read_text(encoding="utf-8") == manifest_before
    loaded = load_index(p.index, "test-hash", 64)
    assert [d.id for d in loaded.documents] == ["alpha.txt", "beta.txt", "gamma.md"]
    assert not any("A change." in c.text for c in loaded.chunks)
    assert leftovers(p.index) == []


def test_interrupted_first_build_leaves_nothing(three_docs, make_embedder):
    failing = make_embedder("test-hash", fail_after=0, exc=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        build_index(three_docs.corpus, three_docs.index, failing)
    assert not three_docs.index.exists() and leftovers(three_docs.index) == []
    with pytest.raises(IndexMissingError):
        load_index(three_docs.index)


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failure_while_writing_removes_the_temp_folder(three_docs, fake_embedder, monkeypatch, exc):
    import index.store.disk

    p = three_docs
    build_index(p.corpus, p.index, fake_embedder)
    before = load_index(p.index).manifest["built_at"], (p.index / MANIFEST).read_bytes()
    write(p.corpus / "alpha.txt", "Alpha", "Changed alpha text.")
    real_save = np.save

    def failing_save(path, *args, **kwargs):
        real_save(path, *args, **kwargs)
        raise exc

    monkeypatch.setattr(index.store.disk.np, "save", failing_save)
    expected = KeyboardInterrupt if isinstance(exc, KeyboardInterrupt) else HeraldError
    with pytest.raises(expected) as err:
        build_index(p.corpus, p.index, fake_embedder)
    if expected is HeraldError:
        assert explain(err.value).startswith(f"cannot write the index at {p.index}: No space left on device;")
    monkeypatch.undo()
    assert leftovers(p.index) == []
    assert (p.index / MANIFEST).read_bytes() == before[1]
    load_index(p.index, "test-hash", 64)


def test_crash_between_the_two_renames_is_recovered(three_docs, fake_embedder, monkeypatch, caplog):
    import index.store.disk

    p = three_docs
    build_index(p.corpus, p.index, fake_embedder)
    write(p.corpus / "alpha.txt", "Alpha", "Changed alpha text.")
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the old index is moved aside; die before the new one moves in
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(index.store.disk.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        build_index(p.corpus, p.index, fake_embedder)
    monkeypatch.undo()
    assert not p.index.exists()
    assert [n for n in leftovers(p.index) if ".old-" in n]  # the previous index, set aside
    assert not [n for n in leftovers(p.index) if ".tmp-" in n]

    with pytest.raises(IndexMissingError):  # a reader never changes the disk (issue 10)...
        load_index(p.index, "test-hash", 64)
    assert not p.index.exists()
    with caplog.at_level(logging.WARNING, logger="index.store"):  # ...the next build restores it first
        report = build_index(p.corpus, p.index, fake_embedder)
    assert "restored the previous index" in caplog.text
    assert report.changed == ["alpha.txt"] and report.unchanged == ["beta.txt", "gamma.md"]
    assert leftovers(p.index) == []


def test_recovery_restores_the_index_its_journal_names(three_docs, fake_embedder):
    p = three_docs
    build_index(p.corpus, p.index, fake_embedder)
    older = p.index.parent / f".{p.index.name}.old-1000000000000000000-1"
    newer = p.index.parent / f".{p.index.name}.old-2000000000000000000-1"
    os.replace(p.index, newer)
    older.mkdir()
    (p.index.parent / f".{p.index.name}.swap").write_text(newer.name, encoding="utf-8")  # as a swap writes it
    report = build_index(p.corpus, p.index, fake_embedder)  # restored from `newer`, not the empty `older`
    assert report.unchanged == ["alpha.txt", "beta.txt", "gamma.md"] and not report.changed_anything
    assert leftovers(p.index) == []


# ----------------------------------------------------------------- never replace what is not an index


def test_build_refuses_to_replace_a_folder_that_is_not_an_index(three_docs, fake_embedder):
    folder = three_docs.root / "Documents"
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious", encoding="utf-8")
    (folder / "index.faiss").write_text("looks like ours", encoding="utf-8")
    with raises_said(HeraldError, r"not a Herald index \(it holds 'thesis.txt'\); refusing"):
        build_index(three_docs.corpus, folder, fake_embedder)
    assert (folder / "thesis.txt").read_text(encoding="utf-8") == "precious"
    assert sorted(p.name for p in folder.iterdir()) == ["index.faiss", "thesis.txt"]
    assert leftovers(folder) == [] and fake_embedder.calls == 0


def test_build_refuses_an_index_path_that_is_a_file(three_docs, fake_embedder):
    f = three_docs.root / "notes.txt"
    f.write_text("data", encoding="utf-8")
    with raises_said(HeraldError, "is not a folder"):
        build_index(three_docs.corpus, f, fake_embedder)
    with raises_said(HeraldError, "is not a folder"):
        load_index(f)
    assert f.read_text(encoding="utf-8") == "data" and leftovers(f) == []


def test_build_into_an_empty_folder_or_a_damaged_index(three_docs, fake_embedder):
    three_docs.index.mkdir()
    build_index(three_docs.corpus, three_docs.index, fake_embedder)
    (three_docs.index / MANIFEST).unlink()  # only our own files left: still ours to replace
    with pytest.raises(IndexMissingError):
        load_index(three_docs.index)
    report = build_index(three_docs.corpus, three_docs.index, fake_embedder)
    assert len(report.added) == 3
    load_index(three_docs.index, "test-hash", 64)


def test_unwritable_index_location_is_a_clear_error(three_docs, fake_embedder, monkeypatch):
    import index.store.disk

    def no_mkdir(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(index.store.disk, "_fresh_dir", no_mkdir)
    with raises_said(HeraldError, "cannot write the index at .*: Permission denied; check"):
        build_index(three_docs.corpus, three_docs.index, fake_embedder)


def test_faiss_write_failure_is_a_clear_error(built_index, fake_embedder, monkeypatch):
    """The store's file is written when the index is written whole (a full build; an update adds a delta
    segment instead: tests/test_segments.py)."""
    import faiss

    def broken(*args):
        raise RuntimeError("Error in faiss::FileIOWriter: fwrite failed\nmore detail")

    write_doc = built_index.corpus / "extra.txt"
    write_doc.write_text("Extra\n\nSomething new.\n", encoding="utf-8")
    monkeypatch.setattr(faiss, "write_index", broken)
    with raises_said(HeraldError, "fwrite failed; check"):
        build_index(built_index.corpus, built_index.index, fake_embedder, full=True)
    monkeypatch.undo()
    assert leftovers(built_index.index) == []
    assert "extra.txt" not in load_index(built_index.index).manifest["documents"]


@pytest.mark.model
def test_a_model_folder_retrained_under_the_same_name_is_refused_then_rebuilt(tmp_path, real_article):
    """Same name, other weights: the old vectors would be meaningless next to the new model's questions."""
    import shutil

    from index import EngineConfig, open_engine, rebuild
    from index.embed import models as embed
    from index.embed.models import resolve_model_path

    folder = tmp_path / "my-model"
    shutil.copytree(resolve_model_path("all-MiniLM-L6-v2"), folder)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(real_article, corpus / real_article.name)
    config = EngineConfig(corpus=corpus, index_dir=tmp_path / "index", model=str(folder))
    first = open_engine(config).ask("Who vetoed the resolution?")
    assert read_manifest(config.index_dir)["model_weights"]

    weights = folder / "model.safetensors"  # "retrain": change the last weights in place
    with open(weights, "r+b") as f:
        f.seek(-4096, os.SEEK_END)
        f.write(np.random.default_rng(0).standard_normal(1024).astype(np.float32).tobytes())
    embed._CACHE.pop(str(folder), None)  # a new process would load the new weights
    with raises_said(IndexMismatchError, "weights changed since the index was built.*herald build"):
        open_engine(config)
    rebuild(config)  # a plain build sees the other weights and re-embeds everything
    again = open_engine(config).ask("Who vetoed the resolution?")
    assert read_manifest(config.index_dir)["model_weights"] != "" and again.answer
    assert first.answer  # the first index answered too
    embed._CACHE.pop(str(folder), None)


# ------------------------------------------------------------------------- HNSW efSearch grows with the store


def _unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _graph_ef(store) -> int:
    """The efSearch the FAISS graph itself holds (what a search really uses)."""
    import faiss

    return int(faiss.downcast_index(store._index.index).hnsw.efSearch)


def test_the_automatic_ef_search_grows_with_the_store_and_never_drops_below_128():
    from index.store.vectors import EF_SEARCH_FLOOR, auto_ef_search

    sizes = [0, 1, 50_000, 100_000, 200_000, 300_000, 500_000, 1_000_000, 2_000_000, 10_000_000]
    values = [auto_ef_search(n) for n in sizes]
    assert EF_SEARCH_FLOOR == 128 and min(values) == 128 and values[0] == values[2] == 128
    assert values == sorted(values) and all(v % 16 == 0 for v in values)
    # 512 per million vectors, in steps of 16 (docs/scale.md: recall@10 >= 0.96 at 200,000 to 1,000,000)
    assert [auto_ef_search(n) for n in (250_000, 250_001, 300_000, 500_000, 1_000_000)] == [128, 144, 160, 256, 512]


def test_the_store_applies_the_rule_after_adds_a_delete_and_a_load(tmp_path, monkeypatch):
    """A rule that grows at small sizes (the real one only grows past 250,000 vectors) shows each step re-tunes."""
    from index.store import vectors
    from index.store.vectors import FaissStore

    monkeypatch.setattr(vectors, "auto_ef_search", lambda n: 100 + n)
    rows = _unit(260, 8)
    store = FaissStore(8, hnsw_above=100)
    store.add(range(80), rows[:80])
    assert not store.approximate and store.search_ef == 180
    store.add(range(80, 200), rows[80:200])  # past the threshold: rebuilt as HNSW
    assert store.approximate and _graph_ef(store) == store.search_ef == 300
    store.add(range(200, 260), rows[200:])  # added to the graph in place
    assert _graph_ef(store) == 360
    store.delete(range(10))  # HNSW rebuilds from the kept vectors
    assert _graph_ef(store) == 350
    store.save(tmp_path)
    monkeypatch.setattr(vectors, "auto_ef_search", lambda n: 2 * n)  # the file's own efSearch is not kept
    assert _graph_ef(FaissStore.load(tmp_path, 8)) == 500


def test_an_explicit_ef_search_wins_over_the_rule_also_after_a_load(tmp_path, monkeypatch):
    from index.store import vectors
    from index.store.vectors import FaissStore, auto_ef_search, load_store

    rows = _unit(300, 8)
    store = FaissStore(8, hnsw_above=100, ef_search=40)
    store.add(range(300), rows)
    assert store.approximate and _graph_ef(store) == store.search_ef == 40
    store.save(tmp_path)
    assert _graph_ef(FaissStore.load(tmp_path, 8)) == auto_ef_search(300) == 128  # an old file gets the rule
    assert _graph_ef(load_store("faiss", tmp_path, 8, ef_search=64)) == 64
    monkeypatch.setattr(vectors, "auto_ef_search", lambda n: 999)
    store.set_ef_search(None)  # back to automatic
    assert _graph_ef(store) == 999
    store.set_ef_search(200)
    assert _graph_ef(store) == 200 and store.search(rows[7], 1)[0][0] == 7


def test_hnsw_deletes_mark_instead_of_rebuilding(tmp_path) -> None:
    """Issue 19: a delete in an HNSW graph marks the ids (searches skip them, the marks are saved) and the
    graph is rebuilt only when more than COMPACT_ABOVE of it is marked."""
    from index.store.vectors import FaissStore, NumpyStore

    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((400, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(1000, 1400)
    store, ref = FaissStore(16, hnsw_above=100), NumpyStore(16)
    store.add(ids, vecs)
    ref.add(ids, vecs)
    graph = store._index
    gone = ids[::20]  # 20 of 400: 5%, under the compaction share
    store.delete(gone)
    ref.delete(gone)
    assert store._index is graph and len(store) == 380  # marked, not rebuilt
    for q in vecs[:40]:
        got = {i for i, _ in store.search(q, 10)}
        assert not got & set(gone.tolist())
        assert len(got & {i for i, _ in ref.search(q, 10)}) >= 8  # still the neighbours (approximate)
    assert {i for i, _ in store.search_within(vecs[1], 5, ids[1:6])} == set(ids[1:6].tolist())
    names = store.save(tmp_path)
    assert names == [FaissStore.FILE, FaissStore.DELETED]
    back = FaissStore.load(tmp_path, 16, hnsw_above=100)
    assert len(back) == 380 and not {i for i, _ in back.search(vecs[0], 10)} & set(gone.tolist())
    back.add(gone[:3], vecs[::20][:3])  # an id given again: the marks are compacted away first
    assert len(back) == 383 and back._index is not graph and not len(back._deleted)
    store.delete(ids[1:60])  # now well over 10%: rebuilt from the live vectors
    live = set(ids.tolist()) - set(gone.tolist()) - set(ids[1:60].tolist())
    assert store._index is not graph and not len(store._deleted) and len(store) == len(live)
    assert {i for i, _ in store.search(vecs[100], 50)} <= live
