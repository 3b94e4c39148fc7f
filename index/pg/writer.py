"""Applying an ``IndexChange`` to PostgreSQL (the writing half of the index seam, index/store/writer.py):
one transaction, under an advisory lock so one writer changes the index at a time; a reader (another
process) sees the index before or after the change, never between; a writer killed mid-transaction leaves
the previous state (PostgreSQL rolls it back).

Ids: a new chunk gets the next id after the highest in the table, a new document's sentences one
contiguous block of ids (readers rely on a document's sentence ids being consecutive). Documents keep the
order they arrived in (``position``); a changed document moves to the end.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from index.ingest.dedup import simhash
from index.search.lexical import searched_title
from index.store.writer import DocumentUpdate, IndexChange, IndexWriter, Written
from index.text import content_terms

_WRITE_LOCK = 0x48455257  # "HERW": one writer at a time


class PostgresWriter(IndexWriter):
    """Writes into a database migrated by ``index.pg.schema.migrate`` (``conn``: a psycopg connection)."""

    def __init__(self, conn: Any) -> None:
        from pgvector.psycopg import register_vector

        self.conn = conn
        register_vector(conn)

    def apply(self, change: IndexChange) -> Written:
        conn = self.conn
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            gone = sorted(set(change.removed) | {u.doc.id for u in change.upserts})
            if gone:
                conn.execute("DELETE FROM documents WHERE id = ANY(%s)", (gone,))
            chunk_id, sentence_id, position = conn.execute(
                "SELECT (SELECT coalesce(max(id), -1) + 1 FROM chunks), (SELECT coalesce(max(id), -1) + 1 FROM "
                "sentences), (SELECT coalesce(max(position), -1) + 1 FROM documents)").fetchone()
            for u in change.upserts:
                self._insert(u, chunk_id, sentence_id, position)
                chunk_id, sentence_id, position = chunk_id + len(u.chunks), sentence_id + len(u.sentences), position + 1
            docs, chunks, sentences = conn.execute(
                "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks), "
                "(SELECT count(*) FROM sentences)").fetchone()
        return Written(int(docs), int(chunks), int(sentences))

    def _insert(self, u: DocumentUpdate, first_chunk: int, first_sentence: int, position: int) -> None:
        d, conn = u.doc, self.conn
        hashed = simhash(d.text)
        conn.execute(
            "INSERT INTO documents (id, collection, title, body, path, url, date, fingerprint, meta, simhash, "
            "first_sentence, sentences, position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s)",
            (d.id, d.collection, d.title, d.text, d.path, d.url, d.date, d.fingerprint, _json(d.meta),
             hashed - (1 << 64) if hashed >= 1 << 63 else hashed, first_sentence, len(u.sentences), position))
        row_of = {span: first_sentence + i for i, span in enumerate(u.sentences)}
        with conn.cursor().copy("COPY sentences (id, doc_id, start_at, end_at, embedding) FROM STDIN "
                                "WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "text", "int4", "int4", "vector"])
            for (a, b), vec in zip(u.sentences, u.sentence_vectors):
                cp.write_row((row_of[(a, b)], d.id, a, b, np.asarray(vec, dtype=np.float32)))
        terms: list[tuple[str, int, int]] = []
        with conn.cursor().copy("COPY chunks (id, doc_id, collection, body, title, start_at, end_at, url, "
                                "sentence_ids, terms, embedding) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "text", "text", "text", "text", "int4", "int4", "text", "int8[]", "int4", "vector"])
            for n, (chunk, vec) in enumerate(zip(u.chunks, u.chunk_vectors)):
                cid = first_chunk + n
                tokens = content_terms(searched_title(chunk)) + content_terms(chunk.text)
                terms.extend((t, cid, tf) for t, tf in Counter(tokens).items())
                cp.write_row((cid, d.id, d.collection, chunk.text, chunk.title, chunk.start, chunk.end, chunk.url,
                              [row_of[(s[0], s[1])] for s in chunk.sentences], len(tokens),
                              np.asarray(vec, dtype=np.float32)))
        with conn.cursor().copy("COPY chunk_terms (term, chunk_id, tf) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["text", "int8", "int4"])
            for row in terms:
                cp.write_row(row)


def _json(value: Any) -> str:
    import json

    return json.dumps(value or {}, ensure_ascii=False)
