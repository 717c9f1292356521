"""glibc allocator settings: fewer per-thread arenas, and freed heap memory handed back after big work."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger("auditlake.memory")
M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
# glibc gives each thread that allocates its own arena (up to 8 per core) and keeps what it frees there:
# a flush thread that builds a batch leaves that much resident in its arena. Measured under overload
# (bench/ingest_bench.py): writer RSS max 556 MB with the defaults; 312 MB with 2 arenas; 227 MB with 2
# arenas, a trim after each flush, 8 MiB flushes and Arrow on the system allocator.
ARENAS = 2


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before threads start); False where the C library is not glibc."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Return free heap memory to the system (glibc ``malloc_trim``); True when some was released."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
