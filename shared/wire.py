"""The ingest-writer wire protocol: the only module that knows the bytes on the Unix socket.

Every message is one frame: a fixed 24-byte header followed by a payload.

    offset  size  field
    0       2     magic  b"AL"
    2       1     version (1)
    3       1     kind: BATCH, ACK, NACK, HELLO, STATUS, TYPED_BATCH
    4       4     reserved, zero
    8       8     batch id (unsigned; 0 for HELLO and STATUS)
    16      4     payload length in bytes
    20      4     CRC-32 of the payload

BATCH payloads are NDJSON (one normalized event per line, each line ending in a newline). A TYPED_BATCH
payload is a 4-byte big-endian length, that many bytes of NDJSON as in BATCH, then the events' typed
fields (``shared.typed_columns``), which the writer keeps beside the spooled lines for the flush; ingest
sends it only to a writer whose HELLO lists ``"TYPED_BATCH"`` under ``accepts``. ACK and NACK
echo the batch id of the BATCH they answer; their payload, like HELLO's and STATUS's, is a JSON object.
A successful write to the socket proves nothing: only an ACK says the writer holds the batch durably.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import struct
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from isal.isal_zlib import crc32  # zlib's CRC-32, 4x faster (ISA-L): the same values, old records verify

from shared.errors import CorruptFrame, FrameTooLarge, TruncatedFrame, UnsupportedVersion, WireError

MAGIC = b"AL"
VERSION = 1
HEADER = struct.Struct(">2sBBIQII")
HEADER_SIZE = HEADER.size
_LINES_LENGTH = struct.Struct(">I")
DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024


class Kind(enum.IntEnum):
    """What a frame carries."""

    BATCH = 1
    ACK = 2
    NACK = 3
    HELLO = 4
    STATUS = 5
    TYPED_BATCH = 6


# Kind by its byte: a dict lookup where ``Kind(byte)`` runs the enum's lookup in Python, for every frame on
# both sides (bench/cold_steps.py: 0.4-0.6 against 1.2-1.6 us warm, a third of it out of the caches)
KINDS = {kind.value: kind for kind in Kind}


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame."""

    kind: Kind
    batch_id: int
    payload: bytes | bytearray | memoryview  # a view of its own buffer when the writer received it (frame_receiver)

    def json(self) -> dict[str, Any]:
        """The payload of a control frame as a JSON object ({} when empty)."""
        if not self.payload:
            return {}
        value = orjson.loads(self.payload)
        if not isinstance(value, dict):
            raise CorruptFrame(f"{self.kind.name} payload is not a JSON object")
        return value


def encode(kind: Kind, batch_id: int, payload: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD_BYTES) -> bytes:
    """Encode one frame; raise FrameTooLarge when the payload exceeds ``max_payload``."""
    return _frame(kind, batch_id, (payload,), max_payload)


def _frame(kind: Kind, batch_id: int, pieces: Sequence[bytes], max_payload: int) -> bytes:
    """A frame whose payload is ``pieces`` back to back: joined once with the header, the CRC chained over
    the pieces (no joined payload to copy again)."""
    length = sum(map(len, pieces))
    if length > max_payload:
        raise FrameTooLarge(f"payload of {length} bytes exceeds the {max_payload}-byte frame limit")
    crc = 0
    for piece in pieces:
        crc = crc32(piece, crc)
    return b"".join((HEADER.pack(MAGIC, VERSION, int(kind), 0, batch_id, length, crc), *pieces))


def encode_json(kind: Kind, body: dict[str, Any], batch_id: int = 0) -> bytes:
    """Encode a control frame (ACK, NACK, HELLO, STATUS) whose payload is a JSON object."""
    return encode(kind, batch_id, orjson.dumps(body))


def batch(batch_id: int, ndjson: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD_BYTES) -> bytes:
    """Encode a BATCH frame of NDJSON events."""
    return encode(Kind.BATCH, batch_id, ndjson, max_payload)


def batch_of(batch_id: int, ndjson: Sequence[bytes], max_payload: int = DEFAULT_MAX_PAYLOAD_BYTES) -> bytes:
    """``batch`` of the NDJSON pieces back to back, joined once into the frame."""
    return _frame(Kind.BATCH, batch_id, ndjson, max_payload)


def typed_batch(batch_id: int, ndjson: bytes, columns: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD_BYTES) -> bytes:
    """Encode a TYPED_BATCH frame: NDJSON events and their typed fields."""
    return typed_batch_of(batch_id, (ndjson,), (columns,), max_payload)


def typed_batch_of(batch_id: int, ndjson: Sequence[bytes], columns: Sequence[bytes],
                   max_payload: int = DEFAULT_MAX_PAYLOAD_BYTES) -> bytes:
    """``typed_batch`` of NDJSON pieces and column pieces, each back to back, joined once into the frame: a
    frame of many requests is copied once, not once into its lines and once more into the frame."""
    length = _LINES_LENGTH.pack(sum(map(len, ndjson)))
    return _frame(Kind.TYPED_BATCH, batch_id, (length, *ndjson, *columns), max_payload)


def typed_batch_bytes(ndjson_bytes: int, columns_bytes: int) -> int:
    """The payload size of a TYPED_BATCH frame of that many NDJSON and column bytes."""
    return _LINES_LENGTH.size + ndjson_bytes + columns_bytes


def typed_parts(payload: bytes | bytearray) -> tuple[memoryview, memoryview]:
    """The NDJSON and the typed fields of a TYPED_BATCH payload, as views of it (no copies); CorruptFrame
    when the length does not fit."""
    if len(payload) < _LINES_LENGTH.size:
        raise CorruptFrame("TYPED_BATCH payload is shorter than its length field")
    end = _LINES_LENGTH.size + _LINES_LENGTH.unpack_from(payload)[0]
    if end > len(payload):
        raise CorruptFrame(f"TYPED_BATCH announces {end - _LINES_LENGTH.size} bytes of lines in a {len(payload)}-byte payload")
    view = memoryview(payload)
    return view[_LINES_LENGTH.size:end], view[end:]


def ack(batch_id: int, events: int) -> bytes:
    """Encode the ACK of a batch the writer holds durably: ``encode_json(Kind.ACK, {"events": events},
    batch_id)``'s bytes, formatted directly in the writer's commit step (bench/cold_steps.py: 1.1-1.3
    against 1.7-2.0 us warm, 15-30 against 20-40 out of the caches)."""
    payload = b'{"events":%d}' % events
    return HEADER.pack(MAGIC, VERSION, Kind.ACK, 0, batch_id, len(payload), crc32(payload)) + payload


def nack(batch_id: int, reason: str, retryable: bool) -> bytes:
    """Encode the NACK of a batch the writer did not store."""
    return encode_json(Kind.NACK, {"reason": reason, "retryable": retryable}, batch_id)


def parse_header(header: bytes, max_payload: int) -> tuple[Kind, int, int, int]:
    """Check a header; return (kind, batch id, payload length, crc)."""
    magic, version, kind, _reserved, batch_id, length, crc = HEADER.unpack(header)
    if magic != MAGIC:
        raise CorruptFrame(f"bad magic {magic!r}")
    if version != VERSION:
        raise UnsupportedVersion(f"protocol version {version} is not supported (this build speaks {VERSION})")
    frame_kind = KINDS.get(kind)
    if frame_kind is None:
        raise CorruptFrame(f"unknown frame kind {kind}")
    if length > max_payload:
        raise FrameTooLarge(f"frame announces {length} bytes, over the {max_payload}-byte limit")
    return frame_kind, batch_id, length, crc


def checked(kind: Kind, batch_id: int, payload: bytes | bytearray | memoryview, crc: int) -> Frame:
    """The frame of a received header's fields and its payload; CorruptFrame when the checksum differs."""
    if crc32(payload) != crc:
        raise CorruptFrame(f"checksum mismatch in {kind.name} frame {batch_id}")
    return Frame(kind, batch_id, payload)


def decode(buffer: bytes | bytearray, max_payload: int = DEFAULT_MAX_PAYLOAD_BYTES) -> tuple[Frame, int]:
    """Decode the first frame of ``buffer``; return it and the bytes consumed.

    Raises TruncatedFrame when the buffer ends before the frame does.
    """
    if len(buffer) < HEADER_SIZE:
        raise TruncatedFrame(f"{len(buffer)} bytes is shorter than a frame header")
    kind, batch_id, length, crc = parse_header(buffer[:HEADER_SIZE], max_payload)
    end = HEADER_SIZE + length
    if len(buffer) < end:
        raise TruncatedFrame(f"frame needs {end} bytes, buffer holds {len(buffer)}")
    return checked(kind, batch_id, bytes(buffer[HEADER_SIZE:end]), crc), end


class FrameBuffer:
    """Bytes received on a stream so far: ``feed`` takes every complete frame off the front, as the bytes
    arrive (a protocol's ``data_received`` handles frames without waking a reader task)."""

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """The frames ``data`` completes, in order; raise WireError for a bad header or checksum (the
        stream cannot be read further)."""
        self._buffer += data
        frames = []
        while self._buffer:
            try:
                frame, end = decode(self._buffer, self.max_payload)
            except TruncatedFrame:  # the rest of this frame has not arrived yet
                break
            frames.append(frame)
            del self._buffer[:end]
        return frames

    @property
    def partial(self) -> bool:
        """True while the bytes received end inside a frame."""
        return bool(self._buffer)


class FrameProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol that hands each frame to ``on_frame`` from ``data_received``, as its last byte
    arrives. The paired reader sees only the end of the stream: EOF, a connection error, or the WireError
    that ended the framing (a bad frame, or EOF inside one), so ``await reader.read()`` returns or raises
    when the stream is over. A reader task awaiting each frame got it one event-loop
    iteration after its bytes arrived."""

    def __init__(self, reader: asyncio.StreamReader, on_frame: Callable[[Frame], None],
                 max_payload: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        super().__init__(reader)
        self._end_reader = reader
        self._frames = FrameBuffer(max_payload)
        self._on_frame: Callable[[Frame], None] | None = on_frame
        self._transport_of_frames: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport_of_frames = transport
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._on_frame is None:
            return
        try:
            for frame in self._frames.feed(data):
                if self._on_frame is None:
                    return
                self._on_frame(frame)
        except WireError as exc:
            self._end(exc)

    def eof_received(self) -> bool:
        if self._on_frame is not None and self._frames.partial:
            self._end(TruncatedFrame("stream ended inside a frame"))
        return bool(super().eof_received())

    def stop(self) -> None:
        """Hand no more frames to ``on_frame`` (the connection is being given up)."""
        self._on_frame = None

    def _end(self, exc: WireError) -> None:
        self._on_frame = None
        self._end_reader.set_exception(exc)
        if self._transport_of_frames is not None:
            self._transport_of_frames.close()
