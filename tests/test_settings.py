"""Settings: .env, then the environment, then flags; bad values named; .env.example in step with the code."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from dotenv import dotenv_values

from bot.settings import Settings, SettingsError, load_settings
from index.answer.llm import LLMSettings
from index.ingest.chunking import ChunkSettings
from index.search.retrieval import SearchSettings

REPO_DIR = Path(__file__).resolve().parents[1]

ENV_EXAMPLE = REPO_DIR / ".env.example"


def env_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "test.env"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_env_file(isolated_settings):
    s = load_settings(".env", environ={})
    assert s == Settings()
    assert s.corpus_dir == Path("corpus") and s.index_dir == Path(".herald/index")
    assert s.model == "all-MiniLM-L6-v2" and s.discord_token is None


def test_env_file_values_are_read(tmp_path):
    path = env_file(tmp_path, "HERALD_TOP_K=5\nHERALD_MODE=dense\nHERALD_CHUNK_SENTENCES=4\n"
                              "HERALD_CORPUS=articles\nHERALD_CHANNELS=1, 2;3\nHERALD_DEV_GUILD_ID=42\n"
                              "HERALD_COOLDOWN_SECONDS=2.5\nHERALD_LOG_LEVEL=debug\nDISCORD_TOKEN=abc\n")
    s = load_settings(path, environ={})
    assert s.search.top_k == 5 and s.search.mode == "dense"
    assert s.chunking.sentences == 4 and s.chunking.overlap == 1
    assert s.corpus_dir == Path("articles")
    assert s.channel_allowlist == frozenset({1, 2, 3})
    assert s.dev_guild_id == 42 and s.cooldown_seconds == 2.5
    assert s.log_level == "DEBUG" and s.discord_token == "abc"


def test_default_env_file_is_dotenv_in_the_working_folder(isolated_settings, monkeypatch):
    (isolated_settings / ".env").write_text("HERALD_TOP_K=6\n", encoding="utf-8")
    assert load_settings().search.top_k == 6


def test_real_environment_wins_over_env_file(tmp_path, monkeypatch):
    path = env_file(tmp_path, "HERALD_TOP_K=5\nHERALD_MODEL=from-file\n")
    monkeypatch.setenv("HERALD_TOP_K", "7")
    s = load_settings(path)
    assert s.search.top_k == 7
    assert s.model == "from-file"


def test_empty_value_means_default(tmp_path):
    s = load_settings(env_file(tmp_path, "HERALD_TOP_K=\nHERALD_MODEL=\nDISCORD_TOKEN=\n"), environ={})
    assert s.search.top_k == SearchSettings().top_k and s.model == "all-MiniLM-L6-v2"
    assert s.discord_token is None


def test_flags_win_over_env_and_file(tmp_path, monkeypatch):
    path = env_file(tmp_path, "HERALD_MODEL=from-file\nHERALD_INDEX=file-index\nHERALD_CORPUS=file-corpus\n")
    monkeypatch.setenv("HERALD_INDEX", "env-index")
    s = load_settings(path).with_overrides(model="from-flag", index_dir=Path("flag-index"), corpus_dir=None)
    assert s.model == "from-flag" and s.index_dir == Path("flag-index")
    assert s.corpus_dir == Path("file-corpus")  # None means "flag not given"


def test_cli_flags_win_over_env_and_file(tmp_path, monkeypatch, invoke, fake_embedder, real_article):
    """The same order, end to end: --index beats HERALD_INDEX in the environment beats .env."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / real_article.name).write_bytes(real_article.read_bytes())
    path = env_file(tmp_path, f"HERALD_INDEX={tmp_path / 'file-index'}\nHERALD_CORPUS={corpus}\n"
                              f"HERALD_MODEL=test-hash\n")
    env = {"HERALD_INDEX": str(tmp_path / "env-index")}
    r = invoke("--env-file", path, "build", "--index", tmp_path / "flag-index", env=env)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "flag-index" / "manifest.json").exists()
    assert not (tmp_path / "env-index").exists() and not (tmp_path / "file-index").exists()
    r = invoke("--env-file", path, "build", env=env)
    assert r.exit_code == 0 and (tmp_path / "env-index" / "manifest.json").exists()
    assert not (tmp_path / "file-index").exists()
    r = invoke("--env-file", path, "info", "--json", env=env)
    info = json.loads(r.stdout)
    assert info["model"] == "test-hash" and info["index"] == str(tmp_path / "env-index")


@pytest.mark.parametrize("line, var", [
    ("HERALD_TOP_K=three", "HERALD_TOP_K"),
    ("HERALD_ABSTAIN_THRESHOLD=high", "HERALD_ABSTAIN_THRESHOLD"),
    ("HERALD_MODE=psychic", "HERALD_MODE"),
    ("HERALD_CHUNK_SENTENCES=0", "HERALD_CHUNK_SENTENCES"),
    ("HERALD_CHUNK_OVERLAP=9", "HERALD_CHUNK_OVERLAP"),
    ("HERALD_CHUNK_MIN_PARAGRAPH_CHARS=1.5", "HERALD_CHUNK_MIN_PARAGRAPH_CHARS"),
    ("HERALD_CHANNELS=123,general", "HERALD_CHANNELS"),
    ("HERALD_DEV_GUILD_ID=my-server", "HERALD_DEV_GUILD_ID"),
    ("HERALD_COOLDOWN_SECONDS=soon", "HERALD_COOLDOWN_SECONDS"),
    ("HERALD_COOLDOWN_SECONDS=-1", "HERALD_COOLDOWN_SECONDS"),
    ("HERALD_MAX_CONCURRENCY=0", "HERALD_MAX_CONCURRENCY"),
    ("HERALD_LOG_LEVEL=loud", "HERALD_LOG_LEVEL"),
])
def test_bad_values_name_the_variable(tmp_path, line, var):
    with pytest.raises(SettingsError) as err:
        load_settings(env_file(tmp_path, line + "\n"), environ={})
    assert var in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_value_is_one_line_from_the_cli(invoke):
    r = invoke("info", env={"HERALD_TOP_K": "lots"})
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == ["Error: HERALD_TOP_K must be a whole number, got 'lots'; "
                                             "fix it in .env or the environment"]
    assert "Traceback" not in r.output


# -------------------------------------------------------------------------------- .env.example


def example_values() -> dict[str, str]:
    return {k: (v or "") for k, v in dotenv_values(ENV_EXAMPLE).items()}


@pytest.mark.parametrize("cls, prefix", [(SearchSettings, "HERALD_"), (ChunkSettings, "HERALD_CHUNK_"),
                                         (LLMSettings, "HERALD_LLM_")])
def test_every_retrieval_knob_is_in_env_example(cls, prefix):
    names = set(example_values())
    missing = [prefix + f.name.upper() for f in dataclasses.fields(cls) if prefix + f.name.upper() not in names]
    assert not missing, f".env.example lacks {missing}"


def test_env_example_documents_each_setting():
    """Each variable (or block of related variables) has a comment above it that explains it."""
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#") and "=" in line:
            j = i - 1
            while j >= 0 and lines[j].strip() and not lines[j].startswith("#"):
                j -= 1  # a block of settings under one comment
            assert j >= 0 and lines[j].startswith("#"), f"{line.split('=')[0]} has no explanation"


def test_env_example_defaults_are_the_code_defaults():
    """Copying .env.example to .env changes nothing: its values are the defaults, and every variable
    in it is one Herald reads (a misspelt or removed one would change the result here)."""
    values = example_values()
    assert load_settings(ENV_EXAMPLE, environ={}) == Settings()
    for name, value in values.items():
        if not value:
            continue
        changed = dict(values)
        changed[name] = "not-a-valid-value-\u2603"
        try:
            s = load_settings(None, environ=changed)
        except SettingsError:
            continue  # Herald read it and refused the nonsense: it is a real setting
        assert s != Settings(), f"{name} in .env.example is not read by Herald"


# ------------------------------------------------------------------------------------ the token


def test_token_never_in_repr(tmp_path):
    token = "MTAxNzI.secret-token.value"
    s = load_settings(env_file(tmp_path, f"DISCORD_TOKEN={token}\n"), environ={})
    assert s.discord_token == token
    assert token not in repr(s) and token not in str(s)
    assert token not in repr(s.with_overrides(model="x"))


# ------------------------------------------------------------------ issue 10: settings that lie


@pytest.mark.parametrize("env, named", [
    ({"HERALD_ABSTAIN_THRESHOLD": "nan"}, "HERALD_ABSTAIN_THRESHOLD"),
    ({"HERALD_ABSTAIN_THRESHOLD": "2"}, "HERALD_ABSTAIN_THRESHOLD"),
    ({"HERALD_DENSE_WEIGHT": "inf"}, "HERALD_DENSE_WEIGHT"),
    ({"HERALD_MAX_QUESTION_CHARS": "0"}, "HERALD_MAX_QUESTION_CHARS"),
    ({"HERALD_MAX_QUESTION_CHARS": "-5"}, "HERALD_MAX_QUESTION_CHARS"),
    ({"HERALD_TENTATIVE_BELOW": "0.3"}, "HERALD_TENTATIVE_BELOW"),
    ({"HERALD_COOLDOWN_SECONDS": "nan"}, "HERALD_COOLDOWN_SECONDS"),
    ({"HERALD_VECTOR_STORE": "qdrant"}, "HERALD_VECTOR_STORE"),
    ({"HERALD_ANSWERER": "gpt"}, "HERALD_ANSWERER"),
])
def test_settings_that_would_lie_are_refused_by_name(env, named):
    with pytest.raises(SettingsError) as info:
        load_settings(None, environ=env)
    assert named in str(info.value)


def test_an_explicit_env_file_that_does_not_exist_is_an_error(tmp_path, invoke):
    r = invoke("--env-file", tmp_path / "missing.env", "info")
    assert r.exit_code == 1 and "missing.env does not exist" in r.stderr


def test_bm25_mode_abstains_on_an_off_topic_question(built_index, fake_embedder):
    from index import EngineConfig, SearchSettings, open_engine

    config = EngineConfig(corpus=built_index.corpus, index_dir=built_index.index, model="test-hash",
                          search=SearchSettings(mode="bm25"))
    engine = open_engine(config)
    assert engine.ask("What is the recipe for banana bread?").abstained
    on_topic = engine.ask("Who vetoed the French resolution on Aleppo?")
    assert not on_topic.abstained and 0 < on_topic.confidence < 1


# ------------------------------------------------------------------------------ per-model search values


@pytest.fixture
def tuned_model():
    """A model registered with its own thresholds, as index.retrieval registers e5's."""
    from index.embed.models import unregister_embedder
    from index.search.retrieval import tune_for_model

    tune_for_model("tuned-fake", abstain_threshold=0.62, tentative_below=0.7, dense_weight=0.6)
    yield "tuned-fake"
    unregister_embedder("tuned-fake")


def test_a_model_brings_its_tuned_search_values(tuned_model):
    search = load_settings(None, environ={"HERALD_MODEL": tuned_model}).engine_config().search
    assert (search.abstain_threshold, search.tentative_below, search.dense_weight) == (0.62, 0.7, 0.6)
    assert search.top_k == SearchSettings().top_k  # fields it has no value for keep the defaults
    # the default model has none: its values are the defaults themselves
    assert load_settings(None, environ={}).engine_config().search == SearchSettings()


def test_a_value_the_user_set_wins_over_the_models(tuned_model):
    s = load_settings(None, environ={"HERALD_MODEL": tuned_model, "HERALD_ABSTAIN_THRESHOLD": "0.45"})
    search = s.engine_config().search
    assert search.abstain_threshold == 0.45 and search.dense_weight == 0.6
    # .env.example spells out every default: copying it must not pin the default model's values
    copied = load_settings(ENV_EXAMPLE, environ={"HERALD_MODEL": tuned_model}).engine_config().search
    assert copied.abstain_threshold == 0.62
    # --model on the command line changes the model after the environment was read: the values follow it
    minilm = s.with_overrides(model="all-MiniLM-L6-v2").engine_config()
    assert minilm.search.dense_weight == SearchSettings().dense_weight


def test_an_inconsistent_mix_is_a_settings_error(tuned_model):
    s = load_settings(None, environ={"HERALD_MODEL": tuned_model, "HERALD_TENTATIVE_BELOW": "0.5"})
    with pytest.raises(SettingsError, match="HERALD_MODEL=tuned-fake.*tentative_below"):
        s.engine_config()


def test_bad_tuned_values_fail_when_registered():
    from index.search.retrieval import tune_for_model

    with pytest.raises(ValueError):
        tune_for_model("broken", abstain_threshold=1.5)
    with pytest.raises(TypeError):
        tune_for_model("broken", no_such_field=1)


def test_collections_folder_must_be_a_folder(tmp_path) -> None:
    from bot.settings import SettingsError, load_settings

    a_file = tmp_path / "collections"
    a_file.write_text("not a folder", encoding="utf-8")
    with pytest.raises(SettingsError, match="HERALD_COLLECTIONS must be a folder"):
        load_settings(env_file=None, environ={"HERALD_COLLECTIONS": str(a_file)})
    ok = load_settings(env_file=None, environ={"HERALD_COLLECTIONS": str(tmp_path / "new")})
    assert ok.collections_root == tmp_path / "new" and ok.engine_config().collections_dir == tmp_path / "new"
    assert load_settings(env_file=None, environ={"HERALD_INDEX": str(tmp_path / "x" / "index")}).collections_root \
        == tmp_path / "x" / "collections"


def test_vector_store_options_are_read_checked_and_carried(tmp_path) -> None:
    from bot.settings import SettingsError, load_settings

    s = load_settings(env_file=None, environ={"HERALD_VECTOR_STORE_OPTIONS": "ef_search=256, hnsw_above=100000"})
    assert s.engine_config().store_options == {"ef_search": 256, "hnsw_above": 100000}
    assert load_settings(env_file=None, environ={}).engine_config().store_options == {}
    with pytest.raises(SettingsError, match="takes no option 'efsearch'.*ef_search"):
        load_settings(env_file=None, environ={"HERALD_VECTOR_STORE_OPTIONS": "efsearch=256"})
    with pytest.raises(SettingsError, match="key=value pairs"):
        load_settings(env_file=None, environ={"HERALD_VECTOR_STORE_OPTIONS": "ef_search"})
    with pytest.raises(SettingsError, match="numpy store takes no option"):
        load_settings(env_file=None, environ={"HERALD_VECTOR_STORE": "numpy", "HERALD_VECTOR_STORE_OPTIONS": "m=4"})


@pytest.mark.parametrize("env, said", [
    ({"HERALD_SHARD_ID": "1"}, "go together"), ({"HERALD_SHARD_COUNT": "2"}, "go together"),
    ({"HERALD_SHARD_ID": "2", "HERALD_SHARD_COUNT": "2"}, "go together"),
    ({"HERALD_SHARD_ID": "-1", "HERALD_SHARD_COUNT": "2"}, "cannot be negative"),
    ({"HERALD_DATABASE_URL": "mysql://h@localhost/x"}, "must be a PostgreSQL URL")])
def test_shards_and_the_database_url_are_checked(isolated_settings, env, said):
    with pytest.raises(SettingsError, match=said):
        load_settings(None, environ=env)


def test_shards_and_the_database_url_reach_the_engine_and_client(isolated_settings):
    s = load_settings(None, environ={"HERALD_SHARD_ID": "1", "HERALD_SHARD_COUNT": "3",
                                     "HERALD_DATABASE_URL": "postgresql://h:pw@db.example:5432/herald"})
    assert (s.shard_id, s.shard_count, s.runs_background) == (1, 3, False)
    assert s.engine_config().database_url == "postgresql://h:pw@db.example:5432/herald"
    assert "pw" not in repr(s) and "pw" not in s.index_place
