"""The local backend's read sources: Parquet sidecars of published files, NDJSON without one, the spool.

Runs in a worker thread. The order of looking matters for exactness: first the spool checkpoint, then
the spool segments, then the store listing, so that an event moving from spool to store meanwhile is
seen at least once, and a seq range already published is never taken from the spool as well.
"""

from __future__ import annotations

import gzip
import logging
import mmap
import os
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

from ingest.column_cache import ColumnCache
from ingest.parquet_source import Footer, FooterCache, ParquetSource, open_parquet, read_footer
from ingest.published_ranges import PublishedRanges
from ingest.read_plan import Parsed, Plan
from ingest.spool_reader import SpoolReader
from shared import layout

log = logging.getLogger("auditlake.ingest.read")
METADATA_CACHE_FILES = 50_000


class MetadataCache:
    """Parquet footers of sidecars by (path, mtime, size): a file is parsed once, not once per read."""

    def __init__(self, max_files: int = METADATA_CACHE_FILES) -> None:
        self.max_files = max_files
        self._footers = FooterCache(max_files)

    def footer(self, path: Path | str) -> Footer:
        """The footer of a file, parsed once while the file is unchanged."""
        stat = os.stat(path)
        return self._footers.get((str(path), stat.st_mtime_ns, stat.st_size), lambda: read_footer(pq.ParquetFile(path)))

    def source(self, path: Path | str, columns: ColumnCache | None = None) -> ParquetSource:
        """A source that plans from the cached footer, opens the file only to read it, and reads single
        values from a memory map."""
        path = str(path)
        stat = os.stat(path)
        key = (path, stat.st_mtime_ns, stat.st_size)

        def footer() -> Footer:
            return self._footers.get(key, lambda: read_footer(pq.ParquetFile(path)))

        return ParquetSource(lambda: open_parquet(path, footer().metadata, memory_map=True), footer, key, columns,
                             MappedFile(path).read_at)


class MappedFile:
    """A file memory-mapped on first use; ``read_at`` slices it without copying."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._map: mmap.mmap | None = None

    def read_at(self, offset: int, size: int) -> memoryview:
        """Up to ``size`` bytes from ``offset`` (a view of the mapping)."""
        if self._map is None:
            descriptor = os.open(self.path, os.O_RDONLY)
            try:
                self._map = mmap.mmap(descriptor, 0, access=mmap.ACCESS_READ)
            finally:
                os.close(descriptor)
        return memoryview(self._map)[offset:offset + size]


class NameCache:
    """What file names tell (``layout.describe``), parsed once per path; cleared when it grows past a bound."""

    def __init__(self, max_names: int = METADATA_CACHE_FILES) -> None:
        self.max_names = max_names
        self._items: dict[tuple[str, str], layout.StoredFile | None] = {}

    def describe(self, directory: str, name: str) -> layout.StoredFile | None:
        """``layout.describe(Path(directory, name))``, from the cache when seen before."""
        key = (directory, name)
        try:
            return self._items[key]
        except KeyError:
            pass
        if len(self._items) >= self.max_names:
            self._items.clear()
        info = self._items[key] = layout.describe(Path(directory, name))
        return info


def _ndjson_events(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return [orjson.loads(line) for line in data.splitlines() if line]


class LocalSources:
    """Finds what a read of a time range must look at in the local store and the spool."""

    def __init__(self, store_root: Path, spool_dir: Path, cache: MetadataCache,
                 columns: ColumnCache | None = None) -> None:
        self.store_root = store_root
        self.spool_dir = spool_dir
        self.cache = cache
        self.columns = columns
        self.names = NameCache()
        self.spool = SpoolReader(spool_dir)

    def collect(self, since: datetime, until: datetime, plan: Plan) -> tuple[list[ParquetSource], list[Parsed]]:
        """Sources of the range: one per published file, plus unpublished spooled events."""
        spooled = self.spool.events()
        sources: list[ParquetSource] = []
        parsed: list[Parsed] = []
        published = PublishedRanges()
        for directory in layout.day_dirs_between(self.store_root, since, until):
            plan.check()
            day = (directory.parent.parent.name, directory.parent.name, directory.name)
            try:
                with os.scandir(directory) as listing:
                    entries = [entry.name for entry in listing]
            except FileNotFoundError:
                continue
            names = set(entries)
            folder = str(directory)
            for name in entries:
                info = self.names.describe(folder, name)
                if info is None:
                    continue
                if info.first_seq is not None:
                    published.add(day, info.first_seq, info.last_seq)
                if info.min_ts is not None and (info.min_ts > until or info.max_ts < since):
                    continue
                path = info.path
                if name + layout.SIDECAR_SUFFIX in names:
                    try:
                        sources.append(self.cache.source(f"{folder}/{name}{layout.SIDECAR_SUFFIX}", self.columns))
                    except FileNotFoundError:
                        continue
                    continue
                try:
                    parsed.append(Parsed(_ndjson_events(path)))
                except FileNotFoundError:
                    continue
                except (OSError, EOFError, zlib.error, orjson.JSONDecodeError) as exc:
                    log.error("unreadable audit file", extra={"file": path.name, "error": repr(exc)})
        pending, micros = [], []
        for seq, event, ts_us in spooled:
            ts = event.get("ts")
            if isinstance(ts, str) and published.contains((ts[0:4], ts[5:7], ts[8:10]), seq):
                continue
            pending.append(event)
            micros.append(ts_us)
        parsed.append(Parsed(pending, micros))
        return sources, parsed


def store_bytes(store_root: Path) -> int:
    """Total size of the audit files (and their sidecars) under the store root."""
    total = 0
    for directory in layout.all_day_dirs(store_root):
        try:
            entries = list(directory.iterdir())
        except FileNotFoundError:
            continue
        for path in entries:
            if layout.describe(path) is not None or layout.is_sidecar(path):
                try:
                    total += path.stat().st_size
                except FileNotFoundError:
                    continue
    return total
