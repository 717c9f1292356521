"""Filters over many row groups at once (one Arrow evaluation over their columns), for counted searches and stats.

An exact ``total`` with a filter needs every row group of the range, so the per-group Python overhead
(several Arrow calls per group, hundreds of groups) would dominate. Here the columns of all groups (from
the column cache once warm) are put side by side as chunks, the mask is computed once, and only the
newest groups are visited for the page, until the page is full and older groups cannot improve it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ingest.filter_mask import filter_mask, ts_micros
from ingest.page_candidates import Pool, best_rows, row_ids
from ingest.parquet_source import RowGroup, present
from ingest.read_plan import LOWER, Plan
from ingest.text_search import contains_mask

PARALLEL_ROWS = 100_000
EMAIL = "user_email" + LOWER


@dataclasses.dataclass(frozen=True)
class Matches:
    """The rows of many row groups side by side: which match the plan, their ts, and columns kept for later."""

    rows: list[int]
    mask: pa.ChunkedArray
    ts: pa.ChunkedArray
    kept: pa.Table


def match_rows(plan: Plan, units: list[RowGroup], workers: concurrent.futures.Executor | None = None,
               keep: tuple[str, ...] = ()) -> Matches | None:
    """Evaluate the plan's range and filters over every unit at once (None when there are no units).

    ``keep`` names further columns to return side by side (for grouping). With ``workers`` the two halves
    of the row groups are evaluated in parallel.
    """
    groups = _read_columns(plan, units, workers, keep)
    if not groups:
        return None
    parts = _halves(groups) if workers is not None else [groups]

    def evaluate(part: list[_Columns]) -> tuple[Any, pa.ChunkedArray]:
        part_ts = _ts_micros(part)
        email_mask = None
        if plan.user_email is not None:
            texts = [group.values[EMAIL] if EMAIL in group.values else _Absent(group.rows) for group in part]
            email_mask = contains_mask(texts, plan.user_email.lower())
        return filter_mask(_side_by_side(part, plan.filter_columns), part_ts, plan, email_mask), part_ts

    evaluated = list(workers.map(evaluate, parts)) if len(parts) > 1 else [evaluate(parts[0])]
    mask = pa.chunked_array([chunk for part_mask, _ in evaluated for chunk in part_mask.chunks], pa.bool_())
    ts = pa.chunked_array([chunk for _, part_ts in evaluated for chunk in part_ts.chunks], pa.int64())
    return Matches([group.rows for group in groups], mask, ts, _side_by_side(groups, list(keep)))


def scan_filtered(plan: Plan, units: list[RowGroup], pool: Pool,
                  workers: concurrent.futures.Executor | None = None) -> tuple[int, int]:
    """Count the plan's matches in ``units`` (newest first) and add the page's candidates to ``pool``.

    Returns (total matches, matches after the cursor).
    """
    matches = match_rows(plan, units, workers)
    if matches is None:
        return 0, 0
    mask, ts = matches.mask, matches.ts
    total = pc.sum(mask).as_py() or 0
    if not total:
        return 0, 0
    page_mask, ties = mask, {}
    if plan.cursor is not None:
        page_mask = pc.fill_null(pc.and_(mask, pc.less(ts, plan.cursor[0])), False)
    starts = [0]
    for rows in matches.rows:
        starts.append(starts[-1] + rows)
    remaining = pc.sum(page_mask).as_py() or 0
    if plan.cursor is not None:
        ties = _cursor_ties(plan.cursor, units, starts, ts, mask)
        remaining += sum(pc.sum(tie).as_py() or 0 for tie in ties.values())
    for index, unit in enumerate(units):
        threshold = pool.full_threshold()
        if threshold is not None and unit.high is not None and unit.high < threshold:
            break
        start, length = starts[index], starts[index + 1] - starts[index]
        unit_mask = page_mask.slice(start, length)
        if index in ties:
            unit_mask = pc.or_(unit_mask, ties[index])
        matched = pc.sum(unit_mask).as_py() or 0
        if matched:
            pool.add(best_rows(unit, ts.slice(start, length), unit_mask, plan.limit, matched))
    return total, remaining


def _read_columns(plan: Plan, units: list[RowGroup], workers: concurrent.futures.Executor | None,
                  keep: tuple[str, ...] = ()) -> list[_Columns]:
    """Every unit's filter (and kept) columns: cached ones at once, the others read file by file on the workers."""
    columns = ["ts", *plan.filter_columns, *keep]
    found: list[dict[str, Any] | None] = []
    for unit in units:
        plan.check()
        found.append(unit.source.columns(unit.group, present(unit, columns), cached_only=workers is not None))
    by_source: dict[int, list[int]] = {}
    for index, values in enumerate(found):
        if values is None:
            by_source.setdefault(id(units[index].source), []).append(index)

    def read_file(indices: list[int]) -> list[dict[str, Any] | None]:
        plan.check()
        return [units[index].source.columns(units[index].group, present(units[index], columns)) for index in indices]

    if workers is not None and by_source:
        for indices, values in zip(by_source.values(), workers.map(read_file, by_source.values())):
            for index, value in zip(indices, values):
                found[index] = value
    return [_Columns(len(values["ts"]) if values and "ts" in values else unit.rows, values or {})
            for unit, values in zip(units, found)]


@dataclasses.dataclass(frozen=True, slots=True)
class _Columns:
    """One row group's rows and its cached filter columns by name."""

    rows: int
    values: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class _Absent:
    """A row group without the column searched: no row contains anything."""

    rows: int

    def contains(self, needle: bytes) -> pa.Array:
        return pa.repeat(False, self.rows)


def _halves(groups: list[_Columns]) -> list[list[_Columns]]:
    """The row groups in two runs of about equal rows (one run when there is too little to share)."""
    rows = sum(group.rows for group in groups)
    if len(groups) < 2 or rows < PARALLEL_ROWS:
        return [groups]
    seen = 0
    for index, group in enumerate(groups):
        seen += group.rows
        if seen * 2 >= rows:
            return [groups[:index + 1], groups[index + 1:]] if index + 1 < len(groups) else [groups]
    return [groups]


def _side_by_side(groups: list[_Columns], names: list[str]) -> pa.Table:
    """Columns (not the searched ``.lower`` ones) with one chunk per row group."""
    side = {}
    for name in names:
        if name.endswith(LOWER):
            continue
        stored = [group.values[name] for group in groups if name in group.values]
        kind = stored[0].type if stored else pa.string()
        chunks: list[pa.Array] = []
        for group in groups:
            chunks.extend(group.values[name].chunks if name in group.values else [pa.nulls(group.rows, kind)])
        side[name] = _same_type(chunks)
    return pa.table(side)


def _ts_micros(groups: list[_Columns]) -> pa.ChunkedArray:
    """The groups' ts as one int64 µs column: one cast when they share a timestamp type, else group by group."""
    stored = [group.values.get("ts") for group in groups]
    types = {column.type for column in stored if column is not None}
    if None not in stored and len(types) == 1 and pa.types.is_timestamp(next(iter(types))):
        return ts_micros(pa.chunked_array([chunk for column in stored for chunk in column.chunks], types.pop()))
    chunks: list[pa.Array] = []
    for group, column in zip(groups, stored):
        chunks.extend(ts_micros(column).chunks if column is not None else [pa.nulls(group.rows, pa.int64())])
    return pa.chunked_array(chunks, pa.int64())


def _same_type(chunks: list[pa.Array]) -> pa.ChunkedArray:
    """Chunks as one column; mixed types (a legacy file's plain strings beside dictionaries) become strings."""
    types = {chunk.type for chunk in chunks}
    if len(types) == 1:
        return pa.chunked_array(chunks, types.pop())
    return pa.chunked_array([chunk.cast(pa.string()) for chunk in chunks], pa.string())


def _cursor_ties(cursor: tuple[int, str], units: list[RowGroup], starts: list[int], ts: pa.ChunkedArray,
                 mask: Any) -> dict[int, Any]:
    """Per row group holding matches with the cursor's exact ts: those whose id sorts before the cursor's."""
    ties = {}
    for index, unit in enumerate(units):
        if unit.low is not None and not unit.low <= cursor[0] <= unit.high:
            continue
        start, length = starts[index], starts[index + 1] - starts[index]
        same = pc.and_(mask.slice(start, length), pc.fill_null(pc.equal(ts.slice(start, length), cursor[0]), False))
        if not pc.any(same).as_py():
            continue
        ties[index] = pc.and_(same, pc.fill_null(pc.less(row_ids(unit), cursor[1]), False))
    return ties
