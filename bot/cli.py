"""The `herald` command line: a thin layer over the `index` library.

Heavy imports (torch, faiss, discord) happen inside commands so `herald --help` stays instant.
Every expected failure is a HeraldError and becomes one line on stderr with a non-zero exit.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from index import BuildProgress

LISTED = 10  # documents named per kind of change after a build; the rest are counted


class HeraldGroup(click.Group):
    """Turns HeraldError and Ctrl-C into one line and an exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except Exception as exc:
            # Imported here, not at the top: `herald --help` must not pay for numpy and the library.
            from bot.messages import explain
            from index import HeraldError

            if isinstance(exc, HeraldError):
                from bot.format import terminal_safe

                raise click.ClickException(terminal_safe(explain(exc))) from None
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted; nothing was changed.", err=True)
            ctx.exit(130)


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from bot.format import terminal_safe  # a log line may name a file: no escape sequence reaches the terminal

        return f"{record.levelname.lower()}: {terminal_safe(record.getMessage())}"


def _setup_logging(verbose: bool) -> None:
    from bot.format import RedactCredentials

    root = logging.getLogger()
    if not any(getattr(h, "_herald", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_StderrFormatter())
        handler.addFilter(RedactCredentials())  # an HERALD_LLM_URL's user:password@ is in every request logged
        handler._herald = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    level = logging.DEBUG if verbose else logging.WARNING
    root.setLevel(level)
    for h in root.handlers:
        if getattr(h, "_herald", False):
            h.setLevel(level)  # bm25s sets its own logger to DEBUG; the handler still filters
    for noisy in ("sentence_transformers", "transformers", "faiss", "bm25s", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR if not verbose else logging.INFO)


def index_options(fn: Callable) -> Callable:
    """--corpus, --index and --model for every command that reads or writes the index."""

    @click.option("--corpus", "corpus_dir", type=click.Path(path_type=Path), default=None,
                  help="Folder of articles [env HERALD_CORPUS, default ./corpus].")
    @click.option("--index", "index_dir", type=click.Path(path_type=Path), default=None,
                  help="Folder of the built index [env HERALD_INDEX, default ./.herald/index].")
    @click.option("--model", default=None,
                  help="sentence-transformers model name or folder [env HERALD_MODEL, default all-MiniLM-L6-v2].")
    @functools.wraps(fn)
    def wrapper(*args: Any, corpus_dir: Path | None, index_dir: Path | None, model: str | None, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        settings = ctx.obj["settings"].with_overrides(corpus_dir=corpus_dir, index_dir=index_dir, model=model)
        return fn(*args, settings=settings, **kwargs)

    return wrapper


@click.group(cls=HeraldGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--env-file", type=click.Path(path_type=Path), default=None,
              help="Settings file read before the environment [default: .env, when it exists].")
@click.option("-v", "--verbose", is_flag=True, help="Show debug logs.")
@click.version_option(package_name="herald")
@click.pass_context
def cli(ctx: click.Context, env_file: Path | None, verbose: bool) -> None:
    """Herald answers questions about news articles, quoting the articles and their sources.

    \b
    Quick start:
      herald ask "Who vetoed the resolution?"
    """
    from bot.settings import load_settings

    _setup_logging(verbose)
    ctx.ensure_object(dict)
    ctx.obj["settings"] = load_settings(env_file if env_file is not None else ".env",
                                        require_file=env_file is not None)


class _Progress(BuildProgress):
    """Progress of a build's slow steps: a bar per step on a terminal, elsewhere (a log, a pipe) a line
    every few seconds once a step has run that long, and its last line. Called with (done, total) for
    embedding; ``stage`` for the rest."""

    LABELS = {"splitting": "Splitting articles into sentences", "embedding": "Embedding"}
    EVERY = 5.0  # seconds between lines when not on a terminal

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.name = ""
        self.shown = 0
        self.last = 0.0
        self.printed = False

    def __call__(self, done: int, total: int) -> None:
        self.stage("embedding", done, total)

    def stage(self, name: str, done: int, total: int) -> None:
        import time

        if total == 0:
            return
        if name != self.name:
            self.close()
            self.name, self.shown, self.last, self.printed = name, 0, time.monotonic(), False
            if self.tty:
                self.bar = click.progressbar(length=total, label=self.LABELS.get(name, name), file=sys.stderr)
                self.bar.__enter__()
        if self.tty:
            self.bar.update(done - self.shown)
            self.shown = done
            return
        now = time.monotonic()
        if now - self.last >= self.EVERY or (done == total and self.printed):
            click.echo(f"{self.LABELS.get(name, name)}: {done:,} of {total:,}", err=True)
            self.last, self.printed = now, True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _progress_bar() -> tuple[_Progress, Callable[[], None]]:
    """A progress reporter for a build and the call that closes it."""
    p = _Progress()
    return p, p.close


def _open_engine(settings: Any, quiet: bool = False):
    from bot.messages import notice
    from index import open_engine

    update, close = _progress_bar()
    try:
        return open_engine(settings.engine_config(), notify=lambda n: click.echo(notice(n), err=True),
                           progress=None if quiet else update)  # quiet (--json): no bar; stdout stays JSON
    finally:
        close()


# ---------------------------------------------------------------------------------- collections


def collection_option(default: str | None, text: str) -> Callable:
    """--collection NAME (checked inside the command, so a bad name is the usual one-line error)."""
    return click.option("--collection", "collection", default=default, metavar="NAME", help=text)


def _places(settings: Any, name: str) -> tuple[Path, Path]:
    """Where collection ``name`` keeps its articles and its feeds' state: for ``base``, the corpus folder and
    HERALD_FEED_STATE; for another, its folder under the collections folder (CollectionError: a bad name)."""
    from index import BASE_COLLECTION, Collections, check_name

    if check_name(name) == BASE_COLLECTION:
        return settings.corpus_dir, settings.feed_state_file
    store = Collections(settings.collections_root)
    return store.folder(name), store.feed_state(name)


def _feed_states(settings: Any, collection: str, path: Path) -> Any:
    """What a poll of ``collection``'s feeds keeps its state in: the database's rows when one is configured
    (shared with the bot and other `herald watch` processes; read afresh), else the file at ``path``."""
    if not settings.database_url:
        return path
    from index import feed_states

    return feed_states(settings.engine_config(), collection, path)


def _check_known(settings: Any, name: str, indexed: Callable[[], Iterable[str]]) -> str:
    """``name`` when it is a collection: ``base``, a folder under the collections folder, or in the index
    (``indexed`` is asked only when there is no folder); else CollectionError, ``bad_name`` or ``unknown``."""
    from index import BASE_COLLECTION, CollectionError, Collections, check_name

    check_name(name)
    if name == BASE_COLLECTION or name in Collections(settings.collections_root).names() or name in indexed():
        return name
    raise CollectionError("unknown", name)


def _indexed_collections(settings: Any) -> set[str]:
    """The collections the index holds documents of (none when there is no index yet)."""
    from index import IndexMissingError, describe_index

    try:
        return {d.collection for d in describe_index(settings.engine_config()).documents}
    except IndexMissingError:
        return set()


def _scope(settings: Any, name: str) -> tuple[str, ...]:
    """What a question asked in collection ``name``'s place searches, as the bot decides it."""
    from index import BASE_COLLECTION

    return (BASE_COLLECTION,) if name == BASE_COLLECTION else settings.scope(name)


@cli.command()
@index_options
@click.option("--full", is_flag=True, help="Re-embed every document, not just the changed ones.")
@collection_option(None, "Update only this collection (base: the corpus folder; guild-<id>: a server's); "
                         "every other one is kept as indexed.")
def build(settings: Any, full: bool, collection: str | None) -> None:
    """Build the index, or update it: only new or changed articles are embedded.

    Without --collection every collection (the corpus and each server's folder) is brought up to date.
    """
    from index import rebuild

    if collection is not None:
        if full:
            raise click.UsageError("--full re-embeds every collection; leave out --collection (or --full)")
        _check_known(settings, collection, lambda: _indexed_collections(settings))
    update, close = _progress_bar()
    waiting = f"Another process is building the index at {settings.index_place}; waiting for it to finish."
    try:
        report = rebuild(settings.engine_config(), progress=update, full=full,
                         on_wait=lambda: click.echo(waiting, err=True),
                         collections=None if collection is None else [collection])
    finally:
        close()
    _echo_build(settings, report, full, collection)


def _echo_build(settings: Any, report: Any, full: bool, collection: str | None) -> None:
    """What `herald build` did: the counts, then the documents added, changed and removed."""
    parts = [f"{len(report.added)} added", f"{len(report.changed)} changed", f"{len(report.removed)} removed",
             f"{len(report.unchanged)} unchanged"]
    if report.full_rebuild:  # every document is re-embedded: "added" would misreport what happened
        parts = ["rebuilt from scratch" + ("" if full else ": the old index was damaged or made with other settings")]
    only = f" (collection {collection})" if collection is not None else ""
    if not report.changed_anything:
        click.echo(f"Nothing changed{only}: the index at {settings.index_place} is up to date "
                   f"({report.documents} document(s), {report.chunks} chunks).")
        return
    click.echo(f"Index at {settings.index_place}{only}: {report.documents} document(s), {report.chunks} chunks "
               f"({', '.join(parts)}; {report.embedded_texts} texts embedded in {report.seconds:.1f} s).")
    if report.full_rebuild:
        return
    from bot.format import terminal_safe

    for label, ids in (("added", report.added), ("changed", report.changed), ("removed", report.removed)):
        for doc_id in ids[:LISTED]:
            click.echo(f"  {label}: {terminal_safe(doc_id)}")  # a file name may hold escape sequences
        if len(ids) > LISTED:
            click.echo(f"  ... and {len(ids) - LISTED} more {label}")


def _with_phrase(ans: Any) -> str:
    """The answer wrapped for a terminal, the words that answer in bold (click.echo drops the bold when
    the output is not a terminal, so pipes and files get plain text)."""
    from bot.format import PHRASE_CLOSE, PHRASE_OPEN, terminal_safe, with_phrase_marks

    wrapped = textwrap.fill(with_phrase_marks(ans, terminal_safe), 100)
    return wrapped.replace(PHRASE_OPEN, "\x1b[1m").replace(PHRASE_CLOSE, "\x1b[22m")


def _format_answer(ans: Any, streamed: bool = False) -> str:
    """The answer for a terminal. ``streamed``: the model's text was already printed as it arrived.
    Everything from a file or the model goes through ``terminal_safe`` (``t``): no escape sequences."""
    from bot.format import safe_url
    from bot.format import terminal_safe as t
    from bot.messages import ABSTAIN_MESSAGE, TENTATIVE_MESSAGE, note_for, source_label

    lines = []
    if streamed and ans.fallback:
        lines += ["", "", "(That was the language model's draft; it is not the answer.)"]
    if ans.abstained:
        lines.append(ABSTAIN_MESSAGE)
        if ans.hint is not None:
            lines.append("")
            lines.append("The closest passage:")
            lines.append(textwrap.fill(t(ans.hint.text), 100, initial_indent="  | ", subsequent_indent="  | "))
            lines.append(f"  \u2014 {t(ans.hint.title)}")
    else:
        if ans.tentative:
            lines.append(TENTATIVE_MESSAGE)
        if not streamed or ans.fallback:
            lines.append(_with_phrase(ans))
        lines.append("")
        lines.append("Sources:" if not ans.citations else
                     f"Sources ({t(ans.answered_by)}; cited: {', '.join(f'[{n}]' for n in ans.citations)}):")
        for n, src in enumerate(ans.sources, 1):
            link = safe_url(src.url)
            where = f" <{link}>" if link else ""
            label = f" ({t(source_label(src.outlet, src.date))})" if src.outlet or src.date else ""
            home = f", collection {src.collection}" if src.collection != "base" else ""
            lines.append(f"  [{n}] {t(src.title)}{label}{where} (score {src.score:.2f}, chars {src.start}-{src.end}"
                         f"{home})")
            if src.also_reported_by:
                lines.append(f"      also reported by {t(', '.join(src.also_reported_by))}")
            lines.append(textwrap.fill(t(src.text), 100, initial_indent="      | ", subsequent_indent="      | "))
    if note_for(ans):
        lines.append("")
        lines.append(f"Note: {note_for(ans)}")
    lines.append("")
    lines.append(f"({ans.latency_ms:.0f} ms)")
    return "\n".join(lines)


@cli.command()
@index_options
@click.argument("question")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object; with QUESTION '-' read one question per line from stdin.")
@collection_option("base", "Answer as a question asked in this collection's place: base (the default) alone, or a "
                           "server's collection guild-<id> (with base when HERALD_BASE_VISIBLE).")
def ask(settings: Any, question: str, as_json: bool, collection: str) -> None:
    """Answer QUESTION from the articles, with numbered sources.

    Builds the index first if it is missing or the corpus changed.
    """
    from index import QuestionError, check_name, clean_question

    check_name(collection)  # a bad name fails before the model is loaded
    if question != "-":
        try:
            clean_question(question, settings.max_question_chars)  # fail fast, before loading the model
        except QuestionError as exc:
            if not as_json:
                raise
            click.echo(json.dumps(_error_json(question, exc), ensure_ascii=False))
            raise click.exceptions.Exit(1) from None
    engine = _open_engine(settings, quiet=as_json)
    scope = _scope(settings, _check_known(settings, collection, engine.collections))
    if not as_json:
        _ask_and_print(engine, question, collections=scope)
        return
    if question != "-":
        click.echo(json.dumps(_answer_json(engine.ask(question, collections=scope)), ensure_ascii=False))
        return
    failed = 0
    for raw in sys.stdin.buffer:
        # Per line, so one line of bad bytes is one error object, not the end of the batch.
        line = raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
        if not line.strip():
            continue
        try:
            out = _answer_json(engine.ask(line, collections=scope))
        except QuestionError as exc:
            failed += 1
            out = _error_json(line, exc)
        click.echo(json.dumps(out, ensure_ascii=False))
    if failed:
        raise click.ClickException(f"{failed} question(s) could not be asked; see their \"error\" fields")


def _ask_and_print(engine: Any, question: str, history: list | None = None,
                   collections: tuple[str, ...] | None = None) -> Any:
    """Ask and print; a language model's answer is printed as it arrives (then the sources). ``collections``:
    what the question searches (None: every collection)."""
    from bot.format import terminal_safe

    streamed: list[str] = []

    def on_token(piece: str) -> None:
        streamed.append(piece)
        click.echo(terminal_safe(piece), nl=False)

    ans = engine.ask(question, history or [], on_token=on_token, collections=collections)
    click.echo(_format_answer(ans, streamed=bool(streamed)))
    return ans


def _error_json(question: str, exc: BaseException) -> dict:
    """The object `ask --json` prints for a question that cannot be asked (bad bytes shown as U+FFFD)."""
    from bot.messages import explain

    shown = question[:200].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return {"question": shown, "answer": "", "abstained": True, "sources": [], "latency_ms": 0.0,
            "error": explain(exc)}


def _answer_json(ans: Any) -> dict:
    """The library's answer data plus the note a person reads."""
    from bot.messages import note_for

    out = ans.to_dict()
    out["note"] = note_for(ans)
    return out


@cli.command()
@index_options
@click.option("--check", is_flag=True, help="Verify every file's checksum and load the whole index.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON.")
@collection_option(None, "List only this collection's documents (default: every collection's).")
def info(settings: Any, as_json: bool, check: bool, collection: str | None) -> None:
    """Show what the index holds and whether the corpus changed since it was built.

    Exits 1 when the index is damaged (a file's size or checksum does not match). Checksums are verified
    when the index is small enough to hash in a moment (256 MB); --check verifies them at any size.
    """
    from index import check_name, describe_index

    if collection is not None:
        check_name(collection)
    d = describe_index(settings.engine_config(), check=check)
    if collection is not None:
        _check_known(settings, collection, lambda: {doc.collection for doc in d.documents})
    docs = [doc for doc in d.documents if collection is None or doc.collection == collection]
    damage, state = _damage_and_state(d, collection)
    counts: dict[str, int] = {}
    for doc in d.documents:
        counts[doc.collection] = counts.get(doc.collection, 0) + 1
    summary = {
        "index": d.database or str(d.index_dir), "model": d.model, "dim": d.dim, "vector_store": d.vector_store,
        "documents": len(d.documents), "chunks": d.chunks, "sentences": d.sentences, "built_at": d.built_at,
        "chunking": d.chunking, "corpus": str(settings.corpus_dir), "state": state,
        "collection": collection, "collections": counts,
        "titles": [doc.title for doc in docs], "damaged": damage or None,
        "articles": [{"id": doc.id, "title": doc.title, "outlet": doc.outlet, "date": doc.date, "url": doc.url,
                      "collection": doc.collection, "chunks": doc.chunks} for doc in docs],
        "checked": check, "checksums_verified": d.checksums_verified, "delta_segments": d.deltas,
    }
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        if damage:
            raise click.exceptions.Exit(1)
        return
    _print_info(d, docs, summary, damage, check)


def _damage_and_state(d: Any, collection: str | None = None) -> tuple[str, str]:
    """What `herald info` says of the index's files ("" when they match) and of the corpus since the build
    (of ``collection``'s articles only, when given)."""
    from bot.messages import explain, staleness
    from index import Staleness, collection_of

    if collection is not None and d.stale is not None:
        d.stale = Staleness(*([i for i in ids if collection_of(i) == collection]
                              for ids in (d.stale.added, d.stale.changed, d.stale.removed)))
    damage = ""
    if d.damaged:
        damage = f"damaged: {', '.join(d.damaged)} do not match the manifest; rebuild it with `herald build`"
    elif d.damage_error is not None:
        damage = f"damaged: {explain(d.damage_error)}"
    if d.stale_error is not None:
        state = f"unknown ({explain(d.stale_error)})"
    elif d.stale is not None and d.stale.stale:
        state = "stale: " + staleness(d.stale) + " (run `herald build`)"
    else:
        state = "up to date"
    return damage, state


def _print_info(d: Any, docs: list, summary: dict[str, Any], damage: str, check: bool) -> None:
    """`herald info` for a person (``docs``: the documents listed); exits 1 (the damage on stderr) when the
    index is damaged."""
    from bot.format import terminal_safe as t
    from bot.messages import source_label

    click.echo(f"Index:     {summary['index']}")
    click.echo(f"Model:     {summary['model']} ({summary['dim']} dimensions)")
    click.echo(f"Vectors:   {d.vector_store} store")
    if d.deltas:
        click.echo(f"Segments:  the base and {d.deltas} delta segment(s) of the latest updates (written whole "
                   "again once they pass a tenth of the base)")
    click.echo(f"Documents: {summary['documents']}   Chunks: {summary['chunks']}   Sentences: {summary['sentences']}")
    if set(summary["collections"]) - {"base"}:
        click.echo("Collections: " + ", ".join(f"{n} {c}" for n, c in sorted(summary["collections"].items()))
                   + " (documents; `herald collections` says more)")
    click.echo(f"Updated:   {summary['built_at']} (the last build that changed the index)")
    if summary["collection"] is None:
        click.echo(f"Corpus:    {summary['corpus']} ({summary['state']})")
    else:
        click.echo(f"Collection: {summary['collection']}: {len(docs)} document(s), "
                   f"{sum(doc.chunks for doc in docs)} chunks ({summary['state']})")
    for doc in docs:
        label = f" ({source_label(doc.outlet, doc.date)})" if doc.outlet or doc.date else ""
        home = f" in collection {doc.collection}" if doc.collection != "base" else ""
        click.echo(t(f"  - {doc.title}{label} [{doc.id}, {doc.chunks} chunks]{home}"))
    if damage:
        raise click.ClickException(t(damage))
    if d.database:
        click.echo(f"Database:  {d.index_bytes / 1e6:.0f} MB in PostgreSQL (its own transactions keep it whole)")
    elif check:
        click.echo("Check:     every file matches its checksum; the index loads.")
    elif d.checksums_verified:
        click.echo("Checksums: every file matches its checksum.")
    elif d.index_bytes:
        click.echo("Checksums: not verified (only file sizes were compared: "
                   f"the index is {d.index_bytes / 1e6:.0f} MB); run `herald info --check` to verify them.")
    else:
        click.echo("Checksums: not verified (this index records none; `herald build --full` writes them).")


@cli.command(name="eval")
@index_options
@click.argument("qa_file", type=click.Path(path_type=Path))
@click.option("--failures", is_flag=True, help="List the questions that missed.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@collection_option("base", "Ask every question as in this collection's place (as `herald ask --collection`).")
def eval_cmd(settings: Any, qa_file: Path, failures: bool, as_json: bool, collection: str) -> None:
    """Score a question set (JSONL of {"question", "answers"}; empty answers = should abstain)."""
    from index import check_name, evaluate, load_qa

    check_name(collection)
    items = load_qa(qa_file)
    engine = _open_engine(settings, quiet=as_json)
    scope = _scope(settings, _check_known(settings, collection, engine.collections))
    result = evaluate(engine, items, collections=scope)  # five sources for recall@5; answers from the usual top_k
    summary = result.summary()
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"Questions: {summary['questions']} ({summary['answerable']} answerable, "
               f"{summary['off_topic']} should abstain)")
    for key in ("answer_hit", "recall@1", "recall@3", "recall@5", "abstention_accuracy"):
        click.echo(f"  {key:<20} {summary[key]:.3f}")
    click.echo(f"  {'tentative':<20} {summary['tentative_answers']} of {summary['answered']} answers "
               f"({summary['tentative_right']} right); {summary['off_topic_tentative']} of "
               f"{summary['off_topic_answered']} answered off-topic questions")
    click.echo(f"  {'latency p50/p95':<20} {summary['latency_p50_ms']:.1f} / {summary['latency_p95_ms']:.1f} ms")
    if failures:
        from bot.format import terminal_safe

        for line in result.failures():
            click.echo(terminal_safe(line))  # questions and answers from files and the model


def _echo_added(item: Any) -> None:
    """One line per URL: what happened to it, or why not (a page's title printed without escape sequences)."""
    from bot.format import terminal_safe
    from bot.messages import added_line

    click.echo(terminal_safe(added_line(item)))


def _echo_feed(res: Any, *, watching: bool = False) -> Any:
    """One poll of one feed as `herald add --feed` prints it (``bot.messages.feed_report``); the result, whose
    ``changed`` and ``failed`` count what the poll did.

    ``watching`` (`herald watch`, which runs for hours): a feed that failed is reported on stderr, and the
    feed's own line is left out when its poll went through (only its items are printed).
    """
    from bot.format import terminal_safe
    from bot.messages import feed_report

    head, *items = feed_report(res, terminal=True)
    if not (watching and res.error is None):
        click.echo(terminal_safe(head.text), err=watching)
    for line in items:
        click.echo(terminal_safe(line.text))
    return res


def _update_index(settings: Any, collections: list[str] | None = None) -> None:
    """After articles were added: bring the index up to date (only they are embedded; only ``collections``
    are read, when given)."""
    from index import rebuild

    update, close = _progress_bar()
    try:
        report = rebuild(settings.engine_config(), progress=update, collections=collections)
    finally:
        close()
    if report.changed_anything:
        click.echo(f"Index updated: {report.documents} document(s), {report.chunks} chunks "
                   f"({len(report.added)} added, {len(report.changed)} changed, {len(report.removed)} removed).")


@cli.command()
@index_options
@click.argument("urls", nargs=-1, required=True)
@click.option("--feed", "is_feed", is_flag=True, help="The URLs are RSS or Atom feeds: add each new item.")
@click.option("--no-index", is_flag=True, help="Save the articles but do not update the index now.")
@collection_option("base", "Save into this collection's folder (created if needed) and update only it in the index; "
                           "base (the default) is the corpus folder.")
def add(settings: Any, urls: tuple[str, ...], is_feed: bool, no_index: bool, collection: str) -> None:
    """Fetch news articles by URL (or the new items of feeds) into the corpus, then update the index.

    The article is extracted from the page (no navigation, ads or comments) and saved as markdown with
    its title, outlet, date and URL. Adding a URL again updates it only if its text changed.
    """
    from index import add_url, poll_feeds

    folder, feed_state = _places(settings, collection)
    failures = to_index = 0
    if is_feed:
        for res in poll_feeds(folder, urls, _feed_states(settings, collection, feed_state), settings.fetch,
                              settings.feed_max_items):
            counts = _echo_feed(res)
            failures += counts.failed
            to_index += counts.changed
    else:
        for url in urls:
            item = add_url(folder, url, settings.fetch)
            _echo_added(item)
            failures += item.failed
            to_index += item.changed
    if to_index and not no_index:
        _update_index(settings, [collection])
    if failures == 1 and len(urls) == 1:  # its one line above says why: no summary under it
        raise click.exceptions.Exit(1)
    if failures:
        raise click.ClickException(f"{failures} of the URLs could not be added (see above)")


@cli.command()
@index_options
@click.option("--once", is_flag=True, help="Poll every feed once, then stop.")
def watch(settings: Any, once: bool) -> None:
    """Poll the feeds in HERALD_FEEDS every HERALD_FEED_INTERVAL seconds; add new items and update the index."""
    import time

    from index import BASE_COLLECTION, poll_feeds

    if not settings.feeds:
        raise click.UsageError("no feeds to watch: set HERALD_FEEDS (RSS or Atom URLs, separated by commas)")
    while True:
        added = 0
        states = _feed_states(settings, BASE_COLLECTION, settings.feed_state_file)
        for res in poll_feeds(settings.corpus_dir, settings.feeds, states, settings.fetch, settings.feed_max_items):
            added += _echo_feed(res, watching=True).changed
        if added:
            _update_index(settings)
        if once:
            return
        time.sleep(settings.feed_interval)


@cli.command()
@index_options
@collection_option("base", "Answer as in this collection's place (as `herald ask --collection`).")
def chat(settings: Any, collection: str) -> None:
    """A conversation in the terminal: follow-up questions ("and why?") build on the earlier ones.

    One question per line; an empty line or Ctrl-D ends it.
    """
    from index import QuestionError, Turn, check_name

    check_name(collection)
    engine = _open_engine(settings)
    scope = _scope(settings, _check_known(settings, collection, engine.collections))
    history: list[Turn] = []
    keep = max(1, settings.llm.history_turns)
    tty = sys.stdin.isatty()
    while True:
        if tty:
            click.echo("> ", nl=False, err=True)
        line = sys.stdin.buffer.readline()
        if not line:
            break
        question = line.decode("utf-8", errors="surrogateescape").strip()
        if not question:
            break
        try:
            ans = _ask_and_print(engine, question, history, scope)
        except QuestionError as exc:
            from bot.messages import explain

            click.echo(f"Error: {explain(exc)}", err=True)
            continue
        history = (history + [Turn(ans.question, ans.answer)])[-keep:]
        click.echo("")


def _size(n: int | None) -> str:
    """Bytes as a person reads them (``-`` when unknown)."""
    if n is None:
        return "-"
    if n < 1000:
        return f"{n} B"
    return f"{n / 1e3:.1f} KB" if n < 1e6 else f"{n / 1e6:.1f} MB"


def _when(iso: str | None) -> str:
    """An ISO time as ``2024-03-09 12:00`` (``-`` when there is none)."""
    return iso[:16].replace("T", " ") if iso else "-"


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _meta_fields(meta: dict, grace_hours: float) -> dict[str, Any]:
    """What `herald collections` shows of a collection's metadata (written by the bot; anything malformed is
    shown as unknown, never an error): owner, feeds, dates, and when it is removed if the bot left."""
    from datetime import UTC, datetime

    owner_id = _number(meta.get("owner_id"))
    feeds = meta.get("feeds")
    left_at = _number(meta.get("left_at"))
    removed = None
    if left_at is not None:
        try:
            removed = datetime.fromtimestamp(left_at + grace_hours * 3600, UTC).isoformat(timespec="seconds")
        except (OverflowError, OSError, ValueError):
            removed = None
    text = {k: meta[k] if isinstance(meta.get(k), str) else None for k in ("owner_name", "created", "last_used")}
    return {"owner_id": int(owner_id) if owner_id is not None else None, **text,
            "feeds": len([f for f in feeds if isinstance(f, str)]) if isinstance(feeds, list) else 0,
            "left_at": left_at, "removed_after": removed}


def _index_counts(settings: Any) -> tuple[dict[str, list[int]] | None, str]:
    """``{collection: [documents, passages]}`` in the index, or None and why there is none to read."""
    from bot.messages import explain
    from index import HeraldError, describe_index

    try:
        d = describe_index(settings.engine_config())
    except HeraldError as exc:
        return None, explain(exc)
    counts: dict[str, list[int]] = {}
    for doc in d.documents:
        row = counts.setdefault(doc.collection, [0, 0])
        row[0] += 1
        row[1] += doc.chunks
    return counts, ""


def _base_files(settings: Any) -> tuple[int | None, int | None]:
    """Articles in the corpus (``base``) and their bytes (None when the corpus cannot be read)."""
    from index import HeraldError

    try:
        ids = list(settings.engine_config().open_source().base.fingerprints())
    except HeraldError:
        return None, None
    size = 0
    for doc_id in ids:
        try:
            size += (Path(settings.corpus_dir) / doc_id).stat().st_size
        except OSError:
            continue
    return len(ids), size


def _collection_rows(settings: Any) -> tuple[list[dict[str, Any]], str]:
    """One row per collection (``base``, every folder, and any the index holds whose folder is gone), and why
    the index could not be read ("" when it could)."""
    from index import BASE_COLLECTION, Collections

    counts, problem = _index_counts(settings)
    base_articles, base_bytes = _base_files(settings)
    found = [(BASE_COLLECTION, settings.corpus_dir, base_articles, base_bytes, {})]
    found += [(c.name, c.folder, c.articles, c.bytes, c.meta)
              for c in Collections(settings.collections_root).describe_all()]
    found += [(n, None, None, None, {}) for n in sorted(set(counts or {}) - {f[0] for f in found})]
    rows = []
    for name, folder, articles, size, meta in found:
        docs, passages = counts.get(name, [0, 0]) if counts is not None else [None, None]
        rows.append({"name": name, "folder": str(folder) if folder is not None else None, "articles": articles,
                     "bytes": size, "documents": docs, "passages": passages,
                     **_meta_fields(meta, settings.guild_grace_hours)})
    rows[0]["feeds"] = len(settings.feeds)  # base's feeds are HERALD_FEEDS (`herald watch`, the bot's watcher)
    return rows, problem


def _collection_note(row: dict[str, Any]) -> str:
    """The last column of `herald collections`: what is about to happen to a collection, or is out of step."""
    if row["removed_after"]:
        return f"the bot left the server: removed after {_when(row['removed_after'])} UTC"
    if row["folder"] is None:
        return f"no folder: `herald build --collection {row['name']}` drops it from the index"
    if row["documents"] == 0 and row["articles"]:
        return f"not indexed yet: `herald build --collection {row['name']}`"
    return ""


def _print_collections(settings: Any, rows: list[dict[str, Any]], problem: str) -> None:
    """`herald collections` as a table for people (names and owners made terminal-safe)."""
    from bot.format import terminal_safe as t

    click.echo(t(f"Corpus (base): {settings.corpus_dir}"))
    click.echo(t(f"Collections:   {settings.collections_root}"))
    click.echo(t(f"Index:         {settings.index_place}" + (f" ({problem})" if problem else "")))
    click.echo("")
    table = [("COLLECTION", "ARTICLES", "SIZE", "INDEXED (DOCS/PASSAGES)", "OWNER", "FEEDS", "LAST USED", "")]
    for r in rows:
        owner = "" if r["owner_name"] is None and r["owner_id"] is None else \
            f"{r['owner_name'] or '?'} ({r['owner_id'] if r['owner_id'] is not None else '?'})"
        indexed = "-" if r["documents"] is None else f"{r['documents']} / {r['passages']}"
        table.append((r["name"], "-" if r["articles"] is None else str(r["articles"]), _size(r["bytes"]), indexed,
                      t(owner) or "-", str(r["feeds"]), _when(r["last_used"]),
                      t(_collection_note(r))))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@cli.command(name="collections")
@index_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
def collections_cmd(settings: Any, as_json: bool) -> None:
    """List the collections: base (the corpus folder) and each server's own (guild-<id>), with their articles
    on disk, what the index holds of them, their owner, feeds and last use, and when a server the bot left
    loses its collection."""
    rows, problem = _collection_rows(settings)
    if as_json:
        click.echo(json.dumps({"corpus": str(settings.corpus_dir), "collections_root": str(settings.collections_root),
                               "index": settings.index_place, "index_problem": problem or None,
                               "collections": rows}, ensure_ascii=False))
        return
    _print_collections(settings, rows, problem)


@cli.command(name="bot")
@index_options
def bot_cmd(settings: Any) -> None:
    """Run the Discord bot (needs DISCORD_TOKEN in the environment or .env)."""
    from bot.discord_bot.launcher import run_bot

    run_bot(settings)


def main() -> None:
    """Console-script entry point."""
    cli(obj={})


if __name__ == "__main__":  # pragma: no cover
    main()
