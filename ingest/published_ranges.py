"""Spool seq ranges already published, per day or partition: is a spooled event's seq among them (bisect)."""

from __future__ import annotations

import bisect
from collections.abc import Hashable


class PublishedRanges:
    """Inclusive (first, last) seq ranges by key; lookups cost O(log ranges), not one test per file.

    While ingest runs, a read sees thousands of spooled events and a day has hundreds of files; testing
    every event against every file's range held the GIL for most of a read.
    """

    def __init__(self) -> None:
        self._ranges: dict[Hashable, list[tuple[int, int]]] = {}
        self._merged: dict[Hashable, tuple[list[int], list[int]]] = {}

    def add(self, key: Hashable, first: int, last: int) -> None:
        """Record that seqs first..last are published under ``key``."""
        self._ranges.setdefault(key, []).append((first, last))
        self._merged.pop(key, None)

    def contains(self, key: Hashable, seq: int) -> bool:
        """Whether ``seq`` lies in a range published under ``key``."""
        merged = self._merged.get(key)
        if merged is None:
            ranges = self._ranges.get(key)
            if not ranges:
                return False
            merged = self._merged[key] = _merge(ranges)
        firsts, lasts = merged
        index = bisect.bisect_right(firsts, seq) - 1
        return index >= 0 and seq <= lasts[index]


def _merge(ranges: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Sorted, non-overlapping ranges as parallel lists of starts and ends."""
    firsts: list[int] = []
    lasts: list[int] = []
    for first, last in sorted(ranges):
        if lasts and first <= lasts[-1] + 1:
            lasts[-1] = max(lasts[-1], last)
        else:
            firsts.append(first)
            lasts.append(last)
    return firsts, lasts
