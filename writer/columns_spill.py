"""Typed fields past the spool's in-memory bound, kept in spill files that the encoder reads back at the flush.

Ingest sends each batch's typed fields beside its lines; the spool holds them in memory up to
``spool.MAX_COLUMNS_BYTES`` (about 100,000 events) so that a flush need not parse the lines. When the
writer falls behind, the batches past that bound used to lose them, and their flushes parsed the lines
again: at the maximum, a fifth of all events (a 10 s run: 317,000 of 1,539,000), which made the encoder
slower exactly while it was behind. Past the bound they now go to a spill file instead, which costs page
cache, not the writer's resident memory. They are a cache, never a source of truth: nothing is fsynced,
a start deletes every spill file, and a piece that cannot be read back whole is dropped, so its range is
parsed as before (the flush checks typed fields against the lines either way, ``event_table.from_columns``).
A spill file is removed once no unflushed batch refers to it; a new one is started every ``file_bytes``.
The files together hold at most ``max_bytes`` (the spool sets half its own bound); past that, batches
keep no typed fields, as before.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

log = logging.getLogger("auditlake.writer.spool")
SPILL_PREFIX = "columns-"
SPILL_SUFFIX = ".spill"
SPILL_FILE_BYTES = 16 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class SpilledColumns:
    """Where one batch's typed fields were spilled: sent to the encoder process, which reads them back."""

    path: str
    offset: int
    length: int


def read_back(pieces: list[bytes | SpilledColumns | None]) -> list[bytes | None]:
    """A range's typed fields with the spilled pieces read back (each spill file opened once); a piece that
    cannot be read back whole is None (the flush parses the range's lines then)."""
    files: dict[str, int | None] = {}
    try:
        return [_read(piece, files) if isinstance(piece, SpilledColumns) else piece for piece in pieces]
    finally:
        for fd in files.values():
            if fd is not None:
                os.close(fd)


def _read(piece: SpilledColumns, files: dict[str, int | None]) -> bytes | None:
    if piece.path not in files:
        try:
            files[piece.path] = os.open(piece.path, os.O_RDONLY)
        except OSError:
            files[piece.path] = None
    fd = files[piece.path]
    if fd is None:
        return None
    try:
        data = os.pread(fd, piece.length, piece.offset)
    except OSError:
        return None
    return data if len(data) == piece.length else None


class ColumnsSpill:
    """Appends typed fields to the current spill file and counts, per file, the batches that refer to it."""

    def __init__(self, directory: Path, max_bytes: int, file_bytes: int = SPILL_FILE_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.file_bytes = file_bytes
        self.spilled_batches = 0  # batches whose typed fields went to a spill file since start
        self._fd: int | None = None
        self._path: str | None = None  # the file appended to
        self._serial = 0
        self._refs: dict[str, int] = {}  # spill file not yet removed -> batches not yet flushed that refer to it
        self._sizes: dict[str, int] = {}  # spill file not yet removed -> its bytes

    @property
    def files(self) -> int:
        """Spill files not yet removed (the current one included)."""
        return len(self._refs)

    @property
    def bytes(self) -> int:
        """Bytes in the spill files not yet removed."""
        return sum(self._sizes.values())

    def clear(self) -> None:
        """Delete what an earlier run left (at start: the batches recovered from the spool carry no typed fields)."""
        for leftover in self.directory.glob(f"{SPILL_PREFIX}*{SPILL_SUFFIX}"):
            leftover.unlink()

    def put(self, columns: bytes) -> SpilledColumns | None:
        """Append one batch's typed fields; None past ``max_bytes`` or when the file cannot be written (the
        flush parses those lines then)."""
        if self.bytes + len(columns) > self.max_bytes:
            return None
        try:
            if self._fd is None or self._sizes[self._path] >= self.file_bytes:
                self._start_file()
            assert self._fd is not None and self._path is not None
            view = memoryview(columns)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            log.warning("could not spill typed fields; the flush parses those lines", extra={"error": repr(exc)})
            self._close_file()
            return None
        spilled = SpilledColumns(self._path, self._sizes[self._path], len(columns))
        self._sizes[self._path] += len(columns)
        self._refs[self._path] += 1
        self.spilled_batches += 1
        return spilled

    def release(self, spilled: SpilledColumns) -> list[Path]:
        """A batch that referred to ``spilled`` is flushed or dropped; return spill files nothing refers to."""
        left = self._refs.get(spilled.path, 0) - 1
        if left > 0:
            self._refs[spilled.path] = left
            return []
        if spilled.path == self._path:  # caught up: the next spill starts a new file
            assert self._fd is not None
            os.close(self._fd)
            self._fd = self._path = None
        self._forget(spilled.path)
        return [Path(spilled.path)]

    def close(self) -> None:
        """Close the current file (its contents are deleted at the next start)."""
        self._close_file()

    def _start_file(self) -> None:
        self._close_file()
        self._serial += 1
        path = str(self.directory / f"{SPILL_PREFIX}{self._serial:08d}{SPILL_SUFFIX}")
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        self._path = path
        self._refs[path] = self._sizes[path] = 0

    def _close_file(self) -> None:
        """Stop appending to the current file; delete it at once when no batch refers to it (only a file
        whose first write failed: ``release`` hands a caught-up file to the reaper)."""
        path, fd = self._path, self._fd
        self._fd = self._path = None
        if fd is not None:
            os.close(fd)
        if path is not None and self._refs.get(path) == 0:
            self._forget(path)
            try:
                os.unlink(path)
            except OSError:  # the next start deletes it
                pass

    def _forget(self, path: str) -> None:
        self._refs.pop(path, None)
        self._sizes.pop(path, None)
