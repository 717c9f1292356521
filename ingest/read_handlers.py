"""HTTP handlers for reading audit data: paged queries with cursors, streamed export, bucketed counts."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import orjson
from aiohttp import web

from ingest import cursor as cursors
from ingest import keys
from ingest.auth import confined_query, principal
from ingest.errors import error, json_response, unavailable
from ingest.query_params import Query, QueryError, parse_query
from ingest.read_plan import Plan, ReadCancelled
from ingest.read_stats import BUCKETS, GROUPABLE
from ingest.record_encoding import CSV_COLUMNS, csv_rows
from ingest.read_process import ReadsBusy
from ingest.read_wire import StorageUnavailable
from ingest.timeutil import micros

log = logging.getLogger("auditlake.ingest.reads")
EXPORT_PAGE = 2000


def _parse(request: web.Request, limit_default: int | None = None) -> tuple[Query, cursors.Cursor | None]:
    settings = request.app[keys.SETTINGS]
    params = confined_query(request)
    query = parse_query(params, limit_default or settings.read_default_limit, settings.read_max_limit,
                        settings.read_max_days)
    token = params.get("cursor")
    if not token:
        return query, None
    cursor = cursors.decode(token)
    if cursor.filters_digest != _digest(query):
        raise QueryError("cursor does not belong to these filters")
    return query, cursor


def _digest(query: Query) -> str:
    return cursors.filters_digest({**query.filters, "capability": query.capability, "user_email": query.user_email})


def _bounds(query: Query, cursor: cursors.Cursor | None) -> tuple[datetime, datetime, int, int]:
    """The range a read covers: the cursor's (so pages stay stable) or the query's."""
    if cursor is None:
        return query.since, query.until, micros(query.since), micros(query.until)
    since = _from_micros(cursor.since_us)
    until = _from_micros(cursor.until_us)
    return since, until, cursor.since_us, cursor.until_us


def _from_micros(value: int) -> datetime:
    seconds, rest = divmod(value, 1_000_000)
    return datetime.fromtimestamp(seconds, tz=timezone.utc).replace(microsecond=rest)


def _plan(request: web.Request, query: Query, since_us: int, until_us: int, limit: int,
          position: tuple[int, str] | None, count: bool = True) -> Plan:
    return Plan(since_us, until_us, limit, dict(query.filters), query.capability, query.user_email, position,
                count=count, unit_delay_seconds=request.app[keys.SETTINGS].test_read_delay_seconds)


def _begin(request: web.Request) -> tuple[Query, cursors.Cursor | None, Any]:
    """Parse the read and take a read slot; the slot's release function is returned last.

    Raises QueryError (400) or ReadsBusy (503).
    """
    query, cursor = _parse(request)
    return query, cursor, request.app[keys.STORAGE].slots.take()


def _refusal(exc: Exception) -> web.Response:
    return error(400, str(exc)) if isinstance(exc, QueryError) else unavailable(str(exc))


async def get_events(request: web.Request) -> web.Response:
    """Newest first; ``total`` over the whole range; ``next_cursor`` continues after the page."""
    try:
        query, cursor, release = _begin(request)
    except (QueryError, ReadsBusy) as exc:
        return _refusal(exc)
    since, until, since_us, until_us = _bounds(query, cursor)
    position = (cursor.ts_us, cursor.event_id) if cursor else None
    plan = _plan(request, query, since_us, until_us, query.limit, position)
    try:
        result = await request.app[keys.STORAGE].search(plan, since, until, release=release)
    except StorageUnavailable as exc:
        return unavailable(str(exc))
    request.app[keys.TRAIL].record_read(principal(request), "GET /v1/audit/events", query,
                                        result.count, result.total)
    body: dict[str, Any] = {
        "records": orjson.Fragment(result.body),
        "total": result.total,
        "limit": query.limit,
        "truncated": result.more,
    }
    if result.more and result.last is not None:
        body["next_cursor"] = cursors.encode(cursors.Cursor(result.last[0], result.last[1], since_us, until_us,
                                                            _digest(query)))
    return json_response(body)


async def export_events(request: web.Request) -> web.StreamResponse:
    """Stream every match (NDJSON, or CSV with ``format=csv``), newest first, page by page in constant memory."""
    export_format = request.query.get("format", "ndjson")
    if export_format not in ("ndjson", "csv"):
        return error(400, "format must be ndjson or csv")
    try:
        query, _, release = _begin(request)
    except (QueryError, ReadsBusy) as exc:
        return _refusal(exc)
    since, until, since_us, until_us = _bounds(query, None)
    storage = request.app[keys.STORAGE]
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8" if export_format == "csv" else "application/x-ndjson",
        "Content-Disposition": f'attachment; filename="audit-export.{export_format}"',
    })
    exported = 0
    position: tuple[int, str] | None = None
    try:
        first = True
        while True:
            plan = _plan(request, query, since_us, until_us, EXPORT_PAGE, position, count=False)
            result = await storage.search(plan, since, until, encoding=export_format)
            if first:
                await response.prepare(request)
                if export_format == "csv":
                    await response.write(csv_rows([CSV_COLUMNS]))
                first = False
            if result.count:
                await response.write(result.body)
                exported += result.count
            if not result.more or result.last is None:
                break
            position = result.last
    except StorageUnavailable as exc:
        if first:
            return unavailable(str(exc))
        raise
    except (ConnectionResetError, ReadCancelled):
        log.info("export stopped by the client", extra={"exported": exported})
        raise
    finally:
        release()
    request.app[keys.TRAIL].record_read(principal(request), "GET /v1/audit/export", query, exported, exported)
    await response.write_eof()
    return response


async def get_stats(request: web.Request) -> web.Response:
    """Counts per time bucket (``bucket=1m|5m|1h|1d``), optionally per value of ``group_by``."""
    bucket = request.query.get("bucket", "1h")
    group_by = request.query.get("group_by") or None
    if bucket not in BUCKETS:
        return error(400, f"unknown bucket {bucket!r}; use one of {', '.join(BUCKETS)}")
    if group_by is not None and group_by not in GROUPABLE:
        return error(400, f"cannot group by {group_by!r}; use one of {', '.join(GROUPABLE)}")
    try:
        query, _, release = _begin(request)
    except (QueryError, ReadsBusy) as exc:
        return _refusal(exc)
    since, until, since_us, until_us = _bounds(query, None)
    plan = _plan(request, query, since_us, until_us, 1, None)
    try:
        counts = await request.app[keys.STORAGE].stats(plan, since, until, bucket, group_by, release=release)
    except StorageUnavailable as exc:
        return unavailable(str(exc))
    request.app[keys.TRAIL].record_read(principal(request), "GET /v1/audit/stats", query,
                                        len(counts["series"]), counts["total"])
    return json_response({"bucket": bucket, "group_by": group_by, "since": query.since_ts, "until": query.until_ts,
                          **counts})
