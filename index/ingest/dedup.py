"""Near-duplicate articles: the same wire story published by several outlets.

Each document gets a 64-bit SimHash of its text (trafilatura's); two documents whose hashes differ in
at most ``MAX_BITS`` bits are the same story. Hashes are compared within bands of 8 bits: two hashes
that differ in at most 7 bits agree on at least one of the 8 bands, so only documents sharing a band are
compared, not every pair.
"""

from __future__ import annotations

MAX_BITS = 6  # of 64: about 90% similar, what trafilatura calls a near duplicate


def simhash(text: str) -> int:
    from trafilatura.deduplication import Simhash

    return int(Simhash(" ".join(text.split())).hash)


def groups(hashes: dict[str, int], max_bits: int = MAX_BITS) -> dict[str, str]:
    """``{document id: the first id (in the given order) of its near-duplicate group}``."""
    ids = list(hashes)
    parent = {i: i for i in ids}

    def root(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = {i: n for n, i in enumerate(ids)}
    buckets: dict[tuple[int, int], list[str]] = {}
    for i in ids:
        for band in range(8):
            buckets.setdefault((band, (hashes[i] >> (8 * band)) & 0xFF), []).append(i)
    for members in buckets.values():
        for a_pos, a in enumerate(members):
            for b in members[a_pos + 1:]:
                if bin(hashes[a] ^ hashes[b]).count("1") <= max_bits:
                    ra, rb = root(a), root(b)
                    if ra != rb:
                        first, second = (ra, rb) if order[ra] < order[rb] else (rb, ra)
                        parent[second] = first
    return {i: root(i) for i in ids}
