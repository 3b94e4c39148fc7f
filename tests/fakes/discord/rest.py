"""REST plumbing: the route table, request parsing and recording, injected errors, JSON responses.

``RestMixin`` is one part of :class:`~.server.FakeDiscord`; the handlers it routes to live in ``routes.py``
(users, commands, channels, messages, guild) and ``callbacks.py`` (interaction callbacks, follow-ups).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping

from aiohttp import web

from .constants import JSON, log
from .records import DiscordAPIError, Handler, RecordedRequest, RestContext, UploadedFile


class RestMixin:
    """Turns an HTTP request into a handler call and a recorded request."""

    def _route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern), handler))

    def _register_routes(self) -> None:
        ch = r"/channels/(?P<channel_id>\d+)"
        msg = ch + r"/messages/(?P<message_id>\d+)"
        app = r"/applications/(?P<app_id>\d+)"
        hook = r"/webhooks/(?P<app_id>\d+)/(?P<token>[^/]+)"
        r = self._route
        r("GET", r"/users/@me", self._get_me)
        r("GET", r"/users/(?P<user_id>\d+)", self._get_user)
        r("POST", r"/users/@me/channels", self._create_dm)
        r("GET", r"/oauth2/applications/@me", self._get_application)
        r("GET", r"/applications/@me", self._get_application)
        r("GET", r"/gateway/bot", self._get_gateway_bot)
        r("GET", r"/gateway", self._get_gateway)
        r("GET", app + r"/commands", self._get_commands)
        r("PUT", app + r"/commands", self._put_commands)
        r("GET", app + r"/guilds/(?P<guild_id>\d+)/commands", self._get_commands)
        r("PUT", app + r"/guilds/(?P<guild_id>\d+)/commands", self._put_commands)
        r("GET", ch, self._get_channel)
        r("POST", ch + r"/typing", self._typing)
        r("GET", ch + r"/messages", self._get_messages)
        r("POST", ch + r"/messages", self._post_message)
        r("POST", ch + r"/threads", self._create_thread)
        r("GET", msg, self._get_message)
        r("PATCH", msg, self._patch_message)
        r("DELETE", msg, self._delete_message)
        r("POST", msg + r"/threads", self._create_thread)
        r("PUT", msg + r"/reactions/(?P<emoji>[^/]+)/@me", self._no_content)
        r("DELETE", msg + r"/reactions/(?P<emoji>[^/]+)/(?P<who>@me|\d+)", self._no_content)
        r("GET", r"/guilds/(?P<guild_id>\d+)", self._get_guild)
        r("GET", r"/guilds/(?P<guild_id>\d+)/channels", self._get_guild_channels)
        r("GET", r"/guilds/(?P<guild_id>\d+)/roles", self._get_roles)
        r("GET", r"/guilds/(?P<guild_id>\d+)/members/(?P<user_id>\d+)", self._get_member)
        r("POST", r"/interactions/(?P<interaction_id>\d+)/(?P<token>[^/]+)/callback", self._interaction_callback)
        r("POST", hook, self._webhook_execute)
        r("GET", hook + r"/messages/(?P<message_id>@original|\d+)", self._webhook_get_message)
        r("PATCH", hook + r"/messages/(?P<message_id>@original|\d+)", self._webhook_edit_message)
        r("DELETE", hook + r"/messages/(?P<message_id>@original|\d+)", self._webhook_delete_message)

    async def _read_body(self, request: web.Request) -> tuple[JSON, list[UploadedFile]]:
        """JSON body, or multipart (``payload_json`` + ``files[n]``)."""
        files: list[UploadedFile] = []
        if not request.body_exists:
            return None, files
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            payload: JSON = None
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not hasattr(part, "read_chunk"):  # nested multipart: not used by discord.py
                    continue
                data = await part.read(decode=False)  # type: ignore[union-attr]
                name = part.name or ""
                if name == "payload_json":
                    payload = json.loads(bytes(data).decode("utf-8"))
                else:
                    files.append(
                        UploadedFile(name, part.filename, part.headers.get("Content-Type"), bytes(data))
                    )
            return payload, files
        raw = await request.read()
        if not raw:
            return None, files
        if ctype == "application/json":
            return json.loads(raw.decode("utf-8")), files
        return raw.decode("utf-8", "replace"), files

    def _json_response(self, status: int, body: JSON, headers: Mapping[str, str] | None = None) -> web.Response:
        if status == 204 or body is None:
            return web.Response(status=204 if status < 300 else status, headers=headers)
        # body= (bytes) keeps Content-Type exactly "application/json" (no charset)
        return web.Response(
            status=status, body=json.dumps(body).encode("utf-8"), content_type="application/json", headers=headers
        )

    async def _rest_entry(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        method = request.method.upper()
        try:
            body, files = await self._read_body(request)
        except Exception as exc:  # noqa: BLE001
            body, files = None, []
            self.internal_errors.append(f"could not parse body of {method} {path}: {exc!r}")
        auth = request.headers.get("Authorization")
        rec = RecordedRequest(
            index=-1,  # assigned on completion so concurrent requests never collide
            method=method,
            path=path,
            query=dict(request.query),
            json=body,
            headers=dict(request.headers),
            files=files,
            timestamp=time.monotonic(),
        )
        token = auth[4:] if auth and auth.startswith("Bot ") else None
        status, resp, headers = await self._handle_rest(rec, token)
        rec.status, rec.response = status, resp
        rec.index = len(self.requests)
        self.requests.append(rec)
        self._notify()
        return self._json_response(status, resp, headers)

    async def _handle_rest(self, rec: RecordedRequest, token: str | None) -> tuple[int, JSON, dict[str, str]]:
        for rule in self._error_rules:
            if rule.remaining > 0 and rule.method == rec.method and rule.path.fullmatch(rec.path):
                rule.remaining -= 1
                return rule.status, rule.body, rule.headers
        for method, pattern, handler in self._routes:
            m = pattern.fullmatch(rec.path)
            if m is None or method != rec.method:
                continue
            needs_auth = not rec.path.startswith(("/interactions/", "/webhooks/"))
            if needs_auth and not self._token_ok(token):
                return 401, {"message": "401: Unauthorized", "code": 0}, {}
            ctx = RestContext(rec.method, rec.path, m.groupdict(), rec.query, rec.json, rec.files, token)
            try:
                status, resp = await handler(ctx)
            except DiscordAPIError as exc:
                return exc.status, exc.body(), {}
            except Exception as exc:  # noqa: BLE001 - a fake bug must not look like a bot bug
                log.exception("fake REST handler failed")
                self.internal_errors.append(f"{rec.method} {rec.path}: {exc!r}")
                return 500, {"message": f"fake discord internal error: {exc!r}", "code": 0}, {}
            return status, resp, {}
        self.unhandled_requests.append(rec)
        return 404, {"message": "404: Not Found", "code": 0}, {}

    async def _attachment_entry(self, request: web.Request) -> web.StreamResponse:
        data = self.attachment_data.get(int(request.match_info["attachment_id"]))
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")
