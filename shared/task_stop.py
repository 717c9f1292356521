"""Ending background tasks at shutdown: cancel, wait a while, cancel again, and name any that will not end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger("auditlake.shutdown")
CANCEL_ROUNDS = 3
CANCEL_WAIT_SECONDS = 2.0


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], rounds: int = CANCEL_ROUNDS,
                          wait_seconds: float = CANCEL_WAIT_SECONDS) -> list[str]:
    """Cancel ``tasks`` and wait up to ``wait_seconds`` for them to end, up to ``rounds`` times; return the
    names of those still running (logged), which the caller leaves behind rather than wait for forever.

    One cancel is not always enough: a task can swallow it (Python 3.11's ``wait_for`` does when the future
    it waits on finishes in the same turn; so can a library's ``except BaseException``) and run on, and a
    shutdown that gathered it would then never finish.
    """
    pending = [task for task in tasks if not task.done()]
    for _ in range(rounds):
        if not pending:
            return []
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=wait_seconds)
        pending = [task for task in pending if not task.done()]
    names = [task.get_name() for task in pending]
    if names:
        log.error("tasks did not end when cancelled; leaving them", extra={"tasks": names})
    return names
