"""Arrow masks of a plan's range and filters over a table of columns (one row group or many at once)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ingest.read_plan import LOWER, Plan, event_micros
from shared.s3_layout import UTC_MICROS


def column_or_nulls(table: pa.Table, name: str, decode: bool = True) -> pa.ChunkedArray:
    """A string column (dictionary-encoded kept as is unless ``decode``); all nulls when absent."""
    if name in table.column_names and not pa.types.is_null(table.column(name).type):
        column = table.column(name)
        if not decode and pa.types.is_dictionary(column.type):
            return column
        return column.cast(pa.string())
    return pa.chunked_array([pa.nulls(table.num_rows, pa.string())])


def ts_micros(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A ts column as int64 µs, whatever its stored type (legacy objects store strings)."""
    if pa.types.is_timestamp(column.type):
        return column.cast(UTC_MICROS).cast(pa.int64())
    if pa.types.is_null(column.type):
        return pa.chunked_array([pa.nulls(len(column), pa.int64())])
    try:
        return column.cast(pa.string()).cast(UTC_MICROS).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.chunked_array([pa.array([event_micros({"ts": v}) for v in column.to_pylist()], pa.int64())])


def equals(column: pa.ChunkedArray, value: str) -> Any:
    """``column == value`` (null where the column is null); dictionary columns compare their codes.

    Comparing a dictionary column with a string would decode every row; instead the chunks' dictionaries
    are unified once and the value's code is compared with the indices.
    """
    if not pa.types.is_dictionary(column.type) or column.num_chunks == 0:
        return pc.equal(column, value)
    unified = column.unify_dictionaries()
    indices = pa.chunked_array([chunk.indices for chunk in unified.chunks], column.type.index_type)
    code = pc.index(unified.chunk(0).dictionary, pa.scalar(value, column.type.value_type)).as_py()
    return pc.equal(indices, code if code >= 0 else -1)


def filter_mask(table: pa.Table, ts: pa.ChunkedArray, plan: Plan, email_mask: Any = None) -> pa.ChunkedArray:
    """True where a row lies in the plan's range and passes every filter (never null).

    ``email_mask``, when given, is the ``user_email`` substring match already computed (see text_search);
    otherwise it is matched here on the table's ``user_email.lower`` column.
    """
    mask = pc.and_(pc.greater_equal(ts, plan.since_us), pc.less_equal(ts, plan.until_us))
    for name, value in plan.filters.items():
        mask = pc.and_kleene(mask, equals(column_or_nulls(table, name, decode=False), value))
    if plan.capability is not None:
        capability = column_or_nulls(table, "capability")
        effective = pc.if_else(pc.is_null(capability), column_or_nulls(table, "action"), capability)
        mask = pc.and_kleene(mask, pc.equal(effective, plan.capability))
    if plan.user_email is not None and email_mask is not None:
        mask = pc.and_kleene(mask, email_mask)
    elif plan.user_email is not None:
        emails = column_or_nulls(table, "user_email" + LOWER)
        mask = pc.and_kleene(mask, pc.match_substring(emails, plan.user_email.lower()))
    return pc.fill_null(mask, False)
