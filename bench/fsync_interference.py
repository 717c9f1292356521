"""fsync latency of 50 KB spool-like appends, alone and while 8 MiB files are written and fsync'd beside them.

Usage: python3 bench/fsync_interference.py [--dir /var/tmp/auditlake-fsync] [--appends 300] [--piece-bytes N]
                                          [--preallocated]
The writer's group commit fsyncs the spool while a flush writes its NDJSON and Parquet files on the same
file system; this shows how much a flush's writes delay the commit (p50 / p99 / max in ms). Uses only
the directory given (created, then removed); put it on the disk the spool would use. ``--preallocated``
writes into a file already written with zeros and fsync'd, with ``fdatasync`` (the file's size never
changes, so the commit needs no journal entry); the spool does not do this today.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import threading
import time
from pathlib import Path

APPEND_BYTES = 50_000
FILE_BYTES = 8 * 1024 * 1024
FILE_PAUSE_SECONDS = 0.25


def write_files(directory: Path, stop: threading.Event, piece_bytes: int) -> None:
    """Write, fsync and rename 8 MiB files every 0.25 s until stopped (a flush's publish), written back
    ``piece_bytes`` at a time (``fdatasync`` after each piece; 0: one fsync at the end)."""
    data = os.urandom(FILE_BYTES)
    step = piece_bytes or FILE_BYTES
    number = 0
    while not stop.is_set():
        temporary = directory / f"file-{number % 4}.tmp"
        with open(temporary, "wb") as handle:
            for start in range(0, FILE_BYTES, step):
                handle.write(data[start:start + step])
                handle.flush()
                os.fdatasync(handle.fileno())
            os.fsync(handle.fileno())
        os.replace(temporary, directory / f"file-{number % 4}")
        number += 1
        stop.wait(FILE_PAUSE_SECONDS)


def append_latencies(fd: int, appends: int, preallocated: bool) -> tuple[float, float, float]:
    """p50, p99 and max milliseconds of ``appends`` append+fsync rounds, 3 ms apart (``preallocated``: a
    write at the file's next unwritten offset and ``fdatasync``)."""
    latencies = []
    for _ in range(appends):
        os.write(fd, b"x" * APPEND_BYTES)  # preallocated: not O_APPEND, so it moves over the zeros
        started = time.perf_counter()
        if preallocated:
            os.fdatasync(fd)
        else:
            os.fsync(fd)
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.003)
    latencies.sort()
    return (round(statistics.median(latencies), 2), round(latencies[int(len(latencies) * 0.99)], 2),
            round(latencies[-1], 2))


def main() -> None:
    """Measure alone, then beside the file writes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/auditlake-fsync"))
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--piece-bytes", type=int, default=0,
                        help="write the files back this much at a time (fdatasync after each piece); 0: all at once")
    parser.add_argument("--preallocated", action="store_true",
                        help="overwrite a file of zeros written beforehand, with fdatasync, instead of appending")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.preallocated:
        fd = os.open(args.dir / "spool", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, bytes(APPEND_BYTES * (2 * args.appends + 1)))
        os.fsync(fd)
        os.lseek(fd, 0, os.SEEK_SET)
    else:
        fd = os.open(args.dir / "spool", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        print("append+fsync alone (p50, p99, max ms):", append_latencies(fd, args.appends, args.preallocated))
        stop = threading.Event()
        writer = threading.Thread(target=write_files, args=(args.dir, stop, args.piece_bytes))
        writer.start()
        try:
            print(f"beside 8 MiB file writes, written back {args.piece_bytes or 'all at once'} (p50, p99, max ms):",
                  append_latencies(fd, args.appends, args.preallocated))
        finally:
            stop.set()
            writer.join()
    finally:
        os.close(fd)
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
