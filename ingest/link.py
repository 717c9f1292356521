"""The writer link: a bounded queue of submissions forwarded as framed batches, settled by acks.

A submission is one request's events. It counts against the queue (events and bytes) from the moment
it is accepted until the writer acknowledges or refuses it. Batches sent but not acknowledged are re-sent
after a reconnect; the writer recognises a batch it already holds by its id.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared import typed_columns, wire
from shared.errors import WireError
from shared.task_stop import cancel_and_wait

log = logging.getLogger("auditlake.ingest.link")
RECONNECT_START_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 1.0
MAX_SUBMISSIONS_PER_BATCH = 1024
# Frames sent and not yet answered before the next one waits: while the writer fsyncs one, requests that
# arrive meanwhile gather into the next frame (fewer frames, writes and spool records under load). Three
# rather than two since the writer answers from its commit's own step and single-event connections travel in
# two or three groups (single events 9,384 against 8,018 requests/s in six alternated pairs; twenty-eighth
# session); four since ingest answers posts in its fast lane: single events 12,212 against 11,000 requests/s
# in nine alternated pairs (ahead in seven, ingest 46-57 against 57-77 µs of CPU a request), 100-event bodies
# even (166,683 against 164,985 events/s in four); docs/benchmarks.md, thirtieth session.
MAX_FRAMES_IN_FLIGHT = 4
# The same while the writer says it is catching up (its STATUS: the spool holds two full flushes or more).
# Each frame costs the writer a group commit (a thread hand-off, an fsync, an ack) on the CPU its flushes
# need: one frame at a time, frames held 5.0-5.4 requests instead of 2.4-2.5 and the writer spent 168-193
# µs per 100-event request instead of 239-270, so more was stored (148,901-165,000 against 125,275-148,817
# events/s in five alternated pairs at the maximum; docs/benchmarks.md, twentieth session). A writer that keeps up
# gets more, which half the maximum needs for its latency (requests slower than 5 ms 8-12 % with two, 15-17 %
# with one).
CATCHING_UP_FRAMES_IN_FLIGHT = 1
# How often the waits are checked against their deadlines (at most a tenth of the ack timeout): one watchdog
# for the link, where a timer per request (``call_later``) cost 7,800 instructions of a single-event
# request's 357,000 (bench/instruction_counts.py). A wait ends at most this much after its deadline.
ACK_WATCH_SECONDS = 0.1


class QueueFull(Exception):
    """The bounded queue cannot take all events of a request."""


class WriterUnavailable(Exception):
    """No writer is connected and acknowledging."""


class WriterRefused(Exception):
    """The writer answered NACK: nothing of the batch was stored."""


class AckTimeout(Exception):
    """A sent batch was not acknowledged in time: it may or may not be stored."""


@dataclasses.dataclass(eq=False)
class Submission:
    """One request's events waiting for the writer."""

    payload: bytes
    events: int
    columns: bytes  # the events' typed fields (shared.typed_columns), sent beside the lines
    future: asyncio.Future[None]
    deadline: float  # time.monotonic() after which its wait ends (``WriterLink.ack_timeout`` after submit)
    sent: bool = False


@dataclasses.dataclass
class _InFlight:
    batch_id: int
    frame: bytes
    submissions: list[Submission]
    sent_at: float


class WriterLink:
    """Owns the connection to the writer and everything queued for it."""

    def __init__(self, socket_path: Path, max_events: int, max_bytes: int, max_frame_bytes: int,
                 ack_timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.ack_timeout = ack_timeout  # seconds from submit to the writer's answer (AUDIT_SERVICE_ACK_TIMEOUT_SECONDS)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_frame_bytes = max_frame_bytes
        self.queued_events = 0
        self.queued_bytes = 0
        self.writer_status: dict[str, Any] = {}
        self.hello = False
        self.typed_batches = False  # the writer's HELLO says it takes TYPED_BATCH (an older writer does not)
        self.last_ack_at: float | None = None
        self.on_ack: Callable[[float], None] | None = None  # observes seconds from send to ACK (metrics)
        self._pending: collections.deque[Submission] = collections.deque()
        self._inflight: dict[int, _InFlight] = {}
        self._next_batch_id = secrets.randbits(62) + 1
        self._has_work = asyncio.Event()
        self._window_open = asyncio.Event()  # set whenever fewer than ``frames_allowed`` await an answer
        self._window_open.set()
        self._connected = asyncio.Event()
        self._stopping = False
        self._stream: asyncio.StreamWriter | None = None

    # -- state -------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Connected and greeted by the writer."""
        return self._stream is not None and self.hello

    @property
    def frames_allowed(self) -> int:
        """How many frames may await the writer's answer at once: fewer while the writer is catching up."""
        return CATCHING_UP_FRAMES_IN_FLIGHT if self.writer_status.get("catching_up") else MAX_FRAMES_IN_FLIGHT

    @property
    def frames_in_flight(self) -> int:
        """Batches sent and not yet answered."""
        return len(self._inflight)

    @property
    def idle(self) -> bool:
        """Nothing queued or in flight."""
        return not self._pending and not self._inflight

    # -- submitting --------------------------------------------------------------------------------

    def admit(self) -> None:
        """Raise WriterUnavailable or QueueFull when no request can be queued now (no writer, or not one more
        event fits); called when a post arrives and again just before its body is parsed (the queue may
        have filled while it was read or waited its turn)."""
        if not self.ready:
            raise WriterUnavailable("audit writer unavailable")
        if self.queued_events >= self.max_events or self.queued_bytes >= self.max_bytes:
            raise QueueFull("audit queue full")

    def submit(self, payload: bytes, events: int, columns: bytes) -> Submission:
        """Queue one request's events (NDJSON lines and their ``typed_columns.encode``), all or nothing;
        raise QueueFull or WriterUnavailable. The byte bound counts the lines."""
        if not self.ready:
            raise WriterUnavailable("audit writer unavailable")
        if self.queued_events + events > self.max_events or self.queued_bytes + len(payload) > self.max_bytes:
            raise QueueFull("audit queue full")
        submission = Submission(payload, events, columns, asyncio.get_running_loop().create_future(),
                                time.monotonic() + self.ack_timeout)
        self.queued_events += events
        self.queued_bytes += len(payload)
        self._pending.append(submission)
        self._has_work.set()
        return submission

    def wait(self, submission: Submission) -> asyncio.Future[None]:
        """What to await for the writer's answer, or the end of the submission's time (``_expire_due``).

        A cancelled request leaves its submission queued, as it was accepted into the queue already (its
        future is cancelled with it, so nothing is settled or withdrawn on its behalf).
        """
        return submission.future

    def _expire_due(self, now: float) -> None:
        """End the waits whose deadline is past: AckTimeout for a sent submission (the writer may still store
        it), WriterUnavailable for a queued one, which is withdrawn. Deadlines follow the order of submission,
        which is the order of the frames in flight and then of the queue, so the walk stops at the first
        submission not yet due."""
        for inflight in self._inflight.values():
            for submission in inflight.submissions:
                if submission.deadline > now:
                    return
                if not submission.future.done():
                    submission.future.set_exception(
                        AckTimeout("audit writer did not confirm in time; the events may or may not be stored"))
        due = []
        for submission in self._pending:
            if submission.deadline > now:
                break
            if not submission.future.done():
                due.append(submission)
        for submission in due:
            self._pending.remove(submission)
            self._release(submission)
            submission.future.set_exception(WriterUnavailable("audit writer did not take the events in time"))

    async def _watch(self) -> None:
        interval = min(ACK_WATCH_SECONDS, self.ack_timeout / 10)
        while True:
            await asyncio.sleep(interval)
            self._expire_due(time.monotonic())

    def _release(self, submission: Submission) -> None:
        self.queued_events -= submission.events
        self.queued_bytes -= len(submission.payload)

    def _settle(self, inflight: _InFlight, error: Exception | None) -> None:
        for submission in inflight.submissions:
            self._release(submission)
            if submission.future.done():
                continue
            if error is None:
                submission.future.set_result(None)
            else:
                submission.future.set_exception(error)

    # -- connection loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, forward and reconnect until stopped; meanwhile end the waits that run out of time."""
        watchdog = asyncio.create_task(self._watch(), name="writer-ack-watchdog")
        try:
            await self._connect_and_forward()
        finally:
            await cancel_and_wait([watchdog])

    async def _connect_and_forward(self) -> None:
        delay = RECONNECT_START_SECONDS
        while not self._stopping:
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader()  # sees only the end of the stream: frames go to _on_frame
            protocol = wire.FrameProtocol(reader, self._on_frame, self.max_frame_bytes)
            try:
                transport, _ = await loop.create_unix_connection(lambda: protocol, str(self.socket_path))
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                continue
            delay = RECONNECT_START_SECONDS
            log.info("connected to writer", extra={"socket": str(self.socket_path), "resend": len(self._inflight)})
            await self._session(reader, asyncio.StreamWriter(transport, protocol, reader, loop), protocol)
            log.warning("writer connection lost", extra={"in_flight": len(self._inflight)})

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       protocol: wire.FrameProtocol) -> None:
        self._stream = writer
        receiver = asyncio.create_task(self._receive(reader), name="writer-receive")
        sender = asyncio.create_task(self._send(writer), name="writer-send")
        try:
            await asyncio.wait([receiver, sender], return_when=asyncio.FIRST_COMPLETED)
        finally:
            protocol.stop()  # a closing connection's late frames must not greet or settle anything
            self._stream = None
            self.hello = False
            self.writer_status = {}  # the next writer's own STATUS, not this one's, says whether it is ready
            self.typed_batches = False
            await cancel_and_wait([receiver, sender])
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        """Wait for the end of the writer's stream; its frames reach ``_on_frame`` as they arrive
        (``wire.FrameProtocol``), in the I/O callback, one loop iteration sooner than a reader task."""
        try:
            await reader.read()
        except (WireError, ConnectionError) as exc:
            log.error("bad data from writer; reconnecting", extra={"error": str(exc)})

    def _on_frame(self, frame: wire.Frame) -> None:
        if frame.kind is wire.Kind.ACK:
            inflight = self._inflight.pop(frame.batch_id, None)
            if inflight is not None:
                self.last_ack_at = time.monotonic()
                if self.on_ack is not None:
                    self.on_ack(self.last_ack_at - inflight.sent_at)
                self._settle(inflight, None)
                self._window_open.set()
        elif frame.kind is wire.Kind.NACK:
            inflight = self._inflight.pop(frame.batch_id, None)
            if inflight is not None:
                reason = frame.json().get("reason", "writer refused the batch")
                log.warning("writer refused a batch", extra={"batch_id": frame.batch_id, "reason": reason})
                self._settle(inflight, WriterRefused(reason))
                self._window_open.set()
        elif frame.kind is wire.Kind.STATUS:
            self.writer_status = frame.json()
            if len(self._inflight) < self.frames_allowed:
                self._window_open.set()  # the writer caught up: a frame may go before the next ack
        elif frame.kind is wire.Kind.HELLO:
            self.typed_batches = wire.Kind.TYPED_BATCH.name in frame.json().get("accepts", [])
            self.hello = True

    async def _send(self, writer: asyncio.StreamWriter) -> None:
        for inflight in sorted(self._inflight.values(), key=lambda item: item.sent_at):
            writer.write(inflight.frame)
        await writer.drain()
        while True:
            if not self._pending:
                self._has_work.clear()
                await self._has_work.wait()
                await asyncio.sleep(0)  # one loop turn: requests parsed meanwhile share the frame
                continue
            if len(self._inflight) >= self.frames_allowed:
                self._window_open.clear()
                await self._window_open.wait()
                continue
            inflight = self._next_batch()
            self._inflight[inflight.batch_id] = inflight
            writer.write(inflight.frame)
            await writer.drain()

    def _next_batch(self) -> _InFlight:
        """The next frame: queued submissions while lines and columns fit one frame. A submission whose lines
        fit but not with its columns goes alone, as a BATCH of lines only (the writer then parses them), and
        so does everything for a writer whose HELLO did not list TYPED_BATCH (an older build)."""
        budget = self.max_frame_bytes - wire.typed_batch_bytes(0, len(b"[]"))
        taken: list[Submission] = []
        while self._pending and len(taken) < MAX_SUBMISSIONS_PER_BATCH:
            size = len(self._pending[0].payload) + len(self._pending[0].columns) + len(b",")
            if taken and size > budget:
                break
            submission = self._pending.popleft()
            submission.sent = True
            taken.append(submission)
            budget -= size
        batch_id = self._next_batch_id
        self._next_batch_id += 1
        lines = [item.payload for item in taken]
        columns = typed_columns.section_pieces([item.columns for item in taken])
        if (self.typed_batches and wire.typed_batch_bytes(sum(map(len, lines)), sum(map(len, columns)))
                <= self.max_frame_bytes):
            frame = wire.typed_batch_of(batch_id, lines, columns, self.max_frame_bytes)
        else:
            frame = wire.batch_of(batch_id, lines, self.max_frame_bytes)
        return _InFlight(batch_id, frame, taken, time.monotonic())

    # -- shutdown ----------------------------------------------------------------------------------

    async def drain(self, timeout: float) -> bool:
        """Wait until everything queued is answered, up to ``timeout``; True when nothing is left."""
        deadline = time.monotonic() + timeout
        while not self.idle and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.idle

    def stop(self) -> None:
        """Stop reconnecting; fail whatever is still waiting."""
        self._stopping = True
        leftover = list(self._pending)
        self._pending.clear()
        for submission in leftover:
            self._release(submission)
            if not submission.future.done():
                submission.future.set_exception(WriterUnavailable("ingest is shutting down"))
        for inflight in list(self._inflight.values()):
            self._settle(inflight, AckTimeout("ingest stopped before the writer confirmed"))
        self._inflight.clear()
        if self._stream is not None:
            self._stream.close()
