"""Spooled NDJSON lines as one Arrow table of the fields a flush uses: parsed once in C++, or line by line.

The table has ``ts``, ``audit_event_id``, the typed string fields of the Parquet schema (``received_at``
and ``STRING_COLUMNS``) and ``line``, each line's bytes with its newline (so a day's NDJSON file is one
slice of a buffer). ``parse_block`` reads all lines at once with Arrow's JSON reader, which is three times
cheaper per event than ``orjson.loads`` per line and a second pass for the typed columns; it declines
(None) whenever its result could differ from the per-line path, which ``parse_lines`` then takes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.json as pa_json

from shared.s3_layout import STRING_COLUMNS

ID = "audit_event_id"
TYPED_FIELDS = ("received_at", *STRING_COLUMNS)
PARSED_FIELDS = ("ts", *TYPED_FIELDS)
_PARSED_SCHEMA = pa.schema([pa.field(name, pa.string()) for name in PARSED_FIELDS])
SCHEMA = _PARSED_SCHEMA.append(pa.field("line", pa.string()))
_PARSE_OPTIONS = pa_json.ParseOptions(explicit_schema=_PARSED_SCHEMA, unexpected_field_behavior="ignore")
# Tokens Arrow's reader accepts (in fields it otherwise ignores) and orjson does not.
_NON_JSON_TOKENS = (b"NaN", b"Infinity")
_MIN_BLOCK_BYTES = 1 << 20
_MAX_STRING_BYTES = 2**31 - 1


def parse_block(data: bytes) -> pa.Table | None:
    """The table of NDJSON ``data`` (every line ending in a newline), or None when the per-line path must decide.

    None for: an empty or blank line, a line that is not one JSON object, a missing or non-string ``ts`` or
    id, a typed field that is not a string (the per-line path stores it as null), a repeated field, bytes
    that are not UTF-8, NaN or Infinity as a value, more bytes than a string column's 32-bit offsets hold.
    """
    if not data or not data.endswith(b"\n") or len(data) > _MAX_STRING_BYTES or _has_non_json_literal(data):
        return None
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
    if newlines[0] == 0 or (np.diff(newlines) == 1).any():
        return None  # an empty line: the reader would skip it
    options = pa_json.ReadOptions(use_threads=False, block_size=max(len(data) + 1, _MIN_BLOCK_BYTES))
    try:
        parsed = pa_json.read_json(pa.BufferReader(data), read_options=options, parse_options=_PARSE_OPTIONS)
    except pa.ArrowException:  # whatever Arrow's reader cannot take, the per-line path judges
        return None
    if parsed.num_rows != len(newlines):
        return None  # two objects on one line, or a blank line of spaces
    parsed = parsed.combine_chunks()
    if parsed.column("ts").null_count or parsed.column(ID).null_count:
        return None
    offsets = np.empty(len(newlines) + 1, dtype=np.int32)
    offsets[0] = 0
    offsets[1:] = newlines + 1
    line = pa.StringArray.from_buffers(len(newlines), pa.py_buffer(offsets), pa.py_buffer(data))
    return pa.Table.from_arrays([*parsed.columns, line], schema=SCHEMA)


def _has_non_json_literal(data: bytes) -> bool:
    """True when NaN or Infinity may stand as a value (after ``:``, ``,`` or ``[``); text inside a string
    such as ``"aNaNb"`` (a random id) is not, so it does not send a whole flush down the per-line path."""
    for token in _NON_JSON_TOKENS:
        found = data.find(token)
        while found != -1:
            before = data[max(0, found - 16):found].rstrip(b" \t\r-")
            if not before or before[-1:] in b":,[":
                return True
            found = data.find(token, found + 1)
    return False


def parse_lines(payloads: Iterable[bytes]) -> tuple[pa.Table, list[str], list[bytes]]:
    """The table of the lines orjson parses as objects with ``ts`` (a string) and an id, the ids as
    strings (a numeric id too) and the unparsable lines; a typed field that is not a string is null."""
    columns: dict[str, list] = {name: [] for name in PARSED_FIELDS}
    ids: list[str] = []
    lines: list[str] = []
    unparsable: list[bytes] = []
    for payload in payloads:
        for line in payload.split(b"\n"):
            if not line:
                continue
            try:
                event = orjson.loads(line)
                event_id = event[ID]
                if type(event["ts"]) is not str:
                    raise TypeError("ts is not a string")
            except (orjson.JSONDecodeError, KeyError, TypeError):
                unparsable.append(line)
                continue
            ids.append(str(event_id))
            for name, values in columns.items():
                value = event.get(name)
                values.append(value if type(value) is str else None)
            lines.append(line.decode("utf-8") + "\n")
    arrays = [pa.array(columns[name], pa.string()) for name in PARSED_FIELDS]
    return pa.Table.from_arrays([*arrays, pa.array(lines, pa.string())], schema=SCHEMA), ids, unparsable


def joined(parts: list[pa.Table]) -> pa.Table:
    """Consecutive slices of event tables as one table (the slice itself when there is one)."""
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts).combine_chunks()


def ts_bounds(events: pa.Table) -> tuple[str, str]:
    """The first and the last ``ts`` of a non-empty table sorted by ``ts``."""
    stamps = events.column("ts")
    return stamps[0].as_py(), stamps[-1].as_py()


def concatenated(lines: pa.Array) -> bytes:
    """The bytes of a string array's values back to back (one copy, however the array was sliced)."""
    if not len(lines):
        return b""
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + len(lines)]]
    return data[int(bounds[0]):int(bounds[1])].to_pybytes()
