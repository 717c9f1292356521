"""In the real writer, the spool segments that a flush leaves without live records are removed by the reaper,
but one full one, kept to become the next segment (written over, not grown)."""

from __future__ import annotations

import time

from shared import spool_format
from tests.ledger import make_events
from tests.ops.helpers import Scrape
from tests.ops.test_sched_slice import thread_named, thread_slices
from writer.segment_reaper import REAPER_THREAD_NAME


def test_flushed_segments_are_reused_or_removed_on_the_reapers_thread(service_factory) -> None:
    """Segments of 4 KiB roll over with every batch; once flushed, only the active one is left, and one spare
    (no ``.removing`` file); later segments start over spares (counted in status and metrics; that they
    are the same files is tests/unit/test_spool_reuse.py's); the removals ran on the reaper's thread, on
    the default slice."""
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1", AUDIT_SERVICE_SPOOL_SEGMENT_BYTES="4096")
    (_, first_segment), = spool_format.list_segments(service.spool)
    for batch in range(12):
        assert service.post({"events": make_events(20, f"segments-{batch}")})[0] == 202
        time.sleep(0.15)  # a flush between batches: its segment can be the spare the next roll takes
    assert len(service.wait_flushed(240)) >= 240
    deadline = time.monotonic() + 30
    while True:
        segments = spool_format.list_segments(service.spool)
        dying = list(service.spool.glob(f"*{spool_format.REMOVING_SUFFIX}"))
        status = service.writer_status()
        if len(segments) == 1 + status["spool_spare_segments"] and not dying or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(segments) == 1 + status["spool_spare_segments"] and status["spool_spare_segments"] <= 1, segments
    assert not dying and not first_segment.exists()  # rolled over, then reused or removed
    assert status["spool_segments"] == 1 and status["spool_backlog_events"] == 0
    assert status["spool_reused_segments"] >= 1
    scrape = Scrape(f"{service.writer_url}/metrics")
    assert scrape.value("auditlake_writer_spool_reused_segments_total") == status["spool_reused_segments"]
    writer_pid = service.procs["writer"].pid
    reaper = thread_named(writer_pid, REAPER_THREAD_NAME)
    slices = thread_slices(writer_pid)
    if slices.get(writer_pid):  # the kernel shows slices: the reaper's is not the loop's short one
        assert slices[reaper] > slices[writer_pid], slices


def test_a_writer_killed_while_writing_over_reused_segments_loses_and_repeats_nothing(service_factory) -> None:
    """Killed (SIGKILL) with the active segment started over a flushed one, the writer restarts with every
    acknowledged event stored once, none of the old records replayed, nothing quarantined."""
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1", AUDIT_SERVICE_SPOOL_SEGMENT_BYTES="4096")
    acked: list[str] = []
    batch = 0
    while service.writer_status()["spool_reused_segments"] < 3 or batch < 8:
        events = make_events(20, f"killed-{batch}")
        assert service.post({"events": events})[0] == 202
        acked.extend(event["audit_event_id"] for event in events)
        batch += 1
        time.sleep(0.12)
        assert batch < 200, "no segment was reused"
    events = make_events(20, "killed-last")
    assert service.post({"events": events})[0] == 202  # unflushed, in the reused active segment when killed
    acked.extend(event["audit_event_id"] for event in events)
    service.signal("writer")
    service.start("writer")
    status = service.wait_ready()
    assert status["quarantined_segments"] == [], service.tail(80)
    stored = [event["audit_event_id"] for event in service.wait_flushed(len(acked), 60)]
    assert sorted(stored) == sorted(acked)  # each acknowledged event once, none lost
    status = service.writer_status()  # an old record replayed would be flushed again, its events duplicates
    assert status["duplicate_events"] == 0 and status["flushed_events"] + status["spool_backlog_events"] <= len(acked)
