"""Herald on Discord with a language model (issue 9, item 5): streamed answers and follow-ups, against the
fake Discord (tests/fakes/discord/) and the fake OpenAI-compatible server (tests/fakes/llm_server.py).

The engine is the real one over the seed article, indexed with the fast ``test-hash`` embedder; only the
model's server is fake. A streamed answer must show while it is written (one message, updated at most
once a second as Discord receives the requests) and end as the usual embed; a reply to an answer, or a
question in a thread started from one, must reach ``Engine.ask`` with the earlier turns.
"""

from __future__ import annotations

from typing import Any

from bot.discord_bot.streaming import WRITING_NOTE
from bot.format import CITED_MARK, clean_inline, plain_text
from bot.messages import FALLBACK_NOTES
from bot_fixtures import *  # noqa: F403 - fixtures
from bot_fixtures import StubEngine, embed_of, mention, replies_to
from fakes.discord import FakeChannel
from fakes.llm_server import fake_llm_server
from index import Answer, EngineConfig, LLMSettings, Source, Turn, open_engine
from index.answer.llm import REWRITE_PROMPT

QUESTION = "Who vetoed the resolution?"
# Twenty pieces, 0.15 s apart: the model writes for about three seconds, so several previews are due.
SLOW_REPLY = ("Russia vetoed the French draft resolution on Aleppo in the Security Council, blocking a call "
              "to halt the bombing of the city [1].")


def llm_settings(url: str) -> LLMSettings:
    return LLMSettings(url=url, model="fake-model", timeout=5.0)


def engine_for(paths, llm: LLMSettings | None = None):
    """The real engine over the article (test-hash embedder), answering with the model when ``llm`` is given."""
    config = EngineConfig(corpus=paths.corpus, index_dir=paths.index, model="test-hash",
                          answerer="llm" if llm else "extractive",
                          answerer_options={"llm": llm} if llm else {})
    return open_engine(config)


class Recording:
    """The engine, recording what each question came with (its history, and whether it could stream)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.calls: list[tuple[str, tuple[Turn, ...], bool]] = []
        self.answers: list[Answer] = []

    def ask(self, question: str, history: Any = (), on_token: Any = None, collections: Any = None) -> Answer:
        self.calls.append((question, tuple(history), on_token is not None))
        ans = self.engine.ask(question, history, on_token=on_token, collections=collections)
        self.answers.append(ans)
        return ans

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


def final(q: dict) -> Any:
    """Predicate: Herald's reply to ``q`` in its final form (the embed, not a preview)."""
    replies = replies_to(q)
    return lambda m: replies(m) and bool(m.get("embeds"))


async def remembered(fake: Any, bot: Any, answer: dict | int) -> tuple[Turn, ...]:
    """The turns Herald keeps for its answer message (it stores them just after the message is written, so
    a test that replies at once waits for that; a person cannot reply that fast)."""
    mid = int(answer["id"]) if isinstance(answer, dict) else answer
    return await fake.wait_until(lambda: bot.conversations.get("message", mid), description="the turn remembered")


def gaps(requests: list) -> list[float]:
    times = sorted(r.timestamp for r in requests)
    return [b - a for a, b in zip(times, times[1:])]


def assert_previews_then_answer(updates: list, min_previews: int = 2) -> None:
    """``updates``: every request that wrote the reply, in order. All but the last are previews (text so
    far, no embed) at least a second apart as the fake received them; the last is the embed."""
    assert len(updates) >= min_previews + 1, [u.summary() for u in updates]
    *previews, last = sorted(updates, key=lambda r: r.timestamp)
    for p in previews:
        assert not p.json.get("embeds") and WRITING_NOTE in p.json["content"], p.summary()
        assert p.json["content"].startswith("Russia")
    assert all(g >= 0.99 for g in gaps(previews)), f"previews less than a second apart: {gaps(previews)}"
    texts = [p.json["content"] for p in previews]
    assert len(texts[-1]) > len(texts[0]), "later previews show more of the answer"
    assert last.json["embeds"] and last.json.get("content") is None, last.summary()  # the preview text is cleared


# ----------------------------------------------------------------------------------- streaming


async def test_a_streamed_answer_is_previewed_in_the_reply_then_replaced_by_the_embed(
        fake, start_herald, built_index, fake_embedder):
    with fake_llm_server(reply=SLOW_REPLY, chunk_delay=0.15) as llm:
        settings = llm_settings(llm.url)
        bot = await start_herald(engine_for(built_index, settings), answerer="llm", llm=settings)
        q = await fake.send_message(mention(fake, QUESTION))
        reply = await fake.wait_for_bot_message(final(q), timeout=20)
    cid = fake.config.channel_id
    posts = fake.find_requests(method="POST", path=rf"/channels/{cid}/messages")
    assert len(posts) == 1 and str(posts[0].json["message_reference"]["message_id"]) == q["id"]  # one message
    assert posts[0].json["allowed_mentions"]["parse"] == [] and posts[0].json["content"].startswith("Russia")
    edits = fake.find_requests(method="PATCH", path=rf"/channels/{cid}/messages/{reply['id']}")
    assert_previews_then_answer(posts + edits)
    e = embed_of(reply)
    # the name that answers "who" is in bold (index.phrases)
    assert reply["content"] == "" and e["description"].startswith("**Russia** vetoed the French draft")
    assert e["fields"][0]["name"].startswith("[1] ") and e["fields"][0]["name"].endswith(CITED_MARK)
    assert not any(f["name"].endswith(CITED_MARK) for f in e["fields"][1:])
    assert "written by fake-model" in e["footer"]["text"]
    assert len(reply["components"]) == 1  # the 👍/👎 buttons come with the final answer
    assert [m for m in fake.bot_messages if replies_to(q)(m)] == [reply]
    assert len(llm.requests) == 1 and llm.requests[0]["stream"] is True
    # the conversation remembers the words, not their Markdown
    assert await remembered(fake, bot, reply) == (Turn(QUESTION, plain_text(e["description"])),)


async def test_a_streamed_slash_answer_edits_the_deferred_response(fake, start_herald, built_index, fake_embedder):
    with fake_llm_server(reply=SLOW_REPLY, chunk_delay=0.15) as llm:
        settings = llm_settings(llm.url)
        await start_herald(engine_for(built_index, settings), answerer="llm", llm=settings)
        inter = await fake.send_slash_command("ask", {"question": QUESTION})
        assert (await fake.wait_for_callback(inter)).json["type"] == 5
        hook = rf"/webhooks/{fake.config.application_id}/{inter.token}"
        await fake.wait_until(lambda: (fake.original_message(inter) or {}).get("embeds"), timeout=20,
                              description="the final answer")
    edits = fake.find_requests(method="PATCH", path=hook + r"/messages/@original")
    assert_previews_then_answer(edits)
    assert not fake.find_requests(method="POST", path=hook)  # no second message: the preview became the answer
    original = fake.original_message(inter)
    assert original["content"] == "" and original["embeds"][0]["description"].startswith("**Russia** vetoed")
    assert len(original["components"]) == 1


async def test_a_failed_model_gives_the_extractive_answer_with_a_note(fake, start_herald, built_index, fake_embedder):
    with fake_llm_server(mode="500") as llm:
        settings = llm_settings(llm.url)
        engine = Recording(engine_for(built_index, settings))
        await start_herald(engine, answerer="llm", llm=settings)
        q = await fake.send_message(mention(fake, QUESTION))
        reply = await fake.wait_for_bot_message(replies_to(q), timeout=20)
    assert llm.requests and engine.calls[0][2]  # the model was asked, streaming
    ans = engine.answers[0]
    assert ans.fallback == "http_error" and ans.answered_by == "extractive"
    e = embed_of(reply)
    assert e["description"].startswith(clean_inline(ans.answer)[:60])
    assert f"Quoted from the articles instead: {FALLBACK_NOTES['http_error']}." in e["description"]
    assert not any(f["name"].endswith(CITED_MARK) for f in e["fields"])
    assert "written by" not in e["footer"]["text"]
    # Nothing streamed, so nothing was previewed: one message, never edited.
    assert not fake.find_requests(method="PATCH", path=r"/channels/\d+/messages/\d+")


async def test_a_question_that_fails_mid_stream_leaves_no_half_answer(fake, start_herald):
    def boom(question: str) -> Answer:
        raise RuntimeError("the engine broke")

    await start_herald(StubEngine(boom, tokens=["Russia ", "vetoed "], token_delay=0.05), answerer="llm")
    q = await fake.send_message(mention(fake, QUESTION))
    notice = await fake.wait_for_bot_message(lambda m: replies_to(q)(m) and "went wrong" in m["content"])
    preview = next(m for m in fake.bot_messages if replies_to(q)(m) and m is not notice)
    assert int(preview["id"]) in fake.deleted_message_ids


# ----------------------------------------------------------------------------------- follow-ups


async def test_a_reply_to_an_answer_sends_the_earlier_turn_to_the_model(fake, start_herald, built_index,
                                                                        fake_embedder):
    def reply_for(body: dict) -> str:
        if body["messages"][0]["content"] == REWRITE_PROMPT:
            return "Why did Russia veto the resolution on Aleppo?"
        if len(body["messages"]) > 2:  # asked with the earlier turn: the follow-up
            return "Russia said the draft was one-sided [1]."
        return "Russia vetoed the resolution [1]."

    with fake_llm_server(reply_for=reply_for) as llm:
        settings = llm_settings(llm.url)
        engine = Recording(engine_for(built_index, settings))
        bot = await start_herald(engine, answerer="llm", llm=settings)
        q1 = await fake.send_message(mention(fake, QUESTION))
        a1 = await fake.wait_for_bot_message(final(q1), timeout=20)
        await remembered(fake, bot, a1)
        # A reply pings the author replied to: that mention is how its text reaches Herald.
        q2 = await fake.send_message("And why did they do it?", reply_to=a1, mentions=[fake.config.bot])
        a2 = await fake.wait_for_bot_message(final(q2), timeout=20)
    assert engine.calls[1][:2] == ("And why did they do it?", (Turn(QUESTION, "Russia vetoed the resolution [1]."),))
    asked = [r for r in llm.requests if r["messages"][0]["content"] != REWRITE_PROMPT][-1]["messages"]
    assert {"role": "user", "content": QUESTION} in asked
    assert {"role": "assistant", "content": "Russia vetoed the resolution [1]."} in asked
    rewrite = next(r for r in llm.requests if r["messages"][0]["content"] == REWRITE_PROMPT)
    assert QUESTION in rewrite["messages"][-1]["content"]
    assert engine.answers[1].retrieval_query == "Why did Russia veto the resolution on Aleppo?"
    assert embed_of(a2)["description"].startswith("Russia said the draft was one-sided")


async def test_follow_ups_without_a_model_reach_the_engine_with_the_earlier_turns(fake, start_herald, built_index,
                                                                                  fake_embedder):
    engine = Recording(engine_for(built_index))
    bot = await start_herald(engine)
    assert bot.history_turns >= 1 and not bot.streams
    q1 = await fake.send_message(mention(fake, QUESTION))
    a1 = await fake.wait_for_bot_message(replies_to(q1))
    first = Turn(QUESTION, engine.answers[0].answer)
    assert await remembered(fake, bot, a1) == (first,)
    assert engine.calls[0] == (QUESTION, (), False)  # a new question: no history, nothing to stream

    # 1. A reply to the answer: the library adds the previous question's words to what it searches.
    q2 = await fake.send_message("and why?", reply_to=a1, mentions=[fake.config.bot])
    a2 = await fake.wait_for_bot_message(replies_to(q2))
    await remembered(fake, bot, a2)
    assert engine.calls[1] == ("and why?", (first,), False)
    assert "vetoed" in engine.answers[1].retrieval_query and "resolution" in engine.answers[1].retrieval_query
    second = Turn("and why?", "" if engine.answers[1].abstained else engine.answers[1].answer)

    # 2. A thread started from that answer (Discord gives it the message's id) continues the conversation.
    thread = FakeChannel(int(a2["id"]), "and why?", type=11, parent_id=fake.config.channel_id)
    fake.threads[thread.id] = thread
    await fake.dispatch("THREAD_CREATE", {**fake.channel_payload(thread), "newly_created": True})
    q3 = await fake.send_message(mention(fake, "and when?"), channel_id=thread.id)
    await remembered(fake, bot, await fake.wait_for_bot_message(replies_to(q3)))
    assert engine.calls[2][:2] == ("and when?", (first, second))
    q4 = await fake.send_message(mention(fake, "and where?"), channel_id=thread.id)
    await fake.wait_for_bot_message(replies_to(q4))
    assert [t.question for t in engine.calls[3][1]] == [QUESTION, "and why?", "and when?"]

    # 3. After a restart (memory gone) a reply still continues the answer, read back from its embed.
    bot.conversations.clear()
    q5 = await fake.send_message("and why?", reply_to=a1, mentions=[fake.config.bot])
    await fake.wait_for_bot_message(replies_to(q5))
    # read back as the words, without the bold phrase's Markdown
    assert engine.calls[4][1] == (Turn(QUESTION, plain_text(embed_of(a1)["description"])),)
    assert "**" not in engine.calls[4][1][0].answer
    assert engine.calls[4][1][0].answer.startswith(clean_inline(first.answer)[:60])

    # 4. A question that replies to nothing of Herald's starts afresh; answers are one message, never edited.
    q6 = await fake.send_message(mention(fake, "Who is the French foreign minister?"), reply_to=q1)
    await fake.wait_for_bot_message(replies_to(q6))
    assert engine.calls[5][1] == ()
    assert not fake.find_requests(method="PATCH", path=r"/channels/\d+/messages/\d+")


async def test_a_follow_up_with_a_stub_engine_records_the_history(fake, start_herald):
    def make(q: str) -> Answer:
        src = Source("Russia vetoed the French resolution.", "Stub article", "a", 0.9, 0, 10, None, 0)
        return Answer(q, "Russia vetoed it.", False, [src], 0.8, 5.0)

    engine = StubEngine(make)
    bot = await start_herald(engine)
    inter = await fake.send_slash_command("ask", {"question": QUESTION})
    follow = await fake.wait_for_followup(inter)
    answer_id = int(follow.response["id"])  # sent with wait=True, so the message id is known
    await remembered(fake, bot, answer_id)
    q = await fake.send_message("and why?", reply_to=answer_id, mentions=[fake.config.bot])
    await fake.wait_for_bot_message(replies_to(q))
    assert engine.histories == [(), (Turn(QUESTION, "Russia vetoed it."),)]
