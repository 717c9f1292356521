"""Round trips of a one-byte message between two processes and between two threads, on one CPU and across CPUs.

Usage: python3 bench/wakeup_latency.py [--trips 3000]
Each request to the service crosses processes and threads several times (wrk to ingest, ingest to the
writer, the writer's loop to its commit thread and back, the ack back to ingest, the response to wrk), and
each crossing wakes a sleeping peer. This measures what one wake costs on the machine: two processes over a
Unix socket pair and two threads over queues, each with both sides pinned to CPU 0, then free to run on any
CPU (on an idle machine the peer usually sleeps on the other CPU). Prints p50 / p90 / p99 in microseconds.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import threading
import time


def percentiles(samples: list[float]) -> str:
    """p50 / p90 / p99 of round trips in seconds, as microseconds."""
    ordered = sorted(samples)
    return " / ".join(f"{1e6 * ordered[int(len(ordered) * share)]:.0f}" for share in (0.5, 0.9, 0.99))


def process_trips(trips: int) -> list[float]:
    """Round trips to a forked child that echoes over a Unix socket pair."""
    here, there = socket.socketpair()
    child = os.fork()
    if child == 0:
        here.close()
        for _ in range(trips):
            there.send(there.recv(1))
        os._exit(0)
    there.close()
    samples = []
    for _ in range(trips):
        started = time.perf_counter()
        here.send(b"x")
        here.recv(1)
        samples.append(time.perf_counter() - started)
    os.waitpid(child, 0)
    here.close()
    return samples


def thread_trips(trips: int) -> list[float]:
    """Round trips to a thread that echoes through two queues (a futex wake each way)."""
    outbound: queue.SimpleQueue[int] = queue.SimpleQueue()
    inbound: queue.SimpleQueue[int] = queue.SimpleQueue()

    def echo() -> None:
        for _ in range(trips):
            inbound.put(outbound.get())

    peer = threading.Thread(target=echo)
    peer.start()
    samples = []
    for _ in range(trips):
        started = time.perf_counter()
        outbound.put(1)
        inbound.get()
        samples.append(time.perf_counter() - started)
    peer.join()
    return samples


def main() -> None:
    """Measure both kinds pinned to CPU 0, then unpinned."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trips", type=int, default=3000)
    args = parser.parse_args()
    allowed = os.sched_getaffinity(0)
    print(f"CPUs {sorted(allowed)}; round trip p50 / p90 / p99 in µs")
    for placement, cpus in (("one CPU", {min(allowed)}), ("any CPU", allowed)):
        os.sched_setaffinity(0, cpus)  # the child and the thread inherit it
        print(f"  {placement:8s} processes: {percentiles(process_trips(args.trips))}")
        print(f"  {placement:8s} threads:   {percentiles(thread_trips(args.trips))}")
    os.sched_setaffinity(0, allowed)


if __name__ == "__main__":
    main()
