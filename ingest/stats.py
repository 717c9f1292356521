"""Ingest's counters and the status document built from them and the writer's pushed status."""

from __future__ import annotations

import dataclasses
import functools
import time
from datetime import datetime, timezone


def utc_now_iso() -> str:
    """Now as ISO-8601 UTC with microseconds and ``Z`` (the date and time part formatted once per second)."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    return f"{_second_prefix(seconds)}.{nanos // 1000:06d}Z"


@functools.lru_cache(maxsize=4)
def _second_prefix(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


@dataclasses.dataclass
class IngestStats:
    """Counters since the ingest process started."""

    accepted_events: int = 0
    rejected_events: int = 0
    refused_unread_requests: int = 0  # 503 before the body was parsed: queue full or no writer
    dropped_by_verbosity: int = 0
    invalid_requests: int = 0
    unconfirmed_events: int = 0
    front_door_requests: int = 0  # posts answered without the router (``ingest.front_door``)
    lane_requests: int = 0  # of those, posts parsed and answered without aiohttp's protocol (``ingest.fast_lane``)
    lane_handovers: int = 0  # connections the fast lane handed to aiohttp at a request it does not take
    last_received_at: str | None = None
