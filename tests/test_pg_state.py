"""Feed state and feedback votes in the database (issue 19): with ``HERALD_DATABASE_URL`` set, the feeds'
polling state and the 👍/👎 votes are rows that every bot process and `herald watch` share; two processes
polling one collection keep each other's feeds; without a database the files are as before.

Against a real PostgreSQL with pgvector started by the tests (conftest's ``pg_server``: pgserver from PyPI).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path

import pytest

pytest.importorskip("pgserver", reason="the PostgreSQL tests need pgserver (make test installs it)")
pytest.importorskip("psycopg", reason="the PostgreSQL tests need herald[postgres] (make test installs it)")

from bot.discord_bot.feedback import AnswerRecord, FeedbackLog  # noqa: E402
from fakes.news import DATA_DIR, fake_news_server  # noqa: E402
from index import EngineConfig, FetchSettings, feed_states, poll_feeds  # noqa: E402
from index.ingest.feeds import FeedState, FeedStates, Retry  # noqa: E402
from index.pg.db import Database, shared_database  # noqa: E402
from index.pg.schema import connect  # noqa: E402
from index.pg.state import _FEEDS, PostgresFeedStates, state_database  # noqa: E402

LOCAL = FetchSettings(allow_private="127.0.0.1")  # the fake site is on 127.0.0.1
FEED_A, FEED_B = "https://a.example/feed.xml", "https://b.example/rss"


@pytest.fixture
def db(database):
    with Database(database, 64) as opened:  # migrated: the tables are there
        yield opened


@pytest.fixture
def site():
    with fake_news_server(slow_seconds=4) as s:
        yield s


def rows(db: Database, collection: str | None = None) -> dict[tuple[str, str], dict]:
    with db.connection() as conn:
        found = conn.execute("SELECT collection, feed, state FROM feed_state").fetchall()
    return {(c, f): s for c, f, s in found if collection in (None, c)}


def a_state() -> FeedState:
    return FeedState(etag='"e1"', last_modified="Tue, 05 Mar 2024 10:00:00 GMT", seen=["https://a.example/1"],
                     checked_at="2024-03-05T10:00:00+00:00", failed={"https://a.example/2": Retry(2, 1234.5)})


# ------------------------------------------------------------------------------------------ feed state


def test_feed_states_round_trip_through_the_database(db):
    states = PostgresFeedStates(db, "base")
    vars(states.get(FEED_A)).update(vars(a_state()))
    states.get(FEED_B)  # asked for, never polled: nothing to keep
    states.save()
    assert rows(db) == {("base", FEED_A): asdict(a_state())}
    again = PostgresFeedStates(db, "base")  # another process
    assert again.get(FEED_A) == a_state() and again.get(FEED_B) == FeedState()


def test_two_processes_saving_different_feeds_of_one_collection_keep_both(db):
    first, second = PostgresFeedStates(db, "base"), PostgresFeedStates(db, "base")  # both read the empty table
    first.get(FEED_A).seen.append("https://a.example/1")
    first.save()
    second.get(FEED_A)  # polled, but its fetch failed: its (stale) state is not written over the first's
    second.get(FEED_B).seen.append("https://b.example/1")
    second.save()
    now = PostgresFeedStates(db, "base")
    assert now.get(FEED_A).seen == ["https://a.example/1"] and now.get(FEED_B).seen == ["https://b.example/1"]


def test_two_processes_polling_one_feed_keep_the_links_either_added_and_the_later_etag(db):
    seed = PostgresFeedStates(db, "base")
    vars(seed.get(FEED_A)).update(vars(a_state()))
    seed.save()
    first, second = PostgresFeedStates(db, "base"), PostgresFeedStates(db, "base")
    mine = first.get(FEED_A)
    mine.seen.append("https://a.example/3")
    mine.etag, mine.checked_at = '"e2"', "2024-03-05T11:00:00+00:00"
    first.save()
    theirs = second.get(FEED_A)
    theirs.seen.append("https://a.example/4")
    theirs.failed.pop("https://a.example/2")
    theirs.seen.append("https://a.example/2")  # the failed item worked on their retry
    theirs.etag, theirs.checked_at = '"e0"', "2024-03-05T10:30:00+00:00"  # an earlier poll, saved later
    second.save()
    got = PostgresFeedStates(db, "base").get(FEED_A)
    assert sorted(got.seen) == [f"https://a.example/{n}" for n in (1, 2, 3, 4)]
    assert got.failed == {} and got.etag == '"e2"' and got.checked_at == "2024-03-05T11:00:00+00:00"
    assert theirs.seen == got.seen  # the poll's object holds what was saved


def test_a_save_waits_for_another_process_saving_the_collection_and_keeps_what_it_wrote(db):
    from psycopg.types.json import Jsonb

    states = PostgresFeedStates(db, "base")
    states.get(FEED_A).seen.append("https://a.example/1")
    other = connect(db.url)  # another process, in the middle of its save
    other.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_FEEDS, "base"))
    other.execute("INSERT INTO feed_state VALUES ('base', %s, %s)",
                  (FEED_A, Jsonb(asdict(FeedState(seen=["https://a.example/2"])))))
    saving = threading.Thread(target=states.save)
    saving.start()
    saving.join(0.5)
    assert saving.is_alive()  # waiting for the other save to end
    other.commit()
    other.close()
    saving.join(10)
    assert sorted(PostgresFeedStates(db, "base").get(FEED_A).seen) == ["https://a.example/1", "https://a.example/2"]


def test_another_collections_rows_are_neither_read_nor_changed(db):
    guild = PostgresFeedStates(db, "guild-1")
    vars(guild.get(FEED_A)).update(vars(a_state()))
    guild.save()
    before = rows(db, "guild-1")
    base = PostgresFeedStates(db, "base")
    assert base.get(FEED_A) == FeedState()  # the guild's state of the same feed is not the base's
    base.get(FEED_A).seen.append("https://a.example/9")
    base.save()
    assert rows(db, "guild-1") == before == {("guild-1", FEED_A): asdict(a_state())}
    assert rows(db, "base")[("base", FEED_A)]["seen"] == ["https://a.example/9"]


def test_a_database_that_fails_at_save_is_a_warning_not_a_failed_poll(database, caplog):
    opened = Database(database, 64)
    states = PostgresFeedStates(opened, "base")
    states.get(FEED_A).seen.append("https://a.example/1")
    opened.close()
    with caplog.at_level(logging.WARNING, logger="index.pg.state"):
        states.save()
    assert "could not save the feed state of base" in caplog.text


def test_polls_share_the_database_state_so_a_new_process_adds_nothing_twice(database, fake_embedder, site, tmp_path):
    config = EngineConfig(model="test-hash", database_url=database)
    state_file, corpus, feed = tmp_path / "feeds.json", tmp_path / "corpus", site.url("/feed.xml")
    [first] = poll_feeds(corpus, [feed], feed_states(config, "base", state_file), LOCAL)  # migrates the new database
    assert first.changed == 2 and site.hits["/news/harbour-bridge-closure.html"] == 1
    [again] = poll_feeds(corpus, [feed], feed_states(config, "base", state_file), LOCAL)  # as another process would
    assert again.unchanged and again.items == []  # its ETag came from the database: a 304
    site.serve("/feed.xml", body=(DATA_DIR / "feed.xml").read_text(encoding="utf-8") + "\n")  # read whole again
    [third] = poll_feeds(corpus, [feed], feed_states(config, "base", state_file), LOCAL)
    assert not third.unchanged and third.items == [] and third.error is None
    assert site.hits["/news/harbour-bridge-closure.html"] == 1 and site.hits["/feed.xml"] == 3
    assert not state_file.exists()  # the database holds it
    assert len(rows(shared_database(database, 64))[("base", feed)]["seen"]) == 2


def test_without_a_database_the_state_is_the_json_file(site, tmp_path):
    state_file, feed = tmp_path / "feeds.json", site.url("/feed.xml")
    states = feed_states(EngineConfig(), "base", state_file)
    assert isinstance(states, FeedStates)
    [res] = poll_feeds(tmp_path / "corpus", [feed], states, LOCAL)
    assert res.changed == 2 and len(json.loads(state_file.read_text(encoding="utf-8"))[feed]["seen"]) == 2


def test_the_state_borrows_the_engines_pool_when_there_is_one(database):
    engines = shared_database(database, 64)
    assert state_database(database, "test-hash") is engines


def test_nothing_of_postgresql_is_imported_without_a_database(tmp_path):
    code = ("import sys; from pathlib import Path; from index import EngineConfig, feed_states, vote_log\n"
            f"feed_states(EngineConfig(), 'base', Path({str(tmp_path / 'f.json')!r})).save()\n"
            f"vote_log(EngineConfig(), Path({str(tmp_path / 'v.jsonl')!r})).record({{'vote': 'up'}})\n"
            "print(sorted(m for m in sys.modules if m.startswith(('psycopg', 'pgvector'))))")  # no driver needed
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
    assert json.loads((tmp_path / "v.jsonl").read_text(encoding="utf-8")) == {"vote": "up"}


def test_the_bots_feed_polls_keep_their_state_in_the_database(database, fake_embedder, site, tmp_path):
    from bot.discord_bot.tasks import poll_collection
    from bot.settings import Settings

    settings = Settings(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index", model="test-hash",
                        database_url=database, fetch=LOCAL)
    feed, state_file = site.url("/atom.xml"), tmp_path / "guild-feeds.json"
    [res] = poll_collection(settings, "guild-7", tmp_path / "guild", [feed], state_file, 10)
    assert res.changed == 2 and not state_file.exists()
    assert list(rows(shared_database(database, 64))) == [("guild-7", feed)]


# ------------------------------------------------------------------------------------------------ votes


RECORD = AnswerRecord("Who vetoed?", "Russia vetoed it.", False, ["a#0"], 0.8123, tentative=True)


def test_votes_land_in_the_feedback_table_as_the_file_line_would_be(database, fake_embedder, tmp_path):
    Database(database, 64).close()
    log = FeedbackLog(tmp_path / "db-feedback.jsonl", EngineConfig(model="test-hash", database_url=database))
    line = log.append("down", RECORD, user_id=11, channel_id=22, guild_id=33, message_id=44)
    with shared_database(database).connection() as conn:
        stored = conn.execute("SELECT record, at IS NOT NULL FROM feedback ORDER BY id").fetchall()
    assert stored == [(line, True)] and not (tmp_path / "db-feedback.jsonl").exists()

    file_log = FeedbackLog(tmp_path / "feedback.jsonl")  # no database: the JSON line as before
    file_line = file_log.append("down", RECORD, user_id=11, channel_id=22, guild_id=33, message_id=44)
    [written] = (json.loads(x) for x in (tmp_path / "feedback.jsonl").read_text(encoding="utf-8").splitlines())
    assert written == file_line
    assert list(written) == list(line) and {**written, "timestamp": ""} == {**line, "timestamp": ""}
    assert line["vote"] == "down" and line["sources"] == ["a#0"] and line["tentative"] is True
