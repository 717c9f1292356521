"""Corrupt spool at start, SIGTERM under load, producer retries across restarts, clock skew."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from shared import spool_format
from tests.ledger import Ledger, LoadGenerator, make_events, settle, wait_for_acks


def test_corrupt_spool_segment_is_quarantined_and_reported(service_factory) -> None:
    """A damaged segment found at start goes to quarantine, shows in status, and the writer serves on."""
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="600", AUDIT_SERVICE_FLUSH_BATCH_SIZE="100000")
    first, second = make_events(10, "corrupt"), make_events(10, "corrupt")
    assert service.post({"events": first})[0] == 202
    assert service.post({"events": second})[0] == 202
    service.signal("writer")
    (_, segment), *_ = spool_format.list_segments(service.spool)
    data = bytearray(segment.read_bytes())
    damaged = data.index(second[0]["audit_event_id"].encode())
    assert data.find(first[0]["audit_event_id"].encode()) < damaged, "the batches were spooled in order"
    data[damaged] ^= 0xFF
    segment.write_bytes(bytes(data))
    service.start("writer")
    status = service.wait_ready()
    assert len(status["quarantined_segments"]) == 1
    assert (service.spool / "quarantine" / status["quarantined_segments"][0]).exists()
    service.signal("writer", 15)
    stored = {event["audit_event_id"] for event in service.stored_events() if event.get("correlation_id") == "corrupt"}
    assert stored == {event["audit_event_id"] for event in first}, "the good prefix is published"
    service.start("writer")
    service.wait_ready()
    assert service.post({"events": make_events(3, "after")})[0] == 202


def test_sigterm_under_load_exits_within_the_deadline_losing_nothing(service_factory) -> None:
    """SIGTERM to ingest then writer under load: both exit 0 within the drain deadline, every 202 stored."""
    service = service_factory(AUDIT_SERVICE_DRAIN_SECONDS="5")
    ledger = Ledger()
    producers = [LoadGenerator(service, ledger, batch_size=20) for _ in range(4)]
    for producer in producers:
        producer.start()
    try:
        wait_for_acks(ledger, 500)
        started = time.monotonic()
        assert service.signal("ingest", 15) == 0
        assert service.signal("writer", 15) == 0
        assert time.monotonic() - started < 10
    finally:
        for producer in producers:
            producer.stop()
    verdict = ledger.compare(service.stored_events())
    assert verdict.acknowledged >= 500
    assert (verdict.lost, verdict.duplicated, verdict.phantom) == ([], [], [])


def test_producer_retry_after_restarts_is_stored_once(service_factory) -> None:
    """An audit_event_id posted again after both processes restarted is not stored a second time."""
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1")
    events = make_events(20, "retry")
    assert service.post({"events": events})[0] == 202
    service.wait_flushed(20)
    service.signal("ingest", 15)
    service.signal("writer", 15)
    service.start("writer")
    service.start("ingest")
    service.wait_ready()
    assert service.post({"events": events})[0] == 202
    assert service.post({"events": events[:5] + make_events(5, "retry")})[0] == 202
    service.wait_flushed(25)
    deadline = time.monotonic() + 3
    while service.writer_status()["duplicate_events"] < 25 and time.monotonic() < deadline:
        time.sleep(0.05)
    stored = [event["audit_event_id"] for event in service.stored_events()]
    assert len(stored) == 25 and len(set(stored)) == 25
    assert service.writer_status()["duplicate_events"] == 25


def test_skewed_producer_clock_hides_no_other_events(service_factory) -> None:
    """Events with a ts hours off keep it and gain received_at; current events stay found by a 1h window."""
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1")
    now = datetime.now(timezone.utc)
    skewed = make_events(5, "skew")
    for event in skewed:
        event["ts"] = (now + timedelta(hours=6)).isoformat()
    normal = make_events(5, "skew")
    assert service.post({"events": skewed + normal})[0] == 202
    service.wait_flushed(10)
    _, body, _ = service.get("/v1/audit/events?window=1h&correlation_id=skew")
    assert {record["audit_event_id"] for record in body["records"]} == {event["audit_event_id"] for event in normal}
    later = (now + timedelta(hours=7)).isoformat().replace("+00:00", "Z")
    _, body, _ = service.get(f"/v1/audit/events?until={later}&window=24h&correlation_id=skew")
    assert body["total"] == 10
    future = [record for record in body["records"] if record["audit_event_id"] == skewed[0]["audit_event_id"]][0]
    assert future["ts"] > future["received_at"]


def test_counters_add_up_under_load(service_factory) -> None:
    """Writer accounting (in = flushed + duplicates + quarantined + backlog) holds in every snapshot."""
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.05")
    ledger = Ledger()
    producers = [LoadGenerator(service, ledger, batch_size=20) for _ in range(3)]
    for producer in producers:
        producer.start()
    try:
        snapshots = []
        while len(ledger.acknowledged) < 4000 or len(snapshots) < 10:
            snapshots.append(service.writer_status())
            time.sleep(0.01)
    finally:
        for producer in producers:
            producer.stop()
    assert len(snapshots) > 10 and all(snapshot["accounted"] for snapshot in snapshots)
    settle(ledger, service.stored_events)
    status = service.get("/v1/audit/status")[1]
    assert status["accepted_events"] == len(ledger.acknowledged)
    assert status["rejected_events"] == len(ledger.refused)
    writer = service.writer_status()
    assert writer["received_events"] == writer["flushed_events"] + writer["duplicate_events"] + writer["spool_backlog_events"]
    assert writer["flushed_events"] + writer["spool_backlog_events"] >= status["accepted_events"]
