"""The flush's encoder process: the files it returns are what the store encodes in-process, it owns the dedupe
window (across restarts too), and a failure or death fails one call, never the next."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import orjson
import pytest

from shared import typed_columns
from writer.batches import group_range
from writer.columns_spill import SpilledColumns
from writer.flush_encoder import ENCODER_THREAD_NAME, EncoderConfig, EncoderFailed, FlushEncoder
from writer.local_store import LocalStore, encode_days
from writer.spool import IndexEntry, Spool, read_range

RECEIVED = "2026-01-02T00:00:01.000000Z"


def _events(prefix: str, count: int) -> list[dict]:
    return [{"audit_event_id": f"{prefix}-{index}", "ts": f"2026-01-0{1 + index % 2}T00:00:{index % 60:02d}.000000Z",
             "type": "auth", "actor": f"user-{index}"} for index in range(count)]


async def _spool_of(directory: Path, batches: list[list[dict]], typed: bool = True,
                    max_columns_bytes: int = 1 << 30) -> list[IndexEntry]:
    """Spool each batch as ingest sends it (its lines, and its typed fields when ``typed``; past
    ``max_columns_bytes`` they are spilled)."""
    spool = Spool(directory, 1 << 20, 1 << 30, max_columns_bytes=max_columns_bytes)
    spool.open()
    committer = asyncio.create_task(spool.run_committer())
    for number, events in enumerate(batches):
        lines = b"".join(orjson.dumps({**event, "received_at": RECEIVED}) + b"\n" for event in events)
        columns = _events_columns(events) if typed else None
        await spool.append(number + 1, lines, len(events), columns)
    spool.close()
    await committer
    spool.release()
    return list(spool.index)


@pytest.fixture
def encoder_factory():
    made: list[FlushEncoder] = []

    def make(**config) -> FlushEncoder:  # type: ignore[no-untyped-def]
        encoder = FlushEncoder(EncoderConfig(LocalStore(Path("/nonexistent"), True, 0, 90, 95).encoder(), **config))
        made.append(encoder)
        return encoder

    yield make
    for encoder in made:
        encoder.close()


@pytest.mark.parametrize("columns", ["held", "spilled", "spill gone", "none"])
async def test_the_child_encodes_what_the_store_encodes_in_process(tmp_path: Path, encoder_factory, columns: str) -> None:
    """Same names, bytes, sidecars and manifest figures as ``encode_days`` over ``group_range`` in this process;
    the same counts and id hashes; the typed fields used when sent (held in memory, or read back by the child
    from the spill file), the lines parsed when not (or when the spill file is gone)."""
    entries = await _spool_of(tmp_path / "spool", [_events("a", 30), _events("b", 20)], columns != "none",
                              0 if columns.startswith("spill") else 1 << 30)
    if columns.startswith("spill"):
        assert all(isinstance(entry.columns, SpilledColumns) for entry in entries)
    if columns == "spill gone":
        os.unlink(entries[0].columns.path)
    encoded = encoder_factory().prepare(entries)
    here = group_range(read_range(entries), None, None if columns == "none" else
                       [_events_columns(events) for events in (_events("a", 30), _events("b", 20))])
    assert encoded.files == encode_days(here, True)
    assert len(encoded.files) == 2  # two days
    # the files came beside the pickled answer (writer.encoder_channel), as views of what was received
    assert all(isinstance(item.body, memoryview) and isinstance(item.sidecar, memoryview) for item in encoded.files)
    assert (encoded.first_seq, encoded.last_seq, encoded.events, encoded.duplicates) == (1, 2, 50, 0)
    assert encoded.id_hashes.tolist() == here.id_hashes.tolist() and encoded.parsed is (columns in ("none", "spill gone"))
    assert encoded.unparsable == [] and not encoded.fields_refused


def _events_columns(events: list[dict]) -> bytes:
    return typed_columns.frame_section([typed_columns.encode(events, RECEIVED)])


async def test_the_child_owns_the_dedupe_window_across_restarts(tmp_path: Path, encoder_factory) -> None:
    """Ids remembered through one child are dropped as duplicates by it and, from disk, by the next one;
    the window's size is reported back."""
    window = {"window_directory": tmp_path / "dedupe", "window_seconds": 3600.0, "window_max_ids": 10_000}
    first = await _spool_of(tmp_path / "one", [_events("a", 10)])
    again = await _spool_of(tmp_path / "two", [_events("a", 10) + _events("new", 5)])
    encoder = encoder_factory(**window)
    stored = encoder.prepare(first)
    assert (stored.events, stored.duplicates, encoder.dedupe_ids) == (10, 0, 0)
    encoder.remember(stored.id_hashes)
    assert encoder.dedupe_ids == 10
    assert (encoder.prepare(again).events, encoder.prepare(again).duplicates) == (5, 10)
    encoder.close()
    reopened = encoder_factory(**window)
    reopened.start()
    assert reopened.dedupe_ids == 10
    assert reopened.prepare(again).duplicates == 10


async def test_a_child_that_dies_fails_one_call_and_the_next_starts_a_new_one(tmp_path: Path, encoder_factory) -> None:
    entries = await _spool_of(tmp_path / "spool", [_events("a", 10)])
    encoder = encoder_factory()
    encoder.start()
    first_pid = encoder.pid
    assert first_pid is not None
    assert Path(f"/proc/{first_pid}/comm").read_text().strip() == ENCODER_THREAD_NAME
    os.kill(first_pid, signal.SIGKILL)
    time.sleep(0.2)
    with pytest.raises(EncoderFailed, match="ended"):
        encoder.prepare(entries)
    assert encoder.prepare(entries).events == 10
    assert encoder.starts == 2 and encoder.pid not in (None, first_pid)


async def test_an_error_in_the_child_fails_the_call_and_the_child_serves_on(tmp_path: Path, encoder_factory) -> None:
    """A record changed on disk is reported as the call's failure (the flush is retried), not a dead child."""
    entries = await _spool_of(tmp_path / "spool", [_events("a", 10)])
    encoder = encoder_factory()
    with open(entries[0].path, "r+b") as handle:
        handle.seek(entries[0].offset + entries[0].length - 3)
        handle.write(b"X")
    with pytest.raises(EncoderFailed, match="SpoolCorrupt.*checksum mismatch"):
        encoder.prepare(entries)
    assert encoder.starts == 1 and encoder.pid is not None
    assert encoder.prepare([]).events == 0


async def test_a_child_that_cannot_start_fails_the_call_until_it_can(tmp_path: Path, encoder_factory) -> None:
    """A dedupe directory the child cannot create fails its start (the writer starts anyway and its flushes
    fail and are retried); once the directory can be made, the next call starts a child that works."""
    entries = await _spool_of(tmp_path / "spool", [_events("a", 10)])
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"a file where the window's directory should be")
    encoder = encoder_factory(window_directory=blocker / "dedupe", window_seconds=3600.0, window_max_ids=1000)
    with pytest.raises(EncoderFailed, match="ended at start"):
        encoder.start()
    with pytest.raises(EncoderFailed, match="ended at start"):
        encoder.prepare(entries)
    blocker.unlink()
    assert encoder.prepare(entries).events == 10
    assert encoder.starts == 3


async def test_close_cuts_a_call_in_flight_short_after_its_wait(tmp_path: Path, encoder_factory,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A shutdown does not wait out a stuck child: ``close`` kills it after ``CLOSE_WAIT_SECONDS`` and the
    call in flight fails."""
    from writer import flush_encoder

    monkeypatch.setattr(flush_encoder, "CLOSE_WAIT_SECONDS", 0.3)
    encoder = encoder_factory()
    encoder.start()
    os.kill(encoder.pid or 0, signal.SIGSTOP)  # the child hangs: a call waits for its answer
    failures: list[Exception] = []

    def call() -> None:
        try:
            encoder.remember([1, 2, 3])
        except EncoderFailed as exc:
            failures.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.2)
    started = time.monotonic()
    encoder.close()
    caller.join(10)
    assert 0.25 <= time.monotonic() - started < 5
    assert len(failures) == 1 and encoder.pid is None


async def test_the_child_leaves_interrupt_and_terminate_to_the_writer(tmp_path: Path, encoder_factory) -> None:
    """SIGINT and SIGTERM sent to the process group (Ctrl-C, a runtime stopping the group) do not end the
    child: the writer drains its flushes through it and then closes it."""
    entries = await _spool_of(tmp_path / "spool", [_events("a", 10)])
    encoder = encoder_factory()
    encoder.start()
    child = encoder.pid or 0
    os.kill(child, signal.SIGINT)
    os.kill(child, signal.SIGTERM)
    time.sleep(0.2)
    assert encoder.prepare(entries).events == 10
    assert encoder.starts == 1 and encoder.pid == child
