"""Retention: the writer deletes published files older than the retention period, at start and periodically."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.ledger import make_events


def _old_file(store: Path, name: str, age_days: float) -> Path:
    directory = store / "2020" / "01" / "02"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(b"")
    stamp = time.time() - age_days * 86400
    os.utime(path, (stamp, stamp))
    return path


def _wait_gone(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while path.exists():
        assert time.monotonic() < deadline, f"{path} was not deleted"
        time.sleep(0.05)


def test_retention_runs_at_start_and_periodically(service_factory) -> None:
    """Expired audit files go at start and on the next run; fresh files and foreign files stay."""
    service = service_factory(start=False, AUDIT_SERVICE_LOCAL_RETENTION_DAYS="1",
                              AUDIT_SERVICE_RETENTION_INTERVAL_SECONDS="1")
    expired = _old_file(service.store, "audit-20200102T000000Z-000000000001-000000000001-20200102T000001Z.ndjson.gz", 3)
    legacy = _old_file(service.store, "audit-20200102T000000Z-abc123.ndjson.gz", 2)
    fresh = _old_file(service.store, "audit-20200102T000000Z-000000000002-000000000002-20200102T000001Z.ndjson.gz", 0.5)
    foreign = _old_file(service.store, "notes.txt", 30)
    service.start_all()
    _wait_gone(expired)
    _wait_gone(legacy)
    assert fresh.exists() and foreign.exists()
    later = _old_file(service.store, "audit-20200102T000000Z-000000000003-000000000003-20200102T000001Z.ndjson", 5)
    _wait_gone(later)
    assert fresh.exists()


def test_retention_uses_server_time_not_event_time(service_factory) -> None:
    """An event whose ts is years old is stored under its own day and survives retention (server time)."""
    service = service_factory(AUDIT_SERVICE_LOCAL_RETENTION_DAYS="1", AUDIT_SERVICE_RETENTION_INTERVAL_SECONDS="1")
    events = make_events(3, "old-ts")
    for event in events:
        event["ts"] = "2019-05-06T07:08:09Z"
    assert service.post({"events": events})[0] == 202
    service.wait_flushed(3)
    time.sleep(2.5)
    files = list((service.store / "2019" / "05" / "06").glob("audit-*.ndjson.gz"))
    assert len(files) == 1 and len(service.stored_events()) == 3
