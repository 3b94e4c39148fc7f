"""Starting and stopping the bot: what ``herald bot`` runs.

``run_bot`` checks the token, sets up logging (the token and URL credentials redacted), opens (and if
needed builds) the index and warms the model *before* connecting (``open_and_warm``), then ``serve``s:
``async with bot: await bot.start(token)`` until Ctrl-C or SIGTERM closes the bot cleanly. Discord's
refusals (a bad token, no network) become one-line ``HeraldError``s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import discord

from bot.discord_bot.client import HeraldBot
from bot.format import RedactCredentials
from bot.settings import Settings
from index import Engine, HeraldError

log = logging.getLogger("herald.bot")

WARM_UP_QUESTION = "Who vetoed the resolution?"


class _RedactToken(logging.Filter):
    """Replaces the token wherever it would appear in a log line (belt and braces: nothing logs it)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.token:
            return True
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call must not break logging
            return True
        if self.token in text:
            record.msg, record.args = text.replace(self.token, "[DISCORD_TOKEN]"), None
        if record.exc_info and not record.exc_text:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = formatted.replace(self.token, "[DISCORD_TOKEN]")
        elif record.exc_text and self.token in record.exc_text:
            record.exc_text = record.exc_text.replace(self.token, "[DISCORD_TOKEN]")
        return True


class _NoVoiceWarning(logging.Filter):
    """Herald has no voice features; "PyNaCl is not installed, voice will NOT be supported" is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


def _herald_handlers(root: logging.Logger) -> list[logging.Handler]:
    """Herald's own stderr handlers (the CLI's), or a new one when there is none."""
    handlers = [h for h in root.handlers if getattr(h, "_herald", False)]
    if not handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler._herald = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        handlers = [handler]
    return handlers


def configure_logging(level_name: str, token: str) -> None:
    """Timestamped lines for the bot on stderr (``herald -v bot`` keeps DEBUG), the token redacted.

    Only Herald's own stderr handler (the CLI's, or one added here) is changed, so a host application's
    or pytest's handlers are left alone.
    """
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise HeraldError(f"HERALD_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level_name!r}")
    root = logging.getLogger()
    if root.level != logging.DEBUG:  # -v asked for everything; keep it
        root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    for handler in _herald_handlers(root):
        handler.setLevel(root.level)
        handler.setFormatter(fmt)
        for old in [f for f in handler.filters if isinstance(f, _RedactToken)]:
            handler.removeFilter(old)
        handler.addFilter(_RedactToken(token))
        if not any(isinstance(f, RedactCredentials) for f in handler.filters):
            handler.addFilter(RedactCredentials())  # no URL's user:password@ (HERALD_LLM_URL) in a log line
    logging.getLogger("discord").setLevel(max(root.level, logging.INFO))
    client_log = logging.getLogger("discord.client")
    if not any(isinstance(f, _NoVoiceWarning) for f in client_log.filters):
        client_log.addFilter(_NoVoiceWarning())


@contextlib.contextmanager
def _signals_close(bot: HeraldBot) -> Iterator[None]:
    """While inside: SIGINT and SIGTERM close the bot cleanly (where the loop can take signals)."""
    loop = asyncio.get_running_loop()
    installed = []
    closing: list[asyncio.Task] = []

    async def shutdown() -> None:
        # Closing in the middle of the READY handshake makes discord.py log a spurious error; let it finish.
        if bot.ws is not None and not bot.is_ready():
            with contextlib.suppress(asyncio.TimeoutError, RuntimeError):
                await asyncio.wait_for(bot.wait_until_ready(), 5)
        await bot.close()

    def stop(name: str) -> None:
        log.info("%s received; disconnecting", name)
        if not closing:
            closing.append(loop.create_task(shutdown(), name="herald-shutdown"))  # kept: tasks are weakly held

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop, sig.name)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def serve(settings: Settings, engine: Engine, token: str, **bot_kwargs: Any) -> None:
    """Connect and answer until closed (Ctrl-C / SIGTERM close it cleanly). Login failures are HeraldErrors."""
    bot = HeraldBot(settings=settings, engine=engine, **bot_kwargs)
    with _signals_close(bot):
        try:
            async with bot:
                await bot.start(token)
        except discord.LoginFailure:
            raise HeraldError("Discord rejected the bot token (DISCORD_TOKEN). Copy a new one from the developer "
                              "portal: your application -> Bot -> Reset Token") from None
        except discord.PrivilegedIntentsRequired:  # pragma: no cover - Herald asks for no privileged intent
            raise HeraldError("Discord refused a privileged intent; Herald needs none, so check the bot code") from None
        except (discord.GatewayNotFound, discord.HTTPException, OSError) as exc:
            detail = f"{exc.status}" if isinstance(exc, discord.HTTPException) else type(exc).__name__
            raise HeraldError(f"cannot reach Discord ({detail}); check the network and try again") from None
    log.info("Herald stopped")


def open_and_warm(settings: Settings) -> Engine:
    """The Engine (index built first if missing or stale) with the model loaded and one question answered."""
    from bot.messages import notice
    from index import open_engine

    started = time.perf_counter()
    engine = open_engine(settings.engine_config(), notify=lambda n: log.info("%s", notice(n)))
    engine.ask(WARM_UP_QUESTION)  # loads the model weights and warms every code path before connecting
    log.info("index ready: %d article(s), %d passages, model %s (%.1f s)", len(engine.documents()),
             engine.passages, settings.model, time.perf_counter() - started)
    return engine


def run_bot(settings: Settings, **bot_kwargs: Any) -> None:
    """``herald bot``: check the token, load the index and model, then connect until stopped."""
    token = (settings.discord_token or "").strip()
    if not token:
        raise HeraldError("DISCORD_TOKEN is not set. Put the bot token from the Discord developer portal "
                          "(your application -> Bot) in .env or the environment; see docs/run-the-bot.md")
    configure_logging(settings.log_level, token)
    engine = open_and_warm(settings)
    log.info("connecting to Discord")
    asyncio.run(serve(settings, engine, token, **bot_kwargs))
