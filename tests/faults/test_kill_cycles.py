"""Twenty SIGKILL cycles alternating writer and ingest under continuous load: nothing lost or doubled."""

from __future__ import annotations

import time

from tests.ledger import Ledger, LoadGenerator


def wait_for_acks(ledger: Ledger, at_least: int, timeout: float = 30.0) -> None:
    """Block until the ledger holds ``at_least`` acknowledged events."""
    deadline = time.monotonic() + timeout
    while len(ledger.acknowledged) < at_least:
        assert time.monotonic() < deadline, f"only {len(ledger.acknowledged)} of {at_least} acknowledged"
        time.sleep(0.01)


def settle(service, ledger: Ledger, timeout: float = 30.0):
    """Wait until every acknowledged event is in the store (or time out); return the verdict."""
    deadline = time.monotonic() + timeout
    verdict = ledger.compare(service.stored_events())
    while verdict.lost and time.monotonic() < deadline:
        time.sleep(0.2)
        verdict = ledger.compare(service.stored_events())
    return verdict


def test_twenty_kill_cycles_alternating_processes(service_factory) -> None:
    """After 20 SIGKILLs (writer, ingest, writer, ...) under load: lost 0, duplicated 0, phantom 0."""
    service = service_factory(AUDIT_SERVICE_ACK_TIMEOUT_SECONDS="20", AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.2")
    ledger = Ledger()
    producers = [LoadGenerator(service, ledger, batch_size=10) for _ in range(4)]
    for producer in producers:
        producer.start()
    try:
        for cycle in range(20):
            wait_for_acks(ledger, len(ledger.acknowledged) + 60)
            victim = "writer" if cycle % 2 == 0 else "ingest"
            service.signal(victim)
            service.start(victim)
            service.wait_ready()
        wait_for_acks(ledger, len(ledger.acknowledged) + 60)
    finally:
        for producer in producers:
            producer.stop()
    verdict = settle(service, ledger)
    assert verdict.acknowledged >= 20 * 60
    assert verdict.lost == [], service.tail()
    assert verdict.duplicated == []
    assert verdict.phantom == []
    status = service.writer_status()
    assert status["accounted"] is True
