"""The audit event model: named fields, timestamp rules and normalization of one posted event."""

from __future__ import annotations

import calendar
import math
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import EventError

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
RECEIVED_AT = "received_at"
# Types only the service itself writes (reads of audit data, its own start and stop); never accepted over HTTP.
SERVICE_EVENT_TYPES: frozenset[str] = frozenset({"audit_read", "service_start", "service_stop"})
TS_LENGTH = len("2026-01-01T00:00:00.000000Z")


class AuditEvent(BaseModel):
    """One audit event as producers post it: named string fields plus any other preserved fields."""

    model_config = ConfigDict(extra="allow", strict=True)

    audit_event_id: str | None = None
    ts: str | int | float | None = None
    type: str | None = None
    tenant_id: str | None = None
    subject_hash: str | None = None
    subject_ref: str | None = None
    actor_ref: str | None = None
    action: str | None = None
    outcome: str | None = None
    reason_code: str | None = None
    correlation_id: str | None = None
    component: str | None = None
    resource_ref: str | None = None
    pdp: str | None = None
    source: str | None = None


def format_ts(moment: datetime) -> str:
    """Render an aware datetime as the canonical ISO-8601 UTC form with microseconds and ``Z``.

    ``isoformat``, not ``strftime``: the C library's ``%Y`` writes year 1 as ``1``, and a stamp such as
    ``1-01-01T00:00:00.000000Z`` (from ``0001-01-01T00:00:00Z`` or epoch -62135596800) was stored in a
    shape no reader or flush takes."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def shifted(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, held at datetime's first or last instant (UTC) instead of overflowing: a query,
    a listing or a file's end at year 1 or 9999 once failed with OverflowError (a 500)."""
    try:
        return moment + delta
    except OverflowError:
        return (datetime.min if delta < timedelta(0) else datetime.max).replace(tzinfo=timezone.utc)


def days_back(newest: date, oldest: date) -> list[date]:
    """The days from ``newest`` back to ``oldest`` (both included), newest first; none when oldest is later."""
    days = []
    day = newest
    while day >= oldest:
        days.append(day)
        if day == oldest:  # date.min has no day before it
            break
        day -= timedelta(days=1)
    return days


def day_path(day: date, separator: str) -> str:
    """``YYYY<sep>MM<sep>DD`` with a four-digit year (``strftime``'s ``%Y`` writes year 1 as ``1``)."""
    return f"{day.year:04d}{separator}{day.month:02d}{separator}{day.day:02d}"


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp; naive means UTC. Raise ValueError when unparsable."""
    value = text.strip()
    if not value:
        raise ValueError("empty timestamp")
    if value[-1] in "zZ":
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def canonical_ts(value: Any) -> str:
    """Turn a posted ``ts`` (ISO-8601 string or epoch seconds) into the canonical string."""
    if isinstance(value, bool):
        raise EventError("field 'ts' must be an ISO-8601 string or epoch seconds")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise EventError("field 'ts' must be a finite number of epoch seconds")
        try:
            return format_ts(datetime.fromtimestamp(value, tz=timezone.utc))
        except (OverflowError, OSError, ValueError):
            raise EventError(f"field 'ts' is out of range: {value!r}") from None
    if isinstance(value, str):
        if len(value) == TS_LENGTH and value[-1] == "Z" and value[10] == "T":
            return value if _looks_canonical(value) else _reformat(value)
        return _reformat(value)
    raise EventError("field 'ts' must be an ISO-8601 string or epoch seconds")


# ASCII digits only: ``\d`` alone takes any Unicode digit, and a stamp such as "٢٠٢٦-01-01T…Z" (Arabic-Indic
# digits) passed as canonical, was stored as posted and failed every flush after it (Arrow cannot read it
# as a timestamp), so one event stopped the writer from storing anything. Year 0000 is no date either
# (Python's datetime starts at year 1): its file's name broke every later /v1/audit/verify.
_CANONICAL = re.compile(r"(?!0000)\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}Z", re.ASCII)


_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# Canonical stamps back to back, on days every year has (February 29th goes through ``_looks_canonical``).
_CANONICAL_RUN = re.compile(
    r"(?:(?!0000)\d{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
    r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}Z)+", re.ASCII)


def _looks_canonical(value: str) -> bool:
    """True for ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` naming a real day."""
    if not _CANONICAL.fullmatch(value):
        return False
    month, day = int(value[5:7]), int(value[8:10])
    if day <= _DAYS_IN_MONTH[month] and not (month == 2 and day == 29):
        return True
    return calendar.isleap(int(value[0:4])) if month == 2 and day == 29 else False


def is_canonical_stamp(value: Any) -> bool:
    """True when ``value`` is a ``ts`` string already in the stored form (``canonical_ts`` would keep it);
    False may still be canonical (February 29th: ``canonical_ts`` decides)."""
    return type(value) is str and len(value) == TS_LENGTH and _CANONICAL_RUN.fullmatch(value) is not None


def canonical_stamps(values: list[Any], default: str) -> list[str]:
    """``canonical_ts`` of each value (``default`` for None): one regex pass when all are canonical already."""
    try:
        joined = "".join(values)
    except TypeError:  # a None or a number among them
        joined = ""
    if len(joined) == TS_LENGTH * len(values) and _CANONICAL_RUN.fullmatch(joined):
        return values
    return [default if value is None else canonical_ts(value) for value in values]


def _reformat(value: str) -> str:
    if not value.isprintable():  # fromisoformat would overlook some control characters
        raise EventError(f"field 'ts' contains a control character: {value[:64]!r}")
    try:
        return format_ts(parse_iso(value))
    except (ValueError, OverflowError):
        raise EventError(f"field 'ts' is not an ISO-8601 timestamp: {value[:64]!r}") from None


def _type_error(event: dict[str, Any], index: int | None) -> EventError:
    where = "event" if index is None else f"event {index}"
    try:
        AuditEvent.model_validate(event)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        return EventError(f"{where}: field '{field}' {_describe(first)}")
    return EventError(f"{where}: invalid event")


def _describe(error: dict[str, Any]) -> str:
    if error["loc"] and error["loc"][0] == "ts":
        return "must be an ISO-8601 string or epoch seconds"
    return "must be a string"


def normalize_event(raw: Any, received_at: str, index: int | None = None) -> dict[str, Any]:
    """Validate one posted event and return the stored form.

    Null-valued keys are dropped, ``audit_event_id`` and ``ts`` are filled when absent, ``ts`` becomes
    canonical, ``received_at`` records server time; every other field is kept unchanged.
    """
    if not isinstance(raw, dict):
        where = "event" if index is None else f"event {index}"
        raise EventError(f"{where} must be a JSON object")
    event = {key: value for key, value in raw.items() if value is not None}
    for name in NAMED_FIELDS:
        value = event.get(name)
        if value is not None and type(value) is not str and name != "ts":
            raise _type_error(event, index)
    if "audit_event_id" not in event:
        event["audit_event_id"] = str(uuid.uuid4())
    ts = event.get("ts")
    if ts is None:
        event["ts"] = received_at
    else:
        try:
            event["ts"] = canonical_ts(ts)
        except EventError as exc:
            where = "event" if index is None else f"event {index}"
            raise EventError(f"{where}: {exc}") from None
    event[RECEIVED_AT] = received_at
    return event
