"""Interactions a user starts: slash commands, button clicks / selects and modal submits, and the waits for
the bot's answer to them.

``InteractionsMixin`` is one part of :class:`~.server.FakeDiscord` (state in ``FakeDiscord.__init__``:
``interactions``, ``_interactions_by_token``, ``global_commands``, ``guild_commands``). The bot's side of an
interaction (callbacks and follow-up webhooks) is in ``callbacks.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from .config import FakeChannel, FakeRole, FakeUser
from .constants import JSON, Perm
from .records import FakeInteraction, RecordedRequest
from .validation import iter_components


class InteractionsMixin:
    """Dispatching INTERACTION_CREATE as Discord builds it."""

    def _new_interaction(
        self,
        itype: int,
        data: dict[str, JSON],
        *,
        user: FakeUser | int | None,
        channel_id: int | None,
        guild: bool,
        permissions: int | str | None,
        locale: str | None,
        message: dict[str, JSON] | None = None,
        extra: Mapping[str, JSON] | None = None,
    ) -> FakeInteraction:
        """Record an INTERACTION_CREATE payload of type ``itype`` from ``user`` (not yet dispatched)."""
        cfg = self.config
        u = self.user(user)
        iid = self.snowflakes.next()
        token = f"fake-interaction-token-{iid}"
        cid, channel, perms = self._interaction_channel(u, channel_id, guild, permissions)
        gid = cfg.guild_id if guild else None
        payload: dict[str, JSON] = {
            "id": str(iid),
            "application_id": str(cfg.application_id),
            "type": itype,
            "data": data,
            "channel_id": str(cid),
            "channel": channel,
            "token": token,
            "version": 1,
            "app_permissions": str(cfg.app_permissions),
            "locale": locale or cfg.locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": cfg.attachment_size_limit,
        }
        payload.update(self._interaction_context(u, gid, perms))
        if message is not None:
            payload["message"] = message
        if extra:
            payload.update(extra)
        inter = FakeInteraction(id=iid, token=token, type=itype, payload=payload, channel_id=cid, guild_id=gid,
                                user_id=u.id, dispatched_at=time.monotonic(),
                                source_message_id=int(message["id"]) if message else None)
        self.interactions[iid] = inter
        self._interactions_by_token[token] = inter
        return inter

    def _interaction_channel(
        self, user: FakeUser, channel_id: int | None, guild: bool, permissions: int | str | None
    ) -> tuple[int, dict[str, JSON], int]:
        """(channel id, channel payload with the member's permissions, permissions) where the user acts."""
        if guild:
            cid = channel_id if channel_id is not None else self.config.channel_id
            ch = self.guild_channel(cid)
            if ch is None:
                raise KeyError(f"channel {cid} is not a fake guild channel")
            perms = int(permissions) if permissions is not None else self.role_permissions(user)
            channel = self.channel_payload(ch)
            channel["permissions"] = str(perms)
            return cid, channel, perms
        cid = channel_id if channel_id is not None else self.dm_channel_id(user)
        channel = self.dm_channel_payload(user)
        channel["id"] = str(cid)
        return cid, channel, 0

    def _interaction_context(self, user: FakeUser, guild_id: int | None, perms: int) -> dict[str, JSON]:
        """Guild and member fields for a guild interaction, the user for a DM one."""
        if guild_id is None:
            return {"user": user.payload(), "authorizing_integration_owners": {"0": "0"}, "context": 1}
        locale = self.config.locale
        return {
            "guild_id": str(guild_id),
            "guild": {"id": str(guild_id), "locale": locale, "features": []},
            "guild_locale": locale,
            "member": self.member_payload(user, permissions=perms),
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
        }

    def registered_command(self, name: str, guild_id: int | None = None) -> dict[str, JSON] | None:
        """The command as last synced (guild first, then global)."""
        if guild_id is not None:
            for cmd in self.guild_commands.get(guild_id, []):
                if cmd["name"] == name and cmd.get("type", 1) == 1:
                    return cmd
        for cmd in self.global_commands:
            if cmd["name"] == name and cmd.get("type", 1) == 1:
                return cmd
        return None

    def _build_options(
        self, schema: Sequence[Mapping[str, JSON]], values: Mapping[str, Any], resolved: dict[str, dict[str, JSON]]
    ) -> list[dict[str, JSON]]:
        out: list[dict[str, JSON]] = []
        by_name = {o["name"]: o for o in schema}
        for name, value in values.items():
            opt_schema = by_name.get(name)
            if opt_schema is not None:
                otype = int(opt_schema["type"])
            elif isinstance(value, bool):
                otype = 5
            elif isinstance(value, int):
                otype = 4
            elif isinstance(value, float):
                otype = 10
            elif isinstance(value, FakeUser):
                otype = 6
            elif isinstance(value, FakeChannel):
                otype = 7
            else:
                otype = 3
            if otype in (6, 9) and not isinstance(value, FakeRole):
                u = self.user(value)
                value = str(u.id)
                resolved.setdefault("users", {})[value] = u.payload()
                if u.in_guild:
                    resolved.setdefault("members", {})[value] = self.member_payload(
                        u, with_user=False, permissions=self.role_permissions(u)
                    )
            elif otype == 7:
                ch = value if isinstance(value, FakeChannel) else self.guild_channel(int(value))
                if ch is None:
                    raise KeyError(f"unknown channel option {value!r}")
                value = str(ch.id)
                cp = self.channel_payload(ch)
                cp["permissions"] = str(Perm.ALL)
                resolved.setdefault("channels", {})[value] = cp
            elif otype == 8:
                role = value if isinstance(value, FakeRole) else next(
                    r for r in self.config.roles() if r.id == int(value)
                )
                value = str(role.id)
                resolved.setdefault("roles", {})[value] = next(
                    p for p in self.role_payloads() if p["id"] == value
                )
            out.append({"name": name, "type": otype, "value": value})
        return out

    async def send_slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | list[dict[str, JSON]] | None = None,
        *,
        user: FakeUser | int | None = None,
        channel_id: int | None = None,
        guild: bool = True,
        permissions: int | str | None = None,
        subcommand: str | None = None,
        locale: str | None = None,
        require_registered: bool = True,
        extra: Mapping[str, JSON] | None = None,
        timeout: float = 10.0,
    ) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE type 2 (a user ran ``/name``).

        ``options`` is ``{"name": value}`` (types are taken from the synced
        command schema, else inferred) or a raw option list.  ``subcommand``
        is ``"sub"`` or ``"group sub"``.  ``permissions`` overrides the member
        permission string (default: computed from roles; owner => all).  The
        command must have been synced (``PUT .../commands``) unless
        ``require_registered=False``; guild commands get ``data.guild_id`` so
        discord.py's tree finds them.
        """
        gid = self.config.guild_id if guild else None
        cmd = self.registered_command(name, gid)
        if cmd is None and require_registered:
            raise AssertionError(
                f"/{name} is not registered (synced) for guild={guild}; "
                f"global={[c['name'] for c in self.global_commands]} "
                f"guild={[c['name'] for c in self.guild_commands.get(self.config.guild_id, [])]}"
            )
        data = self._command_data(name, cmd, options, subcommand)
        inter = self._new_interaction(
            2, data, user=user, channel_id=channel_id, guild=guild, permissions=permissions, locale=locale, extra=extra
        )
        await self.dispatch("INTERACTION_CREATE", inter.payload, timeout=timeout)
        inter.dispatched_at = time.monotonic()
        return inter

    def _command_data(
        self,
        name: str,
        cmd: dict[str, JSON] | None,
        options: Mapping[str, Any] | list[dict[str, JSON]] | None,
        subcommand: str | None,
    ) -> dict[str, JSON]:
        """The ``data`` of a slash-command interaction: options typed from the synced schema, nested under
        the subcommand (group), and the users / members / channels / roles they name under ``resolved``."""
        schema: list[Mapping[str, JSON]] = list(cmd.get("options") or []) if cmd else []
        resolved: dict[str, dict[str, JSON]] = {}
        path = subcommand.split() if subcommand else []
        for part in path:
            match = next((o for o in schema if o.get("name") == part), None)
            schema = list(match.get("options") or []) if match else []
        if isinstance(options, list):
            built: list[dict[str, JSON]] = options
        else:
            built = self._build_options(schema, options or {}, resolved)
        for depth, part in reversed(list(enumerate(path))):
            kind = 2 if depth == 0 and len(path) == 2 else 1
            built = [{"name": part, "type": kind, "options": built}]
        data: dict[str, JSON] = {
            "id": cmd["id"] if cmd else str(self.snowflakes.next()),
            "name": name,
            "type": 1,
            "options": built,
        }
        if cmd is not None and cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return data

    def find_message_with_component(self, custom_id: str) -> dict[str, JSON] | None:
        """Newest stored message carrying a component with ``custom_id``."""
        for msg in sorted(self.messages.values(), key=lambda m: int(m["id"]), reverse=True):
            for comp in iter_components(msg.get("components") or []):
                if comp.get("custom_id") == custom_id:
                    return msg
        return None

    async def send_component_click(
        self,
        custom_id: str,
        *,
        message: Mapping[str, JSON] | int | None = None,
        user: FakeUser | int | None = None,
        component_type: int = 2,
        values: list[str] | None = None,
        permissions: int | str | None = None,
        locale: str | None = None,
        extra: Mapping[str, JSON] | None = None,
        timeout: float = 10.0,
    ) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE type 3 (button click / select).

        ``message`` defaults to the newest stored message that has a
        component with this ``custom_id`` (usually the bot's own message).
        """
        if message is None:
            found = self.find_message_with_component(custom_id)
            if found is None:
                raise AssertionError(
                    f"no stored message has a component with custom_id={custom_id!r}\n{self.describe()}")
            msg = found
        elif isinstance(message, Mapping):
            msg = self.messages.get(int(message["id"]), dict(message))
        else:
            msg = self.messages[int(message)]
        cid = int(msg["channel_id"])
        data: dict[str, JSON] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        inter = self._new_interaction(
            3,
            data,
            user=user,
            channel_id=cid,
            guild=msg.get("guild_id") is not None,
            permissions=permissions,
            locale=locale,
            message=dict(msg),
            extra=extra,
        )
        await self.dispatch("INTERACTION_CREATE", inter.payload, timeout=timeout)
        inter.dispatched_at = time.monotonic()
        return inter

    async def send_modal_submit(
        self,
        custom_id: str,
        values: Mapping[str, str],
        *,
        user: FakeUser | int | None = None,
        channel_id: int | None = None,
        guild: bool = True,
        message: Mapping[str, JSON] | int | None = None,
        timeout: float = 10.0,
    ) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE type 5 (modal submitted with text inputs)."""
        rows = [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
        msg: dict[str, JSON] | None = None
        if message is not None:
            msg = self.messages[int(message["id"] if isinstance(message, Mapping) else message)]
            channel_id = int(msg["channel_id"])
            guild = msg.get("guild_id") is not None
        inter = self._new_interaction(
            5,
            {"custom_id": custom_id, "components": rows},
            user=user,
            channel_id=channel_id,
            guild=guild,
            permissions=None,
            locale=None,
            message=dict(msg) if msg else None,
        )
        await self.dispatch("INTERACTION_CREATE", inter.payload, timeout=timeout)
        inter.dispatched_at = time.monotonic()
        return inter

    def _callback_path(self, inter: FakeInteraction) -> str:
        return f"/interactions/{inter.id}/{inter.token}/callback"

    async def wait_for_callback(self, inter: FakeInteraction, *, timeout: float = 10.0) -> RecordedRequest:
        """The (first) successful ``POST /interactions/{id}/{token}/callback``."""
        path = self._callback_path(inter)
        return await self.wait_for_request(
            lambda r: r.method == "POST" and r.path == path and 200 <= r.status < 300, timeout=timeout
        )

    async def wait_for_followup(
        self, inter: FakeInteraction, *, timeout: float = 10.0, index: int = 0
    ) -> RecordedRequest:
        """The ``index``-th ``POST /webhooks/{app}/{token}`` for this interaction."""
        path = f"/webhooks/{self.config.application_id}/{inter.token}"
        reqs = await self.wait_for_requests(
            index + 1, lambda r: r.method == "POST" and r.path == path, timeout=timeout
        )
        return reqs[index]

    def original_message(self, inter: FakeInteraction) -> dict[str, JSON] | None:
        """Current state of the interaction's original response (after edits)."""
        return self.messages.get(inter.original_message_id) if inter.original_message_id else None
