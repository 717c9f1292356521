"""PublishedRanges: a seq is published under a key exactly when one of the key's ranges holds it."""

from __future__ import annotations

import random

from ingest.published_ranges import PublishedRanges


def test_lookups_equal_testing_every_range() -> None:
    """Overlapping, adjacent, nested and single-seq ranges, several keys, ranges added after lookups."""
    generator = random.Random(11)
    ranges = PublishedRanges()
    plain: dict[str, list[tuple[int, int]]] = {}
    for round_ in range(3):
        for _ in range(200):
            key = generator.choice("abc")
            first = generator.randrange(10_000)
            last = first + generator.choice([0, 1, 5, 50, 400])
            ranges.add(key, first, last)
            plain.setdefault(key, []).append((first, last))
        for seq in range(-2, 10_500):
            for key in "abcd":
                expected = any(first <= seq <= last for first, last in plain.get(key, ()))
                assert ranges.contains(key, seq) == expected, (round_, key, seq)
