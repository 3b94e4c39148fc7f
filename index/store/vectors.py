"""Vector stores: where chunk vectors live and how the nearest ones are found.

A store maps integer chunk ids to unit-length vectors and answers ``search(vector, k) -> [(id, score)]``
with inner products (cosine, since vectors are normalised). Retrieval only ever sees top-k lists, so a
store that does not hold every vector in memory (an ANN index, a server) plugs in as one class
registered in ``VECTOR_STORES``; the name is saved in the manifest and the same class loads it back.

``faiss`` (the default) searches with FAISS: an exact flat index while small, HNSW above
``hnsw_above`` vectors. benchmarks/ann.py (BBC sentence vectors, one thread): HNSW is already 2.6x
faster at 10,000 vectors, but that saves under 1 ms of a ~14 ms answer; at 50,000 exact search costs
8 ms, more than half an answer, and HNSW (M 32, efSearch 128) cuts it to 0.8 ms at recall@40 0.983
against exact. Hence 50,000. A bigger graph needs a wider search: efSearch grows with the vectors
(``auto_ef_search``: 128 up to 250,000, 512 at a million) unless the ``ef_search`` option fixes it
(docs/scale.md). ``numpy`` is an exact reference kept for tests and as the simplest example of the seam.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from index.registry import Registry

Hits = list[tuple[int, float]]


@runtime_checkable
class VectorStore(Protocol):
    """What retrieval and builds need of a vector store; a store class subclasses it for the defaults.

    Declared capabilities: ``files`` (the names ``save`` writes, so a build knows an index folder's own
    files), ``scores`` (``score(vector, ids)`` gives exact inner products for chosen ids; hybrid fusion
    uses them for chunks only the lexical side found).
    """

    kind: str  # the registry name, saved in the manifest
    dim: int
    files: ClassVar[tuple[str, ...]] = ()
    scores: ClassVar[bool] = False

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Store ``vectors`` (rows, unit length) under ``ids`` (new ids)."""

    def delete(self, ids: Sequence[int]) -> None:
        """Forget these ids (unknown ids are ignored)."""

    def mark_deleted(self, ids: Sequence[int]) -> None:
        """``delete`` as a load does it (the folder index's stale ids, index/store/segments.py): a store whose
        delete may reorganise itself (FaissStore rebuilds a graph) skips that here. The default deletes."""
        self.delete(ids)

    def search(self, vector: np.ndarray, k: int) -> Hits:
        """The ``k`` best ``(id, inner product)`` pairs, best first (ties by id)."""

    def search_within(self, vector: np.ndarray, k: int, within: Sequence[int]) -> Hits:
        """``search`` among the ids in ``within`` only (a collection filter), exact: every one of them that
        would rank in the top ``k`` does. The default scores them all (``score``); a store that can filter
        while it searches overrides it."""
        ids = np.asarray(within, dtype=np.int64)
        if not len(ids) or k <= 0:
            return []
        return _sorted_hits(ids, np.asarray(self.score(vector, ids.tolist()), dtype=np.float64), int(k))

    def save(self, folder: Path) -> list[str]:
        """Write the store's files into ``folder``; returns their names."""

    def __len__(self) -> int: ...

    def score(self, vector: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        """Exact inner products of ``vector`` with the stored vectors of ``ids`` (stores with ``scores``)."""
        raise TypeError(f"the {self.kind} store cannot score chosen ids")

    def get(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of ``ids`` (tests and benchmarks read them back)."""
        raise TypeError(f"the {self.kind} store cannot return stored vectors")

    @classmethod
    def load(cls, folder: Path, dim: int, **options: Any) -> VectorStore:
        """The store saved in ``folder`` by ``save``."""
        raise NotImplementedError(f"{cls.__name__} cannot load a saved store")

    @classmethod
    def changes_kind(cls, before: int, after: int, **options: Any) -> bool:
        """Whether a store saved with ``before`` vectors becomes another kind of index with ``after`` (then the
        folder index writes it whole rather than adding a delta segment to it at every load)."""
        return False


VECTOR_STORES: Registry[VectorStore] = Registry("vector store")


def _sorted_hits(ids: np.ndarray, scores: np.ndarray, k: int) -> Hits:
    keep = ids >= 0
    ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:k]
    return [(int(ids[i]), float(scores[i])) for i in order]


#: The automatic efSearch never goes below this: the fixed value before issue 19, which the rule keeps up to
#: 250,000 vectors (recall@10 0.97 at 200,000 in docs/scale.md).
EF_SEARCH_FLOOR = 128
#: efSearch = 512 * (n / 1,000,000) ** 1.0: the efSearch recall@10 0.96 needed grew as n^1.00 from 200,000 to
#: 1,000,000 BBC chunk vectors (and noisy copies), and was 0.67 to 0.87 of this at each size (docs/scale.md).
#: Past 1,000,000 the rule is an extrapolation.
_EF_AT_1M, _EF_EXPONENT = 512.0, 1.0


def auto_ef_search(n: int) -> int:
    """efSearch for an HNSW graph of ``n`` vectors: a graph's greedy search misses more true neighbours as it
    grows, so the beam widens with ``n`` to hold recall@10 >= 0.95 with a margin (docs/scale.md, "HNSW recall
    as the corpus grows"). Rounded up to a multiple of 16, never below EF_SEARCH_FLOOR."""
    ef = _EF_AT_1M * (max(int(n), 0) / 1_000_000) ** _EF_EXPONENT
    return max(EF_SEARCH_FLOOR, -(-int(np.ceil(ef)) // 16) * 16)


class FaissStore(VectorStore):
    """FAISS: exact inner product (``IndexFlatIP``) up to ``hnsw_above`` vectors, HNSW above.

    Ids go through ``IndexIDMap2`` so deletes and incremental builds keep them stable. HNSW cannot delete
    in place: a deleted id is marked (saved beside the index, ``DELETED``) and searches skip it; the graph
    is rebuilt from the live vectors only when more than ``COMPACT_ABOVE`` of it is marked, so changing an
    article no longer rebuilds a large graph (issue 19). ``score(vector, ids)`` gives exact scores for
    chosen ids, which hybrid fusion uses for chunks only the lexical side found.
    """

    kind = "faiss"
    FILE = "index.faiss"
    DELETED = "index.faiss.deleted.npy"
    files = (FILE, DELETED)
    scores = True
    COMPACT_ABOVE = 0.1  # share of an HNSW graph's vectors marked deleted before it is rebuilt

    HNSW_ABOVE = 50_000

    def __init__(self, dim: int, hnsw_above: int = HNSW_ABOVE, hnsw_m: int = 32, ef_search: int | None = None,
                 ef_construction: int = 80, index=None) -> None:
        import faiss

        self.dim = int(dim)
        self.hnsw_above, self.hnsw_m = hnsw_above, hnsw_m
        self.ef_search, self.ef_construction = ef_search, ef_construction  # ef_search None: auto_ef_search
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        self._deleted = np.zeros(0, dtype=np.int64)  # ids marked deleted in an HNSW graph (sorted)
        self._tune()

    # ------------------------------------------------------------------------------ kinds of index

    @classmethod
    def changes_kind(cls, before: int, after: int, **options: Any) -> bool:
        above = int(options.get("hnsw_above", cls.HNSW_ABOVE))
        return before <= above < after

    @property
    def approximate(self) -> bool:
        import faiss

        return isinstance(faiss.downcast_index(self._index.index), faiss.IndexHNSW)

    @property
    def search_ef(self) -> int:
        """The efSearch an HNSW search uses: the ``ef_search`` option, else the rule for this many vectors."""
        return int(self.ef_search) if self.ef_search is not None else auto_ef_search(len(self))

    def set_ef_search(self, ef_search: int | None) -> None:
        """Change the ``ef_search`` option (None: automatic) on a live store (benchmarks compare values)."""
        self.ef_search = ef_search
        self._tune()

    def _tune(self) -> None:
        """Give the HNSW graph its efSearch; called whenever the option or the number of vectors changes."""
        import faiss

        inner = faiss.downcast_index(self._index.index)
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.search_ef

    def _ids(self) -> np.ndarray:
        import faiss

        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def _vectors(self) -> np.ndarray:
        n = self._index.ntotal
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.index.reconstruct_n(0, n)

    def _live(self) -> tuple[np.ndarray, np.ndarray]:
        """The ids and vectors not marked deleted."""
        ids, vectors = self._ids(), self._vectors()
        if not len(self._deleted):
            return ids, vectors
        keep = ~np.isin(ids, self._deleted)
        return ids[keep], vectors[keep]

    def _compact(self) -> None:
        """Rebuild the graph from the live vectors: the marks are gone."""
        ids, vectors = self._live()
        self._deleted = np.zeros(0, dtype=np.int64)
        self._rebuild(ids, vectors)

    def _rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """A new index of the right kind for ``len(ids)`` vectors."""
        import faiss

        if len(ids) > self.hnsw_above:
            inner: Any = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.ef_construction
        else:
            inner = faiss.IndexFlatIP(self.dim)
        self._index = faiss.IndexIDMap2(inner)
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
        self._tune()

    # ----------------------------------------------------------------------------------- the seam

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._deleted)

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        ids_a = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids_a), self.dim)
        if not len(ids_a):
            return
        if len(self._deleted) and np.isin(ids_a, self._deleted).any():
            self._compact()  # an id marked deleted is given again: the graph must not hold it twice
        if len(self) + len(ids_a) > self.hnsw_above and not self.approximate:
            self._rebuild(np.concatenate([self._ids(), ids_a]), np.vstack([self._vectors(), vectors]))
        else:
            self._index.add_with_ids(vectors, ids_a)
            self._tune()  # a bigger graph needs a wider search (auto_ef_search)

    def delete(self, ids: Sequence[int]) -> None:
        self.mark_deleted(ids)
        if self.approximate and len(self._deleted) > self.COMPACT_ABOVE * self._index.ntotal:
            self._compact()

    def mark_deleted(self, ids: Sequence[int]) -> None:
        """``delete`` without the graph rebuild it may bring: loading an index with delta segments marks the
        base's stale ids (index/store/segments.py) and must not rebuild a graph on every open."""
        drop = np.asarray(list(ids), dtype=np.int64)
        if not len(drop) or not len(self):
            return
        if self.approximate:
            self._deleted = np.union1d(self._deleted, np.intersect1d(drop, self._ids()))
            self._tune()
        else:
            import faiss

            self._index.remove_ids(faiss.IDSelectorArray(drop))

    def search(self, vector: np.ndarray, k: int) -> Hits:
        k = min(int(k), len(self))
        if k <= 0:
            return []
        q = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        if not len(self._deleted):
            scores, ids = self._index.search(q, k)
            return _sorted_hits(ids[0], scores[0], k)
        import faiss as _faiss

        faiss: Any = _faiss  # its stubs lack the selector parameters
        marked = faiss.IDSelectorBatch(self._deleted)
        skip = faiss.IDSelectorNot(marked)  # both kept alive until the search returns
        scores, ids = self._index.search(q, k, params=faiss.SearchParametersHNSW(sel=skip, efSearch=self.search_ef))
        return _sorted_hits(ids[0], scores[0], k)

    def search_within(self, vector: np.ndarray, k: int, within: Sequence[int]) -> Hits:
        """Exact top-k among ``within``: FAISS skips the other ids as it scans (an ``IDSelectorBatch``). With
        HNSW the graph's own flat storage is scanned instead: a filtered graph walk is approximate and can lose
        most of a small collection's answers, and the filter promises exact results (tests/test_collections.py
        checks both kinds against numpy's exact search)."""
        import faiss as _faiss

        faiss: Any = _faiss  # its stubs lack SearchParameters(sel=) and HNSW's storage
        wanted = np.asarray(within, dtype=np.int64)
        k = min(int(k), len(wanted))
        if k <= 0 or not len(self):
            return []
        q = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        if not self.approximate:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(wanted))
            scores, ids = self._index.search(q, k, params=params)
            return _sorted_hits(ids[0], scores[0], k)
        all_ids = self._ids()
        positions = np.nonzero(np.isin(all_ids, wanted))[0].astype(np.int64)
        storage = faiss.downcast_index(faiss.downcast_index(self._index.index).storage)
        scores, pos = storage.search(q, k, params=faiss.SearchParameters(sel=faiss.IDSelectorBatch(positions)))
        found = pos[0] >= 0
        return _sorted_hits(all_ids[pos[0][found]], scores[0][found], k)

    def score(self, vector: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        """Exact inner products of ``vector`` with the stored vectors of ``ids``."""
        if not len(ids):
            return np.zeros(0, dtype=np.float64)
        rows = np.vstack([self._index.reconstruct(int(i)) for i in ids])
        return rows.astype(np.float64) @ np.asarray(vector, dtype=np.float64)

    def get(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of ``ids`` (reused by incremental builds)."""
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([self._index.reconstruct(int(i)) for i in ids]).astype(np.float32)

    def save(self, folder: Path) -> list[str]:
        import faiss

        faiss.write_index(self._index, str(Path(folder) / self.FILE))
        with open(Path(folder) / self.DELETED, "wb") as fh:
            np.save(fh, self._deleted, allow_pickle=False)
        return [self.FILE, self.DELETED]

    @classmethod
    def load(cls, folder: Path, dim: int, **options) -> FaissStore:
        import faiss

        index: Any = faiss.read_index(str(Path(folder) / cls.FILE))
        if not isinstance(index, faiss.IndexIDMap2):  # a pre-seam index: a bare flat index, rows as ids
            index = faiss.IndexIDMap2(index) if index.ntotal == 0 else _with_row_ids(index)
        if index.d != dim:
            raise ValueError(f"FAISS index has {index.d} dimensions, expected {dim}")
        store = cls(dim, index=index, **options)
        marks = Path(folder) / cls.DELETED
        if marks.exists():  # an index saved before marks were kept has none
            store._deleted = np.sort(np.load(marks, allow_pickle=False).astype(np.int64))
            store._tune()
        return store


def _with_row_ids(flat) -> object:
    import faiss

    out = faiss.IndexIDMap2(faiss.IndexFlatIP(flat.d))
    out.add_with_ids(flat.reconstruct_n(0, flat.ntotal), np.arange(flat.ntotal, dtype=np.int64))
    return out


class NumpyStore(VectorStore):
    """Exact search with one matrix product: the reference the FAISS store is tested against."""

    kind = "numpy"
    FILE = "vectors.npz"
    files = (FILE,)
    scores = True

    def __init__(self, dim: int, **_options) -> None:
        self.dim = int(dim)
        self._ids = np.zeros(0, dtype=np.int64)
        self._vecs = np.zeros((0, self.dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        ids_a = np.asarray(ids, dtype=np.int64)
        self._ids = np.concatenate([self._ids, ids_a])
        self._vecs = np.vstack([self._vecs, np.asarray(vectors, dtype=np.float32).reshape(len(ids_a), self.dim)])

    def delete(self, ids: Sequence[int]) -> None:
        keep = ~np.isin(self._ids, np.asarray(list(ids), dtype=np.int64))
        self._ids, self._vecs = self._ids[keep], self._vecs[keep]

    def search(self, vector: np.ndarray, k: int) -> Hits:
        if not len(self._ids) or k <= 0:
            return []
        return _sorted_hits(self._ids, self._vecs @ np.asarray(vector, dtype=np.float32), int(k))

    def score(self, vector: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        pos = {int(i): n for n, i in enumerate(self._ids)}
        rows = self._vecs[[pos[int(i)] for i in ids]] if len(ids) else np.zeros((0, self.dim), np.float32)
        return rows.astype(np.float64) @ np.asarray(vector, dtype=np.float64)

    def get(self, ids: Sequence[int]) -> np.ndarray:
        pos = {int(i): n for n, i in enumerate(self._ids)}
        return self._vecs[[pos[int(i)] for i in ids]] if len(ids) else np.zeros((0, self.dim), np.float32)

    def save(self, folder: Path) -> list[str]:
        with open(Path(folder) / self.FILE, "wb") as fh:
            np.savez(fh, ids=self._ids, vectors=self._vecs)
        return [self.FILE]

    @classmethod
    def load(cls, folder: Path, dim: int, **options) -> NumpyStore:
        store = cls(dim)
        with np.load(Path(folder) / cls.FILE, allow_pickle=False) as data:
            store._ids, store._vecs = data["ids"].astype(np.int64), data["vectors"].astype(np.float32)
        if store._vecs.shape[1:] != (dim,):
            raise ValueError(f"stored vectors have shape {store._vecs.shape}, expected (n, {dim})")
        return store


def register_store(cls: type[VectorStore], name: str | None = None) -> None:
    """Register a store class: ``cls(dim, **options)`` makes an empty one, ``cls.load(folder, dim, **options)``
    reads a saved one, ``cls.files`` names its files."""
    VECTOR_STORES.register(name or cls.kind, cls, files=tuple(cls.files), load=cls.load)


register_store(FaissStore)
register_store(NumpyStore)


def new_store(kind: str, dim: int, **options) -> VectorStore:
    """An empty store of the registered ``kind``."""
    return VECTOR_STORES.create(kind, dim, **options)


def load_store(kind: str, folder: Path, dim: int, **options) -> VectorStore:
    """The store of ``kind`` saved in ``folder`` (the registered class's ``load``)."""
    VECTOR_STORES.factory(kind)  # an unknown kind: the typed "unknown backend" error
    load: Callable[..., VectorStore] = VECTOR_STORES.traits(kind)["load"]
    return load(folder, dim, **options)


def store_class(kind: str) -> type[VectorStore]:
    return VECTOR_STORES.factory(kind)  # type: ignore[return-value]


def store_files() -> dict[str, tuple[str, ...]]:
    """Every registered store's file names, by kind."""
    return {kind: VECTOR_STORES.traits(kind).get("files", ()) for kind in VECTOR_STORES}
