"""Cheap validation of one emitted event: named string fields, ``ts`` rules, id and ts filled in."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from producer.encode import format_datetime

NAMED_FIELDS: tuple[str, ...] = (
    "audit_event_id",
    "ts",
    "type",
    "tenant_id",
    "subject_hash",
    "subject_ref",
    "actor_ref",
    "action",
    "outcome",
    "reason_code",
    "correlation_id",
    "component",
    "resource_ref",
    "pdp",
    "source",
)
STRING_FIELDS: frozenset[str] = frozenset(NAMED_FIELDS) - {"ts"}


class InvalidEvent(ValueError):
    """An emitted event breaks the event contract; the producer drops it and counts it as invalid."""


def new_event_id() -> str:
    """A random (version 4) UUID as text; the same as ``str(uuid.uuid4())`` at a third of the cost."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class Clock:
    """Canonical current timestamps, reusing the formatted date and time of the current second."""

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def now(self) -> str:
        """The current time as ISO-8601 UTC with microseconds and ``Z``."""
        second, micros = divmod(time.time_ns() // 1000, 1_000_000)
        cached = self._second
        if cached[0] != second:
            prefix = datetime.fromtimestamp(second, timezone.utc).replace(tzinfo=None).isoformat()
            cached = self._second = (second, prefix)
        return f"{cached[1]}.{micros:06d}Z"


def normalize_ts(value: Any) -> Any:
    """A datetime or epoch seconds becomes canonical text; an ISO-8601 string is checked and kept."""
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("z", "Z"):
            text = text[:-1] + "+00:00"
        try:
            datetime.fromisoformat(text)
        except ValueError:
            raise InvalidEvent(f"field 'ts' is not an ISO-8601 timestamp: {value[:64]!r}") from None
        return value
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InvalidEvent("field 'ts' must be a finite number of epoch seconds")
        try:
            return format_datetime(datetime.fromtimestamp(value, tz=timezone.utc))
        except (OverflowError, OSError, ValueError):
            raise InvalidEvent(f"field 'ts' is out of range: {value!r}") from None
    raise InvalidEvent(f"field 'ts' must be an ISO-8601 string, a datetime or epoch seconds, not {type(value).__name__}")


def prepare_event(event: Any, clock: Clock | None = None) -> dict[str, Any]:
    """A shallow copy of ``event`` ready to encode; raise InvalidEvent when it breaks the contract.

    The caller's mapping is never modified. ``audit_event_id`` (uuid4) and ``ts`` (now) are filled when
    absent or None, so the encoded event is identical on every retry.
    """
    if not isinstance(event, Mapping):
        raise InvalidEvent(f"event must be a dict, not {type(event).__name__}")
    prepared = dict(event)
    for name in STRING_FIELDS.intersection(prepared):
        value = prepared[name]
        if value is not None and not isinstance(value, str):
            raise InvalidEvent(f"field {name!r} must be a string, not {type(value).__name__}")
    if prepared.get("audit_event_id") is None:
        prepared["audit_event_id"] = new_event_id()
    ts = prepared.get("ts")
    if ts is None:
        prepared["ts"] = clock.now() if clock is not None else format_datetime(datetime.now(timezone.utc))
    else:
        prepared["ts"] = normalize_ts(ts)
    return prepared
