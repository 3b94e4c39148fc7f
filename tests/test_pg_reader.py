"""PostgresReader (index/pg/reader.py, issue 19) against the folder index it was copied from, on a real
PostgreSQL with pgvector (pgserver, as tests/test_pg.py): every record, both searches, the word weights and
the near-duplicate groups are the folder index's, an engine over it answers every question of the article
set exactly as the folder one (with and without collection filters, from several threads), a change another
connection writes is seen at the next question, and the HNSW path is taken only above ``hnsw_above``."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pgserver", reason="the PostgreSQL tests need pgserver (make test installs it)")
pytest.importorskip("psycopg", reason="the PostgreSQL tests need herald[postgres] (make test installs it)")

from test_collections import BRIDGE, ORCHIDS  # noqa: E402
from test_pg import _everything  # noqa: E402
from test_reader import QUESTIONS  # noqa: E402

from index import Engine, EngineConfig, open_engine, rebuild  # noqa: E402
from index.evaluate import load_qa  # noqa: E402
from index.pg.db import Database  # noqa: E402
from index.pg.reader import PostgresReader  # noqa: E402
from index.pg.schema import connect, migrate  # noqa: E402
from index.pg.writer import PostgresWriter  # noqa: E402
from index.search.lexical import searched_title  # noqa: E402
from index.search.reader import FolderReader  # noqa: E402
from index.store.writer import IndexChange  # noqa: E402
from index.text import content_terms  # noqa: E402

QA = [item.question for item in load_qa(Path(__file__).parent / "data" / "article_qa.jsonl")]
SCOPES = [None, ("base",), ("base", "guild-1"), ("guild-2",)]
# The bridge story again from another outlet (a wire copy): the same text, so one near-duplicate group.
WIRE_COPY = BRIDGE.replace("outlet: Coast Gazette", "outlet: Pacific Wire").replace("valparaiso-bridge", "wire/bridge")
LIGHTHOUSE = """---
title: Lighthouse keeper retires after forty years
url: https://news.example/lighthouse
---
Marta Quiroga, the last keeper of the Punta Angeles lighthouse, retired on Friday after forty years of service.

The lighthouse will be run automatically from the port authority's control room from next month.
"""


class Pair:
    """The folder index and the same index copied into a database, with the maps between their ids."""

    def __init__(self, config: EngineConfig, url: str, embedder) -> None:
        self.config, self.url, self.embedder = config, url, embedder
        self.folder = open_engine(config, auto_build=False)
        assert isinstance(self.folder.reader, FolderReader)
        self.index = self.folder.index
        conn = connect(url)
        migrate(conn, self.index.dim)
        PostgresWriter(conn).apply(_everything(self.index))
        self.db = Database(url)
        self.reader = PostgresReader(self.db)
        self.engine = Engine(self.reader, embedder, self.folder.settings)
        spans = "SELECT doc_id, start_at, end_at, id FROM {}"
        by_span = {(d, a, b): int(i) for d, a, b, i in conn.execute(spans.format("chunks"))}
        self.chunk = {r: by_span[(c.doc_id, c.start, c.end)] for r, c in enumerate(self.index.chunks)}
        by_span = {(d, a, b): int(i) for d, a, b, i in conn.execute(spans.format("sentences"))}
        self.sid = {s: by_span[span] for s, span in enumerate(self.index.sentence_doc)}
        conn.close()

    def rows(self, scope):
        """The same filter for both readers: (folder rows, database rows)."""
        return self.folder.reader.rows_of(scope), self.reader.rows_of(scope)

    def hits(self, hits) -> list[tuple[int, float]]:
        """Folder hits with the database's ids."""
        return [(self.chunk[r], s) for r, s in hits]


@pytest.fixture
def pair(database, article_corpus, fake_embedder):
    root = article_corpus.root / "collections"
    for name, file, text in (("guild-1", "story.md", BRIDGE), ("guild-2", "story.md", ORCHIDS),
                             ("guild-2", "wire.md", WIRE_COPY)):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / file).write_text(text, encoding="utf-8")
    config = EngineConfig(corpus=article_corpus.corpus, index_dir=article_corpus.index, model=fake_embedder.name,
                          collections_dir=root)
    rebuild(config)
    made = Pair(config, database, fake_embedder)
    yield made
    made.db.close()


def _vector(pair: Pair, question: str) -> np.ndarray:
    return pair.embedder.encode_queries([question])[0]


def _same_hits(got, want, what, tol: float = 1e-5) -> None:
    """The same hits with the same scores, best first. Two things are each implementation's own: which of
    several chunks tied at the last place are listed (FAISS keeps whichever its heap held, BM25Index whichever
    numpy's argpartition put first; the database the lowest ids) and the order of scores that differ only in
    float32 rounding (FAISS and pgvector sum a product in different orders)."""
    assert len(got) == len(want), what
    assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=tol, abs=tol), what
    last = want[-1][1] if want else 0.0
    margin = tol * max(1.0, abs(last))
    head = {i: s for i, s in got if s > last + margin}
    assert head == pytest.approx({i: s for i, s in want if s > last + margin}, rel=tol, abs=tol), what
    assert all(s > t or (s == t and i < j) for (i, s), (j, t) in zip(got, got[1:])), what  # equal scores by id


# ------------------------------------------------------------------------------------------- records


def test_every_record_is_the_folder_index_s(pair) -> None:
    folder, pg, index = pair.folder.reader, pair.reader, pair.index
    assert pg.count() == folder.count() == len(index.chunks)
    for r in range(folder.count()):
        row = pair.chunk[r]
        assert pg.chunk(row) == folder.chunk(r) and pg.chunk_id(row) == row
        assert pg.chunk_sentences(row) == [pair.sid[s] for s in folder.chunk_sentences(r)]
        assert pg.chunk_terms(row) == folder.chunk_terms(r)
    sids = list(range(len(index.sentence_text)))[::-1]  # asked in an order of their own
    assert np.array_equal(pg.sentence_vectors([pair.sid[s] for s in sids]), folder.sentence_vectors(sids))
    assert pg.sentence_vectors([]).shape == folder.sentence_vectors([]).shape
    for s in sids:
        sid = pair.sid[s]
        assert (pg.sentence_text(sid), pg.sentence_doc(sid), pg.sentence_terms(sid)) == \
            (folder.sentence_text(s), folder.sentence_doc(s), folder.sentence_terms(s))
    for d in index.documents:
        assert pg.document(d.id) == folder.document(d.id)
        assert list(pg.document_sentences(d.id)) == [pair.sid[s] for s in folder.document_sentences(d.id)]
        assert pg.duplicate_of(d.id) == folder.duplicate_of(d.id)
    assert pg.document("nowhere.md") is None
    assert [(d.id, d.title, d.collection, d.url, d.meta, d.fingerprint) for d in pg.documents()] == \
        [(d.id, d.title, d.collection, d.url, d.meta, d.fingerprint) for d in folder.documents()]
    assert pg.chunk_counts() == folder.chunk_counts()
    assert pg.manifest["dim"] == index.dim


def test_near_duplicates_are_grouped_from_the_stored_simhashes(pair) -> None:
    """The wire copy joins the bridge story's group (the first in index order leads), as in the folder index."""
    groups = {d.id: pair.reader.duplicate_of(d.id) for d in pair.index.documents}
    assert groups["guild-2:wire.md"] == groups["guild-1:story.md"] == "guild-1:story.md"
    assert groups == {d.id: pair.folder.reader.duplicate_of(d.id) for d in pair.index.documents}


def test_a_simhash_stored_negative_groups_as_the_unsigned_hash(pair) -> None:
    """A hash with its top bit set is stored as a negative bigint; grouping reads it back unsigned."""
    from index.ingest.corpus import Document
    from index.ingest.dedup import simhash
    from index.store.writer import DocumentUpdate

    words = "harbour orchid festival bridge keeper lighthouse veto council minister repairs parade cables".split()
    text = next(t for t in (f"The {w} story was told again." for w in words) if simhash(t) >> 63)
    empty = np.zeros((0, pair.index.dim), np.float32)
    docs = [Document("guild-1:keeper.md", "Keeper", text, collection="guild-1"),
            Document("guild-2:keeper.md", "Keeper (wire)", text, collection="guild-2")]
    conn = connect(pair.url)
    PostgresWriter(conn).apply(IndexChange([], [DocumentUpdate(d, [], [], empty, empty) for d in docs]))
    assert conn.execute("SELECT simhash FROM documents WHERE id = 'guild-2:keeper.md'").fetchone()[0] < 0
    pair.reader.rows_of(None)  # the next question sees the change
    assert pair.reader.duplicate_of("guild-2:keeper.md") == "guild-1:keeper.md"
    assert pair.reader.duplicate_of("guild-2:wire.md") == "guild-1:story.md"


# ------------------------------------------------------------------------------------------ searches


def test_dense_top_is_faiss_s(pair) -> None:
    folder, pg = pair.folder.reader, pair.reader
    every = np.arange(folder.count())
    picked = every[::3]  # a filter that rows_of did not make: sent as ids
    for q in QA[::4] + QUESTIONS:
        v = _vector(pair, q)
        for scope in SCOPES:
            f_rows, p_rows = pair.rows(scope)
            for k in (1, 5, 40):
                _same_hits(pg.dense_top(v, k, p_rows), pair.hits(folder.dense_top(v, k, f_rows)), (q, scope, k))
        got = pg.dense_top(v, 7, np.asarray(sorted(pair.chunk[r] for r in picked)))
        _same_hits(got, pair.hits(folder.dense_top(v, 7, picked)), q)
        assert len(got) == 7 and {i for i, _ in got} <= {pair.chunk[r] for r in picked}
        exact = folder.dense_scores(v)
        assert exact is not None
        assert pg.dense_scores(v)([pair.chunk[r] for r in every]) == pytest.approx(exact(list(every)), abs=1e-6)


def test_lexical_top_is_bm25s_s(pair) -> None:
    """Same hits in the same order (ties by id, the zero-score chunks that fill a short list too) and the
    same scores, for the list and for chosen rows; with every row listed, the very same list."""
    folder, pg = pair.folder.reader, pair.reader
    every = list(range(folder.count()))
    asked = [content_terms(q) for q in QA + QUESTIONS]
    asked += [["veto", "veto", "resolut"], ["orchid"], ["zzyzx"], ["bridg", "zzyzx", "cost"]]
    for terms in asked:
        for scope in SCOPES:
            f_rows, p_rows = pair.rows(scope)
            for k in (3, 40):
                (f_hits, f_of), (p_hits, p_of) = folder.lexical_top(terms, k, f_rows), pg.lexical_top(terms, k, p_rows)
                _same_hits(p_hits, pair.hits(f_hits), (terms, scope, k), tol=1e-6)
                assert p_of([pair.chunk[r] for r in every]) == pytest.approx(f_of(every), rel=1e-6), (terms, scope)
        got, want = pg.lexical_top(terms, 40)[0], pair.hits(folder.lexical_top(terms, 40)[0])
        assert got == want, terms  # 40 > every chunk: no tie is cut, and the scores are bm25s's to the bit
    assert any(s == 0 for _, s in pg.lexical_top(["orchid"], 40)[0])  # the fill was checked


def test_bm25_pruned_by_maxscore_is_still_bm25s(pair, monkeypatch) -> None:
    """With a postings budget of one, MaxScore scores only each question's rarest word in full and fetches
    the other words' counts for the chunks that can still reach the top k: the same hits and scores."""
    pruned = PostgresReader(pair.db, {"bm25_postings": 1})
    folder, took = pair.folder.reader, []
    real = PostgresReader._maxscore

    def counted(self, *args):
        out = real(self, *args)
        took.append(out is not None)
        return out

    monkeypatch.setattr(PostgresReader, "_maxscore", counted)
    asked = [content_terms(q) for q in QA + QUESTIONS]
    idf = folder.idf
    # Each question again with its rarest word said three times: its weight then dwarfs the common words'.
    asked += [t + 2 * [max(t, key=lambda w: idf.get(w, 0.0))] for t in asked if len(t) > 2]
    for terms in asked:
        for scope in SCOPES:
            f_rows, p_rows = folder.rows_of(scope), pruned.rows_of(scope)
            for k in (1, 3, 10):
                _same_hits(pruned.lexical_top(terms, k, p_rows)[0], pair.hits(folder.lexical_top(terms, k, f_rows)[0]),
                           (terms, scope, k), tol=1e-6)
    assert sum(took) >= 20 and not all(took)  # it pruned often, and fell back to the full query where it could not


def test_word_weights_are_the_folder_index_s(pair) -> None:
    """Text-only document frequencies: a word only a title holds is no word of the corpus for coverage."""
    folder, pg = pair.folder.reader, pair.reader
    title_only = {t for c in pair.index.chunks for t in content_terms(searched_title(c))} - set(folder.idf)
    assert title_only, "the corpus should have a word only its titles use"
    for t in sorted(title_only) + ["zzyzx"]:
        assert t not in pg.idf and pg.idf.get(t) is None
    for t, w in folder.idf.items():
        assert t in pg.idf and pg.idf[t] == pytest.approx(w, rel=1e-12)
    assert dict(pg.idf) == pytest.approx(dict(folder.idf), rel=1e-12) and len(pg.idf) == len(folder.idf)
    assert pg.idf_unknown == pytest.approx(folder.idf_unknown, rel=1e-12)


def test_the_hnsw_index_is_walked_only_above_hnsw_above(pair) -> None:
    walker = PostgresReader(pair.db, {"hnsw_above": 0})
    filtered = pair.reader.rows_of(("guild-2",))
    for q in QUESTIONS:
        v = _vector(pair, q)
        _same_hits(walker.dense_top(v, 10), pair.reader.dense_top(v, 10), q)  # a small graph: all found
    v = _vector(pair, QUESTIONS[0])
    assert "chunks_embedding" in walker.dense_plan(v, 10)
    assert "chunks_embedding" not in pair.reader.dense_plan(v, 10)  # at most hnsw_above chunks: exact
    assert "chunks_embedding" not in walker.dense_plan(v, 10, filtered)  # a filter: exact, whatever the size


# ----------------------------------------------------------------------------------------- answering


def _same_answer(pair: Pair, a, b, what) -> None:
    assert (a.answer, a.abstained, a.answer_spans) == (b.answer, b.abstained, b.answer_spans), what
    assert a.confidence == pytest.approx(b.confidence, abs=1e-6), what
    assert [(s.doc_id, s.start, s.end, pair.chunk[s.chunk_id], s.collection, s.also_reported_by) for s in a.sources] \
        == [(s.doc_id, s.start, s.end, s.chunk_id, s.collection, s.also_reported_by) for s in b.sources], what


@pytest.mark.parametrize("scope", SCOPES)
def test_an_engine_over_the_database_answers_as_the_folder_index(pair, scope) -> None:
    for q in QA + QUESTIONS:
        _same_answer(pair, pair.folder.ask(q, list_sources=5, collections=scope),
                     pair.engine.ask(q, list_sources=5, collections=scope), (q, scope))
    assert pair.folder.documents() == pair.engine.documents()
    assert pair.folder.collections() == pair.engine.collections() and pair.folder.passages == pair.engine.passages


def test_threads_asking_at_once_get_the_answers_one_thread_gets(pair) -> None:
    asked = [(q, scope) for q in QA[::3] for scope in (None, ("guild-2",))]
    alone = [pair.folder.ask(q, collections=scope) for q, scope in asked]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda a: pair.engine.ask(a[0], collections=a[1]), asked))
    for a, b, what in zip(alone, together, asked):
        _same_answer(pair, a, b, what)


def test_a_change_written_by_another_connection_is_seen_at_the_next_question(pair) -> None:
    """The reader answers, another writer changes one story, removes one and adds one; the same engine's next
    questions answer from the new index, as a folder index rebuilt from the same files does."""
    bridge, orchids, lighthouse = ("How much did the repairs cost?",
                                   "How many visitors came to the orchid festival?",
                                   "When did the lighthouse keeper retire?")
    guild = ("guild-1",)  # the wire copy in guild-2 keeps the old figure
    assert "92 million" in pair.engine.ask(bridge, collections=guild).answer
    assert "guild-2:story.md" in {s.doc_id for s in pair.engine.ask(orchids).sources}
    root = Path(pair.config.collections_dir)
    (root / "guild-1" / "story.md").write_text(BRIDGE.replace("92 million", "95 million"), encoding="utf-8")
    (root / "guild-2" / "story.md").unlink()
    (root / "guild-1" / "lighthouse.md").write_text(LIGHTHOUSE, encoding="utf-8")
    rebuild(pair.config)
    after = open_engine(pair.config, auto_build=False)
    changed = {"guild-1:story.md", "guild-1:lighthouse.md"}
    everything = _everything(after.index)
    PostgresWriter(connect(pair.url)).apply(IndexChange(everything.order, [u for u in everything.upserts
                                                                          if u.doc.id in changed],
                                                        removed=["guild-2:story.md"]))
    assert "95 million" in pair.engine.ask(bridge, collections=guild).answer
    assert "guild-2:story.md" not in {s.doc_id for s in pair.engine.ask(orchids).sources}
    assert pair.engine.ask(lighthouse).sources[0].doc_id == "guild-1:lighthouse.md"
    # (in another order: the database moves a changed document to the end, a folder build keeps the files' order)
    assert sorted(d.id for d in pair.engine.documents()) == sorted(d.id for d in after.documents())
    assert pair.engine.passages == after.passages
    fresh = Engine(PostgresReader(pair.db), pair.embedder, pair.folder.settings)  # opened after the change
    for q, scope in ((bridge, guild), (bridge, None), (orchids, None), (lighthouse, None), (lighthouse, guild)):
        a, b = fresh.ask(q, list_sources=5, collections=scope), pair.engine.ask(q, list_sources=5, collections=scope)
        assert (a.answer, a.abstained, a.answer_spans) == (b.answer, b.abstained, b.answer_spans), q
        assert a.confidence == pytest.approx(b.confidence, abs=1e-9), q
        assert [(s.doc_id, s.start, s.end, s.chunk_id, s.also_reported_by) for s in a.sources] == \
            [(s.doc_id, s.start, s.end, s.chunk_id, s.also_reported_by) for s in b.sources], q



def test_a_question_in_flight_keeps_the_index_it_started_with(pair) -> None:
    """A write (and another thread's next question) in the middle of a question: this thread still reads the
    counts its question started with and the records of its candidates (fetched with them), while the other
    thread reads the new index."""
    reader, v = pair.reader, _vector(pair, "How many visitors came to the orchid festival?")
    reader.rows_of(None)  # this thread's question starts
    hits = reader.dense_top(v, 40)
    removed = [i for i, _ in hits if reader.chunk(i).doc_id == "guild-2:story.md"]
    before = reader.count()
    PostgresWriter(connect(pair.url)).apply(IndexChange([], [], removed=["guild-2:story.md"]))
    with ThreadPoolExecutor(1) as other:
        assert other.submit(lambda: (reader.rows_of(None), reader.count())[1]).result() == before - len(removed)
    assert removed and reader.count() == before
    assert all(reader.chunk(i).doc_id == "guild-2:story.md" for i in removed)
    reader.rows_of(None)  # this thread's next question
    assert reader.count() == before - len(removed) and reader.document("guild-2:story.md") is None


def test_a_filter_made_before_a_write_keeps_to_its_rows(pair) -> None:
    """rows_of's filter goes to the database as its collections (not thousands of ids), bounded by its last id,
    so chunks written into those collections since are not listed until the next question's filter."""
    from index.ingest.chunking import chunk_document
    from index.ingest.corpus import Document
    from index.store.writer import DocumentUpdate

    reader, guild = pair.reader, ("guild-1",)
    rows = reader.rows_of(guild)
    doc = Document("guild-1:lighthouse.md", "Lighthouse keeper retires", LIGHTHOUSE.split("---")[2].strip(),
                   collection="guild-1")
    chunks = chunk_document(doc)
    spans = sorted({s for c in chunks for s in c.sentences})
    vectors = pair.embedder.encode([c.text for c in chunks]), pair.embedder.encode([doc.text[a:b] for a, b in spans])
    PostgresWriter(connect(pair.url)).apply(IndexChange([], [DocumentUpdate(doc, chunks, spans, *vectors)]))
    v, terms = _vector(pair, "lighthouse keeper"), ["lighthous", "keeper"]
    assert "collection" in reader.dense_plan(v, 40, rows) and "collection" not in reader.dense_plan(v, 40, rows.copy())
    assert {i for i, _ in reader.dense_top(v, 40, rows)} == set(rows.tolist())
    assert {i for i, _ in reader.lexical_top(terms, 40, rows)[0]} == set(rows.tolist())
    rows = reader.rows_of(guild)  # the next question
    assert reader.chunk(reader.dense_top(v, 1, rows)[0][0]).doc_id == doc.id
    assert reader.chunk(reader.lexical_top(terms, 1, rows)[0][0][0]).doc_id == doc.id

def test_after_a_change_a_question_with_an_unknown_word_is_weighed_as_by_a_fresh_engine(pair) -> None:
    """The weight of a word the corpus never uses follows the number of chunks; the reader's does (checked
    here), and the engine's Retriever reads it at each use (it once copied it at construction, so its confidence
    for a question mixing known and unknown words drifted from a freshly opened engine's)."""
    q = "What did Lavrov say about the Peru bridge?"
    before = pair.reader.idf_unknown
    pair.engine.ask(q)
    PostgresWriter(connect(pair.url)).apply(IndexChange([], [], removed=["guild-2:story.md"]))
    pair.engine.ask("Who vetoed the resolution?")  # the next question: the reader sees the change
    fresh = Engine(PostgresReader(pair.db), pair.embedder, pair.folder.settings)
    assert pair.reader.idf_unknown == fresh.reader.idf_unknown != before
    assert pair.engine.ask(q).confidence == pytest.approx(fresh.ask(q).confidence, abs=1e-9)
