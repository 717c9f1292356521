"""The bounded, thread-safe event buffer and the counters that account for every emitted event."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque

OUTCOMES = ("sent", "failed", "rejected", "abandoned")


@dataclasses.dataclass(frozen=True)
class ProducerStats:
    """A consistent snapshot of the counters; ``emitted == sent + dropped + buffered`` always holds.

    ``dropped = invalid + overflow + failed + abandoned``; ``failed`` counts events of batches given up on
    (retries exhausted, or ``rejected`` by the service with a 4xx); ``buffered`` includes ``in_flight``;
    ``retried`` counts HTTP re-sends.
    """

    emitted: int
    sent: int
    dropped: int
    buffered: int
    retried: int
    failed: int
    rejected: int
    invalid: int
    overflow: int
    abandoned: int
    in_flight: int
    buffered_bytes: int

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict, e.g. for a metrics exporter."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Batch:
    """Encoded events taken from the buffer for one request; in flight until resolved."""

    first_seq: int
    last_seq: int
    items: list[bytes]
    nbytes: int


class EventBuffer:
    """Queued encoded events bounded by count and bytes (in-flight events included), with drop policy."""

    def __init__(self, max_events: int, max_bytes: int, drop_oldest: bool, ready_events: int, ready_bytes: int):
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._drop_oldest = drop_oldest
        self._ready_events = ready_events
        self._ready_bytes = ready_bytes
        self.reset()

    def reset(self) -> None:
        """Start empty with zeroed counters and a fresh lock (used at creation and in a forked child)."""
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        # Plain bytes and floats in two deques: nothing per event for the garbage collector to track.
        # Events get consecutive sequence numbers and leave from the left, so the head's is derived.
        self._items: deque[bytes] = deque()
        self._times: deque[float] = deque()
        self._queued_bytes = 0
        self._flight: dict[int, Batch] = {}
        self._flight_events = 0
        self._flight_bytes = 0
        self._seq = 0
        self._closed = False
        self._emitted = self._sent = self._retried = 0
        self._failed = self._rejected = self._invalid = self._overflow = self._abandoned = 0
        self.last_invalid_reason = ""

    def add(self, data: bytes) -> tuple[bool, bool]:
        """Queue one encoded event: (accepted, the worker should wake up)."""
        size = len(data)
        with self.lock:
            self._emitted += 1
            if self._closed:
                self._abandoned += 1
                return False, False
            items = self._items
            while (
                len(items) + self._flight_events >= self._max_events
                or self._queued_bytes + self._flight_bytes + size > self._max_bytes
            ):
                if not (self._drop_oldest and items):
                    self._overflow += 1
                    return False, False
                self._queued_bytes -= len(items.popleft())
                self._times.popleft()
                self._overflow += 1
            self._seq += 1
            items.append(data)
            self._times.append(time.monotonic())
            self._queued_bytes += size
            count = len(items)
            crossed = self._queued_bytes - size < self._ready_bytes <= self._queued_bytes
            return True, count == 1 or count == self._ready_events or crossed

    def reject(self, reason: str) -> None:
        """Count an event refused before buffering (invalid, unencodable or too large)."""
        with self.lock:
            self._emitted += 1
            self._invalid += 1
            self.last_invalid_reason = reason

    def peek(self) -> tuple[int, int, float | None, int | None]:
        """(queued events, queued bytes, monotonic time the oldest was queued, its sequence number)."""
        with self.lock:
            if not self._items:
                return 0, 0, None, None
            return len(self._items), self._queued_bytes, self._times[0], self._head_seq()

    def _head_seq(self) -> int:
        return self._seq - len(self._items) + 1

    def last_seq(self) -> int:
        """Sequence number of the newest accepted event."""
        with self.lock:
            return self._seq

    def pending_upto(self, seq: int) -> bool:
        """Whether any event accepted at or before ``seq`` is still queued or in flight."""
        with self.lock:
            return self._pending(seq)

    def _pending(self, seq: int) -> bool:
        if self._items and self._head_seq() <= seq:
            return True
        return any(batch.first_seq <= seq for batch in self._flight.values())

    def take(self, max_events: int, max_bytes: int) -> Batch | None:
        """Move up to ``max_events`` oldest events (at most ``max_bytes``, at least one) in flight."""
        with self.lock:
            items = self._items
            if not items:
                return None
            taken: list[bytes] = []
            nbytes = 0
            first_seq = self._head_seq()
            while items and len(taken) < max_events and (not taken or nbytes + len(items[0]) <= max_bytes):
                data = items.popleft()
                self._times.popleft()
                taken.append(data)
                nbytes += len(data)
            self._queued_bytes -= nbytes
            batch = Batch(first_seq, first_seq + len(taken) - 1, taken, nbytes)
            self._flight[first_seq] = batch
            self._flight_events += len(taken)
            self._flight_bytes += nbytes
            return batch

    def resolve(self, batch: Batch, outcome: str) -> bool:
        """Settle an in-flight batch as sent, failed, rejected (a 4xx; also failed) or abandoned.

        Returns False (and changes nothing) when the batch was already settled.
        """
        with self.lock:
            if self._flight.pop(batch.first_seq, None) is None:
                return False
            count = len(batch.items)
            self._flight_events -= count
            self._flight_bytes -= batch.nbytes
            if outcome == "sent":
                self._sent += count
            elif outcome == "rejected":
                self._rejected += count
                self._failed += count
            elif outcome == "failed":
                self._failed += count
            else:
                self._abandoned += count
            self.changed.notify_all()
            return True

    def count_retry(self) -> None:
        """Count one HTTP re-send."""
        with self.lock:
            self._retried += 1

    def close(self) -> int:
        """Refuse further events and abandon the queued ones; return how many were abandoned."""
        with self.lock:
            self._closed = True
            count = len(self._items)
            self._abandoned += count
            self._items.clear()
            self._times.clear()
            self._queued_bytes = 0
            self.changed.notify_all()
            return count

    @property
    def closed(self) -> bool:
        """Whether the buffer refuses new events."""
        return self._closed

    def wait_resolved(self, seq: int, timeout: float) -> bool:
        """Block until no event up to ``seq`` is pending, or ``timeout`` seconds; True when none is."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                pending = self._pending(seq)
                remaining = deadline - time.monotonic()
                if not pending or remaining <= 0:
                    return not pending
                self.changed.wait(min(remaining, 0.05))

    def stats(self) -> ProducerStats:
        """A consistent snapshot of every counter."""
        with self.lock:
            failed = self._failed
            dropped = self._invalid + self._overflow + failed + self._abandoned
            return ProducerStats(
                emitted=self._emitted,
                sent=self._sent,
                dropped=dropped,
                buffered=len(self._items) + self._flight_events,
                retried=self._retried,
                failed=failed,
                rejected=self._rejected,
                invalid=self._invalid,
                overflow=self._overflow,
                abandoned=self._abandoned,
                in_flight=self._flight_events,
                buffered_bytes=self._queued_bytes + self._flight_bytes,
            )
