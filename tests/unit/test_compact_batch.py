"""The compact-JSON fast path gives exactly the general path's lines, and steps aside for anything unusual."""

from __future__ import annotations

import copy
import json
import random
import uuid
from typing import Any

import orjson
import pytest

from ingest.body import Rejected
from ingest.compact_batch import Prepared, _lines_within_depth, canonical_events, has_control_bytes, prepare, prepare_single
from ingest.hardening import MAX_DEPTH, check_posted, encode_events, guard_events
from shared import typed_columns
from shared.errors import EventError
from shared.events import canonical_stamps, canonical_ts, normalize_event

RECEIVED = "2026-11-29T08:00:00.123456Z"
LIMIT = 1 << 20


def normalized(posted: list[Any], tenant: str | None = None) -> list[dict[str, Any]]:
    """The events as the general path stores them (the structural byte checks aside)."""
    check_posted(posted)
    events = [normalize_event(raw, RECEIVED, index) for index, raw in enumerate(posted)]
    guard_events(events, tenant)
    return events


def general(posted: list[Any], tenant: str | None = None) -> list[bytes]:
    """What ingest stores when the fast path declines."""
    return encode_events(normalized(posted, tenant), LIMIT)


def fast_prepared(posted: list[Any], tenant: str | None = None, limit: int = LIMIT) -> Prepared | None:
    """The fast path on ``posted`` sent as a compact ``{"events": [...]}`` body (``posted`` is left alone)."""
    body = orjson.dumps({"events": posted})
    document = orjson.loads(body)
    encoded = canonical_events(body, document)
    assert encoded is not None
    return prepare(document["events"], encoded, body, RECEIVED, tenant, limit)


def fast(posted: list[Any], tenant: str | None = None, limit: int = LIMIT) -> list[bytes] | None:
    """The fast path's lines, or None when it declines."""
    prepared = fast_prepared(posted, tenant, limit)
    return None if prepared is None else lines_of(prepared[0])


def lines_of(payload: bytes) -> list[bytes]:
    """The lines of NDJSON."""
    assert payload.endswith(b"\n")
    return payload[:-1].split(b"\n")


def copied(events: list[Any], copies: int) -> list[Any]:
    """Each event ``copies`` times in a row: a lone event becomes a batch whose events share their keys."""
    return [copy.deepcopy(item) for item in events for _ in range(copies)]


def event(**fields: Any) -> dict[str, Any]:
    """A realistic event with an id, a canonical ts and a nested value."""
    base = {"audit_event_id": str(uuid.uuid4()), "ts": "2026-11-29T07:59:58.000001Z", "type": "auth",
            "tenant_id": "t1", "outcome": "allow", "user_email": "a@example.com",
            "details": {"ip": "10.0.0.1", "scopes": ["repo:read"], "latency_ms": 12, "ratio": 0.5}}
    base.update(fields)
    return base


ACCEPTED = {
    "realistic": [event(), event(type="cas_grant", component="slack-bot")],
    "unicode": [event(actor_ref="usér:Zoë", note="日本語 ✓")],
    "epoch ts": [event(ts=1764403200.25)],
    "integer epoch ts": [event(ts=1764403200)],
    "offset ts": [event(ts="2026-11-29T09:00:00+01:00")],
    "date-only precision ts": [event(ts="2026-11-29T07:59:58Z")],
    "missing ts": [{k: v for k, v in event().items() if k != "ts"}],
    "leap day": [event(ts="2028-02-29T00:00:00.000000Z")],
    "month ends": [event(ts="2026-04-30T23:59:59.999999Z"), event(ts="2026-12-31T00:00:00.000000Z")],
    "scalars only": [{"audit_event_id": "id-1", "ts": "2026-11-29T07:00:00.000000Z", "type": "auth", "n": 3}],
    "nested to the limit": [event(details=json.loads("[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3)))],
    "big allowed integer": [event(count=2**64 - 1, low=-(2**63))],
    "escapes outside the named fields": [event(details={"msg": "line 1\nline 2\t\x00", "q": 'say "hi"'})],
    "escaped quote in a named field": [event(action='say "hi" \\ back')],
    "named keys nested in a value": [event(details={"type": 5, "tenant_id": None, "ts": [1]})],
    "posted received_at": [event(received_at="2020-01-01T00:00:00Z"), event()],
    "many events": [event(n=index) for index in range(40)],
    "two at the limit side by side": [event(details=json.loads("[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3)))] * 2,
    "brackets in strings": [event(note="[{" * 40, details={"a": [[["]]]"]]]})],
    "nested to the limit, brackets in strings": [
        event(note="{" * 40, details=json.loads("[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3)))],
}


@pytest.mark.parametrize("copies", [1, 3])
@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_fast_path_lines_equal_the_general_path(name: str, copies: int) -> None:
    posted = copied(ACCEPTED[name], copies)
    prepared = fast_prepared(posted)
    assert prepared is not None, name
    payload, columns = prepared
    events = normalized(copy.deepcopy(posted))
    assert lines_of(payload) == encode_events(events, LIMIT)
    if columns is not None:
        assert columns == typed_columns.encode(events, RECEIVED, orjson.dumps({"events": posted}))


def test_events_sharing_their_keys_get_their_typed_fields_from_the_fast_path() -> None:
    """Typed fields come from the column checks when the events share their keys and only gain received_at,
    and from ``prepare_single`` for a usual single event; otherwise the caller encodes the completed events."""
    shared_keys = [event(), event(type="cas_grant", user_email="b\x7fc"), event(outcome="deny")]
    prepared = fast_prepared(shared_keys)
    assert prepared is not None and prepared[1] is not None
    expected = typed_columns.encode(normalized(copy.deepcopy(shared_keys)), RECEIVED, orjson.dumps({"events": shared_keys}))
    assert prepared[1] == expected
    request = dict(zip(("count", "received_at", "ts", *typed_columns.FIELDS), orjson.loads(prepared[1])))
    assert request["type"] == "auth\x7fcas_grant\x7fauth"
    assert request["user_email"] == ["a@example.com", "b\x7fc", "a@example.com"]
    single = [event()]
    prepared = fast_prepared(single)
    assert prepared is not None and prepared[1] == typed_columns.encode(normalized(copy.deepcopy(single)), RECEIVED)
    for declined in ([event(), event(component="bot")], [event(ts=1764403200)],
                     [event(ts=1764403200), event(ts=1764403201)]):
        prepared = fast_prepared(declined)
        assert prepared is not None and prepared[1] is None


def test_missing_ids_are_generated_uuids() -> None:
    posted = [{"ts": "2026-11-29T07:00:00.000000Z", "type": "auth"} for _ in range(3)]
    lines = fast(posted)
    assert lines is not None
    ids = [orjson.loads(line)["audit_event_id"] for line in lines]
    assert len(set(ids)) == 3 and all(uuid.UUID(value).version == 4 for value in ids)
    assert all(orjson.loads(line)["received_at"] == RECEIVED for line in lines)


@pytest.mark.parametrize("tenant_field", [{}, {"tenant_id": "acme"}])
def test_bound_tenant_is_filled_in_like_the_general_path(tenant_field: dict[str, str]) -> None:
    posted = [{"audit_event_id": "x", "ts": "2026-11-29T07:00:00.000000Z", "type": "auth", **tenant_field}]
    assert fast(posted, "acme") == general(copy.deepcopy(posted), "acme")


DECLINED = {
    "null value": [event(outcome=None)],
    "non-string named field": [event(type={"x": 1})],
    "numeric named field": [event(tenant_id=7)],
    "boolean ts": [event(ts=True)],
    "control character in a named field": [event(action="read\nwrite")],
    "control character in ts": [event(ts="2026-01-01T00:00:00\x00")],
    "C1 control character": [event(reason_code="x\x85y")],
    "DEL": [event(outcome="x\x7fy")],
    "control character among escapes": [event(details={"q": 'say "hi"'}, action="read\x1bwrite")],
    "too deep among shallow ones": [event(), event(), event(details=json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)),
                                    event()],
    "deep and bracketed": [event(note="[" * 40, details=json.loads("{\"a\":" * MAX_DEPTH + "1" + "}" * MAX_DEPTH))],
    "invalid day": [event(ts="2026-02-30T00:00:00.000000Z")],
    "not a date": [event(ts="yesterday")],
    "service-only type": [event(type="audit_read")],
    "other tenant": [event(tenant_id="other")],
    "too deep": [event(details=json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH))],
    "not an object": [event(), "text"],
    "empty": [],
}


@pytest.mark.parametrize("copies", [1, 3])
@pytest.mark.parametrize("name", sorted(DECLINED))
def test_fast_path_declines_what_the_general_path_must_judge(name: str, copies: int) -> None:
    assert fast(copied(DECLINED[name], copies), "t1") is None


def single_prepared(posted: Any, tenant: str | None = None, limit: int = LIMIT, shape: str = "object") -> Prepared | None:
    """``prepare_single`` on one event sent alone (``object``) or as ``{"events": [...]}`` (``envelope``)."""
    body = orjson.dumps(posted if shape == "object" else {"events": [posted]})
    document = orjson.loads(body)
    encoded = canonical_events(body, document)
    assert encoded is not None and len(encoded) == 1
    return prepare_single(document if shape == "object" else document["events"][0], encoded[0], body, RECEIVED,
                          tenant, limit)


SINGLE_TAKEN = {
    "realistic": event(),
    "scalars only": {"audit_event_id": "id-1", "ts": "2026-11-29T07:00:00.000000Z", "type": "auth", "n": 3},
    "unicode": event(actor_ref="usér:Zoë", note="日本語 ✓"),
    "nested to the limit": event(details=json.loads("[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3))),
    "big allowed integer": event(count=2**64 - 1, low=-(2**63), flag=True),
    "typed extra field not a string": event(user_email=5, agent_name=["a"]),
    "only some typed fields": {"audit_event_id": "x", "ts": "2026-11-29T07:00:00.000000Z"},
    "month end": event(ts="2026-12-31T23:59:59.999999Z"),
    "named keys nested in a value": event(details={"type": 5, "tenant_id": None, "ts": [1]}),
}


@pytest.mark.parametrize("shape", ["object", "envelope"])
@pytest.mark.parametrize("name", sorted(SINGLE_TAKEN))
def test_a_single_event_takes_the_short_path_to_the_general_paths_line_and_typed_fields(name: str, shape: str) -> None:
    posted = SINGLE_TAKEN[name]
    prepared = single_prepared(copy.deepcopy(posted), shape=shape)
    assert prepared is not None, name
    events = normalized([copy.deepcopy(posted)])
    assert lines_of(prepared[0]) == encode_events(events, LIMIT)
    assert prepared[1] == typed_columns.encode(events, RECEIVED, orjson.dumps(posted))
    assert prepared == (fast_prepared([posted])[0], typed_columns.encode(events, RECEIVED))


SINGLE_LEFT_TO_PREPARE = {
    "missing id": {"ts": "2026-11-29T07:00:00.000000Z", "type": "auth"},
    "missing ts": {k: v for k, v in event().items() if k != "ts"},
    "epoch ts": event(ts=1764403200.25),
    "offset ts": event(ts="2026-11-29T09:00:00+01:00"),
    "leap day": event(ts="2028-02-29T00:00:00.000000Z"),
    "posted received_at": event(received_at="2020-01-01T00:00:00Z"),
    "escapes outside the named fields": event(details={"msg": "line 1\nline 2", "q": 'say "hi"'}),
    "brackets in strings beyond the bound": event(note="[{" * 40),
    **{name: events[0] for name, events in DECLINED.items() if len(events) == 1 and type(events[0]) is dict},
}


@pytest.mark.parametrize("name", sorted(SINGLE_LEFT_TO_PREPARE))
def test_a_single_event_out_of_the_usual_is_left_to_prepare(name: str) -> None:
    """``prepare_single`` takes nothing ``prepare`` would judge otherwise: what it leaves, ``prepare`` takes or
    declines on its own."""
    assert single_prepared(copy.deepcopy(SINGLE_LEFT_TO_PREPARE[name]), "t1") is None


def test_a_single_event_of_another_tenant_or_too_large_is_left_to_prepare() -> None:
    assert single_prepared(event(), "t1") is not None
    assert single_prepared(event(), "t2") is None
    assert single_prepared({k: v for k, v in event().items() if k != "tenant_id"}, "t1") is None
    size = len(general([event(audit_event_id="x", blob="x" * 3000)])[0])
    assert single_prepared(event(audit_event_id="x", blob="x" * 3000), limit=size) is not None
    assert single_prepared(event(audit_event_id="x", blob="x" * 3000), limit=size - 1) is None


_TEXT = "ab Z09-:._@/\"\\\n\x00\x1f\x7f\x85\u00e9\u65e5[]{}"


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value: mostly strings, sometimes numbers, booleans, null, or (shallow) objects and arrays."""
    kind = rng.random()
    if kind < 0.55 or depth > 2:
        return "".join(rng.choice(_TEXT) if rng.random() < 0.03 else rng.choice("abcxyz") for _ in range(rng.randint(0, 12)))
    if kind < 0.65:
        return rng.choice([0, -7, 2**63 - 1, 1.5, True, False, None])
    if kind < 0.85:
        return {rng.choice(["ip", "type", "ts", "n", "tenant_id"]): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def _random_event(rng: random.Random) -> dict[str, Any]:
    """One posted event: the named fields usually strings, the id, ts, tenant and type varied, extra fields."""
    posted: dict[str, Any] = {}
    if rng.random() < 0.85:
        posted["audit_event_id"] = str(uuid.UUID(int=rng.getrandbits(128)))
    posted["ts"] = rng.choice(["2026-11-29T07:00:00.000000Z", "2026-12-31T23:59:59.999999Z"]) if rng.random() < 0.6 else (
        rng.choice(["2028-02-29T00:00:00.000000Z", "2026-02-30T00:00:00.000000Z", "2026-11-29T07:00:00Z", 1764403200, None, "x"]))
    if posted["ts"] is None and rng.random() < 0.5:
        del posted["ts"]
    for name in ("type", "tenant_id", "action", "outcome", "user_email", "agent_name", "note", "details"):
        if rng.random() < 0.6:
            posted[name] = _random_value(rng) if rng.random() < 0.15 else rng.choice(
                ["auth", "t1", "t2", "read", "audit_read", "a@example.com"])
    if rng.random() < 0.05:
        posted["received_at"] = "2026-01-01T00:00:00.000000Z"
    return posted


def test_a_single_event_taken_by_the_short_path_is_stored_as_the_general_path_stores_it() -> None:
    """Random single events (seeded): whatever ``prepare_single`` takes, the general path accepts, with the
    same line and typed fields; it takes a fair share of them, so the comparison is not empty."""
    rng = random.Random(20261207)
    taken = 0
    for _ in range(3000):
        posted = _random_event(rng)
        tenant = rng.choice([None, "t1"])
        limit = rng.choice([LIMIT, 400])
        prepared = single_prepared(copy.deepcopy(posted), tenant, limit, rng.choice(["object", "envelope"]))
        if prepared is None:
            continue
        taken += 1
        events = normalized([copy.deepcopy(posted)], tenant)
        assert lines_of(prepared[0]) == encode_events(events, limit), posted
        assert prepared[1] == typed_columns.encode(events, RECEIVED, orjson.dumps(posted)), posted
    assert taken > 400


def test_a_batch_taken_by_the_fast_path_is_stored_as_the_general_path_stores_it() -> None:
    """Random batches (seeded; some of copies sharing their keys): whatever ``prepare`` takes, the general
    path accepts, with the same lines and, where ``prepare`` gives them, the same typed fields."""
    rng = random.Random(20261208)
    taken = 0
    for _ in range(1500):
        posted = copied([_random_event(rng)], rng.randint(2, 4)) if rng.random() < 0.5 else [
            _random_event(rng) for _ in range(rng.randint(2, 5))]
        tenant = rng.choice([None, "t1"])
        prepared = fast_prepared(posted, tenant)
        if prepared is None:
            continue
        taken += 1
        events = normalized(copy.deepcopy(posted), tenant)
        lines = lines_of(prepared[0])
        for original, event, line in zip(posted, events, lines):
            if "audit_event_id" not in original:  # each path made up its own id, in the same place
                event["audit_event_id"] = orjson.loads(line)["audit_event_id"]
        assert lines == encode_events(events, LIMIT), posted
        if prepared[1] is not None:
            assert prepared[1] == typed_columns.encode(events, RECEIVED, orjson.dumps({"events": posted})), posted
    assert taken > 200


def within(lines: list[bytes]) -> bool:
    return _lines_within_depth(lines, max(map(len, lines)))


def test_the_bracket_bound_counts_each_line_on_its_own() -> None:
    """A line of at most MAX_DEPTH - 2 brackets passes without the walk; the walk judges longer ones."""
    at_limit = b"{" + b"[" * (MAX_DEPTH - 3) + b"]" * (MAX_DEPTH - 3) + b"}"
    over = b"{" + b"[" * (MAX_DEPTH - 2) + b"]" * (MAX_DEPTH - 2) + b"}"
    assert within([at_limit]) and within([at_limit] * 3)
    assert within([b"{}"] * 40 + [at_limit])
    assert not within([over]) and not within([b"{}", over, b"{}"])


def test_brackets_close_together_across_lines_are_counted_line_by_line() -> None:
    """Runs of brackets that end one line and start the next lie closer together than the longest line:
    the first test cannot clear them, and counting each line decides (each holds half the bound)."""
    half = (MAX_DEPTH - 2) // 2
    tail = b'{"pad":"' + b"x" * 200 + b'","y":' + b"[" * half + b"]" * half + b"}"
    head = b'{"y":' + b"[" * half + b"]" * half + b',"pad":"' + b"x" * 200 + b'"}'
    lines = [tail, head, tail, head]
    positions = [i for i, byte in enumerate(b"".join(lines)) if byte in b"{["]
    assert any(positions[i + MAX_DEPTH - 2] - positions[i] < max(map(len, lines)) for i in range(len(positions) - MAX_DEPTH + 2))
    assert within(lines)
    deep = b'{"y":' + b"[" * (MAX_DEPTH - 2) + b"]" * (MAX_DEPTH - 2) + b',"pad":"' + b"x" * 200 + b'"}'
    assert not within([tail, deep, tail])


def test_oversized_event_is_declined() -> None:
    assert fast([event(blob="x" * 5000)], limit=4096) is None


@pytest.mark.parametrize("spliced", [True, False])
def test_the_size_bound_is_the_stored_lines_length(spliced: bool) -> None:
    """A line of exactly ``max_event_bytes`` passes, one byte more does not, whether ``received_at`` is spliced
    into the encoding or the event is completed and encoded again (no id)."""
    posted = [event(blob="x" * 3000)] if spliced else [{k: v for k, v in event(blob="x" * 3000).items() if k != "audit_event_id"}]
    size = len(general(copy.deepcopy(posted))[0])
    assert fast(posted, limit=size) is not None
    assert fast(posted, limit=size - 1) is None


@pytest.mark.parametrize("body", [
    b'{"events":[{"type":"auth","type":"admin"}]}',            # a repeated key disappears in the parse
    b'{"events":[{"type":"auth","n":18446744073709551616}]}',  # an integer beyond 64 bits turns float
    b'{"events": [{"type": "auth"}]}',                          # not compact
    b'{"events":[{"type":"\\u0061uth"}]}',                      # escaped characters
    b'{"events":[{"type":"auth"}],"more":1}',                   # another member beside the events
    b'{"more":1,"events":[{"type":"auth"}]}',
    b' {"events":[{"type":"auth"}]}',                           # leading space
])
def test_canonical_events_refuses_bodies_the_byte_checks_must_see(body: bytes) -> None:
    assert canonical_events(body, orjson.loads(body)) is None


@pytest.mark.parametrize("shape", ["envelope", "array", "object"])
def test_canonical_events_are_the_encodings_of_the_posted_events_in_every_shape(shape: str) -> None:
    posted = [event(), event(type="cas_grant")] if shape != "object" else [event()]
    document = {"envelope": {"events": posted}, "array": posted, "object": posted[0]}[shape]
    body = orjson.dumps(document)
    assert canonical_events(body, orjson.loads(body)) == [orjson.dumps(item) for item in posted]
    assert canonical_events(body + b"\r\n", orjson.loads(body)) == [orjson.dumps(item) for item in posted]
    assert canonical_events(body + b"x", orjson.loads(body)) is None
    assert canonical_events(body[:-1] + b" " + body[-1:], orjson.loads(body)) is None


@pytest.mark.parametrize("text, found", [
    ("plain ascii, é, 日本語, \u00a0", False), ("line\nbreak", True), ("nul \x00", True), ('quote "', True),
    ("back \\ slash", True), ("del \x7f", True), ("c1 \x80", True), ("c1 \x9f", True), ("latin \u00c0\u00ff", False),
])
def test_control_bytes_are_found_in_a_compact_body(text: str, found: bool) -> None:
    assert has_control_bytes(orjson.dumps({"events": [{"note": text}]})) is found


def test_general_path_still_rejects_what_was_declined() -> None:
    with pytest.raises(Rejected):
        general([event(action="read\nwrite")])
    with pytest.raises(EventError):
        general([event(type={"x": 1})])


def test_generated_fields_come_in_the_general_paths_order() -> None:
    posted = [{"type": "auth"}]
    lines = fast(posted, "acme")
    assert lines is not None
    stored = orjson.loads(lines[0])
    assert list(stored) == ["type", "audit_event_id", "ts", "received_at", "tenant_id"]
    expected = orjson.loads(general(copy.deepcopy(posted), "acme")[0])
    assert list(expected) == list(stored) and {**expected, "audit_event_id": stored["audit_event_id"]} == stored


@pytest.mark.parametrize("value", ["2026-01-01T00:00:00\x00", "\x1f2026-01-01T00:00:00Z", "2026-01-01T00:00:00\n"])
def test_canonical_ts_refuses_control_characters_fromisoformat_overlooks(value: str) -> None:
    with pytest.raises(EventError, match="control character"):
        canonical_ts(value)


def test_canonical_stamps_checks_a_canonical_run_at_once_and_the_rest_one_by_one() -> None:
    canonical = ["2026-11-29T07:00:00.000000Z", "2026-12-31T23:59:59.999999Z"]
    assert canonical_stamps(canonical, RECEIVED) is canonical
    assert canonical_stamps([None, "2028-02-29T00:00:00Z", 0], RECEIVED) == [
        RECEIVED, "2028-02-29T00:00:00.000000Z", "1970-01-01T00:00:00.000000Z"]
    with pytest.raises(EventError):
        canonical_stamps(["2026-02-29T00:00:00.000000Z"], RECEIVED)


@pytest.mark.parametrize("value", ["\u0662\u0660\u0662\u0666-01-01T00:00:00.000000Z", "2026-\u0660\u0661-01T00:00:00.000000Z",
                                   "2026-01-01T00:00:00.00000\u0669Z", "0000-01-01T00:00:00.000000Z"])
def test_only_ascii_digits_and_a_real_year_are_canonical(value: str) -> None:
    """``\\d`` takes any Unicode digit: such stamps (and year 0000) are refused by both checks, the run
    check of a batch's stamps and the one-by-one check, and the fast path leaves the batch to the general
    path, which refuses it too."""
    with pytest.raises(EventError):
        canonical_ts(value)
    with pytest.raises(EventError):
        canonical_stamps(["2026-01-01T00:00:00.000000Z", value], RECEIVED)
    posted = [event(ts="2026-01-01T00:00:00.000000Z"), event(ts=value)]
    assert fast(posted, None) is None
    with pytest.raises(EventError):
        general(posted, None)
    assert canonical_ts("0001-01-01T00:00:00.000000Z") == "0001-01-01T00:00:00.000000Z"


def test_stamps_before_year_1000_keep_four_digits_and_the_last_second_is_listed() -> None:
    """``format_ts`` and ``iso_from_micros`` write a four-digit year (``%Y`` writes year 1 as ``1``), and a
    file of 9999-12-31T23:59:59's events is described, its end at datetime's last instant."""
    from datetime import datetime, timezone
    from pathlib import Path

    from ingest.timeutil import iso_from_micros
    from shared import layout
    from shared.events import format_ts

    assert format_ts(datetime(1, 1, 1, tzinfo=timezone.utc)) == "0001-01-01T00:00:00.000000Z"
    assert format_ts(datetime(999, 12, 31, 23, 59, 59, 5, tzinfo=timezone.utc)) == "0999-12-31T23:59:59.000005Z"
    assert canonical_ts(-62135596800) == canonical_ts("0001-01-01T00:00:00Z") == "0001-01-01T00:00:00.000000Z"
    assert iso_from_micros(-62135596800000000) == "0001-01-01T00:00:00.000000Z"
    name = "audit-99991231T235959Z-000000000001-000000000002-99991231T235959Z.ndjson.gz"
    info = layout.describe(Path(name))
    assert info is not None and info.max_ts == datetime.max.replace(tzinfo=timezone.utc)


def test_day_arithmetic_holds_at_year_1_and_9999(tmp_path) -> None:
    """Listing days, S3 day prefixes and a key's end at the calendar's two ends: no OverflowError, and
    four-digit years in every name (``%Y`` writes year 1 as ``1``)."""
    from datetime import date, datetime, timedelta, timezone

    from shared import layout, s3_layout
    from shared.events import days_back, shifted

    first = datetime(1, 1, 1, tzinfo=timezone.utc)
    last = datetime.max.replace(tzinfo=timezone.utc)
    assert days_back(date(1, 1, 2), date.min) == [date(1, 1, 2), date.min]
    assert days_back(date.max, date(9999, 12, 31)) == [date.max]
    assert days_back(date(2026, 1, 1), date(2026, 1, 2)) == []
    assert shifted(first, -timedelta(days=1)) == first and shifted(last, timedelta(seconds=1)) == last
    (tmp_path / "0001" / "01" / "01").mkdir(parents=True)
    assert layout.day_dirs_between(tmp_path, first, first + timedelta(hours=30)) == [tmp_path / "0001" / "01" / "01"]
    assert s3_layout.day_prefixes("audit/", first, first + timedelta(hours=1)) == [
        "audit/0001/01/02/", "audit/dt=0001-01-01/", "audit/0001/01/01/"]
    assert s3_layout.day_prefixes("audit/", last - timedelta(hours=1), last) == [
        "audit/dt=9999-12-31/", "audit/9999/12/31/"]
    key = "audit/dt=9999-12-31/hour=23/minute=59/w1-000000000001-000000000002.parquet"
    info = s3_layout.describe_key("audit/", key)
    assert info is not None and info.end == last
