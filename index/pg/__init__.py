"""Herald's index in PostgreSQL with pgvector (issue 19): the schema and its migrations (``schema``) and the
writing half of the index seam (``writer``: index/store/writer.py's IndexWriter); the reading half
(index/search/reader.py's IndexReader) and choosing the engine in settings come next.

Needs the optional extra ``herald[postgres]`` (psycopg 3, psycopg-pool, pgvector); nothing here is
imported unless a database is configured.
"""
