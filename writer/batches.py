"""Turn spooled records into per-day tables of events sorted by ``ts``, deduplicated by ``audit_event_id``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.spool_format import SpoolRecord
from writer import event_table
from writer.dedupe import DedupeWindow, id_hashes

DayKey = tuple[str, str, str]


@dataclasses.dataclass
class FlushBatch:
    """The events of one spool range: per UTC day a table (``event_table.SCHEMA``) sorted by ``ts``."""

    first_seq: int
    last_seq: int
    days: dict[DayKey, pa.Table]
    events: int
    duplicates: int
    unparsable: list[bytes]
    id_hashes: list[int]


def group_records(records: list[SpoolRecord], window: DedupeWindow | None = None) -> FlushBatch:
    """Parse the records' lines once, drop ids seen earlier in the range or in the window, group by day.

    Days are keyed by ``(ts[0:4], ts[5:7], ts[8:10])``; within a day events keep the order of a stable
    sort by ``ts`` (equal stamps in spool order).
    """
    table = event_table.parse_block(b"".join(record.payload for record in records))
    if table is not None:
        ids = table.column(event_table.ID).to_pylist()
        unparsable: list[bytes] = []
    else:
        table, ids, unparsable = event_table.parse_lines(record.payload for record in records)
    hashes = np.array(id_hashes(ids), dtype=np.uint64)
    keep = np.zeros(len(hashes), dtype=bool)
    keep[np.unique(hashes, return_index=True)[1]] = True  # the first of each id in the range
    if window is not None and len(hashes):
        earlier = window.seen(hashes.tolist())
        if earlier:
            keep &= ~np.isin(hashes, np.fromiter(earlier, dtype=np.uint64))
    kept = table.filter(pa.array(keep)) if not keep.all() else table
    first = records[0].seq if records else 0
    last = records[-1].seq if records else 0
    return FlushBatch(first, last, _days(kept), kept.num_rows, len(hashes) - kept.num_rows, unparsable,
                      hashes[keep].tolist())


def _days(table: pa.Table) -> dict[DayKey, pa.Table]:
    """The table sorted by ``ts`` (stable), cut into days; prefixes naming the same day are merged in order."""
    if not table.num_rows:
        return {}
    ordered = table.take(pc.sort_indices(table.column("ts"))).combine_chunks()
    runs: dict[DayKey, list[pa.Table]] = {}
    for prefix, start, end in prefix_runs(ordered.column("ts"), 10):
        runs.setdefault((prefix[0:4], prefix[5:7], prefix[8:10]), []).append(ordered.slice(start, end - start))
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
