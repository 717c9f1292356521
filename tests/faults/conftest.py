"""Fixtures of the fault suite: small tmpfs mounts whose space and writability tests control."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


class Mount:
    """A tmpfs mounted for one test."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read_only(self, flag: bool) -> None:
        """Remount read-only (writes fail with EROFS) or read-write again."""
        mode = "ro" if flag else "rw"
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator:
    """Mount tmpfs file systems of a given size; skipped where mounting is not permitted."""
    mounts: list[Path] = []

    def make(name: str, size: str) -> Mount:
        path = tmp_path / name
        path.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root (CI runs as root)")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                                capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount tmpfs here: {result.stderr.decode().strip()}")
        mounts.append(path)
        return Mount(path)

    yield make
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], check=False)
