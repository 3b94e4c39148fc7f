"""Two bot processes (shards 0 and 1 of one Discord application) and the feed watcher sharing one index in
PostgreSQL, under load (issue 19): answer latency per shard, and how soon each shard answers an article the
watcher added.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.pg_bots --index /tmp/herald-ann-cache/index-bbc

Nothing leaves 127.0.0.1. A PostgreSQL with pgvector is started from pgserver in a temporary folder and seeded
with the folder index given (its records and vectors copied: nothing embedded, as benchmarks/pg_processes.py
does). The fake Discord (tests/fakes/discord) serves two guilds, one per shard by Discord's rule; the fake news
site (tests/fakes/news.py) serves one RSS feed that both guilds follow (their collections, ``/feeds add``'s
metadata). Two child processes each run ``HeraldBot`` unmodified with the real model, ``HERALD_SHARD_ID`` 0 and
1 of 2 and the database URL; shard 0 alone runs the feed watcher (every ``--feed-interval`` s), which fetches
each new item, adds it to both guilds' collections and rebuilds them in its own process, as deployed.

In this process one user per guild asks back to back (a question, its reply, the next): sentences of the
index's articles, seeded. First ``--seconds`` with nothing published; then ``--seconds`` while a new article is
published on the feed every ``--every`` s (a made-up name in its first sentence: only that article answers a
question about it). During the second phase each user, before each question, asks about the newest article
its guild has not yet answered from, until the reply names it. Reported: the latency from a question's
MESSAGE_CREATE to the bot's reply (p50 / p95 per shard and phase), the seconds from an article's publication
and from the database commit that added it (``herald_meta``'s generation, polled every 0.1 s) to each shard's
first reply that names it, and the watcher's share of the work (articles added).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .common import percentile
from .pg_processes import _bodies, _name, _questions, measure_table, seeded_database

TOKEN = "pg-bots-token"


def _settings(work: Path, url: str, shard: int | None = None, feed_interval: float = 2.0) -> Any:
    from bot.settings import Settings
    from index import FetchSettings
    from index.embed.models import DEFAULT_MODEL

    return Settings(corpus_dir=work / "base", index_dir=work / "index", model=DEFAULT_MODEL, database_url=url,
                    collections_dir=work / "collections", discord_token=TOKEN, cooldown_seconds=0.0,
                    feedback_file=work / f"feedback-{shard}.jsonl", max_concurrency=2, feed_interval=feed_interval,
                    fetch=FetchSettings(allow_private="127.0.0.1"), guild_adds_per_hour=10_000,
                    shard_id=shard, shard_count=None if shard is None else 2, log_level="WARNING")


# ------------------------------------------------------------------------------------------ a bot process


def run_bot(spec: dict) -> None:
    """One shard: the real HeraldBot over the database, connected to the fake Discord."""
    import discord.gateway
    import discord.http
    import yarl

    from bot.discord_bot.client import HeraldBot
    from index import open_engine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("discord").setLevel(logging.WARNING)
    discord.http.Route.BASE = spec["api_base"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(spec["gateway_url"])
    settings = replace(_settings(Path(spec["work"]), spec["url"], spec["shard"], spec["feed_interval"]),
                       dev_guild_id=spec["dev_guild_id"])
    engine = open_engine(settings.engine_config(), auto_build=False)
    engine.ask("Who won the match?")  # warm, as `herald bot` does before connecting
    bot = HeraldBot(settings=settings, engine=engine, guild_ready_timeout=0.05)
    asyncio.run(bot.start(TOKEN))


# ------------------------------------------------------------------------------------------------- feed


def _rss(site: Any, items: list[tuple[str, str]]) -> str:
    entries = "".join(f"<item><title>{title}</title><link>{site.url(path)}</link><guid>{site.url(path)}</guid>"
                      f"</item>" for title, path in reversed(items))
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Bench wire</title><link>{site.url("/")}'
            f"</link><description>bench</description>{entries}</channel></rss>")


def _page(title: str, body: str) -> str:
    paras = "".join(f"<p>{p}</p>" for p in body.split("\n") if p.strip())
    return (f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{paras}</article>"
            f"</body></html>")


class Publisher:
    """Puts one more article on the feed each time it is called."""

    def __init__(self, site: Any, bodies: list[str]) -> None:
        self.site, self.bodies = site, bodies
        self.items: list[tuple[str, str]] = []
        self.published: list[tuple[str, float]] = []

    def publish(self) -> str:
        k = len(self.items)
        name, text = _name(k), self.bodies[k % len(self.bodies)]
        first = text.split(". ")[0]
        body = f"{name} of the harbour council said {first}.\n" + text
        path = f"/news/bench-{k}.html"
        self.site.serve(path, body=_page(f"{name} report", body))
        self.items.append((f"{name} report", path))
        self.site.serve("/bench.xml", body=_rss(self.site, self.items))
        self.published.append((name, time.time()))
        return name


# ----------------------------------------------------------------------------------------------- users


async def user(fake: Any, guild: Any, questions: list[str], until: float, pub: Publisher | None,
               seen: dict[str, float]) -> list[float]:
    """One user asking in ``guild`` until ``until``; latencies (ms). With ``pub``: first the newest article
    not yet answered from, until a reply names it (``seen``: name -> when)."""
    mention = f"<@{fake.config.bot.id}> "
    lat, i = [], 0
    while time.time() < until:
        probe = next((n for n, _ in reversed(pub.published) if n not in seen), None) if pub else None
        text = f"What did {probe} of the harbour council say?" if probe else questions[i % len(questions)]
        i += probe is None
        t = time.perf_counter()
        q = await fake.send_message(mention + text, guild_id=guild.id, channel_id=guild.channel_id)
        reply = await fake.wait_for_bot_message(
            lambda m, qid=q["id"]: (m.get("message_reference") or {}).get("message_id") == qid, timeout=120)
        lat.append((time.perf_counter() - t) * 1000)
        # the article's own sentence (the question is echoed in the reply: its name alone proves nothing)
        if probe and f"{probe} of the harbour council said" in json.dumps(reply.get("embeds") or []):
            seen[probe] = time.time()
    return lat


async def commits(url: str, until: float, out: list[tuple[float, int]]) -> None:
    """The database's generation, polled every 0.1 s: when each change was committed."""
    from index.pg.schema import connect

    conn = connect(url)
    conn.autocommit = True
    last = None
    while time.time() < until:
        gen = int(conn.execute("SELECT value FROM herald_meta WHERE key = 'generation'").fetchone()[0])
        if gen != last:
            out.append((time.time(), gen))
            last = gen
        await asyncio.sleep(0.1)
    conn.close()


# ---------------------------------------------------------------------------------------------- parent


def _world() -> Any:
    from tests.fakes.discord import FakeDiscordConfig
    from tests.fakes.discord.config import default_second_guild

    config = FakeDiscordConfig(token=TOKEN, heartbeat_interval_ms=5000)
    second = default_second_guild(config)
    second.id += 1 << 22  # (id >> 22) % 2 == 1: Discord's rule puts it on shard 1 of 2
    config.extra_guilds.append(second)
    return config


def _spawn(spec: dict, work: Path) -> subprocess.Popen:
    path = work / f"bot-{spec['shard']}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    log = open(work / f"bot-{spec['shard']}.log", "w")  # noqa: SIM115 - the child's, closed with it
    return subprocess.Popen([sys.executable, "-m", "benchmarks.pg_bots", "--bot", str(path)], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                           "TOKENIZERS_PARALLELISM": "false"})


async def _ready(fake: Any, guilds: list[Any]) -> None:
    """Both shards connected and answering in their guild."""
    await fake.wait_until(lambda: len({s.shard for s in fake.sessions if s.live and s.shard}) == 2, timeout=300,
                          description="both shards connected")
    for g in guilds:
        q = await fake.send_message(f"<@{fake.config.bot.id}> Who won?", guild_id=g.id, channel_id=g.channel_id)
        await fake.wait_for_bot_message(
            lambda m, qid=q["id"]: (m.get("message_reference") or {}).get("message_id") == qid, timeout=120)


async def measure(args: argparse.Namespace, work: Path, url: str) -> dict:
    from bot.discord_bot.guilds import ServerCollections
    from tests.fakes.discord import FakeDiscord
    from tests.fakes.news import fake_news_server

    questions = _questions(url, 400, args.seed)
    with fake_news_server() as site:
        pub = Publisher(site, [t for t in _bodies(url) if len(t) > 800][:50])
        site.serve("/bench.xml", body=_rss(site, []))
        async with FakeDiscord(_world()) as fake:
            guilds = [fake.config.guild(), fake.config.guild_b]
            servers = ServerCollections(_settings(work, url))
            for g in guilds:
                assert servers.follow(g.id, g.name, site.url("/bench.xml")) is None
            base = {"api_base": fake.api_base, "gateway_url": fake.gateway_url, "work": str(work), "url": url,
                    "feed_interval": args.feed_interval, "dev_guild_id": guilds[0].id}
            bots = [_spawn({**base, "shard": shard}, work) for shard in (0, 1)]
            try:
                await _ready(fake, guilds)
                qs = [random.Random(args.seed + i).sample(questions, len(questions)) for i in range(2)]
                until = time.time() + args.seconds
                quiet = await asyncio.gather(*(user(fake, g, qs[i], until, None, {}) for i, g in enumerate(guilds)))
                seen: list[dict[str, float]] = [{}, {}]
                gens: list[tuple[float, int]] = []
                until = time.time() + args.seconds

                async def publishing() -> None:
                    while time.time() < until - args.every:
                        pub.publish()
                        await asyncio.sleep(args.every)

                busy = await asyncio.gather(*(user(fake, g, qs[i], until + args.grace, pub, seen[i])
                                              for i, g in enumerate(guilds)), publishing(),
                                            commits(url, until + args.grace, gens))
            finally:
                for b in bots:
                    b.terminate()
                for b in bots:
                    b.wait(30)
                args.logs.mkdir(parents=True, exist_ok=True)
                for shard in (0, 1):  # the bots' own logs, kept after the temporary folder goes
                    (args.logs / f"bot-{shard}.log").write_bytes((work / f"bot-{shard}.log").read_bytes())
    return {"quiet": quiet, "busy": busy[:2], "seen": seen, "published": pub.published, "commits": gens}


def _after_commit(published: float, seen_at: float, commits: list[tuple[float, int]]) -> float | None:
    """Seconds from the last commit before ``seen_at`` (after publication) to ``seen_at``."""
    done = [t for t, _ in commits if published <= t <= seen_at]
    return seen_at - done[-1] if done else None


def report(args: argparse.Namespace, r: dict, chunks: int, load: tuple[float, float]) -> str:
    rows = [("index", f"{chunks:,} chunks (seeded from {args.index}), PostgreSQL with pgvector"),
            ("processes", "2 bot processes (shards 0 and 1 of 2), shard 0 running the feed watcher "
                          f"(every {args.feed_interval:g} s); one user per guild asking back to back")]
    for shard in (0, 1):
        q, b = r["quiet"][shard], r["busy"][shard]
        rows.append((f"shard {shard}: questions answered, nothing published / publishing",
                     f"{len(q)} / {len(b)}"))
        rows.append((f"shard {shard}: reply p50 / p95 ms, nothing published",
                     f"{percentile(q, 50):.0f} / {percentile(q, 95):.0f}"))
        rows.append((f"shard {shard}: reply p50 / p95 ms, an article published every {args.every:g} s",
                     f"{percentile(b, 50):.0f} / {percentile(b, 95):.0f}"))
    for shard in (0, 1):
        seen = r["seen"][shard]
        waits = [seen[n] - t for n, t in r["published"] if n in seen]
        fresh = [x for n, t in r["published"] if n in seen
                 for x in [_after_commit(t, seen[n], r["commits"])] if x is not None]
        rows.append((f"shard {shard}: articles answered from / published",
                     f"{len(seen)} / {len(r['published'])}"))
        rows.append((f"shard {shard}: s from publication to the first reply naming it, p50 / max",
                     f"{percentile(waits, 50):.1f} / {max(waits, default=0):.1f}" if waits else "-"))
        rows.append((f"shard {shard}: s from the commit to that reply, p50 / max",
                     f"{percentile(fresh, 50):.2f} / {max(fresh, default=0):.2f}" if fresh else "-"))
    rows.append(("database commits during the publishing phase", f"{len(r['commits']) - 1}"))
    return measure_table(rows, load, "pg_bots")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, default=Path("/tmp/herald-ann-cache/index-bbc"),
                    help="a folder index built with the default model, copied into the database")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between published articles")
    ap.add_argument("--feed-interval", type=float, default=2.0, help="the watcher's HERALD_FEED_INTERVAL")
    ap.add_argument("--grace", type=float, default=30.0, help="seconds the users go on after the last article")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--logs", type=Path, default=Path("/tmp/herald-pg-bots"), help="where the bots' logs are kept")
    ap.add_argument("--bot", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bot:
        run_bot(json.loads(args.bot.read_text(encoding="utf-8")))
        return
    load_before = os.getloadavg()[0]
    with seeded_database(args.index, "herald-pgbots-") as (work, url, chunks):
        result = asyncio.run(measure(args, work, url))
        print(report(args, result, chunks, (load_before, os.getloadavg()[0])))


if __name__ == "__main__":
    main()
