"""JSON answers encoded with orjson, and the one error shape: ``{"detail": "..."}`` for every 4xx and 5xx."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger("auditlake.ingest.http")
RETRY_AFTER_SECONDS = "1"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response encoded with orjson (under overload most answers are 503s, and the standard library's
    encoder was 2 % of ingest's CPU in them)."""
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type="application/json")


def error(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error response."""
    return json_response({"detail": detail}, status, headers)


def unavailable(detail: str) -> web.Response:
    """A 503 that tells producers when to try again."""
    return error(503, detail, {"Retry-After": RETRY_AFTER_SECONDS})


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Turn aiohttp's own HTTP errors and unexpected exceptions into the JSON error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return http_error(exc)
    except Exception:
        return internal_error(request)


def http_error(exc: web.HTTPException) -> web.Response:
    """aiohttp's HTTP error (4xx/5xx) in the JSON error shape, keeping its Allow and Retry-After headers;
    an answer below 400 (a redirect) is raised again as it is. Call it in an ``except`` clause."""
    if exc.status < 400:
        raise exc
    headers = {key: value for key, value in exc.headers.items() if key.lower() in ("allow", "retry-after")}
    return error(exc.status, exc.reason if exc.text is None or exc.text.startswith(f"{exc.status}:") else exc.text,
                 headers)


def internal_error(request: web.BaseRequest) -> web.Response:
    """Log the exception being handled with the request's path and method, and answer 500 in the JSON shape."""
    log.exception("unhandled error", extra={"path": request.path, "method": request.method})
    return error(500, "internal error")
