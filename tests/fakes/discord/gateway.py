"""The gateway websocket: HELLO, IDENTIFY / RESUME, heartbeats and their ACKs, intent filtering and dispatch.

``GatewayMixin`` is one part of :class:`~.server.FakeDiscord` (state in ``FakeDiscord.__init__``: ``sessions``,
``identify_payloads``, ``sequence``, ``heartbeat_acks_sent``, ``ack_heartbeats``...).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from aiohttp import WSMsgType, web

from .constants import JSON, Intents, log
from .records import GatewaySession


class GatewayMixin:
    """One websocket per connection; events go to the newest live session that serves their guild (a session
    that IDENTIFYs with ``shard: [i, n]`` gets the guilds Discord gives shard i of n, and direct messages only
    when i is 0)."""

    def live_session(self) -> GatewaySession | None:
        for sess in reversed(self.sessions):
            if sess.live:
                return sess
        return None

    @staticmethod
    def shard_of(guild_id: int | str | None, shard_count: int) -> int:
        """Discord's rule: a guild's events go to shard ``(guild_id >> 22) % shard_count``; DMs to shard 0."""
        return (int(guild_id) >> 22) % shard_count if guild_id else 0

    def serves(self, sess: GatewaySession, guild_id: int | str | None) -> bool:
        return sess.shard is None or self.shard_of(guild_id, sess.shard[1]) == sess.shard[0]

    def session_for(self, data: Mapping[str, JSON]) -> GatewaySession | None:
        """The newest live session that receives an event about ``data``'s guild."""
        guild_id = data.get("guild_id") if isinstance(data, Mapping) else None
        for sess in reversed(self.sessions):
            if sess.live and self.serves(sess, guild_id):  # type: ignore[arg-type]
                return sess
        return None

    @property
    def identify_intents(self) -> int | None:
        """Intents bitfield from the latest IDENTIFY."""
        return self.identify_payloads[-1].get("intents") if self.identify_payloads else None

    async def wait_until_identified(self, timeout: float = 10.0) -> GatewaySession:
        return await self.wait_until(self.live_session, timeout=timeout, description="a gateway IDENTIFY")

    @property
    def heartbeat_interval(self) -> float:
        """Heartbeat interval sent in HELLO, in seconds."""
        return self.config.heartbeat_interval_ms / 1000.0

    @property
    def heartbeat_times(self) -> list[float]:
        return [t for s in self.sessions for t in s.heartbeat_times]

    @property
    def heartbeats_received(self) -> int:
        return sum(len(s.heartbeat_times) for s in self.sessions)

    @property
    def heartbeat_gaps(self) -> list[float]:
        """Gaps between consecutive heartbeats within each connection (seconds)."""
        return [g for s in self.sessions for g in s.heartbeat_gaps()]

    @property
    def longest_heartbeat_gap(self) -> float:
        """Largest gap between consecutive heartbeats (0.0 if fewer than two).

        A value well above ``heartbeat_interval`` means the bot's event loop
        was blocked (the heartbeat thread can only send via the loop).  Prefer
        this over ``client.latency``: discord.py updates ``_last_send`` in the
        heartbeat thread only after the send completes, so when the loop
        handles the ACK first, ``latency`` reads ~one interval (a race).
        """
        return max(self.heartbeat_gaps, default=0.0)

    async def wait_for_heartbeats(self, count: int, *, timeout: float = 10.0) -> None:
        await self.wait_until(
            lambda: self.heartbeats_received >= count, timeout=timeout, description=f"{count} heartbeats"
        )

    def _event_allowed(self, sess: GatewaySession, event: str, data: Mapping[str, JSON]) -> bool:
        intents = sess.intents if sess.intents is not None else -1
        is_dm = data.get("guild_id") is None
        if event.startswith("MESSAGE_REACTION"):
            return bool(intents & (1 << 13 if is_dm else Intents.GUILD_MESSAGE_REACTIONS))
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_DELETE_BULK"):
            return bool(intents & (Intents.DIRECT_MESSAGES if is_dm else Intents.GUILD_MESSAGES))
        if event.startswith("GUILD_MEMBER") and event != "GUILD_MEMBERS_CHUNK":
            return bool(intents & Intents.GUILD_MEMBERS)
        if event in ("GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE") or event.startswith(("CHANNEL_", "THREAD_")):
            return bool(intents & Intents.GUILDS)
        return True

    def _strip_content(self, sess: GatewaySession, event: str, data: dict[str, JSON]) -> dict[str, JSON]:
        """Mimic missing MESSAGE_CONTENT intent: blank content unless DM / mention / own message."""
        if not self.config.enforce_message_content_intent or event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
            return data
        if sess.intents is None or sess.intents & Intents.MESSAGE_CONTENT:
            return data
        bot_id = str(self.config.bot.id)
        if data.get("guild_id") is None or (data.get("author") or {}).get("id") == bot_id:
            return data
        if any(m.get("id") == bot_id for m in data.get("mentions") or []):
            return data
        stripped = dict(data)
        stripped.update(content="", embeds=[], attachments=[], components=[])
        stripped.pop("poll", None)
        return stripped

    async def dispatch(self, event: str, data: dict[str, JSON], *, timeout: float = 10.0) -> bool:
        """Send a DISPATCH (op 0) to the live session; ``False`` if intents filtered it.

        Waits up to ``timeout`` for a session that has IDENTIFY'd.
        """
        sess = self.session_for(data)
        if sess is None:
            if timeout <= 0:
                return False
            sess = await self.wait_until(lambda: self.session_for(data), timeout=timeout,
                                         description="a gateway IDENTIFY for this guild")
        if not self._event_allowed(sess, event, data):
            self.suppressed_events.append((event, data))
            return False
        await self._send_dispatch(sess, event, self._strip_content(sess, event, data))
        return True

    async def _send_dispatch(self, sess: GatewaySession, event: str, data: dict[str, JSON]) -> None:
        async with sess.lock:
            self.sequence += 1
            frame = {"op": 0, "t": event, "s": self.sequence, "d": data}
            self.dispatched_events.append((event, data))
            await sess.ws.send_str(json.dumps(frame))
        self._notify()

    async def _send_op(self, sess: GatewaySession, op: int, d: JSON) -> None:
        async with sess.lock:
            if sess.ws.closed:  # e.g. a heartbeat raced the client's close frame
                return
            await sess.ws.send_str(json.dumps({"op": op, "d": d, "s": None, "t": None}))

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT; discord.py reconnects and RESUMEs."""
        sess = self.live_session()
        if sess is not None:
            await self._send_op(sess, 7, None)

    async def invalidate_session(self, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION."""
        sess = self.live_session()
        if sess is not None:
            await self._send_op(sess, 9, resumable)

    async def close_gateway(self, code: int = 4000) -> None:
        """Drop the live websocket with ``code`` (4000 => client resumes)."""
        sess = self.live_session()
        if sess is not None:
            await sess.ws.close(code=code, message=b"closed by fake discord")

    def _token_ok(self, token: str | None) -> bool:
        if token is None or token in self.config.bad_tokens:
            return False
        return self.config.token is None or token == self.config.token

    async def _gateway_entry(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoclose=True, heartbeat=None)
        await ws.prepare(request)
        sess = GatewaySession(ws=ws, query=dict(request.query), opened_at=time.monotonic())
        self.sessions.append(sess)
        try:
            if request.query.get("encoding", "json") != "json":
                await ws.close(code=4002, message=b"fake discord only speaks json")
                return ws
            await self._send_op(sess, 10, {"heartbeat_interval": self.config.heartbeat_interval_ms})
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    frame = json.loads(msg.data)
                    sess.received.append(frame)
                    await self._on_gateway_frame(sess, frame)
                elif msg.type == WSMsgType.BINARY:
                    self.internal_errors.append("client sent a binary gateway frame")
                    await ws.close(code=4002, message=b"decode error")
                elif msg.type == WSMsgType.ERROR:
                    break
        except ConnectionError:
            pass  # the client went away mid-send: a normal disconnect
        except Exception as exc:  # noqa: BLE001 - report, never crash the server
            log.exception("fake gateway error")
            self.internal_errors.append(f"gateway handler: {exc!r}")
        finally:
            sess.closed_at = time.monotonic()
            sess.close_code = ws.close_code
            self._notify()
        return ws

    async def _on_gateway_frame(self, sess: GatewaySession, frame: Mapping[str, JSON]) -> None:
        op = frame.get("op")
        d = frame.get("d")
        if op == 1:  # HEARTBEAT
            sess.heartbeat_times.append(time.monotonic())
            if self.ack_heartbeats:
                await self._send_op(sess, 11, None)
                self.heartbeat_acks_sent += 1
            self._notify()
        elif op == 2:  # IDENTIFY
            await self._identify(sess, dict(d or {}))
        elif op == 3:  # PRESENCE_UPDATE
            self.presence_updates.append(dict(d or {}))
        elif op == 6:  # RESUME
            await self._resume(sess, dict(d or {}))
        elif op == 8:  # REQUEST_GUILD_MEMBERS
            await self._member_chunk(sess, dict(d or {}))
        elif op == 4:  # VOICE_STATE_UPDATE - ignored
            pass
        else:
            self.internal_errors.append(f"unexpected gateway op {op}: {frame!r}")
        self._notify()

    async def _identify(self, sess: GatewaySession, d: dict[str, JSON]) -> None:
        self.identify_payloads.append(d)
        if not self._token_ok(d.get("token")):
            await sess.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = d.get("intents")
        if intents is None:
            await sess.ws.close(code=4013, message=b"Invalid intent(s).")
            return
        allowed = self.config.allowed_intents
        if allowed is not None and int(intents) & ~allowed:
            await sess.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        self._session_counter += 1
        sess.session_id = f"fake-session-{self._session_counter}"
        sess.intents = int(intents)
        shard = d.get("shard")
        sess.shard = (int(shard[0]), int(shard[1])) if isinstance(shard, list) and len(shard) == 2 else None
        sess.identified = True
        guilds = [gid for gid in self.bot_guild_ids() if self.serves(sess, gid)]
        cfg = self.config
        ready = {
            "v": 10,
            "user": {**cfg.bot.payload(), "verified": True, "mfa_enabled": False, "email": None, "locale": cfg.locale},
            "guilds": [{"id": str(gid), "unavailable": True} for gid in guilds],
            "session_id": sess.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(cfg.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"],
            "user_settings": {},
        }
        if d.get("shard"):
            ready["shard"] = d["shard"]
        await self._send_dispatch(sess, "READY", ready)
        if sess.intents & Intents.GUILDS:
            for gid in guilds:
                payload = self.guild_create_payload(
                    include_all_members=bool(sess.intents & Intents.GUILD_MEMBERS), guild_id=gid)
                await self._send_dispatch(sess, "GUILD_CREATE", payload)

    async def _resume(self, sess: GatewaySession, d: dict[str, JSON]) -> None:
        previous = next((s for s in self.sessions if s.session_id == d.get("session_id") and s is not sess), None)
        if previous is None or not self._token_ok(d.get("token")):
            await self._send_op(sess, 9, False)
            return
        sess.session_id = previous.session_id
        sess.intents = previous.intents
        sess.identified = True
        sess.resumed = True
        await self._send_dispatch(sess, "RESUMED", {})

    async def _member_chunk(self, sess: GatewaySession, d: dict[str, JSON]) -> None:
        """GUILD_MEMBERS_CHUNK for op 8 REQUEST_GUILD_MEMBERS (one guild id, or a list of them)."""
        raw = d.get("guild_id")
        for gid in (raw if isinstance(raw, list) else [raw]):
            await self._member_chunk_for(sess, int(gid) if gid is not None else self.config.guild_id, d)

    async def _member_chunk_for(self, sess: GatewaySession, guild_id: int, d: dict[str, JSON]) -> None:
        members = self.guild_members(guild_id)
        if d.get("user_ids"):
            ids = {int(x) for x in d["user_ids"]}
            members = [m for m in members if m.id in ids]
        elif d.get("query"):
            members = [m for m in members if m.username.startswith(str(d["query"]))]
        limit = int(d.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: dict[str, JSON] = {
            "guild_id": str(guild_id),
            "members": [self.member_payload(m, guild_id=guild_id) for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if d.get("nonce"):
            chunk["nonce"] = d["nonce"]
        await self._send_dispatch(sess, "GUILD_MEMBERS_CHUNK", chunk)
