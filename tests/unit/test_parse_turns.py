"""Parse turns: large bodies that arrive together are parsed one per loop iteration, in arrival order."""

from __future__ import annotations

import asyncio
from unittest import mock

import orjson
import pytest
from aiohttp import streams
from aiohttp.test_utils import make_mocked_request

from ingest.body import Rejected
from ingest.hardening import read_json
from ingest.link import QueueFull, WriterLink, WriterUnavailable
from ingest.turns import LARGE_BODY_BYTES, ParseTurns
from shared.settings import Settings


class LoopTicks:
    """Counts event-loop iterations: a callback that re-schedules itself runs once per iteration."""

    def __init__(self) -> None:
        self.count = 0
        self._handle: asyncio.Handle | None = None

    def start(self) -> None:
        self._tick()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def _tick(self) -> None:
        self.count += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)


@pytest.fixture
async def ticks():
    counter = LoopTicks()
    counter.start()
    yield counter
    counter.stop()


async def _taker(turns: ParseTurns, name: str, ticks: LoopTicks, taken: list[tuple[str, int]]) -> None:
    asked_at = ticks.count
    await turns.take()
    taken.append((name, ticks.count - asked_at))


async def test_turns_taken_together_are_handed_out_one_per_iteration_in_order(ticks: LoopTicks) -> None:
    """Four bodies asking in the same iteration get their turns in four different iterations, first one
    at once, in the order they asked; three of them waited."""
    turns = ParseTurns()
    taken: list[tuple[str, int]] = []
    await asyncio.gather(*(_taker(turns, name, ticks, taken) for name in "ABCD"))
    assert [name for name, _ in taken] == list("ABCD")
    waited = [iterations for _, iterations in taken]  # iterations between asking and getting the turn
    assert waited[0] == 0
    assert all(later > earlier for earlier, later in zip(waited, waited[1:])), waited
    assert turns.waits == 3


async def test_a_free_turn_is_taken_without_waiting(ticks: LoopTicks) -> None:
    """Once the turns have gone round, a new body takes one in its own iteration and is not counted."""
    turns = ParseTurns()
    await asyncio.gather(turns.take(), turns.take())
    for _ in range(3):  # let the hand-over find nobody waiting and free the turn
        await asyncio.sleep(0)
    before = ticks.count
    await turns.take()
    assert ticks.count == before
    assert turns.waits == 1


async def test_a_cancelled_waiter_does_not_hold_up_the_next(ticks: LoopTicks) -> None:
    """A body whose request was cancelled while it waited is passed over; the one behind it gets a turn."""
    turns = ParseTurns()
    taken: list[tuple[str, int]] = []
    first = asyncio.create_task(_taker(turns, "A", ticks, taken))
    second = asyncio.create_task(_taker(turns, "B", ticks, taken))
    third = asyncio.create_task(_taker(turns, "C", ticks, taken))
    await asyncio.sleep(0)  # all three asked; A holds this iteration's turn
    second.cancel()
    await asyncio.wait_for(asyncio.gather(first, third), timeout=1)
    with pytest.raises(asyncio.CancelledError):
        await second
    assert [name for name, _ in taken] == ["A", "C"]


async def test_past_the_waiting_bound_a_body_is_parsed_at_once(ticks: LoopTicks) -> None:
    """With ``max_waiting`` bodies waiting, the next one does not wait (overload: the writer queue's bound
    refuses what does not fit instead of bodies piling up unparsed); it is counted as crowded, not as a wait."""
    turns = ParseTurns(max_waiting=2)
    taken: list[tuple[str, int]] = []
    await asyncio.gather(*(_taker(turns, name, ticks, taken) for name in "ABCD"))
    assert [name for name, _ in taken][:2] == ["A", "D"]
    assert dict(taken)["D"] == 0  # in the iteration it asked
    assert (turns.waits, turns.crowded) == (2, 1)


def _post(body: bytes) -> object:
    """A POST request whose whole body has arrived."""
    protocol = mock.Mock(_reading_paused=False)
    payload = streams.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(body)
    payload.feed_eof()
    return make_mocked_request("POST", "/v1/audit/events", payload=payload,
                               headers={"Content-Type": "application/json", "Content-Length": str(len(body))})


def _events_body(size: int) -> bytes:
    """A JSON batch at least ``size`` bytes long."""
    event = {"type": "audit.test", "actor": "someone", "detail": "x" * 200}
    count = max(1, size // len(orjson.dumps(event)) + 1)
    return orjson.dumps({"events": [event] * count})


async def _read(turns: ParseTurns, body: bytes, ticks: LoopTicks, parsed_at: list[int]) -> None:
    _, document = await read_json(_post(body), Settings(), turns)
    assert document["events"]
    parsed_at.append(ticks.count)


async def test_read_json_parses_large_bodies_in_turns_and_small_ones_at_once(ticks: LoopTicks) -> None:
    """Two large bodies that arrived together are parsed in different iterations; two small ones in the
    same iteration, without asking for a turn."""
    large = _events_body(LARGE_BODY_BYTES)
    small = _events_body(1000)
    assert len(large) >= LARGE_BODY_BYTES > len(small)

    turns = ParseTurns()
    parsed_at: list[int] = []
    await asyncio.gather(_read(turns, large, ticks, parsed_at), _read(turns, large, ticks, parsed_at))
    assert parsed_at[1] > parsed_at[0]
    assert turns.waits == 1

    turns = ParseTurns()
    parsed_at = []
    await asyncio.gather(_read(turns, small, ticks, parsed_at), _read(turns, small, ticks, parsed_at))
    assert parsed_at[1] == parsed_at[0]
    assert turns.waits == 0


async def test_a_body_refused_once_read_is_not_parsed() -> None:
    """``admit`` runs after the read and before the parse: a body that is not JSON at all raises what
    ``admit`` raises, not the 400 its parse would give."""
    def full() -> None:
        raise QueueFull("audit queue full")

    with pytest.raises(QueueFull):
        await read_json(_post(b"{not json"), Settings(), ParseTurns(), full)
    with pytest.raises(Rejected):
        await read_json(_post(b"{not json"), Settings(), ParseTurns())


async def test_a_body_whose_turn_comes_after_the_queue_filled_is_refused_unparsed(ticks: LoopTicks) -> None:
    """Two large bodies arrive together and there is room for one: the first is parsed and queued in its
    turn; when the second one's turn comes the queue is full, and it is refused without a parse."""
    large = _events_body(LARGE_BODY_BYTES)
    queued: list[int] = []
    parses = 0
    real_loads = orjson.loads

    def counting_loads(data: bytes) -> object:
        nonlocal parses
        parses += 1
        return real_loads(data)

    def admit() -> None:
        if queued:
            raise QueueFull("audit queue full")

    async def post() -> str:
        try:
            _, document = await read_json(_post(large), Settings(), turns, admit)
        except QueueFull:
            return "refused"
        queued.append(len(document["events"]))  # what submitting it to the link does, in the same turn
        return "queued"

    turns = ParseTurns()
    with mock.patch("ingest.hardening.orjson.loads", counting_loads):
        outcomes = await asyncio.gather(post(), post())
    assert outcomes == ["queued", "refused"] and parses == 1


def test_the_link_admits_only_while_a_request_could_be_queued(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``admit`` raises what ``submit`` would: WriterUnavailable without a writer, QueueFull when full."""
    link = WriterLink(tmp_path / "w.sock", 2, 1 << 20, 1 << 20)
    with pytest.raises(WriterUnavailable):
        link.admit()
    link._stream, link.hello = mock.Mock(), True  # connected and greeted
    link.admit()
    link.queued_events = 2
    with pytest.raises(QueueFull, match="audit queue full"):
        link.admit()
