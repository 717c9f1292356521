"""Reading a request body defensively: media type, size bound, gzip decoded incrementally, a read deadline."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from aiohttp import web

from ingest.errors import error
from shared.settings import Settings

GZIP_WBITS = 16 + zlib.MAX_WBITS
JSON_TYPES = ("application/json",)
# What producers send, accepted without parsing the header (the parse took about 2 % of a one-event request).
USUAL_JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8",
                              "application/json; charset=UTF-8", "application/json;charset=UTF-8"})


class Rejected(Exception):
    """A request the service refuses with a 4xx; ``response()`` is the JSON answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    def response(self) -> web.Response:
        """The JSON error answer; a refused body is not read further, so the connection is not reused."""
        answer = error(self.status, self.detail)
        if self.status in (408, 413):
            answer.force_close()
        return answer


def handler_options(settings: Settings) -> dict[str, Any]:
    """aiohttp server options for the ingest listener.

    ``keepalive_timeout`` closes a connection that has not delivered a complete request head within
    the header deadline (from its opening, or from the previous response; aiohttp closes an idle
    connection when its keep-alive timer fires). Bodies are decoded here, not by aiohttp, so that the
    size bound applies to the decoded bytes.
    """
    return {"keepalive_timeout": settings.header_read_timeout_seconds, "auto_decompress": False,
            "handler_cancellation": True}


def check_media_type(request: web.Request) -> None:
    """Accept JSON (``application/json``, ``application/*+json``) or no Content-Type; 415 otherwise."""
    raw = request.headers.get("Content-Type", "").strip()
    if not raw or raw in USUAL_JSON_TYPES:
        return
    media = request.content_type.lower()
    if not (media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))):
        raise Rejected(415, f"Content-Type must be application/json, not {media[:64]!r}")
    charset = (request.charset or "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise Rejected(415, f"charset must be utf-8, not {charset[:32]!r}")


class GzipDecoder:
    """Inflates gzip (one or more members) chunk by chunk, never producing more than ``limit`` + 1 bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._inflater = zlib.decompressobj(GZIP_WBITS)
        self._started = False

    def feed(self, data: bytes) -> bytes:
        """Decoded bytes of the next compressed chunk; raise Rejected (413 too large, 400 corrupt)."""
        parts = []
        try:
            while data:
                self._started = True
                chunk = self._inflater.decompress(data, self.limit - self.size + 1)
                self.size += len(chunk)
                if self.size > self.limit:
                    raise Rejected(413, f"decompressed body exceeds {self.limit} bytes")
                parts.append(chunk)
                if self._inflater.eof:
                    data = self._inflater.unused_data
                    if data:
                        self._inflater = zlib.decompressobj(GZIP_WBITS)
                else:
                    data = self._inflater.unconsumed_tail
        except zlib.error:
            raise Rejected(400, "body is not valid gzip") from None
        return b"".join(parts)

    def finish(self) -> None:
        """Raise Rejected (400) when the stream stopped inside a gzip member."""
        if not self._started or not self._inflater.eof:
            raise Rejected(400, "gzip body is truncated")


def _decoder(request: web.Request, limit: int) -> GzipDecoder | None:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return GzipDecoder(limit)
    raise Rejected(415, f"unsupported Content-Encoding {encoding[:32]!r}; use gzip or none")


async def read_body(request: web.Request, settings: Settings) -> bytes:
    """The decoded body, at most ``max_body_bytes`` both on the wire and decoded, within the read deadline."""
    limit = settings.max_body_bytes
    check_media_type(request)
    decoder = _decoder(request, limit)
    if decoder is None and request.content.is_eof():  # the whole body is here already: no deadline needed
        body = request.content.read_nowait()
        if len(body) > limit:
            raise Rejected(413, f"body exceeds {limit} bytes")
        return body
    if request.content_length is not None and request.content_length > limit:
        raise Rejected(413, f"body exceeds {limit} bytes")
    received = 0
    parts: list[bytes] = []
    try:
        async with asyncio.timeout(settings.body_read_timeout_seconds):
            while True:
                chunk = await request.content.readany()
                if not chunk:
                    break
                received += len(chunk)
                if received > limit:
                    raise Rejected(413, f"body exceeds {limit} bytes")
                parts.append(decoder.feed(chunk) if decoder is not None else chunk)
    except TimeoutError:
        raise Rejected(408, f"request body not received within {settings.body_read_timeout_seconds:g} s") from None
    except web.RequestPayloadError as exc:
        raise Rejected(400, f"malformed request body: {exc}") from None
    if decoder is not None:
        decoder.finish()
    return b"".join(parts)
