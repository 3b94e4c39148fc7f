"""Turning an ``Answer`` into the Discord message that carries it: pure functions, no Discord needed.

Everything returned here fits Discord's limits (message content 2,000 characters; embed title 256,
description 4,096, field name 256, field value 1,024, footer 2,048, at most 25 fields and 6,000
characters in all), so the API never rejects an answer. Text that is too long is cut at a sentence
boundary when one is near the limit, else at a word boundary, and ends with an ellipsis.

Lengths are measured in UTF-16 code units, which is never less than the number of code points, so the
limits hold however Discord counts.

Nobody is pinged: every message carries ``allowed_mentions`` that parse nothing, and ``@everyone``,
``@here`` and ``<@...>`` written in articles or questions are also defused in the text itself.

Text that came from a page, a file or a model (a title, an outlet, a passage, the answer, a streamed
preview) is shown as itself through one function, ``neutralise``: control characters dropped, white space
folded, every Markdown character escaped (so no masked link, heading, quote, spoiler or code), nobody
pinged. Herald's own Markdown (the bold answer phrase, its italic notes, the ``> `` quote marker, the
``<url>`` source links it builds from ``safe_url``) is added around that text, never inside it.
``terminal_safe`` is the terminal's twin (ANSI/OSC escape sequences and control characters removed), and
``redact_url_credentials`` / ``RedactCredentials`` keep a URL's ``user:password@`` out of what is shown and
logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bot.messages import ABSTAIN_MESSAGE, TENTATIVE_MESSAGE, note_for, source_label
from index import Answer, Source, redact_url

CONTENT_LIMIT = 2000
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
MAX_FIELDS = 25
EMBED_TOTAL_LIMIT = 6000

ELLIPSIS = "\u2026"
ANSWER_COLOUR = 0x5865F2
ABSTAIN_COLOUR = 0x99AAB5
TENTATIVE_COLOUR = 0xFEE75C  # Discord yellow: answered, but check the sources
TENTATIVE_LEAD = f"*{TENTATIVE_MESSAGE}*\n"  # before a tentative answer (feedback reads it back after a restart)
# Nothing is parsed into a ping, and a reply does not ping the person it replies to.
NO_MENTIONS: dict[str, Any] = {"parse": [], "users": [], "roles": [], "replied_user": False}

# The answer itself gets at most this much of the 6,000 so the sources always have room.
ANSWER_BUDGET = 1500
_MIN_PART = 40  # a field value or description is never squeezed below this many characters
_MAX_URL = 400  # longer URLs are left out rather than cut (a cut URL is a broken link)

_MENTION_RE = re.compile(r"@(everyone|here|[!&]?[0-9]{15,21})")
_SENTENCE_END_RE = re.compile(r"[.!?\u2026][\"'\u2019\u201d)\]]*\s")


def dlen(text: str) -> int:
    """Length as Discord may count it (UTF-16 code units; >= code points)."""
    return len(text.encode("utf-16-le")) // 2


def _prefix_within(text: str, budget: int) -> str:
    """The longest prefix of ``text`` whose dlen is at most ``budget``."""
    cut = text[:max(0, budget)]
    while cut and dlen(cut) > budget:
        cut = cut[: len(cut) - max(1, (dlen(cut) - budget) // 2)]
    return cut


def truncate(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit``, else cut at a sentence or word boundary and ended with an ellipsis."""
    if limit <= 0:
        return ""
    if dlen(text) <= limit:
        return text
    if limit <= 2:
        return ELLIPSIS[:limit]
    budget = limit - 2  # room for " …" after a sentence, or "…" after a word
    cut = _prefix_within(text, budget)
    # A sentence boundary in the last half of the allowance reads best.
    ends = [m.end() for m in _SENTENCE_END_RE.finditer(cut + " ")]
    if ends and ends[-1] >= budget * 0.5:
        return cut[: ends[-1]].rstrip() + " " + ELLIPSIS
    # Else the last whole word (if cutting there loses less than a third).
    space = max(cut.rfind(" "), cut.rfind("\n"), cut.rfind("\t"))
    if space >= budget * 0.66:
        return cut[:space].rstrip(" \n\t,;:-\u2013\u2014") + ELLIPSIS
    # A single enormous token (a URL, a run of characters): cut it where it is.
    return _prefix_within(text, limit - 1).rstrip() + ELLIPSIS


def defuse_mentions(text: str) -> str:
    """Make @everyone, @here, <@user>, <@!user> and <@&role> inert text (a zero-width space after '@')."""
    return _MENTION_RE.sub("@\u200b\\1", text)


# C0 and C1 controls (tab and newline are white space, folded first) and the bidirectional overrides that
# make text display in another order than it reads.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACE_RE = re.compile(r"\s+")
# Every character Discord's Markdown gives a meaning: emphasis, spoilers, code, masked links ([text](url)),
# headings and subtext (#, -#), quotes (>), and <@id> / <#id> / <t:...> / <:emoji:id> tags.
_MARKDOWN_RE = re.compile(r"([\\*_~|`\[\]<>#])")
_ESCAPED_RE = re.compile(r"\\([\\*_~|`\[\]<>#])")
# A bracket not already escaped (an even number of backslashes before it): it could open a masked link.
_LIVE_BRACKET_RE = re.compile(r"(?<!\\)((?:\\\\)*)([\[\]])")


def _folded(text: str) -> str:
    """White space folded to single spaces (ends kept), control characters dropped."""
    return _CONTROL_RE.sub("", _SPACE_RE.sub(" ", text))


def _inert(text: str) -> str:
    """Folded text with every Markdown character escaped and mentions defused (PHRASE marks untouched)."""
    return defuse_mentions(escape_markdown(text))


def neutralise(text: str) -> str:
    """Text from a page, a file or a model, as one line Discord shows as itself: no masked link, no
    Markdown, no ping, no control character. Everything such text passes through this before it is shown."""
    return _inert(_folded(text)).strip()


def clean_inline(text: str) -> str:
    """One line of Herald's own or the asker's text: white space folded, controls dropped, mentions defused
    (Markdown left alone: use ``neutralise`` for text from a page, a file or a model)."""
    return defuse_mentions(_folded(text).strip())


PHRASE_OPEN, PHRASE_CLOSE = "\x00", "\x01"  # not white space: folding and wrapping keep them in place


def with_phrase_marks(answer: Answer, clean: Callable[[str], str] = lambda s: s) -> str:
    """The answer text with PHRASE_OPEN / PHRASE_CLOSE around the words that answer (when any), for the
    embed (Markdown bold) and the terminal (ANSI bold) to replace after folding or wrapping the text.
    ``clean`` is applied to the text on each side of a mark (so it may drop control characters)."""
    if not answer.phrase:
        return clean(answer.answer)
    a, b = answer.phrase
    t = answer.answer
    return clean(t[:a]) + PHRASE_OPEN + clean(t[a:b]) + PHRASE_CLOSE + clean(t[b:])


def escape_markdown(text: str) -> str:
    """Quoted text shown as itself: no character in it may start Discord formatting or a link."""
    return _MARKDOWN_RE.sub(r"\\\1", text)


def plain_text(markdown: str) -> str:
    """The text ``answer_markdown`` made, as the article says it (no bold, no escapes)."""
    return _ESCAPED_RE.sub(r"\1", markdown.replace("**", ""))


def answer_markdown(answer: Answer, bold: bool = True) -> str:
    """The answer as one line of safe Markdown, with the words that answer the question in bold."""
    line = _inert(with_phrase_marks(answer, _folded)).strip()
    mark = "**" if bold else ""
    return line.replace(PHRASE_OPEN, mark).replace(PHRASE_CLOSE, mark)


def defuse_links(text: str) -> str:
    """Herald's own notices may carry Markdown but never a masked link: every live bracket is escaped."""
    return _LIVE_BRACKET_RE.sub(r"\1\\\2", text)


def fit_content(text: str) -> str:
    """Message content that fits (2,000), pings nobody and holds no masked link."""
    return truncate(defuse_links(defuse_mentions(_CONTROL_RE.sub("", text))), CONTENT_LIMIT)


@dataclass(frozen=True)
class OutgoingMessage:
    """What to send: content and/or one embed (as Discord's JSON), with mentions that ping nobody."""

    content: str | None = None
    embed: dict[str, Any] | None = None
    allowed_mentions: dict[str, Any] = field(default_factory=lambda: dict(NO_MENTIONS))


def embed_total(embed: dict[str, Any]) -> int:
    """The characters Discord counts towards the 6,000 limit."""
    total = dlen(embed.get("title", "")) + dlen(embed.get("description", ""))
    total += dlen(embed.get("footer", {}).get("text", "")) + dlen(embed.get("author", {}).get("name", ""))
    for f in embed.get("fields", []):
        total += dlen(f["name"]) + dlen(f["value"])
    return total


def check_limits(msg: OutgoingMessage) -> list[str]:
    """Every Discord limit ``msg`` breaks (empty when it is fine to send); used by tests and as a guard."""
    problems = []
    if msg.content is not None and dlen(msg.content) > CONTENT_LIMIT:
        problems.append(f"content {dlen(msg.content)} > {CONTENT_LIMIT}")
    e = msg.embed
    if e:
        for key, limit in (("title", TITLE_LIMIT), ("description", DESCRIPTION_LIMIT)):
            if dlen(e.get(key, "")) > limit:
                problems.append(f"{key} {dlen(e[key])} > {limit}")
        if dlen(e.get("footer", {}).get("text", "")) > FOOTER_LIMIT:
            problems.append("footer too long")
        fields = e.get("fields", [])
        if len(fields) > MAX_FIELDS:
            problems.append(f"{len(fields)} fields > {MAX_FIELDS}")
        for i, f in enumerate(fields):
            if not f["name"] or dlen(f["name"]) > FIELD_NAME_LIMIT:
                problems.append(f"field {i} name length {dlen(f['name'])}")
            if not f["value"] or dlen(f["value"]) > FIELD_VALUE_LIMIT:
                problems.append(f"field {i} value length {dlen(f['value'])}")
        if embed_total(e) > EMBED_TOTAL_LIMIT:
            problems.append(f"embed total {embed_total(e)} > {EMBED_TOTAL_LIMIT}")
    return problems


# ---------------------------------------------------------------------------------------- answers


@dataclass
class _Field:
    name: str
    excerpt: str  # the whole passage, folded; cut to fit when the value is built
    url: str | None
    limit: int = FIELD_VALUE_LIMIT

    def value(self) -> str:
        tail = f"\n<{self.url}>" if self.url else ""
        room = self.limit - dlen(tail) - 2  # "> " quote marker
        return "> " + truncate(self.excerpt, max(room, 1)) + tail


_UNSAFE_URL_RE = re.compile(r"[\s<>\"`\\\x00-\x1f\x7f-\x9f]")


def safe_url(url: str | None) -> str | None:
    """A link Herald may show in ``<...>``: http(s) with a host, nothing that could end the brackets or
    hide in a terminal, not too long (a cut URL is a broken link), its ``user:password@`` dropped; else None."""
    url = (url or "").strip()
    if not url or dlen(url) > _MAX_URL or _UNSAFE_URL_RE.search(url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # "http://[::1": not a URL
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return redact_url(url)


def _source_url(src: Source) -> str | None:
    return safe_url(src.url)


CITED_MARK = " \u00b7 cited"  # after the title of a source a language model's answer cites as [n]


CollectionLabel = Callable[[str], str]  # a source's collection as people read it ("" for the operator's base)


def _no_label(collection: str) -> str:
    return ""


def _source_field(n: int | None, src: Source, label: str = "", cited: bool = False,
                  collection_label: CollectionLabel = _no_label) -> _Field:
    title = neutralise(src.title or "") or "(untitled article)"
    name = f"{label}{title}" if n is None else f"[{n}] {title}"
    mark = CITED_MARK if cited else ""
    return _Field(truncate(name, FIELD_NAME_LIMIT - dlen(mark)) + mark, _source_value(src, collection_label(
        src.collection)), _source_url(src))


def _source_value(src: Source, where: str = "") -> str:
    """The passage, under who reported it and when ("*Euronews, 11 Oct 2016*") when known and the collection
    it came from when not the operator's ("from this server's articles"), and the other outlets that ran
    the same story."""
    said = [p for p in (source_label(src.outlet, src.date) if (src.outlet or src.date) else "",
                        f"from {where}" if where else "") if p]
    head = f"*{neutralise(' · '.join(said))}*\n" if said else ""
    also = (f"\n*Also reported by {neutralise(', '.join(src.also_reported_by))}.*"
            if src.also_reported_by else "")
    return head + (neutralise(src.text) or "(empty passage)") + also


def _writer(answer: Answer) -> str:
    """Who wrote the answer, for the footer: the model's name, or "" for a quoted (extractive) answer."""
    return neutralise(answer.model)


def _seconds(ms: float) -> str:
    s = ms / 1000
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


@dataclass
class _Layout:
    """An answer's embed before it is fitted: ``desc_limit`` and the fields' limits shrink until it fits."""

    title: str
    colour: int
    base: str  # the description
    plain: str  # the same without bold: a description cut short could leave a '**' open
    fields: list[_Field]
    footer: str
    desc_limit: int

    def embed(self) -> dict[str, Any]:
        description = self.base if dlen(self.base) <= self.desc_limit else truncate(self.plain, self.desc_limit)
        embed: dict[str, Any] = {"title": self.title, "description": description, "color": self.colour}
        if self.fields:
            embed["fields"] = [{"name": f.name, "value": f.value(), "inline": False} for f in self.fields]
        embed["footer"] = {"text": self.footer}
        return embed


def _abstained_layout(answer: Answer, title: str, note: str, elapsed: float,
                      collection_label: CollectionLabel = _no_label) -> _Layout:
    """"The articles don't say", with the closest passage when there is one."""
    hint = answer.hint
    if hint is not None:
        description = (f"{ABSTAIN_MESSAGE} I couldn't find an answer to that in the articles I have. "
                       f"The closest passage is below, in case it helps; try asking with other words, "
                       f"or see `/sources` for what I have read.")
        fields = [_source_field(None, hint, label="Closest passage \u2014 ", collection_label=collection_label)]
    else:
        description = f"{ABSTAIN_MESSAGE} Nothing in the articles I have comes close to that question."
        fields = []
    return _Layout(title, ABSTAIN_COLOUR, description + note, description + note, fields,
                   truncate(f"Searched in {_seconds(elapsed)}", FOOTER_LIMIT), DESCRIPTION_LIMIT)


def _answered_layout(answer: Answer, title: str, note: str, elapsed: float,
                     collection_label: CollectionLabel = _no_label) -> _Layout:
    """The answer (its phrase in bold) and one field per numbered source, the cited ones marked."""
    lead = TENTATIVE_LEAD if answer.tentative else ""
    base = lead + (answer_markdown(answer) or "(no answer text)") + note
    plain = lead + (answer_markdown(answer, bold=False) or "(no answer text)") + note
    cited = set(answer.citations)
    fields = [_source_field(n, s, cited=n in cited, collection_label=collection_label)
              for n, s in enumerate(answer.sources[:MAX_FIELDS], 1)]
    sure = "low confidence" if answer.tentative else "confidence"
    writer = _writer(answer)
    origin = f"written by {writer} from the articles" if writer else "from the articles"
    footer = f"Answered in {_seconds(elapsed)} \u00b7 {sure} {answer.confidence:.2f} \u00b7 {origin}"
    return _Layout(title, TENTATIVE_COLOUR if answer.tentative else ANSWER_COLOUR, base, plain, fields,
                   truncate(footer, FOOTER_LIMIT), ANSWER_BUDGET if fields else DESCRIPTION_LIMIT)


def _fitted(layout: _Layout) -> dict[str, Any]:
    """The embed, the largest part squeezed until the whole fits in 6,000; trailing sources dropped as a
    last resort."""
    embed = layout.embed()
    while embed_total(embed) > EMBED_TOTAL_LIMIT:
        over = embed_total(embed) - EMBED_TOTAL_LIMIT
        parts = [(dlen(embed["description"]), -1)] + [(dlen(f["value"]), i)
                                                     for i, f in enumerate(embed.get("fields", []))]
        size, which = max(parts)
        if size <= _MIN_PART:
            if not layout.fields:
                layout.desc_limit = max(1, layout.desc_limit - over)
            else:
                layout.fields.pop()
        elif which == -1:
            layout.desc_limit = max(_MIN_PART, size - over)
        else:
            layout.fields[which].limit = max(_MIN_PART, size - over)
        embed = layout.embed()
    return embed


def format_answer(answer: Answer, *, elapsed_ms: float | None = None,
                  collection_label: CollectionLabel = _no_label) -> OutgoingMessage:
    """The message for one answered (or abstained) question.

    ``elapsed_ms`` is the time the asker waited (queueing included); the engine's own latency otherwise.
    ``collection_label``: how a source's collection is named ("" for the operator's own articles).
    """
    elapsed = answer.latency_ms if elapsed_ms is None else elapsed_ms
    title = truncate(clean_inline(answer.question) or "Your question", TITLE_LIMIT)
    note = f"\n\n*{clean_inline(note_for(answer))}*" if note_for(answer) else ""
    layout = (_abstained_layout if answer.abstained else _answered_layout)(answer, title, note, elapsed,
                                                                           collection_label)
    return OutgoingMessage(content=None, embed=_fitted(layout))


def format_notice(text: str) -> OutgoingMessage:
    """A short plain reply (refusals, cooldowns, errors) that fits and pings nobody."""
    return OutgoingMessage(content=fit_content(text))


def format_sources(
    titles_and_urls: list[tuple[str, str | None]] | list[tuple[str, str | None, str]],
) -> OutgoingMessage:
    """The `/sources` list: one numbered line per indexed article (with its outlet and date when a third
    item gives them), cut to fit with a count of the rest."""
    if not titles_and_urls:
        return format_notice("No articles here yet: a member with Manage Server can add one with `/add` or follow a "
                             "feed with `/feeds add`.")
    head = f"I answer from {len(titles_and_urls)} article{'s' if len(titles_and_urls) != 1 else ''}:"
    lines = [head]
    used = dlen(head)
    for i, (title, url, *rest_of) in enumerate(titles_and_urls, 1):
        link = safe_url(url)
        label = f" ({neutralise(rest_of[0])})" if rest_of and rest_of[0] else ""
        line = truncate(f"{i}. {neutralise(title) or '(untitled article)'}{label}", 300)
        if link:
            line += f" <{link}>"
        rest = len(titles_and_urls) - i + 1
        tail = f"\n\u2026 and {rest} more."
        if used + 1 + dlen(line) + dlen(tail) > CONTENT_LIMIT and i < len(titles_and_urls):
            lines.append(tail.strip())
            break
        if used + 1 + dlen(line) > CONTENT_LIMIT:
            lines.append(f"\u2026 and {rest} more.")
            break
        lines.append(line)
        used += 1 + dlen(line)
    return OutgoingMessage(content=truncate("\n".join(lines), CONTENT_LIMIT))



# ---------------------------------------------------------------------------- terminal and logs

# ESC followed by a CSI (ESC [ ... final), an OSC / DCS / SOS / PM / APC string (ended by BEL or ESC \\,
# or by the end of the text), or any single character; then the 8-bit CSI / OSC / DCS forms.
_ANSI_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]?"
    r"|[\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?")
_TERMINAL_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """Text from a file, a file name or a model, printed as itself: escape sequences (colours, cursor moves,
    window titles, hyperlinks, clipboard writes) and control characters removed; newlines and tabs kept."""
    return _TERMINAL_CONTROL_RE.sub("", _ANSI_RE.sub("", text))


_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s?#]*@")


def redact_url_credentials(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` with its user and password replaced by ``***``."""
    return _USERINFO_RE.sub(r"\1***@", text)


class RedactCredentials(logging.Filter):
    """A log handler's filter: no URL's ``user:password@`` in a line it writes (an HERALD_LLM_URL with
    credentials is in every request the HTTP client logs under ``-v``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call must not break logging
            return True
        clean = redact_url_credentials(text)
        if clean != text:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_url_credentials(record.exc_text)
        return True
