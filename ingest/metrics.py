"""Prometheus metrics of the ingest process: a per-app registry, histograms, and counters read at scrape time."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ingest import keys
from ingest.admin_handlers import not_ready_reason
from ingest.loop_metrics import CounterChild, HistogramChild, LoopCollector, LoopCounter, LoopHistogram

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"  # understood by every Prometheus
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
QUERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# IngestStats field -> (metric name without _total, help). Every int field is exposed; a new field needs a row
# here (unmapped ones still appear as auditlake_ingest_<field>, and tests/ops flags them).
STATS_COUNTERS: dict[str, tuple[str, str]] = {
    "accepted_events": ("auditlake_ingest_events_accepted", "Events acknowledged durable (answered 202)."),
    "rejected_events": ("auditlake_ingest_events_rejected", "Events refused with 503 (queue full, writer unavailable or refusing)."),
    "refused_unread_requests": ("auditlake_ingest_requests_refused_unread",
                                "Posts answered 503 before their body was parsed (queue full or no writer, on arrival or once read); events unknown."),
    "unconfirmed_events": ("auditlake_ingest_events_unconfirmed", "Events answered 504: the writer did not confirm in time."),
    "invalid_requests": ("auditlake_ingest_invalid_requests", "Requests refused as malformed (400, 413)."),
    "front_door_requests": ("auditlake_ingest_front_door_requests",
                            "Posts to /v1/audit/events answered without the router (the others went through it)."),
    "lane_requests": ("auditlake_ingest_lane_requests",
                      "Posts parsed and answered by the fast lane, without aiohttp's protocol (also counted as front-door posts)."),
    "lane_handovers": ("auditlake_ingest_lane_handovers",
                       "Connections the fast lane handed to aiohttp at a request it does not take (another route, method or header)."),
}
# Counters that carry the verbosity preset as a label.
VERBOSITY_COUNTERS: dict[str, tuple[str, str]] = {
    "dropped_by_verbosity": ("auditlake_ingest_events_dropped", "Events dropped at ingest by the verbosity preset."),
}

# (method, canonical route) -> query kind, for auditlake_ingest_query_duration_seconds.
QUERY_KINDS: dict[tuple[str, str], str] = {
    ("GET", "/v1/audit/events"): "events",
    ("GET", "/v1/audit/export"): "export",
    ("GET", "/v1/audit/stats"): "stats",
    ("GET", "/v1/audit/verify"): "verify",
    ("GET", "/v1/audit/storage"): "storage",
    ("GET", "/v1/audit/retention"): "retention",
    ("PUT", "/v1/audit/retention"): "retention_update",
}


class IngestCollector:
    """Reads IngestStats and the WriterLink when Prometheus scrapes; nothing is incremented elsewhere."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def describe(self) -> list[Metric]:
        """No fixed description: the registry must not call collect() before the app is complete."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One sample per counter and gauge, from in-memory state only (no I/O)."""
        settings = self.app[keys.SETTINGS]
        stats = self.app[keys.STATS]
        link = self.app[keys.LINK]
        preset = self.app[keys.PRESET].name
        for field in dataclasses.fields(stats):
            value = getattr(stats, field.name)
            if type(value) is not int:
                continue
            if field.name in VERBOSITY_COUNTERS:
                name, text = VERBOSITY_COUNTERS[field.name]
                family = CounterMetricFamily(name, text, labels=["verbosity"])
                family.add_metric([preset], value)
            else:
                name, text = STATS_COUNTERS.get(field.name, (f"auditlake_ingest_{field.name}", f"IngestStats.{field.name}"))
                family = CounterMetricFamily(name, text, value=value)
            yield family
        yield _gauge("auditlake_ingest_queue_events", "Events queued or awaiting the writer's ack.", link.queued_events)
        yield _gauge("auditlake_ingest_queue_bytes", "Bytes queued or awaiting the writer's ack.", link.queued_bytes)
        yield _gauge("auditlake_ingest_queue_max_events", "Bound of the queue in events.", link.max_events)
        yield _gauge("auditlake_ingest_queue_max_bytes", "Bound of the queue in bytes.", link.max_bytes)
        yield _gauge("auditlake_ingest_frames_in_flight", "Batch frames sent to the writer and not yet answered.",
                     link.frames_in_flight)
        yield _gauge("auditlake_ingest_frames_in_flight_limit",
                     "Frames that may await the writer at once (1 while the writer is catching up, else 2).",
                     link.frames_allowed)
        yield CounterMetricFamily("auditlake_ingest_parse_turn_waits",
                                  "Large bodies that waited for their parse turn (another was parsed in that loop iteration).",
                                  value=self.app[keys.TURNS].waits)
        yield CounterMetricFamily("auditlake_ingest_parse_turns_skipped",
                                  "Large bodies parsed without waiting for a turn because enough others waited (overload).",
                                  value=self.app[keys.TURNS].crowded)
        yield _gauge("auditlake_ingest_writer_connected", "1 while the writer is connected and has greeted ingest.",
                     int(link.ready))
        yield _gauge("auditlake_ingest_ready", "1 while /readyz answers 200.", int(not_ready_reason(self.app) is None))
        info = GaugeMetricFamily("auditlake_ingest_info", "Constant 1, labelled with the configuration.",
                                 labels=["backend", "verbosity"])
        info.add_metric([settings.backend, preset], 1)
        yield info


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


class IngestMetrics:
    """The registry of one ingest app and the few instruments that need hooks."""

    def __init__(self, app: web.Application) -> None:
        self.registry = CollectorRegistry()
        self._request_children: dict[tuple[str, str, int], tuple[CounterChild, HistogramChild]] = {}
        self.requests = LoopCounter("auditlake_ingest_http_requests", "HTTP requests answered, by route, method and status.",
                                    ["route", "method", "status"])
        self.request_seconds = LoopHistogram("auditlake_ingest_http_request_duration_seconds",
                                             "Time to answer an HTTP request, by route and method.", ["route", "method"],
                                             LATENCY_BUCKETS)
        self.ack_seconds = LoopHistogram("auditlake_ingest_ack_latency_seconds",
                                         "Time from sending a batch frame to the writer's ACK (spool fsync included).",
                                         [], LATENCY_BUCKETS)
        self.query_seconds = LoopHistogram("auditlake_ingest_query_duration_seconds",
                                           "Time to answer a read of storage, by kind (events, export, stats, verify, storage, retention).",
                                           ["kind"], QUERY_BUCKETS)
        self.registry.register(LoopCollector([self.requests, self.request_seconds, self.ack_seconds, self.query_seconds]))
        self.registry.register(IngestCollector(app))
        ProcessCollector(registry=self.registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration (and its query kind, if it is a read)."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (self.requests.labels(route, method, str(status)),
                                                      self.request_seconds.labels(route, method))
        children[0].inc()
        children[1].observe(seconds)
        kind = QUERY_KINDS.get((method, route))
        if kind is not None:
            self.query_seconds.labels(kind).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of everything in the registry."""
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", IngestMetrics)


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text format."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": TEXT_FORMAT})
