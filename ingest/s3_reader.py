"""The S3 backend's read sources: pruned Parquet objects (new and legacy layout) plus the unpublished spool.

Runs in worker threads. Objects are pruned by partition and by the time span in their key before any
data is fetched; bodies are fetched only when the read engine opens them, and cached by key and ETag.
"""

from __future__ import annotations

import collections
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.column_cache import ColumnCache
from ingest.read_engine import ParquetSource, Parsed, Plan, SourceGone, open_parquet
from ingest.spool_reader import spooled_events
from shared import s3_layout


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


class S3Sources:
    """Finds what a read of a time range must look at in one bucket prefix and this replica's spool."""

    def __init__(self, client: Any, bucket: str, prefix: str, granularity: str, writer_id: str,
                 spool_dir: Path, cache: ObjectCache, columns: ColumnCache | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.granularity = granularity
        self.writer_id = writer_id
        self.spool_dir = spool_dir
        self.cache = cache
        self.columns = columns

    def list_objects(self, key_prefix: str) -> list[dict[str, Any]]:
        """Every object under a key prefix (Key, Size, ETag)."""
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key_prefix):
            found.extend(page.get("Contents", []))
        return found

    def collect(self, since: datetime, until: datetime, plan: Plan) -> tuple[list[ParquetSource], list[Parsed]]:
        """One source per object whose partition overlaps the range, plus unpublished spooled events."""
        spooled = spooled_events(self.spool_dir)
        sources = []
        published: dict[str, list[tuple[int, int]]] = {}
        for key_prefix in s3_layout.day_prefixes(self.prefix, since, until):
            plan.check()
            for item in self.list_objects(key_prefix):
                info = s3_layout.describe_key(self.prefix, item["Key"])
                if info is None:
                    continue
                if info.writer_id == self.writer_id and info.partition is not None:
                    published.setdefault(info.partition, []).append((info.first_seq, info.last_seq))
                if info.end is not None and info.end < since:
                    continue
                if info.start is not None and info.start > until:
                    continue
                key, etag = info.key, item.get("ETag", "")
                sources.append(ParquetSource(lambda key=key, etag=etag: self._open(key, etag), None,
                                             (key, etag), self.columns))
        pending = []
        for seq, event in spooled:
            ts = event.get("ts")
            if isinstance(ts, str) and any(first <= seq <= last for first, last in
                                           published.get(s3_layout.partition_of(ts, self.granularity), ())):
                continue
            pending.append(event)
        return sources, [Parsed(pending)]

    def _open(self, key: str, etag: str) -> pq.ParquetFile:
        body = self.cache.get((key, etag))
        if body is None:
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except self.client.exceptions.NoSuchKey:
                raise SourceGone(key) from None
            self.cache.put((key, etag), body)
        return open_parquet(pa.BufferReader(body))
