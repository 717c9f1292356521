"""The writer's connection to its encoder process: pickled messages whose large buffers travel beside them, uncopied.

A flush sends the encoder every record's typed fields (about 24 KB a 100-event request: 7 MB for a flush
of 28,000 events) and gets back its encoded files (about 5 MB). ``multiprocessing.connection.Connection``
pickled those into a growing buffer, sent it, gathered it into another growing buffer on the other side
and unpickled copies of every buffer again: 0.34-0.47 µs of CPU an event over both processes, against
0.17-0.21 here (``bench/encoder_transfer.py``, five runs), on the CPU the writer and the encoder share.

Here a message is pickled with protocol 5 and its out-of-band buffers (what ``out_of_band`` marks, and
numpy arrays on their own) go to ``sendmsg`` as they are; the receiver reads them into one uninitialized
buffer and the message gets views into it. On the wire: ``<head length><buffer count>`` and each
buffer's length (unsigned 64-bit, little-endian), the pickled head, then the buffers back to back.
"""

from __future__ import annotations

import pickle
import select
import socket
import struct
from typing import Any

import numpy as np

from writer.fsutil import write_vectored

_COUNTS = struct.Struct("<QQ")
# A larger socket buffer than the default 208 KiB: 12 MB crossed in fewer wake-ups of the other process
# (0.38 -> 0.25 µs an event in a run of bench/encoder_transfer.py). The kernel caps it at net.core.wmem_max.
SOCKET_BUFFER_BYTES = 1024 * 1024
# Parts at least this large are read into numpy's uninitialized memory instead of a zero-filled bytearray.
_UNINITIALIZED_FROM_BYTES = 64 * 1024


def out_of_band(data: bytes | memoryview) -> pickle.PickleBuffer:
    """``data`` marked to travel beside the pickled message, not inside it (it arrives as a memoryview)."""
    return pickle.PickleBuffer(data)


class EncoderChannel:
    """One end of a connected stream socket carrying whole messages (blocking; one caller at a time)."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        sock.setblocking(True)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)

    def close(self) -> None:
        """Close this end; the other end reads the end of the stream."""
        self.socket.close()

    def send(self, message: Any) -> None:
        """Send ``message``: pickled, its ``out_of_band`` parts and numpy arrays not copied on the way."""
        buffers: list[pickle.PickleBuffer] = []
        head = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
        parts = [buffer.raw() for buffer in buffers]
        lengths = struct.pack(f"<{len(parts)}Q", *map(len, parts))
        write_vectored([_COUNTS.pack(len(head), len(parts)) + lengths, head, *parts], self.socket.sendmsg)

    def recv(self) -> Any:
        """The next message; raise EOFError when the other end closed the connection."""
        head_length, count = _COUNTS.unpack(self._receive(_COUNTS.size))
        lengths = struct.unpack(f"<{count}Q", self._receive(8 * count))
        head = self._receive(head_length)
        data = self._receive(sum(lengths))
        views = []
        start = 0
        for length in lengths:
            views.append(data[start:start + length])
            start += length
        return pickle.loads(head, buffers=views)

    def poll(self, timeout: float) -> bool:
        """True when a message (or the end of the stream) is there to read within ``timeout`` seconds
        (``poll``, not ``select``: no limit on the descriptor's number)."""
        poller = select.poll()
        poller.register(self.socket, select.POLLIN)
        return bool(poller.poll(timeout * 1000))

    def _receive(self, size: int) -> memoryview:
        """Exactly ``size`` bytes from the socket, as a view of a buffer of their own."""
        buffer = np.empty(size, dtype=np.uint8) if size >= _UNINITIALIZED_FROM_BYTES else bytearray(size)
        view = memoryview(buffer).cast("B")
        remaining = view
        while remaining:
            got = self.socket.recv_into(remaining)
            if not got:
                raise EOFError("the other end closed the connection")
            remaining = remaining[got:]
        return view
