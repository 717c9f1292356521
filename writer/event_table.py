"""Spooled NDJSON lines as one Arrow table of the fields a flush uses: parsed once in C++, or line by line.

The table has ``ts``, ``audit_event_id``, the typed string fields of the Parquet schema (``received_at``
and ``STRING_COLUMNS``) and ``line``, each line's bytes with its newline, over the parsed bytes themselves.
Sorted tables (``ordered``) keep ``line`` as views into those bytes, and ``record_json`` is the same views
one byte shorter, so a flush copies its lines only into the files it writes.

Three ways to the table, cheapest first: ``from_columns`` takes the typed fields ingest sent beside the
lines (no JSON parse but samples); ``parse_block`` reads all lines at once with Arrow's JSON reader, three
times cheaper per event than ``orjson.loads`` per line; ``parse_lines`` judges line by line. The first two
decline (None) whenever their result could differ from the per-line path's.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from shared import typed_columns
from shared.s3_layout import STRING_COLUMNS

ID = "audit_event_id"
TYPED_FIELDS = ("received_at", *STRING_COLUMNS)
PARSED_FIELDS = ("ts", *TYPED_FIELDS)
_PARSED_SCHEMA = pa.schema([pa.field(name, pa.string()) for name in PARSED_FIELDS])
SCHEMA = _PARSED_SCHEMA.append(pa.field("line", pa.string()))
# A flush's day tables: ``line`` as views into the parsed bytes, so sorting moves 16 bytes a row, not the line.
ORDERED_SCHEMA = _PARSED_SCHEMA.append(pa.field("line", pa.string_view()))
_PARSE_OPTIONS = pa_json.ParseOptions(explicit_schema=_PARSED_SCHEMA, unexpected_field_behavior="ignore")
# Tokens Arrow's reader accepts (in fields it otherwise ignores) and orjson does not.
_NON_JSON_TOKENS = (b"NaN", b"Infinity")
_MIN_BLOCK_BYTES = 1 << 20
_NEWLINE_PIECE_BYTES = 4 << 20
_MAX_STRING_BYTES = 2**31 - 1
_MAX_SAMPLED_RECORDS = 64


def parse_block(data: bytes | bytearray | memoryview) -> pa.Table | None:
    """The table of NDJSON ``data`` (every line ending in a newline), or None when the per-line path must decide.

    None for: an empty or blank line, a line that is not one JSON object, a missing or non-string ``ts`` or
    id, a typed field that is not a string (the per-line path stores it as null), a repeated field, bytes
    that are not UTF-8, NaN or Infinity as a value, more bytes than a string column's 32-bit offsets hold.
    """
    if isinstance(data, memoryview):
        data = bytes(data)  # a range without typed fields (rare): one copy buys ``bytes.find`` for the scan below
    if _has_non_json_literal(data):
        return None
    found = _line_array(data)
    if found is None:
        return None
    line, _ = found
    options = pa_json.ReadOptions(use_threads=False, block_size=max(len(data) + 1, _MIN_BLOCK_BYTES))
    try:
        parsed = pa_json.read_json(pa.BufferReader(data), read_options=options, parse_options=_PARSE_OPTIONS)
    except pa.ArrowException:  # whatever Arrow's reader cannot take, the per-line path judges
        return None
    if parsed.num_rows != len(line):
        return None  # two objects on one line, or a blank line of spaces
    parsed = parsed.combine_chunks()
    if parsed.column("ts").null_count or parsed.column(ID).null_count:
        return None
    return pa.Table.from_arrays([*parsed.columns, line], schema=SCHEMA)


def from_columns(data: bytes | bytearray | memoryview, ends: list[int], sections: list[bytes]) -> pa.Table | None:
    """The table of NDJSON ``data`` from the typed fields ingest sent with it (``shared.typed_columns``), one
    section per record (``ends``: where each record's lines end), or None when they do not check out.

    Checked: every record has as many rows as lines, ``ts`` and the id are never null, and the first line
    and the last line of every record (of 64 records spread over the range when there are more) parse
    (orjson) to the typed values of their rows; the lines as in ``parse_block`` (no empty line, UTF-8,
    within 32-bit offsets).
    """
    found = _line_array(data)
    if found is None or len(ends) != len(sections):
        return None
    line, newlines = found
    try:
        columns, rows = typed_columns.decode(sections)
    except (ValueError, TypeError, pa.ArrowException):
        return None
    record_ends = np.cumsum(rows)
    if not np.array_equal(record_ends, np.searchsorted(newlines, ends)):
        return None  # a record with more or fewer rows than lines
    table = pa.Table.from_arrays([*columns, line], schema=SCHEMA)
    if table.column("ts").null_count or table.column(ID).null_count:
        return None
    return table if _rows_match_lines(table, _sample_rows(record_ends)) else None


def _sample_rows(record_ends: np.ndarray) -> list[int]:
    """The rows whose lines are parsed to check the columns: the first row, and the last row of every
    record, or of ``_MAX_SAMPLED_RECORDS`` records spread over the range when there are more."""
    ends = record_ends[record_ends > 0]
    if len(ends) > _MAX_SAMPLED_RECORDS:
        ends = ends[np.linspace(0, len(ends) - 1, _MAX_SAMPLED_RECORDS).astype(np.int64)]
    return sorted({0, *(ends - 1).tolist()}) if len(ends) else []


def _rows_match_lines(table: pa.Table, rows: list[int]) -> bool:
    """True when each of ``rows`` holds the typed values its line parses to (a string, else null)."""
    sample = table.take(pa.array(rows, pa.int64()))
    values = sample.select(PARSED_FIELDS).to_pylist()
    for expected, line in zip(values, sample.column("line").to_pylist()):
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        if type(event) is not dict:
            return False
        for name, value in expected.items():
            found = event.get(name)
            if (found if type(found) is str else None) != value:
                return False
    return True


def _line_array(data: bytes | bytearray | memoryview) -> tuple[pa.StringArray, np.ndarray] | None:
    """``line`` over NDJSON ``data`` (each line with its newline, no copy) and the newlines' offsets; None
    for no data, a last line without a newline, an empty line, bytes that are not UTF-8, or more bytes than
    32-bit offsets hold."""
    if not len(data) or data[-1] != 0x0A or len(data) > _MAX_STRING_BYTES:
        return None
    newlines = _newline_positions(data)
    if newlines[0] == 0 or (np.diff(newlines) == 1).any():
        return None  # an empty line: the reader would skip it
    offsets = np.empty(len(newlines) + 1, dtype=np.int32)
    offsets[0] = 0
    offsets[1:] = newlines + 1
    line = pa.StringArray.from_buffers(len(newlines), pa.py_buffer(offsets), pa.py_buffer(data))
    if not _is_ascii(data):
        try:
            line.validate(full=True)  # UTF-8 checked in place (``decode`` would build a str of the whole range)
        except pa.ArrowInvalid:
            return None
    return line, newlines


def _is_ascii(data: bytes | bytearray | memoryview) -> bool:
    """True when every byte is below 0x80 (``bytes.isascii``; a view is judged by numpy)."""
    if isinstance(data, (bytes, bytearray)):
        return data.isascii()
    return int(np.frombuffer(data, dtype=np.uint8).max(initial=0)) < 0x80


def _newline_positions(data: bytes | bytearray | memoryview) -> np.ndarray:
    """The offsets of the newlines in ``data``, found a piece at a time: comparing the whole range at once
    would allocate a mask as large as the range (64 MiB for a full S3 object)."""
    values = np.frombuffer(data, dtype=np.uint8)
    return np.concatenate([np.flatnonzero(values[start:start + _NEWLINE_PIECE_BYTES] == 0x0A) + start
                           for start in range(0, len(values), _NEWLINE_PIECE_BYTES)])


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


def ordered(table: pa.Table, order: np.ndarray) -> pa.Table:
    """The rows ``order`` of an event table (``SCHEMA`` or ``ORDERED_SCHEMA``) as an ``ORDERED_SCHEMA`` table:
    the small columns taken, ``line`` as views into the same bytes (the lines themselves are not copied)."""
    indices = pa.array(order, pa.int64())
    columns = [table.column(name).take(indices) for name in PARSED_FIELDS]
    return pa.Table.from_arrays([*columns, line_views(table.column("line"), order)], schema=ORDERED_SCHEMA)


def line_views(lines: pa.Array | pa.ChunkedArray, order: np.ndarray | None = None, trim: int = 0) -> pa.Array:
    """A ``string_view`` array of the values ``order`` (all, in order, when None) of a string or string-view
    array without their last ``trim`` bytes, pointing into the array's own data buffers (no copy of values).

    Values that would end up 12 bytes or shorter are stored inline by the format, so the values are then
    copied instead (no event line is that short; the copy keeps the function total).
    """
    lines = one_array(lines)
    if lines.null_count:
        raise ValueError("event lines are never null")
    if pa.types.is_string_view(lines.type):
        views = np.frombuffer(lines.buffers()[1], dtype=np.int32).reshape(-1, 4)[lines.offset:lines.offset + len(lines)]
        views = views[order] if order is not None else views.copy()
        data_buffers = lines.buffers()[2:]
        lengths = views[:, 0] - trim
        inline = lengths <= 12
    else:
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset:lines.offset + len(lines) + 1]
        starts, lengths = offsets[:-1], np.diff(offsets) - trim
        if order is not None:
            starts, lengths = starts[order], lengths[order]
        inline = lengths <= 12
        data_buffers = [lines.buffers()[2]]
        views = np.zeros((len(lengths), 4), dtype=np.int32)
        if len(lengths) and not inline.any():
            first_bytes = np.frombuffer(data_buffers[0], dtype=np.uint8)[starts[:, None] + np.arange(4)]
            views[:, 1] = np.ascontiguousarray(first_bytes).view(np.int32)[:, 0]
            views[:, 3] = starts
    if inline.any():
        return _copied_views(lines, order, trim)
    views[:, 0] = lengths
    return pa.Array.from_buffers(pa.string_view(), len(views), [None, pa.py_buffer(views), *data_buffers])


def one_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as one array: its only chunk as it is (``combine_chunks`` would copy even that), else joined."""
    if isinstance(values, pa.Array):
        return values
    return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()


def _copied_views(lines: pa.Array, order: np.ndarray | None, trim: int) -> pa.Array:
    """``line_views`` by copying the values, for when some are short enough to be stored inline."""
    values = lines.cast(pa.string())
    if order is not None:
        values = values.take(pa.array(order, pa.int64()))
    if trim:
        values = pc.binary_slice(values.cast(pa.binary()), 0, -trim).cast(pa.string())
    return values.cast(pa.string_view())


def joined(runs: list[tuple[pa.Table, int, int]]) -> pa.Table:
    """Rows ``start:end`` of event tables, in order, as one table: a run that continues the previous one in
    the same table extends its slice, so rows that are adjacent in their table are not copied."""
    merged: list[tuple[pa.Table, int, int]] = []
    for table, start, end in runs:
        if merged and merged[-1][0] is table and merged[-1][2] == start:
            merged[-1] = (table, merged[-1][1], end)
        else:
            merged.append((table, start, end))
    parts = [table.slice(start, end - start) for table, start, end in merged]
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts).combine_chunks()


def ts_bounds(events: pa.Table) -> tuple[str, str]:
    """The first and the last ``ts`` of a non-empty table sorted by ``ts``."""
    stamps = events.column("ts")
    return stamps[0].as_py(), stamps[-1].as_py()


def concatenated(lines: pa.Array) -> memoryview:
    """The bytes of a string or string-view array's values back to back, viewed in Arrow's buffer: string
    views are gathered once (into ``gather_pool``), and no Python ``bytes`` copy of a day's file is made
    (that copy of ~8 MB per local flush, into fresh pages, was ~3 % of the writer's CPU in ``perf``)."""
    if not len(lines):
        return memoryview(b"")
    if pa.types.is_string_view(lines.type):
        lines = lines.cast(pa.string(), memory_pool=gather_pool())
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + len(lines)]]
    return byte_view(data.slice(int(bounds[0]), int(bounds[1]) - int(bounds[0])))


@functools.cache
def gather_pool() -> pa.MemoryPool | None:
    """Where a day's sorted lines are gathered: Arrow's mimalloc pool, apart from the default one (None where
    the build has no mimalloc).

    At the maximum the writer sits above the resident size at which each flush hands the default pool's free
    pages back (``writer.flusher.TRIM_ABOVE_BYTES``), so the ~8 MB gathered for a day's file were faulted
    in afresh at every flush: 4.1 % of the writer's time in ``perf``. mimalloc keeps them for the next
    flush, and neither that purge nor glibc's trim touches them. (The C library's heap kept them too, but a
    trim of a heap holding them stalled the writer for 100-360 ms.) Six alternated rounds
    (bench/cpu_split.py --seconds 10): page faults per 100-event request 23.8-33.5 -> 12.8-17.1, the writer's
    kernel time 173-212 -> 140-180 us per request, stored events/s 144,600 -> 148,800 (means; accepted the
    same within noise); the writer's peak under 6x overload 216 -> 212 / 220 MB (two runs).
    """
    try:
        return pa.mimalloc_memory_pool()
    except NotImplementedError:
        return None


def byte_view(buffer: pa.Buffer) -> memoryview:
    """An Arrow buffer as unsigned bytes, without a copy (Arrow's own buffer protocol gives signed ones)."""
    return memoryview(buffer).cast("B")
