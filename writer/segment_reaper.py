"""Removes flushed spool segments a few MiB at a time, so that freeing one does not stall the spool's fsyncs.

Unlinking a 64 MiB segment at once frees all its blocks in one journal transaction; on ext4 (with online
``discard`` as on the benchmark machine) the spool's next fsyncs wait for that commit. Measured with
``bench/segment_removal.py`` (a 100 KB append and fsync every millisecond beside it, two runs): the appends
during or right after an unlink at once took p99 3.5-4.1 ms, at worst 14-18 ms; with the segment cut down
4 MiB at a time, 5 ms apart (about 105 ms for 64 MiB), p99 1.1-1.2 ms, at worst 2.0 ms. A segment is
renamed first (with ``spool_format.REMOVING_SUFFIX``), so a spool that restarts mid-way never reads a cut
segment: ``Spool.open`` deletes what is left of it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
from pathlib import Path

from shared import sched_slice, spool_format

log = logging.getLogger("auditlake.writer.reaper")
STEP_BYTES = 4 * 1024 * 1024
STEP_PAUSE_SECONDS = 0.005
REAPER_THREAD_NAME = "auditlake-reap"  # Linux keeps 15 bytes of a thread name


class SegmentReaper:
    """Removes segments on a thread of its own, each renamed, shrunk ``step_bytes`` at a time, then unlinked."""

    def __init__(self, step_bytes: int = STEP_BYTES, pause_seconds: float = STEP_PAUSE_SECONDS) -> None:
        self.step_bytes = step_bytes
        self.pause_seconds = pause_seconds
        self.removed = 0  # files removed since start (flushed segments, and spill files of typed fields)
        self._hurry = threading.Event()  # set when shutting down: what is queued goes at once, pauses cut short
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="reaper",
                                                             initializer=_start_reaper_thread)

    def remove(self, paths: list[Path]) -> None:
        """Queue flushed segments (and unused spill files, ``writer.columns_spill``) for removal; returns at
        once (any thread)."""
        for path in paths:
            self._thread.submit(self._remove_one, path)

    def close(self) -> None:
        """Remove what is queued without pauses and wait for it."""
        self._hurry.set()
        self._thread.shutdown(wait=True)

    def _remove_one(self, path: Path) -> None:
        dying = path.with_name(path.name + spool_format.REMOVING_SUFFIX)
        try:
            os.rename(path, dying)
            self._shrink(dying)
            dying.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:  # the next start deletes what is left
            log.warning("could not remove a flushed spool segment", extra={"segment": path.name, "error": repr(exc)})
            return
        self.removed += 1

    def _shrink(self, path: Path) -> None:
        """Cut the file down ``step_bytes`` at a time, pausing between cuts unless hurried."""
        fd = os.open(path, os.O_WRONLY)
        try:
            size = os.fstat(fd).st_size
            while size > 0 and not self._hurry.is_set():
                size = max(0, size - self.step_bytes)
                os.ftruncate(fd, size)
                self._hurry.wait(self.pause_seconds)
        finally:
            os.close(fd)


def _start_reaper_thread() -> None:
    """The reaper's thread runs on the scheduler's default slice, not the event loop's short one it inherits."""
    sched_slice.restore_default()
    sched_slice.name_thread(REAPER_THREAD_NAME)
