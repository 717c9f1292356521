"""Turn spooled records into per-day tables of events sorted by ``ts``, deduplicated by ``audit_event_id``."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.s3_layout import UTC_MICROS
from shared.spool_format import SpoolRange, SpoolRecord
from writer import event_table
from writer.dedupe import DedupeWindow
from writer.id_hashes import column_hashes, legacy_column_hashes

log = logging.getLogger("auditlake.writer.batches")
DayKey = tuple[str, str, str]
# 0001-01-01T00:00:00Z in microseconds since the epoch: a stamp before it (year 0000, which Arrow reads) names
# no day Python's datetime knows, and its file's name broke the readers' listings and /v1/audit/verify.
_FIRST_MICROS = -62_135_596_800_000_000


@dataclasses.dataclass
class FlushBatch:
    """The events of one spool range: per UTC day a table (``event_table.ORDERED_SCHEMA``) sorted by ``ts``."""

    first_seq: int
    last_seq: int
    days: dict[DayKey, pa.Table]
    events: int
    duplicates: int
    unparsable: list[bytes]
    id_hashes: np.ndarray  # uint64, of the events kept (``id_hashes.column_hashes``)
    parsed: bool = True  # False when the table came from the typed fields ingest sent
    fields_refused: bool = False  # typed fields were sent for every record and did not check out


def group_records(records: list[SpoolRecord], window: DedupeWindow | None = None) -> FlushBatch:
    """``group_range`` of records already in memory."""
    return group_range(SpoolRange.of(records), window)


def group_range(span: SpoolRange, window: DedupeWindow | None = None,
                columns: list[bytes | None] | None = None) -> FlushBatch:
    """Parse the range's lines once, drop ids seen earlier in the range or in the window, group by day.

    ``columns`` are the records' typed fields as ingest sent them (``shared.typed_columns``); when every
    record has them and they check out, the lines are not parsed. Days are keyed by ``(ts[0:4], ts[5:7],
    ts[8:10])``; within a day events keep the order of a stable sort by ``ts`` read as a time (for
    canonical stamps, the same as by their text; equal stamps in spool order). The day tables' lines point into ``span.data``.
    """
    table = None
    refused = False
    if columns and None not in columns:
        table = event_table.from_columns(span.data, span.ends, columns)
        refused = table is None
        if refused:
            log.error("typed fields sent with the lines do not match them; the lines are parsed instead",
                      extra={"first_seq": span.first_seq, "last_seq": span.last_seq})
    parsed = table is None
    if parsed:
        table = event_table.parse_block(span.data)
    if table is not None:
        ids = table.column(event_table.ID)
        unparsable: list[bytes] = []
    else:
        table, parsed_ids, unparsable = event_table.parse_lines(span.payloads())
        ids = pa.array([event_id.encode("utf-8", "surrogatepass") for event_id in parsed_ids], pa.binary())
    unreadable, micros = stamp_micros(table.column("ts"))
    if len(unreadable):
        log.error("events whose ts cannot be read as a timestamp are kept in quarantine, not stored",
                  extra={"first_seq": span.first_seq, "last_seq": span.last_seq, "events": len(unreadable)})
        lines = table.column("line").take(pa.array(unreadable)).to_pylist()
        unparsable = [*unparsable, *(line.encode("utf-8").removesuffix(b"\n") for line in lines)]
        readable = np.ones(table.num_rows, dtype=bool)
        readable[unreadable] = False
        table, ids = table.filter(pa.array(readable)), ids.filter(pa.array(readable))
    hashes = column_hashes(ids)
    keep = first_of_each(hashes)
    if window is not None and len(hashes):
        earlier = window.seen(hashes, lambda: legacy_column_hashes(ids))
        if earlier:
            keep &= ~np.isin(hashes, np.fromiter(earlier, dtype=np.uint64))
    kept = int(keep.sum())
    return FlushBatch(span.first_seq, span.last_seq, _days(table, np.flatnonzero(keep), micros), kept, len(hashes) - kept,
                      unparsable, hashes[keep], parsed, refused)


def first_of_each(hashes: np.ndarray) -> np.ndarray:
    """A mask of the first row of each distinct hash. One unstable sort of the hashes (numpy's vectorised
    argsort) and, per run of equal ones, the smallest row: 0.39-0.40 ms for 28,000 against 1.65-1.73 with
    ``np.unique(return_index=True)`` (``bench/step_costs.py``)."""
    keep = np.zeros(len(hashes), dtype=bool)
    if not len(hashes):
        return keep
    order = np.argsort(hashes)
    ordered = hashes[order]
    starts = np.empty(len(hashes), dtype=bool)
    starts[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    keep[np.minimum.reduceat(order, np.flatnonzero(starts))] = True
    return keep


def stamp_micros(stamps: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose ``ts`` Arrow cannot read as a timestamp from year 1 on, or that have none, and the
    other rows' stamps as microseconds since the epoch (int64, in order): one cast of the column when
    every row's reads, row by row only when some do not.

    Ingest stores only canonical stamps, but a range holding one that Arrow cannot read (an ingest bug, a
    build that let one through) would fail every flush of its range, and the writer would store nothing
    more: such rows are set aside with the unparsable lines (quarantined) and the rest is stored.
    """
    micros = _micros(stamps)
    if micros is not None:
        return np.empty(0, dtype=np.int64), micros
    rows = [_micros(pa.array([value], pa.string())) for value in stamps.to_pylist()]
    unreadable = np.flatnonzero([row is None for row in rows])
    return unreadable, np.array([row[0] for row in rows if row is not None], dtype=np.int64)


def _micros(stamps: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """Every stamp as microseconds since the epoch (int64), when Arrow reads each as a timestamp from year 1
    on and none is missing; else None."""
    try:
        micros = stamps.cast(UTC_MICROS).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if micros.null_count or (len(micros) and pc.min(micros).as_py() < _FIRST_MICROS):
        return None
    return np.asarray(micros)


def _days(table: pa.Table, kept: np.ndarray, micros: np.ndarray) -> dict[DayKey, pa.Table]:
    """The rows ``kept`` sorted by ``ts`` (stable), cut into days; prefixes naming the same day are merged in
    order. The lines stay where they were parsed (``event_table.ordered``).

    Sorted by the stamps' microseconds (``micros``, every row's), which for canonical stamps is their order
    as text: numpy's stable sort of 28,000 integers took 0.2-1.9 ms where Arrow's of the strings took
    1.2-4.6 ms (``bench/step_costs.py``; the more disordered, the longer)."""
    if not len(kept):
        return {}
    ordered = event_table.ordered(table, kept[np.argsort(micros[kept], kind="stable")])
    runs: dict[DayKey, list[tuple[pa.Table, int, int]]] = {}
    for prefix, start, end in prefix_runs(ordered.column("ts"), 10):
        runs.setdefault((prefix[0:4], prefix[5:7], prefix[8:10]), []).append((ordered, start, end))
    return {key: event_table.joined(parts) for key, parts in runs.items()}


def prefix_runs(stamps: pa.ChunkedArray | pa.Array, length: int) -> list[tuple[str, int, int]]:
    """``(prefix, start, end)`` for each run of rows whose stamps share their first ``length`` characters."""
    prefixes = pc.utf8_slice_codeunits(stamps, 0, length)
    if isinstance(prefixes, pa.ChunkedArray):
        prefixes = prefixes.combine_chunks()
    encoded = prefixes.dictionary_encode()
    codes = np.asarray(encoded.indices)
    starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1)).tolist()
    ends = [*starts[1:], len(codes)]
    names = encoded.dictionary.to_pylist()
    return [(names[codes[start]], start, end) for start, end in zip(starts, ends)]
