"""Ingest's read side of storage: searches, counts, size reports and retention, run off the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ingest.column_cache import ColumnCache
from ingest.local_reader import LocalSources, MetadataCache, store_bytes
from ingest.read_engine import SearchResult, search
from ingest.read_plan import Plan
from ingest.read_stats import count_buckets
from ingest.s3_reader import ObjectCache, S3Sources
from shared import s3_layout
from shared.digests import DIGEST_DIR
from shared.s3_client import apply_retention, make_s3_client, read_retention
from shared.settings import Settings

SIZE_CACHE_SECONDS = 5.0
S3_SCAN_CAP_OBJECTS = 100_000
READ_CACHE_BYTES = 256 * 1024 * 1024
READ_WORKERS = 2  # the parallel parts of one read (filter halves, page decoding); the machine's cores


class StorageUnavailable(Exception):
    """The backend cannot be read right now (answered with 503)."""


class RetentionError(Exception):
    """Retention cannot be read or changed; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def human_bytes(size: float) -> str:
    """``1536`` → ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


class ReadsBusy(Exception):
    """Every read slot is taken (answered with 503 and Retry-After)."""


class ReadSlots:
    """At most ``limit`` reads at once; a slot is freed when its worker thread is done, not before."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()

    def take(self) -> Callable[[], None]:
        """A slot's release function (idempotent); raise ReadsBusy when none is free."""
        with self._lock:
            if self.active >= self.limit:
                raise ReadsBusy("too many concurrent reads")
            self.active += 1
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                with self._lock:
                    self.active -= 1

        return release


READ_THREAD_NICENESS = 10


def _lower_priority() -> None:
    """Make a read thread yield the CPU to ingest's event loop (Linux schedules threads by their own nice)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), READ_THREAD_NICENESS)
    except (AttributeError, OSError):
        pass


class StorageView:
    """Answers reads of the local backend in worker threads."""

    def __init__(self, settings: Settings, sources: Any | None = None) -> None:
        self.settings = settings
        self.sources = sources or LocalSources(settings.local_path, settings.resolved_spool_path, MetadataCache(),
                                               ColumnCache(settings.read_cache_bytes))
        self.slots = ReadSlots(settings.read_concurrency)
        self.executor = concurrent.futures.ThreadPoolExecutor(settings.read_concurrency + 1,
                                                              thread_name_prefix="read",
                                                              initializer=_lower_priority)
        self.read_workers = concurrent.futures.ThreadPoolExecutor(READ_WORKERS, thread_name_prefix="read-worker",
                                                                  initializer=_lower_priority)
        self._size: tuple[float, dict[str, Any]] | None = None

    async def _in_thread(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    async def run_read(self, plan: Plan, function: Callable[..., Any], *args: Any,
                       release: Callable[[], None] | None = None) -> Any:
        """Run a read in the read pool; a cancelled caller stops it; ``release`` runs when the thread ends."""
        work = self.executor.submit(self._guarded, function, *args)
        if release is not None:
            work.add_done_callback(lambda _: release())
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            plan.cancel.set()
            raise

    @staticmethod
    def _guarded(function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailable(f"object store unavailable: {type(exc).__name__}") from None

    def _search(self, plan: Plan, since: datetime, until: datetime) -> SearchResult:
        sources, parsed = self.sources.collect(since, until, plan)
        return search(plan, sources, parsed, self.read_workers)

    def _stats(self, plan: Plan, since: datetime, until: datetime, bucket: str, group_by: str | None):
        sources, parsed = self.sources.collect(since, until, plan)
        return count_buckets(plan, sources, parsed, bucket, group_by, self.read_workers)

    async def search(self, plan: Plan, since: datetime, until: datetime,
                     release: Callable[[], None] | None = None) -> SearchResult:
        """One page of a search and its counts."""
        return await self.run_read(plan, self._search, plan, since, until, release=release)

    async def stats(self, plan: Plan, since: datetime, until: datetime, bucket: str, group_by: str | None,
                    release: Callable[[], None] | None = None) -> dict[str, Any]:
        """Counts per bucket (and group)."""
        return await self.run_read(plan, self._stats, plan, since, until, bucket, group_by, release=release)

    def close(self) -> None:
        """Stop the read pools and the sources' threads (running reads finish)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.read_workers.shutdown(wait=False, cancel_futures=True)
        self.sources.close()

    async def describe(self) -> dict[str, Any]:
        """The body of ``GET /v1/audit/storage`` (figures cached for a few seconds)."""
        now = time.monotonic()
        if self._size is None or now - self._size[0] > SIZE_CACHE_SECONDS:
            try:
                self._size = (now, await self._in_thread(self._measure))
            except (ClientError, BotoCoreError) as exc:
                raise StorageUnavailable(f"object store unavailable: {type(exc).__name__}") from None
        return self._size[1]

    def _measure(self) -> dict[str, Any]:
        size = store_bytes(self.settings.local_path)
        return {
            "backend": "local",
            "audit_bytes": size,
            "audit_bytes_human": human_bytes(size),
            "local_path": str(self.settings.local_path),
            "retention_days": self.settings.local_retention_days,
        }

    async def retention(self) -> dict[str, Any]:
        """The body of ``GET /v1/audit/retention``."""
        return {
            "backend": "local",
            "retention_days": self.settings.local_retention_days,
            "configurable": False,
            "note": "Local retention is set with AUDIT_SERVICE_LOCAL_RETENTION_DAYS; "
                    "the writer deletes older files at start and hourly.",
        }

    async def set_retention(self, days: int) -> dict[str, Any]:
        """Local retention is not configurable at run time."""
        raise RetentionError(400, "retention is not configurable on the local backend; "
                                  "set AUDIT_SERVICE_LOCAL_RETENTION_DAYS")


class S3StorageView(StorageView):
    """Answers reads of the S3 backend (bucket plus this replica's spool) in worker threads."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.client = client or make_s3_client(settings)
        self.bucket = settings.s3_bucket or ""
        super().__init__(settings, S3Sources(self.client, self.bucket, settings.s3_prefix, settings.s3_partition,
                                             settings.writer_id, settings.resolved_spool_path,
                                             ObjectCache(READ_CACHE_BYTES), ColumnCache(settings.read_cache_bytes)))

    def _measure(self) -> dict[str, Any]:
        count = size = 0
        capped = False
        paginator = self.client.get_paginator("list_objects_v2")
        digests_prefix = s3_layout.base(self.settings.s3_prefix) + DIGEST_DIR + "/"
        for page in paginator.paginate(Bucket=self.bucket, Prefix=s3_layout.base(self.settings.s3_prefix)):
            for item in page.get("Contents", []):
                if item["Key"].startswith(digests_prefix):  # tamper-evidence digests are not audit data
                    continue
                count += 1
                size += item.get("Size", 0)
            if count >= S3_SCAN_CAP_OBJECTS:
                capped = True
                break
        return {
            "backend": "s3",
            "object_count": count,
            "total_bytes": size,
            "total_bytes_human": human_bytes(size),
            "capped": capped,
            "bucket": self.bucket,
            "prefix": self.settings.s3_prefix,
        }

    def _retention_body(self, days: int) -> dict[str, Any]:
        return {"backend": "s3", "retention_days": days, "configurable": True,
                "bucket": self.bucket, "prefix": self.settings.s3_prefix}

    async def retention(self) -> dict[str, Any]:
        """Our lifecycle rule's days, read from the bucket."""
        try:
            days = await self._in_thread(read_retention, self.client, self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise RetentionError(502, f"could not read the bucket's lifecycle configuration: "
                                      f"{type(exc).__name__}") from None
        return self._retention_body(days)

    async def set_retention(self, days: int) -> dict[str, Any]:
        """Replace our lifecycle rule (0 removes it); other rules stay; a failed read changes nothing."""
        try:
            await self._in_thread(apply_retention, self.client, self.bucket, self.settings.s3_prefix, days)
        except ValueError as exc:
            raise RetentionError(400, str(exc)) from None
        except (ClientError, BotoCoreError) as exc:
            raise RetentionError(502, f"could not update the bucket's lifecycle configuration; nothing was "
                                      f"changed ({type(exc).__name__})") from None
        return self._retention_body(days)


def build_storage_view(settings: Settings) -> StorageView:
    """The view of the configured backend."""
    return S3StorageView(settings) if settings.backend == "s3" else StorageView(settings)
