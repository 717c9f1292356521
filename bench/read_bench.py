"""Read benchmark: 1,000,000 events over the last 24 h, query latencies through HTTP, ingest under query load.

Usage: .venv/bin/python bench/read_bench.py [--backend local|s3] [--events 1000000] [--runs 5]
                                            [--keep DIR | --reuse DIR] [--ingest-seconds 0]
Starts the two processes (and a moto server for s3) on loopback, loads the events (about 500 bytes each,
in time order as a day of production would arrive), waits until the writer has published them, then
measures the median of ``--runs`` runs of each query, and ingest throughput and p99 alone and while 4 clients run the queries in a loop. Prints JSON.
``--keep DIR`` loads into DIR and leaves it there (for s3 with a copy of the bucket's objects);
``--reuse DIR`` skips the load and queries what an earlier ``--keep DIR`` left. ``--ingest-seconds 0``
skips the ingest measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.service import Service  # noqa: E402

TYPES = ["auth"] * 3 + ["cas_grant"] * 4 + ["cas_decision"] * 2 + ["credential_action", "agent_delegation"]
COMPONENTS = ["web-bff", "slack-bot", "webex-bot", "authz-bridge", "agent-runtime"]


def make_event(moment: datetime, index: int) -> dict:
    """A realistic event of about 500 bytes."""
    user = index % 5000
    return {
        "audit_event_id": str(uuid.uuid4()),
        "ts": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "type": TYPES[index % len(TYPES)],
        "tenant_id": f"tenant-{index % 20:02d}",
        "component": COMPONENTS[index % len(COMPONENTS)],
        "action": random.choice(["read", "write", "grant", "revoke", "invoke"]),
        "outcome": "allow" if index % 7 else "deny",
        "correlation_id": uuid.uuid4().hex,
        "subject_hash": uuid.uuid4().hex[:32],
        "actor_ref": f"user:{user}",
        "resource_ref": f"repo:org/project-{index % 300}",
        "user_email": f"user{user}@example{user % 7}.com",
        "agent_name": f"agent-{index % 12}",
        "tool_name": f"tool-{index % 40}",
        "source": "bench",
        "details": {"ip": f"10.{index % 250}.{index % 200}.{index % 100}", "ua": "Mozilla/5.0 (bench)",
                    "scopes": ["repo:read", "org:member"], "latency_ms": index % 900},
    }


async def load(url: str, total: int, until: datetime, concurrency: int = 8, batch: int = 1000) -> tuple[float, str]:
    """Post ``total`` events spread over the 24 h before ``until``; return (seconds, a needle correlation_id)."""
    step = timedelta(hours=24) / total
    start = until - timedelta(hours=24)
    needle = ""
    queue: asyncio.Queue = asyncio.Queue(maxsize=concurrency * 2)

    async def sender(session: aiohttp.ClientSession) -> None:
        while True:
            body = await queue.get()
            if body is None:
                return
            for _ in range(100):
                async with session.post(f"{url}/v1/audit/events", data=body,
                                        headers={"Content-Type": "application/json"}) as response:
                    if response.status == 202:
                        break
                    await asyncio.sleep(0.05)

    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        workers = [asyncio.create_task(sender(session)) for _ in range(concurrency)]
        for offset in range(0, total, batch):
            events = [make_event(start + step * (offset + i), offset + i) for i in range(min(batch, total - offset))]
            if offset == total // 2:
                needle = events[0]["correlation_id"]
            await queue.put(json.dumps({"events": events}).encode())
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    return time.monotonic() - started, needle


async def time_query(session: aiohttp.ClientSession, url: str) -> tuple[float, dict]:
    """One query's wall time and body."""
    started = time.perf_counter()
    async with session.get(url) as response:
        body = await response.json()
        assert response.status == 200, body
    return time.perf_counter() - started, body


async def ingest_rate(url: str, seconds: float, connections: int = 8, batch: int = 100) -> dict:
    """Accepted events/s and p99 latency of 100-event posts over ``seconds``."""
    payloads = [json.dumps({"events": [make_event(datetime.now(timezone.utc), i) for i in range(batch)]}).encode()
                for _ in range(20)]
    latencies: list[float] = []
    accepted = 0
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession, index: int) -> None:
        nonlocal accepted
        while time.monotonic() < deadline:
            body = payloads[index % len(payloads)].replace(b'"audit_event_id": "', b'"audit_event_id": "x' +
                                                            uuid.uuid4().hex[:6].encode(), batch)
            started = time.perf_counter()
            async with session.post(f"{url}/v1/audit/events", data=body,
                                    headers={"Content-Type": "application/json"}) as response:
                await response.read()
                if response.status == 202:
                    accepted += batch
                    latencies.append(time.perf_counter() - started)
            index += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        await asyncio.gather(*(worker(session, i) for i in range(connections)))
    latencies.sort()
    return {"events_per_second": round(accepted / seconds), "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2)}


async def query_loop(url: str, queries: list[str], stop: asyncio.Event) -> int:
    """Run the queries in a loop until stopped; return how many ran."""
    count = 0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            for query in queries:
                async with session.get(f"{url}{query}") as response:
                    await response.read()
                count += 1
    return count


SETTLED_BACKLOG = 100  # spooled events left (the service's own events keep arriving)


def wait_settled(service: Service, timeout: float = 300.0) -> None:
    """Wait until the writer has published what was loaded, so queries read the store, not the spool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.writer_status().get("spool_backlog_events", 0) <= SETTLED_BACKLOG:
            time.sleep(1)
            return
        time.sleep(0.5)
    raise TimeoutError("the writer did not publish the load in time")


LOADED_FILE = "read-bench.json"
BUCKET_COPY = "bucket"


def save_bucket(client, bucket: str, target: Path) -> None:
    """Copy every object of the bucket into ``target`` (key as relative path)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            path = target / item["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())


def restore_bucket(client, bucket: str, source: Path) -> None:
    """Put the objects saved by ``save_bucket`` back into a fresh bucket."""
    for path in sorted(source.rglob("*")):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=path.relative_to(source).as_posix(), Body=path.read_bytes())


def bench_root(args: argparse.Namespace) -> Path:
    """The directory holding store and spool: a fresh temp dir, or the one to keep or reuse."""
    chosen = args.reuse or args.keep
    if chosen is None:
        return Path(tempfile.mkdtemp(prefix="auditlake-readbench-"))
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


async def run(args: argparse.Namespace) -> dict:
    """Start, load (unless reusing), measure."""
    root = bench_root(args)
    loaded = json.loads((root / LOADED_FILE).read_text()) if args.reuse else None
    if loaded is not None and loaded["backend"] != args.backend:
        raise SystemExit(f"{root} holds a {loaded['backend']} load, not {args.backend}")
    client = None
    env = {"AUDIT_SERVICE_QUEUE_MAX_SIZE": "200000", "AUDIT_SERVICE_READ_CONCURRENCY": "8"}
    moto = None
    if args.backend == "s3":
        from moto_process import start_moto

        from tests.s3.conftest import CREDENTIALS

        moto, endpoint, client = start_moto("bench")
        if loaded is not None:
            restore_bucket(client, "bench", root / BUCKET_COPY)
        env.update(CREDENTIALS, AUDIT_SERVICE_BACKEND="s3", AUDIT_SERVICE_S3_BUCKET="bench",
                   AUDIT_SERVICE_S3_ENDPOINT_URL=endpoint, AUDIT_SERVICE_S3_UPLOAD_INTERVAL_SECONDS="5")
    service = Service(root, **env)
    service.start_all()
    try:
        if loaded is None:
            until = datetime.now(timezone.utc)
            load_seconds, needle = await load(service.url, args.events, until)
            await asyncio.to_thread(wait_settled, service)
            if args.keep is not None:
                if client is not None:
                    save_bucket(client, "bench", root / BUCKET_COPY)
                (root / LOADED_FILE).write_text(json.dumps({
                    "backend": args.backend, "events": args.events, "until": until.isoformat(),
                    "needle": needle, "load_seconds": load_seconds}))
        else:
            until = datetime.fromisoformat(loaded["until"])
            load_seconds, needle = loaded["load_seconds"], loaded["needle"]
        day = f"since={quote((until - timedelta(hours=24, minutes=1)).isoformat())}&until={quote(until.isoformat())}"
        queries = {
            "newest_100": f"/v1/audit/events?{day}&limit=100",
            "type_auth_100": f"/v1/audit/events?{day}&limit=100&type=auth",
            "user_email_100": f"/v1/audit/events?{day}&limit=100&user_email=user4242@",
            "correlation_needle": f"/v1/audit/events?{day}&limit=100&correlation_id={needle}",
            "window_1h_1000": f"/v1/audit/events?until={quote(until.isoformat())}&window=1h&limit=1000",
        }
        results = {}
        async with aiohttp.ClientSession() as session:
            for name, query in queries.items():
                timings, total = [], None
                for _ in range(args.runs + 1):
                    elapsed, body = await time_query(session, f"{service.url}{query}")
                    timings.append(elapsed)
                    total = body["total"]
                results[name] = {"median_ms": round(statistics.median(timings[1:]) * 1000, 1),
                                 "cold_ms": round(timings[0] * 1000, 1), "total": total}
        report = {"backend": args.backend, "events": loaded["events"] if loaded else args.events,
                  "load_seconds": round(load_seconds, 1), "queries": results}
        if args.ingest_seconds <= 0:
            return report
        pids = {name: proc.pid for name, proc in service.procs.items()}
        pids["reads"] = service.get("/v1/audit/status")[1]["read_process"]["pid"]  # ingest's read process
        if moto is not None:
            pids["moto"] = moto.pid
        idle_start = cpu_seconds(pids)
        idle = await ingest_rate(service.url, args.ingest_seconds)
        idle_cpu = cpu_share(idle_start, cpu_seconds(pids), args.ingest_seconds)
        stop = asyncio.Event()
        loops = [asyncio.create_task(query_loop(service.url, list(queries.values()), stop)) for _ in range(4)]
        busy_start = cpu_seconds(pids)
        busy = await ingest_rate(service.url, args.ingest_seconds)
        busy_cpu = cpu_share(busy_start, cpu_seconds(pids), args.ingest_seconds)
        stop.set()
        ran = sum(await asyncio.gather(*loops))
        return {**report, "ingest_idle": idle, "ingest_during_queries": busy,
                "cpu_share_idle": idle_cpu, "cpu_share_during_queries": busy_cpu,
                "queries_during_ingest": ran,
                "throughput_kept": round(busy["events_per_second"] / max(1, idle["events_per_second"]), 2),
                "p99_ratio": round(busy["p99_ms"] / max(0.001, idle["p99_ms"]), 2)}
    finally:
        service.stop()
        if moto is not None:
            from moto_process import stop_moto

            stop_moto(moto)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) each process has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    return {name: sum(map(int, Path(f"/proc/{pid}/stat").read_text().split()[13:15])) / ticks
            for name, pid in pids.items()}


def cpu_share(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores each process used on average between two readings."""
    return {name: round((after[name] - before[name]) / seconds, 2) for name in before}


def main() -> None:
    """Parse arguments and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["local", "s3"], default="local")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ingest-seconds", type=float, default=10.0, help="0 skips the ingest measurements")
    reuse = parser.add_mutually_exclusive_group()
    reuse.add_argument("--keep", type=Path, metavar="DIR", help="load into DIR and keep it for --reuse")
    reuse.add_argument("--reuse", type=Path, metavar="DIR", help="query what --keep DIR loaded, without loading")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
