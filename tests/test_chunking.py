"""Sentence splitting and chunking: whole sentences, small overlapping windows, offsets that map back."""

from __future__ import annotations

import pytest

from index.ingest.chunking import Chunk, ChunkSettings, chunk_document, document_sentences, split_sentences
from index.ingest.corpus import Document, load_corpus


def sentences_of(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


@pytest.mark.parametrize("text, expected", [
    ("He spoke at the U.N. Security Council on Monday. The U.S. delegation walked out.",
     ["He spoke at the U.N. Security Council on Monday.", "The U.S. delegation walked out."]),
    ("Officials in the U.S. said no. Mr. Smith agreed.",
     ["Officials in the U.S. said no.", "Mr. Smith agreed."]),
    ("\u201cWe lost the vote.\u201d He left the room. \u201cIt is over,\u201d she said.",
     ["\u201cWe lost the vote.\u201d", "He left the room.", "\u201cIt is over,\u201d she said."]),
    ('"It is over," he said. "We lost." Then silence.',
     ['"It is over," he said.', '"We lost."', "Then silence."]),
    ("Dr. Jones met Gen. Smith at 5 p.m. on Monday. They talked.",
     ["Dr. Jones met Gen. Smith at 5 p.m. on Monday.", "They talked."]),
])
def test_sentence_splitting(text, expected):
    assert sentences_of(text) == expected


def test_long_quote_is_split_into_its_sentences():
    text = ("He said: \u201cThere are war crimes being committed, it was the Secretary General who said it. "
            "Next we must identify those responsible for them. We are in the context of international law, "
            "and there is a court.\u201d")
    got = sentences_of(text)
    assert len(got) == 3
    assert got[1] == "Next we must identify those responsible for them."
    assert got[-1].endswith("there is a court.\u201d")


def test_split_sentences_of_a_range_gives_absolute_trimmed_offsets():
    text = "Intro.\n\n  First one here. Second one here.  \n\nOutro."
    a = text.index("First")
    b = text.index("Outro") - 2
    spans = split_sentences(text, a, b)
    assert [text[x:y] for x, y in spans] == ["First one here.", "Second one here."]
    assert split_sentences("   \n ") == []


@pytest.fixture(scope="module")
def article_doc(real_corpus_dir):
    (doc,) = load_corpus(real_corpus_dir)
    return doc


@pytest.mark.parametrize("settings", [ChunkSettings(), ChunkSettings(1, 0), ChunkSettings(2, 1),
                                      ChunkSettings(4, 2, 0), ChunkSettings(3, 0, 200)])
def test_offsets_map_back_to_the_cleaned_text(article_doc, settings):
    chunks = chunk_document(article_doc, settings)
    assert chunks
    for c in chunks:
        assert article_doc.text[c.start:c.end] == c.text
        assert c.doc_id == article_doc.id and c.title == article_doc.title
        assert 1 <= len(c.sentences) <= settings.sentences
        assert c.sentences[0][0] == c.start and c.sentences[-1][1] == c.end
        for a, b in c.sentences:
            assert c.start <= a < b <= c.end
            s = article_doc.text[a:b]
            assert s == s.strip() and s
        assert all(x[1] <= y[0] for x, y in zip(c.sentences, c.sentences[1:]))


def test_every_sentence_is_in_some_chunk(article_doc):
    settings = ChunkSettings()
    all_sents = {s for section in document_sentences(article_doc, settings) for s in section}
    covered = {s for c in chunk_document(article_doc, settings) for s in c.sentences}
    assert all_sents == covered
    # and together they cover every word of the cleaned text
    text_words = article_doc.text.split()
    covered_words = " ".join(article_doc.text[a:b] for a, b in sorted(all_sents)).split()
    assert covered_words == text_words


@pytest.mark.parametrize("size, overlap", [(3, 1), (2, 1), (4, 2), (3, 0), (1, 0)])
def test_overlap_is_honoured(size, overlap):
    sentences = [f"Sentence number {i} is about topic {i}." for i in range(10)]
    doc = Document("d", "T", " ".join(sentences))
    chunks = chunk_document(doc, ChunkSettings(size, overlap, 0))
    for prev, nxt in zip(chunks, chunks[1:]):
        assert prev.sentences[-overlap:] == nxt.sentences[:overlap] if overlap else \
            prev.sentences[-1][1] < nxt.sentences[0][0]
    assert all(len(c.sentences) == size for c in chunks[:-1])
    assert chunks[0].sentences[0][0] == 0
    assert chunks[-1].end == len(doc.text)
    step = size - overlap
    assert len(chunks) == max(1, -(-(10 - overlap) // step))


def test_chunks_stay_inside_paragraphs_and_short_paragraphs_join_the_next():
    text = "Caption.\n\nFirst real paragraph, long enough to stand alone as it is. It has two sentences.\n\n" \
           "Second paragraph is also long enough to stand on its own two feet. Indeed it is."
    doc = Document("d", "T", text)
    chunks = chunk_document(doc, ChunkSettings(3, 1, 40))
    assert [c.text for c in chunks] == [
        text[:text.index("\n\nSecond")],
        text[text.index("Second"):],
    ]
    assert chunks[0].text.startswith("Caption.")


def test_short_last_paragraph_joins_the_previous():
    text = "A paragraph that is long enough to be a section by itself, no doubt.\n\n— A byline"
    (chunk,) = chunk_document(Document("d", "T", text), ChunkSettings(3, 1, 40))
    assert chunk.text == text


def test_chunk_round_trips_through_dict(article_doc):
    for c in chunk_document(article_doc):
        assert Chunk.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("kwargs", [dict(sentences=0), dict(sentences=-1), dict(sentences=3, overlap=3),
                                    dict(sentences=2, overlap=-1)])
def test_chunk_settings_validation(kwargs):
    with pytest.raises(ValueError):
        ChunkSettings(**kwargs)


def test_chunk_settings_to_dict():
    assert ChunkSettings().to_dict() == {"sentences": 3, "overlap": 1, "min_paragraph_chars": 80}
