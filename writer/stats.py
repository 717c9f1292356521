"""The writer's counters and health facts, shared by its socket server, flusher and health port."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any


def utc_now_iso() -> str:
    """Now as ISO-8601 UTC with ``Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass
class WriterStats:
    """Counters since start plus the last outcome of each kind of work."""

    recovered_events: int = 0
    duplicate_batches: int = 0
    nacked_batches: int = 0
    flushed_events: int = 0
    flushes: int = 0
    failed_flushes: int = 0
    duplicate_events: int = 0
    unparsable_lines: int = 0
    parsed_flushes: int = 0
    typed_field_mismatches: int = 0
    last_flush_at: str | None = None
    last_error: str | None = None
    failing_since: float | None = None
    retention_files_deleted: int = 0
    retention_bytes_deleted: int = 0
    last_retention_at: str | None = None
    bytes_written: int = 0

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)
