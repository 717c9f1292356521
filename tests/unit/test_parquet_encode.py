"""Parquet encoding: a flush's event table (read by Arrow in one pass, or per line) encodes as a per-line
reference table does, byte for byte, though ``record_json`` is handed over as views into the parsed bytes."""

from __future__ import annotations

import io
import random

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

import pyarrow as pa

from shared.s3_layout import SCHEMA, STRING_COLUMNS, UTC_MICROS
from writer import event_table, parquet_encode
from writer.parquet_encode import to_parquet, typed_table

RECEIVED = "2026-11-29T08:00:00.000000Z"


def _stamp(index: int) -> str:
    return f"2026-11-29T07:{index // 60 % 60:02d}:{index % 60:02d}.{index:06d}Z"


def _line(event: dict) -> tuple[str, bytes]:
    return event["ts"], orjson.dumps(event)


def _events(lines: list[tuple[str, bytes]]) -> pa.Table:
    """The event table a flush hands the encoder: Arrow's one-pass read, or the per-line path where it declines."""
    data = b"".join(line + b"\n" for _, line in lines)
    block = event_table.parse_block(data)
    per_line, _, unparsable = event_table.parse_lines([data])
    assert not unparsable
    if block is not None:
        assert block.equals(per_line)
    return per_line


def _reference(lines: list[tuple[str, bytes]]) -> pa.Table:
    """The table built per line in Python, as the encoder first did: a value that is not a string is null."""
    strings: dict[str, list] = {name: [] for name in STRING_COLUMNS}
    received: list = []
    for _, line in lines:
        event = orjson.loads(line)
        for name in STRING_COLUMNS:
            value = event.get(name)
            strings[name].append(value if isinstance(value, str) else None)
        stamp = event.get("received_at")
        received.append(stamp if isinstance(stamp, str) else None)
    try:
        received_at = pa.array(received, pa.string()).cast(UTC_MICROS)
    except pa.ArrowInvalid:
        received_at = pa.nulls(len(lines), UTC_MICROS)
    columns = [
        pa.array([ts for ts, _ in lines], pa.string()).cast(UTC_MICROS),
        received_at,
        *[pa.array(strings[name], pa.string()) for name in STRING_COLUMNS],
        pa.array([line.decode("utf-8") for _, line in lines], pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _encode(lines: list[tuple[str, bytes]]) -> bytes:
    """The encoder's bytes, checked against the per-line reference table."""
    data = parquet_encode.encode(_events(lines))
    assert data == to_parquet(_reference(lines))
    return data


def _mixed_lines() -> list[tuple[str, bytes]]:
    """Unicode, escapes, missing and extra fields, nulls, named keys nested in other fields."""
    events = [
        {"audit_event_id": "a-1", "ts": _stamp(1), "type": "auth", "tenant_id": "t", "received_at": RECEIVED,
         "user_email": "zoë@example.com", "details": {"user_email": 5, "ts": 1, "tool_name": ["x"]}},
        {"ts": _stamp(2), "audit_event_id": "a-2", "action": "quote \" backslash \\ slash / newline \n tab \t",
         "resource_ref": "nul \u0000 bell \u0007 del \u007f", "received_at": RECEIVED},
        {"audit_event_id": "a-3", "ts": _stamp(3), "subject_ref": "emoji 😀 cjk 監査 rtl \u202e bom \ufeff",
         "agent_name": "", "capability": "c", "tool_name": "t", "received_at": RECEIVED},
        {"audit_event_id": "a-4", "ts": _stamp(4), "received_at": RECEIVED},
        {"audit_event_id": "a-5", "ts": _stamp(5), "extra": None, "nested": {"a": [1, 2.5, True, None, {}]},
         "big": 12345678901234567890, "received_at": RECEIVED, "outcome": "deny"},
        {"audit_event_id": "a-6", "ts": _stamp(6)},
    ]
    lines = [_line(event) for event in events]
    # Escapes orjson never writes but JSON allows, also in keys; the values are the same strings.
    lines.append((_stamp(7), b'{"audit_event_id":"a-7","ts":"' + _stamp(7).encode()
                  + b'","received_at":"' + RECEIVED.encode() + b'","\\u0074ype":"\\u00e9\\ud83d\\ude00\\/\\b\\f",'
                  b'"tenant_id" : "spaced" , "user_email":null }'))
    return lines


def test_a_mixed_batch_equals_the_per_line_reference() -> None:
    """Every column, null and escape of a mixed batch comes out as the per-line reference has it."""
    lines = _mixed_lines()
    table = typed_table(_events(lines))
    assert table.schema.equals(parquet_encode.VIEW_SCHEMA, check_metadata=True)
    assert table.cast(SCHEMA).equals(_reference(lines))
    rows = pq.read_table(io.BytesIO(_encode(lines))).to_pylist()
    assert rows[0]["user_email"] == "zoë@example.com" and rows[3]["user_email"] is None
    assert rows[6]["type"] == "é😀/\b\f" and rows[6]["tenant_id"] == "spaced" and rows[6]["user_email"] is None
    assert [row["record_json"].encode() for row in rows] == [line for _, line in lines]


def test_a_string_only_batch_is_read_in_one_pass_with_the_same_result() -> None:
    """Without nulls or numbers in named fields, Arrow's reader takes the whole block and agrees (``_events``)."""
    lines = [_line({"audit_event_id": f"a-{index}", "ts": _stamp(index), "type": "auth", "received_at": RECEIVED,
                    "user_email": "zoë@example.com", "details": {"n": index, "ok": True, "tool_name": [1]}})
             for index in range(50)]
    assert event_table.parse_block(b"".join(line + b"\n" for _, line in lines)) is not None
    _encode(lines)


@pytest.mark.parametrize("value", [5, 1.5, True, ["a"], {"a": "b"}])
def test_a_non_string_value_is_stored_as_null(value: object) -> None:
    """A typed field holding a non-string is null in its column; the other columns keep their values."""
    lines = _mixed_lines()
    lines[2] = _line({**orjson.loads(lines[2][1]), "user_email": value, "pdp": value})
    row = pq.read_table(io.BytesIO(_encode(lines))).to_pylist()[2]
    assert row["user_email"] is None and row["pdp"] is None and row["capability"] == "c"


def test_a_repeated_field_keeps_its_last_value() -> None:
    """orjson keeps the last of repeated keys; so does the stored column."""
    lines = _mixed_lines()
    lines[1] = (lines[1][0], lines[1][1][:-1] + b',"action":"second"}')
    row = pq.read_table(io.BytesIO(_encode(lines))).to_pylist()[1]
    assert row["action"] == "second"


@pytest.mark.parametrize("stamp", ["not a time", "2026-13-01T00:00:00Z"])
def test_an_unparsable_received_at_nulls_the_column(stamp: str) -> None:
    """As before, one unparsable ``received_at`` string leaves the whole column null."""
    lines = _mixed_lines()
    lines[0] = _line({**orjson.loads(lines[0][1]), "received_at": stamp})
    assert pq.read_table(io.BytesIO(_encode(lines))).column("received_at").null_count == len(lines)


def test_a_non_string_received_at_is_null_alone() -> None:
    """As before, a ``received_at`` that is not a string is null; the others stay."""
    lines = _mixed_lines()
    lines[0] = _line({**orjson.loads(lines[0][1]), "received_at": 17})
    received = pq.read_table(io.BytesIO(_encode(lines))).column("received_at").to_pylist()
    assert [stamp is None for stamp in received] == [True, False, False, False, False, True, False]


def test_random_batches_encode_as_the_per_line_reference() -> None:
    """Random events (strings, numbers, nulls, lists, missing fields) give the reference's bytes."""
    generator = random.Random(7)
    choices = [lambda: "s" + str(generator.random()), lambda: "ü\"\\\n" * generator.randint(0, 3), lambda: "",
               lambda: generator.randint(-5, 5), lambda: None, lambda: [1, "x"], lambda: {"k": "v"}]
    for round_ in range(40):
        string_only = round_ % 2 == 0
        lines = []
        for index in range(generator.randint(1, 60)):
            event = {"audit_event_id": f"id-{index}", "ts": _stamp(index)}
            for name in (*STRING_COLUMNS[1:], "received_at", "other"):
                if generator.random() < 0.3:
                    continue
                value = choices[generator.randrange(3 if string_only else len(choices))]()
                event[name] = RECEIVED if name == "received_at" and isinstance(value, str) else value
            lines.append(_line(event))
        _encode(lines)


def test_objects_are_what_arrow_writes_for_the_string_schema() -> None:
    """``record_json`` goes in as views, yet the object is byte for byte the one ``pq.write_table`` makes of
    the string table (Arrow schema included), and reads back with ``SCHEMA``'s types."""
    lines = _mixed_lines()
    sink = io.BytesIO()
    pq.write_table(_reference(lines), sink, compression="zstd", compression_level=parquet_encode.ZSTD_LEVEL,
                   use_dictionary=parquet_encode.DICTIONARY_COLUMNS, row_group_size=parquet_encode.ROW_GROUP_ROWS,
                   write_statistics=parquet_encode.STATISTICS_COLUMNS, data_page_size=parquet_encode.DATA_PAGE_BYTES,
                   write_batch_size=parquet_encode.WRITE_BATCH_ROWS)
    data = parquet_encode.encode(_events(lines))
    assert data == sink.getvalue()
    assert pq.read_table(io.BytesIO(data)).schema.equals(SCHEMA)


def test_every_typed_column_has_statistics_and_record_json_none() -> None:
    """Readers prune by the typed columns' min and max; the whole event's would only fill page headers."""
    data = parquet_encode.encode(_events(_mixed_lines()))
    group = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    with_statistics = {group.column(index).path_in_schema for index in range(group.num_columns)
                       if group.column(index).is_stats_set}
    assert with_statistics == set(SCHEMA.names) - {"record_json"}


def test_line_views_point_into_the_parsed_bytes() -> None:
    """Sorting and trimming the newline move views, not lines: the values sit in the parse's own buffer.
    Values short enough to be stored inline are copied instead, with the same result."""
    lines = [line for _, line in _mixed_lines()]
    data = b"".join(line + b"\n" for line in lines)
    table, _, _ = event_table.parse_lines([data])
    order = [3, 0, 6, 1]
    views = event_table.line_views(table.column("line"), order, trim=1)
    assert views.to_pylist() == [lines[index].decode() for index in order]
    assert views.buffers()[2].address == table.column("line").chunk(0).buffers()[2].address
    again = event_table.line_views(views, [1, 0])
    assert again.to_pylist() == [lines[0].decode(), lines[3].decode()]
    short = pa.array(["{}\n", "{\"a\":\"bcdefghijk\"}\n", "{\"a\":1}\n"], pa.string())
    assert event_table.line_views(short, [2, 0, 1], trim=1).to_pylist() == ['{"a":1}', "{}", '{"a":"bcdefghijk"}']


def test_a_days_file_and_its_parquet_are_views_of_arrows_buffers() -> None:
    """The NDJSON of a day (sorted string views, or plain strings) and its Parquet bytes come back as views of
    Arrow's buffers, with the same bytes a copy would hold: the flush copies neither into Python ``bytes``."""
    lines = [line + b"\n" for _, line in _mixed_lines()]
    table, _, _ = event_table.parse_lines([b"".join(lines)])
    plain = event_table.one_array(table.column("line"))
    body = event_table.concatenated(plain)
    assert bytes(body) == b"".join(lines) and body.format == "B"
    assert np.frombuffer(body, dtype=np.uint8).ctypes.data == plain.buffers()[2].address
    order = [3, 0, 6, 1]
    sorted_body = event_table.concatenated(event_table.line_views(plain, order))
    assert bytes(sorted_body) == b"".join(lines[index] for index in order)
    assert isinstance(parquet_encode.encode(_events(_mixed_lines())), memoryview)
    assert bytes(event_table.concatenated(plain.slice(0, 0))) == b""


def test_a_days_sorted_lines_are_gathered_outside_the_default_pool() -> None:
    """With the writer's default pool (jemalloc, whose free pages are handed back after every flush at the
    maximum), a day's lines are gathered in mimalloc's pool, which keeps its pages for the next flush."""
    pool = event_table.gather_pool()
    assert pool is not None and pool.backend_name == "mimalloc"  # the pyarrow wheels this project installs have it
    lines = [line + b"\n" for _, line in _mixed_lines()] * 200
    table, _, _ = event_table.parse_lines([b"".join(lines)])
    views = event_table.line_views(event_table.one_array(table.column("line")), np.arange(len(lines))[::-1])
    previous = pa.default_memory_pool()
    writers = pa.jemalloc_memory_pool()
    pa.set_memory_pool(writers)  # as writer.__main__ sets it (native_memory.arrow_on_jemalloc)
    try:
        gathered_before, default_before = pool.bytes_allocated(), writers.bytes_allocated()
        body = event_table.concatenated(views)
        assert bytes(body) == b"".join(reversed(lines)) and len(body) > 50_000
        assert pool.bytes_allocated() - gathered_before >= len(body)
        assert writers.bytes_allocated() - default_before < len(body)
        del body
    finally:
        pa.set_memory_pool(previous)


def test_an_empty_partition_encodes_as_before() -> None:
    """No lines: an empty object of the schema."""
    assert pq.read_table(io.BytesIO(_encode([]))).num_rows == 0


def test_verify_reads_back_first_and_last_row_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several row groups: a changed first or last event, or a missing row, fails verification."""
    monkeypatch.setattr(parquet_encode, "ROW_GROUP_ROWS", 3)
    lines = _mixed_lines()
    data = parquet_encode.encode(_events(lines))
    assert pq.ParquetFile(io.BytesIO(data)).metadata.num_row_groups == 3
    events = _events(lines)
    parquet_encode.verify(data, events)
    texts = events.column("line").to_pylist()
    index = events.schema.get_field_index("line")
    for changed in (["{}\n", *texts[1:]], [*texts[:-1], "{}\n"]):
        with pytest.raises(parquet_encode.VerificationError):
            parquet_encode.verify(data, events.set_column(index, "line", pa.array(changed, pa.string())))
    with pytest.raises(parquet_encode.VerificationError):
        parquet_encode.verify(data, events.slice(0, len(lines) - 1))


def test_the_last_rows_have_a_row_group_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last ``LAST_GROUP_ROWS`` rows form the last row group, so the read-back of the last event decodes
    only them; the object holds the reference table's rows in order, and a changed last event still fails."""
    monkeypatch.setattr(parquet_encode, "ROW_GROUP_ROWS", 100)
    lines = [_line({"audit_event_id": f"a-{index}", "ts": _stamp(index), "type": "auth", "received_at": RECEIVED})
             for index in range(250)]
    data = _encode(lines)
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    rows = [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)]
    assert rows == [100, 86, parquet_encode.LAST_GROUP_ROWS]
    assert pq.read_table(io.BytesIO(data)).equals(_reference(lines))
    events = _events(lines)
    index = events.schema.get_field_index("line")
    texts = events.column("line").to_pylist()
    with pytest.raises(parquet_encode.VerificationError):
        parquet_encode.verify(data, events.set_column(index, "line", pa.array([*texts[:-1], "{}\n"], pa.string())))
    few = lines[:parquet_encode.LAST_GROUP_ROWS]
    assert pq.ParquetFile(io.BytesIO(_encode(few))).metadata.num_row_groups == 1


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 7])
@pytest.mark.parametrize("row_group_rows", [3, 32_768])
def test_verify_reads_back_across_its_batches(monkeypatch: pytest.MonkeyPatch, batch_rows: int,
                                              row_group_rows: int) -> None:
    """Row groups read back a batch at a time (in one row group of seven events too): the first event of
    the first batch and the last of the last batch are compared, whatever the batches' size."""
    monkeypatch.setattr(parquet_encode, "ROW_GROUP_ROWS", row_group_rows)
    monkeypatch.setattr(parquet_encode, "VERIFY_BATCH_ROWS", batch_rows)
    lines = _mixed_lines()
    assert len(lines) == 7
    events = _events(lines)
    data = parquet_encode.encode(events)
    parquet_encode.verify(data, events)
    texts = events.column("line").to_pylist()
    index = events.schema.get_field_index("line")
    for changed in (["{}\n", *texts[1:]], [*texts[:-1], "{}\n"], [*texts[:-2], "{}\n", texts[-1]]):
        table = events.set_column(index, "line", pa.array(changed, pa.string()))
        if changed[-1] == texts[-1] and changed[0] == texts[0]:
            parquet_encode.verify(data, table)  # only the first and last events are read back
            continue
        with pytest.raises(parquet_encode.VerificationError):
            parquet_encode.verify(data, table)


def test_verify_refuses_an_object_whose_first_row_group_is_empty() -> None:
    """The right row count with an empty first row group: a VerificationError, not a crash."""
    events = _events(_mixed_lines())
    typed = parquet_encode.typed_table(events).cast(parquet_encode.SCHEMA)
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, parquet_encode.SCHEMA) as writer:
        writer.write_table(typed.slice(0, 0))
        writer.write_table(typed)
    data = sink.getvalue()
    assert pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).num_rows == 0
    with pytest.raises(parquet_encode.VerificationError, match="first row group"):
        parquet_encode.verify(data, events)


@pytest.mark.parametrize("bad", [b"\xff", b"\xed\xa0\x80", b"\xc0\xaf"])
def test_bytes_that_are_not_utf8_never_reach_the_encoder(bad: bytes) -> None:
    """Arrow's reader would pass such bytes through; the block parse declines and the per-line path sets the
    line aside as unparsable (quarantined), so ``record_json`` only ever holds UTF-8."""
    lines = _mixed_lines()
    lines[1] = (lines[1][0], lines[1][1][:-1] + b',"note":"' + bad + b'"}')
    data = b"".join(line + b"\n" for _, line in lines)
    assert event_table.parse_block(data) is None
    assert event_table.parse_block(_uninitialized_copy(data)) is None  # a flush's range is such a view
    assert event_table._line_array(_uninitialized_copy(data)) is None
    table, _, unparsable = event_table.parse_lines([data])
    assert unparsable == [lines[1][1]] and table.num_rows == len(lines) - 1


def _uninitialized_copy(data: bytes) -> memoryview:
    """``data`` in a view of numpy memory, as ``Spool.read_range`` returns a range."""
    view = memoryview(np.empty(len(data), dtype=np.uint8))
    view[:] = data
    return view


def test_a_range_read_into_a_view_reads_as_its_bytes_would() -> None:
    """The lines of a range held in a memoryview (not zero-filled first) parse as the same bytes do,
    non-ASCII UTF-8 included; a last line without its newline is still declined."""
    lines = [line + b"\n" for _, line in _mixed_lines()]
    lines[2] = lines[2][:-2] + ',"note":"grüß 東京"}\n'.encode()
    data = b"".join(lines)
    assert not data.isascii()
    expected = event_table.parse_block(data)
    assert expected is not None
    assert event_table.parse_block(_uninitialized_copy(data)).equals(expected)
    found = event_table._line_array(_uninitialized_copy(data))
    assert found is not None and found[0].to_pylist() == [line.decode() for line in lines]
    assert event_table._line_array(_uninitialized_copy(data[:-1])) is None
    assert event_table._line_array(memoryview(np.empty(0, dtype=np.uint8))) is None


def test_record_json_pages_are_small_so_a_read_decodes_little_per_record() -> None:
    """3,000 events of ~600 bytes: ``record_json`` is split into pages of at most ~64 KiB (plus a batch of
    rows), each of which the page reader locates and reads back exactly."""
    from ingest.page_reader import locate_pages, read_rows

    lines = [_line({"audit_event_id": f"id-{index}", "ts": _stamp(index), "type": "auth",
                    "details": {"pad": "x" * 560, "n": index}}) for index in range(3000)]
    data = to_parquet(typed_table(_events(lines)))
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    index = metadata.schema.names.index("record_json")
    chunk, column = metadata.row_group(0).column(index), metadata.schema.column(index)
    read_at = lambda offset, size: memoryview(data)[offset:offset + size]  # noqa: E731
    pages = locate_pages(read_at, chunk, column)
    limit = parquet_encode.DATA_PAGE_BYTES + parquet_encode.WRITE_BATCH_ROWS * 700
    assert len(pages.pages) >= 3000 * 600 // limit - 1
    assert all(page.uncompressed_size <= limit for page in pages.pages)
    last = metadata.row_group(0).num_rows - 1
    assert last == 2999 - parquet_encode.LAST_GROUP_ROWS
    assert read_rows(read_at, pages, [0, 1499, last]) == {row: lines[row][1].decode() for row in (0, 1499, last)}
    tail = locate_pages(read_at, metadata.row_group(1).column(index), column)
    assert read_rows(read_at, tail, [parquet_encode.LAST_GROUP_ROWS - 1]) == {
        parquet_encode.LAST_GROUP_ROWS - 1: lines[2999][1].decode()}
