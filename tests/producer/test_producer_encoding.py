"""Serialization of awkward values and the cheap validation done by ``emit``."""

from __future__ import annotations

import dataclasses
import enum
import json
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from producer import AuditProducer, InvalidEvent, prepare_event
from producer.encode import has_orjson, make_dumps


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Point:
    x: int
    when: datetime


class Model:
    """Looks like a pydantic v2 model."""

    def model_dump(self, mode: str = "python") -> dict:
        return {"name": "m", "mode": mode, "at": datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)}


class BrokenStr:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


PLUS_TWO = timezone(timedelta(hours=2))
AWKWARD = {
    "aware": datetime(2024, 1, 2, 12, 30, 0, 123456, tzinfo=PLUS_TWO),
    "naive": datetime(2024, 1, 2, 3, 4, 5),
    "day": date(2024, 2, 29),
    "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "color": Color.RED,
    "level": Level.HIGH,
    "price": Decimal("10.10"),
    "tags": {"b", "a", "c"},
    "frozen": frozenset({2, 1}),
    "pair": (1, "two"),
    "text_bytes": "héllo".encode(),
    "binary": b"\xff\x00\x01",
    "point": Point(1, datetime(2024, 1, 1, tzinfo=timezone.utc)),
    "model": Model(),
    "opaque": Opaque(),
    "broken": BrokenStr(),
    "nested": {"deep": [{"when": datetime(2020, 1, 1, tzinfo=timezone.utc)}]},
    7: "int key",
    "nan": float("nan"),
    "huge": 2**80,
}
EXPECTED = {
    "aware": "2024-01-02T10:30:00.123456Z",
    "naive": "2024-01-02T03:04:05.000000Z",
    "day": "2024-02-29",
    "uid": "12345678-1234-5678-1234-567812345678",
    "color": "red",
    "level": 3,
    "price": "10.10",
    "tags": ["a", "b", "c"],
    "frozen": [1, 2],
    "pair": [1, "two"],
    "text_bytes": "héllo",
    "binary": "/wAB",
    "point": {"x": 1, "when": "2024-01-01T00:00:00.000000Z"},
    "model": {"name": "m", "mode": "json", "at": "2024-05-06T07:08:09.000000Z"},
    "opaque": "opaque!",
    "broken": "<unserializable BrokenStr>",
    "nested": {"deep": [{"when": "2020-01-01T00:00:00.000000Z"}]},
    "7": "int key",
    "nan": None,
    "huge": 2**80,
}
ENCODERS = ["stdlib"] + (["orjson"] if has_orjson() else [])


@pytest.mark.parametrize("encoder", ENCODERS)
def test_awkward_values_are_encoded_as_documented(encoder):
    dumps = make_dumps(prefer_orjson=encoder == "orjson")
    assert json.loads(dumps(AWKWARD)) == EXPECTED


@pytest.mark.parametrize("encoder", ENCODERS)
def test_cycles_and_lone_surrogates_do_not_raise(encoder):
    dumps = make_dumps(prefer_orjson=encoder == "orjson")
    cyclic: dict = {"name": "loop"}
    cyclic["self"] = cyclic
    decoded = json.loads(dumps(cyclic))
    assert decoded["name"] == "loop" and "self" in decoded
    assert json.loads(dumps({"text": "bad \ud800 surrogate"}))["text"].startswith("bad ")


def test_awkward_values_arrive_at_the_service_as_documented(audit_server):
    with AuditProducer(audit_server.url) as producer:
        assert producer.emit({"type": "t", **AWKWARD})
        assert producer.flush(5)
    (received,) = audit_server.accepted()
    for key, value in EXPECTED.items():
        assert received[key] == value, key


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (datetime(2024, 3, 1, 1, 0, tzinfo=PLUS_TWO), "2024-02-29T23:00:00.000000Z"),
        (0, "1970-01-01T00:00:00.000000Z"),
        (1700000000.5, "2023-11-14T22:13:20.500000Z"),
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
        ("2024-01-01T00:00:00+01:00", "2024-01-01T00:00:00+01:00"),
    ],
)
def test_ts_accepts_datetimes_epoch_seconds_and_iso_text(ts, expected):
    assert prepare_event({"ts": ts})["ts"] == expected


@pytest.mark.parametrize(
    "event",
    [
        ["not", "a", "dict"],
        "text",
        None,
        {"type": 3},
        {"tenant_id": b"bytes"},
        {"source": ["list"]},
        {"ts": "yesterday"},
        {"ts": True},
        {"ts": float("inf")},
        {"ts": 1e300},
        {"ts": date(2024, 1, 1)},
        {"audit_event_id": 12},
    ],
)
def test_invalid_events_are_refused_by_prepare(event):
    with pytest.raises(InvalidEvent):
        prepare_event(event)


def test_emit_drops_and_counts_invalid_events_without_raising(audit_server, check_invariant, caplog):
    caplog.set_level("WARNING", logger="auditlake.producer")
    invalid = [["list"], {"type": 3}, {"ts": "yesterday"}, {"pdp": {"x": 1}}, {"big": "x" * 2000}]
    with AuditProducer(audit_server.url, max_batch_bytes=1024, log_interval=60) as producer:
        for event in invalid:
            assert producer.emit(event) is False
        assert producer.emit({"type": "fine"}) is True
        assert producer.flush(5)
        stats = producer.stats()
    assert (stats.emitted, stats.invalid, stats.sent, stats.dropped) == (6, 5, 1, 5)
    check_invariant(stats)
    assert [event["type"] for event in audit_server.accepted()] == ["fine"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "auditlake.producer"]
    assert any("invalid audit events" in message for message in warnings), warnings


def test_an_event_mapping_that_explodes_is_counted_not_raised(audit_server):
    class Exploding(dict):
        def keys(self):
            raise RuntimeError("boom")

        def __iter__(self):
            raise RuntimeError("boom")

    with AuditProducer(audit_server.url) as producer:
        assert producer.emit(Exploding(a=1)) is False
        stats = producer.stats()
    assert (stats.emitted, stats.invalid) == (1, 1)
