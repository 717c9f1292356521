"""The real processes pin themselves at start: every thread of ingest and of the writer on its CPUs, the read
process back on all of them, the status naming them; a CPU the process may not use stops it at start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared import cpu_pinning
from tests.ledger import make_events
from tests.service import REPO, Service

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
ALLOWED = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def thread_cpus(pid: int) -> set[tuple[int, ...]]:
    """The distinct CPU sets of a process's threads."""
    return {tuple(sorted(os.sched_getaffinity(int(tid)))) for tid in os.listdir(f"/proc/{pid}/task")}


def wait_threads(pid: int, at_least: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while len(os.listdir(f"/proc/{pid}/task")) < at_least:
        assert time.monotonic() < deadline, f"process {pid} did not start {at_least} threads"
        time.sleep(0.05)


def read_process_pid(service: Service) -> int:
    deadline = time.monotonic() + 30
    while not (state := service.get("/v1/audit/status")[1]["read_process"])["running"]:
        assert time.monotonic() < deadline, service.tail()
        time.sleep(0.05)
    return state["pid"]


@pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two CPUs")
def test_each_process_and_all_its_threads_run_on_the_cpus_it_was_given(service_factory) -> None:
    ingest_cpu, writer_cpu = ALLOWED[0], ALLOWED[-1]
    service = service_factory(AUDIT_SERVICE_INGEST_CPUS=str(ingest_cpu), AUDIT_SERVICE_WRITER_CPUS=str(writer_cpu),
                              AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1")
    events = make_events(20, "pinned")
    assert service.post({"events": events})[0] == 202
    stored = service.wait_flushed(20)  # a flush ran: the writer's flush thread and its commit threads exist
    assert {event["audit_event_id"] for event in stored} >= {event["audit_event_id"] for event in events}
    assert service.get("/v1/audit/events?window=1h")[0] == 200  # a read ran in the read process
    writer_pid, ingest_pid = service.procs["writer"].pid, service.procs["ingest"].pid
    wait_threads(writer_pid, 3)
    assert thread_cpus(writer_pid) == {(writer_cpu,)}
    assert thread_cpus(ingest_pid) == {(ingest_cpu,)}
    assert thread_cpus(read_process_pid(service)) == {tuple(ALLOWED)}  # reads are not squeezed onto ingest's CPU
    status = service.get("/v1/audit/status")[1]
    assert status["cpus"] == {"ingest": [ingest_cpu], "writer": [writer_cpu]}
    assert service.writer_status()["cpus"] == [writer_cpu]


def test_by_default_the_processes_pin_only_on_a_two_cpu_machine(service_factory) -> None:
    service = service_factory()
    assert service.post({"events": make_events(3, "auto")})[0] == 202
    expected = {role: cpu_pinning.chosen_cpus(role, "auto", frozenset(ALLOWED), "V") for role in cpu_pinning.ROLES}
    status = service.get("/v1/audit/status")[1]
    assert status["cpus"] == {role: sorted(cpus) if cpus else None for role, cpus in expected.items()}
    for role in cpu_pinning.ROLES:
        assert thread_cpus(service.procs[role].pid) == {tuple(sorted(expected[role] or ALLOWED))}


@pytest.mark.parametrize("process, variable", [("writer", "AUDIT_SERVICE_WRITER_CPUS"),
                                               ("ingest", "AUDIT_SERVICE_INGEST_CPUS")])
def test_a_cpu_the_process_may_not_use_stops_it_at_start(tmp_path: Path, process: str, variable: str) -> None:
    service = Service(tmp_path, **{variable: str(max(ALLOWED) + 1)})
    child = subprocess.run([sys.executable, "-m", process], cwd=REPO, env=service.env, capture_output=True, timeout=30)
    assert child.returncode == 3
    assert variable.encode() in child.stderr and b"not all among those this process may use" in child.stderr
