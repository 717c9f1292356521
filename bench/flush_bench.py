"""CPU per event of a writer flush's steps (group, Parquet, gzip), alone and beside a busy Python thread.

Usage: .venv/bin/python bench/flush_bench.py [--events 14000] [--rounds 8]
Builds spool records of ``--events`` bench events (``read_bench.make_event``, 100 per record, as ingest
stores them) with the typed fields ingest sends beside them, then times each step (best of ``--rounds``)
in µs per event: grouping from the typed fields (what a flush does), grouping by parsing the lines (a
range without them, from an older ingest or a mismatch), the day's NDJSON gathered in ``ts`` order, its
gzip, the Parquet sidecar. No dedupe window is searched (``bench/dedupe_lookup.py`` times that). The second column runs the same
step while another thread spins Python code, as the writer's event loop does during a flush: a step
that takes the GIL often (a Python file object as a sink, per-line Python work) slows down there.
Last it prints the bytes stored per event (the Parquet objects of the days, the gzip file). Run it at two commits to compare them (``git stash`` or a worktree); the figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import orjson  # noqa: E402
from isal import igzip  # noqa: E402

from ingest.compact_batch import canonical_events, prepare  # noqa: E402
from read_bench import make_event  # noqa: E402
from shared import native_memory, typed_columns  # noqa: E402
from shared.spool_format import SpoolRange, SpoolRecord  # noqa: E402
from writer import event_table, parquet_encode  # noqa: E402
from writer.batches import group_range  # noqa: E402
from writer.local_store import GZIP_LEVEL  # noqa: E402

RECEIVED_AT = "2026-11-29T12:00:00.000000Z"


def records(count: int) -> tuple[list[SpoolRecord], list[bytes]]:
    """Spool records of ``count`` events, 100 a record, lines as ingest's fast path writes them, and each
    record's typed fields as its frame carries them (``typed_columns.frame_section`` of one request)."""
    now = datetime.now(timezone.utc)
    made, columns = [], []
    for seq in range(1, count // 100 + 1):
        events = [make_event(now - timedelta(seconds=index), index) for index in range(100)]
        body = orjson.dumps({"events": events})
        prepared = prepare(events, canonical_events(body, {"events": events}), body, RECEIVED_AT, None, 65536)
        assert prepared is not None and prepared[1] is not None, "the bench events take the fast path"
        made.append(SpoolRecord(seq, seq, prepared[0]))
        columns.append(typed_columns.frame_section([prepared[1]]))
    return made, columns


def writer_memory(backend: str) -> None:
    """Set this process's allocators up as the writer's on ``backend``: capped arenas and heap reuse
    (``shared.event_loop.run``), Arrow on jemalloc keeping freed pages ``arrow_keep_freed_ms(backend)``."""
    native_memory.limit_arenas()
    native_memory.reuse_big_blocks()
    native_memory.arrow_on_jemalloc(native_memory.arrow_keep_freed_ms(backend))


def best(step: Callable[[], object], rounds: int) -> float:
    """The fastest of ``rounds`` runs, in seconds."""
    fastest = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        step()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest


def beside_busy_thread(step: Callable[[], object], rounds: int) -> float:
    """``best`` while another thread runs Python code without pause."""
    stop = threading.Event()

    def spin() -> None:
        count = 0
        while not stop.is_set():
            count += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        return best(step, rounds)
    finally:
        stop.set()
        spinner.join()


def main() -> None:
    """Time the steps; print µs per event, then the stored bytes per event."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=14_000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    sys.setswitchinterval(0.0005)  # as shared.event_loop sets it in both processes
    writer_memory("local")
    spooled, columns = records(args.events)
    span = SpoolRange.of(spooled)
    events = sum(record.event_count for record in spooled)
    batch = group_range(span, None, columns)
    assert not batch.parsed, "the typed fields were refused"
    days = list(batch.days.values())
    body = b"".join(bytes(event_table.concatenated(event_table.one_array(day.column("line")))) for day in days)
    steps: dict[str, Callable[[], object]] = {
        "group_range, typed fields (ids, sort, days)": lambda: group_range(span, None, columns),
        "group_range, lines parsed (no typed fields)": lambda: group_range(span),
        "NDJSON of the days, gathered in ts order": lambda: [
            event_table.concatenated(event_table.one_array(day.column("line"))) for day in days],
        f"gzip (ISA-L level {GZIP_LEVEL})": lambda: igzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0),
        "Parquet encode (typed table, write, verify)": lambda: [parquet_encode.encode(day) for day in days],
    }
    print(f"{events} events, {len(body) / events:.0f} bytes each; µs per event (best of {args.rounds})")
    print(f"{'step':46s} {'alone':>8s} {'beside a busy thread':>22s}")
    total = [0.0, 0.0]
    for name, step in steps.items():
        alone = best(step, args.rounds) / events * 1e6
        busy = beside_busy_thread(step, args.rounds) / events * 1e6
        if "lines parsed" not in name:  # the alternative to the typed grouping, not a step of the same flush
            total = [total[0] + alone, total[1] + busy]
        print(f"{name:46s} {alone:8.2f} {busy:22.2f}")
    print(f"{'total of a flush (typed grouping)':46s} {total[0]:8.2f} {total[1]:22.2f}")
    parquet_bytes = sum(len(parquet_encode.encode(day)) for day in days)
    gzip_bytes = len(igzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0))
    print(f"stored bytes per event: Parquet {parquet_bytes / events:.1f}, gzip {gzip_bytes / events:.1f}")


if __name__ == "__main__":
    main()
