"""Parse and validate the parameters of ``GET /v1/audit/events`` into a Query."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from shared.events import format_ts, parse_iso

WINDOWS = {
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "12h": timedelta(hours=12),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
TIME_RESOLUTIONS = {"auto", "minute", "hour", "day"}
EXACT_FILTERS = (
    "type", "outcome", "component", "correlation_id", "tenant_id", "source", "action",
    "resource_ref", "subject_hash", "reason_code", "agent_name", "tool_name",
)


class QueryError(ValueError):
    """A query parameter is invalid (answered with 400)."""


@dataclasses.dataclass(frozen=True)
class Query:
    """A validated read: time range (inclusive), limit and filters."""

    since: datetime
    until: datetime
    limit: int
    filters: dict[str, str]
    capability: str | None = None
    user_email: str | None = None

    @property
    def since_ts(self) -> str:
        """Lower bound in canonical form."""
        return format_ts(self.since)

    @property
    def until_ts(self) -> str:
        """Upper bound in canonical form."""
        return format_ts(self.until)


def _time(params: Mapping[str, str], *names: str) -> datetime | None:
    for name in names:
        raw = params.get(name)
        if raw is not None and raw != "":
            try:
                return parse_iso(raw)
            except (ValueError, OverflowError):
                raise QueryError(f"invalid timestamp for '{name}': {raw[:64]!r}") from None
    return None


def parse_query(params: Mapping[str, str], default_limit: int, max_limit: int, max_days: int,
                now: datetime | None = None) -> Query:
    """Validate the query string of a read; raise QueryError with a message for the client."""
    until = _time(params, "until", "to") or (now or datetime.now(timezone.utc))
    since = _time(params, "since", "from")
    window = params.get("window")
    if window is not None and window != "" and window not in WINDOWS:
        raise QueryError(f"unknown window {window!r}; use one of {', '.join(WINDOWS)}")
    resolution = params.get("time_resolution")
    if resolution is not None and resolution not in TIME_RESOLUTIONS:
        raise QueryError(f"unknown time_resolution {resolution!r}; use one of {', '.join(sorted(TIME_RESOLUTIONS))}")
    if since is None:
        since = until - (WINDOWS[window] if window else timedelta(days=1))
    if since > until:
        raise QueryError("'since' is after 'until'")
    if until - since > timedelta(days=max_days):
        raise QueryError(f"time range exceeds the maximum of {max_days} days")
    raw_limit = params.get("limit")
    if raw_limit is None or raw_limit == "":
        limit = default_limit
    else:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise QueryError(f"'limit' must be an integer, got {raw_limit[:32]!r}") from None
        if limit < 1:
            raise QueryError("'limit' must be at least 1")
    limit = min(limit, max_limit)
    filters = {name: params[name] for name in EXACT_FILTERS if params.get(name) not in (None, "")}
    return Query(
        since=since,
        until=until,
        limit=limit,
        filters=filters,
        capability=params.get("capability") or None,
        user_email=(params.get("user_email") or None),
    )
