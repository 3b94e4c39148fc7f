"""The words of an answer that answer the question, found and shown in bold (issue 12, item 4)."""

from __future__ import annotations

import json

import pytest

from bot.format import answer_markdown, format_answer
from index import Answer, Source
from index.answer.phrases import DATE, NAME, NUMBER, answer_phrase, kind_of

VETO = "Eleven of the council's fifteen members voted for the French draft, but Russia vetoed it."
TWEET = "Hospital in #Aleppo#Syria in 2 words: Bloody. Hell. — bint AbuBakr (@itsmenanice) October 6, 2016"
QUOTE = ("Jean-Marc Ayrault: “There are war crimes [being committed], it was the United Nations Secretary General "
         "who said it, and it’s obvious.")


def phrase(question: str, text: str) -> str | None:
    span = answer_phrase(question, text)
    return text[span[0]:span[1]] if span else None


@pytest.mark.parametrize("question, kind", [
    ("who vetoed the resolution?", NAME),
    ("Which country blocked the UN text?", NAME),
    ("How many members sit on the Security Council?", NUMBER),
    ("how much did it cost", NUMBER),
    ("When did Ayrault visit Moscow?", DATE),
    ("What year did the war start?", DATE),
    ("Why can't the ICC act on Syria?", None),
    ("What did Ayrault say?", None),
])
def test_kind_of_question(question, kind):
    assert kind_of(question) == kind


@pytest.mark.parametrize("question, text, expected", [
    # the name next to the question's own word ("vetoed"), not the other capitalised word ("French")
    ("who vetoed the resolution?", VETO, "Russia"),
    ("How many members sit on the Security Council?", VETO, "fifteen"),
    ("When did Ayrault visit Moscow?", "Ayrault was in Moscow last Thursday, then set off for Washington.",
     "last Thursday"),
    ("When was he due at the meeting?", "He will attend the meeting on Saturday October 8 in New York.",
     "Saturday October 8"),
    ("When did the airstrikes start?", "The airstrikes have gone on since the 22nd September, says the UN.",
     "22nd September"),
    ("How many people were killed?", "Officials said 1,200 people were killed and dozens hurt.", "1,200"),
    # a quoted tweet's author is its byline, not a word of the tweet
    ("Who posted the tweet describing an Aleppo hospital?", TWEET, "bint AbuBakr"),
    # a capitalised function word opening a quote is not a name
    ("Who is quoted saying the war crimes are obvious?", QUOTE, "Jean-Marc Ayrault"),
    # nor is a sentence's opening adverb, or a month (SQuAD misses before these were excluded)
    ("Who is the primary rival of the Harvard team?",
     "Today, Harvard fields top teams, such as the hockey team (with a strong rivalry against Cornell).", "Cornell"),
    ("Who was the main proponent of the cellular theory?",
     "According to the cellular theory of immunity, represented by Elie Metchnikoff, cells fight.", "Elie Metchnikoff"),
    ("Who did Dinwiddie order to address the French?",
     "To counter the French, in October 1753 Dinwiddie ordered Major George Washington to go.",
     "Major George Washington"),
])
def test_answer_phrase(question, text, expected):
    assert phrase(question, text) == expected


@pytest.mark.parametrize("question, text", [
    ("Why can't the ICC act on Syria?", "Syria is not a member state of the ICC."),  # no typed answer asked for
    ("Who vetoed the resolution?", "the resolution was vetoed late at night."),  # no name in the sentence
    ("Who is Ayrault?", "Ayrault spoke at length."),  # the only name is the one the question asks about
    ("How many died?", ""),
    # several names and none near a word of the question: marking one would be a guess
    ("Who won the match?", "Paris and Lyon drew, said Marseille."),
])
def test_no_phrase_when_none_is_clear(question, text):
    assert answer_phrase(question, text) is None


def test_engine_marks_the_phrase(real_engine):
    ans = real_engine.ask("who vetoed the resolution?")
    assert not ans.abstained and ans.phrase_text == "Russia"
    assert ans.answer[ans.phrase[0]:ans.phrase[1]] == "Russia"
    assert ans.to_dict()["phrase"] == {"start": ans.phrase[0], "end": ans.phrase[1], "text": "Russia"}
    assert real_engine.ask("why can't the ICC act on Syria?").phrase is None


def _answer(text: str, span: tuple[int, int] | None, sources: list[Source] | None = None) -> Answer:
    src = Source(text=text, title="T", doc_id="d", score=0.8, start=0, end=len(text), chunk_id=0)
    return Answer("Who vetoed the resolution?", text, False, [src] if sources is None else sources, 0.7, 12.0,
                  phrase=span)


def test_embed_shows_the_phrase_in_bold():
    text = "Eleven voted for it,   but Russia vetoed it."
    a = text.index("Russia")
    desc = format_answer(_answer(text, (a, a + len("Russia")))).embed["description"]
    assert desc == "Eleven voted for it, but **Russia** vetoed it."


def test_embed_escapes_the_articles_own_markdown():
    text = "Russia_Today said *nothing* about it."
    md = answer_markdown(_answer(text, (0, 12)))
    assert md == "**Russia\\_Today** said \\*nothing\\* about it."
    assert answer_markdown(_answer(text, None)) == "Russia\\_Today said \\*nothing\\* about it."


def test_embed_never_leaves_bold_open_when_cut():
    text = "word " * 700 + "Russia vetoed it."
    a = text.index("Russia")
    desc = format_answer(_answer(text, (a, a + 6))).embed["description"]
    assert "**" not in desc


def test_cli_bold_on_a_terminal_plain_in_a_pipe(article_corpus, tmp_path):
    """click.echo keeps the bold for a terminal (color=True stands for one) and strips it for pipes."""
    from click.testing import CliRunner

    from bot.cli import cli
    from index import DEFAULT_MODEL

    env_file = tmp_path / "empty.env"
    env_file.write_text("", encoding="utf-8")
    argv = ["--env-file", str(env_file), "ask", "--corpus", str(article_corpus.corpus), "--index",
            str(article_corpus.index), "--model", DEFAULT_MODEL, "who vetoed the resolution?"]
    runner = CliRunner()
    terminal = runner.invoke(cli, argv, obj={}, color=True, catch_exceptions=False)
    assert terminal.exit_code == 0 and "\x1b[1mRussia\x1b[22m vetoed it" in terminal.stdout
    piped = runner.invoke(cli, argv, obj={}, catch_exceptions=False)
    assert piped.exit_code == 0 and "\x1b[" not in piped.stdout and "Russia vetoed it" in piped.stdout
    as_json = json.loads(runner.invoke(cli, [*argv[:-1], "--json", argv[-1]], obj={}).stdout)
    assert as_json["phrase"]["text"] == "Russia"


def test_embed_squeezed_to_fit_drops_the_bold_rather_than_cut_it():
    """Five long sources push the embed past 6,000 characters, so the description is cut to fit: the cut
    must not leave a '**' open (the answer alone fits its own budget, so only the squeeze cuts it)."""
    text = "Russia " + "vetoed it again and again. " * 50
    sources = [Source(text="x " * 600, title=f"Source {n} " + "t" * 200, doc_id=f"d{n}", score=0.8, start=0,
                      end=1200, chunk_id=n) for n in range(5)]
    desc = format_answer(_answer(text, (0, len(text) - 10), sources)).embed["description"]
    assert len(desc) < len(text) and "**" not in desc


def test_phrase_finding_is_linear_in_the_answers_length():
    """A 1.2 MB answer (a runaway model) with thousands of candidates and anchors: seconds, not hours."""
    import time

    text = "The attack on the market killed 12 people, officials said on Monday. " * 18000
    assert len(text) > 1_200_000
    started = time.monotonic()
    span = answer_phrase("How many people were killed in the attack?", text)
    elapsed = time.monotonic() - started
    assert span is not None and text[span[0]:span[1]] == "12"
    assert elapsed < 15, f"{elapsed:.1f} s"
