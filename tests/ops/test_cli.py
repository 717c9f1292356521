"""The ``auditlake`` read commands (query, tail, status) against the real running service."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from producer.cli import main
from producer.commands.status import cpu_text
from tests.ops.helpers import wait_for
from tests.service import REPO, Service, free_port

READ_TOKEN = "read-token-0123456789abcdef"
INGEST_TOKEN = "ingest-token-0123456789abcdef"


def events(tenant: str, kind: str, count: int, start: datetime | None = None) -> list[dict[str, Any]]:
    """Events one millisecond apart, oldest first."""
    start = start or datetime.now(timezone.utc) - timedelta(seconds=5)
    return [{"audit_event_id": str(uuid.uuid4()), "type": kind, "tenant_id": tenant, "actor_ref": f"user:{index}",
             "action": "login", "outcome": "allow", "ts": (start + timedelta(milliseconds=index)).isoformat()}
            for index in range(count)]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_query_prints_a_table_or_json_lines_filtered_newest_first(ops_service: Service, capsys) -> None:
    """``--since 1h --type auth --tenant-id T`` shows exactly T's auth events, newest first; --json prints them whole."""
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    auth = events(tenant, "auth", 3)
    assert ops_service.post({"events": auth + events(tenant, "cas_grant", 2)})[0] == 202
    code, out, err = run_cli(capsys, "query", "--url", ops_service.url, "--since", "1h", "--type", "auth",
                             "--tenant-id", tenant)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["TS", "TYPE", "TENANT_ID", "ACTOR", "ACTION", "OUTCOME", "AUDIT_EVENT_ID"]
    assert [row.split()[-1] for row in rows] == [event["audit_event_id"] for event in reversed(auth)]
    assert all(row.split()[1:3] == ["auth", tenant] for row in rows)
    assert "3 of 3 matching events" in err
    code, out, err = run_cli(capsys, "query", "--url", ops_service.url, "--since", "1h", "--tenant-id", tenant,
                             "--json", "--limit", "4")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(records) == 4
    assert [record["ts"] for record in records] == sorted((record["ts"] for record in records), reverse=True)
    assert {record["tenant_id"] for record in records} == {tenant} and all("received_at" in r for r in records)
    assert "4 of 5 matching events; truncated" in err


def test_query_reports_the_services_error_and_exits_1(ops_service: Service, capsys) -> None:
    """An invalid parameter comes back as the service's 400 detail and exit status 1."""
    code, _, err = run_cli(capsys, "query", "--url", ops_service.url, "--since", "yesterday-ish")
    assert code == 1 and "HTTP 400" in err and "invalid timestamp" in err


def test_status_shows_readiness_queue_and_storage(ops_service: Service, capsys) -> None:
    """``auditlake status`` prints a readable report (exit 0 when ready) and ``--json`` the whole document."""
    code, out, err = run_cli(capsys, "status", "--url", ops_service.url)
    assert code == 0, err
    assert out.startswith(f"auditlake at {ops_service.url}: ready")
    assert "writer:     connected" in out and "storage:    local healthy" in out
    assert f"cpus:       {cpu_text(ops_service.get('/v1/audit/status')[1]['cpus'])}" in out
    assert cpu_text({"ingest": [0], "writer": [1, 2]}) == "ingest on 0, writer on 1,2"
    assert cpu_text({"ingest": None, "writer": None}) == "ingest on any, writer on any"
    code, out, _ = run_cli(capsys, "status", "--url", ops_service.url, "--json")
    document = json.loads(out)
    assert code == 0 and document["ready"] is True and document["status"]["queue_max_size"] == 10000


def test_status_of_an_unreachable_service_exits_1(capsys) -> None:
    """Nothing listening: a clear message and exit status 1."""
    code, _, err = run_cli(capsys, "status", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert code == 1 and "cannot reach" in err


class Tail:
    """``auditlake tail`` as a child process; its stdout lines arrive in a queue."""

    def __init__(self, url: str, *args: str) -> None:
        env = {**os.environ, "AUDITLAKE_URL": url, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "producer.cli", "tail", *args], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.seen: list[dict[str, Any]] = []

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def until(self, count: int) -> list[dict[str, Any]]:
        def enough() -> bool:
            while not self.lines.empty():
                self.seen.append(json.loads(self.lines.get()))
            return len(self.seen) >= count
        wait_for(enough, timeout=15, what=f"{count} events from tail")
        return self.seen

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=10)


def test_tail_follows_new_events_once_each_including_late_ones(ops_service: Service) -> None:
    """tail prints each new event once, oldest first, also one whose ts is older than events already shown."""
    tenant = f"tail-{uuid.uuid4().hex[:8]}"
    tail = Tail(ops_service.url, "--json", "--interval", "0.2", "--tenant-id", tenant)
    try:
        first = events(tenant, "auth", 3)
        assert ops_service.post({"events": first})[0] == 202
        assert [event["audit_event_id"] for event in tail.until(3)] == [event["audit_event_id"] for event in first]
        late = events(tenant, "auth", 1, start=datetime.now(timezone.utc) - timedelta(seconds=8))
        second = events(tenant, "cas_grant", 2)
        assert ops_service.post({"events": second + late})[0] == 202
        shown = tail.until(6)
        assert sorted(event["audit_event_id"] for event in shown[3:]) == \
            sorted(event["audit_event_id"] for event in second + late)
        assert tail.lines.empty()
        wait_for(lambda: tail.proc.poll() is None, what="tail running")
    finally:
        code = tail.stop()
    ids = [event["audit_event_id"] for event in tail.seen]
    assert len(ids) == len(set(ids)) == 6
    assert code == 130


def test_read_commands_send_the_token_from_flag_or_environment(service_factory, capsys, monkeypatch) -> None:
    """With read tokens configured, query fails with 401 without one and works with --token or AUDITLAKE_TOKEN."""
    service = service_factory(AUDIT_SERVICE_READ_TOKENS=READ_TOKEN, AUDIT_SERVICE_INGEST_TOKENS=INGEST_TOKEN)
    monkeypatch.delenv("AUDITLAKE_TOKEN", raising=False)
    code, _, err = run_cli(capsys, "query", "--url", service.url, "--window", "5m")
    assert code == 1 and "HTTP 401" in err
    code, _, err = run_cli(capsys, "query", "--url", service.url, "--window", "5m", "--token", READ_TOKEN)
    assert code == 0, err
    monkeypatch.setenv("AUDITLAKE_TOKEN", READ_TOKEN)
    monkeypatch.setenv("AUDITLAKE_URL", service.url)
    code, _, err = run_cli(capsys, "query", "--window", "5m")
    assert code == 0, err
