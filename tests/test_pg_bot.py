"""The bot over the index in PostgreSQL (issue 19): an article another process adds is answered at the next
mention, without a restart; several bot processes shard one Discord application, and only shard 0 polls
feeds and sweeps collections. Against the fake Discord and a real PostgreSQL (conftest's ``pg_server``)."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("pgserver", reason="the PostgreSQL tests need pgserver (make test installs it)")
pytest.importorskip("psycopg", reason="the PostgreSQL tests need herald[postgres] (make test installs it)")

from test_collections import BRIDGE  # noqa: E402
from test_pg_engine import _other_process, folder_config  # noqa: E402

from bot_fixtures import *  # noqa: E402,F403 - fixtures
from bot_fixtures import StubEngine, embed_of, mention, replies_to  # noqa: E402
from index import open_engine  # noqa: E402

QUESTION = "How much did the Antofagasta harbour bridge repairs cost?"


async def _ask(fake, text: str) -> dict:
    q = await fake.send_message(mention(fake, text))
    return embed_of(await fake.wait_for_bot_message(replies_to(q), timeout=30))


async def test_the_bot_answers_an_article_another_process_added(fake, start_herald, article_corpus, database,
                                                                fake_embedder):
    config = replace(folder_config(article_corpus), database_url=database)
    engine = open_engine(config)
    await start_herald(engine, database_url=database, corpus_dir=article_corpus.corpus,
                       index_dir=article_corpus.index, model="test-hash")
    before = await _ask(fake, QUESTION)
    assert "Antofagasta" not in before["description"]
    (article_corpus.corpus / "bridge.md").write_text(BRIDGE.replace("Valparaiso", "Antofagasta"), encoding="utf-8")
    out, err = _other_process(article_corpus, database, ["base"]).communicate(timeout=120)
    assert out.split()[1] == "1", err  # the other process added one article
    after = await _ask(fake, QUESTION)  # the same bot, the same engine: no reload, no restart
    assert "Antofagasta" in after["description"]
    assert any("bridge" in f["name"].lower() or "Antofagasta" in f["value"] for f in after["fields"])


@pytest.mark.parametrize("shard, background", [(0, True), (1, False)])
async def test_a_shard_identifies_as_one_and_only_shard_0_polls(fake, start_herald, shard, background):
    stub = StubEngine(lambda q: None)
    bot = await start_herald(stub, shard_id=shard, shard_count=2, feeds=("http://127.0.0.1:9/feed.xml",),
                             feed_interval=3600.0)
    assert fake.identify_payloads[-1].get("shard") == [shard, 2]
    assert (bot.feed_watcher.task is not None) is background
    assert (bot.janitor.task is not None) is background
