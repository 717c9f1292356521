"""Reads beyond the contract: cursor pages, export, stats, bounded and cancellable reads, sidecar-less files."""

from __future__ import annotations

import collections
import csv
import io
import socket
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from tests.ledger import Ledger, LoadGenerator, make_events

BASE = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def _seed(service, tag: str, count: int, spread_seconds: int = 3600, types=("auth", "cas_grant", "cas_decision")):
    """Post ``count`` events with distinct ts spread over an hour (some sharing a ts), in batches."""
    events = make_events(count, tag)
    for index, event in enumerate(events):
        event["ts"] = (BASE + timedelta(seconds=(index * spread_seconds) // count)).isoformat()
        event["type"] = types[index % len(types)]
        event["outcome"] = "allow" if index % 4 else "deny"
    for start in range(0, count, 500):
        assert service.post({"events": events[start:start + 500]})[0] == 202
    return events


def _range(tag: str, extra: str = "") -> str:
    return (f"since={urllib.parse.quote((BASE - timedelta(minutes=1)).isoformat())}"
            f"&until={urllib.parse.quote((BASE + timedelta(hours=2)).isoformat())}&correlation_id={tag}{extra}")


def _walk(service, query: str, limit: int) -> list[dict]:
    records, token = [], None
    for _ in range(1000):
        suffix = f"&cursor={token}" if token else ""
        status, body, _ = service.get(f"/v1/audit/events?{query}&limit={limit}{suffix}")
        assert status == 200, body
        records.extend(body["records"])
        token = body.get("next_cursor")
        assert body["truncated"] == (token is not None)
        if not token:
            return records
    raise AssertionError("cursor walk did not end")


def test_cursor_walk_while_ingest_continues_has_no_gaps_or_repeats(shared_service) -> None:
    """Paging 3,000 events 250 at a time while other events arrive returns each exactly once, newest first."""
    events = _seed(shared_service, "walk", 3000)
    shared_service.wait_flushed(3000)
    ledger = Ledger()
    producer = LoadGenerator(shared_service, ledger, batch_size=20)
    producer.start()
    try:
        walked = _walk(shared_service, _range("walk"), 250)
    finally:
        producer.stop()
    ids = [record["audit_event_id"] for record in walked]
    assert len(ids) == len(set(ids)) == 3000
    assert set(ids) == {event["audit_event_id"] for event in events}
    keys = [(record["ts"], record["audit_event_id"]) for record in walked]
    assert keys == sorted(keys, reverse=True)


def test_first_page_total_and_cursor_agree(shared_service) -> None:
    """The first page's total counts every match; pages with a filter walk exactly that many records."""
    _seed(shared_service, "pages", 1200)
    body = shared_service.get(f"/v1/audit/events?{_range('pages', '&type=auth')}&limit=100")[1]
    assert body["total"] == 400 and body["truncated"] and body["next_cursor"]
    assert len(_walk(shared_service, _range("pages", "&type=auth"), 100)) == 400
    assert len(_walk(shared_service, _range("pages", "&user_email=LOAD@"), 333)) == 1200


def test_export_equals_the_paged_walk(shared_service) -> None:
    """NDJSON export streams every match in the same order as the cursor walk; CSV has the same rows."""
    _seed(shared_service, "export", 2500)
    walked = _walk(shared_service, _range("export"), 400)
    import urllib.request

    with urllib.request.urlopen(f"{shared_service.url}/v1/audit/export?{_range('export')}", timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
    exported = [orjson.loads(line) for line in _raw(shared_service, f"/v1/audit/export?{_range('export')}").splitlines()]
    assert [r["audit_event_id"] for r in exported] == [r["audit_event_id"] for r in walked]
    assert exported == walked
    rows = list(csv.DictReader(io.StringIO(_raw(shared_service, f"/v1/audit/export?{_range('export')}&format=csv"))))
    assert [row["audit_event_id"] for row in rows] == [r["audit_event_id"] for r in walked]
    assert orjson.loads(rows[0]["record_json"]) == walked[0] and rows[0]["type"] == walked[0]["type"]


def _raw(service, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{service.url}{path}", timeout=30) as response:
        return response.read().decode()


def test_stats_equal_counts_from_the_raw_records(shared_service) -> None:
    """Bucketed counts (5m, grouped by type and by outcome) equal counts computed from the records."""
    _seed(shared_service, "stats", 1800)
    records = _walk(shared_service, _range("stats"), 10000)
    for group_by in ("type", "outcome"):
        status, body, _ = shared_service.get(f"/v1/audit/stats?{_range('stats')}&bucket=5m&group_by={group_by}")
        assert status == 200, body
        expected: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for record in records:
            moment = datetime.fromisoformat(record["ts"].replace("Z", "+00:00"))
            start = moment.replace(minute=moment.minute - moment.minute % 5, second=0, microsecond=0)
            expected[start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")][record[group_by]] += 1
        got = {entry["start"]: collections.Counter(entry["groups"]) for entry in body["series"]}
        assert got == expected and body["total"] == 1800
    plain = shared_service.get(f"/v1/audit/stats?{_range('stats')}&bucket=1h")[1]
    assert sum(entry["count"] for entry in plain["series"]) == 1800 and "groups" not in plain["series"][0]


@pytest.mark.parametrize("path", [
    "/v1/audit/events?cursor=not-a-cursor",
    "/v1/audit/events?cursor=eyJ2Ijo5fQ",
    "/v1/audit/stats?bucket=2m",
    "/v1/audit/stats?group_by=details",
    "/v1/audit/stats?group_by=user_email",
    "/v1/audit/export?format=xml",
    "/v1/audit/export?window=3h",
    "/v1/audit/stats?since=yesterday",
])
def test_new_parameters_are_validated(shared_service, path: str) -> None:
    """Bad cursors, buckets, group_by values and formats are 400 with a JSON detail."""
    status, body, _ = shared_service.get(path)
    assert status == 400 and isinstance(body["detail"], str)


def test_a_cursor_is_bound_to_its_filters(shared_service) -> None:
    """A cursor issued for one filter set is refused (400) with another."""
    _seed(shared_service, "bound", 300)
    token = shared_service.get(f"/v1/audit/events?{_range('bound')}&limit=10")[1]["next_cursor"]
    status, body, _ = shared_service.get(f"/v1/audit/events?{_range('bound')}&type=auth&limit=10&cursor={token}")
    assert status == 400 and "cursor" in body["detail"]


def test_reads_are_bounded_and_a_cancelled_read_frees_its_slot(service_factory) -> None:
    """With one read slot, a second read gets 503 + Retry-After; a read whose client left frees the slot."""
    service = service_factory(AUDIT_SERVICE_READ_CONCURRENCY="1", AUDIT_SERVICE_TEST_READ_DELAY_SECONDS="0.5",
                              AUDIT_SERVICE_FLUSH_BATCH_SIZE="100")
    _seed(service, "slow", 1000)
    service.wait_flushed(1000)
    path = f"/v1/audit/events?{_range('slow')}&limit=5"
    sock = socket.create_connection(("127.0.0.1", service.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    deadline = time.monotonic() + 10
    while True:
        status, body, headers = service.get(path)
        if status == 503:
            break
        assert time.monotonic() < deadline, "the slow read never held the slot"
    assert headers.get("Retry-After") and "detail" in body
    sock.close()
    left = time.monotonic()
    while service.get("/v1/audit/events?correlation_id=none&limit=1")[0] == 503:
        assert time.monotonic() - left < 3, "the cancelled read kept its slot"
        time.sleep(0.05)


def test_files_without_a_sidecar_are_still_read(service_factory) -> None:
    """Published NDJSON files whose Parquet sidecar is gone (or never existed) are read from the NDJSON."""
    service = service_factory()
    events = _seed(service, "nosidecar", 600)
    service.wait_flushed(600)
    for sidecar in service.store.rglob("*.parquet"):
        sidecar.unlink()
    records = _walk(service, _range("nosidecar"), 250)
    assert {r["audit_event_id"] for r in records} == {e["audit_event_id"] for e in events}
