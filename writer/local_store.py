"""The local backend: publishes day-partitioned NDJSON(.gz) files atomically, purges them by age."""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from isal import igzip

from shared import layout
from writer.batches import FlushBatch
from writer.faults import FaultPoints
from shared.layout import sidecar_path
from writer import event_table, parquet_encode
from writer.store import EncodedFile, PublishedFile, PublishResult
from writer.fsutil import write_atomic

log = logging.getLogger("auditlake.writer.local")
# ISA-L level 2, standard gzip that gzip/zlib read. On 20,000 events of ~614 bytes (bench/read_bench.py
# make_event), CPU per event and compressed/raw size: zlib level 6 (before) 12.4 us, 0.167; zlib 1 5.2 us,
# 0.209; ISA-L 0 1.1 us, 0.258; ISA-L 1 1.1 us, 0.186; ISA-L 2 1.05 us, 0.185; ISA-L 3 4.2 us, 0.188.
# With mtime=0 the bytes depend only on the lines, so a redone flush publishes the same bytes.
GZIP_LEVEL = 2


class LocalStore:
    """Files under ``<root>/YYYY/MM/DD/``; the store that reads on the ingest side look at."""

    def __init__(self, root: Path, gzip_enabled: bool, retention_days: int,
                 warning_percent: float, critical_percent: float, faults: FaultPoints | None = None) -> None:
        self.root = root
        self.faults = faults or FaultPoints(None)
        self._health: dict[str, Any] = {"backend": "local", "status": "healthy", "detail": "not probed yet",
                                        "local_path": str(root)}
        self.gzip_enabled = gzip_enabled
        self.retention_days = retention_days
        self.warning_percent = warning_percent
        self.critical_percent = critical_percent
        self.before_delete: Callable[[list[str]], None] | None = None  # tamper evidence: records deletions first

    def prepare(self) -> None:
        """Create the store root; raise OSError when it cannot be created."""
        self.root.mkdir(parents=True, exist_ok=True)

    def encoder(self) -> Callable[[FlushBatch], list[EncodedFile]]:
        """``encode_days`` with this store's gzip setting (picklable, for the encoder process)."""
        return functools.partial(encode_days, gzip_enabled=self.gzip_enabled)

    def write(self, files: list[EncodedFile]) -> PublishResult:
        """Write each day's file and its Parquet sidecar (``<name>.parquet``) atomically (the flush thread)."""
        for item in files:
            path = self.root / item.name
            path.parent.mkdir(parents=True, exist_ok=True)
            if item.sidecar is not None:
                self._write_file(sidecar_path(path), item.sidecar)
            self._write_file(path, item.body)
            self.faults.reach("mid_publish")
        return PublishResult([item.published for item in files])

    def remove(self, names: list[str]) -> None:
        """Delete published files and their sidecars (stale copies of a range being redone)."""
        for name in names:
            for path in (self.root / name, sidecar_path(self.root / name)):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass

    def _write_file(self, path: Path, body: bytes | memoryview) -> None:
        write_atomic(path, body, 0o640)

    def purge(self, now: float | None = None) -> tuple[int, int]:
        """Delete files published more than ``retention_days`` ago (server time); return (files, bytes)."""
        if self.retention_days <= 0:
            return 0, 0
        cutoff = (time.time() if now is None else now) - self.retention_days * 86400
        files = removed_bytes = 0
        for directory in layout.all_day_dirs(self.root):
            expired = []
            for path in list(directory.iterdir()):
                if (layout.describe(path) is None and not path.name.startswith(".tmp-")
                        and not layout.is_sidecar(path)):
                    continue
                stat = path.stat()
                if stat.st_mtime < cutoff:
                    expired.append((path, stat.st_size))
            if self.before_delete is not None and expired:
                self.before_delete([str(path.relative_to(self.root)) for path, _ in expired])
            for path, size in expired:
                path.unlink()
                files += 1
                removed_bytes += size
            _remove_if_empty(directory)
        return files, removed_bytes

    def probe(self) -> None:
        """Measure disk usage now (worker thread) for health()."""
        self._health = self._measure()

    def health(self) -> dict[str, Any]:
        """The last measured disk health."""
        return self._health

    def _measure(self) -> dict[str, Any]:
        """Disk usage of the store's file system and the status it implies."""
        try:
            usage = shutil.disk_usage(self.root)
        except OSError as exc:
            return {"backend": "local", "status": "down", "detail": f"storage path unusable: {exc.strerror}",
                    "local_path": str(self.root)}
        used_percent = round(usage.used * 100.0 / usage.total, 2) if usage.total else 100.0
        status, detail = "healthy", "disk usage normal"
        if used_percent >= self.critical_percent:
            status, detail = "down", f"disk usage {used_percent}% at or above critical {self.critical_percent}%"
        elif used_percent >= self.warning_percent:
            status, detail = "warning", f"disk usage {used_percent}% at or above warning {self.warning_percent}%"
        return {
            "backend": "local",
            "status": status,
            "detail": detail,
            "local_path": str(self.root),
            "total_bytes": usage.total,
            "used_bytes": usage.used,
            "free_bytes": usage.free,
            "used_percent": used_percent,
            "warning_percent": self.warning_percent,
            "critical_percent": self.critical_percent,
        }


def _remove_if_empty(directory: Path) -> None:
    """Remove a day directory and its month/year parents once empty."""
    for path in (directory, directory.parent, directory.parent.parent):
        try:
            path.rmdir()
        except OSError:
            return


def encode_days(batch: FlushBatch, gzip_enabled: bool) -> list[EncodedFile]:
    """One file per day of a spool range under a name deterministic for the range and its content, its NDJSON
    gzip'd (ISA-L) when enabled, with a Parquet sidecar of the same typed schema as S3 objects that reads use
    instead of parsing the NDJSON; the NDJSON file stays the record of the contract."""
    files = []
    for (year, month, day), events in sorted(batch.days.items()):
        first_ts, last_ts = event_table.ts_bounds(events)
        name = f"{year}/{month}/{day}/" + layout.file_name(first_ts, last_ts, batch.first_seq, batch.last_seq,
                                                             gzip_enabled)
        lines = event_table.concatenated(event_table.one_array(events.column("line")))
        body = bytes(igzip.compress(lines, compresslevel=GZIP_LEVEL, mtime=0) if gzip_enabled else lines)
        sidecar = bytes(parquet_encode.encode(events))
        files.append(EncodedFile(name, body, sidecar, PublishedFile(
            name, hashlib.sha256(body).hexdigest(), len(body), events.num_rows, first_ts, last_ts,
            hashlib.sha256(sidecar).hexdigest(), len(sidecar))))
    return files
