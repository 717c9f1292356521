"""``auditlake query``: read events with any contract filter; a table by default, JSON lines with ``--json``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO

from producer.commands.client import ServiceClient, ServiceError
from producer.commands.common import add_service_options, positive_float, positive_int

EXACT_FILTERS = ("type", "outcome", "component", "correlation_id", "tenant_id", "source", "action", "resource_ref",
                 "subject_hash", "reason_code", "agent_name", "tool_name", "capability", "user_email")
WINDOWS = ("5m", "15m", "30m", "1h", "6h", "12h", "24h", "7d")
RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DEFAULT_COLUMNS = ("ts", "type", "tenant_id", "actor", "action", "outcome", "audit_event_id")
WIDTHS = {"ts": 27, "type": 20, "tenant_id": 16, "actor": 24, "action": 20, "outcome": 10, "audit_event_id": 36}
DEFAULT_WIDTH = 20
EVENTS_PATH = "/v1/audit/events"


def register(subparsers: Any) -> None:
    """Add the ``query`` subcommand."""
    parser = subparsers.add_parser(
        "query", help="query stored audit events",
        description="Query audit events, newest first. --since/--until take ISO-8601 timestamps or a duration "
                    "back from now (90s, 15m, 1h, 2d, 1w).")
    add_service_options(parser)
    add_filter_options(parser)
    parser.add_argument("--since", "--from", dest="since", type=time_bound, help="start (ISO-8601 or e.g. 1h ago)")
    parser.add_argument("--until", "--to", dest="until", type=time_bound, help="end (ISO-8601 or e.g. 5m ago)")
    parser.add_argument("--window", choices=WINDOWS, help="range back from --until when --since is absent")
    parser.add_argument("--limit", type=positive_int, default=100, help="records to show (default 100)")
    parser.set_defaults(handler=run)


def add_filter_options(parser: argparse.ArgumentParser) -> None:
    """One option per contract filter (``--tenant-id`` for ``tenant_id``), plus output options."""
    filters = parser.add_argument_group("filters (exact match; user_email: substring)")
    for name in EXACT_FILTERS:
        filters.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="VALUE")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.add_argument("--columns", type=column_list, default=DEFAULT_COLUMNS,
                        help=f"table columns, comma separated (default {','.join(DEFAULT_COLUMNS)}; "
                             "'actor' is actor_ref or user_email)")
    parser.add_argument("--timeout", type=positive_float, default=10.0, help="seconds per request (default 10)")


def column_list(text: str) -> tuple[str, ...]:
    """An argparse type: a non-empty comma-separated list of field names."""
    columns = tuple(part.strip() for part in text.split(",") if part.strip())
    if not columns:
        raise argparse.ArgumentTypeError("no columns given")
    return columns


def time_bound(text: str, now: datetime | None = None) -> str:
    """An argparse type: a duration back from now (``1h``) becomes an ISO-8601 UTC timestamp; ISO passes as is."""
    match = RELATIVE.match(text.strip())
    if match is None:
        return text.strip()
    seconds = float(match.group(1)) * UNIT_SECONDS[match.group(2)]
    moment = (now or datetime.now(timezone.utc)) - timedelta(seconds=seconds)
    return iso(moment)


def iso(moment: datetime) -> str:
    """The service's canonical timestamp form: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def filter_params(args: argparse.Namespace) -> dict[str, str]:
    """The query parameters of the filters given on the command line."""
    return {name: getattr(args, name) for name in EXACT_FILTERS if getattr(args, name, None) not in (None, "")}


class Output:
    """Writes events as an aligned table (header once) or as JSON lines."""

    def __init__(self, stream: TextIO, as_json: bool, columns: Iterable[str] = DEFAULT_COLUMNS) -> None:
        self.stream = stream
        self.as_json = as_json
        self.columns = tuple(columns)
        self._header_done = False

    def write(self, events: Iterable[dict[str, Any]]) -> None:
        """Print events in the given order."""
        for event in events:
            if self.as_json:
                self.stream.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
                continue
            if not self._header_done:
                self.stream.write(self._line([name.upper() for name in self.columns]) + "\n")
                self._header_done = True
            self.stream.write(self._line([cell(event, name) for name in self.columns]) + "\n")
        self.stream.flush()

    def _line(self, cells: list[str]) -> str:
        parts = []
        for index, (name, text) in enumerate(zip(self.columns, cells)):
            width = WIDTHS.get(name, DEFAULT_WIDTH)
            if len(text) > width:
                text = text[: width - 1] + "…"
            parts.append(text if index == len(cells) - 1 else text.ljust(width))
        return "  ".join(parts).rstrip()


def cell(event: dict[str, Any], name: str) -> str:
    """The text of one table cell; ``actor`` is ``actor_ref``, else ``user_email``."""
    value = event.get(name) if name != "actor" else (event.get("actor_ref") or event.get("user_email"))
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("\n", " ")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``auditlake query``."""
    params = filter_params(args)
    for name in ("since", "until", "window"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    params["limit"] = str(args.limit)
    try:
        client = ServiceClient(args.url, args.token, args.timeout)
        body = client.get_ok(EVENTS_PATH, params)
    except ValueError as exc:
        print(f"auditlake query: {exc}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"auditlake query: {exc}", file=sys.stderr)
        return 1
    records = body.get("records", [])
    Output(sys.stdout, args.json, args.columns).write(records)
    total = body.get("total", len(records))
    note = "; truncated: raise --limit or narrow the range" if body.get("truncated") else ""
    print(f"{len(records)} of {total} matching events{note}", file=sys.stderr)
    return 0
