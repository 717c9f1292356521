"""``AsyncAuditProducer``: the asyncio flavour, with the worker as a task on the host's event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from producer.buffer import EventBuffer, ProducerStats
from producer.encode import Dumps
from producer.intake import Intake
from producer.options import ProducerOptions
from producer.pump import Pump

CANCEL_GRACE = 0.5


class AsyncAuditProducer:
    """Emit audit events from asyncio code; ``emit`` is a plain, non-blocking, never-raising call.

    The worker task starts with ``start()``, ``async with``, or lazily at the first ``emit`` made
    inside a running loop. Gzip compression runs in the default executor, off the loop.
    """

    def __init__(self, base_url: str | None = None, token: str | None = None, *, dumps: Dumps | None = None, **options: Any):
        self.options = ProducerOptions(base_url=base_url, token=token, **options)
        self._buffer = EventBuffer(
            self.options.max_buffer_events,
            self.options.max_buffer_bytes,
            self.options.drop_policy == "oldest",
            self.options.batch_size,
            self.options.max_batch_bytes,
        )
        self._intake = Intake(self.options, self._buffer, dumps)
        self._pump = Pump(self.options, self._buffer, shutdown_safe=False, offload=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the worker task on the running loop (idempotent)."""
        self._start(asyncio.get_running_loop())

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._task is not None or self._buffer.closed:
            return
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._task = loop.create_task(self._pump.run(), name="auditlake-producer")

    def emit(self, event: Any) -> bool:
        """Queue one event (a dict); True when buffered, False when dropped (invalid, full or closed)."""
        accepted, wake = self._intake.put_safely(event)
        if self._task is None:
            try:
                self._start(asyncio.get_running_loop())
            except Exception:  # no running loop here: the event waits for start()
                return accepted
        if wake:
            self._wake()
        return accepted

    def _wake(self) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            if threading.get_ident() == self._loop_thread:
                self._pump.wake()
            else:
                loop.call_soon_threadsafe(self._pump.wake)
        except Exception:  # the loop closed meanwhile
            pass

    async def flush(self, timeout: float | None = None) -> bool:
        """Send everything emitted so far; True when all of it was sent or dropped within ``timeout``."""
        await self.start()
        deadline = time.monotonic() + (self.options.close_timeout if timeout is None else timeout)
        target = self._buffer.last_seq()
        self._pump.request_flush(target)
        self._pump.wake()
        while self._buffer.pending_upto(target):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._pump.finished:
                return not self._buffer.pending_upto(target)
            await self._pump.wait_progress(min(remaining, 0.1))
        return True

    async def close(self, timeout: float | None = None) -> bool:
        """Deliver for at most ``timeout`` seconds, drop what is left and stop; True when nothing was dropped."""
        timeout = self.options.close_timeout if timeout is None else timeout
        task = self._task
        if task is None:
            abandoned = self._buffer.close()
            self._pump.abandoned_on_stop += abandoned
            return abandoned == 0
        self._pump.request_stop(time.monotonic() + timeout)
        self._wake()
        done, _ = await asyncio.wait({task}, timeout=timeout + CANCEL_GRACE)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_GRACE)
        return task.done() and self._pump.abandoned_on_stop == 0

    def stats(self) -> ProducerStats:
        """A consistent snapshot of the counters."""
        return self._buffer.stats()

    @property
    def closed(self) -> bool:
        """Whether the producer refuses new events."""
        return self._buffer.closed

    async def __aenter__(self) -> AsyncAuditProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
