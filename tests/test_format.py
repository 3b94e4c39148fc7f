"""The answer message, without Discord: every limit, abstention, mentions, links."""

from __future__ import annotations

import pytest

from bot.format import (
    CITED_MARK,
    CONTENT_LIMIT,
    DESCRIPTION_LIMIT,
    ELLIPSIS,
    EMBED_TOTAL_LIMIT,
    FIELD_NAME_LIMIT,
    FIELD_VALUE_LIMIT,
    MAX_FIELDS,
    TITLE_LIMIT,
    check_limits,
    defuse_mentions,
    dlen,
    embed_total,
    fit_content,
    format_answer,
    format_notice,
    format_sources,
    truncate,
)
from bot.messages import ABSTAIN_MESSAGE, TENTATIVE_MESSAGE
from index import Answer, Source

SENTENCE = "Russia vetoed the French resolution on Aleppo at the Security Council. "


def src(text: str = SENTENCE, title: str = "Frosty Franco-Russian relations", url: str | None = None,
        n: int = 0) -> Source:
    return Source(text=text, title=title, doc_id=f"doc-{n}", score=0.8, start=0, end=len(text), url=url, chunk_id=n)


def answer(text: str = "Russia vetoed it.", sources: list[Source] | None = None, abstained: bool = False,
           question: str = "Who vetoed the resolution?", note: str = "", tentative: bool = False) -> Answer:
    return Answer(question, "" if abstained else text, abstained, [src()] if sources is None else sources,
                  0.71, 123.4, english=not note, tentative=tentative)


# ----------------------------------------------------------------------------------------- truncate

def test_truncate_keeps_short_text():
    assert truncate("short", 10) == "short"


def test_truncate_prefers_a_sentence_boundary():
    text = "First sentence here. Second sentence is long and goes on and on past the limit."
    out = truncate(text, 40)
    assert out == "First sentence here. " + ELLIPSIS
    assert dlen(out) <= 40


def test_truncate_falls_back_to_a_word_boundary():
    text = "one two three four five six seven eight nine ten eleven twelve"
    out = truncate(text, 30)
    assert dlen(out) <= 30 and out.endswith(ELLIPSIS)
    assert text.startswith(out[:-1]) and out[-2] != " " and text[len(out) - 1] == " "


def test_truncate_cuts_a_giant_token():
    out = truncate("x" * 5000, 100)
    assert dlen(out) == 100 and out.endswith(ELLIPSIS)


@pytest.mark.parametrize("limit", [1, 2, 3, 17, 256, 1024])
def test_truncate_never_exceeds_the_limit_even_with_astral_characters(limit):
    text = "\U0001F600 emoji " * 400
    assert dlen(truncate(text, limit)) <= limit


# ------------------------------------------------------------------------------------------ answers

def test_answer_embed_has_answer_numbered_sources_and_footer():
    msg = format_answer(answer(sources=[src(n=0), src(title="Second", n=1)]), elapsed_ms=1530)
    e = msg.embed
    assert e["description"] == "Russia vetoed it."
    assert e["title"] == "Who vetoed the resolution?"
    assert [f["name"] for f in e["fields"]] == ["[1] Frosty Franco-Russian relations", "[2] Second"]
    assert e["fields"][0]["value"].startswith("> Russia vetoed")
    assert "1.53 s" in e["footer"]["text"]
    assert check_limits(msg) == []


def test_a_model_answer_marks_the_sources_it_cites_and_names_the_model():
    ans = answer("Russia vetoed it [2].", sources=[src(n=0), src(title="T" * 400, n=1), src(title="Third", n=2)])
    ans.citations, ans.answered_by = [2], "llm:llama3.2:3b"
    e = format_answer(ans).embed
    names = [f["name"] for f in e["fields"]]
    assert names[0] == "[1] Frosty Franco-Russian relations" and names[2] == "[3] Third"
    assert names[1].startswith("[2] TTT") and names[1].endswith(CITED_MARK) and dlen(names[1]) <= FIELD_NAME_LIMIT
    assert e["footer"]["text"].endswith("written by llama3.2:3b from the articles")
    # A quoted (extractive) answer marks nothing and names no model.
    plain = format_answer(answer(sources=[src(n=0)])).embed
    assert not plain["fields"][0]["name"].endswith(CITED_MARK) and "written by" not in plain["footer"]["text"]


def test_url_is_wrapped_so_discord_adds_no_preview():
    msg = format_answer(answer(sources=[src(url="https://example.org/a?b=1")]))
    assert msg.embed["fields"][0]["value"].endswith("\n<https://example.org/a?b=1>")


def test_no_url_means_no_link_line():
    assert "<" not in format_answer(answer()).embed["fields"][0]["value"]


def test_a_3000_character_source_is_cut_to_fit_at_a_boundary():
    long_text = SENTENCE * 43  # ~3,000 characters
    assert len(long_text) >= 3000
    msg = format_answer(answer(sources=[src(long_text, url="https://example.org/x")]))
    value = msg.embed["fields"][0]["value"]
    assert dlen(value) <= FIELD_VALUE_LIMIT
    assert value.endswith("<https://example.org/x>")  # the link survives the cut
    excerpt = value.splitlines()[0]
    assert excerpt.endswith(". " + ELLIPSIS)  # cut after a whole sentence
    assert check_limits(msg) == []


def test_a_3000_character_answer_is_cut_to_fit():
    msg = format_answer(answer(text=SENTENCE * 60))
    assert dlen(msg.embed["description"]) <= DESCRIPTION_LIMIT
    assert msg.embed["description"].endswith(ELLIPSIS)
    assert check_limits(msg) == []


def test_long_title_and_question_fit():
    msg = format_answer(answer(question="why " * 300))
    assert dlen(msg.embed["title"]) <= TITLE_LIMIT and msg.embed["title"].endswith(ELLIPSIS)


def test_at_most_25_fields():
    sources = [src(n=i, title=f"Article {i}") for i in range(40)]
    msg = format_answer(answer(sources=sources))
    assert len(msg.embed["fields"]) == MAX_FIELDS
    assert check_limits(msg) == []


def test_the_6000_total_holds_with_many_long_sources():
    sources = [src(SENTENCE * 43, title="T" * 300, url=f"https://example.org/{i}", n=i) for i in range(25)]
    msg = format_answer(answer(text=SENTENCE * 100, question="q" * 400, sources=sources))
    assert embed_total(msg.embed) <= EMBED_TOTAL_LIMIT
    assert check_limits(msg) == []
    # Each source still shows something readable, not a stub.
    for f in msg.embed["fields"]:
        assert dlen(f["value"]) >= 40


def test_abstention_is_friendly_and_offers_the_closest_passage():
    msg = format_answer(answer(abstained=True, question="What is the capital of Peru?"))
    e = msg.embed
    assert e["description"].startswith(ABSTAIN_MESSAGE)
    assert "closest passage" in e["description"].lower()
    assert len(e["fields"]) == 1 and e["fields"][0]["name"].startswith("Closest passage")
    assert e["fields"][0]["value"].startswith("> Russia vetoed")
    assert "Searched in" in e["footer"]["text"]
    assert check_limits(msg) == []


def test_abstention_without_any_passage():
    msg = format_answer(answer(abstained=True, sources=[]))
    assert msg.embed["description"].startswith(ABSTAIN_MESSAGE) and "fields" not in msg.embed


def test_note_is_shown():
    msg = format_answer(answer(note="Herald reads questions in English best; try asking in English."))
    assert "English" in msg.embed["description"]


# ----------------------------------------------------------------------------------------- mentions

def test_allowed_mentions_parse_nothing():
    for msg in (format_answer(answer()), format_notice("hi"), format_sources([("A", None)])):
        assert msg.allowed_mentions["parse"] == []
        assert msg.allowed_mentions["replied_user"] is False
        assert not msg.allowed_mentions.get("users") and not msg.allowed_mentions.get("roles")


def test_mentions_in_question_and_article_are_defused():
    q = "@everyone @here <@&123456789012345678> <@!123456789012345678> who vetoed?"
    msg = format_answer(answer(question=q, text="@everyone Russia",
                               sources=[src("Ping <@123456789012345678> and @here now.")]))
    text = " ".join([msg.embed["title"], msg.embed["description"], msg.embed["fields"][0]["value"]])
    for raw in ("@everyone", "@here", "<@&1", "<@!1", "<@1"):
        assert raw not in text
    assert "@\u200beveryone" in text


def test_defuse_mentions_leaves_ordinary_at_signs():
    assert defuse_mentions("mail me at a@b.org") == "mail me at a@b.org"


def test_content_fits_2000():
    assert dlen(fit_content("word " * 1000)) <= CONTENT_LIMIT
    assert dlen(format_notice("x" * 5000).content) <= CONTENT_LIMIT


def test_sources_list_fits_and_counts_the_rest():
    items = [(f"Article number {i} with a rather long title to fill the space", f"https://e.org/{i}")
             for i in range(200)]
    msg = format_sources(items)
    assert dlen(msg.content) <= CONTENT_LIMIT
    assert msg.content.startswith("I answer from 200 articles:")
    assert "more." in msg.content.splitlines()[-1]
    assert "<https://e.org/0>" in msg.content


def test_sources_list_empty():
    assert "No articles" in format_sources([]).content


def test_a_tentative_answer_says_so_before_the_answer_and_in_the_footer():
    sure = format_answer(answer()).embed
    unsure = format_answer(answer(tentative=True)).embed
    assert unsure["description"].startswith(f"*{TENTATIVE_MESSAGE}*\n") and "Russia vetoed it." in unsure["description"]
    assert "low confidence 0.71" in unsure["footer"]["text"] and unsure["color"] != sure["color"]
    assert TENTATIVE_MESSAGE not in sure["description"] and "low confidence" not in sure["footer"]["text"]
    assert not check_limits(format_answer(answer(text="x" * 5000, tentative=True)))


def test_poll_intervals_read_as_people_say_them() -> None:
    from bot.discord_bot.cogs.feeds import every

    assert [every(s) for s in (0.2, 20, 900, 3600, 7200, 5400 * 2)] == \
        ["every 0 s", "every 20 s", "every 15 min", "every 60 min", "every 2 h", "every 3 h"]
