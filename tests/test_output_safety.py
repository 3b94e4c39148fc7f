"""What Herald shows can no longer deceive (issue 17, items 4, 5 and 10): text from pages, files and the
model is neutralised for Discord (no masked links, no pings, no Markdown of its own), stripped of control
sequences for the terminal, and an HERALD_LLM_URL's credentials never reach a log line."""

from __future__ import annotations

import logging
import re

import pytest

from bot.discord_bot.streaming import preview_text
from bot.format import (
    answer_markdown,
    fit_content,
    format_answer,
    format_sources,
    neutralise,
    plain_text,
    terminal_safe,
)
from index import Answer, Source

# Every one of these came from a page, a file or a model; none may render as a link, a ping or formatting.
HOSTILE = [
    "[Click to verify](https://evil.example/phish)",
    "[Click](HTTPS://evil.example/phish)",
    "[x](hTtP://evil.example)",
    "[x](<https://evil.example/angle>)",
    "[x]( https://evil.example/space )",
    "[nested [x]](https://evil.example/nested)",
    "see \\[x](https://evil.example/escaped-bracket)",
    "@everyone look", "@here now", "<@123456789012345678>", "<@!123456789012345678>",
    "<@&123456789012345678>", "<#123456789012345678>",
    "**bold** __under__ ||spoiler|| ~~strike~~ `code` ```block```",
    "# Heading", "## Heading", "> quote", "-# subtext", ">>> block quote",
]

_LINK_RE = re.compile(r"(?<!\\)\[(?:[^\[\]]|\\[\[\]])*(?<!\\)\]\(", re.S)  # an unescaped ...](: a masked link
_MENTION_RE = re.compile(r"@(everyone|here)\b|<[@#][!&]?\d+>")
_PING_RE = re.compile(r"@(everyone|here)\b|<@[!&]?\d+>")
_FORMAT_RE = re.compile(r"(?<!\\)(\*\*|__|\|\||~~|`)")
_LINE_START_RE = re.compile(r"^(?:#|-#|>)")  # a heading, subtext or quote inside the text


def assert_inert(text: str) -> None:
    assert not _LINK_RE.search(text), text
    assert not _MENTION_RE.search(text), text
    assert not _FORMAT_RE.search(text), text
    for line in text.splitlines():
        assert not _LINE_START_RE.match(line.removeprefix("> ")), text  # "> ": Herald's own quote marker


def evil_source(text: str, n: int = 0) -> Source:
    return Source(text=text, title=text, doc_id=f"d{n}", score=0.9, start=0, end=len(text),
                  url="https://news.example/a", outlet=text, date="2016-10-11", also_reported_by=[text])


def evil_answer(text: str, **kw) -> Answer:
    """The asker's own question is not from a page (it is shown as typed, pings defused: test_format)."""
    return Answer("Who vetoed the resolution?", text, False, [evil_source(text)], 0.8, 10.0, **kw)


def embed_texts(embed: dict) -> list[str]:
    parts = [embed.get("title", ""), embed.get("description", ""), embed.get("footer", {}).get("text", "")]
    for f in embed.get("fields", []):
        parts += [f["name"], f["value"]]
    return parts


@pytest.mark.parametrize("text", HOSTILE)
def test_an_answer_and_its_sources_show_hostile_text_as_plain_text(text):
    for ans in (evil_answer(text), evil_answer(text, citations=[1], answered_by="llm:m")):
        for part in embed_texts(format_answer(ans).embed):
            assert_inert(part)


@pytest.mark.parametrize("text", HOSTILE)
def test_the_abstain_hint_shows_hostile_text_as_plain_text(text):
    ans = Answer("Who vetoed the resolution?", "", True, [evil_source(text)], 0.3, 10.0)
    assert ans.hint is not None
    embed = format_answer(ans).embed
    assert "evil" not in embed["description"]  # Herald's own words (with its own `/sources`)
    for part in embed_texts({"fields": embed["fields"]}):
        assert_inert(part)


@pytest.mark.parametrize("text", HOSTILE)
def test_the_sources_list_shows_hostile_titles_and_outlets_as_plain_text(text):
    content = format_sources([(text, "https://news.example/a", text), (text, None)]).content
    body = content.split("\n", 1)[1]  # after Herald's own head line
    assert_inert(body)


@pytest.mark.parametrize("text", HOSTILE)
def test_the_streamed_preview_shows_hostile_model_text_as_plain_text(text):
    shown = preview_text(f"Russia vetoed it [1]. {text}")
    assert not _LINK_RE.search(shown) and not _MENTION_RE.search(shown)
    assert not _FORMAT_RE.search(shown.rsplit("\n", 1)[0])  # the writing note is Herald's own italics


@pytest.mark.parametrize("text", HOSTILE)
def test_a_notice_never_carries_a_masked_link_or_a_ping(text):
    shown = fit_content(f"Added: {text} (News, 11 Oct 2016)")
    assert not _LINK_RE.search(shown) and not _PING_RE.search(shown)  # <#channel> is Herald's own in notices


@pytest.mark.parametrize("url", [
    "https://news.example/a>[click](https://evil.example)", "javascript:alert(1)", "HTTPS://news.example/\x1b[31m",
    "https://news.example/a b",
])
def test_a_source_url_that_could_break_out_of_its_angle_brackets_is_left_out(url):
    src = Source("Russia vetoed it.", "Title", "d", 0.9, 0, 10, url=url)
    value = format_answer(Answer("Who?", "Russia vetoed it.", False, [src], 0.8, 1.0)).embed["fields"][0]["value"]
    listing = format_sources([("Title", url)]).content
    for text in (value, listing):
        assert "evil.example" not in text and "javascript" not in text and "\x1b" not in text


def test_credentials_in_a_source_url_are_not_shown():
    src = Source("Russia vetoed it.", "Title", "d", 0.9, 0, 10, url="https://user:s3cret@news.example/a")
    value = format_answer(Answer("Who?", "Russia vetoed it.", False, [src], 0.8, 1.0)).embed["fields"][0]["value"]
    listing = format_sources([("Title", "https://user:s3cret@news.example/a")]).content
    for text in (value, listing):
        assert "s3cret" not in text and "<https://news.example/a>" in text


def test_herald_keeps_its_own_markdown():
    src = Source("Russia vetoed the resolution.", "Veto", "d", 0.9, 0, 10, url="https://news.example/a",
                 outlet="Euronews", date="2016-10-11")
    ans = Answer("Who vetoed the resolution?", "Russia vetoed the resolution [1].", False, [src], 0.8, 1.0,
                 phrase=(0, 6), citations=[1], answered_by="llm:m")
    e = format_answer(ans).embed
    assert e["description"].startswith("**Russia** vetoed the resolution \\[1\\].")
    value = e["fields"][0]["value"]
    assert value.startswith("> *Euronews, 11 Oct 2016*\n") and value.endswith("\n<https://news.example/a>")


@pytest.mark.parametrize("text", HOSTILE + ["a*b_c \\ [1] <x> #2 ~ | `"])
def test_an_answer_reads_back_as_written(text):
    """Follow-ups and feedback read an answer back from the embed: the escapes must come off again."""
    ans = Answer("Who?", text, False, [], 0.8, 1.0)
    folded = " ".join(text.split()).replace("@everyone", "@\u200beveryone").replace("@here", "@\u200bhere")
    assert plain_text(answer_markdown(ans)).replace("<@\u200b", "<@") == folded.replace("<@\u200b", "<@")


def test_control_characters_never_reach_discord():
    ans = evil_answer("Russia\x00 vetoed\x1b[31m it\u202e \x07[1].", citations=[1], answered_by="llm:m")
    for part in embed_texts(format_answer(ans).embed):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", part), part
    assert neutralise("a\x00b") == "ab"


# -------------------------------------------------------------------------------------- terminal

TERMINAL_HOSTILE = ("Title\x1b]0;pwned\x07 \x1b[2J\x1b[31mred\x9b31m \x1bPdcs\x1b\\ bell\x07 "
                    "back\x08 nul\x00 del\x7f end")
FILE_HOSTILE = TERMINAL_HOSTILE.replace("\x00", "")  # a NUL would make it a binary file


def test_terminal_safe_strips_every_control_sequence_and_keeps_lines():
    out = terminal_safe(TERMINAL_HOSTILE + "\nnext\tline")
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", out), repr(out)
    assert "pwned" not in out and "dcs" not in out and out.endswith("\nnext\tline")
    assert "Title" in out and "red" in out and "end" in out


def _no_foreign_controls(out: str) -> None:
    """Only Herald's own bold (ESC[1m ... ESC[22m) may remain; click strips that too when not on a terminal."""
    rest = out.replace("\x1b[1m", "").replace("\x1b[22m", "")
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", rest), repr(out)


@pytest.fixture
def hostile_index(article_corpus, fake_embedder, invoke):
    """The seed article plus one whose name, title and text carry terminal escapes."""
    name = "veto\x1b]0;pwned\x07\x9b2J.md"
    (article_corpus.corpus / name).write_text(
        f"# {FILE_HOSTILE}\n\nRussia vetoed\x1b]8;;https://evil.example\x07 the resolution\x1b]8;;\x07 on "
        "Aleppo at the Security Council.\x07 The veto came after a long debate.\x1b[2J\n", encoding="utf-8")
    r = invoke("build", *opts(article_corpus))
    assert r.exit_code == 0, r.output
    _no_foreign_controls(r.output)
    return article_corpus


def opts(paths) -> list[str]:
    return ["--corpus", str(paths.corpus), "--index", str(paths.index), "--model", "test-hash"]


def test_ask_and_info_print_no_escape_sequences_from_files(hostile_index, invoke):
    r = invoke("ask", *opts(hostile_index), "Who vetoed the resolution on Aleppo?")
    assert r.exit_code == 0, r.output
    assert "Sources" in r.stdout
    _no_foreign_controls(r.output)
    r = invoke("info", *opts(hostile_index))
    assert r.exit_code == 0, r.output
    assert "pwned" not in r.stdout and "Title" in r.stdout
    _no_foreign_controls(r.output)


def test_a_models_escape_sequences_are_not_printed(built_index, fake_embedder, invoke):
    from fakes.llm_server import fake_llm_server

    reply = "Russia\x1b]52;c;ZXZpbA==\x07 vetoed\x9b2J it\x1b[2J [1].\x07"
    with fake_llm_server(reply=reply) as fake:
        r = invoke("ask", *opts(built_index), "Who vetoed the resolution?",
                   env={"HERALD_LLM_URL": fake.url, "HERALD_LLM_MODEL": "m\x1b]0;x\x07"})
    assert r.exit_code == 0, r.output
    assert "Russia" in r.stdout and "vetoed" in r.stdout
    _no_foreign_controls(r.output)


# ---------------------------------------------------------------------------- URL credentials


def test_llm_url_credentials_never_reach_the_log(built_index, fake_embedder, invoke, caplog):
    from fakes.llm_server import fake_llm_server

    with fake_llm_server(reply="Russia vetoed it [1].") as fake:
        url = fake.url.replace("http://", "http://herald:s3cretpw@")
        with caplog.at_level(logging.DEBUG):
            r = invoke("-v", "ask", *opts(built_index), "Who vetoed the resolution?",
                       env={"HERALD_LLM_URL": url, "HERALD_LLM_MODEL": "m"})
    assert r.exit_code == 0, r.output
    assert fake.requests, "the model was asked"
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_herald", False))
    shown = [handler.format(rec) for rec in caplog.records if handler.filter(rec)]
    assert any("127.0.0.1" in line for line in shown), "the request is logged under -v"
    assert not any("s3cretpw" in line for line in shown), [line for line in shown if "s3cretpw" in line]
    assert "s3cretpw" not in r.output


def test_llm_settings_repr_hides_url_credentials():
    from index import LLMSettings

    s = LLMSettings(url="http://herald:s3cretpw@127.0.0.1:1/v1", model="m")
    assert "s3cretpw" not in repr(s) and "127.0.0.1:1/v1" in repr(s)
