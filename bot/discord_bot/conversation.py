"""Follow-ups: what Herald remembers of each conversation, so "and why?" is asked with the turns before it.

A question is a follow-up when it replies to one of Herald's answers, or is asked in a thread started
from one (Discord gives such a thread the id of the message it was started from, so the same lookup
finds it). Each answer's turns (the earlier ones plus its own question and answer) are kept under the
id of Herald's reply message; a thread's latest turns are kept under the thread's id.

The memory is in-process and bounded (least recently stored first out). After a restart a reply to an
answer still continues it: the one turn that answer shows is read back from its embed (question in the
title, answer in the description); earlier turns, and a thread's history, are lost.

A leaf module (``bot.format``, ``bot.messages`` and ``index``; no discord import), used on the event loop
only, so it needs no lock.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from bot.format import TENTATIVE_LEAD, plain_text
from bot.messages import ABSTAIN_MESSAGE
from index import Answer, Turn

__all__ = ["Conversations", "turn_from_message", "turn_of"]

# The answer kept per turn is cut to this: the model gets at most history_turns of them in its prompt.
ANSWER_CHARS = 1500
_NOTE_RE = re.compile(r"\n\n\*[^\n]*\*\s*\Z")  # the italic note format_answer puts under an answer


class Conversations:
    """``("message" | "thread", id) -> turns`` for recent answers, at most ``capacity`` entries."""

    def __init__(self, capacity: int = 5000, max_turns: int = 8) -> None:
        self.capacity = capacity
        self.max_turns = max_turns
        self._items: OrderedDict[tuple[str, int], tuple[Turn, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, kind: str, key: int | None) -> tuple[Turn, ...] | None:
        return None if key is None else self._items.get((kind, key))

    def remember(self, kind: str, key: int, turns: Sequence[Turn]) -> None:
        self._items[(kind, key)] = tuple(turns)[-self.max_turns:]
        self._items.move_to_end((kind, key))
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


def turn_of(answer: Answer) -> Turn:
    """The turn an answer adds to its conversation (an abstention adds only its question)."""
    text = "" if answer.abstained else answer.answer
    return Turn(answer.question, text[:ANSWER_CHARS])


def turn_from_message(message: Any) -> Turn | None:
    """The turn an answer message shows, or None when it is not an answer (a notice, a preview)."""
    embeds = getattr(message, "embeds", None) or []
    if not embeds:
        return None
    embed = embeds[0]
    question = (embed.title or "").strip()
    if not question:
        return None
    desc = embed.description or ""
    if desc.startswith(ABSTAIN_MESSAGE):
        return Turn(question, "")
    if desc.startswith(TENTATIVE_LEAD):
        desc = desc[len(TENTATIVE_LEAD):]
    return Turn(question, plain_text(_NOTE_RE.sub("", desc)).strip()[:ANSWER_CHARS])
