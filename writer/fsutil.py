"""Small I/O helpers: atomic replace with fsync of the file and its directory, a data sync, and vectored writes resumed after short ones."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

IOV_MAX = 1024  # Linux's limit on buffers per writev / pwritev / sendmsg call


def fsync_dir(path: Path) -> None:
    """Make a directory entry change (create, rename, unlink) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_data(fd: int) -> None:
    """Make what was written to a file durable with what reading it back needs (its size, its blocks):
    ``fdatasync``, which unlike ``fsync`` does not commit an inode change of timestamps only. On a
    journaling filesystem that is a journal commit, waiting behind every other file's metadata, whenever
    the file's mtime moved since the last sync (docs/benchmarks.md, twenty-fourth session). ``fsync`` where
    the platform has no ``fdatasync`` (macOS)."""
    getattr(os, "fdatasync", os.fsync)(fd)


def write_atomic(path: Path, data: bytes | memoryview, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` through a temp file, fsync it, rename it into place, fsync the dir."""
    tmp = path.with_name(f".tmp-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_vectored(pieces: Sequence[bytes | memoryview], write: Callable[[list[memoryview]], int]) -> None:
    """Hand ``pieces`` in order to ``write`` (``os.writev``-like: at most ``IOV_MAX`` byte views a call,
    returns how many bytes it took) until every byte is taken, resuming where a short write stopped."""
    views = [memoryview(piece).cast("B") for piece in pieces if len(piece)]
    while views:
        taken = write(views[:IOV_MAX])
        done = 0
        while done < len(views) and taken >= len(views[done]):
            taken -= len(views[done])
            done += 1
        views = views[done:]
        if taken:
            views[0] = views[0][taken:]
