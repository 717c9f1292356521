"""The HTTP contract of health, status, verbosity, storage and retention (API-CONTRACT.md sections 1, 2, 4).

Every test marks its events with a fresh ``tenant_id`` so tests sharing one service never see each other's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ingest import verbosity
from tests.service import Service, http
from tests.test_api_contract import (
    assert_error,
    header,
    marker,
    parse_z,
    post_ok,
    query_ok,
    status_of,
    wait_records,
)

STATUS_FIELDS = {
    "running": bool, "backend": str, "queue_size": int, "queue_max_size": int, "flush_batch_size": int,
    "flush_interval_seconds": (int, float), "accepted_events": int, "rejected_events": int,
    "flushed_events": int, "failed_flushes": int,
}
STATUS_TIMESTAMPS = ("last_received_at", "last_flush_at")
LOCAL_STORAGE_FIELDS = {
    "local_path": str, "total_bytes": int, "used_bytes": int, "free_bytes": int, "used_percent": (int, float),
    "warning_percent": (int, float), "critical_percent": (int, float),
}
ALL_TYPES = ("cas_grant", "cas_reconcile", "auth", "cas_decision", "credential_action", "agent_delegation",
             "tool_call", None)
PRESET_TYPES = {
    "minimal": {"cas_grant", "cas_reconcile"},
    "standard": {"cas_grant", "cas_reconcile", "auth", "cas_decision", "credential_action"},
    "il2": {"auth", "cas_grant", "cas_decision", "credential_action"},
    "soc2": {"auth", "cas_grant", "cas_decision", "credential_action", "agent_delegation"},
}
ALLOW_ALL = ("verbose", "il5")


def poll(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Call ``check`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            last = check()
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def assert_status_document(body: dict[str, Any], svc: Service) -> None:
    """Every documented status field is present with its type, timestamps are ISO-8601 Z or null."""
    for name, kind in STATUS_FIELDS.items():
        assert name in body, name
        assert isinstance(body[name], kind) and not (kind is int and isinstance(body[name], bool)), (name, body[name])
    assert body["running"] is True and body["backend"] == "local"
    for name in STATUS_TIMESTAMPS:
        assert name in body, name
        assert body[name] is None or parse_z(body[name]), (name, body[name])
    assert "last_error" in body and (body["last_error"] is None or isinstance(body["last_error"], str))
    storage = body["storage"]
    assert storage["backend"] == "local" and storage["status"] in ("healthy", "warning", "down"), storage
    assert isinstance(storage["detail"], str), storage
    for name, kind in LOCAL_STORAGE_FIELDS.items():
        assert isinstance(storage.get(name), kind), (name, storage)
    assert storage["local_path"] == str(svc.store)


# -- health and status -------------------------------------------------------------------------------------

def test_healthz_is_ok(shared_service: Service) -> None:
    """GET /healthz answers 200 ``{"status": "ok"}``."""
    status, body, _ = shared_service.get("/healthz", timeout=1.0)
    assert (status, body) == (200, {"status": "ok"})


def test_readyz_is_ready_with_status_fields(shared_service: Service) -> None:
    """GET /readyz on a running service answers 200 with status "ready" and every status field."""
    status, body, _ = shared_service.get("/readyz", timeout=1.0)
    assert status == 200, body
    assert body["status"] == "ready"
    assert_status_document(body, shared_service)


def test_status_fields_and_types(shared_service: Service) -> None:
    """GET /v1/audit/status answers within 1 s with every field, typed, and the local storage block."""
    body = status_of(shared_service)
    assert_status_document(body, shared_service)
    assert body["queue_max_size"] == 10000 and body["flush_batch_size"] == 500
    assert body["flush_interval_seconds"] == 1.0
    assert body["storage"]["warning_percent"] == 85 and body["storage"]["critical_percent"] == 95
    assert body["last_error"] is None


def test_status_counters_follow_ingest_and_flushes(shared_service: Service) -> None:
    """accepted_events grows by the events of a 202, last_received_at moves to now, flushes are then counted."""
    before = status_of(shared_service)
    start = datetime.now(timezone.utc)
    tenant = marker()
    assert post_ok(shared_service, {"events": [{"type": "auth", "tenant_id": tenant}] * 4})["accepted"] == 4
    after = status_of(shared_service)
    assert after["accepted_events"] == before["accepted_events"] + 4
    assert parse_z(after["last_received_at"]) >= start - timedelta(milliseconds=50)
    flushed = poll(lambda: (lambda body: body if body["flushed_events"] >= before["flushed_events"] + 4 else None)(
        status_of(shared_service)), 10, "flushed_events to grow")
    assert parse_z(flushed["last_flush_at"]) >= start - timedelta(milliseconds=50)
    assert flushed["failed_flushes"] == 0 and flushed["last_error"] is None


def test_readyz_is_503_until_the_writer_runs(service_factory) -> None:
    """With only ingest running, readyz and POST are 503 JSON (POST with Retry-After); once the writer starts, 200."""
    svc = service_factory(start=False)
    svc.start("ingest")
    poll(lambda: svc.get("/healthz", timeout=1.0)[0] == 200, 20, "ingest to listen")
    assert svc.get("/healthz")[1] == {"status": "ok"}
    response = svc.get("/readyz", timeout=1.0)
    assert response[0] == 503, response
    assert_error(response, 503, 503)
    assert status_of(svc)["running"] is True
    response = svc.post({"type": "auth", "tenant_id": marker()})
    assert response[0] == 503, response
    assert_error(response, 503, 503)
    assert header(response[2], "Retry-After") is not None, response[2]
    svc.start("writer")
    body = poll(lambda: (lambda r: r[1] if r[0] == 200 else None)(svc.get("/readyz", timeout=1.0)), 20,
                "readyz to become 200")
    assert body["status"] == "ready"
    assert_status_document(body, svc)
    tenant = marker()
    assert post_ok(svc, {"type": "auth", "tenant_id": tenant})["accepted"] == 1
    wait_records(svc, 1, tenant_id=tenant)


def test_status_keeps_the_local_storage_block_while_the_writer_is_down(service_factory) -> None:
    """With the writer not running, status is still 200 within 1 s with the documented local storage fields."""
    svc = service_factory(start=False)
    svc.start("ingest")
    poll(lambda: svc.get("/healthz", timeout=1.0)[0] == 200, 20, "ingest to listen")
    body = status_of(svc)
    assert body["running"] is True
    for name, kind in STATUS_FIELDS.items():
        assert isinstance(body.get(name), kind), (name, body)
    storage = body["storage"]
    assert storage["backend"] == "local" and storage["status"] in ("healthy", "warning", "down")
    for name, kind in LOCAL_STORAGE_FIELDS.items():
        assert isinstance(storage.get(name), kind), (name, storage)


def test_readyz_is_503_when_storage_is_down(service_factory) -> None:
    """When disk use is at or above the critical percent, storage is down and readyz is 503 while healthz stays 200."""
    svc = service_factory(start=False, AUDIT_SERVICE_LOCAL_DISK_WARNING_PERCENT="0",
                          AUDIT_SERVICE_LOCAL_DISK_CRITICAL_PERCENT="0")
    svc.start("writer")
    svc.start("ingest")
    body = poll(lambda: (lambda b: b if "local_path" in b["storage"] else None)(status_of(svc)), 20,
                "the writer's storage health in status")
    assert body["storage"]["status"] == "down", body["storage"]
    response = svc.get("/readyz", timeout=1.0)
    assert response[0] == 503, response
    assert_error(response, 503, 503)
    assert svc.get("/healthz", timeout=1.0)[:2] == (200, {"status": "ok"})


@pytest.fixture(scope="module")
def configured_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One running service with an unknown verbosity name, 7 retention days and a disk warning at 0 %."""
    service = Service(tmp_path_factory.mktemp("configured"), AUDIT_LOG_VERBOSITY="no-such-preset",
                      AUDIT_SERVICE_LOCAL_RETENTION_DAYS="7", AUDIT_SERVICE_LOCAL_DISK_WARNING_PERCENT="0")
    try:
        yield service.start_all()
    finally:
        service.stop()


def test_storage_warning_keeps_the_service_ready(configured_service: Service) -> None:
    """Disk use above the warning percent (below critical) reports storage warning and readyz stays 200."""
    svc = configured_service
    body = poll(lambda: (lambda b: b if "local_path" in b["storage"] else None)(status_of(svc)), 20,
                "the writer's storage health in status")
    assert body["storage"]["status"] == "warning", body["storage"]
    assert body["storage"]["warning_percent"] == 0
    assert svc.get("/readyz", timeout=1.0)[0] == 200


# -- storage and retention ---------------------------------------------------------------------------------

def test_storage_describes_the_local_store(shared_service: Service) -> None:
    """GET /v1/audit/storage gives backend, audit_bytes (growing past 0 once files exist), human size, path and retention."""
    tenant = marker()
    post_ok(shared_service, {"events": [{"type": "auth", "tenant_id": tenant, "pad": "x" * 200}] * 20})
    poll(lambda: list(shared_service.store.rglob("audit-*")), 20, "a published file")

    def described() -> dict[str, Any] | None:
        status, body, _ = shared_service.get("/v1/audit/storage", timeout=1.0)
        assert status == 200, body
        return body if body["audit_bytes"] > 0 else None

    body = poll(described, 10, "audit_bytes > 0")
    assert body["backend"] == "local"
    assert isinstance(body["audit_bytes"], int) and not isinstance(body["audit_bytes"], bool)
    assert isinstance(body["audit_bytes_human"], str) and body["audit_bytes_human"]
    assert body["local_path"] == str(shared_service.store)
    assert body["retention_days"] == 1


def test_retention_get_on_local_backend(shared_service: Service) -> None:
    """GET /v1/audit/retention on the local backend says local, 1 day, configurable false, with a note."""
    status, body, _ = shared_service.get("/v1/audit/retention")
    assert status == 200, body
    assert body["backend"] == "local" and body["retention_days"] == 1 and body["configurable"] is False
    assert isinstance(body["note"], str) and body["note"]


def test_retention_days_come_from_the_environment(configured_service: Service) -> None:
    """AUDIT_SERVICE_LOCAL_RETENTION_DAYS=7 shows in both the storage and the retention body."""
    svc = configured_service
    assert svc.get("/v1/audit/storage")[1]["retention_days"] == 7
    assert svc.get("/v1/audit/retention")[1]["retention_days"] == 7


@pytest.mark.parametrize("body", [
    {"days": 30}, {"days": 0}, {}, {"days": "30"}, {"days": 1.5}, {"days": -1}, {"days": None}, {"days": True},
    {"retention": 30}, [30], 30, b"not json", b"",
], ids=repr)
def test_put_retention_is_400_on_local_or_bad_days(shared_service: Service, body: Any) -> None:
    """PUT /v1/audit/retention is 400 with a JSON detail on the local backend and for missing/non-integer/negative days."""
    response = http("PUT", f"{shared_service.url}/v1/audit/retention", body)
    assert response[0] == 400, response
    assert_error(response)
    assert shared_service.get("/v1/audit/retention")[1]["retention_days"] == 1


# -- verbosity ---------------------------------------------------------------------------------------------

def assert_verbosity_body(body: dict[str, Any], name: str) -> None:
    """The body of GET /v1/audit/verbosity for preset ``name``, as the contract lists it."""
    assert body["verbosity"] == name
    assert isinstance(body["label"], str) and body["label"] and isinstance(body["description"], str)
    assert body["allowed_types"] == sorted(body["allowed_types"])
    if name in PRESET_TYPES:
        assert (set(body["allowed_types"]), body["allow_all"]) == (PRESET_TYPES[name], False)
    else:
        assert body["allow_all"] is True
    presets = {item["name"]: item for item in body["available_presets"]}
    assert set(presets) == {*PRESET_TYPES, *ALLOW_ALL}
    for preset_name, item in presets.items():
        assert set(item) >= {"name", "label", "description", "allowed_types", "allow_all"}, item
        assert isinstance(item["label"], str) and item["label"] and isinstance(item["description"], str)
        assert item["allowed_types"] == sorted(item["allowed_types"])
        if preset_name in ALLOW_ALL:
            assert item["allow_all"] is True
        else:
            assert (set(item["allowed_types"]), item["allow_all"]) == (PRESET_TYPES[preset_name], False)


@pytest.mark.parametrize("name", [*PRESET_TYPES, *ALLOW_ALL, "no-such-preset"])
def test_verbosity_body_of_each_preset(name: str) -> None:
    """The verbosity body of each preset (and of an unknown name) lists its sorted types and every preset."""
    assert_verbosity_body(verbosity.describe_setting(verbosity.resolve(name)), name)


@pytest.mark.parametrize("name", [*PRESET_TYPES, *ALLOW_ALL, "no-such-preset"])
def test_verbosity_preset_keeps_the_documented_types(name: str) -> None:
    """Each preset keeps exactly its documented event types; verbose, il5 and unknown names keep all."""
    preset = verbosity.resolve(name)
    kept = {event_type for event_type in ALL_TYPES if preset.allows(event_type)}
    assert kept == PRESET_TYPES.get(name, set(ALL_TYPES))


def test_verbosity_get_on_the_running_service(shared_service: Service) -> None:
    """GET /v1/audit/verbosity on a verbose service answers the verbose preset and every available preset."""
    status, body, _ = shared_service.get("/v1/audit/verbosity")
    assert status == 200, body
    assert_verbosity_body(body, "verbose")


def _post_every_type(svc: Service) -> tuple[str, dict[str, Any]]:
    tenant = marker()
    events = [{"tenant_id": tenant, "type": event_type, "n": n} for n, event_type in enumerate(ALL_TYPES)]
    return tenant, post_ok(svc, {"events": events})


def _check_dropping(svc: Service, name: str, expected: set[Any]) -> None:
    """GET verbosity names the preset; a request of every type keeps, counts and stores only ``expected``."""
    status, body, _ = svc.get("/v1/audit/verbosity")
    assert status == 200, body
    assert_verbosity_body(body, name)
    before = status_of(svc)["accepted_events"]
    tenant, answer = _post_every_type(svc)
    assert answer["accepted"] == len(expected)
    assert status_of(svc)["accepted_events"] == before + len(expected)
    wait_records(svc, len(expected), tenant_id=tenant)
    sentinel = marker()
    post_ok(svc, {"tenant_id": sentinel, "type": "cas_grant"})
    wait_records(svc, 1, tenant_id=sentinel)
    stored = query_ok(svc, tenant_id=tenant)
    assert {record.get("type") for record in stored["records"]} == expected
    # Typed events with an id and a canonical ts (ingest splices received_at into their encodings): the same
    # types are kept, and each kept event is stored as posted.
    tenant = marker()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    posted = [{"audit_event_id": f"{tenant}-{n}", "ts": stamp, "tenant_id": tenant, "type": event_type}
              for n, event_type in enumerate(ALL_TYPES) if event_type is not None]
    typed = expected - {None}
    assert post_ok(svc, {"events": posted})["accepted"] == len(typed)
    records = wait_records(svc, len(typed), tenant_id=tenant)["records"]
    kept = {item["audit_event_id"]: item for item in posted if item["type"] in typed}
    assert {record["audit_event_id"]: {key: record[key] for key in posted[0]} for record in records} == kept


def test_default_verbosity_is_minimal_and_drops_other_types(service_factory) -> None:
    """Without AUDIT_LOG_VERBOSITY ingest keeps only cas_grant and cas_reconcile and counts only those as accepted."""
    svc = service_factory(start=False)
    svc.env.pop("AUDIT_LOG_VERBOSITY")
    svc.start_all()
    _check_dropping(svc, "minimal", PRESET_TYPES["minimal"])


def test_soc2_verbosity_drops_other_types(service_factory) -> None:
    """With AUDIT_LOG_VERBOSITY=soc2 ingest keeps only the IL2 types plus agent_delegation."""
    svc = service_factory(AUDIT_LOG_VERBOSITY="soc2")
    _check_dropping(svc, "soc2", PRESET_TYPES["soc2"])


def test_unknown_verbosity_name_keeps_every_type(configured_service: Service) -> None:
    """With an unknown AUDIT_LOG_VERBOSITY name ingest keeps and counts events of every type, typed or not."""
    _check_dropping(configured_service, "no-such-preset", set(ALL_TYPES))
