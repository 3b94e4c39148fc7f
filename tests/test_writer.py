"""The writing half of the index seam (index/store/writer.py, issue 19): a build hands an IndexChange to
an IndexWriter, which applies all of it; FolderWriter keeps every other document exactly as it was."""

from __future__ import annotations

import numpy as np

from index.build import build_index
from index.ingest.chunking import ChunkSettings, chunk_sections, document_sentences
from index.ingest.corpus import Document
from index.store import load_index
from index.store.writer import DocumentUpdate, FolderWriter, IndexChange, IndexWriter

STORY = "---\ntitle: {t}\n---\n{t} happened on Monday, officials said.\n\nIt was the {n}th time this year.\n"


def _update(doc: Document, embedder) -> DocumentUpdate:
    sections = document_sentences(doc, ChunkSettings())
    spans = [s for section in sections for s in section]
    chunks = chunk_sections(doc, sections, ChunkSettings())
    return DocumentUpdate(doc, chunks, spans, embedder.encode([c.text for c in chunks]),
                          embedder.encode([doc.text[a:b] for a, b in spans]))


def test_a_change_is_applied_whole_and_the_rest_is_kept(herald_paths, fake_embedder) -> None:
    corpus, index_dir = herald_paths.corpus, herald_paths.index
    for i in range(4):
        (corpus / f"s{i}.md").write_text(STORY.format(t=f"Story {i} of the harbour", n=i), encoding="utf-8")
    build_index(corpus, index_dir, fake_embedder)
    before = load_index(index_dir)
    kept = {d: [before.chunk_ids[r] for r in rows] for d, rows in before.chunk_rows_by_doc.items() if d != "s1.md"}
    kept_vectors = {d: before.store.get(ids).copy() for d, ids in kept.items()}
    new = Document("wire.md", "Ferry strike", "Ferry crews walked out on Friday. Passengers were stranded.",
                   fingerprint="c5-test")
    change = IndexChange(order=["s0.md", "s2.md", "wire.md", "s3.md"], upserts=[_update(new, fake_embedder)],
                         removed=["s1.md"], about=dict(before.manifest, documents=None))
    writer = FolderWriter(index_dir, before, "faiss", fake_embedder.dim)
    assert isinstance(writer, IndexWriter)
    written = writer.apply(change)
    after = load_index(index_dir)
    assert [d.id for d in after.documents] == ["s0.md", "s2.md", "wire.md", "s3.md"]
    assert written.documents == 4 and written.chunks == len(after.chunks)
    for doc_id, ids in kept.items():  # the same chunk ids and vectors as before
        assert [after.chunk_ids[r] for r in after.chunk_rows_by_doc[doc_id]] == ids
        assert np.array_equal(after.store.get(ids), kept_vectors[doc_id])
    new_ids = [after.chunk_ids[r] for r in after.chunk_rows_by_doc["wire.md"]]
    assert min(new_ids) > max(i for ids in kept.values() for i in ids)  # fresh ids, never reused
    assert after.manifest["counts"] == {"documents": 4, "chunks": written.chunks, "sentences": written.sentences}


def test_store_options_are_saved_used_at_load_and_moved_into_a_new_store(herald_paths, fake_embedder) -> None:
    """Issue 19: a store's options come from settings (EngineConfig.store_options), are saved in the
    manifest and used at every load; changing them moves the vectors into a new store, none embedded again."""
    from index import EngineConfig, open_engine, rebuild

    corpus = herald_paths.corpus
    for i in range(3):
        (corpus / f"s{i}.md").write_text(STORY.format(t=f"Story {i} of the harbour", n=i), encoding="utf-8")
    config = EngineConfig(corpus=corpus, index_dir=herald_paths.index, model=fake_embedder.name,
                          store_options={"hnsw_above": 2, "ef_search": 48})
    rebuild(config)
    loaded = load_index(herald_paths.index)
    assert loaded.manifest["vector_store_options"] == {"hnsw_above": 2, "ef_search": 48}
    assert loaded.store.approximate and loaded.store.search_ef == 48  # the options, used at load
    before = loaded.chunk_vectors()
    calls = fake_embedder.calls
    other = EngineConfig(corpus=corpus, index_dir=herald_paths.index, model=fake_embedder.name)
    notices = []
    engine = open_engine(other, notify=notices.append)  # other options: an update, nothing embedded
    assert [n.kind for n in notices] == ["updating"] and fake_embedder.calls == calls
    assert not engine.index.store.approximate and engine.index.manifest["vector_store_options"] == {}
    assert np.array_equal(engine.index.chunk_vectors(), before)
