"""Twenty SIGKILL cycles alternating writer and ingest under continuous load: nothing lost or doubled."""

from __future__ import annotations

from tests.ledger import Ledger, LoadGenerator, settle, wait_for_acks


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
    verdict = settle(ledger, service.stored_events)
    assert verdict.acknowledged >= 20 * 60
    assert verdict.lost == [], service.tail()
    assert verdict.duplicated == []
    assert verdict.phantom == []
    status = service.writer_status()
    assert status["accounted"] is True
