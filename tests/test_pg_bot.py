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
from bot_fixtures import TOKEN, StubEngine, embed_of, mention, replies_to  # noqa: E402
from fakes.discord import FakeDiscordConfig  # noqa: E402
from fakes.discord.config import default_second_guild  # noqa: E402
from index import open_engine  # noqa: E402

QUESTION = "How much did the Antofagasta harbour bridge repairs cost?"


async def _ask(fake, text: str, guild=None) -> dict:
    where = {} if guild is None else {"guild_id": guild.id, "channel_id": guild.channel_id}
    q = await fake.send_message(mention(fake, text), **where)
    return embed_of(await fake.wait_for_bot_message(replies_to(q), timeout=30))


def _two_shard_world() -> FakeDiscordConfig:
    """The primary guild (shard 0 of 2 by Discord's rule) and a second guild whose id puts it on shard 1."""
    config = FakeDiscordConfig(token=TOKEN, heartbeat_interval_ms=1000)
    second = default_second_guild(config)
    second.id += 1 << 22  # (id >> 22) % 2 == 1
    config.extra_guilds.append(second)
    return config


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


GONE = 1300000000000000900  # a server the bot is not in any more (shard 0's by Discord's rule)


@pytest.mark.parametrize("fake_config", [_two_shard_world()], indirect=True)
async def test_a_shard_does_not_take_the_other_shard_s_servers_for_servers_it_left(fake, start_herald, bot_settings):
    """Each shard sees only its own servers: had it marked the others' collections as left, the janitor would
    delete their articles after the grace period."""
    from bot.discord_bot.guilds import ServerCollections

    servers = ServerCollections(bot_settings)
    guilds = [fake.config.guild(), fake.config.guild_b]
    for gid in (*(g.id for g in guilds), GONE):
        servers.record_add(gid, "a server")
    assert fake.shard_of(GONE, 2) == 0
    for shard in (0, 1):
        await start_herald(StubEngine(lambda q: None), shard_id=shard, shard_count=2)
    await fake.wait_until(lambda: servers.store.meta(f"guild-{GONE}").get("left_at"), timeout=5,
                          description="shard 0 notices the server it left")
    assert [servers.store.meta(f"guild-{g.id}").get("left_at") for g in guilds] == [None, None]


@pytest.mark.parametrize("fake_config", [_two_shard_world()], indirect=True)
async def test_two_shards_answer_their_own_guilds_and_both_see_another_process_s_article(
        fake, start_herald, article_corpus, database, fake_embedder):
    config = replace(folder_config(article_corpus), database_url=database)
    bots = [await start_herald(open_engine(config), shard_id=shard, shard_count=2, database_url=database,
                               corpus_dir=article_corpus.corpus, index_dir=article_corpus.index, model="test-hash")
            for shard in (0, 1)]
    primary, second = fake.config.guild(), fake.config.guild_b
    assert [fake.shard_of(g.id, 2) for g in (primary, second)] == [0, 1]
    assert [{g.id for g in bot.guilds} for bot in bots] == [{primary.id}, {second.id}]  # each its own guild
    for guild in (primary, second):
        assert "Antofagasta" not in (await _ask(fake, QUESTION, guild))["description"]
    (article_corpus.corpus / "bridge.md").write_text(BRIDGE.replace("Valparaiso", "Antofagasta"), encoding="utf-8")
    out, err = _other_process(article_corpus, database, ["base"]).communicate(timeout=120)
    assert out.split()[1] == "1", err
    for guild in (primary, second):  # each shard's process answers from the database: no reload, no restart
        assert "Antofagasta" in (await _ask(fake, QUESTION, guild))["description"]
