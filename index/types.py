"""The values that cross the library's public API: answers, their sources, conversation turns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Source:
    """A passage shown to the user as evidence (``start``/``end``: character offsets in its document)."""

    text: str
    title: str
    doc_id: str
    score: float
    start: int
    end: int
    url: str | None = None
    chunk_id: int = -1
    date: str | None = None
    outlet: str | None = None  # who published it: front matter's outlet, else the URL's host
    also_reported_by: list[str] = field(default_factory=list)  # outlets of near-duplicate articles not shown
    collection: str = "base"  # the collection the article belongs to (index/ingest/collections.py)


@dataclass
class Turn:
    """One earlier exchange of a conversation, given to ``Engine.ask`` for a follow-up question."""

    question: str
    answer: str = ""


@dataclass
class Draft:
    """What an answerer writes: the answer text and the ``(doc_id, start, end)`` spans it quotes.

    ``citations``: the 1-based numbers of the sources the text cites as [n]; ``answered_by``: who wrote
    it when not the answerer's own name (a model's label); ``fallback``: why a model's answer was not
    used and this is the extractive one instead (index.answer.llm.FALLBACK_REASONS).
    """

    text: str
    spans: list[tuple[str, int, int]] = field(default_factory=list)
    confidence: float | None = None  # None: keep the retrieval confidence
    citations: list[int] = field(default_factory=list)
    answered_by: str | None = None
    fallback: str = ""
    fallback_detail: str = ""


@dataclass
class Answer:
    """The result of one question. Data only: the application words it for people.

    ``english`` is False when the question does not look English and the model reads English best (a
    multilingual model, ``Embedder.multilingual``, reads it as well);
    ``tentative`` when it was answered with a confidence at which answers are often wrong.
    """

    question: str
    answer: str
    abstained: bool
    sources: list[Source]
    confidence: float
    latency_ms: float
    answer_spans: list[tuple[str, int, int]] = field(default_factory=list)
    english: bool = True
    tentative: bool = False
    answered_by: str = "extractive"
    retrieval_query: str = ""  # what retrieval searched for, when a follow-up added earlier turns' words
    citations: list[int] = field(default_factory=list)  # 1-based numbers into ``sources`` the answer cites
    fallback: str = ""  # why a language model's answer is not the one given (empty: it is, or none was asked)
    fallback_detail: str = ""
    # [start, end) in ``answer`` of the words that answer (index/answer/phrases.py)
    phrase: tuple[int, int] | None = None

    @property
    def model(self) -> str:
        """The language model that wrote the answer ("" when it is quoted from the articles): the library
        owns ``answered_by``'s ``llm:<model>`` form, so the application never parses it."""
        kind, _, name = (self.answered_by or "").partition(":")
        return name if kind == "llm" else ""

    @property
    def phrase_text(self) -> str:
        """The words of the answer that answer the question ("Russia"), or "" when none are marked."""
        return self.answer[self.phrase[0]:self.phrase[1]] if self.phrase else ""

    @property
    def hint(self) -> Source | None:
        """The closest passage, offered when abstaining."""
        return self.sources[0] if self.sources else None

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "answer": self.answer,
            "abstained": self.abstained,
            "tentative": self.tentative,
            "confidence": round(self.confidence, 4),
            "sources": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(s).items()}
                        for s in self.sources],
            "latency_ms": round(self.latency_ms, 2),
            "english": self.english,
            "answered_by": self.answered_by,
            "citations": [{"n": n, "doc_id": self.sources[n - 1].doc_id, "title": self.sources[n - 1].title,
                           "url": self.sources[n - 1].url, "chunk_id": self.sources[n - 1].chunk_id}
                          for n in self.citations if 0 < n <= len(self.sources)],
            "fallback": self.fallback or None,
            "phrase": ({"start": self.phrase[0], "end": self.phrase[1], "text": self.phrase_text}
                       if self.phrase else None),
        }
