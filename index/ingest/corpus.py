"""Loading articles from a folder and cleaning them into the text a reader would call the article.

Scraped pages carry share widgets, ads, embed markup and "related headlines"; left in, they pollute
retrieval and end up quoted back to users. Cleaning is rule-based and conservative: embedded tweets keep
their words (they are quotes), only their markup and links go.
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from index.errors import CorpusError
from index.ingest.web import MAX_ARTICLE_BYTES, FetchError, extract

log = logging.getLogger(__name__)

#: Bump when cleaning changes, so fingerprints change and documents are re-embedded.
CLEANER_VERSION = 6  # 6: three short lines in a row no longer leave a NUL marker in the text

SUFFIXES = (".txt", ".md", ".html", ".htm")

# Whole lines that are page furniture, not article text.
_BOILERPLATE_LINES = [
    r"share this article.*",
    r"copy/paste the article video embed link below.*",
    r"copy to clipboard(copied)?",
    r"advertisement",
    r"copyright(\s+©?\s*\S*)?",
    r"(comments|close button)",
    r"(sign up|subscribe)( to our newsletter)?.*",
    r"click here to .*",
    r"read more:?",
    r"skip to (main )?content",
]
_BOILERPLATE_RE = re.compile(r"^\s*(?:" + "|".join(_BOILERPLATE_LINES) + r")\s*$", re.IGNORECASE)
_BYLINE_RE = re.compile(r"^\s*(?i:by)\s+[A-Z][\w.\- ]{0,60}$")
# Headings after which a page lists other stories, never more of this one.
_TRAILER_RE = re.compile(
    r"^\s*(you might also like|related( articles| stories)?|more (from|on) .{0,40}|most read|"
    r"recommended( for you)?|trending( now)?)\s*:?\s*$",
    re.IGNORECASE,
)
# A tag starts with a letter or "/" after "<" (or is a comment): "5 < 6 and 7 > 3" is text, not a tag.
_TAG_RE = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>")
_LINK_RE = re.compile(r"(?:https?://)?(?:t\.co/\w+|pic\.twitter\.com/\w+)", re.IGNORECASE)
_URL_RE = re.compile(r"https?://\S+")
# The closing "---" may be the file's last line, with no newline after it.
_FRONT_MATTER_RE = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_OPEN_RE = re.compile(r"\A---[ \t]*(?:\n|\Z)")
_META_LINE_RE = re.compile(r"^[A-Za-z_][\w-]*:(?:\s|$)")
# A first line ending like a statement ("The mayor resigned."), not a question headline ("What now for Kelly?").
_SENTENCE_END_RE = re.compile(r"\w[.!][”’\"')]?$")
_MD_SUBHEADING_RE = re.compile(r"^#{2,6}\s+.*$", re.MULTILINE)


@dataclass
class Document:
    """One article: its cleaned text is what chunk offsets point into."""

    id: str
    title: str
    text: str
    path: str = ""
    url: str | None = None
    date: str | None = None
    fingerprint: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    collection: str = "base"  # index/ingest/collections.py: whose article it is


def fingerprint_bytes(raw: bytes) -> str:
    """Content fingerprint of a source file; includes the cleaner version so a new cleaner re-embeds."""
    digest = hashlib.sha256(raw).hexdigest()[:32]
    return f"c{CLEANER_VERSION}-{digest}"


# --------------------------------------------------------------------------------------------- HTML


class _HTMLText(HTMLParser):
    """Pulls readable text out of an HTML page: block elements become paragraph breaks."""

    _SKIP = {"script", "style", "nav", "footer", "aside", "noscript", "form", "button", "svg", "iframe"}
    _BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "section",
              "article", "header", "tr", "figcaption", "ul", "ol", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.h1 = ""
        self.meta: dict[str, str] = {}
        self._skip = 0
        self._in_title = False
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag in self._SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "h1":
            self._in_h1 = True
        elif tag == "meta":
            key = a.get("property") or a.get("name") or ""
            if key in ("og:url", "article:published_time", "og:title", "date"):
                self.meta[key] = a.get("content", "")
        elif tag == "link" and a.get("rel") == "canonical":
            self.meta["canonical"] = a.get("href", "")
        if tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skip:
            self._skip -= 1
        elif tag == "title":
            self._in_title = False
        elif tag == "h1":
            self._in_h1 = False
        if tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
            return
        if self._skip:
            return
        if self._in_h1:
            self.h1 += data
        self.parts.append(data)


def html_to_text(raw: str) -> tuple[str, str, dict[str, str]]:
    """Return (text, title, meta) of an HTML page."""
    parser = _HTMLText()
    parser.feed(raw)
    parser.close()
    text = "".join(parser.parts)
    title = (parser.meta.get("og:title") or parser.h1 or parser.title).strip()
    meta = {}
    if parser.meta.get("og:url") or parser.meta.get("canonical"):
        meta["url"] = parser.meta.get("og:url") or parser.meta["canonical"]
    if parser.meta.get("article:published_time") or parser.meta.get("date"):
        meta["date"] = parser.meta.get("article:published_time") or parser.meta["date"]
    return text, " ".join(title.split()), meta


# ----------------------------------------------------------------------------------------- cleaning


def _clean_inline(line: str) -> str:
    """Strip markup, entities and tweet links from one line, keeping its words."""
    line = line.replace("</p>&mdash;", " — ").replace("</p>", " ")
    line = _TAG_RE.sub(" ", line)
    line = html.unescape(line)
    line = _LINK_RE.sub(" ", line)
    line = _URL_RE.sub(" ", line)
    line = line.replace("\u00a0", " ").replace("\u200b", "")
    # Residue of removed links: dangling ellipses and colons between them.
    line = re.sub(r"(\s+[…:])+(?=\s|$)", " ", line)
    line = re.sub(r"[ \t]+", " ", line).strip()
    line = re.sub(r"\s+([,.;!?])(?=\s|$)", r"\1", line)
    # A closing quote typed as an opening one at the end of a quote ("passed. “").
    line = re.sub(r"([.!?])\s+“$", r"\1”", line)
    return line


def clean_text(raw: str, title: str = "") -> str:
    """Clean an article body: drop page furniture, keep paragraphs (blank-line separated)."""
    lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    title_key = " ".join(title.split()).casefold()
    for line in lines:
        if _TRAILER_RE.match(line):
            break  # everything after "You might also like" is other stories
        if _BOILERPLATE_RE.match(line):
            continue
        cleaned = _clean_inline(line)
        if not cleaned:
            out.append("")
            continue
        if _BOILERPLATE_RE.match(cleaned):
            continue
        if title_key and cleaned.casefold() == title_key and not any(out_line.strip() for out_line in out):
            continue  # the headline repeated above the body
        if _BYLINE_RE.match(cleaned) and sum(1 for o in out if o.strip()) < 3:
            continue
        out.append(cleaned)
    paragraphs: list[str] = []
    current: list[str] = []
    for line in out + [""]:
        if line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return "\n\n".join(_join_fragments(paragraphs))


_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
# "— Romain Nadal (@NadalDiplo) July 30, 2016": the signature line of an embedded tweet.
_TWEET_SIGNATURE_RE = re.compile(rf"^[—–-]\s*\S.{{0,80}}\(@?\w{{1,30}}\)\s+{_MONTH}\s+\d{{1,2}},\s+\d{{4}}$",
                                 re.IGNORECASE)
# The same signature at the end of a paragraph: marks the paragraph as one embedded tweet.
TWEET_SIGNATURE_END_RE = re.compile(rf"[—–]\s*[^—–\n]{{1,80}}\(@?\w{{1,30}}\)\s+{_MONTH}\s+\d{{1,2}},\s+\d{{4}}\s*$",
                                    re.IGNORECASE)
_QUOTE_START = ("“", '"', "«", "‘")
_CAPTION_MAX = 60


def _join_fragments(paragraphs: list[str]) -> list[str]:
    """Re-join what a scrape split apart, so each unit reads on its own and is retrieved whole.

    - a tweet's signature ("— Name (@handle) date") belongs to the tweet above it;
    - a short lead-in ending in a colon ("Hospital in #Aleppo in 2 words:") belongs to what follows;
    - a short caption naming a speaker ("Jean-Marc Ayrault") above a quotation is the speaker's label.
    """
    out: list[str] = []
    glue_next = ""
    for para in paragraphs:
        if glue_next:
            para = out.pop() + glue_next + para
            glue_next = ""
        if out and _TWEET_SIGNATURE_RE.match(para):
            out[-1] = out[-1] + " " + para
            continue
        out.append(para)
        if para.endswith(":") and len(para) <= 120:
            glue_next = " "
        elif len(para) <= _CAPTION_MAX and not re.search(r"[.!?…”\"’:;,]$", para):
            glue_next = "\0caption"
    # Resolve caption joins: only above a quotation, as "Speaker: “...”".
    result: list[str] = []
    for para in out:
        while "\0caption" in para:  # several short lines in a row: one marker each
            caption, rest = para.split("\0caption", 1)
            if rest.lstrip().startswith(_QUOTE_START):
                para = f"{caption}: {rest.lstrip()}"
            else:
                result.append(caption)
                para = rest
        result.append(para)
    return [p for p in result if p]


def _split_front_matter(raw: str) -> tuple[dict[str, str], str]:
    match = _FRONT_MATTER_RE.match(raw)
    if not match:
        return _unclosed_front_matter(raw)
    return _meta_of(match.group(1).splitlines()), raw[match.end():]


def _meta_of(lines: list[str]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for line in lines:
        if ":" in line:
            key, value = line.split(":", 1)
            meta[key.strip().lower()] = value.strip().strip("\"'")
    return meta


def _unclosed_front_matter(raw: str) -> tuple[dict[str, str], str]:
    """A file opening with ``---`` that never closes it: the ``key: value`` lines right after the opening
    are read as front matter, the rest is the body (never the title ``---``)."""
    opening = _FRONT_MATTER_OPEN_RE.match(raw)
    if not opening:
        return {}, raw
    lines = raw[opening.end():].split("\n")
    n = 0
    while n < len(lines) and _META_LINE_RE.match(lines[n]):
        n += 1
    return _meta_of(lines[:n]), "\n".join(lines[n:])


def _decode(raw: bytes, path: Path) -> str | None:
    """Decode UTF-8, a stray bad byte replaced where it is (U+FFFD); Windows-1252 only for text that is
    plainly not UTF-8 (no valid multi-byte character at all, or more bad bytes than good characters)."""
    if b"\x00" in raw[:8192]:
        log.warning("skipping %s: binary file", path)
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8-sig", errors="replace")
        bad = text.count("\ufffd") - raw.count("\ufffd".encode("utf-8"))
        good = sum(1 for ch in text if ord(ch) >= 0x80) - text.count("\ufffd")
        if good >= bad:  # mostly UTF-8: one bad byte must not turn "café" into "cafÃ©"
            log.warning("%s: %d bytes are not valid UTF-8; each is replaced by U+FFFD", path, bad)
            return text
        return _decode_legacy(raw, path, exc)


def _decode_legacy(raw: bytes, path: Path, exc: UnicodeDecodeError) -> str | None:
    """Legacy single-byte text (e.g. one Latin-1 pound sign) as cp1252; too many odd bytes: skipped."""
    high = sum(1 for b in raw if b >= 0x80)
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        log.warning("skipping %s: not UTF-8 (%s)", path, exc.reason)
        return None
    if high > max(8, len(raw) // 100):
        log.warning("skipping %s: not UTF-8", path)
        return None
    log.warning("%s is not valid UTF-8; decoded as Windows-1252", path)
    return text


def _extracted(html_text: str, url: str | None):
    """The article on a saved HTML page, by the same extractor as `herald add` (index/ingest/web.py), or None.

    benchmarks/extraction.py measured both on the saved pages in tests/data/news: trafilatura kept 93% of
    the article's paragraphs (it drops the standfirst under the headline) and let no page furniture
    through; the hand-written cleaning kept every paragraph but also 27% of the furniture blocks (menus,
    share widgets, cookie banners, related links), which then get quoted as answers (docs/news.md).
    Plain-text and markdown files keep the hand-written cleaning, made for scraped text like the seed.
    """
    try:
        return extract(html_text, url or "")
    except FetchError:
        return None
    except Exception as exc:  # noqa: BLE001 - a page the extractor chokes on still gets the old cleaning
        log.warning("the article extractor failed on a page (%s); using the plain HTML cleaning", type(exc).__name__)
        return None


def looks_like_headline(line: str) -> bool:
    """Short, and not a sentence that runs on: what a headline on a file's first line looks like."""
    line = line.strip()
    return 0 < len(line) <= 150 and not (len(line) > 90 and line[-1] in ".!?;,:")


def _title_from_name(path: Path) -> str:
    stem = shown_name(path.stem)
    words = re.sub(r"[-_]+", " ", stem).strip()
    return words[:1].upper() + words[1:] if words else stem


def parse_document(path: Path, doc_id: str, raw: bytes) -> Document | None:
    """Turn one file's bytes into a Document, or None (with a warning) when it holds no article."""
    text = _decode(raw, path)
    if text is None:
        return None
    meta, body = _split_front_matter(text)
    suffix = path.suffix.lower()
    title = meta.get("title", "")
    if suffix in (".html", ".htm"):
        article = _extracted(body, meta.get("url"))
        if article is not None:  # trafilatura found the article: text, title, date and outlet from the page
            body, title = article.text, title or article.title
            for key, value in (("date", article.date), ("outlet", article.outlet), ("author", article.author)):
                if value:
                    meta.setdefault(key, value)
        else:  # not recognisably an article page: the hand-written cleaning, as before
            body, html_title, html_meta = html_to_text(body)
            title = title or html_title
            for key, value in html_meta.items():
                meta.setdefault(key, value)
    in_body = False  # a title that is also the body's first sentence
    if not title:
        for line in body.splitlines():
            first = _clean_inline(line.lstrip("# "))
            if not re.search(r"\w", first):
                continue  # "---", "* * *": never a title
            # A first line that reads like a paragraph is the article's start, not its headline.
            title = first if line.lstrip().startswith("#") or looks_like_headline(first) else ""
            # A plain first line that ends like a sentence is the article's first sentence too: kept in
            # the body, so it is searched and can be the answer (a title alone is neither).
            in_body = bool(title) and not line.lstrip().startswith("#") and bool(_SENTENCE_END_RE.search(first))
            break
    if suffix == ".md":
        # Subheadings carry no answer and, glued to the next paragraph, end up quoted inside one.
        body = _MD_SUBHEADING_RE.sub("", body)
        body = re.sub(r"^#\s+", "", body, flags=re.MULTILINE)
    cleaned = clean_text(body, "" if in_body else title)
    if not cleaned.strip():
        log.warning("skipping %s: no article text", path)
        return None
    return Document(
        id=doc_id,
        title=title or _title_from_name(path),
        text=cleaned,
        path=shown_name(str(path)),
        url=meta.get("url") or meta.get("source") or None,
        date=meta.get("date") or None,
        fingerprint=fingerprint_bytes(raw),
        meta={k: v for k, v in meta.items() if k not in ("title", "url", "source", "date")},
    )


def corpus_files(corpus_dir: Path) -> list[tuple[str, Path]]:
    """(document id, path) for every article file under the folder, sorted for stable ids."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.exists():
        raise CorpusError("missing", corpus_dir)
    if not corpus_dir.is_dir():
        raise CorpusError("not_folder", corpus_dir)
    if not os.access(corpus_dir, os.R_OK | os.X_OK):
        # rglob silently skips folders it cannot list, which would read as "no articles".
        raise CorpusError("unreadable", corpus_dir, "permission denied")
    top = str(corpus_dir)
    prefix = top if top.endswith(os.sep) else top + os.sep
    try:
        # Relative names as strings, sorted as paths compare (part by part): pathlib's objects were most of
        # listing a large corpus folder, itself most of a small update (docs/scale.md, update_cost).
        found = sorted((p[len(prefix):] for p in _article_files(corpus_dir)), key=lambda rel: rel.split(os.sep))
    except OSError as exc:
        raise CorpusError("unreadable", corpus_dir, str(exc.strerror or exc)) from exc
    out: list[tuple[str, Path]] = []
    taken: set[str] = set()
    for rel in found:
        doc_id = shown = shown_name(rel.replace(os.sep, "/"))
        n = 1
        while doc_id in taken:  # two names that differ only in bytes that are not UTF-8
            n += 1
            stem, dot, suffix = shown.rpartition(".")
            doc_id = f"{stem}~{n}{dot}{suffix}"
        taken.add(doc_id)
        out.append((doc_id, Path(prefix + rel)))
    return out


def shown_name(name: str) -> str:
    """A file name as text that can be written anywhere (JSON, a terminal, Discord): bytes that are not
    UTF-8 (decoded by the OS as surrogates) become U+FFFD; the file itself is still read by its real name."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _article_files(corpus_dir: Path) -> list[str]:
    """Article files under the folder, following linked folders (an operator's symlinked feed folder is
    part of the corpus) but never the same real folder twice; hidden files and folders are skipped.

    A walk with a stack, not recursion: 1,100 nested folders overflowed os.walk's recursion."""
    seen: set[str] = set()
    found: list[str] = []
    stack = [str(corpus_dir)]
    while stack:
        root = stack.pop()
        real = os.path.realpath(root)
        if real in seen:
            log.warning("skipping %s: it links back to a folder already read", shown_name(root))
            continue
        seen.add(real)
        try:
            with os.scandir(root) as it:
                entries = list(it)
        except OSError as exc:
            log.warning("cannot read %s: %s; its articles are skipped", shown_name(root), exc.strerror or exc)
            continue
        dirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if _is_dir(entry):
                dirs.append(entry.name)
            elif os.path.splitext(entry.name)[1].lower() in SUFFIXES and _is_file(entry):
                found.append(entry.path)
        stack.extend(os.path.join(root, d) for d in sorted(dirs, reverse=True))  # sorted, depth first
    return found


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()  # a link: its target (a broken or looping one is no file)
    except OSError:
        return False


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links, as os.walk(followlinks=True) did
    except OSError:
        return False


def corpus_fingerprints(corpus_dir: Path) -> dict[str, str]:
    """Fingerprint of each article file, read without cleaning: cheap enough for a staleness check."""
    prints: dict[str, str] = {}
    for doc_id, path in corpus_files(corpus_dir):
        try:
            prints[doc_id] = fingerprint_bytes(path.read_bytes())
        except OSError:
            continue
    return prints


def text_key(text: str) -> str:
    """What makes two articles "the same article": their text, white space and case folded."""
    return hashlib.sha256(" ".join(text.split()).casefold().encode("utf-8")).hexdigest()


def first_copies(docs: Iterable[Document], seen: dict[tuple[str, str], str]) -> list[Document]:
    """``docs`` without a second copy of an article in one collection, each skipped copy logged. ``seen``:
    ``{(collection, text key): the id kept}``, the index's unchanged documents to start with; updated. As a
    full build keeps one copy per folder (load_corpus), so two servers that follow one feed each keep theirs."""
    out = []
    for doc in docs:
        key = (doc.collection, text_key(doc.text))
        if key in seen:
            log.warning("skipping %s: the same article as %s", doc.path or doc.id, seen[key])
            continue
        seen[key] = doc.id
        out.append(doc)
    return out


def load_corpus(corpus_dir: Path, max_bytes: int = MAX_ARTICLE_BYTES,
                only: Collection[str] | None = None) -> list[Document]:
    """Every readable article under the folder (``only``: just the files with these ids, and no error when
    none is usable). Skipped, each with a warning naming the file: unreadable, empty or over ``max_bytes``
    files, and a second copy of an article already read (same text)."""
    docs: list[Document] = []
    for doc_id, path in corpus_files(corpus_dir):
        if only is not None and doc_id not in only:
            continue
        try:
            size = path.stat().st_size
            if size > max_bytes:
                log.warning("skipping %s: %.1f MB is more than an article (the limit is %.1f MB)", path,
                            size / 1e6, max_bytes / 1e6)
                continue
            raw = path.read_bytes()
        except OSError as exc:
            log.warning("skipping %s: %s", path, exc.strerror or exc)
            continue
        if not raw.strip():
            log.warning("skipping %s: empty file", path)
            continue
        doc = parse_document(path, doc_id, raw)
        if doc is not None:
            docs.append(doc)
    docs = first_copies(docs, {})  # one folder, one collection: one copy of an article
    if not docs and only is None:
        raise CorpusError("empty", corpus_dir)
    return docs
