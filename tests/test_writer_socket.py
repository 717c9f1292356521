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


def test_an_event_whose_ts_cannot_be_read_is_quarantined_and_the_rest_stored(shared_service) -> None:
    """A spooled line whose ``ts`` Arrow cannot read (Arabic-Indic digits) or that names year 0000 does not
    stop the writer: it goes to the spool's quarantine with the unparsable lines, the batch's other events
    are stored, no flush fails, and events sent after it are stored as well."""
    events = make_events(4, "unreadable-ts")
    for event in events:
        event["received_at"] = "2026-12-03T12:00:00.000000Z"
    events[1]["ts"] = "\u0662\u0660\u0662\u0666-01-01T00:00:00.000000Z"
    events[2]["ts"] = "0000-01-01T00:00:00.000000Z"
    before = shared_service.writer_status()
    with _connect(shared_service) as client:
        _frames_until(client, lambda frames: len(frames) >= 2)  # HELLO, STATUS
        client.sendall(wire.batch(434343, _lines(events)))
        acks = _frames_until(client, lambda frames: any(item.kind is wire.Kind.ACK for item in frames))
        assert any(item.kind is wire.Kind.ACK and item.batch_id == 434343 for item in acks)
    later = make_events(2, "after-unreadable-ts")
    assert shared_service.post(later)[0] == 202
    wanted = {events[0]["audit_event_id"], events[3]["audit_event_id"]} | {event["audit_event_id"] for event in later}
    deadline = time.monotonic() + 20
    while not wanted <= {event["audit_event_id"] for event in shared_service.stored_events()}:
        assert time.monotonic() < deadline, shared_service.tail()
        time.sleep(0.1)
    stored = {event["audit_event_id"] for event in shared_service.stored_events()}
    assert events[1]["audit_event_id"] not in stored and events[2]["audit_event_id"] not in stored
    after = shared_service.writer_status()
    assert after["failed_flushes"] == before["failed_flushes"]
    assert after["unparsable_lines"] - before["unparsable_lines"] == 2
    quarantined = b"".join(path.read_bytes() for path in (shared_service.spool / "quarantine").glob("unparsable-*"))
    assert events[1]["audit_event_id"].encode() in quarantined and events[2]["audit_event_id"].encode() in quarantined
