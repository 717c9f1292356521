"""The S3 backend: Hive-partitioned Parquet objects under deterministic keys, uploaded with checksums."""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError

from shared import s3_layout
from shared.s3_client import apply_retention
from shared.errors import ConfigError
from shared.settings import Settings
from writer import event_table, object_lock, parquet_encode
from writer.batches import FlushBatch, prefix_runs
from writer.faults import FaultPoints
from writer.object_lock import ObjectLock
from writer.store import EncodedFile, PublishedFile, PublishResult

log = logging.getLogger("auditlake.writer.s3")


class S3Store:
    """Publishes one Parquet object per partition of a spool range; retention is a lifecycle rule."""

    def __init__(self, settings: Settings, client: Any, probe_client: Any,
                 faults: FaultPoints | None = None) -> None:
        self.settings = settings
        self.client = client
        self.probe_client = probe_client
        self.bucket = settings.s3_bucket or ""
        self.prefix = settings.s3_prefix
        self.retention_days = settings.s3_retention_days
        self.faults = faults or FaultPoints(None)
        self.uploads = 0
        self.upload_failures = 0
        self.bytes_uploaded = 0
        self.object_lock: ObjectLock | None = None  # set by prepare() when AUDIT_SERVICE_S3_OBJECT_LOCK_MODE is set
        self._health: dict[str, Any] = self._describe("healthy", "not probed yet")
        self.observe_upload: Callable[[float], None] = lambda seconds: None  # metrics hook

    def prepare(self) -> None:
        """Check the bucket (create it only when allowed) and apply the retention rule when configured."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise ConfigError("AUDIT_SERVICE_S3_BUCKET", f"bucket {self.bucket!r} is not usable: {code}") from None
            if not self.settings.s3_create_bucket:
                raise ConfigError("AUDIT_SERVICE_S3_BUCKET",
                                  f"bucket {self.bucket!r} does not exist (set AUDIT_SERVICE_S3_CREATE_BUCKET=true "
                                  "to create it)") from None
            self._create_bucket()
        except (BotoCoreError, OSError) as exc:
            raise ConfigError("AUDIT_SERVICE_S3_ENDPOINT_URL", f"object store unreachable: {exc}") from None
        if self.retention_days > 0:
            apply_retention(self.client, self.bucket, self.prefix, self.retention_days)
        self.object_lock = object_lock.configure(self.client, self.settings)

    def _create_bucket(self) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.settings.s3_region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.s3_region}
        self.client.create_bucket(**kwargs)
        log.warning("created bucket", extra={"bucket": self.bucket})

    def encoder(self) -> Callable[[FlushBatch], list[EncodedFile]]:
        """``encode_partitions`` with this store's prefix, partitioning and writer id (picklable)."""
        return functools.partial(encode_partitions, prefix=self.prefix, partition=self.settings.s3_partition,
                                 writer_id=self.settings.writer_id)

    def write(self, files: list[EncodedFile]) -> PublishResult:
        """Upload each object with a Content-MD5 the store checks (the flush thread)."""
        for item in files:
            started = time.monotonic()
            body = bytes(item.body)  # botocore takes bytes or a file, not the view the encoder's answer arrives as
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=item.name, Body=body, ContentType="application/vnd.apache.parquet",
                    ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),
                    Metadata={"events": str(item.published.events), "writer-id": self.settings.writer_id},
                    **(self.object_lock.put_args() if self.object_lock else {}),
                )
            except Exception:
                self.upload_failures += 1
                raise
            self.uploads += 1
            self.observe_upload(time.monotonic() - started)
            self.bytes_uploaded += len(item.body)
            log.info("upload", extra={"key": item.name, "events": item.published.events, "bytes": len(item.body),
                                      "duration_ms": round((time.monotonic() - started) * 1000, 2)})
            self.faults.reach("mid_publish")
        return PublishResult([item.published for item in files])

    def remove(self, names: list[str]) -> None:
        """Delete stale objects of a range being redone."""
        for key in names:
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def purge(self) -> tuple[int, int]:
        """Nothing to do: the bucket's lifecycle rule expires objects."""
        return 0, 0

    def probe(self) -> None:
        """Check the bucket answers (worker thread); remember the outcome for health()."""
        try:
            self.probe_client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError, OSError) as exc:
            self._health = self._describe("down", f"object store unreachable: {type(exc).__name__}")
            return
        self._health = self._describe("healthy", "object store reachable")

    def health(self) -> dict[str, Any]:
        """The last probe's outcome plus upload figures (no I/O)."""
        return {**self._health, "uploads": self.uploads, "upload_failures": self.upload_failures,
                "bytes_uploaded": self.bytes_uploaded}

    def _describe(self, status: str, detail: str) -> dict[str, Any]:
        return {"backend": "s3", "status": status, "detail": detail, "bucket": self.bucket, "prefix": self.prefix}


def partition_groups(batch: FlushBatch, partition_setting: str) -> list[tuple[str, pa.Table]]:
    """The batch's events by partition, in batch order within each, partitions sorted.

    A partition depends on ``ts[0:16]`` only, so it is computed once per distinct prefix; a day's events are
    sorted by ``ts``, so a partition's runs of rows are adjacent: one slice, not a copy.
    """
    grouped: dict[str, list[tuple[pa.Table, int, int]]] = {}
    partition_of_prefix: dict[str, str] = {}
    for events in batch.days.values():
        for prefix, start, end in prefix_runs(events.column("ts"), 16):
            partition = partition_of_prefix.get(prefix)
            if partition is None:
                partition = partition_of_prefix[prefix] = s3_layout.partition_of(prefix, partition_setting)
            grouped.setdefault(partition, []).append((events, start, end))
    return sorted((partition, event_table.joined(parts)) for partition, parts in grouped.items())


def encode_partitions(batch: FlushBatch, prefix: str, partition: str, writer_id: str) -> list[EncodedFile]:
    """One Parquet object per partition of a spool range, under its deterministic key
    (``<prefix>/dt=…/hour=…/<writer>-<first>-<last>.parquet``),
    verified by reading it back."""
    files = []
    for name, events in partition_groups(batch, partition):
        key = s3_layout.object_key(prefix, name, writer_id, batch.first_seq, batch.last_seq)
        body = bytes(parquet_encode.encode(events))  # botocore takes bytes or a file
        files.append(EncodedFile(key, body, None, PublishedFile(key, hashlib.sha256(body).hexdigest(), len(body),
                                                                 events.num_rows, *event_table.ts_bounds(events))))
    return files
