"""Ingest's read side of storage: queries and size reports, run off the event loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ingest.local_reader import QueryResult, run_local_query, store_bytes
from ingest.query_params import Query
from shared.settings import Settings

SIZE_CACHE_SECONDS = 5.0


def human_bytes(size: float) -> str:
    """``1536`` → ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


class StorageView:
    """Answers reads of the configured backend in worker threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._size: tuple[float, int] | None = None

    async def query(self, query: Query) -> QueryResult:
        """Run a query in a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, run_local_query, self.settings.local_path, self.settings.resolved_spool_path, query
        )

    async def describe(self) -> dict[str, Any]:
        """The body of ``GET /v1/audit/storage`` (sizes cached for a few seconds)."""
        now = time.monotonic()
        if self._size is None or now - self._size[0] > SIZE_CACHE_SECONDS:
            size = await asyncio.get_running_loop().run_in_executor(None, store_bytes, self.settings.local_path)
            self._size = (now, size)
        size = self._size[1]
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
