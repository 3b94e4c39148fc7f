"""Answerers: from a question and its ranked passages to the answer text.

Retrieval decides *which* passages and *whether* to answer (abstention happens before an answerer is
called); an answerer decides *what to say*. ``extractive`` (the default) quotes the best answer unit of
the top passage; a trained reader or a language model is one more class registered in ``ANSWERERS`` and
named in settings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

from index.answer.units import document_units
from index.registry import Registry
from index.types import Draft, Source, Turn

if TYPE_CHECKING:
    from index.search.retrieval import Candidate, Query, Retriever, SearchSettings

# Residue of page widgets left at the edges of a sentence: dangling separators and link ellipses.
_EDGE_RESIDUE_RE = re.compile(r"^(?:\s*[|:•·…]+)+\s*|(?:\s*(?:[|:•·…]+|\bcc))+\s*$")


@runtime_checkable
class Answerer(Protocol):
    """Writes the answer from ranked passages (``sources``, best first, and retrieval's ``candidates``).

    An answerer class subclasses it for the defaults of its declared capabilities: ``streams`` (True:
    ``answer`` takes ``on_token``, called with each piece of the answer as it is written) and ``rewrite``
    (a follow-up question made standalone from the conversation, or None: the engine then searches it
    with the previous question's content words).
    """

    name: str
    streams: ClassVar[bool] = False

    def answer(self, query: Query, sources: Sequence[Source], candidates: Sequence[Candidate],
               retriever: Retriever, history: Sequence[Turn] = ()) -> Draft: ...

    def rewrite(self, question: str, history: Sequence[Turn]) -> str | None:
        """A standalone form of a follow-up ``question``; None when this answerer cannot make one."""
        return None


ANSWERERS: Registry[Answerer] = Registry("answerer")


class ExtractiveAnswerer(Answerer):
    """Quotes the best answer unit of the top passage, plus the adjacent one when it scores nearly as well.

    An answer unit is a sentence with the fragments that belong to it (index/answer/units.py); sentence scores
    come from the retriever, so the quote is the sentence retrieval ranked best.
    """

    name = "extractive"

    def __init__(self, settings: SearchSettings, **_options) -> None:
        self.settings = settings

    def answer(self, query: Query, sources: Sequence[Source], candidates: Sequence[Candidate],
               retriever: Retriever, history: Sequence[Turn] = ()) -> Draft:
        text, spans = self.short_answer(candidates[0], query, retriever)
        return Draft(text, spans)

    def short_answer(self, best: Candidate, query: Query,
                     retriever: Retriever) -> tuple[str, list[tuple[str, int, int]]]:
        s = self.settings
        reader = retriever.reader
        if best.best_sentence < 0:
            chunk = reader.chunk(best.row)
            return " ".join(chunk.text.split()), [(chunk.doc_id, chunk.start, chunk.end)]
        doc_id = reader.sentence_doc(best.best_sentence)[0]
        sids, units = document_units(reader, doc_id, s.fragment_chars)

        def unit_of(sid: int) -> tuple[int, int]:
            return units[sid - sids.start]

        def unit_score(a: int, b: int) -> float:
            return max(retriever.sentence_score(i, query) for i in range(a, b + 1))

        first, last = unit_of(best.best_sentence)
        top = unit_score(first, last)
        if s.answer_sentences > 1:
            options = []
            if last + 1 in sids:
                nxt = unit_of(last + 1)
                runs_on = reader.sentence_text(last).rstrip().endswith(":")
                options.append((unit_score(*nxt) + (1.0 if runs_on else 0.0), nxt))
            if first - 1 in sids:
                prv = unit_of(first - 1)
                options.append((unit_score(*prv), prv))
            for score, (a, b) in sorted(options, reverse=True)[:1]:
                if score >= top - s.adjacent_margin:
                    first, last = min(first, a), max(last, b)
        spans = [reader.sentence_doc(i) for i in range(first, last + 1)]
        doc = reader.document(doc_id)
        assert doc is not None  # its sentence was just read
        text = " ".join(doc.text[spans[0][1]:spans[-1][2]].split())
        return trim_residue(text), spans


ANSWERERS.register("extractive", ExtractiveAnswerer)


def trim_residue(text: str) -> str:
    """Strip widget residue (dangling separators, link ellipses, a trailing "cc") from an answer's edges."""
    trimmed = _EDGE_RESIDUE_RE.sub("", text).strip()
    return trimmed or text.strip()
