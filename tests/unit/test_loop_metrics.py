"""The loop's counters and histograms expose exactly what prometheus_client's own classes would."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ingest.loop_metrics import LoopCollector, LoopCounter, LoopHistogram
from ingest.metrics import LATENCY_BUCKETS

OBSERVED = [0.0, 0.0004, 0.001, 0.0010001, 0.0025, 0.007, 0.01, 0.2, 29.9, 30.0, 30.5, 400.0]


def created_free(exposition: bytes) -> str:
    """The text with every ``_created`` value (a creation time) replaced."""
    return re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 T", exposition.decode())


def test_the_exposition_is_prometheus_clients_own() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter("demo_requests", "Requests.", ["route", "status"], registry=theirs)
    histogram = Histogram("demo_seconds", "Seconds.", ["route"], buckets=LATENCY_BUCKETS, registry=theirs)
    plain = Histogram("demo_ack_seconds", "Ack seconds.", buckets=LATENCY_BUCKETS, registry=theirs)
    loop_counter = LoopCounter("demo_requests", "Requests.", ["route", "status"])
    loop_histogram = LoopHistogram("demo_seconds", "Seconds.", ["route"], LATENCY_BUCKETS)
    loop_plain = LoopHistogram("demo_ack_seconds", "Ack seconds.", [], LATENCY_BUCKETS)
    ours.register(LoopCollector([loop_counter, loop_histogram, loop_plain]))
    loop_plain.labels()  # an unlabelled histogram shows its zeros before its first observation
    assert created_free(generate_latest(ours)) == created_free(generate_latest(theirs))
    for index, seconds in enumerate(OBSERVED):
        route = ("/a", "/b")[index % 2]
        counter.labels(route, "202").inc()
        loop_counter.labels(route, "202").inc()
        histogram.labels(route).observe(seconds)
        loop_histogram.labels(route).observe(seconds)
        plain.observe(seconds)
        loop_plain.labels().observe(seconds)
    counter.labels("/a", "503").inc(3)
    loop_counter.labels("/a", "503").inc(3)
    text = created_free(generate_latest(ours))
    assert text == created_free(generate_latest(theirs))
    assert 'demo_seconds_bucket{le="0.001",route="/a"} 2.0' in text  # 0.0 and 0.001: a bound is inclusive
    assert 'demo_seconds_bucket{le="0.001",route="/b"} 1.0' in text  # 0.0004, not 0.0010001
    assert 'demo_ack_seconds_bucket{le="30.0"} 10.0' in text and 'demo_ack_seconds_bucket{le="+Inf"} 12.0' in text
    assert "demo_requests_total{route=\"/a\",status=\"503\"} 3.0" in text
