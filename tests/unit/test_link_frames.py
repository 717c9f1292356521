"""How ingest's link packs queued requests into frames: lines and typed fields together while they fit."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import orjson
import pytest

from ingest.link import AckTimeout, Submission, WriterLink, WriterUnavailable
from shared import typed_columns, wire


def _link(max_frame_bytes: int) -> WriterLink:
    """A link whose writer said HELLO with TYPED_BATCH among what it accepts."""
    link = WriterLink(Path("/nonexistent"), 1000, 1 << 20, max_frame_bytes)
    link._on_frame(wire.Frame(wire.Kind.HELLO, 0, orjson.dumps({"role": "writer", "accepts": ["TYPED_BATCH"]})))
    return link


def _queue(link: WriterLink, items: list[tuple[bytes, bytes]]) -> None:
    loop = asyncio.get_running_loop()
    for payload, columns in items:
        link._pending.append(Submission(payload, payload.count(b"\n"), columns, loop.create_future(), math.inf))


async def test_requests_share_a_typed_frame_with_their_columns_in_order() -> None:
    link = _link(1 << 20)
    _queue(link, [(b'{"a":1}\n', b"[1]"), (b'{"b":2}\n{"c":3}\n', b"[2]")])
    frame, _ = wire.decode(link._next_batch().frame)
    assert frame.kind is wire.Kind.TYPED_BATCH
    assert wire.typed_parts(frame.payload) == (b'{"a":1}\n{"b":2}\n{"c":3}\n', typed_columns.frame_section([b"[1]", b"[2]"]))


async def test_columns_count_against_the_frame_size() -> None:
    """A second request whose lines would fit but not with its columns waits for the next frame."""
    link = _link(200)
    _queue(link, [(b"x" * 60 + b"\n", b"c" * 60), (b"y" * 30 + b"\n", b"d" * 60)])
    first = link._next_batch()
    assert len(first.submissions) == 1
    assert wire.decode(first.frame)[0].kind is wire.Kind.TYPED_BATCH
    assert len(link._next_batch().submissions) == 1


async def test_a_request_whose_columns_do_not_fit_goes_as_plain_lines() -> None:
    """Lines that fit the frame alone but not with their columns are sent as a BATCH; the writer parses them."""
    link = _link(100)
    _queue(link, [(b"x" * 90 + b"\n", b"c" * 40)])
    frame, _ = wire.decode(link._next_batch().frame)
    assert (frame.kind, frame.payload) == (wire.Kind.BATCH, b"x" * 90 + b"\n")


async def test_a_writer_that_does_not_list_typed_batches_gets_plain_batches() -> None:
    """An older writer's HELLO has no ``accepts``: it would not understand TYPED_BATCH, so it gets lines only."""
    link = WriterLink(Path("/nonexistent"), 1000, 1 << 20, 1 << 20)
    link._on_frame(wire.Frame(wire.Kind.HELLO, 0, orjson.dumps({"role": "writer", "pid": 1})))
    assert link.hello and not link.typed_batches
    _queue(link, [(b'{"a":1}\n', b"[1]")])
    frame, _ = wire.decode(link._next_batch().frame)
    assert (frame.kind, frame.payload) == (wire.Kind.BATCH, b'{"a":1}\n')


async def test_an_ack_settles_its_requests_in_the_callback_that_reads_it(tmp_path: Path) -> None:
    """Over a real Unix socket: the bytes of the writer's ACK settle the requests of its frame inside the
    link's ``data_received``, not one loop iteration later in a reader task."""
    frames: asyncio.Queue[wire.Frame] = asyncio.Queue()

    async def writer_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(wire.encode_json(wire.Kind.HELLO, {"role": "writer", "accepts": ["TYPED_BATCH"]}))
        received = wire.FrameBuffer()
        while data := await reader.read(65536):
            for frame in received.feed(data):
                await frames.put(frame)

    server = await asyncio.start_unix_server(writer_side, path=str(tmp_path / "w.sock"))
    link = WriterLink(tmp_path / "w.sock", 1000, 1 << 20, 1 << 20)
    running = asyncio.create_task(link.run())
    try:
        while not link.ready:
            await asyncio.sleep(0.01)
        submission = link.submit(b'{"a":1}\n', 1, b"[1]")
        frame = await asyncio.wait_for(frames.get(), 5)
        assert link._stream is not None
        link._stream.transport.get_protocol().data_received(wire.ack(frame.batch_id, 1))
        assert submission.future.done() and submission.future.result() is None
        assert link.queued_events == 0
    finally:
        link.stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        server.close()


async def test_a_writer_catching_up_gets_one_frame_at_a_time(tmp_path: Path) -> None:
    """Over a real Unix socket. While the writer's STATUS says ``catching_up``, a second frame waits for the
    first one's ACK (its requests gather meanwhile); once a STATUS says it caught up, that frame goes at once,
    and three may be unanswered, not four."""
    frames: asyncio.Queue[wire.Frame] = asyncio.Queue()
    sessions: list[asyncio.StreamWriter] = []

    async def writer_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sessions.append(writer)
        writer.write(wire.encode_json(wire.Kind.HELLO, {"role": "writer", "accepts": ["TYPED_BATCH"]}))
        writer.write(wire.encode_json(wire.Kind.STATUS, {"ready": True, "catching_up": True}))
        received = wire.FrameBuffer()
        while data := await reader.read(65536):
            for frame in received.feed(data):
                await frames.put(frame)

    async def no_frame_within(seconds: float) -> bool:
        try:
            await asyncio.wait_for(frames.get(), seconds)
        except TimeoutError:
            return True
        return False

    server = await asyncio.start_unix_server(writer_side, path=str(tmp_path / "w.sock"))
    link = WriterLink(tmp_path / "w.sock", 1000, 1 << 20, 1 << 20)
    running = asyncio.create_task(link.run())
    try:
        while not (link.ready and link.writer_status):
            await asyncio.sleep(0.01)
        assert link.frames_allowed == 1
        first = link.submit(b'{"a":1}\n', 1, b"[1]")
        first_frame = await asyncio.wait_for(frames.get(), 5)
        second = link.submit(b'{"b":2}\n', 1, b"[2]")
        assert await no_frame_within(0.3) and link.frames_in_flight == 1 and not second.sent
        sessions[0].write(wire.encode_json(wire.Kind.STATUS, {"ready": True, "catching_up": False}))
        second_frame = await asyncio.wait_for(frames.get(), 5)  # no ACK came: the caught-up STATUS let it go
        assert link.frames_allowed == 4 and link.frames_in_flight == 2
        link.submit(b'{"c":3}\n', 1, b"[3]")
        third_frame = await asyncio.wait_for(frames.get(), 5)  # a third may be unanswered too
        link.submit(b'{"d":4}\n', 1, b"[4]")
        fourth_frame = await asyncio.wait_for(frames.get(), 5)  # and a fourth
        assert link.frames_in_flight == 4
        fifth = link.submit(b'{"e":5}\n', 1, b"[5]")
        assert await no_frame_within(0.3) and not fifth.sent
        sessions[0].write(wire.ack(first_frame.batch_id, 1))
        fifth_frame = await asyncio.wait_for(frames.get(), 5)
        await asyncio.wait_for(first.future, 5)
        assert [wire.typed_parts(frame.payload)[0]
                for frame in (first_frame, second_frame, third_frame, fourth_frame, fifth_frame)
                ] == [b'{"a":1}\n', b'{"b":2}\n', b'{"c":3}\n', b'{"d":4}\n', b'{"e":5}\n']
    finally:
        link.stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        server.close()


async def test_waits_end_at_their_deadlines_oldest_first() -> None:
    """Past its deadline a sent submission fails with AckTimeout (it stays in its frame, whose ack may still
    come) and a queued one with WriterUnavailable, withdrawn and no longer counted; one whose request was
    cancelled stays queued; nothing due later is touched, and a wait ends with its submission's outcome."""
    link = WriterLink(Path("/nonexistent"), 1000, 1 << 20, 1 << 20, ack_timeout=5.0)
    link.hello = True
    link._stream = object()  # connected, as far as ``submit`` can tell
    sent = [link.submit(b'{"a":1}\n', 1, b"[1]"), link.submit(b'{"b":2}\n', 1, b"[2]")]
    inflight = link._next_batch()
    link._inflight[inflight.batch_id] = inflight
    queued = [link.submit(b'{"c":3}\n', 1, b"[3]") for _ in range(3)]
    queued[1].future.cancel()  # its request went away
    later = link.submit(b'{"d":4}\n', 1, b"[4]")
    assert [item.deadline for item in (*sent, *queued, later)] == sorted(item.deadline for item in (*sent, *queued, later))
    waiting = link.wait(sent[0])
    link._expire_due(sent[0].deadline - 0.001)
    assert not any(item.future.done() for item in (*sent, queued[0], queued[2], later))
    link._expire_due(queued[2].deadline)
    for item in sent:
        assert isinstance(item.future.exception(), AckTimeout)
    assert list(inflight.submissions) == sent and link.frames_in_flight == 1
    for item in (queued[0], queued[2]):
        assert isinstance(item.future.exception(), WriterUnavailable)
    assert list(link._pending) == [queued[1], later] and not later.future.done()
    assert link.queued_events == 4  # the two withdrawn are no longer counted; the sent ones until their ack
    with pytest.raises(AckTimeout):
        await waiting
