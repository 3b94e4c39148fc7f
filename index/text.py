"""Word-level text helpers shared by BM25, lexical coverage and question checks."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from urllib.parse import urlparse

from index.errors import QuestionError

_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)

# Function words carry no topic; question words ("who", "why") say what kind of answer is wanted, not
# where it is, so they are dropped from lexical matching too.
STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below
between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself
him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most
mustn't my myself no nor not of off on once only or other ought our ours ourselves out over own same shan't
she she'd she'll she's should shouldn't so some such than that that's the their theirs them themselves then
there there's these they they'd they'll they're they've this those through to too under until up very was
wasn't we we'd we'll we're we've were weren't what what's when when's where where's which while who who's whom
why why's with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves
also did does tell say said says much many whose s t
""".split())


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer  # PyStemmer: the Snowball stemmer in C, so "vetoed" matches "veto"

    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """Lower-cased words, apostrophes normalised."""
    return [w.replace("’", "'") for w in _WORD_RE.findall(text.lower())]


def content_terms(text: str) -> list[str]:
    """Stemmed words that are not stopwords: the units BM25 and coverage count."""
    toks = [w for w in words(text) if w not in STOPWORDS and not (len(w) == 1 and not w.isdigit())]
    return _stemmer().stemWords(toks) if toks else []


_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def clean_question(question: str | None, max_chars: int = 500) -> str:
    """The question made safe to search: control characters removed, white space folded.

    Raises QuestionError (``empty``, ``too_long`` or ``not_text``: bytes that are not UTF-8) when it
    cannot be asked.
    """
    if question is None:
        raise QuestionError("empty")
    if len(question) > max_chars:
        raise QuestionError("too_long", len(question), max_chars)
    if _SURROGATE_RE.search(question):
        # Bytes that were not UTF-8 (Python keeps them as lone surrogates): the tokenizer cannot take them,
        # and guessing another encoding would search for words nobody typed.
        raise QuestionError("not_text")
    text = _CONTROL_RE.sub(" ", unicodedata.normalize("NFC", question))
    text = " ".join(text.split())
    if not text or not any(ch.isalnum() for ch in text):
        raise QuestionError("empty")
    return text


# Not "a": it is just as common in French, Spanish and Portuguese questions ("Qui a ...?").
_EN_HINTS = frozenset("the an is are was were what who why how when where which did does do of in to and "
                      "on for with can will has have".split())


def looks_english(text: str) -> bool:
    """A cheap guess: mostly Latin letters and at least one common English function word."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return True
    latin = sum(1 for c in letters if c.isascii()) / len(letters)
    toks = words(text)
    return latin > 0.85 and (len(toks) <= 2 or any(t in _EN_HINTS for t in toks))


def site_of(url: str | None) -> str:
    """The site a URL belongs to, as an outlet's fallback name: its host without ``www.`` ("" when none)."""
    try:
        host = urlparse(url).hostname if url else None
    except ValueError:  # "http://[::1": not a URL
        host = None
    return (host or "").removeprefix("www.")
