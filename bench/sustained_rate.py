"""Whether a rate is sustained: 100-event bodies offered at a set rate for minutes, with the writer's backlog over time.

Usage: .venv/bin/python bench/sustained_rate.py [--events-per-second 150000] [--seconds 300] [--backend local|s3]
Needs wrk. ``ingest_bench.py``'s maximum is what ingest accepts in 20 s of a closed loop; the spool absorbs
what the writer does not store meanwhile (up to ``AUDIT_SERVICE_SPOOL_MAX_BYTES``, 1 GiB), so a rate above what
the writer stores is answered 202 until the spool is full and 503 after. This run offers the rate for
``--seconds``: 16 connections, each pausing after its answer (the pause calibrated on two 3 s runs to give
the rate, then set again after each 30 s segment from the rate that segment reached, since this closed
loop slows when answers do; a fractional pause is rounded up or down at random in the right proportion).
It samples the writer's spool backlog every 10 s and prints JSON: the accepted rate, the
statuses, the rate the writer stored, the backlog's samples and its growth (events/s, a least-squares slope
over the run), and each segment's rate, pause and wrk's p50 / p99. A rate is sustained when there is no 503
and the backlog does not grow.
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
PROBE_SECONDS = 3
SEGMENT_SECONDS = 30


def next_pause(pause: float, wanted_requests_per_second: float, run: dict) -> float:
    """The per-connection pause (ms) for the next run, from a run with ``pause`` that reached its own rate: in
    this closed loop each connection's cycle is its answer's time plus the pause, so the pause moves by the
    difference of the cycle wanted and the cycle measured."""
    wanted_cycle_ms = CONNECTIONS * 1000 / wanted_requests_per_second
    measured_cycle_ms = CONNECTIONS * 1000 / max(run["accepted_per_second"], 1)
    return max(0.0, pause + wanted_cycle_ms - measured_cycle_ms)


def calibrated_pause(url: str, template: Path, requests_per_second: float) -> float:
    """The pause (ms) that gives ``requests_per_second``: a guess, then ``next_pause`` after two probe runs."""
    pause = max(0.0, CONNECTIONS * 1000 / requests_per_second - 5.0)  # answers take a few ms near the maximum
    for _ in range(2):
        pause = next_pause(pause, requests_per_second, wrk(url, template, PROBE_SECONDS, CONNECTIONS, pause))
    return pause


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
    """Start the service, calibrate, offer the rate for ``args.seconds`` in segments, report."""
    work = Path(tempfile.mkdtemp(prefix="auditlake-sustained-"))
    template = work / "batch100.json"
    write_template(template, 100)
    service, moto = start_service(args.backend, work / "service")
    segments = []
    try:
        wrk(service.url, template, 3, CONNECTIONS)  # warm up
        pause = calibrated_pause(service.url, template, args.events_per_second / 100)
        before = service.writer_status()
        stop, samples = threading.Event(), []
        sampler = threading.Thread(target=sample_backlog, args=(service, stop, samples), daemon=True)
        sampler.start()
        left = args.seconds
        while left > 0:
            # The loop slows when answers do (a fuller dedupe window, a slower phase of the machine): each
            # segment's pause follows the last one's rate, so the rate offered stays the one asked for.
            part = wrk(service.url, template, min(SEGMENT_SECONDS, left), CONNECTIONS, pause)
            part["pause_ms"] = round(pause, 2)
            segments.append(part)
            left -= SEGMENT_SECONDS
            pause = next_pause(pause, args.events_per_second / 100, part)
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
        "segments": [{"events_per_second": round(part["accepted_per_second"] * 100), "pause_ms": part["pause_ms"],
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
