"""The S3 backend's read sources: pruned Parquet objects (new and legacy layout) plus the unpublished spool.

Runs in worker threads. Objects are pruned by partition and by the time span in their key before any
data is fetched; bodies are fetched only when the read engine opens them, and cached by key and ETag.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from ingest.column_cache import ColumnCache
from ingest.parquet_source import Footer, FooterCache, ParquetSource, SourceGone, open_parquet, read_footer
from ingest.published_ranges import PublishedRanges
from ingest.read_plan import Parsed, Plan
from ingest.spool_reader import SpoolReader
from shared import s3_layout

LIST_CONCURRENCY = 4  # day prefixes listed at once (new and legacy layout, two or three days)
KEY_MEMO_SIZE = 100_000
YEAR_PAGE = 50  # top-level entries per page when looking for legacy year prefixes
# A listing is reused while the writer's checkpoint has not moved (nothing of this replica was published
# and dropped from the spool since) and for at most this long (other replicas' objects, retention).
LISTING_REUSE_SECONDS = 2.0


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
        self.footers = FooterCache()
        self.spool = SpoolReader(spool_dir)
        self.keys: dict[str, s3_layout.ObjectInfo | None] = {}
        self.listers = concurrent.futures.ThreadPoolExecutor(LIST_CONCURRENCY, thread_name_prefix="s3-list")
        self._listed: dict[str, tuple[int, float, Any]] = {}  # prefix -> (checkpoint, monotonic time, listing)
        self._listed_lock = threading.Lock()

    def list_objects(self, key_prefix: str) -> list[dict[str, Any]]:
        """Every object under a key prefix (Key, Size, ETag)."""
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key_prefix):
            found.extend(page.get("Contents", []))
        return found

    def legacy_years(self) -> set[str]:
        """The top-level ``YYYY/`` prefixes under the base: the legacy layout's years.

        Digits sort before every other first character of our prefixes (``_digests/``, ``dt=``), so the
        listing stops at the first entry that does not start with a digit.
        """
        head = s3_layout.base(self.prefix)
        years: set[str] = set()
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=head, Delimiter="/",
                                   PaginationConfig={"PageSize": YEAR_PAGE})
        for page in pages:
            names = [common["Prefix"] for common in page.get("CommonPrefixes", [])]
            names += [item["Key"] for item in page.get("Contents", [])]
            for name in sorted(name[len(head):] for name in names):
                if not name[:1].isdigit():
                    return years
                if len(name) == 5 and name[:4].isdigit() and name[4] == "/":
                    years.add(name[:4])
        return years

    def _reused(self, key: str, checkpoint: int, fetch: Any) -> Any:
        """``fetch()``, or what it returned for ``key`` under the same checkpoint less than LISTING_REUSE_SECONDS ago.

        Safe for reads: an object published after the remembered listing holds records past that
        checkpoint, which the spool still returns while the checkpoint has not moved.
        """
        now = time.monotonic()
        with self._listed_lock:
            known = self._listed.get(key)
        if known is not None and known[0] == checkpoint >= 0 and now - known[1] < LISTING_REUSE_SECONDS:
            return known[2]
        value = fetch()
        with self._listed_lock:
            self._listed[key] = (checkpoint, now, value)
            if len(self._listed) > 64:
                self._listed.pop(next(iter(self._listed)))
        return value

    def _listings(self, since: datetime, until: datetime, checkpoint: int) -> list[list[dict[str, Any]]]:
        """The objects of the range's day prefixes, listed at once; legacy days only under existing years."""
        head = s3_layout.base(self.prefix)
        prefixes = s3_layout.day_prefixes(self.prefix, since, until)
        current = [prefix for prefix in prefixes if prefix[len(head):].startswith("dt=")]
        legacy = [prefix for prefix in prefixes if not prefix[len(head):].startswith("dt=")]

        def listed(prefix: str) -> list[dict[str, Any]]:
            return self._reused(prefix, checkpoint, lambda: self.list_objects(prefix))

        years = self.listers.submit(self._reused, "/years", checkpoint, self.legacy_years)
        listings = list(self.listers.map(listed, current))
        present = years.result()
        wanted = [prefix for prefix in legacy if prefix[len(head):len(head) + 4] in present]
        return listings + list(self.listers.map(listed, wanted))

    def collect(self, since: datetime, until: datetime, plan: Plan) -> tuple[list[ParquetSource], list[Parsed]]:
        """One source per object whose partition overlaps the range, plus unpublished spooled events."""
        spooled = self.spool.events()
        checkpoint = self.spool.checkpoint_seq
        sources = []
        published = PublishedRanges()
        plan.check()
        for listing in self._listings(since, until, checkpoint):
            for item in listing:
                info = self._describe(item["Key"])
                if info is None:
                    continue
                if info.writer_id == self.writer_id and info.partition is not None:
                    published.add(info.partition, info.first_seq, info.last_seq)
                if info.end is not None and info.end < since:
                    continue
                if info.start is not None and info.start > until:
                    continue
                sources.append(self._source(info.key, item.get("ETag", "")))
        pending, micros = [], []
        for seq, event, ts_us in spooled:
            ts = event.get("ts")
            if isinstance(ts, str) and published.contains(s3_layout.partition_of(ts, self.granularity), seq):
                continue
            pending.append(event)
            micros.append(ts_us)
        return sources, [Parsed(pending, micros)]

    def _describe(self, key: str) -> s3_layout.ObjectInfo | None:
        """``describe_key``, parsed once per key (the memo is cleared when it grows past a bound)."""
        try:
            return self.keys[key]
        except KeyError:
            pass
        if len(self.keys) >= KEY_MEMO_SIZE:
            self.keys.clear()
        info = self.keys[key] = s3_layout.describe_key(self.prefix, key)
        return info

    def _source(self, key: str, etag: str) -> ParquetSource:
        """An object as a source: footer cached by key and ETag, body fetched (and cached) when first read."""

        def load() -> Footer:
            return read_footer(open_parquet(pa.BufferReader(self._body(key, etag))))

        def footer() -> Footer:
            return self.footers.get((key, etag), load)

        def read_at(offset: int, size: int) -> memoryview:
            return memoryview(self._body(key, etag))[offset:offset + size]

        return ParquetSource(lambda: open_parquet(pa.BufferReader(self._body(key, etag)), footer().metadata),
                             footer, (key, etag), self.columns, read_at)

    def _body(self, key: str, etag: str) -> bytes:
        body = self.cache.get((key, etag))
        if body is None:
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except self.client.exceptions.NoSuchKey:
                raise SourceGone(key) from None
            self.cache.put((key, etag), body)
        return body
