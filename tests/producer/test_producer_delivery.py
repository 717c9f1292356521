"""Delivery: everything emitted arrives exactly once, in batches by size or age, with the right headers."""

from __future__ import annotations

import re
import threading
import time
import uuid

from producer import AsyncAuditProducer, AuditProducer

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_threaded_every_event_arrives_exactly_once(audit_server, check_invariant):
    producer = AuditProducer(audit_server.url, token="s3cret", batch_size=50, flush_interval=0.2)
    expected = [f"{worker}-{n}" for worker in range(4) for n in range(1000)]

    def work(worker: int) -> None:
        for n in range(1000):
            producer.emit({"type": "test.event", "audit_event_id": f"{worker}-{n}", "n": n})

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert producer.flush(10)
    assert producer.close(5)
    received = [event["audit_event_id"] for event in audit_server.accepted()]
    assert len(received) == len(set(received)) == 4000
    assert set(received) == set(expected)
    stats = producer.stats()
    assert (stats.emitted, stats.sent, stats.dropped, stats.buffered) == (4000, 4000, 0, 0)
    check_invariant(stats)
    for request in audit_server.requests:
        assert request.headers["Authorization"] == "Bearer s3cret"
        assert request.headers["Content-Type"] == "application/json"
        assert 1 <= len(request.events) <= 50


async def test_async_every_event_arrives_exactly_once(audit_server, check_invariant):
    async with AsyncAuditProducer(audit_server.url, batch_size=64, flush_interval=0.2) as producer:
        for n in range(3000):
            assert producer.emit({"type": "test.event", "n": n})
        assert await producer.flush(10)
    received = audit_server.accepted()
    ids = [event["audit_event_id"] for event in received]
    assert len(ids) == len(set(ids)) == 3000
    assert sorted(event["n"] for event in received) == list(range(3000))
    assert all("Authorization" not in request.headers for request in audit_server.requests)
    stats = producer.stats()
    assert (stats.emitted, stats.sent, stats.buffered, stats.dropped) == (3000, 3000, 0, 0)
    check_invariant(stats)


def test_full_batches_go_at_once_and_the_rest_waits_for_its_age(audit_server, wait_until):
    producer = AuditProducer(audit_server.url, batch_size=10, flush_interval=30)
    try:
        for n in range(25):
            producer.emit({"type": "t", "n": n})
        assert wait_until(lambda: len(audit_server.accepted()) >= 20, timeout=5)
        time.sleep(0.5)
        assert len(audit_server.accepted()) == 20
        assert producer.stats().buffered == 5
        assert producer.flush(5)
        assert sorted(event["n"] for event in audit_server.accepted()) == list(range(25))
    finally:
        producer.close(2)


def test_a_lone_event_is_sent_once_it_is_flush_interval_old(audit_server, wait_until):
    producer = AuditProducer(audit_server.url, batch_size=100, flush_interval=0.4)
    try:
        started = time.monotonic()
        producer.emit({"type": "t"})
        assert wait_until(lambda: audit_server.count(202) == 1, timeout=5)
        waited = audit_server.requests[0].at - started
        assert 0.3 <= waited <= 2.0, waited
    finally:
        producer.close(2)


def test_id_and_ts_are_filled_without_touching_the_callers_dict(audit_server):
    event = {"type": "t", "tenant_id": "acme"}
    with AuditProducer(audit_server.url) as producer:
        assert producer.emit(event)
        assert producer.emit({"type": "t", "audit_event_id": None, "ts": None})
        assert producer.flush(5)
    assert event == {"type": "t", "tenant_id": "acme"}
    first, second = audit_server.accepted()
    for sent in (first, second):
        assert uuid.UUID(sent["audit_event_id"]).version == 4
        assert TS_RE.match(sent["ts"]), sent["ts"]
    assert first["audit_event_id"] != second["audit_event_id"]
    assert first["tenant_id"] == "acme"


def test_a_retried_batch_carries_the_same_ids(audit_server):
    audit_server.fail_first = 1
    audit_server.retry_after = "0"
    with AuditProducer(audit_server.url, backoff_base=0.05) as producer:
        for n in range(5):
            producer.emit({"type": "t", "n": n})
        assert producer.flush(5)
        stats = producer.stats()
    refused, accepted = audit_server.requests
    assert (refused.status, accepted.status) == (503, 202)
    assert [event["audit_event_id"] for event in refused.posted] == [e["audit_event_id"] for e in accepted.events]
    assert [event["ts"] for event in refused.posted] == [event["ts"] for event in accepted.events]
    assert (stats.sent, stats.retried, stats.dropped) == (5, 1, 0)
