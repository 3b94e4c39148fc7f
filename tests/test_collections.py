"""Collections in the library: every document belongs to one, a question searches only the collections it
is given (exactly: no candidate an unfiltered search finds in them is lost), and a scoped rebuild touches only
its collections (issue 18). The bot's side is tests/test_bot_collections.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from index import (
    BASE_COLLECTION,
    CollectionError,
    Collections,
    EngineConfig,
    check_name,
    collection_of,
    describe_index,
    open_engine,
    rebuild,
)
from index.store.vectors import FaissStore, NumpyStore

BRIDGE = """---
title: Harbour bridge reopens in Valparaiso
url: https://news.example/valparaiso-bridge
outlet: Coast Gazette
---
The Valparaiso harbour bridge reopened on Tuesday after eighteen months of repairs.

Engineers replaced forty steel cables that salt air had corroded, the port authority said.

The repairs cost 92 million pesos, paid by the regional government.
"""

ORCHIDS = """---
title: Orchid festival draws record crowds in Chiang Mai
url: https://news.example/orchids
---
The orchid festival in Chiang Mai drew a record 300,000 visitors this year.

Growers from twelve provinces showed rare slipper orchids in the old city's gardens.

The festival ends on Sunday with a parade of floats covered in flowers.
"""


@pytest.fixture
def three(article_corpus, fake_embedder) -> tuple[EngineConfig, Collections]:
    """The seed article in ``base``, a bridge story in ``guild-1``, an orchid story in ``guild-2``."""
    root = article_corpus.root / "collections"
    cols = Collections(root)
    for name, text in (("guild-1", BRIDGE), ("guild-2", ORCHIDS)):
        cols.folder(name).mkdir(parents=True)
        (cols.folder(name) / "story.md").write_text(text, encoding="utf-8")
    config = EngineConfig(corpus=article_corpus.corpus, index_dir=article_corpus.index, model=fake_embedder.name,
                          collections_dir=root)
    rebuild(config)
    return config, cols


def collection_rows(engine, collection: str) -> dict[int, tuple[str, bytes]]:
    """{chunk id: (text, vector bytes)} of one collection's chunks: what "untouched" means."""
    idx = engine.index
    rows = idx.rows_by_collection.get(collection, np.zeros(0, dtype=np.int64))
    ids = [idx.chunk_ids[r] for r in rows]
    vecs = idx.store.get(ids)
    return {i: (idx.chunks[r].text, vecs[n].tobytes()) for n, (i, r) in enumerate(zip(ids, rows))}


def test_documents_know_their_collection(three) -> None:
    config, _ = three
    engine = open_engine(config, auto_build=False)
    assert engine.collections() == {"base": 1, "guild-1": 1, "guild-2": 1}
    by_collection = {d.collection: d.id for d in engine.documents()}
    assert by_collection["guild-1"] == "guild-1:story.md" and collection_of("guild-1:story.md") == "guild-1"
    assert collection_of(by_collection["base"]) == BASE_COLLECTION
    assert [d.collection for d in engine.documents(["guild-2"])] == ["guild-2"]
    assert {d.collection for d in describe_index(config).documents} == {"base", "guild-1", "guild-2"}


def test_a_question_searches_only_its_collections(three) -> None:
    config, _ = three
    engine = open_engine(config, auto_build=False)
    q = "How much did the Valparaiso harbour bridge repairs cost?"
    here = engine.ask(q, collections=("base", "guild-1"))
    assert not here.abstained and "Valparaiso" in here.answer
    assert here.sources[0].collection == "guild-1" and here.sources[0].doc_id == "guild-1:story.md"
    elsewhere = engine.ask(q, collections=("base", "guild-2"))
    assert elsewhere.abstained  # another server's article is not there to answer from
    assert all(s.collection in ("base", "guild-2") for s in elsewhere.sources)
    assert engine.ask(q, collections=()).sources == []
    assert engine.ask(q).sources[0].collection == "guild-1"  # no filter: every collection


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_the_filter_is_exact(three, mode: str) -> None:
    """Each chunk of the allowed collections among the unfiltered search's candidates (every one it
    re-scored) is among the filtered candidates with the same score: the filter drops other collections,
    never a candidate. (The filtered top k may then hold a better-scored chunk the unfiltered search had
    no room to re-score: benchmarks/collections.py counts those.)"""
    config, _ = three
    engine = open_engine(config, auto_build=False)
    allowed = {"base", "guild-2"}
    questions = ["Who vetoed the resolution?", "How many visitors came to the orchid festival?",
                 "What did engineers replace on the bridge?", "Why can't the ICC act on Syria?"]
    for q in questions:
        full = engine.retrieve(q, mode=mode, k=8)
        kept = engine.retrieve(q, mode=mode, k=8, collections=allowed)
        coll = {c.row: engine.index.doc_by_id[engine.index.chunks[c.row].doc_id].collection for c in full + kept}
        assert all(coll[c.row] in allowed for c in kept)
        got = {c.row: c.score for c in kept}
        for c in full:
            if coll[c.row] in allowed:
                assert c.row in got and got[c.row] == pytest.approx(c.score), (q, mode)


@pytest.mark.parametrize("hnsw_above", [10**9, 200])
def test_stores_filter_exactly(hnsw_above: int) -> None:
    """FAISS (flat, and HNSW through its flat storage) against numpy's exact search among the same ids."""
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((1500, 24)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(100, 1600)
    faiss_store, ref = FaissStore(24, hnsw_above=hnsw_above), NumpyStore(24)
    faiss_store.add(ids, vecs)
    ref.add(ids, vecs)
    assert faiss_store.approximate == (hnsw_above < 1500)
    for t in range(25):
        within = ids[rng.choice(len(ids), int(rng.integers(1, 400)), replace=False)]
        got = faiss_store.search_within(vecs[t], 10, within)
        want = ref.search_within(vecs[t], 10, within)
        assert [i for i, _ in got] == [i for i, _ in want]
        assert {i for i, _ in got} <= set(within.tolist())


def test_a_scoped_rebuild_leaves_other_collections_untouched(three) -> None:
    config, cols = three
    before = open_engine(config, auto_build=False)
    rows_1 = collection_rows(before, "guild-1")
    (cols.folder("guild-1") / "later.md").write_text(ORCHIDS.replace("Chiang Mai", "Lampang"), encoding="utf-8")
    (cols.folder("guild-2") / "second.md").write_text(BRIDGE.replace("Valparaiso", "Antofagasta"), encoding="utf-8")
    report = rebuild(config, collections=["guild-2"])
    assert report.added == ["guild-2:second.md"]
    after = open_engine(config, auto_build=False)
    assert collection_rows(after, "guild-1") == rows_1  # same chunk ids, texts and vector bytes
    assert "guild-1:later.md" not in after.index.doc_by_id  # its folder was not read
    assert collection_rows(after, "base") == collection_rows(before, "base")
    rebuild(config)  # an unscoped rebuild reads every folder
    assert "guild-1:later.md" in open_engine(config, auto_build=False).index.doc_by_id


def test_a_removed_collection_leaves_the_index_when_rebuilt(three) -> None:
    config, cols = three
    assert cols.remove("guild-2") and not cols.remove("guild-2")
    report = rebuild(config, collections=["guild-2"])
    assert report.removed == ["guild-2:story.md"]
    engine = open_engine(config, auto_build=False)
    assert set(engine.collections()) == {"base", "guild-1"}


def test_forget_holds_and_meta(three) -> None:
    config, cols = three
    from index.ingest.web import article_path

    saved = article_path(cols.folder("guild-1"), "https://news.example/other")
    saved.parent.mkdir(parents=True)
    saved.write_text(ORCHIDS.replace("https://news.example/orchids", "https://news.example/other"), encoding="utf-8")
    assert cols.holds("guild-1", "https://news.example/other") and cols.articles("guild-1") == 2
    assert cols.forget("guild-1", "https://news.example/nothing") == []
    # The story saved under another name is found by the URL in its front matter.
    assert [p.name for p in cols.forget("guild-1", "https://news.example/valparaiso-bridge/")] == ["story.md"]
    assert cols.forget("guild-1", "https://news.example/other") == [saved]
    assert cols.articles("guild-1") == 0 and cols.forget("guild-9", "https://x.example/") == []
    cols.set_meta("guild-1", {"owner": "guild:1", "feeds": ["https://news.example/rss"]})
    assert cols.meta("guild-1")["feeds"] == ["https://news.example/rss"]
    assert [c.name for c in cols.describe_all()] == ["guild-1", "guild-2"]
    assert cols.describe("guild-1").meta["owner"] == "guild:1"
    (cols.folder("guild-2") / ".collection.json").write_text("{not json", encoding="utf-8")
    assert cols.meta("guild-2") == {}  # damaged metadata never fails a question


@pytest.mark.parametrize("name", ["", "Guild-1", "../x", "a/b", "-x", "x" * 65, "base"])
def test_bad_collection_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(CollectionError):
        Collections(tmp_path).folder(name)
    if name != "base":
        with pytest.raises(CollectionError):
            check_name(name)


def test_a_link_in_place_of_a_collection_is_unlinked_not_followed(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.md").write_text("keep", encoding="utf-8")
    root = tmp_path / "collections"
    root.mkdir()
    (root / "guild-5").symlink_to(precious, target_is_directory=True)
    assert Collections(root).names() == []  # a link is not a collection
    assert Collections(root).remove("guild-5")
    assert (precious / "keep.md").exists()


def test_without_a_collections_folder_everything_is_base(article_corpus, fake_embedder) -> None:
    config = EngineConfig(corpus=article_corpus.corpus, index_dir=article_corpus.index, model=fake_embedder.name)
    engine = open_engine(config)
    assert engine.collections() == {"base": 1}
    assert engine.ask("Who vetoed the resolution?", collections=["base"]).answer == \
        engine.ask("Who vetoed the resolution?").answer
    shutil.rmtree(article_corpus.index)


def test_a_collection_without_a_usable_article_adds_nothing(three) -> None:
    """A server folder holding only an empty file (or nothing yet) adds no document; it does not fail the
    build for everyone (it did: "no articles found in collections/guild-3")."""
    config, cols = three
    cols.folder("guild-3").mkdir()
    (cols.folder("guild-3") / "empty.md").write_text("", encoding="utf-8")
    cols.folder("guild-4").mkdir()
    rebuild(config)  # an update reads only what changed
    report = rebuild(config, full=True)  # a full build reads every folder
    assert report.documents == 3 and set(open_engine(config, auto_build=False).collections()) == \
        {"base", "guild-1", "guild-2"}
