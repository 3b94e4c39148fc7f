"""Near-duplicate articles: the same wire story published by several outlets.

Each document gets a 64-bit SimHash of its text (trafilatura's); two documents whose hashes differ in
at most ``MAX_BITS`` bits are the same story. Hashes are compared within bands of 8 bits: two hashes
that differ in at most 7 bits agree on at least one of the 8 bands, so only documents sharing a band are
compared, not every pair.
"""

from __future__ import annotations

import itertools

MAX_BITS = 6  # of 64: about 90% similar, what trafilatura calls a near duplicate


def simhash(text: str) -> int:
    from trafilatura.deduplication import Simhash

    return int(Simhash(" ".join(text.split())).hash)


def groups(hashes: dict[str, int], max_bits: int = MAX_BITS) -> dict[str, str]:
    """``{document id: the first id (in the given order) of its near-duplicate group}``.

    Two hashes within ``max_bits`` bits differ in at most ``max_bits`` of their eight bytes, so they agree
    on at least ``8 - max_bits`` bytes: hashes are bucketed by every such choice of bytes (28 keys of 16
    bits for 6 bits) and only hashes sharing a bucket are compared, with NumPy. Buckets hold about
    n / 65,536 hashes instead of the n / 256 of the 8-bit bands this replaces, whose pairs made 90k
    articles take 143 s at the first question (issue 19). Identical hashes (wire copies) are grouped first.
    """
    ids = list(hashes)
    by_hash: dict[int, list[str]] = {}
    for i in ids:
        by_hash.setdefault(hashes[i], []).append(i)
    uniq = list(by_hash)  # in order of first appearance
    parent = list(range(len(uniq)))

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in _close_pairs(uniq, max_bits):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the earlier hash (so the earlier document) leads
    return {i: by_hash[uniq[root(n)]][0] for n, h in enumerate(uniq) for i in by_hash[h]}


def _close_pairs(uniq: list[int], max_bits: int) -> list[tuple[int, int]]:
    """Pairs of positions in ``uniq`` whose hashes differ in at most ``max_bits`` bits (see ``groups``)."""
    import numpy as np

    arr = np.array(uniq, dtype=np.uint64)
    agree = 8 - max_bits
    if agree <= 0 or len(arr) < 2:  # too loose a threshold to bucket (or nothing to pair): every pair
        pairs = np.array(list(itertools.combinations(range(len(arr)), 2)), dtype=np.int64).reshape(-1, 2)
    else:
        pairs = np.vstack([_bucket_pairs(arr, chosen) for chosen in itertools.combinations(range(8), agree)])
    if not len(pairs):
        return []
    close = np.bitwise_count(arr[pairs[:, 0]] ^ arr[pairs[:, 1]]) <= max_bits
    return sorted({(int(a), int(b)) for a, b in pairs[close]})  # a close pair shares several buckets: once


def _bucket_pairs(arr, chosen: tuple[int, ...]):
    """Pairs (i < j) of hashes that agree on the bytes ``chosen``: the runs of equal keys once sorted."""
    import numpy as np

    key = np.zeros(len(arr), dtype=np.uint64)
    for byte in chosen:
        key = (key << np.uint64(8)) | ((arr >> np.uint64(8 * byte)) & np.uint64(0xFF))
    order = np.argsort(key, kind="stable")
    ks = key[order]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    sizes = np.diff(np.r_[starts, len(ks)])
    out = [np.zeros((0, 2), dtype=np.int64)]
    for size in np.unique(sizes[sizes > 1]):
        first = starts[sizes == size]
        i, j = np.triu_indices(int(size), k=1)
        a, b = order[first[:, None] + i], order[first[:, None] + j]
        out.append(np.stack([np.minimum(a, b).ravel(), np.maximum(a, b).ravel()], axis=1))
    return np.vstack(out)
