"""Prometheus metrics of the writer process: scrape-time counters over its state, a flush-duration histogram."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger("auditlake.writer.metrics")
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"  # understood by every Prometheus
# A group commit: an fsync of this disk takes 0.3-1 ms when quiet and several ms behind a flush's writes.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
DISK_PROBE_TIMEOUT_SECONDS = 1.0
STORAGE_STATES = ("healthy", "warning", "down")


@dataclasses.dataclass(frozen=True)
class Row:
    """How one numeric field becomes a metric: its name (counters without ``_total``), kind and help."""

    name: str
    kind: str
    help: str
    backend_label: bool = False


def _counter(name: str, text: str, backend_label: bool = False) -> Row:
    return Row(name, "counter", text, backend_label)


def _gauge(name: str, text: str) -> Row:
    return Row(name, "gauge", text)


# Numeric fields of WriterStats.snapshot() and of the storage health block -> metrics. A new int field
# of WriterStats needs one row here (until then it is exposed as auditlake_writer_<field>, and a test in
# tests/ops flags it). Floats and storage-health fields are exposed only when they have a row.
FIELDS: dict[str, Row] = {
    "recovered_events": _counter("auditlake_writer_recovered_events", "Events found unflushed in the spool at start."),
    "duplicate_batches": _counter("auditlake_writer_duplicate_batches", "Re-sent batches acknowledged without a second append."),
    "nacked_batches": _counter("auditlake_writer_nacked_batches", "Batches refused (spool full, failed append, shutdown)."),
    "flushed_events": _counter("auditlake_writer_flushed_events", "Events published to storage."),
    "flushes": _counter("auditlake_writer_flushes", "Successful flushes (publish runs)."),
    "failed_flushes": _counter("auditlake_writer_flush_failures", "Failed flushes (each is retried)."),
    "duplicate_events": _counter("auditlake_writer_duplicate_events", "Events dropped as repeated audit_event_ids."),
    "unparsable_lines": _counter("auditlake_writer_unparsable_lines", "Spooled lines quarantined as unparsable."),
    "parsed_flushes": _counter("auditlake_writer_parsed_flushes", "Flushes that parsed their lines: no typed fields "
                               "from ingest (after a restart, or a spill file not read back) or they did not check out."),
    "typed_field_mismatches": _counter("auditlake_writer_typed_field_mismatches", "Flushes whose typed fields from "
                                       "ingest did not match the lines (then parsed); should stay 0."),
    "retention_files_deleted": _counter("auditlake_writer_retention_deleted_files", "Files deleted by retention."),
    "retention_bytes_deleted": _counter("auditlake_writer_retention_deleted_bytes", "Bytes deleted by retention."),
    "bytes_written": _counter("auditlake_writer_written_bytes", "Bytes published to storage, by backend.", True),
    "uploads": _counter("auditlake_writer_uploads", "Objects uploaded to S3."),
    "upload_failures": _counter("auditlake_writer_upload_failures", "Failed S3 object uploads (each is retried)."),
    "bytes_uploaded": _counter("auditlake_writer_uploaded_bytes", "Bytes uploaded to S3."),
    "total_bytes": _gauge("auditlake_writer_disk_total_bytes", "Size of the local store's file system."),
    "used_bytes": _gauge("auditlake_writer_disk_used_bytes", "Used bytes of the local store's file system."),
    "free_bytes": _gauge("auditlake_writer_disk_free_bytes", "Free bytes of the local store's file system."),
}


class WriterState(Protocol):
    """What the collector reads: the parts of WriterService it needs (no import of the service)."""

    settings: Any
    stats: Any
    spool: Any
    encoder: Any
    flusher: Any
    store: Any

    def status(self) -> dict[str, Any]: ...


class WriterCollector:
    """Reads the writer's counters, spool and cached storage health when Prometheus scrapes (no I/O)."""

    def __init__(self, service: WriterState, spool_disk: dict[str, int]) -> None:
        self.service = service
        self.spool_disk = spool_disk

    def describe(self) -> list[Metric]:
        """No fixed description: collect() runs only at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every figure from memory: stats and storage fields by the FIELDS table, then spool and readiness."""
        service = self.service
        backend = service.settings.backend
        status = service.status()
        health = status.get("storage") or {}
        seen: set[str] = set()
        for source in (service.stats.snapshot(), health):
            for field, value in source.items():
                row = FIELDS.get(field)
                if type(value) not in (int, float) or (row is None and (type(value) is not int or source is health)):
                    continue
                row = row or _counter(f"auditlake_writer_{field}", f"WriterStats.{field}")
                if row.name not in seen:
                    seen.add(row.name)
                    yield _family(row, value, backend)
        spool = service.spool
        yield _g("auditlake_writer_spool_bytes", "Unflushed bytes in the spool (what its bound limits).", spool.bytes)
        yield _g("auditlake_writer_spool_max_bytes", "Bound of the spool (AUDIT_SERVICE_SPOOL_MAX_BYTES).", spool.max_bytes)
        yield _g("auditlake_writer_spool_file_bytes", "Bytes in live spool segment files.", spool.file_bytes)
        yield _g("auditlake_writer_spool_segments", "Live spool segment files.", spool.segments)
        yield _g("auditlake_writer_spool_spare_segments", "Flushed spool segments kept to be reused as the next ones.",
                 len(spool.spares))
        yield CounterMetricFamily("auditlake_writer_spool_reused_segments",
                                  "Spool segments started over a flushed one (written over, not grown).",
                                  value=spool.reused_segments)
        yield _g("auditlake_writer_spool_backlog_events", "Events spooled and not yet flushed.", spool.backlog_events)
        yield _g("auditlake_writer_spool_quarantined_segments", "Corrupt spool segments moved to quarantine.",
                 len(spool.quarantined))
        yield _g("auditlake_writer_catching_up", "1 while the spool holds two full flushes or more (larger flushes, fewer frames from ingest).",
                 int(bool(status.get("catching_up"))))
        yield _g("auditlake_writer_spool_write_failing", "1 while appends to the spool fail.", int(bool(spool.last_write_error)))
        yield CounterMetricFamily("auditlake_writer_received_batches", "Batches appended to the spool.",
                                  value=spool.committed_batches)
        yield CounterMetricFamily("auditlake_writer_received_events", "Events appended to the spool.",
                                  value=spool.committed_events)
        yield _g("auditlake_writer_typed_fields_held_bytes", "Typed fields from ingest held in memory for the flush.",
                 spool.columns_bytes)
        yield CounterMetricFamily("auditlake_writer_typed_fields_spilled_batches",
                                  "Batches whose typed fields went to a spill file (past their memory bound).",
                                  value=spool.columns_spill.spilled_batches)
        for key, name in (("total", "auditlake_writer_spool_disk_total_bytes"), ("free", "auditlake_writer_spool_disk_free_bytes")):
            if key in self.spool_disk:
                yield _g(name, f"{key.title()} bytes of the spool's file system (measured at scrape).", self.spool_disk[key])
        yield CounterMetricFamily("auditlake_writer_encoder_starts",
                                  "Encoder processes started (more than one: one died and was replaced).",
                                  value=service.encoder.starts)
        yield _g("auditlake_writer_dedupe_ids", "audit_event_ids held by the dedupe window.", service.encoder.dedupe_ids)
        yield _g("auditlake_writer_dedupe_window_seconds", "Time span the dedupe window covers.",
                 service.encoder.dedupe_covered_seconds)
        failing = service.stats.failing_since
        yield _g("auditlake_writer_flush_failing_seconds", "How long flushes have been failing (0 when they succeed).",
                 max(0.0, time.time() - failing) if failing is not None else 0.0)
        last_flush = _epoch(service.stats.last_flush_at)
        if last_flush is not None:
            yield _g("auditlake_writer_last_flush_timestamp_seconds", "When the last flush succeeded (Unix time).",
                     last_flush)
        state = GaugeMetricFamily("auditlake_writer_storage_status",
                                  "1 for the storage state now (warning also while flushes fail).",
                                  labels=["backend", "status"])
        for name in STORAGE_STATES:
            state.add_metric([backend, name], int(health.get("status") == name))
        yield state
        yield _g("auditlake_writer_ready", "1 while the writer's /readyz answers 200.", int(bool(status.get("ready"))))
        info = GaugeMetricFamily("auditlake_writer_info", "Constant 1, labelled with the configuration.",
                                 labels=["backend", "writer_id"])
        info.add_metric([backend, service.settings.writer_id], 1)
        yield info


def _family(row: Row, value: float, backend: str) -> Metric:
    labels = ["backend"] if row.backend_label else []
    family = (CounterMetricFamily if row.kind == "counter" else GaugeMetricFamily)(row.name, row.help, labels=labels)
    family.add_metric([backend] if row.backend_label else [], value)
    return family


def _g(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class WriterMetrics:
    """The writer's registry; wires the flush-duration hook and serves ``GET /metrics`` on the health port."""

    def __init__(self, service: WriterState) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.flush_seconds = Histogram("auditlake_writer_flush_duration_seconds",
                                       "Time of one flush (read spool, encode, publish/upload, checkpoint), by outcome.",
                                       ["outcome"], buckets=FLUSH_BUCKETS, registry=self.registry)
        self.upload_seconds = Histogram("auditlake_writer_upload_duration_seconds",
                                        "Time of one successful S3 object upload (S3 backend).",
                                        buckets=FLUSH_BUCKETS, registry=self.registry)
        self.commit_seconds = Histogram("auditlake_writer_commit_latency_seconds",
                                        "From a batch frame's arrival to its group commit being durable, for the oldest "
                                        "frame of each group: the writer's share of an acknowledgement.",
                                        buckets=COMMIT_BUCKETS, registry=self.registry)
        self.sync_seconds = Histogram("auditlake_writer_spool_sync_seconds",
                                      "Writing and fsyncing one group commit to the spool: the disk's share of it.",
                                      buckets=COMMIT_BUCKETS, registry=self.registry)
        self.spool_disk: dict[str, int] = {}
        self.registry.register(WriterCollector(service, self.spool_disk))
        ProcessCollector(registry=self.registry)
        service.flusher.observe_flush = self.observe_flush
        service.spool.observe_commit = self.observe_commit
        if hasattr(service.store, "observe_upload"):
            service.store.observe_upload = self.upload_seconds.observe

    def observe_flush(self, seconds: float, ok: bool) -> None:
        """Record one flush's duration."""
        self.flush_seconds.labels("ok" if ok else "failed").observe(seconds)

    def observe_commit(self, durable_seconds: float, sync_seconds: float) -> None:
        """Record one group commit: its oldest frame's arrival to durable, and the spool's write and fsync."""
        self.commit_seconds.observe(durable_seconds)
        self.sync_seconds.observe(sync_seconds)

    def install(self, app: web.Application) -> web.Application:
        """Add ``GET /metrics`` to the writer's health app; return the app."""
        app.router.add_get("/metrics", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        await self._measure_spool_disk()
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": TEXT_FORMAT})

    async def _measure_spool_disk(self) -> None:
        """statvfs of the spool directory in a worker thread, bounded, so a hung disk cannot stall a scrape."""
        path: Path = self.service.settings.resolved_spool_path
        probe = asyncio.get_running_loop().run_in_executor(None, shutil.disk_usage, path)
        try:
            async with asyncio.timeout(DISK_PROBE_TIMEOUT_SECONDS):
                usage = await probe
        except (TimeoutError, OSError) as exc:
            log.warning("spool disk usage unavailable", extra={"error": repr(exc)})
            self.spool_disk.clear()
            return
        self.spool_disk.update(total=usage.total, free=usage.free)
