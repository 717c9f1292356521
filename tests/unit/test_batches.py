"""Grouping spooled lines: the same days, fields and counts as the straightforward per-line version, on both
parse paths (Arrow's reader for the whole block, orjson per line), and batched id hashes."""

from __future__ import annotations

import collections
import random
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest

from shared.spool_format import SpoolRecord
from writer import event_table
from writer.batches import FlushBatch, group_records
from writer.dedupe import DedupeWindow
from writer.id_hashes import id_hash, id_hashes, legacy_column_hashes, legacy_hashes


def _reference(records: list[SpoolRecord], window: DedupeWindow | None = None) -> FlushBatch:
    """The grouping as first written: one orjson.loads and one id_hash per line, then dedupe, day, sort."""
    days: dict = collections.defaultdict(list)
    parsed = []
    duplicates = events = 0
    unparsable = []
    unreadable = []
    for record in records:
        for line in record.payload.split(b"\n"):
            if not line:
                continue
            try:
                event = orjson.loads(line)
                ts = event["ts"]
                event_id = event["audit_event_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                unparsable.append(line)
                continue
            if type(ts) is not str:
                unparsable.append(line)
                continue
            if not _arrow_reads(ts):  # set aside after the lines that do not parse
                unreadable.append(line)
                continue
            parsed.append((id_hash(str(event_id)), ts, line))
    unparsable += unreadable
    earlier = window.seen(item[0] for item in parsed) if window is not None else set()
    kept: set[int] = set()
    for hashed, ts, line in parsed:
        if hashed in kept or hashed in earlier:
            duplicates += 1
            continue
        kept.add(hashed)
        event = orjson.loads(line)
        typed = tuple(value if type(value) is str else None
                      for value in (event.get(name) for name in event_table.TYPED_FIELDS))
        days[(ts[0:4], ts[5:7], ts[8:10])].append((ts, line, typed))
        events += 1
    for lines in days.values():  # by time: "2026-11-29 09:00:00Z" comes after "2026-11-29T00:00:00.000001Z"
        lines.sort(key=lambda item: pa.array([item[0]]).cast(pa.timestamp("us", tz="UTC"))[0].value)
    first = records[0].seq if records else 0
    last = records[-1].seq if records else 0
    return FlushBatch(first, last, dict(days), events, duplicates, unparsable, list(kept))


def _arrow_reads(stamp: str) -> bool:
    """True when Arrow reads ``stamp`` as a UTC timestamp from year 1 on (what a flush can store)."""
    if stamp.startswith("0000"):  # Arrow reads year 0000; Python's datetime, the readers and a flush start at 1
        return False
    try:
        pa.array([stamp]).cast(pa.timestamp("us", tz="UTC"))
    except pa.ArrowInvalid:
        return False
    return True


def _as_lists(batch: FlushBatch) -> dict:
    """A batch's days as the reference has them: ``(ts, line, typed fields)`` per event."""
    days = {}
    for key, events in batch.days.items():
        columns = events.to_pydict()
        typed = zip(*(columns[name] for name in event_table.TYPED_FIELDS))
        days[key] = [(ts, line.encode()[:-1], fields) for ts, line, fields in zip(columns["ts"], columns["line"], typed)]
    return days


def _assert_same(got: FlushBatch, want: FlushBatch) -> None:
    assert (got.first_seq, got.last_seq, got.events, got.duplicates) == (want.first_seq, want.last_seq,
                                                                          want.events, want.duplicates)
    assert got.unparsable == want.unparsable
    assert _as_lists(got) == want.days
    assert sorted(got.id_hashes) == sorted(want.id_hashes)
    for events in got.days.values():
        assert events.schema.equals(event_table.ORDERED_SCHEMA)


def _random_records(generator: random.Random, count: int, odd_share: float = 0.1) -> list[SpoolRecord]:
    stamps = [f"2026-11-{day:02d}T0{hour}:00:00.00000{tick}Z" for day in (28, 29, 30) for hour in (0, 9)
              for tick in (0, 1)] + ["2026/11/29T00:00:00.000000Z", "2026-11-29 09:00:00Z", "2026-11-2"]
    odd = [b"", b"not json", b"{}", b'{"ts":"2026-11-29T00:00:00.000000Z"}', b'{"audit_event_id":"x"}',
           b"[1,2]", b'"text"', b"17", b'{"audit_event_id":"x","ts":"2026-11-29T00:00:00.000000Z"', b"\xff{}",
           b'{"ts":"2026-11-29T00:00:00.000000Z","audit_event_id":"cut', b'{"a":NaN}']
    ids = [f"id-{generator.randrange(40)}", "é😀", "a\\\"b"] + ([] if odd_share == 0 else [generator.randrange(5)])
    records = []
    for seq in range(generator.randint(0, 6)):
        lines = []
        for _ in range(count):
            if generator.random() < odd_share:
                lines.append(generator.choice(odd))
                continue
            event = {"type": "t", "details": {"ts": "nested", "audit_event_id": "nested"}, "user_email": "u@x",
                     "received_at": generator.choice(stamps), "action": generator.choice(["a", "é😀", 5, None])}
            event_id = generator.choice(ids)
            fields = [("audit_event_id", event_id), ("ts", generator.choice(stamps))]
            generator.shuffle(fields)
            event.update(fields)
            lines.append(orjson.dumps(event))
        records.append(SpoolRecord(100 + seq, 7000 + seq, b"".join(line + b"\n" for line in lines)))
    return records


def test_group_records_matches_the_per_line_reference(tmp_path: Path) -> None:
    """Dedupe (in the range and the window), unparsable lines, days, stable ts order, typed fields, counts, hashes."""
    generator = random.Random(11)
    window = DedupeWindow(tmp_path, 3600, 1000)
    window.remember([id_hash("id-3"), id_hash("4")], now=1_000_000)
    for _ in range(60):
        records = _random_records(generator, generator.randint(1, 40))
        for used in (None, window):
            _assert_same(group_records(records, used), _reference(records, used))


def test_clean_records_take_the_block_parse_and_give_the_same_batch(tmp_path: Path) -> None:
    """Records as ingest writes them (string fields, one object per line) are read by Arrow in one pass."""
    generator = random.Random(12)
    window = DedupeWindow(tmp_path, 3600, 1000)
    window.remember([id_hash("id-3")], now=1_000_000)
    block_parsed = 0
    for _ in range(40):
        records = [SpoolRecord(record.seq, record.batch_id, record.payload.replace(b'"action":5', b'"action":"5"'))
                   for record in _random_records(generator, generator.randint(1, 40), odd_share=0)]
        block_parsed += event_table.parse_block(b"".join(record.payload for record in records)) is not None
        for used in (None, window):
            _assert_same(group_records(records, used), _reference(records, used))
    assert block_parsed >= 30


@pytest.mark.parametrize("piece_bytes", [1, 7, 64, 1000])
def test_newlines_found_piece_by_piece_are_every_newline(monkeypatch: pytest.MonkeyPatch, piece_bytes: int) -> None:
    """The block parse looks for newlines a piece at a time; pieces ending on, just before or just after a
    newline find the same lines and the same batch as one pass over the whole range."""
    generator = random.Random(5)
    records = [SpoolRecord(record.seq, record.batch_id, record.payload.replace(b'"action":5', b'"action":"5"'))
               for record in _random_records(generator, 30, odd_share=0)]
    data = b"".join(record.payload for record in records)
    whole = event_table.parse_block(data)
    monkeypatch.setattr(event_table, "_NEWLINE_PIECE_BYTES", piece_bytes)
    assert [index for index, byte in enumerate(data) if byte == 0x0A] == event_table._newline_positions(data).tolist()
    pieces = event_table.parse_block(data)
    assert whole is not None and pieces is not None and pieces.equals(whole)
    _assert_same(group_records(records), _reference(records))


def test_nan_or_infinity_inside_strings_keeps_the_block_parse() -> None:
    """Random ids and text contain "NaN" now and then; only a NaN or Infinity value sends the block per line."""
    text = b'{"ts":"2026-11-29T00:00:00.000000Z","audit_event_id":"qNaNz","note":"to Infinity"}\n'
    assert event_table.parse_block(text * 3) is not None
    for value in (b"NaN", b"-Infinity", b" Infinity", b"[1,NaN]"):
        line = b'{"ts":"2026-11-29T00:00:00.000000Z","audit_event_id":"a","x":' + value + b'}\n'
        assert event_table.parse_block(text + line) is None


@pytest.mark.parametrize("line", [b'{"ts":"2026-11-29T00:00:00.000000Z","audit_event_id":"a","x":NaN}',
                                  b'{"ts":"2026-11-29T00:00:00.000000Z","audit_event_id":"a","type":"x","type":"y"}',
                                  b'{"ts":"2026-11-29T00:00:00.000000Z","audit_event_id":"a","type":5}',
                                  b'{"ts":"2026-11-29T00:00:00.000000Z","audit_event_id":7}',
                                  b'{"ts":"2026-11-29T00:00:00.000000Z","audit_event_id":"a","n":"\xff"}',
                                  b'{"ts":"2026-11-29T00:00:00.000000Z","audit_event_id":"a"} {"ts":"x"}',
                                  b'   ', b''])
def test_the_block_parse_declines_what_it_could_read_differently(line: bytes) -> None:
    """NaN, a repeated or non-string field, bad UTF-8, two objects or a blank line: the per-line path decides.
    The same holds for a ``bytearray`` range, which is what the flusher reads from the spool."""
    good = b'{"ts":"2026-11-29T00:00:00.000000Z","audit_event_id":"b","type":"t"}\n'
    assert event_table.parse_block(good * 3) is not None
    assert event_table.parse_block(bytearray(good * 3)).equals(event_table.parse_block(good * 3))
    data = good + line + b"\n" + good
    assert event_table.parse_block(data) is None
    assert event_table.parse_block(bytearray(data)) is None
    record = SpoolRecord(1, 1, data)
    _assert_same(group_records([record]), _reference([record]))


def test_legacy_hashes_are_the_blake2b_values_earlier_versions_stored() -> None:
    """Window files of earlier versions hold 64-bit BLAKE2b, big-endian, of each id's UTF-8 bytes (surrogates
    passed); from a list of bytes or from an Arrow column, the same values."""
    import hashlib

    ids = ["", "a", "0b3c8d0e-6f1a-4b2c-9d3e-4f5a6b7c8d9e", "é", "😀" * 40, 'a\\"b', "x" * 5000]
    expected = [int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big") for event_id in ids]
    assert legacy_hashes([event_id.encode() for event_id in ids]).tolist() == expected
    assert legacy_hashes([b"a"]).tolist() == [0x40F89E395B66422F]  # hashlib.blake2b(b"a", digest_size=8), as stored on disk
    column = pa.chunked_array([pa.array(ids[:3], pa.string()), pa.array(ids[3:], pa.string())])
    assert legacy_column_hashes(column).tolist() == expected
    assert legacy_hashes([]).tolist() == [] and legacy_hashes([]).dtype == np.uint64


@pytest.mark.parametrize("typed_field", ['"outcome":"allow"', '"outcome":5'])  # block parse, then per line
def test_ids_in_a_window_file_of_an_earlier_version_are_dropped(tmp_path: Path, typed_field: str) -> None:
    """A window file of BLAKE2b hashes (``ids-<hour>-<n>.bin``, written before an upgrade) still drops a retry
    of one of its ids, on either parse path, and the batch's hashes are the current ones."""
    import array
    import time

    from writer.dedupe import BUCKET_SECONDS

    hour = int(time.time() // BUCKET_SECONDS)
    (tmp_path / f"ids-{hour}-0.bin").write_bytes(array.array("Q", legacy_hashes([b"id-3"]).tolist()).tobytes())
    window = DedupeWindow(tmp_path, 2 * BUCKET_SECONDS, 1000)
    window.load()
    lines = [b'{"audit_event_id":"%s","ts":"2026-11-29T00:00:0%dZ",%s}\n' % (event_id, index, typed_field.encode())
             for index, event_id in enumerate([b"id-1", b"id-3", b"id-2"])]
    batch = group_records([SpoolRecord(1, 1, b"".join(lines))], window)
    assert batch.parsed and (batch.events, batch.duplicates) == (2, 1)
    assert batch.days[("2026", "11", "29")].column(event_table.ID).to_pylist() == ["id-1", "id-2"]
    assert sorted(batch.id_hashes.tolist()) == sorted([id_hash("id-1"), id_hash("id-2")])


@pytest.mark.parametrize("typed", [True, False])
@pytest.mark.parametrize("stamp", ["\u0662\u0660\u0662\u0666-11-29T00:00:00.000000Z", "0000-11-29T00:00:00.000000Z",
                                   "not a time"])
def test_rows_whose_ts_cannot_be_read_are_set_aside_and_the_rest_grouped(typed: bool, stamp: str) -> None:
    """From the typed fields ingest sends or from the lines: a row whose ``ts`` Arrow cannot read as a
    timestamp from year 1 on joins the unparsable lines (its line, no newline) and is neither stored, counted
    a duplicate nor remembered; the others are grouped as without it."""
    from shared import typed_columns
    from shared.spool_format import SpoolRange
    from writer.batches import group_range

    events = [{"audit_event_id": f"e{index}", "ts": f"2026-11-29T0{index}:00:00.000000Z", "type": "auth"}
              for index in range(4)]
    events[2]["ts"] = stamp
    lines = [orjson.dumps({**event, "received_at": RECEIVED_AT}) for event in events]
    span = SpoolRange.of([SpoolRecord(1, 1, b"".join(line + b"\n" for line in lines))])
    columns = [typed_columns.frame_section([typed_columns.encode(events, RECEIVED_AT)])] if typed else None
    batch = group_range(span, None, columns)
    assert batch.parsed is not typed
    assert batch.unparsable == [lines[2]]
    assert (batch.events, batch.duplicates) == (3, 0)
    assert sorted(batch.id_hashes) == sorted(id_hashes(["e0", "e1", "e3"]))
    assert list(batch.days) == [("2026", "11", "29")]
    assert batch.days[("2026", "11", "29")].column(event_table.ID).to_pylist() == ["e0", "e1", "e3"]


RECEIVED_AT = "2026-11-29T12:00:00.000000Z"


def test_stamp_micros_names_each_row_arrow_cannot_read_or_that_has_none() -> None:
    """One cast when all are readable; else each row that does not parse, lies before year 1, or is null,
    and the other rows' microseconds."""
    from writer.batches import stamp_micros

    good = "2026-11-29T00:00:00.000000Z"
    good_micros = 1_795_910_400_000_000
    unreadable, micros = stamp_micros(pa.chunked_array([[good, "0001-01-01T00:00:00.000000Z"]]))
    assert unreadable.tolist() == [] and micros.tolist() == [good_micros, -62_135_596_800_000_000]
    unreadable, micros = stamp_micros(pa.array([], pa.string()))
    assert unreadable.tolist() == [] and micros.tolist() == []
    mixed = pa.chunked_array([[good, "\u0662\u0660\u0662\u0666-11-29T00:00:00.000000Z"], ["0000-01-01T00:00:00.000000Z",
                                                                                      None, good, "2026/11/29"]])
    unreadable, micros = stamp_micros(mixed)
    assert unreadable.tolist() == [1, 2, 3, 5] and micros.tolist() == [good_micros, good_micros]


def test_first_of_each_marks_the_earliest_row_of_every_hash() -> None:
    """Against ``np.unique(return_index=True)``: empty, one row, all equal, few distinct, none repeated."""
    from writer.batches import first_of_each

    generator = np.random.default_rng(8)
    cases = [np.empty(0, np.uint64), np.array([7], np.uint64), np.full(9, 3, np.uint64),
             generator.integers(0, 40, 2000, dtype=np.uint64), generator.integers(0, 2**64 - 1, 2000, dtype=np.uint64)]
    for hashes in cases:
        expected = np.zeros(len(hashes), dtype=bool)
        expected[np.unique(hashes, return_index=True)[1]] = True
        assert np.array_equal(first_of_each(hashes), expected)
