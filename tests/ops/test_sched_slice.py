"""The real processes run their event loops on the scheduler's shortest slice, and their bulk work on the default:
the writer's flush thread and ingest's read process (its main thread, which starts the threads that read)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared import sched_slice
from tests.ledger import make_events
from tests.ops.test_cpu_pinning import read_process_pid
from tests.unit.test_sched_slice import needs_custom_slices
from writer.flusher import FLUSH_THREAD_NAME


def thread_named(pid: int, name: str) -> int:
    """The id of the thread of ``pid`` whose name is ``name``."""
    named = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")
             if Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip() == name]
    assert len(named) == 1, f"{len(named)} threads named {name} in process {pid}"
    return named[0]


def thread_slices(pid: int) -> dict[int, int]:
    """Each thread's slice in nanoseconds (``se.slice`` in ``/proc/<pid>/task/<tid>/sched``)."""
    slices = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{tid}/sched").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        for line in text.splitlines():
            if line.startswith("se.slice"):
                slices[int(tid)] = int(line.split(":")[1])
    return slices


@needs_custom_slices
def test_event_loops_run_on_the_shortest_slice_and_bulk_work_on_the_default(service_factory) -> None:
    # At the default priority the read process runs SCHED_IDLE, whose threads have no fair slice to show.
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1", AUDIT_SERVICE_READ_PRIORITY="normal")
    writer_pid, ingest_pid = service.procs["writer"].pid, service.procs["ingest"].pid
    if not thread_slices(writer_pid):
        pytest.skip("this kernel does not show a thread's slice in /proc")
    events = make_events(20, "slices")
    assert service.post({"events": events})[0] == 202
    assert len(service.wait_flushed(20)) >= 20  # the writer's flush thread has run
    assert service.get("/v1/audit/events?window=1h")[0] == 200  # a read ran in the read process

    assert thread_slices(ingest_pid)[ingest_pid] == sched_slice.LOOP_SLICE_NS  # the main thread runs the loop
    writer = thread_slices(writer_pid)
    assert writer[writer_pid] == sched_slice.LOOP_SLICE_NS
    flush = thread_named(writer_pid, FLUSH_THREAD_NAME)
    assert writer[flush] > sched_slice.LOOP_SLICE_NS, writer  # restored, not the loop's it inherits
    reads = read_process_pid(service)
    assert thread_slices(reads)[reads] > sched_slice.LOOP_SLICE_NS
