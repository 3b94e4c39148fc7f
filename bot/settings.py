"""Settings from the environment and `.env` (python-dotenv); command-line flags override them.

Retrieval knobs map one-to-one onto ``SearchSettings`` / ``ChunkSettings`` fields (``HERALD_<FIELD>``,
``HERALD_CHUNK_<FIELD>``), so a new knob in the library is a setting with no extra code here.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index import (ANSWERERS, DEFAULT_MODEL, SOURCES, VECTOR_STORES, ChunkSettings, EngineConfig, HeraldError,
                   FetchSettings, LLMSettings, SearchSettings, search_for, tuned_values)


class SettingsError(HeraldError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    """Everything Herald can be told; the token is kept out of repr so it never reaches a log."""

    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path(".herald/index")
    model: str = DEFAULT_MODEL
    source: str = "folder"
    vector_store: str = "faiss"
    answerer: str = "extractive"
    search: SearchSettings = SearchSettings()
    chunking: ChunkSettings = ChunkSettings()
    llm: LLMSettings = LLMSettings()
    feeds: tuple[str, ...] = ()
    feed_interval: float = 900.0
    feed_state: Path | None = None  # None: feeds.json beside the index folder (feed_state_file)
    feed_max_items: int = 50
    fetch: FetchSettings = FetchSettings()
    discord_token: str | None = field(default=None, repr=False)
    channel_allowlist: frozenset[int] = frozenset()
    cooldown_seconds: float = 10.0
    dev_guild_id: int | None = None
    feedback_file: Path = Path(".herald/feedback.jsonl")
    max_concurrency: int = 2
    log_level: str = "INFO"

    @property
    def feed_state_file(self) -> Path:
        """Where the feeds' state is kept: HERALD_FEED_STATE, else ``feeds.json`` beside the index folder (so
        it goes with the index it describes, whatever the current folder)."""
        return self.feed_state if self.feed_state is not None else self.index_dir.parent / "feeds.json"

    @property
    def max_question_chars(self) -> int:
        return self.search.max_question_chars

    def model_search(self) -> SearchSettings:
        """The search settings for the chosen model: its tuned thresholds and weights (index.search_for),
        except where the user chose another value than the default. A value equal to the default counts
        as not chosen, so a copy of .env.example (which spells out every default) does not pin MiniLM's
        thresholds on another model."""
        default = SearchSettings()
        chosen = [f.name for f in dataclasses.fields(SearchSettings)
                  if getattr(self.search, f.name) != getattr(default, f.name)]
        try:
            return search_for(self.model, self.search, keep=chosen)
        except ValueError as exc:
            raise SettingsError(f"with HERALD_MODEL={self.model}, whose tuned values are "
                                f"{tuned_values(self.model)}: {exc}; set both values or neither") from None

    def engine_config(self) -> EngineConfig:
        """What the library needs to open the engine (``workers``: the bot's answering threads)."""
        return EngineConfig(corpus=self.corpus_dir, index_dir=self.index_dir, model=self.model, source=self.source,
                            vector_store=self.vector_store, answerer=self.answerer, search=self.model_search(),
                            chunking=self.chunking, workers=self.max_concurrency,
                            answerer_options={"llm": self.llm} if self.answerer == "llm" else {})

    def with_overrides(self, **changes: Any) -> "Settings":
        """A copy with the flags the user gave (None means "not given")."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _parse(name: str, raw: str, kind: type) -> Any:
    raw = raw.strip()
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError
        value = kind(raw)
        if kind is float and not math.isfinite(value):
            raise ValueError
        return value
    except ValueError:
        what = {int: "a whole number", float: "a finite number", bool: "true or false"}.get(kind, "a value")
        raise SettingsError(f"{name} must be {what}, got {raw!r}; fix it in .env or the environment") from None


def _dataclass_from_env(cls: type, prefix: str, env: dict[str, str]) -> Any:
    kwargs = {}
    names = {}
    for f in dataclasses.fields(cls):
        name = prefix + f.name.upper()
        if name in env and env[name].strip() != "":
            kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str,
                                                            "bool": bool}.get(str(f.type), str)
            kwargs[f.name] = _parse(name, env[name], kind)
            names[f.name] = name
    try:
        return cls(**kwargs)
    except ValueError as exc:
        # The dataclass says what is wrong but not which variable: name the ones it mentions
        # (or, failing that, every one that was set) so the user knows what to fix.
        named = [n for f, n in names.items() if f in str(exc) or f.replace("_", " ") in str(exc)] \
            or list(names.values())
        raise SettingsError(f"invalid {' / '.join(named) or prefix.rstrip('_')}: {exc}; "
                            f"fix it in .env or the environment") from None


def _ids(name: str, raw: str) -> frozenset[int]:
    out = set()
    for part in raw.replace(";", ",").replace(" ", ",").split(","):
        if part.strip():
            out.add(_parse(name, part, int))
    return frozenset(out)


def _choice(name: str, value: str, registry: Any) -> str:
    """A backend name that is registered (checked here so a typo fails at start, not at first use)."""
    if value not in registry:
        raise SettingsError(f"{name} must be one of {', '.join(registry.names())}, got {value!r}; "
                            f"fix it in .env or the environment")
    return value


def load_settings(env_file: str | os.PathLike | None = ".env", environ: dict[str, str] | None = None,
                  require_file: bool = False) -> Settings:
    """Settings from ``environ`` (default: the process environment) over the values in ``env_file``.

    Real environment variables win over `.env`, as python-dotenv does by default. ``require_file``: the
    user named the file, so its absence is an error (a typo must not silently mean "no settings").
    """
    from dotenv import dotenv_values

    env: dict[str, str] = {}
    if require_file and env_file and not Path(env_file).is_file():
        raise SettingsError(f"settings file {env_file} does not exist (--env-file); create it or leave the "
                            f"option out to read .env")
    if env_file and Path(env_file).is_file():
        env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    env.update(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value is not None and value.strip() != "" else None

    guild = get("HERALD_DEV_GUILD_ID")
    if get("HERALD_LLM_URL") and not get("HERALD_LLM_MODEL"):
        raise SettingsError("HERALD_LLM_URL is set but HERALD_LLM_MODEL is not: name the model the server "
                            "should run (e.g. llama3.2:3b for Ollama); fix it in .env or the environment")
    settings = Settings(
        corpus_dir=Path(get("HERALD_CORPUS") or "corpus"),
        index_dir=Path(get("HERALD_INDEX") or ".herald/index"),
        model=get("HERALD_MODEL") or DEFAULT_MODEL,
        source=_choice("HERALD_SOURCE", get("HERALD_SOURCE") or "folder", SOURCES),
        vector_store=_choice("HERALD_VECTOR_STORE", get("HERALD_VECTOR_STORE") or "faiss", VECTOR_STORES),
        # A model URL means "answer with it" unless HERALD_ANSWERER names another answerer.
        answerer=_choice("HERALD_ANSWERER", get("HERALD_ANSWERER") or ("llm" if get("HERALD_LLM_URL") else "extractive"),
                         ANSWERERS),
        llm=_dataclass_from_env(LLMSettings, "HERALD_LLM_", env),
        feeds=tuple(u for u in (get("HERALD_FEEDS") or "").replace(",", " ").split() if u),
        feed_interval=_parse("HERALD_FEED_INTERVAL", get("HERALD_FEED_INTERVAL") or "900", float),
        feed_state=Path(get("HERALD_FEED_STATE")) if get("HERALD_FEED_STATE") else None,
        feed_max_items=_parse("HERALD_FEED_MAX_ITEMS", get("HERALD_FEED_MAX_ITEMS") or "50", int),
        fetch=_dataclass_from_env(FetchSettings, "HERALD_FETCH_", env),
        search=_dataclass_from_env(SearchSettings, "HERALD_", env),
        chunking=_dataclass_from_env(ChunkSettings, "HERALD_CHUNK_", env),
        discord_token=get("DISCORD_TOKEN"),
        channel_allowlist=_ids("HERALD_CHANNELS", get("HERALD_CHANNELS") or ""),
        cooldown_seconds=_parse("HERALD_COOLDOWN_SECONDS", get("HERALD_COOLDOWN_SECONDS") or "10", float),
        dev_guild_id=_parse("HERALD_DEV_GUILD_ID", guild, int) if guild else None,
        feedback_file=Path(get("HERALD_FEEDBACK_FILE") or ".herald/feedback.jsonl"),
        max_concurrency=_parse("HERALD_MAX_CONCURRENCY", get("HERALD_MAX_CONCURRENCY") or "2", int),
        log_level=(get("HERALD_LOG_LEVEL") or "INFO").upper(),
    )
    if settings.answerer == "llm" and not settings.llm.url:
        raise SettingsError("HERALD_ANSWERER=llm needs HERALD_LLM_URL (an OpenAI-compatible server, e.g. "
                            "http://localhost:11434/v1 for Ollama) and HERALD_LLM_MODEL")
    if settings.feed_interval < 1:
        raise SettingsError("HERALD_FEED_INTERVAL must be at least 1 second (15 minutes, 900, is polite)")
    if settings.feed_max_items < 1:
        raise SettingsError("HERALD_FEED_MAX_ITEMS must be at least 1 (items fetched per feed per poll)")
    if settings.max_concurrency < 1:
        raise SettingsError("HERALD_MAX_CONCURRENCY must be at least 1")
    if settings.cooldown_seconds < 0:
        raise SettingsError("HERALD_COOLDOWN_SECONDS cannot be negative")
    if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(f"HERALD_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {settings.log_level!r}")
    return settings
