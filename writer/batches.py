"""Turn spooled records into per-day groups of event lines, deduplicated by ``audit_event_id``."""

from __future__ import annotations

import dataclasses
import logging
import operator

import orjson

from shared.spool_format import SpoolRecord
from writer.dedupe import DedupeWindow, id_hashes

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
    lines: list[bytes] = []
    stamps: list[str] = []
    event_ids: list[str] = []
    unparsable: list[bytes] = []
    loads = orjson.loads
    for record in records:
        for line in record.payload.split(b"\n"):
            if not line:
                continue
            try:
                event = loads(line)
                ts = event["ts"]
                event_id = event["audit_event_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                unparsable.append(line)
                continue
            lines.append(line)
            stamps.append(ts)
            event_ids.append(str(event_id))
    hashes = id_hashes(event_ids)
    earlier = window.seen(hashes) if window is not None else set()
    days: dict[tuple[str, str, str], list[tuple[str, bytes]]] = {}
    day_of_date: dict[str, list[tuple[str, bytes]]] = {}  # ts[0:10] -> its day's list
    kept: set[int] = set()
    duplicates = 0
    for hashed, ts, line in zip(hashes, stamps, lines):
        if hashed in kept or hashed in earlier:
            duplicates += 1
            continue
        kept.add(hashed)
        day = day_of_date.get(ts[0:10])
        if day is None:
            day = days.setdefault((ts[0:4], ts[5:7], ts[8:10]), [])
            day_of_date[ts[0:10]] = day
        day.append((ts, line))
    for day in days.values():
        day.sort(key=operator.itemgetter(0))
    first = records[0].seq if records else 0
    last = records[-1].seq if records else 0
    return FlushBatch(first, last, days, len(lines) - duplicates, duplicates, unparsable, list(kept))
