"""Encode a partition's events as one typed, zstd-compressed Parquet object, and verify it."""

from __future__ import annotations

import io

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from shared.s3_layout import DICTIONARY_COLUMNS, SCHEMA, STRING_COLUMNS, UTC_MICROS

ROW_GROUP_ROWS = 32_768
ZSTD_LEVEL = 3


class VerificationError(Exception):
    """A freshly written object does not read back as written."""


def encode(lines: list[tuple[str, bytes]]) -> bytes:
    """Parquet bytes for events sorted by ``ts``: typed columns plus the whole event as ``record_json``."""
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
        pa.array([ts for ts, _ in lines]).cast(UTC_MICROS),
        _timestamps(received),
        *[pa.array(strings[name], pa.string()) for name in STRING_COLUMNS],
        pa.array([line.decode("utf-8") for _, line in lines], pa.string()),
    ]
    table = pa.Table.from_arrays(columns, schema=SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", compression_level=ZSTD_LEVEL,
                   use_dictionary=DICTIONARY_COLUMNS, row_group_size=ROW_GROUP_ROWS, write_statistics=True)
    data = sink.getvalue()
    verify(data, lines)
    return data


def _timestamps(values: list[str | None]) -> pa.Array:
    try:
        return pa.array(values, pa.string()).cast(UTC_MICROS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.nulls(len(values), UTC_MICROS)


def verify(data: bytes, lines: list[tuple[str, bytes]]) -> None:
    """Read the object back: same row count, same first and last event, readable statistics."""
    table = pq.read_table(io.BytesIO(data), columns=["ts", "record_json"])
    if table.num_rows != len(lines):
        raise VerificationError(f"object holds {table.num_rows} rows, expected {len(lines)}")
    if lines:
        records = table.column("record_json")
        if records[0].as_py().encode() != lines[0][1] or records[-1].as_py().encode() != lines[-1][1]:
            raise VerificationError("object does not read back as written")
