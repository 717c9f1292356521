"""AUDIT_SERVICE_ACK_TIMEOUT_SECONDS over the real processes: a writer that stops answering.

A post whose events were sent to the writer and not acknowledged in time is answered 504 (they may or may
not be stored: here the writer resumes and stores them); one whose events were never sent (as many frames
as may await the writer already do) is withdrawn from the queue and answered 503, and its events are never
stored.
"""

from __future__ import annotations

import concurrent.futures
import signal
import time
import uuid
from typing import Any

from ingest.link import MAX_FRAMES_IN_FLIGHT
from tests.ops.helpers import Scrape, wait_for
from tests.service import Service

TIMEOUT_SECONDS = 1.0


def body(marker: str) -> dict[str, Any]:
    """One event carrying ``marker`` as its correlation id."""
    return {"events": [{"audit_event_id": str(uuid.uuid4()), "type": "auth", "component": "ack-timeout",
                        "correlation_id": marker}]}


def timed_post(service: Service, marker: str) -> tuple[int, Any, float]:
    """Post one event; (status, answer, seconds it took)."""
    started = time.monotonic()
    status, answer, _ = service.post(body(marker), timeout=30)
    return status, answer, time.monotonic() - started


def in_flight(service: Service) -> float:
    return Scrape(f"{service.url}/metrics").value("auditlake_ingest_frames_in_flight")


def settled(service: Service) -> bool:
    """The service's own start event is acknowledged, and nothing is queued or in flight."""
    if service.get("/v1/audit/status")[1]["self_audit"]["recorded"] < 1:
        return False
    scrape = Scrape(f"{service.url}/metrics")
    return scrape.value("auditlake_ingest_frames_in_flight") == 0 and scrape.value("auditlake_ingest_queue_events") == 0


def test_unacknowledged_posts_are_504_and_unsent_ones_withdrawn_as_503(service_factory) -> None:
    """With the writer stopped, the first posts go out in the frames that may await it (``MAX_FRAMES_IN_FLIGHT``)
    and are 504 after the timeout; the next waits in the queue and is 503 (withdrawn). Resumed, the writer
    stores the sent ones and never the last; the queue is empty and the counters say what happened."""
    service = service_factory(AUDIT_SERVICE_ACK_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS),
                              AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.2")
    sent = MAX_FRAMES_IN_FLIGHT
    markers = [f"ack-timeout-{index}-{uuid.uuid4().hex[:8]}" for index in range(sent + 1)]
    wait_for(lambda: settled(service), what="the start event acknowledged, nothing queued or in flight")
    before = Scrape(f"{service.url}/metrics")
    writer = service.procs["writer"]
    writer.send_signal(signal.SIGSTOP)
    try:
        with concurrent.futures.ThreadPoolExecutor(sent + 1) as pool:
            posts = []
            for index, marker in enumerate(markers):
                posts.append(pool.submit(timed_post, service, marker))
                if index < sent:  # each of the first ones in a frame of its own, before the next is posted
                    wait_for(lambda: in_flight(service) == index + 1, timeout=5, what=f"frame {index + 1} sent")
            outcomes = [post.result(timeout=30) for post in posts]
    finally:
        writer.send_signal(signal.SIGCONT)
    for status, answer, seconds in outcomes[:sent]:
        assert status == 504 and "may or may not be stored" in answer["detail"], answer
        assert TIMEOUT_SECONDS * 0.9 <= seconds < TIMEOUT_SECONDS + 2, seconds
    status, answer, seconds = outcomes[sent]
    assert status == 503 and "did not take the events in time" in answer["detail"], answer
    assert TIMEOUT_SECONDS * 0.9 <= seconds < TIMEOUT_SECONDS + 2, seconds
    after = Scrape(f"{service.url}/metrics")
    assert after.value("auditlake_ingest_events_unconfirmed_total") - \
        before.value("auditlake_ingest_events_unconfirmed_total") == sent
    assert after.value("auditlake_ingest_events_rejected_total") - \
        before.value("auditlake_ingest_events_rejected_total") == 1
    stored = service.wait_flushed(sent)
    assert sorted(event["correlation_id"] for event in stored) == sorted(markers[:sent])
    assert service.post(body("after"))[0] == 202  # the writer answers again: the next post is durable at once
    stored = service.wait_flushed(sent + 1)
    assert markers[sent] not in {event["correlation_id"] for event in stored}
    wait_for(lambda: Scrape(f"{service.url}/metrics").value("auditlake_ingest_queue_events") == 0,
             what="the queue empty once the writer answered")
