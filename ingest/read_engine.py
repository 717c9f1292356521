"""The read engine: exact counts and newest-first pages over Parquet row groups and plain event lists.

A read sees its data as *units*: row groups of Parquet files (local sidecars, S3 objects, legacy
objects) and small lists of already parsed events (the spool, NDJSON files without a sidecar). Units are
visited newest first. A counted search with filters evaluates every unit's filter columns at once
(``filter_scan``). Otherwise a unit whose ``ts`` statistics lie wholly inside the range is counted from
its metadata when no filter applies, and a unit that cannot reach the page (all of it older than the
page's oldest candidate, or newer than the cursor) is never read for the page. Only the winning rows'
ids and ``record_json`` are read at the end, page by page. Runs in a worker thread; ``cancel`` stops it
between units.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
from typing import Any

import orjson
import pyarrow.compute as pc

from ingest.filter_mask import filter_mask, ts_micros
from ingest.filter_scan import scan_filtered
from ingest.page_candidates import Candidate, Pool, below_cursor, best_rows, cursor_mask, row_ids
from ingest.parquet_source import ParquetSource, RowGroup, present, row_groups
from ingest.read_plan import Parsed, Plan, matches_event


@dataclasses.dataclass
class SearchResult:
    """A page of records, the total number of matches and whether more follow the page."""

    records: list[dict[str, Any]]
    total: int
    more: bool
    last: tuple[int, str] | None


def search(plan: Plan, sources: list[ParquetSource], parsed: list[Parsed],
           workers: concurrent.futures.Executor | None = None) -> SearchResult:
    """Count every match and return the newest ``limit`` below the cursor.

    ``workers``, when given, runs the parallel parts of the read: filter evaluation over halves of the
    row groups and the decoding of records of different row groups (Arrow releases the GIL).
    """
    pool = Pool(plan.limit)
    total = remaining = 0
    for batch in parsed:
        for event, ts in batch.timed():
            if not matches_event(event, ts, plan):
                continue
            total += 1
            event_id = str(event.get("audit_event_id", ""))
            if below_cursor(ts, event_id, plan.cursor):
                remaining += 1
                pool.add([(ts, event_id, event)])
    units = row_groups(sources, plan)
    if plan.count and plan.filter_columns:
        counted, after_cursor = scan_filtered(plan, units, pool, workers)
    else:
        counted, after_cursor = _walk(plan, units, pool)
    return _finish(plan, pool, total + counted, remaining + after_cursor, workers)


def _walk(plan: Plan, units: list[RowGroup], pool: Pool) -> tuple[int, int]:
    """Visit units one by one, newest first, reading only those that can count or reach the page."""
    total = remaining = 0
    filters = plan.filter_columns
    for unit in units:
        plan.check()
        threshold = pool.full_threshold()
        inside = unit.low is not None and unit.low >= plan.since_us and unit.high <= plan.until_us
        above_cursor = plan.cursor is not None and unit.low is not None and unit.low > plan.cursor[0]
        below_page = threshold is not None and unit.high is not None and unit.high < threshold
        if inside and not filters and (above_cursor or below_page):
            total += unit.rows
            remaining += 0 if above_cursor else unit.rows
            continue
        if not plan.count and (above_cursor or below_page):
            if below_page:
                remaining += 1
            continue
        table = unit.source.read(unit.group, present(unit, ["ts", *filters]))
        ts = ts_micros(table.column("ts"))
        mask = filter_mask(table, ts, plan)
        total += pc.sum(mask).as_py() or 0
        if above_cursor:
            continue
        page_mask = mask
        if plan.cursor is not None:
            page_mask = cursor_mask(unit, ts, mask, plan.cursor)
        matched = pc.sum(page_mask).as_py() or 0
        remaining += matched
        if not matched or below_page:
            continue
        pool.add(best_rows(unit, ts, page_mask, plan.limit, matched))
    return total, remaining


def _finish(plan: Plan, pool: Pool, total: int, remaining: int,
            workers: concurrent.futures.Executor | None = None) -> SearchResult:
    """Rank the candidates; read ids only where timestamps tie, and records only for the page."""
    items = sorted(pool.items, key=lambda item: item[0], reverse=True)
    if len(items) > plan.limit:
        boundary = items[plan.limit - 1][0]
        items = [item for item in items if item[0] >= boundary]
    counts = collections.Counter(item[0] for item in items)
    tied: dict[int, tuple[RowGroup, list[int]]] = {}
    for ts, event_id, where in items:
        if event_id is None and counts[ts] > 1:
            unit, row = where
            tied.setdefault(id(unit), (unit, []))[1].append(row)
    ids: dict[tuple[int, int], str] = {}
    for key, (unit, rows) in tied.items():
        plan.check()
        column = row_ids(unit)
        for row in rows:
            ids[(key, row)] = column[row].as_py() or ""
    ranked = []
    for ts, event_id, where in items:
        if event_id is None:
            unit, row = where
            event_id = ids.get((id(unit), row))
        ranked.append((ts, event_id, where))
    ranked.sort(key=lambda item: (item[0], item[1] or ""), reverse=True)
    page: list[Candidate] = []
    seen: set[str] = set()
    for item in ranked:
        if item[1] is not None:
            if item[1] in seen:
                continue
            seen.add(item[1])
        page.append(item)
        if len(page) == plan.limit:
            break
    records = _records(plan, page, workers)
    last = (page[-1][0], str(records[-1].get("audit_event_id", ""))) if page else None
    return SearchResult(records, total, remaining > len(page), last)


def _records(plan: Plan, page: list[Candidate], workers: concurrent.futures.Executor | None = None
             ) -> list[dict[str, Any]]:
    """The page's events: ``record_json`` of the winning rows (only their pages decoded), or parsed events."""
    wanted: dict[int, tuple[RowGroup, list[int]]] = {}
    for _, _, where in page:
        if isinstance(where, tuple):
            unit, row = where
            wanted.setdefault(id(unit), (unit, []))[1].append(row)

    def texts_of(unit: RowGroup, rows: list[int]) -> dict[int, str]:
        plan.check()
        return unit.source.values(unit.group, "record_json", rows)

    groups = list(wanted.items())
    if workers is not None and len(groups) > 1:
        found = list(workers.map(lambda item: texts_of(*item[1]), groups))
    else:
        found = [texts_of(unit, rows) for _, (unit, rows) in groups]
    texts = {(key, row): text for (key, _), values in zip(groups, found) for row, text in values.items()}
    records = []
    for _, _, where in page:
        if isinstance(where, tuple):
            unit, row = where
            records.append(orjson.loads(texts[(id(unit), row)]))
        else:
            records.append(where)
    return records
