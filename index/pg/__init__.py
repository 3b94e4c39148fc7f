"""Herald's index in PostgreSQL with pgvector (issue 19): the schema and its migrations so far; the reader
and writer that fill the index seam (index/search/reader.py, index/store/writer.py) come next.

Needs the optional extra ``herald[postgres]`` (psycopg 3, psycopg-pool, pgvector); nothing here is
imported unless a database is configured.
"""
