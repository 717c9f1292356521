"""Flushed spool segments: renamed, cut down a few MiB at a time on the reaper's thread, then deleted."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from shared import spool_format
from writer.segment_reaper import REAPER_THREAD_NAME, SegmentReaper

MIB = 1024 * 1024


def _segment(directory: Path, first_seq: int, size: int) -> Path:
    path = directory / spool_format.segment_name(first_seq)
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def _wait_for_removals(reaper: SegmentReaper, count: int) -> None:
    deadline = time.monotonic() + 10
    while reaper.removed < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reaper.removed == count


def test_a_segment_is_renamed_then_cut_down_step_by_step_then_deleted(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Each cut leaves ``step_bytes`` fewer; during the cuts only the ``.removing`` name exists (a restart
    never reads a cut segment), on the reaper's own thread; at the end neither name does."""
    path = _segment(tmp_path, 1, 10 * MIB + 5)
    dying = path.with_name(path.name + spool_format.REMOVING_SUFFIX)
    cuts: list[tuple[int, bool, bool, str]] = []
    real_ftruncate = os.ftruncate

    def recording(fd: int, size: int) -> None:
        comm = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()
        cuts.append((size, path.exists(), dying.exists(), comm))
        real_ftruncate(fd, size)

    monkeypatch.setattr(os, "ftruncate", recording)
    reaper = SegmentReaper(step_bytes=2 * MIB, pause_seconds=0.001)
    reaper.remove([path])
    _wait_for_removals(reaper, 1)
    reaper.close()
    assert [size for size, *_ in cuts] == [8 * MIB + 5, 6 * MIB + 5, 4 * MIB + 5, 2 * MIB + 5, 5, 0]
    assert all(not old and new for _, old, new, _ in cuts)
    assert {name for *_, name in cuts} == {REAPER_THREAD_NAME}  # the OS thread name, as ``top -H`` shows it
    assert not path.exists() and not dying.exists()
    assert reaper.removed == 1


def test_remove_returns_at_once_and_the_cuts_pause_between_steps(tmp_path: Path) -> None:
    """The caller (the flush) does not wait for a removal; the removal itself takes its pauses."""
    path = _segment(tmp_path, 1, 4 * MIB)
    reaper = SegmentReaper(step_bytes=MIB, pause_seconds=0.05)
    started = time.monotonic()
    reaper.remove([path])
    assert time.monotonic() - started < 0.05
    _wait_for_removals(reaper, 1)
    assert time.monotonic() - started >= 4 * 0.05
    reaper.close()


def test_close_removes_what_is_queued_without_waiting_out_the_pauses(tmp_path: Path) -> None:
    """At shutdown the queued segments go at once, a pause in progress included."""
    paths = [_segment(tmp_path, first, 8 * MIB) for first in (1, 100)]
    reaper = SegmentReaper(step_bytes=MIB, pause_seconds=30)
    reaper.remove(paths)
    time.sleep(0.05)  # the first removal is in its first pause
    started = time.monotonic()
    reaper.close()
    assert time.monotonic() - started < 5
    assert list(tmp_path.iterdir()) == []
    assert reaper.removed == 2


def test_a_segment_already_gone_is_skipped(tmp_path: Path) -> None:
    reaper = SegmentReaper(pause_seconds=0)
    reaper.remove([tmp_path / spool_format.segment_name(7)])
    reaper.close()
    assert reaper.removed == 0
