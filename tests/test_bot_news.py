"""News in through Discord (issue 11): /add <url> and the feed watcher, with the real bot code against the
fake Discord (``tests/fakes/discord/``) and the fake news site (``tests/fakes/news.py``), both on 127.0.0.1.

Retrieval uses the fast ``test-hash`` embedder (conftest) or a slow-building wrapper of it, so a rebuild
can be caught in the act while a question is answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest

from bot_fixtures import *  # noqa: F403 - fixtures
from bot_fixtures import embed_of, mention, replies_to
from fakes.discord import FLAG_EPHEMERAL, FakeDiscordConfig, Perm
from fakes.news import DATA_DIR, fake_news_server
from index import EngineConfig, FetchSettings, open_engine

HARBOUR = "/news/harbour-bridge-closure.html"
HARBOUR_TITLE = "Valmouth harbour bridge closed for repairs after engineers find cracks"
WILDFIRE_TITLE = "Wildfire forces hundreds to flee homes near Brennick"
CRACKS = "Who found the cracks in the harbour bridge?"
FETCH = FetchSettings(timeout=5, allow_private="127.0.0.1")  # the fake site is on 127.0.0.1


@pytest.fixture
def site():
    with fake_news_server(slow_seconds=2) as s:
        yield s


def web_files(paths) -> list:
    """Articles the feed watcher saved into the operator's corpus (HERALD_FEEDS)."""
    return sorted((paths.corpus / "web").rglob("*.md")) if (paths.corpus / "web").exists() else []


def server_folder(paths) -> Path:
    """The fake server's own collection, where /add saves (collections/ beside the index folder)."""
    return paths.root / "collections" / f"guild-{FakeDiscordConfig().guild_id}"


def added_files(paths) -> list:
    """Articles /add saved into the server's collection."""
    web = server_folder(paths) / "web"
    return sorted(web.rglob("*.md")) if web.exists() else []


def titles(engine) -> set[str]:
    return {d.title for d in engine.documents()}


def source_names(embed: dict) -> list[str]:
    return [f["name"] for f in embed.get("fields") or []]


async def start_on(start_herald, paths, model: str = "test-hash", **overrides):
    """A bot over ``paths`` (its index opened, built first if missing) that fetches with a short timeout."""
    engine = await asyncio.to_thread(open_engine, EngineConfig(corpus=paths.corpus, index_dir=paths.index, model=model))
    overrides.setdefault("fetch", FETCH)
    bot = await start_herald(engine, corpus_dir=paths.corpus, index_dir=paths.index, model=model,
                             feed_state=paths.root / "feeds.json", **overrides)
    return bot, engine


# -------------------------------------------------------------------------------------------- /add


async def test_add_is_for_manage_server_only(fake, start_herald, built_index, site):
    bot, engine = await start_on(start_herald, built_index)
    cmd = fake.registered_command("add", fake.config.guild_id)
    assert int(cmd["default_member_permissions"]) == Perm.MANAGE_GUILD  # hidden from others in the client
    assert [o["name"] for o in cmd["options"]] == ["url"] and cmd["options"][0]["required"]

    # A plain member who runs it anyway (a server can override the default) is refused at run time.
    inter = await fake.send_slash_command("add", {"url": site.url(HARBOUR)}, user=fake.config.user)
    cb = await fake.wait_for_callback(inter)
    assert cb.json["type"] == 4 and cb.json["data"]["flags"] & FLAG_EPHEMERAL
    assert "Manage Server" in cb.json["data"]["content"]
    await asyncio.sleep(0.3)
    assert site.hits[HARBOUR] == 0 and added_files(built_index) == []
    assert not bot.reindexing and bot.engine is engine
    assert bot.feed_watcher.task is None  # no feeds set, no watcher


async def test_add_an_article_then_a_question_is_answered_from_it(fake, start_herald, built_index, site,
                                                                  herald_logs):
    bot, engine = await start_on(start_herald, built_index)
    # Before: the index holds only the Euronews article, so no source is the harbour story.
    q = await fake.send_message(mention(fake, CRACKS), author=fake.config.owner)
    before = embed_of(await fake.wait_for_bot_message(replies_to(q), timeout=10))
    assert "Coastal Times" not in json.dumps(before) and HARBOUR_TITLE not in json.dumps(before)

    inter = await fake.send_slash_command("add", {"url": f" <{site.url(HARBOUR)}> "}, user=fake.config.admin)
    cb = await fake.wait_for_callback(inter)
    assert cb.json["type"] == 5 and cb.json["data"]["flags"] & FLAG_EPHEMERAL  # deferred, privately
    first = (await fake.wait_for_followup(inter, timeout=15)).json
    line = first["content"]
    assert line.startswith(f"Added: {HARBOUR_TITLE} (Coastal Times, 5 Mar 2024)"), line
    assert "\n" not in line and first["flags"] & FLAG_EPHEMERAL
    files = added_files(built_index)
    assert len(files) == 1 and files[0].relative_to(server_folder(built_index)).parts[:2] == ("web", "127.0.0.1")
    assert "Mireille Okonkwo" in files[0].read_text(encoding="utf-8")

    # The rebuild runs in the background; its end is reported to the same person, privately.
    done = (await fake.wait_for_followup(inter, timeout=20, index=1)).json
    assert done["content"].startswith("Index rebuilt") and "2 article(s)" in done["content"], done["content"]
    assert "answered from it" in done["content"] and done["flags"] & FLAG_EPHEMERAL
    assert bot.engine is not engine and HARBOUR_TITLE in titles(bot.engine)

    q = await fake.send_message(mention(fake, CRACKS), author=fake.config.owner)
    after = embed_of(await fake.wait_for_bot_message(replies_to(q), timeout=10))
    assert any(HARBOUR_TITLE in name for name in source_names(after)), source_names(after)
    assert "Coastal Times" in json.dumps(after)
    assert any("/add by user=" in m and "added" in m for m in herald_logs.messages("herald"))

    # Adding it again: nothing changes, and no rebuild starts.
    current = bot.engine
    inter = await fake.send_slash_command("add", {"url": site.url(HARBOUR)}, user=fake.config.admin)
    again = (await fake.wait_for_followup(inter, timeout=15)).json["content"]
    assert again.startswith("Already indexed, unchanged"), again
    await fake.assert_no_request(method="POST", path=rf"/webhooks/\d+/{inter.token}", duration=0.5,
                                 since=fake.mark())
    assert not bot.reindexing and bot.engine is current and len(added_files(built_index)) == 1


async def test_add_a_missing_page_says_so_politely_and_adds_nothing(fake, start_herald, built_index, site):
    bot, engine = await start_on(start_herald, built_index)
    url = site.url("/missing.html")
    inter = await fake.send_slash_command("add", {"url": url}, user=fake.config.admin)
    assert (await fake.wait_for_callback(inter)).json["type"] == 5
    reply = (await fake.wait_for_followup(inter, timeout=15)).json
    text = reply["content"]
    assert text.startswith("Sorry") and f"{url}: there is no page there (HTTP 404)" in text, text
    assert "Traceback" not in text and reply["flags"] & FLAG_EPHEMERAL
    assert site.hits["/missing.html"] == 1
    await fake.assert_no_request(method="POST", path=rf"/webhooks/\d+/{inter.token}", duration=0.5, since=fake.mark())
    assert added_files(built_index) == [] and not bot.reindexing and bot.engine is engine

    # Not a web address at all: the same polite kind of answer, and no request leaves.
    inter = await fake.send_slash_command("add", {"url": "harbour bridge"}, user=fake.config.admin)
    text = (await fake.wait_for_followup(inter, timeout=15)).json["content"]
    assert text.startswith("Sorry") and "is not a web address" in text, text


async def test_add_while_a_rebuild_runs_rebuilds_again_after_it(fake, start_herald, article_corpus, slow_embedder,
                                                                site):
    from test_bot_e2e import SECOND_ARTICLE

    paths = article_corpus
    bot, engine = await start_on(start_herald, paths, model="slow-hash")
    (paths.corpus / "paris-climate.txt").write_text(SECOND_ARTICLE, encoding="utf-8")
    slow_embedder.delay = 2.0
    reindex = await fake.send_slash_command("reindex", user=fake.config.admin)
    await fake.wait_for_callback(reindex)
    assert await asyncio.to_thread(slow_embedder.building.wait, 5) and bot.reindexing

    # This rebuild read the corpus before the article arrived: /add must start another one after it.
    inter = await fake.send_slash_command("add", {"url": site.url(HARBOUR)}, user=fake.config.admin)
    line = (await fake.wait_for_followup(inter, timeout=15)).json["content"]
    assert line.startswith(f"Added: {HARBOUR_TITLE}") and "after the rebuild already running" in line, line
    first = (await fake.wait_for_followup(reindex, timeout=20)).json["content"]
    assert first.startswith("Index rebuilt") and "2 article(s)" in first, first
    slow_embedder.delay = 0.0
    done = (await fake.wait_for_followup(inter, timeout=20, index=1)).json["content"]
    assert done.startswith("Index rebuilt") and "3 article(s)" in done, done
    assert HARBOUR_TITLE in titles(bot.engine) and "Paris hosts climate talks" in titles(bot.engine)


async def test_slow_adds_never_hold_up_answers(fake, start_herald, built_index, site):
    # More slow /adds than asyncio's default thread pool has threads: if fetches shared that pool with the
    # answers (as they did), the question below would wait for the first fetches to end.
    default_threads = min(32, (os.cpu_count() or 1) + 4)
    bot, _engine = await start_on(start_herald, built_index)
    adds = [await fake.send_slash_command("add", {"url": site.url("/slow.html")}, user=fake.config.admin)
            for _ in range(default_threads + 2)]
    await fake.wait_until(lambda: site.hits["/slow.html"] >= 1, timeout=10, description="a fetch under way")
    q = await fake.send_message(mention(fake, CRACKS), author=fake.config.owner)
    assert embed_of(await fake.wait_for_bot_message(replies_to(q), timeout=15))
    answered_while_fetching = not any(fake.find_requests(method="POST", path=rf"/webhooks/\d+/{i.token}")
                                      for i in adds)
    assert answered_while_fetching, "the answer waited for the slow fetches"
    assert site.hits["/slow.html"] <= bot.fetch_workers  # the fetches have a bounded pool of their own
    for inter in adds:  # every /add is still answered, a few at a time
        line = (await fake.wait_for_followup(inter, timeout=60)).json["content"]
        assert line.startswith(("Added", "Already indexed", "Updated")), line
    await asyncio.wait_for(bot.wait_reindexed(), 20)


async def test_add_of_an_internal_address_is_refused_politely(fake, start_herald, built_index, site):
    bot, _engine = await start_on(start_herald, built_index, fetch=FetchSettings(timeout=5))  # no allow-list
    inter = await fake.send_slash_command("add", {"url": site.url(HARBOUR)}, user=fake.config.admin)
    text = (await fake.wait_for_followup(inter, timeout=15)).json["content"]
    assert text.startswith("Sorry") and "private or internal address" in text and "\n" not in text, text
    assert site.hits[HARBOUR] == 0 and added_files(built_index) == [] and not bot.reindexing


async def test_add_reply_shows_a_hostile_title_as_text(fake, start_herald, built_index, site):
    """A page's og:title and site name are the page's words: the /add reply shows them as plain text, with no
    masked link, spoiler or bold (issue 17, item 4)."""
    html = (DATA_DIR / "harbour-bridge-closure.html").read_text(encoding="utf-8")
    hostile = "[Click to verify](HTTPS://evil.example/phish) **now** ||spoiler||"
    html = html.replace('content="Valmouth harbour bridge closed for repairs after engineers find cracks"',
                        f'content="{hostile}"').replace('content="Coastal Times"',
                                                        'content="[Coastal](https://evil.example/x)"')
    assert hostile in html
    site.serve("/news/hostile.html", body=html, content_type="text/html")
    await start_on(start_herald, built_index)
    inter = await fake.send_slash_command("add", {"url": site.url("/news/hostile.html")}, user=fake.config.admin)
    line = (await fake.wait_for_followup(inter, timeout=15)).json["content"]
    assert line.startswith("Added:"), line
    for live in ("[Click to verify](", "**now**", "||spoiler||", "[Coastal]("):
        assert live not in line, line
    done = (await fake.wait_for_followup(inter, timeout=20, index=1)).json["content"]  # let the rebuild end
    assert done.startswith("Index rebuilt"), done


# ------------------------------------------------------------------------------------ feed watcher


async def test_feed_watcher_adds_new_items_and_swaps_the_index_while_answering(
        fake, start_herald, article_corpus, slow_embedder, site, herald_logs):
    paths = article_corpus
    await asyncio.to_thread(open_engine, EngineConfig(corpus=paths.corpus, index_dir=paths.index, model="slow-hash"))
    slow_embedder.delay = 1.5  # the rebuild after the first poll takes a while
    feeds = (site.url("/feed.xml"), site.url("/missing.xml"))
    bot, engine = await start_on(start_herald, paths, model="slow-hash", feeds=feeds, feed_interval=0.2)

    # The first poll runs at once and adds both items; the rebuild starts in the background.
    assert await asyncio.to_thread(slow_embedder.building.wait, 10), "the watcher never rebuilt the index"
    assert bot.reindexing and bot.engine is engine
    assert len(web_files(paths)) == 2

    # A question asked meanwhile is answered, from the old index, before the rebuild is done.
    q = await fake.send_message(mention(fake, "Who vetoed the resolution?"), author=fake.config.owner)
    reply = await fake.wait_for_bot_message(replies_to(q), timeout=10)
    assert embed_of(reply) and bot.reindexing, "the answer should not have waited for the rebuild"

    await asyncio.wait_for(bot.wait_reindexed(), 20)
    slow_embedder.delay = 0.0
    assert bot.engine is not engine
    assert {HARBOUR_TITLE, WILDFIRE_TITLE} <= titles(bot.engine) and len(bot.engine.documents()) == 3

    logs = herald_logs.messages("herald")
    assert any(f"Added: {HARBOUR_TITLE} (Coastal Times, 5 Mar 2024)" in m for m in logs)
    assert any(f"Added: {WILDFIRE_TITLE}" in m for m in logs)
    failures = [r for r in herald_logs.records if r.name.startswith("herald") and r.levelno == logging.WARNING
                and "/missing.xml" in r.getMessage()]
    assert failures and "there is no page there (HTTP 404)" in failures[0].getMessage()
    assert json.loads((paths.root / "feeds.json").read_text(encoding="utf-8"))

    # Later ticks find the feed unchanged (304): nothing is added and no rebuild starts.
    swapped, polls = bot.engine, site.hits["/feed.xml"]
    await fake.wait_until(lambda: site.hits["/feed.xml"] >= polls + 2, timeout=10, description="two more polls")
    assert bot.engine is swapped and not bot.reindexing and len(web_files(paths)) == 2
    assert site.hits[HARBOUR] == 1

    # A question after the swap is answered from the new articles.
    q = await fake.send_message(mention(fake, CRACKS), author=fake.config.owner)
    after = embed_of(await fake.wait_for_bot_message(replies_to(q), timeout=10))
    assert any(HARBOUR_TITLE in name for name in source_names(after)), source_names(after)


async def test_close_stops_the_feed_watcher(fake, start_herald, built_index, site):
    bot, engine = await start_on(start_herald, built_index, feeds=(site.url("/atom.xml"),), feed_interval=30)
    task = bot.feed_watcher.task
    assert task is not None and task.get_name() == "herald-feeds"
    # The first poll adds the feed's two items and swaps in the rebuilt index.
    await fake.wait_until(lambda: bot.engine is not engine, timeout=20, description="the new index")
    assert {d.outlet for d in bot.engine.documents()} >= {"Northern Ledger"}
    assert not task.done()  # sleeping until the next poll
    await asyncio.wait_for(bot.close(), 10)
    assert task.cancelled()  # (a task left running would also fail the fixture's leak check)


async def test_the_feed_watcher_outlives_an_unexpected_error(fake, start_herald, built_index, site, monkeypatch,
                                                             caplog):
    from bot.discord_bot.tasks import FeedWatcher

    calls: list[int] = []

    async def flaky(self):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the collections folder vanished")
        return []

    monkeypatch.setattr(FeedWatcher, "poll_once", flaky)
    bot, _ = await start_on(start_herald, built_index, feeds=(site.url("/atom.xml"),), feed_interval=0.05)
    await fake.wait_until(lambda: len(calls) >= 3, timeout=5, description="polls after the error")
    assert not bot.feed_watcher.task.done()
    assert any("a poll failed unexpectedly" in r.getMessage() for r in caplog.records)
