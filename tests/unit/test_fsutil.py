"""``writer.fsutil``: ``write_vectored`` hands every byte over in order, at most IOV_MAX views a call, short writes
resumed; ``sync_data`` is fdatasync where the platform has it, fsync where it does not."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from writer.fsutil import IOV_MAX, sync_data, write_vectored


def test_pieces_reach_a_short_writer_whole_and_in_order_within_the_view_limit() -> None:
    """A writer that takes at most 7 bytes a call (cutting views in the middle) still receives every piece's
    bytes once, in order; empty pieces are skipped and a numpy array goes as its bytes."""
    pieces = [b"abc", b"", memoryview(b"defghij"), np.arange(5, dtype=np.uint16), *[bytes([n % 256]) for n in range(2500)]]
    received = bytearray()
    calls = []

    def write(views: list[memoryview]) -> int:
        calls.append(len(views))
        data = b"".join(views)[:7]
        received.extend(data)
        return len(data)

    write_vectored(pieces, write)
    assert bytes(received) == b"".join(bytes(memoryview(piece).cast("B")) for piece in pieces)
    assert max(calls) <= IOV_MAX


def _counting(monkeypatch: pytest.MonkeyPatch, name: str, calls: list[str]) -> None:
    real = getattr(os, name)
    monkeypatch.setattr(os, name, lambda fd: (calls.append(name), real(fd))[1])


def test_sync_data_uses_fdatasync_and_not_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data sync of a written file is one fdatasync: no fsync, which would also commit its timestamps."""
    calls: list[str] = []
    _counting(monkeypatch, "fdatasync", calls)
    _counting(monkeypatch, "fsync", calls)
    fd = os.open(tmp_path / "segment", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"record")
        sync_data(fd)
    finally:
        os.close(fd)
    assert calls == ["fdatasync"]
    assert (tmp_path / "segment").read_bytes() == b"record"


def test_sync_data_falls_back_to_fsync_without_fdatasync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a platform without fdatasync (macOS) the file is fsync'd instead."""
    calls: list[str] = []
    _counting(monkeypatch, "fsync", calls)
    monkeypatch.delattr(os, "fdatasync")
    fd = os.open(tmp_path / "segment", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        sync_data(fd)
    finally:
        os.close(fd)
    assert calls == ["fsync"]
