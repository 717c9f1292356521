"""The glibc allocator calls both processes make at start and the writer after a flush above its budget."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from shared import native_memory

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")


@glibc
def test_arenas_are_capped_and_free_memory_is_trimmed() -> None:
    """In a fresh interpreter: mallopt accepts the cap, and after freeing 200 MB a trim hands memory back."""
    code = """
from shared import native_memory
assert native_memory.limit_arenas()
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
blocks = [bytearray(100_000) for _ in range(2000)]
high = rss()
del blocks[::2]
native_memory.trim()
print(high, rss())
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    high, after = map(int, result.stdout.split())
    assert after < high - 50_000, (high, after)  # kB: at least 50 MB of the freed 100 MB went back


def test_calls_are_harmless_when_repeated() -> None:
    """Both are safe to call again (ingest and writer call them at start and per flush)."""
    assert native_memory.limit_arenas() == native_memory.limit_arenas()
    native_memory.trim()


@glibc
def test_big_blocks_come_from_the_heap_not_mappings_of_their_own() -> None:
    """A 20 MiB block is served from the reusable heap once set, from a fresh mapping by default (fresh interpreters).

    A fresh mapping is unmapped on free and faulted in again page by page the next time; heap memory is reused.
    """
    code = """
import sys
from shared import native_memory
if sys.argv[1] == "reuse":
    assert native_memory.reuse_big_blocks()
def mappings():
    return len(open('/proc/self/maps').read().splitlines())
before = mappings()
block = bytearray(20 * 1024 * 1024)
print(mappings() - before)
"""
    added = {}
    for mode in ("default", "reuse"):
        result = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        added[mode] = int(result.stdout)
    assert added == {"default": 1, "reuse": 0}


def test_resident_bytes_reads_this_process() -> None:
    """The figure the writer compares with its trim budget is this process's RSS, not zero."""
    held = bytearray(64 * 1024 * 1024)
    held[::4096] = bytes(len(range(0, len(held), 4096)))
    assert native_memory.resident_bytes() > 64 * 1024 * 1024


def test_arrow_buffers_stay_out_of_the_c_library_heap() -> None:
    """``arrow_on_jemalloc`` (the writer's setting) moves Arrow's default pool to jemalloc, so
    Arrow's buffers no longer grow the C library's heap, where under S3 overload they left 200-250 MB free
    but resident between flushes. Checked in a fresh interpreter with the writer's heap settings: 64
    one-MiB Arrow buffers grow the heap by 64 MB on the C library's pool and by nothing after the call."""
    code = """
import ctypes, sys
import pyarrow as pa
from shared import native_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
native_memory.limit_arenas()
native_memory.reuse_big_blocks()
if sys.argv[1] == "writer":
    print(native_memory.arrow_on_jemalloc(native_memory.arrow_keep_freed_ms("local")))
else:
    pa.set_memory_pool(pa.system_memory_pool())
    print(pa.default_memory_pool().backend_name)
start = libc.mallinfo2().arena
buffers = [pa.allocate_buffer(1 << 20) for _ in range(64)]
print(libc.mallinfo2().arena - start)
"""
    grown = {}
    for setting in ("libc", "writer"):
        result = subprocess.run([sys.executable, "-c", code, setting], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        name, growth = result.stdout.split()
        grown[name] = int(growth)
    assert set(grown) == {"system", "jemalloc"}
    assert grown["system"] >= 60 * 1024 * 1024
    assert grown["jemalloc"] < 1024 * 1024


def test_the_s3_writer_keeps_freed_arrow_pages_for_less_time_than_the_local_one() -> None:
    """Kept pages spare the writer its page faults; the S3 writer, whose flushes are twice as large and
    which is near its memory bound under overload, keeps them 1 s instead of 5 s."""
    assert native_memory.arrow_keep_freed_ms("local") == native_memory.ARROW_KEEP_FREED_MS == 5000
    assert native_memory.arrow_keep_freed_ms("s3") == native_memory.ARROW_KEEP_FREED_MS_S3 == 1000
