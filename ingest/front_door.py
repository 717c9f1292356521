"""The server's request handler: POST /v1/audit/events without the router and middleware chain, the rest through the app.

Every request reaches the app's handler (``Application._handle``: the router, then the middlewares
``observe`` -> ``json_errors`` -> ``require_token``, then the route's handler) except a POST whose request
target is exactly ``/v1/audit/events`` and that does not ask for ``100-continue``. That one is answered here
by the same parts in the same order: the access decision (``auth.admit_caller`` with the route's rule),
the handler (``handlers.accept_events``), aiohttp's errors and unexpected exceptions in the JSON error
shape (``errors.http_error`` / ``errors.internal_error``), and its count, duration and sampled access line
under the route's canonical path (``ops.RequestRecorder``). Skipping the resolution and four coroutine
layers saved about 50,000 instructions a single-event request (of 400,000; docs/benchmarks.md). A target
with a query string or in another spelling the router would still match goes through the app, answered
the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from ingest import keys
from ingest.auth import admit_caller, rule_for
from ingest.errors import http_error, internal_error
from ingest.handlers import accept_events
from ingest.ops import CLIENT_CLOSED, RECORDER

EVENTS_PATH = "/v1/audit/events"
AppHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class FrontDoor:
    """Answers the posting route itself and hands every other request to the app's handler."""

    def __init__(self, app: web.Application, through_app: AppHandler) -> None:
        self.app = app
        self.through_app = through_app
        self.tokens = app[keys.TOKENS]
        self.stats = app[keys.STATS]
        self.rule = rule_for("POST", EVENTS_PATH)
        self.recorder = app[RECORDER]

    def takes(self, request: web.BaseRequest) -> bool:
        """True for a POST to exactly the posting route's path that does not expect ``100 Continue``."""
        return request.raw_path == EVENTS_PATH and request.method == "POST" and hdrs.EXPECT not in request.headers

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if not self.takes(request):
            return await self.through_app(request)
        return await self.respond(request)

    async def respond(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer a post to the route (``takes`` it; ``ingest.fast_lane`` calls this with its own request)."""
        # The same try/finally as the ``observe`` middleware (ops.observe_requests), written out: sharing it as a
        # context manager cost 6,000-7,500 more instructions a single-event request (355,630 / 357,591
        # against 348,093 / 350,188, bench/instruction_counts.py), a fifth of what skipping the chain saves.
        started = time.perf_counter()
        self.stats.front_door_requests += 1
        status = 500
        response: web.StreamResponse | None = None
        try:
            try:
                response = admit_caller(request, self.tokens, self.rule)
                if response is None:
                    response = await accept_events(self.app, request)
            except web.HTTPException as exc:
                response = http_error(exc)
            except Exception:
                response = internal_error(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # below 400, raised again by http_error
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            self.recorder.record(request, EVENTS_PATH, status, time.perf_counter() - started, response)


def install(runner: web.AppRunner) -> FrontDoor:
    """Put a front door before the app of a runner that is set up and whose sites have not started."""
    server = runner.server
    if server is None:
        raise RuntimeError("the runner is not set up")
    door = FrontDoor(runner.app, server.request_handler)
    server.request_handler = door
    return door
