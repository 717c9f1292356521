"""Start the real writer and ingest processes for tests, on free loopback ports and short socket paths."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import urllib.error
import urllib.request

import orjson

from shared.stack_dump import STACK_DUMP_SIGNAL

REPO = Path(__file__).resolve().parent.parent
SERVICE_EVENT_TYPES = frozenset({"audit_read", "service_start", "service_stop"})
STOP_TIMEOUT_SECONDS = 30.0  # a process's drain (10 s in tests) and its shutdown, with room to spare


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that were free a moment ago: each is held while the next is
    chosen (ports chosen one after another can be the same one: a writer once failed to bind ingest's)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def http(method: str, url: str, body: Any = None, timeout: float = 10.0,
         headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    """A blocking JSON HTTP call: (status, decoded body, headers)."""
    data = body if isinstance(body, (bytes, type(None))) else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, orjson.loads(raw) if raw else None, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            decoded = orjson.loads(raw)
        except orjson.JSONDecodeError:
            decoded = raw
        return exc.code, decoded, dict(exc.headers)


class Service:
    """The two processes of one auditlake instance, with their data in a temp directory."""

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.run_dir = Path(tempfile.mkdtemp(prefix="al-", dir="/tmp"))
        self.port, self.writer_port = free_ports(2)
        self.store = root / "store"
        self.spool = root / "spool"
        self.env = {
            **os.environ,
            "AUDIT_SERVICE_LOCAL_PATH": str(self.store),
            "AUDIT_SERVICE_SPOOL_PATH": str(self.spool),
            "AUDIT_SERVICE_SOCKET_PATH": str(self.run_dir / "w.sock"),
            "AUDIT_SERVICE_HOST": "127.0.0.1",
            "AUDIT_SERVICE_PORT": str(self.port),
            "AUDIT_SERVICE_WRITER_HEALTH_PORT": str(self.writer_port),
            "AUDIT_LOG_VERBOSITY": "verbose",
            "AUDIT_SERVICE_DRAIN_SECONDS": "10",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.store = Path(self.env["AUDIT_SERVICE_LOCAL_PATH"])
        self.spool = Path(self.env["AUDIT_SERVICE_SPOOL_PATH"])
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[Path] = []

    @property
    def url(self) -> str:
        """Base URL of the ingest process."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def writer_url(self) -> str:
        """Base URL of the writer's health port."""
        return f"http://127.0.0.1:{self.writer_port}"

    def start(self, name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start ``writer`` or ``ingest`` as ``python -m NAME`` (``extra_env`` for this start only)."""
        log_path = self.root / f"{name}-{len(self.logs)}.log"
        self.logs.append(log_path)
        handle = open(log_path, "wb")
        proc = subprocess.Popen([sys.executable, "-m", name], cwd=REPO, env={**self.env, **extra_env},
                                stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        self.procs[name] = proc
        return proc

    def start_all(self) -> Service:
        """Start both processes and wait until ingest is ready."""
        self.start("writer")
        self.start("ingest")
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        """Poll ingest's /readyz until 200."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError):
                status, body, _ = http("GET", f"{self.url}/readyz", timeout=1)
                if status == 200:
                    return body
                last = body
            time.sleep(0.05)
        raise TimeoutError(f"ingest not ready: {last}\n{self.tail()}")

    def encoder_pids(self) -> list[int]:
        """The writer's encoder child processes (``writer.flush_encoder``): one while the writer runs."""
        from writer.flush_encoder import ENCODER_THREAD_NAME

        writer = self.procs["writer"].pid
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # the process ended meanwhile
                continue
            name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if name == ENCODER_THREAD_NAME and int(rest[1]) == writer and rest[0] != "Z":
                found.append(int(entry))
        return found

    def process_pids(self) -> dict[str, int]:
        """Each running process of the service by name: ingest, writer, and the writer's encoder child."""
        pids = {name: proc.pid for name, proc in self.procs.items()}
        encoders = self.encoder_pids() if "writer" in pids else []
        if encoders:
            pids["encoder"] = encoders[0]
        return pids

    def writer_status(self) -> dict[str, Any]:
        """The writer's own status document."""
        return http("GET", f"{self.writer_url}/status", timeout=5)[1]

    def signal(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send a signal to a process and wait for it to exit; return its exit code."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
        return self._wait_exit(name, STOP_TIMEOUT_SECONDS)

    def _wait_exit(self, name: str, timeout: float) -> int:
        """Wait for a process to exit; if it does not, have it (and its children) write every thread's stack
        to its log (``shared.stack_dump``) and raise with the logs' tails."""
        proc = self.procs[name]
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stuck = [proc.pid] + (self.encoder_pids() if name == "writer" else [])
            for pid in stuck:
                with contextlib.suppress(OSError):
                    os.kill(pid, STACK_DUMP_SIGNAL)
            time.sleep(1.0)
            raise TimeoutError(f"{name} did not exit within {timeout:g} s; its stacks:\n{self.tail(200)}") from None

    def post(self, body: Any, timeout: float = 10.0) -> tuple[int, Any, dict[str, str]]:
        """POST events to ingest."""
        return http("POST", f"{self.url}/v1/audit/events", body, timeout=timeout)

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, Any, dict[str, str]]:
        """GET a path of ingest."""
        return http("GET", f"{self.url}{path}", timeout=timeout)

    def stored_events(self, include_service_events: bool = False) -> list[dict[str, Any]]:
        """Every posted event in the published files of the store (read directly, not through the API).

        The service's own events (``audit_read``, ``service_start``, ``service_stop``) are left out
        unless ``include_service_events``.
        """
        import gzip

        events = []
        for path in sorted(self.store.rglob("audit-*.ndjson*")):
            if path.name.endswith(".parquet"):
                continue
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                data = gzip.decompress(data)
            events.extend(orjson.loads(line) for line in data.splitlines() if line)
        if include_service_events:
            return events
        return [event for event in events if event.get("type") not in SERVICE_EVENT_TYPES]

    def wait_flushed(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll the store until it holds at least ``count`` events; return them."""
        deadline = time.monotonic() + timeout
        events: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            events = self.stored_events()
            if len(events) >= count:
                return events
            time.sleep(0.1)
        raise TimeoutError(f"store holds {len(events)} of {count} events\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        """The last lines of every process log, for failure messages."""
        parts = []
        for path in self.logs:
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(parts)

    def stop(self) -> None:
        """Terminate both processes (ingest first) and remove the socket directory."""
        stuck: list[TimeoutError] = []
        for name in ("ingest", "writer"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    self._wait_exit(name, STOP_TIMEOUT_SECONDS)
                except TimeoutError as exc:  # a process that ignores SIGTERM is a defect: killed, then reported
                    proc.kill()
                    proc.wait()
                    stuck.append(exc)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if stuck:
            raise stuck[0]
