"""The HTTP contract of POST /v1/audit/events (API-CONTRACT.md sections 1, 2, 5 and 6), over real HTTP.

Shared helpers for the API tests live here too; ``test_api_query`` and ``test_api_admin`` import them.
Every test marks its events with a fresh ``tenant_id`` so tests sharing one service never see each other's.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import os
import re
import signal
import socket
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.ops.helpers import Scrape
from tests.service import Service, http

VISIBLE_SECONDS = 2.0
CANONICAL_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
STORE_FILE = re.compile(r"^audit-\d{8}T\d{6}Z-.+\.ndjson\.gz$")
NAMED_FIELDS = (
    "audit_event_id", "ts", "type", "tenant_id", "subject_hash", "subject_ref", "actor_ref", "action",
    "outcome", "reason_code", "correlation_id", "component", "resource_ref", "pdp", "source",
)


# -- helpers shared by the API test modules ---------------------------------------------------------------

def marker(prefix: str = "t") -> str:
    """A tenant id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex}"


def header(headers: dict[str, str], name: str) -> str | None:
    """A response header, looked up case-insensitively."""
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def parse_z(text: str) -> datetime:
    """An ISO-8601 ``...Z`` string as an aware datetime."""
    assert isinstance(text, str) and ISO_Z.match(text), text
    return datetime.fromisoformat(text[:-1] + "+00:00")


def iso(moment: datetime) -> str:
    """An aware datetime in the canonical ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` form."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def assert_error(response: tuple[int, Any, dict[str, str]], low: int = 400, high: int = 499) -> dict[str, Any]:
    """The response is an error in [low, high] with a JSON ``{"detail": "<non-empty text>"}`` body."""
    status, body, headers = response
    assert low <= status <= high, (status, body)
    assert (header(headers, "Content-Type") or "").startswith("application/json"), headers
    assert isinstance(body, dict) and isinstance(body.get("detail"), str) and body["detail"], body
    return body


def post_ok(svc: Service, body: Any) -> dict[str, Any]:
    """POST events and require 202 ``{"accepted": int, "queued": int}``."""
    status, answer, _ = svc.post(body)
    assert status == 202, (status, answer)
    assert isinstance(answer["accepted"], int) and isinstance(answer["queued"], int), answer
    return answer


def query(svc: Service, timeout: float = 10.0, **params: Any) -> tuple[int, Any, dict[str, str]]:
    """GET /v1/audit/events with query parameters (``from_`` stands for ``from``)."""
    if "from_" in params:
        params["from"] = params.pop("from_")
    return svc.get(f"/v1/audit/events?{urllib.parse.urlencode(params)}", timeout=timeout)


def query_ok(svc: Service, **params: Any) -> dict[str, Any]:
    """A query that must answer 200 with the documented body."""
    status, body, _ = query(svc, **params)
    assert status == 200, (status, body, params)
    assert set(body) >= {"records", "total", "limit", "truncated"}, body
    return body


def wait_records(svc: Service, count: int, timeout: float = VISIBLE_SECONDS, **params: Any) -> dict[str, Any]:
    """Poll a query until it counts at least ``count`` matches (within ``timeout``); return its body."""
    deadline = time.monotonic() + timeout
    while True:
        body = query_ok(svc, **params)
        if body["total"] >= count:
            return body
        if time.monotonic() >= deadline:
            raise AssertionError(f"only {body['total']} of {count} events visible after {timeout}s: {params}")
        time.sleep(0.02)


def status_of(svc: Service) -> dict[str, Any]:
    """GET /v1/audit/status with the 1 s timeout that deployed health checks use."""
    status, body, _ = svc.get("/v1/audit/status", timeout=1.0)
    assert status == 200, (status, body)
    return body


def wide_range() -> dict[str, str]:
    """since/until covering the last 20 hours and the next minute."""
    now = datetime.now(timezone.utc)
    return {"since": iso(now - timedelta(hours=20)), "until": iso(now + timedelta(minutes=1))}


def one_event(svc: Service, tenant: str, **params: Any) -> dict[str, Any]:
    """The single stored event of a tenant, waited for within the visibility deadline."""
    body = wait_records(svc, 1, tenant_id=tenant, **(params or wide_range()))
    assert body["total"] == 1, body
    return body["records"][0]


# -- body shapes -------------------------------------------------------------------------------------------

def test_single_event_object_is_accepted(shared_service: Service) -> None:
    """A body that is one event object answers 202 with accepted 1 and the event becomes readable."""
    tenant = marker()
    answer = post_ok(shared_service, {"type": "auth", "tenant_id": tenant})
    assert answer["accepted"] == 1
    assert one_event(shared_service, tenant)["type"] == "auth"


def test_array_of_events_is_accepted(shared_service: Service) -> None:
    """A body that is an array of event objects accepts every event."""
    tenant = marker()
    answer = post_ok(shared_service, [{"type": "auth", "tenant_id": tenant, "n": n} for n in range(3)])
    assert answer["accepted"] == 3
    body = wait_records(shared_service, 3, tenant_id=tenant)
    assert sorted(record["n"] for record in body["records"]) == [0, 1, 2]


def test_events_wrapper_is_accepted(shared_service: Service) -> None:
    """A body ``{"events": [...]}`` of a producer-sized batch (100) accepts all of them."""
    tenant = marker()
    answer = post_ok(shared_service, {"events": [{"type": "auth", "tenant_id": tenant, "n": n} for n in range(100)]})
    assert answer["accepted"] == 100
    body = wait_records(shared_service, 100, tenant_id=tenant)
    assert body["total"] == 100 and {record["n"] for record in body["records"]} == set(range(100))


@pytest.mark.parametrize("raw", [b"5", b'"an event"', b"true", b"null", b"1.5"])
def test_scalar_body_is_400(shared_service: Service, raw: bytes) -> None:
    """A JSON scalar body is refused with 400 and a JSON detail."""
    response = shared_service.post(raw)
    assert response[0] == 400, response
    assert_error(response)


@pytest.mark.parametrize("shape", ["array-with-number", "array-with-string", "array-with-array",
                                   "wrapper-with-number", "wrapper-number", "wrapper-object"])
def test_non_object_events_are_400_and_nothing_is_stored(shared_service: Service, shape: str) -> None:
    """A body holding a non-object event (or ``{"events": <non-array>}``) is 400 and stores none of its events."""
    tenant = marker()
    good = {"type": "auth", "tenant_id": tenant, "probe": "rejected"}
    body = {
        "array-with-number": [good, 5],
        "array-with-string": [good, "event"],
        "array-with-array": [good, [good]],
        "wrapper-with-number": {"events": [good, 7]},
        "wrapper-number": {"events": 5},
        "wrapper-object": {"events": good},
    }[shape]
    before = status_of(shared_service)["accepted_events"]
    response = shared_service.post(body)
    assert response[0] == 400, response
    assert_error(response)
    assert status_of(shared_service)["accepted_events"] == before
    post_ok(shared_service, {"type": "auth", "tenant_id": tenant, "probe": "sentinel"})
    found = wait_records(shared_service, 1, tenant_id=tenant)
    assert [record["probe"] for record in found["records"]] == ["sentinel"]


@pytest.mark.parametrize("stamp", ["\u0662\u0660\u0662\u0666-01-01T00:00:00.000000Z",  # Arabic-Indic digits
                                   "\uff12\uff10\uff12\uff16-01-01T00:00:00.000000Z",  # fullwidth digits
                                   "0000-01-01T00:00:00.000000Z"])
@pytest.mark.parametrize("batch", [1, 3])
def test_a_ts_that_only_looks_canonical_is_400_and_the_writer_goes_on_storing(shared_service: Service, stamp: str,
                                                                               batch: int) -> None:
    """A ``ts`` in the canonical shape with other than ASCII digits, or in year 0000, is 400 (one event, or
    among others in a batch), never stored: such a stamp once passed as canonical, and every flush after it
    failed (Arrow cannot read it), or its file's name broke /v1/audit/verify. Events posted next are stored."""
    tenant = marker()
    events = [{"type": "auth", "tenant_id": tenant, "ts": "2026-01-01T00:00:00.000000Z", "n": n} for n in range(batch)]
    events[-1]["ts"] = stamp
    before = status_of(shared_service)["accepted_events"]
    response = shared_service.post({"events": events})
    assert response[0] == 400, response
    assert "ts" in assert_error(response)["detail"]
    assert status_of(shared_service)["accepted_events"] == before
    post_ok(shared_service, {"type": "auth", "tenant_id": tenant, "probe": "sentinel"})
    found = wait_records(shared_service, 1, tenant_id=tenant)
    assert [record.get("probe") for record in found["records"]] == ["sentinel"]
    assert http("GET", f"{shared_service.url}/v1/audit/verify")[0] == 200


def test_the_first_and_last_representable_stamps_are_stored_and_listed(shared_service: Service) -> None:
    """Year 1 (as ISO-8601 or epoch seconds) is stored as ``0001-…`` (the C library's ``%Y`` once wrote it
    ``1-…``, a shape no flush could take), and the last microsecond of year 9999 is stored and its file
    listed (its end, one second later, overflowed and failed /v1/audit/verify and /v1/audit/storage); the
    writer sets nothing aside and no flush fails."""
    tenant = marker()
    before = shared_service.writer_status()
    posted = {"iso year 1": "0001-01-01T00:00:00Z", "epoch year 1": -62135596800,
              "last instant": "9999-12-31T23:59:59.999999Z"}
    post_ok(shared_service, [{"type": "auth", "tenant_id": tenant, "case": case, "ts": stamp}
                             for case, stamp in posted.items()])
    deadline = time.monotonic() + VISIBLE_SECONDS + 10
    while True:
        stored = {event["case"]: event["ts"] for event in shared_service.stored_events() if event.get("tenant_id") == tenant}
        if len(stored) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert stored == {"iso year 1": "0001-01-01T00:00:00.000000Z", "epoch year 1": "0001-01-01T00:00:00.000000Z",
                      "last instant": "9999-12-31T23:59:59.999999Z"}
    after = shared_service.writer_status()
    assert (after["failed_flushes"], after["unparsable_lines"]) == (before["failed_flushes"], before["unparsable_lines"])
    assert http("GET", f"{shared_service.url}/v1/audit/verify")[0] == 200
    assert http("GET", f"{shared_service.url}/v1/audit/storage")[0] == 200
    # Reads at both ends of the calendar: day arithmetic there overflowed (a 500).
    first = query_ok(shared_service, since="0001-01-01T00:00:00Z", until="0001-01-02T00:00:00Z", tenant_id=tenant)
    assert sorted(record["case"] for record in first["records"]) == ["epoch year 1", "iso year 1"]
    last = query_ok(shared_service, since="9999-12-31T23:59:00Z", until="9999-12-31T23:59:59.999999Z",
                    tenant_id=tenant)
    assert [record["case"] for record in last["records"]] == ["last instant"]
    for path in ("/v1/audit/stats?since=0001-01-01T00:00:00Z&until=0001-01-02T00:00:00Z&bucket=1h",
                 "/v1/audit/verify?since=0001-01-01T00:00:00Z", "/v1/audit/events?until=0001-01-02T00:00:00Z"):
        assert http("GET", f"{shared_service.url}{path}")[0] == 200, path
    export = f"{shared_service.url}/v1/audit/export?since=0001-01-01T00:00:00Z&until=0001-01-02T00:00:00Z&tenant_id={tenant}"
    with urllib.request.urlopen(export, timeout=10) as response:  # NDJSON, not one JSON document
        assert response.status == 200 and len(response.read().splitlines()) == 2


@pytest.mark.parametrize("raw", [b'{"type": "auth",', b"", b'{"type": "auth",}', b"\xff\xfe{}", b"[{}, {}",
                                 b"{'type': 'auth'}"])
def test_malformed_json_is_400(shared_service: Service, raw: bytes) -> None:
    """A body that is not valid JSON is refused with 400 and a JSON detail."""
    response = shared_service.post(raw)
    assert response[0] == 400, response
    assert_error(response)


WRONG_TYPES = [
    {"type": {"nested": "object"}},
    {"type": 5},
    {"type": ["auth"]},
    {"type": True},
    {"ts": True},
    {"ts": False},
    {"ts": "not a timestamp"},
    {"ts": "2026-13-45T25:61:00Z"},
    {"ts": ""},
    {"ts": {"epoch": 1}},
    {"ts": [1700000000]},
    {"ts": 1e20},
    *({name: 12345} for name in NAMED_FIELDS if name != "ts"),
    *({name: {"a": 1}} for name in NAMED_FIELDS if name != "ts"),
]


@pytest.mark.parametrize("fields", WRONG_TYPES, ids=lambda fields: orjson.dumps(fields).decode())
def test_wrong_field_types_are_4xx_never_500(shared_service: Service, fields: dict[str, Any]) -> None:
    """An event whose named field has the wrong type (or an unparsable ts) is a 4xx with a JSON detail."""
    event = {"type": "auth", "tenant_id": marker(), **fields}
    response = shared_service.post({"events": [{"type": "auth", "tenant_id": event["tenant_id"]}, event]})
    assert_error(response)


@pytest.mark.parametrize("method, path, expected", [
    ("GET", "/no/such/path", 404),
    ("GET", "/v1/audit/nothing", 404),
    ("POST", "/v2/audit/events", 404),
    ("DELETE", "/v1/audit/events", 405),
    ("PUT", "/v1/audit/events", 405),
    ("POST", "/healthz", 405),
    ("DELETE", "/v1/audit/retention", 405),
])
def test_unknown_path_and_method_are_json_errors(shared_service: Service, method: str, path: str,
                                                  expected: int) -> None:
    """An unknown path is 404 and a wrong method is 405, both with a JSON detail body."""
    response = http(method, f"{shared_service.url}{path}", b"{}" if method != "GET" else None)
    assert response[0] == expected, response
    assert_error(response, expected, expected)


# -- normalization -----------------------------------------------------------------------------------------

def test_null_valued_keys_are_dropped(shared_service: Service) -> None:
    """Keys posted with a null value are absent from the stored event; null ts and id are filled in."""
    tenant = marker()
    post_ok(shared_service, {"type": "auth", "tenant_id": tenant, "outcome": None, "user_email": None,
                             "agent_name": None, "details": {"kept": 1}, "ts": None, "audit_event_id": None})
    record = one_event(shared_service, tenant)
    assert not {"outcome", "user_email", "agent_name"} & set(record), record
    assert record["details"] == {"kept": 1}
    assert None not in record.values(), record
    assert CANONICAL_TS.match(record["ts"]), record
    assert uuid.UUID(record["audit_event_id"]).version == 4


def test_audit_event_id_is_a_new_uuid4_when_absent(shared_service: Service) -> None:
    """Events posted without audit_event_id each get a distinct canonical UUID4."""
    tenant = marker()
    post_ok(shared_service, [{"type": "auth", "tenant_id": tenant} for _ in range(5)])
    records = wait_records(shared_service, 5, tenant_id=tenant)["records"]
    ids = [record["audit_event_id"] for record in records]
    assert len(set(ids)) == 5, ids
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and str(parsed) == value, value


def test_producer_audit_event_id_is_kept(shared_service: Service) -> None:
    """A producer-given audit_event_id (UUID or any string) is stored unchanged."""
    tenant = marker()
    given = {f"producer-chosen-{uuid.uuid4().hex}", str(uuid.uuid4()), str(uuid.uuid1())}
    post_ok(shared_service, [{"type": "auth", "tenant_id": tenant, "audit_event_id": value} for value in given])
    records = wait_records(shared_service, 3, tenant_id=tenant)["records"]
    assert {record["audit_event_id"] for record in records} == given


def test_ts_defaults_to_receive_time(shared_service: Service) -> None:
    """An event without ts gets the receive time as ISO-8601 UTC with microseconds and Z."""
    tenant = marker()
    before = datetime.now(timezone.utc)
    post_ok(shared_service, {"type": "auth", "tenant_id": tenant})
    after = datetime.now(timezone.utc)
    record = one_event(shared_service, tenant)
    assert CANONICAL_TS.match(record["ts"]), record["ts"]
    assert before - timedelta(milliseconds=50) <= parse_z(record["ts"]) <= after + timedelta(milliseconds=50)


@pytest.mark.parametrize("epoch, expected", [
    (1700000000, "2023-11-14T22:13:20.000000Z"),
    (1700000000.25, "2023-11-14T22:13:20.250000Z"),
    (0, "1970-01-01T00:00:00.000000Z"),
])
def test_numeric_ts_is_epoch_seconds(shared_service: Service, epoch: float, expected: str) -> None:
    """A numeric ts is read as epoch seconds: the event is found at that instant and reads back as ISO-8601 Z."""
    tenant = marker()
    post_ok(shared_service, {"type": "auth", "tenant_id": tenant, "ts": epoch})
    record = one_event(shared_service, tenant, since=expected, until=expected)
    assert parse_z(record["ts"]) == parse_z(expected), record


def test_unknown_fields_are_returned_unchanged(shared_service: Service) -> None:
    """Fields outside the named ones (nested objects, numbers, booleans, unicode) read back exactly as posted."""
    tenant = marker()
    extra = {
        "user_email": "Ünïcødé.User@Example.COM",
        "capability": "cas:read",
        "agent_name": "agent-😀",
        "tool_name": "tool \"quoted\"\nline",
        "details": {"nested": {"deeper": [1, 2.5, "three", True, False, {"x": []}]}, "empty": {}, "list": []},
        "count": 42,
        "negative": -7,
        "big": 2**53 + 1,
        "ratio": 0.1,
        "pi": 3.141592653589793,
        "flag_true": True,
        "flag_false": False,
        "zero": 0,
        "empty_string": "",
        "clé_日本語": "値 ✓ — émoji 🎉",
        "array_top": [{"a": 1}, ["b"], "c"],
    }
    named = {"type": "tool_call", "tenant_id": tenant, "subject_hash": "sh", "subject_ref": "sr",
             "actor_ref": "ar", "action": "act", "outcome": "success", "reason_code": "rc",
             "correlation_id": "cid", "component": "comp", "resource_ref": "rr", "pdp": "opa", "source": "src"}
    post_ok(shared_service, {**named, **extra})
    record = one_event(shared_service, tenant)
    for key, value in {**named, **extra}.items():
        assert key in record, key
        assert orjson.dumps(record[key], option=orjson.OPT_SORT_KEYS) == orjson.dumps(value, option=orjson.OPT_SORT_KEYS), key


def test_received_at_is_server_time(shared_service: Service) -> None:
    """Every stored event carries received_at, the server's receive time, even when ts is far in the past."""
    tenant = marker()
    before = datetime.now(timezone.utc)
    post_ok(shared_service, {"type": "auth", "tenant_id": tenant, "ts": "2026-01-02T03:04:05Z"})
    after = datetime.now(timezone.utc)
    record = one_event(shared_service, tenant, since="2026-01-02T03:04:05Z", until="2026-01-02T03:04:05Z")
    received = parse_z(record["received_at"])
    assert before - timedelta(milliseconds=50) <= received <= after + timedelta(milliseconds=50), record


# -- durability and visibility -----------------------------------------------------------------------------

def test_acknowledged_events_are_readable_within_two_seconds(shared_service: Service) -> None:
    """Each of ten consecutive acknowledged requests is visible to a query within 2 s of its 202."""
    tenant = marker()
    for round_ in range(10):
        post_ok(shared_service, [{"type": "auth", "tenant_id": tenant, "round": round_, "n": n} for n in range(5)])
        acked = time.monotonic()
        body = wait_records(shared_service, 5 * (round_ + 1), tenant_id=tenant)
        assert time.monotonic() - acked <= VISIBLE_SECONDS + 0.5
        assert body["total"] == 5 * (round_ + 1)


def _stored_by_day(svc: Service, tenant: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Published store files holding events of ``tenant``: ``YYYY/MM/DD`` → [(file name, event)]."""
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for path in sorted(svc.store.rglob("audit-*.ndjson*")):
        if path.name.endswith(".parquet"):
            continue
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        for line in data.decode("utf-8").splitlines():
            event = orjson.loads(line)
            if event.get("tenant_id") == tenant:
                day = "/".join(path.relative_to(svc.store).parts[:3])
                found.setdefault(day, []).append((path.name, event))
    return found


def test_events_are_partitioned_by_their_own_ts(shared_service: Service) -> None:
    """Two events of one request with ts on different days are filed under their own day directories."""
    tenant = marker()
    late = {"type": "auth", "tenant_id": tenant, "ts": "2026-02-04T00:00:00.500000Z", "day": "04"}
    early = {"type": "auth", "tenant_id": tenant, "ts": "2026-02-03T23:59:59.500000Z", "day": "03"}
    post_ok(shared_service, {"events": [late, early]})
    deadline = time.monotonic() + 20
    stored = _stored_by_day(shared_service, tenant)
    while sum(len(items) for items in stored.values()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        stored = _stored_by_day(shared_service, tenant)
    assert set(stored) == {"2026/02/03", "2026/02/04"}, stored
    assert [event["day"] for _, event in stored["2026/02/03"]] == ["03"]
    assert [event["day"] for _, event in stored["2026/02/04"]] == ["04"]
    for items in stored.values():
        for name, _ in items:
            assert STORE_FILE.match(name), name
    first_day = query_ok(shared_service, tenant_id=tenant, since="2026-02-03T00:00:00Z",
                         until="2026-02-03T23:59:59.999999Z")
    assert [record["day"] for record in first_day["records"]] == ["03"]
    second_day = query_ok(shared_service, tenant_id=tenant, since="2026-02-04T00:00:00Z",
                          until="2026-02-04T23:59:59.999999Z")
    assert [record["day"] for record in second_day["records"]] == ["04"]


# -- the bounded queue ------------------------------------------------------------------------------------

def _queue_settled(svc: Service) -> None:
    """Wait until the service's own start event is stored and nothing is queued.

    The service's own events (service_start, audit_read) pass through the same queue; service_start is
    queued once the writer first answers, which may be after the service reports ready.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = status_of(svc)
        trail = status["self_audit"]
        if status["queue_size"] == 0 and trail["recorded"] >= 1 and trail["pending"] == 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"the queue never settled: {status}")


def test_queue_full_is_503_all_or_nothing(service_factory) -> None:
    """With a queue of 5, a request of 6+ events is 503 "audit queue full" with Retry-After and counted as rejected."""
    svc = service_factory(AUDIT_SERVICE_QUEUE_MAX_SIZE="5")
    assert status_of(svc)["queue_max_size"] == 5
    refused, accepted = marker("refused"), marker("accepted")
    for size in (6, 10):
        before = status_of(svc)["rejected_events"]
        status, body, headers = svc.post({"events": [{"type": "auth", "tenant_id": refused}] * size})
        assert (status, body) == (503, {"detail": "audit queue full"})
        retry_after = header(headers, "Retry-After")
        assert retry_after is not None and retry_after.strip().isdigit() and int(retry_after) >= 1, headers
        assert status_of(svc)["rejected_events"] == before + size
    _queue_settled(svc)
    assert post_ok(svc, {"events": [{"type": "auth", "tenant_id": accepted}] * 5})["accepted"] == 5
    wait_records(svc, 5, tenant_id=accepted)
    assert query_ok(svc, tenant_id=refused)["total"] == 0


@contextlib.contextmanager
def _queue_held_full(svc: Service, tenant: str) -> Iterator[None]:
    """The writer stopped (it cannot acknowledge, so what is sent stays queued) and a post of 5 events of
    ``tenant`` filling the queue of 5 while the body runs; then the writer goes on and that post is 202."""
    writer_pid = svc.procs["writer"].pid
    os.kill(writer_pid, signal.SIGSTOP)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            held = pool.submit(svc.post, {"events": [{"type": "auth", "tenant_id": tenant}] * 5}, 30.0)
            deadline = time.monotonic() + 10
            while status_of(svc)["queue_size"] < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert status_of(svc)["queue_size"] == 5
            yield
            os.kill(writer_pid, signal.SIGCONT)
            assert held.result(timeout=30)[0] == 202
    finally:
        os.kill(writer_pid, signal.SIGCONT)


def test_a_full_queue_refuses_before_reading_the_body(service_factory) -> None:
    """While the queue is full, a request is 503 at once (not parsed: even a malformed body); then all is well."""
    svc = service_factory(AUDIT_SERVICE_QUEUE_MAX_SIZE="5")
    _queue_settled(svc)
    tenant = marker("held")
    with _queue_held_full(svc, tenant):
        status, body, headers = http("POST", f"{svc.url}/v1/audit/events", b"{not json",
                                     headers={"Content-Type": "application/json"})
        assert (status, body) == (503, {"detail": "audit queue full"})
        assert header(headers, "Retry-After") is not None
        assert Scrape(f"{svc.url}/metrics").value("auditlake_ingest_requests_refused_unread_total") == 1
    assert svc.post(b"{not json")[0] == 400
    wait_records(svc, 5, tenant_id=tenant)


def test_a_queue_that_fills_while_a_body_arrives_refuses_it_unparsed(service_factory) -> None:
    """A post passes the first check (room in the queue) and its body arrives slowly; meanwhile another
    post fills the queue. Once its body is read the post is 503 "audit queue full" without a parse (a
    malformed body, not a 400), counted as refused unread, not as rejected events."""
    svc = service_factory(AUDIT_SERVICE_QUEUE_MAX_SIZE="5")
    _queue_settled(svc)
    tenant = marker("filler")
    port = int(urllib.parse.urlsplit(svc.url).port)
    body = b'{"events": [{"type": "auth"} not json ' + b" " * 4000 + b"]}"
    before = Scrape(f"{svc.url}/metrics")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
        slow.sendall(b"POST /v1/audit/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:100])
        time.sleep(0.5)  # its handler has started: the queue was empty then
        with _queue_held_full(svc, tenant):
            slow.sendall(body[100:])
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                answer += slow.recv(65536)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"retry-after" in head.lower(), head
    assert orjson.loads(payload) == {"detail": "audit queue full"}
    after = Scrape(f"{svc.url}/metrics")
    assert after.value("auditlake_ingest_requests_refused_unread_total") == \
        before.value("auditlake_ingest_requests_refused_unread_total") + 1
    assert after.value("auditlake_ingest_invalid_requests_total") == before.value("auditlake_ingest_invalid_requests_total")
    assert after.value("auditlake_ingest_events_rejected_total") == before.value("auditlake_ingest_events_rejected_total")
    wait_records(svc, 5, tenant_id=tenant)
