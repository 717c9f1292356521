"""The fast lane's connection steps with a recording transport and a front door the test answers for: reading
paused behind a post being answered, a hand-over deferred until the answers before it are written, a bad
request after a good one in one read, and the two deadlines.

The real processes and sockets are tests/test_fast_lane.py's; these pin down orders that a socket test
cannot force (what arrives while a post waits for the writer).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from ingest import fast_lane
from ingest.answer import json_answer
from ingest.body import Rejected, read_body
from ingest.stats import IngestStats
from shared.settings import Settings

MAX_BODY = 1000
SETTINGS = Settings(max_body_bytes=MAX_BODY, header_read_timeout_seconds=5.0, body_read_timeout_seconds=5.0)


class Transport:
    """What a lane does to its connection, recorded."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.paused = False
        self.pauses = 0
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no socket: tcp_keepalive leaves it


class Door:
    """A front door whose answers the test releases one by one (each post gets 202 with its body's id)."""

    def __init__(self) -> None:
        self.app: dict[str, Any] = {}
        self.stats = IngestStats()
        self.recorded: list[int] = []
        self.recorder = self
        self.release: asyncio.Queue[None] = asyncio.Queue()
        self.bodies: list[bytes] = []

    async def respond(self, request: Any) -> Any:
        self.stats.front_door_requests += 1
        try:
            body = await read_body(request, SETTINGS)  # the real read, as the front door's handler reads
        except Rejected as exc:
            self.recorded.append(exc.status)
            return exc.response()
        self.bodies.append(body)
        await self.release.get()
        return json_answer({"got": orjson.loads(body)["id"]}, 202)

    def record(self, request: Any, route: str, status: int, seconds: float, response: Any) -> None:
        self.recorded.append(status)


class Aiohttp:
    """Stands for aiohttp's protocol: what it was handed."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.received = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data


def post(ident: int, pad: int = 0) -> bytes:
    body = orjson.dumps({"id": ident, "pad": "x" * pad})
    return b"POST /v1/audit/events HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def statuses_and_ids(transport: Transport) -> list[tuple[int, int]]:
    """(status, id) of every answer written, in order."""
    answers = []
    for message in transport.written:
        head, _, body = message.partition(b"\r\n\r\n")
        answers.append((int(head.split()[1]), orjson.loads(body).get("got", -1)))
    return answers


@pytest.fixture
async def lane() -> tuple[fast_lane.Lane, Transport, Door, list[Aiohttp]]:
    door = Door()
    handed: list[Aiohttp] = []

    def server() -> Aiohttp:
        handed.append(Aiohttp())
        return handed[-1]

    lanes = fast_lane.Lanes(door, server, SETTINGS)  # type: ignore[arg-type]
    lanes.loop = asyncio.get_running_loop()
    protocol = lanes()
    transport = Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport, door, handed


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_reading_pauses_behind_a_post_being_answered_and_resumes_after(lane) -> None:
    """Three pipelined posts, more than a body's worth behind the first: reading pauses while the first is
    answered; the answers come in order, and reading resumes once nothing waits."""
    protocol, transport, door, _ = lane
    protocol.data_received(post(1) + post(2, pad=600) + post(3, pad=600))
    await settle()
    assert door.bodies and len(door.bodies) == 1 and transport.paused and transport.pauses == 1
    for expected in range(1, 4):
        door.release.put_nowait(None)
        await settle()
        assert [ident for _, ident in statuses_and_ids(transport)] == list(range(1, expected + 1))
    assert not transport.paused and not transport.closed
    assert door.stats.lane_requests == 3


async def test_a_request_not_taken_waits_for_the_answers_before_it(lane) -> None:
    """A GET behind a post in one read pauses reading and goes to aiohttp only once the post's answer is
    written, with exactly its own bytes (later bytes follow it there) and reading resumed."""
    protocol, transport, door, handed = lane
    protocol.data_received(post(1) + b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
    await settle()
    assert handed == [] and transport.written == [] and transport.paused
    protocol.data_received(b"GET /healthz HTTP/1.1\r\n")  # arrived before the pause took: kept for aiohttp
    door.release.put_nowait(None)
    await settle()
    assert statuses_and_ids(transport) == [(202, 1)] and not transport.paused
    assert len(handed) == 1 and transport.protocol is handed[0] and handed[0].transport is transport
    assert handed[0].received == b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\n"
    assert door.stats.lane_handovers == 1


async def test_bytes_llhttp_refuses_after_a_good_post_go_to_aiohttp(lane) -> None:
    """A post and then garbage in one read: the post is answered, aiohttp gets the garbage from its start."""
    protocol, transport, door, handed = lane
    protocol.data_received(post(7) + b"NOT HTTP AT ALL\r\n\r\n")
    door.release.put_nowait(None)
    await settle()
    assert statuses_and_ids(transport) == [(202, 7)]
    assert len(handed) == 1 and handed[0].received == b"NOT HTTP AT ALL\r\n\r\n"


async def test_a_silent_connection_is_closed_after_the_head_deadline(lane) -> None:
    """Nothing (or half a head) by the head deadline: closed without an answer; not before it."""
    protocol, transport, _, _ = lane
    protocol.data_received(b"POST /v1/audit/events HTTP/1.1\r\nHost")
    protocol.check_deadline(protocol.since + 4.9)
    assert not transport.closed
    protocol.check_deadline(protocol.since + 5.1)
    assert transport.closed and transport.written == []


async def test_a_stalled_body_is_answered_408_by_the_front_doors_read(lane) -> None:
    """A head and part of its body, then nothing: after the body deadline the post goes to the front door,
    whose ``read_body`` refuses it with its 408 (JSON, Connection: close); nothing before the deadline.
    (The counts under the real front door: tests/security/test_slow_clients.py.)"""
    protocol, transport, door, _ = lane
    protocol.data_received(b"POST /v1/audit/events HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n{\"id\"")
    assert protocol.phase == fast_lane.BODY
    protocol.check_deadline(protocol.since + 4.9)
    assert transport.written == []
    protocol.check_deadline(protocol.since + 5.1)
    await settle()
    [message] = transport.written
    head, _, body = message.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"\r\nConnection: close" in head and b"application/json" in head
    assert "detail" in orjson.loads(body) and transport.closed
    assert (door.stats.front_door_requests, door.recorded, door.bodies) == (1, [408], [])
