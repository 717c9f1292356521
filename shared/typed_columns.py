"""The typed fields ingest sends beside a batch's lines, so the writer need not parse the lines again.

Ingest has parsed every event it forwards. For each request it encodes, with orjson, one JSON array
``[count, received_at, ts, STRING_COLUMNS[0], ...]``: the request's event count, its ``received_at`` (one
server time for the whole request), then one entry per typed field, in the lines' order:

- a string: every event's value is a string, none holds U+007F (DEL), and these are the values joined by
  DEL (a character JSON does not escape, and no realistic value holds);
- null: no event has a string there;
- an array of strings and nulls: some events have a string there and some do not, or a value holds DEL.

A frame's columns are the requests' arrays inside one more array. The writer keeps them in memory beside
the spooled lines and, at the flush, builds the Arrow columns from them (joined values are split in C++,
so no Python object is made per value) instead of running Arrow's JSON reader over every line, which was
45 % of its instructions. They are an optimization only: the lines stay the record, and the writer parses
them whenever the columns do not check out (a joined entry that splits into another count among others).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from shared.s3_layout import STRING_COLUMNS

# The fields after ``ts`` and ``received_at``, in the order of the writer's event table.
FIELDS = STRING_COLUMNS
SEPARATOR = "\x7f"
_TYPED = ("ts", *FIELDS)
TYPED_NAMES = frozenset(_TYPED)
_REQUEST_LENGTH = 3 + len(FIELDS)


def encode(events: Sequence[dict[str, Any]], received_at: str, body: bytes | None = None) -> bytes:
    """The typed fields of one request's normalized events (``ts`` canonical, strings where typed).

    ``body``, the JSON the events were parsed from: when it holds no DEL (``separator_free``), no value
    can hold the separator, which spares counting separators in every joined column. A single event's
    strings are their own entries (nothing to join), or one-value lists when they hold the separator.
    """
    if len(events) == 1:
        return orjson.dumps([1, received_at, *[(value if SEPARATOR not in value else [value]) if type(value) is str
                                               else None for value in map(events[0].get, _TYPED)]])
    free = body is not None and separator_free(body)
    found = transposed(events)
    if found is not None:
        return encode_entries(len(events), received_at, found.get("ts"), entries(found, free), free)
    get = dict.get
    columns = [list(map(get, events, repeat(name))) for name in _TYPED]
    return orjson.dumps([len(events), received_at, *[_entry(values, False, free) for values in columns]])


def encode_strings(event: dict[str, Any], received_at: str) -> bytes:
    """``encode`` of one event whose typed fields, where present, are strings that do not hold the separator
    (the caller knows: a body without DEL or backslash, no typed field among the event's non-strings)."""
    return orjson.dumps([1, received_at, *map(event.get, _TYPED)])


def transposed(events: Sequence[dict[str, Any]]) -> dict[str, tuple[Any, ...]] | None:
    """Every key's values, in the events' order, when all events have the first one's keys and no others
    (same key count, every key found) and it has two or more; else None. One ``itemgetter`` per event and a
    transpose, in C."""
    keys = list(events[0])
    if len(keys) < 2 or sum(map(len, events)) != len(keys) * len(events):
        return None
    try:
        return dict(zip(keys, zip(*map(itemgetter(*keys), events))))
    except KeyError:
        return None


def entries(columns: dict[str, Sequence[Any]], free: bool) -> list[str | list[str | None] | None]:
    """The entries of ``FIELDS`` (``ts`` aside) for events whose every key has a column in ``columns``
    (``transposed``); ``free`` as in ``separator_free``. A field's entry is a string only when every event's
    value there is a string."""
    return [_entry(columns.get(name), True, free) for name in FIELDS]


def encode_entries(count: int, received_at: str, stamps: Sequence[Any] | None, field_entries: Sequence[Any],
                   free: bool) -> bytes:
    """One request's encoding from its events' ``ts`` values (None: no event has one) and ``entries``."""
    return orjson.dumps([count, received_at, _entry(stamps, True, free), *field_entries])


def _entry(values: Sequence[Any] | None, complete: bool, free: bool) -> str | list[str | None] | None:
    """One field's entry: the values joined when all are strings without the separator, else null or the
    list (strings or null). With ``complete`` no value is a missing field's None; with ``free`` no value
    holds the separator (``separator_free``)."""
    if values is None:
        return None
    if complete or None not in values:
        try:
            joined = SEPARATOR.join(values)
        except TypeError:  # a value of another type (or a posted null)
            pass
        else:
            if free or joined.count(SEPARATOR) == len(values) - 1:
                return joined
    values = [value if type(value) is str else None for value in values]
    return values if values.count(None) < len(values) else None


def separator_free(body: bytes) -> bool:
    """True when no string decoded from this JSON body can hold the separator (no DEL, raw or escaped)."""
    # ``find``, not ``in`` (see ``compact_batch.has_control_bytes``).
    return body.find(b"\x7f") < 0 and (body.find(b"\\") < 0 or (body.find(b"\\u007f") < 0 and body.find(b"\\u007F") < 0))


def frame_section(parts: Sequence[bytes]) -> bytes:
    """The columns of a frame: the requests' ``encode`` results, in the frame's order."""
    return b"".join(section_pieces(parts))


def section_pieces(parts: Sequence[bytes]) -> list[bytes]:
    """``frame_section`` as pieces to write back to back (a frame joins them once with its other pieces)."""
    if not parts:
        return [b"[]"]
    pieces = [b","] * (2 * len(parts) + 1)
    pieces[0], pieces[-1] = b"[", b"]"
    pieces[1:-1:2] = parts
    return pieces


def decode(sections: Sequence[bytes]) -> tuple[list[pa.Array], list[int]]:
    """The Arrow columns (``ts``, ``received_at``, then ``FIELDS``) of frames' sections, and each section's
    row count. Raises ValueError (orjson's decode error is one), TypeError or an Arrow error when a section
    is not what ``encode`` and ``frame_section`` write, or a joined entry splits into another count."""
    requests: list[list[Any]] = []
    rows = []
    for section in sections:
        found = orjson.loads(section)
        if type(found) is not list:
            raise ValueError("a columns section is not an array")
        rows.append(sum(map(_count, found)))
        requests.extend(found)
    counts = [request[0] for request in requests]
    received = _repeated([request[1] for request in requests], counts)
    fields = [_column_array([request[index] for request in requests], counts) for index in range(2, _REQUEST_LENGTH)]
    return [fields[0], received, *fields[1:]], rows


def _count(request: Any) -> int:
    """The row count of one request's array, checked against its list entries."""
    if type(request) is not list or len(request) != _REQUEST_LENGTH or type(request[0]) is not int or request[0] < 1:
        raise ValueError("a request's columns do not have the encoded shape")
    if type(request[1]) is not str:
        raise ValueError("a request's received_at is not a string")
    for entry in request[2:]:
        if type(entry) is list and len(entry) != request[0]:
            raise ValueError("a column's length differs from the request's event count")
    return request[0]


def _repeated(values: list[str], counts: list[int]) -> pa.Array:
    """Each request's one value (its ``received_at``) repeated for each of its events, taken in C++."""
    return pa.array(values, pa.string()).take(pa.array(np.repeat(np.arange(len(values)), counts)))


def _column_array(entries: list[Any], counts: list[int]) -> pa.Array:
    """One field's values over all requests, from runs of the same kind of entry."""
    pieces = []
    start = 0
    while start < len(entries):
        kind = type(entries[start])
        end = start + 1
        while end < len(entries) and type(entries[end]) is kind:
            end += 1
        run, run_counts = entries[start:end], counts[start:end]
        if kind is str:
            pieces.append(_split(SEPARATOR.join(run), sum(run_counts)))
        elif entries[start] is None:
            pieces.append(pa.nulls(sum(run_counts), pa.string()))
        elif kind is list:
            pieces.append(pa.array([value for values in run for value in values], pa.string()))
        else:
            raise TypeError(f"a column entry of type {kind.__name__}")
        start = end
    return pieces[0] if len(pieces) == 1 else pa.concat_arrays(pieces)


def _split(joined: str, count: int) -> pa.Array:
    """The ``count`` values joined in ``joined``; ValueError when they are not that many."""
    values = pc.split_pattern(pa.array([joined], pa.string()), SEPARATOR).values
    if len(values) != count:
        raise ValueError(f"joined values split into {len(values)}, not {count}")
    return values
