"""Interactions a user starts: slash commands, button clicks / selects and modal submits, and the waits for
the bot's answer to them.

``InteractionsMixin`` is one part of :class:`~.server.FakeDiscord` (state in ``FakeDiscord.__init__``:
``interactions``, ``_interactions_by_token``). A guild interaction carries the guild's id, locale and the
member's roles and permissions *in that guild*. The command data is built in ``command_data.py``; the bot's
side of an interaction (callbacks and follow-up webhooks) is in ``callbacks.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .config import FakeUser
from .constants import JSON
from .records import FakeInteraction, RecordedRequest
from .validation import iter_components

#: (channel id, channel payload, guild id or ``None`` for a DM) where a user starts an interaction
Place = tuple[int, dict[str, JSON], int | None]


class InteractionsMixin:
    """Dispatching INTERACTION_CREATE as Discord builds it."""

    def _new_interaction(
        self,
        itype: int,
        data: dict[str, JSON],
        *,
        user: FakeUser,
        place: Place,
        permissions: int | str | None,
        locale: str | None,
        message: dict[str, JSON] | None = None,
        extra: Mapping[str, JSON] | None = None,
    ) -> FakeInteraction:
        """Record an INTERACTION_CREATE payload of type ``itype`` from ``user`` at ``place`` (not yet dispatched)."""
        cfg = self.config
        iid = self.snowflakes.next()
        token = f"fake-interaction-token-{iid}"
        cid, channel, gid = place
        perms = 0
        if gid is not None:
            perms = int(permissions) if permissions is not None else self.role_permissions(user, gid)
            channel["permissions"] = str(perms)
        payload: dict[str, JSON] = {
            "id": str(iid),
            "application_id": str(cfg.application_id),
            "type": itype,
            "data": data,
            "channel_id": str(cid),
            "channel": channel,
            "token": token,
            "version": 1,
            "app_permissions": str(self.role_permissions(cfg.bot, gid) if gid is not None else cfg.app_permissions),
            "locale": locale or cfg.locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": cfg.attachment_size_limit,
        }
        payload.update(self._interaction_context(user, gid, perms))
        if message is not None:
            payload["message"] = message
        if extra:
            payload.update(extra)
        inter = FakeInteraction(id=iid, token=token, type=itype, payload=payload, channel_id=cid, guild_id=gid,
                                user_id=user.id, dispatched_at=time.monotonic(),
                                source_message_id=int(message["id"]) if message else None)
        self.interactions[iid] = inter
        self._interactions_by_token[token] = inter
        return inter

    def _interaction_place(self, user: FakeUser, channel_id: int | None, guild: bool, guild_id: int | None) -> Place:
        """Where ``user`` acts: a channel of ``guild_id`` (default: the guild of ``channel_id``, else the
        primary guild) of which ``user`` must be a member, or (``guild=False``) the DM with the bot."""
        if guild:
            ch, gid = self._guild_place(channel_id, guild_id)
            if not self.is_member(user, gid):
                raise AssertionError(f"{user.username} ({user.id}) is not a member of guild {gid}")
            return ch.id, self.channel_payload(ch), gid
        if guild_id is not None:
            raise ValueError("guild=False (a DM) with a guild_id")
        cid = channel_id if channel_id is not None else self.dm_channel_id(user)
        channel = self.dm_channel_payload(user)
        channel["id"] = str(cid)
        return cid, channel, None

    def _interaction_context(self, user: FakeUser, guild_id: int | None, perms: int) -> dict[str, JSON]:
        """Guild and member fields for a guild interaction, the user for a DM one."""
        if guild_id is None:
            return {"user": user.payload(), "authorizing_integration_owners": {"0": "0"}, "context": 1}
        locale = self.config.guild(guild_id).locale
        return {
            "guild_id": str(guild_id),
            "guild": {"id": str(guild_id), "locale": locale, "features": []},
            "guild_locale": locale,
            "member": self.member_payload(user, permissions=perms, guild_id=guild_id),
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
        }

    async def send_slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | list[dict[str, JSON]] | None = None,
        *,
        user: FakeUser | int | None = None,
        channel_id: int | None = None,
        guild: bool = True,
        guild_id: int | None = None,
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

        Where: ``channel_id`` (any guild's channel or thread), else the first
        channel of ``guild_id``, else of the primary guild; ``guild=False`` is
        the user's DM.  A command synced to one guild runs only there, a
        global one everywhere.  The user must be a member of that guild.
        """
        u = self.user(user)
        place = self._interaction_place(u, channel_id, guild, guild_id)
        gid = place[2]
        cmd = self.registered_command(name, gid)
        if cmd is None and require_registered:
            raise AssertionError(
                f"/{name} is not registered (synced) for guild={gid}; "
                f"global={[c['name'] for c in self.global_commands]} "
                f"guild={[c['name'] for c in self.guild_commands.get(gid or self.config.guild_id, [])]}"
            )
        data = self._command_data(name, cmd, options, subcommand, gid)
        inter = self._new_interaction(
            2, data, user=u, place=place, permissions=permissions, locale=locale, extra=extra
        )
        await self.dispatch("INTERACTION_CREATE", inter.payload, timeout=timeout)
        inter.dispatched_at = time.monotonic()
        return inter

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
        u = self.user(user)
        gid = int(msg["guild_id"]) if msg.get("guild_id") is not None else None
        place = self._interaction_place(u, int(msg["channel_id"]), gid is not None, gid)
        data: dict[str, JSON] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        inter = self._new_interaction(
            3,
            data,
            user=u,
            place=place,
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
        guild_id: int | None = None,
        message: Mapping[str, JSON] | int | None = None,
        timeout: float = 10.0,
    ) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE type 5 (modal submitted with text inputs); where, as for
        ``send_slash_command`` (or the channel and guild of ``message``)."""
        rows = [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
        msg: dict[str, JSON] | None = None
        if message is not None:
            msg = self.messages[int(message["id"] if isinstance(message, Mapping) else message)]
            channel_id = int(msg["channel_id"])
            guild_id = int(msg["guild_id"]) if msg.get("guild_id") is not None else None
            guild = guild_id is not None
        u = self.user(user)
        inter = self._new_interaction(
            5,
            {"custom_id": custom_id, "components": rows},
            user=u,
            place=self._interaction_place(u, channel_id, guild, guild_id),
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
