"""A writer's per-frame steps timed warm and with the caches emptied first, the way they were done before and now.

Usage: .venv/bin/python bench/cold_steps.py [--repeats 1000]
Between two single-event commits the writer's CPU runs the encoder and part of wrk, and every frame finds
the writer's code and data out of the caches: its steps cost 10-20 times their hot-loop cost
(bench/cycle_timeline.py). This times each step once right after a call of itself ("warm") and once after
touching 16 MiB and running unrelated Python ("cold"), median of ``--repeats``, the two ways in turn, for
pairs checked to give the same result:
- counting a frame's lines: numpy's ``count_nonzero`` against ``bytes.count`` (``spool_format.line_count``
  takes the second up to ``BYTE_COUNT_LIMIT``), at 4, 16 and 64 KiB;
- a frame kind from its byte: the enum's call against a dict (``wire.KINDS``);
- an ACK: ``wire.encode_json`` against ``wire.ack``'s direct format;
- a payload buffer: numpy's ``empty`` against a ``bytearray`` (``frame_receiver.SMALL_PAYLOAD_BYTES``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import numpy as np  # noqa: E402

from shared import wire  # noqa: E402

LINE = b'{"id":"6f1c","type":"login","actor":"' + b"a" * 480 + b'"}\n'


class Evictor:
    """Work that pushes a step's code and data out of the caches, as other processes do between commits."""

    def __init__(self) -> None:
        self.block = np.ones(16 << 20, dtype=np.uint8)
        self.objects = [{"a": index, "b": str(index)} for index in range(5000)]

    def run(self) -> int:
        total = int(self.block.sum())
        for item in self.objects:
            total += item["a"]
        return total


def timed(before: Callable[[], object], now: Callable[[], object], evictor: Evictor,
          repeats: int) -> tuple[float, float, float, float]:
    """Median µs of ``before`` and ``now``, each warm (right after itself) and cold (right after the
    evictor), the two taken in turn so that the machine's drift touches both alike."""
    times: dict[tuple[int, bool], list[int]] = {(way, cold): [] for way in (0, 1) for cold in (False, True)}
    for _ in range(repeats):
        for way, step in enumerate((before, now)):
            step()
            started = time.perf_counter_ns()
            step()
            times[way, False].append(time.perf_counter_ns() - started)
            evictor.run()
            started = time.perf_counter_ns()
            step()
            times[way, True].append(time.perf_counter_ns() - started)
    medians = {key: sorted(values)[repeats // 2] / 1000 for key, values in times.items()}
    return medians[0, False], medians[0, True], medians[1, False], medians[1, True]


def pairs() -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """(what, before, now), each pair checked to give the same result."""
    found = []
    for kib in (4, 16, 64):
        view = memoryview(np.frombuffer(LINE * (kib * 1024 // len(LINE)), dtype=np.uint8).copy())
        found.append((f"line count, {kib} KiB", lambda view=view: int(np.count_nonzero(np.frombuffer(view, np.uint8) == 10)),
                      lambda view=view: bytes(view).count(b"\n")))
    header = wire.ack(7, 8)[:wire.HEADER_SIZE]
    found.append(("frame kind", lambda: wire.Kind(header[3]), lambda: wire.KINDS.get(header[3])))
    found.append(("ACK", lambda: wire.encode_json(wire.Kind.ACK, {"events": 8}, 7), lambda: wire.ack(7, 8)))
    found.append(("payload buffer, 4 KiB", lambda: len(memoryview(np.empty(4096, dtype=np.uint8))),
                  lambda: len(memoryview(bytearray(4096)))))
    for what, before, now in found:
        if before() != now():
            raise SystemExit(f"{what}: the two ways differ")
    return found


def main() -> None:
    """Time every pair and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1000)
    args = parser.parse_args()
    evictor = Evictor()
    print(f"{'step':24} {'before warm':>12} {'before cold':>12} {'now warm':>10} {'now cold':>10}  µs, medians")
    for what, before, now in pairs():
        before_warm, before_cold, now_warm, now_cold = timed(before, now, evictor, args.repeats)
        print(f"{what:24} {before_warm:12.2f} {before_cold:12.2f} {now_warm:10.2f} {now_cold:10.2f}")


if __name__ == "__main__":
    main()
