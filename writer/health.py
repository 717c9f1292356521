"""The writer's health HTTP listener: liveness, readiness and status from cached state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

StatusFn = Callable[[], dict[str, Any]]
STATUS_KEY = web.AppKey("status", object)


def create_health_app(status: StatusFn) -> web.Application:
    """Build the health app; ``status`` returns the writer's cached status dict."""
    app = web.Application()
    app[STATUS_KEY] = status
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/status", _status)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    status = request.app[STATUS_KEY]()
    if status["ready"]:
        return web.json_response({"status": "ready", **status})
    return web.json_response({"detail": status["not_ready_reason"]}, status=503)


async def _status(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATUS_KEY]())
