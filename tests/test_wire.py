"""The wire codec: round trips and every way a frame can be wrong."""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from shared import wire
from shared.errors import CorruptFrame, FrameTooLarge, TruncatedFrame, UnsupportedVersion, WireError


def test_batch_round_trip_keeps_kind_id_and_payload() -> None:
    """A BATCH frame decodes to the same kind, batch id and payload bytes."""
    payload = b'{"a":1}\n{"b":"\xc3\xa9"}\n'
    frame, used = wire.decode(wire.batch(2**63 + 5, payload))
    assert (frame.kind, frame.batch_id, frame.payload) == (wire.Kind.BATCH, 2**63 + 5, payload)
    assert used == wire.HEADER_SIZE + len(payload)


def test_control_frames_round_trip_as_json() -> None:
    """ACK and NACK echo the batch id and carry their JSON bodies."""
    ack, _ = wire.decode(wire.ack(7, 3))
    nack, _ = wire.decode(wire.nack(8, "spool full", True))
    assert (ack.kind, ack.batch_id, ack.json()) == (wire.Kind.ACK, 7, {"events": 3})
    assert (nack.kind, nack.batch_id, nack.json()) == (wire.Kind.NACK, 8, {"reason": "spool full", "retryable": True})


@pytest.mark.parametrize("batch_id, events", [(0, 0), (1, 1), (7, 16), (2**63 + 5, 100_000), (2**64 - 1, 2**31)])
def test_an_ack_formatted_directly_is_the_generic_control_frame(batch_id: int, events: int) -> None:
    """``wire.ack`` formats its bytes itself; they are those of ``encode_json`` for the same ACK."""
    assert wire.ack(batch_id, events) == wire.encode_json(wire.Kind.ACK, {"events": events}, batch_id)


def test_encoding_a_frame_over_the_limit_is_refused() -> None:
    """A payload larger than the maximum frame size cannot be encoded."""
    with pytest.raises(FrameTooLarge):
        wire.batch(1, b"x" * 1025, max_payload=1024)


def test_decoding_a_header_announcing_too_much_is_refused() -> None:
    """A header that announces more than the maximum is rejected before the payload is read."""
    frame = wire.batch(1, b"x" * 2048)
    with pytest.raises(FrameTooLarge):
        wire.decode(frame, max_payload=1024)


def test_truncated_frames_are_detected() -> None:
    """A frame cut inside its header or inside its payload is reported as truncated."""
    frame = wire.batch(1, b"hello\n")
    with pytest.raises(TruncatedFrame):
        wire.decode(frame[:10])
    with pytest.raises(TruncatedFrame):
        wire.decode(frame[:-1])


def test_unknown_version_is_refused() -> None:
    """A frame of another protocol version is rejected with UnsupportedVersion."""
    frame = bytearray(wire.batch(1, b"x\n"))
    frame[2] = 9
    with pytest.raises(UnsupportedVersion):
        wire.decode(bytes(frame))


def test_bad_magic_unknown_kind_and_checksum_are_corrupt() -> None:
    """Bad magic, an unknown kind and a flipped payload byte are each CorruptFrame."""
    good = wire.batch(1, b"payload\n")
    bad_magic = b"XX" + good[2:]
    bad_kind = good[:3] + bytes([77]) + good[4:]
    flipped = good[:-2] + bytes([good[-2] ^ 0xFF]) + good[-1:]
    for frame in (bad_magic, bad_kind, flipped):
        with pytest.raises(CorruptFrame):
            wire.decode(frame)


def test_header_layout_is_stable() -> None:
    """The header is 24 bytes: magic, version, kind, reserved, batch id, length, crc (big-endian)."""
    frame = wire.batch(0x0102030405060708, b"abc")
    magic, version, kind, reserved, batch_id, length, _crc = struct.unpack(">2sBBIQII", frame[:24])
    assert (magic, version, kind, reserved, batch_id, length) == (b"AL", 1, 1, 0, 0x0102030405060708, 3)


def test_checksum_is_zlibs_crc32_so_frames_of_earlier_builds_still_decode() -> None:
    """The CRC (computed with ISA-L) is zlib's CRC-32 of the payload: a frame built with zlib decodes."""
    payload = bytes(range(256)) * 1000
    frame = wire.batch(9, payload)
    assert struct.unpack(">I", frame[20:24])[0] == zlib.crc32(payload)
    earlier = struct.pack(">2sBBIQII", b"AL", 1, 1, 0, 9, len(payload), zlib.crc32(payload)) + payload
    assert wire.decode(earlier)[0].payload == payload


def test_typed_batch_round_trip_splits_lines_and_columns() -> None:
    """A TYPED_BATCH frame carries the lines and the columns apart, under one checksum."""
    frame, used = wire.decode(wire.typed_batch(11, b'{"a":1}\n', b"[[1]]"))
    assert (frame.kind, frame.batch_id, used) == (wire.Kind.TYPED_BATCH, 11, wire.HEADER_SIZE + 4 + 8 + 5)
    assert wire.typed_parts(frame.payload) == (b'{"a":1}\n', b"[[1]]")
    assert wire.typed_batch_bytes(8, 5) == len(frame.payload)
    damaged = bytearray(wire.typed_batch(11, b'{"a":1}\n', b"[[1]]"))
    damaged[-1] ^= 1
    with pytest.raises(CorruptFrame):
        wire.decode(bytes(damaged))
    with pytest.raises(FrameTooLarge):
        wire.typed_batch(1, b"x" * 1000, b"y" * 30, max_payload=1024)


def test_frames_of_pieces_are_the_frames_of_the_joined_pieces() -> None:
    """Ingest hands a frame its requests' lines and columns as pieces (one copy into the frame): the bytes,
    lengths and checksum are those of the joined payload, and the size bound counts every piece."""
    lines = [b'{"a":1}\n', b'{"a":2}\n{"a":3}\n']
    columns = [b"[", b"[1]", b",", b"[2]", b"]"]
    assert wire.typed_batch_of(5, lines, columns) == wire.typed_batch(5, b"".join(lines), b"".join(columns))
    frame, _ = wire.decode(wire.typed_batch_of(5, lines, columns))
    assert wire.typed_parts(frame.payload) == (b"".join(lines), b"[[1],[2]]")
    assert wire.batch_of(6, lines) == wire.batch(6, b"".join(lines))
    with pytest.raises(FrameTooLarge):
        wire.typed_batch_of(1, [b"x" * 600, b"x" * 400], [b"y" * 30], max_payload=1024)
    with pytest.raises(FrameTooLarge):
        wire.batch_of(1, [b"x" * 600, b"x" * 425], max_payload=1024)


@pytest.mark.parametrize("payload", [b"", b"\x00\x00", b"\x00\x00\x00\x09abc"])
def test_a_typed_batch_whose_lines_length_does_not_fit_is_corrupt(payload: bytes) -> None:
    with pytest.raises(CorruptFrame):
        wire.typed_parts(payload)


def test_frame_buffer_takes_frames_off_the_front_whatever_the_chunks() -> None:
    """Fed one byte at a time or all at once, the same frames come out, each as its last byte arrives."""
    stream = wire.batch(1, b"a\n") + wire.ack(1, 1) + wire.typed_batch(2, b"b\n", b"[1]")
    whole = wire.FrameBuffer().feed(stream)
    assert [(frame.kind, frame.batch_id) for frame in whole] == [
        (wire.Kind.BATCH, 1), (wire.Kind.ACK, 1), (wire.Kind.TYPED_BATCH, 2)]
    ends = {len(wire.batch(1, b"a\n")), len(wire.batch(1, b"a\n") + wire.ack(1, 1)), len(stream)}
    frames = wire.FrameBuffer()
    seen = []
    for index in range(len(stream)):
        got = frames.feed(stream[index:index + 1])
        seen.extend(got)
        assert bool(got) == (index + 1 in ends)  # a frame is handed out exactly when its last byte arrives
        assert frames.partial == (index + 1 not in ends)
    assert seen == whole


@pytest.mark.parametrize("damage", ["magic", "checksum", "too_large"])
def test_frame_buffer_refuses_a_bad_frame(damage: str) -> None:
    frame = bytearray(wire.batch(7, b"abc\n"))
    if damage == "magic":
        frame[0:2] = b"XX"
    elif damage == "checksum":
        frame[-1] ^= 0xFF
    frames = wire.FrameBuffer(max_payload=3 if damage == "too_large" else wire.DEFAULT_MAX_PAYLOAD_BYTES)
    with pytest.raises(WireError):
        frames.feed(bytes(frame))


async def test_frame_protocol_hands_frames_over_in_the_io_callback() -> None:
    """Each frame reaches on_frame inside data_received, before any loop iteration; the reader only
    sees the end of the stream."""
    received: list[wire.Frame] = []
    reader = asyncio.StreamReader()
    protocol = wire.FrameProtocol(reader, received.append)
    ack = wire.ack(5, 100)
    protocol.data_received(ack[:10])
    assert received == []
    protocol.data_received(ack[10:] + wire.ack(6, 1))
    assert [frame.batch_id for frame in received] == [5, 6]
    protocol.stop()
    protocol.data_received(wire.ack(7, 1))
    assert [frame.batch_id for frame in received] == [5, 6]
    protocol.eof_received()
    assert await reader.read() == b""


async def test_frame_protocol_ends_the_reader_on_a_bad_frame_or_a_cut_one() -> None:
    class Transport(asyncio.Transport):
        closed = False

        def close(self) -> None:
            self.closed = True

    for data, error in ((b"XX" + wire.ack(1, 1)[2:], CorruptFrame), (wire.ack(1, 1)[:-2], TruncatedFrame)):
        received: list[wire.Frame] = []
        reader = asyncio.StreamReader()
        protocol = wire.FrameProtocol(reader, received.append)
        transport = Transport()
        protocol.connection_made(transport)
        protocol.data_received(data)
        if error is TruncatedFrame:
            protocol.eof_received()
        with pytest.raises(error):
            await reader.read()
        assert received == []
        assert transport.closed
