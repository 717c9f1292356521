"""Timestamps of a request's and a frame's steps in ingest and the writer, installed from outside the code (bench/cycle_timeline.py).

``install()`` wraps functions of the process it runs in (``python -m ingest`` or ``python -m writer``, as
``sys.orig_argv`` says) so that each step appends (``time.perf_counter_ns()``, step, the thread's CPU
nanoseconds, the thread's id) to a list from ``$AUDITLAKE_TIMELINE_SKIP`` seconds after the start, written to
``$AUDITLAKE_TIMELINE.<pid>`` once ``LIMIT`` steps are held or at exit.
``perf_counter`` is the system-wide monotonic clock, so the files of both processes merge into one
timeline. Nothing in the service's code knows about it.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

LIMIT = 150_000  # about three seconds of single-event requests in ingest


class Marks:
    """The steps one process has passed, kept in memory until written."""

    def __init__(self, path: str, skip_seconds: float) -> None:
        self.path = f"{path}.{os.getpid()}"
        self.from_ns = time.perf_counter_ns() + int(skip_seconds * 1e9)
        self.steps: list[tuple[int, str, int, int]] = []
        self.written = False

    def mark(self, step: str) -> None:
        """Note that ``step`` happens now."""
        now = time.perf_counter_ns()
        if now >= self.from_ns and len(self.steps) < LIMIT:
            self.steps.append((now, step, time.thread_time_ns(), threading.get_native_id()))
            if len(self.steps) == LIMIT:
                self.write()

    def write(self) -> None:
        """Write the steps (once)."""
        if self.written:
            return
        self.written = True
        with open(self.path, "w") as out:
            out.writelines(f"{at} {step} {cpu} {thread}\n" for at, step, cpu, thread in self.steps)


def _around(owner: Any, name: str, marks: Marks, before: str | None, after: str | None = None,
            when: Callable[..., bool] | None = None) -> None:
    """Replace ``owner.name`` by a function that marks ``before`` and ``after`` it runs (when ``when(*args)``)."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        noted = when is None or when(*args)
        if noted and before:
            marks.mark(before)
        result = original(*args, **kwargs)
        if noted and after:
            marks.mark(after)
        return result

    setattr(owner, name, wrapper)


def _around_async(owner: Any, name: str, marks: Marks, before: str) -> None:
    """Replace the coroutine function ``owner.name`` by one that marks ``before`` when it starts."""
    original = getattr(owner, name)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        marks.mark(before)
        return await original(*args, **kwargs)

    setattr(owner, name, wrapper)


def _ingest(marks: Marks) -> None:
    from aiohttp import web_protocol

    from ingest import answer, fast_lane, front_door, link
    from shared import wire

    _around(fast_lane.Lane, "data_received", marks, "read")
    _around(web_protocol.RequestHandler, "data_received", marks, "read", when=lambda self, data: bool(data))
    _around_async(front_door.FrontDoor, "respond", marks, "check")
    _around(link.WriterLink, "submit", marks, None, "queued")
    _around(link.WriterLink, "_next_batch", marks, None, "frame")
    _around(wire.FrameProtocol, "data_received", marks, "reply")
    _around(link.WriterLink, "_on_frame", marks, None, "settled",
            when=lambda self, frame: frame.kind is wire.Kind.ACK)
    _around(fast_lane.Lane, "_send", marks, "answer")
    _around_async(answer.JsonAnswer, "prepare", marks, "answer")


def _writer(marks: Marks) -> None:
    from writer import frame_receiver, server, spool

    _around(frame_receiver.FrameReceiver, "buffer_updated", marks, "w_read")
    _around(server.SocketServer, "_on_batch", marks, "w_batch", "w_queued")
    _around(spool.Spool, "_append_and_sync", marks, "w_write", "w_durable")
    _around(spool, "sync_data", marks, "w_sync")
    _around(server.SocketServer, "_answer_group", marks, "w_answer", "w_reply")


def install() -> None:
    """Wrap the steps of this process when it is ingest or the writer and ``AUDITLAKE_TIMELINE`` is set."""
    path = os.environ.get("AUDITLAKE_TIMELINE")
    argv = sys.orig_argv
    role = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None
    if not path or role not in ("ingest", "writer"):
        return
    marks = Marks(path, float(os.environ.get("AUDITLAKE_TIMELINE_SKIP", "0")))
    atexit.register(marks.write)
    (_ingest if role == "ingest" else _writer)(marks)
