"""fsync latency of spool-like appends while flushed 64 MiB segments are removed: unlinked at once, or by the reaper.

Usage: python3 bench/segment_removal.py [--dir /var/tmp/auditlake-reap] [--segments 12] [--segment-mib 64]
A thread appends 100 KB and fsyncs it every millisecond, as the spool's group commit does at about half
the maximum. Meanwhile segments are written and fsync'd, and each is removed 0.4 s later, in alternation:
unlinked at once (the writer before ``writer/segment_reaper.py``) or handed to a ``SegmentReaper`` with its
default steps. Prints, for each way, the appends that started during a removal or within 0.2 s after it
(p50 / p99 / max in ms), and the time a removal took. Uses only the directory given (created, then
removed); put it on the disk the spool would use. Figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from writer.segment_reaper import SegmentReaper  # noqa: E402

APPEND_BYTES = 100_000
AFTER_SECONDS = 0.2


def append_and_fsync(path: Path, stop: threading.Event, latencies: list[tuple[float, float]]) -> None:
    """Append and fsync until stopped; (start, seconds) of each."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    data = os.urandom(APPEND_BYTES)
    try:
        while not stop.is_set():
            started = time.monotonic()
            os.write(fd, data)
            os.fsync(fd)
            latencies.append((started, time.monotonic() - started))
            time.sleep(0.001)
    finally:
        os.close(fd)


def remove(path: Path, how: str) -> float:
    """Remove a segment one way; the seconds it took."""
    started = time.monotonic()
    if how == "at once":
        path.unlink()
    else:
        reaper = SegmentReaper()
        reaper.remove([path])
        while reaper.removed == 0:
            time.sleep(0.001)
        reaper.close()
    return time.monotonic() - started


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))] * 1000


def main() -> None:
    """Alternate the two ways of removing; print the appends' latency around each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/auditlake-reap"))
    parser.add_argument("--segments", type=int, default=12)
    parser.add_argument("--segment-mib", type=int, default=64)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    latencies: list[tuple[float, float]] = []
    appender = threading.Thread(target=append_and_fsync, args=(args.dir / "spool", stop, latencies))
    appender.start()
    blob = os.urandom(args.segment_mib << 20)
    removals: dict[str, list[tuple[float, float]]] = {"at once": [], "reaper": []}
    try:
        for index in range(args.segments):
            path = args.dir / f"segment-{index}"
            with open(path, "wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            time.sleep(0.4)
            how = "at once" if index % 2 == 0 else "reaper"
            started = time.monotonic()
            removals[how].append((started, remove(path, how)))
            time.sleep(0.6)
    finally:
        stop.set()
        appender.join()
        shutil.rmtree(args.dir, ignore_errors=True)
    for how, spans in removals.items():
        near = [seconds for started, seconds in latencies
                if any(begin <= started <= begin + took + AFTER_SECONDS for begin, took in spans)]
        took_ms = sum(took for _, took in spans) / len(spans) * 1000
        print(f"{how:8s} removal {took_ms:6.1f} ms; {len(near)} appends during or after it: p50 "
              f"{quantile(near, 0.5):.2f} p99 {quantile(near, 0.99):.2f} max {max(near) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
