"""Settings from the environment and `.env` (python-dotenv); command-line flags override them.

Every variable is one row of ``SETTINGS``: the variable, the ``Settings`` field it sets, how its text is
read, its default (the field's own unless stated) and the rule its value must meet, with what is said
when it does not. A new setting is a field on ``Settings``, a row here and a line in .env.example.
Retrieval knobs map one-to-one onto ``SearchSettings`` / ``ChunkSettings`` / ``LLMSettings`` /
``FetchSettings`` fields (``Group`` rows: ``HERALD_<FIELD>``, ``HERALD_CHUNK_<FIELD>``, ...), so a new knob
in the library is a setting with no extra code here.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index import (
    ANSWERERS,
    DEFAULT_MODEL,
    SOURCES,
    VECTOR_STORES,
    ChunkSettings,
    EngineConfig,
    FetchSettings,
    HeraldError,
    LLMSettings,
    SearchSettings,
    redact_url,
    search_for,
    tuned_values,
)


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
    vector_store_options: tuple[tuple[str, Any], ...] = ()  # HERALD_VECTOR_STORE_OPTIONS, e.g. ef_search=256
    database_url: str | None = field(default=None, repr=False)  # HERALD_DATABASE_URL: the index in PostgreSQL
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
    # Collections (docs/run-the-bot.md): each server's own articles and feeds beside the operator's corpus.
    collections_dir: Path | None = None  # None: collections/ beside the index folder (collections_root)
    base_visible: bool = True  # servers (and DMs) see the operator's corpus, the ``base`` collection
    guild_max_articles: int = 200
    guild_max_feeds: int = 5
    guild_adds_per_hour: int = 20
    guild_grace_hours: float = 168.0  # a server's collection is kept this long after the bot leaves it
    dm_servers: bool = False  # DMs also search the servers the asker shares with the bot, each named
    # Sharding (several bot processes, one Discord application): this process's shard of HERALD_SHARD_COUNT.
    shard_id: int | None = None
    shard_count: int | None = None

    @property
    def runs_background(self) -> bool:
        """Whether this process polls feeds and removes expired collections: the only one, or shard 0."""
        return not self.shard_id

    def serves_guild(self, guild_id: int) -> bool:
        """Whether Discord sends this process a server's events: every server unsharded, else the servers of its
        shard (Discord's rule: ``(guild_id >> 22) % shard_count``). A shard does not see the others' servers, so
        it must not take them for servers it left."""
        if not self.shard_count:
            return True
        return (int(guild_id) >> 22) % self.shard_count == (self.shard_id or 0)

    @property
    def collections_root(self) -> Path:
        """Where the servers' collections live: HERALD_COLLECTIONS, else ``collections`` beside the index
        folder (with the index it belongs to, whatever the current folder)."""
        return self.collections_dir if self.collections_dir is not None else self.index_dir.parent / "collections"

    @property
    def feed_state_file(self) -> Path:
        """Where the feeds' state is kept: HERALD_FEED_STATE, else ``feeds.json`` beside the index folder (so
        it goes with the index it describes, whatever the current folder)."""
        return self.feed_state if self.feed_state is not None else self.index_dir.parent / "feeds.json"

    def scope(self, collection: str = "base") -> tuple[str, ...]:
        """The collections a question asked in ``collection``'s place searches: ``base`` alone, or a
        server's collection plus ``base`` when HERALD_BASE_VISIBLE (the CLI's ``--collection`` and the bot
        agree on it)."""
        if collection == "base":
            return ("base",) if self.base_visible else ()
        return ("base", collection) if self.base_visible else (collection,)

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
                            answerer_options={"llm": self.llm} if self.answerer == "llm" else {},
                            collections_dir=self.collections_root, store_options=dict(self.vector_store_options),
                            database_url=self.database_url)

    @property
    def index_place(self) -> str:
        """Where the index is, as messages name it: the folder, or the database's URL without its password."""
        return redact_url(self.database_url) if self.database_url else str(self.index_dir)

    def with_overrides(self, **changes: Any) -> Settings:
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


# ------------------------------------------------------------------------------------ the table

Parser = Callable[[str, str], Any]  # (variable, its text) -> the value, or SettingsError naming the variable


def _text(name: str, raw: str) -> str:
    return raw


def _path(name: str, raw: str) -> Path:
    return Path(raw)


def _number(kind: type) -> Parser:
    return lambda name, raw: _parse(name, raw, kind)


def _one_of(registry: Any) -> Parser:
    return lambda name, raw: _choice(name, raw, registry)


def _urls(name: str, raw: str) -> tuple[str, ...]:
    return tuple(u for u in raw.replace(",", " ").split() if u)


def _scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _options(name: str, raw: str) -> tuple[tuple[str, Any], ...]:
    """``key=value`` pairs separated by commas (numbers read as numbers)."""
    out = []
    for part in raw.replace(";", ",").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SettingsError(f"{name} must be key=value pairs separated by commas (e.g. ef_search=256), "
                                f"got {part.strip()!r}; fix it in .env or the environment")
        out.append((key.strip(), _scalar(value.strip())))
    return tuple(out)


def _check_store_options(settings: Settings) -> None:
    """Each HERALD_VECTOR_STORE_OPTIONS key is one the chosen store takes (checked at start, not at a build)."""
    import inspect

    takes = [p for p in inspect.signature(VECTOR_STORES.factory(settings.vector_store)).parameters
             if p not in ("self", "dim", "index") and not p.startswith("_")]
    bad = [k for k, _ in settings.vector_store_options if k not in takes]
    if bad:
        raise SettingsError(f"HERALD_VECTOR_STORE_OPTIONS: the {settings.vector_store} store takes no option "
                            f"{bad[0]!r} (it takes {', '.join(takes) or 'none'}); fix it in .env or the environment")


def _upper(name: str, raw: str) -> str:
    return raw.upper()


def _answerer_default(env: dict[str, str]) -> str:
    """A model URL means "answer with it" unless HERALD_ANSWERER names another answerer."""
    return "llm" if _get(env, "HERALD_LLM_URL") else "extractive"


@dataclass(frozen=True)
class Var:
    """One variable for one ``Settings`` field. Unset or empty: ``default``, the field's own default unless
    it is a function of the other variables (its text is then parsed too). ``check``: the rule a value
    must meet, and ``problem`` what is said when it does not (``{value!r}`` filled in)."""

    env: str
    field: str
    parse: Parser = _text
    default: Callable[[dict[str, str]], str] | None = None
    check: Callable[[Any], bool] | None = None
    problem: str = ""

    def read(self, env: dict[str, str]) -> Any:
        raw = _get(env, self.env)
        if raw is None:
            if self.default is None:
                return _FIELD_DEFAULTS[self.field]
            raw = self.default(env)
        return self.parse(self.env, raw)

    def verify(self, value: Any) -> None:
        if self.check is not None and not self.check(value):
            raise SettingsError(self.problem.format(value=value))


@dataclass(frozen=True)
class Group:
    """A library settings dataclass read field by field from ``<prefix><FIELD>`` (its own checks apply)."""

    env: str  # the prefix
    field: str
    cls: type

    def read(self, env: dict[str, str]) -> Any:
        return _dataclass_from_env(self.cls, self.env, env)

    def verify(self, value: Any) -> None:
        """Nothing more: the dataclass checked its own values (and the variables were named if wrong)."""


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Every setting Herald reads, in the order they are read (a copy of .env.example sets each to its default).
SETTINGS: tuple[Var | Group, ...] = (
    Var("HERALD_CORPUS", "corpus_dir", _path),
    Var("HERALD_INDEX", "index_dir", _path),
    Var("HERALD_MODEL", "model"),
    Var("HERALD_SOURCE", "source", _one_of(SOURCES)),
    Var("HERALD_VECTOR_STORE", "vector_store", _one_of(VECTOR_STORES)),
    Var("HERALD_VECTOR_STORE_OPTIONS", "vector_store_options", _options),
    Var("HERALD_DATABASE_URL", "database_url", check=lambda v: v is None or v.startswith(("postgresql://", "postgres://")),
        problem="HERALD_DATABASE_URL must be a PostgreSQL URL (postgresql://user:password@host:5432/herald); "
                "leave it empty to keep the index in the HERALD_INDEX folder"),
    Var("HERALD_ANSWERER", "answerer", _one_of(ANSWERERS), default=_answerer_default),
    Group("HERALD_LLM_", "llm", LLMSettings),
    Var("HERALD_FEEDS", "feeds", _urls),
    Var("HERALD_FEED_INTERVAL", "feed_interval", _number(float), check=lambda v: v >= 1,
        problem="HERALD_FEED_INTERVAL must be at least 1 second (15 minutes, 900, is polite)"),
    Var("HERALD_FEED_STATE", "feed_state", _path),
    Var("HERALD_FEED_MAX_ITEMS", "feed_max_items", _number(int), check=lambda v: v >= 1,
        problem="HERALD_FEED_MAX_ITEMS must be at least 1 (items fetched per feed per poll)"),
    Group("HERALD_FETCH_", "fetch", FetchSettings),
    Group("HERALD_", "search", SearchSettings),
    Group("HERALD_CHUNK_", "chunking", ChunkSettings),
    Var("DISCORD_TOKEN", "discord_token"),
    Var("HERALD_CHANNELS", "channel_allowlist", _ids),
    Var("HERALD_COOLDOWN_SECONDS", "cooldown_seconds", _number(float), check=lambda v: v >= 0,
        problem="HERALD_COOLDOWN_SECONDS cannot be negative"),
    Var("HERALD_DEV_GUILD_ID", "dev_guild_id", _number(int)),
    Var("HERALD_FEEDBACK_FILE", "feedback_file", _path),
    Var("HERALD_MAX_CONCURRENCY", "max_concurrency", _number(int), check=lambda v: v >= 1,
        problem="HERALD_MAX_CONCURRENCY must be at least 1"),
    Var("HERALD_LOG_LEVEL", "log_level", _upper, check=lambda v: v in _LOG_LEVELS,
        problem="HERALD_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {value!r}"),
    Var("HERALD_COLLECTIONS", "collections_dir", _path, check=lambda v: v is None or not v.exists() or v.is_dir(),
        problem="HERALD_COLLECTIONS must be a folder (the servers' articles go in it), but {value} is a file"),
    Var("HERALD_BASE_VISIBLE", "base_visible", _number(bool)),
    Var("HERALD_GUILD_MAX_ARTICLES", "guild_max_articles", _number(int), check=lambda v: v >= 0,
        problem="HERALD_GUILD_MAX_ARTICLES cannot be negative (0: servers cannot add articles)"),
    Var("HERALD_GUILD_MAX_FEEDS", "guild_max_feeds", _number(int), check=lambda v: v >= 0,
        problem="HERALD_GUILD_MAX_FEEDS cannot be negative (0: servers cannot follow feeds)"),
    Var("HERALD_GUILD_ADDS_PER_HOUR", "guild_adds_per_hour", _number(int), check=lambda v: v >= 0,
        problem="HERALD_GUILD_ADDS_PER_HOUR cannot be negative (0: no /add at all)"),
    Var("HERALD_GUILD_GRACE_HOURS", "guild_grace_hours", _number(float), check=lambda v: v >= 0,
        problem="HERALD_GUILD_GRACE_HOURS cannot be negative (0: remove a server's articles when the bot leaves)"),
    Var("HERALD_DM_SERVERS", "dm_servers", _number(bool)),
    Var("HERALD_SHARD_ID", "shard_id", _number(int), check=lambda v: v is None or v >= 0,
        problem="HERALD_SHARD_ID cannot be negative (shards count from 0)"),
    Var("HERALD_SHARD_COUNT", "shard_count", _number(int), check=lambda v: v is None or v >= 1,
        problem="HERALD_SHARD_COUNT must be at least 1"),
)

_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}


def _get(env: dict[str, str], name: str) -> str | None:
    """A variable's text; None when it is unset or empty (empty means "the default")."""
    value = env.get(name)
    return value if value is not None and value.strip() != "" else None


def _read_env(env_file: str | os.PathLike | None, environ: dict[str, str] | None,
              require_file: bool) -> dict[str, str]:
    """``environ`` (default: the process environment) over the values in ``env_file``."""
    from dotenv import dotenv_values

    env: dict[str, str] = {}
    if require_file and env_file and not Path(env_file).is_file():
        raise SettingsError(f"settings file {env_file} does not exist (--env-file); create it or leave the "
                            f"option out to read .env")
    if env_file and Path(env_file).is_file():
        env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    env.update(os.environ if environ is None else environ)
    return env


def load_settings(env_file: str | os.PathLike | None = ".env", environ: dict[str, str] | None = None,
                  require_file: bool = False) -> Settings:
    """Settings from ``environ`` (default: the process environment) over the values in ``env_file``.

    Real environment variables win over `.env`, as python-dotenv does by default. ``require_file``: the
    user named the file, so its absence is an error (a typo must not silently mean "no settings").
    Every variable is read through the ``SETTINGS`` table, then each row's check is applied.
    """
    env = _read_env(env_file, environ, require_file)
    if _get(env, "HERALD_LLM_URL") and not _get(env, "HERALD_LLM_MODEL"):
        raise SettingsError("HERALD_LLM_URL is set but HERALD_LLM_MODEL is not: name the model the server "
                            "should run (e.g. llama3.2:3b for Ollama); fix it in .env or the environment")
    settings = Settings(**{row.field: row.read(env) for row in SETTINGS})
    if settings.answerer == "llm" and not settings.llm.url:
        raise SettingsError("HERALD_ANSWERER=llm needs HERALD_LLM_URL (an OpenAI-compatible server, e.g. "
                            "http://localhost:11434/v1 for Ollama) and HERALD_LLM_MODEL")
    for row in SETTINGS:
        row.verify(getattr(settings, row.field))
    _check_store_options(settings)
    shard, shards = settings.shard_id, settings.shard_count
    if (shard is None) != (shards is None) or (shard is not None and shards is not None and shard >= shards):
        raise SettingsError("HERALD_SHARD_ID and HERALD_SHARD_COUNT go together, with 0 <= HERALD_SHARD_ID < "
                            "HERALD_SHARD_COUNT (e.g. 0 and 2 for the first of two bot processes)")
    return settings
