"""The embedder seam: what the store and the searcher need of a model, its declared capabilities with
their defaults, and the registry of models by name (``EMBEDDERS``, the same Registry as every seam).

A registration may carry the SearchSettings values tuned for the model (``search=...``): another model's
cosines live in another range (multilingual-e5's sit at 0.6-0.9 for everything), so the threshold that
separates answers from non-answers, and the weight cosine deserves against word overlap, move with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from index.registry import Registry


class Embedder(Protocol):
    """What the store and the searcher need of a model; an embedder class subclasses it for the defaults.

    Declared capabilities: ``multilingual`` (reads other languages than English: no "ask in English"
    note), ``weights`` (a fingerprint of the weights, recorded in the manifest so an index made by other
    weights under the same name is refused; None when unknown), ``encode_queries`` (questions, for models
    that embed them differently from the text searched, as E5's ``"query: "`` and ``"passage: "``
    prefixes; by default ``encode``), ``encode_all`` (a whole build's texts, where a model may choose a
    bulk path once), ``wants_bulk``/``prefetch`` (a build asks whether ``chars`` characters will take the
    bulk path, and lets the model load it while sentences are split).
    """

    name: str
    dim: int
    multilingual: bool = False
    weights: str | None = None

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text (the passages, for a model with ``encode_queries``)."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Questions as vectors (same rows as ``encode``); by default ``encode`` serves both."""
        return self.encode(texts)

    def encode_all(self, texts: Sequence[str], progress: Callable[[int], None] | None = None,
                   batch_size: int = 64) -> np.ndarray:
        """Every text of a build (rows in the given order); ``progress`` hears the count done so far."""
        return in_slices(self, texts, progress, batch_size, slice_size=128)

    def wants_bulk(self, chars: int) -> bool:
        """Whether about ``chars`` characters of text will take a slower-to-load bulk path."""
        return False

    def prefetch(self, chars: int) -> None:
        """Load the bulk path now when about ``chars`` characters are coming (no-op by default)."""
        return None


EMBEDDERS: Registry[Embedder] = Registry("embedder")


def search_values(model: str) -> dict[str, Any]:
    """The SearchSettings values registered for ``model`` ({} when the defaults are its own)."""
    return dict(EMBEDDERS.traits(model).get("search", {}))


def query_encoder(embedder: Embedder) -> Callable[[Sequence[str]], np.ndarray]:
    """How ``embedder`` embeds questions (its ``encode_queries``)."""
    return embedder.encode_queries


def embed_all(embedder: Embedder, texts: Sequence[str], progress: Callable[[int], None] | None = None,
              batch_size: int = 64) -> np.ndarray:
    """Every text of a build, through the embedder's bulk path (``encode_all``)."""
    return embedder.encode_all(texts, progress=progress, batch_size=batch_size)


def in_slices(encoder: Any, texts: Sequence[str], progress: Callable[[int], None] | None, batch_size: int,
              slice_size: int = 1024) -> np.ndarray:
    """Encode in slices of similar length (for progress reports); rows come back in the given order.

    Sorting by length first keeps padding as low as one big call would (sentence-transformers sorts
    within a call only).
    """
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    done = 0
    for i in range(0, len(order), slice_size):
        part = order[i:i + slice_size]
        out[part] = encoder.encode([texts[j] for j in part], batch_size=batch_size)
        done += len(part)
        if progress:
            progress(done)
    return out
