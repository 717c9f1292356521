"""Time of one flush's dedupe lookup against a full window: ``DedupeWindow.seen``, and two searches without its filters.

Usage: .venv/bin/python bench/dedupe_lookup.py [--ids 1000000] [--flush 10000] [--rounds 20]
Fills a ``DedupeWindow`` (files in a temporary directory) with ``--ids`` random 64-bit hashes, the
default bound (10 segments of a tenth each), then looks up ``--flush`` hashes, a tenth of them
remembered. Prints the best of ``--rounds`` in ms for ``seen`` as the writer calls it (each segment's bit
filter first, then a search of the sorted candidates), for every key searched in every segment with the
keys sorted (``seen`` before the filters) and in arrival order (before that), and the ratios, measured in
one run.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flush_bench import best  # noqa: E402
from writer.dedupe import DedupeWindow  # noqa: E402


def unfiltered_seen(window: DedupeWindow, values: np.ndarray) -> set[int]:
    """``seen`` without the bit filters: every key searched in every segment, sorted first."""
    return unsorted_seen(window, np.sort(values))


def unsorted_seen(window: DedupeWindow, values: np.ndarray) -> set[int]:
    """``seen`` without the bit filters and without sorting the keys first."""
    found = np.zeros(len(values), dtype=bool)
    for segment in window.segments:
        places = np.searchsorted(segment.ids, values)
        found |= segment.ids[np.minimum(places, len(segment.ids) - 1)] == values
    return set(values[found].tolist())


def main() -> None:
    """Fill the window, time both lookups, check they agree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--flush", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    generator = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="auditlake-dedupe-") as directory:
        window = DedupeWindow(Path(directory), 3 * 3600, args.ids)
        remembered: list[int] = []
        for _ in range(0, args.ids, window.segment_ids):
            batch = [generator.getrandbits(64) for _ in range(window.segment_ids)]
            window.remember(batch)
            remembered += generator.sample(batch, min(len(batch), max(100, args.flush // 10)))  # enough to draw a tenth of any --flush from
        fresh = args.flush - args.flush // 10
        values = np.array([generator.getrandbits(64) for _ in range(fresh)]
                          + generator.sample(remembered, args.flush // 10), dtype=np.uint64)
        np.random.default_rng(7).shuffle(values)
        assert window.seen(values) == unfiltered_seen(window, values) == unsorted_seen(window, values)
        filtered_ms = best(lambda: window.seen(values), args.rounds) * 1000
        sorted_ms = best(lambda: unfiltered_seen(window, values), args.rounds) * 1000
        unsorted_ms = best(lambda: unsorted_seen(window, values), args.rounds) * 1000
    print(f"{len(window.segments)} segments, {window.size} ids; {args.flush} hashes looked up, best of {args.rounds}:")
    print(f"  seen (filters, then sorted candidates): {filtered_ms:.2f} ms; without filters, keys sorted: "
          f"{sorted_ms:.2f} ms (ratio {sorted_ms / filtered_ms:.1f}); keys in arrival order: {unsorted_ms:.2f} ms "
          f"(ratio {unsorted_ms / filtered_ms:.1f})")


if __name__ == "__main__":
    main()
