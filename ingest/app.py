"""The ingest app factory: routes, typed state and the writer link's lifetime."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ingest import admin_handlers, auth, handlers, keys, read_handlers, ops, verify
from ingest.errors import json_errors
from ingest.link import WriterLink
from ingest.read_audit import AuditTrail
from ingest.stats import IngestStats
from ingest.read_process import ReadProcess
from ingest.tokens import TokenTable
from ingest.turns import ParseTurns
from ingest.verbosity import resolve
from shared.cpu_pinning import Pinning
from shared.settings import Settings
from shared.task_stop import cancel_and_wait

log = logging.getLogger("auditlake.ingest")


def create_app(settings: Settings, link: WriterLink | None = None,
               storage: ReadProcess | None = None, pinning: Pinning | None = None) -> web.Application:
    """Build the ingest application; ``link`` and ``storage`` may be injected by tests. ``pinning`` is what
    ``__main__`` did to this process's CPUs: the read process gets back the CPUs ingest had before."""
    pinning = pinning or Pinning(None, None)
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[json_errors, auth.require_token])
    app[keys.SETTINGS] = settings
    app[keys.STATS] = IngestStats()
    app[keys.PRESET] = resolve(settings.verbosity)
    app[keys.LINK] = link or WriterLink(settings.resolved_socket_path, settings.queue_max_size,
                                        settings.queue_max_bytes, settings.max_frame_bytes,
                                        settings.ack_timeout_seconds)
    app[keys.PINNING] = pinning
    app[keys.STORAGE] = storage or ReadProcess(settings, pinning.allowed_before if pinning.cpus is not None else None)
    app[keys.TOKENS] = TokenTable(settings)
    app[keys.TRAIL] = AuditTrail(app[keys.LINK], settings)
    app[keys.TURNS] = ParseTurns()
    app.cleanup_ctx.append(_writer_link)
    app.on_startup.append(_start_storage)
    app.on_cleanup.append(_close_storage)
    app.cleanup_ctx.append(app[keys.TRAIL].lifecycle)  # after the link: its cleanup runs before the drain
    app.on_startup.append(auth.warn_at_start)
    app.router.add_get("/healthz", admin_handlers.healthz)
    app.router.add_get("/readyz", admin_handlers.readyz)
    app.router.add_get("/v1/audit/status", admin_handlers.status)
    app.router.add_post("/v1/audit/events", handlers.post_events)
    app.router.add_get("/v1/audit/events", read_handlers.get_events)
    app.router.add_get("/v1/audit/export", read_handlers.export_events)
    app.router.add_get("/v1/audit/stats", read_handlers.get_stats)
    app.router.add_get("/v1/audit/verbosity", admin_handlers.verbosity)
    app.router.add_get("/v1/audit/storage", admin_handlers.storage)
    app.router.add_get("/v1/audit/retention", admin_handlers.get_retention)
    app.router.add_put("/v1/audit/retention", admin_handlers.put_retention)
    ops.install(app)
    verify.install(app)  # GET /v1/audit/verify (tamper evidence)
    return app


async def _writer_link(app: web.Application) -> AsyncIterator[None]:
    """Run the link for the app's lifetime; on shutdown wait for outstanding acks, then stop it."""
    link = app[keys.LINK]
    task = asyncio.create_task(link.run(), name="writer-link")
    task.add_done_callback(_report_crash)
    yield
    drained = await link.drain(app[keys.SETTINGS].drain_seconds)
    if not drained:
        log.warning("drain deadline reached with events unconfirmed", extra={"queued": link.queued_events})
    link.stop()
    await cancel_and_wait([task])


async def _start_storage(app: web.Application) -> None:
    await app[keys.STORAGE].start()


async def _close_storage(app: web.Application) -> None:
    await app[keys.STORAGE].close()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("writer link crashed", extra={"error": repr(task.exception())})
