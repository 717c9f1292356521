"""The HTTP contract of GET /v1/audit/events (API-CONTRACT.md section 3), over real HTTP.

Every test marks its events with a fresh ``tenant_id``; events with explicit ``ts`` use days no other test uses.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.service import Service
from tests.test_api_contract import (
    CANONICAL_TS,
    assert_error,
    iso,
    marker,
    parse_z,
    post_ok,
    query,
    query_ok,
    wait_records,
)

EXACT_FILTERS = ("type", "outcome", "component", "correlation_id", "tenant_id", "source", "action",
                 "resource_ref", "subject_hash", "reason_code", "agent_name", "tool_name")


def _ids(body: dict[str, Any]) -> list[str]:
    return [record["audit_event_id"] for record in body["records"]]


def _post_at(svc: Service, tenant: str, stamps: dict[str, str]) -> None:
    """Post one event per name with the given ts (its audit_event_id is the name) and wait until all are readable."""
    events = [{"type": "auth", "tenant_id": tenant, "audit_event_id": f"{tenant}-{name}", "ts": ts}
              for name, ts in stamps.items()]
    random.shuffle(events)
    post_ok(svc, {"events": events})
    ordered = sorted(stamps.values())
    wait_records(svc, len(stamps), tenant_id=tenant, since=ordered[0], until=ordered[-1])


def _names(body: dict[str, Any], tenant: str) -> set[str]:
    return {record["audit_event_id"].removeprefix(f"{tenant}-") for record in body["records"]}


# -- time range -------------------------------------------------------------------------------------------

BOUNDS = {
    "before": "2026-03-01T09:59:59.999999Z",
    "at_since": "2026-03-01T10:00:00.000000Z",
    "middle": "2026-03-01T11:30:00.000000Z",
    "at_until": "2026-03-01T13:00:00.000000Z",
    "after": "2026-03-01T13:00:00.000001Z",
}


def test_since_and_until_are_inclusive(shared_service: Service) -> None:
    """An event exactly at since and one exactly at until are returned; one microsecond outside is not."""
    tenant = marker()
    _post_at(shared_service, tenant, BOUNDS)
    body = query_ok(shared_service, tenant_id=tenant, since="2026-03-01T10:00:00Z", until="2026-03-01T13:00:00Z")
    assert _names(body, tenant) == {"at_since", "middle", "at_until"}
    assert body["total"] == 3


@pytest.mark.parametrize("low, high", [("from_", "to"), ("since", "to"), ("from_", "until")])
def test_from_and_to_are_aliases(shared_service: Service, low: str, high: str) -> None:
    """``from`` is an alias of since and ``to`` of until, in any combination."""
    tenant = marker()
    _post_at(shared_service, tenant, BOUNDS)
    body = query_ok(shared_service, tenant_id=tenant, **{low: "2026-03-01T10:00:00Z", high: "2026-03-01T13:00:00Z"})
    assert _names(body, tenant) == {"at_since", "middle", "at_until"}


def test_timestamps_with_offset_are_converted_to_utc(shared_service: Service) -> None:
    """Bounds and event ts with a UTC offset are compared as the instants they denote."""
    tenant = marker()
    post_ok(shared_service, {"type": "auth", "tenant_id": tenant, "audit_event_id": f"{tenant}-x",
                             "ts": "2026-03-02T12:00:00+02:00"})
    body = wait_records(shared_service, 1, tenant_id=tenant, since="2026-03-02T10:00:00Z", until="2026-03-02T10:00:00Z")
    assert _ids(body) == [f"{tenant}-x"]
    assert parse_z(body["records"][0]["ts"]) == datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
    body = query_ok(shared_service, tenant_id=tenant, since="2026-03-02T05:00:00-05:00",
                    until="2026-03-02T05:00:00-05:00")
    assert _ids(body) == [f"{tenant}-x"]


@pytest.fixture(scope="module")
def configured_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One running service in local zone UTC+05:30 (TZ=IST-5:30), READ_MAX_DAYS=2 and READ_DEFAULT_LIMIT=3."""
    service = Service(tmp_path_factory.mktemp("configured"), TZ="IST-5:30", AUDIT_SERVICE_READ_MAX_DAYS="2",
                      AUDIT_SERVICE_READ_DEFAULT_LIMIT="3")
    try:
        yield service.start_all()
    finally:
        service.stop()


def test_naive_timestamps_mean_utc_whatever_the_server_zone(configured_service: Service) -> None:
    """On a server whose local zone is UTC+05:30, naive since/until are still read as UTC."""
    svc = configured_service
    tenant = marker()
    _post_at(svc, tenant, {"utc": "2026-03-03T10:00:00Z", "local": "2026-03-03T04:30:00Z"})
    body = query_ok(svc, tenant_id=tenant, since="2026-03-03T10:00:00", until="2026-03-03T10:00:00")
    assert _names(body, tenant) == {"utc"}
    body = query_ok(svc, tenant_id=tenant, since="2026-03-03T09:00:00", until="2026-03-03 11:00:00")
    assert _names(body, tenant) == {"utc"}


def test_receive_time_is_utc_whatever_the_server_zone(configured_service: Service) -> None:
    """On a server whose local zone is UTC+05:30, a missing ts and received_at are still UTC."""
    svc = configured_service
    tenant = marker()
    before = datetime.now(timezone.utc)
    post_ok(svc, {"type": "auth", "tenant_id": tenant})
    after = datetime.now(timezone.utc)
    record = wait_records(svc, 1, tenant_id=tenant)["records"][0]
    assert CANONICAL_TS.match(record["ts"])
    for field in ("ts", "received_at"):
        assert before - timedelta(seconds=1) <= parse_z(record[field]) <= after + timedelta(seconds=1), record


def _relative_events(svc: Service, tenant: str, offsets: dict[str, timedelta]) -> datetime:
    """Post one event per name at now + offset; return the 'now' used."""
    now = datetime.now(timezone.utc)
    events = [{"type": "auth", "tenant_id": tenant, "audit_event_id": f"{tenant}-{name}", "ts": iso(now + offset)}
              for name, offset in offsets.items()]
    random.shuffle(events)
    post_ok(svc, {"events": events})
    wait_records(svc, len(offsets), tenant_id=tenant, since=iso(now - timedelta(days=30)),
                 until=iso(now + timedelta(days=1)))
    return now


WINDOW_OFFSETS = {
    "m3": -timedelta(minutes=3), "m10": -timedelta(minutes=10), "m20": -timedelta(minutes=20),
    "m45": -timedelta(minutes=45), "h3": -timedelta(hours=3), "h8": -timedelta(hours=8),
    "h18": -timedelta(hours=18), "h30": -timedelta(hours=30), "d6": -timedelta(days=6),
    "d8": -timedelta(days=8), "future": timedelta(minutes=10),
}
WINDOW_EXPECTED = {
    "5m": {"m3"},
    "15m": {"m3", "m10"},
    "30m": {"m3", "m10", "m20"},
    "1h": {"m3", "m10", "m20", "m45"},
    "6h": {"m3", "m10", "m20", "m45", "h3"},
    "12h": {"m3", "m10", "m20", "m45", "h3", "h8"},
    "24h": {"m3", "m10", "m20", "m45", "h3", "h8", "h18"},
    "7d": {"m3", "m10", "m20", "m45", "h3", "h8", "h18", "h30", "d6"},
}


def test_window_values_set_since_back_from_now(shared_service: Service) -> None:
    """Each window (5m..7d) returns exactly the events from now minus the window up to now."""
    tenant = marker()
    _relative_events(shared_service, tenant, WINDOW_OFFSETS)
    for window, expected in WINDOW_EXPECTED.items():
        body = query_ok(shared_service, tenant_id=tenant, window=window)
        assert _names(body, tenant) == expected, window


def test_default_range_is_the_last_day(shared_service: Service) -> None:
    """Without since, until or window a query covers the last 24 hours up to now."""
    tenant = marker()
    _relative_events(shared_service, tenant, {"h23": -timedelta(hours=23), "h25": -timedelta(hours=25),
                                               "future": timedelta(minutes=10), "now": -timedelta(seconds=1)})
    body = query_ok(shared_service, tenant_id=tenant)
    assert _names(body, tenant) == {"h23", "now"}


def test_window_counts_back_from_given_until(shared_service: Service) -> None:
    """With until and window, the range is until minus the window up to until."""
    tenant = marker()
    _post_at(shared_service, tenant, {"in": "2026-03-04T11:30:00Z", "edge": "2026-03-04T11:00:00Z",
                                      "old": "2026-03-04T10:30:00Z", "later": "2026-03-04T12:00:01Z"})
    body = query_ok(shared_service, tenant_id=tenant, until="2026-03-04T12:00:00Z", window="1h")
    assert _names(body, tenant) == {"in", "edge"}


@pytest.mark.parametrize("window", ["2h", "1d", "60m", "7D", "abc", "5 m"])
def test_unknown_window_is_400(shared_service: Service, window: str) -> None:
    """A window outside 5m, 15m, 30m, 1h, 6h, 12h, 24h, 7d is 400 with a JSON detail."""
    response = query(shared_service, window=window)
    assert response[0] == 400, response
    assert_error(response)


@pytest.mark.parametrize("resolution", ["auto", "minute", "hour", "day"])
def test_time_resolution_values_are_accepted(shared_service: Service, resolution: str) -> None:
    """Each documented time_resolution is accepted and does not change which events match."""
    tenant = marker()
    _post_at(shared_service, tenant, BOUNDS)
    body = query_ok(shared_service, tenant_id=tenant, time_resolution=resolution,
                    since="2026-03-01T10:00:00Z", until="2026-03-01T13:00:00Z")
    assert _names(body, tenant) == {"at_since", "middle", "at_until"}


@pytest.mark.parametrize("resolution", ["second", "week", "AUTO-ish", "0"])
def test_unknown_time_resolution_is_400(shared_service: Service, resolution: str) -> None:
    """A time_resolution outside auto, minute, hour, day is 400 with a JSON detail."""
    response = query(shared_service, time_resolution=resolution)
    assert response[0] == 400, response
    assert_error(response)


@pytest.mark.parametrize("params", [
    {"since": "yesterday"}, {"until": "2026-02-30T00:00:00Z"}, {"from_": "not-a-date"}, {"to": "12:00"},
    {"since": "2026-03-01T25:00:00Z"}, {"until": "2026-03-01T10:00:00+99:00"},
], ids=str)
def test_unparsable_timestamp_is_400(shared_service: Service, params: dict[str, str]) -> None:
    """An unparsable since/from/until/to is 400 with a JSON detail."""
    response = query(shared_service, **params)
    assert response[0] == 400, response
    assert_error(response)


def test_since_after_until_is_400(shared_service: Service) -> None:
    """since one microsecond after until is 400; since equal to until is a valid empty-or-exact range."""
    response = query(shared_service, since="2026-03-01T10:00:00.000001Z", until="2026-03-01T10:00:00Z")
    assert response[0] == 400, response
    assert_error(response)
    query_ok(shared_service, since="2026-03-01T10:00:00Z", until="2026-03-01T10:00:00Z")


def test_range_over_default_max_days_is_400(shared_service: Service) -> None:
    """A range of exactly 31 days is served and one of 31 days plus a second is 400."""
    query_ok(shared_service, since="2026-01-01T00:00:00Z", until="2026-02-01T00:00:00Z")
    response = query(shared_service, since="2026-01-01T00:00:00Z", until="2026-02-01T00:00:01Z")
    assert response[0] == 400, response
    assert_error(response)


def test_read_limits_follow_the_environment(configured_service: Service) -> None:
    """AUDIT_SERVICE_READ_MAX_DAYS=2 refuses longer ranges and READ_DEFAULT_LIMIT=3 is the default limit."""
    svc = configured_service
    query_ok(svc, since="2026-01-01T00:00:00Z", until="2026-01-03T00:00:00Z")
    for params in ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-03T00:00:01Z"}, {"window": "7d"}):
        response = query(svc, **params)
        assert response[0] == 400, (params, response)
        assert_error(response)
    tenant = marker()
    post_ok(svc, {"events": [{"type": "auth", "tenant_id": tenant} for _ in range(5)]})
    body = wait_records(svc, 5, tenant_id=tenant)
    assert (body["limit"], len(body["records"]), body["total"], body["truncated"]) == (3, 3, 5, True)


# -- limit -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("limit", ["0", "-1", "-10000"])
def test_limit_below_one_is_4xx(shared_service: Service, limit: str) -> None:
    """A limit below 1 is a 4xx with a JSON detail."""
    assert_error(query(shared_service, limit=limit))


@pytest.mark.parametrize("limit", ["abc", "1.5", "1e3", "ten", "0x10"])
def test_non_integer_limit_is_4xx(shared_service: Service, limit: str) -> None:
    """A limit that is not an integer is a 4xx with a JSON detail."""
    assert_error(query(shared_service, limit=limit))


@pytest.mark.parametrize("limit, echoed", [("1", 1), ("7", 7), ("10000", 10000), ("10001", 10000),
                                           ("999999999999", 10000)])
def test_limit_is_clamped_to_10000_and_echoed(shared_service: Service, limit: str, echoed: int) -> None:
    """The response echoes the limit, silently clamped to 10000."""
    assert query_ok(shared_service, limit=limit, window="5m")["limit"] == echoed


def test_default_limit_is_1000(shared_service: Service) -> None:
    """Without a limit parameter the response echoes the default limit of 1000."""
    body = query_ok(shared_service, window="5m")
    assert body["limit"] == 1000
    assert isinstance(body["records"], list) and isinstance(body["total"], int)
    assert isinstance(body["truncated"], bool)


# -- filters -----------------------------------------------------------------------------------------------

def test_every_exact_match_filter_selects_only_its_event(shared_service: Service) -> None:
    """Each exact-match filter returns only the event whose field equals the value."""
    tenant = marker()
    base = {"type": "auth", "tenant_id": tenant, "correlation_id": f"{tenant}-corr"}
    events = []
    for name in EXACT_FILTERS:
        if name in ("tenant_id", "correlation_id"):
            continue
        events.append({**base, name: f"{name}-value-{tenant}", "audit_event_id": f"{tenant}-{name}"})
    events.append({**base, "correlation_id": f"{tenant}-other", "audit_event_id": f"{tenant}-correlation_id"})
    post_ok(shared_service, {"events": events})
    wait_records(shared_service, len(events), tenant_id=tenant)
    for name in EXACT_FILTERS:
        if name == "tenant_id":
            continue
        value = f"{tenant}-other" if name == "correlation_id" else f"{name}-value-{tenant}"
        body = query_ok(shared_service, tenant_id=tenant, **{name: value})
        assert _ids(body) == [f"{tenant}-{name}"], name
    assert query_ok(shared_service, tenant_id=tenant)["total"] == len(events)
    assert query_ok(shared_service, tenant_id=tenant[:-1])["total"] == 0


@pytest.mark.parametrize("name", [name for name in EXACT_FILTERS if name != "tenant_id"])
def test_exact_filters_match_whole_value_case_sensitively(shared_service: Service, name: str) -> None:
    """An exact-match filter does not match a prefix, a substring or another letter case of the value."""
    tenant = marker()
    value = f"Value-{name}-{tenant}"
    post_ok(shared_service, {"type": "auth", "tenant_id": tenant, name: value})
    assert wait_records(shared_service, 1, tenant_id=tenant, **{name: value})["total"] == 1
    for other in (value[:-1], value[1:], value.lower(), value.upper()):
        assert query_ok(shared_service, tenant_id=tenant, **{name: other})["total"] == 0, other


def test_capability_matches_capability_or_else_action(shared_service: Service) -> None:
    """capability matches the capability field, or action when capability is absent, never action otherwise."""
    tenant = marker()
    events = [
        {"audit_event_id": f"{tenant}-cap", "capability": "cap-x", "action": "act-y"},
        {"audit_event_id": f"{tenant}-action", "action": "cap-x"},
        {"audit_event_id": f"{tenant}-shadowed", "capability": "other", "action": "cap-x"},
        {"audit_event_id": f"{tenant}-null-cap", "capability": None, "action": "cap-x"},
        {"audit_event_id": f"{tenant}-empty-cap", "capability": "", "action": "cap-x"},
        {"audit_event_id": f"{tenant}-none"},
    ]
    post_ok(shared_service, [{"type": "auth", "tenant_id": tenant, **event} for event in events])
    wait_records(shared_service, len(events), tenant_id=tenant)
    body = query_ok(shared_service, tenant_id=tenant, capability="cap-x")
    assert _names(body, tenant) == {"cap", "action", "null-cap"}
    assert query_ok(shared_service, tenant_id=tenant, capability="act-y")["total"] == 0
    assert _names(query_ok(shared_service, tenant_id=tenant, capability="other"), tenant) == {"shadowed"}


def test_user_email_is_case_insensitive_substring(shared_service: Service) -> None:
    """user_email matches any event whose user_email contains the value, ignoring case."""
    tenant = marker()
    events = [
        {"audit_event_id": f"{tenant}-alice", "user_email": "Alice.Smith@Example.COM"},
        {"audit_event_id": f"{tenant}-bob", "user_email": "bob@example.com"},
        {"audit_event_id": f"{tenant}-carol", "user_email": "carol@elsewhere.org"},
        {"audit_event_id": f"{tenant}-none"},
    ]
    post_ok(shared_service, [{"type": "auth", "tenant_id": tenant, **event} for event in events])
    wait_records(shared_service, len(events), tenant_id=tenant)
    cases = {
        "alice.smith@example.com": {"alice"},
        "SMITH": {"alice"},
        "EXAMPLE.com": {"alice", "bob"},
        "@": {"alice", "bob", "carol"},
        "dave": set(),
    }
    for value, expected in cases.items():
        assert _names(query_ok(shared_service, tenant_id=tenant, user_email=value), tenant) == expected, value


def test_filters_combine_with_and(shared_service: Service) -> None:
    """Several filters together return only the events matching all of them."""
    tenant = marker()
    events = [
        {"audit_event_id": f"{tenant}-match", "type": "auth", "outcome": "success", "user_email": "a@x.io",
         "capability": "c1"},
        {"audit_event_id": f"{tenant}-outcome", "type": "auth", "outcome": "failure", "user_email": "a@x.io",
         "capability": "c1"},
        {"audit_event_id": f"{tenant}-type", "type": "cas_grant", "outcome": "success", "user_email": "a@x.io",
         "capability": "c1"},
        {"audit_event_id": f"{tenant}-email", "type": "auth", "outcome": "success", "user_email": "b@y.io",
         "capability": "c1"},
        {"audit_event_id": f"{tenant}-cap", "type": "auth", "outcome": "success", "user_email": "a@x.io",
         "capability": "c2"},
    ]
    post_ok(shared_service, [{"tenant_id": tenant, **event} for event in events])
    wait_records(shared_service, len(events), tenant_id=tenant)
    body = query_ok(shared_service, tenant_id=tenant, type="auth", outcome="success", user_email="X.IO",
                    capability="c1")
    assert _names(body, tenant) == {"match"}
    assert query_ok(shared_service, tenant_id=tenant, type="auth", outcome="success")["total"] == 3


# -- order, total, truncated -------------------------------------------------------------------------------

ORDER_STAMPS = {f"e{n}": f"2026-03-05T{n:02d}:{(7 * n) % 60:02d}:00.{n:06d}Z" for n in range(1, 9)}


def test_records_are_newest_first_by_ts(shared_service: Service) -> None:
    """Records come sorted by ts, newest first, whatever order they were posted in; limit=1 gives the newest."""
    tenant = marker()
    items = list(ORDER_STAMPS.items())
    random.Random(7).shuffle(items)
    for chunk in (items[:4], items[4:]):
        post_ok(shared_service, [{"type": "auth", "tenant_id": tenant, "audit_event_id": f"{tenant}-{name}", "ts": ts}
                                 for name, ts in chunk])
    params = {"tenant_id": tenant, "since": "2026-03-05T00:00:00Z", "until": "2026-03-05T23:59:59Z"}
    body = wait_records(shared_service, len(ORDER_STAMPS), **params)
    expected = [f"{tenant}-{name}" for name, _ in sorted(ORDER_STAMPS.items(), key=lambda item: item[1], reverse=True)]
    assert _ids(body) == expected
    assert [record["ts"] for record in body["records"]] == sorted(ORDER_STAMPS.values(), reverse=True)
    newest = query_ok(shared_service, limit=1, **params)
    assert _ids(newest) == expected[:1] and newest["total"] == len(ORDER_STAMPS)


@pytest.mark.parametrize("limit, truncated", [(2, True), (5, True), (6, False), (7, False)])
def test_total_counts_every_match_while_records_are_limited(shared_service: Service, limit: int,
                                                            truncated: bool) -> None:
    """total counts all 6 matches, records holds the newest ``limit`` of them and truncated is total > limit."""
    tenant = marker()
    stamps = {f"e{n}": f"2026-03-06T0{n}:00:00Z" for n in range(6)}
    _post_at(shared_service, tenant, stamps)
    body = query_ok(shared_service, tenant_id=tenant, limit=str(limit), since="2026-03-06T00:00:00Z",
                    until="2026-03-06T23:00:00Z")
    assert body["total"] == 6 and body["limit"] == limit and body["truncated"] is truncated
    assert _ids(body) == [f"{tenant}-e{n}" for n in range(5, 5 - min(limit, 6), -1)]
