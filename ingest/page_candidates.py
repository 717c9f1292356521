"""The rows that may still make a search's page: the candidate pool, a row group's best rows, the cursor rule."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ingest.filter_mask import column_or_nulls
from ingest.parquet_source import RowGroup

Candidate = tuple[int, "str | None", Any]
"""(ts µs, audit_event_id or None while unknown, where: a parsed event or (row group, row))."""


class Pool:
    """The page's candidates, keeping the newest ``limit`` plus every row tied with the oldest of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: list[Candidate] = []
        self.threshold: int | None = None
        self._dirty = False

    def add(self, items: list[Candidate]) -> None:
        """Add candidates (trimmed once they are twice the page)."""
        self.items.extend(items)
        self._dirty = True
        if len(self.items) > 2 * self.limit:
            self._trim()

    def _trim(self) -> None:
        self._dirty = False
        self.items.sort(key=lambda item: item[0], reverse=True)
        if len(self.items) >= self.limit:
            kth = self.items[self.limit - 1][0]
            self.threshold = kth
            self.items = [item for item in self.items if item[0] >= kth]

    def full_threshold(self) -> int | None:
        """The oldest ts that can still make the page, once the page is full."""
        if len(self.items) >= self.limit:
            if self._dirty:
                self._trim()
            return self.threshold
        return None


def below_cursor(ts: int, event_id: str, cursor: tuple[int, str] | None) -> bool:
    """Whether a row comes after the cursor in newest-first order (always, without a cursor)."""
    return cursor is None or ts < cursor[0] or (ts == cursor[0] and event_id < cursor[1])


def row_ids(unit: RowGroup) -> pa.ChunkedArray:
    """Every ``audit_event_id`` of a row group (parsed from ``record_json`` in files without the column)."""
    if "audit_event_id" in unit.source.names:
        table = unit.source.read(unit.group, ["audit_event_id"])
        return column_or_nulls(table, "audit_event_id")
    table = unit.source.read(unit.group, ["record_json"])
    return pa.chunked_array([pa.array([str(orjson.loads(v).get("audit_event_id", "")) for v in
                                       table.column("record_json").to_pylist()], pa.string())])


def cursor_mask(unit: RowGroup, ts: pa.ChunkedArray, mask: Any, cursor: tuple[int, str]) -> Any:
    """``mask`` limited to the rows after the cursor; ids are read only when a row ties with its ts."""
    below = pc.less(ts, cursor[0])
    if pc.any(pc.equal(ts, cursor[0])).as_py():
        tie = pc.and_(pc.equal(ts, cursor[0]), pc.less(row_ids(unit), cursor[1]))
        below = pc.or_(below, tie)
    return pc.and_(mask, pc.fill_null(below, False))


def best_rows(unit: RowGroup, ts: pa.ChunkedArray, page_mask: Any, limit: int, matched: int) -> list[Candidate]:
    """A row group's candidates: its newest ``limit`` rows of ``page_mask`` and every row tied with the oldest."""
    kept_ts = _array(ts.filter(page_mask))
    rows = _array(pc.indices_nonzero(page_mask))
    if matched > limit:
        boundary = pc.min(kept_ts.take(pc.top_k_unstable(kept_ts, limit)))  # indices; ~6x faster than on a table
        newest = pc.greater_equal(kept_ts, boundary)
        kept_ts, rows = kept_ts.filter(newest), rows.filter(newest)
    return [(ts_us, None, (unit, row)) for ts_us, row in zip(kept_ts.to_pylist(), rows.to_pylist())]


def _array(values: Any) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
