"""Near-duplicate grouping (index/ingest/dedup.py) is the all-pairs answer, found without all pairs."""

from __future__ import annotations

import itertools
import random

import pytest

from index.ingest.dedup import MAX_BITS, groups


def all_pairs(hashes: dict[str, int], max_bits: int) -> dict[str, str]:
    """The reference: compare every pair; a group is led by its first document."""
    ids = list(hashes)
    lead = {i: i for i in ids}
    for a, b in itertools.combinations(ids, 2):
        if bin(hashes[a] ^ hashes[b]).count("1") <= max_bits and lead[a] != lead[b]:
            old, new = max(lead[a], lead[b], key=ids.index), min(lead[a], lead[b], key=ids.index)
            lead = {i: new if g == old else g for i, g in lead.items()}
    return lead


@pytest.mark.parametrize("max_bits", [MAX_BITS, 3, 9])
def test_groups_are_the_all_pairs_groups(max_bits: int) -> None:
    rng = random.Random(max_bits)
    for _ in range(25):
        stories = [rng.getrandbits(64) for _ in range(rng.randint(1, 30))]
        hashes = {}
        for n in range(rng.randint(1, 120)):
            h = rng.choice(stories)
            for _ in range(rng.randint(0, 9)):  # a copy edited by a few bits, near the threshold or past it
                h ^= 1 << rng.randrange(64)
            hashes[f"d{n}"] = h
        assert groups(hashes, max_bits) == all_pairs(hashes, max_bits)


def test_edge_cases() -> None:
    assert groups({}) == {} and groups({"a": 7}) == {"a": "a"}
    assert groups({"a": 1, "b": 1, "c": 1 ^ (1 << 63)}) == {"a": "a", "b": "a", "c": "a"}
    assert groups({"a": 0, "b": (1 << 7) - 1}) == {"a": "a", "b": "b"}  # 7 bits apart: two stories
