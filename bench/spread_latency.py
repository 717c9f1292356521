"""Latency with independent producers at about half the maximum: wrk's p50 / p99 and how often an ack was slow.

Usage: .venv/bin/python bench/spread_latency.py [--mean-pause-ms 19] [--seconds 20] [--events-per-body 100] [--in-step]
       [--backend local|s3]
Needs wrk. Starts the two processes (default settings, verbosity ``verbose``; on ``s3`` with a moto server
process as ``ingest_bench.py`` does), runs 5 s at
the maximum so the writer has flushed and its dedupe window holds ids, waits for the spool to drain, then
runs 16 connections whose pauses are exponential with ``--mean-pause-ms`` (about 700 requests/s of
100-event bodies, half the maximum on the machine of docs/benchmarks.md); with ``--in-step`` every pause is
exactly that long, as in ``ingest_bench.py``'s paced run (the connections answered together send together). Prints the rate, wrk's p50 /
p99 / max, and the share of ingest's requests and of its frames' acks (send to ack, from its metrics)
slower than 1, 2.5, 5 and 10 ms; the same for the writer's group commits (a frame's arrival to durable)
and for their write and fsync of the spool (the disk's share of a commit); last, the share of 0.25 s
samples in which ingest sent one frame at a time because the writer was catching up. Shorter than a full
``ingest_bench.py`` run, for alternated pairs of two versions of the code (run it in each tree in turn).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import threading
import tempfile
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from ingest_bench import drain_backlog, start_service, write_template, wrk  # noqa: E402
from moto_process import stop_moto  # noqa: E402
from tests.ops.helpers import Scrape  # noqa: E402
from tests.service import Service  # noqa: E402

HISTOGRAMS = {"requests": "auditlake_ingest_http_request_duration_seconds",
              "acks": "auditlake_ingest_ack_latency_seconds"}
# The writer's share of an ack (a group commit, frame arrival to durable) and the disk's share of that.
WRITER_HISTOGRAMS = {"commits": "auditlake_writer_commit_latency_seconds",
                     "syncs": "auditlake_writer_spool_sync_seconds"}
BOUNDS = ("0.001", "0.0025", "0.005", "0.01")


def buckets(url: str, name: str) -> dict[str, float]:
    """The cumulative bucket counts of histogram ``name`` (summed over its labels) from ingest's metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for bound, value in re.findall(rf'^{name}_bucket{{[^}}]*le="([^"]+)"[^}}]*}} (\S+)$', text, re.M):
        found[bound] = found.get(bound, 0.0) + float(value)
    return found


def scrape(service: Service, into: dict[str, dict[str, float]]) -> None:
    """Both processes' latency histograms, by the keys of ``HISTOGRAMS`` and ``WRITER_HISTOGRAMS``."""
    into.update({key: buckets(service.url, name) for key, name in HISTOGRAMS.items()})
    into.update({key: buckets(service.writer_url, name) for key, name in WRITER_HISTOGRAMS.items()})


def sample_frame_limit(url: str, stop: threading.Event, into: list[float]) -> None:
    """``auditlake_ingest_frames_in_flight_limit`` every 0.25 s until ``stop`` (1 while the writer catches up)."""
    while not stop.wait(0.25):
        into.append(Scrape(f"{url}/metrics").value("auditlake_ingest_frames_in_flight_limit"))


def main() -> None:
    """Warm up at the maximum, then measure the paced run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mean-pause-ms", type=int, default=19)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--events-per-body", type=int, default=100)
    parser.add_argument("--in-step", action="store_true",
                        help="every connection pauses exactly --mean-pause-ms (16 bodies arrive together)")
    parser.add_argument("--backend", choices=("local", "s3"), default="local")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="auditlake-spread-"))
    template = work / "body.json"
    write_template(template, args.events_per_body)
    service, moto = start_service(args.backend, work / "service")
    try:
        wrk(service.url, template, 5, 16)
        drain_backlog(service)
        before, after = {}, {}
        scrape(service, before)
        stop, limits = threading.Event(), []
        sampler = threading.Thread(target=sample_frame_limit, args=(service.url, stop, limits), daemon=True)
        sampler.start()
        run = wrk(service.url, template, args.seconds, 16, args.mean_pause_ms, spread=not args.in_step)
        stop.set()
        sampler.join()
        scrape(service, after)
    finally:
        service.stop()
        stop_moto(moto)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{run['accepted_per_second']:.0f} requests/s accepted, p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
          f"max {run['max_us'] / 1000:.1f} ms, steal {run['machine_steal_percent']} %")
    for key in [*HISTOGRAMS, *WRITER_HISTOGRAMS]:
        total = after[key]["+Inf"] - before[key]["+Inf"]
        slower = {bound: 1 - (after[key][bound] - before[key][bound]) / max(total, 1) for bound in BOUNDS}
        shares = ", ".join(f">{float(bound) * 1000:g} ms {100 * share:.1f} %" for bound, share in slower.items())
        print(f"  {key}: {total:.0f}, slower than {shares}")
    catching_up = sum(1 for limit in limits if limit == 1) / max(len(limits), 1)
    print(f"  one frame in flight (the writer catching up) in {100 * catching_up:.1f} % of {len(limits)} samples")


if __name__ == "__main__":
    main()
