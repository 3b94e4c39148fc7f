"""Sentence splitting in a child process (``python -m index.ingest.splitter``), so a build can load its bulk
model meanwhile: both are pure-Python work that holds the GIL, so in one process they add up.

A plain subprocess, not multiprocessing: spawning re-imports the caller's ``__main__`` (which breaks
for a script without a main guard, or stdin), and forking a process with threads is unsafe.
Input on stdin and output on stdout are pickles: ``(documents, chunk settings)`` in, each document's
sections' sentence spans out.
"""

from __future__ import annotations

import pickle
import sys


def main() -> None:
    from index.ingest.chunking import document_sentences

    docs, chunking = pickle.load(sys.stdin.buffer)
    spans = [document_sentences(doc, chunking) for doc in docs]
    pickle.dump(spans, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    main()
