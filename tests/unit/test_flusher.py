"""The flusher: deterministic publishing, redo of an interrupted flush, retries after failures."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import orjson

from writer.flush_encoder import EncoderConfig, FlushEncoder
from writer.flusher import Flusher
from writer.local_store import LocalStore
from writer.spool import Spool
from writer.stats import WriterStats


def _line(event_id: str, ts: str) -> bytes:
    return orjson.dumps({"audit_event_id": event_id, "ts": ts, "type": "auth"}) + b"\n"


async def _spool(tmp_path: Path, payloads: list[bytes]) -> Spool:
    spool = Spool(tmp_path / "spool", 1 << 20, 1 << 30)
    spool.open()
    committer = asyncio.create_task(spool.run_committer())
    await asyncio.gather(*(spool.append(index + 1, payload, payload.count(b"\n")) for index, payload in enumerate(payloads)))
    spool.close()
    await committer
    return spool


def _stored(root: Path) -> dict[str, list[str]]:
    found = {}
    for path in sorted(root.rglob("audit-*.ndjson.gz")):
        lines = gzip.decompress(path.read_bytes()).splitlines()
        found[str(path.relative_to(root))] = [orjson.loads(line)["audit_event_id"] for line in lines]
    return found


async def _flush_until_empty(flusher: Flusher, spool: Spool) -> None:
    flusher.stop()
    await asyncio.wait_for(flusher.run(), 10)
    assert not spool.index


async def test_events_are_filed_by_their_own_day_and_sorted(tmp_path: Path) -> None:
    """One spool range with events of two days gives one file per day, each sorted by ts."""
    spool = await _spool(tmp_path, [
        _line("b", "2026-01-02T10:00:00.000000Z") + _line("a", "2026-01-01T23:59:59.999999Z"),
        _line("c", "2026-01-02T09:00:00.000000Z"),
    ])
    store = LocalStore(tmp_path / "store", True, 0, 85, 95)
    flusher = Flusher(spool, store, WriterStats(), 500, 0.01, 3600)
    await _flush_until_empty(flusher, spool)
    assert _stored(store.root) == {
        "2026/01/01/audit-20260101T235959Z-000000000001-000000000002-20260101T235959Z.ndjson.gz": ["a"],
        "2026/01/02/audit-20260102T090000Z-000000000001-000000000002-20260102T100000Z.ndjson.gz": ["c", "b"],
    }


async def test_an_interrupted_flush_is_redone_without_duplicates(tmp_path: Path) -> None:
    """A flush marker left by a crash is redone exactly; a stale partial copy of the range is replaced."""
    spool = await _spool(tmp_path, [_line("a", "2026-01-01T00:00:01.000000Z"), _line("b", "2026-01-01T00:00:02.000000Z")])
    stale_name = "2026/01/01/audit-20260101T000000Z-000000000001-000000000001-20260101T000000Z.ndjson.gz"
    spool.write_flush_marker(1, 1, [stale_name])
    store = LocalStore(tmp_path / "store", True, 0, 85, 95)
    stale = store.root / stale_name
    stale.parent.mkdir(parents=True)
    stale.write_bytes(gzip.compress(_line("a", "2026-01-01T00:00:01.000000Z")))
    flusher = Flusher(spool, store, WriterStats(), 500, 0.01, 3600)
    await _flush_until_empty(flusher, spool)
    ids = [event_id for lines in _stored(store.root).values() for event_id in lines]
    assert sorted(ids) == ["a", "b"]
    assert not stale.exists()
    assert spool.read_flush_marker() is None


async def test_repeated_ids_within_a_flush_are_stored_once(tmp_path: Path) -> None:
    """The same audit_event_id posted twice in one flush range is stored once and counted as duplicate."""
    spool = await _spool(tmp_path, [_line("a", "2026-01-01T00:00:01.000000Z"), _line("a", "2026-01-01T00:00:01.000000Z")])
    stats = WriterStats()
    flusher = Flusher(spool, LocalStore(tmp_path / "store", True, 0, 85, 95), stats, 500, 0.01, 3600)
    await _flush_until_empty(flusher, spool)
    assert [ids for ids in _stored(tmp_path / "store").values()] == [["a"]]
    assert (stats.flushed_events, stats.duplicate_events) == (1, 1)


async def test_a_failing_store_is_retried_and_data_waits(tmp_path: Path) -> None:
    """While the store root is unusable flushes fail and count; once it is usable the data lands."""
    spool = await _spool(tmp_path, [_line("a", "2026-01-01T00:00:01.000000Z")])
    blocker = tmp_path / "store"
    blocker.write_bytes(b"not a directory")
    stats = WriterStats()
    flusher = Flusher(spool, LocalStore(blocker / "inner", True, 0, 85, 95), stats, 500, 0.01, 3600)
    task = asyncio.create_task(flusher.run())
    while stats.failed_flushes < 2:
        await asyncio.sleep(0.01)
    assert stats.last_error is not None and len(spool.index) == 1
    blocker.unlink()
    for _ in range(1000):
        if stats.flushed_events:
            break
        await asyncio.sleep(0.01)
    flusher.stop()
    await asyncio.wait_for(task, 10)
    assert stats.flushed_events == 1 and stats.last_error is None


async def test_a_flush_range_never_mixes_records_with_and_without_typed_fields(tmp_path: Path) -> None:
    """Records that have their typed fields and records that do not (after a restart, past the memory bound)
    go to separate flushes, so the ones that have them are not parsed; every event is stored once."""
    from shared import typed_columns

    spool = Spool(tmp_path / "spool", 1 << 20, 1 << 30)
    spool.open()
    committer = asyncio.create_task(spool.run_committer())
    kinds = [True, True, False, True]
    for index, typed in enumerate(kinds):
        event = {"audit_event_id": f"e{index}", "ts": "2026-01-01T00:00:00.000000Z", "type": "auth"}
        payload = orjson.dumps({**event, "received_at": "2026-01-01T00:00:01.000000Z"}) + b"\n"
        columns = typed_columns.frame_section([typed_columns.encode([event], "2026-01-01T00:00:01.000000Z")])
        await spool.append(index + 1, payload, 1, columns if typed else None)
    stats = WriterStats()
    flusher = Flusher(spool, LocalStore(tmp_path / "store", True, 0, 90, 95), stats, 1, 0.0, 3600)
    assert [entry.seq for entry in flusher._plan()] == [1, 2]
    await _flush_until_empty(flusher, spool)
    spool.close()
    await committer
    assert (stats.flushes, stats.parsed_flushes, stats.typed_field_mismatches) == (3, 1, 0)
    assert sorted(sum(_stored(tmp_path / "store").values(), [])) == ["e0", "e1", "e2", "e3"]


async def _running_flusher(tmp_path: Path, **options: float) -> tuple[Spool, Flusher, list[float], asyncio.Task[None]]:
    """A spool with its committer and a flusher running over it; the list gets each flush's start time."""
    spool = Spool(tmp_path / "spool", 1 << 20, 1 << 30)
    spool.open()
    spool.committer = asyncio.create_task(spool.run_committer())  # type: ignore[attr-defined]
    flusher = Flusher(spool, LocalStore(tmp_path / "store", True, 0, 90, 95), WriterStats(), 500,
                      options.pop("interval", 60.0), 3600, **options)  # type: ignore[arg-type]
    starts: list[float] = []
    flusher.observe_flush = lambda seconds, ok: starts.append(time.monotonic() - seconds)
    return spool, flusher, starts, asyncio.create_task(flusher.run())


async def _append_events(spool: Spool, first_batch: int, count: int) -> None:
    payload = b"".join(_line(f"e{first_batch}-{index}", "2026-01-01T00:00:01.000000Z") for index in range(count))
    await spool.append(first_batch, payload, count)


async def _wait_flushes(starts: list[float], count: int) -> None:
    for _ in range(1000):
        if len(starts) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(starts)} flushes, expected {count}")


async def _finish(spool: Spool, flusher: Flusher, task: asyncio.Task[None]) -> None:
    flusher.stop()
    await asyncio.wait_for(task, 10)
    spool.close()
    await spool.committer  # type: ignore[attr-defined]


async def test_flushes_the_event_count_triggers_start_at_least_the_gap_apart(tmp_path: Path) -> None:
    """Under steady load a flush of 500+ events does not follow the previous one at once: the next starts
    ``min_gap_seconds`` after it started at the earliest, and takes everything that arrived meanwhile."""
    spool, flusher, starts, task = await _running_flusher(tmp_path, min_gap_seconds=0.4)
    await _append_events(spool, 1, 600)
    await _wait_flushes(starts, 1)
    await _append_events(spool, 2, 600)
    await asyncio.sleep(0.1)
    await _append_events(spool, 3, 600)
    await _wait_flushes(starts, 2)
    assert starts[1] - starts[0] >= 0.4 - 0.06  # the flusher checks every 50 ms
    assert not spool.index  # batches 2 and 3 went in the same flush
    await _finish(spool, flusher, task)
    assert len(starts) == 2


async def test_a_full_flush_of_bytes_and_the_age_bound_do_not_wait_for_the_gap(tmp_path: Path) -> None:
    """With a gap far longer than the test, a backlog of ``max_flush_bytes`` is flushed at once, and so is a
    small backlog once its oldest event is ``interval_seconds`` old."""
    spool, flusher, starts, task = await _running_flusher(tmp_path, min_gap_seconds=600, max_flush_bytes=20_000,
                                                          interval=0.3)
    await _append_events(spool, 1, 600)
    await _wait_flushes(starts, 1)
    await _append_events(spool, 2, 600)  # about 40 KB: over max_flush_bytes
    await _wait_flushes(starts, 2)
    await _append_events(spool, 3, 5)  # under the event count: the age bound
    await _wait_flushes(starts, 3)
    assert starts[2] - starts[1] >= 0.3 - 0.06
    assert not spool.index
    await _finish(spool, flusher, task)


async def test_a_writer_behind_by_two_flushes_takes_a_catch_up_flush(tmp_path: Path) -> None:
    """A flush takes ``max_flush_bytes`` while the spool holds less than two of them, and up to
    ``catch_up_bytes`` once it holds two or more (the writer is behind); never more than that."""
    spool = Spool(tmp_path / "spool", 1 << 20, 1 << 30)
    spool.open()
    committer = asyncio.create_task(spool.run_committer())
    flusher = Flusher(spool, LocalStore(tmp_path / "store", True, 0, 90, 95), WriterStats(), 1, 0.0, 3600,
                      max_flush_bytes=10_000, catch_up_bytes=20_000)
    for batch in range(1, 4):  # three records of about 6 KB: 18 KB, under two flushes
        await _append_events(spool, batch, 80)
    record_bytes = spool.index[0].length
    assert 5_000 < record_bytes < 8_000 and spool.bytes < 20_000
    assert [entry.seq for entry in flusher._plan()] == [1]  # a second record would pass 10 KB
    assert not flusher.behind
    await _append_events(spool, 4, 80)  # four records: more than two flushes behind
    assert spool.bytes >= 20_000 and flusher.behind  # the writer's STATUS says catching_up
    assert [entry.seq for entry in flusher._plan()] == [1, 2, 3]  # a fourth would pass 20 KB
    await _flush_until_empty(flusher, spool)
    assert not flusher.behind
    spool.close()
    await committer
    assert sorted(sum(_stored(tmp_path / "store").values(), [])) == sorted(
        f"e{batch}-{index}" for batch in range(1, 5) for index in range(80))


class ThreadRecordingStore(LocalStore):
    """A local store noting the thread each write runs on."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, True, 0, 90, 95)
        self.threads: list[str] = []

    def write(self, files):  # type: ignore[no-untyped-def]
        self.threads.append(threading.current_thread().name)
        return super().write(files)


async def test_every_flush_runs_on_the_flushers_one_thread(tmp_path: Path) -> None:
    """Flushes (their file writes here) run on one thread of their own, never on the loop's and never on the
    shared executor's, which the spool's group commits use."""
    spool, flusher, starts, task = await _running_flusher(tmp_path, min_gap_seconds=0)
    store = flusher.store = ThreadRecordingStore(tmp_path / "store")
    busy = [asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.3) for _ in range(3)]  # shared threads
    for batch in range(1, 4):
        await _append_events(spool, batch, 600)
        await _wait_flushes(starts, batch)
    await asyncio.gather(*busy)
    await _finish(spool, flusher, task)
    assert len(store.threads) == 3
    assert len(set(store.threads)) == 1 and store.threads[0].startswith("flush"), store.threads


async def test_an_encoder_that_dies_when_told_to_remember_ids_costs_one_redo_not_a_duplicate(tmp_path: Path) -> None:
    """The range is checkpointed when the encoder process dies at ``remember``: the flush fails, the next one
    takes the same range again (same names, same bytes, so each event is still stored once), and the new
    child remembers the ids, so a later retry of them is dropped."""
    spool = await _spool(tmp_path, [_line("a", "2026-01-01T00:00:01.000000Z"), _line("b", "2026-01-01T00:00:02.000000Z")])
    store = LocalStore(tmp_path / "store", True, 0, 85, 95)
    encoder = FlushEncoder(EncoderConfig(store.encoder(), tmp_path / "dedupe", 3600.0, 1000))
    real_remember = encoder.remember
    calls: list[int] = []

    def dying_once(id_hashes: np.ndarray) -> None:
        calls.append(len(id_hashes))
        if len(calls) == 1:
            os.kill(encoder.pid or 0, signal.SIGKILL)  # the child dies while the writer waits for it
            time.sleep(0.2)
        real_remember(id_hashes)

    encoder.remember = dying_once  # type: ignore[method-assign]
    stats = WriterStats()
    flusher = Flusher(spool, store, stats, 500, 0.01, 3600, encoder)
    task = asyncio.create_task(flusher.run())
    for _ in range(1000):
        if not spool.index:
            break
        await asyncio.sleep(0.01)
    flusher.stop()
    await asyncio.wait_for(task, 10)
    assert (stats.failed_flushes, stats.flushes, calls) == (1, 1, [2, 2])
    assert [sorted(ids) for ids in _stored(store.root).values()] == [["a", "b"]]
    assert encoder.starts == 2 and encoder.dedupe_ids == 2
    retry = await _spool(tmp_path / "again", [_line("b", "2026-01-01T00:00:02.000000Z")])
    assert encoder.prepare(list(retry.index)).duplicates == 1
    encoder.close()
