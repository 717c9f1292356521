"""The ingest listener: plain posts parsed (httptools) and answered here, any other request handed to aiohttp with the rest of its connection.

aiohttp's request handler (its protocol, the per-request task it starts, the payload stream, the request
and the stream writer) cost a single-event post more than all of ingest's own checks: a bare aiohttp
server answered 38,900 posts a second on one core where an httptools protocol answered 123,000
(docs/benchmarks.md). So each connection starts in a ``Lane``: a protocol that parses with llhttp and takes
a request itself when it is ``POST /v1/audit/events HTTP/1.1``, kept alive, not an upgrade, with a
``Content-Length`` of at most ``max_body_bytes``, no ``Transfer-Encoding`` or ``Expect``, and a usual JSON
``Content-Type`` or none. Its whole body received, it is answered by the front door (``FrontDoor.respond``:
the access decision, the handler, the error shapes, the metrics and access line) with a ``LaneRequest``,
and the answer is written as aiohttp would write it (``answer.response_message``). Anything else (another
method, path, version or header, a parse error, a head longer than ``MAX_HEAD_BYTES``) hands the
connection to aiohttp's own protocol at that request's first byte, once the answers before it are sent;
aiohttp parses it from there and serves the connection to its end.

A lane keeps aiohttp's deadlines: a connection that has not delivered a whole request head within
``header_read_timeout_seconds`` of its opening or its last answer is closed, and a body not received
within ``body_read_timeout_seconds`` of its head is answered 408 and the connection closed (one sweep
task checks every lane). Pipelined posts are answered one at a time, in order; reading pauses while a
whole post, or a body's worth of bytes, waits behind the one being answered.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import httptools
from aiohttp import web
from aiohttp.tcp_helpers import tcp_keepalive

from ingest.answer import response_message
from ingest.body import USUAL_JSON_TYPES
from ingest.front_door import EVENTS_PATH, FrontDoor
from ingest.lane_request import LaneRequest, StalledBody
from shared.settings import Settings

EXACT_LINE = b"POST " + EVENTS_PATH.encode() + b" HTTP/1.1\r\n"
MAX_HEAD_BYTES = 8190  # aiohttp's limit for one line: a longer head is aiohttp's to judge
_USUAL_TYPES = frozenset(kind.encode() for kind in USUAL_JSON_TYPES) | {b""}
_NOT_TAKEN = frozenset({b"transfer-encoding", b"expect"})
WAITING, BODY, BUSY = "waiting for a head", "receiving a body", "answering"


class _HandOver(Exception):
    """Raised from the parser's callback at a request the lane does not take."""


class Lanes:
    """The listener's connections: what they share, the deadline sweep, and the shutdown."""

    def __init__(self, door: FrontDoor, server: web.Server, settings: Settings) -> None:
        self.door = door
        self.app = door.app
        self.server = server  # makes aiohttp's protocol for a connection handed over
        self.header_timeout = settings.header_read_timeout_seconds
        self.body_timeout = settings.body_read_timeout_seconds
        self.max_body_bytes = settings.max_body_bytes
        self.stats = door.stats
        self.open: set[Lane] = set()
        self.closing = False
        self.listener: asyncio.Server | None = None
        self.sweeper: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> Lane:
        return Lane(self)

    async def start(self, host: str, port: int, backlog: int) -> None:
        """Listen, and start the deadline sweep."""
        self.loop = asyncio.get_running_loop()
        self.listener = await self.loop.create_server(self, host, port, backlog=backlog)
        self.sweeper = asyncio.create_task(self._sweep(), name="lane-deadlines")

    @property
    def port(self) -> int:
        """The port listened on."""
        assert self.listener is not None
        return self.listener.sockets[0].getsockname()[1]

    async def _sweep(self) -> None:
        period = max(0.05, min(1.0, self.header_timeout / 4, self.body_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for lane in list(self.open):
                lane.check_deadline(now)

    def stop_listening(self) -> None:
        """Accept no more connections; close the idle ones, and every other once its answer is sent."""
        self.closing = True
        if self.listener is not None:
            self.listener.close()
        for lane in list(self.open):
            lane.close_if_idle()

    async def shutdown(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the answers still being made, then close every connection."""
        deadline = time.monotonic() + timeout
        while any(lane.phase == BUSY for lane in self.open) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for lane in list(self.open):
            lane.close()
        if self.sweeper is not None:
            self.sweeper.cancel()
            await asyncio.gather(self.sweeper, return_exceptions=True)


class Lane(asyncio.Protocol):
    """One connection while the lane serves it (httptools calls the ``on_*`` methods)."""

    def __init__(self, lanes: Lanes) -> None:
        self.lanes = lanes
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.buffer = b""  # received bytes from the first byte of the request being parsed
        self.headers: list[tuple[bytes, bytes]] = []  # of the request being received
        self.body_at = 0
        self.length = 0
        self.head_done = False
        self.ready: deque[tuple[list[tuple[bytes, bytes]], bytes]] = deque()  # (headers, body) of whole posts
        self.leaving = False  # a request the lane does not take starts the buffer
        self.paused = False
        self.phase = WAITING
        self.since = time.monotonic()
        self.task: asyncio.Task[None] | None = None

    # -- the connection ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = transport  # type: ignore[assignment]
        tcp_keepalive(transport)  # as aiohttp's protocol does
        self.lanes.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lanes.open.discard(self)
        self.transport = None
        if self.task is not None:
            self.task.cancel()  # the front door counts it as 499, as aiohttp's handler cancellation does

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        if self.leaving:  # answering what came before a request for aiohttp: the rest waits for aiohttp
            self._pause()
            return
        try:
            self.parser.feed_data(data)
        except Exception:  # _HandOver from a callback, or a request llhttp refuses: aiohttp answers it
            self.leaving = True
        if not self.head_done and len(self.buffer) > MAX_HEAD_BYTES:
            self.leaving = True
        if self.phase != BUSY:
            if self.ready:
                self._begin()
            elif self.leaving:
                self._hand_over()
                return
            elif self.head_done and self.phase == WAITING:
                self.phase, self.since = BODY, time.monotonic()
        # A whole post waiting behind the one being answered, a request for aiohttp, or a body's worth of the
        # next: read no more until they are answered (pipelined bytes are held one read's worth at most).
        if self.phase == BUSY and (self.ready or self.leaving or len(self.buffer) > self.lanes.max_body_bytes):
            self._pause()

    def _pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def check_deadline(self, now: float) -> None:
        """Close a connection past the head deadline; answer 408 to a body past its deadline."""
        if self.transport is None or self.phase == BUSY:
            return
        if self.phase == WAITING and now - self.since > self.lanes.header_timeout:
            self.close()
        elif self.phase == BODY and now - self.since > self.lanes.body_timeout:
            self._body_stalled()

    def close_if_idle(self) -> None:
        """Close the connection when no request is being answered or received."""
        if self.phase == WAITING and not self.buffer:
            self.close()

    def close(self) -> None:
        """Close the connection (what is written still goes out)."""
        if self.transport is not None:
            self.transport.close()

    # -- httptools' callbacks -----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        body_at = self.buffer.find(b"\r\n\r\n") + 4
        length = self._taken_length(body_at)
        if length is None:
            raise _HandOver
        self.body_at, self.length, self.head_done = body_at, length, True

    def on_message_complete(self) -> None:
        end = self.body_at + self.length
        body, self.buffer = self.buffer[self.body_at:end], self.buffer[end:]
        self.ready.append((self.headers, body))
        self.headers = []
        self.head_done = False

    def _taken_length(self, body_at: int) -> int | None:
        """The body's length when the lane takes the request whose head ends at ``body_at``, else None.
        (Measured against finding the few headers in the head's bytes and reading the rest lazily, this
        callback per header and one multidict came out a little cheaper: about 3.5 us a post.)"""
        # A line of the head ended by a bare LF never gets here: llhttp (strict) refuses it, and the request
        # goes to aiohttp as any the lane cannot parse (tests/test_fast_lane.py, "a bare LF").
        if (not 4 <= body_at <= MAX_HEAD_BYTES or not self.buffer.startswith(EXACT_LINE)
                or not self.parser.should_keep_alive() or self.parser.should_upgrade()):
            return None
        length = None
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                length = int(value)  # llhttp checked its digits and refuses a second one
            elif lowered in _NOT_TAKEN or (lowered == b"content-type" and value.strip() not in _USUAL_TYPES):
                return None
        return length if length is not None and length <= self.lanes.max_body_bytes else None

    # -- answering -----------------------------------------------------------------------------------

    def _begin(self) -> None:
        headers, body = self.ready.popleft()
        self._respond(LaneRequest(self.lanes.app, _decoded(headers), body))

    def _respond(self, request: LaneRequest) -> None:
        """Have the front door answer ``request``; nothing more is read meanwhile."""
        self.phase = BUSY
        self.lanes.stats.lane_requests += 1
        self.task = self.lanes.loop.create_task(self._answer(request))  # type: ignore[union-attr]

    async def _answer(self, request: LaneRequest) -> None:
        try:
            response: Any = await self.lanes.door.respond(request)  # type: ignore[arg-type]
        except web.HTTPException as exc:  # below 400, raised again as aiohttp's handler would answer it
            response = exc
        self.task = None
        self._send(response)

    def _send(self, response: Any) -> None:
        transport = self.transport
        if transport is None:
            return
        message, keep_alive = response_message(response, not self.lanes.closing)
        transport.write(message)
        if not keep_alive:
            transport.close()
            return
        if self.ready:
            self._begin()
            return
        if self.leaving:
            self._hand_over()
            return
        self.phase, self.since = (BODY if self.head_done else WAITING), time.monotonic()
        if self.paused:
            self.paused = False
            transport.resume_reading()

    def _body_stalled(self) -> None:
        """A body not received in time: the front door answers it as it answers aiohttp's read deadline (the
        access decision and the queue check first, then ``read_body``'s 408, counted and recorded there)."""
        request = LaneRequest(self.lanes.app, _decoded(self.headers), b"")
        request.content, request.content_length = StalledBody(), self.length
        self._respond(request)  # the 408 closes the connection

    def _hand_over(self) -> None:
        """Give the connection to aiohttp's protocol, from the first byte of the request not taken."""
        transport = self.transport
        if transport is None:
            return
        self.lanes.open.discard(self)
        self.lanes.stats.lane_handovers += 1
        self.transport = None
        handler = self.lanes.server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.paused:
            transport.resume_reading()
        if self.buffer:
            handler.data_received(self.buffer)


def _decoded(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Header names and values as aiohttp's parser gives them (UTF-8, undecodable bytes escaped)."""
    return [(name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
            for name, value in headers]
