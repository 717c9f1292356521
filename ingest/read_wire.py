"""Messages between ingest and its read process: length-prefixed pickles over a private socket pair."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
import socket
import struct
from typing import Any

HEADER = struct.Struct("!I")
READY = -1  # the call id of the message that says the read process is ready


class StorageUnavailable(Exception):
    """The backend cannot be read right now (answered with 503)."""


class RetentionError(Exception):
    """Retention cannot be read or changed; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status

    def __reduce__(self) -> tuple[Any, tuple[int, str]]:
        return RetentionError, (self.status, str(self))  # crosses from the read process to ingest


@dataclasses.dataclass(frozen=True)
class Page:
    """A page of records already encoded for the response (a JSON array, NDJSON lines or CSV rows)."""

    body: bytes
    count: int
    total: int
    more: bool
    last: tuple[int, str] | None


def encode(message: Any) -> bytes:
    """One message as it travels: 4-byte big-endian length, then the pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def receive(sock: socket.socket) -> Any | None:
    """The next message from a blocking socket, or None at end of stream."""
    header = _exactly(sock, HEADER.size)
    if header is None:
        return None
    body = _exactly(sock, HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


async def receive_async(reader: asyncio.StreamReader) -> Any | None:
    """The next message from a stream, or None at end of stream."""
    try:
        header = await reader.readexactly(HEADER.size)
        body = await reader.readexactly(HEADER.unpack(header)[0])
    except asyncio.IncompleteReadError:
        return None
    return pickle.loads(body)
