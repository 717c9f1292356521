"""The scheduler slice of a thread: shortened for an event loop, inherited by the threads it starts, given back."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from shared import sched_slice


def in_thread(work: Callable[[], Any]) -> Any:
    """Run ``work`` on a thread of its own (a slice or nice value set there leaves this thread alone)."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


SUPPORTED = in_thread(sched_slice.shorten_for_event_loop)
needs_custom_slices = pytest.mark.skipif(not SUPPORTED, reason="this kernel does not take a thread's own slice")


@needs_custom_slices
def test_a_loop_thread_gets_the_shortest_slice_and_can_give_it_back() -> None:
    def work() -> tuple[int | None, bool, int | None, bool, int | None]:
        default = sched_slice.current_slice_ns()
        shortened = sched_slice.shorten_for_event_loop()
        short = sched_slice.current_slice_ns()
        restored = sched_slice.restore_default()
        return default, shortened, short, restored, sched_slice.current_slice_ns()

    default, shortened, short, restored, after = in_thread(work)
    assert shortened and restored
    assert short == sched_slice.LOOP_SLICE_NS
    assert default is not None and default > sched_slice.LOOP_SLICE_NS
    assert after == default


@needs_custom_slices
def test_the_thread_keeps_its_nice_value() -> None:
    """The slice is set with the thread's other attributes as they were: a nice value set before stays."""
    def work() -> tuple[int, int]:
        os.setpriority(os.PRIO_PROCESS, 0, 5)  # on Linux this is the calling thread's own nice value
        sched_slice.shorten_for_event_loop()
        shortened = os.getpriority(os.PRIO_PROCESS, 0)
        sched_slice.restore_default()
        return shortened, os.getpriority(os.PRIO_PROCESS, 0)

    assert in_thread(work) == (5, 5)


@needs_custom_slices
def test_threads_started_by_a_loop_thread_inherit_its_slice() -> None:
    """Why the writer's flush thread restores the default: a thread inherits the slice of its starter."""
    def work() -> int | None:
        sched_slice.shorten_for_event_loop()
        return in_thread(sched_slice.current_slice_ns)

    assert in_thread(work) == sched_slice.LOOP_SLICE_NS


def test_where_the_call_is_missing_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sched_slice, "_syscall", lambda: None)
    assert sched_slice.shorten_for_event_loop() is False
    assert sched_slice.restore_default() is False
    assert sched_slice.current_slice_ns() is None


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/comm"), reason="no /proc thread names here")
def test_a_thread_can_be_named_for_top_and_proc() -> None:
    def work() -> tuple[bool, str, bool, str]:
        named = sched_slice.name_thread("auditlake-test")
        seen = open("/proc/thread-self/comm").read().strip()
        too_long = sched_slice.name_thread("x" * (sched_slice.MAX_NAME_BYTES + 1))
        return named, seen, too_long, open("/proc/thread-self/comm").read().strip()

    assert in_thread(work) == (True, "auditlake-test", False, "auditlake-test")
