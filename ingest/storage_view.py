"""The read side of storage: searches, counts, size reports and retention (run in the read process)."""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ingest.column_cache import ColumnCache
from ingest.local_reader import LocalSources, MetadataCache, store_bytes
from ingest.read_engine import SearchResult, search
from ingest.read_plan import Plan
from ingest.read_stats import count_buckets
from ingest.read_wire import RetentionError, StorageUnavailable
from ingest.s3_reader import ObjectCache, S3Sources
from shared import s3_layout
from shared.digests import DIGEST_DIR
from shared.s3_client import apply_retention, make_s3_client, read_retention
from shared.settings import Settings

S3_SCAN_CAP_OBJECTS = 100_000
READ_CACHE_BYTES = 256 * 1024 * 1024
READ_WORKERS = 2  # the parallel parts of one read (filter halves, page decoding); the machine's cores


def human_bytes(size: float) -> str:
    """``1536`` → ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Object store errors become StorageUnavailable (answered with 503)."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise StorageUnavailable(f"object store unavailable: {type(exc).__name__}") from None


class StorageView:
    """Answers reads of the local backend; runs in the read process (``ingest.read_worker``), in its threads."""

    def __init__(self, settings: Settings, sources: Any | None = None) -> None:
        self.settings = settings
        self.sources = sources or LocalSources(settings.local_path, settings.resolved_spool_path, MetadataCache(),
                                               ColumnCache(settings.read_cache_bytes))
        self.read_workers = concurrent.futures.ThreadPoolExecutor(READ_WORKERS, thread_name_prefix="read-worker")

    def search(self, plan: Plan, since: datetime, until: datetime) -> SearchResult:
        """One page of a search and its counts."""
        with _store_errors():
            sources, parsed = self.sources.collect(since, until, plan)
            return search(plan, sources, parsed, self.read_workers)

    def stats(self, plan: Plan, since: datetime, until: datetime, bucket: str,
              group_by: str | None) -> dict[str, Any]:
        """Counts per bucket (and group)."""
        with _store_errors():
            sources, parsed = self.sources.collect(since, until, plan)
            return count_buckets(plan, sources, parsed, bucket, group_by, self.read_workers)

    def describe(self) -> dict[str, Any]:
        """The body of ``GET /v1/audit/storage``."""
        with _store_errors():
            return self._measure()

    def _measure(self) -> dict[str, Any]:
        size = store_bytes(self.settings.local_path)
        return {
            "backend": "local",
            "audit_bytes": size,
            "audit_bytes_human": human_bytes(size),
            "local_path": str(self.settings.local_path),
            "retention_days": self.settings.local_retention_days,
        }

    def retention(self) -> dict[str, Any]:
        """The body of ``GET /v1/audit/retention``."""
        return {
            "backend": "local",
            "retention_days": self.settings.local_retention_days,
            "configurable": False,
            "note": "Local retention is set with AUDIT_SERVICE_LOCAL_RETENTION_DAYS; "
                    "the writer deletes older files at start and hourly.",
        }

    def set_retention(self, days: int) -> dict[str, Any]:
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

    def retention(self) -> dict[str, Any]:
        """Our lifecycle rule's days, read from the bucket."""
        try:
            days = read_retention(self.client, self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise RetentionError(502, f"could not read the bucket's lifecycle configuration: "
                                      f"{type(exc).__name__}") from None
        return self._retention_body(days)

    def set_retention(self, days: int) -> dict[str, Any]:
        """Replace our lifecycle rule (0 removes it); other rules stay; a failed read changes nothing."""
        try:
            apply_retention(self.client, self.bucket, self.settings.s3_prefix, days)
        except ValueError as exc:
            raise RetentionError(400, str(exc)) from None
        except (ClientError, BotoCoreError) as exc:
            raise RetentionError(502, f"could not update the bucket's lifecycle configuration; nothing was "
                                      f"changed ({type(exc).__name__})") from None
        return self._retention_body(days)


def build_storage_view(settings: Settings) -> StorageView:
    """The view of the configured backend."""
    return S3StorageView(settings) if settings.backend == "s3" else StorageView(settings)
