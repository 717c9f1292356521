"""Where the machine's CPU goes during a wrk run at the maximum: ingest, the writer, wrk, idle and steal.

Usage: .venv/bin/python bench/cpu_split.py [--events-per-body 100] [--seconds 10] [--connections 16] [--backend local|s3]
Needs wrk. Starts the two processes with default settings (verbosity ``verbose``; with ``--backend s3`` a moto
server process too, counted as ``moto``), runs wrk with
``bench/ingest_wrk.lua`` for ``--seconds`` + 4 s, and over ``--seconds`` in the middle reads each process's
CPU time (``/proc/<pid>/stat``) and the machine's (``/proc/stat``). Prints requests and events per second,
each process's share of a core and CPU per request (with its kernel part and minor page faults), the
machine's busy, idle (with I/O wait) and steal shares (100 % is one CPU), the CPUs each may run on (``AUDIT_SERVICE_INGEST_CPUS`` / ``_WRITER_CPUS``; set
both to ``all`` for an unpinned comparison), ingest's mean time from sending a frame to its ack with the
requests per frame (from its metrics), the writer's mean group commit (a group's first frame to durable, with its write and fsync; from its metrics), and the events the writer stored meanwhile with the spool's backlog
at the end (a writer that falls behind stores fewer than are accepted, and its backlog grows). Steal is
time the hypervisor gave the vCPUs to someone else: compare runs only when it is low.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from ingest_bench import machine_ticks, process_counters, service_under_wrk  # noqa: E402
from moto_process import stop_moto  # noqa: E402


def histogram_summary(url: str, name: str) -> tuple[float, float]:
    """A histogram's observations so far and their sum (seconds), from the metrics at ``url``."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    found = dict(re.findall(rf"^{name}_(count|sum) (\S+)$", metrics, re.M))
    return float(found.get("count", 0)), float(found.get("sum", 0))


def latency_summaries(service) -> dict[str, tuple[float, float]]:
    """Ingest's send-to-ack, the writer's arrival-to-durable per group commit and its write and fsync."""
    return {"ack": histogram_summary(service.url, "auditlake_ingest_ack_latency_seconds"),
            "commit": histogram_summary(service.writer_url, "auditlake_writer_commit_latency_seconds"),
            "sync": histogram_summary(service.writer_url, "auditlake_writer_spool_sync_seconds")}


def main() -> None:
    """Run the load, read the counters before and after, print the split."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-body", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--backend", choices=("local", "s3"), default="local")
    args = parser.parse_args()
    work, service, load, moto = service_under_wrk("auditlake-cpu-split-", args.events_per_body, args.connections,
                                                  args.seconds + 4, args.backend)
    try:
        time.sleep(2)
        pids = service.process_pids()  # ingest, writer and the writer's encoder child
        pids["wrk"] = load.pid
        if moto is not None:
            pids["moto"] = moto.pid
        before = {name: process_counters(pid) for name, pid in pids.items()}
        cpus = {name: sorted(os.sched_getaffinity(pid)) for name, pid in pids.items()}
        ticks_before, latency_before, started = machine_ticks(), latency_summaries(service), time.time()
        stored_before = service.writer_status()["flushed_events"]
        time.sleep(args.seconds)
        after = {name: process_counters(pid) for name, pid in pids.items()}
        ticks_after, latency_after, elapsed = machine_ticks(), latency_summaries(service), time.time() - started
        writer_after = service.writer_status()
        load.wait()
        summary = json.loads((work / "wrk.json").read_text())
    finally:
        service.stop()
        stop_moto(moto)
        shutil.rmtree(work, ignore_errors=True)
    rate = summary["requests"] / (summary["duration_us"] / 1e6)
    print(f"{rate:.0f} requests/s, {rate * args.events_per_body:.0f} events/s, statuses {summary['statuses']}, "
          f"p50 {summary['p50_us'] / 1000:.1f} ms")
    print(f"  stored by the writer meanwhile {(writer_after['flushed_events'] - stored_before) / elapsed:.0f} events/s, "
          f"{writer_after['spool_backlog_events']} events waiting in the spool at the end")
    for name in pids:
        used = (after[name][0] - before[name][0]) / elapsed
        kernel = (after[name][1] - before[name][1]) / elapsed
        faults = (after[name][2] - before[name][2]) / elapsed
        print(f"  {name:7s} {100 * used:4.0f} % of a core, {1e6 * used / rate:6.0f} µs per request "
              f"({1e6 * kernel / rate:.0f} in the kernel, {faults / rate:.1f} page faults), on CPUs {cpus[name]}")
    tick = os.sysconf("SC_CLK_TCK") * elapsed
    total, idle, steal = (100 * (now - then) / tick for now, then in zip(ticks_after, ticks_before))
    print(f"  machine busy {total - idle - steal:.0f} %, idle and I/O wait {idle:.0f} %, steal {steal:.0f} % "
          f"(of {total:.0f} %)")
    (acks, ack_sum), (commits, commit_sum), (_, sync_sum) = (
        (latency_after[name][0] - latency_before[name][0], latency_after[name][1] - latency_before[name][1])
        for name in ("ack", "commit", "sync"))
    if acks:
        print(f"  ingest: {1000 * ack_sum / acks:.2f} ms from a frame's send to its ack, "
              f"{rate * elapsed / acks:.1f} requests per frame")
    if commits:
        print(f"  writer: {1000 * commit_sum / commits:.2f} ms from a group's first frame to durable, of which "
              f"{1000 * sync_sum / commits:.2f} ms its write and fsync; {acks / commits:.1f} frames per group")


if __name__ == "__main__":
    main()
