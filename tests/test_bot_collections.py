"""Each Discord server its own news (issue 18), end to end: the real bot in two servers of the fake
Discord (an admin and a member in each), a real index (test-hash embedder) and the fake news site.

What a server adds is answered there and nowhere else; a server's /reindex, /feeds and /forget touch only
its own collection; quotas refuse with a message and change nothing; DMs see the operator's corpus only;
a server the bot leaves loses its collection after the grace period. The library's side (the exact
filter, scoped rebuilds) is tests/test_collections.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from test_bot_news import CRACKS, FETCH, HARBOUR, HARBOUR_TITLE, site  # noqa: F401 - site is a fixture
from test_collections import collection_rows

from bot.messages import ABSTAIN_MESSAGE
from bot_fixtures import *  # noqa: F403 - fixtures
from bot_fixtures import TOKEN, embed_of, mention, replies_to
from fakes.discord import FakeDiscordConfig
from index import EngineConfig, open_engine

pytestmark = pytest.mark.parametrize("fake_config", [FakeDiscordConfig(token=TOKEN, second_guild=True)],
                                     indirect=True)

FERRY = "/news/ferry-strike.html"
FERRY_TITLE = "Ferry crews walk out in pay dispute"


async def two_servers(start_herald: Any, paths: Any, **overrides: Any) -> Any:
    """The bot over ``paths`` in both servers, its commands global (as a public bot's are)."""
    engine = await asyncio.to_thread(open_engine, EngineConfig(corpus=paths.corpus, index_dir=paths.index,
                                                               model="test-hash"))
    overrides.setdefault("fetch", FETCH)
    return await start_herald(engine, corpus_dir=paths.corpus, index_dir=paths.index, model="test-hash",
                              feed_state=paths.root / "feeds.json", dev_guild_id=None, **overrides)


def folder(paths: Any, guild_id: int) -> Path:
    return paths.root / "collections" / f"guild-{guild_id}"


def saved(paths: Any, guild_id: int) -> list[Path]:
    web = folder(paths, guild_id) / "web"
    return sorted(web.rglob("*.md")) if web.exists() else []


async def ask_in(fake: Any, question: str, guild_id: int | None, author: Any) -> dict:
    """The embed answering a mention in ``guild_id``'s first channel (None: a DM)."""
    if guild_id is None:
        q = await fake.send_message(question, guild=False, author=author)
    else:
        q = await fake.send_message(mention(fake, question), guild_id=guild_id, author=author)
    return embed_of(await fake.wait_for_bot_message(replies_to(q), timeout=15))


async def add_in(fake: Any, url: str, guild_id: int, admin: Any) -> tuple[Any, str]:
    inter = await fake.send_slash_command("add", {"url": url}, user=admin, guild_id=guild_id)
    return inter, (await fake.wait_for_followup(inter, timeout=15)).json["content"]


async def rebuilt(fake: Any, inter: Any) -> str:
    done = (await fake.wait_for_followup(inter, timeout=30, index=1)).json["content"]
    assert done.startswith("Index rebuilt"), done
    return done


async def notice(fake: Any, name: str, options: dict | None, user: Any, guild_id: int,
                 sub: str | None = None) -> str:
    """The private reply to a command (``sub``: its subcommand): a refusal, a list, a first result."""
    inter = await fake.send_slash_command(name, options, user=user, guild_id=guild_id, subcommand=sub)
    cb = (await fake.wait_for_callback(inter)).json
    if cb["type"] == 5:  # deferred: the words come as a follow-up
        return (await fake.wait_for_followup(inter, timeout=15)).json["content"]
    return cb["data"]["content"]


async def test_an_article_added_in_one_server_is_answered_there_only(fake, start_herald, built_index, site):
    bot = await two_servers(start_herald, built_index)
    cfg, b = fake.config, fake.config.guild_b
    inter, line = await add_in(fake, site.url(HARBOUR), cfg.guild_id, cfg.admin)
    assert line.startswith(f"Added: {HARBOUR_TITLE}") and "this server's articles" in line, line
    await rebuilt(fake, inter)
    assert len(saved(built_index, cfg.guild_id)) == 1 and not folder(built_index, b.id).exists()
    assert not (built_index.corpus / "web").exists()  # not into the operator's corpus

    here = await ask_in(fake, CRACKS, cfg.guild_id, cfg.user)
    names = [f["name"] for f in here.get("fields", [])]
    assert any(HARBOUR_TITLE in n for n in names), names
    assert "from this server's articles" in json.dumps(here)

    there = await ask_in(fake, CRACKS, b.id, cfg.user)  # the same member, in the other server
    assert there["description"].startswith(ABSTAIN_MESSAGE), there["description"]
    assert HARBOUR_TITLE not in json.dumps(there) and "Coastal Times" not in json.dumps(there)

    dm = await ask_in(fake, CRACKS, None, cfg.user)  # a DM searches the operator's corpus only
    assert dm["description"].startswith(ABSTAIN_MESSAGE) and HARBOUR_TITLE not in json.dumps(dm)
    assert not (await ask_in(fake, "Who vetoed the resolution?", None, cfg.user))["description"].startswith(
        ABSTAIN_MESSAGE)

    # /sources: the server's own articles first, labelled; the other server sees only the base corpus.
    listed = await notice(fake, "sources", None, cfg.user, cfg.guild_id)
    lines = listed.splitlines()
    assert HARBOUR_TITLE in lines[1] and "this server" in lines[1] and len(lines) == 3, listed
    assert HARBOUR_TITLE not in await notice(fake, "sources", None, cfg.user, b.id)
    assert bot.servers.store.meta(f"guild-{cfg.guild_id}")["owner_id"] == cfg.guild_id


async def test_a_servers_reindex_and_forget_leave_the_other_server_untouched(fake, start_herald, built_index,
                                                                              site):
    bot = await two_servers(start_herald, built_index)
    cfg, b = fake.config, fake.config.guild_b
    inter, _ = await add_in(fake, site.url(HARBOUR), cfg.guild_id, cfg.admin)
    await rebuilt(fake, inter)
    inter, _ = await add_in(fake, site.url(FERRY), b.id, b.admin)
    await rebuilt(fake, inter)
    a_rows, base_rows = collection_rows(bot.engine, f"guild-{cfg.guild_id}"), collection_rows(bot.engine, "base")
    assert a_rows and base_rows

    # A's folder changes on disk (another process, an operator): B's /reindex must not pick it up.
    extra = folder(built_index, cfg.guild_id) / "note.md"
    extra.write_text("---\ntitle: Lighthouse keeper retires\n---\nThe last keeper of Valmouth light retired.\n",
                     encoding="utf-8")
    member_refused = await notice(fake, "reindex", None, b.user, b.id)
    assert "Manage Server" in member_refused
    inter = await fake.send_slash_command("reindex", user=b.admin, guild_id=b.id)
    await fake.wait_for_callback(inter)
    assert (await fake.wait_for_followup(inter, timeout=30)).json["content"].startswith("Index rebuilt")
    assert collection_rows(bot.engine, f"guild-{cfg.guild_id}") == a_rows
    assert collection_rows(bot.engine, "base") == base_rows
    assert "Lighthouse keeper retires" not in {d.title for d in bot.engine.documents()}

    # B forgets its article: gone from B, A's rows still the same.
    assert "has not added" in await notice(fake, "forget", {"url": site.url(HARBOUR)}, b.admin, b.id)
    inter = await fake.send_slash_command("forget", {"url": site.url(FERRY)}, user=b.admin, guild_id=b.id)
    assert "Removed 1 article" in (await fake.wait_for_followup(inter, timeout=15)).json["content"]
    await rebuilt(fake, inter)
    assert not saved(built_index, b.id) and f"guild-{b.id}" not in bot.engine.collections()
    assert collection_rows(bot.engine, f"guild-{cfg.guild_id}") == a_rows


async def test_quotas_refuse_with_a_message_and_change_nothing(fake, start_herald, built_index, site):
    bot = await two_servers(start_herald, built_index, guild_max_articles=1, guild_adds_per_hour=2,
                            guild_max_feeds=1)
    cfg = fake.config
    inter, _ = await add_in(fake, site.url(HARBOUR), cfg.guild_id, cfg.admin)
    await rebuilt(fake, inter)
    engine = bot.engine

    # Articles: the server has its one; another is refused before anything is fetched.
    text = await notice(fake, "add", {"url": site.url(FERRY)}, cfg.admin, cfg.guild_id)
    assert "already has 1 articles" in text and "/forget" in text, text
    assert site.hits[FERRY] == 0 and len(saved(built_index, cfg.guild_id)) == 1 and bot.engine is engine

    # /adds an hour: the second is allowed (an update of the article it has), the third refused.
    inter, line = await add_in(fake, site.url(HARBOUR), cfg.guild_id, cfg.admin)
    assert "already" in line.lower() or "unchanged" in line.lower(), line
    text = await notice(fake, "add", {"url": site.url(HARBOUR)}, cfg.admin, cfg.guild_id)
    assert "used its 2 /add commands for this hour" in text, text

    # Feeds: one followed, a second refused; the other server is not limited by this one's use.
    first = await notice(fake, "feeds", {"url": site.url("/atom.xml")}, cfg.admin, cfg.guild_id, sub="add")
    assert first.startswith("Following"), first
    text = await notice(fake, "feeds", {"url": site.url("/feed.xml")}, cfg.admin, cfg.guild_id, sub="add")
    assert "already follows 1 feed" in text, text
    assert bot.servers.feeds(cfg.guild_id) == [site.url("/atom.xml")]
    assert site.hits["/feed.xml"] == 0


async def test_feeds_of_one_server_never_poll_into_another(fake, start_herald, built_index, site, herald_logs):
    bot = await two_servers(start_herald, built_index, feed_interval=0.2)
    cfg, b = fake.config, fake.config.guild_b
    assert "Manage Server" in await notice(fake, "feeds", {"url": site.url("/feed.xml")}, cfg.user,
                                           cfg.guild_id, sub="add")
    text = await notice(fake, "feeds", {"url": site.url("/feed.xml")}, cfg.admin, cfg.guild_id, sub="add")
    assert text.startswith("Following") and "article(s) added to this server's articles" in text, text
    await fake.wait_until(lambda: site.hits["/feed.xml"] >= 3, timeout=15, description="the watcher's polls")
    await asyncio.wait_for(bot.wait_reindexed(), 30)
    assert len(saved(built_index, cfg.guild_id)) == 2 and not folder(built_index, b.id).exists()
    assert not (built_index.corpus / "web").exists()
    assert (folder(built_index, cfg.guild_id) / ".feeds.json").exists()
    who = f"server {cfg.guild_name} ({cfg.guild_id}): feed {site.url('/feed.xml')}"
    assert any(m.startswith(who) for m in herald_logs.messages("herald")), "the watcher's lines name the server"

    listed = await notice(fake, "feeds", {}, cfg.user, cfg.guild_id, sub="list")  # listing needs no permission
    assert site.url("/feed.xml") in listed
    assert "follows no feeds" in await notice(fake, "feeds", {}, b.user, b.id, sub="list")
    there = await ask_in(fake, CRACKS, b.id, b.user)
    assert there["description"].startswith(ABSTAIN_MESSAGE)
    assert (await notice(fake, "feeds", {"url": site.url("/feed.xml")}, cfg.admin, cfg.guild_id,
                         sub="remove")).startswith("No longer following")
    assert bot.servers.feeds(cfg.guild_id) == []


async def test_a_server_the_bot_leaves_loses_its_collection_after_the_grace_period(fake, start_herald, built_index,
                                                                                   site, herald_logs):
    grace = 1.0  # seconds, here
    bot = await two_servers(start_herald, built_index, guild_grace_hours=grace / 3600)
    cfg, b = fake.config, fake.config.guild_b
    for gid, admin, url in ((cfg.guild_id, cfg.admin, HARBOUR), (b.id, b.admin, FERRY)):
        inter, _ = await add_in(fake, site.url(url), gid, admin)
        await rebuilt(fake, inter)
    assert set(bot.engine.collections()) == {"base", f"guild-{cfg.guild_id}", f"guild-{b.id}"}

    assert await fake.remove_bot_from_guild(b.id)
    await fake.wait_until(lambda: bot.servers.store.meta(f"guild-{b.id}").get("left_at"), timeout=5,
                          description="the server marked as left")
    assert folder(built_index, b.id).exists()  # not before the grace period is over
    await fake.wait_until(lambda: not folder(built_index, b.id).exists(), timeout=10,
                          description="B's collection removed")
    await fake.wait_until(lambda: f"guild-{b.id}" not in bot.engine.collections(), timeout=30,
                          description="B's rows gone from the index")
    assert f"guild-{cfg.guild_id}" in bot.engine.collections() and saved(built_index, cfg.guild_id)
    assert any(f"guild-{b.id}" in m and "removed" in m for m in herald_logs.messages("herald"))


async def test_a_server_back_within_the_grace_period_keeps_its_articles(fake, start_herald, built_index, site):
    bot = await two_servers(start_herald, built_index, guild_grace_hours=1.0)
    b = fake.config.guild_b
    inter, _ = await add_in(fake, site.url(FERRY), b.id, b.admin)
    await rebuilt(fake, inter)
    assert await fake.remove_bot_from_guild(b.id)
    await fake.wait_until(lambda: bot.servers.store.meta(f"guild-{b.id}").get("left_at"), timeout=5,
                          description="marked as left")
    assert await fake.add_bot_to_guild(b.id)
    await fake.wait_until(lambda: not bot.servers.store.meta(f"guild-{b.id}").get("left_at"), timeout=5,
                          description="marked as back")
    assert bot.servers.expired(now=1e12) == [] and saved(built_index, b.id)


async def test_without_the_base_corpus_a_server_sees_only_its_own(fake, start_herald, built_index, site):
    await two_servers(start_herald, built_index, base_visible=False)
    cfg = fake.config
    q = await fake.send_message("Who vetoed the resolution?", guild=False, author=cfg.user)
    reply = await fake.wait_for_bot_message(replies_to(q), timeout=10)
    assert "no articles I can answer from here" in reply["content"], reply
    vetoed = await ask_in(fake, "Who vetoed the resolution?", cfg.guild_id, cfg.user)
    assert vetoed["description"].startswith(ABSTAIN_MESSAGE)  # the operator's article is hidden here
    assert "No articles here yet" in await notice(fake, "sources", None, cfg.user, cfg.guild_id)
    inter, _ = await add_in(fake, site.url(HARBOUR), cfg.guild_id, cfg.admin)
    await rebuilt(fake, inter)
    listed = await notice(fake, "sources", None, cfg.user, cfg.guild_id)
    assert HARBOUR_TITLE in listed and "1 article:" in listed, listed


async def test_dms_may_search_the_servers_the_asker_shares_with_the_bot(fake, start_herald, built_index, site):
    """HERALD_DM_SERVERS: a DM searches base plus the servers the asker is in with the bot, each named."""
    bot = await two_servers(start_herald, built_index, dm_servers=True)
    cfg, b = fake.config, fake.config.guild_b
    inter, _ = await add_in(fake, site.url(HARBOUR), cfg.guild_id, cfg.admin)
    await rebuilt(fake, inter)
    inter, _ = await add_in(fake, site.url(FERRY), b.id, b.admin)
    await rebuilt(fake, inter)

    in_both = await ask_in(fake, CRACKS, None, cfg.user)  # bob is in A and B
    assert any(HARBOUR_TITLE in f["name"] for f in in_both.get("fields", [])), in_both
    assert f"the articles of the server {cfg.guild_name}" in json.dumps(in_both)
    only_b = await ask_in(fake, CRACKS, None, b.admin)  # erin is in B only: A's article is not hers to see
    assert only_b["description"].startswith(ABSTAIN_MESSAGE) and HARBOUR_TITLE not in json.dumps(only_b)
    outsider = await ask_in(fake, CRACKS, None, cfg.outsider)
    assert outsider["description"].startswith(ABSTAIN_MESSAGE)
    assert set(await bot.shared_servers(cfg.user.id)) == {cfg.guild_id, b.id}
