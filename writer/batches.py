"""Turn spooled records into per-day groups of event lines, deduplicated by ``audit_event_id``."""

from __future__ import annotations

import collections
import dataclasses
import logging

import orjson

from shared.spool_format import SpoolRecord
from writer.dedupe import DedupeWindow, id_hash

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
    id_hashes: list[int]


def group_records(records: list[SpoolRecord], window: DedupeWindow | None = None) -> FlushBatch:
    """Parse each record's NDJSON lines, drop ids seen in the range or the window, group by day."""
    days: dict[tuple[str, str, str], list[tuple[str, bytes]]] = collections.defaultdict(list)
    parsed: list[tuple[int, str, bytes]] = []
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
            parsed.append((id_hash(str(event_id)), ts, line))
    earlier = window.seen(item[0] for item in parsed) if window is not None else set()
    kept: set[int] = set()
    for hashed, ts, line in parsed:
        if hashed in kept or hashed in earlier:
            duplicates += 1
            continue
        kept.add(hashed)
        days[(ts[0:4], ts[5:7], ts[8:10])].append((ts, line))
        events += 1
    for lines in days.values():
        lines.sort(key=lambda item: item[0])
    first = records[0].seq if records else 0
    last = records[-1].seq if records else 0
    return FlushBatch(first, last, dict(days), events, duplicates, unparsable, list(kept))
