"""Records encoded for a response: a JSON array for pages, NDJSON lines or CSV rows for exports."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson

from shared.s3_layout import STRING_COLUMNS

CSV_COLUMNS = ["ts", "received_at", *STRING_COLUMNS, "record_json"]
ENCODINGS = ("json", "ndjson", "csv")


def encode_records(records: list[dict[str, Any]], encoding: str) -> bytes:
    """``records`` as ``json`` (one array), ``ndjson`` (a line each) or ``csv`` (a row each, no header)."""
    if encoding == "json":
        return orjson.dumps(records)
    if encoding == "ndjson":
        return b"".join(orjson.dumps(record) + b"\n" for record in records)
    rows = []
    for record in records:
        row = [record.get("ts"), record.get("received_at")]
        row += [value if isinstance(value := record.get(name), str) else None for name in STRING_COLUMNS]
        row.append(orjson.dumps(record).decode())
        rows.append(row)
    return csv_rows(rows)


def csv_rows(rows: list[list[Any]]) -> bytes:
    """Rows as CSV (RFC 4180 line ends), UTF-8."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")
