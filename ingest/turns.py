"""Parse turns: at most one large request body is parsed per event-loop iteration, first come first served.

Bodies that finish arriving together would otherwise be parsed back to back in one iteration (about a
millisecond each for 100 events), and the writer's acknowledgements already read from the socket would
wait behind all of them. Taking a turn costs nothing when no other large body is being parsed.
"""

from __future__ import annotations

import asyncio
import collections

LARGE_BODY_BYTES = 16 * 1024  # smaller bodies parse in well under 100 us and never wait


class ParseTurns:
    """Hands out one turn per loop iteration; a turn needs no release (the next is handed out regardless)."""

    def __init__(self) -> None:
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._taken = False
        self.waits = 0  # turns that were not free at once (counted for /metrics)

    async def take(self) -> None:
        """Return in the first loop iteration in which no other body held a turn (at once when free)."""
        loop = asyncio.get_running_loop()
        if not self._taken:
            self._taken = True
            loop.call_soon(self._hand_on, loop)
            return
        self.waits += 1
        turn = loop.create_future()
        self._waiting.append(turn)
        await turn  # a cancelled waiter's future is done, and the turn passes over it

    def _hand_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Runs once per iteration while turns are taken: give the next one to the oldest live waiter."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                loop.call_soon(self._hand_on, loop)
                return
        self._taken = False
