"""A fake audit service (a real aiohttp server in its own thread) and helpers for the producer tests."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class Received:
    """One request the fake service saw."""

    at: float
    status: int
    encoding: str | None
    headers: dict[str, str]
    events: list[dict[str, Any]] | None
    posted: list[dict[str, Any]] | None
    raw_size: int


class FakeAuditServer:
    """Answers ``POST /v1/audit/events`` as told by ``mode``: accept, unavailable, stall or reject.

    ``fail_first`` makes the first N requests answer ``fail_status`` (503 by default, with ``retry_after``)
    before accepting.
    Gzip bodies are checked and decompressed by hand (the server's auto-decompression is off).
    """

    def __init__(self) -> None:
        self.mode = "accept"
        self.retry_after: str | None = None
        self.fail_first = 0
        self.fail_status = 503
        self.detail = "event 0: field 'type' must be a string"
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._main, name="fake-audit-server", daemon=True)
        self._ready = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeAuditServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake audit server did not start")
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/audit/events", self._handle)
        self._runner = web.AppRunner(app, auto_decompress=False, shutdown_timeout=0.5, access_log=None)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        self._release = asyncio.Event()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        loop = self._loop
        if loop is None or not self._thread.is_alive():
            return
        loop.call_soon_threadsafe(self._release.set)  # type: ignore[union-attr]
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        encoding = request.headers.get("Content-Encoding")
        if encoding == "gzip" and raw[:2] != b"\x1f\x8b":
            return self._record(request, encoding, None, raw, web.json_response({"detail": "not gzip"}, status=400))
        with self._lock:
            mode = self.mode
            failing = self.fail_first > 0
            if failing:
                self.fail_first -= 1
        if mode == "stall":
            await self._release.wait()  # type: ignore[union-attr]
            return self._record(request, encoding, None, raw, web.json_response({"detail": "stalled"}, status=503))
        if mode == "unavailable" or failing:
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
            status = self.fail_status if failing else 503
            response = web.json_response({"detail": "audit writer unavailable"}, status=status, headers=headers)
            return self._record(request, encoding, None, raw, response)
        if mode == "reject":
            return self._record(request, encoding, None, raw, web.json_response({"detail": self.detail}, status=400))
        events = self._decode(raw, encoding)
        response = web.json_response({"accepted": len(events), "queued": 0}, status=202)
        return self._record(request, encoding, events, raw, response)

    @staticmethod
    def _decode(raw: bytes, encoding: str | None) -> list[dict[str, Any]]:
        body = gzip.decompress(raw) if encoding == "gzip" else raw
        return json.loads(body)["events"]

    def _record(self, request: web.Request, encoding: str | None, events: Any, raw: bytes, response: web.Response):
        try:
            posted = self._decode(raw, encoding)
        except (ValueError, KeyError, OSError, EOFError):
            posted = None
        received = Received(time.monotonic(), response.status, encoding, dict(request.headers), events, posted, len(raw))
        with self._lock:
            self.requests.append(received)
        return response

    def accepted(self) -> list[dict[str, Any]]:
        """Every event of every accepted request, in arrival order."""
        with self._lock:
            return [event for item in self.requests if item.events is not None for event in item.events]

    def count(self, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for item in self.requests if status is None or item.status == status)


@pytest.fixture
def audit_server() -> Iterator[FakeAuditServer]:
    server = FakeAuditServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def down_url() -> str:
    """The URL of a port nothing listens on (the service is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)
    return True


def _check_invariant(stats: Any) -> None:
    assert stats.emitted == stats.sent + stats.dropped + stats.buffered, stats
    assert stats.dropped == stats.invalid + stats.overflow + stats.failed + stats.abandoned, stats
    assert stats.rejected <= stats.failed <= stats.dropped, stats
    assert 0 <= stats.in_flight <= stats.buffered, stats


def _ndjson(events: list[Any]) -> bytes:
    return b"".join(json.dumps(event).encode() + b"\n" for event in events)


class LoopLagProbe:
    """Measures how late a 1 ms ``asyncio.sleep`` wakes up, run as a task on the loop under test.

    ``lags`` are wall-clock delays minus the time the loop's thread was runnable but not running (from
    ``/proc/self/task/<tid>/schedstat`` where available): a busy CI machine preempting the process is
    not the code under test blocking the loop, while CPU work and blocking calls on the loop still count.
    ``raw_lags`` keep the wall-clock delays.
    """

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.raw_lags: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._fd: int | None = None

    def _waited(self) -> float:
        if self._fd is None:
            return 0.0
        return int(os.pread(self._fd, 256, 0).split()[1]) / 1e9

    async def _run(self) -> None:
        try:
            self._fd = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None
        try:
            while not self._stop.is_set():
                started, waited = time.perf_counter(), self._waited()
                await asyncio.sleep(0.001)
                raw = time.perf_counter() - started - 0.001
                self.raw_lags.append(raw)
                self.lags.append(raw - (self._waited() - waited))
        finally:
            if self._fd is not None:
                os.close(self._fd)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def describe(self) -> str:
        return f"max lag {max(self.lags) * 1000:.1f} ms (wall clock {max(self.raw_lags) * 1000:.1f} ms)"


@pytest.fixture
def loop_lag_probe() -> LoopLagProbe:
    """A loop-lag probe; ``start()`` it inside the test's loop and ``await stop()`` it."""
    return LoopLagProbe()


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    """``wait_until(predicate, timeout=10)``: poll until true or the timeout; return the last value."""
    return _wait_until


@pytest.fixture
def check_invariant() -> Callable[[Any], None]:
    """``check_invariant(stats)``: assert the accounting rules every snapshot must satisfy."""
    return _check_invariant


@pytest.fixture
def ndjson() -> Callable[[list[Any]], bytes]:
    """``ndjson(events)``: NDJSON bytes, one event per line."""
    return _ndjson


@pytest.fixture
def child_env() -> dict[str, str]:
    """An environment in which a child Python imports this checkout's ``producer``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("AUDITLAKE_URL", None)
    env.pop("AUDITLAKE_TOKEN", None)
    return env
