"""The exact phrase of a quoted answer that answers the question: a name for "who", a number for "how
many", a date for "when" (issue 12).

An extractive answer is a whole sentence; a reader scanning a Discord embed wants the three words in it
that answer. No model is needed for the three question kinds that have a typed answer: the candidates
are the spans of that type in the sentence, minus any the question already names, and the one nearest
the question's own words wins (the classic proximity heuristic of extractive QA before neural readers).
When the sentence holds no candidate, or none near a word of the question while several compete,
nothing is marked: a wrong bold phrase is worse than none. benchmarks/quality.py measures how often the
marked phrase holds the gold answer ("phrase" columns).
"""

from __future__ import annotations

import re
from bisect import bisect_left

from index.text import STOPWORDS, _stemmer, content_terms

NAME, NUMBER, DATE = "name", "number", "date"

_WHO_RE = re.compile(r"^\s*(?:(?:and|but|so)\s+)?(who|whom|whose)\b|^\s*(?:which|what)\s+"
                     r"(country|countries|nation|person|people|man|woman|official|minister|diplomat|leader|city|"
                     r"court|newspaper|organi[sz]ation|company|group|party|state|team|account|body|agency)\b|"
                     r"^\s*(?:according to whom|by whom)\b", re.I)
_HOW_MANY_RE = re.compile(r"^\s*(?:(?:and|but|so)\s+)?(how (many|much)|what (number|percentage|proportion|share))\b",
                          re.I)
_WHEN_RE = re.compile(r"^\s*(?:(?:and|but|so)\s+)?(when|since when|until when|what (year|date|day|month|century|"
                      r"decade)|in what year|on what (day|date))\b", re.I)

_NUMBER_WORDS = ("zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
                 "sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
                 "hundred|thousand|million|billion|trillion|dozen|dozens|hundreds|thousands|millions|billions|"
                 "half|a third|a quarter")
_SCALE = r"(?:\s+(?:hundred|thousand|million|billion|trillion))?"
_NUMBER_RE = re.compile(
    rf"(?:[$£€]\s?)?\b\d[\d,]*(?:\.\d+)?{_SCALE}(?:\s?(?:%|per ?cent|percent))?"
    rf"|\b(?:{_NUMBER_WORDS})(?:[- ](?:{_NUMBER_WORDS}))*\b", re.I)
_MONTH = ("January|February|March|April|May|June|July|August|September|October|November|December|"
          "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec")
_WEEKDAY = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_DATE_RE = re.compile(
    rf"\b(?:(?:last|next|this|early|late)\s+)?(?:(?:{_WEEKDAY}),?\s+)?"
    rf"(?:(?:{_MONTH})\.?\s+{_DAY}(?:,?\s+\d{{4}})?|{_DAY}\s+(?:of\s+)?(?:{_MONTH})\.?(?:,?\s+\d{{4}})?"
    rf"|(?:{_MONTH})\.?\s+\d{{4}}|(?:{_WEEKDAY})(?:\s+(?:morning|afternoon|evening|night))?)\b"
    rf"|\b(?:1[0-9]|20)\d{{2}}s?\b"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)\s+century\b"
    rf"|\b\d{{1,2}}[./]\d{{1,2}}[./]\d{{2,4}}\b"
    rf"|\b(?:yesterday|today|tomorrow|tonight|last (?:week|month|year|night)|next (?:week|month|year))\b",
    re.I)
# A run of capitalised words, joined by the small words names contain ("Bank of England", "bint AbuBakr").
# A word may end in a full stop only when short ("U.S.", "St."): "Bloody. Hell." is two sentences.
_CAP = r"[A-ZÀ-ÖØ-Þ](?:[\w'’-]*[\w]|\.?(?:[A-Z]\.)*)"
_NAME_RE = re.compile(rf"(?:@\w+|(?<![#\w])(?:bin |bint |al-|de |van |von )?{_CAP}"
                      rf"(?:\s+(?:(?:of|de|del|da|bin|bint|al|van|von|the|and)\s+)?{_CAP})*)")
# A tweet quoted in an article ends with its byline: "— Romain Nadal (@NadalDiplo) July 30, 2016".
_BYLINE_RE = re.compile(r"[—–-]\s*([^()—–\n]{2,60}?)\s*\(@\w+\)")
_AUTHOR_Q_RE = re.compile(r"\b(tweet\w*|post\w*|wr[io]te|written|author\w*)\b", re.I)
_NOT_NAMES = frozenset("""i a an the this that these those it its he she they we you his her their our my
but and or so if when while as at in on of for by with from to after before since mr mrs ms dr
today yesterday tomorrow tonight according however although though despite unlike like later earlier then
yet still instead meanwhile thus therefore hence because key some many most other another each every both
such several various following among within without under over throughout until unless whether
""".split()) | {m.lower() for m in _MONTH.split("|")} | {d.lower() for d in _WEEKDAY.split("|")}

_TRAILING = " ,.;:!?\"'’”)("


def kind_of(question: str) -> str | None:
    """The kind of phrase the question asks for (NAME, NUMBER, DATE), or None when it asks for none."""
    if _HOW_MANY_RE.search(question):
        return NUMBER
    if _WHEN_RE.search(question):
        return DATE
    if _WHO_RE.search(question):
        return NAME
    return None


def _candidates(kind: str, text: str) -> list[tuple[int, int]]:
    if kind == NUMBER:
        spans = [m.span() for m in _NUMBER_RE.finditer(text)]
    elif kind == DATE:
        spans = [m.span() for m in _DATE_RE.finditer(text)]
    else:
        spans = []
        for m in _NAME_RE.finditer(text):
            a, b = m.span()
            first = text[a:b].split()[0].strip(_TRAILING).lower()
            # a capitalised first word that is a month, a function word or an adverb opening a sentence
            # ("Today, Harvard fields...", "According to ...") is not a name
            common = first in _NOT_NAMES or first in STOPWORDS
            if common or _NUMBER_RE.fullmatch(text[a:b].strip(_TRAILING)):
                # "But Russia": drop the capitalised function word and keep the rest
                rest = text[a:b].split(None, 1)
                if len(rest) < 2 or not common:
                    continue
                a = b - len(rest[1])
            spans.append((a, b))
    out = []
    for a, b in spans:
        while b > a and text[b - 1] in _TRAILING:
            b -= 1
        while a < b and text[a] in " (\"'“‘":
            a += 1
        if b > a:
            out.append((a, b))
    return out


def answer_phrase(question: str, text: str) -> tuple[int, int] | None:
    """``(start, end)`` in ``text`` of the phrase answering ``question``, or None when none is clear."""
    kind = kind_of(question)
    if kind is None or not text:
        return None
    if kind == NAME and _AUTHOR_Q_RE.search(question) and (m := _BYLINE_RE.search(text)):
        return m.span(1)
    asked = set(content_terms(question))
    cands = [(a, b) for a, b in _candidates(kind, text) if asked.isdisjoint(content_terms(text[a:b]))]
    if not cands:
        return None
    # Where the question's own words occur in the sentence: the answer is usually next to them.
    anchors = [m.span() for m in re.finditer(r"[^\W_]+", text)
               if _stemmer().stemWord(m.group().lower()) in asked and m.group().lower() not in STOPWORDS]
    if not anchors:
        return cands[0] if len(cands) == 1 else None

    starts = [x for x, _ in anchors]  # anchors are words found left to right: starts and ends both ascend
    ends = [y for _, y in anchors]

    def distance(span: tuple[int, int]) -> int:
        """min over anchors of max(x - b, a - y, 0), by bisection (linear in the answer, not quadratic):
        the nearest anchor starting at or after b, and the last one starting before b."""
        a, b = span
        i = bisect_left(starts, b)
        best = starts[i] - b if i < len(starts) else None
        if i:
            before = max(a - ends[i - 1], 0)  # ends ascend: the (i-1)th ends latest among those before b
            best = before if best is None else min(best, before)
        return best  # type: ignore[return-value]  # anchors is not empty, so one side exists

    return min(cands, key=distance)


__all__ = ["answer_phrase", "kind_of", "NAME", "NUMBER", "DATE"]
