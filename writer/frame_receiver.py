"""A buffered protocol that receives each frame straight into a buffer of its own size: no copies on the way in.

The writer's server read frames with ``StreamReader.readexactly``. Each frame's bytes were copied three
times before the spool saw them: from the socket into a ``bytes`` of what one ``recv`` returned, from
there onto the reader's buffer, from that into the frame's payload, and then once more into its lines and
its typed fields. ``perf`` put these copies (and the fresh pages they wrote to) at about 5 % of the writer's
CPU at the maximum. Here the socket fills a frame's header, then a buffer of the payload's announced
length (one ``recv`` each while the bytes are there), and the payload is handed on as it is (a memoryview
of that buffer), from the I/O callback that received its last byte. The buffer is numpy's, not
zero-filled first: a ``bytearray`` of that length was written with zeros only to be overwritten by the
socket. That was 18 % of the writer process's instructions in callgrind, which counts ``rep stosb`` a
byte at a time; in time it was about 3 us a frame of ~370 KB (a hot loop), some 0.2 % of a core at the
maximum. A payload of up to ``SMALL_PAYLOAD_BYTES`` (single events) gets a ``bytearray`` all the same: its
zeroing is a fraction of a microsecond, while numpy's call costs 10-30 us when its code has left the
caches, as it has between two commits of single events (docs/benchmarks.md, twenty-ninth session).

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

SMALL_PAYLOAD_BYTES = 64 * 1024  # below malloc's mmap threshold: a bytearray's zeros go to warm heap pages


class FrameReceiver(asyncio.BufferedProtocol):
    """One connection's frames, each received into its own payload buffer and handed to ``on_frame``.

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
        self._header = bytearray(wire.HEADER_SIZE)
        self._target = memoryview(self._header)  # what the socket fills next: the header, then the payload
        self._filled = 0
        self._frame_head: tuple[wire.Kind, int, int, int] | None = None  # kind, batch id, length, crc
        self._payload = memoryview(b"")
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
        return self._target[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        if self._ended:
            return
        self._filled += nbytes
        if self._filled < len(self._target):
            return
        try:
            frame = self._completed()
        except WireError as exc:
            self._end(exc)
            return
        if frame is not None:
            self.on_frame(frame)

    def _completed(self) -> wire.Frame | None:
        """The frame whose last byte just arrived, or None when a header announced a payload still to come."""
        if self._frame_head is None:
            self._frame_head = wire.parse_header(self._header, self.max_payload)
            length = self._frame_head[2]
            if length:
                # filled by the socket: a large buffer is numpy's, not zeroed first; a small one a bytearray,
                # whose zeroing costs less than numpy's call when its code is out of the caches
                self._payload = memoryview(bytearray(length) if length <= SMALL_PAYLOAD_BYTES
                                           else np.empty(length, dtype=np.uint8))
                self._target, self._filled = self._payload, 0
                return None
            self._payload = memoryview(b"")
        kind, batch_id, _, crc = self._frame_head
        payload = self._payload
        self._frame_head, self._payload = None, memoryview(b"")
        self._target, self._filled = memoryview(self._header), 0
        return wire.checked(kind, batch_id, payload, crc)

    def eof_received(self) -> bool:
        if not self._ended and (self._filled or self._frame_head is not None):
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
