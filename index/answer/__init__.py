"""Writing the answer from ranked passages: the answerer seam and the extractive reader (``answerers``,
``units``), the language-model answerer (``llm``), and the words that answer (``phrases``)."""
