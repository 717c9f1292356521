"""``ingest.answer.JsonAnswer`` sends the bytes aiohttp's own Response sends, and keeps or closes the connection alike.

A real aiohttp server on loopback answers each request twice, once with the Response the app's error helpers
build (``ingest.errors``) and once with the equivalent ``JsonAnswer``; raw requests over a socket in every
HTTP version and ``Connection`` spelling compare the answers byte for byte (the ``Date`` value aside) and
check whether the connection then serves another request.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from ingest.answer import JsonAnswer, error_answer, json_answer
from ingest.errors import error, json_response, unavailable

ANSWERS = {
    "accepted": (lambda: json_response({"accepted": 3, "queued": 70}, 202),
                 lambda: json_answer({"accepted": 3, "queued": 70}, 202)),
    "nothing-kept": (lambda: json_response({"accepted": 0, "queued": 0}, 202),
                     lambda: json_answer({"accepted": 0, "queued": 0}, 202)),
    "full": (lambda: unavailable("audit writer queue is full"), lambda: error_answer(503, "audit writer queue is full")),
    "invalid": (lambda: error(400, "event 0: 'ts' is not a timestamp: \"ünïcode\""),
                lambda: error_answer(400, "event 0: 'ts' is not a timestamp: \"ünïcode\"")),
    "too-large": (lambda: error(413, "too large"), lambda: error_answer(413, "too large")),
    "timed-out": (lambda: error(504, "no ack in 1.0 s"), lambda: error_answer(504, "no ack in 1.0 s")),
}
HEADS = {
    "1.1": b"HTTP/1.1",
    "1.1 close": b"HTTP/1.1\r\nConnection: close",
    "1.1 keep-alive": b"HTTP/1.1\r\nConnection: keep-alive",
    "1.0": b"HTTP/1.0",
    "1.0 keep-alive": b"HTTP/1.0\r\nConnection: Keep-Alive",
}
DATE = re.compile(rb"\r\nDate: [^\r]+\r\n")


@pytest.fixture
async def port() -> AsyncIterator[int]:
    """A loopback aiohttp server: ``/<answer>/<way>`` reads the body, then answers with aiohttp's Response
    (way ``response``) or with ``JsonAnswer`` (way ``answer``)."""

    async def handler(request: web.Request) -> web.StreamResponse | JsonAnswer:
        await request.read()
        by_response, by_answer = ANSWERS[request.match_info["answer"]]
        return by_response() if request.match_info["way"] == "response" else by_answer()

    app = web.Application()
    app.router.add_post("/{answer}/{way}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """One whole answer (head and Content-Length body), or b"" when the connection was closed first."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    except asyncio.IncompleteReadError as exc:
        assert exc.partial == b""
        return b""
    length = int(re.search(rb"\r\nContent-Length: (\d+)\r\n", head).group(1))
    return head + await asyncio.wait_for(reader.readexactly(length), 5)


async def exchange(port: int, target: str, head: bytes) -> tuple[bytes, bool]:
    """Post to ``target`` with ``head`` (version and headers); the answer, and whether the connection then
    answered a second request."""
    version, _, headers = head.partition(b"\r\n")
    request = b"POST %s %s\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n%s\r\n{}" % (
        target.encode(), version, headers + b"\r\n" if headers else b"")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        first = await read_answer(reader)
        try:
            writer.write(request)
            await writer.drain()
            second = await read_answer(reader)
        except ConnectionError:
            second = b""
        return first, bool(second)
    finally:
        writer.close()


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("name", ANSWERS)
async def test_the_answer_is_what_aiohttps_response_sends(port: int, name: str, head: str) -> None:
    by_response, kept_by_response = await exchange(port, f"/{name}/response", HEADS[head])
    by_answer, kept_by_answer = await exchange(port, f"/{name}/answer", HEADS[head])
    assert by_response.startswith(b"HTTP/1.")
    assert DATE.sub(b"\r\nDate: -\r\n", by_answer) == DATE.sub(b"\r\nDate: -\r\n", by_response)
    assert kept_by_answer == kept_by_response == (head in ("1.1", "1.1 keep-alive", "1.0 keep-alive"))


async def test_the_date_is_the_current_one(port: int) -> None:
    """The Date header is aiohttp's formatting of now (not a value frozen at start)."""
    first, _ = await exchange(port, "/accepted/answer", HEADS["1.1"])
    await asyncio.sleep(1.1)
    second, _ = await exchange(port, "/accepted/answer", HEADS["1.1"])
    assert DATE.search(first).group(0) != DATE.search(second).group(0)
