"""The local backend's read sources: Parquet sidecars of published files, NDJSON without one, the spool.

Runs in a worker thread. The order of looking matters for exactness: first the spool checkpoint, then
the spool segments, then the store listing, so that an event moving from spool to store meanwhile is
seen at least once, and a seq range already published is never taken from the spool as well.
"""

from __future__ import annotations

import collections
import gzip
import logging
import threading
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

from ingest.column_cache import ColumnCache
from ingest.read_engine import Footer, ParquetSource, Parsed, Plan, open_parquet, read_footer
from ingest.spool_reader import spooled_events
from shared import layout

log = logging.getLogger("auditlake.ingest.read")
METADATA_CACHE_FILES = 50_000


class MetadataCache:
    """Parquet footers of sidecars by (path, mtime, size): a file is parsed once, not once per read."""

    def __init__(self, max_files: int = METADATA_CACHE_FILES) -> None:
        self.max_files = max_files
        self._items: collections.OrderedDict[tuple[str, int, int], Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def footer(self, path: Path) -> Footer:
        """The footer of a file, parsed once while the file is unchanged."""
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._items.get(key)
            if cached is not None:
                self._items.move_to_end(key)
                return cached
        cached = read_footer(pq.ParquetFile(path))
        with self._lock:
            self._items[key] = cached
            while len(self._items) > self.max_files:
                self._items.popitem(last=False)
        return cached

    def source(self, path: Path, columns: ColumnCache | None = None) -> ParquetSource:
        """A source that plans from the cached footer and opens the file only to read it."""
        stat = path.stat()
        return ParquetSource(lambda: open_parquet(path, self.footer(path).metadata, memory_map=True),
                             lambda: self.footer(path), (str(path), stat.st_mtime_ns, stat.st_size), columns)


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

    def collect(self, since: datetime, until: datetime, plan: Plan) -> tuple[list[ParquetSource], list[Parsed]]:
        """Sources of the range: one per published file, plus unpublished spooled events."""
        spooled = spooled_events(self.spool_dir)
        sources: list[ParquetSource] = []
        parsed: list[Parsed] = []
        published: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
        for directory in layout.day_dirs_between(self.store_root, since, until):
            plan.check()
            day = (directory.parent.parent.name, directory.parent.name, directory.name)
            try:
                entries = list(directory.iterdir())
            except FileNotFoundError:
                continue
            names = {path.name for path in entries}
            for path in entries:
                info = layout.describe(path)
                if info is None:
                    continue
                if info.first_seq is not None:
                    published.setdefault(day, []).append((info.first_seq, info.last_seq))
                if info.min_ts is not None and (info.min_ts > until or info.max_ts < since):
                    continue
                sidecar = layout.sidecar_path(path)
                if sidecar.name in names:
                    try:
                        sources.append(self.cache.source(sidecar, self.columns))
                    except FileNotFoundError:
                        continue
                    continue
                try:
                    parsed.append(Parsed(_ndjson_events(path)))
                except FileNotFoundError:
                    continue
                except (OSError, EOFError, zlib.error, orjson.JSONDecodeError) as exc:
                    log.error("unreadable audit file", extra={"file": path.name, "error": repr(exc)})
        pending = []
        for seq, event in spooled:
            ts = event.get("ts")
            if isinstance(ts, str) and any(first <= seq <= last for first, last in
                                           published.get((ts[0:4], ts[5:7], ts[8:10]), ())):
                continue
            pending.append(event)
        parsed.append(Parsed(pending))
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
