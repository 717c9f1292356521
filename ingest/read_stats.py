"""Counts per time bucket, optionally per value of one field, over the same row groups as searches."""

from __future__ import annotations

import collections
import concurrent.futures
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ingest.filter_scan import match_rows
from ingest.parquet_source import ParquetSource, row_groups
from ingest.read_plan import Parsed, Plan, matches_event
from ingest.timeutil import iso_from_micros

BUCKETS = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
GROUPABLE = ("type", "outcome", "component", "tenant_id", "source", "action", "capability", "resource_ref",
             "reason_code", "agent_name", "tool_name", "pdp", "subject_hash", "correlation_id")


def count_buckets(plan: Plan, sources: list[ParquetSource], parsed: list[Parsed], bucket: str,
                  group_by: str | None, workers: concurrent.futures.Executor | None = None) -> dict[str, Any]:
    """``{"total", "series": [{"start", "count", "groups"?}]}`` for the plan's range and filters.

    The row groups' columns are evaluated side by side (``filter_scan.match_rows``) and grouped once.
    """
    width = BUCKETS[bucket] * 1_000_000
    counts: dict[tuple[int, Any], int] = collections.Counter()
    for batch in parsed:
        for event, ts in batch.timed():
            if matches_event(event, ts, plan):
                counts[(ts // width * width, _group_value(event, group_by))] += 1
    keep: tuple[str, ...] = ()
    if group_by is not None:
        keep = ("capability", "action") if group_by == "capability" else (group_by,)
    matches = match_rows(plan, row_groups(sources, plan), workers, keep)
    if matches is not None:
        mask = matches.mask
        starts = pc.multiply(pc.divide(matches.ts.filter(mask), width), width)
        if group_by is None:
            groups = pa.nulls(len(starts), pa.string())
        elif group_by == "capability":
            capability = _matching(matches.kept, "capability", mask)
            groups = pc.if_else(pc.is_null(capability), _matching(matches.kept, "action", mask), capability)
        else:
            groups = _matching(matches.kept, group_by, mask)
        summary = pa.table({"start": starts, "group": groups}).group_by(["start", "group"]).aggregate(
            [("start", "count")])
        for start, group, count in zip(summary.column("start").to_pylist(), summary.column("group").to_pylist(),
                                       summary.column("start_count").to_pylist()):
            counts[(start, group)] += count
    series: dict[int, dict[str, Any]] = {}
    for (start, group), count in sorted(counts.items(), key=lambda item: item[0][0]):
        entry = series.setdefault(start, {"start": iso_from_micros(start), "count": 0})
        entry["count"] += count
        if group_by is not None:
            key = "null" if group is None else str(group)
            entry.setdefault("groups", {})[key] = entry.get("groups", {}).get(key, 0) + count
    return {"total": sum(counts.values()), "series": list(series.values())}


def _matching(kept: pa.Table, name: str, mask: pa.ChunkedArray) -> pa.ChunkedArray:
    """A kept column's values at the matching rows, as strings (dictionaries decoded after filtering)."""
    if name not in kept.column_names:
        return pa.chunked_array([pa.nulls(pc.sum(mask).as_py() or 0, pa.string())])
    return kept.column(name).filter(mask).cast(pa.string())


def _group_value(event: dict[str, Any], group_by: str | None) -> Any:
    if group_by is None:
        return None
    if group_by == "capability":
        value = event["capability"] if "capability" in event else event.get("action")
    else:
        value = event.get(group_by)
    return value if isinstance(value, str) else None
