"""The glibc allocator calls both processes make at start and the writer after each flush."""

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
