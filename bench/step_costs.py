"""Hot-loop costs of a few steps, the way they were done before and the way they are done now, in one run.

Usage: .venv/bin/python bench/step_costs.py [--rounds 7]
Best of ``--rounds`` for each, in one run so that the pairs are comparable on a noisy machine:
- ingest's bracket bound for a 100-event body (``compact_batch._lines_within_depth``): every line's
  brackets counted, against the runs of brackets tested first;
- a flush's sort of 28,000 stamps: Arrow's ``sort_indices`` of the strings against numpy's stable sort of
  their microseconds, for stamps as the benchmark posts them (runs of 100 descending), jittered around
  arrival order, and random;
- a flush's id hashes for 28,000 ids: 64-bit BLAKE2b of each id's bytes taken from the column
  (``id_hashes.legacy_column_hashes``, the hash until the thirty-second session), against the whole column
  hashed at once in numpy (``id_hashes.column_hashes``);
- a flush's dedupe bookkeeping for 28,000 new ids: merging them into a segment of 84,000 (the new values'
  ``np.unique``, ``searchsorted`` and ``np.insert``, against ``dedupe._merged``'s one sort of both), and the
  first row of each id in a range (``np.unique(return_index=True)``, against ``batches.first_of_each``).
Each pair but the id hashes is checked to give the same result (the hashes differ by design; each is
checked to tell the 28,000 ids apart).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from ingest.compact_batch import _LINE_BRACKETS, _lines_within_depth, canonical_events  # noqa: E402
from read_bench import make_event  # noqa: E402
from shared.s3_layout import UTC_MICROS  # noqa: E402
from writer.batches import first_of_each  # noqa: E402
from writer.dedupe import _merged  # noqa: E402
from writer.id_hashes import column_hashes, legacy_column_hashes  # noqa: E402

FLUSH_EVENTS = 28_000


def best(step: Callable[[], object], rounds: int, repeat: int) -> float:
    """Best-of-``rounds`` milliseconds for one call of ``step`` (``repeat`` calls timed together)."""
    fastest = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeat):
            step()
        fastest = min(fastest, (time.perf_counter() - started) / repeat)
    return fastest * 1000


def every_line_counted(lines: list[bytes]) -> bool:
    """The bracket bound as it was: the lines joined, each line's brackets counted by its end offset."""
    data = np.frombuffer(b"".join(lines), dtype=np.uint8)
    positions = np.flatnonzero((data == ord("{")) | (data == ord("[")))
    if len(positions) <= _LINE_BRACKETS:
        return True
    ends = np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)))
    return int(np.bincount(np.searchsorted(ends, positions, side="right")).max()) <= _LINE_BRACKETS


def inserted(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A segment's merge as it was: the new values made unique, those not present inserted in place."""
    values = np.unique(values)
    places = np.searchsorted(ids, values)
    present = ids[np.minimum(places, len(ids) - 1)] == values
    return np.insert(ids, places[~present], values[~present])


def unique_firsts(hashes: np.ndarray) -> np.ndarray:
    """A range's first row of each hash as it was found: ``np.unique`` with its indices."""
    keep = np.zeros(len(hashes), dtype=bool)
    keep[np.unique(hashes, return_index=True)[1]] = True
    return keep


def stamps(offsets_us: np.ndarray) -> pa.Array:
    """Canonical stamps at these microseconds after 2026-12-06."""
    start = datetime(2026, 12, 6, tzinfo=timezone.utc)
    return pa.array([(start + timedelta(microseconds=int(offset))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                     for offset in offsets_us], pa.string())


def main() -> None:
    """Time the pairs, print milliseconds and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    now = datetime.now(timezone.utc)
    events = [make_event(now - timedelta(seconds=index), index) for index in range(100)]
    body = orjson.dumps({"events": events})
    lines = canonical_events(body, orjson.loads(body))
    assert lines is not None
    longest = max(map(len, lines))
    assert every_line_counted(lines) == _lines_within_depth(lines, longest)
    before = best(lambda: every_line_counted(lines), args.rounds, 2000)
    after = best(lambda: _lines_within_depth(lines, longest), args.rounds, 2000)
    print(f"bracket bound, 100-event body: every line counted {before * 1000:.1f} µs, runs first {after * 1000:.1f} µs"
          f" ({before / after:.2f}x)")

    generator = np.random.default_rng(7)
    orders = {"as posted (runs of 100 descending)": np.tile(np.arange(100)[::-1] * 1_000_000, FLUSH_EVENTS // 100),
              "jittered around arrival": np.arange(FLUSH_EVENTS) * 5000 + generator.integers(0, 2_000_000, FLUSH_EVENTS),
              "random": generator.integers(0, 3_000_000_000, FLUSH_EVENTS)}
    for name, offsets in orders.items():
        column = stamps(offsets)
        micros = np.asarray(column.cast(UTC_MICROS).cast(pa.int64()))
        assert np.array_equal(np.asarray(pc.sort_indices(column)), np.argsort(micros, kind="stable"))
        before = best(lambda: pc.sort_indices(column), args.rounds, 10)
        after = best(lambda: np.argsort(micros, kind="stable"), args.rounds, 10)
        print(f"sort of {FLUSH_EVENTS:,} stamps, {name}: strings {before:.2f} ms, microseconds {after:.2f} ms"
              f" ({before / after:.1f}x)")

    ids = pa.chunked_array([pa.array([str(uuid.uuid4()) for _ in range(FLUSH_EVENTS)], pa.string())])
    assert len(np.unique(legacy_column_hashes(ids))) == len(np.unique(column_hashes(ids))) == FLUSH_EVENTS
    before = best(lambda: legacy_column_hashes(ids), args.rounds, 3)
    after = best(lambda: column_hashes(ids), args.rounds, 3)
    print(f"id hashes of {FLUSH_EVENTS:,} ids: BLAKE2b per id {before:.2f} ms, the column at once {after:.2f} ms"
          f" ({before / after:.1f}x)")

    segment = np.unique(generator.integers(0, 2**64 - 1, 3 * FLUSH_EVENTS, dtype=np.uint64))
    hashes = generator.integers(0, 2**64 - 1, FLUSH_EVENTS, dtype=np.uint64)
    hashes[:100] = hashes[-100:]  # a few retries within the range
    assert np.array_equal(inserted(segment, hashes), _merged(segment, hashes))
    assert np.array_equal(unique_firsts(hashes), first_of_each(hashes))
    for name, old, new in (("merge into a segment", lambda: inserted(segment, hashes), lambda: _merged(segment, hashes)),
                           ("first row of each id", lambda: unique_firsts(hashes), lambda: first_of_each(hashes))):
        before = best(old, args.rounds, 5)
        after = best(new, args.rounds, 5)
        print(f"{name}, {FLUSH_EVENTS:,} ids: np.unique's way {before:.2f} ms, now {after:.2f} ms ({before / after:.1f}x)")


if __name__ == "__main__":
    main()
