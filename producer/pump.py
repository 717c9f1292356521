"""The background worker: takes batches from the buffer by size or age, delivers them, reports drops."""

from __future__ import annotations

import asyncio
import logging
import time

from producer.buffer import Batch, EventBuffer
from producer.options import ProducerOptions
from producer.ratelog import RateLimitedLog
from producer.transport import Transport, make_session

IDLE_TICK = 1.0
ERROR_PAUSE = 0.5
FIRST_OUTAGE_HOLD = 1.0


class Pump:
    """Runs in one event loop; every method except ``run`` and ``wait_progress`` only sets state."""

    def __init__(self, options: ProducerOptions, buffer: EventBuffer, shutdown_safe: bool, offload: bool):
        self.options = options
        self.buffer = buffer
        self.log = RateLimitedLog(logging.getLogger(options.logger_name), options.log_interval)
        self._shutdown_safe = shutdown_safe
        self._offload = offload
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._flush_target = 0
        self._stop_deadline: float | None = None
        self._outage_hold = 0.0
        self._resume_at = 0.0
        self._delivery: asyncio.Task[None] | None = None
        self._reported = {"overflow": 0, "invalid": 0}
        self.abandoned_on_stop = 0
        self.finished = False

    def wake(self) -> None:
        """Make the worker look at the buffer now (call on the pump's loop)."""
        self._wake.set()

    def request_flush(self, seq: int) -> None:
        """Send everything up to ``seq`` without waiting for batch size or age."""
        self._flush_target = max(self._flush_target, seq)

    def request_stop(self, deadline: float) -> None:
        """Deliver what is buffered until ``deadline`` (monotonic), then abandon the rest and finish."""
        self._stop_deadline = deadline if self._stop_deadline is None else min(deadline, self._stop_deadline)

    async def wait_progress(self, timeout: float) -> None:
        """Wait until a batch is settled or the pump finishes, at most ``timeout`` seconds."""
        event = self._progress
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _signal_progress(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def run(self) -> None:
        """The worker loop; returns after a stop request once the buffer is empty or the deadline passed."""
        session = make_session(self.options, self._shutdown_safe)
        transport = Transport(self.options, session, self._offload)
        try:
            while await self._step(transport):
                pass
        finally:
            await self._finish(session)

    async def _step(self, transport: Transport) -> bool:
        """One look at the buffer: send a batch or sleep; False once the pump should finish."""
        try:
            self._wake.clear()
            self._report()
            if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
                return False
            delay = self._next_delay()
            if delay == 0:
                hold = self._hold(transport)
                if hold > 0:
                    await self._sleep(min(hold, IDLE_TICK))
                    return True
                batch = self.buffer.take(self.options.batch_size, self.options.max_batch_bytes)
                if batch is not None:
                    await self._deliver(transport, batch)
                return True
            if self._stop_deadline is not None:
                return False
            await self._sleep(delay)
        except Exception:  # a bug here must not kill the worker and silently fill the buffer
            self.log.logger.exception("audit producer: unexpected error in the worker")
            await asyncio.sleep(ERROR_PAUSE)
        return True

    def _next_delay(self) -> float:
        """0 when a batch should go now, else how long to sleep before looking again."""
        count, nbytes, queued_at, head = self.buffer.peek()
        if count == 0:
            return IDLE_TICK
        opts = self.options
        if count >= opts.batch_size or nbytes >= opts.max_batch_bytes or self._stop_deadline is not None:
            return 0.0
        if head is not None and head <= self._flush_target:
            return 0.0
        age = time.monotonic() - (queued_at or 0.0)
        return max(0.0, opts.flush_interval - age)

    async def _sleep(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except asyncio.TimeoutError:
            pass

    def _hold(self, transport: Transport) -> float:
        """Seconds to hold the next batch back: the service's Retry-After pause and, unless a flush or
        stop asks for delivery now, the outage back-off that follows a batch given up on."""
        now = time.monotonic()
        hold = transport.pause_remaining()
        _, _, _, head = self.buffer.peek()
        urgent = self._stop_deadline is not None or (head is not None and head <= self._flush_target)
        if not urgent:
            hold = max(hold, self._resume_at - now)
        if self._stop_deadline is not None:
            hold = min(hold, max(0.0, self._stop_deadline - now))
        return hold

    def _note_outcome(self, outcome: str) -> None:
        """Back off after a failed batch (1 s, doubling up to ``outage_backoff_max``); reset on an answer."""
        if outcome != "failed":
            self._outage_hold = 0.0
            return
        self._outage_hold = min(self.options.outage_backoff_max, max(FIRST_OUTAGE_HOLD, self._outage_hold * 2))
        self._resume_at = time.monotonic() + self._outage_hold

    async def _deliver(self, transport: Transport, batch: Batch) -> None:
        task = asyncio.ensure_future(self._send(transport, batch))
        self._delivery = task
        timer = None
        try:
            while not task.done():
                if self._stop_deadline is not None and timer is None:
                    delay = max(0.0, self._stop_deadline - time.monotonic())
                    timer = asyncio.get_running_loop().call_later(delay, task.cancel)
                wake = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({task, wake}, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
                self._wake.clear()
        finally:
            if timer is not None:
                timer.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
            self._delivery = None
            if self.buffer.resolve(batch, "abandoned"):  # only when _send was cancelled before settling it
                self.abandoned_on_stop += len(batch.items)
            self._signal_progress()

    async def _send(self, transport: Transport, batch: Batch) -> None:
        try:
            result = await transport.send(batch.items, self.buffer.count_retry)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.logger.exception("audit producer: unexpected error while sending a batch")
            await asyncio.sleep(ERROR_PAUSE)
            self.buffer.resolve(batch, "failed")
            return
        self.buffer.resolve(batch, result.outcome)
        self._note_outcome(result.outcome)
        count = len(batch.items)
        if result.outcome == "rejected":
            self.log.warning(
                ("rejected", result.status, result.reason[:100]),
                "audit service rejected a batch of %d events with HTTP %s: %s; not retried, dropped",
                count,
                result.status,
                result.reason,
            )
        elif result.outcome == "failed":
            self.log.warning(
                "failed",
                "audit service unavailable (%s); dropped a batch of %d events",
                result.reason,
                count,
            )

    def _report(self) -> None:
        stats = self.buffer.stats()
        for name, current in (("overflow", stats.overflow), ("invalid", stats.invalid)):
            new = current - self._reported[name]
            if new <= 0:
                continue
            if name == "overflow":
                logged = self.log.warning(
                    name,
                    "audit buffer full (%d events, %d bytes buffered): dropped %d events (%s policy)",
                    stats.buffered,
                    stats.buffered_bytes,
                    new,
                    self.options.drop_policy,
                )
            else:
                reason = self.buffer.last_invalid_reason
                logged = self.log.warning(name, "dropped %d invalid audit events; last: %s", new, reason)
            if logged:
                self._reported[name] = current

    async def _finish(self, session: object) -> None:
        abandoned = self.buffer.close()
        self.abandoned_on_stop += abandoned
        if self.abandoned_on_stop:
            self.log.logger.warning(
                "audit producer closed with %d events not delivered (dropped)", self.abandoned_on_stop
            )
        self._report()
        try:
            await session.close()  # type: ignore[attr-defined]
        except Exception:
            pass
        self.finished = True
        self._signal_progress()
