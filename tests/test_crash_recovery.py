"""SIGKILL of either process under load: every acknowledged event stored exactly once after restart."""

from __future__ import annotations

import pytest

from tests.ledger import Ledger, LoadGenerator, settle, wait_for_acks


@pytest.mark.parametrize("victim", ["writer", "ingest"])
def test_sigkill_under_load_loses_and_duplicates_nothing(service_factory, victim: str) -> None:
    """Events acknowledged before, during and after SIGKILLs of one process are each stored exactly once."""
    service = service_factory(AUDIT_SERVICE_ACK_TIMEOUT_SECONDS="20")
    ledger = Ledger()
    producers = [LoadGenerator(service, ledger) for _ in range(3)]
    for producer in producers:
        producer.start()
    try:
        for round_number in range(3):
            wait_for_acks(ledger, 200 * (round_number + 1))
            service.signal(victim)
            service.start(victim)
            service.wait_ready()
        wait_for_acks(ledger, len(ledger.acknowledged) + 200)
    finally:
        for producer in producers:
            producer.stop()
    verdict = settle(ledger, service.stored_events, timeout=20)
    assert verdict.acknowledged >= 800
    assert verdict.lost == [], service.tail()
    assert verdict.duplicated == []
    assert verdict.phantom == []


def test_spooled_events_are_replayed_after_a_writer_restart(service_factory) -> None:
    """Events acknowledged just before a SIGKILL, before any flush, are published after restart."""
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="30", AUDIT_SERVICE_FLUSH_BATCH_SIZE="100000")
    ledger = Ledger()
    from tests.ledger import make_events

    for _ in range(5):
        events = make_events(50, "replay")
        status, _, _ = service.post({"events": events})
        ledger.record([event["audit_event_id"] for event in events], status)
    assert len(ledger.acknowledged) == 250
    assert service.stored_events() == []
    service.signal("writer")
    service.start("writer")
    service.wait_ready()
    service.signal("writer", 15)
    verdict = ledger.compare(service.stored_events())
    assert (verdict.lost, verdict.duplicated) == ([], [])
