"""Encode a partition's events as one typed, zstd-compressed Parquet object, and verify it."""

from __future__ import annotations

import array
import io
import itertools

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from shared.s3_layout import DICTIONARY_COLUMNS, SCHEMA, STRING_COLUMNS, UTC_MICROS
from writer import json_columns

ROW_GROUP_ROWS = 32_768
# zstd level 1: on 20,000 events of ~614 bytes (bench/read_bench.py make_event) writing the table took
# 2.2 us per event and 2.88 MB at level 1, 3.6 us and 3.10 MB at level 3 (the level before), 2.94 MB at 2.
ZSTD_LEVEL = 1
# Pages of about 64 KiB (checked every 64 rows) instead of Arrow's 1 MiB: a read decompresses a whole
# ``record_json`` page for each result row it needs, so a search whose matches are scattered (a
# ``user_email`` substring) decoded ~1 MiB per record. Measured on the same 20,000 events: 12 % larger
# objects (2.88 → 3.22 MB), writing time unchanged within noise.
DATA_PAGE_BYTES = 64 * 1024
WRITE_BATCH_ROWS = 64
TYPED_FIELDS = ("received_at", *STRING_COLUMNS)
MAX_STRING_BYTES = 2**31 - 1  # int32 offsets of a pa.string() array


class VerificationError(Exception):
    """A freshly written object does not read back as written."""


def encode(lines: list[tuple[str, bytes]]) -> bytes:
    """Parquet bytes for events sorted by ``ts``: typed columns plus the whole event as ``record_json``.

    ``lines`` are ``(ts, line)`` pairs whose lines orjson parses as objects (what ``group_records`` keeps).
    """
    table = table_from_json(lines)
    if table is None:
        table = table_from_dicts(lines)
    data = to_parquet(table)
    verify(data, lines)
    return data


def to_parquet(table: pa.Table) -> bytes:
    """The Parquet bytes of a table of ``SCHEMA`` (zstd, dictionary columns, row groups, statistics)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", compression_level=ZSTD_LEVEL,
                   use_dictionary=DICTIONARY_COLUMNS, row_group_size=ROW_GROUP_ROWS, write_statistics=True,
                   data_page_size=DATA_PAGE_BYTES, write_batch_size=WRITE_BATCH_ROWS)
    return sink.getvalue()


def table_from_json(lines: list[tuple[str, bytes]]) -> pa.Table | None:
    """The table built in C++: typed columns read by pyarrow.json, ``record_json`` from the line bytes.

    None when pyarrow cannot read the typed columns as strings (a non-string value, which the per-line
    path stores as null); ``table_from_dicts`` then builds the same table in Python.
    """
    raw = [line for _, line in lines]
    fields = json_columns.read_string_fields(raw, TYPED_FIELDS)
    if fields is None:
        return None
    data = b"".join(raw)
    if len(data) > MAX_STRING_BYTES:
        return None
    offsets = array.array("i", itertools.accumulate(map(len, raw), initial=0))
    record_json = pa.StringArray.from_buffers(len(raw), pa.py_buffer(offsets), pa.py_buffer(data))
    columns = [
        _ts_column(lines),
        _timestamps(fields.column("received_at").combine_chunks()),
        *[fields.column(name).combine_chunks() for name in STRING_COLUMNS],
        record_json,
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def table_from_dicts(lines: list[tuple[str, bytes]]) -> pa.Table:
    """The table built per line in Python: a value that is not a string is stored as null."""
    strings: dict[str, list[str | None]] = {name: [] for name in STRING_COLUMNS}
    received: list[str | None] = []
    for _, line in lines:
        event = orjson.loads(line)
        for name in STRING_COLUMNS:
            value = event.get(name)
            strings[name].append(value if isinstance(value, str) else None)
        stamp = event.get("received_at")
        received.append(stamp if isinstance(stamp, str) else None)
    columns = [
        _ts_column(lines),
        _timestamps(pa.array(received, pa.string())),
        *[pa.array(strings[name], pa.string()) for name in STRING_COLUMNS],
        pa.array([line.decode("utf-8") for _, line in lines], pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _ts_column(lines: list[tuple[str, bytes]]) -> pa.Array:
    return pa.array([ts for ts, _ in lines]).cast(UTC_MICROS)


def _timestamps(values: pa.Array) -> pa.Array:
    """``received_at`` as timestamps; the whole column is null when any value does not parse."""
    try:
        return values.cast(UTC_MICROS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.nulls(len(values), UTC_MICROS)


def verify(data: bytes, lines: list[tuple[str, bytes]]) -> None:
    """Read the object back: row count, ``ts`` statistics, the first and last event from their row groups.

    Only the first and last row groups' ``record_json`` are decompressed (the whole object's when it has
    one row group); the rest is checked from the footer.
    """
    reader = pq.ParquetFile(pa.BufferReader(data))
    metadata = reader.metadata
    if metadata.num_rows != len(lines):
        raise VerificationError(f"object holds {metadata.num_rows} rows, expected {len(lines)}")
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        statistics = group.column(0).statistics
        if group.num_rows and (statistics is None or not statistics.has_min_max):
            raise VerificationError(f"row group {index} has no ts statistics")
    if lines:
        first = reader.read_row_group(0, columns=["record_json"], use_threads=False).column(0)
        last = first
        if metadata.num_row_groups > 1:
            last = reader.read_row_group(metadata.num_row_groups - 1, columns=["record_json"],
                                         use_threads=False).column(0)
        if first[0].as_py().encode() != lines[0][1] or last[-1].as_py().encode() != lines[-1][1]:
            raise VerificationError("object does not read back as written")
