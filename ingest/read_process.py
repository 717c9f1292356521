"""Ingest's handle on its read process: forwards reads, bounds them, restarts the process when it dies."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ingest import read_wire
from ingest.read_plan import Plan
from ingest.read_wire import READY, StorageUnavailable
from shared import cpu_pinning
from shared.settings import Settings
from shared.task_stop import cancel_and_wait

log = logging.getLogger("auditlake.ingest.reads")
START_SECONDS = 30.0  # how long a read waits for the read process to (re)start before answering 503
RESTART_DELAY_SECONDS = 0.5
STOP_SECONDS = 5.0
SIZE_CACHE_SECONDS = 5.0
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ReadsBusy(Exception):
    """Every read slot is taken (answered with 503 and Retry-After)."""


class ReadSlots:
    """At most ``limit`` reads at once; a slot is freed when the read process has finished the read."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def take(self) -> Callable[[], None]:
        """A slot's release function (idempotent); raise ReadsBusy when none is free."""
        if self.active >= self.limit:
            raise ReadsBusy("too many concurrent reads")
        self.active += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.active -= 1

        return release


class ReadProcess:
    """Runs ``python -m ingest.read_worker`` and talks to it over a private socket pair."""

    def __init__(self, settings: Settings, cpus: frozenset[int] | None = None) -> None:
        self.settings = settings
        self.cpus = cpus  # where the read process may run when ingest itself was pinned (None: as ingest)
        self.slots = ReadSlots(settings.read_concurrency)
        self.restarts = 0
        self.pid: int | None = None
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._stream: asyncio.StreamWriter | None = None
        self._ready = asyncio.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._size: tuple[float, dict[str, Any]] | None = None

    @property
    def running(self) -> bool:
        """The read process is up and has said it is ready."""
        return self._ready.is_set()

    # -- lifetime ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the process (and keep restarting it until ``close``)."""
        self._task = asyncio.create_task(self._supervise(), name="read-process")

    async def close(self) -> None:
        """Stop the process; reads still waiting fail with StorageUnavailable."""
        self._closing = True
        if self._stream is not None:
            self._stream.close()  # the worker sees the end of its socket and exits
        process = self._process
        if process is not None:
            try:
                async with asyncio.timeout(STOP_SECONDS):
                    await asyncio.to_thread(process.wait)
            except TimeoutError:
                process.kill()
        if self._task is not None:
            await cancel_and_wait([self._task])
        self._fail_all("ingest is shutting down")

    async def _supervise(self) -> None:
        while not self._closing:
            started = time.monotonic()
            try:
                await self._run_once()
            except OSError as exc:
                log.error("could not run the read process", extra={"error": repr(exc)})
            self._ready.clear()
            self._fail_all("the read process stopped; retry")
            if self._closing:
                return
            self.restarts += 1
            code = self._process.returncode if self._process is not None else None
            log.error("read process exited; restarting it", extra={"exit_code": code,
                                                                   "ran_seconds": round(time.monotonic() - started, 1)})
            await asyncio.sleep(RESTART_DELAY_SECONDS)

    async def _run_once(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            arguments = [sys.executable, "-m", "ingest.read_worker", str(theirs.fileno())]
            if self.cpus is not None:  # not squeezed onto ingest's CPU: reads run beside it at low priority
                arguments.append(cpu_pinning.format_cpus(self.cpus))
            path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
            self._process = subprocess.Popen(arguments, pass_fds=(theirs.fileno(),),
                                             env={**os.environ, "PYTHONPATH": path})
        finally:
            theirs.close()
        reader, stream = await asyncio.open_unix_connection(sock=ours)
        stream.write(read_wire.encode(self.settings))
        self._stream = stream
        try:
            while (message := await read_wire.receive_async(reader)) is not None:
                self._on_reply(*message)
        finally:
            self._stream = None
            stream.close()
            process = self._process
            if process.poll() is None and not self._closing:
                process.kill()
            await asyncio.to_thread(process.wait)

    def _on_reply(self, call_id: int, ok: bool, value: Any) -> None:
        if call_id == READY:
            self.pid = value
            self._ready.set()
            log.info("read process ready", extra={"pid": value})
            return
        future = self._calls.pop(call_id, None)
        if future is None or future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _fail_all(self, reason: str) -> None:
        calls, self._calls = self._calls, {}
        for future in calls.values():
            if not future.done():
                future.set_exception(StorageUnavailable(reason))

    # -- calls -------------------------------------------------------------------------------------

    async def _call(self, operation: str, args: tuple[Any, ...], release: Callable[[], None] | None = None) -> Any:
        """Send one request and wait for its answer; a cancelled caller cancels the read in the process.

        ``release`` runs when the read process has finished with the request (or died), not before.
        """
        try:
            if not self._ready.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(START_SECONDS):
                        await self._ready.wait()
            if not self._ready.is_set() or self._stream is None:
                raise StorageUnavailable("the read process is not running")
        except BaseException:
            if release is not None:
                release()
            raise
        call_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        if release is not None:
            future.add_done_callback(lambda _: release())
        self._calls[call_id] = future
        self._stream.write(read_wire.encode((call_id, operation, args)))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if not future.done() and self._stream is not None:
                self._stream.write(read_wire.encode((call_id, "cancel", ())))
            raise

    async def search(self, plan: Plan, since: datetime, until: datetime, release: Callable[[], None] | None = None,
                     encoding: str = "json") -> read_wire.Page:
        """One page of a search, its records encoded as ``encoding`` (see ``record_encoding``), and its counts."""
        return await self._call("search", (_portable(plan), since, until, encoding), release)

    async def stats(self, plan: Plan, since: datetime, until: datetime, bucket: str, group_by: str | None,
                    release: Callable[[], None] | None = None) -> dict[str, Any]:
        """Counts per bucket (and group)."""
        return await self._call("stats", (_portable(plan), since, until, bucket, group_by), release)

    async def describe(self) -> dict[str, Any]:
        """The body of ``GET /v1/audit/storage`` (figures cached for a few seconds)."""
        now = time.monotonic()
        if self._size is None or now - self._size[0] > SIZE_CACHE_SECONDS:
            self._size = (now, await self._call("describe", ()))
        return self._size[1]

    async def retention(self) -> dict[str, Any]:
        """The body of ``GET /v1/audit/retention``."""
        return await self._call("retention", ())

    async def set_retention(self, days: int) -> dict[str, Any]:
        """Change retention (S3 lifecycle); RetentionError when it cannot be."""
        return await self._call("set_retention", (days,))


def _portable(plan: Plan) -> Plan:
    """The plan without its cancel event (the read process makes its own)."""
    return dataclasses.replace(plan, cancel=None)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failure as seen: a cancelled caller no longer awaits the future it shielded."""
    if not future.cancelled():
        future.exception()
