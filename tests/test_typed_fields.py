"""The typed fields ingest sends beside the lines, through the real two processes: the writer flushes from
them without parsing, the Parquet columns agree with the stored lines row for row, and after a restart (no
fields in memory) the lines are parsed."""

from __future__ import annotations

import time

import orjson
import pyarrow.parquet as pq

from shared.events import SERVICE_EVENT_TYPES
from shared.typed_columns import FIELDS
from tests.ledger import make_events


def _wait_status(service, done, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = service.writer_status()
        if done(status):
            return status
        time.sleep(0.1)
    raise TimeoutError(f"writer status never matched: {service.writer_status()}\n{service.tail()}")


def _bodies() -> list:
    """Bodies that take the fast path and the general path: canonical and epoch stamps, missing and
    non-string extra fields, events of several shapes and non-ASCII text in one request."""
    plain = make_events(40, "typed")
    epoch = [{**event, "ts": 1_790_000_000 + index} for index, event in enumerate(make_events(5, "epoch"))]
    odd = [{"type": "auth", "tenant_id": "ü-tenant", "user_email": 7, "tool_name": "t"},
           {"type": "auth", "agent_name": "x\x7fy", "details": {"type": "nested"}},
           {"type": "cas_grant", "ts": "2026-11-29T10:00:00+01:00", "capability": ["not", "a", "string"]}]
    return [{"events": plain}, {"events": epoch}, odd, {"type": "auth", "agent_name": "single"}]


def _sidecar_rows(service) -> list[dict]:
    rows = []
    for path in sorted(service.store.rglob("*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return [row for row in rows if orjson.loads(row["record_json"]).get("type") not in SERVICE_EVENT_TYPES]


def test_flushes_use_the_sent_fields_and_the_columns_match_the_lines(service_factory) -> None:
    service = service_factory()
    posted = 0
    for body in _bodies():
        status, answer, _ = service.post(body)
        assert status == 202, answer
        posted += answer["accepted"]
    stored = service.wait_flushed(posted)
    status = _wait_status(service, lambda status: status.get("spool_backlog_events") == 0)
    assert (status["parsed_flushes"], status["typed_field_mismatches"]) == (0, 0)
    assert status["flushes"] >= 1
    rows = _sidecar_rows(service)
    assert len(rows) == len(stored) == posted
    for row in rows:
        event = orjson.loads(row["record_json"])
        for name in FIELDS:
            value = event.get(name)
            assert row[name] == (value if type(value) is str else None), (name, event)
        assert row["ts"].strftime("%Y-%m-%dT%H:%M:%S.%fZ") == event["ts"]
        assert row["received_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ") == event["received_at"]


def test_after_a_writer_restart_the_recovered_lines_are_parsed(service_factory) -> None:
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="30", AUDIT_SERVICE_FLUSH_BATCH_SIZE="100000")
    events = make_events(30, "restart")
    assert service.post({"events": events})[0] == 202
    service.signal("writer")
    service.start("writer", AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.2")
    service.wait_ready()
    status = _wait_status(service, lambda status: status.get("flushes", 0) >= 1 and not status["spool_backlog_events"])
    assert status["parsed_flushes"] >= 1 and status["typed_field_mismatches"] == 0
    stored = {event["audit_event_id"] for event in service.stored_events()}
    assert stored == {event["audit_event_id"] for event in events}
    assert _sidecar_rows(service) and all(row["audit_event_id"] in stored for row in _sidecar_rows(service))


def test_events_dropped_by_verbosity_leave_their_fields_behind_too(service_factory) -> None:
    """With a preset that keeps only some types, the fields sent are those of the kept lines, row for row."""
    service = service_factory(AUDIT_LOG_VERBOSITY="minimal")
    events = [{**event, "type": ("cas_grant" if index % 3 else "auth"), "tool_name": f"tool-{index}"}
              for index, event in enumerate(make_events(30, "verbosity"))]
    status, answer, _ = service.post({"events": events})
    assert status == 202 and answer["accepted"] == 20
    stored = service.wait_flushed(20)
    status = _wait_status(service, lambda status: status.get("spool_backlog_events") == 0 and status["flushes"] >= 1)
    assert (status["parsed_flushes"], status["typed_field_mismatches"]) == (0, 0)
    rows = _sidecar_rows(service)
    assert sorted(row["tool_name"] for row in rows) == sorted(event["tool_name"] for event in stored)
    assert {row["type"] for row in rows} == {"cas_grant"}
    assert all(orjson.loads(row["record_json"])["tool_name"] == row["tool_name"] for row in rows)
