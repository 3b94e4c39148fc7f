"""A fake Discord API + gateway server for end-to-end tests of discord.py bots.

Why this exists: Herald's end-to-end tests must drive the *real* discord.py
networking code (REST client, gateway websocket, heartbeat thread, interaction
webhooks) without any internet access.  ``FakeDiscord`` is an aiohttp server on
127.0.0.1 (ephemeral port) that speaks enough of Discord's v10 REST API and
gateway for a bot to log in, receive messages / slash commands / button clicks
and answer them.  Everything the bot sends is recorded so tests can assert on
it.

Typical use (``tests/bot_fixtures.py`` wires these into fixtures)::

    guard = block_external_network(monkeypatch)
    async with FakeDiscord(FakeDiscordConfig()) as fake:
        patch_discord(monkeypatch, fake)
        with DiscordErrorCollector() as errors:
            bot = make_bot(guild_ready_timeout=0.1)
            async with running_bot(bot, fake.config.token):
                msg = await fake.send_message(f"<@{fake.config.bot.id}> hi")
                req = await fake.wait_for_request(
                    lambda r: r.method == "POST" and r.path.endswith("/messages"))
        fake.assert_healthy()
    assert guard.attempts == []

discord.py 2.7 facts this relies on (verified against the installed source):

* every REST ``Route`` (including interaction callbacks and webhook
  follow-ups, see ``discord/webhook/async_.py``) builds its URL from the class
  attribute ``discord.http.Route.BASE`` at construction time;
  ``discord.http._set_api_version()`` resets it to discord.com.
* a plain ``Client`` connects to ``DiscordWebSocket.DEFAULT_GATEWAY`` (a
  ``yarl.URL``); it never calls ``GET /gateway/bot`` (only
  ``AutoShardedClient`` does; the fake serves it anyway).
* ``json_or_text`` only parses JSON when ``Content-Type`` is *exactly*
  ``application/json``; ``web.Response(text=..., content_type=...)`` appends
  ``; charset=utf-8`` so the fake sends ``body=`` bytes instead.
* the client asks for ``compress=zlib-stream`` but only decompresses *binary*
  frames, so plain text JSON frames work.
* ``client.latency`` is racy (can read ~one heartbeat interval even on a
  healthy loop); assert on ``fake.longest_heartbeat_gap`` instead.
* a failed ``client.start()`` (e.g. ``LoginFailure``) leaves the HTTP session
  open; ``await client.close()`` (``running_bot`` does it).

Layout (one concern per module; ``FakeDiscord`` in ``server.py`` combines the mixins):

* ``constants.py``: API prefix, intent / permission bits, error codes, flags, snowflakes.
* ``config.py``: ``FakeDiscordConfig`` and the users, channels and roles of the fake world;
  ``FakeGuild`` for guilds beyond the primary one (``FakeDiscordConfig(second_guild=True)``).
* ``records.py``: what the fake records (requests, interactions, gateway sessions) and its errors.
* ``validation.py``: Discord's message limits.
* ``world.py``: guild, member, role and channel payloads (per guild).
* ``guilds.py``: which guilds the bot is in; ``remove_bot_from_guild`` (GUILD_DELETE) / ``add_bot_to_guild``.
* ``messages.py``: messages from users, and the bot's messages created / edited over REST.
* ``interactions.py``: slash commands, button clicks, modal submits sent to the bot;
  ``command_data.py`` builds a command's options from its synced schema.
* ``gateway.py``: websocket sessions, IDENTIFY / RESUME, heartbeats, intent filtering, dispatch.
* ``rest.py``: request parsing, recording, error injection, the route table;
  ``routes.py`` (users, commands, channels, messages, guild) and ``callbacks.py`` (interaction callbacks,
  follow-up webhooks) handle them.
* ``harness.py``: ``patch_discord``, the network guard, the log collector, ``running_bot``, task checks.
"""

from .config import FakeChannel, FakeDiscordConfig, FakeGuild, FakeRole, FakeUser
from .constants import API_PREFIX, FLAG_COMPONENTS_V2, FLAG_EPHEMERAL, FLAG_LOADING, Intents, Perm
from .harness import (
    DiscordErrorCollector,
    NetworkGuard,
    assert_no_leaked_tasks,
    block_external_network,
    patch_discord,
    running_bot,
    stop_views,
    task_snapshot,
)
from .records import (
    DiscordAPIError,
    FakeDiscordTimeout,
    FakeInteraction,
    GatewaySession,
    RecordedRequest,
    UploadedFile,
)
from .server import FakeDiscord

__all__ = [
    "API_PREFIX",
    "FLAG_EPHEMERAL",
    "FLAG_LOADING",
    "FLAG_COMPONENTS_V2",
    "Intents",
    "Perm",
    "FakeUser",
    "FakeChannel",
    "FakeRole",
    "FakeGuild",
    "FakeDiscordConfig",
    "RecordedRequest",
    "UploadedFile",
    "FakeInteraction",
    "GatewaySession",
    "DiscordAPIError",
    "FakeDiscordTimeout",
    "FakeDiscord",
    "patch_discord",
    "block_external_network",
    "NetworkGuard",
    "DiscordErrorCollector",
    "running_bot",
    "stop_views",
    "task_snapshot",
    "assert_no_leaked_tasks",
]
