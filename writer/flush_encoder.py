"""The flush's CPU work in a child process of the writer: read a spool range, dedupe, sort and encode its files.

In one process, the flush thread's Python work (the id hashes, the typed fields, Arrow's many calls) took
the interpreter lock from the event loop that receives frames and answers them, and from the thread that
fsyncs the spool. A prototype with this work in a child (docs/benchmarks.md, seventeenth session) halved
the acks slower than 5 ms at half the maximum (4.1-5.6 % -> 2.1-2.9 %) and the spool commits slower than
1 ms. The child owns the dedupe window (it loads it, looks ids up, and remembers stored ids when told);
the writer keeps every durable step of a flush (marker, file writes, manifest, checkpoint). When the child
dies or does not answer, the flush in progress fails (it is retried like any failed flush) and the next
call starts a new child.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shared import native_memory, sched_slice, stack_dump
from shared.event_loop import GC_THRESHOLDS
from shared.logs import configure_logging
from writer.batches import FlushBatch, group_range
from writer.columns_spill import SpilledColumns, read_back
from writer.dedupe import DedupeWindow
from writer.encoder_channel import EncoderChannel, out_of_band
from writer.spool import IndexEntry, read_range
from writer.store import EncodedFile

log = logging.getLogger("auditlake.writer.encoder")
ENCODER_THREAD_NAME = "auditlake-enc"
# A flush of 16 MiB encodes in well under a second; a child silent this long is stuck and is replaced.
ANSWER_TIMEOUT_SECONDS = 300.0
# At shutdown, how long ``close`` waits for a call in flight before it kills the child.
CLOSE_WAIT_SECONDS = 5.0
# Above this resident size the child (and the writer) hands free memory back to the system after a flush:
# glibc's heap and the pages Arrow's jemalloc keeps for the next flush (both keep them for reuse otherwise,
# which spares the page faults of fresh memory; see shared.native_memory).
TRIM_ABOVE_BYTES = 192 * 1024 * 1024


class EncoderFailed(Exception):
    """The encoder process raised, died or did not answer; the flush in progress fails and is retried."""


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """What the child needs: the store's encoding function and where the dedupe window lives (None: none)."""

    encode: Callable[[FlushBatch], list[EncodedFile]]  # picklable: a ``functools.partial`` of a module function
    window_directory: Path | None = None
    window_seconds: float = 0.0
    window_max_ids: int = 0
    log_level: str = "INFO"
    keep_freed_ms: int = 0  # ``native_memory.arrow_keep_freed_ms`` of the backend
    niceness: int = 0  # added to the child's nice value (``Settings.encoder_niceness``)


@dataclasses.dataclass
class EncodedBatch:
    """A spool range made ready to write: its files, and what the flush records about it."""

    first_seq: int
    last_seq: int
    events: int
    duplicates: int
    unparsable: list[bytes]
    id_hashes: np.ndarray  # uint64 (``dedupe.id_hashes``): pickled as one buffer, not as Python ints
    parsed: bool
    fields_refused: bool
    files: list[EncodedFile]


class FlushEncoder:
    """The writer's handle on its encoder process: started on first use, called from the flush thread."""

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config
        self.dedupe_ids = 0  # the window's size and reach, as the child last reported them
        self.dedupe_covered_seconds = config.window_seconds
        self.starts = 0  # encoder processes started (more than one: a child died and was replaced)
        self._process: Any = None
        self._connection: EncoderChannel | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The running child's process id, if one runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    @property
    def niceness(self) -> int | None:
        """The running child's nice value (None while none runs)."""
        pid = self.pid
        if pid is None:
            return None
        try:
            return os.getpriority(os.PRIO_PROCESS, pid)
        except OSError:  # it ended meanwhile
            return None

    def start(self) -> None:
        """Start the child now (it loads the dedupe window) unless one runs; blocks until it is ready."""
        with self._lock:
            if self._connection is None:
                self._start()

    def prepare(self, entries: list[IndexEntry]) -> EncodedBatch:
        """Read, dedupe, sort and encode a spool range in the child."""
        # sent once, beside entries that do not carry them, and not copied into the pickled message
        columns = [out_of_band(entry.columns) if isinstance(entry.columns, bytes) else entry.columns for entry in entries]
        bare = [dataclasses.replace(entry, columns=None) for entry in entries]
        return self._call("prepare", bare, columns)

    def remember(self, id_hashes: np.ndarray) -> None:
        """Add a stored range's ids to the dedupe window (on disk before this returns)."""
        self._call("remember", id_hashes)

    def close(self) -> None:
        """Stop the child (it ends when its connection closes). A call still in flight after
        ``CLOSE_WAIT_SECONDS`` (a flush past the drain deadline) is cut short: the child is killed, the call
        fails, and the next start redoes that flush."""
        if not self._lock.acquire(timeout=CLOSE_WAIT_SECONDS):
            process = self._process
            if process is not None:
                process.kill()
            self._lock.acquire()
        try:
            self._stop()
        finally:
            self._lock.release()

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:
            if self._connection is None:
                self._start()
            outcome, value, window = self._exchange((method, args), f"during {method}")
            self.dedupe_ids, self.dedupe_covered_seconds = window
            if outcome != "ok":
                raise EncoderFailed(f"{method} failed in the encoder process: {value}")
            return value

    def _exchange(self, message: Any, when: str) -> Any:
        """Send ``message`` and return the child's answer; stop the child and raise EncoderFailed when it
        ends or does not answer within ``ANSWER_TIMEOUT_SECONDS``."""
        assert self._connection is not None
        try:
            self._connection.send(message)
            if self._connection.poll(ANSWER_TIMEOUT_SECONDS):
                return self._connection.recv()
            problem = f"did not answer {when} in {ANSWER_TIMEOUT_SECONDS:g} s"
        except (EOFError, OSError) as exc:
            problem = f"ended {when}: {exc!r}"
        self._stop()
        raise EncoderFailed(f"the encoder process {problem}")

    def _start(self) -> None:
        # A fresh interpreter (no copy of the writer's threads), started as a plain subprocess: no
        # multiprocessing resource tracker beside it. The connection is one end of a socket pair
        # (``writer.encoder_channel``).
        ours, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen(
                [sys.executable, "-c", "from writer.flush_encoder import main; main()", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)})
        self._process, self._connection = process, EncoderChannel(ours)
        self.starts += 1
        self.dedupe_ids, self.dedupe_covered_seconds = self._exchange(self.config, "at start")
        log.info("encoder process started", extra={"pid": process.pid, "dedupe_ids": self.dedupe_ids})

    def _stop(self) -> None:
        connection, process = self._connection, self._process
        self._connection = self._process = None
        if connection is not None:
            connection.close()  # the child ends when it reads the end of its connection
        if process is not None:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


class _Encoder:
    """The child's side: the dedupe window and the store's encoding."""

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config
        self.window: DedupeWindow | None = None
        if config.window_directory is not None:
            self.window = DedupeWindow(config.window_directory, config.window_seconds, config.window_max_ids)
            self.window.load()

    def state(self) -> tuple[int, float]:
        if self.window is None:
            return 0, self.config.window_seconds
        return self.window.size, self.window.covered_seconds

    def prepare(self, entries: list[IndexEntry], columns: list[bytes | SpilledColumns | None]) -> EncodedBatch:
        span = read_range(entries)
        held = read_back(columns)  # None (a piece missing or not read back): the range's lines are parsed
        batch = group_range(span, self.window, held)
        del span  # the batch holds what it needs (its lines point into the range's buffer)
        files = [dataclasses.replace(item, body=out_of_band(item.body),
                                     sidecar=None if item.sidecar is None else out_of_band(item.sidecar))
                 for item in self.config.encode(batch)]  # they reach the writer as views, not copied in pickles
        encoded = EncodedBatch(batch.first_seq, batch.last_seq, batch.events, batch.duplicates, batch.unparsable,
                               batch.id_hashes, batch.parsed, batch.fields_refused, files)
        del batch
        if native_memory.resident_bytes() > TRIM_ABOVE_BYTES:
            native_memory.hand_back_free_memory()
        return encoded

    def remember(self, id_hashes: np.ndarray) -> None:
        if self.window is not None:
            self.window.remember(id_hashes)


def main() -> None:
    """The child process's entry: its connection's file descriptor is the one argument, its config the
    first message."""
    connection = EncoderChannel(socket.socket(fileno=int(sys.argv[1])))
    try:
        config = connection.recv()
    except (EOFError, OSError):
        return
    serve(connection, config)


def serve(connection: EncoderChannel, config: EncoderConfig) -> None:
    """Answer ``prepare`` and ``remember`` until the writer closes the connection."""
    # A signal sent to the whole process group (Ctrl-C in a terminal, a runtime stopping the group) is the
    # writer's to act on: it drains, then closes this connection. Were the child to die first, the drain's
    # flushes would fail and leave their events in the spool for the next start.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sched_slice.restore_default()  # bulk work: the default slice, not the writer loop's short one
    with contextlib.suppress(OSError):  # lowering is always allowed; a sandbox that refuses it leaves it level
        os.nice(config.niceness)  # the writer's loop and commit threads take the CPU first
    sched_slice.name_thread(ENCODER_THREAD_NAME)
    configure_logging("writer", config.log_level)
    stack_dump.install()
    native_memory.limit_arenas()  # the C library's heap and Arrow's pool as the writer sets them up
    native_memory.reuse_big_blocks()
    native_memory.arrow_on_jemalloc(config.keep_freed_ms)
    encoder = _Encoder(config)
    gc.collect()  # as in shared.event_loop.run: what was loaded is frozen, collections are rare
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    connection.send(encoder.state())
    methods = {"prepare": encoder.prepare, "remember": encoder.remember}
    while True:
        try:
            method, args = connection.recv()
        except (EOFError, OSError):
            return
        try:
            answer: tuple[str, Any] = ("ok", methods[method](*args))
        except Exception as exc:  # reported to the writer, whose flush fails and is retried
            log.error("encoder step failed", extra={"step": method, "error": repr(exc)})
            answer = ("error", repr(exc))
        try:
            connection.send((*answer, encoder.state()))
        except (EOFError, OSError):
            return
