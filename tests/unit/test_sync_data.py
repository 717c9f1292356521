"""``fsutil.sync_data``: fdatasync where the platform has it, fsync where it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from writer.fsutil import sync_data


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
