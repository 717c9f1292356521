"""Resident memory of one S3 flush's steps: read the spool range, group it, publish it to a moto server.

Usage: .venv/bin/python bench/flush_memory.py [--events 28000] [--rounds 3]
Writes ``--events`` bench events (``read_bench.make_event``, 100 a record, about 16 MiB for the default,
the default S3 object bound; ``--events 110000`` is a 64 MiB flush)
into a spool segment, then flushes that range ``--rounds`` times through the writer's own code:
``read_range``, ``group_range``, ``S3Store.encoder`` and ``write`` to a ``moto.server`` process on loopback. A
thread samples resident memory every 0.5 ms. After each step it prints the resident size, the peak since
the previous step and Arrow's pool (now and its maximum). Each round ends with ``hand_back_free_memory``
(``malloc_trim`` and Arrow's purge), as the writer does after a flush when it is large. Memory is set up
as in the S3 writer (``native_memory``: capped arenas, heap reuse, Arrow on jemalloc keeping freed pages
``arrow_keep_freed_ms("s3")``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import pyarrow as pa  # noqa: E402

from flush_bench import records, writer_memory  # noqa: E402
from moto_process import start_moto, stop_moto  # noqa: E402
from shared import native_memory, spool_format  # noqa: E402
from shared.s3_client import make_s3_client  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.s3.conftest import CREDENTIALS  # noqa: E402
from writer.batches import group_range  # noqa: E402
from writer.s3_store import S3Store  # noqa: E402
from writer.spool import Spool, read_range  # noqa: E402


class PeakSampler:
    """Resident memory sampled every 0.5 ms in a daemon thread; ``take`` returns the peak and starts anew."""

    def __init__(self) -> None:
        self.peak = native_memory.resident_bytes()
        self._lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            resident = native_memory.resident_bytes()
            with self._lock:
                self.peak = max(self.peak, resident)
            time.sleep(0.0005)

    def take(self) -> int:
        """The peak since the last call."""
        with self._lock:
            peak, self.peak = self.peak, native_memory.resident_bytes()
        return peak


def write_segment(directory: Path, count: int) -> None:
    """One spool segment holding ``count`` bench events, 100 a record."""
    with open(directory / spool_format.segment_name(1), "wb") as out:
        spooled, _ = records(count)  # the lines only: a range without typed fields, parsed at the flush
        for index, record in enumerate(spooled):
            out.write(spool_format.encode_record(index + 1, 1000 + index, record.payload))


def main() -> None:
    """Parse arguments, build the spool, flush it ``--rounds`` times and print each step's memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=28_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    writer_memory("s3")
    os.environ.update(CREDENTIALS)
    moto, endpoint, _ = start_moto("flush-memory")
    directory = Path(tempfile.mkdtemp(prefix="auditlake-flushmem-"))
    try:
        write_segment(directory, args.events)
        settings = Settings.from_env({**os.environ, "AUDIT_SERVICE_BACKEND": "s3", "AUDIT_SERVICE_S3_BUCKET":
                                      "flush-memory", "AUDIT_SERVICE_S3_ENDPOINT_URL": endpoint})
        client = make_s3_client(settings)
        store = S3Store(settings, client, client)
        spool = Spool(directory, 1 << 40, 1 << 40)
        spool.open()
        entries = list(spool.index)
        print(f"{len(entries)} records, {sum(entry.length for entry in entries) / 2**20:.1f} MiB; MB resident")
        native_memory.hand_back_free_memory()
        sampler = PeakSampler()

        def report(step: str) -> None:
            time.sleep(0.02)
            pool = pa.default_memory_pool()
            print(f"{step:8s} now {native_memory.resident_bytes() / 1e6:6.0f}  peak {sampler.take() / 1e6:6.0f}  "
                  f"arrow {pool.bytes_allocated() / 1e6:5.0f}  arrow max {pool.max_memory() / 1e6:5.0f}", flush=True)

        report("start")
        for _ in range(args.rounds):
            span = read_range(entries)
            report("read")
            batch = group_range(span, None)
            del span
            report("group")
            store.write(store.encoder()(batch))
            report("write")
            del batch
            native_memory.hand_back_free_memory()
            report("trimmed")
        spool.release()
    finally:
        stop_moto(moto)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
