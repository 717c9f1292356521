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


def read_back(pieces: list[bytes | SpilledColumns | None]) -> list[bytes] | None:
    """A range's typed fields with the spilled pieces read back (each spill file opened once), or None when
    any piece is missing or cannot be read back whole: the flush then parses the range's lines, so nothing
    after that piece is read."""
    if None in pieces:
        return None
    files: dict[str, int] = {}
    try:
        held = []
        for piece in pieces:
            data = _read(piece, files) if isinstance(piece, SpilledColumns) else piece
            if data is None:
                return None
            held.append(data)
        return held
    finally:
        for fd in files.values():
            os.close(fd)


def _read(piece: SpilledColumns, files: dict[str, int]) -> bytes | None:
    try:
        if piece.path not in files:
            files[piece.path] = os.open(piece.path, os.O_RDONLY)
        data = os.pread(files[piece.path], piece.length, piece.offset)
    except OSError:
        return None
    return data if len(data) == piece.length else None


class ColumnsSpill:
    """Places typed fields in the current spill file and counts, per file, the batches that refer to it.

    ``reserve`` runs on the writer's event loop and does no I/O but open a new file every ``file_bytes``;
    ``write`` puts the bytes in their place from the spool's commit thread, beside the group's own write,
    so the loop never waits for the page cache (a write there can block on dirty-page throttling). A file
    stays open while a batch refers to it, so a piece reserved before the next file was started is still
    written into its own.
    """

    def __init__(self, directory: Path, max_bytes: int, file_bytes: int = SPILL_FILE_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.file_bytes = file_bytes
        self.spilled_batches = 0  # batches whose typed fields were placed in a spill file since start
        self._path: str | None = None  # the file new pieces are placed in
        self._serial = 0
        self._fds: dict[str, int] = {}  # spill file not yet removed -> its descriptor
        self._refs: dict[str, int] = {}  # spill file not yet removed -> batches not yet flushed that refer to it
        self._sizes: dict[str, int] = {}  # spill file not yet removed -> its bytes (reserved ones included)

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

    def reserve(self, length: int) -> SpilledColumns | None:
        """The place of one batch's typed fields (``write`` fills it); None past ``max_bytes`` or when no
        spill file can be opened (the flush parses those lines then)."""
        if self.bytes + length > self.max_bytes:
            return None
        if self._path is None or self._sizes[self._path] >= self.file_bytes:
            try:
                self._start_file()
            except OSError as exc:
                log.warning("could not open a spill file; the flush parses those lines", extra={"error": repr(exc)})
                return None
        assert self._path is not None
        spilled = SpilledColumns(self._path, self._sizes[self._path], length)
        self._sizes[self._path] += length
        self._refs[self._path] += 1
        self.spilled_batches += 1
        return spilled

    def write(self, spilled: SpilledColumns, columns: bytes) -> bool:
        """Write reserved typed fields into their place (the spool's commit thread); False when they could
        not be (the caller releases the piece: its batch keeps no typed fields)."""
        view, offset = memoryview(columns), spilled.offset
        fd = self._fds.get(spilled.path)
        if fd is None:  # a piece not reserved here, or already let go
            return False
        try:
            while view:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
        except OSError as exc:
            log.warning("could not spill typed fields; the flush parses those lines", extra={"error": repr(exc)})
            return False
        return True

    def release(self, spilled: SpilledColumns) -> list[Path]:
        """A batch that referred to ``spilled`` is flushed or dropped; return spill files nothing refers to."""
        left = self._refs.get(spilled.path, 0) - 1
        if left > 0:
            self._refs[spilled.path] = left
            return []
        if spilled.path == self._path:  # caught up: the next spill starts a new file
            self._path = None
        self._forget(spilled.path)
        return [Path(spilled.path)]

    def close(self) -> None:
        """Close every spill file (their contents are deleted at the next start)."""
        for path in list(self._fds):
            self._forget(path)
        self._path = None

    def _start_file(self) -> None:
        """Place new pieces in a new file (the current one stays open while batches refer to it)."""
        self._serial += 1
        path = str(self.directory / f"{SPILL_PREFIX}{self._serial:08d}{SPILL_SUFFIX}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._path, self._fds[path] = path, fd
        self._refs[path] = self._sizes[path] = 0

    def _forget(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)
        self._refs.pop(path, None)
        self._sizes.pop(path, None)
