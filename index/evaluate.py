"""Running a question set against an engine: the figures `herald eval` prints and the tests assert."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from index.errors import QuestionError, QuestionSetError
from index.types import Answer

if TYPE_CHECKING:
    from index.engine import Engine


@dataclass
class QAItem:
    question: str
    answers: list[str]
    path: str = ""  # where it was read (file and line), so a question that cannot be asked is named
    line: int = 0

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass
class EvalResult:
    """Per-question outcomes and the summary figures."""

    items: list[tuple[QAItem, Answer]] = field(default_factory=list)

    def _hits(self, texts: list[str], expected: list[str]) -> bool:
        low = [" ".join(t.split()).casefold() for t in texts]
        return any(e.casefold() in t for e in expected for t in low)

    def answer_hit(self, item: QAItem, ans: Answer) -> bool:
        return not ans.abstained and self._hits([ans.answer], item.answers)

    def recall_at(self, item: QAItem, ans: Answer, k: int) -> bool:
        return self._hits([s.text for s in ans.sources[:k]], item.answers)

    def summary(self) -> dict[str, float | int]:
        answerable = [(i, a) for i, a in self.items if i.answerable]
        offtopic = [(i, a) for i, a in self.items if not i.answerable]
        lat = np.array([a.latency_ms for _, a in self.items]) if self.items else np.zeros(1)

        def rate(pairs, pred) -> float:
            return sum(1 for p in pairs if pred(*p)) / len(pairs) if pairs else float("nan")

        return {
            "questions": len(self.items),
            "answerable": len(answerable),
            "off_topic": len(offtopic),
            "answer_hit": rate(answerable, self.answer_hit),
            "recall@1": rate(answerable, lambda i, a: self.recall_at(i, a, 1)),
            "recall@3": rate(answerable, lambda i, a: self.recall_at(i, a, 3)),
            "recall@5": rate(answerable, lambda i, a: self.recall_at(i, a, 5)),
            "abstention_accuracy": rate(self.items, lambda i, a: a.abstained != i.answerable),
            "false_abstentions": rate(answerable, lambda i, a: a.abstained),
            "off_topic_abstained": rate(offtopic, lambda i, a: a.abstained),
            # Answered but labelled tentative: how many, how many of those were right, and how many of the
            # off-topic questions that got an answer at least got it labelled.
            "tentative_answers": sum(1 for _, a in answerable if a.tentative),
            "tentative_right": sum(1 for i, a in answerable if a.tentative and self.answer_hit(i, a)),
            "answered": sum(1 for _, a in answerable if not a.abstained),
            "off_topic_answered": sum(1 for _, a in offtopic if not a.abstained),
            "off_topic_tentative": sum(1 for _, a in offtopic if a.tentative),
            "sources_listed": max((len(a.sources) for _, a in self.items), default=0),
            "latency_p50_ms": float(np.percentile(lat, 50)),
            "latency_p95_ms": float(np.percentile(lat, 95)),
        }

    def failures(self) -> list[str]:
        """One line per question that missed, for a person to read."""
        out = []
        for item, ans in self.items:
            if item.answerable and (ans.abstained or not self.answer_hit(item, ans)):
                label = " [tentative]" if ans.tentative else ""
                why = "abstained" if ans.abstained else f"answer {ans.answer[:80]!r}{label}"
                out.append(f"MISS {item.question!r}: {why} (conf {ans.confidence:.3f})")
            elif not item.answerable and not ans.abstained:
                label = " [tentative]" if ans.tentative else ""
                out.append(f"NOT ABSTAINED {item.question!r}: {ans.answer[:80]!r}{label} (conf {ans.confidence:.3f})")
        return out


def load_qa(path: Path) -> list[QAItem]:
    """Read a JSONL question set; a malformed line is a clear error naming the line."""
    items = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        why = (exc.strerror if isinstance(exc, OSError) else None) or exc
        raise QuestionSetError(path, "unreadable", detail=str(why)) from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            question = obj["question"]
            answers = obj.get("answers", [])
            if not isinstance(question, str) or not isinstance(answers, list):
                raise TypeError
        except (ValueError, KeyError, TypeError) as exc:
            raise QuestionSetError(path, "malformed", n) from exc
        items.append(QAItem(question, [str(a) for a in answers], str(path), n))
    if not items:
        raise QuestionSetError(path, "empty")
    return items


def evaluate(engine: Engine, items: list[QAItem], list_sources: int = 5,
             collections: Iterable[str] | None = None) -> EvalResult:
    """Ask every question; ``list_sources`` sources are listed for recall@5 (the answer is made from the
    usual ``top_k``, so a language model is scored on what users get). ``collections``: search only these,
    as a question asked in one server does (None: every collection)."""
    result = EvalResult()
    scope = None if collections is None else tuple(collections)  # an iterator would be used up by one question
    for item in items:
        try:
            answer = engine.ask(item.question, list_sources=list_sources, collections=scope)
        except QuestionError as exc:
            raise QuestionSetError(item.path or "questions", "bad_question", item.line, exc.problem) from exc
        result.items.append((item, answer))
    return result
