"""20 questions at once to the real bot, over the fake Discord on 127.0.0.1: does everything get answered,
and do the gateway heartbeats keep flowing while it works?

    .venv/bin/python -m benchmarks.bot_load                 # 20 mentions at once, real model and article
    .venv/bin/python -m benchmarks.bot_load --control-blocking   # the same with Engine.ask run ON the loop
    .venv/bin/python -m benchmarks.bot_load --work-ms 200 [--control-blocking]   # as if each took 200 ms more

The bot is ``bot.discord_bot.client.HeraldBot`` unmodified, with the packaged all-MiniLM-L6-v2 model over the
article in ``corpus/`` (indexed into a temporary folder). Nothing leaves 127.0.0.1. Latency is from the
moment the fake dispatches a question to the moment the bot's reply POST reaches it. The heartbeat
interval is short (250 ms by default; Discord uses ~41 s) so that several beats fall inside the burst:
a blocked event loop would show as a gap of two intervals or more. ``--control-blocking`` runs
``Engine.ask`` directly on the event loop, to show what the measurement looks like when the loop is
blocked. The fake Discord is imported as ``tests.fakes.discord``: run from the repository root, ``tests/``
is a namespace package (see benchmarks/__init__.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .common import CORPUS, percentile

QUESTIONS = [
    "Who vetoed the resolution?",
    "Who is the French foreign minister?",
    "Where did Ayrault go after Moscow?",
    "Which city is the crisis about?",
    "How many Security Council members supported the resolution?",
]


async def run(args: argparse.Namespace) -> int:
    import discord.gateway
    import discord.http
    import yarl

    from bot.discord_bot.client import HeraldBot
    from bot.settings import Settings
    from index import EngineConfig, open_engine
    from index.embed.models import DEFAULT_MODEL
    from tests.fakes.discord import FakeDiscord, FakeDiscordConfig, running_bot

    tmp = Path(tempfile.mkdtemp(prefix="herald-bot-load-"))
    try:
        corpus = tmp / "corpus"
        shutil.copytree(CORPUS, corpus)
        t0 = time.perf_counter()
        engine = open_engine(EngineConfig(corpus=corpus, index_dir=tmp / "index", model=DEFAULT_MODEL))
        engine.ask(QUESTIONS[0])  # warm, as `herald bot` does before connecting
        if args.work_ms:
            from tests.fakes.engine import WorkingEngine

            engine = WorkingEngine(engine, args.work_ms / 1000)
        print(f"index and model ready in {time.perf_counter() - t0:.1f} s "
              f"({len(engine.index.documents)} article(s), {len(engine.index.chunks)} passages)")

        config = FakeDiscordConfig(token="load-test-token", heartbeat_interval_ms=args.heartbeat_ms)
        async with FakeDiscord(config) as fake:
            saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
            discord.http.Route.BASE = fake.api_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
            try:
                settings = Settings(discord_token=config.token, cooldown_seconds=0.0,
                                    max_concurrency=args.concurrency, dev_guild_id=config.guild_id,
                                    feedback_file=tmp / "feedback.jsonl")
                bot = HeraldBot(settings=settings, engine=engine, guild_ready_timeout=0.05)
                if args.control_blocking:
                    async def blocking_answer(question: str):  # the mistake the bot avoids
                        return bot.engine.ask(question)
                    bot.answer = blocking_answer  # type: ignore[method-assign]
                async with running_bot(bot, config.token):
                    await fake.wait_for_heartbeats(3, timeout=10)
                    beats_before = fake.heartbeats_received
                    acks_before = fake.heartbeat_acks_sent
                    mention = f"<@{config.bot.id}> "
                    start = time.monotonic()
                    sent = await asyncio.gather(*(fake.send_message(mention + QUESTIONS[i % len(QUESTIONS)])
                                                  for i in range(args.questions)))
                    sent_at = time.monotonic()  # all dispatched (the fake sends them back to back)
                    ids = {q["id"] for q in sent}

                    def replies():
                        found = {}
                        for r in fake.find_requests(method="POST", path=r"/channels/\d+/messages"):
                            ref = str(((r.json or {}).get("message_reference") or {}).get("message_id"))
                            if ref in ids and ref not in found:
                                found[ref] = r
                        return found if len(found) == len(ids) else None

                    try:
                        got = await fake.wait_until(replies, timeout=args.timeout, description="all replies")
                    except AssertionError:
                        got = {}
                    burst_end = time.monotonic()
                    # keep watching the gateway for two more intervals after the burst
                    await asyncio.sleep(2 * fake.heartbeat_interval)
                    answered = [r for r in (got or {}).values() if 200 <= r.status < 300 and r.json.get("embeds")]
                    dispatched = {q["id"]: start for q in sent}
                    latencies = [(r.timestamp - dispatched[str(r.json["message_reference"]["message_id"])]) * 1000
                                 for r in answered]
                    in_burst = [t for t in fake.heartbeat_times if start - fake.heartbeat_interval <= t]
                    gaps = [b - a for a, b in zip(in_burst, in_burst[1:])]
                    longest = max(gaps, default=0.0)
                    interval = fake.heartbeat_interval
                    mode = "CONTROL: Engine.ask on the event loop" if args.control_blocking else \
                        f"Engine.ask in worker threads, max_concurrency={args.concurrency}"
                    print(f"mode:                      {mode}")
                    print(f"all answered:              {len(answered)}/{args.questions}")
                    print(f"dispatch of the questions: {(sent_at - start) * 1000:.0f} ms; "
                          f"last reply after {(burst_end - start) * 1000:.0f} ms")
                    print(f"heartbeats during/after:   {fake.heartbeats_received - beats_before} sent, "
                          f"{fake.heartbeat_acks_sent - acks_before} acknowledged")
                    print(f"longest heartbeat gap:     {longest * 1000:.0f} ms vs interval {interval * 1000:.0f} ms "
                          f"({'OK' if longest < 1.5 * interval else 'LOOP BLOCKED'})")
                    if latencies:
                        print(f"latency (sent -> reply):   p50 {percentile(latencies, 50):.0f} ms, "
                              f"p95 {percentile(latencies, 95):.0f} ms, max {max(latencies):.0f} ms, "
                              f"mean {statistics.mean(latencies):.0f} ms")
                    ok = len(answered) == args.questions and longest < 1.5 * interval
            finally:
                discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
        return 0 if ok or args.control_blocking else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2, help="HERALD_MAX_CONCURRENCY (default 2)")
    parser.add_argument("--heartbeat-ms", type=int, default=250)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--work-ms", type=float, default=0.0,
                        help="add this much blocking work to every question (a slower model; makes the control "
                             "visible now that a question takes ~15 ms)")
    parser.add_argument("--control-blocking", action="store_true",
                        help="run Engine.ask on the event loop (what not to do), for comparison")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    logging.getLogger("discord.client").setLevel(logging.ERROR)  # "PyNaCl is not installed" (no voice: fine)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
