"""The read process: answers ingest's searches, counts and storage reports at a lower CPU priority.

Started by ingest (``ingest.read_process``) as ``python -m ingest.read_worker FD [CPUS]`` with one end of
a private socket pair (and, when ingest pinned itself to a CPU, the CPUs ingest had before). Its CPU work
(Arrow, decompression, botocore) never holds ingest's interpreter lock, and the kernel gives ingest and the
writer the cores first when they are busy. It exits when ingest closes the socket, including when ingest
dies.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

from ingest import read_wire
from ingest.read_plan import ReadCancelled
from ingest.record_encoding import encode_records
from ingest.read_wire import READY, RetentionError, StorageUnavailable
from ingest.storage_view import StorageView, build_storage_view
from shared import cpu_pinning, sched_slice, stack_dump
from shared.logs import configure_logging

log = logging.getLogger("auditlake.ingest.reads")
READ_NICENESS = 10
EXPECTED = (StorageUnavailable, RetentionError, ReadCancelled)


class ReadWorker:
    """Runs each request of ingest in a thread of its own pool and sends the answer back."""

    def __init__(self, sock: socket.socket, view: StorageView, threads: int) -> None:
        self.sock = sock
        self.view = view
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="read")
        self.cancels: dict[int, threading.Event] = {}
        self._send_lock = threading.Lock()

    def serve(self) -> None:
        """Announce readiness, then take requests until ingest closes the socket."""
        self._send(read_wire.encode((READY, True, os.getpid())))
        while (message := read_wire.receive(self.sock)) is not None:
            call_id, operation, args = message
            if operation == "cancel":
                event = self.cancels.get(call_id)
                if event is not None:
                    event.set()
                continue
            if operation in ("search", "stats"):
                plan = dataclasses.replace(args[0], cancel=threading.Event())
                self.cancels[call_id] = plan.cancel
                args = (plan, *args[1:])
            self.pool.submit(self._answer, call_id, operation, args)

    def _answer(self, call_id: int, operation: str, args: tuple[Any, ...]) -> None:
        try:
            reply = read_wire.encode((call_id, True, self._dispatch(operation, args)))
        except EXPECTED as exc:
            reply = read_wire.encode((call_id, False, exc))
        except Exception as exc:  # a bug or an unexpected store failure: a 500 for this read, the process lives on
            log.exception("read failed", extra={"operation": operation})
            reply = read_wire.encode((call_id, False, RuntimeError(f"read failed: {type(exc).__name__}")))
        finally:
            self.cancels.pop(call_id, None)
        self._send(reply)

    def _send(self, data: bytes) -> None:
        """One whole message (replies of several threads never interleave); a closed socket ends ``serve``."""
        with self._send_lock, contextlib.suppress(OSError):
            self.sock.sendall(data)

    def _dispatch(self, operation: str, args: tuple[Any, ...]) -> Any:
        if operation == "search":
            plan, since, until, encoding = args
            result = self.view.search(plan, since, until)
            return read_wire.Page(encode_records(result.records, encoding), len(result.records), result.total,
                                  result.more, result.last)
        if operation == "stats":
            return self.view.stats(*args)
        if operation == "describe":
            return self.view.describe()
        if operation == "retention":
            return self.view.retention()
        if operation == "set_retention":
            return self.view.set_retention(*args)
        raise ValueError(f"unknown read operation {operation!r}")


def lower_priority(priority: str) -> None:
    """``idle``: run only on CPU that ingest and the writer leave (SCHED_IDLE; nice 10 where unsupported);
    ``low``: nice 10; ``normal``: as ingest.

    Measured on two cores with 4 clients querying in a loop (docs/benchmarks.md): ingest kept 75-84 % of
    its throughput with the read process at nice 10 and 84-97 % with SCHED_IDLE, whose reads still ran.
    """
    sched_slice.restore_default()  # inherited from ingest's event loop; reads are bulk work
    if priority == "normal":
        return
    with contextlib.suppress(OSError):
        os.nice(READ_NICENESS)
    if priority == "idle" and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:
            log.warning("could not lower the read process to SCHED_IDLE; it runs at nice 10",
                        extra={"error": str(exc)})


def main() -> None:
    """Read the settings ingest sends first, lower the priority, serve until ingest goes away.

    ``argv``: the socket's descriptor, then (when ingest pinned itself) the CPUs the reads may use.
    """
    if len(sys.argv) > 2:
        cpus = cpu_pinning.parse_cpus(sys.argv[2])
        cpu_pinning.spread_to(cpus if isinstance(cpus, frozenset) else None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is ingest's to handle
    sock = socket.socket(fileno=int(sys.argv[1]))
    settings = read_wire.receive(sock)
    if settings is None:
        return
    configure_logging("ingest-reads", settings.log_level)
    stack_dump.install()
    lower_priority(settings.read_priority)
    ReadWorker(sock, build_storage_view(settings), settings.read_concurrency + 1).serve()
    os._exit(0)  # ingest is gone: reads still running have nobody to answer


if __name__ == "__main__":
    main()
