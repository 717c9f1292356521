"""What counting one request costs: prometheus_client's Counter and Histogram against ingest's loop instruments.

Usage: .venv/bin/python bench/request_metrics.py [--rounds 200000]
Times, in one run, one counter increment plus one latency observation per request (what
``IngestMetrics.observe_request`` does for every answer) with each kind of instrument, best of five, and
prints the microseconds per request and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry, Counter, Histogram  # noqa: E402

from ingest.loop_metrics import LoopCounter, LoopHistogram  # noqa: E402
from ingest.metrics import LATENCY_BUCKETS  # noqa: E402


def per_call(count, observe, rounds: int) -> float:
    """Best-of-five microseconds for one ``count()`` and one ``observe(seconds)``."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for index in range(rounds):
            count()
            observe(0.0005 + (index & 15) * 0.0004)
        best = min(best, (time.perf_counter() - started) / rounds * 1e6)
    return best


def main() -> None:
    """Time both, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200_000)
    args = parser.parse_args()
    registry = CollectorRegistry()
    counter = Counter("bench_requests", "Requests.", ["route"], registry=registry).labels("/v1/audit/events")
    histogram = Histogram("bench_seconds", "Seconds.", ["route"], buckets=LATENCY_BUCKETS,
                          registry=registry).labels("/v1/audit/events")
    loop_counter = LoopCounter("bench_requests", "Requests.", ["route"]).labels("/v1/audit/events")
    loop_histogram = LoopHistogram("bench_seconds", "Seconds.", ["route"], LATENCY_BUCKETS).labels("/v1/audit/events")
    library = per_call(counter.inc, histogram.observe, args.rounds)
    loop = per_call(loop_counter.inc, loop_histogram.observe, args.rounds)
    print(f"prometheus_client Counter + Histogram: {library:.3f} µs a request")
    print(f"loop counter + histogram:              {loop:.3f} µs a request ({library / loop:.1f}x less)")


if __name__ == "__main__":
    main()
