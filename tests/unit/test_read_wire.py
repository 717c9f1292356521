"""The read process's messages: framing over a socket, errors that keep their meaning, worker answers."""

from __future__ import annotations

import os
import socket
import threading
from datetime import datetime, timezone
from typing import Any

from ingest import read_wire
from ingest.read_engine import SearchResult
from ingest.read_plan import Plan, ReadCancelled
from ingest.read_worker import ReadWorker
from ingest.record_encoding import encode_records


def test_messages_cross_a_socket_in_pieces_and_end_cleanly() -> None:
    """Large messages arrive whole though the socket delivers them in pieces; EOF is None."""
    ours, theirs = socket.socketpair()
    big = {"body": b"x" * 3_000_000, "n": 7}
    sender = threading.Thread(target=lambda: (ours.sendall(read_wire.encode(big)), ours.close()))
    sender.start()
    assert read_wire.receive(theirs) == big
    assert read_wire.receive(theirs) is None
    sender.join()


def test_errors_keep_their_class_and_status_across_pickling() -> None:
    """RetentionError keeps its HTTP status; the others their message."""
    ours, theirs = socket.socketpair()
    ours.sendall(read_wire.encode((1, False, read_wire.RetentionError(502, "no lifecycle"))))
    ours.sendall(read_wire.encode((2, False, read_wire.StorageUnavailable("down"))))
    _, _, retention = read_wire.receive(theirs)
    _, _, unavailable = read_wire.receive(theirs)
    assert isinstance(retention, read_wire.RetentionError) and retention.status == 502
    assert str(retention) == "no lifecycle"
    assert isinstance(unavailable, read_wire.StorageUnavailable) and str(unavailable) == "down"


def test_record_encodings() -> None:
    """JSON array, NDJSON lines and CSV rows of the same records."""
    records = [{"ts": "2026-01-01T00:00:00Z", "type": "auth", "user_email": "a@example.com"},
               {"ts": "2026-01-01T00:00:01Z", "type": "x,y", "details": {"n": 1}}]
    assert encode_records(records, "json").startswith(b'[{"ts"')
    assert encode_records(records, "ndjson").count(b"\n") == 2
    rows = encode_records(records, "csv").decode().split("\r\n")
    assert len(rows) == 3 and rows[1].startswith('2026-01-01T00:00:01Z,,') and '"x,y"' in rows[1]


class _SlowView:
    """A storage view whose search waits for its plan's cancel event (or answers at once)."""

    def __init__(self) -> None:
        self.started = threading.Event()

    def search(self, plan: Plan, since: datetime, until: datetime) -> Any:
        if plan.filters.get("slow"):
            self.started.set()
            plan.cancel.wait(10)
            plan.check()
        return SearchResult([{"a": 1}], 1, False, None)

    def describe(self) -> dict[str, Any]:
        raise ZeroDivisionError("a bug")


def test_the_worker_answers_cancels_and_survives_a_bug() -> None:
    """A search comes back encoded; a cancel stops a running search (ReadCancelled); a bug is a RuntimeError."""
    ours, theirs = socket.socketpair()
    view = _SlowView()
    worker = ReadWorker(theirs, view, 4)
    thread = threading.Thread(target=worker.serve, daemon=True)
    thread.start()
    assert read_wire.receive(ours) == (read_wire.READY, True, os.getpid())
    now = datetime.now(timezone.utc)
    slow = Plan(0, 1, 10, {"slow": "1"}, cancel=None)
    ours.sendall(read_wire.encode((1, "search", (slow, now, now, "json"))))
    assert view.started.wait(5)
    ours.sendall(read_wire.encode((2, "search", (Plan(0, 1, 10, {}, cancel=None), now, now, "ndjson"))))
    call_id, ok, page = read_wire.receive(ours)
    assert (call_id, ok) == (2, True) and page == read_wire.Page(b'{"a":1}\n', 1, 1, False, None)
    ours.sendall(read_wire.encode((1, "cancel", ())))
    call_id, ok, error = read_wire.receive(ours)
    assert (call_id, ok) == (1, False) and isinstance(error, ReadCancelled)
    ours.sendall(read_wire.encode((3, "describe", ())))
    call_id, ok, error = read_wire.receive(ours)
    assert (call_id, ok) == (3, False) and isinstance(error, RuntimeError) and "ZeroDivisionError" in str(error)
    ours.close()
    thread.join(5)
    assert not thread.is_alive()
