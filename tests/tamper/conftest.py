"""Fixtures: a prepared store from a real run (restarts, two crash-and-redo flushes, retention, 1 s digests)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.s3.conftest import moto_endpoint  # noqa: F401  (the S3 tests' moto server, for test_s3_evidence)
from tests.service import Service

WRITER_ID = "w1"
EVIDENCE_ENV = {
    "AUDIT_SERVICE_DIGEST_INTERVAL_SECONDS": "1",
    "AUDIT_SERVICE_WRITER_ID": WRITER_ID,
    "AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS": "0.2",
    "AUDIT_SERVICE_LOCAL_RETENTION_DAYS": "1",
    "AUDIT_SERVICE_RETENTION_INTERVAL_SECONDS": "1",
}


@dataclasses.dataclass
class Prepared:
    """A stopped service's store, its trusted public key, and what the run saw along the way."""

    store: Path
    spool: Path
    public_key: Path
    live_reports: list[dict[str, Any]]
    purged: list[str]
    kills: list[int]
    logs: str


def poll(predicate: Any, timeout: float, message: str) -> Any:
    """Call ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def events(tag: str, days: list[str], per_day: int) -> list[dict[str, Any]]:
    """``per_day`` events on each of ``days`` (``YYYY-MM-DD``), tagged in ``correlation_id``."""
    return [{"type": "auth", "correlation_id": tag, "actor_ref": f"user:{index}",
             "ts": f"{day}T0{index % 10}:00:0{index % 10}Z"} for day in days for index in range(per_day)]


def verify_live(service: Service) -> dict[str, Any]:
    """GET /v1/audit/verify of a running service."""
    status, body, _ = service.get("/v1/audit/verify", timeout=30)
    assert status == 200, body
    return body


def _settled(service: Service) -> bool:
    """Nothing waits in ingest's queue or in the writer's spool (the service's own events included)."""
    status = service.get("/v1/audit/status")[1]
    return (status["queue_size"] == 0 and status["frames_in_flight"] == 0
            and service.writer_status().get("spool_backlog_events") == 0)


def _crash_mid_flush(service: Service, point: str, batch: list[dict[str, Any]], expected: int) -> int:
    """Restart the writer armed with a fault point, post, let it die there, restart it and wait for the redo.

    First wait until everything before (the service's own audit event of the last verify too) is flushed:
    a leftover spooled event would meet the armed fault point in a flush of its own, before the batch.
    """
    poll(lambda: _settled(service), 20, "the service did not settle")
    service.signal("writer", signal.SIGTERM)
    service.start("writer", AUDIT_SERVICE_FAULT_POINT=f"{point}:1")
    service.wait_ready()
    assert service.post({"events": batch})[0] == 202
    code = service.procs["writer"].wait(timeout=30)
    service.start("writer")
    service.wait_ready()
    service.wait_flushed(expected)
    return code


def _age(store: Path, day: str, days_old: float) -> list[str]:
    """Make every file of one day directory look ``days_old`` days old (server time); return their names."""
    directory = store / day
    stamp = time.time() - days_old * 86400
    names = []
    for path in directory.iterdir():
        os.utime(path, (stamp, stamp))
        names.append(path.relative_to(store).as_posix())
    return names


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prepared]:
    """Run the scenario once per session; tests copy the result before changing anything."""
    root = tmp_path_factory.mktemp("tamper")
    service = Service(root, **EVIDENCE_ENV)
    service.root.mkdir(parents=True, exist_ok=True)
    reports = []
    kills = []
    try:
        service.start_all()
        assert service.post({"events": events("one", ["2026-01-01", "2026-01-02", "2026-01-03"], 4)})[0] == 202
        service.wait_flushed(12)
        assert service.post({"events": events("two", ["2026-01-03", "2026-01-04"], 3)})[0] == 202
        service.wait_flushed(18)
        reports.append(verify_live(service))
        kills.append(_crash_mid_flush(service, "mid_publish", events("three", ["2026-01-05", "2026-01-06"], 3), 24))
        kills.append(_crash_mid_flush(service, "after_journal", events("four", ["2026-01-06", "2026-01-07"], 3), 30))
        reports.append(verify_live(service))
        purged = _age(service.store, "2026/01/01", 3)
        poll(lambda: not (service.store / "2026/01/01").exists(), 20, "retention did not purge the aged day")
        service.signal("ingest", signal.SIGTERM)
        service.start("ingest")
        service.wait_ready()
        assert service.post({"events": events("five", ["2026-01-08"], 5)})[0] == 202
        service.wait_flushed(35 - 4)
        reports.append(verify_live(service))
    finally:
        service.stop()
    key = root / "trusted-public-key.pem"
    shutil.copyfile(service.spool / "evidence" / "public-key.pem", key)
    yield Prepared(service.store, service.spool, key, reports, purged, kills, service.tail(200))
