"""CPU of moving a flush's data between the writer and its encoder process: multiprocessing's Connection
against ``writer.encoder_channel``, in one run.

Usage: .venv/bin/python bench/encoder_transfer.py [--requests 280] [--rounds 40]
Each round trip sends what a flush of ``--requests`` 100-event requests sends the encoder (every request's
typed fields, distinct bytes of the size ``shared.typed_columns.encode`` gives a bench body) and gets back
what the encoder answers (a Parquet sidecar and a gzip file of the sizes ``bench/flush_bench.py`` reports
per event, and the ids' uint64 hashes). A child process plays the encoder. Prints the CPU time per round
trip of each side (user + system), and the ratio new / old, alternating the two a round at a time.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
from multiprocessing.connection import Connection
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import numpy as np  # noqa: E402

from shared import native_memory  # noqa: E402
from writer.encoder_channel import EncoderChannel, out_of_band  # noqa: E402

COLUMNS_BYTES = 24_494  # typed_columns.encode of one 100-event bench body (ingest_bench.make_event)
PARQUET_BYTES_PER_EVENT = 120  # bench/flush_bench.py: stored bytes per event
GZIP_BYTES_PER_EVENT = 72


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def answer(events: int, new: bool) -> tuple:
    parquet, gzipped = os.urandom(PARQUET_BYTES_PER_EVENT * events), os.urandom(GZIP_BYTES_PER_EVENT * events)
    hashes = np.frombuffer(os.urandom(8 * events), dtype=np.uint64)
    if new:
        parquet, gzipped = out_of_band(parquet), out_of_band(gzipped)
    return "ok", {"files": [("day", gzipped, parquet)], "id_hashes": hashes}, (0, 0.0)


def child(old_fd: int, new_fd: int, events: int) -> None:
    """The encoder's side: answer every request on either link until both close."""
    old, new = Connection(old_fd), EncoderChannel(socket.socket(fileno=new_fd))
    answers = {False: answer(events, False), True: answer(events, True)}
    spent = {False: 0.0, True: 0.0}
    while True:
        try:
            kind = old.recv()
        except EOFError:
            break
        is_new = kind == "new"
        started = cpu_seconds()
        if is_new:
            method, (entries, columns) = new.recv()
            new.send(answers[True])
        else:
            method, (entries, columns) = old.recv()
            old.send(answers[False])
        spent[is_new] += cpu_seconds() - started
    os.write(1, f"{spent[False]} {spent[True]}\n".encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=280)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    native_memory.limit_arenas()  # both processes' C heaps as the writer and its encoder set them up
    native_memory.reuse_big_blocks()
    events = 100 * args.requests
    old_ours, old_theirs = socket.socketpair()
    new_ours, new_theirs = socket.socketpair()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        old_ours.close()
        new_ours.close()
        os.close(read_end)
        os.dup2(write_end, 1)
        child(old_theirs.detach(), new_theirs.detach(), events)
        os._exit(0)
    old_theirs.close()
    new_theirs.close()
    os.close(write_end)
    old, new = Connection(old_ours.detach()), EncoderChannel(new_ours)
    columns = [os.urandom(COLUMNS_BYTES) for _ in range(args.requests)]
    entries = [(seq, seq, "seg", 0, 0, 100) for seq in range(args.requests)]
    spent = {False: 0.0, True: 0.0}
    for round_number in range(2 * args.rounds):
        is_new = round_number % 2 == 1
        old.send("new" if is_new else "old")
        started = cpu_seconds()
        if is_new:
            new.send(("prepare", (entries, [out_of_band(piece) for piece in columns])))
            result = new.recv()
        else:
            old.send(("prepare", (entries, columns)))
            result = old.recv()
        spent[is_new] += cpu_seconds() - started
        assert result[0] == "ok" and len(result[1]["id_hashes"]) == events
    old.close()
    new.close()
    child_old, child_new = map(float, os.read(read_end, 200).split())
    os.waitpid(pid, 0)
    print(f"{args.requests} requests ({events} events) a round trip, {args.rounds} rounds each, alternated")
    for name, writer, encoder in (("multiprocessing Connection", spent[False], child_old),
                                  ("encoder_channel", spent[True], child_new)):
        print(f"{name:28s} writer {1e3 * writer / args.rounds:6.2f} ms, encoder {1e3 * encoder / args.rounds:6.2f} ms "
              f"CPU a round trip ({1e6 * (writer + encoder) / args.rounds / events:.3f} µs an event)")
    print(f"new / old: {(spent[True] + child_new) / (spent[False] + child_old):.2f}")


if __name__ == "__main__":
    main()
