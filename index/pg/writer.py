"""Applying an ``IndexChange`` to PostgreSQL (the writing half of the index seam, index/store/writer.py):
one transaction, under an advisory lock so one writer changes the index at a time; a reader (another
process) sees the index before or after the change, never between; a writer killed mid-transaction leaves
the previous state (PostgreSQL rolls it back).

Ids: new chunks and sentences take the next ids ``herald_meta`` keeps (never reused, so a reader's cached
record of a removed chunk is never another chunk's), a document's sentences one contiguous block (readers
rely on a document's sentence ids being consecutive). Every change bumps ``generation``: readers in other
processes see it at their next question and drop what they cached. Documents keep the
order they arrived in (``position``); a changed document moves to the end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np

from index.ingest.collections import collection_of
from index.ingest.corpus import text_key
from index.ingest.dedup import simhash
from index.search.lexical import searched_title
from index.store.writer import DocumentUpdate, IndexChange, IndexWriter, Written
from index.text import content_terms

_WRITE_LOCK = 0x48455257  # "HERW": one writer at a time
# The removed documents' words leave term_df (their chunk_terms rows go with them by cascade just after).
_DF_GONE = """WITH gone AS (
    SELECT t.term, count(*) AS n, count(*) FILTER (WHERE t.in_text) AS nt FROM chunk_terms t
    JOIN chunks c ON c.id = t.chunk_id WHERE c.doc_id = ANY(%s) GROUP BY t.term)
UPDATE term_df d SET df = d.df - gone.n, df_text = d.df_text - gone.nt FROM gone WHERE d.term = gone.term"""
#: What herald_meta keeps for the writer, all integers.
_COUNTERS = ("next_chunk", "next_sentence", "next_position", "generation", "chunk_count", "document_count",
             "sentence_count", "total_terms")
_IN_TRANSACTION = 2  # psycopg.pq.TransactionStatus.INTRANS (psycopg is imported only with a database)


class PostgresWriter(IndexWriter):
    """Writes into a database migrated by ``index.pg.schema.migrate`` (``conn``: a psycopg connection)."""

    def __init__(self, conn: Any) -> None:
        from pgvector.psycopg import register_vector

        self.conn = conn
        register_vector(conn)

    def apply(self, change: IndexChange) -> Written:
        conn = self.conn
        if conn.info.transaction_status == _IN_TRANSACTION:
            # A read the caller made (psycopg opens a transaction for it) would turn the change into a
            # savepoint, committed only if and when the caller commits: end that read first.
            conn.commit()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            meta = self._counters()
            chunks, terms = meta["chunk_count"], meta["total_terms"]
            docs, sentences = meta["document_count"], meta["sentence_count"]
            gone = sorted(set(change.removed) | {u.doc.id for u in change.upserts})
            if gone:
                n, t, d, s = conn.execute(
                    "SELECT (SELECT count(*) FROM chunks WHERE doc_id = ANY(%s)), (SELECT coalesce(sum(terms), 0) "
                    "FROM chunks WHERE doc_id = ANY(%s)), count(*), coalesce(sum(sentences), 0) FROM documents "
                    "WHERE id = ANY(%s)", (gone, gone, gone)).fetchone()
                chunks, terms, docs, sentences = chunks - int(n), terms - int(t), docs - int(d), sentences - int(s)
                conn.execute(_DF_GONE, (gone,))
                conn.execute("DELETE FROM documents WHERE id = ANY(%s)", (gone,))
            chunk_id, sentence_id, position = meta["next_chunk"], meta["next_sentence"], meta["next_position"]
            for u in change.upserts:
                terms += self._insert(u, chunk_id, sentence_id, position)
                chunk_id, sentence_id, position = chunk_id + len(u.chunks), sentence_id + len(u.sentences), position + 1
                chunks, docs, sentences = chunks + len(u.chunks), docs + 1, sentences + len(u.sentences)
            self._count_terms(change)
            self._skipped(change)
            # BM25's corpus statistics and the counts, kept here so neither a reader nor the next change scans
            # every row (counting a million chunks' rows took most of an update at that size: docs/scale.md).
            self._meta({"next_chunk": chunk_id, "next_sentence": sentence_id, "next_position": position,
                        "chunk_count": chunks, "document_count": docs, "sentence_count": sentences,
                        "total_terms": terms, "generation": meta["generation"] + 1, **self._about(change)})
            written = sum(len(u.chunks) for u in change.upserts)
            if written > max(1_000, chunks // 10):
                # A large change (a first build): fresh statistics, or the planner walks BM25's rows the slow
                # way until autovacuum gets to them (55 ms instead of 12 at the BBC corpus).
                conn.execute("ANALYZE documents, chunks, sentences, chunk_terms, term_df")
        return Written(docs, chunks, sentences)

    def _counters(self) -> dict[str, int]:
        """The ids, counts and statistics ``herald_meta`` keeps; a database written before it kept the counts
        and the next position has them counted once, here (the next change keeps them)."""
        meta = {k: int(v) for k, v in self.conn.execute("SELECT key, value FROM herald_meta WHERE key IN "
                                                        f"({', '.join(map(repr, _COUNTERS))})").fetchall()}
        if not {"document_count", "sentence_count", "next_position"} <= meta.keys():
            docs, sentences, position, chunks = self.conn.execute(
                "SELECT count(*), coalesce(sum(sentences), 0), coalesce(max(position), -1) + 1, "
                "(SELECT count(*) FROM chunks) FROM documents").fetchone()
            meta.update(document_count=int(docs), sentence_count=int(sentences), next_position=int(position),
                        chunk_count=int(chunks))
        return {k: meta.get(k, 0) for k in _COUNTERS}

    def _count_terms(self, change: IndexChange) -> None:
        """Add the new chunks' words to ``term_df`` (one COPY into a scratch table, one upsert)."""
        df: Counter = Counter()
        df_text: Counter = Counter()
        for u in change.upserts:
            for chunk in _without_nul(u).chunks:
                in_text = set(content_terms(chunk.text))
                df.update(in_text | set(content_terms(searched_title(chunk))))
                df_text.update(in_text)
        if not df:
            return
        conn = self.conn
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS herald_new_df (term text, df int, df_text int) "
                     "ON COMMIT DELETE ROWS")
        with conn.cursor().copy("COPY herald_new_df FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["text", "int4", "int4"])
            for term, n in df.items():
                cp.write_row((term, n, df_text[term]))
        conn.execute("INSERT INTO term_df SELECT * FROM herald_new_df ON CONFLICT (term) DO UPDATE SET "
                     "df = term_df.df + EXCLUDED.df, df_text = term_df.df_text + EXCLUDED.df_text")

    def _skipped(self, change: IndexChange) -> None:
        """Files not indexed (``change.skipped``, of the collections the change read: ``change.scope``)."""
        if change.scope is None:
            self.conn.execute("DELETE FROM skipped")
        else:
            self.conn.execute("DELETE FROM skipped WHERE collection = ANY(%s)", (list(change.scope),))
        for doc_id, fingerprint in change.skipped.items():
            self.conn.execute("INSERT INTO skipped VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                              "fingerprint = EXCLUDED.fingerprint", (doc_id, collection_of(doc_id), fingerprint))

    @staticmethod
    def _about(change: IndexChange) -> dict:
        return {"about": _json(change.about)} if change.about else {}

    def _meta(self, values: dict) -> None:
        for key, value in values.items():
            self.conn.execute("INSERT INTO herald_meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET "
                              "value = EXCLUDED.value", (key, str(value)))

    def _insert(self, u: DocumentUpdate, first_chunk: int, first_sentence: int, position: int) -> int:
        """Write one document; the sum of its chunks' token counts (BM25's lengths)."""
        u = _without_nul(u)
        d, conn = u.doc, self.conn
        hashed = simhash(d.text)
        conn.execute(
            "INSERT INTO documents (id, collection, title, body, path, url, date, fingerprint, meta, simhash, "
            "text_key, first_sentence, sentences, position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, "
            "%s, %s, %s, %s)",
            (d.id, d.collection, d.title, d.text, d.path, d.url, d.date, d.fingerprint, _json(d.meta),
             hashed - (1 << 64) if hashed >= 1 << 63 else hashed, text_key(d.text), first_sentence,
             len(u.sentences), position))
        row_of = {span: first_sentence + i for i, span in enumerate(u.sentences)}
        with conn.cursor().copy("COPY sentences (id, doc_id, start_at, end_at, embedding) FROM STDIN "
                                "WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "text", "int4", "int4", "vector"])
            for (a, b), vec in zip(u.sentences, u.sentence_vectors):
                cp.write_row((row_of[(a, b)], d.id, a, b, np.asarray(vec, dtype=np.float32)))
        terms: list[tuple[str, int, int, bool, int, str]] = []
        lengths = 0
        with conn.cursor().copy("COPY chunks (id, doc_id, collection, body, title, start_at, end_at, url, "
                                "sentence_ids, terms, embedding) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "text", "text", "text", "text", "int4", "int4", "text", "int8[]", "int4", "vector"])
            for n, (chunk, vec) in enumerate(zip(u.chunks, u.chunk_vectors)):
                cid = first_chunk + n
                in_text = content_terms(chunk.text)
                tokens = content_terms(searched_title(chunk)) + in_text
                text_set = set(in_text)
                lengths += max(1, len(tokens))
                terms.extend((t, cid, tf, t in text_set, max(1, len(tokens)), d.collection)
                             for t, tf in Counter(tokens).items())
                cp.write_row((cid, d.id, d.collection, chunk.text, chunk.title, chunk.start, chunk.end, chunk.url,
                              [row_of[(s[0], s[1])] for s in chunk.sentences], max(1, len(tokens)),
                              np.asarray(vec, dtype=np.float32)))
        with conn.cursor().copy("COPY chunk_terms (term, chunk_id, tf, in_text, dl, collection) FROM STDIN "
                                "WITH (FORMAT BINARY)") as cp:
            cp.set_types(["text", "int8", "int4", "bool", "int4", "text"])
            for row in terms:
                cp.write_row(row)
        return lengths


def _without_nul(u: DocumentUpdate) -> DocumentUpdate:
    """PostgreSQL text cannot hold NUL characters, which some scraped articles carry: each becomes a space
    (one character for one, so every offset into the text stays right)."""
    d = u.doc
    if "\x00" not in d.text + d.title + "".join(c.title for c in u.chunks) + str(d.meta):
        return u
    def clean(x: str) -> str:
        return x.replace("\x00", " ")

    doc = replace(d, title=clean(d.title), text=clean(d.text),
                  meta={clean(k): clean(v) if isinstance(v, str) else v for k, v in (d.meta or {}).items()})
    chunks = [replace(c, text=clean(c.text), title=clean(c.title)) for c in u.chunks]
    return replace(u, doc=doc, chunks=chunks)


def _json(value: Any) -> str:
    import json

    return json.dumps(value or {}, ensure_ascii=False)
