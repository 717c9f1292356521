"""The writer's lifecycle: start the spool, flusher, socket and health port; drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from aiohttp import web

from shared import native_memory
from shared.cpu_pinning import Pinning
from shared.settings import Settings
from shared.task_stop import cancel_and_wait
from writer.flush_encoder import EncoderConfig, EncoderFailed, FlushEncoder
from writer.evidence import TamperEvidence
from writer.faults import FaultPoints
from writer.flusher import Flusher
from writer.health import create_health_app
from writer.metrics import WriterMetrics
from shared.s3_client import make_s3_client
from writer.local_store import LocalStore
from writer.s3_store import S3Store
from writer.store import Store
from writer.server import SocketServer
from writer.spool import Spool
from writer.stats import WriterStats

log = logging.getLogger("auditlake.writer")
HEALTH_REFRESH_SECONDS = 1.0
HEALTH_PROBE_TIMEOUT_SECONDS = 5.0


def build_store(settings: Settings, faults: FaultPoints) -> Store:
    """The configured backend."""
    if settings.backend == "s3":
        client = make_s3_client(settings)
        probe_client = make_s3_client(settings, connect_timeout=1.0, read_timeout=2.0, max_attempts=1)
        return S3Store(settings, client, probe_client, faults)
    return LocalStore(settings.local_path, settings.local_gzip, settings.local_retention_days,
                      settings.disk_warning_percent, settings.disk_critical_percent, faults)


class WriterService:
    """Owns every part of the writer process and every background task it starts."""

    def __init__(self, settings: Settings, pinning: Pinning | None = None) -> None:
        self.settings = settings
        self.pinning = pinning or Pinning(None, None)
        self.stats = WriterStats()
        faults = FaultPoints(settings.fault_point)
        self.spool = Spool(settings.resolved_spool_path, settings.spool_segment_bytes, settings.spool_max_bytes,
                           faults, fresh_start_seq=int(time.time() * 1_000_000))
        self.store = build_store(settings, faults)
        self.encoder = FlushEncoder(EncoderConfig(
            self.store.encoder(), settings.resolved_spool_path / "dedupe", settings.dedupe_window_seconds,
            settings.dedupe_max_ids, settings.log_level, native_memory.arrow_keep_freed_ms(settings.backend),
            settings.encoder_niceness))
        if settings.backend == "s3":
            self.flusher = Flusher(self.spool, self.store, self.stats, 2**62, settings.s3_upload_interval_seconds,
                                   settings.retention_interval_seconds, self.encoder, settings.s3_max_object_bytes,
                                   catch_up_bytes=settings.s3_max_object_bytes)  # objects never exceed the setting
        else:
            self.flusher = Flusher(self.spool, self.store, self.stats, settings.flush_batch_size,
                                   settings.flush_interval_seconds, settings.retention_interval_seconds, self.encoder)
        self.server = SocketServer(settings.resolved_socket_path, self.spool, self.stats,
                                   settings.max_frame_bytes, self.status)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: web.AppRunner | None = None
        self.metrics = WriterMetrics(self)
        self.evidence = TamperEvidence(self)

    def status(self) -> dict[str, Any]:
        """The writer's status from cached state: counters, spool, storage health, readiness."""
        reason = self._not_ready_reason()
        return {
            "ready": reason is None,
            "not_ready_reason": reason,
            "writer_id": self.settings.writer_id,
            "backend": self.settings.backend,
            "cpus": self.pinning.describe(),
            **self.stats.snapshot(),
            "received_batches": self.spool.committed_batches,
            "received_events": self.spool.committed_events,
            "last_error": self.spool.last_write_error or self.stats.last_error,
            "spool_bytes": self.spool.bytes,
            "spool_file_bytes": self.spool.file_bytes,
            "spool_segments": self.spool.segments,
            "spool_spare_segments": len(self.spool.spares),
            "spool_reused_segments": self.spool.reused_segments,
            "spool_backlog_events": self.spool.backlog_events,
            "spool_max_bytes": self.spool.max_bytes,
            "catching_up": self.flusher.behind,
            "flushed_seq": self.spool.flushed_seq,
            "quarantined_segments": list(self.spool.quarantined),
            "accounted": self._accounted(),
            "encoder_niceness": self.encoder.niceness,
            "dedupe_ids": self.encoder.dedupe_ids,
            "dedupe_window_seconds": round(self.encoder.dedupe_covered_seconds, 1),
            "storage": self._storage(),
            "evidence": self.evidence.status(),
        }

    def _storage(self) -> dict[str, Any]:
        """Cached disk health, overridden at once while flushes fail."""
        health = self.store.health()
        if self.stats.failing_since is not None and health.get("status") != "down":
            return {**health, "status": "warning", "detail": "flushes failing; events wait in the spool"}
        return health

    def _accounted(self) -> bool:
        """Every event that entered the spool is flushed, a dropped duplicate, quarantined or waiting."""
        came_in = self.stats.recovered_events + self.spool.committed_events
        went_out = self.stats.flushed_events + self.stats.duplicate_events + self.stats.unparsable_lines
        return came_in == went_out + self.spool.backlog_events

    def _not_ready_reason(self) -> str | None:
        if self.spool.last_write_error:
            return "spool is not writable"
        failing = self.stats.failing_since
        if failing is not None and time.time() - failing > self.settings.flush_failing_ready_seconds:
            return "flushes to storage have been failing"
        storage = self._storage()
        if storage.get("status") == "down":
            return f"storage down: {storage.get('detail')}"
        return None

    async def run(self) -> None:
        """Start everything, serve until SIGTERM/SIGINT, then drain within the deadline."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self.start()
        log.info("writer started", extra={"socket": str(self.settings.resolved_socket_path),
                                         "spool": str(self.settings.resolved_spool_path),
                                         "backlog_events": self.spool.backlog_events})
        stopped = asyncio.create_task(self._stop.wait())
        await asyncio.wait([stopped, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("background task failed", extra={"task": task.get_name(), "error": repr(task.exception())})
        await self.shutdown()

    async def start(self) -> None:
        """Open the spool (recovering what a crash left), then listen on the socket and health port."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.spool.open)
        try:
            await loop.run_in_executor(None, self.encoder.start)  # the child loads the dedupe window
        except EncoderFailed as exc:  # the spool still takes batches; each flush tries again and fails until it starts
            log.error("encoder process did not start", extra={"error": str(exc)})
        self.stats.recovered_events = self.spool.backlog_events
        await loop.run_in_executor(None, self.store.prepare)
        await self.evidence.start()
        await self._refresh_health()
        self._tasks.append(asyncio.create_task(self.spool.run_committer(), name="spool-committer"))
        self._tasks.append(asyncio.create_task(self.flusher.run(), name="flusher"))
        self._tasks.append(asyncio.create_task(self.evidence.run(), name="digests"))
        self._tasks.append(asyncio.create_task(self._health_loop(), name="storage-health"))
        await self.server.start()
        self._tasks.append(asyncio.create_task(self.server.run_status_broadcast(), name="status-broadcast"))
        self._runner = web.AppRunner(self.metrics.install(create_health_app(self.status)), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.writer_health_host, self.settings.writer_health_port)
        await site.start()

    async def shutdown(self) -> None:
        """Stop taking batches, finish the commit in progress, flush the spool until the deadline."""
        deadline = self.settings.drain_seconds
        log.info("writer draining", extra={"backlog_events": self.spool.backlog_events})
        await self.server.close()
        self.spool.close()
        self.flusher.stop()
        named = {task.get_name(): task for task in self._tasks}
        try:
            async with asyncio.timeout(deadline):
                await asyncio.gather(named["spool-committer"], named["flusher"], return_exceptions=True)
        except TimeoutError:
            log.warning("drain deadline reached; the spool keeps the rest for the next start",
                        extra={"backlog_events": self.spool.backlog_events})
        await asyncio.get_running_loop().run_in_executor(None, self.flusher.reaper.close)
        await asyncio.get_running_loop().run_in_executor(None, self.encoder.close)
        await self.evidence.close()
        await cancel_and_wait(self._tasks)
        self.spool.release()
        if self._runner is not None:
            await self._runner.cleanup()
        log.info("writer stopped", extra={"flushed_events": self.stats.flushed_events})

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_REFRESH_SECONDS)
            await self._refresh_health()

    async def _refresh_health(self) -> None:
        probe = asyncio.get_running_loop().run_in_executor(None, self.store.probe)
        try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel (tests/unit/test_cancellation.py)
            async with asyncio.timeout(HEALTH_PROBE_TIMEOUT_SECONDS):
                await asyncio.shield(probe)
        except TimeoutError:
            log.warning("storage probe is slow; keeping the last result")
