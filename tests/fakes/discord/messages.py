"""Messages: what users send to the bot (``send_message``) and what the bot creates or edits over REST.

``MessagesMixin`` is one part of :class:`~.server.FakeDiscord` (state in ``FakeDiscord.__init__``: ``messages``,
``bot_messages``, ``attachment_data``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence

from .config import FakeUser
from .constants import FLAG_EPHEMERAL, FLAG_LOADING, JSON, now_iso
from .records import FakeInteraction, UploadedFile
from .validation import form_error, validate_message_payload

MENTION_RE = re.compile(r"<@!?(\d+)>")
ROLE_MENTION_RE = re.compile(r"<@&(\d+)>")


class MessagesMixin:
    """Message payloads in both directions, mentions and attachments included."""

    def _mentions_from_content(self, content: str, guild_id: int | None) -> list[FakeUser]:
        found: list[FakeUser] = []
        for m in MENTION_RE.finditer(content or ""):
            u = self._maybe_user(int(m.group(1)))
            if u is not None and u not in found:
                found.append(u)
        return found

    def _mention_payloads(self, users: Sequence[FakeUser], guild_id: int | None) -> list[dict[str, JSON]]:
        out: list[dict[str, JSON]] = []
        for u in users:
            p = u.payload()
            if guild_id is not None and self.is_member(u, guild_id):
                p["member"] = self.member_payload(u, with_user=False, guild_id=guild_id)
            out.append(p)
        return out

    def _store_attachments(self, channel_id: int,
                           files: Sequence[tuple[str, bytes, str | None]]) -> list[dict[str, JSON]]:
        out: list[dict[str, JSON]] = []
        for filename, data, content_type in files:
            att_id = self.snowflakes.next()
            self.attachment_data[att_id] = data
            url = f"{self.base_url}/attachments/{channel_id}/{att_id}/{filename}"
            out.append(
                {
                    "id": str(att_id),
                    "filename": filename,
                    "size": len(data),
                    "url": url,
                    "proxy_url": url,
                    "content_type": content_type,
                    "height": None,
                    "width": None,
                    "ephemeral": False,
                    "description": None,
                    "flags": 0,
                }
            )
        return out

    def _reference_fields(self, ref_id: int, channel_id: int, guild_id: int | None) -> dict[str, JSON]:
        ref: dict[str, JSON] = {"type": 0, "message_id": str(ref_id), "channel_id": str(channel_id)}
        if guild_id is not None:
            ref["guild_id"] = str(guild_id)
        referenced = self.messages.get(ref_id)
        resolved: dict[str, JSON] | None = None
        if referenced is not None:  # Discord does not nest referenced_message chains
            resolved = {k: v for k, v in referenced.items() if k != "referenced_message"}
        return {"message_reference": ref, "referenced_message": resolved}

    def build_user_message(
        self,
        content: str,
        *,
        author: FakeUser | int | None = None,
        channel_id: int | None = None,
        guild: bool = True,
        guild_id: int | None = None,
        mentions: Sequence[FakeUser | int] | None = None,
        reply_to: Mapping[str, JSON] | int | None = None,
        attachments: Sequence[tuple[str, bytes]] | None = None,
        embeds: list[dict[str, JSON]] | None = None,
        extra: Mapping[str, JSON] | None = None,
    ) -> dict[str, JSON]:
        """A complete MESSAGE_CREATE payload from a (human) user.

        ``mentions=None`` derives mentions from ``<@id>`` tokens in the content like Discord does; pass a list
        to override (``message.mentions`` reads this list, never the text).  Where: as ``send_message``.
        """
        u = self.user(author)
        cid, gid = self._user_message_place(u, channel_id, guild, guild_id)
        mention_users = ([self.user(m) for m in mentions] if mentions is not None
                         else self._mentions_from_content(content, gid))
        msg: dict[str, JSON] = {
            "id": str(self.snowflakes.next()),
            "channel_id": str(cid),
            "author": u.payload(),
            "content": content,
            "timestamp": now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": "@everyone" in content or "@here" in content,
            "mentions": self._mention_payloads(mention_users, gid),
            "mention_roles": ROLE_MENTION_RE.findall(content),
            "attachments": self._store_attachments(cid, [(n, d, None) for n, d in (attachments or [])]),
            "embeds": list(embeds or []),
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
            "nonce": str(self.snowflakes.next()),
        }
        msg.update(self._user_member_fields(u, gid))
        if reply_to is not None:
            ref_id = int(reply_to["id"]) if isinstance(reply_to, Mapping) else int(reply_to)
            msg.update(self._reference_fields(ref_id, cid, gid))
            msg["type"] = 19
        if extra:
            msg.update(extra)
        return msg

    def _user_message_place(self, user: FakeUser, channel_id: int | None, guild: bool,
                            guild_id: int | None = None) -> tuple[int, int | None]:
        """(channel id, guild id) of a user's message: a guild channel (default: the first of ``guild_id``,
        else of the primary guild), or the DM."""
        if guild:
            ch, gid = self._guild_place(channel_id, guild_id)
            return ch.id, gid
        if guild_id is not None:
            raise ValueError("guild=False (a DM) with a guild_id")
        return (channel_id if channel_id is not None else self.dm_channel_id(user)), None

    def _user_member_fields(self, user: FakeUser, guild_id: int | None) -> dict[str, JSON]:
        """``guild_id`` and, for a member, ``member`` (nothing in a DM)."""
        if guild_id is None:
            return {}
        fields: dict[str, JSON] = {"guild_id": str(guild_id)}
        if self.is_member(user, guild_id):
            fields["member"] = self.member_payload(user, with_user=False, guild_id=guild_id)
        return fields

    async def send_message(
        self,
        content: str,
        *,
        author: FakeUser | int | None = None,
        channel_id: int | None = None,
        guild: bool = True,
        guild_id: int | None = None,
        mentions: Sequence[FakeUser | int] | None = None,
        reply_to: Mapping[str, JSON] | int | None = None,
        attachments: Sequence[tuple[str, bytes]] | None = None,
        embeds: list[dict[str, JSON]] | None = None,
        extra: Mapping[str, JSON] | None = None,
        timeout: float = 10.0,
    ) -> dict[str, JSON]:
        """Dispatch MESSAGE_CREATE from a user; returns the (unstripped) payload.

        ``guild=False`` sends a DM (channel type 1, no ``guild_id``/``member``).
        Default author is ``config.user``; default channel is ``channel_id``'s,
        else the first channel of ``guild_id``, else ``config.channel_id``; the
        message carries that channel's guild id and the author's member there.
        """
        msg = self.build_user_message(
            content,
            author=author,
            channel_id=channel_id,
            guild=guild,
            guild_id=guild_id,
            mentions=mentions,
            reply_to=reply_to,
            attachments=attachments,
            embeds=embeds,
            extra=extra,
        )
        self.messages[int(msg["id"])] = msg
        await self.dispatch("MESSAGE_CREATE", msg, timeout=timeout)
        return msg

    def _bot_member_fields(self, guild_id: int | None) -> dict[str, JSON]:
        if guild_id is None:
            return {}
        return {"guild_id": str(guild_id),
                "member": self.member_payload(self.config.bot, with_user=False, guild_id=guild_id)}

    def _create_bot_message(
        self,
        channel_id: int,
        body: Mapping[str, JSON],
        files: Sequence[UploadedFile],
        *,
        message_type: int = 0,
        interaction: FakeInteraction | None = None,
        flags: int | None = None,
        validate: bool = True,
    ) -> dict[str, JSON]:
        """Store a message the bot posted (``POST .../messages``, a callback or a follow-up) as Discord would."""
        gid = self._channel_guild_id(channel_id, require_bot=interaction is None)  # webhooks need no membership
        if validate:
            validate_message_payload({**body, "attachments": list(body.get("attachments") or []) + list(files)})
        content = str(body.get("content") or "")
        mid = self.snowflakes.next()
        msg: dict[str, JSON] = {
            "id": str(mid),
            "channel_id": str(channel_id),
            "author": self.config.bot.payload(),
            "content": content,
            "timestamp": now_iso(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": self._attachments_from_upload(channel_id, body, files),
            "embeds": list(body.get("embeds") or []),
            "components": list(body.get("components") or []),
            "pinned": False,
            "type": message_type,
            "flags": int(flags if flags is not None else (body.get("flags") or 0)),
            "sticker_items": [],
        }
        msg.update(self._bot_member_fields(gid))
        if body.get("nonce") is not None:
            msg["nonce"] = body["nonce"]
        ref = body.get("message_reference")
        if ref:
            msg.update(self._bot_reply_fields(ref, channel_id, gid))
            if message_type == 0:
                msg["type"] = 19
        self._apply_mentions(msg, body)
        if interaction is not None:
            msg.update(self._interaction_fields(interaction, mid))
        self.messages[mid] = msg
        self.bot_messages.append(msg)
        return msg

    def _interaction_fields(self, interaction: FakeInteraction, mid: int) -> dict[str, JSON]:
        """What marks message ``mid`` as an answer to ``interaction`` (webhook author, interaction metadata)."""
        user = self.user(interaction.user_id)
        meta: dict[str, JSON] = {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": user.payload(),
            "authorizing_integration_owners": interaction.payload.get("authorizing_integration_owners", {}),
        }
        if interaction.original_message_id and interaction.original_message_id != mid:
            meta["original_response_message_id"] = str(interaction.original_message_id)
        if interaction.source_message_id:
            meta["interacted_message_id"] = str(interaction.source_message_id)
        app_id = str(self.config.application_id)
        return {"webhook_id": app_id, "application_id": app_id, "interaction_metadata": meta}

    def _bot_reply_fields(self, ref: Mapping[str, JSON], channel_id: int, guild_id: int | None) -> dict[str, JSON]:
        """Reference fields of a bot reply; an unknown message fails unless ``fail_if_not_exists`` is false."""
        ref_id = int(ref["message_id"])
        if ref_id not in self.messages and ref.get("fail_if_not_exists", True):
            raise form_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
        return self._reference_fields(ref_id, channel_id, guild_id)

    def _apply_mentions(self, msg: dict[str, JSON], body: Mapping[str, JSON]) -> None:
        """Recompute ``mentions`` from content/allowed_mentions/reply like Discord."""
        gid = int(msg["guild_id"]) if msg.get("guild_id") else None
        allowed = body.get("allowed_mentions")
        users = self._mentions_from_content(str(msg.get("content") or ""), gid)
        if isinstance(allowed, Mapping):
            parse = allowed.get("parse") or []
            explicit = {int(x) for x in allowed.get("users") or []}
            users = [u for u in users if "users" in parse or u.id in explicit]
        replied = msg.get("referenced_message")
        if isinstance(replied, Mapping) and (not isinstance(allowed, Mapping) or allowed.get("replied_user", True)):
            author = self._maybe_user(int(replied["author"]["id"]))
            if author is not None and author not in users:
                users.append(author)
        msg["mentions"] = self._mention_payloads(users, gid)

    def _attachments_from_upload(
        self, channel_id: int, body: Mapping[str, JSON], files: Sequence[UploadedFile]
    ) -> list[dict[str, JSON]]:
        uploads = [(f.filename or f.field_name, f.data, f.content_type) for f in files]
        out = self._store_attachments(channel_id, uploads)
        # keep already-uploaded attachments referenced by id (edits)
        for att in body.get("attachments") or []:
            aid = att.get("id")
            if aid is not None and int(aid) in self.attachment_data:
                existing = next(
                    (a for m in self.messages.values() for a in m.get("attachments", []) if a["id"] == str(aid)),
                    None,
                )
                if existing:
                    out.append(existing)
        return out

    def _edit_message(self, msg: dict[str, JSON], body: Mapping[str, JSON],
                      files: Sequence[UploadedFile]) -> dict[str, JSON]:
        validate_message_payload(body, require_content=False)
        channel_id = int(msg["channel_id"])
        for key in ("content", "embeds", "components"):
            if key in body:
                msg[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "flags" in body and body["flags"] is not None:
            msg["flags"] = (int(msg.get("flags") or 0) & FLAG_EPHEMERAL) | int(body["flags"])
        if "attachments" in body or files:
            msg["attachments"] = self._attachments_from_upload(channel_id, body, files)
        msg["flags"] = int(msg.get("flags") or 0) & ~FLAG_LOADING
        msg["edited_timestamp"] = now_iso()
        if "content" in body:
            self._apply_mentions(msg, body)
        return msg

    async def _echo(self, event: str, msg: dict[str, JSON]) -> None:
        """Tell the bot about its own message like Discord does (not ephemeral)."""
        if not self.config.echo_bot_messages or int(msg.get("flags") or 0) & FLAG_EPHEMERAL:
            return
        if self.live_session() is None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):  # bot is disconnecting
            await self.dispatch(event, dict(msg), timeout=0)
