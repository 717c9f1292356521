"""Encode a partition's events as one typed, zstd-compressed Parquet object, and verify it."""

from __future__ import annotations

import base64
import collections
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from shared.s3_layout import DICTIONARY_COLUMNS, SCHEMA, STRING_COLUMNS, UTC_MICROS
from writer import event_table

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
# Min/max statistics for every column but ``record_json``: readers prune by the typed columns (this
# service by ``ts``), and the whole event's min and max were two ~600-byte strings in every 64 KiB page
# header. Without them the same 20,000 events took 2.82 MB instead of 3.01 (6.5 % smaller).
STATISTICS_COLUMNS = [name for name in SCHEMA.names if name != "record_json"]
# ``record_json`` is written from views into the flush's parsed bytes rather than a copy of them (64 MiB for
# a full S3 object). Arrow would record ``string_view`` as the column's type, so the file carries the
# schema Arrow stores for ``SCHEMA`` (``ARROW:schema``, the IPC schema in base64) instead.
VIEW_SCHEMA = SCHEMA.set(SCHEMA.get_field_index("record_json"), SCHEMA.field("record_json").with_type(pa.string_view()))
# Rows decoded at a time when the first and last events are read back: one batch of ~1 MiB of events.
VERIFY_BATCH_ROWS = 2048
# The last rows of an object go in a row group of their own, so that reading the last event back decodes
# that small group rather than a whole one of up to ``ROW_GROUP_ROWS`` (every row of a local flush, which
# has one group). On 14,000 events (bench/flush_bench.py's): the read-back 0.31 -> 0.02 us per event,
# writing 1.38 -> 1.43 (within noise), the objects 0.25 % larger.
LAST_GROUP_ROWS = 64
STORED_SCHEMA = base64.b64encode(SCHEMA.serialize().to_pybytes())


class VerificationError(Exception):
    """A freshly written object does not read back as written."""


def encode(events: pa.Table) -> memoryview:
    """Parquet bytes for a day's (or partition's) events, an ``event_table.SCHEMA`` table sorted by ``ts``:
    typed columns plus the whole event as ``record_json``. A view of Arrow's buffer, not a copy in Python
    ``bytes``."""
    data = to_parquet(typed_table(events))
    verify(data, events)
    return data


def to_parquet(table: pa.Table) -> memoryview:
    """The Parquet bytes of a table of ``SCHEMA`` or ``VIEW_SCHEMA`` (zstd, dictionary columns, row groups,
    the last ``LAST_GROUP_ROWS`` rows in a group of their own, statistics of the typed columns), viewed in
    Arrow's buffer; the file's Arrow schema is ``SCHEMA`` either way, so readers see ``record_json`` as a
    string."""
    sink = pa.BufferOutputStream()  # Arrow's own sink: a Python file object would take the GIL for every write
    with pq.ParquetWriter(sink, table.schema, compression="zstd", compression_level=ZSTD_LEVEL,
                          use_dictionary=DICTIONARY_COLUMNS, write_statistics=STATISTICS_COLUMNS, data_page_size=DATA_PAGE_BYTES,
                          write_batch_size=WRITE_BATCH_ROWS, store_schema=False) as writer:
        split = max(0, table.num_rows - LAST_GROUP_ROWS)
        if split:
            writer.write_table(table.slice(0, split), row_group_size=ROW_GROUP_ROWS)
        writer.write_table(table.slice(split), row_group_size=ROW_GROUP_ROWS)
        writer.add_key_value_metadata({b"ARROW:schema": STORED_SCHEMA})
    return event_table.byte_view(sink.getvalue())


def typed_table(events: pa.Table) -> pa.Table:
    """The Parquet columns of event-table rows (``event_table.SCHEMA`` or ``ORDERED_SCHEMA``): stamps as
    timestamps, ``record_json`` as views of the lines without their newline (``VIEW_SCHEMA``)."""
    columns = [
        events.column("ts").cast(UTC_MICROS),
        _timestamps(events.column("received_at")),
        *[events.column(name) for name in STRING_COLUMNS],
        event_table.line_views(events.column("line"), trim=1),
    ]
    return pa.Table.from_arrays(columns, schema=VIEW_SCHEMA)


def _timestamps(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """``received_at`` as timestamps; the whole column is null when any value does not parse."""
    try:
        return values.cast(UTC_MICROS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.chunked_array([pa.nulls(len(values), UTC_MICROS)])


def verify(data: bytes | memoryview, events: pa.Table) -> None:
    """Read the object back: row count, ``ts`` statistics, the first and last event from their row groups.

    Only the first batch of the first row group and the last row group (``LAST_GROUP_ROWS``, as
    ``to_parquet`` writes them) have their ``record_json`` decompressed; the rest is checked from the footer.
    """
    reader = pq.ParquetFile(pa.BufferReader(data))
    metadata = reader.metadata
    if metadata.num_rows != events.num_rows:
        raise VerificationError(f"object holds {metadata.num_rows} rows, expected {events.num_rows}")
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        statistics = group.column(0).statistics
        if group.num_rows and (statistics is None or not statistics.has_min_max):
            raise VerificationError(f"row group {index} has no ts statistics")
    if events.num_rows:
        lines = events.column("line")
        first, last = _first_and_last_record(reader, metadata.num_row_groups)
        if first + "\n" != lines[0].as_py() or last + "\n" != lines[-1].as_py():
            raise VerificationError("object does not read back as written")


def _first_and_last_record(reader: pq.ParquetFile, row_groups: int) -> tuple[str, str]:
    """The first and the last ``record_json`` of an object with rows, its row groups decoded
    ``VERIFY_BATCH_ROWS`` rows at a time.

    Reading a row group whole made one array of every event in it (16 MiB for a full S3 object) at every
    flush: ``bench/verify_memory.py``.
    """
    def batches(group: int) -> Iterator[pa.Array]:
        for batch in reader.iter_batches(batch_size=VERIFY_BATCH_ROWS, row_groups=[group], columns=["record_json"],
                                         use_threads=False):
            if batch.num_rows:
                yield batch.column(0)

    head = batches(0)
    first_batch = next(head, None)
    if first_batch is None:
        raise VerificationError("the first row group holds no events")
    tail = head if row_groups == 1 else batches(row_groups - 1)
    last_batch = collections.deque(tail, maxlen=1)
    return first_batch[0].as_py(), (last_batch[0] if last_batch else first_batch)[-1].as_py()
