"""The writer's Unix-socket server: receives (TYPED_)BATCH frames, spools them, answers ACK or NACK."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared import spool_format, wire
from shared.errors import WireError
from writer.frame_receiver import FrameReceiver
from writer.spool import Spool, SpoolFull, SpoolWriteError
from writer.stats import WriterStats

log = logging.getLogger("auditlake.writer.server")
STATUS_INTERVAL_SECONDS = 0.5


class SocketServer:
    """Accepts ingest connections on a Unix socket created owner-only."""

    def __init__(self, path: Path, spool: Spool, stats: WriterStats, max_frame_bytes: int,
                 status: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self.spool = spool
        self.stats = stats
        self.max_frame_bytes = max_frame_bytes
        self.status = status
        self._server: asyncio.base_events.Server | None = None
        self._connections: dict[asyncio.Transport, FrameReceiver] = {}
        self._replies: dict[asyncio.Transport, list[bytes]] = {}  # acks/nacks waiting for one write
        # the answers owed when a commit future settles: (connection, batch id, events), more than one when
        # ingest sent the batch again while it was pending
        self._owed: dict[asyncio.Future[int], list[tuple[asyncio.Transport, int, int]]] = {}
        spool.on_group_settled = self._answer_group

    async def start(self) -> None:
        """Bind the socket (removing a stale one) with a umask that keeps it owner-only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old_umask = os.umask(0o077)
        try:
            self._server = await asyncio.get_running_loop().create_unix_server(
                lambda: FrameReceiver(self._connected, self._lost, self.max_frame_bytes), path=str(self.path))
        finally:
            os.umask(old_umask)

    async def close(self) -> None:
        """Stop accepting, let in-progress acks go out, close every connection."""
        if self._server is not None:
            self._server.close()
        for receiver in list(self._connections.values()):
            receiver.stop()
        await asyncio.sleep(0)  # the transports' connection_lost callbacks run
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def broadcast_status(self) -> None:
        """Send the current status to every connected ingest."""
        if not self._connections:
            return
        frame = wire.encode_json(wire.Kind.STATUS, self.status())
        for writer in list(self._connections):
            if not writer.is_closing():
                writer.write(frame)

    async def run_status_broadcast(self) -> None:
        """Push status to ingest periodically, so its status endpoint answers from cache."""
        while True:
            await asyncio.sleep(STATUS_INTERVAL_SECONDS)
            self.broadcast_status()

    def _connected(self, receiver: FrameReceiver) -> None:
        """Greet a new ingest connection; its frames go to ``_on_frame`` as their last bytes arrive."""
        writer = receiver.transport
        assert writer is not None
        self._connections[writer] = receiver
        log.info("ingest connected")
        writer.write(wire.encode_json(wire.Kind.HELLO, {"role": "writer", "pid": os.getpid(),
                                                        "accepts": [wire.Kind.TYPED_BATCH.name]}))
        writer.write(wire.encode_json(wire.Kind.STATUS, self.status()))
        receiver.on_frame = lambda frame: self._on_frame(frame, writer)

    def _lost(self, receiver: FrameReceiver, error: WireError | None) -> None:
        """Forget a connection that ended, logging the protocol error that ended it, if one did."""
        if error is not None:
            log.error("closing ingest connection after a protocol error", extra={"error": str(error)})
        if receiver.transport is not None:
            self._connections.pop(receiver.transport, None)
            self._replies.pop(receiver.transport, None)
        log.info("ingest disconnected")

    def _on_frame(self, frame: wire.Frame, writer: asyncio.Transport) -> None:
        """Spool a batch frame (in the I/O callback that received its last byte); ignore a HELLO."""
        if frame.kind is wire.Kind.TYPED_BATCH:
            lines, columns = wire.typed_parts(frame.payload)
            # The lines are spooled from the frame's own buffer; the typed fields stay in memory until the
            # flush, so they are copied out rather than keep the whole frame alive.
            self._on_batch(frame.batch_id, lines, bytes(columns), writer)
        elif frame.kind is wire.Kind.BATCH:
            self._on_batch(frame.batch_id, frame.payload, None, writer)
        elif frame.kind is not wire.Kind.HELLO:
            log.warning("unexpected frame from ingest", extra={"kind": frame.kind.name})

    def _on_batch(self, batch_id: int, lines: bytes | memoryview, columns: bytes | None,
                  writer: asyncio.Transport) -> None:
        events = spool_format.line_count(lines)
        if self.spool.knows_batch(batch_id):
            self.stats.duplicate_batches += 1
            self._reply(writer, wire.ack(batch_id, events))
            return
        pending = self.spool.pending_batch(batch_id)
        if pending is None:
            try:
                pending = self.spool.append(batch_id, lines, events, columns)
            except SpoolFull as exc:
                self._reply(writer, self._nack(batch_id, f"spool full: {exc}"))
                return
        else:
            self.stats.duplicate_batches += 1
        owed = self._owed.get(pending)
        if owed is None:
            self._owed[pending] = [(writer, batch_id, events)]
            pending.add_done_callback(self._answer_late)
        else:
            owed.append((writer, batch_id, events))

    def _answer_group(self, futures: list[asyncio.Future[int]]) -> None:
        """Answer the batches of a group commit as soon as it settled (``Spool.on_group_settled``), each
        connection's answers in one write: two loop turns sooner than through the futures' done callbacks
        (bench/cycle_timeline.py)."""
        replies: dict[asyncio.Transport, list[bytes]] = {}
        for future in futures:
            for writer, batch_id, events in self._owed.pop(future, ()):
                if not writer.is_closing():
                    replies.setdefault(writer, []).append(self._answer(future, batch_id, events))
        for writer, frames in replies.items():
            writer.write(b"".join(frames))

    def _answer_late(self, done: asyncio.Future[int]) -> None:
        """Answer what a commit future owes when it ended without its group settling (it was cancelled)."""
        for writer, batch_id, events in self._owed.pop(done, ()):
            if not writer.is_closing():
                self._reply(writer, self._answer(done, batch_id, events))

    def _answer(self, done: asyncio.Future[int], batch_id: int, events: int) -> bytes:
        """The ACK of a batch whose commit succeeded, else its NACK (counted)."""
        if done.cancelled():
            return self._nack(batch_id, "writer shutting down")
        if isinstance(done.exception(), SpoolWriteError):
            return self._nack(batch_id, str(done.exception()))
        return wire.ack(batch_id, events)

    def _nack(self, batch_id: int, reason: str) -> bytes:
        """A retryable NACK of a batch the writer did not store (counted)."""
        self.stats.nacked_batches += 1
        return wire.nack(batch_id, reason, retryable=True)

    def _reply(self, writer: asyncio.Transport, frame: bytes) -> None:
        """Queue an answer; the answers queued in this loop turn leave in one write, after it."""
        queued = self._replies.get(writer)
        if queued is not None:
            queued.append(frame)
            return
        self._replies[writer] = [frame]
        asyncio.get_running_loop().call_soon(self._send_replies, writer)

    def _send_replies(self, writer: asyncio.Transport) -> None:
        frames = self._replies.pop(writer, [])
        if frames and not writer.is_closing():
            writer.write(b"".join(frames))
