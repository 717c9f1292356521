"""Profile both processes under wrk load with py-spy and print where their time goes (self and inclusive).

Usage: .venv/bin/python bench/profile_ingest.py [--events-per-body 100] [--seconds 10] [--top 25] [--connections 16]
       [--backend local|s3]
Needs py-spy (``pip install py-spy``; run as root or with ptrace allowed) and wrk. Starts the two processes
with default settings (verbosity ``verbose``), runs wrk with ``--connections`` (256 is an overload) for ``--seconds`` + 6 s, samples
both processes at 100 Hz for ``--seconds`` in the middle, and prints each process's CPU share and its top
functions by self time and by inclusive time (idle threads excluded by py-spy).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from ingest_bench import cpu_seconds, service_under_wrk  # noqa: E402
from moto_process import stop_moto  # noqa: E402


def summarize(raw: Path, top: int) -> list[str]:
    """Top functions by self and inclusive share from py-spy's raw (collapsed stack) output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"  samples: {total}", "  self:"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("  inclusive:")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return lines


def main() -> None:
    """Run the load, sample, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-body", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--backend", choices=("local", "s3"), default="local")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    work, service, load, moto = service_under_wrk("auditlake-profile-", args.events_per_body, args.connections,
                                                  args.seconds + 6, args.backend)
    try:
        time.sleep(3)
        pids = service.process_pids()  # ingest, writer and the writer's encoder child
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        spies = {name: subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(args.seconds), "-r", "100",
                                         "-f", "raw", "-o", str(work / f"{name}.txt")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for name, pid in pids.items()}
        for spied in spies.values():
            spied.wait()
        for name, pid in pids.items():
            share = (cpu_seconds(pid) - before[name]) / args.seconds
            print(f"{name}: {100 * share:.0f}% of a core")
            print("\n".join(summarize(work / f"{name}.txt", args.top)))
        load.wait()
    finally:
        service.stop()
        stop_moto(moto)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
