"""Ingest benchmark: wrk against the two processes (and against the aiohttp floor), durable acknowledgements.

Usage: .venv/bin/python bench/ingest_bench.py [--backend local|s3] [--seconds 20] [--overload-seconds 60]
Runs wrk (Debian package ``wrk``) with 16 connections on loopback: 100-event bodies (about 50 KB) and
single-event bodies, first against ``bench/floor_server.py`` (reads the body, answers 202), then against
the service with default settings (verbosity ``verbose`` so every event is stored). Then two paced runs
at half the measured maximum for p99: every connection pausing the same time after each answer (they stay
in step, so 16 bodies arrive together), and pauses drawn at random with the same mean (independent
producers, ``_spread``); each pause is calibrated on a 3 s run to give half the maximum's rate, and each
run reports the share of the maximum it reached (``share_of_max``). Last an overload run (``--overload-connections``, 256 by default, no pause)
sampling both processes' resident memory; wrk is a closed loop, so the offered rate grows with the
connections (256 offer 6-7 times the maximum on the reference machine; ``offered_times_max`` says how
many). The maximum run also reports each process's CPU time per accepted event (``cpu_us_per_event``; the
kernel's part and the minor page faults per event beside it) and the events the writer stored meanwhile
(``flushed_events_per_second``; when its flushes lag, ``writer_backlog_events_after`` grows, and the next run
waits until the writer has stored it: ``backlog_drain_seconds``). The
single-event maximum reports each process's CPU per request, and the floor's runs its server's
(``cpu_us_per_request``: what aiohttp alone costs a request). Every wrk run (the floor's too) reports the
share of the machine's CPU time that was idle and that the hypervisor took (``machine_idle_percent``,
``machine_steal_percent``): compare runs with like steal.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from moto_process import stop_moto  # noqa: E402
from read_bench import make_event  # noqa: E402
from tests.service import Service, free_port, http  # noqa: E402

LUA = BENCH / "ingest_wrk.lua"


def write_template(path: Path, count: int) -> int:
    """A body of ``count`` realistic events with ``@ID@`` where wrk puts a unique id; return its size."""
    now = datetime.now(timezone.utc)
    events = [make_event(now - timedelta(seconds=index), index) for index in range(count)]
    for event in events:
        event["audit_event_id"] = "@ID@"
    body = orjson.dumps({"events": events})
    path.write_bytes(body)
    return len(body)


def wrk(url: str, template: Path, seconds: float, connections: int, delay_ms: float = 0, spread: bool = False,
        requests_per_second: float = 0) -> dict:
    """One wrk run; the JSON summary written by the Lua script's ``done``. With ``spread`` the pauses are
    exponential with mean ``delay_ms`` (independent producers), else every connection pauses ``delay_ms``.
    With ``requests_per_second`` requests follow a fixed schedule at that rate instead (no pause): a late
    answer delays no later request, so the rate offered holds while the connections can carry it."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        out_path = Path(out.name)
    threads = min(2, connections)
    env = {**os.environ, "BENCH_TEMPLATE": str(template), "BENCH_DELAY_MS": str(delay_ms),
           "BENCH_OUT": str(out_path), "BENCH_SPREAD": "1" if spread else "0",
           "BENCH_RATE": str(requests_per_second / threads)}
    ticks_before = machine_ticks()
    subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s", "--timeout", "10s",
                    "-s", str(LUA), f"{url}/v1/audit/events"], env=env, check=True, capture_output=True)
    ticks = [after - before for after, before in zip(machine_ticks(), ticks_before)]
    result = json.loads(out_path.read_text())
    out_path.unlink()
    # The share of the machine's CPU time that was idle (or waiting for I/O) and that the hypervisor took
    # (steal) during the run: a run in a phase of heavy steal is not comparable with one without.
    result["machine_idle_percent"] = round(100 * ticks[1] / max(ticks[0], 1), 1)
    result["machine_steal_percent"] = round(100 * ticks[2] / max(ticks[0], 1), 1)
    seconds_run = result["duration_us"] / 1e6
    result["requests_per_second"] = round(result["requests"] / seconds_run, 1)
    result["accepted_per_second"] = round(result["statuses"].get("202", 0) / seconds_run, 1)
    result["p99_ms"] = round(result["p99_us"] / 1000, 2)
    result["p50_ms"] = round(result["p50_us"] / 1000, 2)
    return result


def machine_ticks() -> tuple[int, int, int]:
    """All CPU ticks since boot, the idle and I/O-wait ticks, and the steal ticks (``/proc/stat``)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return sum(fields), fields[3] + fields[4], fields[7]


def service_under_wrk(prefix: str, events_per_body: int, connections: int, seconds: float, backend: str = "local"
                      ) -> tuple[Path, Service, subprocess.Popen[bytes], subprocess.Popen[bytes] | None]:
    """A temporary directory, a started service (``start_service``: verbosity ``verbose``, on ``backend``) in
    it, wrk posting bodies of ``events_per_body`` events to it for ``seconds`` (its summary goes to
    ``<directory>/wrk.json``), and the moto server process on ``s3`` (else None; ``stop_moto`` it after)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    template = work / "body.json"
    write_template(template, events_per_body)
    service, moto = start_service(backend, work / "service")
    env = {**os.environ, "BENCH_TEMPLATE": str(template), "BENCH_OUT": str(work / "wrk.json")}
    try:
        load = subprocess.Popen(["wrk", "-t", "2", "-c", str(connections), "-d", f"{int(seconds)}s", "-s", str(LUA),
                                 f"{service.url}/v1/audit/events"], env=env, stdout=subprocess.DEVNULL)
    except OSError:
        service.stop()
        stop_moto(moto)
        raise
    return work, service, load, moto


def drain_backlog(service: Service, timeout: float = 120.0) -> float:
    """Wait (at most ``timeout``) until the writer's spool holds no unflushed event; the seconds it took."""
    started = time.monotonic()
    while service.writer_status()["spool_backlog_events"] and time.monotonic() - started < timeout:
        time.sleep(0.2)
    return round(time.monotonic() - started, 1)


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def process_counters(pid: int) -> tuple[float, float, int]:
    """A process's CPU seconds (user + system), its system (kernel) seconds and its minor page faults."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, int(fields[12]) / tick, int(fields[7])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used."""
    return process_counters(pid)[0]


def floor(templates: dict[str, Path], seconds: float) -> dict:
    """Throughput of the do-nothing aiohttp server for both body sizes."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(BENCH / "floor_server.py"), str(port)])
    try:
        for _ in range(100):
            try:
                http("GET", f"http://127.0.0.1:{port}/", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        results = {}
        for name, path in templates.items():
            before = cpu_seconds(proc.pid)
            results[name] = wrk(f"http://127.0.0.1:{port}", path, seconds, 16)
            # What aiohttp alone costs a request: ingest runs on one event loop, so 1 / this is its ceiling.
            results[name]["cpu_us_per_request"] = round((cpu_seconds(proc.pid) - before)
                                                        / max(results[name]["requests"], 1) * 1e6, 1)
        return results
    finally:
        proc.terminate()
        proc.wait()


def start_service(backend: str, root: Path) -> tuple[Service, subprocess.Popen[bytes] | None]:
    """The two processes with default settings on ``backend`` (``local`` or ``s3``: then with a moto server
    process, returned beside the service; else None)."""
    env = {"AUDIT_LOG_VERBOSITY": "verbose", "AUDIT_SERVICE_DRAIN_SECONDS": "20"}
    moto = None
    if backend == "s3":
        from moto_process import start_moto

        from tests.s3.conftest import CREDENTIALS

        moto, endpoint, _ = start_moto("bench")
        env.update(CREDENTIALS, AUDIT_SERVICE_BACKEND="s3", AUDIT_SERVICE_S3_BUCKET="bench",
                   AUDIT_SERVICE_S3_ENDPOINT_URL=endpoint)
    root.mkdir(parents=True, exist_ok=True)
    service = Service(root, **env)
    service.start_all()
    return service, moto


def run(args: argparse.Namespace) -> dict:
    """Floor, maximum, paced and overload runs; the report."""
    work = Path(tempfile.mkdtemp(prefix="auditlake-ingestbench-"))
    templates = {"batch_100": work / "batch100.json", "single": work / "single.json"}
    sizes = {"batch_100": write_template(templates["batch_100"], 100), "single": write_template(templates["single"], 1)}
    report: dict = {"backend": args.backend, "body_bytes": sizes, "connections": 16, "seconds": args.seconds}
    if not args.skip_floor:
        report["floor"] = floor(templates, args.seconds)
    service, moto = start_service(args.backend, work / "service")
    try:
        wrk(service.url, templates["batch_100"], 3, 16)  # warm up
        before = service.writer_status()
        pids = service.process_pids()  # ingest, writer and the writer's encoder child
        counters_before = {name: process_counters(pid) for name, pid in pids.items()}
        top = wrk(service.url, templates["batch_100"], args.seconds, 16)
        top["events_per_second"] = round(top["accepted_per_second"] * 100)
        accepted = max(top["statuses"].get("202", 0) * 100, 1)
        counters_after = {name: process_counters(pid) for name, pid in pids.items()}
        # CPU per event, the kernel's share of it, and the page faults behind much of that (~3 us each here).
        deltas = {name: [end - start for end, start in zip(counters_after[name], counters_before[name])]
                     for name in counters_after}
        top["cpu_us_per_event"] = {name: round(delta[0] / accepted * 1e6, 1) for name, delta in deltas.items()}
        top["kernel_us_per_event"] = {name: round(delta[1] / accepted * 1e6, 1) for name, delta in deltas.items()}
        top["minor_faults_per_event"] = {name: round(delta[2] / accepted, 3) for name, delta in deltas.items()}
        after = service.writer_status()
        top["writer_frames"] = after["received_batches"] - before["received_batches"]
        top["writer_flushes"] = after["flushes"] - before["flushes"]
        top["writer_backlog_events_after"] = after["spool_backlog_events"]
        # What the writer stored meanwhile: below the accepted rate when its flushes fall behind (a rate the
        # spool absorbs for a while, not one it sustains).
        top["flushed_events_per_second"] = round((after["flushed_events"] - before["flushed_events"])
                                                 / (top["duration_us"] / 1e6))
        # The writer stores what the spool holds before the next run, so that the single-event run measures
        # single events rather than the maximum run's backlog being flushed beside them.
        top["backlog_drain_seconds"] = drain_backlog(service)
        report["max_batch_100"] = top
        pids = service.process_pids()
        single_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        single = wrk(service.url, templates["single"], args.seconds, 16)
        single["cpu_us_per_request"] = {name: round((cpu_seconds(pid) - single_before[name])
                                                    / max(single["requests"], 1) * 1e6, 1)
                                        for name, pid in pids.items()}
        report["max_single"] = single
        half_rate = top["accepted_per_second"] / 2
        # The pause that gives half the rate in this closed loop: 16 connections each wait their answer, then
        # the pause. A first guess from the maximum's p50 overshoots (answers come sooner at half the load:
        # it ran at ~70 % of the maximum), so a 3 s run at that guess calibrates it, as for the spread run.
        guess_ms = max(1, round(16 * 1000 / half_rate - top["p50_ms"]))
        probe = wrk(service.url, templates["batch_100"], 3, 16, guess_ms)
        delay_ms = max(1, round(16 * 1000 / half_rate - probe["p50_ms"]))
        flushes_before = service.writer_status()["flushes"]
        paced = wrk(service.url, templates["batch_100"], args.seconds, 16, delay_ms)
        paced["events_per_second"] = round(paced["accepted_per_second"] * 100)
        paced["delay_ms"] = delay_ms
        paced["share_of_max"] = round(paced["accepted_per_second"] / max(top["accepted_per_second"], 1), 3)
        paced["writer_flushes"] = service.writer_status()["flushes"] - flushes_before
        report["half_max_batch_100"] = paced
        # Shorter waits cycle faster in this closed loop: calibrate the mean pause on a 3 s run to the same rate.
        probe = wrk(service.url, templates["batch_100"], 3, 16, delay_ms, spread=True)
        spread_delay_ms = max(1, round(16 * 1000 / half_rate - probe["p50_ms"]))
        spread = wrk(service.url, templates["batch_100"], args.seconds, 16, spread_delay_ms, spread=True)
        spread["events_per_second"] = round(spread["accepted_per_second"] * 100)
        spread["mean_delay_ms"] = spread_delay_ms
        spread["share_of_max"] = round(spread["accepted_per_second"] / max(top["accepted_per_second"], 1), 3)
        report["half_max_batch_100_spread"] = spread
        if not args.skip_floor:
            report["share_of_floor_batch_100"] = round(top["requests_per_second"] / report["floor"]["batch_100"]["requests_per_second"], 3)
            report["share_of_floor_single"] = round(report["max_single"]["requests_per_second"] / report["floor"]["single"]["requests_per_second"], 3)
        if args.overload_seconds:
            report["overload"] = overload(service, templates["batch_100"], args.overload_seconds,
                                          args.overload_connections)
            report["overload"]["offered_times_max"] = round(
                report["overload"]["offered_requests_per_second"] / top["requests_per_second"], 1)
    finally:
        service.stop()
        stop_moto(moto)
        shutil.rmtree(work, ignore_errors=True)
    return report


def overload(service: Service, template: Path, seconds: float, connections: int) -> dict:
    """``connections`` with no pause for ``seconds``; resident memory of each process every second."""
    pids = service.process_pids()
    env = {**os.environ}
    samples: dict[str, list[float]] = {name: [] for name in pids}
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        out_path = Path(out.name)
    env.update(BENCH_TEMPLATE=str(template), BENCH_DELAY_MS="0", BENCH_OUT=str(out_path))
    proc = subprocess.Popen(["wrk", "-t", "2", "-c", str(connections), "-d", f"{int(seconds)}s", "--timeout", "10s", "-s", str(LUA),
                             f"{service.url}/v1/audit/events"], env=env, stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        for name, pid in pids.items():
            samples[name].append(rss_mb(pid))
        time.sleep(1)
    result = json.loads(out_path.read_text())
    out_path.unlink()
    seconds_run = result["duration_us"] / 1e6
    return {"offered_requests_per_second": round(result["requests"] / seconds_run, 1),
            "accepted_events_per_second": round(result["statuses"].get("202", 0) * 100 / seconds_run),
            "statuses": result["statuses"],
            "rss_mb": {name: {"after_5s": values[min(5, len(values) - 1)], "max": max(values), "last": values[-1],
                              "every_10s": values[::10]}
                       for name, values in samples.items()}}


def main() -> None:
    """Parse arguments and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("local", "s3"), default="local")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--overload-seconds", type=float, default=60)
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--overload-connections", type=int, default=256)
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
