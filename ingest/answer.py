"""JSON answers to posts written straight to the connection: the bytes aiohttp's Response sends, without building one.

aiohttp's ``web.Response`` costs about 61,000 instructions an answer (its headers multidict, the content
type's parse, ``prepare``'s header rules, the serializer and the stream writer's buffering; a probe with a
bare handler measured 178,000 against 117,000 instructions a request, docs/benchmarks.md), a sixth of what
ingest spends on a single-event post. ``JsonAnswer`` renders the same status line and headers in the same
order (extra headers, ``Content-Type``, ``Content-Length``, ``Date``, ``Server``, and ``Connection`` by the
same keep-alive rules) and hands them with the body to the request's stream writer in one write. It skips
``on_response_prepare`` signals (the app registers none; a test fails if it does) and knows nothing of
HEAD, chunking, compression or cookies: it answers POST /v1/audit/events only.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion, HttpVersion10, HttpVersion11

from ingest.errors import RETRY_AFTER_SECONDS

REASONS = {status.value: status.phrase for status in HTTPStatus}
RETRY_AFTER = {"Retry-After": RETRY_AFTER_SECONDS}
_SET_HERE = frozenset({"content-length", "date", "server", "connection", "transfer-encoding"})  # by response_message
_CLOSE = "Connection: close\r\n"


class JsonAnswer:
    """One JSON answer: a status, its encoded body and any headers before ``Content-Type``; aiohttp's request
    handler calls ``prepare`` (which writes it all) and ``write_eof``, then reads ``keep_alive``."""

    __slots__ = ("status", "body", "header_lines", "keep_alive")

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.header_lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items()) if headers else ""
        self.keep_alive: bool | None = None  # decided by the request in ``prepare``, as aiohttp does

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        """Write the status line, headers and body in one write (the stream writer counts and drains it)."""
        if self.keep_alive is not None:
            return None
        keep_alive = self.keep_alive = request.keep_alive
        writer = request.writer
        await writer.write_eof(self.message(request.version, keep_alive))
        return writer

    def message(self, version: HttpVersion, keep_alive: bool) -> bytes:
        """The whole answer as sent: status line, headers and body."""
        if keep_alive:
            connection = "Connection: keep-alive\r\n" if version == HttpVersion10 else ""
        else:
            connection = "Connection: close\r\n" if version == HttpVersion11 else ""
        head = (f"HTTP/{version[0]}.{version[1]} {self.status} {REASONS[self.status]}\r\n{self.header_lines}"
                f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
                f"Date: {rfc822_formatted_time()}\r\nServer: {SERVER_SOFTWARE}\r\n{connection}\r\n")
        return head.encode() + self.body

    async def write_eof(self, data: bytes = b"") -> None:
        """Nothing left to write: ``prepare`` sent the whole answer."""


def json_answer(document: Any, status: int) -> JsonAnswer:
    """``document`` encoded with orjson as an answer of ``status``."""
    return JsonAnswer(status, orjson.dumps(document))


def error_answer(status: int, detail: str) -> JsonAnswer:
    """The one error shape, ``{"detail": "..."}`` (as ``errors.error``); a 503 tells producers when to try again
    (as ``errors.unavailable``)."""
    return JsonAnswer(status, orjson.dumps({"detail": detail}), RETRY_AFTER if status == 503 else None)


def response_message(response: web.StreamResponse | JsonAnswer, keep_alive: bool) -> tuple[bytes, bool]:
    """An answer to an HTTP/1.1 post as sent on a connection aiohttp does not serve (``ingest.fast_lane``),
    and whether the connection stays open: a ``JsonAnswer`` as it writes itself, any other response (an
    error, a refusal, a raised redirect) with its own headers, then ``Content-Length``, ``Date``, ``Server``
    and ``Connection: close`` when it or the caller closes, as aiohttp's ``prepare`` adds them."""
    if isinstance(response, JsonAnswer):
        return response.message(HttpVersion11, keep_alive), keep_alive
    keep_alive = keep_alive and response.keep_alive is not False  # False after ``force_close``
    body = getattr(response, "body", None)
    body = body if isinstance(body, (bytes, bytearray)) else b""
    lines = [f"HTTP/1.1 {response.status} {response.reason}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in response.headers.items() if name.lower() not in _SET_HERE]
    lines.append(f"Content-Length: {len(body)}\r\nDate: {rfc822_formatted_time()}\r\nServer: {SERVER_SOFTWARE}\r\n"
                 f"{'' if keep_alive else _CLOSE}\r\n")
    return "".join(lines).encode() + bytes(body), keep_alive
