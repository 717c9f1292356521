"""Read spooled events that the writer has not published yet (read-only, any moment, any damage)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson

from shared import spool_format

log = logging.getLogger("auditlake.ingest.read")


def spooled_events(spool_dir: Path) -> list[tuple[int, dict[str, Any]]]:
    """(seq, event) for every spooled event past the writer's checkpoint.

    Read the checkpoint before the segments: a record checkpointed meanwhile is then still returned
    here and recognised as published by the caller, which lists the store afterwards. Segments whose
    successor starts at or below the checkpoint hold only flushed records and are not read; flushed
    records of the others are stepped over by their headers, without checksumming them.
    """
    try:
        checkpoint = orjson.loads((spool_dir / spool_format.CHECKPOINT_NAME).read_bytes())
        flushed = int(checkpoint.get("flushed_seq", 0))
    except FileNotFoundError:
        flushed = 0
    segments = spool_format.list_segments(spool_dir)
    found = []
    for position, (_first, path) in enumerate(segments):
        if position + 1 < len(segments) and segments[position + 1][0] <= flushed + 1:
            continue
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        offset = spool_format.skip_records(data, flushed)
        try:
            for _end, record in spool_format.iter_records(data[offset:], path):
                if record.seq <= flushed:
                    continue
                for line in record.payload.splitlines():
                    if line:
                        found.append((record.seq, orjson.loads(line)))
        except spool_format.SpoolCorrupt as exc:
            log.warning("skipping the damaged rest of a spool segment", extra={"error": str(exc)})
    return found
