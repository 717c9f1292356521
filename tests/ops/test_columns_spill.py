"""In the real writer, typed fields past their memory bound are spilled, read back by the encoder, and removed."""

from __future__ import annotations

from datetime import datetime, timezone

from ingest.link import MAX_FRAMES_IN_FLIGHT
from tests.ledger import make_events
from tests.ops.helpers import Scrape, wait_for

BATCH = 10_000  # events a request (the default limit)
BATCHES = 40  # 400,000 events: about 37 MiB of typed fields, past the 32 MiB held in memory


def test_typed_fields_past_the_memory_bound_are_spilled_and_every_flush_uses_them(service_factory) -> None:
    """While flushes fail (the store blocked), the writer takes 400,000 events; the typed fields past 32 MiB
    go to spill files. Once the store is back every event is stored once, no flush parsed its lines, and
    the spill files are gone. Meanwhile the writer says it is catching up and ingest keeps one frame in
    flight; once it caught up, two again."""
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1")
    blocker = service.store / datetime.now(timezone.utc).strftime("%Y")
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"not a directory")  # publishing into <store>/YYYY/ fails until it goes
    posted: list[str] = []
    for number in range(BATCHES):
        events = make_events(BATCH, f"spill-{number}")
        status, body, _ = service.post({"events": events}, timeout=60)
        assert status == 202, body
        posted.extend(event["audit_event_id"] for event in events)
    metrics = Scrape(f"{service.writer_url}/metrics")
    assert metrics.value("auditlake_writer_typed_fields_spilled_batches_total") > 0
    assert metrics.value("auditlake_writer_typed_fields_held_bytes") <= 32 * 1024 * 1024
    assert list(service.spool.glob("columns-*.spill"))
    # the spool holds far more than two flushes: the writer says it is catching up, ingest sends one frame at a time
    assert service.writer_status()["catching_up"] is True and metrics.value("auditlake_writer_catching_up") == 1
    wait_for(lambda: Scrape(f"{service.url}/metrics").value("auditlake_ingest_frames_in_flight_limit") == 1,
             what="ingest to take the writer's catching-up status")
    blocker.unlink()
    wait_for(lambda: service.writer_status()["spool_backlog_events"] == 0, timeout=180, what="the backlog to drain")
    assert service.writer_status()["catching_up"] is False
    wait_for(lambda: Scrape(f"{service.url}/metrics").value("auditlake_ingest_frames_in_flight_limit") == MAX_FRAMES_IN_FLIGHT,
             what="ingest to send four frames again")
    stored = sorted(event["audit_event_id"] for event in service.stored_events())
    assert stored == sorted(posted)  # every event, once
    after = Scrape(f"{service.writer_url}/metrics")
    assert after.value("auditlake_writer_parsed_flushes_total") == 0
    assert after.value("auditlake_writer_typed_field_mismatches_total") == 0
    assert after.value("auditlake_writer_typed_fields_held_bytes") == 0
    wait_for(lambda: not list(service.spool.glob("columns-*.spill*")), what="the spill files to be removed")
