"""glibc allocator settings: fewer per-thread arenas, big blocks reused from the heap, memory handed back above a budget."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# glibc gives each thread that allocates its own arena (up to 8 per core) and keeps what it frees there:
# a flush thread that builds a batch leaves that much resident in its arena. Measured under overload
# (bench/ingest_bench.py): writer RSS max 556 MB with the defaults; 312 MB with 2 arenas; 227 MB with 2
# arenas, a trim after each flush, 8 MiB flushes and Arrow on the system allocator.
ARENAS = 2
# glibc serves a block of 128 KiB or more with its own mmap and unmaps it when freed, so the next one
# faults every page in again; on this class of machine (a Firecracker VM) a page fault costs ~4 us, so a
# copy into fresh memory runs at 0.8 GB/s against 3.6 GB/s into reused memory. A frame (up to 16 MiB),
# a spool read, a day's file and its gzip and Parquet buffers are all such blocks, several copies per
# event in each process. Blocks under 32 MiB now come from the heap and are reused; the heap's top is
# given back once 64 MiB of it is free, and the writer trims the rest when it is above its budget
# (``writer.flusher``). Measured (bench/ingest_bench.py --seconds 10 --overload-seconds 0 --skip-floor, same
# session): 100-event bodies 35,290 -> 38,730 events/s, single-event bodies 1,953 -> 2,242 requests/s.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024


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


def reuse_big_blocks(mmap_threshold: int = MMAP_THRESHOLD_BYTES, trim_threshold: int = TRIM_THRESHOLD_BYTES) -> bool:
    """Serve blocks under ``mmap_threshold`` from the heap and keep up to ``trim_threshold`` free at its top."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
                and libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))


# How long Arrow's jemalloc keeps freed pages for reuse. 0 (the fifth session's setting) handed every
# flush's pages back at once, and the next flush faulted them in again: about one minor page fault per
# event, a quarter of the writer's CPU. With one flush thread (writer.flusher) and the purge above the
# flusher's resident bound, 5 s gave 0.12-0.28 faults per event and 20-30 % less writer CPU per event
# (docs/benchmarks.md, "Ninth session"); without the one thread the pages sat in other threads' arenas
# (S3 overload 381-398 MB). On S3 a flush is twice as large: 5 s took the writer under overload to
# 294-309 MB, past its 300 MB bound, while 1 s kept it at 282-290 MB (0 gave 258-297) with 0.25 faults
# per event.
ARROW_KEEP_FREED_MS = 5000
ARROW_KEEP_FREED_MS_S3 = 1000


def arrow_keep_freed_ms(backend: str) -> int:
    """How long the writer's Arrow pool keeps freed pages on ``backend``."""
    return ARROW_KEEP_FREED_MS if backend == "local" else ARROW_KEEP_FREED_MS_S3


def arrow_on_jemalloc(keep_freed_ms: int) -> str:
    """Put Arrow's buffers on jemalloc, freed pages kept ``keep_freed_ms`` for reuse (in the arenas of
    threads started later); the pool's name (the writer's setting).

    A flush builds and drops tens of MB of Arrow buffers. Arrow's default pool (mimalloc) kept them
    resident, and so did the C library's heap (the setting before this one): under S3 overload the heap
    held 200-250 MB free between flushes, most of it resident, from Arrow's blocks interleaved with
    frames and Python's. jemalloc keeps Arrow's blocks apart and returns their pages after the decay time
    or when ``hand_back_free_memory`` purges them: the heap stayed at ~65 MB and the writer's peak fell
    from 515 to 394 MB (docs/benchmarks.md, "Fifth session"). Falls back to the C library's allocator
    where the pyarrow build has no jemalloc.
    """
    import pyarrow

    try:
        pool = pyarrow.jemalloc_memory_pool()
        pyarrow.jemalloc_set_decay_ms(keep_freed_ms)
    except NotImplementedError:  # pyarrow.ArrowNotImplementedError is one
        pool = pyarrow.system_memory_pool()
    pyarrow.set_memory_pool(pool)
    return pool.backend_name


def hand_back_free_memory() -> None:
    """Return what both allocators hold free: glibc's heap (``trim``) and the pages Arrow's pool keeps
    (jemalloc's purge of every arena)."""
    import pyarrow

    pyarrow.default_memory_pool().release_unused()
    trim()


def resident_bytes() -> int:
    """This process's resident memory (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


def trim() -> bool:
    """Return free heap memory to the system (glibc ``malloc_trim``); True when some was released."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
