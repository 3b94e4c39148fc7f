"""PostgreSQL's reading half of the index seam (index/search/reader.py's IndexReader, issue 19): what answering
reads, fetched by id from the tables index/pg/writer.py fills and cached, so a bot that answers from the
database behaves exactly like one that answers from the folder index.

Rows are chunk ids, sids sentence ids (both never reused, so a record fetched for an id stays right). Another
process may write at any time: every change bumps ``generation`` in ``herald_meta``, and ``rows_of`` (called
at the start of every question) reads it, one small query, and drops everything cached when it moved.
A question keeps the cache it started with (per thread), so a write in the middle of it neither mixes two
states nor loses the records its candidates were fetched with.

The dense search scans every vector up to ``hnsw_above`` chunks (10,000; FAISS's flat index goes to 50,000)
and under a collection filter (pgvector applies a filter after its graph walk and so loses rows), and walks
the HNSW index with FAISS's efSearch rule above. BM25 is computed in SQL from the stored term frequencies,
then its best candidates re-scored in Python exactly as bm25s scores them (float32), so its list, order and
scores are the folder index's.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from index.errors import DatabaseError
from index.ingest.chunking import Chunk
from index.ingest.corpus import Document
from index.ingest.dedup import groups
from index.pg.db import Database
from index.search.lexical import searched_title
from index.search.reader import Hits, IndexReader, Scores
from index.store.vectors import auto_ef_search
from index.text import content_terms

_K1, _B = 1.2, 0.75  # BM25Index's (bm25s's "lucene" variant)
#: SQL ranks BM25 in float64 and bm25s in float32: every candidate within this share of the k-th SQL score
#: is re-scored as bm25s does, so near-ties at the cut fall on the same side as in the folder index.
_MARGIN = 1e-5
_EF_MAX = 1000  # pgvector's largest hnsw.ef_search
#: Cached records per generation before they are dropped (a long-lived bot over a large index stays bounded).
_MAX_CHUNKS, _MAX_SENTENCES, _MAX_DOCUMENTS, _MAX_TERMS = 50_000, 200_000, 5_000, 200_000

_CHUNK_SQL = ("SELECT id, doc_id, collection, body, title, start_at, end_at, url, sentence_ids, terms, embedding "
              "FROM chunks WHERE id = ANY(%s)")
_DOC_COLUMNS = "id, title, body, path, url, date, fingerprint, meta, collection"
_DOC_SQL = f"SELECT {_DOC_COLUMNS}, first_sentence, sentences FROM documents WHERE {{}}"
# Distinct collections by skipping along chunks_collection (a handful of index probes, not a scan).
_COLLECTIONS_SQL = """WITH RECURSIVE names(c) AS (
    SELECT min(collection) FROM chunks
    UNION ALL
    SELECT (SELECT min(collection) FROM chunks WHERE collection > names.c) FROM names WHERE names.c IS NOT NULL)
SELECT c FROM names WHERE c IS NOT NULL"""
# One chunk's BM25 in SQL (float64): each query word's weight times its saturated, length-normalised count.
_SCORE = f"sum(q.w * t.tf / (t.tf + {_K1} * ({1 - _B} + {_B} * t.dl / %(avgdl)s)))"
# BM25 of every chunk holding a query word, from those words' rows alone (chunk_terms repeats each
# chunk's length and collection, and its primary key includes them: an index-only scan); the chunks scoring
# (nearly) the k-th best or more come back with their words' counts, for the exact re-score.
_BM25_SQL = f"""WITH q(term, w) AS (SELECT * FROM unnest(%(terms)s::text[], %(weights)s::float8[])),
scored AS (
    SELECT t.chunk_id AS id, t.dl AS dl, {_SCORE} AS score
    FROM q JOIN chunk_terms t ON t.term = q.term WHERE {{where}} GROUP BY t.chunk_id, t.dl),
cut AS (SELECT score FROM scored ORDER BY score DESC LIMIT 1 OFFSET %(last)s),
kept AS (SELECT id, dl FROM scored WHERE score >= coalesce((SELECT score FROM cut), 0) * %(keep)s)
SELECT kept.id, kept.dl, array_agg(t.term), array_agg(t.tf) FROM kept JOIN chunk_terms t ON t.chunk_id = kept.id
WHERE t.term = ANY(%(terms)s) GROUP BY kept.id, kept.dl"""

# Partial BM25 over the rare words only, for every chunk holding one (MaxScore's first step).
_BM25_PARTIAL_SQL = f"""WITH q(term, w) AS (SELECT * FROM unnest(%(terms)s::text[], %(weights)s::float8[]))
SELECT t.chunk_id, t.dl, array_agg(t.term), array_agg(t.tf), {_SCORE}
FROM q JOIN chunk_terms t ON t.term = q.term WHERE {{where}} GROUP BY t.chunk_id, t.dl"""

T = TypeVar("T")
HNSW_ABOVE = 10_000


@dataclass
class _ChunkRecord:
    chunk: Chunk
    sids: list[int]
    terms: int  # BM25's document length (title and text words)
    vector: np.ndarray
    termset: frozenset[str] | None = None  # text-only content words, on first use
    counts: Counter | None = None  # title and text words, for BM25 of chosen rows


@dataclass
class _SentenceRecord:
    doc_id: str
    start: int
    end: int
    vector: np.ndarray
    text: str | None = None  # cut from its chunk when fetched with one, else from the document on first use
    terms: frozenset[str] | None = None


@dataclass
class _DocumentRecord:
    doc: Document | None  # None: not in the index (removed)
    first_sentence: int = 0
    sentences: int = 0


@dataclass
class _State:
    """Everything cached for one generation of the index; replaced whole when the generation moves."""

    generation: int
    n: int  # chunks
    avgdl: float  # BM25's average document length over every chunk
    dim: int
    chunks: dict[int, _ChunkRecord] = field(default_factory=dict)
    sentences: dict[int, _SentenceRecord] = field(default_factory=dict)
    documents: dict[str, _DocumentRecord] = field(default_factory=dict)
    df: dict[str, tuple[int, int]] = field(default_factory=dict)  # term: (chunks with it, with it in their text)
    text_terms: list[str] | None = None  # every word some chunk's text holds (only when the idf is listed)
    listing: list[Document] | None = None
    duplicates: dict[str, str] | None = None
    counts: dict[str, int] | None = None
    collections: frozenset[str] | None = None
    rows: dict[frozenset[str], np.ndarray] = field(default_factory=dict)
    filters: dict[int, tuple[np.ndarray, list[str]]] = field(default_factory=dict)  # id(rows): rows, collections


class PostgresReader(IndexReader):
    """The index in a database (``db``: index.pg.db.Database), read through a cache that follows its writes.

    ``options``: ``hnsw_above`` (chunks above which the dense search walks the HNSW index; 10,000, see
    ``__init__``) and ``ef_search`` (the walk's width; None: index.store.vectors.auto_ef_search).
    ``documents()`` lists every document with an empty ``text`` (the listing needs titles, not bodies);
    ``document(doc_id)`` has the body."""

    def __init__(self, db: Database, options: dict | None = None) -> None:
        self.db = db
        self.options = dict(options or {})
        # Exact up to 10,000 chunks (FAISS: 50,000): PostgreSQL's exact scan costs about 2 ms per 1,000 chunks
        # here against FAISS's 0.1 ms, and the HNSW index's recall@10 at 19k is 0.99 (docs/scale.md).
        self.hnsw_above = int(self.options.get("hnsw_above", HNSW_ABOVE))
        ef = self.options.get("ef_search")
        self.ef_search = None if ef is None else int(ef)
        self.manifest: dict = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # the state this thread's question started with
        self._idf = _Idf(self)
        self._state = self._load_state()

    # -------------------------------------------------------------------------------- generations

    def _load_state(self) -> _State:
        """A new, empty cache for the index as it is now (herald_meta read in one statement: one snapshot)."""
        with self.db.connection() as conn:
            meta = dict(conn.execute("SELECT key, value FROM herald_meta").fetchall())
        generation, about, dim = meta.get("generation"), meta.get("about"), meta.get("dim")
        n, total = int(meta.get("chunk_count", 0)), int(meta.get("total_terms", 0))  # kept by the writer
        manifest = json.loads(about) if about else {}
        if dim is not None:
            manifest.setdefault("dim", int(dim))
        self.manifest = manifest
        # bm25s's average: the mean of the lengths (a float64 sum of integers, exact, over their count).
        return _State(int(generation or 0), int(n), int(total) / int(n) if n else 1.0, int(dim or 0))

    def _fresh(self) -> _State:
        """The cache for the index's current generation (dropping the old one when another process wrote),
        made this thread's until its next question."""
        with self.db.connection() as conn:
            found = conn.execute("SELECT value FROM herald_meta WHERE key = 'generation'").fetchone()
        generation = int(found[0]) if found else 0
        state = self._state
        if generation != state.generation:
            state = self._load_state()
            with self._lock:
                if state.generation >= self._state.generation:
                    self._state = state
                state = self._state
        self._local.state = state
        return state

    def _st(self) -> _State:
        return getattr(self._local, "state", None) or self._state

    @property
    def generation(self) -> int:
        """The index generation this thread's last question read (how fresh its answers are: benchmarks and
        logs compare it with the writer's)."""
        return self._st().generation

    def _changed(self, what: str) -> DatabaseError:
        """A record a question needed was removed by a write made while it was being answered."""
        return DatabaseError("changed", self.db.where, f"{what} removed while answering")

    def _all(self, records: list[T | None], ids: Sequence, kind: str) -> list[T]:
        """The records, each one there (else the typed error: see ``_changed``)."""
        out: list[T] = []
        for rec, i in zip(records, ids):
            if rec is None:
                raise self._changed(f"{kind} {i}")
            out.append(rec)
        return out

    def count(self) -> int:
        return self._st().n

    def rows_of(self, collections: Iterable[str] | None) -> np.ndarray | None:
        state = self._fresh()  # the start of every question: where the generation is read
        if collections is None:
            return None
        wanted = frozenset(collections)
        if wanted >= self._collections(state):
            return None
        with self._lock:
            rows = state.rows.get(wanted)
        if rows is None:
            names = sorted(wanted)
            with self.db.connection() as conn:
                found = conn.execute("SELECT id FROM chunks WHERE collection = ANY(%s) ORDER BY id", (names,))
                rows = np.fromiter((r[0] for r in found), dtype=np.int64)
            with self._lock:
                if len(state.rows) >= 256:  # many servers: keep the memory bounded
                    state.rows.clear()
                    state.filters.clear()
                state.rows[wanted], state.filters[id(rows)] = rows, (rows, names)
        return rows

    def _collections(self, state: _State) -> frozenset[str]:
        if state.collections is None:
            with self.db.connection() as conn:
                state.collections = frozenset(r[0] for r in conn.execute(_COLLECTIONS_SQL))
        return state.collections

    def _where(self, state: _State, rows: np.ndarray | None, chunk_id: str = "c.id") -> tuple[str, dict]:
        """SQL limiting the chunks to ``rows``: by collection when ``rows_of`` made them (and below the last
        id, so chunks written since are left out, as they are from ``rows``), else by the ids themselves.
        ``chunk_id``: the column holding the chunk's id (its table's alias also names its collection)."""
        if rows is None:
            return "TRUE", {}
        with self._lock:
            made = state.filters.get(id(rows))
        if made is not None and made[0] is rows and len(rows):
            table = chunk_id.split(".")[0]
            return (f"{table}.collection = ANY(%(names)s) AND {chunk_id} <= %(last_id)s",
                    {"names": made[1], "last_id": int(rows[-1])})
        return f"{chunk_id} = ANY(%(ids)s)", {"ids": np.asarray(rows, dtype=np.int64).tolist()}

    # ------------------------------------------------------------------------------ dense search

    def dense_top(self, vector: np.ndarray, k: int, rows: np.ndarray | None = None) -> Hits:
        state = self._st()
        with self.db.connection() as conn, conn.transaction():
            found = self._dense(conn, state, vector, k, rows).fetchall()
        hits = sorted(((int(i), -float(d)) for i, d in found), key=lambda h: (-h[1], h[0]))
        return self._kept(state, hits)

    def dense_plan(self, vector: np.ndarray, k: int, rows: np.ndarray | None = None) -> str:
        """PostgreSQL's plan for the query ``dense_top`` runs (whether it walks the HNSW index or scans)."""
        state = self._st()
        with self.db.connection() as conn, conn.transaction():
            return "\n".join(r[0] for r in self._dense(conn, state, vector, k, rows, explain=True))

    def _dense(self, conn: Any, state: _State, vector: np.ndarray, k: int, rows: np.ndarray | None,
               explain: bool = False) -> Any:
        """Run the dense query inside the caller's transaction: exact (``+ 0`` keeps the planner off the HNSW
        index, so every vector is compared, as FaissStore's flat index does) under a filter or up to
        ``hnsw_above`` chunks, else the HNSW walk with FaissStore's efSearch (at least ``k``, as FAISS)."""
        n = state.n if rows is None else len(rows)
        k = max(0, min(int(k), n))
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        where, params = self._where(state, rows)
        head = "EXPLAIN " if explain else ""
        params.update(q=q, k=k)
        if rows is not None or n <= self.hnsw_above:
            return conn.execute(f"{head}SELECT c.id, c.embedding <#> %(q)s FROM chunks c WHERE {where} "
                                "ORDER BY (c.embedding <#> %(q)s) + 0, c.id LIMIT %(k)s", params)
        ef = min(_EF_MAX, max(self.ef_search if self.ef_search is not None else auto_ef_search(n), k))
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true), set_config('enable_seqscan', 'off', true)",
                     (str(ef),))
        return conn.execute(f"{head}SELECT c.id, c.embedding <#> %(q)s FROM chunks c "
                            "ORDER BY c.embedding <#> %(q)s LIMIT %(k)s", params)

    def dense_scores(self, vector: np.ndarray) -> Scores | None:
        def scores(rows: Sequence[int]) -> np.ndarray:
            if not len(rows):
                return np.zeros(0, dtype=np.float64)
            records = self._chunk_records(self._st(), rows)
            return np.vstack([r.vector for r in records]).astype(np.float64) @ np.asarray(vector, dtype=np.float64)

        return scores

    def _kept(self, state: _State, hits: Hits) -> Hits:
        """The hits whose records are fetched now (the engine reads them next), less any removed meanwhile."""
        self._fetch_chunks(state, [i for i, _ in hits])
        with self._lock:
            return [h for h in hits if h[0] in state.chunks]

    # ---------------------------------------------------------------------------------------- BM25

    def lexical_top(self, terms: list[str], k: int, rows: np.ndarray | None = None) -> tuple[Hits, Scores]:
        state = self._st()
        self._fetch_df(state, terms)
        n = state.n if rows is None else len(rows)
        k = max(0, min(int(k), n))
        known: dict[int, float] = {}
        if k and state.n:
            known = self._bm25_candidates(state, terms, k, rows)
        hits = sorted(known.items(), key=lambda h: (-h[1], h[0]))[:k]
        if len(hits) < k:  # as bm25s: every other chunk scores 0, and the first of them fill the list
            hits += [(i, 0.0) for i in self._unscored(state, set(known), k - len(hits), rows)]
        hits = self._kept(state, hits)
        known.update(hits)

        def scores(chosen: Sequence[int]) -> np.ndarray:
            missing = [r for r in chosen if r not in known]
            for rec, r in zip(self._chunk_records(state, missing), missing):
                known[r] = self._bm25_of(state, terms, self._counts(rec), rec.terms)
            return np.asarray([known[r] for r in chosen], dtype=np.float64)

        return hits, scores

    def _bm25_candidates(self, state: _State, terms: list[str], k: int, rows: np.ndarray | None) -> dict[int, float]:
        """Chunks whose SQL score reaches (nearly) the k-th best, with their exact bm25s scores."""
        use = Counter(t for t in terms if state.df.get(t, (0, 0))[0])
        if not use:
            return {}
        where, params = self._where(state, rows, chunk_id="t.chunk_id")  # chunk_terms t
        params.update(terms=list(use), weights=[c * self._bm25_idf(state, t) for t, c in use.items()],
                      avgdl=state.avgdl, last=k - 1, keep=1 - _MARGIN)
        pruned = self._maxscore(state, terms, use, k, where, dict(params))
        if pruned is not None:
            return pruned
        with self.db.connection() as conn:
            found = conn.execute(_BM25_SQL.format(where=where), params).fetchall()
        return {int(i): self._bm25_of(state, terms, dict(zip(words, tfs)), dl) for i, dl, words, tfs in found}

    def _maxscore(self, state: _State, terms: list[str], use: Counter, k: int, where: str,
                  params: dict) -> dict[int, float] | None:
        """BM25's top k without reading the common words' rows (MaxScore, exact): score every chunk holding one
        of the rare words; a chunk holding none of them scores below the sum of the common words' weights (a
        word adds less than its weight), so when that sum is below the k-th best partial score, only the
        candidates that can still reach it need their common words' counts, fetched by (word, chunk). None
        when that does not prune (the full query is then no dearer)."""
        weight = dict(zip(params["terms"], params["weights"]))
        order = sorted(use, key=lambda t: state.df[t][0])
        budget, posted = int(self.options.get("bm25_postings", 20_000)), 0
        rare: list[str] = []
        for t in order:
            if rare and posted + state.df[t][0] > budget:
                break
            rare.append(t)
            posted += state.df[t][0]
        common = [t for t in order if t not in rare]
        bound = sum(weight[t] for t in common)
        if not common:
            return None
        params.update(terms=rare, weights=[weight[t] for t in rare])
        with self.db.connection() as conn:
            found = conn.execute(_BM25_PARTIAL_SQL.format(where=where), params).fetchall()
            partial = sorted((float(r[4]) for r in found), reverse=True)
            theta = partial[k - 1] if len(partial) >= k else 0.0
            if bound >= theta * (1 - _MARGIN):
                return None
            alive = {int(r[0]): r for r in found if float(r[4]) + bound >= theta * (1 - _MARGIN)}
            extra = conn.execute("SELECT chunk_id, term, tf FROM chunk_terms WHERE term = ANY(%s) AND "
                                 "chunk_id = ANY(%s)", (common, list(alive))).fetchall()
        counts = {i: dict(zip(r[2], r[3])) for i, r in alive.items()}
        for i, term, tf in extra:
            counts[int(i)][term] = int(tf)
        exact = {i: self._bm25_of(state, terms, counts[i], int(alive[i][1])) for i in alive}
        kth = sorted(exact.values(), reverse=True)[k - 1] if len(exact) >= k else 0.0
        return {i: v for i, v in exact.items() if v >= kth * (1 - _MARGIN)}

    def _unscored(self, state: _State, skip: set[int], m: int, rows: np.ndarray | None) -> list[int]:
        """The first ``m`` chunks (by id, of ``rows`` when given) not in ``skip``."""
        if rows is not None:
            return list(itertools.islice((int(r) for r in rows if int(r) not in skip), m))
        with self.db.connection() as conn:
            found = conn.execute("SELECT id FROM chunks WHERE id <> ALL(%s) ORDER BY id LIMIT %s", (sorted(skip), m))
            return [int(r[0]) for r in found]

    @staticmethod
    def _bm25_idf(state: _State, term: str) -> float:
        return _idf(state.n, state.df.get(term, (0, 0))[0])

    def _bm25_of(self, state: _State, terms: list[str], tfs: Mapping[str, int], dl: int) -> float:
        """One chunk's BM25 exactly as bm25s computes it: each word's score rounded to float32 (its idf a
        float32, its length part a float64), summed in float32 in the question's order, repeats included."""
        norm = _K1 * ((1 - _B) + _B * dl / np.float64(state.avgdl))
        total = np.float32(0.0)
        for t in terms:
            tf = tfs.get(t, 0)
            if tf and state.df.get(t, (0, 0))[0]:
                idf = float(np.float32(self._bm25_idf(state, t)))
                total = np.float32(total + np.float32(idf * (tf / (norm + tf))))
        return float(total)

    def _counts(self, rec: _ChunkRecord) -> Counter:
        if rec.counts is None:
            rec.counts = Counter(content_terms(searched_title(rec.chunk)) + content_terms(rec.chunk.text))
        return rec.counts

    def _fetch_df(self, state: _State, terms: Iterable[str]) -> None:
        """Document frequencies of these words (over title and text, and over text only) in one query."""
        with self._lock:
            missing = sorted({t for t in terms if t not in state.df})
        if not missing:
            return
        with self.db.connection() as conn:
            found = conn.execute("SELECT term, df, df_text FROM term_df WHERE term = ANY(%s) AND df > 0",
                                 (missing,)).fetchall()
        got = {t: (int(a), int(b)) for t, a, b in found}
        with self._lock:
            _bound(state.df, _MAX_TERMS)
            state.df.update({t: got.get(t, (0, 0)) for t in missing})

    # ------------------------------------------------------------------------------- word weights

    @property
    def idf(self) -> Mapping[str, float]:
        return self._idf

    @property
    def idf_unknown(self) -> float:
        return _idf(max(1, self._st().n), 0)

    def _text_idf(self, term: str) -> float:
        """BM25Index.idf's value: over chunk texts only (titles left out); KeyError for a word none holds."""
        state = self._st()
        if term not in state.df:
            self._fetch_df(state, [term])
        c = state.df[term][1]
        if not c:
            raise KeyError(term)
        return _idf(max(1, state.n), c)

    def _text_terms(self) -> list[str]:
        """Every word some chunk's text holds (listing the idf: tests and tools, never a question)."""
        state = self._st()
        if state.text_terms is None:
            with self.db.connection() as conn:
                found = conn.execute("SELECT term, df, df_text FROM term_df WHERE df_text > 0 ORDER BY term").fetchall()
            with self._lock:
                state.df.update({t: (int(every), int(text)) for t, every, text in found})
            state.text_terms = [t for t, _, _ in found]
        return state.text_terms

    # -------------------------------------------------------------------------------- chunk records

    def _fetch_chunks(self, state: _State, ids: Iterable[int]) -> None:
        """Fetch the records (and their sentences') of the chunks not cached yet: two queries for them all."""
        with self._lock:
            missing = [int(i) for i in dict.fromkeys(ids) if int(i) not in state.chunks]
        if not missing:
            return
        with self.db.connection() as conn:
            # Binary results: vectors arrive as float32 bytes (parsing their text form cost ~30 ms a question).
            chunks = conn.execute(_CHUNK_SQL, (missing,), binary=True).fetchall()
            sids = [int(s) for r in chunks for s in r[8]]
            sentences = {int(r[0]): r for r in conn.execute(
                "SELECT id, doc_id, start_at, end_at, embedding FROM sentences WHERE id = ANY(%s)", (sids,),
                binary=True)}
            with self._lock:
                docs = sorted({r[1] for r in chunks} - set(state.documents))
            # The candidates' documents too, in the same trip (the answerer reads each one's sentences).
            found = conn.execute(_DOC_SQL.format("id = ANY(%s)"), (docs,)).fetchall() if docs else []
        with self._lock:
            _bound(state.documents, _MAX_DOCUMENTS)
            for row in found:
                state.documents.setdefault(row[0], _document_record(row))
            _bound(state.chunks, _MAX_CHUNKS)
            _bound(state.sentences, _MAX_SENTENCES)
            for cid, doc_id, _, body, title, a, b, url, chunk_sids, terms, vector in chunks:
                if any(int(s) not in sentences for s in chunk_sids):
                    continue  # removed between the two queries: its sentences went with it
                spans = [(int(sentences[s][2]), int(sentences[s][3])) for s in chunk_sids]
                chunk = Chunk(doc_id, title, body, int(a), int(b), spans, url)
                state.chunks[int(cid)] = _ChunkRecord(chunk, [int(s) for s in chunk_sids], int(terms), _array(vector))
                for s, (sa, sb) in zip(chunk_sids, spans):
                    text = body[sa - a:sb - a] if a <= sa <= sb <= b else None  # the chunk is text[a:b]
                    state.sentences.setdefault(int(s), _SentenceRecord(doc_id, sa, sb, _array(sentences[s][4]), text))

    def _chunk_records(self, state: _State, rows: Sequence[int]) -> list[_ChunkRecord]:
        self._fetch_chunks(state, rows)
        with self._lock:
            found = [state.chunks.get(int(r)) for r in rows]
        return self._all(found, rows, "chunk")

    def chunk(self, row: int) -> Chunk:
        return self._chunk_records(self._st(), [row])[0].chunk

    def chunk_id(self, row: int) -> int:
        return int(row)

    def chunk_sentences(self, row: int) -> list[int]:
        return self._chunk_records(self._st(), [row])[0].sids

    def chunk_terms(self, row: int) -> frozenset[str]:
        rec = self._chunk_records(self._st(), [row])[0]
        if rec.termset is None:
            rec.termset = frozenset(content_terms(rec.chunk.text))
        return rec.termset

    # ----------------------------------------------------------------------------- sentence records

    def _sentence_records(self, state: _State, sids: Sequence[int]) -> list[_SentenceRecord]:
        with self._lock:
            missing = [int(s) for s in dict.fromkeys(sids) if int(s) not in state.sentences]
        if missing:
            with self.db.connection() as conn:
                found = conn.execute("SELECT id, doc_id, start_at, end_at, embedding FROM sentences "
                                     "WHERE id = ANY(%s)", (missing,), binary=True).fetchall()
            with self._lock:
                _bound(state.sentences, _MAX_SENTENCES)
                for sid, doc_id, a, b, vector in found:
                    state.sentences.setdefault(int(sid), _SentenceRecord(doc_id, int(a), int(b), _array(vector)))
        with self._lock:
            recs = [state.sentences.get(int(s)) for s in sids]
        return self._all(recs, sids, "sentence")

    def sentence_vectors(self, sids: Sequence[int]) -> np.ndarray:
        if not len(sids):
            return np.zeros((0, self._st().dim), dtype=np.float32)
        return np.vstack([r.vector for r in self._sentence_records(self._st(), sids)])

    def sentence_text(self, sid: int) -> str:
        state = self._st()
        rec = self._sentence_records(state, [sid])[0]
        if rec.text is None:
            doc = self._all([self._document_record(state, rec.doc_id).doc], [rec.doc_id], "document")[0]
            rec.text = doc.text[rec.start:rec.end]
        return rec.text

    def sentence_doc(self, sid: int) -> tuple[str, int, int]:
        rec = self._sentence_records(self._st(), [sid])[0]
        return rec.doc_id, rec.start, rec.end

    def sentence_terms(self, sid: int) -> frozenset[str]:
        """LoadedIndex.sentence_termset's: the content words of the sentence's text."""
        rec = self._sentence_records(self._st(), [sid])[0]
        if rec.terms is None:
            rec.terms = frozenset(content_terms(self.sentence_text(sid)))
        return rec.terms

    # ----------------------------------------------------------------------------------- documents

    def _document_record(self, state: _State, doc_id: str) -> _DocumentRecord:
        with self._lock:
            rec = state.documents.get(doc_id)
        if rec is None:
            with self.db.connection() as conn:
                found = conn.execute(_DOC_SQL.format("id = %s"), (doc_id,)).fetchone()
            rec = _DocumentRecord(None) if found is None else _document_record(found)
            with self._lock:
                _bound(state.documents, _MAX_DOCUMENTS)
                rec = state.documents.setdefault(doc_id, rec)
        return rec

    def document(self, doc_id: str) -> Document | None:
        return self._document_record(self._st(), doc_id).doc

    def document_sentences(self, doc_id: str) -> range:
        """The document's sids, with every sentence's record fetched now (the answerer reads them all)."""
        state = self._st()
        rec = self._document_record(state, doc_id)
        if rec.doc is None:
            raise self._changed(f"document {doc_id}")
        sids = range(rec.first_sentence, rec.first_sentence + rec.sentences)
        self._sentence_records(state, sids)
        return sids

    def duplicate_of(self, doc_id: str) -> str:
        state = self._st()
        if state.duplicates is None:
            with self.db.connection() as conn:
                found = conn.execute("SELECT id, simhash FROM documents ORDER BY position").fetchall()
            # stored signed (bigint): the unsigned 64-bit hash back, in index order, as LoadedIndex groups them
            state.duplicates = groups({d: int(h) & 0xFFFF_FFFF_FFFF_FFFF for d, h in found})
        return state.duplicates.get(doc_id, doc_id)

    def documents(self) -> list[Document]:
        """Every document in index order, with ``text`` left empty (see the class doc)."""
        state = self._fresh()  # a listing, asked outside any question: read the generation too
        if state.listing is None:
            with self.db.connection() as conn:
                found = conn.execute("SELECT id, title, '', path, url, date, fingerprint, meta, collection "
                                     "FROM documents ORDER BY position").fetchall()
            state.listing = [_document(r) for r in found]
        return list(state.listing)

    def chunk_counts(self) -> dict[str, int]:
        state = self._fresh()
        if state.counts is None:
            with self.db.connection() as conn:
                found = conn.execute("SELECT doc_id, count(*) FROM chunks GROUP BY doc_id").fetchall()
            state.counts = {d: int(n) for d, n in found}
        return state.counts


class _Idf(Mapping[str, float]):
    """The reader's word weights as BM25Index.idf has them, fetched per word when first asked (a question's
    words in one query, by ``lexical_top``) for the generation the asking thread's question reads."""

    def __init__(self, reader: PostgresReader) -> None:
        self._reader = reader

    def __getitem__(self, term: str) -> float:
        return self._reader._text_idf(term)

    def __iter__(self) -> Iterator[str]:
        return iter(self._reader._text_terms())

    def __len__(self) -> int:
        return len(self._reader._text_terms())


def _document(row: Sequence) -> Document:
    doc_id, title, body, path, url, date, fingerprint, meta, collection = row
    return Document(doc_id, title, body, path or "", url, date, fingerprint, dict(meta or {}), collection)


def _document_record(row: Sequence) -> _DocumentRecord:
    """A ``_DOC_SQL`` row: the document and where its sentences are."""
    return _DocumentRecord(_document(row[:9]), int(row[9]), int(row[10]))


def _idf(n: int, df: int) -> float:
    """bm25s's (and BM25Index's) word weight: ``df`` of ``n`` chunks hold the word."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def _array(vector: Any) -> np.ndarray:
    """A pgvector value as float32 numbers."""
    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)


def _bound(cache: dict, limit: int) -> None:
    if len(cache) >= limit:
        cache.clear()
