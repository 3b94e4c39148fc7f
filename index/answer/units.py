"""Answer units: a sentence with the fragments that belong to it, what the extractive answerer quotes.

Computed per document on first use and kept beside its reader (not on it: the index knows nothing of
answers).
"""

from __future__ import annotations

import re
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from index.search.reader import IndexReader

# A "sentence" that is really part of its neighbour: a tweet's attribution line ("— Name (@handle) date"),
# an exclamation fragment ("Bloody." "Hell."), a caption/byline with no full stop before a quote.
_ATTRIBUTION_RE = re.compile(r"^\s*[—–-]\s")
_TERMINAL_RE = re.compile(r"[.!?…”\"’')\]]\s*$")

_DOC_CACHE: weakref.WeakKeyDictionary[object, dict[tuple[str, int, int], list[tuple[int, int]]]] = \
    weakref.WeakKeyDictionary()


def document_units(reader: IndexReader, doc_id: str, fragment_chars: int) -> tuple[range, list[tuple[int, int]]]:
    """(the document's sids, the (first, last) answer unit of each): one document's units, computed on first
    use from its sentences alone (units never cross documents), so a reader need not hold every sentence."""
    sids = reader.document_sentences(doc_id)
    per_reader = _DOC_CACHE.setdefault(reader, {})
    key = (doc_id, sids.start, fragment_chars)  # a changed document keeps its id, not its sentence ids
    units = per_reader.get(key)
    if units is None:
        units = answer_units([reader.sentence_text(s) for s in sids], sids.start, fragment_chars)
        if len(per_reader) > 10_000:  # a long-running bot over many documents: keep it bounded
            per_reader.clear()
        per_reader[key] = units
    return sids, units


def answer_units(texts: list[str], base: int, fragment_chars: int) -> list[tuple[int, int]]:
    """(first, last) sentence id of the answer unit of each sentence of one document.

    A sentence joins the one before it when it is a tweet's attribution line ("— Name (@handle) date"),
    a fragment shorter than ``fragment_chars`` ("Bloody." "Hell."), or follows a sentence ending in ":";
    a short label with no closing punctuation (a byline before a quote) joins the sentence after it.
    """
    n = len(texts)
    group = list(range(n))
    for i in range(1, n):
        t, prev = texts[i].strip(), texts[i - 1].rstrip()
        if (_ATTRIBUTION_RE.match(t) or (len(t) < fragment_chars and _TERMINAL_RE.search(t)) or prev.endswith(":")
                or (len(prev) < 60 and not _TERMINAL_RE.search(prev) and not _ATTRIBUTION_RE.match(prev))):
            group[i] = group[i - 1]
    units: list[tuple[int, int]] = []
    i = 0
    while i < n:
        j = i
        while j + 1 < n and group[j + 1] == group[i]:
            j += 1
        units.extend([(base + i, base + j)] * (j - i + 1))
        i = j + 1
    return units
