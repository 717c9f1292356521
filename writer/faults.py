"""Test-only fault points: the writer kills itself with SIGKILL at a named point of its work.

Set ``AUDIT_SERVICE_FAULT_POINT=NAME[:COUNT]`` to die the COUNT-th time (default first) the writer
reaches NAME. Points: ``spool_mid_append`` (half a group written, not synced), ``after_fsync_before_ack``
(a group durable, no ack sent), ``mid_publish`` (a file renamed into place, range not checkpointed),
``after_checkpoint`` (range checkpointed, ids not yet in the dedupe window), ``after_journal`` (a range's
manifest entries fsync'd, range not checkpointed). Never set in production.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger("auditlake.writer.faults")
POINTS = {"spool_mid_append", "after_fsync_before_ack", "mid_publish", "after_checkpoint", "after_journal"}


class FaultPoints:
    """Counts arrivals at named points and kills the process at the configured one."""

    def __init__(self, spec: str | None) -> None:
        self.name: str | None = None
        self.remaining = 0
        if spec:
            name, _, count = spec.partition(":")
            if name not in POINTS:
                raise ValueError(f"unknown fault point {name!r}; known: {', '.join(sorted(POINTS))}")
            self.name = name
            self.remaining = int(count or "1")
            log.warning("fault point armed (test use only)", extra={"point": name, "count": self.remaining})

    def reach(self, name: str) -> None:
        """Die here when this is the armed point's COUNT-th arrival."""
        if name != self.name:
            return
        self.remaining -= 1
        if self.remaining <= 0:
            os.kill(os.getpid(), signal.SIGKILL)

    @property
    def armed_for_mid_append(self) -> bool:
        """True when the next group write should stop half way (so the caller writes in two parts)."""
        return self.name == "spool_mid_append"
