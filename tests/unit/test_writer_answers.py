"""The writer's answers to batches: written in the step in which their group commit settles, once each, one write a connection."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from shared import wire
from writer.server import SocketServer
from writer.spool import Spool
from writer.stats import WriterStats


class RecordingTransport:
    """What the server wrote to one ingest connection."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def frames(self) -> list[wire.Frame]:
        data, found = b"".join(self.writes), []
        while data:
            frame, used = wire.decode(data)
            found.append(frame)
            data = data[used:]
        return found


def _server(tmp_path: Path) -> tuple[SocketServer, Spool]:
    spool = Spool(tmp_path / "spool", 1 << 20, 1 << 30)
    spool.open()
    return SocketServer(tmp_path / "w.sock", spool, WriterStats(), 1 << 20, dict), spool


async def _run_committer(spool: Spool):
    return asyncio.create_task(spool.run_committer())


async def _stop(spool: Spool, committer: asyncio.Task[None]) -> None:
    spool.close()
    await committer
    spool.release()


async def test_the_ack_is_written_before_the_commits_done_callbacks_run(tmp_path: Path) -> None:
    """The group's acks leave in the committer's own step: by the time a done callback of the commit future
    runs (a loop turn later), they are written."""
    server, spool = _server(tmp_path)
    transport = RecordingTransport()
    committer = await _run_committer(spool)
    server._on_batch(7, b'{"a":1}\n{"b":2}\n', None, transport)
    future = spool.pending_batch(7)
    assert future is not None
    written_when_settled: list[int] = []
    future.add_done_callback(lambda done: written_when_settled.append(len(transport.writes)))
    await future
    await asyncio.sleep(0)
    assert written_when_settled == [1]
    [ack] = transport.frames()
    assert (ack.kind, ack.batch_id, ack.json()) == (wire.Kind.ACK, 7, {"events": 2})
    await asyncio.sleep(0.01)
    assert len(transport.writes) == 1  # the future's own callback owes nothing more
    await _stop(spool, committer)


async def test_the_answers_leave_before_the_commits_bookkeeping(tmp_path: Path) -> None:
    """Once the group is durable its answers are written first; the index, the dedupe window and the commit's
    metrics follow in the same step (so ingest reads the ACK meanwhile), and the batch is known when it ends."""
    server, spool = _server(tmp_path)
    transport = RecordingTransport()
    seen: list[tuple[int, int, bool]] = []  # at the commit's metrics: writes, index entries, batch known
    spool.observe_commit = lambda durable, sync: seen.append((len(transport.writes), len(spool.index),
                                                               spool.knows_batch(7)))
    written_at: list[tuple[int, bool]] = []
    transport.write = lambda data: (written_at.append((len(spool.index), spool.knows_batch(7))),  # type: ignore[method-assign]
                                    transport.writes.append(data))
    committer = await _run_committer(spool)
    server._on_batch(7, b'{"a":1}\n', None, transport)
    future = spool.pending_batch(7)
    assert future is not None
    await future
    assert written_at == [(0, False)]  # answered before the index and the window were touched
    assert seen == [(1, 1, True)]
    assert spool.knows_batch(7) and spool.pending_batch(7) is None
    await _stop(spool, committer)


async def test_a_group_answers_each_connection_in_one_write_and_a_batch_sent_twice_twice(tmp_path: Path) -> None:
    server, spool = _server(tmp_path)
    first, second = RecordingTransport(), RecordingTransport()
    server._on_batch(1, b'{"a":1}\n', None, first)
    server._on_batch(2, b'{"a":2}\n{"a":3}\n', None, first)
    server._on_batch(2, b'{"a":2}\n{"a":3}\n', None, second)  # re-sent after a reconnect while pending
    server._on_batch(3, b'{"a":4}\n', None, second)
    committer = await _run_committer(spool)  # all four in one group
    await asyncio.sleep(0.05)
    assert len(first.writes) == 1 and len(second.writes) == 1
    assert [(frame.batch_id, frame.json()["events"]) for frame in first.frames()] == [(1, 1), (2, 2)]
    assert [(frame.batch_id, frame.json()["events"]) for frame in second.frames()] == [(2, 2), (3, 1)]
    assert {frame.kind for frame in first.frames() + second.frames()} == {wire.Kind.ACK}
    assert spool.committed_batches == 3
    await _stop(spool, committer)


async def test_a_failed_commit_is_nacked_at_once_and_a_closed_connection_gets_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, spool = _server(tmp_path)

    def failing_sync(fd: int) -> None:
        raise OSError(5, os.strerror(5))

    monkeypatch.setattr("writer.spool.sync_data", failing_sync)
    open_, closed = RecordingTransport(), RecordingTransport()
    closed.closing = True
    server._on_batch(11, b'{"a":1}\n', None, open_)
    server._on_batch(12, b'{"a":2}\n', None, closed)
    committer = await _run_committer(spool)
    await asyncio.sleep(0.05)
    [nack] = open_.frames()
    assert (nack.kind, nack.batch_id, nack.json()["retryable"]) == (wire.Kind.NACK, 11, True)
    assert "spool write failed" in nack.json()["reason"]
    assert closed.writes == []
    assert server.stats.nacked_batches == 1
    await _stop(spool, committer)


async def test_a_commit_future_cancelled_before_its_group_settles_is_nacked(tmp_path: Path) -> None:
    """The done callback answers what the group did not: a future that ended without it."""
    server, spool = _server(tmp_path)
    transport = RecordingTransport()
    server._on_batch(21, b'{"a":1}\n', None, transport)
    future = spool.pending_batch(21)
    assert future is not None
    future.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the call_soon that sends the queued replies
    [nack] = transport.frames()
    assert (nack.kind, nack.batch_id, nack.json()["reason"]) == (wire.Kind.NACK, 21, "writer shutting down")
    committer = await _run_committer(spool)
    await asyncio.sleep(0.05)
    assert len(transport.frames()) == 1  # the group settles later and owes nothing more
    await _stop(spool, committer)


async def test_an_answer_that_fails_leaves_the_committer_running(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path / "spool", 1 << 20, 1 << 30)
    spool.open()
    settled: list[int] = []

    def failing(futures: list[asyncio.Future[int]]) -> None:
        settled.append(len(futures))
        raise RuntimeError("a transport refused the write")

    spool.on_group_settled = failing
    committer = await _run_committer(spool)
    first = await asyncio.wait_for(spool.append(1, b'{"a":1}\n', 1), 5)
    second = await asyncio.wait_for(spool.append(2, b'{"a":2}\n', 1), 5)
    assert second == first + 1
    assert settled == [1, 1]
    assert "answering a group commit failed" in caplog.text
    await _stop(spool, committer)
