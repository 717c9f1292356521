"""The writer-encoder channel over a real socket pair: whole messages, marked buffers beside the pickle, the end of the stream."""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from writer.encoder_channel import EncoderChannel, out_of_band


@pytest.fixture
def ends() -> Iterator[tuple[EncoderChannel, EncoderChannel]]:
    ours, theirs = socket.socketpair()
    left, right = EncoderChannel(ours), EncoderChannel(theirs)
    yield left, right
    left.close()
    right.close()


def _received_meanwhile(channel: EncoderChannel) -> tuple[threading.Thread, list]:
    """Receive one message on a thread (a large message fills the socket before the sender returns)."""
    found: list = []
    thread = threading.Thread(target=lambda: found.append(channel.recv()))
    thread.start()
    return thread, found


def test_a_message_arrives_whole_with_its_marked_buffers_as_views(ends) -> None:
    sender, receiver = ends
    big = os.urandom(3 * 1024 * 1024)
    pieces = [os.urandom(size) for size in (1, 5000, 70_000)]
    hashes = np.arange(28_000, dtype=np.uint64) * 7919
    message = ("prepare", {"big": out_of_band(big), "pieces": [out_of_band(piece) for piece in pieces],
                           "empty": out_of_band(b""), "inline": b"in the pickle", "hashes": hashes, "n": 3})
    thread, found = _received_meanwhile(receiver)
    sender.send(message)
    thread.join(10)
    method, body = found[0]
    assert method == "prepare" and body["n"] == 3 and body["inline"] == b"in the pickle"
    assert isinstance(body["big"], memoryview) and bytes(body["big"]) == big
    assert [bytes(view) for view in body["pieces"]] == pieces
    assert bytes(body["empty"]) == b""
    assert body["hashes"].dtype == np.uint64 and np.array_equal(body["hashes"], hashes)


def test_more_buffers_than_one_sendmsg_takes_arrive_in_order(ends) -> None:
    """Past Linux's 1,024 buffers a call, and past the socket's buffer, sends resume where they stopped."""
    sender, receiver = ends
    pieces = [os.urandom(100 + index % 900) for index in range(2500)]
    thread, found = _received_meanwhile(receiver)
    sender.send([out_of_band(piece) for piece in pieces])
    thread.join(10)
    assert [bytes(view) for view in found[0]] == pieces


def test_marked_buffers_travel_beside_the_pickle_not_inside_it() -> None:
    """On the wire the pickled head stays small: the megabyte goes after it, once."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        sender = EncoderChannel(ours)
        payload = os.urandom(1024 * 1024)
        thread = threading.Thread(target=sender.send, args=(("ok", out_of_band(payload)),))
        thread.start()
        wire = bytearray()
        while len(wire) < 16 or len(wire) < 16 + 8 * struct.unpack_from("<QQ", wire)[1] + struct.unpack_from("<QQ", wire)[0] + len(payload):
            wire += theirs.recv(1 << 20)
        thread.join(10)
    head_length, count = struct.unpack_from("<QQ", wire)
    assert count == 1 and struct.unpack_from("<Q", wire, 16)[0] == len(payload)
    assert head_length < 200
    assert bytes(wire[-len(payload):]) == payload


def test_the_end_of_the_stream_is_eoferror_also_mid_message(ends) -> None:
    sender, receiver = ends
    sender.socket.sendall(struct.pack("<QQ", 10, 0) + b"12345")  # a head of 10 bytes, cut after 5
    sender.socket.shutdown(socket.SHUT_WR)
    with pytest.raises(EOFError):
        receiver.recv()
    with pytest.raises(EOFError):
        receiver.recv()


def test_poll_says_whether_a_message_waits(ends) -> None:
    sender, receiver = ends
    assert receiver.poll(0.01) is False
    sender.send({"state": (1, 2.5)})
    assert receiver.poll(1.0) is True
    assert receiver.recv() == {"state": (1, 2.5)}
    assert receiver.poll(0.01) is False
