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
from collections.abc import Callable
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


@cli.command()
@index_options
@click.option("--full", is_flag=True, help="Re-embed every document, not just the changed ones.")
def build(settings: Any, full: bool) -> None:
    """Build the index, or update it: only new or changed articles are embedded."""
    from index import rebuild

    update, close = _progress_bar()
    waiting = f"Another process is building the index at {settings.index_dir}; waiting for it to finish."
    try:
        report = rebuild(settings.engine_config(), progress=update, full=full,
                         on_wait=lambda: click.echo(waiting, err=True))
    finally:
        close()
    parts = [f"{len(report.added)} added", f"{len(report.changed)} changed", f"{len(report.removed)} removed",
             f"{len(report.unchanged)} unchanged"]
    if report.full_rebuild:  # every document is re-embedded: "added" would misreport what happened
        parts = ["rebuilt from scratch" + ("" if full else ": the old index was damaged or made with other settings")]
    if not report.changed_anything:
        click.echo(f"Nothing changed: the index at {settings.index_dir} is up to date "
                   f"({report.documents} document(s), {report.chunks} chunks).")
        return
    click.echo(f"Index at {settings.index_dir}: {report.documents} document(s), {report.chunks} chunks "
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
            lines.append(f"  [{n}] {t(src.title)}{label}{where} (score {src.score:.2f}, chars {src.start}-{src.end})")
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
def ask(settings: Any, question: str, as_json: bool) -> None:
    """Answer QUESTION from the articles, with numbered sources.

    Builds the index first if it is missing or the corpus changed.
    """
    from index import QuestionError, clean_question

    if question != "-":
        try:
            clean_question(question, settings.max_question_chars)  # fail fast, before loading the model
        except QuestionError as exc:
            if not as_json:
                raise
            click.echo(json.dumps(_error_json(question, exc), ensure_ascii=False))
            raise click.exceptions.Exit(1) from None
    engine = _open_engine(settings, quiet=as_json)
    if not as_json:
        _ask_and_print(engine, question)
        return
    if question != "-":
        click.echo(json.dumps(_answer_json(engine.ask(question)), ensure_ascii=False))
        return
    failed = 0
    for raw in sys.stdin.buffer:
        # Per line, so one line of bad bytes is one error object, not the end of the batch.
        line = raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
        if not line.strip():
            continue
        try:
            out = _answer_json(engine.ask(line))
        except QuestionError as exc:
            failed += 1
            out = _error_json(line, exc)
        click.echo(json.dumps(out, ensure_ascii=False))
    if failed:
        raise click.ClickException(f"{failed} question(s) could not be asked; see their \"error\" fields")


def _ask_and_print(engine: Any, question: str, history: list | None = None) -> Any:
    """Ask and print; a language model's answer is printed as it arrives (then the sources)."""
    from bot.format import terminal_safe

    streamed: list[str] = []

    def on_token(piece: str) -> None:
        streamed.append(piece)
        click.echo(terminal_safe(piece), nl=False)

    ans = engine.ask(question, history or [], on_token=on_token)
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
def info(settings: Any, as_json: bool, check: bool) -> None:
    """Show what the index holds and whether the corpus changed since it was built.

    Exits 1 when the index is damaged (a file's size or checksum does not match). Checksums are verified
    when the index is small enough to hash in a moment (256 MB); --check verifies them at any size.
    """
    from index import describe_index

    d = describe_index(settings.engine_config(), check=check)
    damage, state = _damage_and_state(d)
    summary = {
        "index": str(d.index_dir), "model": d.model, "dim": d.dim, "vector_store": d.vector_store,
        "documents": len(d.documents), "chunks": d.chunks, "sentences": d.sentences, "built_at": d.built_at,
        "chunking": d.chunking, "corpus": str(settings.corpus_dir), "state": state,
        "titles": [doc.title for doc in d.documents], "damaged": damage or None,
        "articles": [{"id": doc.id, "title": doc.title, "outlet": doc.outlet, "date": doc.date, "url": doc.url}
                     for doc in d.documents],
        "checked": check, "checksums_verified": d.checksums_verified,
    }
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        if damage:
            raise click.exceptions.Exit(1)
        return
    _print_info(d, summary, damage, check)


def _damage_and_state(d: Any) -> tuple[str, str]:
    """What `herald info` says of the index's files ("" when they match) and of the corpus since the build."""
    from bot.messages import explain, staleness

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


def _print_info(d: Any, summary: dict[str, Any], damage: str, check: bool) -> None:
    """`herald info` for a person; exits 1 (the damage on stderr) when the index is damaged."""
    from bot.format import terminal_safe as t
    from bot.messages import source_label

    click.echo(f"Index:     {summary['index']}")
    click.echo(f"Model:     {summary['model']} ({summary['dim']} dimensions)")
    click.echo(f"Vectors:   {d.vector_store} store")
    click.echo(f"Documents: {summary['documents']}   Chunks: {summary['chunks']}   Sentences: {summary['sentences']}")
    click.echo(f"Updated:   {summary['built_at']} (the last build that changed the index)")
    click.echo(f"Corpus:    {summary['corpus']} ({summary['state']})")
    for doc in d.documents:
        label = f" ({source_label(doc.outlet, doc.date)})" if doc.outlet or doc.date else ""
        click.echo(t(f"  - {doc.title}{label} [{doc.id}, {doc.chunks} chunks]"))
    if damage:
        raise click.ClickException(t(damage))
    if check:
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
def eval_cmd(settings: Any, qa_file: Path, failures: bool, as_json: bool) -> None:
    """Score a question set (JSONL of {"question", "answers"}; empty answers = should abstain)."""
    from index import evaluate, load_qa

    items = load_qa(qa_file)
    engine = _open_engine(settings, quiet=as_json)
    result = evaluate(engine, items)  # lists five sources for recall@5; answers from the usual top_k
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


def _update_index(settings: Any) -> None:
    """After articles were added: bring the index up to date (only they are embedded)."""
    from index import rebuild

    update, close = _progress_bar()
    try:
        report = rebuild(settings.engine_config(), progress=update)
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
def add(settings: Any, urls: tuple[str, ...], is_feed: bool, no_index: bool) -> None:
    """Fetch news articles by URL (or the new items of feeds) into the corpus, then update the index.

    The article is extracted from the page (no navigation, ads or comments) and saved as markdown with
    its title, outlet, date and URL. Adding a URL again updates it only if its text changed.
    """
    from index import add_url, poll_feeds

    failures = to_index = 0
    if is_feed:
        for res in poll_feeds(settings.corpus_dir, urls, settings.feed_state_file, settings.fetch,
                              settings.feed_max_items):
            counts = _echo_feed(res)
            failures += counts.failed
            to_index += counts.changed
    else:
        for url in urls:
            item = add_url(settings.corpus_dir, url, settings.fetch)
            _echo_added(item)
            failures += item.failed
            to_index += item.changed
    if to_index and not no_index:
        _update_index(settings)
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

    from index import poll_feeds

    if not settings.feeds:
        raise click.UsageError("no feeds to watch: set HERALD_FEEDS (RSS or Atom URLs, separated by commas)")
    while True:
        added = 0
        for res in poll_feeds(settings.corpus_dir, settings.feeds, settings.feed_state_file, settings.fetch,
                              settings.feed_max_items):
            added += _echo_feed(res, watching=True).changed
        if added:
            _update_index(settings)
        if once:
            return
        time.sleep(settings.feed_interval)


@cli.command()
@index_options
def chat(settings: Any) -> None:
    """A conversation in the terminal: follow-up questions ("and why?") build on the earlier ones.

    One question per line; an empty line or Ctrl-D ends it.
    """
    from index import QuestionError, Turn

    engine = _open_engine(settings)
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
            ans = _ask_and_print(engine, question, history)
        except QuestionError as exc:
            from bot.messages import explain

            click.echo(f"Error: {explain(exc)}", err=True)
            continue
        history = (history + [Turn(ans.question, ans.answer)])[-keep:]
        click.echo("")


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
