"""What one durable append costs on this disk, by the way it is made durable: the spool's way and the others Linux offers.

Usage: python3 bench/sync_modes.py [--appends 1200] [--bytes 5000] [--pause-ms 0.8] [--directory /tmp]
Appends records of ``--bytes`` (a single-event group commit is ~5 KB) to files that already hold their
blocks (written with zeros and fsynced first, as a reused spool segment does), one append of each way in
turn with ``--pause-ms`` between, and prints each way's wall time and the thread's CPU time (p50 / p90):
- ``pwrite`` then ``fdatasync`` (the spool's group commit);
- ``pwritev2`` with ``RWF_DSYNC`` (one call);
- a file opened ``O_DSYNC``;
- a file opened ``O_DIRECT | O_DSYNC``, the record padded to whole 4 KiB blocks from an aligned buffer
  (what the spool would need: a partly filled last block written again with the next record);
- a file that grows with every append (``pwrite`` then ``fdatasync``), as a new segment does;
- a file whose blocks ``posix_fallocate`` reserved (unwritten extents until written), the same way.
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

FILE_BYTES = 16 << 20
BLOCK = 4096


def prepared(path: str, flags: int = 0, blocks: str = "zeroed") -> int:
    """A file descriptor of ``path``: its ``FILE_BYTES`` written with zeros and synced first (``zeroed``),
    reserved with ``posix_fallocate`` (``reserved``), or an empty file (``none``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if blocks == "zeroed":
        chunk = bytes(1 << 20)
        for _ in range(FILE_BYTES >> 20):
            os.write(fd, chunk)
    elif blocks == "reserved":
        os.posix_fallocate(fd, 0, FILE_BYTES)
    os.fsync(fd)
    os.close(fd)
    return os.open(path, os.O_WRONLY | flags)


def ways(directory: str, record: bytes) -> dict[str, Callable[[int], None]]:
    """Each way's append of ``record``, called with the offset where the record goes."""
    aligned = mmap.mmap(-1, -(-len(record) // BLOCK) * BLOCK)  # page-aligned, as O_DIRECT needs
    aligned.write(record)
    vectored = prepared(os.path.join(directory, "vectored"))
    dsync = prepared(os.path.join(directory, "dsync"), os.O_DSYNC)
    direct = prepared(os.path.join(directory, "direct"), os.O_DIRECT | os.O_DSYNC)

    def then_fdatasync(fd: int) -> Callable[[int], None]:
        def append(offset: int) -> None:
            os.pwrite(fd, record, offset)
            os.fdatasync(fd)
        return append

    return {
        "pwrite + fdatasync (the spool)": then_fdatasync(prepared(os.path.join(directory, "plain"))),
        "pwritev2 RWF_DSYNC": lambda offset: os.pwritev(vectored, [record], offset, os.RWF_DSYNC),
        "O_DSYNC": lambda offset: os.pwrite(dsync, record, offset),
        # the whole blocks from the one the record starts in: a partly filled last block is written again
        "O_DIRECT | O_DSYNC, 4 KiB blocks": lambda offset: os.pwritev(direct, [aligned], offset - offset % BLOCK),
        "a growing file, + fdatasync": then_fdatasync(prepared(os.path.join(directory, "growing"), blocks="none")),
        "a fallocated file, + fdatasync": then_fdatasync(prepared(os.path.join(directory, "reserved"),
                                                               blocks="reserved")),
    }


def main() -> None:
    """Time every way in turn and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=1200)
    parser.add_argument("--bytes", type=int, default=5000)
    parser.add_argument("--pause-ms", type=float, default=0.8)
    parser.add_argument("--directory", default=tempfile.gettempdir())
    args = parser.parse_args()
    if args.appends * -(-args.bytes // BLOCK) * BLOCK > FILE_BYTES:
        raise SystemExit("too many appends for the prepared files")
    directory = tempfile.mkdtemp(prefix="auditlake-sync-modes-", dir=args.directory)
    try:
        appends = ways(directory, os.urandom(args.bytes))
        walls: dict[str, list[float]] = {name: [] for name in appends}
        cpus: dict[str, list[float]] = {name: [] for name in appends}
        for index in range(args.appends):
            for name, append in appends.items():
                started, cpu = time.perf_counter(), time.thread_time()
                append(index * args.bytes)
                walls[name].append((time.perf_counter() - started) * 1e6)
                cpus[name].append((time.thread_time() - cpu) * 1e6)
                time.sleep(args.pause_ms / 1000)
        print(f"{'way':36} {'wall p50':>9} {'p90':>7} {'CPU p50':>8} {'p90':>7}  µs, {args.appends} appends of {args.bytes} bytes")
        for name in appends:
            wall, cpu = statistics.quantiles(walls[name], n=10), statistics.quantiles(cpus[name], n=10)
            print(f"{name:36} {statistics.median(walls[name]):9.1f} {wall[8]:7.1f} {statistics.median(cpus[name]):8.1f} {cpu[8]:7.1f}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
