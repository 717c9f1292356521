"""Ingest's readiness after the writer reconnects: it waits for the new writer's own STATUS."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from ingest import keys
from ingest.admin_handlers import STATUS_PENDING, not_ready_reason
from ingest.link import WriterLink
from shared import wire


async def _until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_reconnected_writer_is_not_ready_on_the_previous_writers_status(tmp_path: Path) -> None:
    """Over a real Unix socket. The first writer says HELLO and STATUS (ready) and goes away; the next one
    says HELLO and holds its STATUS back. Until that STATUS comes, ingest is not ready: it does not answer
    with the gone writer's status (which once made a restarted writer's quarantined segments look absent)."""
    sessions: list[asyncio.StreamWriter] = []
    greeting = wire.encode_json(wire.Kind.HELLO, {"role": "writer", "accepts": ["TYPED_BATCH"]})

    async def writer_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sessions.append(writer)
        writer.write(greeting)
        if len(sessions) == 1:
            writer.write(wire.encode_json(wire.Kind.STATUS, {"ready": True, "quarantined_segments": []}))
        await reader.read()

    server = await asyncio.start_unix_server(writer_side, path=str(tmp_path / "w.sock"))
    link = WriterLink(tmp_path / "w.sock", 1000, 1 << 20, 1 << 20)
    app = web.Application()
    app[keys.LINK] = link
    running = asyncio.create_task(link.run())
    try:
        await _until(lambda: not_ready_reason(app) is None)
        sessions[0].close()  # the first writer goes away; the link reconnects to the next
        await _until(lambda: len(sessions) == 2 and link.ready)
        assert not_ready_reason(app) == STATUS_PENDING
        sessions[1].write(wire.encode_json(wire.Kind.STATUS, {"ready": True, "quarantined_segments": ["seg-1"]}))
        await _until(lambda: not_ready_reason(app) is None)
        assert link.writer_status["quarantined_segments"] == ["seg-1"]
    finally:
        link.stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        server.close()
