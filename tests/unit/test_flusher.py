"""The flusher: deterministic publishing, redo of an interrupted flush, retries after failures."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import orjson

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
