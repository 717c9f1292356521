"""Parse turns: at most one large request body is parsed per event-loop iteration, first come first served.

Bodies that finish arriving together would otherwise be parsed back to back in one iteration (about a
millisecond each for 100 events), and the writer's acknowledgements already read from the socket would
wait behind all of them. Taking a turn costs nothing when no other large body is being parsed.

At most ``MAX_WAITING`` bodies wait. Beyond that ingest is overloaded and a body is parsed at once, as
without turns: its batch goes to the writer's queue, so the queue's bound and its 503s apply as before
instead of bodies piling up unparsed (one per connection) outside it.
"""

from __future__ import annotations

import asyncio
import collections

LARGE_BODY_BYTES = 16 * 1024  # smaller bodies parse in well under 100 us and never wait
MAX_WAITING = 32  # twice the 16 producers' connections of the benchmark: a burst of up to 33 bodies is spread


class ParseTurns:
    """Hands out one turn per loop iteration; a turn needs no release (the next is handed out regardless)."""

    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._taken = False
        self._max_waiting = max_waiting
        self.waits = 0  # turns that were not free at once (counted for /metrics)
        self.crowded = 0  # bodies parsed without a turn because ``max_waiting`` others waited

    async def take(self) -> None:
        """Return in the first loop iteration in which no other body held a turn (at once when free, or
        when ``max_waiting`` bodies wait already)."""
        loop = asyncio.get_running_loop()
        if not self._taken:
            self._taken = True
            loop.call_soon(self._hand_on, loop)
            return
        if len(self._waiting) >= self._max_waiting:
            self.crowded += 1
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
