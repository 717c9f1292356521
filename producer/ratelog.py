"""Rate-limited warnings: the first of a kind is logged, repeats at most once per interval."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

MAX_KEYS = 256


class RateLimitedLog:
    """Log a warning per key at most once every ``interval`` seconds, reporting how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float, clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[object, list[float]] = {}

    def allow(self, key: object) -> bool:
        """Whether a warning for ``key`` may be logged now (and note that it is)."""
        now = self._clock()
        entry = self._last.get(key)
        if entry is not None and now - entry[0] < self._interval:
            entry[1] += 1
            return False
        if entry is None and len(self._last) >= MAX_KEYS:
            self._last.pop(next(iter(self._last)))
        self._last[key] = [now, 0]
        return True

    def warning(self, key: object, message: str, *args: object) -> bool:
        """Log ``message`` unless one for ``key`` was logged within the interval; True when logged."""
        entry = self._last.get(key)
        suppressed = int(entry[1]) if entry is not None else 0
        if not self.allow(key):
            return False
        if suppressed:
            message += " (%d similar warnings suppressed)"
            args = (*args, suppressed)
        self.logger.warning(message, *args)
        return True
