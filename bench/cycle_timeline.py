"""Where one convoy cycle's time goes, in ingest and in the writer, on one clock: answers, reads, checks, the frame's round trip.

Usage: .venv/bin/python bench/cycle_timeline.py [--events-per-body 1] [--seconds 10] [--skip 4] [--show 1]
Needs wrk. Starts the two processes with default settings and a ``sitecustomize`` that installs
``bench/timeline_marks.py`` in each (nothing in the service's code changes), runs wrk with 16 connections,
and after ``--skip`` seconds notes every step (the clock and the thread's CPU time) until the lists are full.
Prints:
- the frame's round trip, step by step (ingest builds the frame, the writer reads it, queues it, writes it,
  syncs it, answers; ingest reads the reply and settles the requests): median wall time between steps and,
  for steps in one thread, the median CPU time that thread spent between them (wall above CPU is waiting:
  the disk, another thread or process);
- ingest's side between two frames: the answers written, the time until the first check of a new request
  (its bytes read and parsed), the checks, the time until the next frame, as medians;
- ``--show`` cycles of the merged timeline, step by step.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from ingest_bench import service_under_wrk  # noqa: E402

ROUND_TRIP = ("frame", "w_read", "w_batch", "w_queued", "w_write", "w_sync", "w_durable", "w_answer", "w_reply",
              "reply", "settled")
# The repository first: the marks import ingest and the writer before ``-m`` puts the working directory on the
# path, and an editable install elsewhere must not answer for this tree's code.
SITE = "import sys\nsys.path[:0] = [{bench!r}, {repo!r}]\nimport timeline_marks\ntimeline_marks.install()\n"

Step = tuple[int, str, int, int]  # clock ns, step, the thread's CPU ns, the thread's id


def load(directory: Path, prefix: str) -> list[Step]:
    """Every process's steps, merged in time order, within the window all processes covered."""
    files = sorted(directory.glob(f"{prefix}.*"))
    if len(files) < 2:
        raise SystemExit(f"expected the steps of ingest and the writer, found {[path.name for path in files]}")
    steps: list[Step] = []
    windows = []
    for path in files:
        own = [(int(at), step, int(cpu), int(thread))
               for at, step, cpu, thread in (line.split() for line in path.read_text().splitlines())]
        windows.append((own[0][0], own[-1][0]))
        steps += own
    low, high = max(start for start, _ in windows), min(end for _, end in windows)
    return sorted(step for step in steps if low <= step[0] <= high)


def round_trips(steps: list[Step]) -> list[dict[str, Step]]:
    """For each frame, the first of each later step of its round trip, when they came in order."""
    trips: list[dict[str, Step]] = []
    current: dict[str, Step] | None = None
    for step in steps:
        name = step[1]
        if name == ROUND_TRIP[0]:
            current = {name: step}
            trips.append(current)
        elif current is not None and name in ROUND_TRIP and name not in current:
            current[name] = step
    return [trip for trip in trips if all(name in trip for name in ROUND_TRIP)
            and all(trip[a][0] <= trip[b][0] for a, b in zip(ROUND_TRIP, ROUND_TRIP[1:]))]


def print_round_trip(trips: list[dict[str, Step]]) -> None:
    """Median wall time between consecutive steps of a frame's round trip, and the median CPU time of the thread
    over the frames whose two steps ran in one thread (a big group is written and synced by a worker thread)."""
    print(f"a frame's round trip ({len(trips)} frames), median µs: wall / CPU of the thread between the steps")
    if not trips:
        return
    for first, second in zip(ROUND_TRIP, ROUND_TRIP[1:]):
        wall = statistics.median((trip[second][0] - trip[first][0]) / 1000 for trip in trips)
        line = f"  {first:>9} -> {second:<9} {wall:7.1f}"
        one_thread = [(trip[second][2] - trip[first][2]) / 1000 for trip in trips if trip[second][3] == trip[first][3]]
        if one_thread:
            line += f" / {statistics.median(one_thread):6.1f}"
            if len(one_thread) < len(trips):
                line += f" (of {len(one_thread)} in one thread)"
        print(line)
    total = statistics.median((trip["settled"][0] - trip["frame"][0]) / 1000 for trip in trips)
    print(f"  {'frame':>9} -> {'settled':<9} {total:7.1f}")


def between_frames(steps: list[Step]) -> None:
    """Ingest's side from one frame to the next, for the stretches with exactly one ack (the convoy)."""
    ingest = [step for step in steps if not step[1].startswith("w_")]
    frames = [index for index, step in enumerate(ingest) if step[1] == "frame"]
    parts: dict[str, list[float]] = {name: [] for name in ("wait for the ack", "answers", "until the first check",
                                                           "checks", "until the frame", "cycle")}
    counts: dict[str, list[int]] = {"answers": [], "checks": []}
    single = 0
    for start, end in zip(frames, frames[1:]):
        stretch = ingest[start:end + 1]
        names = [step[1] for step in stretch]
        if names.count("settled") != 1 or "answer" not in names or "check" not in names:
            continue
        single += 1
        at = {name: [step[0] for step in stretch if step[1] == name] for name in set(names)}
        settled = at["settled"][0]
        answers = [moment for moment in at["answer"] if moment > settled]
        checks = [moment for moment in at["check"] if answers and moment > answers[-1]]
        queued = [moment for moment in at.get("queued", []) if checks and moment > checks[0]]
        if not answers or not checks or not queued:
            continue
        parts["wait for the ack"].append(settled - stretch[0][0])
        parts["answers"].append(answers[-1] - settled)
        parts["until the first check"].append(checks[0] - answers[-1])
        parts["checks"].append(queued[-1] - checks[0])
        parts["until the frame"].append(stretch[-1][0] - queued[-1])
        parts["cycle"].append(stretch[-1][0] - stretch[0][0])
        counts["answers"].append(len(answers))
        counts["checks"].append(len(checks))
    print(f"ingest from one frame to the next ({single} of {len(frames) - 1} stretches held one ack), median µs:")
    if not parts["cycle"]:
        return
    for name, values in parts.items():
        print(f"  {name:<22} {statistics.median(values) / 1000:7.1f}")
    print(f"  answers {statistics.median(counts['answers']):.0f}, checks {statistics.median(counts['checks']):.0f} "
          "a stretch (median)")


def show(steps: list[Step], cycles: int) -> None:
    """The merged timeline from the middle of the window, ``cycles`` frames long."""
    frames = [index for index, step in enumerate(steps) if step[1] == "frame"]
    if len(frames) < cycles + 2:
        return
    first = frames[len(frames) // 2]
    last = frames[len(frames) // 2 + cycles]
    print("the timeline, µs from the first step (and since the step before):")
    previous = steps[first][0]
    for at, name, _, _ in steps[first:last + 1]:
        print(f"  {(at - steps[first][0]) / 1000:8.1f} (+{(at - previous) / 1000:6.1f})  {name}")
        previous = at


def main() -> None:
    """Run the load with the steps noted, then print where the time went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-body", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--skip", type=float, default=4.0, help="seconds of load before the steps are noted")
    parser.add_argument("--show", type=int, default=1, help="frames of the merged timeline to print")
    args = parser.parse_args()
    site = Path(tempfile.mkdtemp(prefix="auditlake-timeline-"))
    (site / "sitecustomize.py").write_text(SITE.format(bench=str(BENCH), repo=str(BENCH.parent)))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    os.environ["AUDITLAKE_TIMELINE"] = str(site / "steps")
    os.environ["AUDITLAKE_TIMELINE_SKIP"] = str(args.skip)
    work, service, wrk, _ = service_under_wrk("auditlake-cycle-", args.events_per_body, 16, args.seconds + args.skip)
    try:
        wrk.wait()
        time.sleep(0.5)
    finally:
        service.stop()
    try:
        steps = load(site, "steps")
        print_round_trip(round_trips(steps))
        between_frames(steps)
        show(steps, args.show)
    finally:
        shutil.rmtree(site, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
