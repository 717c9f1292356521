"""The durable spool: segments of batches written in order (a flushed one reused as the next), group-committed with fdatasync before any ack."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from shared import spool_format
from shared.spool_format import SpoolCorrupt
from writer.columns_spill import ColumnsSpill, SpilledColumns
from writer.faults import FaultPoints
from writer.fsutil import fsync_dir, sync_data, write_atomic, write_vectored

# A group commit this small (single events: a dozen requests of ~0.5 KB) is written and synced on the event
# loop's thread: the hand-over to a worker thread and back (two wake-ups, the GIL taken twice) cost more than
# the fsync itself (0.36-0.39 ms a commit against 0.14 for the fsync). Single-event bodies, alternated
# rounds (bench/cpu_split.py --events-per-body 1): the writer's CPU per request 43-73 -> 28-49 us in every
# round; requests/s rose in one phase of the machine (7,869 / 6,704 / 6,457 / 6,662 -> 8,748 / 7,100 /
# 7,064 / 6,630) and not in a slower one. A 100-event request alone is ~53 KB, so larger batches keep the worker thread
# (the loop receives the next frames during their fsync; at 64 KiB the half-max p99 rose by about 1 ms).
INLINE_GROUP_BYTES = 16 * 1024
log = logging.getLogger("auditlake.writer.spool")
RECENT_BATCH_IDS = 8192
QUARANTINE_DIR = "quarantine"
FLUSH_MARKER = "flush-pending.json"
# Typed fields received beside unflushed lines (shared.typed_columns), kept in memory up to this many bytes:
# about 100,000 events. Batches past it go to a spill file (``writer.columns_spill``); every batch recovered
# after a restart is parsed at the flush instead.
MAX_COLUMNS_BYTES = 32 * 1024 * 1024
# Flushed segments kept for reuse instead of removed. Writing 256 KB and fsyncing it took 0.41-0.53 ms (140-180
# µs of CPU) at the end of a growing file and 0.26-0.29 ms (98-120 µs) over blocks written before. In the
# service (bench/cpu_split.py, three alternated pairs each): a group's write and fsync 0.30-0.33 -> 0.19-0.22
# ms with single events (8,383-8,503 -> 8,985-9,335 requests/s), 0.70-0.75 -> 0.33-0.47 ms with 100-event
# bodies (docs/benchmarks.md, twenty-first session).
SPARE_SEGMENTS = 1


class SpoolFull(Exception):
    """The spool holds its configured maximum of bytes; the batch was not taken."""


class SpoolWriteError(Exception):
    """Appending or syncing the spool failed; the batch is not durable."""


@dataclasses.dataclass(frozen=True, slots=True)
class IndexEntry:
    """Where an unflushed record lives."""

    seq: int
    batch_id: int
    path: Path
    offset: int
    length: int
    events: int
    # the lines' typed fields, when ingest sent them: in memory, or past the memory bound in a spill file
    columns: bytes | SpilledColumns | None = None


@dataclasses.dataclass(frozen=True)
class FlushMarker:
    """A flush in progress: its spool range and the names it publishes."""

    first: int
    last: int
    names: list[str]


@dataclasses.dataclass
class _Pending:
    seq: int
    batch_id: int
    header: bytes
    payload: bytes | memoryview  # a view of the received frame's buffer (``writer.frame_receiver``)
    payload_length: int
    events: int
    columns: bytes | SpilledColumns | None
    spill: bytes | None  # typed fields for the place ``columns`` reserved in a spill file, written with the group
    future: asyncio.Future[int]
    arrived: float  # time.monotonic() when the frame was handed to ``append``


class Spool:
    """Append batches durably; index what is not yet flushed; checkpoint what is."""

    def __init__(self, directory: Path, segment_bytes: int, max_bytes: int,
                 faults: FaultPoints | None = None, fresh_start_seq: int = 1,
                 max_columns_bytes: int = MAX_COLUMNS_BYTES, spare_segments: int = SPARE_SEGMENTS) -> None:
        self.directory = directory
        self.fresh_start_seq = fresh_start_seq
        self.faults = faults or FaultPoints(None)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.index: collections.deque[IndexEntry] = collections.deque()
        self.flushed_seq = 0
        self.next_seq = 1
        self.quarantined: list[str] = []
        self.last_write_error: str | None = None
        self.recent_batch_ids: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._segment_sizes: dict[Path, int] = {}
        self._backlog_bytes = 0
        self._backlog_events = 0
        self.max_columns_bytes = max_columns_bytes
        self.columns_bytes = 0  # typed fields held beside unflushed lines (entries' and pending appends')
        self.columns_spill = ColumnsSpill(directory, max_bytes // 2)  # the typed fields past ``max_columns_bytes``
        self._spills_to_reap: list[Path] = []  # spill files let go outside a flush, for the next forget_flushed
        self.committed_batches = 0
        self.committed_events = 0
        self._active: Path | None = None
        self._fd: int | None = None
        # Flushed segments kept to be the next ones (``forget_flushed``, ``_open_new_segment``): their blocks
        # are allocated and written, so a group commit writes over them without growing the file, and its
        # fdatasync has no block allocation, file size or (as fsync would) mtime to commit to the journal.
        self.spare_segments = spare_segments
        self._spares: list[Path] = []
        self._spares_lock = threading.Lock()  # kept by the flush's caller, taken by the commit thread
        self.reused_segments = 0
        self._written_seq = 0  # the highest seq written to a segment (a segment opened next is named after it)
        self._pending: list[_Pending] = []
        self._pending_bytes = 0  # bytes of the records in _pending, for the spool bound
        self._pending_by_batch: dict[int, asyncio.Future[int]] = {}
        self._wakeup = asyncio.Event()
        self._closing = False
        self._sync_seconds = 0.0  # the last group commit's write and sync (set in whichever thread ran it)
        self._writing = False  # a group's write and sync is running (set in whichever thread runs it)
        # metrics hook, once per durable group commit: its oldest frame's arrival to durable, and the write
        # and sync within that (the disk's share; the rest is the wait for the loop and the thread hand-off)
        self.observe_commit: Callable[[float, float], None] = lambda durable_seconds, sync_seconds: None
        # called once per group commit with the group's futures, right after they are settled (a result or
        # a SpoolWriteError) and in the same step: their done callbacks run a loop turn later, so the
        # server answers from here (writer.server) and its acks leave without waiting for that turn
        self.on_group_settled: Callable[[list[asyncio.Future[int]]], None] = lambda futures: None

    # -- startup -----------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory owner-only, read the checkpoint, index what remains, trim torn tails."""
        old_umask = os.umask(0o077)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        finally:
            os.umask(old_umask)
        checkpoint = self._read_checkpoint()
        self.flushed_seq = int(checkpoint.get("flushed_seq", 0))
        for batch_id in checkpoint.get("recent_batch_ids", []):
            self._remember(int(batch_id), 0)
        self.next_seq = self.flushed_seq + 1
        for leftover in self.directory.glob(f"*{spool_format.REMOVING_SUFFIX}"):
            leftover.unlink()  # a flushed segment whose removal a stop interrupted
        self.columns_spill.clear()
        segments = spool_format.list_segments(self.directory)
        if not checkpoint and not segments:
            self.next_seq = self.fresh_start_seq
        for first, path in segments:
            self._load_segment(path)
        self._written_seq = self.next_seq - 1
        self._open_new_segment()

    def _read_checkpoint(self) -> dict[str, Any]:
        path = self.directory / spool_format.CHECKPOINT_NAME
        try:
            return orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return {}

    def _load_segment(self, path: Path) -> None:
        data = path.read_bytes()
        records = []
        valid_end = 0
        try:
            for end, record in spool_format.iter_records(data, path, spool_format.seq_floor(path)):
                records.append(record)
                valid_end = end
        except SpoolCorrupt as exc:
            self._quarantine(path, str(exc))
            if records:
                write_atomic(path, data[:valid_end])
            data = data[:valid_end]
        if valid_end < len(data):
            if data.startswith(spool_format.END_OF_RECORDS, valid_end):  # the zeroed header, and what a reused segment held after it
                log.info("trimming a spool segment after its last record", extra={"segment": path.name})
            else:
                log.warning("trimming torn spool tail", extra={"segment": path.name, "bytes": len(data) - valid_end})
            with open(path, "r+b") as handle:
                handle.truncate(valid_end)
                os.fsync(handle.fileno())
        offset = 0
        live = False
        for record in records:
            length = spool_format.HEADER_SIZE + len(record.payload)
            if record.seq > self.flushed_seq:
                self._indexed(IndexEntry(record.seq, record.batch_id, path, offset, length, record.event_count))
                live = True
            self._remember(record.batch_id, record.seq)
            self.next_seq = max(self.next_seq, record.seq + 1)
            offset += length
        if live:
            self._segment_sizes[path] = valid_end
        elif path.exists():
            path.unlink()

    def _quarantine(self, path: Path, reason: str) -> None:
        target_dir = self.directory / QUARANTINE_DIR
        target_dir.mkdir(exist_ok=True)
        target = target_dir / f"{path.name}.{int(time.time())}"
        shutil.copy2(path, target)
        path.unlink()
        fsync_dir(self.directory)
        self.quarantined.append(target.name)
        log.error("quarantined corrupt spool segment", extra={"segment": path.name, "reason": reason})

    def _open_new_segment(self) -> None:
        """Start the next segment: a flushed one kept for reuse, renamed, when there is one; else a new file.
        Records go at explicit offsets (``pwritev``), so a reused segment is written from its start."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        # named after the next seq that can be written: records appended meanwhile hold that seq or higher
        path = self.directory / spool_format.segment_name(self._written_seq + 1)
        with self._spares_lock:
            spare = self._spares.pop() if self._spares else None
        size = 0
        if spare is not None:
            try:
                os.rename(spare, path)
                self.reused_segments += 1
            except OSError as exc:
                log.warning("could not reuse a flushed spool segment (the next start removes it)",
                            extra={"segment": spare.name, "error": repr(exc)})
                spare = None
        # the same name as the active segment only when no record went into it (after a failed append that
        # could not be cut off): what it holds is not a record to keep
        truncate = os.O_TRUNC if spare is None and path == self._active else 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | truncate, 0o600)
        if spare is None:
            size = os.fstat(self._fd).st_size
        fsync_dir(self.directory)
        self._active = path
        self._segment_sizes[path] = size

    # -- state -------------------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        """Bytes of spooled records not yet flushed: what the byte bound limits."""
        return self._backlog_bytes

    @property
    def file_bytes(self) -> int:
        """Bytes held in live segment files (flushed records included until their segment goes)."""
        return sum(self._segment_sizes.values())

    @property
    def segments(self) -> int:
        """Number of live segment files."""
        return len(self._segment_sizes)

    @property
    def backlog_events(self) -> int:
        """Events appended but not yet flushed."""
        return self._backlog_events

    def _indexed(self, entry: IndexEntry) -> None:
        self.index.append(entry)
        self._backlog_bytes += entry.length
        self._backlog_events += entry.events

    def _held_columns(self, columns: bytes | None) -> tuple[bytes | SpilledColumns | None, bytes | None]:
        """``columns`` when they fit the bound on typed fields held in memory (counted as held), else their
        place in a spill file and the bytes the group commit writes there (None when there is no place)."""
        if columns is None:
            return None, None
        if self.columns_bytes + len(columns) > self.max_columns_bytes:
            spilled = self.columns_spill.reserve(len(columns))
            return spilled, columns if spilled is not None else None
        self.columns_bytes += len(columns)
        return columns, None

    def _release_columns(self, columns: bytes | SpilledColumns | None) -> list[Path]:
        """A batch's typed fields are no longer needed; return spill files that nothing refers to any more."""
        if type(columns) is bytes:
            self.columns_bytes -= len(columns)
        elif isinstance(columns, SpilledColumns):
            return self.columns_spill.release(columns)
        return []

    def knows_batch(self, batch_id: int) -> bool:
        """True when a batch with this id is already durable in the spool or was flushed recently."""
        return batch_id in self.recent_batch_ids

    def pending_batch(self, batch_id: int) -> asyncio.Future[int] | None:
        """The commit future of a batch waiting for the current group commit, if any."""
        return self._pending_by_batch.get(batch_id)

    def _remember(self, batch_id: int, seq: int) -> None:
        self.recent_batch_ids[batch_id] = seq
        self.recent_batch_ids.move_to_end(batch_id)
        while len(self.recent_batch_ids) > RECENT_BATCH_IDS:
            self.recent_batch_ids.popitem(last=False)

    # -- appends and group commit ------------------------------------------------------------------

    def append(self, batch_id: int, payload: bytes | memoryview, events: int,
               columns: bytes | None = None) -> asyncio.Future[int]:
        """Queue a batch of ``events`` lines (the server has counted them) for the next group commit; the
        future resolves to its seq once synced. ``columns``, the lines' typed fields, are kept in memory
        for the flush while they fit ``max_columns_bytes``, past it in a spill file; they are never written to
        the spool's segments."""
        if self.bytes + self._pending_bytes + len(payload) > self.max_bytes:
            raise SpoolFull(f"spool holds {self.bytes + self._pending_bytes} of {self.max_bytes} bytes")
        seq = self.next_seq
        self.next_seq += 1
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        header = spool_format.record_header(seq, batch_id, payload)  # written beside the payload, not joined
        held, spill = self._held_columns(columns)
        self._pending.append(_Pending(seq, batch_id, header, payload, len(payload), events, held, spill, future,
                                      time.monotonic()))
        self._pending_bytes += len(header) + len(payload)
        self._pending_by_batch[batch_id] = future
        self._wakeup.set()
        return future

    async def run_committer(self) -> None:
        """Write and sync pending appends in groups until closed; resolve or fail their futures."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            group, group_bytes, self._pending, self._pending_bytes = self._pending, self._pending_bytes, [], 0
            records = [(item.header, item.payload) for item in group]
            spills = [(item.columns, item.spill) for item in group if item.spill is not None]
            try:
                if group_bytes <= INLINE_GROUP_BYTES and not spills:  # the loop itself never writes a spill
                    offsets, _ = self._write_group(records, [])
                else:
                    offsets, unspilled = await loop.run_in_executor(None, self._write_group, records, spills)
                    for item in group:
                        if item.columns in unspilled:  # durable all the same; its flush parses its lines
                            self._spills_to_reap.extend(self._release_columns(item.columns))
                            item.columns = None
            except OSError as exc:
                self.last_write_error = f"spool write failed: {exc.strerror or exc.__class__.__name__}"
                log.error("spool group commit failed", extra={"batches": len(group), "error": str(exc)})
                for item in group:
                    self._pending_by_batch.pop(item.batch_id, None)
                    self._spills_to_reap.extend(self._release_columns(item.columns))
                    if not item.future.done():
                        item.future.set_exception(SpoolWriteError(self.last_write_error))
                self._group_settled(group)
                continue
            durable_at = time.monotonic()
            self.last_write_error = None
            self._written_seq = group[-1].seq
            for item in group:
                self._pending_by_batch.pop(item.batch_id, None)
                if not item.future.done():
                    item.future.set_result(item.seq)
            # The answers leave first: what follows is bookkeeping no answer needs, done while ingest reads
            # them (all of it in this one step, so no frame sees the spool in between).
            self._group_settled(group)
            path = self._active
            assert path is not None
            for item, offset in zip(group, offsets):
                self._indexed(IndexEntry(item.seq, item.batch_id, path, offset,
                                         len(item.header) + item.payload_length, item.events, item.columns))
                self.committed_batches += 1
                self.committed_events += item.events
                self._remember(item.batch_id, item.seq)
            self.observe_commit(durable_at - group[0].arrived, self._sync_seconds)
            if self._segment_sizes[path] >= self.segment_bytes:
                await loop.run_in_executor(None, self._open_new_segment)

    def _group_settled(self, group: list[_Pending]) -> None:
        """Tell ``on_group_settled``; a failure there is logged, never the end of the committer."""
        try:
            self.on_group_settled([item.future for item in group])
        except Exception:
            log.exception("answering a group commit failed", extra={"batches": len(group)})

    def _write_group(self, records: list[tuple[bytes, bytes]], spills: list[tuple[SpilledColumns, bytes]]
                     ) -> tuple[list[int], list[SpilledColumns]]:
        """``_append_and_sync``, marked as running so that ``release`` does not close the files under it."""
        self._writing = True
        try:
            return self._append_and_sync(records, spills)
        finally:
            self._writing = False

    def _append_and_sync(self, records: list[tuple[bytes, bytes]], spills: list[tuple[SpilledColumns, bytes]]
                         ) -> tuple[list[int], list[SpilledColumns]]:
        """Append records (header, payload) and the zeroed header that ends them, write the group's spilled
        typed fields into their places, and sync the segment (``fsutil.sync_data``; on the loop's thread for a
        small group, else in a worker thread); roll the segment back on failure. The records' offsets, and the
        spilled pieces that could not be written.

        The pieces go to ``pwritev`` as they are: joining them would copy up to two 16 MiB frames twice. The
        next group writes over the zeroed header.
        """
        assert self._fd is not None and self._active is not None
        start = self._segment_sizes[self._active]
        offsets = []
        position = start
        for header, payload in records:
            offsets.append(position)
            position += len(header) + len(payload)
        pieces = [piece for record in records for piece in record]
        started = time.monotonic()
        try:
            written_from = start
            if self.faults.armed_for_mid_append:
                data = b"".join(pieces)
                cut = len(data) - len(pieces[-1]) // 2
                self._write_pieces([data[:cut]], start)
                self.faults.reach("spool_mid_append")
                pieces, written_from = [data[cut:]], start + cut
            self._write_pieces([*pieces, spool_format.END_OF_RECORDS], written_from)
            unspilled = [spilled for spilled, columns in spills if not self.columns_spill.write(spilled, columns)]
            sync_data(self._fd)  # fdatasync: no journal commit for the mtime a group's write moved
            self._sync_seconds = time.monotonic() - started
            self.faults.reach("after_fsync_before_ack")
        except OSError:
            self._roll_back(start)
            raise
        self._segment_sizes[self._active] = position
        return offsets, unspilled

    def _write_pieces(self, pieces: list[bytes], offset: int) -> None:
        """Write the pieces back to back from ``offset`` with ``pwritev`` (``fsutil.write_vectored``)."""
        assert self._fd is not None
        descriptor = self._fd

        def write(views: list[memoryview]) -> int:
            nonlocal offset
            written = os.pwritev(descriptor, views, offset)
            offset += written
            return written

        write_vectored(pieces, write)

    def _roll_back(self, size: int) -> None:
        """Cut a failed append off the active segment so it can never be replayed; else start afresh."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
        except OSError:
            log.error("could not roll back a failed spool append; starting a new segment")
            try:
                self._open_new_segment()
            except OSError:
                pass

    def close(self) -> None:
        """Stop the committer after the pending group and close the active segment."""
        self._closing = True
        self._wakeup.set()

    def release(self) -> None:
        """Close the active segment file descriptor (and the spill files'); not while a group write still
        runs in the commit thread (a shutdown whose drain deadline passed during a stalled sync): its
        descriptors could be closed, or their numbers reused, under it. The process's exit closes them then."""
        if self._writing:
            log.warning("a group commit is still running (a stalled disk?); the spool's files are left open "
                        "until the process exits")
            return
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.columns_spill.close()

    # -- flushing support --------------------------------------------------------------------------

    def quarantine_lines(self, first: int, last: int, lines: list[bytes]) -> None:
        """Keep lines that could not be parsed as events, so nothing is silently discarded."""
        target_dir = self.directory / QUARANTINE_DIR
        target_dir.mkdir(exist_ok=True)
        write_atomic(target_dir / f"unparsable-{first:012d}-{last:012d}.ndjson", b"".join(l + b"\n" for l in lines))

    def read_flush_marker(self) -> FlushMarker | None:
        """The flush that was started but not checkpointed, if any."""
        try:
            marker = orjson.loads((self.directory / FLUSH_MARKER).read_bytes())
        except FileNotFoundError:
            return None
        return FlushMarker(int(marker["first"]), int(marker["last"]), list(marker.get("names", [])))

    def write_flush_marker(self, first: int, last: int, names: list[str]) -> None:
        """Record the range and the names about to be published, so a crash redoes exactly this flush."""
        write_atomic(self.directory / FLUSH_MARKER, orjson.dumps({"first": first, "last": last, "names": names}))

    def checkpoint(self, last_seq: int) -> None:
        """Durably mark everything up to ``last_seq`` flushed and clear the flush marker (worker thread)."""
        body = {"flushed_seq": last_seq, "recent_batch_ids": list(self.recent_batch_ids)[-RECENT_BATCH_IDS:]}
        write_atomic(self.directory / spool_format.CHECKPOINT_NAME, orjson.dumps(body))
        try:
            (self.directory / FLUSH_MARKER).unlink()
        except FileNotFoundError:
            pass

    def forget_flushed(self, last_seq: int) -> list[Path]:
        """Drop flushed entries from the index; return segments that no longer hold live records, but the
        ones kept for reuse (``spare_segments`` full ones), and spill files of typed fields that no unflushed
        batch refers to (both for the reaper)."""
        self.flushed_seq = last_seq
        unused_spills, self._spills_to_reap = self._spills_to_reap, []
        while self.index and self.index[0].seq <= last_seq:
            entry = self.index.popleft()
            self._backlog_bytes -= entry.length
            self._backlog_events -= entry.events
            unused_spills.extend(self._release_columns(entry.columns))
        live = {entry.path for entry in self.index}
        # a copy in one step: the commit thread may add the next segment meanwhile
        dead = [path for path in list(self._segment_sizes) if path not in live and path != self._active]
        removed = []
        for path in dead:
            full = self._segment_sizes.pop(path) >= self.segment_bytes  # a segment that rolled over: its size is allocated
            with self._spares_lock:
                if full and len(self._spares) < self.spare_segments:
                    self._spares.append(path)
                    continue
            removed.append(path)
        return removed + unused_spills

    @property
    def spares(self) -> list[Path]:
        """Flushed segments kept to be reused as the next ones."""
        with self._spares_lock:
            return list(self._spares)


def read_range(entries: list[IndexEntry]) -> spool_format.SpoolRange:
    """The payloads of consecutive index entries back to back in one buffer (in the flush's encoder process).

    Each record is read into its place and checked there (header, length, seq and checksum), so a
    64 MiB range costs 64 MiB, not that plus the records it was joined from. The buffer is numpy's,
    not zero-filled first (``bytearray(n)`` wrote every page before the read did, in fresh pages after
    each flush's hand-back: 1.8 % of the writer at the maximum), and numpy asks for huge pages at
    4 MiB and above. With ``event_table.gather_pool``, three rounds alternated against `dcd0090`'s code
    (bench/cpu_split.py --seconds 10): page faults per 100-event request 25.9-29.8 -> 10.3-13.2 (the
    gather alone: 12.8-17.1), the writer's kernel time 174-187 -> 148-172 us per request.
    """
    data = memoryview(np.empty(sum(entry.length - spool_format.HEADER_SIZE for entry in entries), dtype=np.uint8))
    header = bytearray(spool_format.HEADER_SIZE)
    ends, position = [], 0
    handles: dict[Path, Any] = {}
    try:
        for entry in entries:
            handle = handles.get(entry.path)
            if handle is None:
                handle = handles[entry.path] = open(entry.path, "rb")
            payload = data[position:position + entry.length - spool_format.HEADER_SIZE]
            # Straight into the range's buffer: no copy of the record beside it (in this thread's heap).
            if os.preadv(handle.fileno(), [header, payload], entry.offset) != entry.length or \
                    spool_format.check_record(header, payload, entry.path, entry.offset) != entry.seq:
                raise SpoolCorrupt(entry.path, entry.offset, "record changed on disk")
            position += len(payload)
            ends.append(position)
            payload.release()
    finally:
        for handle in handles.values():
            handle.close()
    first, last = (entries[0].seq, entries[-1].seq) if entries else (0, 0)
    return spool_format.SpoolRange(first, last, data, ends)
