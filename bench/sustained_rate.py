"""Whether a rate is sustained: 100-event bodies offered at a set rate for minutes, with the writer's backlog over time.

Usage: .venv/bin/python bench/sustained_rate.py [--events-per-second 150000] [--seconds 300] [--backend local|s3]
Needs wrk. ``ingest_bench.py``'s maximum is what ingest accepts in 20 s of a closed loop; the spool absorbs
what the writer does not store meanwhile (up to ``AUDIT_SERVICE_SPOOL_MAX_BYTES``, 1 GiB), so a rate above what
the writer stores is answered 202 until the spool is full and 503 after. This run offers the rate for
``--seconds``: 16 connections whose requests follow a fixed schedule at the rate (``ingest_wrk.lua``'s
``BENCH_RATE``: a request is due every 1/rate s whatever the answers take, and a late one goes at once), in
30 s segments. (Until the thirty-first session each connection paused after its answer, the pause
calibrated from the last segment's rate: that closed loop fell below the rate whenever answers slowed and
never made the shortfall up, so it measured its own lag as much as the service.) It samples the writer's
spool backlog every 10 s and prints JSON: the accepted rate, the statuses, the rate the writer stored, the
backlog's samples and its growth (events/s, a least-squares slope over the run), and each segment's rate
and wrk's p50 / p99. A rate is sustained when there is no 503 and the backlog does not grow.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from ingest_bench import start_service, write_template, wrk  # noqa: E402
from moto_process import stop_moto  # noqa: E402
from tests.service import Service  # noqa: E402

CONNECTIONS = 16
SAMPLE_SECONDS = 10.0
SEGMENT_SECONDS = 30


def slope(samples: list[tuple[float, int]]) -> float:
    """Least-squares growth per second of ``(seconds, value)`` samples (0 with fewer than two)."""
    if len(samples) < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / len(samples)
    mean_v = sum(v for _, v in samples) / len(samples)
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    return sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread if spread else 0.0


def sample_backlog(service: Service, stop: threading.Event, into: list[tuple[float, int]]) -> None:
    """Every SAMPLE_SECONDS until ``stop``: seconds since start and the writer's spool backlog (events)."""
    started = time.monotonic()
    while not stop.wait(SAMPLE_SECONDS):
        into.append((round(time.monotonic() - started, 1), service.writer_status()["spool_backlog_events"]))


def run(args: argparse.Namespace) -> dict:
    """Start the service, offer the rate for ``args.seconds`` in segments, report."""
    work = Path(tempfile.mkdtemp(prefix="auditlake-sustained-"))
    template = work / "batch100.json"
    write_template(template, 100)
    service, moto = start_service(args.backend, work / "service")
    segments = []
    try:
        wrk(service.url, template, 3, CONNECTIONS)  # warm up
        requests_per_second = args.events_per_second / 100
        before = service.writer_status()
        stop, samples = threading.Event(), []
        sampler = threading.Thread(target=sample_backlog, args=(service, stop, samples), daemon=True)
        sampler.start()
        left = args.seconds
        while left > 0:
            segments.append(wrk(service.url, template, min(SEGMENT_SECONDS, left), CONNECTIONS,
                                requests_per_second=requests_per_second))
            left -= SEGMENT_SECONDS
        stop.set()
        sampler.join()
        after = service.writer_status()
    finally:
        service.stop()
        stop_moto(moto)
        shutil.rmtree(work, ignore_errors=True)
    seconds = sum(part["duration_us"] for part in segments) / 1e6
    statuses: dict[str, int] = {}
    for part in segments:
        for status, count in part["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    return {
        "backend": args.backend, "target_events_per_second": args.events_per_second, "seconds": round(seconds, 1),
        "accepted_events_per_second": round(statuses.get("202", 0) * 100 / seconds),
        "statuses": statuses,
        "stored_events_per_second": round((after["flushed_events"] - before["flushed_events"]) / seconds),
        "backlog_events_before": before["spool_backlog_events"],
        "backlog_events_after": after["spool_backlog_events"],
        "backlog_growth_events_per_second": round(slope(samples)),
        "backlog_samples": [backlog for _, backlog in samples],
        "segments": [{"events_per_second": round(part["accepted_per_second"] * 100),
                      "p50_ms": part["p50_ms"], "p99_ms": part["p99_ms"]} for part in segments],
        "machine_steal_percent": max(part["machine_steal_percent"] for part in segments),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-second", type=int, default=150_000)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--backend", choices=("local", "s3"), default="local")
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
