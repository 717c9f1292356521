"""Interpreter exit and garbage collection flush the buffer; the package works without orjson."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

from producer import AuditProducer

EMIT_AND_EXIT = """
import sys
from producer import AuditProducer
producer = AuditProducer(sys.argv[1], flush_interval=30, batch_size=1000, close_timeout=float(sys.argv[3]))
for n in range(int(sys.argv[2])):
    producer.emit({"type": "exit.test", "n": n})
print("emitted", flush=True)
"""


def run_child(code: str, args: list[str], env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_events_are_flushed_at_interpreter_exit_without_close(host, audit_server, child_env):
    url = audit_server.url.replace("127.0.0.1", host)
    child = run_child(EMIT_AND_EXIT, [url, "500", "5"], child_env)
    assert child.returncode == 0, child.stderr
    assert "emitted" in child.stdout
    received = sorted(event["n"] for event in audit_server.accepted())
    assert received == list(range(500)), child.stderr


def test_exit_with_a_stalled_service_takes_at_most_the_close_timeout(audit_server, child_env):
    audit_server.mode = "stall"
    started = time.monotonic()
    child = run_child(EMIT_AND_EXIT, [audit_server.url, "50", "1.0"], child_env)
    elapsed = time.monotonic() - started
    assert child.returncode == 0, child.stderr
    assert elapsed < 6.0, elapsed
    assert "50 events not delivered" in child.stderr


def test_an_unreferenced_producer_is_collected_and_still_delivers(audit_server, wait_until):
    threads_before = set(threading.enumerate())
    producer = AuditProducer(audit_server.url, flush_interval=30)
    for n in range(10):
        producer.emit({"type": "gc.test", "n": n})
    alive = weakref.ref(producer)
    del producer
    gc.collect()
    assert alive() is None
    assert wait_until(lambda: len(audit_server.accepted()) == 10, timeout=10)
    workers = [thread for thread in set(threading.enumerate()) - threads_before if thread.name == "auditlake-producer"]
    assert wait_until(lambda: not any(thread.is_alive() for thread in workers), timeout=5)


def test_the_package_works_with_the_standard_library_json_alone(audit_server, child_env):
    code = """
    import sys, datetime
    sys.modules["orjson"] = None  # importing orjson now raises ImportError
    from producer import AuditProducer
    from producer.encode import has_orjson
    assert not has_orjson()
    with AuditProducer(sys.argv[1]) as producer:
        producer.emit({"type": "no.orjson", "at": datetime.datetime(2024, 1, 1), "tags": {"x"}})
        assert producer.flush(5)
    print(sorted(name for name in sys.modules if name.split(".")[0] in ("orjson", "pydantic", "shared")))
    """
    child = run_child(code, [audit_server.url], child_env)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "['orjson']"  # only the blocked placeholder
    (event,) = audit_server.accepted()
    assert event["at"] == "2024-01-01T00:00:00.000000Z" and event["tags"] == ["x"]


def test_a_forked_child_gets_its_own_worker_and_sends_only_its_own_events(audit_server, child_env):
    code = """
    import os, sys
    from producer import AuditProducer
    producer = AuditProducer(sys.argv[1], flush_interval=30)
    producer.emit({"type": "fork.test", "audit_event_id": "parent-before-fork"})
    pid = os.fork()
    if pid == 0:
        producer.emit({"type": "fork.test", "audit_event_id": "child"})
        stats = producer.stats()
        ok = producer.close(5) and stats.emitted == 1
        os._exit(0 if ok and producer.stats().sent == 1 else 3)
    _, status = os.waitpid(pid, 0)
    producer.emit({"type": "fork.test", "audit_event_id": "parent-after-fork"})
    assert producer.close(5) and producer.stats().sent == 2
    print(os.waitstatus_to_exitcode(status))
    """
    child = run_child(code, [audit_server.url], child_env)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "0", child.stderr
    ids = sorted(event["audit_event_id"] for event in audit_server.accepted())
    assert ids == ["child", "parent-after-fork", "parent-before-fork"]
