"""Smoke tests: real discord.py networking code against ``tests/fakes/discord/``.

Why: before Herald's end-to-end tests rely on the fake, prove that an
unmodified discord.py 2.x client can log in, keep the gateway alive, and
answer messages, slash commands and button clicks through it - and that
nothing tries to leave 127.0.0.1.  The bot here is a tiny throwaway bot, not
Herald's.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator

import discord
import pytest
import pytest_asyncio
from discord import app_commands
from discord.ext import commands

from bot_fixtures import discord_errors, fake, network_guard  # noqa: F401 - fixtures shared with the bot tests
from fakes.discord import (
    FakeDiscord,
    FakeDiscordConfig,
    Intents,
    NetworkGuard,
    Perm,
    running_bot,
)

pytestmark = [
    pytest.mark.asyncio(loop_scope="function"),
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


# --------------------------------------------------------------------------- #
# fixtures (network_guard, discord_errors and fake come from bot_fixtures)
# --------------------------------------------------------------------------- #


@pytest.fixture
def fake_config(request: pytest.FixtureRequest) -> FakeDiscordConfig:
    """The fake world these tests run in (bot_fixtures' ``fake`` starts it and points discord.py at it);
    ``@TWO_GUILDS`` gives a test the second guild too."""
    return FakeDiscordConfig(heartbeat_interval_ms=1000, second_guild=getattr(request, "param", "") == "two")


TWO_GUILDS = pytest.mark.parametrize("fake_config", ["two"], indirect=True)


class SmokeView(discord.ui.View):
    """A persistent one-button view (custom_id fixed, no timeout)."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Helpful", style=discord.ButtonStyle.success, custom_id="smoke:helpful")
    async def helpful(self, interaction: discord.Interaction, button: discord.ui.Button[SmokeView]) -> None:
        await interaction.response.send_message(f"thanks {interaction.user.name}", ephemeral=True)


def make_bot(guild_id: int) -> commands.Bot:
    """Tiny bot: replies to mentions/DMs, has /ping (defer + follow-up)."""
    bot = commands.Bot(
        command_prefix="!",
        intents=discord.Intents.default(),  # no privileged message_content
        guild_ready_timeout=0.1,
        help_command=None,
    )
    bot.seen_contents = []  # type: ignore[attr-defined]

    @bot.event
    async def on_message(message: discord.Message) -> None:
        bot.seen_contents.append(message.content)  # type: ignore[attr-defined]
        if message.author.bot:
            return
        is_dm = message.guild is None
        if is_dm or (bot.user is not None and bot.user in message.mentions):
            async with message.channel.typing():
                await message.reply("pong", view=SmokeView(), mention_author=False)

    @bot.tree.command(name="ping", description="Ping the bot", guild=discord.Object(id=guild_id))
    @app_commands.describe(text="what to echo")
    async def ping(interaction: discord.Interaction, text: str = "pong") -> None:
        await interaction.response.defer(thinking=True)
        await asyncio.sleep(0.05)  # pretend to work
        await interaction.followup.send(f"echo: {text}")

    return bot


@pytest_asyncio.fixture(loop_scope="function")
async def bot(fake: FakeDiscord) -> AsyncIterator[commands.Bot]:
    """The tiny bot, logged in to the fake and ready."""
    client = make_bot(fake.config.guild_id)
    async with running_bot(client, fake.config.token or "x"):
        yield client


# --------------------------------------------------------------------------- #
# tests
# --------------------------------------------------------------------------- #


async def test_login_handshake(fake: FakeDiscord, bot: commands.Bot) -> None:
    cfg = fake.config
    assert bot.user is not None and bot.user.id == cfg.bot.id
    assert bot.application_id == cfg.application_id
    assert fake.find_requests(method="GET", path="/users/@me")[0].status == 200
    assert fake.find_requests(method="GET", path="/oauth2/applications/@me")[0].status == 200
    assert not fake.find_requests(path="/gateway/bot")  # plain Client never asks

    identify = fake.identify_payloads[-1]
    assert identify["token"] == cfg.token
    intents = fake.identify_intents
    assert intents == discord.Intents.default().value
    assert intents is not None and not intents & Intents.MESSAGE_CONTENT
    assert fake.sessions[-1].query.get("v") == "10"
    assert fake.sessions[-1].query.get("compress") == "zlib-stream"  # asked, yet text frames work

    guild = bot.get_guild(cfg.guild_id)
    assert guild is not None and guild.name == cfg.guild_name
    assert guild.default_role.id == guild.id
    assert {c.id for c in guild.text_channels} == {cfg.channel_id, cfg.other_channel_id}
    assert guild.me is not None and guild.me.id == cfg.bot.id
    assert math.isfinite(bot.latency)  # a HEARTBEAT_ACK arrived


async def test_mention_reply_and_dm(fake: FakeDiscord, bot: commands.Bot) -> None:
    cfg = fake.config
    msg = await fake.send_message(f"<@{cfg.bot.id}> how do I reset my password?")
    assert msg["mentions"][0]["id"] == str(cfg.bot.id)

    reply = await fake.wait_for_request(method="POST", path=rf"/channels/{cfg.channel_id}/messages")
    assert reply.status == 200
    assert reply.json["content"] == "pong"
    assert str(reply.json["message_reference"]["message_id"]) == msg["id"]  # discord.py sends an int
    assert reply.json["components"][0]["components"][0]["custom_id"] == "smoke:helpful"
    typing = fake.find_requests(method="POST", path=rf"/channels/{cfg.channel_id}/typing")
    assert typing and typing[0].index < reply.index and typing[0].status == 204

    # a guild message without a mention: no reply, content blanked (no intent)
    mark = fake.mark()
    await fake.send_message("just chatting", author=cfg.admin)
    await fake.assert_no_request(method="POST", path=r"/channels/\d+/messages", since=mark, duration=0.3)
    assert "" in bot.seen_contents  # type: ignore[attr-defined]
    assert "just chatting" not in bot.seen_contents  # type: ignore[attr-defined]

    # a DM (channel type 1, no guild_id) gets a reply in the DM channel
    dm = await fake.send_message("hello in private", guild=False, author=cfg.outsider)
    assert "guild_id" not in dm
    dm_reply = await fake.wait_for_request(
        method="POST", path=rf"/channels/{fake.dm_channel_id(cfg.outsider)}/messages", since=mark
    )
    assert str(dm_reply.json["message_reference"]["message_id"]) == dm["id"]
    assert "hello in private" in bot.seen_contents  # type: ignore[attr-defined]


async def test_slash_command_defer_and_followup(fake: FakeDiscord, bot: commands.Bot) -> None:
    cfg = fake.config
    synced = await bot.tree.sync(guild=discord.Object(id=cfg.guild_id))
    assert [c.name for c in synced] == ["ping"]
    put = fake.find_requests(method="PUT", path=rf"/applications/{cfg.application_id}/guilds/{cfg.guild_id}/commands")
    assert put and put[0].json[0]["name"] == "ping"

    inter = await fake.send_slash_command("ping", {"text": "hello"}, user=cfg.admin)
    callback = await fake.wait_for_callback(inter)
    assert callback.query == {"with_response": "1"}
    assert callback.json["type"] == 5  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
    assert callback.response["resource"]["type"] == 5

    followup = await fake.wait_for_followup(inter)
    assert followup.query.get("wait") == "1"
    assert followup.json["content"] == "echo: hello"
    assert followup.status == 200
    original = fake.original_message(inter)
    assert original is not None and original["content"] == "echo: hello"  # replaced "thinking"
    assert int(inter.payload["member"]["permissions"]) & Perm.MANAGE_GUILD


async def test_button_click_gets_callback(fake: FakeDiscord, bot: commands.Bot) -> None:
    cfg = fake.config
    await fake.send_message(f"<@{cfg.bot.id}> hi")
    bot_msg = await fake.wait_for_bot_message(lambda m: bool(m["components"]), channel_id=cfg.channel_id)

    inter = await fake.send_component_click("smoke:helpful", user=cfg.user)
    assert inter.payload["message"]["id"] == bot_msg["id"]
    callback = await fake.wait_for_callback(inter)
    assert callback.json["type"] == 4
    assert callback.json["data"]["content"] == f"thanks {cfg.user.username}"
    assert callback.json["data"]["flags"] & 64  # ephemeral
    assert callback.response["interaction"]["response_message_ephemeral"] is True


async def test_bad_token_raises_login_failure(fake: FakeDiscord) -> None:
    client = make_bot(fake.config.guild_id)
    with pytest.raises(discord.LoginFailure):
        async with running_bot(client, "bad-token"):
            pass  # pragma: no cover
    assert client.is_closed()  # running_bot closed the HTTP session
    rejected = fake.find_requests(method="GET", path="/users/@me")
    assert rejected and rejected[0].status == 401
    assert rejected[0].response == {"message": "401: Unauthorized", "code": 0}
    assert fake.sessions == []


async def test_heartbeats_acked_and_gap_measured(fake: FakeDiscord, bot: commands.Bot) -> None:
    await fake.wait_for_heartbeats(3, timeout=5)
    assert fake.heartbeat_interval == 1.0
    assert fake.heartbeat_acks_sent == fake.heartbeats_received >= 3
    gap = fake.longest_heartbeat_gap
    assert 0.5 < gap < 1.5 * fake.heartbeat_interval, gap
    # Only "finite": discord.py sets KeepAliveHandler._last_send in the heartbeat
    # thread *after* the send completes, so if the loop handles the ACK first,
    # bot.latency ~= one interval.  Use fake.longest_heartbeat_gap, not latency.
    assert math.isfinite(bot.latency)


async def test_external_network_blocked(network_guard: NetworkGuard) -> None:
    with pytest.raises(OSError):
        socket.getaddrinfo("discord.com", 443)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        with pytest.raises(OSError):
            await loop.sock_connect(sock, ("192.0.2.1", 443))
    finally:
        sock.close()
    assert len(network_guard.attempts) == 2
    network_guard.attempts.clear()  # expected; keep the fixture's teardown check meaningful


# --------------------------------------------------------------------------- #
# two guilds: the bot in guild A (primary) and guild B at once
# --------------------------------------------------------------------------- #


def make_two_guild_bot(guild_id: int) -> commands.Bot:
    """The tiny bot plus a global /whoami and records of where things happened (guild joins and removals)."""
    bot = make_bot(guild_id)
    bot.message_guilds = []  # type: ignore[attr-defined]
    bot.whoami_calls = []  # type: ignore[attr-defined]
    bot.removed_guilds = []  # type: ignore[attr-defined]
    bot.joined_guilds = []  # type: ignore[attr-defined]

    @bot.tree.command(name="whoami", description="Where am I and what may I do")  # global: every guild
    async def whoami(interaction: discord.Interaction) -> None:
        manage = interaction.permissions.manage_guild
        bot.whoami_calls.append((interaction.guild_id, interaction.user.id, manage))  # type: ignore[attr-defined]
        await interaction.response.send_message(f"guild={interaction.guild_id} manage={manage}", ephemeral=True)

    @bot.listen("on_message")
    async def record_guild(message: discord.Message) -> None:
        bot.message_guilds.append(message.guild.id if message.guild else None)  # type: ignore[attr-defined]

    @bot.event
    async def on_guild_remove(guild: discord.Guild) -> None:
        bot.removed_guilds.append(guild.id)  # type: ignore[attr-defined]

    @bot.event
    async def on_guild_join(guild: discord.Guild) -> None:
        bot.joined_guilds.append(guild.id)  # type: ignore[attr-defined]

    return bot


@pytest_asyncio.fixture(loop_scope="function")
async def two_guild_bot(fake: FakeDiscord) -> AsyncIterator[commands.Bot]:
    """The tiny bot with /whoami synced globally and /ping to guild A only, ready in both guilds."""
    client = make_two_guild_bot(fake.config.guild_id)
    async with running_bot(client, fake.config.token or "x"):
        await client.tree.sync()
        await client.tree.sync(guild=discord.Object(id=fake.config.guild_id))
        yield client


@TWO_GUILDS
async def test_two_guilds_visible_to_the_client(fake: FakeDiscord, two_guild_bot: commands.Bot) -> None:
    cfg, b = fake.config, fake.config.guild_b
    assert fake.bot_guild_ids() == [cfg.guild_id, b.id]
    ready = next(d for e, d in fake.dispatched_events if e == "READY")
    assert [g["id"] for g in ready["guilds"]] == [str(cfg.guild_id), str(b.id)]
    assert [d["id"] for e, d in fake.dispatched_events if e == "GUILD_CREATE"] == [str(cfg.guild_id), str(b.id)]

    assert {g.id for g in two_guild_bot.guilds} == {cfg.guild_id, b.id}
    guild_a, guild_b = two_guild_bot.get_guild(cfg.guild_id), two_guild_bot.get_guild(b.id)
    assert guild_a is not None and guild_b is not None
    assert guild_b.name == b.name and guild_b.owner_id == b.owner.id != cfg.owner.id
    assert {c.id for c in guild_b.text_channels} == {c.id for c in b.channels}
    assert {c.id for c in guild_a.text_channels} == {cfg.channel_id, cfg.other_channel_id}
    assert guild_b.default_role.id == b.id
    assert guild_b.get_role(b.moderator_role_id).permissions.manage_guild  # type: ignore[union-attr]
    assert guild_b.me is not None and guild_b.me.id == cfg.bot.id


@TWO_GUILDS
async def test_interaction_in_guild_b_has_b_guild_and_permissions(
    fake: FakeDiscord, two_guild_bot: commands.Bot
) -> None:
    cfg, b = fake.config, fake.config.guild_b
    calls = two_guild_bot.whoami_calls  # type: ignore[attr-defined]
    inter = await fake.send_slash_command("whoami", user=b.admin, guild_id=b.id)
    callback = await fake.wait_for_callback(inter)
    assert callback.json["data"]["content"] == f"guild={b.id} manage=True"
    assert inter.guild_id == b.id and inter.channel_id == b.channel_id
    assert inter.payload["member"]["roles"] == [str(b.moderator_role_id)]
    assert inter.payload["channel"]["guild_id"] == str(b.id)

    # one user, two guilds: alice moderates A and is a plain member of B; bob is plain in both
    for user, gid, manage in ((cfg.admin, b.id, False), (cfg.admin, cfg.guild_id, True),
                              (cfg.user, b.id, False), (cfg.user, cfg.guild_id, False), (b.owner, b.id, True)):
        inter = await fake.send_slash_command("whoami", user=user, guild_id=gid)
        await fake.wait_for_callback(inter)
        assert calls[-1] == (gid, user.id, manage)

    # a channel says which guild: B's second channel, no guild_id given
    inter = await fake.send_slash_command("whoami", user=b.admin, channel_id=b.other_channel_id)
    await fake.wait_for_callback(inter)
    assert calls[-1] == (b.id, b.admin.id, True)

    with pytest.raises(AssertionError, match="not registered"):  # /ping was synced to guild A only
        await fake.send_slash_command("ping", user=b.admin, guild_id=b.id)
    with pytest.raises(AssertionError, match="not a member"):  # erin is in guild B only
        await fake.send_slash_command("whoami", user=b.admin, guild_id=cfg.guild_id)
    with pytest.raises(KeyError, match="belongs to guild"):
        await fake.send_slash_command("whoami", user=cfg.user, guild_id=b.id, channel_id=cfg.channel_id)
    inter = await fake.send_slash_command("ping", {"text": "a"}, user=cfg.admin)  # still fine in guild A
    assert (await fake.wait_for_followup(inter)).json["content"] == "echo: a"


@TWO_GUILDS
async def test_mention_in_guild_b_and_dm_still_work(fake: FakeDiscord, two_guild_bot: commands.Bot) -> None:
    cfg, b = fake.config, fake.config.guild_b
    msg = await fake.send_message(f"<@{cfg.bot.id}> hi from B", author=b.admin, guild_id=b.id)
    assert msg["guild_id"] == str(b.id) and msg["member"]["roles"] == [str(b.moderator_role_id)]
    reply = await fake.wait_for_bot_message(channel_id=b.channel_id)
    assert reply["guild_id"] == str(b.id) and reply["message_reference"]["message_id"] == msg["id"]
    assert str(b.id) == str(two_guild_bot.message_guilds[0])  # type: ignore[attr-defined]

    mark = len(fake.bot_messages)
    dm = await fake.send_message("hello in private", guild=False, author=b.owner)  # dave: B only, DMs work
    assert "guild_id" not in dm
    await fake.wait_for_bot_message(channel_id=fake.dm_channel_id(b.owner), since=mark)
    with pytest.raises(ValueError):
        await fake.send_message("nowhere", guild=False, guild_id=b.id)


@TWO_GUILDS
async def test_guild_delete_triggers_on_guild_remove_and_rejoin(
    fake: FakeDiscord, two_guild_bot: commands.Bot
) -> None:
    cfg, b = fake.config, fake.config.guild_b
    assert await fake.remove_bot_from_guild(b.id)
    await fake.wait_until(lambda: two_guild_bot.removed_guilds, description="on_guild_remove")  # type: ignore[attr-defined]
    assert two_guild_bot.removed_guilds == [b.id]  # type: ignore[attr-defined]
    assert ("GUILD_DELETE", {"id": str(b.id)}) in fake.dispatched_events  # no "unavailable": a kick
    assert two_guild_bot.get_guild(b.id) is None and two_guild_bot.get_guild(cfg.guild_id) is not None
    assert fake.bot_guild_ids() == [cfg.guild_id]

    with pytest.raises(discord.Forbidden):  # the bot's REST calls into guild B now fail
        await two_guild_bot.fetch_channel(b.channel_id)
    with pytest.raises(AssertionError, match="not in guild"):  # and nobody there can reach it
        await fake.send_message(f"<@{cfg.bot.id}> still there?", guild_id=b.id)
    inter = await fake.send_slash_command("whoami", user=cfg.user)  # guild A is untouched
    await fake.wait_for_callback(inter)

    assert await fake.add_bot_to_guild(b.id)
    await fake.wait_until(lambda: two_guild_bot.joined_guilds, description="on_guild_join")  # type: ignore[attr-defined]
    assert two_guild_bot.joined_guilds == [b.id]  # type: ignore[attr-defined]
    rejoined = two_guild_bot.get_guild(b.id)
    assert rejoined is not None and {c.id for c in rejoined.text_channels} == {c.id for c in b.channels}
    inter = await fake.send_slash_command("whoami", user=b.admin, guild_id=b.id)
    await fake.wait_for_callback(inter)
    assert two_guild_bot.whoami_calls[-1] == (b.id, b.admin.id, True)  # type: ignore[attr-defined]


@TWO_GUILDS
async def test_reconnect_after_removal_lists_only_remaining_guilds(
    fake: FakeDiscord, two_guild_bot: commands.Bot
) -> None:
    cfg, b = fake.config, fake.config.guild_b

    async def identify_now(shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py waits 5 s before identifying again; the fake has no rate limit to respect."""

    two_guild_bot.before_identify_hook = identify_now  # type: ignore[method-assign]
    await fake.remove_bot_from_guild(b.id)
    await fake.invalidate_session(resumable=False)  # the bot identifies anew and gets READY again
    await fake.wait_until(lambda: len(fake.identify_payloads) >= 2 and fake.live_session(),
                          description="a second IDENTIFY")
    ready = [d for e, d in fake.dispatched_events if e == "READY"][-1]
    assert [g["id"] for g in ready["guilds"]] == [str(cfg.guild_id)]
    await fake.wait_until(lambda: two_guild_bot.get_guild(cfg.guild_id), description="guild A again")
    assert two_guild_bot.get_guild(b.id) is None


async def test_one_guild_config_has_no_guild_b(fake: FakeDiscord) -> None:
    assert fake.config.guild_ids() == [fake.config.guild_id] == fake.bot_guild_ids()
    with pytest.raises(AssertionError, match="second_guild"):
        fake.config.guild_b  # noqa: B018 - the property raises
