"""``auditlake tail``: follow new events by polling with a moving ``since``, deduplicated by audit_event_id."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from producer.commands.client import ServiceClient, ServiceError
from producer.commands.common import add_service_options, positive_float
from producer.commands.query import EVENTS_PATH, Output, add_filter_options, filter_params, iso, time_bound

PAGE_LIMIT = 10000
MAX_PAGES = 20
SINCE_AFTER_UNTIL = "after 'until'"


def register(subparsers: Any) -> None:
    """Add the ``tail`` subcommand."""
    parser = subparsers.add_parser(
        "tail", help="follow new audit events",
        description="Print the events of the last --lookback seconds, then new ones as they arrive, oldest first, "
                    "until interrupted. Each poll asks for events since the newest one seen minus --lookback "
                    "(producers may deliver late), and skips ids already printed.")
    add_service_options(parser)
    add_filter_options(parser)
    parser.add_argument("--since", "--from", dest="since", type=time_bound,
                        help="start from this point (ISO-8601 or e.g. 10m); default: --lookback seconds ago")
    parser.add_argument("--interval", type=positive_float, default=2.0, help="seconds between polls (default 2)")
    parser.add_argument("--lookback", type=positive_float, default=30.0,
                        help="seconds before the newest event seen to ask for again (default 30)")
    parser.set_defaults(handler=run)


class Follower:
    """Polls the events endpoint; remembers printed ids while they can still come back in a poll."""

    def __init__(self, client: ServiceClient, filters: dict[str, str], start: str, lookback: float,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.client = client
        self.filters = filters
        self.start = start
        self.lookback = timedelta(seconds=lookback)
        self.now = now
        self.newest: str | None = None
        self.seen: dict[str, str] = {}
        self.warnings: list[str] = []

    def since(self) -> str:
        """Where the next poll starts: the newest ts seen (else now) minus the lookback, never before the start."""
        anchor = _parse(self.newest) if self.newest else self.now()
        return max(self.start, iso(anchor - self.lookback))

    def poll(self) -> list[dict[str, Any]]:
        """Events not printed before, oldest first."""
        since = self.since()
        fresh = [event for event in self._fetch(since) if event.get("audit_event_id") not in self.seen]
        fresh.sort(key=lambda event: (event.get("ts", ""), event.get("audit_event_id", "")))
        for event in fresh:
            self.seen[event.get("audit_event_id", "")] = event.get("ts", "")
            if self.newest is None or event.get("ts", "") > self.newest:
                self.newest = event.get("ts", "")
        floor = self.since()
        self.seen = {key: ts for key, ts in self.seen.items() if ts >= floor}
        return fresh

    def _fetch(self, since: str) -> list[dict[str, Any]]:
        """Every event from ``since`` on, paging back by ``until`` while the answer is truncated."""
        params = {**self.filters, "since": since, "limit": str(PAGE_LIMIT)}
        events: dict[str, dict[str, Any]] = {}
        for _ in range(MAX_PAGES):
            try:
                body = self.client.get_ok(EVENTS_PATH, params)
            except ServiceError as exc:
                if exc.status == 400 and SINCE_AFTER_UNTIL in exc.detail:
                    return []  # our clock is ahead of the service's: nothing is newer yet
                raise
            records = body.get("records", [])
            for event in records:
                events.setdefault(event.get("audit_event_id", ""), event)
            if not body.get("truncated") or not records:
                break
            oldest = records[-1].get("ts", "")
            if params.get("until") == oldest:
                self.warnings.append(f"more than {PAGE_LIMIT} events share ts {oldest}; some were skipped")
                break
            params["until"] = oldest
        else:
            self.warnings.append("too many events in one poll; some were skipped (shorten --interval)")
        return list(events.values())


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def run(args: argparse.Namespace, sleep: Callable[[float], None] = time.sleep) -> int:
    """Entry point of ``auditlake tail``: poll until interrupted (exit 130) or the service fails (exit 1)."""
    try:
        client = ServiceClient(args.url, args.token, args.timeout)
    except ValueError as exc:
        print(f"auditlake tail: {exc}", file=sys.stderr)
        return 2
    start = args.since or iso(datetime.now(timezone.utc) - timedelta(seconds=args.lookback))
    follower = Follower(client, filter_params(args), start, args.lookback)
    output = Output(sys.stdout, args.json, args.columns)
    while True:
        try:
            output.write(follower.poll())
        except ServiceError as exc:
            print(f"auditlake tail: {exc}", file=sys.stderr)
            if exc.status is not None and exc.status < 500:
                return 1
        for warning in follower.warnings:
            print(f"auditlake tail: {warning}", file=sys.stderr)
        follower.warnings.clear()
        sleep(args.interval)
