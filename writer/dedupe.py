"""The dedupe window: ids of events stored in the last hours, in compact sorted segments and on disk.

Each stored ``audit_event_id`` is remembered as a 64-bit hash (``writer.id_hashes.column_hashes``) in a
segment of the server hour it was stored in, and appended to that segment's file under ``<spool>/dedupe/``
(``keys-<hour>-<n>.bin``; ``ids-<hour>-<n>.bin`` files hold the BLAKE2b hashes of earlier versions and are
searched with those until they leave the window). At start the files of the
window are loaded again, so a producer retry is recognised across restarts. The window is bounded by
time (``window_seconds``) and by count (``max_ids``, also within one busy hour: the oldest segments go
first, and status says how far back the window actually reaches).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

log = logging.getLogger("auditlake.writer.dedupe")
BUCKET_SECONDS = 3600
SEGMENTS_PER_WINDOW = 10
# Each segment keeps a bit filter of its ids: at least 16 bits per id it can hold, rounded up to a power of
# two (21 at the default bound). A lookup tests each hash's bit first and searches the segment only for the
# new hashes whose bit another id set (4.5 % at the default bound). On a full window (bench/dedupe_lookup.py:
# 10 segments of 100,000 ids, 10,000 hashes) searching every hash in every segment was 6.5 % of the
# encoder's CPU at the maximum.
FILTER_BITS_PER_ID = 16
FILE_PREFIX = "keys"  # files of ``column_hashes``
LEGACY_PREFIX = "ids"  # files of ``legacy_hashes``, written by versions before ``keys`` files


@dataclasses.dataclass
class _Segment:
    """Ids remembered in one hour, sorted, the file that holds them, and their bit filter."""

    hour: int
    ids: np.ndarray
    path: Path
    filter: np.ndarray  # one bit per slot (uint8 bytes): set for the slot of every id in ``ids``
    legacy: bool = False  # its ids are ``legacy_hashes`` (a file of an earlier version), never added to


class DedupeWindow:
    """Answers "was this id stored within the window?" and remembers newly stored ids.

    Ids live in sorted 64-bit arrays (8 bytes an id), in segments of at most a tenth of ``max_ids`` so the
    count bound drops the oldest tenth rather than a whole hour; each segment has its own file.
    """

    def __init__(self, directory: Path, window_seconds: float, max_ids: int) -> None:
        self.directory = directory
        self.window_seconds = window_seconds
        self.max_ids = max_ids
        self.segment_ids = max(1, max_ids // SEGMENTS_PER_WINDOW)
        self.filter_slots = max(64, 1 << (FILTER_BITS_PER_ID * self.segment_ids - 1).bit_length())
        self.segments: collections.deque[_Segment] = collections.deque()
        self._next_file = 0

    @property
    def size(self) -> int:
        """Ids remembered."""
        return sum(len(segment.ids) for segment in self.segments)

    @property
    def covered_seconds(self) -> float:
        """How far back the window reaches now (shorter than configured when the count bound bit)."""
        if not self.segments:
            return self.window_seconds
        return min(self.window_seconds, time.time() - self.segments[0].hour * BUCKET_SECONDS)

    def load(self, now: float | None = None) -> None:
        """Read the id files of the window (worker thread), oldest first; delete older ones."""
        self.directory.mkdir(parents=True, exist_ok=True)
        current = _hour(time.time() if now is None else now)
        first = current - int(self.window_seconds // BUCKET_SECONDS)
        for path in sorted([*self.directory.glob(f"{FILE_PREFIX}-*.bin"), *self.directory.glob(f"{LEGACY_PREFIX}-*.bin")],
                           key=_file_order):
            hour, number = _file_order(path)
            self._next_file = max(self._next_file, number + 1)
            if hour < first:
                path.unlink()
                continue
            data = path.read_bytes()
            ids = sorted_unique(np.frombuffer(data[: len(data) - len(data) % 8], dtype=np.uint64))
            self.segments.append(_Segment(hour, ids, path, self._filter_with(self._empty_filter(), ids),
                                          path.name.startswith(f"{LEGACY_PREFIX}-")))
        self._trim(current)

    def seen(self, hashes: Iterable[int] | np.ndarray,
             legacy: Callable[[], Iterable[int] | np.ndarray] | None = None) -> set[int]:
        """The hashes among ``hashes`` already in the window. ``legacy`` gives the same ids' legacy hashes,
        in the same order, to search the segments that hold those (called only while there are some; without
        it they are not searched).

        Each segment's bit filter is tested first, and only the hashes whose bit is set (~5 % of new ones)
        are searched in that segment, sorted: numpy's binary search starts each key where the previous one
        ended when the keys ascend. A full window (10 segments of 100,000 ids, 10,000 hashes, a tenth of them
        remembered; ``bench/dedupe_lookup.py``): 12.2-12.5 ms searching every hash unsorted, 3.6 ms sorted,
        about 1 ms with the filters.
        """
        values = _array(hashes)
        if not len(values) or not self.segments:
            return set()
        found: set[int] = set()
        for legacy_segments in (False, True):
            segments = [segment for segment in self.segments if segment.legacy is legacy_segments and len(segment.ids)]
            if not segments or (legacy_segments and legacy is None):
                continue
            searched = _array(legacy()) if legacy_segments and legacy is not None else values
            byte, bit = self._slots(searched)
            for segment in segments:
                rows = np.flatnonzero(segment.filter[byte] & bit)
                if len(rows):
                    rows = rows[np.argsort(searched[rows])]  # ascending keys: each search starts where the last ended
                    candidates = searched[rows]
                    places = np.searchsorted(segment.ids, candidates)
                    hit = segment.ids[np.minimum(places, len(segment.ids) - 1)] == candidates
                    found.update(values[rows[hit]].tolist())
        return found

    def remember(self, hashes: list[int] | np.ndarray, now: float | None = None) -> None:
        """Add newly stored ids to the newest segment of this hour, in memory and on disk (worker thread)."""
        values = np.asarray(hashes, dtype=np.uint64)
        if not len(values):
            return
        current = _hour(time.time() if now is None else now)
        newest = self.segments[-1] if self.segments else None
        if (newest is None or newest.legacy or newest.hour != current
                or len(newest.ids) + len(values) > self.segment_ids):
            path = self.directory / f"{FILE_PREFIX}-{current}-{self._next_file}.bin"
            newest = _Segment(current, np.empty(0, dtype=np.uint64), path, self._empty_filter())
            self._next_file += 1
            self.segments.append(newest)
        newest.ids = _merged(newest.ids, values)
        self._filter_with(newest.filter, values)
        with open(newest.path, "ab") as handle:
            handle.write(values.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        self._trim(current)

    def _empty_filter(self) -> np.ndarray:
        return np.zeros(self.filter_slots // 8, dtype=np.uint8)

    def _slots(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each hash's place in a bit filter: its byte and the bit within it (from the hash's low bits)."""
        slots = values & np.uint64(self.filter_slots - 1)
        return (slots >> np.uint64(3)).astype(np.intp), np.left_shift(1, slots & np.uint64(7)).astype(np.uint8)

    def _filter_with(self, bits: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Set the bits of ``values`` in the filter ``bits``; return it."""
        byte, bit = self._slots(values)
        np.bitwise_or.at(bits, byte, bit)
        return bits

    def _trim(self, current: int) -> None:
        first = current - int(self.window_seconds // BUCKET_SECONDS)
        while self.segments and self.segments[0].hour < first:
            _unlink(self.segments.popleft().path)
        size = self.size
        while size > self.max_ids and len(self.segments) > 1:
            oldest = self.segments.popleft()
            size -= len(oldest.ids)
            log.warning("dedupe window shortened by its id bound", extra={"dropped_hour": oldest.hour,
                                                                          "dropped_ids": len(oldest.ids)})
            _unlink(oldest.path)


def _merged(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The sorted union of sorted unique ``ids`` and any ``values``: one sort of both together.

    ``np.union1d`` (a 100,000-id segment per 14,000 flushed events cost more than the flush's id hashing)
    and inserting the sorted new values (``np.unique``, ``searchsorted``, ``np.insert``) both cost more
    than numpy's in-place sort of the joined arrays (vectorised for 64-bit keys) and a mask of repeats:
    0.48-0.51 ms against 3.58-3.72 for 28,000 new ids into a segment of 84,000 (``bench/step_costs.py``).
    """
    return sorted_unique(np.concatenate([ids, values]))


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted: ``np.unique`` without its extra passes (a copy sorted in place and the
    repeats masked out)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    distinct = np.empty(len(ordered), dtype=bool)
    distinct[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=distinct[1:])
    return ordered[distinct]


def _array(hashes: Iterable[int] | np.ndarray) -> np.ndarray:
    return hashes if isinstance(hashes, np.ndarray) else np.fromiter(hashes, dtype=np.uint64)


def _file_order(path: Path) -> tuple[int, int]:
    """``<prefix>-<hour>-<n>.bin`` (``ids-<hour>.bin`` from earlier versions counts as n = -1)."""
    parts = path.stem.split("-")
    return int(parts[1]), int(parts[2]) if len(parts) > 2 else -1


def _hour(moment: float) -> int:
    return int(moment // BUCKET_SECONDS)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
