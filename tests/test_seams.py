"""The library's seams: vector stores, fusion over top-k lists, registries, sources, answerers, thread
budgets and the bulk embedding path. Small fixed inputs; no real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.messages import explain
from index import (
    ANSWERERS,
    SOURCES,
    VECTOR_STORES,
    Draft,
    EngineConfig,
    ExtractiveAnswerer,
    FolderSource,
    Turn,
    UnknownBackendError,
    open_engine,
)
from index.embed.base import Embedder
from index.embed.models import embed_all
from index.search.retrieval import SearchSettings, fuse, fuse_scores
from index.store.vectors import FaissStore, load_store, new_store


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------ vector stores


@pytest.mark.parametrize("kind", ["faiss", "numpy"])
def test_store_search_matches_brute_force(kind):
    vecs = unit_rows(300, 16)
    ids = np.arange(1000, 1300)
    store = new_store(kind, 16)
    store.add(ids, vecs)
    q = unit_rows(1, 16, seed=1)[0]
    want = np.argsort(-(vecs @ q), kind="stable")[:10]
    got = store.search(q, 10)
    assert [i for i, _ in got] == [int(ids[r]) for r in want]
    np.testing.assert_allclose([s for _, s in got], (vecs @ q)[want], atol=1e-5)


@pytest.mark.parametrize("kind", ["faiss", "numpy"])
def test_store_delete_add_save_load_round_trip(kind, tmp_path: Path):
    vecs = unit_rows(50, 8)
    store = new_store(kind, 8)
    store.add(range(50), vecs)
    store.delete([3, 7, 999])  # an unknown id is ignored
    store.add([50], unit_rows(1, 8, seed=2))
    assert len(store) == 49
    hits = store.search(vecs[7], 50)
    assert 3 not in {i for i, _ in hits} and 7 not in {i for i, _ in hits}
    files = store.save(tmp_path)
    assert all((tmp_path / f).exists() for f in files)
    back = load_store(kind, tmp_path, 8)
    assert back.search(vecs[10], 5) == store.search(vecs[10], 5)
    np.testing.assert_allclose(back.score(vecs[10], [10, 11]), [1.0, float(vecs[11] @ vecs[10])], atol=1e-5)


def test_faiss_switches_to_hnsw_above_the_threshold_and_keeps_recall(tmp_path: Path):
    vecs = unit_rows(2000, 32)
    small = FaissStore(32, hnsw_above=5000)
    small.add(range(2000), vecs)
    big = FaissStore(32, hnsw_above=1000)
    big.add(range(1500), vecs[:1500])
    big.add(range(1500, 2000), vecs[1500:])
    assert not small.approximate and big.approximate
    qs = unit_rows(50, 32, seed=3)
    recall = np.mean([len({i for i, _ in big.search(q, 10)} & {i for i, _ in small.search(q, 10)}) / 10 for q in qs])
    assert recall >= 0.9
    big.delete(range(100))  # HNSW cannot delete in place: the graph is rebuilt from the kept vectors
    assert len(big) == 1900 and big.approximate
    assert min(i for i, _ in big.search(vecs[5], 20)) >= 100
    big.save(tmp_path)
    assert FaissStore.load(tmp_path, 32).approximate


def test_unknown_store_kind_is_a_typed_error_worded_by_the_app():
    with pytest.raises(UnknownBackendError) as info:
        new_store("qdrant", 8)
    assert info.value.known == ["faiss", "numpy"]
    assert "HERALD_VECTOR_STORE" in explain(info.value) and "faiss" in explain(info.value)


def test_registries_hold_the_defaults():
    assert "folder" in SOURCES and "faiss" in VECTOR_STORES and "extractive" in ANSWERERS


# ------------------------------------------------------------------------------------------- fusion


def test_fusion_over_lists_equals_fusion_over_all_scores_when_missing_scores_are_given():
    s = SearchSettings()
    dense_all = np.array([0.9, 0.1, 0.5, 0.3])
    bm25_all = np.array([0.0, 12.0, 3.0, 1.0])
    dense_hits = [(0, 0.9), (2, 0.5)]
    lexical_hits = [(1, 12.0), (2, 3.0)]
    got = fuse(dense_hits, lexical_hits, s, lambda ids: dense_all[ids], lambda ids: bm25_all[ids])
    want = fuse_scores(dense_all[[0, 1, 2]], bm25_all[[0, 1, 2]], s, 12.0)
    assert [i for i, *_ in got] == sorted([0, 1, 2], key=lambda i: -want[i])
    assert [f for *_, f in got] == pytest.approx(sorted(want, reverse=True))


def test_fusion_without_exact_scores_uses_each_lists_floor():
    s = SearchSettings()
    got = {i: (d, b) for i, d, b, _ in fuse([(0, 0.9), (2, 0.5)], [(1, 12.0), (2, 3.0)], s)}
    assert got[1][0] == 0.5 and got[0][1] == 3.0  # the lowest score each list returned


# ---------------------------------------------------------------------------- sources and answerers


def test_folder_source_yields_documents_and_fingerprints(article_corpus):
    src = FolderSource(article_corpus.corpus)
    docs = list(src.documents())
    assert [d.id for d in docs] == list(src.fingerprints()) and docs[0].fingerprint == src.fingerprints()[docs[0].id]


def test_a_registered_answerer_is_chosen_by_name(built_index, fake_embedder):
    class Upper(ExtractiveAnswerer):
        name = "upper"

        def answer(self, query, sources, candidates, retriever, history=()):
            return Draft(super().answer(query, sources, candidates, retriever).text.upper())

    ANSWERERS.register("upper", Upper)
    try:
        config = EngineConfig(corpus=built_index.corpus, index_dir=built_index.index, model="test-hash",
                              answerer="upper")
        ans = open_engine(config).ask("Who vetoed the resolution?")
        assert ans.answered_by == "upper" and ans.answer and ans.answer == ans.answer.upper()
    finally:
        ANSWERERS.unregister("upper")


def test_a_store_chosen_in_settings_is_saved_and_loaded_back(article_corpus, fake_embedder):
    config = EngineConfig(corpus=article_corpus.corpus, index_dir=article_corpus.index, model="test-hash",
                          vector_store="numpy")
    engine = open_engine(config)
    assert engine.index.manifest["vector_store"] == "numpy" and (article_corpus.index / "vectors.npz").exists()
    faiss_engine = open_engine(EngineConfig(corpus=article_corpus.corpus, index_dir=article_corpus.root / "f",
                                            model="test-hash"))
    q = "Who vetoed the resolution?"
    assert engine.ask(q).answer == faiss_engine.ask(q).answer


def test_a_follow_up_borrows_the_previous_questions_words(built_index, fake_embedder):
    engine = open_engine(EngineConfig(corpus=built_index.corpus, index_dir=built_index.index, model="test-hash"))
    alone = engine.ask("And why?")
    follow = engine.ask("And why?", history=[Turn("Who vetoed the resolution?", "Russia vetoed it.")])
    assert follow.question == "And why?" and "vetoed" in follow.retrieval_query
    assert alone.retrieval_query == ""
    long_q = "What did the French foreign minister say about the war crimes investigation?"
    assert engine.ask(long_q, history=[Turn("Who vetoed the resolution?")]).retrieval_query == ""


# ----------------------------------------------------------------------------- bulk path and threads


class CountingBulk(Embedder):
    """An embedder with a bulk path: records whether the whole build went through it in one decision."""

    name, dim = "counting", 4

    def __init__(self) -> None:
        self.bulk_calls: list[int] = []
        self.encode_calls = 0

    def encode(self, texts, batch_size=64, progress=False):
        self.encode_calls += 1
        return np.ones((len(texts), self.dim), np.float32)

    def encode_all(self, texts, progress=None, batch_size=64):
        self.bulk_calls.append(len(texts))
        if progress:
            progress(len(texts))
        return np.ones((len(texts), self.dim), np.float32)


def test_a_build_embeds_all_its_texts_in_one_bulk_call(article_corpus):
    from index.build import build_index

    emb = CountingBulk()
    seen = []
    report = build_index(article_corpus.corpus, article_corpus.index, emb, progress=lambda d, t: seen.append((d, t)))
    assert emb.bulk_calls == [report.embedded_texts] and emb.encode_calls == 0
    assert seen[-1] == (report.embedded_texts, report.embedded_texts)


def test_bert_embedder_chooses_the_path_by_the_whole_build(monkeypatch):
    """Many small batches of a big build used to each go to NumPy; now the total decides."""
    from index.embed.models import BertEmbedder

    emb = BertEmbedder.__new__(BertEmbedder)
    emb.numpy_tokens = 100

    class Path_:
        dim = 4

        def __init__(self) -> None:
            self.calls = 0

        def encode(self, texts, batch_size=64, progress=False):
            self.calls += 1
            return np.zeros((len(texts), 4), np.float32)

        def tokenize(self, texts):
            return [[0] * 10 for _ in texts]

    numpy_path, torch_path = Path_(), Path_()
    emb._numpy, emb.dim = numpy_path, 4
    monkeypatch.setattr(emb, "_bulk_model", lambda: torch_path, raising=False)
    embed_all(emb, ["short text"] * 50)  # 500 tokens in all, 10 per text
    assert torch_path.calls == 1 and numpy_path.calls == 0
    embed_all(emb, ["short text"] * 5)   # 50 tokens
    assert numpy_path.calls == 1


def test_thread_budget_leaves_no_more_threads_than_cores():
    from threadpoolctl import threadpool_info

    from index import threads

    threads.serving()
    assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] in ("blas", "openmp"))
    with threads.build_threads(busy=0) as got:
        assert got["torch"] == threads.cores()
    with threads.build_threads(busy=threads.cores() + 5) as got:
        assert got == {"torch": 1, "blas": 1}
    assert threads.budget() == {"blas": 1, "torch": 1}
    assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] in ("blas", "openmp"))


def test_a_small_build_embeds_on_one_thread(monkeypatch, article_corpus, fake_embedder):
    """Threads are sized by the work as well as the cores (issue 19: 41 texts on every core beside another
    build took 52 s, 1.8 s on one thread)."""
    from index import threads
    from index.build import build_index

    monkeypatch.setattr(threads, "cores", lambda: 8)
    assert threads.threads_for(41) == 1 and threads.threads_for(0) == 1
    assert threads.threads_for(513) == 2 and threads.threads_for(100_000) == 8 and threads.threads_for(None) == 8
    assert threads.threads_for(100_000, busy=2) == 6
    granted = []
    real = threads.build_threads

    def spy(busy=0, work=None):
        granted.append(work)
        return real(busy, work)

    monkeypatch.setattr("index.build.build_threads", spy)
    build_index(article_corpus.corpus, article_corpus.index, fake_embedder)
    assert len(granted) == 1 and 0 < granted[0] < threads.TEXTS_PER_THREAD  # the article: one thread


def test_splitting_in_a_child_process_gives_the_same_sentences(monkeypatch):
    """Bulk builds split sentences in a child process (index/ingest/splitter.py) while the model loads."""
    from index import threads
    from index.build import _split
    from index.ingest.chunking import ChunkSettings, document_sentences
    from index.ingest.corpus import Document

    monkeypatch.setattr(threads, "cores", lambda: 2)
    docs = [Document(f"d{i}", f"T{i}", f"Story {i} begins here. The mayor spoke at length about it. "
                                       f"Residents said little.\n\nA second paragraph, number {i}, ends it.")
            for i in range(20)]
    loaded = []
    got = _split(docs, ChunkSettings(), None, lambda: loaded.append(True))
    assert loaded == [True]
    assert got == [document_sentences(d, ChunkSettings()) for d in docs]
