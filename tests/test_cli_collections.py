"""The command line and collections (issue 18): `--collection NAME` on add, build, ask, info, eval and chat,
and `herald collections`. The library's side is tests/test_collections.py; the bot's, test_bot_collections.py.

The collections folder is the default one, ``collections/`` beside the index folder (HERALD_COLLECTIONS
unset), so these tests also hold the CLI to that default.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_collections import BRIDGE, ORCHIDS, collection_rows  # two stories; what "untouched" means

from fakes.news import fake_news_server
from index import CollectionError, Collections, EngineConfig, open_engine

BRIDGE_Q = "How much did the Valparaiso harbour bridge repairs cost?"
ORCHID_Q = "How many visitors came to the orchid festival in Chiang Mai?"
BAD_NAMES = ["../x", "Guild", "guild 1", "-x", "a/b", ""]


def opts(paths, model="test-hash"):
    return ["--corpus", str(paths.corpus), "--index", str(paths.index), "--model", model]


def assert_one_line_error(result, *fragments: str, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]


@pytest.fixture
def three(article_corpus, fake_embedder):
    """The seed article in ``base``, a bridge story in ``guild-1``, an orchid story in ``guild-2`` (not built)."""
    cols = Collections(article_corpus.root / "collections")  # the default: beside the index folder
    for name, text in (("guild-1", BRIDGE), ("guild-2", ORCHIDS)):
        cols.folder(name).mkdir(parents=True)
        (cols.folder(name) / "story.md").write_text(text, encoding="utf-8")
    return article_corpus, cols


@pytest.fixture
def built(three, invoke):
    paths, cols = three
    r = invoke("build", *opts(paths))
    assert r.exit_code == 0, r.output
    return paths, cols


def _engine(paths):
    return open_engine(EngineConfig(corpus=paths.corpus, index_dir=paths.index, model="test-hash",
                                    collections_dir=paths.root / "collections"), auto_build=False)


def _ask_json(invoke, paths, question, *more, env=None) -> dict:
    r = invoke("ask", "--json", *opts(paths), *more, question, env=env)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


# --------------------------------------------------------------------------------------------- ask


def test_ask_defaults_to_base_and_a_collection_adds_its_own_articles(built, invoke):
    paths, _ = built
    base = _ask_json(invoke, paths, BRIDGE_Q)
    assert base["sources"] and {s["collection"] for s in base["sources"]} == {"base"}
    assert "Valparaiso" not in base["answer"]  # guild-1's article is not there to answer from

    here = _ask_json(invoke, paths, BRIDGE_Q, "--collection", "guild-1")
    assert not here["abstained"] and "Valparaiso" in here["answer"]
    assert here["sources"][0]["collection"] == "guild-1" and here["sources"][0]["doc_id"] == "guild-1:story.md"
    assert {s["collection"] for s in here["sources"]} <= {"base", "guild-1"}  # base is visible by default

    other = _ask_json(invoke, paths, BRIDGE_Q, "--collection", "guild-2")
    assert {s["collection"] for s in other["sources"]} <= {"base", "guild-2"}  # never another server's


def test_ask_in_a_collection_without_base_when_base_is_not_visible(built, invoke):
    paths, _ = built
    out = _ask_json(invoke, paths, ORCHID_Q, "--collection", "guild-2", env={"HERALD_BASE_VISIBLE": "false"})
    assert out["sources"] and {s["collection"] for s in out["sources"]} == {"guild-2"}
    base = _ask_json(invoke, paths, ORCHID_Q, env={"HERALD_BASE_VISIBLE": "false"})
    assert {s["collection"] for s in base["sources"]} == {"base"}  # `--collection base` is base, whatever the setting


def test_ask_text_names_a_sources_collection_and_stdin_batches_use_the_scope(built, invoke):
    paths, _ = built
    r = invoke("ask", *opts(paths), "--collection", "guild-1", BRIDGE_Q)
    assert r.exit_code == 0, r.output
    assert "collection guild-1)" in r.stdout.split("Sources")[1]
    r = invoke("ask", "--json", *opts(paths), "--collection", "guild-2", "-", input=f"{BRIDGE_Q}\n{ORCHID_Q}\n")
    assert r.exit_code == 0, r.output
    for line in r.stdout.splitlines():
        assert {s["collection"] for s in json.loads(line)["sources"]} <= {"base", "guild-2"}


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("command", ["ask", "info", "build", "eval", "add", "chat"])
def test_a_bad_collection_name_is_one_line(built, fake_embedder, invoke, tmp_path, command, name):
    args = {"ask": [BRIDGE_Q], "info": [], "build": [], "eval": [str(tmp_path / "qa.jsonl")],
            "add": ["http://127.0.0.1:9/never-fetched.html"], "chat": []}[command]
    loads = fake_embedder.loads
    r = invoke(command, *opts(built[0]), "--collection", name, *args)
    assert_one_line_error(r, "is not a collection name", "lowercase letters")
    assert fake_embedder.loads == loads  # refused before the model is loaded
    assert not (built[0].root / "collections" / name).exists() or name == ""


@pytest.mark.parametrize("command", ["ask", "info", "build", "eval", "chat"])
def test_an_unknown_collection_is_one_line(built, invoke, tmp_path, command):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": BRIDGE_Q, "answers": ["92 million"]}) + "\n", encoding="utf-8")
    args = {"ask": [BRIDGE_Q], "info": [], "build": [], "eval": [str(qa)], "chat": []}[command]
    r = invoke(command, *opts(built[0]), "--collection", "guild-9", *args)
    assert_one_line_error(r, "no collection 'guild-9'", "herald collections")


def test_the_wording_of_collection_errors():
    from bot.messages import explain, polite

    assert "is not a collection name" in explain(CollectionError("bad_name", "../x"))
    assert "'../x'" in explain(CollectionError("bad_name", "../x"))
    assert polite(CollectionError("unknown", "guild-9")).startswith("There is no collection 'guild-9'")


# ------------------------------------------------------------------------------------------- build


def test_build_one_collection_leaves_the_others_chunk_rows_untouched(built, fake_embedder, invoke):
    paths, cols = built
    before = _engine(paths)
    rows_2, rows_base = collection_rows(before, "guild-2"), collection_rows(before, "base")
    assert rows_2 and rows_base
    (cols.folder("guild-1") / "later.md").write_text(ORCHIDS.replace("Chiang Mai", "Lampang"), encoding="utf-8")
    (cols.folder("guild-2") / "story.md").write_text(ORCHIDS.replace("300,000", "410,000"), encoding="utf-8")
    fake_embedder.seen.clear()

    r = invoke("build", *opts(paths), "--collection", "guild-1")
    assert r.exit_code == 0, r.output
    assert "(collection guild-1)" in r.stdout and "  added: guild-1:later.md" in r.stdout
    assert "changed: guild-2" not in r.stdout
    assert not any("410,000" in text for text in fake_embedder.seen)  # guild-2's folder was not read
    after = _engine(paths)
    assert collection_rows(after, "guild-2") == rows_2  # the same ids, texts and vectors
    assert collection_rows(after, "base") == rows_base
    assert "guild-1:later.md" in after.index.doc_by_id

    r = invoke("build", *opts(paths), "--collection", "guild-1")
    assert r.stdout.startswith("Nothing changed (collection guild-1)")
    r = invoke("build", *opts(paths))  # without --collection: every collection
    assert r.exit_code == 0 and "  changed: guild-2:story.md" in r.stdout
    assert collection_rows(_engine(paths), "guild-2") != rows_2


def test_build_a_collection_whose_folder_is_gone_drops_it_and_base_is_a_collection(built, invoke):
    paths, cols = built
    cols.remove("guild-2")
    r = invoke("build", *opts(paths), "--collection", "guild-2")  # unknown on disk, known to the index
    assert r.exit_code == 0, r.output
    assert "  removed: guild-2:story.md" in r.stdout
    assert set(_engine(paths).collections()) == {"base", "guild-1"}
    assert_one_line_error(invoke("build", *opts(paths), "--collection", "guild-2"), "no collection 'guild-2'")
    r = invoke("build", *opts(paths), "--collection", "base")
    assert r.exit_code == 0 and r.stdout.startswith("Nothing changed (collection base)")


def test_build_full_with_a_collection_is_refused(built, invoke):
    r = invoke("build", *opts(built[0]), "--full", "--collection", "guild-1")
    assert r.exit_code == 2 and "--full re-embeds every collection" in r.stderr
    assert "Traceback" not in r.output


def test_build_help_says_what_no_collection_means(invoke):
    r = invoke("build", "--help")
    assert "--collection NAME" in r.stdout and "Without --collection every collection" in r.stdout


# -------------------------------------------------------------------------------------------- info


def test_info_lists_every_collection_and_labels_the_servers(built, invoke):
    paths, _ = built
    r = invoke("info", *opts(paths))
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("  - ")]
    assert len(lines) == 3
    assert sum("in collection guild-1" in ln for ln in lines) == 1
    assert sum("in collection" not in ln for ln in lines) == 1  # base is not labelled
    assert "Collections: base 1, guild-1 1, guild-2 1" in r.stdout

    s = json.loads(invoke("info", "--json", *opts(paths)).stdout)
    assert s["collection"] is None and s["collections"] == {"base": 1, "guild-1": 1, "guild-2": 1}
    assert sorted(a["collection"] for a in s["articles"]) == ["base", "guild-1", "guild-2"]


def test_info_of_one_collection(built, invoke):
    paths, cols = built
    r = invoke("info", *opts(paths), "--collection", "guild-1")
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("  - ")]
    assert len(lines) == 1 and "Valparaiso" in lines[0] and "guild-1:story.md" in lines[0]
    assert "Collection: guild-1: 1 document(s)" in r.stdout and "(up to date)" in r.stdout

    s = json.loads(invoke("info", "--json", *opts(paths), "--collection", "guild-2").stdout)
    assert s["collection"] == "guild-2" and [a["id"] for a in s["articles"]] == ["guild-2:story.md"]
    assert s["titles"] == ["Orchid festival draws record crowds in Chiang Mai"] and s["documents"] == 3

    (cols.folder("guild-2") / "story.md").write_text(ORCHIDS.replace("300,000", "410,000"), encoding="utf-8")
    assert json.loads(invoke("info", "--json", *opts(paths), "--collection", "guild-1").stdout)["state"] == \
        "up to date"  # another collection's change is not this one's
    assert "1 changed" in json.loads(invoke("info", "--json", *opts(paths), "--collection", "guild-2").stdout)["state"]
    base = json.loads(invoke("info", "--json", *opts(paths), "--collection", "base").stdout)
    assert [a["collection"] for a in base["articles"]] == ["base"]


# -------------------------------------------------------------------------------------------- eval


def test_eval_asks_as_in_the_collections_place(built, invoke, tmp_path):
    paths, _ = built
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": BRIDGE_Q, "answers": ["Valparaiso"]}) + "\n", encoding="utf-8")
    base = json.loads(invoke("eval", "--json", *opts(paths), str(qa)).stdout)
    here = json.loads(invoke("eval", "--json", *opts(paths), "--collection", "guild-1", str(qa)).stdout)
    assert base["recall@5"] == 0.0 and here["recall@1"] == 1.0 and here["answer_hit"] == 1.0


def test_evaluate_passes_the_collections_to_every_question(built):
    from index import QAItem, evaluate

    engine = _engine(built[0])
    items = [QAItem(BRIDGE_Q, ["92 million"]), QAItem(ORCHID_Q, ["300,000"])]
    scoped = evaluate(engine, items, collections=iter(["guild-2"]))  # an iterator serves every question
    assert all(s.collection == "guild-2" for _, a in scoped.items for s in a.sources)
    assert scoped.items[1][1].sources and scoped.summary()["recall@1"] == 0.5
    everything = evaluate(engine, items)
    assert {s.collection for _, a in everything.items for s in a.sources} >= {"guild-1", "guild-2"}


# --------------------------------------------------------------------------------------------- add


def news_env(paths) -> dict[str, str]:
    return {"HERALD_FEED_STATE": str(paths.root / "feeds.json"), "HERALD_FETCH_TIMEOUT": "2",
            "HERALD_FETCH_ALLOW_PRIVATE": "127.0.0.1"}


@pytest.fixture
def site():
    with fake_news_server(slow_seconds=1) as s:
        yield s


def test_add_into_a_collection_saves_there_and_updates_only_it(built, invoke, site):
    paths, cols = built
    corpus_before = sorted(p.name for p in paths.corpus.rglob("*"))
    (cols.folder("guild-2") / "story.md").write_text(ORCHIDS.replace("300,000", "410,000"), encoding="utf-8")
    r = invoke("add", *opts(paths), "--collection", "guild-7", site.url("/news/harbour-bridge-closure.html"),
               env=news_env(paths))
    assert r.exit_code == 0, r.output
    assert "added: Valmouth harbour bridge closed" in r.stdout and "Index updated" in r.stdout
    saved = list(cols.folder("guild-7").rglob("*.md"))
    assert len(saved) == 1 and str(saved[0]) in r.stdout
    assert sorted(p.name for p in paths.corpus.rglob("*")) == corpus_before  # the corpus is untouched
    engine = _engine(paths)
    assert engine.collections()["guild-7"] == 1
    info = json.loads(invoke("info", "--json", *opts(paths), "--collection", "guild-2").stdout)
    assert "1 changed" in info["state"]  # guild-2 was not updated by the add

    q = "Who found the cracks in the harbour bridge?"
    here = _ask_json(invoke, paths, q, "--collection", "guild-7", env=news_env(paths))
    assert here["sources"][0]["collection"] == "guild-7" and "Valmouth" in here["answer"]
    assert {s["collection"] for s in _ask_json(invoke, paths, q, env=news_env(paths))["sources"]} == {"base"}


def test_add_to_base_is_the_corpus_folder(built, invoke, site):
    paths, cols = built
    r = invoke("add", *opts(paths), site.url("/news/ferry-strike.html"), env=news_env(paths))
    assert r.exit_code == 0, r.output
    assert list((paths.corpus / "web").rglob("*.md")) and not (paths.root / "collections" / "base").exists()
    assert _engine(paths).collections()["base"] == 2


def test_add_no_index_into_a_collection(built, invoke, site):
    paths, cols = built
    r = invoke("add", *opts(paths), "--no-index", "--collection", "guild-1", site.url("/news/ferry-strike.html"),
               env=news_env(paths))
    assert r.exit_code == 0 and "Index updated" not in r.stdout
    assert cols.articles("guild-1") == 2 and _engine(paths).collections()["guild-1"] == 1


def test_add_feed_into_a_collection_keeps_its_state_in_the_collection(built, invoke, site):
    paths, cols = built
    r = invoke("add", "--feed", *opts(paths), "--collection", "guild-3", site.url("/feed.xml"), env=news_env(paths))
    assert r.exit_code == 0, r.output
    assert "2 new item(s)" in r.stdout and "Index updated" in r.stdout
    assert cols.articles("guild-3") == 2 and cols.feed_state("guild-3").is_file()
    assert not (paths.root / "feeds.json").exists()  # base's feed state is not this collection's
    r = invoke("add", "--feed", *opts(paths), "--collection", "guild-3", site.url("/feed.xml"), env=news_env(paths))
    assert "unchanged since the last poll" in r.stdout
    assert _engine(paths).collections()["guild-3"] == 2


# ------------------------------------------------------------------------------------- collections


def _meta(cols, name: str, **meta) -> None:
    cols.set_meta(name, {"owner_id": int(name.split("-")[1]), "owner_name": f"Server {name}",
                         "created": "2024-03-01T09:00:00+00:00", "last_used": "2024-03-09T12:34:56+00:00",
                         "feeds": [], "adds": [], "left_at": None, **meta})


def test_collections_lists_base_and_every_server(built, invoke):
    paths, cols = built
    _meta(cols, "guild-1", feeds=["https://a.example/rss", "https://b.example/atom"])
    left_at = time.time() - 3600
    _meta(cols, "guild-2", left_at=left_at)
    r = invoke("collections", *opts(paths), "--json",
               env={"HERALD_GUILD_GRACE_HOURS": "48", "HERALD_FEEDS": "https://c.example/rss"})
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["collections_root"] == str(paths.root / "collections") and out["index_problem"] is None
    rows = {row["name"]: row for row in out["collections"]}
    assert list(rows) == ["base", "guild-1", "guild-2"]
    assert rows["base"]["folder"] == str(paths.corpus) and rows["base"]["articles"] == 1
    assert rows["base"]["feeds"] == 1  # HERALD_FEEDS
    assert rows["base"]["bytes"] == sum(p.stat().st_size for p in paths.corpus.iterdir())
    assert (rows["base"]["documents"], rows["guild-1"]["documents"]) == (1, 1)
    assert rows["guild-1"]["passages"] == _engine(paths).documents(["guild-1"])[0].chunks > 0
    assert rows["guild-1"]["bytes"] == (cols.folder("guild-1") / "story.md").stat().st_size
    assert (rows["guild-1"]["owner_id"], rows["guild-1"]["owner_name"]) == (1, "Server guild-1")
    assert rows["guild-1"]["feeds"] == 2 and rows["guild-1"]["removed_after"] is None
    removed = datetime.fromisoformat(rows["guild-2"]["removed_after"]).timestamp()
    assert removed == pytest.approx(left_at + 48 * 3600, abs=1)

    r = invoke("collections", *opts(paths), env={"HERALD_GUILD_GRACE_HOURS": "48"})
    assert r.exit_code == 0, r.output
    assert f"Corpus (base): {paths.corpus}" in r.stdout
    table = {ln.split()[0]: ln for ln in r.stdout.splitlines()[4:]}
    assert "Server guild-1 (1)" in table["guild-1"] and "2024-03-09 12:34" in table["guild-1"]
    assert "1 / " in table["base"] and "removed" not in table["base"]
    when = datetime.fromtimestamp(left_at + 48 * 3600, UTC).isoformat(timespec="seconds")[:16].replace("T", " ")
    assert f"removed after {when} UTC" in table["guild-2"]


def test_collections_says_what_is_out_of_step_and_owner_names_are_terminal_safe(built, invoke):
    paths, cols = built
    cols.remove("guild-2")  # still in the index until a build
    (cols.folder("guild-5")).mkdir()
    (cols.folder("guild-5") / "new.md").write_text(BRIDGE, encoding="utf-8")
    _meta(cols, "guild-5", owner_name="evil\x1b[31mred")
    r = invoke("collections", *opts(paths))
    assert r.exit_code == 0, r.output
    table = {ln.split()[0]: ln for ln in r.stdout.splitlines()[4:]}
    assert "no folder" in table["guild-2"] and "not indexed yet" in table["guild-5"]
    assert "\x1b" not in r.stdout
    rows = {row["name"]: row for row in json.loads(invoke("collections", "--json", *opts(paths)).stdout)["collections"]}
    assert rows["guild-2"]["folder"] is None and rows["guild-2"]["documents"] == 1
    assert rows["guild-5"]["documents"] == 0 and rows["guild-5"]["articles"] == 1


@pytest.mark.parametrize("make_folder", [False, True])
def test_collections_without_servers_or_index_is_just_base(article_corpus, invoke, make_folder):
    if make_folder:
        (article_corpus.root / "collections").mkdir()
    out = json.loads(invoke("collections", "--json", *opts(article_corpus)).stdout)
    assert [row["name"] for row in out["collections"]] == ["base"]
    assert out["collections"][0]["documents"] is None and "no index" in out["index_problem"]
    r = invoke("collections", *opts(article_corpus))
    assert r.exit_code == 0 and "no index at" in r.stdout


def test_collections_reads_the_folder_of_herald_collections(built, invoke, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    Collections(elsewhere).folder("guild-42").mkdir(parents=True)
    out = json.loads(invoke("collections", "--json", *opts(built[0]), env={"HERALD_COLLECTIONS": str(elsewhere)})
                     .stdout)
    names = [row["name"] for row in out["collections"]]
    assert "guild-42" in names and out["collections_root"] == str(elsewhere)
    assert Path(out["collections"][names.index("guild-42")]["folder"]) == elsewhere / "guild-42"
