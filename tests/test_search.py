"""Unit tests of the answering engine on small fixed inputs: fusion, sentence re-scoring, the abstention
score, the short answer. A tiny deterministic bag-of-words embedder stands in for the model."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from bot.messages import explain
from index.answer.answerers import trim_residue
from index.answer.units import answer_units as _answer_units
from index.build import build_index
from index.embed.base import Embedder
from index.embed.models import get_embedder, register_embedder
from index.engine import Engine
from index.errors import ModelLoadError
from index.ingest.chunking import ChunkSettings
from index.search.retrieval import SearchSettings, fuse_scores, load_reranker
from index.store import load_index
from index.text import content_terms

MODEL = "test-search-bow"


class BowEmbedder(Embedder):
    """Stemmed content words hashed into 128 buckets: texts sharing words get similar vectors."""

    name = MODEL
    dim = 128

    def __init__(self, name: str = MODEL) -> None:
        self.name = name

    def encode(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for term in content_terms(text):
                h = int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "little")
                out[i, h % self.dim] += 1.0
            n = np.linalg.norm(out[i])
            if n:
                out[i] /= n
        return out


ARTICLE = """Harbour news

The harbour authority approved a new lighthouse on Tuesday. The tower will be forty metres tall.

Fishermen welcomed the decision. Their union had campaigned for the light since the storm of 2019.

The mayor said the cost was: Twelve million euros. Work starts in spring.

Weather: Windy.
— Harbour Gazette (@gazette) March 3, 2024

Local bakers reported record sales of rye bread during the festival weekend.
"""


def engine_over(root: Path, files: dict[str, str]) -> Engine:
    """An engine over a corpus of ``files`` (name -> text), built with the bag-of-words embedder."""
    register_embedder(MODEL, BowEmbedder)
    corpus = root / "corpus"
    corpus.mkdir()
    for name, text in files.items():
        (corpus / name).write_text(text, encoding="utf-8")
    emb = get_embedder(MODEL)
    build_index(corpus, root / "index", emb, ChunkSettings(sentences=2, overlap=1))
    return Engine(load_index(root / "index", MODEL, emb.dim), emb, SearchSettings())


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    return engine_over(tmp_path_factory.mktemp("search"), {"harbour.txt": ARTICLE})


def with_settings(engine: Engine, **changes) -> Engine:
    return Engine(engine.index, engine.embedder, dataclasses.replace(engine.settings, **changes))


# ------------------------------------------------------------------------------------------ fusion


def test_score_fusion_saturating_bm25():
    s = SearchSettings(dense_weight=0.5, bm25_norm="saturate", bm25_saturation=10.0)
    got = fuse_scores(np.array([0.8, 0.2]), np.array([10.0, 30.0]), s)
    assert got == pytest.approx([0.5 * 0.8 + 0.5 * 0.5, 0.5 * 0.2 + 0.5 * 0.75])


def test_score_fusion_max_normalised_bm25():
    s = SearchSettings(dense_weight=0.25, bm25_norm="max")
    got = fuse_scores(np.array([0.4, 0.6]), np.array([2.0, 8.0]), s, bm25_best=8.0)
    assert got == pytest.approx([0.25 * 0.4 + 0.75 * 0.25, 0.25 * 0.6 + 0.75 * 1.0])
    # a question with no BM25 match at all leaves only the dense part
    assert fuse_scores(np.array([0.4]), np.array([0.0]), s, bm25_best=0.0) == pytest.approx([0.1])


def test_reciprocal_rank_fusion():
    s = SearchSettings(fusion="rrf")
    got = fuse_scores(np.array([0.9, 0.5, 0.1]), np.array([1.0, 3.0, 2.0]), s)
    # ranks: dense (0, 1, 2), bm25 (2, 0, 1); scaled so first in both would score 1
    expect = [(1 / 61 + 1 / 63) * 61 / 2, (1 / 62 + 1 / 61) * 61 / 2, (1 / 63 + 1 / 62) * 61 / 2]
    assert got == pytest.approx(expect)
    assert int(np.argmax(got)) == 1


def test_settings_are_validated():
    for bad in (dict(mode="x"), dict(fusion="x"), dict(bm25_norm="x"), dict(dense_weight=1.5),
                dict(top_k=0), dict(bm25_saturation=0)):
        with pytest.raises(ValueError):
            SearchSettings(**bad)


# -------------------------------------------------------------------------------- sentence scoring


def test_sentence_rescoring_picks_the_matching_sentence(engine):
    q = "How tall will the lighthouse tower be?"
    cands = engine.retrieve(q)
    best = cands[0]
    assert "forty metres" in engine.index.sentence_text[best.best_sentence]
    assert best.sentence == pytest.approx(max(best.sentence_scores))
    s = engine.settings
    assert best.score == pytest.approx((1 - s.sentence_weight) * best.fused + s.sentence_weight * best.sentence)
    assert [c.score for c in cands] == sorted((c.score for c in cands), reverse=True)


def test_sentence_score_mixes_cosine_and_coverage(engine):
    e = with_settings(engine, sentence_lexical_weight=0.25)
    assert e.retriever.sentence_scores([0.8, 0.0], [0.0, 1.0]) == pytest.approx([0.6, 0.25])


def test_coverage_is_idf_weighted(engine):
    terms = content_terms("lighthouse harbour")  # "harbour" is in many chunks, "lighthouse" in few
    only_rare = engine.retriever.coverage(terms, frozenset(content_terms("lighthouse")))
    only_common = engine.retriever.coverage(terms, frozenset(content_terms("harbour")))
    assert only_rare > 0.5 > only_common
    assert engine.retriever.coverage(terms, frozenset(terms)) == pytest.approx(1.0)
    assert engine.retriever.coverage([], frozenset(terms)) == 0.0


def test_top_k_only_sets_how_many_sources(engine):
    q = "What did the fishermen think of the decision?"
    a3, a5 = engine.ask(q), with_settings(engine, top_k=5).ask(q)
    assert [s.chunk_id for s in a5.sources[:3]] == [s.chunk_id for s in a3.sources]
    assert a3.answer == a5.answer and a3.confidence == a5.confidence


def test_sources_do_not_repeat_the_same_best_sentence(engine):
    ans = with_settings(engine, top_k=5).ask("When was the lighthouse approved by the harbour authority?")
    rows = [s.chunk_id for s in ans.sources]
    assert len(rows) == len(set(rows))
    everything = with_settings(engine, top_k=5, dedupe_sources=False).ask(ans.question)
    assert len(everything.sources) >= len(ans.sources)


# ------------------------------------------------------------------------------------- abstention


def test_confidence_ranks_on_topic_above_off_topic(engine):
    on = engine.ask("When did the harbour authority approve the lighthouse?")
    near = engine.ask("Who won the harbour sailing race?")
    off = engine.ask("How do I reverse a linked list in Python?")
    assert on.confidence > near.confidence > off.confidence
    assert not on.abstained and off.abstained and off.answer == ""


def test_confidence_combines_similarity_and_coverage(engine):
    q = "When did the harbour authority approve the lighthouse?"
    terms = content_terms(q)
    best = engine.retrieve(q)[0]
    pure_sim = with_settings(engine, coverage_weight=0.0).retriever.confidence(best, terms)
    pure_cov = with_settings(engine, coverage_weight=1.0).retriever.confidence(best, terms)
    mixed = engine.retriever.confidence(best, terms)
    w = engine.settings.coverage_weight
    assert mixed == pytest.approx((1 - w) * pure_sim + w * pure_cov)
    assert pure_sim == pytest.approx(max(best.dense, max(best.sentence_sims)))


def test_unknown_words_lower_confidence_when_weighted(engine):
    q = "Did the zorblax quintessence approve the lighthouse?"
    terms = content_terms(q)
    assert engine.retriever.unknown_share(terms) > 0.3
    best = engine.retrieve(q)[0]
    damped = with_settings(engine, unknown_weight=0.5).retriever.confidence(best, terms)
    assert damped < engine.retriever.confidence(best, terms)


def test_threshold_is_the_abstention_knob(engine):
    q = "When did the harbour authority approve the lighthouse?"
    assert with_settings(engine, abstain_threshold=1.0, tentative_below=1.0).ask(q).abstained
    assert not with_settings(engine, abstain_threshold=0.0).ask(q).abstained


def test_tentative_marks_answers_between_the_two_thresholds(engine):
    q = "When did the harbour authority approve the lighthouse?"
    conf = with_settings(engine, abstain_threshold=0.0).ask(q).confidence
    low = with_settings(engine, abstain_threshold=0.0, tentative_below=min(1.0, max(0.0, conf + 0.01)))
    high = with_settings(engine, abstain_threshold=0.0, tentative_below=max(0.0, conf - 0.01))
    assert low.ask(q).tentative and not high.ask(q).tentative
    assert not with_settings(engine, abstain_threshold=0.0, tentative_below=0.0).ask(q).tentative  # 0 = off
    gone = with_settings(engine, abstain_threshold=1.0, tentative_below=1.0).ask(q)
    assert gone.abstained and not gone.tentative  # an abstention is never "tentative"
    assert low.ask(q).to_dict()["tentative"] is True


def test_tentative_below_must_be_a_confidence():
    with pytest.raises(ValueError, match="tentative_below"):
        SearchSettings(tentative_below=1.5)
    with pytest.raises(ValueError, match="tentative_below must not be below abstain_threshold"):
        SearchSettings(abstain_threshold=0.5, tentative_below=0.45)


# ------------------------------------------------------------------------------------ short answer


def test_answer_units_glue_fragments_attributions_and_colons():
    texts = ["The mayor said the cost was:", "Twelve million euros.", "Work starts in spring.",
             "Weather:", "Windy.", "— Harbour Gazette (@gazette) March 3, 2024",
             "Local bakers reported record sales of rye bread.", "Jean Dupont",
             "“We are delighted with the new light on the pier,” he said."]
    units = _answer_units(texts, 100, fragment_chars=16)
    assert units[0] == units[1] == (100, 101)         # a sentence ending ":" runs on
    assert units[2] == (102, 102)
    assert units[3] == units[4] == units[5] == (103, 105)  # fragment, then the tweet's attribution line
    assert units[6] == (106, 106)                      # not glued to the attribution before it
    assert units[7] == units[8] == (107, 108)          # a byline label joins the quote after it


def test_trim_residue():
    assert trim_residue("The veto is a gift to terrorists cc") == "The veto is a gift to terrorists"
    assert trim_residue(": … Ayrault will attend the meeting …") == "Ayrault will attend the meeting"
    assert trim_residue("Plain sentence.") == "Plain sentence."


def test_short_answer_is_the_best_sentence(engine):
    ans = engine.ask("How tall will the lighthouse tower be?")
    assert "forty metres" in ans.answer
    assert "Fishermen" not in ans.answer and "rye" not in ans.answer
    doc = engine.index.documents[0]
    assert all(doc.text[a:b] in " ".join(doc.text.split()) or doc.text[a:b] for _, a, b in ans.answer_spans)


def test_short_answer_follows_a_sentence_that_runs_on(engine):
    ans = engine.ask("What did the mayor say the cost was?")
    assert ans.answer.startswith("The mayor said the cost was:")
    assert "Twelve million euros" in ans.answer


def test_short_answer_gives_two_adjacent_sentences_in_reading_order(engine):
    e = with_settings(engine, adjacent_margin=1.0)  # any neighbour is close enough
    ans = e.ask("How tall will the lighthouse tower be?")
    assert "approved a new lighthouse" in ans.answer and "forty metres" in ans.answer
    assert ans.answer.index("approved") < ans.answer.index("forty")
    one = with_settings(engine, answer_sentences=1, adjacent_margin=1.0).ask(ans.question)
    assert "approved" not in one.answer


def test_short_answer_keeps_a_tweet_with_its_attribution(engine):
    ans = engine.ask("What did the Harbour Gazette say about the weather?")
    assert "Windy." in ans.answer and "March 3, 2024" in ans.answer


# --------------------------------------------------------------------------------------- re-ranker


def test_reranker_that_cannot_load_is_one_clear_error(tmp_path: Path):
    with pytest.raises(ModelLoadError) as info:
        load_reranker(str(tmp_path / "no-such-cross-encoder"))
    msg = explain(info.value)
    assert "re-ranker" in msg and "HERALD_RERANKER" in msg and "\n" not in msg


def test_reranker_scores_are_mixed_in(engine, monkeypatch):
    class Fake:
        def predict(self, pairs):
            return [10.0 if "rye" in text else -10.0 for _, text in pairs]

    e = with_settings(engine, reranker_weight=0.9)
    e.retriever._reranker = Fake()
    top = e.retrieve("What happened at the harbour?")[0]
    assert "rye" in e.index.chunks[top.row].text


def test_answer_type_bonus_prefers_a_sentence_with_a_number(engine):
    from index.search.retrieval import answer_type_of

    assert answer_type_of("How many people live there?").search("about 300 people")
    assert answer_type_of("When did it open?").search("It opened in March.")
    assert answer_type_of("Why did it open?") is None
    e = with_settings(engine, answer_type_weight=0.2)
    assert e.retriever.sentence_scores([0.5, 0.5], [0.5, 0.5], [True, False]) == pytest.approx(
        [0.5 + 0.2, 0.5])
    ans = e.ask("How tall will the new lighthouse tower be?")
    assert "forty metres" in ans.answer


# ------------------------------------------------------------------------------------ the title is searched

STRIKE = """---
title: Zanzibar ferry strike
---
Crews stopped work at dawn on Monday and the walkout left hundreds of passengers waiting on the quay.

The union said the walkout would last until wages were paid. Managers called the stoppage unlawful.
"""

DISTRACTOR = """---
title: Orchard report
---
Apple growers expect a large harvest this autumn after a warm and wet summer in the valley.

Prices at the market fell slightly as the first crates arrived from the northern farms.
"""


@pytest.fixture(scope="module")
def titled(tmp_path_factory) -> Engine:
    """Two articles; the strike's place and kind are named only in its front-matter title."""
    # the orchard is first in order, so it wins a tie at 0
    return engine_over(tmp_path_factory.mktemp("titled"), {"a-orchard.md": DISTRACTOR, "b-strike.md": STRIKE})


def test_a_word_only_in_the_title_is_found_by_bm25(titled):
    assert not any("zanzibar" in c.text.casefold() for c in titled.index.chunks)  # the title is not body text
    top = titled.retrieve("What happened in Zanzibar?", mode="bm25")[0]
    assert titled.index.chunks[top.row].doc_id == "b-strike.md"
    assert top.bm25 > 0


def test_the_title_is_searched_but_never_quoted_or_scored_as_a_sentence(titled):
    r = titled.retriever
    assert all("zanzibar" not in r.sentence_termset(sid) for sid in range(len(titled.index.sentence_text)))
    ans = titled.ask("Why did the Zanzibar ferry crews stop work?")
    assert ans.sources and ans.sources[0].doc_id == "b-strike.md"
    assert "Zanzibar" not in ans.answer


def test_a_title_the_chunk_already_begins_with_is_not_searched_twice():
    from index.ingest.chunking import Chunk
    from index.search.retrieval import searched_title

    said = Chunk("a.txt", "Crews stopped work at dawn.", "Crews stopped  work at dawn. The union spoke.", 0, 45)
    assert searched_title(said) == ""
    assert searched_title(dataclasses.replace(said, title="Zanzibar ferry strike")) == "Zanzibar ferry strike"
