"""The writer's socket spoken to directly, beside the real ingest: a batch is greeted and acknowledged as its
frame arrives, byte by byte or whole, and a bad frame closes only that connection."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import orjson

from shared import wire
from tests.ledger import make_events


def _connect(service) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(10)
    client.connect(str(Path(service.env["AUDIT_SERVICE_SOCKET_PATH"])))
    return client


def _frames_until(client: socket.socket, done) -> list[wire.Frame]:
    """Frames read from the writer until ``done(frames)``; [] and EOF end it too."""
    buffer = wire.FrameBuffer()
    frames: list[wire.Frame] = []
    deadline = time.monotonic() + 10
    while not done(frames) and time.monotonic() < deadline:
        data = client.recv(65536)
        if not data:
            break
        frames.extend(buffer.feed(data))
    return frames


def _lines(events: list[dict]) -> bytes:
    return b"".join(orjson.dumps(event) + b"\n" for event in events)


def test_a_batch_sent_byte_by_byte_is_greeted_stored_and_acknowledged(shared_service) -> None:
    events = make_events(3, "socket")
    for event in events:
        event["received_at"] = "2026-12-03T12:00:00.000000Z"
    frame = wire.batch(424242, _lines(events))
    with _connect(shared_service) as client:
        greeting = _frames_until(client, lambda frames: len(frames) >= 2)
        assert [item.kind for item in greeting] == [wire.Kind.HELLO, wire.Kind.STATUS]
        assert "TYPED_BATCH" in greeting[0].json()["accepts"]
        for index in range(len(frame)):
            client.sendall(frame[index:index + 1])
        acks = _frames_until(client, lambda frames: any(item.kind is wire.Kind.ACK for item in frames))
        ack = next(item for item in acks if item.kind is wire.Kind.ACK)
        assert (ack.batch_id, ack.json()) == (424242, {"events": 3})
    ids = {event["audit_event_id"] for event in events}
    deadline = time.monotonic() + 20
    while not ids <= {event["audit_event_id"] for event in shared_service.stored_events()}:
        assert time.monotonic() < deadline, shared_service.tail()
        time.sleep(0.1)


def test_a_bad_frame_closes_only_its_connection(shared_service) -> None:
    with _connect(shared_service) as client:
        _frames_until(client, lambda frames: len(frames) >= 2)
        bad = bytearray(wire.batch(7, b'{"a":1}\n'))
        bad[-1] ^= 0xFF  # the checksum no longer matches
        client.sendall(bytes(bad))
        rest = _frames_until(client, lambda frames: False)  # until the writer closes the connection
        assert all(item.kind is wire.Kind.STATUS for item in rest)
        assert client.recv(1) == b""
    assert "closing ingest connection after a protocol error" in shared_service.tail(200)
    status, body, _ = shared_service.post({"events": make_events(2, "after-bad-frame")})
    assert status == 202 and body["accepted"] == 2
