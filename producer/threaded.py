"""``AuditProducer``: the flavour for threaded code, with a worker thread running its own event loop."""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import threading
import time
import weakref
from typing import Any

from producer.buffer import EventBuffer, ProducerStats
from producer.encode import Dumps
from producer.intake import Intake
from producer.options import ProducerOptions
from producer.pump import Pump

JOIN_GRACE = 0.5


class _ThreadEngine:
    """Everything the worker thread needs; holds no reference to the ``AuditProducer`` facade."""

    def __init__(self, options: ProducerOptions, dumps: Dumps | None):
        self.options = options
        self.buffer = EventBuffer(
            options.max_buffer_events,
            options.max_buffer_bytes,
            options.drop_policy == "oldest",
            options.batch_size,
            options.max_batch_bytes,
        )
        self.intake = Intake(options, self.buffer, dumps)
        self.pump = Pump(options, self.buffer, shutdown_safe=True, offload=False)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="auditlake-producer", daemon=True)

    def start(self) -> None:
        atexit.register(self.close_at_exit)
        if hasattr(os, "register_at_fork"):  # hooks cannot be removed: hold the engine weakly
            os.register_at_fork(after_in_child=functools.partial(_restart_in_child, weakref.ref(self)))
        self._thread.start()

    def restart_after_fork(self) -> None:
        """In a forked child: forget the parent's events and counters, start a worker of our own."""
        if self.buffer.closed:
            return
        self.buffer.reset()
        self.pump = Pump(self.options, self.buffer, shutdown_safe=True, offload=False)
        self.loop = None
        self._thread = threading.Thread(target=self._main, name="auditlake-producer", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            self.loop = loop
            loop.run_until_complete(self.pump.run())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            self.loop = None
            self.buffer.close()
            loop.close()
            atexit.unregister(self.close_at_exit)

    def wake(self) -> None:
        """Wake the worker from any thread; a no-op before it runs or after it finished."""
        loop = self.loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self.pump.wake)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def flush(self, timeout: float) -> bool:
        target = self.buffer.last_seq()
        if threading.current_thread() is self._thread:
            return not self.buffer.pending_upto(target)
        self.pump.request_flush(target)
        self.wake()
        return self.buffer.wait_resolved(target, timeout)

    def request_stop(self, timeout: float) -> None:
        """Ask the worker to deliver for at most ``timeout`` seconds more and finish; does not wait."""
        self.pump.request_stop(time.monotonic() + timeout)
        self.wake()

    def close(self, timeout: float) -> bool:
        self.request_stop(timeout)
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout + JOIN_GRACE)
        if self._thread.is_alive():
            return False
        atexit.unregister(self.close_at_exit)
        return self.pump.abandoned_on_stop == 0

    def close_at_exit(self) -> None:
        self.close(self.options.close_timeout)


def _restart_in_child(engine_ref: weakref.ref[_ThreadEngine]) -> None:
    engine = engine_ref()
    if engine is not None:
        engine.restart_after_fork()


class AuditProducer:
    """Emit audit events from threaded code; ``emit`` never blocks, never raises, never does I/O.

    Events are validated and encoded on the caller's thread (microseconds), then queued in a bounded
    buffer; a daemon thread with its own event loop posts batches. ``close`` runs at interpreter exit.
    A forked child (e.g. a pre-fork web server worker) starts empty with a worker thread of its own.
    """

    def __init__(self, base_url: str | None = None, token: str | None = None, *, dumps: Dumps | None = None, **options: Any):
        self.options = ProducerOptions(base_url=base_url, token=token, **options)
        engine = _ThreadEngine(self.options, dumps)
        self._engine = engine
        engine.start()
        self._finalizer = weakref.finalize(self, engine.request_stop, self.options.close_timeout)
        self._finalizer.atexit = False

    def emit(self, event: Any) -> bool:
        """Queue one event (a dict); True when buffered, False when dropped (invalid, full or closed)."""
        accepted, wake = self._engine.intake.put_safely(event)
        if wake:
            try:
                self._engine.wake()
            except Exception:
                pass
        return accepted

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything emitted so far; True when all of it was sent or dropped within ``timeout``."""
        return self._engine.flush(self.options.close_timeout if timeout is None else timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Deliver for at most ``timeout`` seconds, drop what is left and stop; True when nothing was dropped."""
        self._finalizer.detach()
        return self._engine.close(self.options.close_timeout if timeout is None else timeout)

    def stats(self) -> ProducerStats:
        """A consistent snapshot of the counters."""
        return self._engine.buffer.stats()

    @property
    def closed(self) -> bool:
        """Whether the producer refuses new events."""
        return self._engine.buffer.closed

    def __enter__(self) -> AuditProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
