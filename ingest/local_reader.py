"""Reads of the local store: published NDJSON(.gz) files plus spooled events not yet published.

Runs in a worker thread. The order of looking matters for exactness: first the spool checkpoint, then
the spool segments, then the store listing, so that an event moving from spool to store meanwhile is
seen at least once, and a seq range already published is never taken from the spool as well.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ingest.query_params import Query
from ingest.spool_reader import spooled_events
from shared import layout
from shared.errors import EventError
from shared.events import TS_LENGTH, canonical_ts

log = logging.getLogger("auditlake.ingest.read")


@dataclasses.dataclass
class QueryResult:
    """Matching records newest first (at most ``limit``) and the total number of matches."""

    records: list[dict[str, Any]]
    total: int


class EventMatcher:
    """Applies a Query's time range and filters to one event."""

    def __init__(self, query: Query) -> None:
        self.since = query.since_ts
        self.until = query.until_ts
        self.filters = list(query.filters.items())
        self.capability = query.capability
        self.user_email = query.user_email.lower() if query.user_email else None

    def event_ts(self, event: dict[str, Any]) -> str | None:
        """The event's canonical ``ts``, converting legacy forms; None when it has none usable."""
        ts = event.get("ts")
        if isinstance(ts, str) and len(ts) == TS_LENGTH and ts[-1] == "Z":
            return ts
        try:
            return canonical_ts(ts)
        except EventError:
            return None

    def matches(self, event: dict[str, Any], ts: str) -> bool:
        """True when the event is in range and passes every filter."""
        if ts < self.since or ts > self.until:
            return False
        for name, value in self.filters:
            if event.get(name) != value:
                return False
        if self.capability is not None:
            actual = event["capability"] if "capability" in event else event.get("action")
            if actual != self.capability:
                return False
        if self.user_email is not None:
            email = event.get("user_email")
            if not isinstance(email, str) or self.user_email not in email.lower():
                return False
        return True


def _lines(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return iter(data.splitlines())


def run_local_query(store_root: Path, spool_dir: Path, query: Query) -> QueryResult:
    """Find every event matching ``query`` in the spool and the store; return the newest ``limit``."""
    matcher = EventMatcher(query)
    spooled = spooled_events(spool_dir)
    matches: list[tuple[str, str, dict[str, Any]]] = []
    published: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    seen_ids: set[str] = set()
    for directory in layout.day_dirs_between(store_root, query.since, query.until):
        day = (directory.parent.parent.name, directory.parent.name, directory.name)
        try:
            entries = list(directory.iterdir())
        except FileNotFoundError:
            continue
        for path in entries:
            info = layout.describe(path)
            if info is None:
                continue
            if info.first_seq is not None:
                published.setdefault(day, []).append((info.first_seq, info.last_seq))
            if info.min_ts is not None and (info.min_ts > query.until or info.max_ts < query.since):
                continue
            try:
                lines = _lines(path)
            except FileNotFoundError:
                continue
            except (OSError, EOFError, zlib.error) as exc:
                log.error("unreadable audit file", extra={"file": path.name, "error": repr(exc)})
                continue
            for line in lines:
                if not line:
                    continue
                _collect(orjson.loads(line), matcher, matches, seen_ids)
    for seq, event in spooled:
        ts = matcher.event_ts(event)
        if ts is None:
            continue
        ranges = published.get((ts[0:4], ts[5:7], ts[8:10]), ())
        if any(first <= seq <= last for first, last in ranges):
            continue
        _collect(event, matcher, matches, seen_ids)
    matches.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return QueryResult([event for _, _, event in matches[: query.limit]], len(matches))


def _collect(event: Any, matcher: EventMatcher, matches: list, seen_ids: set[str]) -> None:
    if not isinstance(event, dict):
        return
    ts = matcher.event_ts(event)
    if ts is None or not matcher.matches(event, ts):
        return
    event_id = str(event.get("audit_event_id", ""))
    if event_id:
        if event_id in seen_ids:
            return
        seen_ids.add(event_id)
    matches.append((ts, event_id, event))


def store_bytes(store_root: Path) -> int:
    """Total size of the audit files under the store root."""
    total = 0
    for directory in layout.all_day_dirs(store_root):
        try:
            entries = list(directory.iterdir())
        except FileNotFoundError:
            continue
        for path in entries:
            if layout.describe(path) is not None:
                try:
                    total += path.stat().st_size
                except FileNotFoundError:
                    continue
    return total
