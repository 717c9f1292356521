"""The flush loop: moves spooled batches into storage by size or age, retrying failures forever."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from shared import native_memory, sched_slice
from writer.flush_encoder import TRIM_ABOVE_BYTES, EncoderConfig, EncoderFailed, FlushEncoder
from writer.segment_reaper import SegmentReaper
from writer.store import Store
from writer.spool import FlushMarker, Spool
from writer.stats import WriterStats, utc_now_iso

log = logging.getLogger("auditlake.writer.flush")
# Spooled bytes one flush takes at most. 8 MiB (was 32): the same throughput under overload
# (bench/ingest_bench.py, 37,450 vs 36,110 events/s) and a quarter of the batch held in memory at once.
MAX_FLUSH_BYTES = 8 * 1024 * 1024
# What one flush takes at most while the writer is behind: when the spool holds two full flushes or more,
# the next flush takes up to this much, so that each flush's fixed cost (about nine fsyncs, two files and
# their directory, the journal, the checkpoint) is paid for twice the events. Measured at the maximum with
# 100-event bodies (docs/benchmarks.md, fourteenth session): 8 MiB flushes stored 118,000-136,000 events/s
# while 140,000-149,000 were accepted, the backlog growing; 16 MiB kept up with 141,000-146,000, the
# writer's peak 225-238 MB (32 MiB: the same rate at 285-291 MB). Flushing 16 MiB every time also
# raised the p99 at half the maximum (15-19 -> 19-21 ms), so a writer that keeps up stays at 8 MiB.
CATCH_UP_FLUSH_BYTES = 16 * 1024 * 1024
# A flush that the event count alone triggers starts at least this long after the previous one started.
# Each flush pays about nine fsyncs (marker, two files and their directory, journal, checkpoint), and the
# spool's group commits wait behind them on the same disk; back to back, 500-event flushes ran 12-25 times
# a second at half the maximum rate. 0.25 s: the writer's CPU there 81-88 % -> 56-61 % of a core, the
# maximum unchanged (bench/ingest_bench.py; docs/benchmarks.md). A full flush's worth of bytes and the
# age bound (``interval_seconds``) do not wait.
MIN_FLUSH_GAP_SECONDS = 0.25
BACKOFF_START_SECONDS = 0.25
BACKOFF_MAX_SECONDS = 2.0
FLUSH_FAILED = "flush to storage failed; events wait in the spool and are retried"
FLUSH_THREAD_NAME = "auditlake-flush"


class Flusher:
    """Owns publishing and retention: the only code that writes the store."""

    def __init__(self, spool: Spool, store: Store, stats: WriterStats, batch_size: int,
                 interval_seconds: float, retention_interval_seconds: float,
                 encoder: FlushEncoder | None = None, max_flush_bytes: int = MAX_FLUSH_BYTES,
                 min_gap_seconds: float = MIN_FLUSH_GAP_SECONDS, catch_up_bytes: int | None = None,
                 reaper: SegmentReaper | None = None) -> None:
        self.spool = spool
        self.reaper = reaper or SegmentReaper()  # removes the segments a flush leaves without live records
        # reads, dedupes and encodes each range in a child process (no dedupe window unless one is given)
        self.encoder = encoder or FlushEncoder(EncoderConfig(store.encoder()))
        self.store = store
        self.stats = stats
        self.batch_size = batch_size
        self.interval_seconds = interval_seconds
        self.retention_interval_seconds = retention_interval_seconds
        self.max_events = max(batch_size * 100, 50_000)
        self.max_flush_bytes = max_flush_bytes
        # a flush's bytes while the spool holds two full flushes or more (at least ``max_flush_bytes``)
        self.catch_up_bytes = max(max_flush_bytes, CATCH_UP_FLUSH_BYTES if catch_up_bytes is None else catch_up_bytes)
        self.min_gap_seconds = min_gap_seconds
        self._stopping = False
        self._last_started = -float("inf")  # monotonic start of the latest flush
        self._oldest_unflushed_at: float | None = None
        self._next_retention = 0.0
        # Every step of every flush runs on this one thread, in order, off the event loop and off the shared
        # executor the spool's commits use: the calls to the encoder process, the file writes and fsyncs,
        # the manifest and the checkpoint. (The encoding itself, whose Arrow pages a flush leaves for the
        # next, runs on the encoder process's one thread.)
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="flush",
                                                             initializer=_start_flush_thread)
        self.observe_flush: Callable[[float, bool], None] = lambda seconds, ok: None  # metrics hook
        self.journal: Any = None  # tamper evidence: writer.manifest.ManifestJournal, set by writer.evidence

    def stop(self) -> None:
        """Ask the loop to flush what is left and return."""
        self._stopping = True

    async def run(self) -> None:
        """Flush until stopped and the spool is empty (or a failure persists while stopping)."""
        backoff = BACKOFF_START_SECONDS
        redo = self.spool.read_flush_marker()
        try:
            await self._in_flush_thread(self.encoder.start)  # before the first flush is due (it loads the window)
        except EncoderFailed as exc:  # the first flush starts it again, and fails and retries if it must
            log.error("encoder process did not start", extra={"error": str(exc)})
        while True:
            if time.monotonic() >= self._next_retention:
                await self._retention()
            if not self._due(redo is not None):
                if self._stopping and not self.spool.index:
                    return
                await asyncio.sleep(min(0.05, self.interval_seconds))
                continue
            ok = await self._flush_once(redo)
            if ok:
                redo = None
                backoff = BACKOFF_START_SECONDS
                continue
            redo = self.spool.read_flush_marker()
            if self._stopping:
                return
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    def _due(self, redo: bool) -> bool:
        if redo:
            return True
        if not self.spool.index:
            self._oldest_unflushed_at = None
            return False
        if self._oldest_unflushed_at is None:
            self._oldest_unflushed_at = time.monotonic()
        if self._stopping:
            return True
        now = time.monotonic()
        if self.spool.bytes >= self.max_flush_bytes:
            return True
        if self.spool.backlog_events >= self.batch_size and now - self._last_started >= self.min_gap_seconds:
            return True
        return now - self._oldest_unflushed_at >= self.interval_seconds

    @property
    def behind(self) -> bool:
        """True while the spool holds two full flushes or more: flushes then take ``catch_up_bytes``, and
        the writer's STATUS says ``catching_up`` so that ingest sends fewer, larger frames."""
        return self.spool.bytes >= 2 * self.max_flush_bytes

    def _plan(self) -> list:
        """The next range: up to ``max_events`` and ``max_flush_bytes`` (``catch_up_bytes`` while the spool
        holds two full flushes or more), and only records that all have their typed fields or all lack them
        (a range is parsed whole or not at all)."""
        limit = self.catch_up_bytes if self.behind else self.max_flush_bytes
        entries = []
        events = size = 0
        for entry in self.spool.index:
            if entries and (events + entry.events > self.max_events or size + entry.length > limit
                            or (entry.columns is None) != (entries[0].columns is None)):
                break
            entries.append(entry)
            events += entry.events
            size += entry.length
        return entries

    def _in_flush_thread(self, step: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().run_in_executor(self._thread, step, *args)

    async def _flush_once(self, redo: FlushMarker | None) -> bool:
        if redo is not None:
            entries = [entry for entry in self.spool.index if redo.first <= entry.seq <= redo.last]
        else:
            entries = self._plan()
        if not entries:
            if redo is not None:
                await self._in_flush_thread(self.spool.checkpoint, max(redo.last, self.spool.flushed_seq))
            return True
        first, last = entries[0].seq, entries[-1].seq
        started = self._last_started = time.monotonic()
        try:
            batch = await self._in_flush_thread(self.encoder.prepare, entries)
            names = [item.name for item in batch.files]
            if redo is not None:
                stale = [name for name in redo.names if name not in names]
                if self.journal is not None and stale:
                    await self._in_flush_thread(self.journal.record_removed, stale)
                await self._in_flush_thread(self.store.remove, stale)
            await self._in_flush_thread(self.spool.write_flush_marker, first, last, names)
            result = await self._in_flush_thread(self.store.write, batch.files)
            batch.files = []  # written: their bytes need not wait for the rest of the flush
            if self.journal is not None:  # manifest entries are durable before the checkpoint
                await self._in_flush_thread(self.journal.record_published, batch, result)
            if batch.unparsable:
                await self._in_flush_thread(self.spool.quarantine_lines, first, last, batch.unparsable)
            await self._in_flush_thread(self.spool.checkpoint, last)
            self.spool.faults.reach("after_checkpoint")
            await self._in_flush_thread(self.encoder.remember, batch.id_hashes)
        except Exception as exc:  # every failure is retried; it must never kill the loop
            self.stats.failed_flushes += 1
            self.stats.last_error = FLUSH_FAILED
            if self.stats.failing_since is None:
                self.stats.failing_since = time.time()
            log.error("flush failed", extra={"first_seq": first, "last_seq": last, "error": repr(exc)})
            self.observe_flush(time.monotonic() - started, False)
            return False
        dead = self.spool.forget_flushed(last)
        self.stats.flushes += 1
        self.stats.flushed_events += batch.events
        self.stats.bytes_written += result.bytes_written
        self.observe_flush(time.monotonic() - started, True)
        self.stats.duplicate_events += batch.duplicates
        self.stats.unparsable_lines += len(batch.unparsable)
        self.stats.parsed_flushes += batch.parsed
        self.stats.typed_field_mismatches += batch.fields_refused
        self.stats.last_flush_at = utc_now_iso()
        self.stats.last_error = None
        self.stats.failing_since = None
        self._oldest_unflushed_at = None
        self.reaper.remove(dead)
        if native_memory.resident_bytes() > TRIM_ABOVE_BYTES:
            await self._in_flush_thread(native_memory.hand_back_free_memory)
        if batch.unparsable:
            log.error("unparsable spooled lines kept in quarantine", extra={"lines": len(batch.unparsable)})
        log.info("flush", extra={
            "first_seq": first, "last_seq": last, "events": batch.events, "duplicates": batch.duplicates,
            "files": len(result.files), "bytes": result.bytes_written,
            "duration_ms": round((time.monotonic() - started) * 1000, 2),
        })
        return True

    async def _retention(self) -> None:
        self._next_retention = time.monotonic() + self.retention_interval_seconds
        loop = asyncio.get_running_loop()
        try:
            files, removed = await loop.run_in_executor(None, self.store.purge)
        except OSError as exc:
            log.error("retention run failed", extra={"error": repr(exc)})
            return
        self.stats.retention_files_deleted += files
        self.stats.retention_bytes_deleted += removed
        self.stats.last_retention_at = utc_now_iso()
        log.info("retention", extra={"files_deleted": files, "bytes_deleted": removed,
                                     "retention_days": self.store.retention_days})


def _start_flush_thread() -> None:
    """The flush thread's bulk work runs on the scheduler's default slice, not the event loop's short one it
    inherits; it is named ``FLUSH_THREAD_NAME`` for ``top -H`` and ``/proc``."""
    sched_slice.restore_default()
    sched_slice.name_thread(FLUSH_THREAD_NAME)
