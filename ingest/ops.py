"""Operations wiring of the ingest app: request metrics and access log middleware, /metrics, /openapi.json."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from aiohttp import web

from ingest import keys
from ingest.metrics import METRICS, IngestMetrics, metrics_handler
from ingest.openapi import install_cache, openapi_handler

access_log = logging.getLogger("auditlake.ingest.access")
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
CLIENT_CLOSED = 499


def install(app: web.Application) -> None:
    """Add the metrics/access-log middleware (outermost), the ack-latency hook and the two routes."""
    metrics = IngestMetrics(app)
    app[METRICS] = metrics
    recorder = RequestRecorder(metrics, app[keys.SETTINGS].access_log_sample_rate)
    app[RECORDER] = recorder
    app.middlewares.insert(0, observe_requests(recorder))
    app[keys.LINK].on_ack = metrics.ack_seconds.labels().observe
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/openapi.json", openapi_handler)
    install_cache(app)


def route_of(request: web.Request) -> str:
    """The route's canonical path (``/v1/audit/events``), never the raw URL; ``unmatched`` for 404/405."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def response_bytes(response: web.StreamResponse) -> int:
    """Size of the response body."""
    body = getattr(response, "body", None)
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    return response.content_length or response.body_length


class RequestRecorder:
    """What is kept of every answered request: its count and duration by route, method and status, and a
    sampled access log line (``AUDIT_SERVICE_ACCESS_LOG``)."""

    def __init__(self, metrics: IngestMetrics, sample_rate: float, sample: Callable[[], float] = random.random):
        self.metrics = metrics
        self.sample_rate = sample_rate
        self.sample = sample

    def record(self, request: web.BaseRequest, route: str, status: int, seconds: float,
               response: web.StreamResponse | None) -> None:
        """Count and time one request of ``route`` (a canonical path) answered with ``status``."""
        method = request.method if request.method in KNOWN_METHODS else "OTHER"
        self.metrics.observe_request(route, method, status, seconds)
        if self.sample_rate > 0 and (self.sample_rate >= 1 or self.sample() < self.sample_rate):
            access_log.info("request", extra={
                "method": method, "route": route, "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "bytes": response_bytes(response) if response is not None else 0,
                "request_bytes": request.content_length or 0,
            })


RECORDER = web.AppKey("request_recorder", RequestRecorder)


def observe_requests(recorder: RequestRecorder) -> Callable:
    """A middleware counting every request by route and status, timing it, and logging a sampled access line."""

    @web.middleware
    async def observe(request: web.Request, handler: Callable) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            recorder.record(request, route_of(request), status, time.perf_counter() - started, response)

    return observe
