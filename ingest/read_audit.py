"""The service's own audit trail: every read of audit data, and ingest's start and stop, stored as events.

Events go through the writer link like posted ones (same spool, same store), but bypass verbosity: a
preset never drops them. Recording never delays the read that caused it: the event is queued at once and
its acknowledgement is awaited by a task the trail owns; a refusal or timeout is logged and counted
(``self_audit.unrecorded`` in status), and the read is still answered.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from ingest.link import AckTimeout, QueueFull, WriterLink, WriterRefused, WriterUnavailable
from ingest.query_params import Query
from ingest.stats import utc_now_iso
from ingest.tokens import Principal
from shared import typed_columns
from shared.events import normalize_event
from shared.settings import Settings
from shared.task_stop import cancel_and_wait

log = logging.getLogger("auditlake.ingest.self_audit")
COMPONENT = "auditlake-ingest"
READY_POLL_SECONDS = 0.05


class AuditTrail:
    """Queues the service's own events on the link and owns the tasks that await their acks."""

    def __init__(self, link: WriterLink, settings: Settings) -> None:
        self.link = link
        self.settings = settings
        self.recorded = 0
        self.unrecorded = 0
        self.start_recorded = False
        self._tasks: set[asyncio.Task[None]] = set()

    def counters(self) -> dict[str, int]:
        """How many of the service's own events were stored and how many could not be."""
        return {"recorded": self.recorded, "unrecorded": self.unrecorded, "pending": len(self._tasks)}

    def record_read(self, caller: Principal, endpoint: str, query: Query, returned: int, total: int) -> None:
        """Record one successful read of audit data: who, which filters, how many records."""
        self.record("audit_read", caller.actor, endpoint, {
            "since": query.since_ts,
            "until": query.until_ts,
            "limit": query.limit,
            "filters": {**query.filters,
                        **({"capability": query.capability} if query.capability else {}),
                        **({"user_email": query.user_email} if query.user_email else {})},
            "tenant_bound": caller.tenant is not None,
            "returned": returned,
            "total": total,
        })

    def record(self, event_type: str, actor: str, action: str, details: dict[str, Any]) -> None:
        """Queue one service event; never raises, never waits."""
        event = normalize_event({"type": event_type, "actor_ref": actor, "action": action, "outcome": "success",
                                 "component": COMPONENT, "source": "auditlake", "details": details}, utc_now_iso())
        try:
            submission = self.link.submit(orjson.dumps(event) + b"\n", 1,
                                          typed_columns.encode([event], event["received_at"]))
        except (QueueFull, WriterUnavailable) as exc:
            self._lost(event, exc)
            return
        task = asyncio.create_task(self._confirm(submission, event), name=f"self-audit-{event_type}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _confirm(self, submission: Any, event: dict[str, Any]) -> None:
        try:
            await self.link.wait(submission)
        except (QueueFull, WriterUnavailable, WriterRefused, AckTimeout) as exc:
            self._lost(event, exc)
            return
        self.recorded += 1

    def _lost(self, event: dict[str, Any], exc: Exception) -> None:
        self.unrecorded += 1
        log.warning("service audit event not recorded", extra={
            "type": event["type"], "audit_event_id": event["audit_event_id"], "error": str(exc)})

    async def _record_start(self) -> None:
        while not self.link.ready:
            await asyncio.sleep(READY_POLL_SECONDS)
        self._start_event()

    def _start_event(self) -> None:
        self.start_recorded = True
        self.record("service_start", "service", "start", {
            "pid": os.getpid(), "auth": "enabled" if self.settings.auth_enabled else "disabled",
            "verbosity": self.settings.verbosity})

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: record service_start once the writer first answers; service_stop when draining."""
        starter = asyncio.create_task(self._record_start(), name="self-audit-start")
        yield
        await cancel_and_wait([starter])
        if not self.start_recorded and self.link.ready:
            self._start_event()  # stopped within a poll interval of connecting
        self.record("service_stop", "service", "stop", {"pid": os.getpid()})
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.settings.drain_seconds)
