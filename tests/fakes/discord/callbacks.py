"""The bot's side of an interaction: the initial callback and the follow-up webhooks (send, edit, delete).

``CallbacksMixin`` is one part of :class:`~.server.FakeDiscord`; ``rest.py`` maps paths to these handlers.
Discord's rules are kept: a callback only once and within ``interaction_callback_deadline``; follow-ups only
after it; the first follow-up after a "thinking" defer replaces the loading message.
"""

from __future__ import annotations

import time

from .constants import (
    ALREADY_ACKNOWLEDGED,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    JSON,
    UNKNOWN_INTERACTION,
    UNKNOWN_MESSAGE,
    UNKNOWN_WEBHOOK,
)
from .records import DiscordAPIError, FakeInteraction, RestContext, UploadedFile
from .validation import form_error, validate_message_payload


class CallbacksMixin:
    """Interaction callback and follow-up webhook handlers."""

    def _interaction_for_token(self, ctx: RestContext) -> FakeInteraction:
        self._check_app_webhook(ctx)
        inter = self._interactions_by_token.get(ctx.params["token"])
        if inter is None or not inter.acknowledged:
            # Discord: follow-ups before the initial callback hit an unknown webhook
            raise DiscordAPIError(404, UNKNOWN_WEBHOOK, "Unknown Webhook")
        return inter

    def _check_app_webhook(self, ctx: RestContext) -> None:
        if int(ctx.params["app_id"]) != self.config.application_id:
            raise DiscordAPIError(404, UNKNOWN_WEBHOOK, "Unknown Webhook")

    async def _interaction_callback(self, ctx: RestContext) -> tuple[int, JSON]:
        inter = self.interactions.get(int(ctx.params["interaction_id"]))
        if inter is None or inter.token != ctx.params["token"]:
            raise DiscordAPIError(404, UNKNOWN_INTERACTION, "Unknown interaction")
        deadline = self.config.interaction_callback_deadline
        if deadline is not None and time.monotonic() - inter.dispatched_at > deadline:
            inter.expired = True
            raise DiscordAPIError(404, UNKNOWN_INTERACTION, "Unknown interaction")
        if inter.acknowledged:
            raise DiscordAPIError(400, ALREADY_ACKNOWLEDGED, "Interaction has already been acknowledged.")
        body = ctx.json or {}
        cb_type = int(body.get("type", 0))
        data = body.get("data") or {}
        resource: dict[str, JSON] = {"type": cb_type}
        ephemeral = bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)
        msg, echo_event = self._apply_callback(inter, cb_type, data, ctx.files, ephemeral)
        inter.callback_data.append(data)
        interaction_info: dict[str, JSON] = {
            "id": str(inter.id),
            "type": inter.type,
            "activity_instance_id": None,
            "response_message_id": str(msg["id"]) if msg else None,
            "response_message_loading": cb_type == 5,
            "response_message_ephemeral": ephemeral,
        }
        if msg is not None:
            resource["message"] = msg
        if echo_event is not None and msg is not None:
            await self._echo(echo_event, msg)
        return 200, {"interaction": interaction_info, "resource": resource}

    def _apply_callback(
        self, inter: FakeInteraction, cb_type: int, data: dict[str, JSON], files: list[UploadedFile], ephemeral: bool
    ) -> tuple[dict[str, JSON] | None, str | None]:
        """Do what callback ``cb_type`` asks; return the message it made or changed and the event to echo."""
        source = self.messages.get(inter.source_message_id) if inter.source_message_id else None
        message_type = 20 if inter.type == 2 else 19
        if cb_type == 4:  # CHANNEL_MESSAGE_WITH_SOURCE
            validate_message_payload({**data, "attachments": list(data.get("attachments") or []) + list(files)})
            inter.callback_types.append(cb_type)
            msg = self._create_bot_message(
                inter.channel_id, data, files, message_type=message_type, interaction=inter, validate=False,
            )
            inter.original_message_id = int(msg["id"])
            return msg, "MESSAGE_CREATE"
        if cb_type == 5:  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE ("thinking")
            inter.callback_types.append(cb_type)
            flags = FLAG_LOADING | (FLAG_EPHEMERAL if ephemeral else 0)
            msg = self._create_bot_message(
                inter.channel_id, {}, [], message_type=message_type, interaction=inter, flags=flags, validate=False,
            )
            inter.original_message_id = int(msg["id"])
            return msg, "MESSAGE_CREATE"
        if cb_type in (6, 7):  # DEFERRED_UPDATE_MESSAGE / UPDATE_MESSAGE
            if source is None:
                raise DiscordAPIError(400, 40004, "Interaction has no message to update")
            inter.callback_types.append(cb_type)
            if cb_type == 7:
                self._edit_message(source, data, files)
            inter.original_message_id = int(source["id"])
            return source, "MESSAGE_UPDATE" if cb_type == 7 else None
        if cb_type in (1, 8, 9, 10, 12):  # PONG / AUTOCOMPLETE / MODAL / PREMIUM / ACTIVITY
            inter.callback_types.append(cb_type)
            return None, None
        raise form_error("type", "BASE_TYPE_CHOICES", "Value must be one of (1, 4, 5, 6, 7, 8, 9, 10, 12).")

    async def _webhook_execute(self, ctx: RestContext) -> tuple[int, JSON]:
        inter = self._interaction_for_token(ctx)
        body = ctx.json or {}
        original = self.original_message(inter)
        if original is not None and int(original.get("flags") or 0) & FLAG_LOADING:
            # first follow-up after a "thinking" defer replaces the loading message
            validate_message_payload({**body, "attachments": list(body.get("attachments") or []) + list(ctx.files)})
            flags_body = {k: v for k, v in body.items() if k != "flags"}
            msg = self._edit_message(original, {**flags_body, "flags": 0}, ctx.files)
            inter.followup_message_ids.append(int(msg["id"]))
            await self._echo("MESSAGE_UPDATE", msg)
        else:
            msg = self._create_bot_message(
                inter.channel_id, body, ctx.files, message_type=20 if inter.type == 2 else 19, interaction=inter
            )
            inter.followup_message_ids.append(int(msg["id"]))
            await self._echo("MESSAGE_CREATE", msg)
        if ctx.query.get("wait", "0").lower() in ("1", "true"):
            return 200, msg
        return 204, None

    def _webhook_message(self, ctx: RestContext) -> tuple[FakeInteraction, dict[str, JSON]]:
        inter = self._interaction_for_token(ctx)
        ref = ctx.params["message_id"]
        mid = inter.original_message_id if ref == "@original" else int(ref)
        if mid is None or (ref != "@original" and mid not in inter.followup_message_ids):
            raise DiscordAPIError(404, UNKNOWN_MESSAGE, "Unknown Message")
        msg = self.messages.get(mid)
        if msg is None:
            raise DiscordAPIError(404, UNKNOWN_MESSAGE, "Unknown Message")
        return inter, msg

    async def _webhook_get_message(self, ctx: RestContext) -> tuple[int, JSON]:
        return 200, self._webhook_message(ctx)[1]

    async def _webhook_edit_message(self, ctx: RestContext) -> tuple[int, JSON]:
        _, msg = self._webhook_message(ctx)
        self._edit_message(msg, ctx.json or {}, ctx.files)
        await self._echo("MESSAGE_UPDATE", msg)
        return 200, msg

    async def _webhook_delete_message(self, ctx: RestContext) -> tuple[int, JSON]:
        _, msg = self._webhook_message(ctx)
        self._forget_message(int(msg["id"]))
        return 204, None
