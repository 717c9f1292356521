"""SIGKILL of the writer at the worst moments of its work, through test-only fault points."""

from __future__ import annotations

import time

import pytest

from tests.ledger import Ledger, LoadGenerator, settle, wait_for_acks


def _wait_exit(proc, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the armed fault point was never reached"
        time.sleep(0.01)
    return proc.returncode


@pytest.mark.parametrize("point, evidence", [
    ("spool_mid_append:8", "trimming torn spool tail"),
    ("after_fsync_before_ack:8", None),
    ("mid_publish:3", None),
    ("after_checkpoint:3", None),
])
def test_writer_killed_at_a_fault_point_loses_and_doubles_nothing(service_factory, point: str,
                                                                  evidence: str | None) -> None:
    """A writer that dies at the armed point, restarted clean, leaves lost 0, duplicated 0, phantom 0."""
    service = service_factory(start=False, AUDIT_SERVICE_ACK_TIMEOUT_SECONDS="20",
                              AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1")
    armed = service.start("writer", AUDIT_SERVICE_FAULT_POINT=point)
    service.start("ingest")
    service.wait_ready()
    ledger = Ledger()
    producers = [LoadGenerator(service, ledger, batch_size=10) for _ in range(4)]
    for producer in producers:
        producer.start()
    try:
        assert _wait_exit(armed) == -9
        service.start("writer")
        service.wait_ready()
        wait_for_acks(ledger, len(ledger.acknowledged) + 100)
    finally:
        for producer in producers:
            producer.stop()
    verdict = settle(ledger, service.stored_events)
    assert verdict.acknowledged >= 100
    assert (verdict.lost, verdict.duplicated, verdict.phantom) == ([], [], []), service.tail()
    if evidence is not None:
        assert evidence in service.tail(200)
    if point.startswith("after_fsync"):
        assert service.writer_status()["duplicate_batches"] >= 1, "the re-sent batch was not recognised"
