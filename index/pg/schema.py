"""The database schema, versioned: ``migrate`` brings a database to ``SCHEMA_VERSION`` (one transaction,
under an advisory lock so two processes starting at once do not both migrate), and refuses a database
whose schema is newer than this code or whose vectors have another width. ``connect`` opens a connection
with the settings every Herald connection uses, failing with a typed error (``DatabaseError``).

Tables (version 1): documents, chunks (with their pgvector embedding and an HNSW index for inner
product), sentences (embedding), chunk_terms (BM25 kept exact: term frequencies over title and text,
``in_text`` for the text-only document frequencies coverage uses, and the chunk's length and collection
repeated, so BM25 reads only the query words' rows, never the wide chunk rows; the primary key includes
them, so a word's rows are read from the index's leaves, in order, not from all over the table), term_df (each word's
document frequency over title and text and over text only, kept by the writer: BM25's and coverage's
word weights without counting postings at every question), skipped (source files not indexed, with
their fingerprints), feed state and feedback votes; ``herald_meta`` holds the schema version, the vector
width, the ``generation`` every change bumps (readers drop what they cached when it moves), the next
chunk and sentence ids (never reused) and ``about`` (the model, chunking and cleaner that built the index).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from index.errors import DatabaseError, IndexMismatchError
from index.ingest.web import redact_url

SCHEMA_VERSION = 1
_LOCK = 0x4845524C  # "HERL": the advisory lock migrations take

_META = "CREATE TABLE IF NOT EXISTS herald_meta (key text PRIMARY KEY, value text NOT NULL)"


def _v1(dim: int) -> list[str]:
    return [
        "CREATE EXTENSION IF NOT EXISTS vector",
        """CREATE TABLE documents (
            id text PRIMARY KEY, collection text NOT NULL, title text NOT NULL, body text NOT NULL,
            path text, url text, date text, fingerprint text NOT NULL, meta jsonb NOT NULL DEFAULT '{}',
            simhash bigint NOT NULL, text_key text NOT NULL, first_sentence bigint NOT NULL,
            sentences integer NOT NULL, position bigint NOT NULL)""",
        "CREATE INDEX documents_collection ON documents (collection)",
        f"""CREATE TABLE chunks (
            id bigint PRIMARY KEY, doc_id text NOT NULL REFERENCES documents ON DELETE CASCADE,
            collection text NOT NULL, body text NOT NULL, title text NOT NULL, start_at integer NOT NULL,
            end_at integer NOT NULL, url text, sentence_ids bigint[] NOT NULL, terms integer NOT NULL,
            embedding vector({dim}) NOT NULL)""",
        "CREATE INDEX chunks_collection ON chunks (collection)",
        "CREATE INDEX chunks_doc ON chunks (doc_id)",
        # FaissStore's graph (M 32, efConstruction 80): pgvector's defaults (16, 64) gave recall@10 0.856 at a
        # million chunks of benchmarks/pg_scale.py's data, where FAISS's graph gives 0.966 (docs/scale.md).
        "CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_ip_ops) WITH (m = 32, "
        "ef_construction = 80)",
        f"""CREATE TABLE sentences (
            id bigint PRIMARY KEY, doc_id text NOT NULL REFERENCES documents ON DELETE CASCADE,
            start_at integer NOT NULL, end_at integer NOT NULL, embedding vector({dim}) NOT NULL)""",
        """CREATE TABLE chunk_terms (
            term text NOT NULL, chunk_id bigint NOT NULL REFERENCES chunks ON DELETE CASCADE,
            tf integer NOT NULL, in_text boolean NOT NULL, dl integer NOT NULL, collection text NOT NULL,
            PRIMARY KEY (term, chunk_id) INCLUDE (tf, in_text, dl, collection))""",
        "CREATE INDEX chunk_terms_chunk ON chunk_terms (chunk_id)",
        "CREATE TABLE term_df (term text PRIMARY KEY, df integer NOT NULL, df_text integer NOT NULL)",
        "CREATE TABLE skipped (id text PRIMARY KEY, collection text NOT NULL, fingerprint text NOT NULL)",
        """CREATE TABLE feed_state (
            collection text NOT NULL, feed text NOT NULL, state jsonb NOT NULL, PRIMARY KEY (collection, feed))""",
        """CREATE TABLE feedback (
            id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), record jsonb NOT NULL)""",
    ]


#: Each version's statements, given the vector width; a new version appends one entry, never edits one.
MIGRATIONS: dict[int, Callable[[int], list[str]]] = {1: _v1}


def connect(url: str, *, connect_timeout: float = 10.0, statement_timeout_ms: int = 30_000) -> Any:
    """A connection with Herald's settings: every statement time-limited, statements never prepared (a
    prepared generic plan can send a filtered vector search through the HNSW index, which pgvector filters
    after the search, so most rows of a small collection are lost). DatabaseError when it cannot connect."""
    try:
        import psycopg
    except ImportError as exc:
        raise DatabaseError("driver_missing", redact_url(url), "pip install 'herald[postgres]'") from exc
    try:
        return psycopg.connect(url, connect_timeout=max(1, int(connect_timeout)), prepare_threshold=None,
                               options=f"-c statement_timeout={int(statement_timeout_ms)}")
    except psycopg.Error as exc:
        raise DatabaseError("unreachable", redact_url(url), _first_line(exc)) from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def schema_version(conn: Any) -> int:
    """The database's schema version (0: never migrated)."""
    row = conn.execute("SELECT to_regclass('herald_meta') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute("SELECT value FROM herald_meta WHERE key = 'schema_version'").fetchone()
    return int(found[0]) if found else 0


def migrate(conn: Any, dim: int) -> int:
    """Bring the database to SCHEMA_VERSION for vectors of width ``dim``; the version it is at after.

    Raises DatabaseError (``schema_newer``: the database was migrated by newer code; ``no_vector``: the
    pgvector extension is not available) or IndexMismatchError (``dim``: built for another model)."""
    import psycopg

    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            conn.execute(_META)
            version = schema_version(conn)
            if version > SCHEMA_VERSION:
                raise DatabaseError("schema_newer", "", f"version {version}, this code knows {SCHEMA_VERSION}")
            width = conn.execute("SELECT value FROM herald_meta WHERE key = 'dim'").fetchone()
            if width is not None and int(width[0]) != dim:
                raise IndexMismatchError("dim", int(width[0]), dim)
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[v](dim):
                    conn.execute(statement)
            conn.execute("INSERT INTO herald_meta VALUES ('schema_version', %s), ('dim', %s) ON CONFLICT (key) "
                         "DO UPDATE SET value = EXCLUDED.value", (str(SCHEMA_VERSION), str(dim)))
            conn.execute("INSERT INTO herald_meta VALUES ('generation', '0'), ('next_chunk', '0'), "
                         "('next_sentence', '0'), ('chunk_count', '0'), ('total_terms', '0') "
                         "ON CONFLICT (key) DO NOTHING")
    except psycopg.errors.FeatureNotSupported as exc:  # CREATE EXTENSION vector where pgvector is missing
        raise DatabaseError("no_vector", "", _first_line(exc)) from exc
    except psycopg.errors.UndefinedFile as exc:
        raise DatabaseError("no_vector", "", _first_line(exc)) from exc
    return SCHEMA_VERSION
