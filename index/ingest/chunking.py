"""Sentence-aware chunking: small overlapping windows of whole sentences, with offsets into the text.

Whole sentences keep quotes intact and make the short answer a clean cut of the article; small windows
keep each vector about one thing; the overlap stops an answer that spans two sentences falling between
two chunks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from index.ingest.corpus import TWEET_SIGNATURE_END_RE, Document

_PARA_RE = re.compile(r"\S(?:.*?\S)?(?=\n\s*\n|\s*\Z)", re.DOTALL)
# Inside a long quotation pysbd keeps every quoted sentence together; split those at a full stop that
# ends a lower-case word (so "U.N." and "Mr." never split) and starts a capitalised one.
_INNER_SPLIT_RE = re.compile(r"(?<=[a-z]{2}[.!?])[”’\"]?\s+(?=[“‘\"]?[A-Z])")
_LONG_SENTENCE = 160
_ABBREVIATIONS = {"etc", "mrs", "gen", "col", "sen", "rep", "gov", "sgt", "vol", "approx", "prof", "capt"}


@dataclass(frozen=True)
class ChunkSettings:
    """How documents are cut; saved in the manifest so a change forces a full rebuild."""

    sentences: int = 3
    overlap: int = 1
    min_paragraph_chars: int = 80

    def __post_init__(self) -> None:
        if self.sentences < 1:
            raise ValueError("a chunk needs at least one sentence")
        if not 0 <= self.overlap < self.sentences:
            raise ValueError("overlap must be at least 0 and smaller than the chunk size")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Chunk:
    """A window of sentences of one document; ``text == document.text[start:end]``."""

    doc_id: str
    title: str
    text: str
    start: int
    end: int
    sentences: list[tuple[int, int]] = field(default_factory=list)
    url: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The record chunks.jsonl holds (fields in declaration order; written out by hand because
        ``dataclasses.asdict`` deep-copies, and an update writes every chunk's record)."""
        return {"doc_id": self.doc_id, "title": self.title, "text": self.text, "start": self.start, "end": self.end,
                "sentences": [[a, b] for a, b in self.sentences], "url": self.url}

    @classmethod
    def from_dict(cls, d: dict) -> Chunk:
        return cls(
            doc_id=d["doc_id"], title=d["title"], text=d["text"], start=d["start"], end=d["end"],
            sentences=[(int(a), int(b)) for a, b in d["sentences"]], url=d.get("url"),
        )


@lru_cache(maxsize=1)
def _segmenter():  # pragma: no cover - trivial
    import pysbd

    return pysbd.Segmenter(language="en", clean=False, char_span=True)


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each blank-line separated paragraph."""
    return [(m.start(), m.end()) for m in _PARA_RE.finditer(text)]


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans within text[start:end], trimmed of whitespace, as absolute offsets.

    pysbd knows abbreviations ("U.N.", "U.S."), quotes and curly quotes; a rule-based splitter
    ("split on '. '") would cut "the U.N. Security Council" in two.
    """
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for a, b in _pieces(text, start, end):
        spans.extend(_segment(text, a, b))
    return spans


def _segment(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """pysbd's sentences of text[start:end] (at most ``_MAX_PIECE`` characters), trimmed, as absolute offsets."""
    piece = text[start:end]
    spans: list[tuple[int, int]] = []
    if not piece.strip():
        return spans
    for span in _segmenter().segment(piece):
        a, b = span.start, span.end
        while a < b and piece[a].isspace():
            a += 1
        while b > a and piece[b - 1].isspace():
            b -= 1
        if b > a:
            spans.extend(_split_long(text, start + a, start + b))
    return spans


#: pysbd's time grows with the square of a paragraph's length (100 K characters took 14 s, 1.9 MB did
#: not finish in 400 s); pieces of at most this many characters keep a build linear in the corpus.
#: Far above any real paragraph (SQuAD's longest is 4 K, news paragraphs under 1 K), so those are untouched.
_MAX_PIECE = 10_000


def _pieces(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """text[start:end] cut into pieces of at most ``_MAX_PIECE`` characters: at the last sentence-looking
    boundary in a piece's second half, else at its last white space, else (one endless word) at the limit."""
    pieces = []
    while end - start > _MAX_PIECE:
        limit = start + _MAX_PIECE
        half = start + _MAX_PIECE // 2
        cut = None
        for m in _sentence_boundaries(text, half, limit, start):
            cut = m.end()
        if cut is None:
            space = max(text.rfind(" ", half, limit), text.rfind("\n", half, limit))
            cut = space + 1 if space > start else limit
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def _sentence_boundaries(text: str, a: int, b: int, floor: int) -> Iterator[re.Match[str]]:
    """``_INNER_SPLIT_RE``'s matches in text[a:b] that do not follow an abbreviation ("Gen. Smith" is one
    sentence); the word before a match is looked for no further back than ``floor``."""
    for m in _INNER_SPLIT_RE.finditer(text, a, b):
        word = re.findall(r"\w+", text[max(floor, m.start() - 12):m.start()])
        if not (word and word[-1].lower() in _ABBREVIATIONS):
            yield m


def _split_long(text: str, a: int, b: int) -> list[tuple[int, int]]:
    """Split a long quoted span into its own sentences (see ``_INNER_SPLIT_RE``)."""
    if b - a < _LONG_SENTENCE or not any(q in text[a:b] for q in "“\"‘"):
        return [(a, b)]
    out: list[tuple[int, int]] = []
    cur = a
    for m in _sentence_boundaries(text, a, b, a):
        cut = m.start() + len(m.group(0).rstrip()) if m.group(0).strip() else m.start()
        out.append((cur, cut))
        cur = m.end()
    out.append((cur, b))
    return [(x, y) for x, y in out if y > x]


def _sections(text: str, min_chars: int) -> list[tuple[int, int]]:
    """Paragraphs, with very short ones (captions, tweet bylines) joined to the next paragraph."""
    sections: list[tuple[int, int]] = []
    pending: int | None = None
    for a, b in paragraph_spans(text):
        if pending is not None:
            a = pending
            pending = None
        if b - a < min_chars:
            pending = a
            continue
        sections.append((a, b))
    if pending is not None:
        if sections:
            sections[-1] = (sections[-1][0], len(text.rstrip()))
        else:
            sections.append((pending, len(text.rstrip())))
    return sections


_TWEET_MAX_CHARS = 400


def _section_sentences(text: str, a: int, b: int) -> list[tuple[int, int]]:
    """An embedded tweet (ending in its signature) is one unit: "Bloody. Hell." is not two answers."""
    if b - a <= _TWEET_MAX_CHARS and TWEET_SIGNATURE_END_RE.search(text, a, b):
        return [(a, b)]
    return split_sentences(text, a, b)


def document_sentences(doc: Document, settings: ChunkSettings) -> list[list[tuple[int, int]]]:
    """Sentence spans of each section of the document."""
    return [_section_sentences(doc.text, a, b) for a, b in _sections(doc.text, settings.min_paragraph_chars)]


def chunk_document(doc: Document, settings: ChunkSettings = ChunkSettings()) -> list[Chunk]:
    """Overlapping windows of ``settings.sentences`` sentences inside each section of the document."""
    return chunk_sections(doc, document_sentences(doc, settings), settings)


def chunk_sections(doc: Document, sections: list[list[tuple[int, int]]], settings: ChunkSettings) -> list[Chunk]:
    """The chunks of already split sections (builds split each document once: sentence splitting is
    the slow part of preprocessing)."""
    chunks: list[Chunk] = []
    step = settings.sentences - settings.overlap
    for sents in sections:
        if not sents:
            continue
        i = 0
        while True:
            window = sents[i:i + settings.sentences]
            a, b = window[0][0], window[-1][1]
            chunks.append(Chunk(doc.id, doc.title, doc.text[a:b], a, b, list(window), doc.url))
            if i + settings.sentences >= len(sents):
                break
            i += step
    return chunks
