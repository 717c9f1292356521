"""Read chosen top-level string fields of NDJSON event lines into Arrow columns in C++ (pyarrow.json)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.json as pa_json

MIN_BLOCK_BYTES = 1 << 20


def read_string_fields(lines: Sequence[bytes], fields: Sequence[str]) -> pa.Table | None:
    """One string column per field (null where a line lacks it, or has it as JSON null), row i from line i.

    ``lines`` must each be one JSON object that orjson parses (what ``group_records`` keeps); the
    guarantee is only that a returned column holds what ``orjson.loads(line).get(field)`` holds when that
    is a string or None. None means pyarrow could not read them so: a field with a non-string value in
    some line, a field repeated in a line, a line Arrow's parser rejects, bytes that are not UTF-8 (Arrow's
    parser does not check them), or a row count that differs from the line count. The caller then takes
    its per-line path.
    """
    if not lines:
        return None
    data = b"\n".join(lines)
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    parse_options = pa_json.ParseOptions(
        explicit_schema=pa.schema([pa.field(name, pa.string()) for name in fields]),
        unexpected_field_behavior="ignore",
    )
    read_options = pa_json.ReadOptions(use_threads=False, block_size=max(len(data) + 1, MIN_BLOCK_BYTES))
    try:
        table = pa_json.read_json(io.BytesIO(data), read_options=read_options, parse_options=parse_options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if table.num_rows != len(lines):
        return None
    return table.combine_chunks()
