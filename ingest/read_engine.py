"""The read engine: exact counts and newest-first pages over Parquet row groups and plain event lists.

A read sees its data as *units*: row groups of Parquet files (local sidecars, S3 objects, legacy
objects) and small lists of already parsed events (the spool, NDJSON files without a sidecar). Units are
visited newest first. A unit whose ``ts`` statistics lie wholly inside the range is counted from its
metadata when no filter applies; a unit that cannot reach the page (all of it older than the page's
oldest candidate, or newer than the cursor) is never read for the page. Only the winning rows' ids and
``record_json`` are read at the end. Runs in a worker thread; ``cancel`` stops it between units.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest.column_cache import ColumnCache
from ingest.query_params import EXACT_FILTERS
from ingest.timeutil import canonical_micros, micros
from shared.events import TS_LENGTH, canonical_ts
from shared.s3_layout import DICTIONARY_COLUMNS, UTC_MICROS

UNCACHED_COLUMNS = frozenset({"record_json", "audit_event_id"})
LOWER = ".lower"
FILTER_COLUMNS = tuple(dict.fromkeys((*EXACT_FILTERS, "capability", "action", "user_email")))


class ReadCancelled(Exception):
    """The client went away; the read stopped."""


class SourceGone(Exception):
    """A listed file or object vanished before it was read (retention); it is skipped."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to find: inclusive µs range, filters, page size and position."""

    since_us: int
    until_us: int
    limit: int
    filters: dict[str, str]
    capability: str | None = None
    user_email: str | None = None
    cursor: tuple[int, str] | None = None
    count: bool = True
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    unit_delay_seconds: float = 0.0

    @property
    def filter_columns(self) -> list[str]:
        """Columns the filters need."""
        names = list(self.filters)
        if self.capability is not None:
            names += ["capability", "action"]
        if self.user_email is not None:
            names.append("user_email" + LOWER)
        return list(dict.fromkeys(names))

    def check(self) -> None:
        """Raise ReadCancelled when the read should stop (after the test-only per-unit delay)."""
        if self.unit_delay_seconds:
            self.cancel.wait(self.unit_delay_seconds)
        if self.cancel.is_set():
            raise ReadCancelled()


@dataclasses.dataclass
class SearchResult:
    """A page of records, the total number of matches and whether more follow the page."""

    records: list[dict[str, Any]]
    total: int
    more: bool
    last: tuple[int, str] | None


@dataclasses.dataclass(frozen=True)
class Footer:
    """What planning needs of a Parquet file: its metadata, Arrow schema and per-row-group ts bounds."""

    metadata: Any
    schema: pa.Schema
    groups: list[tuple[int | None, int | None, int]]


def open_parquet(source: Any, metadata: Any = None, **options: Any) -> pq.ParquetFile:
    """Open a Parquet file reading its low-cardinality string columns dictionary-encoded (those it has)."""
    plain = pq.ParquetFile(source, metadata=metadata, **options)
    present = [name for name in DICTIONARY_COLUMNS if name in plain.schema_arrow.names]
    if not present:
        return plain
    return pq.ParquetFile(source, metadata=plain.metadata, read_dictionary=present, **options)


def read_footer(parquet: pq.ParquetFile) -> Footer:
    """Footer of an open file: (low, high, rows) per row group from the ts statistics (None when unknown)."""
    metadata, schema = parquet.metadata, parquet.schema_arrow
    index = schema.get_field_index("ts")
    typed = index >= 0 and pa.types.is_timestamp(schema.field(index).type)
    groups = []
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        low = high = None
        if typed:
            stats = row_group.column(index).statistics
            if stats is not None and stats.has_min_max:
                low, high = micros(stats.min), micros(stats.max)
        groups.append((low, high, row_group.num_rows))
    return Footer(metadata, schema, groups)


class ParquetSource:
    """A Parquet file opened on demand (its row groups become units).

    ``footer`` may supply a cached (metadata, arrow schema) so that planning needs no open file.
    """

    def __init__(self, opener: Callable[[], pq.ParquetFile], footer: Callable[[], Footer] | None = None,
                 key: tuple | None = None, cache: ColumnCache | None = None) -> None:
        self._opener = opener
        self._footer = footer
        self._key = key
        self._cache = cache if key is not None else None
        self._file: pq.ParquetFile | None = None
        self._info: Footer | None = None

    @property
    def file(self) -> pq.ParquetFile:
        """The opened file."""
        if self._file is None:
            self._file = self._opener()
        return self._file

    @property
    def info(self) -> Footer:
        """The footer, from the cache when there is one."""
        if self._info is None:
            self._info = self._footer() if self._footer else read_footer(self.file)
        return self._info

    @property
    def names(self) -> list[str]:
        """Column names."""
        return self.info.schema.names

    def read(self, group: int, columns: list[str]) -> pa.Table:
        """Read some columns of one row group, decoded columns from the cache where it has them.

        A name ending in ``.lower`` is the lowercased form of a string column (for case-insensitive
        matching), derived once and cached like a column.
        """
        found = {name: self._cache.get((self._key, group, name)) if self._cache else None for name in columns}
        missing = [name for name, column in found.items() if column is None]
        stored = list(dict.fromkeys(name.removesuffix(LOWER) for name in missing))
        if stored:
            table = self.file.read_row_group(group, columns=[name for name in stored if name in self.names])
            for name in missing:
                base = name.removesuffix(LOWER)
                if name.endswith(LOWER):
                    found[name] = pc.utf8_lower(_column(table, base))
                elif base in table.column_names:
                    found[name] = table.column(base)
                else:
                    found[name] = pa.chunked_array([pa.nulls(table.num_rows, pa.string())])
                if self._cache is not None and name not in UNCACHED_COLUMNS:
                    self._cache.put((self._key, group, name), found[name])
        return pa.table({name: found[name] for name in columns})


@dataclasses.dataclass
class _Unit:
    source: ParquetSource
    group: int
    low: int | None
    high: int | None
    rows: int


@dataclasses.dataclass
class Parsed:
    """Already parsed events (spool records, NDJSON files without sidecar)."""

    events: list[dict[str, Any]]


def event_micros(event: dict[str, Any]) -> int | None:
    """An event's ``ts`` in µs, converting legacy forms; None when unusable."""
    ts = event.get("ts")
    if isinstance(ts, str) and len(ts) == TS_LENGTH and ts[-1] == "Z":
        return canonical_micros(ts)
    try:
        return canonical_micros(canonical_ts(ts))
    except Exception:  # an unusable legacy ts matches no range
        return None


def _units(sources: Iterable[ParquetSource], plan: Plan) -> list[_Unit]:
    units = []
    for source in sources:
        plan.check()
        try:
            groups = source.info.groups
        except (SourceGone, FileNotFoundError):
            continue
        for group, (low, high, rows) in enumerate(groups):
            if low is not None and (high < plan.since_us or low > plan.until_us):
                continue
            units.append(_Unit(source, group, low, high, rows))
    units.sort(key=lambda unit: unit.high if unit.high is not None else 2**63, reverse=True)
    return units


def _column(table: pa.Table, name: str, decode: bool = True) -> pa.ChunkedArray:
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


def _mask(table: pa.Table, ts: pa.ChunkedArray, plan: Plan) -> pa.ChunkedArray:
    mask = pc.and_(pc.greater_equal(ts, plan.since_us), pc.less_equal(ts, plan.until_us))
    for name, value in plan.filters.items():
        mask = pc.and_kleene(mask, pc.equal(_column(table, name, decode=False), value))
    if plan.capability is not None:
        capability = _column(table, "capability")
        effective = pc.if_else(pc.is_null(capability), _column(table, "action"), capability)
        mask = pc.and_kleene(mask, pc.equal(effective, plan.capability))
    if plan.user_email is not None:
        emails = _column(table, "user_email" + LOWER)
        mask = pc.and_kleene(mask, pc.match_substring(emails, plan.user_email.lower()))
    return pc.fill_null(mask, False)


def _matches_event(event: dict[str, Any], ts: int | None, plan: Plan) -> bool:
    if ts is None or ts < plan.since_us or ts > plan.until_us:
        return False
    for name, value in plan.filters.items():
        if event.get(name) != value:
            return False
    if plan.capability is not None:
        actual = event["capability"] if "capability" in event else event.get("action")
        if actual != plan.capability:
            return False
    if plan.user_email is not None:
        email = event.get("user_email")
        if not isinstance(email, str) or plan.user_email.lower() not in email.lower():
            return False
    return True


def _below_cursor(ts: int, event_id: str, cursor: tuple[int, str] | None) -> bool:
    return cursor is None or ts < cursor[0] or (ts == cursor[0] and event_id < cursor[1])


class _Pool:
    """The page's candidates: (ts, id or None, where) keeping the newest ``limit`` plus ties."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: list[tuple[int, str | None, Any]] = []
        self.threshold: int | None = None
        self._dirty = False

    def add(self, items: list[tuple[int, str | None, Any]]) -> None:
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


def search(plan: Plan, sources: list[ParquetSource], parsed: list[Parsed]) -> SearchResult:
    """Count every match and return the newest ``limit`` below the cursor."""
    pool = _Pool(plan.limit)
    total = remaining = 0
    for batch in parsed:
        for event in batch.events:
            ts = event_micros(event)
            if not _matches_event(event, ts, plan):
                continue
            total += 1
            event_id = str(event.get("audit_event_id", ""))
            if _below_cursor(ts, event_id, plan.cursor):
                remaining += 1
                pool.add([(ts, event_id, event)])
    filters = plan.filter_columns
    for unit in _units(sources, plan):
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
        table = unit.source.read(unit.group, _present(unit, ["ts", *filters]))
        ts = ts_micros(table.column("ts"))
        mask = _mask(table, ts, plan)
        total += pc.sum(mask).as_py() or 0
        if above_cursor:
            continue
        page_mask = mask
        if plan.cursor is not None:
            page_mask = _cursor_mask(unit, ts, mask, plan.cursor)
        matched = pc.sum(page_mask).as_py() or 0
        remaining += matched
        if not matched or below_page:
            continue
        kept_ts = ts.filter(page_mask)
        rows = pc.indices_nonzero(page_mask)
        order = pc.select_k_unstable(pa.table({"ts": kept_ts}), plan.limit, [("ts", "descending")])
        pool.add([(kept_ts[i].as_py(), None, (unit, rows[i].as_py())) for i in order.to_pylist()])
    return _finish(plan, pool, total, remaining)


def _present(unit: _Unit, columns: list[str]) -> list[str]:
    names = set(unit.source.names)
    return [name for name in dict.fromkeys(columns) if name.removesuffix(LOWER) in names]


def _cursor_mask(unit: _Unit, ts: pa.ChunkedArray, mask: pa.ChunkedArray, cursor: tuple[int, str]) -> Any:
    below = pc.less(ts, cursor[0])
    if pc.any(pc.equal(ts, cursor[0])).as_py():
        ids = _ids(unit)
        tie = pc.and_(pc.equal(ts, cursor[0]), pc.less(ids, cursor[1]))
        below = pc.or_(below, tie)
    return pc.and_(mask, pc.fill_null(below, False))


def _ids(unit: _Unit) -> pa.ChunkedArray:
    if "audit_event_id" in unit.source.names:
        table = unit.source.read(unit.group, ["audit_event_id"])
        return _column(table, "audit_event_id")
    table = unit.source.read(unit.group, ["record_json"])
    return pa.chunked_array([pa.array([str(orjson.loads(v).get("audit_event_id", "")) for v in
                                       table.column("record_json").to_pylist()], pa.string())])


def _finish(plan: Plan, pool: _Pool, total: int, remaining: int) -> SearchResult:
    """Rank the candidates; read ids only where timestamps tie, and records only for the page."""
    items = sorted(pool.items, key=lambda item: item[0], reverse=True)
    if len(items) > plan.limit:
        boundary = items[plan.limit - 1][0]
        items = [item for item in items if item[0] >= boundary]
    counts = collections.Counter(item[0] for item in items)
    tied: dict[int, tuple[_Unit, list[int]]] = {}
    for ts, event_id, where in items:
        if event_id is None and counts[ts] > 1:
            unit, row = where
            tied.setdefault(id(unit), (unit, []))[1].append(row)
    ids: dict[tuple[int, int], str] = {}
    for key, (unit, rows) in tied.items():
        plan.check()
        column = _ids(unit)
        for row in rows:
            ids[(key, row)] = column[row].as_py() or ""
    ranked = []
    for ts, event_id, where in items:
        if event_id is None:
            unit, row = where
            event_id = ids.get((id(unit), row))
        ranked.append((ts, event_id, where))
    ranked.sort(key=lambda item: (item[0], item[1] or ""), reverse=True)
    page, seen = [], set()
    for item in ranked:
        if item[1] is not None:
            if item[1] in seen:
                continue
            seen.add(item[1])
        page.append(item)
        if len(page) == plan.limit:
            break
    records = _records(plan, page)
    last = (page[-1][0], str(records[-1].get("audit_event_id", ""))) if page else None
    return SearchResult(records, total, remaining > len(page), last)


def _records(plan: Plan, page: list[tuple[int, str, Any]]) -> list[dict[str, Any]]:
    wanted: dict[int, tuple[_Unit, list[int]]] = {}
    for _, _, where in page:
        if isinstance(where, tuple):
            unit, row = where
            wanted.setdefault(id(unit), (unit, []))[1].append(row)
    texts: dict[tuple[int, int], str] = {}
    for key, (unit, rows) in wanted.items():
        plan.check()
        column = unit.source.read(unit.group, ["record_json"]).column("record_json")
        for row in rows:
            texts[(key, row)] = column[row].as_py()
    records = []
    for _, _, where in page:
        if isinstance(where, tuple):
            unit, row = where
            records.append(orjson.loads(texts[(id(unit), row)]))
        else:
            records.append(where)
    return records
