"""The dedupe window: ids of events stored in the last hours, kept in hourly buckets and on disk.

Each stored ``audit_event_id`` is remembered as a 64-bit BLAKE2b hash in the bucket of the server hour
it was stored in, and appended to that hour's file under ``<spool>/dedupe/``. At start the files of the
window are loaded again, so a producer retry is recognised across restarts. The window is bounded by
time (``window_seconds``) and by count (``max_ids``: the oldest buckets go first, and status says how
many hours are actually covered).
"""

from __future__ import annotations

import array
import hashlib
import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("auditlake.writer.dedupe")
BUCKET_SECONDS = 3600


def id_hash(event_id: str) -> int:
    """The 64-bit hash under which an id is remembered."""
    return int.from_bytes(hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def id_hashes(event_ids: list[str]) -> list[int]:
    """``id_hash`` of each id, about half the CPU per id (a copied hasher, one big-endian array)."""
    empty = hashlib.blake2b(digest_size=8)
    copy = empty.copy

    def digest(data: bytes) -> bytes:
        hasher = copy()
        hasher.update(data)
        return hasher.digest()

    values = array.array("Q", b"".join([digest(event_id.encode("utf-8", "surrogatepass")) for event_id in event_ids]))
    if sys.byteorder == "little":
        values.byteswap()
    return values.tolist()


class DedupeWindow:
    """Answers "was this id stored within the window?" and remembers newly stored ids."""

    def __init__(self, directory: Path, window_seconds: float, max_ids: int) -> None:
        self.directory = directory
        self.window_seconds = window_seconds
        self.max_ids = max_ids
        self.buckets: dict[int, set[int]] = {}

    @property
    def size(self) -> int:
        """Ids remembered."""
        return sum(len(bucket) for bucket in self.buckets.values())

    @property
    def covered_seconds(self) -> float:
        """How far back the window reaches now (shorter than configured when the count bound bit)."""
        if not self.buckets:
            return self.window_seconds
        oldest = min(self.buckets)
        return min(self.window_seconds, time.time() - oldest * BUCKET_SECONDS)

    def load(self, now: float | None = None) -> None:
        """Read the hourly id files of the window (worker thread); delete older ones."""
        self.directory.mkdir(parents=True, exist_ok=True)
        current = _hour(time.time() if now is None else now)
        first = current - int(self.window_seconds // BUCKET_SECONDS)
        for path in sorted(self.directory.glob("ids-*.bin")):
            hour = int(path.stem.split("-", 1)[1])
            if hour < first:
                path.unlink()
                continue
            values = array.array("Q")
            data = path.read_bytes()
            values.frombytes(data[: len(data) - len(data) % 8])
            self.buckets.setdefault(hour, set()).update(values)
        self._trim(current)

    def seen(self, hashes: Iterable[int]) -> set[int]:
        """The hashes among ``hashes`` already in the window."""
        found = set()
        for value in hashes:
            for bucket in self.buckets.values():
                if value in bucket:
                    found.add(value)
                    break
        return found

    def remember(self, hashes: list[int], now: float | None = None) -> None:
        """Add newly stored ids to the current hour, in memory and on disk (worker thread)."""
        if not hashes:
            return
        current = _hour(time.time() if now is None else now)
        self.buckets.setdefault(current, set()).update(hashes)
        path = self.directory / f"ids-{current}.bin"
        with open(path, "ab") as handle:
            handle.write(array.array("Q", hashes).tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        self._trim(current)

    def _trim(self, current: int) -> None:
        first = current - int(self.window_seconds // BUCKET_SECONDS)
        for hour in [hour for hour in self.buckets if hour < first]:
            del self.buckets[hour]
            _unlink(self.directory / f"ids-{hour}.bin")
        while self.size > self.max_ids and len(self.buckets) > 1:
            oldest = min(self.buckets)
            log.warning("dedupe window shortened by its id bound", extra={"dropped_hour": oldest})
            del self.buckets[oldest]
            _unlink(self.directory / f"ids-{oldest}.bin")


def _hour(moment: float) -> int:
    return int(moment // BUCKET_SECONDS)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
