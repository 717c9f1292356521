"""Reads run in a niced child process of ingest that is restarted when it dies and goes when ingest goes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.ledger import make_events


def _read_process(service) -> dict:
    status, body, _ = service.get("/v1/audit/status")
    assert status == 200, body
    return body["read_process"]


def _wait_running(service, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while not (state := _read_process(service))["running"]:
        assert time.monotonic() < deadline, f"the read process did not start: {state}\n{service.tail()}"
        time.sleep(0.05)
    return state


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} outlived ingest"
        time.sleep(0.05)


def test_reads_run_niced_in_a_child_that_comes_back_after_a_crash(service_factory) -> None:
    """The read process is ingest's child at idle priority; killed, reads answer 503 or 200 (never hang), ingest keeps
    accepting, and a new process serves the same answers."""
    service = service_factory()
    events = make_events(50, "readproc")
    assert service.post({"events": events})[0] == 202
    service.wait_flushed(50)
    state = _wait_running(service)
    ingest_pid = service.procs["ingest"].pid
    assert state["pid"] != ingest_pid and state["restarts"] == 0
    assert int(Path(f"/proc/{state['pid']}/stat").read_text().split(")")[1].split()[1]) == ingest_pid
    assert os.getpriority(os.PRIO_PROCESS, state["pid"]) >= 10
    assert os.sched_getscheduler(state["pid"]) == os.SCHED_IDLE  # the default AUDIT_SERVICE_READ_PRIORITY
    query = "/v1/audit/events?correlation_id=readproc&limit=100&window=1h"
    status, before, _ = service.get(query)
    assert status == 200 and before["total"] == 50, before

    os.kill(state["pid"], signal.SIGKILL)
    assert service.post({"events": make_events(5, "during")})[0] == 202
    deadline = time.monotonic() + 30
    while True:
        status, body, _ = service.get(query)
        if status == 200:
            break
        assert status == 503 and body["detail"], (status, body)
        assert time.monotonic() < deadline, service.tail()
        time.sleep(0.05)
    assert body["records"] == before["records"] and body["total"] == 50
    after = _wait_running(service)
    assert after["pid"] != state["pid"] and after["restarts"] >= 1
    assert not _alive(state["pid"])


def test_the_read_process_goes_when_ingest_stops_or_is_killed(service_factory) -> None:
    """A clean stop ends the read process; so does SIGKILL of ingest (the socket pair closes). With
    AUDIT_SERVICE_READ_PRIORITY=low it runs at nice 10 under the normal scheduler."""
    service = service_factory(AUDIT_SERVICE_READ_PRIORITY="low")
    pid = _wait_running(service)["pid"]
    assert os.getpriority(os.PRIO_PROCESS, pid) == 10 and os.sched_getscheduler(pid) == os.SCHED_OTHER
    service.signal("ingest", signal.SIGTERM)
    _wait_gone(pid)
    service.start("ingest")
    service.wait_ready()
    pid = _wait_running(service)["pid"]
    assert service.get("/v1/audit/events?correlation_id=none&limit=1")[0] == 200
    service.signal("ingest", signal.SIGKILL)
    _wait_gone(pid)
