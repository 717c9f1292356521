"""Background tasks end when cancelled, even when what they wait for finishes in the same loop turn.

Python 3.11's ``asyncio.wait_for`` returns the result instead of raising when the task is cancelled while
the awaited future has just finished (the waiter is not yet released): a ``while True`` task then runs on
and a shutdown that gathers it waits forever. That is how a writer once outlived its SIGTERM in CI.
"""

from __future__ import annotations

import asyncio
import types
from pathlib import Path
from typing import Any

from shared.task_stop import cancel_and_wait
from writer.service import WriterService


def _cancel_as_it_finishes(step: Any) -> bool:
    """Run ``step(probe)`` as a task until it waits on ``probe`` (a future the test owns), then finish
    ``probe`` and cancel the task in the same turn; return whether the task ended cancelled."""

    async def scenario() -> bool:
        probe = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(step(probe))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()
        probe.set_result("ok")
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    return asyncio.run(scenario())


def test_the_storage_health_refresh_ends_when_cancelled_as_its_probe_finishes() -> None:
    """``WriterService._refresh_health`` (run every second by the writer's health task) re-raises the
    cancellation even though its probe finished in that same turn."""

    def step(probe: asyncio.Future[Any]) -> Any:
        loop = asyncio.get_running_loop()
        service = types.SimpleNamespace(store=types.SimpleNamespace(probe=lambda: None))
        loop.run_in_executor = lambda executor, function, *args: probe  # type: ignore[method-assign]
        return WriterService._refresh_health(service)  # type: ignore[arg-type]

    assert _cancel_as_it_finishes(step)


def test_cancel_and_wait_cancels_again_a_task_that_swallowed_the_first_cancel() -> None:
    """A task that swallows one cancel (as 3.11's wait_for can) is cancelled again and ends."""

    async def scenario() -> tuple[list[str], int, bool]:
        swallowed = 0

        async def swallows_once() -> None:
            nonlocal swallowed
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    if swallowed:
                        raise
                    swallowed += 1

        task = asyncio.create_task(swallows_once(), name="swallows-once")
        await asyncio.sleep(0)
        left = await cancel_and_wait([task], wait_seconds=0.2)
        return left, swallowed, task.cancelled()

    assert asyncio.run(scenario()) == ([], 1, True)


def test_cancel_and_wait_names_a_task_that_will_not_end_instead_of_waiting_forever(caplog) -> None:
    """A task that swallows every cancel is left behind after the rounds, named in the result and the log."""

    async def scenario() -> list[str]:
        release = asyncio.Event()

        async def stubborn() -> None:
            while not release.is_set():
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    continue

        task = asyncio.create_task(stubborn(), name="stubborn")
        await asyncio.sleep(0)
        started = asyncio.get_running_loop().time()
        left = await cancel_and_wait([task], rounds=3, wait_seconds=0.1)
        assert asyncio.get_running_loop().time() - started < 2
        release.set()
        task.cancel()
        await asyncio.wait([task])
        return left

    assert asyncio.run(scenario()) == ["stubborn"]
    assert any("did not end" in record.getMessage() for record in caplog.records)


def test_the_service_code_bounds_its_waits_with_asyncio_timeout_not_wait_for() -> None:
    """No ``asyncio.wait_for`` in the processes' code: each use was a task that could outlive its cancel."""
    root = Path(__file__).resolve().parents[2]
    users = [str(path.relative_to(root)) for package in ("ingest", "writer", "shared")
             for path in sorted((root / package).rglob("*.py")) if "wait_for(" in path.read_text()]
    assert users == []
