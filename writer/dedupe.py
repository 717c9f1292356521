"""The dedupe window: ids of events stored in the last hours, in compact sorted segments and on disk.

Each stored ``audit_event_id`` is remembered as a 64-bit BLAKE2b hash in a segment of the server hour it
was stored in, and appended to that segment's file under ``<spool>/dedupe/``. At start the files of the
window are loaded again, so a producer retry is recognised across restarts. The window is bounded by
time (``window_seconds``) and by count (``max_ids``, also within one busy hour: the oldest segments go
first, and status says how far back the window actually reaches).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Iterable
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


def id_hash(event_id: str) -> int:
    """The 64-bit hash under which an id is remembered."""
    return int.from_bytes(hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def id_hashes(event_ids: list[str]) -> np.ndarray:
    """``id_hash`` of each id as a uint64 array (``utf8_id_hashes`` of their UTF-8 bytes)."""
    return utf8_id_hashes([event_id.encode("utf-8", "surrogatepass") for event_id in event_ids])


def utf8_id_hashes(encoded_ids: list[bytes]) -> np.ndarray:
    """``id_hash`` of each id given as its UTF-8 bytes, as a uint64 array, about half the CPU per id of
    ``id_hash`` (a copied hasher, the digests read as big-endian numbers in one go). A flush takes the
    bytes straight from its Arrow column of ids, without a str made and encoded per id: 9.9-10.1 ms for
    28,000 ids against 12.3-12.6 (``bench/step_costs.py``). An array, not Python ints, all the way to ``remember``:
    the flush sends it from the encoder process to the writer and back, where 28,000 ints a flush were
    pickled four times."""
    empty = hashlib.blake2b(digest_size=8)
    copy = empty.copy

    def digest(data: bytes) -> bytes:
        hasher = copy()
        hasher.update(data)
        return hasher.digest()

    joined = b"".join([digest(data) for data in encoded_ids])
    return np.frombuffer(joined, dtype=">u8").astype(np.uint64)


@dataclasses.dataclass
class _Segment:
    """Ids remembered in one hour, sorted, the file that holds them, and their bit filter."""

    hour: int
    ids: np.ndarray
    path: Path
    filter: np.ndarray  # one bit per slot (uint8 bytes): set for the slot of every id in ``ids``


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
        for path in sorted(self.directory.glob("ids-*.bin"), key=_file_order):
            hour, number = _file_order(path)
            self._next_file = max(self._next_file, number + 1)
            if hour < first:
                path.unlink()
                continue
            data = path.read_bytes()
            ids = np.unique(np.frombuffer(data[: len(data) - len(data) % 8], dtype=np.uint64))
            self.segments.append(_Segment(hour, ids, path, self._filter_with(self._empty_filter(), ids)))
        self._trim(current)

    def seen(self, hashes: Iterable[int] | np.ndarray) -> set[int]:
        """The hashes among ``hashes`` already in the window.

        Each segment's bit filter is tested first, and only the hashes whose bit is set (~5 % of new ones)
        are searched in that segment, sorted: numpy's binary search starts each key where the previous one
        ended when the keys ascend. A full window (10 segments of 100,000 ids, 10,000 hashes, a tenth of them
        remembered; ``bench/dedupe_lookup.py``): 12.2-12.5 ms searching every hash unsorted, 3.6 ms sorted,
        about 1 ms with the filters.
        """
        values = hashes if isinstance(hashes, np.ndarray) else np.fromiter(hashes, dtype=np.uint64)
        if not len(values) or not self.segments:
            return set()
        byte, bit = self._slots(values)
        found: set[int] = set()
        for segment in self.segments:
            ids = segment.ids
            candidates = np.sort(values[(segment.filter[byte] & bit) != 0]) if len(ids) else ()
            if len(candidates):
                places = np.searchsorted(ids, candidates)
                found.update(candidates[ids[np.minimum(places, len(ids) - 1)] == candidates].tolist())
        return found

    def remember(self, hashes: list[int] | np.ndarray, now: float | None = None) -> None:
        """Add newly stored ids to the newest segment of this hour, in memory and on disk (worker thread)."""
        values = np.asarray(hashes, dtype=np.uint64)
        if not len(values):
            return
        current = _hour(time.time() if now is None else now)
        newest = self.segments[-1] if self.segments else None
        if newest is None or newest.hour != current or len(newest.ids) + len(values) > self.segment_ids:
            path = self.directory / f"ids-{current}-{self._next_file}.bin"
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
    """The sorted union of sorted unique ``ids`` and any ``values``: the new ones inserted, no full re-sort.

    ``np.union1d`` sorts both again on every flush (a 100,000-id segment per 14,000 flushed events cost
    more than the flush's own id hashing); this is one copy of ``ids`` plus a sort of the new values.
    """
    values = np.unique(values)
    if len(ids):
        places = np.searchsorted(ids, values)
        present = ids[np.minimum(places, len(ids) - 1)] == values
        values, places = values[~present], places[~present]
        return np.insert(ids, places, values)
    return values


def _file_order(path: Path) -> tuple[int, int]:
    """``ids-<hour>-<n>.bin`` (``ids-<hour>.bin`` from earlier versions counts as n = -1)."""
    parts = path.stem.split("-")
    return int(parts[1]), int(parts[2]) if len(parts) > 2 else -1


def _hour(moment: float) -> int:
    return int(moment // BUCKET_SECONDS)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
