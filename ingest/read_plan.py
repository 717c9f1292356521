"""What a read looks for (range, filters, page position) and how a parsed event is matched against it."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

from ingest.timeutil import canonical_micros
from shared.events import TS_LENGTH, canonical_ts

LOWER = ".lower"


class ReadCancelled(Exception):
    """The client went away; the read stopped."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to find: inclusive µs range, filters, page size and position."""

    since_us: int
    until_us: int
    limit: int
    filters: dict[str, str]
    capability: str | None = None
    user_email: str | None = None
    cursor: tuple[int, str] | None = None
    count: bool = True
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    unit_delay_seconds: float = 0.0

    @property
    def filter_columns(self) -> list[str]:
        """Columns the filters need (``user_email.lower``: the lowercased column)."""
        names = list(self.filters)
        if self.capability is not None:
            names += ["capability", "action"]
        if self.user_email is not None:
            names.append("user_email" + LOWER)
        return list(dict.fromkeys(names))

    def check(self) -> None:
        """Raise ReadCancelled when the read should stop (after the test-only per-unit delay)."""
        if self.unit_delay_seconds:
            self.cancel.wait(self.unit_delay_seconds)
        if self.cancel.is_set():
            raise ReadCancelled()


@dataclasses.dataclass
class Parsed:
    """Already parsed events (spool records, NDJSON files without sidecar), with their ts in µs when known."""

    events: list[dict[str, Any]]
    micros: list[int | None] | None = None

    def timed(self) -> Iterator[tuple[dict[str, Any], int | None]]:
        """(event, ts in µs) pairs."""
        if self.micros is not None:
            return zip(self.events, self.micros)
        return ((event, event_micros(event)) for event in self.events)


def event_micros(event: dict[str, Any]) -> int | None:
    """An event's ``ts`` in µs, converting legacy forms; None when unusable."""
    ts = event.get("ts")
    if isinstance(ts, str) and len(ts) == TS_LENGTH and ts[-1] == "Z":
        return canonical_micros(ts)
    try:
        return canonical_micros(canonical_ts(ts))
    except Exception:  # an unusable legacy ts matches no range
        return None


def matches_event(event: dict[str, Any], ts: int | None, plan: Plan) -> bool:
    """Whether a parsed event lies in the plan's range and passes its filters."""
    if ts is None or ts < plan.since_us or ts > plan.until_us:
        return False
    for name, value in plan.filters.items():
        if event.get(name) != value:
            return False
    if plan.capability is not None:
        actual = event["capability"] if "capability" in event else event.get("action")
        if actual != plan.capability:
            return False
    if plan.user_email is not None:
        email = event.get("user_email")
        if not isinstance(email, str) or plan.user_email.lower() not in email.lower():
            return False
    return True
