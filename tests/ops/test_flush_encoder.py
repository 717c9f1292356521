"""In the real writer, a flush's CPU work runs in a child process, which is replaced when it dies."""

from __future__ import annotations

import os
import signal
import time

from tests.ledger import make_events
from tests.ops.helpers import Scrape
from tests.ops.test_sched_slice import thread_slices


def test_the_writer_flushes_through_a_child_and_replaces_it_when_it_dies(service_factory) -> None:
    """One encoder child per writer, on the default slice; killed, the writer starts another and every
    event, before and after, is stored once."""
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1")
    writer_pid = service.procs["writer"].pid
    before = make_events(30, "encoder-before")
    assert service.post({"events": before})[0] == 202
    assert len(service.wait_flushed(30)) >= 30
    (child,) = service.encoder_pids()
    slices = thread_slices(writer_pid)
    if slices.get(writer_pid):  # the kernel shows slices: the child's is the default, not the loop's short one
        assert thread_slices(child)[child] > slices[writer_pid]
    os.kill(child, signal.SIGKILL)
    after = make_events(30, "encoder-after")
    assert service.post({"events": after})[0] == 202
    stored = service.wait_flushed(60, timeout=60)
    ids = [event["audit_event_id"] for event in stored]
    assert sorted(ids) == sorted(event["audit_event_id"] for event in before + after)  # each once
    deadline = time.monotonic() + 10
    while service.encoder_pids() in ([], [child]) and time.monotonic() < deadline:
        time.sleep(0.1)
    (replacement,) = service.encoder_pids()
    assert replacement != child
    assert service.writer_status()["dedupe_ids"] >= 30
    metrics = Scrape(f"{service.writer_url}/metrics")
    assert metrics.value("auditlake_writer_encoder_starts_total") == 2


def test_a_writer_whose_encoder_cannot_start_still_takes_events_and_stores_them_once_it_can(service_factory) -> None:
    """The dedupe directory blocked by a file: the encoder cannot start, yet the writer serves, acknowledges
    what it spools and reports failing flushes; once the directory can be made, the events are stored."""
    service = service_factory(start=False, AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1")
    service.spool.mkdir(mode=0o700)
    blocker = service.spool / "dedupe"
    blocker.write_bytes(b"not a directory")
    service.start_all()
    events = make_events(12, "encoder-blocked")
    assert service.post({"events": events})[0] == 202  # durable in the spool
    deadline = time.monotonic() + 20
    while service.writer_status()["failed_flushes"] < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    status = service.writer_status()
    assert status["failed_flushes"] >= 1 and status["spool_backlog_events"] >= 12  # (and the writer's own events)
    assert service.stored_events() == []
    blocker.unlink()
    stored = service.wait_flushed(12, timeout=30)
    posted = {event["audit_event_id"] for event in events}
    assert sorted(event["audit_event_id"] for event in stored if event["audit_event_id"] in posted) == sorted(posted)


def test_the_encoder_runs_below_the_writer_by_the_configured_niceness(service_factory) -> None:
    """By default the encoder child runs 5 nice levels below the writer (its loop and commit threads take
    the CPU first), and the writer's status says so; ``AUDIT_SERVICE_ENCODER_NICENESS=0`` keeps it level."""
    for setting, expected in ((None, 5), ("0", 0)):
        extra = {} if setting is None else {"AUDIT_SERVICE_ENCODER_NICENESS": setting}
        service = service_factory(**extra)
        writer_nice = os.getpriority(os.PRIO_PROCESS, service.procs["writer"].pid)
        deadline = time.monotonic() + 10
        while not service.encoder_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        (child,) = service.encoder_pids()
        assert os.getpriority(os.PRIO_PROCESS, child) == min(writer_nice + expected, 19)
        assert service.writer_status()["encoder_niceness"] == min(writer_nice + expected, 19)
        service.stop()
