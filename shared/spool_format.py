"""The on-disk spool record format, written by the writer and read back by it and by ingest's reads.

A spool segment is a file of records, each a 28-byte header followed by its payload:

    offset  size  field
    0       2     magic b"SR"
    2       1     version (1)
    3       1     reserved, zero
    4       8     sequence number (one per record, increasing across segments)
    12      8     batch id of the wire frame the record came from
    20      4     payload length
    24      4     CRC-32 of bytes 2..24 and of the payload

The payload is the batch's NDJSON events. Every group commit writes a header of zeros after its last
record (the next group writes over it), so the records of a segment end at a zeroed header or at the end
of the file. A segment may be a flushed one reused (``writer.spool``): past that zeroed header it holds
the old records, never read. A record cut short at the end of a segment is a torn tail (a crash during
an append, never acknowledged); any other damage, a checksum mismatch of the last record included, and a
zeroed header with a record of a later sequence number after it, make the segment corrupt.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from isal.isal_zlib import crc32  # zlib's CRC-32, 4x faster (ISA-L): the same values, old records verify

MAGIC = b"SR"
VERSION = 1
HEADER = struct.Struct(">2sBBQQII")
HEADER_SIZE = HEADER.size
SEGMENT_PREFIX = "seg-"
SEGMENT_SUFFIX = ".log"
# A flushed segment being removed a few MiB at a time (writer.segment_reaper): never read, deleted at start.
REMOVING_SUFFIX = ".removing"
CHECKPOINT_NAME = "checkpoint.json"
END_OF_RECORDS = bytes(HEADER_SIZE)  # written after a group's last record: where a segment's records end


class SpoolCorrupt(Exception):
    """A segment holds a damaged record before its end."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path.name} at byte {offset}: {reason}")
        self.path = path
        self.offset = offset


_NEWLINE = ord("\n")
BYTE_COUNT_LIMIT = 16 * 1024  # single-event frames: a few KiB; a 100-event request alone ~53 KB


@dataclasses.dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One spooled batch."""

    seq: int
    batch_id: int
    payload: bytes

    @property
    def event_count(self) -> int:
        """Number of NDJSON events in the payload."""
        return line_count(self.payload)


def line_count(data: bytes | bytearray | memoryview) -> int:
    """The newlines in ``data`` (NDJSON events), counted in SIMD: ``bytes.count`` of one byte runs a byte
    at a time (5-6 instructions a byte), and a writer counts every frame it receives. Up to
    ``BYTE_COUNT_LIMIT`` bytes ``bytes.count`` all the same: numpy's calls cost more than the count there,
    tenfold when its code is out of the caches, as between a writer's commits (docs/benchmarks.md,
    twenty-ninth session)."""
    if len(data) <= BYTE_COUNT_LIMIT:
        return (data if type(data) is bytes else bytes(data)).count(b"\n")
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == _NEWLINE))


@dataclasses.dataclass(frozen=True, slots=True)
class SpoolRange:
    """The payloads of consecutive records back to back in one buffer, and where each payload ends."""

    first_seq: int
    last_seq: int
    data: bytes | bytearray | memoryview
    ends: list[int]

    @classmethod
    def of(cls, records: list[SpoolRecord]) -> SpoolRange:
        """The range of records already in memory."""
        ends, position = [], 0
        for record in records:
            position += len(record.payload)
            ends.append(position)
        first, last = (records[0].seq, records[-1].seq) if records else (0, 0)
        return cls(first, last, b"".join(record.payload for record in records), ends)

    def payloads(self) -> Iterator[bytes]:
        """Each record's payload (a copy), in order."""
        view = memoryview(self.data)
        start = 0
        for end in self.ends:
            yield bytes(view[start:end])
            start = end


def check_record(header: bytes | bytearray, payload: bytes | memoryview, path: Path, offset: int) -> int:
    """The seq of a whole record given as its header and its payload; SpoolCorrupt unless both check (the one
    place that knows a record's header and checksum rules, for recovery, reads of the spool and flushes)."""
    magic, version, _reserved, seq, _batch_id, length, crc = HEADER.unpack_from(header)
    if magic != MAGIC or version != VERSION or length != len(payload):
        raise SpoolCorrupt(path, offset, "bad record header")
    if crc32(payload, crc32(header[2:24])) != crc:
        raise SpoolCorrupt(path, offset, "checksum mismatch")
    return seq


def encode_record(seq: int, batch_id: int, payload: bytes) -> bytes:
    """Encode one spool record."""
    return record_header(seq, batch_id, payload) + payload


def record_header(seq: int, batch_id: int, payload: bytes | memoryview) -> bytes:
    """The header of the record of ``payload`` (the record is the header, then the payload)."""
    partial = struct.pack(">BBQQI", VERSION, 0, seq, batch_id, len(payload))
    return MAGIC + partial + struct.pack(">I", crc32(payload, crc32(partial)))


def segment_name(first_seq: int) -> str:
    """File name of the segment whose first record has ``first_seq``."""
    return f"{SEGMENT_PREFIX}{first_seq:020d}{SEGMENT_SUFFIX}"


def segment_first_seq(path: Path) -> int | None:
    """The first sequence number encoded in a segment's name, or None for other files."""
    name = path.name
    if not (name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)):
        return None
    digits = name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
    return int(digits) if digits.isdigit() else None


def seq_floor(path: Path) -> int | None:
    """The seq every record of the segment at ``path`` rises above (its name's seq, less one): a segment is
    named after the next seq that could be written when it was opened; None for other files. What
    ``iter_records`` and ``records_end`` take as ``after_seq`` to stop before a reused segment's old records."""
    first = segment_first_seq(path)
    return None if first is None else first - 1


def list_segments(spool_dir: Path) -> list[tuple[int, Path]]:
    """Segments in a spool directory, ordered by first sequence number."""
    found = []
    try:
        entries = list(spool_dir.iterdir())
    except FileNotFoundError:
        return []
    for path in entries:
        first = segment_first_seq(path)
        if first is not None:
            found.append((first, path))
    found.sort()
    return found


def iter_records(data: bytes | memoryview, path: Path, after_seq: int | None = None) -> Iterator[tuple[int, SpoolRecord]]:
    """Yield (end offset, record) for each whole record up to where the records end: the end of ``data``,
    a zeroed header, or a header whose sequence number does not rise above ``after_seq`` (when given) and
    the previous record's (an old record of a reused segment); stop silently at a torn tail.

    Raises SpoolCorrupt when a record before the tail is damaged, and when a record with a higher sequence
    number and a good checksum follows where the records seem to end (that header was damaged, not written
    as an end).
    """
    offset = 0
    size = len(data)
    last_seq = after_seq
    while offset < size:
        if size - offset < HEADER_SIZE:
            return
        magic, version, _reserved, seq, batch_id, length, _crc = HEADER.unpack_from(data, offset)
        if magic != MAGIC or version != VERSION:
            if data[offset:offset + HEADER_SIZE] != END_OF_RECORDS:
                raise SpoolCorrupt(path, offset, "bad record header")
            if _record_after(data, offset + HEADER_SIZE, last_seq):
                raise SpoolCorrupt(path, offset, "zeroed record header before later records")
            return
        if last_seq is not None and seq <= last_seq:
            if _record_after(data, offset + 1, last_seq):
                raise SpoolCorrupt(path, offset, f"record {seq} out of sequence before later records")
            return
        end = offset + HEADER_SIZE + length
        if end > size:
            return
        payload = bytes(data[offset + HEADER_SIZE : end])
        check_record(data[offset : offset + HEADER_SIZE], payload, path, offset)
        last_seq = seq
        yield end, SpoolRecord(seq, batch_id, payload)
        offset = end


def records_end(data: bytes | memoryview, after_seq: int | None = None) -> tuple[int, bool]:
    """Where the records at the start of ``data`` end, by their headers alone (no checksums), and whether
    ``data`` ran out first (then more of the file must be read to know). They end at a header that is not
    one (a zeroed one among them), or whose sequence number does not rise above ``after_seq`` and the
    previous one's: a reader of a reused segment (``writer.spool``) stops there, before its old records."""
    offset = 0
    size = len(data)
    last_seq = after_seq
    while size - offset >= HEADER_SIZE:
        magic, version, _reserved, seq, _batch, length, _crc = HEADER.unpack_from(data, offset)
        if magic != MAGIC or version != VERSION or (last_seq is not None and seq <= last_seq):
            return offset, False
        if offset + HEADER_SIZE + length > size:
            return offset, True
        offset += HEADER_SIZE + length
        last_seq = seq
    return offset, True


def _record_after(data: bytes | memoryview, start: int, after_seq: int | None) -> bool:
    """True when a whole record with a good checksum and a sequence number above ``after_seq`` starts
    anywhere at or after ``start``."""
    whole = data if isinstance(data, bytes) else bytes(data)
    offset = whole.find(MAGIC, start)
    while offset >= 0:
        if len(whole) - offset >= HEADER_SIZE:
            _magic, version, _reserved, seq, _batch, length, crc = HEADER.unpack_from(whole, offset)
            end = offset + HEADER_SIZE + length
            if (version == VERSION and (after_seq is None or seq > after_seq) and end <= len(whole)
                    and crc32(whole[offset + HEADER_SIZE:end], crc32(whole[offset + 2:offset + 24])) == crc):
                return True
        offset = whole.find(MAGIC, offset + 1)
    return False


def skip_records(data: bytes, up_to_seq: int) -> int:
    """The offset of the first record whose seq is above ``up_to_seq``, or of the end of the records, by their
    headers (data cut at ``records_end``: no old records of a reused segment). Only the last record stepped
    over is checked whole (its checksum): in a reused segment a record being written may read as half new,
    half old, and a header read so would send the walk anywhere; the offset is then that record's."""
    offset = 0
    last = None
    while len(data) - offset >= HEADER_SIZE:
        magic, version, _reserved, seq, _batch, length, _crc = HEADER.unpack_from(data, offset)
        if magic != MAGIC or seq > up_to_seq or offset + HEADER_SIZE + length > len(data):
            break
        last = offset
        offset += HEADER_SIZE + length
    if last is not None:
        try:
            check_record(data[last:last + HEADER_SIZE], data[last + HEADER_SIZE:offset], Path("-"), last)
        except SpoolCorrupt:
            return last
    return offset


def read_segment(path: Path) -> tuple[list[SpoolRecord], int]:
    """All whole records of a segment and the offset where valid data ends."""
    data = path.read_bytes()
    records = []
    valid_end = 0
    for end, record in iter_records(data, path):
        records.append(record)
        valid_end = end
    return records, valid_end
