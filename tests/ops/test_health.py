"""Per-process health: readiness turns 503 on a saturated queue, and every probe answers fast under load."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest

from tests.ledger import make_events
from tests.ops.helpers import Scrape, wait_for
from tests.ops.latency import measure_under_load
from tests.service import Service, http

P99_LIMIT_MS = 200.0


def _post_in_background(service: Service, body: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def post() -> None:
        outcome["status"], outcome["body"], _ = service.post(body, timeout=30)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("bound", ["events", "bytes"])
def test_readyz_is_503_while_the_queue_is_saturated(service_factory, bound: str) -> None:
    """At >= 95 % of the queue bound (events or bytes) readyz says "audit queue saturated"; it recovers after."""
    if bound == "events":
        service = service_factory(AUDIT_SERVICE_QUEUE_MAX_SIZE="20")
        body = {"events": make_events(19, "saturate")}
    else:
        service = service_factory(AUDIT_SERVICE_QUEUE_MAX_BYTES="65536")
        event = make_events(1, "saturate")[0]
        event["details"] = {"pad": "x" * 62900}  # ~63.2 KB once normalized: between 95 % and 100 % of the bound
        body = {"events": [event]}
    service.procs["writer"].send_signal(signal.SIGSTOP)  # connected but silent: submissions wait for their ack
    try:
        thread, outcome = _post_in_background(service, body)
        wait_for(lambda: "status" in outcome
                 or http("GET", f"{service.url}/readyz", timeout=2)[:2] == (503, {"detail": "audit queue saturated"}),
                 what="readyz to report the saturated queue")
        assert "status" not in outcome, f"the post should wait for the stopped writer: {outcome}"
        scrape = Scrape(f"{service.url}/metrics")
        assert scrape.value("auditlake_ingest_ready") == 0
        if bound == "events":
            assert scrape.value("auditlake_ingest_queue_events") >= 19  # reads may add their own audit events
            status, detail, headers = service.post({"events": make_events(2, "overflow")})
            assert (status, detail, headers.get("Retry-After")) == (503, {"detail": "audit queue full"}, "1")
            after = Scrape(f"{service.url}/metrics")  # refused after parsing (2 events) or, when full, unread
            assert (after.value("auditlake_ingest_events_rejected_total") >= 2
                    or after.value("auditlake_ingest_requests_refused_unread_total") >= 1)
        else:
            assert scrape.value("auditlake_ingest_queue_bytes") >= 0.95 * 65536
        assert http("GET", f"{service.url}/healthz", timeout=2)[0] == 200, "liveness does not depend on the queue"
    finally:
        service.procs["writer"].send_signal(signal.SIGCONT)
    thread.join(timeout=30)
    assert outcome["status"] == 202
    wait_for(lambda: http("GET", f"{service.url}/readyz", timeout=2)[0] == 200, what="readyz to recover")


def test_health_endpoints_answer_within_budget_under_load(ops_service: Service) -> None:
    """200 probes of each health endpoint of both processes, with producers posting meanwhile: p99 < 200 ms."""
    figures, acknowledged = measure_under_load(ops_service, calls=200)
    print("health latency under load (ms):", figures, "events acknowledged meanwhile:", acknowledged)
    assert acknowledged > 0
    for name, figure in figures.items():
        assert figure["statuses"] == [200], (name, figure)
        assert figure["p99"] < P99_LIMIT_MS, (name, figure)
