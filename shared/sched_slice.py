"""The Linux scheduler's time slice of a thread (``sched_setattr``): short for event loops, the default for bulk work.

A thread that gets the default back can also be named (``name_thread``), so that ``top -H``, ``py-spy`` and
``/proc/<pid>/task/*/comm`` tell it from the others.

Since Linux 6.6 the fair scheduler (EEVDF) gives each thread a deadline one slice after it becomes
runnable, and a thread that wakes with an earlier deadline than the running one takes the CPU from it.
Since 6.12 a thread may ask for its own slice (``sched_attr.sched_runtime``, 0.1 to 100 ms; 0 restores the
default, 1.4 ms on this project's two-CPU machine). A short slice changes when a thread runs, not how much
CPU it gets: an event loop that wakes for an acknowledgement no longer waits out the slice of the flush
thread (or of Arrow's threads) that shares its CPU. Threads inherit the slice of the thread that starts
them, so the writer's flush thread asks for the default back (``restore_default``).

Where the call is not available (another OS, an older kernel, a seccomp filter) nothing changes: the
functions answer False and the service runs as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
import struct
from typing import Any

LOOP_SLICE_NS = 100_000  # the shortest slice the kernel allows
# struct sched_attr (include/uapi/linux/sched/types.h): size, policy, flags, nice, priority, runtime,
# deadline, period, util_min, util_max.
_SCHED_ATTR = struct.Struct("=IIQiIQQQII")
_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}  # sched_setattr, sched_getattr
_SCHED_OTHER, _SCHED_BATCH = 0, 3
_PR_SET_NAME = 15
MAX_NAME_BYTES = 15  # the kernel keeps 16 bytes with the terminating NUL


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library on Linux, or None elsewhere."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def _syscall() -> tuple[Any, int, int] | None:
    """libc's ``syscall`` and the two call numbers, or None where this platform has neither."""
    numbers = _SYSCALLS.get(platform.machine())
    libc = _libc()
    if numbers is None or libc is None:
        return None
    return libc.syscall, *numbers


def _thread_attr() -> tuple[int, ...] | None:
    """The calling thread's ``sched_attr`` fields (``sched_getattr``), or None where they cannot be read."""
    found = _syscall()
    if found is None:
        return None
    call, _, get_number = found
    buffer = ctypes.create_string_buffer(_SCHED_ATTR.size)
    # syscall(2) is variadic: every argument goes as a full machine word (pid 0: the calling thread).
    if call(ctypes.c_long(get_number), ctypes.c_long(0), buffer, ctypes.c_ulong(_SCHED_ATTR.size),
            ctypes.c_ulong(0)) != 0:
        return None
    return _SCHED_ATTR.unpack(buffer.raw)


def _set_slice(nanoseconds: int) -> bool:
    """Set the calling thread's slice, keeping its policy, nice value and flags; True when the kernel took it."""
    attr = _thread_attr()
    if attr is None:
        return False
    _, policy, flags, nice, priority, _, deadline, period, low, high = attr
    if policy not in (_SCHED_OTHER, _SCHED_BATCH):
        return False  # real-time or idle threads have no fair slice to change
    call, set_number, _ = _syscall()  # found, or the attributes could not have been read
    packed = _SCHED_ATTR.pack(_SCHED_ATTR.size, policy, flags, nice, priority, nanoseconds, deadline, period, low, high)
    return call(ctypes.c_long(set_number), ctypes.c_long(0), ctypes.create_string_buffer(packed, _SCHED_ATTR.size),
                ctypes.c_ulong(0)) == 0


def shorten_for_event_loop() -> bool:
    """Give the calling thread (an event loop) the shortest slice; True when the kernel took it."""
    return _set_slice(LOOP_SLICE_NS)


def restore_default() -> bool:
    """Give the calling thread the kernel's default slice back; True when the kernel took it."""
    return _set_slice(0)


def current_slice_ns() -> int | None:
    """The calling thread's slice in nanoseconds, or None where it cannot be read."""
    attr = _thread_attr()
    return None if attr is None else attr[5]


def name_thread(name: str) -> bool:
    """Name the calling thread (``prctl(PR_SET_NAME)``, at most ``MAX_NAME_BYTES``); True when it took."""
    libc = _libc()
    encoded = name.encode()
    if libc is None or len(encoded) > MAX_NAME_BYTES:
        return False
    zero = ctypes.c_ulong(0)
    return libc.prctl(ctypes.c_int(_PR_SET_NAME), ctypes.c_char_p(encoded), zero, zero, zero) == 0
