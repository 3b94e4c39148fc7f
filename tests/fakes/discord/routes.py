"""REST handlers for the bot's own calls: users, application and commands, channels, messages, threads, guild.

``RoutesMixin`` is one part of :class:`~.server.FakeDiscord`; ``rest.py`` maps paths to these handlers.
"""

from __future__ import annotations

import contextlib

from .config import FakeChannel
from .constants import (
    CANNOT_EDIT_OTHERS_MESSAGE,
    INVALID_FORM_BODY,
    JSON,
    MISSING_ACCESS,
    UNKNOWN_CHANNEL,
    UNKNOWN_GUILD,
    UNKNOWN_MESSAGE,
    UNKNOWN_USER,
)
from .records import DiscordAPIError, RestContext


class RoutesMixin:
    """One coroutine per REST route; each returns ``(status, body)`` or raises ``DiscordAPIError``."""

    async def _no_content(self, ctx: RestContext) -> tuple[int, JSON]:
        return 204, None

    async def _get_me(self, ctx: RestContext) -> tuple[int, JSON]:
        return 200, {**self.config.bot.payload(), "verified": True, "mfa_enabled": False, "locale": self.config.locale}

    async def _get_user(self, ctx: RestContext) -> tuple[int, JSON]:
        u = self._maybe_user(int(ctx.params["user_id"]))
        if u is None:
            raise DiscordAPIError(404, UNKNOWN_USER, "Unknown User")
        return 200, u.payload()

    async def _create_dm(self, ctx: RestContext) -> tuple[int, JSON]:
        u = self._maybe_user(int((ctx.json or {}).get("recipient_id", 0)))
        if u is None:
            raise DiscordAPIError(400, INVALID_FORM_BODY, "Invalid Recipient(s)")
        return 200, self.dm_channel_payload(u)

    async def _get_application(self, ctx: RestContext) -> tuple[int, JSON]:
        cfg = self.config
        return 200, {
            "id": str(cfg.application_id),
            "name": cfg.application_name,
            "description": "Fake application for tests",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": cfg.owner.payload(),
            "verify_key": "0" * 64,
            "team": None,
            "flags": 0,
            "tags": [],
            "redirect_uris": [],
            "summary": "",
        }

    async def _get_gateway_bot(self, ctx: RestContext) -> tuple[int, JSON]:
        return 200, {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        }

    async def _get_gateway(self, ctx: RestContext) -> tuple[int, JSON]:
        return 200, {"url": self.gateway_url}

    def _check_app(self, ctx: RestContext) -> None:
        if int(ctx.params["app_id"]) != self.config.application_id:
            raise DiscordAPIError(403, 20012, "You are not authorized to perform this action on this application")

    def _check_guild(self, ctx: RestContext) -> int | None:
        """The path's guild id: 404 if no such guild, 403 Missing Access if the bot is not (or no longer) in it."""
        gid = ctx.params.get("guild_id")
        if gid is None:
            return None
        if int(gid) not in self.config.guild_ids():
            raise DiscordAPIError(404, UNKNOWN_GUILD, "Unknown Guild")
        if not self.bot_in_guild(int(gid)):
            raise DiscordAPIError(403, MISSING_ACCESS, "Missing Access")
        return int(gid)

    async def _get_commands(self, ctx: RestContext) -> tuple[int, JSON]:
        self._check_app(ctx)
        gid = self._check_guild(ctx)
        return 200, list(self.guild_commands.get(gid, []) if gid else self.global_commands)

    async def _put_commands(self, ctx: RestContext) -> tuple[int, JSON]:
        """Bulk overwrite; ids stay stable per (guild, name, type) like Discord."""
        self._check_app(ctx)
        gid = self._check_guild(ctx)
        out: list[dict[str, JSON]] = []
        for cmd in ctx.json or []:
            ctype = int(cmd.get("type", 1))
            key = (gid, cmd["name"], ctype)
            cmd_id = self._command_ids.setdefault(key, self.snowflakes.next())
            echo: dict[str, JSON] = {
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                **cmd,
                "id": str(cmd_id),
                "application_id": str(self.config.application_id),
                "version": str(self.snowflakes.next()),
                "type": ctype,
            }
            if gid is not None:
                echo["guild_id"] = str(gid)
            out.append(echo)
        if gid is None:
            self.global_commands = out
        else:
            self.guild_commands[gid] = out
        return 200, out

    async def _get_channel(self, ctx: RestContext) -> tuple[int, JSON]:
        cid = int(ctx.params["channel_id"])
        ch = self.guild_channel(cid)
        if ch is not None:
            self._channel_guild_id(cid)  # 403 if the bot left the channel's guild
            return 200, self.channel_payload(ch)
        u = self._dm_user_for_channel(cid)
        if u is not None:
            return 200, self.dm_channel_payload(u)
        raise DiscordAPIError(404, UNKNOWN_CHANNEL, "Unknown Channel")

    async def _typing(self, ctx: RestContext) -> tuple[int, JSON]:
        self._channel_guild_id(int(ctx.params["channel_id"]))
        return 204, None

    async def _get_messages(self, ctx: RestContext) -> tuple[int, JSON]:
        cid = int(ctx.params["channel_id"])
        self._channel_guild_id(cid)
        limit = int(ctx.query.get("limit", 50))
        msgs = [m for m in self.messages.values() if m["channel_id"] == str(cid)]
        if "before" in ctx.query:
            msgs = [m for m in msgs if int(m["id"]) < int(ctx.query["before"])]
        if "after" in ctx.query:
            msgs = [m for m in msgs if int(m["id"]) > int(ctx.query["after"])]
        msgs.sort(key=lambda m: int(m["id"]), reverse=True)
        return 200, msgs[:limit]

    async def _post_message(self, ctx: RestContext) -> tuple[int, JSON]:
        cid = int(ctx.params["channel_id"])
        msg = self._create_bot_message(cid, ctx.json or {}, ctx.files)
        await self._echo("MESSAGE_CREATE", msg)
        return 200, msg

    def _stored_message(self, ctx: RestContext) -> dict[str, JSON]:
        cid = int(ctx.params["channel_id"])
        self._channel_guild_id(cid)
        msg = self.messages.get(int(ctx.params["message_id"]))
        if msg is None or msg["channel_id"] != str(cid):
            raise DiscordAPIError(404, UNKNOWN_MESSAGE, "Unknown Message")
        return msg

    async def _get_message(self, ctx: RestContext) -> tuple[int, JSON]:
        return 200, self._stored_message(ctx)

    async def _patch_message(self, ctx: RestContext) -> tuple[int, JSON]:
        msg = self._stored_message(ctx)
        if msg["author"]["id"] != str(self.config.bot.id):
            raise DiscordAPIError(403, CANNOT_EDIT_OTHERS_MESSAGE, "Cannot edit a message authored by another user")
        self._edit_message(msg, ctx.json or {}, ctx.files)
        await self._echo("MESSAGE_UPDATE", msg)
        return 200, msg

    async def _delete_message(self, ctx: RestContext) -> tuple[int, JSON]:
        msg = self._stored_message(ctx)
        self._forget_message(int(msg["id"]))
        return 204, None

    def _forget_message(self, mid: int) -> None:
        msg = self.messages.pop(mid, None)
        if msg is not None:
            self.deleted_message_ids.append(mid)

    async def _create_thread(self, ctx: RestContext) -> tuple[int, JSON]:
        parent_id = int(ctx.params["channel_id"])
        parent = self.guild_channel(parent_id)
        if parent is None:
            raise DiscordAPIError(404, UNKNOWN_CHANNEL, "Unknown Channel")
        self._channel_guild_id(parent_id)  # 403 if the bot left the channel's guild
        body = ctx.json or {}
        if "message_id" in ctx.params:
            self._stored_message(ctx)
            thread_id = int(ctx.params["message_id"])  # Discord reuses the message id
            ttype = 11
        else:
            thread_id = self.snowflakes.next()
            ttype = int(body.get("type", 11))
        thread = FakeChannel(thread_id, str(body.get("name", "thread"))[:100], type=ttype, parent_id=parent_id)
        self.threads[thread_id] = thread
        payload = self.channel_payload(thread)
        if self.config.echo_bot_messages and self.live_session() is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.dispatch("THREAD_CREATE", {**payload, "newly_created": True}, timeout=0)
        return 201, payload

    async def _get_guild(self, ctx: RestContext) -> tuple[int, JSON]:
        payload = self.guild_create_payload(guild_id=self._check_guild(ctx))
        for key in ("channels", "members", "threads", "presences", "voice_states"):
            payload.pop(key, None)
        return 200, payload

    async def _get_guild_channels(self, ctx: RestContext) -> tuple[int, JSON]:
        gid = self._check_guild(ctx)
        return 200, [self.channel_payload(c) for c in self.config.guild(gid).channels]

    async def _get_roles(self, ctx: RestContext) -> tuple[int, JSON]:
        return 200, self.role_payloads(self._check_guild(ctx))

    async def _get_member(self, ctx: RestContext) -> tuple[int, JSON]:
        gid = self._check_guild(ctx)
        u = self._maybe_user(int(ctx.params["user_id"]))
        if u is None or not self.is_member(u, gid):
            raise DiscordAPIError(404, 10007, "Unknown Member")
        return 200, self.member_payload(u, guild_id=gid)
