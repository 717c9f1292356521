"""Microsecond timestamps: the integer form reads compare, sort and page by."""

from __future__ import annotations

from datetime import datetime, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def micros(moment: datetime) -> int:
    """An aware (or UTC-naive) datetime as µs since the epoch."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def canonical_micros(ts: str) -> int:
    """``2026-11-29T05:00:01.123456Z`` as µs since the epoch."""
    moment = datetime(int(ts[0:4]), int(ts[5:7]), int(ts[8:10]), int(ts[11:13]), int(ts[14:16]),
                      int(ts[17:19]), int(ts[20:26]), tzinfo=timezone.utc)
    return micros(moment)


def iso_from_micros(value: int) -> str:
    """µs since the epoch as the canonical ISO-8601 UTC form."""
    seconds, rest = divmod(value, 1_000_000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc).replace(microsecond=rest, tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"  # a four-digit year, as ``%Y`` does not write it
