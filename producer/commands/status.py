"""``auditlake status``: readiness, queue, counters and storage health of a running service."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from producer.commands.client import ServiceClient, ServiceError
from producer.commands.common import add_service_options, positive_float


def register(subparsers: Any) -> None:
    """Add the ``status`` subcommand."""
    parser = subparsers.add_parser(
        "status", help="show whether the service is ready, its queue, counters and storage",
        description="Show the service's readiness and status. Exits 0 when ready, 1 when not ready or unreachable.")
    add_service_options(parser)
    parser.add_argument("--json", action="store_true", help="print {ready, reason, status} as JSON")
    parser.add_argument("--timeout", type=positive_float, default=5.0, help="seconds per request (default 5)")
    parser.set_defaults(handler=run)


def human_bytes(size: float | None) -> str:
    """``1536`` → ``1.5 KiB``."""
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def cpu_text(cpus: dict[str, Any] | None) -> str:
    """``{"ingest": [0], "writer": [1]}`` → ``ingest on 0, writer on 1``; a process left unpinned is ``on any``."""
    if not cpus:
        return "?"
    return ", ".join(f"{name} on {','.join(map(str, cpus.get(name) or [])) or 'any'}" for name in ("ingest", "writer"))


def render(url: str, ready: bool, reason: str | None, status: dict[str, Any]) -> str:
    """The human-readable report."""
    storage = status.get("storage") or {}
    quarantined = status.get("quarantined_segments") or []
    lines = [
        f"auditlake at {url}: {'ready' if ready else 'NOT READY: ' + str(reason)}",
        f"writer:     {'connected' if status.get('writer_connected') else 'NOT connected'}",
        f"queue:      {status.get('queue_size', 0)} / {status.get('queue_max_size', '?')} events, "
        f"{human_bytes(status.get('queue_bytes'))} / {human_bytes(status.get('queue_max_bytes'))}, "
        f"{status.get('frames_in_flight', 0)} frames in flight",
        f"events:     accepted {status.get('accepted_events', 0)}, rejected {status.get('rejected_events', 0)}, "
        f"unconfirmed {status.get('unconfirmed_events', 0)}, dropped by verbosity {status.get('dropped_by_verbosity', 0)}, "
        f"invalid requests {status.get('invalid_requests', 0)}",
        f"flushes:    {status.get('flushed_events', 0)} events flushed, {status.get('failed_flushes', 0)} failed flushes, "
        f"last at {status.get('last_flush_at') or 'never'}",
        f"spool:      {status.get('spool_backlog_events') or 0} events waiting, {human_bytes(status.get('spool_bytes') or 0)}",
        f"storage:    {storage.get('backend', status.get('backend', '?'))} {storage.get('status', '?')}: "
        f"{storage.get('detail', '')}",
        f"last error: {status.get('last_error') or 'none'}",
        f"quarantined segments: {', '.join(quarantined) if quarantined else 'none'}",
        f"cpus:       {cpu_text(status.get('cpus'))}",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``auditlake status``."""
    try:
        client = ServiceClient(args.url, args.token, args.timeout)
        ready_status, ready_body = client.get("/readyz")
        status = client.get_ok("/v1/audit/status")
    except ValueError as exc:
        print(f"auditlake status: {exc}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"auditlake status: {exc}", file=sys.stderr)
        return 1
    ready = ready_status == 200
    reason = None if ready else (ready_body or {}).get("detail", f"HTTP {ready_status}")
    if args.json:
        print(json.dumps({"ready": ready, "reason": reason, "status": status}, ensure_ascii=False))
    else:
        print(render(client.base_url, ready, reason, status))
    return 0 if ready else 1
