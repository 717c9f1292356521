"""SIGUSR2 makes each process write every thread's stack to its log and go on serving."""

from __future__ import annotations

import os

from shared.stack_dump import STACK_DUMP_SIGNAL
from tests.ledger import make_events
from tests.ops.helpers import raw_log, wait_for


def test_each_process_writes_its_threads_stacks_on_sigusr2_and_keeps_serving(service_factory) -> None:
    """Ingest, the writer and the writer's encoder child each dump their threads' stacks (the flush thread's
    name among the writer's) and still take and store events afterwards."""
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1")
    assert service.post({"events": make_events(5, "before-dump")})[0] == 202
    service.wait_flushed(5)
    (encoder,) = service.encoder_pids()
    for pid in (service.procs["ingest"].pid, service.procs["writer"].pid, encoder):
        before = raw_log(service).count(b"Current thread")
        os.kill(pid, STACK_DUMP_SIGNAL)
        wait_for(lambda: raw_log(service).count(b"Current thread") > before, what=f"a stack dump from {pid}")
    log = raw_log(service).decode(errors="replace")
    assert "writer/flush_encoder.py" in log and "in serve" in log  # the child's thread, waiting for a call
    assert "concurrent/futures/thread.py" in log  # the writer's worker threads, each listed
    assert service.post({"events": make_events(5, "after-dump")})[0] == 202
    assert len(service.wait_flushed(10)) == 10
    assert service.encoder_pids() == [encoder]
