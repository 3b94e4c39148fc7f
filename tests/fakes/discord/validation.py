"""Discord's message limits (content, embeds, components), so over-long answers fail as in production."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from .constants import CANNOT_SEND_EMPTY_MESSAGE, FLAG_COMPONENTS_V2, INVALID_FORM_BODY, JSON
from .records import DiscordAPIError


def form_error(field_name: str, code: str, message: str) -> DiscordAPIError:
    """A 400 "Invalid Form Body" naming the offending field, as Discord reports it."""
    return DiscordAPIError(
        400,
        INVALID_FORM_BODY,
        "Invalid Form Body",
        {field_name: {"_errors": [{"code": code, "message": message}]}},
    )


def validate_message_payload(payload: Mapping[str, JSON], *, require_content: bool = True) -> None:
    """Apply Discord's message limits so over-long answers fail like in prod."""
    content = payload.get("content")
    embeds = payload.get("embeds") or []
    components = payload.get("components") or []
    attachments = payload.get("attachments") or []
    if require_content and not (content or embeds or components or attachments or payload.get("sticker_ids")
                                or payload.get("poll")):
        raise DiscordAPIError(400, CANNOT_SEND_EMPTY_MESSAGE, "Cannot send an empty message")
    if content is not None and len(str(content)) > 2000:
        raise form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    _check_embeds(embeds)
    flags = int(payload.get("flags") or 0)
    if components and not flags & FLAG_COMPONENTS_V2:
        _check_components(components)


def _check_embeds(embeds: Sequence[Mapping[str, JSON]]) -> None:
    """At most 10 embeds, each within its field limits, 6000 characters in all."""
    if len(embeds) > 10:
        raise form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = sum(_embed_size(i, embed) for i, embed in enumerate(embeds))
    if total > 6000:
        raise form_error("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")


def _embed_size(i: int, embed: Mapping[str, JSON]) -> int:
    """Characters that count towards the 6000 limit; raises on the first field over its own limit."""
    total = 0
    limits = {"title": 256, "description": 4096}
    for key, limit in limits.items():
        value = embed.get(key) or ""
        total += len(value)
        if len(value) > limit:
            raise form_error(f"embeds.{i}.{key}", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
    fields = embed.get("fields") or []
    if len(fields) > 25:
        raise form_error(f"embeds.{i}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    for j, f in enumerate(fields):
        name, value = str(f.get("name", "")), str(f.get("value", ""))
        total += len(name) + len(value)
        if not name or len(name) > 256:
            raise form_error(f"embeds.{i}.fields.{j}.name", "BASE_TYPE_BAD_LENGTH",
                             "Must be between 1 and 256 in length.")
        if not value or len(value) > 1024:
            raise form_error(f"embeds.{i}.fields.{j}.value", "BASE_TYPE_BAD_LENGTH",
                             "Must be between 1 and 1024 in length.")
    footer = (embed.get("footer") or {}).get("text") or ""
    author = (embed.get("author") or {}).get("name") or ""
    total += len(footer) + len(author)
    if len(footer) > 2048:
        raise form_error(f"embeds.{i}.footer.text", "BASE_TYPE_MAX_LENGTH", "Must be 2048 or fewer in length.")
    if len(author) > 256:
        raise form_error(f"embeds.{i}.author.name", "BASE_TYPE_MAX_LENGTH", "Must be 256 or fewer in length.")
    return total


def _check_components(components: Sequence[Mapping[str, JSON]]) -> None:
    """Classic (not Components V2) layout: at most 5 action rows of 1 to 5 items, ids and labels in bounds."""
    if len(components) > 5:
        raise form_error("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    for i, row in enumerate(components):
        children = row.get("components") or []
        if row.get("type") == 1 and not 1 <= len(children) <= 5:
            raise form_error(f"components.{i}.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
        for j, child in enumerate(children):
            cid = child.get("custom_id")
            if cid is not None and not 1 <= len(cid) <= 100:
                raise form_error(f"components.{i}.components.{j}.custom_id", "BASE_TYPE_BAD_LENGTH",
                                 "Must be between 1 and 100 in length.")
            label = child.get("label")
            if label is not None and len(label) > 80:
                raise form_error(f"components.{i}.components.{j}.label", "BASE_TYPE_MAX_LENGTH",
                                 "Must be 80 or fewer in length.")


def iter_components(components: Iterable[Mapping[str, JSON]]) -> Iterator[Mapping[str, JSON]]:
    """Every component, nested ones included (rows, sections' accessories, containers)."""
    for comp in components:
        yield comp
        yield from iter_components(comp.get("components") or [])
        if isinstance(comp.get("component"), Mapping):
            yield from iter_components([comp["component"]])
        if isinstance(comp.get("accessory"), Mapping):
            yield from iter_components([comp["accessory"]])
