"""Measure health-endpoint latency of a running service while load generators post events (test and bench)."""

from __future__ import annotations

import http.client
import statistics
import time
import urllib.parse

from tests.ledger import Ledger, LoadGenerator
from tests.service import Service

HEALTH_PATHS = ("/healthz", "/readyz", "/v1/audit/status")
WRITER_PATHS = ("/healthz", "/readyz")


def timed_get(url: str) -> tuple[int, float]:
    """(status, seconds) of one GET on a fresh connection, as a probe makes it."""
    parts = urllib.parse.urlsplit(url)
    started = time.perf_counter()
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    return response.status, time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def measure_under_load(service: Service, calls: int = 200, producers: int = 2,
                       batch_size: int = 50) -> tuple[dict[str, dict[str, float]], int]:
    """Latency figures (ms) per endpoint over ``calls`` sequential probes each, with load running; and the
    number of events acknowledged meanwhile."""
    urls = {f"ingest {path}": f"{service.url}{path}" for path in HEALTH_PATHS}
    urls.update({f"writer {path}": f"{service.writer_url}{path}" for path in WRITER_PATHS})
    ledger = Ledger()
    load = [LoadGenerator(service, ledger, batch_size=batch_size) for _ in range(producers)]
    for generator in load:
        generator.start()
    samples: dict[str, list[float]] = {name: [] for name in urls}
    statuses: dict[str, set[int]] = {name: set() for name in urls}
    try:
        deadline = time.monotonic() + 10
        while len(ledger.acknowledged) < batch_size * producers and time.monotonic() < deadline:
            time.sleep(0.02)  # the load is flowing before measuring starts
        for _ in range(calls):
            for name, url in urls.items():
                status, seconds = timed_get(url)
                statuses[name].add(status)
                samples[name].append(seconds * 1000)
    finally:
        for generator in load:
            generator.stop()
    figures = {
        name: {"p50": round(statistics.median(values), 2), "p99": round(percentile(values, 0.99), 2),
               "max": round(max(values), 2), "statuses": sorted(statuses[name])}
        for name, values in samples.items()
    }
    return figures, len(ledger.acknowledged)
