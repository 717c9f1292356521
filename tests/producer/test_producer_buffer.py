"""The bounded buffer: drop policies, count and byte limits, exact accounting, rate-limited warnings."""

from __future__ import annotations

import logging
import re

import pytest

from producer import AuditProducer, ProducerOptions
from producer.buffer import EventBuffer
from producer.ratelog import RateLimitedLog


def make_buffer(max_events: int = 5, max_bytes: int = 1000, oldest: bool = False) -> EventBuffer:
    return EventBuffer(max_events, max_bytes, oldest, ready_events=3, ready_bytes=10_000)


def test_a_full_buffer_drops_the_newest_by_default(check_invariant):
    buffer = make_buffer()
    results = [buffer.add(b"%d" % n)[0] for n in range(8)]
    assert results == [True] * 5 + [False] * 3
    batch = buffer.take(10, 10_000)
    assert batch.items == [b"0", b"1", b"2", b"3", b"4"]
    stats = buffer.stats()
    assert (stats.emitted, stats.overflow, stats.in_flight, stats.buffered) == (8, 3, 5, 5)
    check_invariant(stats)


def test_drop_oldest_keeps_the_newest_events(check_invariant):
    buffer = make_buffer(oldest=True)
    assert all(buffer.add(b"%d" % n)[0] for n in range(8))
    assert buffer.take(10, 10_000).items == [b"3", b"4", b"5", b"6", b"7"]
    check_invariant(buffer.stats())


def test_the_byte_limit_counts_in_flight_events_too(check_invariant):
    buffer = make_buffer(max_events=100, max_bytes=100)
    assert buffer.add(b"x" * 60)[0]
    batch = buffer.take(10, 10_000)
    assert buffer.add(b"y" * 30)[0]
    assert not buffer.add(b"z" * 20)[0]
    assert buffer.stats().buffered_bytes == 90
    buffer.resolve(batch, "sent")
    assert buffer.add(b"z" * 20)[0]
    stats = buffer.stats()
    assert (stats.sent, stats.overflow, stats.buffered, stats.buffered_bytes) == (1, 1, 2, 50)
    check_invariant(stats)


def test_take_respects_the_batch_byte_limit_but_always_takes_one():
    buffer = make_buffer(max_events=10, max_bytes=10_000)
    for size in (40, 40, 40):
        buffer.add(b"a" * size)
    assert len(buffer.take(10, 90).items) == 2
    assert len(buffer.take(10, 10).items) == 1


def test_the_worker_is_woken_for_the_first_event_and_a_full_batch():
    buffer = make_buffer(max_events=10)
    wakes = [buffer.add(b"e")[1] for _ in range(4)]
    assert wakes == [True, False, True, False]


def test_settling_twice_counts_once_and_close_abandons_the_queue(check_invariant):
    buffer = make_buffer()
    for n in range(4):
        buffer.add(b"%d" % n)
    batch = buffer.take(2, 10_000)
    assert buffer.resolve(batch, "rejected") is True
    assert buffer.resolve(batch, "abandoned") is False
    assert buffer.close() == 2
    assert buffer.add(b"late") == (False, False)
    stats = buffer.stats()
    assert (stats.failed, stats.rejected, stats.abandoned, stats.emitted, stats.buffered) == (2, 2, 3, 5, 0)
    check_invariant(stats)


@pytest.mark.parametrize(("policy", "expected"), [("newest", list(range(10))), ("oldest", list(range(15, 25)))])
def test_drop_policy_end_to_end_with_one_rate_limited_warning(policy, expected, audit_server, caplog, check_invariant):
    caplog.set_level("WARNING", logger="auditlake.producer")
    with AuditProducer(audit_server.url, max_buffer_events=10, flush_interval=30, drop_policy=policy) as producer:
        accepted = [producer.emit({"type": "t", "n": n}) for n in range(25)]
        assert producer.flush(5)
        stats = producer.stats()
    assert accepted == ([True] * 10 + [False] * 15 if policy == "newest" else [True] * 25)
    assert sorted(event["n"] for event in audit_server.accepted()) == expected
    assert (stats.overflow, stats.sent) == (15, 10)
    check_invariant(stats)
    full = [r.getMessage() for r in caplog.records if r.name == "auditlake.producer" and "buffer full" in r.getMessage()]
    assert len(full) == 1, full  # later drops are counted, not logged again within log_interval
    assert 1 <= int(re.search(r"dropped (\d+) events", full[0]).group(1)) <= 15


def test_rate_limited_log_reports_suppressed_repeats(caplog):
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("auditlake.producer.test"), 60, clock=lambda: now[0])
    caplog.set_level("WARNING", logger="auditlake.producer.test")
    assert log.warning("k", "first %s", "a")
    assert not log.warning("k", "second")
    assert not log.warning("k", "third")
    assert log.warning("other", "another key")
    now[0] = 61
    assert log.warning("k", "again")
    assert [r.getMessage() for r in caplog.records] == [
        "first a",
        "another key",
        "again (2 similar warnings suppressed)",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"batch_size": 0},
        {"drop_policy": "random"},
        {"flush_interval": 0},
        {"base_url": "ftp://x"},
        {"max_buffer_bytes": -1},
    ],
)
def test_bad_options_are_refused_at_construction(bad):
    with pytest.raises(ValueError):
        ProducerOptions(**bad)
