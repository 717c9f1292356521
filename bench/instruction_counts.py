"""Instructions each process spends on the posted events, counted by valgrind's callgrind (repeatable where timings are not).

Usage: .venv/bin/python bench/instruction_counts.py [--process ingest|writer] [--events-per-body 100] [--requests 300]
       [--keep-profile FILE]
Needs valgrind (Debian package ``valgrind``). Starts the two processes with default settings (verbosity
``verbose``), the one named by ``--process`` under callgrind with instrumentation off, sends a warm-up, then
switches instrumentation on (``callgrind_control``) for ``--requests`` posts from 16 concurrent clients
(fresh ids in every body). For the writer it stays on until the spool backlog is flushed, so a flush's
work is counted with the events it stores. Prints instructions per request (ingest) or per event
(writer). Other work on the machine does not change the count; the process runs about 50 times slower
under callgrind, so batching (requests per frame, events per flush) is not what it is at full speed.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from ingest_bench import write_template  # noqa: E402
from tests.service import REPO, Service  # noqa: E402

CONNECTIONS = 16


async def post_all(url: str, template: bytes, requests: int) -> None:
    """``requests`` posts of ``template`` (a fresh id in place of each ``@ID@``) from 16 concurrent clients."""
    parts = template.split(b"@ID@")
    left = [requests]

    async def client(session: aiohttp.ClientSession) -> None:
        while left[0] > 0:
            left[0] -= 1
            ids = [str(uuid.uuid4()).encode() for _ in parts[1:]]
            body = b"".join(part + ident for part, ident in zip(parts, [*ids, b""]))
            async with session.post(f"{url}/v1/audit/events", data=body,
                                    headers={"Content-Type": "application/json"}) as response:
                if response.status != 202:
                    raise RuntimeError(f"{response.status}: {await response.text()}")

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(CONNECTIONS)))


def instrumentation(pid: int, on: bool) -> None:
    """Switch callgrind's instrumentation of ``pid`` on or off."""
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(pid)], check=True, capture_output=True)


def counted(pid: int, out: Path) -> int:
    """Dump ``pid``'s counts and return the instructions counted so far."""
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    time.sleep(1)
    total = 0
    for path in glob.glob(f"{out}*"):
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.startswith(("totals:", "summary:")):
                total = max(total, int(line.split()[1]))
    return total


def wait_flushed(service: Service, timeout: float) -> None:
    """Until the writer's spool holds no event waiting for a flush."""
    deadline = time.monotonic() + timeout
    while service.writer_status().get("spool_backlog_events") and time.monotonic() < deadline:
        time.sleep(0.5)


def measure(args: argparse.Namespace) -> dict:
    """Run the load with one process under callgrind; the instruction counts."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="auditlake-instructions-"))
    (work / "service").mkdir()
    template = work / "body.json"
    write_template(template, args.events_per_body)
    service = Service(work / "service", AUDIT_SERVICE_ACK_TIMEOUT_SECONDS="120")
    out = work / "callgrind.out"
    other = "writer" if args.process == "ingest" else "ingest"
    try:
        service.start(other)  # ingest reconnects until the writer answers, so the order does not matter
        service.procs[args.process] = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable,
             "-m", args.process], cwd=REPO, env=service.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        service.wait_ready(timeout=600)
        body = template.read_bytes()
        asyncio.run(post_all(service.url, body, max(args.requests // 5, 20)))
        wait_flushed(service, 600)
        pid = service.procs[args.process].pid
        instrumentation(pid, True)
        started = time.monotonic()
        asyncio.run(post_all(service.url, body, args.requests))
        if args.process == "writer":
            wait_flushed(service, 600)
        instrumentation(pid, False)
        total = counted(pid, out)
        report = {"process": args.process, "events_per_body": args.events_per_body, "requests": args.requests,
                  "instructions": total, "seconds": round(time.monotonic() - started, 1)}
        report["per_request"] = total // args.requests
        report["per_event"] = total // (args.requests * args.events_per_body)
        if args.keep_profile:
            files = sorted(glob.glob(f"{out}*"), key=lambda path: Path(path).stat().st_size)
            shutil.copy(files[-1], args.keep_profile)  # for callgrind_annotate: where the instructions went
        return report
    finally:
        service.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    """Parse the arguments, measure, print the report as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--process", choices=("ingest", "writer"), default="ingest")
    parser.add_argument("--events-per-body", type=int, default=100)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--keep-profile", type=Path, help="copy callgrind's output here (callgrind_annotate reads it)")
    args = parser.parse_args()
    print(json.dumps(measure(args)))


if __name__ == "__main__":
    main()
