"""The HTTP side: gzip above the threshold, retries and Retry-After, 4xx not retried, bounded budgets."""

from __future__ import annotations

import time

from producer import AsyncAuditProducer, AuditProducer


def producer_warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "auditlake.producer"]


def test_bodies_above_the_threshold_are_gzipped_and_small_ones_are_not(audit_server):
    with AuditProducer(audit_server.url, gzip_threshold=4096, batch_size=10) as producer:
        producer.emit({"type": "small"})
        assert producer.flush(5)
        for n in range(10):
            producer.emit({"type": "big", "n": n, "payload": "x" * 1000})
        assert producer.flush(5)
    small, big = audit_server.requests
    assert small.encoding is None and small.headers.get("Content-Encoding") is None
    assert big.encoding == "gzip" and big.status == 202
    assert big.raw_size < 4096 < sum(len(event["payload"]) for event in big.events)
    assert sorted(event["n"] for event in big.events) == list(range(10))


async def test_async_flavour_gzips_too(audit_server):
    async with AsyncAuditProducer(audit_server.url, gzip_threshold=1024) as producer:
        for n in range(20):
            producer.emit({"type": "big", "payload": "y" * 200, "n": n})
        assert await producer.flush(5)
    assert [request.encoding for request in audit_server.requests] == ["gzip"]
    assert len(audit_server.accepted()) == 20


def test_a_4xx_is_not_retried_and_logged_once_with_the_detail(audit_server, caplog, check_invariant):
    caplog.set_level("WARNING", logger="auditlake.producer")
    audit_server.mode = "reject"
    audit_server.detail = "event 0: field 'type' must be a string"
    with AuditProducer(audit_server.url, batch_size=5, flush_interval=0.05) as producer:
        for n in range(15):
            producer.emit({"type": "t", "n": n})
        assert producer.flush(5)
        stats = producer.stats()
    assert audit_server.count() == 3 == audit_server.count(400)
    assert (stats.sent, stats.failed, stats.rejected, stats.dropped, stats.retried) == (0, 15, 15, 15, 0)
    check_invariant(stats)
    rejected = [message for message in producer_warnings(caplog) if "rejected" in message]
    assert len(rejected) == 1, rejected
    assert "HTTP 400" in rejected[0] and "field 'type' must be a string" in rejected[0]


def test_retry_after_is_honoured_before_the_retry(audit_server):
    audit_server.fail_first = 1
    audit_server.retry_after = "1"
    with AuditProducer(audit_server.url, backoff_base=0.01, backoff_max=0.01) as producer:
        producer.emit({"type": "t"})
        assert producer.flush(8)
        stats = producer.stats()
    first, second = audit_server.requests
    assert (first.status, second.status) == (503, 202)
    assert 0.9 <= second.at - first.at <= 3.0, second.at - first.at
    assert (stats.sent, stats.retried, stats.dropped) == (1, 1, 0)


def test_retry_after_beyond_the_budget_gives_up_and_pauses_later_batches(audit_server):
    audit_server.mode = "unavailable"
    audit_server.retry_after = "2"
    with AuditProducer(audit_server.url, retry_budget=1.0, batch_size=1, flush_interval=0.05) as producer:
        producer.emit({"type": "first"})
        assert producer.flush(3)
        assert producer.stats().failed == 1
        audit_server.mode = "accept"
        producer.emit({"type": "second"})
        assert producer.flush(6)
        stats = producer.stats()
    assert [request.status for request in audit_server.requests] == [503, 202]
    assert audit_server.requests[1].at - audit_server.requests[0].at >= 1.8
    assert (stats.sent, stats.failed, stats.retried) == (1, 1, 0)


def test_503_is_retried_max_attempts_times_then_dropped(audit_server, caplog, check_invariant):
    caplog.set_level("WARNING", logger="auditlake.producer")
    audit_server.mode = "unavailable"
    options = {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.1}
    with AuditProducer(audit_server.url, **options) as producer:
        for n in range(4):
            producer.emit({"type": "t", "n": n})
        assert producer.flush(5)
        stats = producer.stats()
    assert audit_server.count(503) == 3
    assert (stats.failed, stats.dropped, stats.retried, stats.sent, stats.rejected) == (4, 4, 2, 0, 0)
    check_invariant(stats)
    assert any("unavailable" in message for message in producer_warnings(caplog))


def test_429_is_retried_and_then_accepted(audit_server):
    audit_server.fail_first = 1
    audit_server.fail_status = 429
    with AuditProducer(audit_server.url, backoff_base=0.05) as producer:
        producer.emit({"type": "t"})
        assert producer.flush(5)
        stats = producer.stats()
    assert [request.status for request in audit_server.requests] == [429, 202]
    assert (stats.sent, stats.retried, stats.dropped) == (1, 1, 0)


def test_a_stalled_service_costs_at_most_the_retry_budget(audit_server, check_invariant):
    audit_server.mode = "stall"
    options = {"total_timeout": 0.3, "retry_budget": 1.0, "max_attempts": 10, "backoff_base": 0.01}
    with AuditProducer(audit_server.url, **options) as producer:
        producer.emit({"type": "t"})
        started = time.monotonic()
        assert producer.flush(5)
        elapsed = time.monotonic() - started
        stats = producer.stats()
    assert elapsed <= 2.5, elapsed
    assert (stats.failed, stats.dropped, stats.sent) == (1, 1, 0)
    assert stats.retried >= 1
    check_invariant(stats)


def test_close_with_a_stalled_service_returns_within_its_timeout(audit_server, check_invariant):
    audit_server.mode = "stall"
    producer = AuditProducer(audit_server.url, total_timeout=5, retry_budget=10)
    producer.emit({"type": "t"})
    producer.flush(0.3)
    started = time.monotonic()
    assert producer.close(0.5) is False
    assert time.monotonic() - started < 1.5
    stats = producer.stats()
    assert (stats.abandoned, stats.buffered, stats.dropped) == (1, 0, 1)
    check_invariant(stats)
    assert producer.emit({"type": "after close"}) is False
    assert producer.stats().abandoned == 2


def test_service_down_drops_after_retries_with_counts(down_url, check_invariant):
    with AuditProducer(down_url, max_attempts=2, backoff_base=0.01, batch_size=10) as producer:
        for n in range(25):
            producer.emit({"type": "t", "n": n})
        assert producer.flush(5)
        stats = producer.stats()
    assert (stats.failed, stats.dropped, stats.sent, stats.buffered) == (25, 25, 0, 0)
    assert stats.retried == 3
    check_invariant(stats)


def test_after_a_failed_batch_the_worker_holds_events_back_until_the_service_returns(audit_server, wait_until):
    audit_server.mode = "unavailable"
    options = {"max_attempts": 1, "batch_size": 1, "flush_interval": 0.05, "outage_backoff_max": 30}
    with AuditProducer(audit_server.url, **options) as producer:
        producer.emit({"type": "t", "n": 0})
        assert wait_until(lambda: producer.stats().failed == 1, timeout=5)
        failed_at = time.monotonic()
        for n in range(1, 6):
            producer.emit({"type": "t", "n": n})
        time.sleep(0.5)
        assert audit_server.count() == 1  # no hammering of a service that just failed
        assert producer.stats().buffered == 5
        audit_server.mode = "accept"
        assert wait_until(lambda: len(audit_server.accepted()) == 5, timeout=5)
        assert audit_server.requests[1].at - failed_at >= 0.9
        # The server records an event before it answers; the producer counts it once the answer is read.
        assert wait_until(lambda: producer.stats().sent == 5, timeout=5)
        stats = producer.stats()
    assert (stats.sent, stats.failed, stats.dropped) == (5, 1, 1)
