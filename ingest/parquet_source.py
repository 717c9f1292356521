"""Parquet files as read sources: cached footers and columns, row groups to plan with, single-row values."""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.column_cache import ColumnCache
from ingest.filter_mask import column_or_nulls
from ingest.page_reader import ChunkPages, ReadAt, Unsupported, locate_pages, read_rows
from ingest.read_plan import LOWER, Plan
from ingest.text_search import LowerText
from ingest.timeutil import micros
from shared.s3_layout import DICTIONARY_COLUMNS

UNCACHED_COLUMNS = frozenset({"record_json", "audit_event_id"})
PAGES = ".pages"
FOOTER_CACHE_FILES = 50_000


class SourceGone(Exception):
    """A listed file or object vanished before it was read (retention); it is skipped."""


@dataclasses.dataclass(frozen=True)
class Footer:
    """What planning needs of a Parquet file: its metadata, Arrow schema and per-row-group ts bounds."""

    metadata: Any
    schema: pa.Schema
    groups: list[tuple[int | None, int | None, int]]
    names: frozenset[str] = frozenset()


class FooterCache:
    """Footers of immutable files by a caller's key (e.g. path, mtime and size; or key and ETag), LRU by count."""

    def __init__(self, max_files: int = FOOTER_CACHE_FILES) -> None:
        self.max_files = max_files
        self._items: collections.OrderedDict[Hashable, Footer] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], Footer]) -> Footer:
        """The cached footer of ``key``, loaded once."""
        with self._lock:
            cached = self._items.get(key)
            if cached is not None:
                self._items.move_to_end(key)
                return cached
        cached = load()
        with self._lock:
            self._items[key] = cached
            while len(self._items) > self.max_files:
                self._items.popitem(last=False)
        return cached


def open_parquet(source: Any, metadata: Any = None, **options: Any) -> pq.ParquetFile:
    """Open a Parquet file reading its low-cardinality string columns dictionary-encoded (those it has)."""
    if metadata is not None:
        names = metadata.schema.to_arrow_schema().names
    else:
        plain = pq.ParquetFile(source, **options)
        names, metadata = plain.schema_arrow.names, plain.metadata
    present = [name for name in DICTIONARY_COLUMNS if name in names]
    return pq.ParquetFile(source, metadata=metadata, read_dictionary=present or None, **options)


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
    return Footer(metadata, schema, groups, frozenset(schema.names))


class ParquetSource:
    """A Parquet file opened on demand (its row groups become units).

    ``footer`` may supply a cached footer so that planning needs no open file; ``read_at`` (offset,
    size) gives raw bytes of the file so that single values are read page by page (see page_reader).
    """

    def __init__(self, opener: Callable[[], pq.ParquetFile], footer: Callable[[], Footer] | None = None,
                 key: tuple | None = None, cache: ColumnCache | None = None,
                 read_at: ReadAt | None = None) -> None:
        self._opener = opener
        self._footer = footer
        self._key = key
        self._cache = cache if key is not None else None
        self._read_at = read_at
        self._file: pq.ParquetFile | None = None
        self._info: Footer | None = None
        self._names: frozenset[str] | None = None

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
    def names(self) -> frozenset[str]:
        """Column names."""
        if self._names is None:
            self._names = self.info.names or frozenset(self.info.schema.names)
        return self._names

    def read(self, group: int, columns: list[str]) -> pa.Table:
        """Read some columns of one row group, decoded columns from the cache where it has them.

        A name ending in ``.lower`` is the lowercased form of a string column (for case-insensitive
        matching), derived once and cached like a column.
        """
        found = self.columns(group, columns) or {}
        return pa.table({name: value.column if isinstance(value, LowerText) else value
                         for name, value in found.items()})

    def columns(self, group: int, columns: list[str], cached_only: bool = False) -> dict[str, Any] | None:
        """Like ``read``, as a dict; ``.lower`` columns come as ``LowerText`` (searchable with ``bytes.find``).

        With ``cached_only``, None when a column is not cached (nothing is read).
        """
        cache = self._cache
        found = {name: cache.get((self._key, group, name)) if cache else None for name in columns}
        missing = [name for name, column in found.items() if column is None]
        if missing and cached_only:
            return None
        stored = list(dict.fromkeys(name.removesuffix(LOWER) for name in missing))
        if stored:
            table = self.file.read_row_group(group, columns=[name for name in stored if name in self.names])
            for name in missing:
                base = name.removesuffix(LOWER)
                if name.endswith(LOWER):
                    found[name] = LowerText(column_or_nulls(table, base))
                elif base in table.column_names:
                    found[name] = table.column(base)
                else:
                    found[name] = pa.chunked_array([pa.nulls(table.num_rows, pa.string())])
                if cache is not None and name not in UNCACHED_COLUMNS:
                    cache.put((self._key, group, name), found[name])
        return found

    def values(self, group: int, name: str, rows: Iterable[int]) -> dict[int, Any]:
        """The values of one column at some rows of a row group, decoding only the pages that hold them.

        Falls back to reading the whole column chunk with Arrow when the chunk is not plain required
        byte arrays (legacy files, other writers) or when the file gives no raw access.
        """
        rows = list(rows)
        pages = self._pages(group, name)
        if pages is not None and self._read_at is not None:
            try:
                return read_rows(self._read_at, pages, rows)
            except Unsupported:
                pass
        column = self.read(group, [name]).column(name)
        return {row: column[row].as_py() for row in rows}

    def _pages(self, group: int, name: str) -> ChunkPages | None:
        if self._read_at is None or name not in self.names:
            return None
        key = (self._key, group, name + PAGES)
        pages = self._cache.get(key) if self._cache is not None else None
        if pages is None:
            metadata = self.info.metadata
            try:
                index = _leaf_index(metadata, name)
                pages = locate_pages(self._read_at, metadata.row_group(group).column(index),
                                     metadata.schema.column(index))
            except (Unsupported, IndexError, ValueError):
                pages = ChunkPages(None, (), readable=False)
            if self._cache is not None:
                self._cache.put(key, pages)
        return pages if pages.readable else None


def _leaf_index(metadata: Any, name: str) -> int:
    """The Parquet column index of a top-level leaf column (ValueError when there is none)."""
    schema = metadata.schema
    return [schema.column(index).path for index in range(metadata.num_columns)].index(name)


@dataclasses.dataclass
class RowGroup:
    """One row group of a source as the engine plans with it: ts bounds (None when unknown) and rows."""

    source: ParquetSource
    group: int
    low: int | None
    high: int | None
    rows: int


def row_groups(sources: Iterable[ParquetSource], plan: Plan) -> list[RowGroup]:
    """The row groups that may hold rows of the plan's range, newest (highest ts) first."""
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
            units.append(RowGroup(source, group, low, high, rows))
    units.sort(key=lambda unit: unit.high if unit.high is not None else 2**63, reverse=True)
    return units


def present(unit: RowGroup, columns: list[str]) -> list[str]:
    """The columns (``.lower`` forms included) whose stored column the unit's file has."""
    names = unit.source.names
    return [name for name in dict.fromkeys(columns) if name.removesuffix(LOWER) in names]
