"""The writer's buffered frame receiver: frames come out whole and unchanged however the socket cuts the bytes,
each payload in a buffer of its own, and a bad or cut-short frame ends the connection with its WireError."""

from __future__ import annotations

import numpy as np
import pytest

from shared import wire
from shared.errors import CorruptFrame, FrameTooLarge, TruncatedFrame, WireError
from writer.frame_receiver import SMALL_PAYLOAD_BYTES, FrameReceiver


class _Transport:
    """What the receiver uses of a transport."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class _Connection:
    """A receiver with a fake transport, recording its frames and how it ended."""

    def __init__(self, max_payload: int = wire.DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        self.frames: list[wire.Frame] = []
        self.lost: list[WireError | None] = []
        self.transport = _Transport()
        self.receiver = FrameReceiver(self._connected, lambda receiver, error: self.lost.append(error), max_payload)
        self.receiver.connection_made(self.transport)  # type: ignore[arg-type]

    def _connected(self, receiver: FrameReceiver) -> None:
        receiver.on_frame = self.frames.append

    def receive(self, data: bytes, most: int) -> None:
        """Hand ``data`` over as the socket would: into the buffers the receiver offers, ``most`` bytes a read
        at most."""
        while data:
            target = self.receiver.get_buffer(-1)
            assert len(target) > 0
            size = min(len(target), most, len(data))
            target[:size] = data[:size]
            self.receiver.buffer_updated(size)
            data = data[size:]


def _stream() -> tuple[bytes, list[wire.Frame]]:
    frames = [
        wire.typed_batch(1, b'{"a":1}\n{"b":2}\n', b"[[2]]"),
        wire.batch(2, b'{"c":3}\n' * 5000),
        wire.encode_json(wire.Kind.HELLO, {"role": "ingest"}, 3),
        wire.encode(wire.Kind.HELLO, 4, b""),
        wire.batch(5, b'{"d":4}\n'),
        wire.batch(6, b'{"e":5}\n' * (SMALL_PAYLOAD_BYTES // 8 + 1)),  # past the inbox: a buffer of its own
        wire.batch(7, b'{"f":6}\n' * (SMALL_PAYLOAD_BYTES // 8)),  # the largest that goes through the inbox
        wire.batch(8, b'{"g":7}\n'),
    ]
    data = b"".join(frames)
    expected, at = [], 0
    while at < len(data):
        frame, used = wire.decode(data[at:])
        expected.append(frame)
        at += used
    return data, expected


@pytest.mark.parametrize("most", [1, 7, 32, 33, 4096, 40_000, SMALL_PAYLOAD_BYTES + 30, 1 << 20])
def test_frames_come_out_whole_however_the_bytes_are_cut(most: int) -> None:
    """Every frame whole and in order, each payload in a buffer of its own that later reads leave alone
    (they are compared once everything was received)."""
    data, expected = _stream()
    connection = _Connection()
    connection.receive(data, most)
    assert [(frame.kind, frame.batch_id, bytes(frame.payload)) for frame in connection.frames] == [
        (frame.kind, frame.batch_id, frame.payload) for frame in expected]
    assert len({id(frame.payload) for frame in connection.frames}) == len(expected)  # a buffer each
    assert not connection.transport.closed
    connection.receiver.eof_received()
    connection.receiver.connection_lost(None)
    assert connection.lost == [None]


@pytest.mark.parametrize(("lines", "buffer"), [
    (b'{"a":1}\n', bytearray),  # small: zeroing costs less than numpy's call
    (b'{"a":1}\n' * (SMALL_PAYLOAD_BYTES // 8), np.ndarray),  # large: received into a buffer not zero-filled first
])
def test_a_typed_batch_is_split_into_views_of_its_own_payload(lines: bytes, buffer: type) -> None:
    connection = _Connection()
    connection.receive(wire.typed_batch(9, lines, b"[[1]]"), 1 << 20)
    received, columns = wire.typed_parts(connection.frames[0].payload)
    assert (bytes(received), bytes(columns)) == (lines, b"[[1]]")
    payload = connection.frames[0].payload
    assert received.obj is payload.obj  # no copy of the lines on the way to the spool
    assert isinstance(payload.obj, buffer)


def test_a_frame_whose_handler_raised_is_not_handed_on_again() -> None:
    """A handler that raises ends that read (uvloop reports it); the frames after it come with the next read
    and the one it raised for never again."""
    connection = _Connection()
    handed: list[int] = []

    def on_frame(frame: wire.Frame) -> None:
        handed.append(frame.batch_id)
        if frame.batch_id == 1 and handed.count(1) == 1:
            raise RuntimeError("handler failed")

    connection.receiver.on_frame = on_frame
    with pytest.raises(RuntimeError):
        connection.receive(wire.batch(1, b'{"a":1}\n') + wire.batch(2, b'{"b":2}\n'), 1 << 20)
    connection.receive(wire.batch(3, b'{"c":3}\n'), 1 << 20)
    assert handed == [1, 2, 3]


@pytest.mark.parametrize(("damage", "error"), [
    (lambda frame: frame[:-1] + bytes([frame[-1] ^ 0xFF]), CorruptFrame),
    (lambda frame: b"XX" + frame[2:], CorruptFrame),
])
@pytest.mark.parametrize("most", [5, 1 << 20])  # the frames one read at a time, or all in one read
def test_a_bad_frame_ends_the_connection_and_nothing_after_it_is_handed_on(damage, error, most: int) -> None:
    connection = _Connection()
    good = wire.batch(1, b'{"a":1}\n')
    connection.receive(good + damage(wire.batch(2, b'{"b":2}\n')) + good, most)
    assert [frame.batch_id for frame in connection.frames] == [1]
    assert connection.transport.closed
    connection.receiver.connection_lost(None)
    assert len(connection.lost) == 1 and isinstance(connection.lost[0], error)


def test_a_frame_over_the_limit_is_refused_from_its_header() -> None:
    connection = _Connection(max_payload=100)
    connection.receive(wire.batch(1, b"x" * 200, max_payload=1000)[:wire.HEADER_SIZE], 1 << 20)
    assert connection.transport.closed and not connection.frames
    connection.receiver.connection_lost(None)
    assert isinstance(connection.lost[0], FrameTooLarge)


@pytest.mark.parametrize(("events", "cut"), [(1, 1), (1, wire.HEADER_SIZE), (1, wire.HEADER_SIZE + 3),
                                             (SMALL_PAYLOAD_BYTES, wire.HEADER_SIZE),
                                             (SMALL_PAYLOAD_BYTES, SMALL_PAYLOAD_BYTES * 2)])
def test_the_stream_ending_inside_a_frame_is_a_truncated_frame(events: int, cut: int) -> None:
    connection = _Connection()
    connection.receive(wire.batch(1, b'{"a":1}\n' * events)[:cut], 1 << 20)
    assert connection.receiver.eof_received() is False
    connection.receiver.connection_lost(None)
    assert isinstance(connection.lost[0], TruncatedFrame)
    assert not connection.frames
