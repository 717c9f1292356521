"""Read spooled events that the writer has not published yet (read-only, any moment, any damage)."""

from __future__ import annotations

import dataclasses
import logging
import mmap
import os
from pathlib import Path
from typing import Any

import orjson

from shared import spool_format

log = logging.getLogger("auditlake.ingest.read")


@dataclasses.dataclass(frozen=True, slots=True)
class _Skipped:
    """Where a segment's records up to ``flushed`` end (the segment identified by inode)."""

    inode: int
    flushed: int
    offset: int


class SpoolReader:
    """Spooled events past the writer's checkpoint, for reads.

    The active segment grows to 64 MiB of mostly flushed records; copying it for every read cost tens of
    milliseconds. The segment is memory-mapped instead, flushed records are stepped over by their headers
    from where the previous read stopped (segments only grow, the checkpoint only advances), and only the
    unflushed tail is copied and parsed.
    """

    def __init__(self, spool_dir: Path) -> None:
        self.spool_dir = spool_dir
        self._skipped: dict[Path, _Skipped] = {}

    def events(self) -> list[tuple[int, dict[str, Any]]]:
        """(seq, event) for every spooled event past the writer's checkpoint.

        Read the checkpoint before the segments: a record checkpointed meanwhile is then still returned
        here and recognised as published by the caller, which lists the store afterwards. Segments whose
        successor starts at or below the checkpoint hold only flushed records and are not read.
        """
        try:
            checkpoint = orjson.loads((self.spool_dir / spool_format.CHECKPOINT_NAME).read_bytes())
            flushed = int(checkpoint.get("flushed_seq", 0))
        except FileNotFoundError:
            flushed = 0
        segments = spool_format.list_segments(self.spool_dir)
        found: list[tuple[int, dict[str, Any]]] = []
        wanted = []
        for position, (_first, path) in enumerate(segments):
            if position + 1 < len(segments) and segments[position + 1][0] <= flushed + 1:
                continue
            wanted.append(path)
        self._skipped = {path: skipped for path, skipped in self._skipped.items() if path in wanted}
        for path in wanted:
            try:
                tail = self._unflushed(path, flushed)
            except FileNotFoundError:
                continue
            try:
                for _end, record in spool_format.iter_records(tail, path):
                    if record.seq <= flushed:
                        continue
                    for line in record.payload.splitlines():
                        if line:
                            found.append((record.seq, orjson.loads(line)))
            except spool_format.SpoolCorrupt as exc:
                log.warning("skipping the damaged rest of a spool segment", extra={"error": str(exc)})
        return found

    def _unflushed(self, path: Path, flushed: int) -> bytes:
        """The segment's bytes from its first record above ``flushed`` (headers of the rest are not read)."""
        descriptor = os.open(path, os.O_RDONLY)
        try:
            status = os.fstat(descriptor)
            if status.st_size == 0:
                return b""
            mapped = mmap.mmap(descriptor, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(descriptor)
        with mapped:
            known = self._skipped.get(path)
            start = 0
            if known is not None and known.inode == status.st_ino and known.flushed <= flushed \
                    and known.offset <= status.st_size:
                start = known.offset
            with memoryview(mapped) as view:
                offset = start + spool_format.skip_records(view[start:], flushed)
            self._skipped[path] = _Skipped(status.st_ino, flushed, offset)
            return mapped[offset:]
