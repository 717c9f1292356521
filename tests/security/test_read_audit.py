"""Reads of audit data are themselves audited; the service's own event types cannot be forged."""

from __future__ import annotations

import pytest

from tests.security.conftest import (
    ADMIN, INGEST, INGEST_ACME, READ, READ_ACME, TENANT, assert_json_error, call, events_where, fingerprint, marker,
    poll,
)
from tests.service import Service


def _reads_with(svc: Service, tag: str, count: int) -> list[dict]:
    """Poll until ``count`` audit_read events name ``tag`` in their filters; return them."""
    def found():
        reads = [event for event in events_where(svc, type="audit_read")
                 if event["details"]["filters"].get("correlation_id") == tag]
        return reads if len(reads) >= count else None
    return poll(found, 10, f"{count} audit_read events for {tag}")


def test_each_read_is_recorded_with_who_what_and_how_many(secure_service: Service) -> None:
    """Three reads give three audit_read events: the token's fingerprint, the filters, returned and total."""
    tag = marker("read")
    events = [{"type": "auth", "correlation_id": tag, "tenant_id": "t1"} for _ in range(3)]
    assert call(secure_service, "POST", "/v1/audit/events", INGEST, {"events": events})[0] == 202
    poll(lambda: call(secure_service, "GET", f"/v1/audit/events?window=1h&correlation_id={tag}&limit=1",
                      READ)[1]["total"] == 3, 10, "three events")
    call(secure_service, "GET", f"/v1/audit/events?window=1h&correlation_id={tag}&limit=2", READ)
    call(secure_service, "GET", f"/v1/audit/events?window=1h&correlation_id={tag}&limit=2", READ)
    reads = _reads_with(secure_service, tag, 3)
    last = [read for read in reads if read["details"]["total"] == 3 and read["details"]["limit"] == 2]
    assert len(last) == 2, reads
    for read in last:
        assert read["actor_ref"] == f"token:{fingerprint(READ)}"
        assert read["action"] == "GET /v1/audit/events" and read["outcome"] == "success"
        assert read["details"]["returned"] == 2 and read["details"]["filters"] == {"correlation_id": tag}
        assert "tenant_id" not in read


def test_tenant_bound_reads_record_the_forced_tenant(secure_service: Service) -> None:
    """A read with a tenant-bound token is recorded with the tenant filter it was confined to."""
    tag = marker("bound-read")
    assert call(secure_service, "GET", f"/v1/audit/events?window=1h&correlation_id={tag}", READ_ACME)[0] == 200
    (read,) = _reads_with(secure_service, tag, 1)
    assert read["details"]["filters"] == {"correlation_id": tag, "tenant_id": TENANT}
    assert read["details"]["tenant_bound"] is True and read["actor_ref"] == f"token:{fingerprint(READ_ACME)}"


def test_refused_reads_are_not_recorded(secure_service: Service) -> None:
    """A read refused for its token or its parameters stores no audit_read (no amplification by strangers)."""
    tag = marker("refused-read")
    assert call(secure_service, "GET", f"/v1/audit/events?correlation_id={tag}", None)[0] == 401
    assert call(secure_service, "GET", f"/v1/audit/events?correlation_id={tag}", INGEST)[0] == 403
    assert call(secure_service, "GET", f"/v1/audit/events?correlation_id={tag}&window=9y", READ)[0] == 400
    assert call(secure_service, "GET", f"/v1/audit/events?window=1h&correlation_id={tag}", READ)[0] == 200
    reads = _reads_with(secure_service, tag, 1)
    assert len(reads) == 1


def test_audit_read_survives_a_verbosity_that_drops_it(secure_service: Service) -> None:
    """The service runs with verbosity ``standard`` (no audit_read type), yet the reads are stored."""
    status, body, _ = call(secure_service, "GET", "/v1/audit/verbosity", READ)
    assert status == 200 and body["verbosity"] == "standard" and "audit_read" not in body["allowed_types"]
    tag = marker("verbosity")
    call(secure_service, "GET", f"/v1/audit/events?window=5m&correlation_id={tag}", ADMIN)
    assert len(_reads_with(secure_service, tag, 1)) == 1


@pytest.mark.parametrize("event_type", ["audit_read", "service_start", "service_stop"])
@pytest.mark.parametrize("token", [INGEST, INGEST_ACME, READ, ADMIN], ids=["ingest", "ingest_acme", "read", "admin"])
def test_service_event_types_cannot_be_forged(secure_service: Service, event_type: str, token: str) -> None:
    """Posting a service-only type is 403 with any token, and nothing of the request is stored."""
    tag = marker("forged")
    response = call(secure_service, "POST", "/v1/audit/events", token,
                    {"events": [{"type": "auth", "correlation_id": tag},
                                {"type": event_type, "correlation_id": tag, "tenant_id": TENANT}]})
    assert_json_error(response, 403)
    status, body, _ = call(secure_service, "GET", f"/v1/audit/events?window=1h&correlation_id={tag}", READ)
    assert status == 200 and body["total"] == 0


def test_service_start_is_recorded(secure_service: Service) -> None:
    """The ingest process recorded its start once connected to the writer."""
    starts = poll(lambda: events_where(secure_service, type="service_start"), 10, "service_start")
    assert starts[0]["details"]["auth"] == "enabled" and starts[0]["actor_ref"] == "service"


def test_open_mode_refuses_forged_types_and_records_stop(service_factory) -> None:
    """Without tokens reads are recorded as anonymous, service types are still refused, and SIGTERM stores service_stop."""
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1")
    assert_json_error(service.post({"type": "audit_read"}), 403)
    tag = marker("open")
    assert service.get(f"/v1/audit/events?window=5m&correlation_id={tag}")[0] == 200
    service.stop()
    stored = service.stored_events(include_service_events=True)
    types = [event["type"] for event in stored]
    assert types.count("service_start") == 1 and types.count("service_stop") == 1, (types, service.tail(60))
    (read,) = [event for event in stored if event["type"] == "audit_read"]
    assert read["actor_ref"] == "anonymous" and read["details"]["filters"] == {"correlation_id": tag}
    assert service.stored_events() == []
