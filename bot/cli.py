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
                raise click.ClickException(explain(exc)) from None
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted; nothing was changed.", err=True)
            ctx.exit(130)


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _setup_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_herald", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_StderrFormatter())
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


def _progress_bar(label: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A click progress bar driven by (done, total) callbacks; silent when nothing is embedded."""
    state: dict[str, Any] = {"bar": None, "shown": 0}

    def update(done: int, total: int) -> None:
        if total == 0:
            return
        if state["bar"] is None:
            state["bar"] = click.progressbar(length=total, label=label, file=sys.stderr)
            state["bar"].__enter__()
        state["bar"].update(done - state["shown"])
        state["shown"] = done

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)

    return update, close


def _open_engine(settings: Any, quiet: bool = False):
    from bot.messages import notice
    from index import open_engine

    update, close = _progress_bar("Embedding")
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

    update, close = _progress_bar("Embedding")
    try:
        report = rebuild(settings.engine_config(), progress=update, full=full)
    finally:
        close()
    parts = [f"{len(report.added)} added", f"{len(report.changed)} changed", f"{len(report.removed)} removed",
             f"{len(report.unchanged)} unchanged"]
    if not report.changed_anything:
        click.echo(f"Nothing changed: the index at {settings.index_dir} is up to date "
                   f"({report.documents} document(s), {report.chunks} chunks).")
        return
    click.echo(f"Index at {settings.index_dir}: {report.documents} document(s), {report.chunks} chunks "
               f"({', '.join(parts)}; {report.embedded_texts} texts embedded in {report.seconds:.1f} s).")
    for label, ids in (("added", report.added), ("changed", report.changed), ("removed", report.removed)):
        for doc_id in ids:
            click.echo(f"  {label}: {doc_id}")


def _format_answer(ans: Any) -> str:
    from bot.messages import ABSTAIN_MESSAGE, TENTATIVE_MESSAGE, note_for

    lines = []
    if ans.abstained:
        lines.append(ABSTAIN_MESSAGE)
        if ans.hint is not None:
            lines.append("")
            lines.append("The closest passage:")
            lines.append(textwrap.fill(ans.hint.text, 100, initial_indent="  | ", subsequent_indent="  | "))
            lines.append(f"  \u2014 {ans.hint.title}")
    else:
        if ans.tentative:
            lines.append(TENTATIVE_MESSAGE)
        lines.append(textwrap.fill(ans.answer, 100))
        lines.append("")
        lines.append("Sources:")
        for n, src in enumerate(ans.sources, 1):
            where = f" <{src.url}>" if src.url else ""
            lines.append(f"  [{n}] {src.title}{where} (score {src.score:.2f}, chars {src.start}-{src.end})")
            lines.append(textwrap.fill(src.text, 100, initial_indent="      | ", subsequent_indent="      | "))
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
        click.echo(_format_answer(engine.ask(question)))
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
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON.")
def info(settings: Any, as_json: bool) -> None:
    """Show what the index holds and whether the corpus changed since it was built."""
    from bot.messages import staleness
    from index import describe_index

    d = describe_index(settings.engine_config())
    if d.stale_error is not None:
        from bot.messages import explain

        state = f"unknown ({explain(d.stale_error)})"
    elif d.stale is not None and d.stale.stale:
        state = "stale: " + staleness(d.stale) + " (run `herald build`)"
    else:
        state = "up to date"
    summary = {
        "index": str(d.index_dir), "model": d.model, "dim": d.dim, "vector_store": d.vector_store,
        "documents": len(d.documents), "chunks": d.chunks, "sentences": d.sentences, "built_at": d.built_at,
        "chunking": d.chunking, "corpus": str(settings.corpus_dir), "state": state,
        "titles": [doc.title for doc in d.documents],
    }
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    click.echo(f"Index:     {summary['index']}")
    click.echo(f"Model:     {summary['model']} ({summary['dim']} dimensions)")
    click.echo(f"Vectors:   {d.vector_store} store")
    click.echo(f"Documents: {summary['documents']}   Chunks: {summary['chunks']}   Sentences: {summary['sentences']}")
    click.echo(f"Built:     {summary['built_at']}")
    click.echo(f"Corpus:    {summary['corpus']} ({state})")
    for doc in d.documents:
        click.echo(f"  - {doc.title} [{doc.id}, {doc.chunks} chunks]")


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
    result = evaluate(engine, items)
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
        for line in result.failures():
            click.echo(line)


@cli.command(name="bot")
@index_options
def bot_cmd(settings: Any) -> None:
    """Run the Discord bot (needs DISCORD_TOKEN in the environment or .env)."""
    from bot.discord_app import run_bot

    run_bot(settings)


def main() -> None:
    """Console-script entry point."""
    cli(obj={})


if __name__ == "__main__":  # pragma: no cover
    main()
