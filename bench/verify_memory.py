"""Reading a fresh Parquet object back for verification: its row group decoded whole, or a batch at a time.

Usage: .venv/bin/python bench/verify_memory.py [--events 28000] [--rounds 8]
Encodes ``--events`` bench events (``read_bench.make_event``; 28,000 is about 16 MiB of lines, a full S3
object of the default bound, in one row group) as the writer does, then alternates the two ways of
reading its first and last ``record_json`` back: ``read_row_group`` of the row groups (before) and
``parquet_encode.verify`` (batches of ``VERIFY_BATCH_ROWS``). For each it prints the fastest round, the
most Arrow held at once during a round (its own proxy pool), and the minor page faults of a round (the
fresh pages an allocation touches). Memory is set up as in the S3 writer (``native_memory``), and the
rounds run on one thread started after it, as the writer's flushes do (jemalloc keeps a thread's freed
pages differently on the main thread).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from flush_bench import records, writer_memory  # noqa: E402
from writer import parquet_encode  # noqa: E402
from writer.batches import group_records  # noqa: E402


def whole_row_groups(data: bytes, events: pa.Table) -> None:
    """The previous read-back: the first and last row groups' ``record_json`` decoded whole."""
    reader = pq.ParquetFile(pa.BufferReader(data))
    groups = reader.metadata.num_row_groups
    first = reader.read_row_group(0, columns=["record_json"], use_threads=False).column(0)
    last = first if groups == 1 else reader.read_row_group(groups - 1, columns=["record_json"],
                                                          use_threads=False).column(0)
    lines = events.column("line")
    if first[0].as_py() + "\n" != lines[0].as_py() or last[-1].as_py() + "\n" != lines[-1].as_py():
        raise parquet_encode.VerificationError("object does not read back as written")


def one_round(step: Callable[[], None]) -> tuple[float, int, int]:
    """Seconds, the most Arrow memory held at once, and the minor page faults of one run of ``step``."""
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    try:
        started = time.perf_counter()
        step()
        seconds = time.perf_counter() - started
    finally:
        pa.set_memory_pool(previous)
    return seconds, pool.max_memory(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def main() -> None:
    """Encode once, alternate the two read-backs, print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=28_000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    writer_memory("s3")
    day = max(group_records(records(args.events)).days.values(), key=lambda table: table.num_rows)
    data = parquet_encode.to_parquet(parquet_encode.typed_table(day))
    groups = pq.ParquetFile(pa.BufferReader(data)).metadata.num_row_groups
    print(f"{day.num_rows} events, object {len(data) / 2**20:.1f} MiB, {groups} row group(s); "
          f"batches of {parquet_encode.VERIFY_BATCH_ROWS} rows")
    ways = {"row groups whole (before)": lambda: whole_row_groups(data, day),
            "parquet_encode.verify": lambda: parquet_encode.verify(data, day)}
    results: dict[str, list[tuple[float, int, int]]] = {name: [] for name in ways}
    with ThreadPoolExecutor(1) as flush_thread:  # as the writer's flusher: its own thread, started after the pool
        for _ in range(args.rounds):
            for name, step in ways.items():
                results[name].append(flush_thread.submit(one_round, step).result())
    print(f"{'read-back':28s} {'best ms':>8s} {'Arrow peak MiB':>15s} {'page faults':>12s}")
    for name, rounds in results.items():
        print(f"{name:28s} {min(r[0] for r in rounds) * 1e3:8.2f} {max(r[1] for r in rounds) / 2**20:15.1f} "
              f"{min(r[2] for r in rounds):12d}")


if __name__ == "__main__":
    main()
