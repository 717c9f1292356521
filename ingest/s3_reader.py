"""Reads of the S3 backend: pruned Parquet objects (new and legacy layout) plus the unpublished spool.

Runs in worker threads. Objects are pruned by partition and by the time bounds in their key, then row
groups by their ``ts`` statistics; filters run in Arrow; only the rows of the returned page are parsed.
"""

from __future__ import annotations

import collections
import io
import logging
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest.local_reader import EventMatcher, QueryResult
from ingest.query_params import EXACT_FILTERS, Query
from ingest.spool_reader import spooled_events
from shared import s3_layout
from shared.s3_layout import UTC_MICROS

log = logging.getLogger("auditlake.ingest.s3")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
FILTER_COLUMNS = tuple(dict.fromkeys((*EXACT_FILTERS, "capability", "action", "user_email", "audit_event_id")))


def _micros(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


class ObjectCache:
    """Immutable object bodies by (key, etag), bounded by bytes, least recently used out first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: collections.OrderedDict[tuple[str, str], bytes] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> bytes | None:
        """A cached body, marked as recently used."""
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
            return body

    def put(self, key: tuple[str, str], body: bytes) -> None:
        """Keep a body while it fits the bound."""
        if len(body) > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = body
            self._bytes += len(body)
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)


class S3Reader:
    """Answers queries over one bucket prefix and this replica's spool."""

    def __init__(self, client: Any, bucket: str, prefix: str, granularity: str, writer_id: str,
                 cache: ObjectCache) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.granularity = granularity
        self.writer_id = writer_id
        self.cache = cache

    def list_objects(self, key_prefix: str) -> list[dict[str, Any]]:
        """Every object under a key prefix (Key, Size, ETag)."""
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key_prefix):
            found.extend(page.get("Contents", []))
        return found

    def query(self, spool_dir: Path, query: Query) -> QueryResult:
        """Every match in the spool and the bucket; the newest ``limit`` of them and the total."""
        spooled = spooled_events(spool_dir)
        objects = []
        published: dict[str, list[tuple[int, int]]] = {}
        for key_prefix in s3_layout.day_prefixes(self.prefix, query.since, query.until):
            for item in self.list_objects(key_prefix):
                info = s3_layout.describe_key(self.prefix, item["Key"])
                if info is None:
                    continue
                if info.writer_id == self.writer_id and info.partition is not None:
                    published.setdefault(info.partition, []).append((info.first_seq, info.last_seq))
                if info.end is not None and info.end < query.since:
                    continue
                if info.start is not None and info.start > query.until:
                    continue
                objects.append((info, item.get("ETag", ""), item.get("Size", 0)))
        since_us, until_us = _micros(query.since), _micros(query.until)
        page: list[tuple[int, str, str]] = []
        total = 0
        for info, etag, _size in objects:
            body = self._body(info.key, etag)
            if body is None:
                continue
            count, rows = self._scan(body, query, since_us, until_us, info.legacy)
            total += count
            page.extend(rows)
        matcher = EventMatcher(query)
        for seq, event in spooled:
            ts = matcher.event_ts(event)
            if ts is None:
                continue
            ranges = published.get(s3_layout.partition_of(ts, self.granularity), ())
            if any(first <= seq <= last for first, last in ranges):
                continue
            if matcher.matches(event, ts):
                total += 1
                moment = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
                page.append((_micros(moment), str(event.get("audit_event_id", "")), orjson.dumps(event).decode()))
        page.sort(reverse=True)
        records, seen = [], set()
        for _, event_id, record_json in page:
            if event_id in seen:
                total -= 1
                continue
            seen.add(event_id)
            if len(records) < query.limit:
                records.append(orjson.loads(record_json))
        return QueryResult(records, total)

    def _body(self, key: str, etag: str) -> bytes | None:
        cached = self.cache.get((key, etag))
        if cached is not None:
            return cached
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        self.cache.put((key, etag), body)
        return body

    def _scan(self, body: bytes, query: Query, since_us: int, until_us: int,
              legacy: bool) -> tuple[int, list[tuple[int, str, str]]]:
        """Count matches in one object and return its newest ``limit`` as (ts µs, id, record_json)."""
        parquet = pq.ParquetFile(io.BytesIO(body))
        names = set(parquet.schema_arrow.names)
        wanted = [name for name in ("ts", "record_json", *FILTER_COLUMNS) if name in names]
        ts_index = parquet.schema_arrow.get_field_index("ts")
        count = 0
        rows: list[tuple[int, str, str]] = []
        for group in range(parquet.num_row_groups):
            if not legacy and _pruned(parquet.metadata.row_group(group), ts_index, since_us, until_us):
                continue
            table = parquet.read_row_group(group, columns=wanted)
            ts = _ts_micros(table.column("ts"))
            mask = pc.and_(pc.greater_equal(ts, since_us), pc.less_equal(ts, until_us))
            mask = pc.and_kleene(mask, _filter_mask(table, query))
            mask = pc.fill_null(mask, False)
            matched = pc.sum(mask).as_py() or 0
            if not matched:
                continue
            count += matched
            ts_kept = ts.filter(mask)
            kept = table.filter(mask)
            order = pc.select_k_unstable(pa.table({"ts": ts_kept}), query.limit, [("ts", "descending")])
            ids = kept.column("audit_event_id") if "audit_event_id" in kept.column_names else None
            records = kept.column("record_json")
            for index in order.to_pylist():
                record_json = records[index].as_py()
                event_id = ids[index].as_py() if ids is not None else _id_of(record_json)
                rows.append((ts_kept[index].as_py(), event_id or "", record_json))
        return count, rows


def _id_of(record_json: str) -> str:
    try:
        return str(orjson.loads(record_json).get("audit_event_id", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return ""


def _pruned(metadata: Any, ts_index: int, since_us: int, until_us: int) -> bool:
    """True when a row group's ts statistics show it cannot hold a match."""
    stats = metadata.column(ts_index).statistics
    if stats is None or not stats.has_min_max:
        return False
    low, high = stats.min, stats.max
    if isinstance(low, datetime):
        low, high = _micros(low), _micros(high)
    return high < since_us or low > until_us


def _ts_micros(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The ts column as int64 microseconds since the epoch, whatever its stored type (legacy: strings)."""
    if pa.types.is_timestamp(column.type):
        return column.cast(UTC_MICROS).cast(pa.int64())
    if pa.types.is_null(column.type):
        return pa.chunked_array([pa.nulls(len(column), pa.int64())])
    try:
        return column.cast(pa.string()).cast(UTC_MICROS).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        from shared.events import canonical_ts, parse_iso

        values = []
        for value in column.to_pylist():
            try:
                values.append(_micros(parse_iso(canonical_ts(value))))
            except Exception:  # an unreadable legacy timestamp matches no time range
                values.append(None)
        return pa.chunked_array([pa.array(values, pa.int64())])


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    if name in table.column_names and not pa.types.is_null(table.column(name).type):
        return table.column(name).cast(pa.string())
    return pa.chunked_array([pa.nulls(table.num_rows, pa.string())])


def _filter_mask(table: pa.Table, query: Query) -> Any:
    mask = pa.scalar(True)
    for name, value in query.filters.items():
        mask = pc.and_kleene(mask, pc.equal(_column(table, name), value))
    if query.capability is not None:
        capability = _column(table, "capability")
        effective = pc.if_else(pc.is_null(capability), _column(table, "action"), capability)
        mask = pc.and_kleene(mask, pc.equal(effective, query.capability))
    if query.user_email is not None:
        emails = pc.utf8_lower(_column(table, "user_email"))
        mask = pc.and_kleene(mask, pc.match_substring(emails, query.user_email.lower()))
    return mask
