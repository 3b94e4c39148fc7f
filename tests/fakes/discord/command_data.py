"""The ``data`` of a slash-command interaction: the synced command it names, its options typed from that
command's schema, and the users, members, channels and roles they name under ``resolved``.

``CommandDataMixin`` is one part of :class:`~.server.FakeDiscord` (state in ``FakeDiscord.__init__``:
``global_commands``, ``guild_commands``); ``interactions.py`` sends what it builds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .config import FakeChannel, FakeRole, FakeUser
from .constants import JSON, Perm


def _option_type(value: Any) -> int:
    """The option type Discord would give ``value`` when the command's schema does not say."""
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    if isinstance(value, FakeUser):
        return 6
    if isinstance(value, FakeChannel):
        return 7
    return 3


class CommandDataMixin:
    """Slash-command lookup (guild, then global) and option building, per guild."""

    def registered_command(self, name: str, guild_id: int | None = None) -> dict[str, JSON] | None:
        """The command as last synced: ``guild_id``'s own commands first, then the global ones."""
        if guild_id is not None:
            for cmd in self.guild_commands.get(guild_id, []):
                if cmd["name"] == name and cmd.get("type", 1) == 1:
                    return cmd
        for cmd in self.global_commands:
            if cmd["name"] == name and cmd.get("type", 1) == 1:
                return cmd
        return None

    def _build_options(
        self,
        schema: Sequence[Mapping[str, JSON]],
        values: Mapping[str, Any],
        resolved: dict[str, dict[str, JSON]],
        guild_id: int | None = None,
    ) -> list[dict[str, JSON]]:
        """Typed options (from ``schema``, else inferred) for ``values``; named objects go to ``resolved``."""
        out: list[dict[str, JSON]] = []
        by_name = {o["name"]: o for o in schema}
        for name, value in values.items():
            opt_schema = by_name.get(name)
            otype = int(opt_schema["type"]) if opt_schema is not None else _option_type(value)
            out.append({"name": name, "type": otype, "value": self._resolve_option(otype, value, resolved, guild_id)})
        return out

    def _resolve_option(self, otype: int, value: Any, resolved: dict[str, dict[str, JSON]],
                        guild_id: int | None) -> Any:
        """The option's wire value; a user, channel or role also goes into ``resolved`` (a member too, if the
        user is one of the guild the command runs in)."""
        if otype in (6, 9) and not isinstance(value, FakeRole):
            u = self.user(value)
            key = str(u.id)
            resolved.setdefault("users", {})[key] = u.payload()
            if guild_id is not None and self.is_member(u, guild_id):
                resolved.setdefault("members", {})[key] = self.member_payload(
                    u, with_user=False, permissions=self.role_permissions(u, guild_id), guild_id=guild_id
                )
            return key
        if otype == 7:
            ch = value if isinstance(value, FakeChannel) else self.guild_channel(int(value))
            if ch is None:
                raise KeyError(f"unknown channel option {value!r}")
            cp = self.channel_payload(ch)
            cp["permissions"] = str(Perm.ALL)
            resolved.setdefault("channels", {})[str(ch.id)] = cp
            return str(ch.id)
        if otype == 8:
            role_gid = guild_id if guild_id is not None else self.config.guild_id
            role = value if isinstance(value, FakeRole) else next(
                r for r in self.config.roles(role_gid) if r.id == int(value)
            )
            key = str(role.id)
            resolved.setdefault("roles", {})[key] = next(p for p in self.role_payloads(role_gid) if p["id"] == key)
            return key
        return value

    def _command_data(
        self,
        name: str,
        cmd: dict[str, JSON] | None,
        options: Mapping[str, Any] | list[dict[str, JSON]] | None,
        subcommand: str | None,
        guild_id: int | None = None,
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
            built = self._build_options(schema, options or {}, resolved, guild_id)
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
