"""Read spooled events that the writer has not published yet (read-only, any moment, any damage)."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Any

import orjson

from ingest.read_plan import event_micros
from shared import spool_format

log = logging.getLogger("auditlake.ingest.read")
MEMO_EVENTS = 200_000  # parsed unflushed events kept between reads (beyond this, each read parses again)
FIRST_READ_BYTES = 1024 * 1024  # a segment's bytes are read this much first, then twice as much each time


@dataclasses.dataclass(frozen=True, slots=True)
class _Segment:
    """What earlier reads learnt of a segment (identified by inode): where the records up to ``flushed``
    end, and its unflushed records parsed from ``parsed_from`` to ``parsed_to`` (seq and events, in order)."""

    inode: int
    flushed: int
    skip_offset: int
    parsed_from: int
    parsed_to: int
    records: tuple[tuple[int, tuple[tuple[dict[str, Any], int | None], ...]], ...]


class SpoolReader:
    """Spooled events past the writer's checkpoint, for reads.

    The active segment grows to 64 MiB of mostly flushed records, and while ingest runs thousands of
    unflushed events wait in it. Reads used to copy the whole segment and parse every unflushed event
    each time. Now a read starts where the previous one found the first unflushed record (segments only
    grow, the checkpoint only advances), steps over flushed records by their headers, and reuses the
    records earlier reads parsed: only new records are parsed. The events returned are shared between
    reads and must not be modified.
    """

    def __init__(self, spool_dir: Path, memo_events: int = MEMO_EVENTS) -> None:
        self.spool_dir = spool_dir
        self.memo_events = memo_events
        self._segments: dict[Path, _Segment] = {}
        self.checkpoint_seq = -1  # the writer's checkpoint as the last read found it (-1: none read yet)
        self._lock = threading.Lock()  # concurrent reads parse new records once, one after the other

    def events(self) -> list[tuple[int, dict[str, Any], int | None]]:
        """(seq, event, ts in µs) for every spooled event past the writer's checkpoint.

        Read the checkpoint before the segments: a record checkpointed meanwhile is then still returned
        here and recognised as published by the caller, which lists the store afterwards. Segments whose
        successor starts at or below the checkpoint hold only flushed records and are not read.
        """
        with self._lock:
            return self._events()

    def _events(self) -> list[tuple[int, dict[str, Any], int | None]]:
        try:
            checkpoint = orjson.loads((self.spool_dir / spool_format.CHECKPOINT_NAME).read_bytes())
            flushed = int(checkpoint.get("flushed_seq", 0))
            self.checkpoint_seq = flushed
        except FileNotFoundError:
            flushed = 0
        segments = spool_format.list_segments(self.spool_dir)
        wanted = [path for position, (_first, path) in enumerate(segments)
                  if position + 1 >= len(segments) or segments[position + 1][0] > flushed + 1]
        known = {path: segment for path, segment in self._segments.items() if path in wanted}
        budget = self.memo_events
        found: list[tuple[int, dict[str, Any], int | None]] = []
        for path in wanted:
            try:
                segment = self._read(path, flushed, known.get(path), path == segments[-1][1])
            except FileNotFoundError:
                known.pop(path, None)
                continue
            count = sum(len(events) for _, events in segment.records)
            budget -= count
            if budget < 0:  # too many to keep: remember only where the flushed records end
                known[path] = dataclasses.replace(segment, parsed_from=segment.skip_offset,
                                                  parsed_to=segment.skip_offset, records=())
            else:
                known[path] = segment
            found.extend((seq, event, ts) for seq, events in segment.records for event, ts in events)
        self._segments = known
        return found

    def _read(self, path: Path, flushed: int, known: _Segment | None, active: bool) -> _Segment:
        """The segment's unflushed records, parsing only those no earlier read parsed.

        Bytes before the previous read's first unflushed record are not read again. Positional reads, not
        a memory map: the writer may cut a failed append off the segment, and a mapped page past the new
        end would kill the process.
        """
        descriptor = os.open(path, os.O_RDONLY)
        try:
            status = os.fstat(descriptor)
            if known is not None and (known.inode != status.st_ino or known.flushed > flushed
                                      or known.parsed_to > status.st_size):
                known = None
            start = known.skip_offset if known is not None else 0
            after_seq = spool_format.seq_floor(path)
            data = _records_from(descriptor, start, status.st_size, after_seq)
        finally:
            os.close(descriptor)
        skip_offset = start + spool_format.skip_records(data, flushed)
        records: list[tuple[int, tuple[tuple[dict[str, Any], int | None], ...]]] = []
        parse_from = skip_offset
        if known is not None and known.parsed_from <= skip_offset <= known.parsed_to:
            records = [record for record in known.records if record[0] > flushed]
            parse_from = known.parsed_to
        parsed_to = parse_from
        try:
            for end, record in spool_format.iter_records(data[parse_from - start:], path, after_seq):
                parsed_to = parse_from + end
                if record.seq > flushed:
                    events = (orjson.loads(line) for line in record.payload.splitlines() if line)
                    records.append((record.seq, tuple((event, event_micros(event)) for event in events)))
        except spool_format.SpoolCorrupt as exc:
            # The last segment may be written meanwhile: over a reused one's old records, a record being
            # written can read as half new, half old. Not yet acknowledged, it is not an event to show.
            log.log(logging.DEBUG if active else logging.WARNING, "skipping the damaged rest of a spool segment",
                    extra={"error": str(exc)})
            # what this read found is returned, but the next read starts where this one did
            return _Segment(status.st_ino, flushed, start, -1, -1, tuple(records))
        return _Segment(status.st_ino, flushed, skip_offset, skip_offset, parsed_to, tuple(records))


def _records_from(descriptor: int, start: int, size: int, after_seq: int | None) -> bytes:
    """A segment's bytes from ``start`` (a record's start) to where its records end (``records_end``), read a
    growing piece at a time: a reused segment (``writer.spool``) holds old records after its own, up to
    its full size, which are not read."""
    data = b""
    wanted = FIRST_READ_BYTES
    while start + len(data) < size:
        piece = os.pread(descriptor, min(wanted, size - start - len(data)), start + len(data))
        if not piece:
            break
        data += piece
        end, unfinished = spool_format.records_end(data, after_seq)
        if not unfinished:
            return data[:end]
        wanted = 2 * len(data)
    return data
