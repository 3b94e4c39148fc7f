"""Ranking passages for a question: dense, lexical (``lexical``: BM25) and their fusion, sentence re-scoring
and confidence (``retrieval``)."""
