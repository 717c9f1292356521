"""Typed fields sent beside the lines: they give the writer the very table the lines parse to, and whatever
does not check out sends the flush back to parsing the lines."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from shared import typed_columns
from shared.spool_format import SpoolRange, SpoolRecord
from tests.unit.test_batches import _assert_same, _reference
from writer import event_table
from writer.batches import group_range

RECEIVED = "2026-11-29T12:00:00.000000Z"


def _events(generator: random.Random, count: int, strings_only: bool = False) -> list[dict]:
    """Normalized events as ingest stores them: named fields strings, extra typed fields of any type, some
    fields missing, non-ASCII, escapes and now and then the separator inside a value."""
    events = []
    for _ in range(count):
        event = {"audit_event_id": f"id-{generator.randrange(10**9)}",
                 "ts": f"2026-11-{generator.choice((28, 29, 30))}T0{generator.randrange(10)}:00:00.000000Z",
                 "type": generator.choice(["auth", "é😀", "a\"b\\c", "", "tab\there"]),
                 "details": {"type": "nested", "tenant_id": "nested"}}
        for name in ("tenant_id", "actor_ref", "outcome", "pdp"):
            if generator.random() < 0.7:
                event[name] = generator.choice([f"{name}-{generator.randrange(5)}", "x\x7fy", "ü"])
        for name in ("user_email", "tool_name"):
            if generator.random() < 0.6:
                event[name] = generator.choice(["u@x", "", "q\x7f"] if strings_only else
                                               ["u@x", 5, None, ["list"], {"o": 1}, True, "", "q\x7f"])
        keys = list(event)
        if generator.random() < 0.3:
            generator.shuffle(keys)
        events.append({key: event[key] for key in keys})
    return events


def _record(events: list[dict], received_at: str, seq: int) -> tuple[SpoolRecord, bytes]:
    """The spool record of one request's events (``received_at`` set, as ingest stores them) and its columns."""
    stored = [{**event, "received_at": received_at} for event in events]
    payload = b"".join(orjson.dumps(event) + b"\n" for event in stored)
    part = typed_columns.encode(events, received_at, payload)
    return SpoolRecord(seq, 9000 + seq, payload), part


def _frames(generator: random.Random, strings_only: bool = False) -> tuple[list[SpoolRecord], list[bytes]]:
    """Records of one to four requests each, and each record's columns section."""
    records, sections = [], []
    for seq in range(generator.randint(1, 5)):
        parts, payloads = [], []
        for request in range(generator.randint(1, 4)):
            events = _events(generator, generator.randint(1, 30), strings_only)
            record, part = _record(events, f"2026-11-29T12:00:0{request}.000000Z", seq)
            payloads.append(record.payload)
            parts.append(part)
        records.append(SpoolRecord(100 + seq, 500 + seq, b"".join(payloads)))
        sections.append(typed_columns.frame_section(parts))
    return records, sections


def test_columns_give_the_same_batch_as_parsing_the_lines() -> None:
    """Days, order, typed fields (a non-string extra field as null), counts and hashes equal the per-line
    reference, and the lines are not parsed."""
    generator = random.Random(3)
    for _ in range(60):
        records, sections = _frames(generator)
        batch = group_range(SpoolRange.of(records), None, sections)
        assert not batch.parsed and not batch.fields_refused
        _assert_same(batch, _reference(records))


def test_the_table_from_columns_equals_the_block_parse() -> None:
    """Where Arrow's reader takes the lines too (typed fields all strings), the two tables are equal."""
    generator = random.Random(4)
    compared = 0
    for _ in range(40):
        records, sections = _frames(generator, strings_only=True)
        span = SpoolRange.of(records)
        parsed = event_table.parse_block(span.data)
        typed = event_table.from_columns(span.data, span.ends, sections)
        assert typed is not None
        if parsed is not None:
            assert typed.equals(parsed)
            compared += 1
    assert compared >= 30


def test_entries_join_strings_and_keep_lists_for_the_rest() -> None:
    """All strings: one joined entry; missing or other types: a list with nulls; nothing: null."""
    events = [{"ts": "t1", "type": "a", "tenant_id": "x", "user_email": 5},
              {"ts": "t2", "type": "b", "user_email": "u"}]
    request = orjson.loads(typed_columns.encode(events, RECEIVED, b"{}"))
    named = dict(zip(("ts", *typed_columns.FIELDS), request[2:]))
    assert request[:2] == [2, RECEIVED]
    assert named["ts"] == "t1\x7ft2" and named["type"] == "a\x7fb"
    assert named["tenant_id"] == ["x", None] and named["user_email"] == [None, "u"]
    assert named["actor_ref"] is None
    held = orjson.loads(typed_columns.encode([{"ts": "t", "type": "a\x7fb"}, {"ts": "u", "type": "c"}], RECEIVED))
    assert held[3 + typed_columns.FIELDS.index("type")] == ["a\x7fb", "c"]


@pytest.mark.parametrize(("body", "free"), [(b'{"a":"x"}', True), (b'{"a":"\\n"}', True), (b'{"a":"\x7f"}', False),
                                            (b'{"a":"\\u007f"}', False), (b'{"a":"\\u007F"}', False)])
def test_separator_free_sees_the_separator_raw_or_escaped(body: bytes, free: bool) -> None:
    assert typed_columns.separator_free(body) is free


def test_a_value_holding_the_separator_claimed_free_is_caught_by_the_count() -> None:
    """Joined values that split into another count are refused; the flush parses the lines instead."""
    events = [{"audit_event_id": f"a{index}", "ts": "2026-11-29T00:00:00.000000Z", "type": "x\x7fy"} for index in range(2)]
    record, _ = _record(events, RECEIVED, 1)
    wrong = typed_columns.frame_section([typed_columns.encode(events, RECEIVED, b"{}")])  # the body wrongly claimed free
    with pytest.raises(ValueError):
        typed_columns.decode([wrong])
    batch = group_range(SpoolRange.of([record]), None, [wrong])
    assert batch.parsed and batch.fields_refused
    _assert_same(batch, _reference([record]))


def test_a_single_event_sends_its_strings_as_they_are() -> None:
    """Nothing to join for one event: each string is its own entry, or a one-value list when it holds the
    separator."""
    event = {"audit_event_id": "a", "ts": "2026-11-29T00:00:00.000000Z", "type": "x\x7fy", "user_email": 3}
    request = orjson.loads(typed_columns.encode([event], RECEIVED))
    named = dict(zip(("ts", *typed_columns.FIELDS), request[2:]))
    assert named["ts"] == "2026-11-29T00:00:00.000000Z" and named["type"] == ["x\x7fy"]
    assert named["user_email"] is None and named["tenant_id"] is None
    record, part = _record([event], RECEIVED, 1)
    batch = group_range(SpoolRange.of([record]), None, [typed_columns.frame_section([part])])
    assert not batch.parsed
    _assert_same(batch, _reference([record]))


def _mismatched(kind: str) -> tuple[list[SpoolRecord], list[bytes]]:
    events = [{"audit_event_id": f"e{index}", "ts": f"2026-11-29T00:00:0{index}.000000Z", "type": "t"} for index in range(4)]
    record, part = _record(events, RECEIVED, 1)
    if kind == "changed value":
        part = part.replace(b"e0", b"zz")
    elif kind == "changed last value":
        part = part.replace(b"e3", b"zz")
    elif kind == "one row short":
        part = typed_columns.encode(events[:3], RECEIVED, b"{}")
    elif kind == "received_at":
        part = typed_columns.encode(events, "2026-11-29T12:00:01.000000Z", b"{}")
    elif kind == "not json":
        part = b"[1,"
    elif kind == "null ts":
        part = part.replace(b'"2026-11-29T00:00:00.000000Z\x7f2026-11-29T00:00:01.000000Z\x7f2026-11-29T00:00:02.000000Z'
                            b'\x7f2026-11-29T00:00:03.000000Z"', b"null")
    return [record], [typed_columns.frame_section([part])]


@pytest.mark.parametrize("kind", ["changed value", "changed last value", "one row short", "received_at", "not json",
                                  "null ts"])
def test_columns_that_do_not_match_the_lines_are_refused(kind: str) -> None:
    """A first or last row that differs from its line, a count that differs, a broken section or a null
    ``ts``: no table from the columns, and the flush stores what the lines say."""
    unchanged = SpoolRange.of(_mismatched("none")[0])
    assert event_table.from_columns(unchanged.data, unchanged.ends, _mismatched("none")[1]) is not None
    records, sections = _mismatched(kind)
    span = SpoolRange.of(records)
    assert event_table.from_columns(span.data, span.ends, sections) is None
    batch = group_range(span, None, sections)
    assert batch.parsed and batch.fields_refused
    _assert_same(batch, _reference(records))


def test_a_record_without_columns_sends_the_range_to_the_parse() -> None:
    """Columns are all or nothing per range: one record without them (after a restart) parses the range,
    without counting a mismatch."""
    generator = random.Random(8)
    records, sections = _frames(generator)
    batch = group_range(SpoolRange.of(records), None, [None, *sections[1:]])
    assert batch.parsed and not batch.fields_refused
    _assert_same(batch, _reference(records))


def test_the_lines_checked_are_the_first_and_each_records_last_up_to_a_bound() -> None:
    """Every record's last row (and the first row) while there are at most 64 records; 64 spread over the
    range beyond that, the first and the last record among them."""
    ends = np.array([3, 5, 9])
    assert event_table._sample_rows(ends) == [0, 2, 4, 8]
    many = np.arange(1, 1001) * 2
    sampled = event_table._sample_rows(many)
    assert len(sampled) == 65 and sampled[:2] == [0, 1] and sampled[-1] == 1999


def test_a_wrong_row_at_the_end_of_a_middle_record_is_caught() -> None:
    events = [[{"audit_event_id": f"r{record}e{index}", "ts": "2026-11-29T00:00:00.000000Z", "type": "t"}
               for index in range(3)] for record in range(3)]
    records, parts = zip(*(_record(group, RECEIVED, seq) for seq, group in enumerate(events)))
    sections = [typed_columns.frame_section([part]) for part in parts]
    span = SpoolRange.of(list(records))
    assert event_table.from_columns(span.data, span.ends, sections) is not None
    sections[1] = sections[1].replace(b"r1e2", b"r1eX")
    assert event_table.from_columns(span.data, span.ends, sections) is None


@pytest.mark.parametrize("parts", [[], [b"[1]"], [b"[1]", b'[2,"x"]', b"[3]"]])
def test_section_pieces_join_to_the_frame_section(parts: list[bytes]) -> None:
    assert b"".join(typed_columns.section_pieces(parts)) == typed_columns.frame_section(parts)
    assert typed_columns.frame_section(parts) == b"[" + b",".join(parts) + b"]"
