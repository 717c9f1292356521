"""In the real writer, the spool segments that a flush leaves without live records are removed by the reaper."""

from __future__ import annotations

import time

from shared import spool_format
from tests.ledger import make_events
from tests.ops.test_sched_slice import thread_named, thread_slices
from writer.segment_reaper import REAPER_THREAD_NAME


def test_flushed_segments_are_removed_on_the_reapers_thread(service_factory) -> None:
    """Segments of 4 KiB roll over with every batch; once flushed, only the active one is left (and no
    ``.removing`` file), and the removals ran on the reaper's thread, on the default slice."""
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1", AUDIT_SERVICE_SPOOL_SEGMENT_BYTES="4096")
    (_, first_segment), = spool_format.list_segments(service.spool)
    for batch in range(6):
        assert service.post({"events": make_events(20, f"segments-{batch}")})[0] == 202
    assert len(service.wait_flushed(120)) >= 120
    deadline = time.monotonic() + 30
    while True:
        segments = spool_format.list_segments(service.spool)
        dying = list(service.spool.glob(f"*{spool_format.REMOVING_SUFFIX}"))
        if len(segments) == 1 and not dying or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(segments) == 1 and not dying, (segments, dying)
    assert segments[0][1] != first_segment and not first_segment.exists()  # rolled over, then removed
    status = service.writer_status()
    assert status["spool_segments"] == 1 and status["spool_backlog_events"] == 0
    writer_pid = service.procs["writer"].pid
    reaper = thread_named(writer_pid, REAPER_THREAD_NAME)
    slices = thread_slices(writer_pid)
    if slices.get(writer_pid):  # the kernel shows slices: the reaper's is not the loop's short one
        assert slices[reaper] > slices[writer_pid], slices
