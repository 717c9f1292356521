"""HTTP handlers for health, status, verbosity, storage and retention: all from cached state."""

from __future__ import annotations

import shutil
from typing import Any

import orjson
from aiohttp import web

from ingest import keys
from ingest.body import Rejected, read_body
from ingest.errors import error, json_response, unavailable
from ingest.redact import visible_reason, visible_status
from ingest.read_wire import RetentionError, StorageUnavailable
from ingest.verbosity import describe_setting
from shared.settings import Settings

NOT_CONNECTED = "audit writer not connected"
STATUS_PENDING = "audit writer connected, its status not received yet"
QUEUE_SATURATED = "audit queue saturated"
QUEUE_SATURATED_RATIO = 0.95


def disconnected_storage(settings: Settings) -> dict[str, Any]:
    """The storage block while no writer reports: down, with what ingest can see itself (one statvfs)."""
    block: dict[str, Any] = {"backend": settings.backend, "status": "down", "detail": NOT_CONNECTED}
    if settings.backend == "s3":
        return {**block, "bucket": settings.s3_bucket, "prefix": settings.s3_prefix}
    block.update(local_path=str(settings.local_path), warning_percent=settings.disk_warning_percent,
                 critical_percent=settings.disk_critical_percent)
    probe = settings.local_path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return {**block, "total_bytes": None, "used_bytes": None, "free_bytes": None, "used_percent": None}
    used_percent = round(usage.used * 100.0 / usage.total, 2) if usage.total else 100.0
    return {**block, "total_bytes": usage.total, "used_bytes": usage.used, "free_bytes": usage.free,
            "used_percent": used_percent}


def status_document(app: web.Application) -> dict[str, Any]:
    """The body of ``GET /v1/audit/status``: ingest counters merged with the writer's last push."""
    settings = app[keys.SETTINGS]
    stats = app[keys.STATS]
    link = app[keys.LINK]
    reads = app[keys.STORAGE]
    writer = link.writer_status if link.ready else {}
    storage = writer.get("storage") or disconnected_storage(settings)
    last_error = writer.get("last_error") if link.ready else NOT_CONNECTED
    return {
        "running": True,
        "backend": settings.backend,
        "queue_size": link.queued_events,
        "queue_max_size": settings.queue_max_size,
        "queue_bytes": link.queued_bytes,
        "queue_max_bytes": settings.queue_max_bytes,
        "frames_in_flight": link.frames_in_flight,
        "flush_batch_size": settings.flush_batch_size,
        "flush_interval_seconds": settings.flush_interval_seconds,
        "accepted_events": stats.accepted_events,
        "rejected_events": stats.rejected_events,
        "unconfirmed_events": stats.unconfirmed_events,
        "dropped_by_verbosity": stats.dropped_by_verbosity,
        "invalid_requests": stats.invalid_requests,
        "flushed_events": writer.get("flushed_events", 0),
        "failed_flushes": writer.get("failed_flushes", 0),
        "last_received_at": stats.last_received_at,
        "last_flush_at": writer.get("last_flush_at"),
        "last_error": last_error,
        "writer_connected": link.ready,
        "spool_bytes": writer.get("spool_bytes"),
        "spool_backlog_events": writer.get("spool_backlog_events"),
        "quarantined_segments": writer.get("quarantined_segments", []),
        "read_process": {"running": reads.running, "pid": reads.pid, "restarts": reads.restarts},
        "cpus": {"ingest": app[keys.PINNING].describe(), "writer": writer.get("cpus")},
        "storage": storage,
    }


def not_ready_reason(app: web.Application) -> str | None:
    """Why ingest should not take traffic, or None when it should."""
    link = app[keys.LINK]
    if not link.ready:
        return NOT_CONNECTED
    writer = link.writer_status
    if not writer:  # a writer just (re)connected: its HELLO came, its STATUS (right behind it) not yet
        return STATUS_PENDING
    if not writer.get("ready", True):
        return writer.get("not_ready_reason") or "audit writer not ready"
    storage = writer.get("storage") or {}
    if storage.get("status") == "down":
        return f"storage down: {storage.get('detail')}"
    if (link.queued_events >= QUEUE_SATURATED_RATIO * link.max_events
            or link.queued_bytes >= QUEUE_SATURATED_RATIO * link.max_bytes):
        return QUEUE_SATURATED
    return None


async def healthz(request: web.Request) -> web.Response:
    """Liveness of the ingest process only."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 with status fields when the writer acknowledges and storage is usable; 503 otherwise."""
    reason = not_ready_reason(request.app)
    if reason is not None:
        return error(503, visible_reason(request, reason))
    return json_response({"status": "ready", **visible_status(request, status_document(request.app))})


async def status(request: web.Request) -> web.Response:
    """Counters and storage health; always 200."""
    return json_response(visible_status(request, status_document(request.app)))


async def verbosity(request: web.Request) -> web.Response:
    """The active verbosity preset and every available one."""
    return json_response(describe_setting(request.app[keys.PRESET]))


async def storage(request: web.Request) -> web.Response:
    """How much audit data the backend holds."""
    try:
        return json_response(await request.app[keys.STORAGE].describe())
    except StorageUnavailable as exc:
        return unavailable(str(exc))


async def get_retention(request: web.Request) -> web.Response:
    """The retention setting of the backend."""
    try:
        return json_response(await request.app[keys.STORAGE].retention())
    except RetentionError as exc:
        return error(exc.status, str(exc))


async def put_retention(request: web.Request) -> web.Response:
    """Change retention (S3 only); 400 for a bad body or on the local backend."""
    try:
        body = orjson.loads(await read_body(request, request.app[keys.SETTINGS]))
    except Rejected as exc:
        return exc.response()
    except orjson.JSONDecodeError:
        return error(400, "body must be JSON like {\"days\": 30}")
    days = body.get("days") if isinstance(body, dict) else None
    if type(days) is not int:
        return error(400, "'days' must be an integer")
    if days < 0:
        return error(400, "'days' must not be negative")
    try:
        return json_response(await request.app[keys.STORAGE].set_retention(days))
    except RetentionError as exc:
        return error(exc.status, str(exc))
