"""Decoded Parquet columns of immutable files, by (file, row group, column), bounded by bytes (LRU).

Published files and objects never change under a name (a redo rewrites identical content), so a column
decoded once serves every later read: repeated filters then cost Arrow compute, not Parquet decoding.
Besides Arrow columns it keeps what is derived from them the same way (anything with ``nbytes``): the
searchable lowercased text of a column and the page locations of a column chunk.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

DEFAULT_BYTES = 128 * 1024 * 1024


class ColumnCache:
    """LRU of decoded columns; thread-safe; a column bigger than the bound is never kept."""

    def __init__(self, max_bytes: int = DEFAULT_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: collections.OrderedDict[tuple, Any] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def bytes(self) -> int:
        """Bytes held."""
        return self._bytes

    def get(self, key: tuple) -> Any | None:
        """A cached column, marked recently used."""
        with self._lock:
            column = self._items.get(key)
            if column is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return column

    def put(self, key: tuple, column: Any) -> None:
        """Keep a column while it fits, evicting the least recently used."""
        size = column.nbytes
        if size > self.max_bytes // 4:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = column
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
