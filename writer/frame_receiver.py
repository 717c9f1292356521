"""A buffered protocol that reads small frames in one ``recv`` into an inbox, and receives a large payload straight into a buffer of its own.

The writer's server read frames with ``StreamReader.readexactly``. Each frame's bytes were copied three
times before the spool saw them: from the socket into a ``bytes`` of what one ``recv`` returned, from
there onto the reader's buffer, from that into the frame's payload, and then once more into its lines and
its typed fields. ``perf`` put these copies (and the fresh pages they wrote to) at about 5 % of the writer's
CPU at the maximum. A payload larger than ``SMALL_PAYLOAD_BYTES`` (100-event requests) is received into a
buffer of its announced length and handed on as it is (a memoryview of that buffer), from the I/O
callback that received its last byte. That buffer is numpy's, not zero-filled first: a ``bytearray`` of
that length was written with zeros only to be overwritten by the socket. That was 18 % of the writer
process's instructions in callgrind, which counts ``rep stosb`` a byte at a time; in time it was about
3 us a frame of ~370 KB (a hot loop), some 0.2 % of a core at the maximum.

Smaller frames (single events: a few KiB) are read into the connection's inbox, as many as one ``recv``
brings, and each payload is copied out of it into a ``bytearray`` (a fraction of a microsecond). Receiving
each into a buffer of its own took three ``recv`` calls and two callbacks a frame (the header, the
payload, and the read that found nothing more) and numpy's call for the buffer, which costs 10-30 us when
its code has left the caches, as it has between two commits of single events (docs/benchmarks.md,
twenty-ninth session).

A bad header or checksum, or EOF inside a frame, ends the framing: the connection is closed and its
``on_lost`` callback gets the WireError. (uvloop hands a protocol that is also an ``asyncio.Protocol`` its
bytes through ``data_received``, so this one is a ``BufferedProtocol`` only, not a stream protocol.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import numpy as np

from shared import wire
from shared.errors import TruncatedFrame, WireError

SMALL_PAYLOAD_BYTES = 64 * 1024  # a payload read through the inbox and copied out of it
INBOX_BYTES = wire.HEADER_SIZE + SMALL_PAYLOAD_BYTES  # a small frame fits whole


class FrameReceiver(asyncio.BufferedProtocol):
    """One connection's frames, each handed to ``on_frame`` with a payload buffer of its own.

    Frames of up to ``SMALL_PAYLOAD_BYTES`` are read into the connection's inbox, as many as one ``recv``
    brings, and each payload copied out of it; a larger payload is received into a buffer of its own size.
    ``on_connect(receiver)`` runs when the connection is made (``transport`` is set: greet the peer there,
    set ``on_frame``); ``on_lost(receiver, error)`` once when it is gone, with the WireError that ended the
    framing or None.
    """

    def __init__(self, on_connect: Callable[[FrameReceiver], None],
                 on_lost: Callable[[FrameReceiver, WireError | None], None], max_payload: int) -> None:
        self._on_connect = on_connect
        self._on_lost = on_lost
        self.max_payload = max_payload
        self.transport: asyncio.Transport | None = None
        self.on_frame: Callable[[wire.Frame], None] = lambda frame: None
        self._inbox = memoryview(bytearray(INBOX_BYTES))
        self._held = 0  # bytes of the inbox, from its start, not yet taken as frames
        self._large: memoryview | None = None  # the payload of a large frame being received, past the inbox
        self._large_filled = 0
        self._large_head: tuple[wire.Kind, int, int, int] | None = None  # its kind, batch id, length, crc
        self._error: WireError | None = None
        self._ended = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses
        self._on_connect(self)

    def stop(self) -> None:
        """Hand no more frames on and close the connection (the writer is shutting down)."""
        self._ended = True
        if self.transport is not None:
            self.transport.close()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._ended:
            return memoryview(bytearray(wire.HEADER_SIZE))  # bytes after the end are read and dropped
        if self._large is not None:
            return self._large[self._large_filled:]
        return self._inbox[self._held:]

    def buffer_updated(self, nbytes: int) -> None:
        if self._ended:
            return
        try:
            if self._large is not None:
                self._large_filled += nbytes
                if self._large_filled == len(self._large):
                    self.on_frame(self._large_done())
                return
            self._held += nbytes
            self._take_frames()
        except WireError as exc:
            self._end(exc)

    def _take_frames(self) -> None:
        """Hand on every whole frame in the inbox, in order; move what is left of the next one to its start
        (or, for a large payload, into a buffer of its own)."""
        inbox, held, at = self._inbox, self._held, 0
        try:
            while held - at >= wire.HEADER_SIZE and not self._ended:
                head = wire.parse_header(inbox[at:at + wire.HEADER_SIZE], self.max_payload)
                length = head[2]
                start = at + wire.HEADER_SIZE
                if length > SMALL_PAYLOAD_BYTES:  # never whole in the inbox: its rest goes straight to its buffer
                    received = held - start
                    self._large = memoryview(np.empty(length, dtype=np.uint8))  # filled by the socket, not zeroed
                    self._large[:received] = inbox[start:held]
                    self._large_filled, self._large_head, at = received, head, held
                    break
                if held - start < length:
                    break
                payload = memoryview(bytearray(inbox[start:start + length]))
                at = start + length  # taken before it is handed on: a frame is never handed on twice
                self.on_frame(wire.checked(head[0], head[1], payload, head[3]))
        finally:
            if at:
                inbox[:held - at] = inbox[at:held]
                self._held = held - at

    def _large_done(self) -> wire.Frame:
        """The large frame whose last byte just arrived; the inbox takes the next frame."""
        kind, batch_id, _, crc = cast(tuple[wire.Kind, int, int, int], self._large_head)
        payload = cast(memoryview, self._large)
        self._large, self._large_head, self._large_filled = None, None, 0
        return wire.checked(kind, batch_id, payload, crc)

    def eof_received(self) -> bool:
        if not self._ended and (self._held or self._large is not None):
            self._end(TruncatedFrame("stream ended inside a frame"))
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._on_lost(self, self._error)

    def _end(self, error: WireError) -> None:
        self._ended = True
        self._error = error
        if self.transport is not None:
            self.transport.close()
