"""Turn spooled records into per-day groups of event lines, deduplicated by ``audit_event_id``."""

from __future__ import annotations

import collections
import dataclasses
import logging

import orjson

from shared.spool_format import SpoolRecord

log = logging.getLogger("auditlake.writer.batches")


@dataclasses.dataclass
class FlushBatch:
    """The events of one spool range, grouped by UTC day and sorted by ``ts``."""

    first_seq: int
    last_seq: int
    days: dict[tuple[str, str, str], list[tuple[str, bytes]]]
    events: int
    duplicates: int
    unparsable: list[bytes]


def group_records(records: list[SpoolRecord]) -> FlushBatch:
    """Parse each record's NDJSON lines, drop repeated ids, group by the event's own day."""
    days: dict[tuple[str, str, str], list[tuple[str, bytes]]] = collections.defaultdict(list)
    seen: set[str] = set()
    duplicates = 0
    events = 0
    unparsable: list[bytes] = []
    for record in records:
        for line in record.payload.split(b"\n"):
            if not line:
                continue
            try:
                event = orjson.loads(line)
                ts = event["ts"]
                event_id = event["audit_event_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                unparsable.append(line)
                continue
            if event_id in seen:
                duplicates += 1
                continue
            seen.add(event_id)
            days[(ts[0:4], ts[5:7], ts[8:10])].append((ts, line))
            events += 1
    for lines in days.values():
        lines.sort(key=lambda item: item[0])
    first = records[0].seq if records else 0
    last = records[-1].seq if records else 0
    return FlushBatch(first, last, dict(days), events, duplicates, unparsable)
