"""The writer's spool: group commit, recovery of torn tails and corrupt segments, checkpoints, bounds."""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from shared import spool_format
from writer.columns_spill import ColumnsSpill, SpilledColumns, read_back
from writer.spool import Spool, SpoolFull, read_range


def spilled(spill: ColumnsSpill, columns: bytes) -> SpilledColumns | None:
    """Place typed fields in a spill and write them, as the spool's append and group commit do."""
    piece = spill.reserve(len(columns))
    assert piece is None or spill.write(piece, columns)
    return piece


async def _spool_with(directory: Path, payloads: list[bytes], **kwargs) -> Spool:
    spool = Spool(directory, kwargs.get("segment_bytes", 1 << 20), kwargs.get("max_bytes", 1 << 30))
    spool.open()
    committer = asyncio.create_task(spool.run_committer())
    futures = [spool.append(1000 + index, payload, payload.count(b"\n")) for index, payload in enumerate(payloads)]
    await asyncio.gather(*futures)
    spool.close()
    await committer
    spool.release()
    return spool


async def test_concurrent_appends_share_data_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst of 200 appends is made durable with far fewer than 200 fdatasync calls (group commit), and
    with fdatasync: an fsync would also commit the segment's mtime, a journal commit on ext4."""
    calls = []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real_fdatasync(fd))[1])
    spool = await _spool_with(tmp_path, [b'{"a":1}\n'] * 200)
    assert len(spool.index) == 200
    assert [entry.seq for entry in spool.index] == list(range(1, 201))
    assert 0 < len(calls) < 20


async def test_a_small_group_is_committed_on_the_loop_and_a_large_one_on_a_worker(tmp_path: Path) -> None:
    """Group commits up to ``INLINE_GROUP_BYTES`` are written and fsync'd on the event loop's thread (the
    hand-over to a worker cost more than the fsync); larger ones on a worker thread, so the loop goes on
    receiving frames meanwhile. Both are durable and indexed the same way."""
    import threading

    from writer import spool as spool_module

    spool = Spool(tmp_path, 1 << 24, 1 << 30)
    spool.open()
    threads: list[str] = []
    write_group = spool._write_group

    def recording(records, spills):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return write_group(records, spills)

    spool._write_group = recording  # type: ignore[method-assign]
    committer = asyncio.create_task(spool.run_committer())
    small = b'{"a":1}\n' * 100
    large = b'{"a":1}\n' * (spool_module.INLINE_GROUP_BYTES // 8 + 1)
    assert len(small) < spool_module.INLINE_GROUP_BYTES < len(large)
    await spool.append(1, small, 100)
    await spool.append(2, large, large.count(b"\n"))
    spool.close()
    await committer
    assert threads[0] == threading.current_thread().name and threads[1] != threads[0], threads
    assert [entry.seq for entry in spool.index] == [1, 2]
    assert list(read_range(list(spool.index)).payloads()) == [small, large]
    spool.release()


async def test_each_group_commit_reports_its_latency_and_its_write_and_fsync(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit hook gets, per group, the time from its oldest frame's arrival to durable and the time of
    the write and fsync within it; a slow fsync shows in both, a frame that waited for the loop in the first."""
    import time

    from writer import spool as spool_module

    spool = Spool(tmp_path, 1 << 24, 1 << 30)
    spool.open()
    seen: list[tuple[float, float]] = []
    spool.observe_commit = lambda durable, sync: seen.append((durable, sync))
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (time.sleep(0.05), real_fdatasync(fd))[1])
    small = b'{"a":1}\n' * 10
    large = b'{"a":1}\n' * (spool_module.INLINE_GROUP_BYTES // 8 + 1)
    first = spool.append(1, small, 10)  # waits 0.03 s for the committer: counted in the latency, not the sync
    await asyncio.sleep(0.03)
    committer = asyncio.create_task(spool.run_committer())
    await first
    await spool.append(2, large, large.count(b"\n"))
    spool.close()
    await committer
    spool.release()
    assert len(seen) == 2, seen
    for durable, sync in seen:
        assert 0.05 <= sync <= durable
    assert seen[0][0] >= 0.08  # the 0.03 s before the committer ran, then the 0.05 s fdatasync


async def test_open_deletes_a_segment_whose_removal_was_interrupted(tmp_path: Path) -> None:
    """A flushed segment cut short by a stop (``*.removing``) is deleted at start and never indexed."""
    await _spool_with(tmp_path, [b'{"a":1}\n'])
    leftover = tmp_path / (spool_format.segment_name(50) + spool_format.REMOVING_SUFFIX)
    leftover.write_bytes(b"half a record")
    reopened = Spool(tmp_path, 1 << 20, 1 << 30)
    reopened.open()
    assert not leftover.exists()
    assert [entry.seq for entry in reopened.index] == [1]
    assert reopened.quarantined == []
    reopened.release()


async def test_reopen_indexes_unflushed_records_and_remembers_batches(tmp_path: Path) -> None:
    """After a restart the spool indexes every record, continues the seq and knows the batch ids."""
    await _spool_with(tmp_path, [b'{"a":1}\n{"b":2}\n', b'{"c":3}\n'])
    reopened = Spool(tmp_path, 1 << 20, 1 << 30)
    reopened.open()
    assert [(entry.seq, entry.batch_id, entry.events) for entry in reopened.index] == [(1, 1000, 2), (2, 1001, 1)]
    assert reopened.next_seq == 3
    assert reopened.knows_batch(1001) and not reopened.knows_batch(999)
    assert list(read_range(list(reopened.index)).payloads()) == [b'{"a":1}\n{"b":2}\n', b'{"c":3}\n']
    reopened.release()


async def test_a_range_reads_back_as_one_buffer_across_segments(tmp_path: Path) -> None:
    """``read_range`` puts the payloads of consecutive records, spread over segments, back to back in one
    buffer with each payload's end; a record changed on disk is refused."""
    payloads = [b'{"n":%d}\n' % index * (index + 1) for index in range(40)]
    spool = Spool(tmp_path, 200, 1 << 30)
    spool.open()
    committer = asyncio.create_task(spool.run_committer())
    for index, payload in enumerate(payloads):  # one commit each, so segments roll over between them
        await spool.append(1000 + index, payload, payload.count(b"\n"))
    spool.close()
    await committer
    spool.release()
    reopened = Spool(tmp_path, 200, 1 << 30)
    reopened.open()
    assert len(spool_format.list_segments(tmp_path)) > 3
    entries = list(reopened.index)[5:30]
    span = read_range(entries)
    assert (span.first_seq, span.last_seq) == (6, 30)
    assert bytes(span.data) == b"".join(payloads[5:30])
    assert list(span.payloads()) == payloads[5:30]
    records = [spool_format.SpoolRecord(entry.seq, entry.batch_id, payload)
               for entry, payload in zip(entries, payloads[5:30])]
    in_memory = spool_format.SpoolRange.of(records)
    assert (in_memory.first_seq, in_memory.last_seq, in_memory.ends) == (span.first_seq, span.last_seq, span.ends)
    with open(entries[3].path, "r+b") as handle:
        handle.seek(entries[3].offset + spool_format.HEADER_SIZE)
        handle.write(b"X")
    with pytest.raises(spool_format.SpoolCorrupt):
        read_range(entries)
    reopened.release()


async def test_torn_tail_is_trimmed(tmp_path: Path) -> None:
    """Half a record at the end of a segment (a crash mid-append) is cut off; whole records survive."""
    await _spool_with(tmp_path, [b'{"a":1}\n', b'{"b":2}\n'])
    (_, segment), = spool_format.list_segments(tmp_path)
    whole = segment.stat().st_size - spool_format.HEADER_SIZE  # the records, then the zeroed header that ends them
    assert segment.read_bytes()[whole:] == spool_format.END_OF_RECORDS
    with open(segment, "r+b") as handle:  # the next append starts over the zeroed header
        handle.seek(whole)
        handle.write(spool_format.encode_record(3, 77, b'{"torn":true}\n')[:-5])
    reopened = Spool(tmp_path, 1 << 20, 1 << 30)
    reopened.open()
    assert [entry.seq for entry in reopened.index] == [1, 2]
    assert segment.stat().st_size == whole
    assert not reopened.knows_batch(77)
    reopened.release()


async def test_corrupt_segment_is_quarantined_keeping_its_good_prefix(tmp_path: Path) -> None:
    """A damaged record mid-segment moves the file to quarantine; records before the damage stay."""
    await _spool_with(tmp_path, [b'{"a":1}\n', b'{"b":2}\n', b'{"c":3}\n'])
    (_, segment), = spool_format.list_segments(tmp_path)
    data = bytearray(segment.read_bytes())
    second = spool_format.HEADER_SIZE + len(b'{"a":1}\n')
    data[second + spool_format.HEADER_SIZE] ^= 0xFF
    segment.write_bytes(bytes(data))
    reopened = Spool(tmp_path, 1 << 20, 1 << 30)
    reopened.open()
    assert [entry.seq for entry in reopened.index] == [1]
    assert len(reopened.quarantined) == 1
    assert (tmp_path / "quarantine" / reopened.quarantined[0]).read_bytes() == bytes(data)
    reopened.release()


async def test_checkpoint_forgets_flushed_records_and_frees_segments(tmp_path: Path) -> None:
    """Checkpointing a range drops it from the index; full segments holding only flushed data go."""
    spool = Spool(tmp_path, 400, 1 << 30)
    spool.open()
    committer = asyncio.create_task(spool.run_committer())
    for index in range(6):
        await spool.append(index, b'{"x":"' + b"y" * 200 + b'"}\n', 1)
    assert spool.segments >= 3
    spool.checkpoint(4)
    dead = spool.forget_flushed(4)
    for path in dead:
        path.unlink()
    spool.close()
    await committer
    spool.release()
    assert dead and [entry.seq for entry in spool.index] == [5, 6]
    reopened = Spool(tmp_path, 400, 1 << 30)
    reopened.open()
    assert [entry.seq for entry in reopened.index] == [5, 6]
    assert reopened.flushed_seq == 4
    reopened.release()


async def test_a_full_spool_refuses_appends(tmp_path: Path) -> None:
    """Appending past the byte bound raises SpoolFull and takes nothing."""
    spool = Spool(tmp_path, 1 << 20, 300)
    spool.open()
    spool.append(1, b"a" * 100 + b"\n", 1)
    with pytest.raises(SpoolFull):
        spool.append(2, b"b" * 200 + b"\n", 1)
    assert len(spool._pending) == 1
    spool.release()


def test_record_checksum_is_zlibs_crc32_so_spools_of_earlier_builds_still_read(tmp_path: Path) -> None:
    """A record whose CRC was computed with zlib (as earlier builds wrote) reads back; the encoding agrees."""
    payload = b'{"audit_event_id":"a","ts":"2026-11-29T00:00:00.000000Z"}\n' * 500
    partial = struct.pack(">BBQQI", spool_format.VERSION, 0, 7, 70, len(payload))
    earlier = b"SR" + partial + struct.pack(">I", zlib.crc32(payload, zlib.crc32(partial))) + payload
    assert spool_format.encode_record(7, 70, payload) == earlier
    path = tmp_path / spool_format.segment_name(7)
    path.write_bytes(earlier)
    records, valid_end = spool_format.read_segment(path)
    assert [(record.seq, record.batch_id, record.payload) for record in records] == [(7, 70, payload)]
    assert valid_end == len(earlier)


async def test_a_group_is_written_piece_by_piece_through_short_writes(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Headers and payloads go to ``pwritev`` unjoined: more pieces than one call takes, and calls that write
    only part of what they were given, still leave every record whole and in order."""
    real_pwritev = os.pwritev
    calls = []

    def short_pwritev(fd: int, buffers: list, offset: int) -> int:
        calls.append(len(buffers))
        budget = 1000  # at most this many bytes a call, often ending inside a piece
        taken = []
        for buffer in buffers:
            taken.append(bytes(buffer)[:budget])
            budget -= len(taken[-1])
            if not budget:
                break
        return real_pwritev(fd, taken, offset)

    monkeypatch.setattr(os, "pwritev", short_pwritev)
    payloads = [b'{"n":%d}\n' % index * (1 + index % 7) for index in range(700)]
    await _spool_with(tmp_path, payloads, segment_bytes=1 << 30)
    assert max(calls) == 1024 and len(calls) > 2
    reopened = Spool(tmp_path, 1 << 30, 1 << 30)
    reopened.open()
    assert list(read_range(list(reopened.index)).payloads()) == payloads
    reopened.release()


@pytest.mark.parametrize("data", [b"", b"no newline", b"\n", b'{"a":1}\n{"b":2}\n', bytearray(b"x\n" * 1000),
                                  bytes(range(256)) * 300])
def test_line_count_counts_every_newline(data: bytes) -> None:
    assert spool_format.line_count(data) == data.count(b"\n")


@pytest.mark.parametrize("size", [spool_format.BYTE_COUNT_LIMIT - 1, spool_format.BYTE_COUNT_LIMIT,
                                  spool_format.BYTE_COUNT_LIMIT + 1, 3 * spool_format.BYTE_COUNT_LIMIT])
def test_line_count_is_the_same_either_side_of_its_byte_count_limit(size: int) -> None:
    """Bytes, a bytearray and a view of a received buffer (what the writer counts) give every newline,
    counted by ``bytes.count`` up to the limit and by numpy above it."""
    data = (b'{"a":"' + bytes(range(32, 127)) + b'"}\n\n') * (size // 100 + 1)
    data = data[:size - 1] + b"\n"
    received = np.frombuffer(data, dtype=np.uint8).copy()
    expected = data.count(b"\n")
    for form in (data, bytearray(data), memoryview(received), memoryview(received)[:]):
        assert spool_format.line_count(form) == expected


async def test_an_append_keeps_the_event_count_the_server_counted(tmp_path: Path) -> None:
    """The server has counted a frame's lines already; the spool keeps that count instead of counting again."""
    spool = Spool(tmp_path, 1 << 20, 1 << 20)
    spool.open()
    committer = asyncio.create_task(spool.run_committer())
    await spool.append(1, b'{"a":1}\n{"b":2}\n', 7)
    await spool.append(2, b'{"c":3}\n', 1)
    assert [entry.events for entry in spool.index] == [7, 1]
    assert spool.backlog_events == 8
    spool.close()
    await committer
    spool.release()


async def test_typed_fields_are_held_in_memory_up_to_their_bound_then_spilled_and_never_in_a_segment(
        tmp_path: Path) -> None:
    """Columns sent with a batch stay beside its index entry while they fit the bound; past it they go to a
    spill file and read back whole. They are let go with the flushed entries (a spill file nothing refers to
    is handed back for removal) and never reach a segment; a reopened spool has none and deletes the spill."""
    spool = Spool(tmp_path, 1 << 20, 1 << 20, max_columns_bytes=250)
    spool.columns_spill.file_bytes = 150  # a new spill file after the second piece
    spool.open()
    committer = asyncio.create_task(spool.run_committer())
    for index in range(5):
        await spool.append(index, b'{"a":1}\n', 1, bytes([65 + index]) * 100)
    held = [entry.columns for entry in spool.index]
    assert held[:2] == [b"A" * 100, b"B" * 100]
    assert all(isinstance(piece, SpilledColumns) for piece in held[2:])
    assert read_back(held) == [b"A" * 100, b"B" * 100, b"C" * 100, b"D" * 100, b"E" * 100]
    assert spool.columns_bytes == 200 and spool.columns_spill.spilled_batches == 3
    first_spill, second_spill = Path(held[2].path), Path(held[4].path)
    assert held[3].path == str(first_spill) != str(second_spill)
    assert not any(b"C" * 100 in path.read_bytes() for path in tmp_path.glob("seg-*"))
    assert spool.forget_flushed(spool.index[0].seq) == []
    assert spool.columns_bytes == 100
    await spool.append(9, b'{"a":1}\n', 1, b"F" * 100)
    assert spool.index[-1].columns == b"F" * 100 and spool.columns_bytes == 200
    assert spool.forget_flushed(spool.index[2].seq) == [first_spill]  # C and D flushed: their file is unused
    assert second_spill.exists()  # E is not flushed, and the file is the current one
    spool.close()
    await committer
    spool.release()
    reopened = Spool(tmp_path, 1 << 20, 1 << 20)
    reopened.open()
    assert len(reopened.index) == 6 and {entry.columns for entry in reopened.index} == {None}  # no checkpoint written
    assert not list(tmp_path.glob("columns-*"))
    reopened.release()


def test_pieces_of_one_spill_file_are_read_back_through_one_open(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A range's spilled pieces are read with one open per spill file, not one per batch."""
    spill = ColumnsSpill(tmp_path, 1 << 20)
    pieces = [spilled(spill, bytes([65 + index]) * 32) for index in range(5)]
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *args: opened.append(path) or real_open(path, *args))
    assert read_back(pieces) == [bytes([65 + index]) * 32 for index in range(5)]
    assert opened == [pieces[0].path]
    spill.close()


def test_a_range_with_a_piece_not_read_back_whole_reads_as_none(tmp_path: Path) -> None:
    """A spill file that is gone or shorter than the piece makes the whole range None: the flush then parses
    its lines."""
    spill = ColumnsSpill(tmp_path, 1 << 20)
    piece = spilled(spill, b"X" * 64)
    assert piece is not None and read_back([piece, b"kept"]) == [b"X" * 64, b"kept"]
    os.truncate(piece.path, 10)
    assert read_back([b"kept", piece]) is None
    os.unlink(piece.path)
    assert read_back([b"kept", piece]) is None
    spill.close()


def test_a_range_with_a_batch_that_has_no_typed_fields_reads_no_spill_file(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch recovered after a restart has no typed fields, so its range is parsed anyway: its spilled
    pieces are not read back for nothing, and neither is anything after a piece that could not be."""
    spill = ColumnsSpill(tmp_path, 1 << 20)
    first, second = spilled(spill, b"A" * 32), spilled(spill, b"B" * 32)
    assert first is not None and second is not None
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *args: opened.append(path) or real_open(path, *args))
    assert read_back([first, None, second]) is None and opened == []
    gone = SpilledColumns(str(tmp_path / "gone.spill"), 0, 32)
    assert read_back([gone, first, second]) is None and opened == [gone.path]
    spill.close()


def test_a_spill_that_cannot_be_placed_or_written_says_so(tmp_path: Path) -> None:
    """A spill file that cannot be opened leaves no place (the batch keeps no typed fields, the flush parses
    its lines); a write into a place that was let go, or into a file that fails, answers False."""
    assert ColumnsSpill(tmp_path / "missing", 1 << 20).reserve(64) is None
    spill = ColumnsSpill(tmp_path, 1 << 20)
    piece = spill.reserve(64)
    assert piece is not None and spill.files == 1
    os.close(spill._fds[piece.path])  # the descriptor fails (EBADF) as a broken disk would
    spill._fds[piece.path] = os.open(piece.path, os.O_RDONLY)
    assert not spill.write(piece, b"X" * 64)
    assert spill.release(piece) == [Path(piece.path)] and spill.files == 0
    assert not spill.write(piece, b"X" * 64)  # let go: nothing to write into


def test_the_spill_files_hold_at_most_their_bound_and_count_what_is_removed(tmp_path: Path) -> None:
    """Past ``max_bytes`` in live spill files a batch keeps no typed fields; a removed file frees its bytes."""
    spill = ColumnsSpill(tmp_path, 250, file_bytes=100)
    first, second = spilled(spill, b"A" * 100), spilled(spill, b"B" * 100)
    assert first is not None and second is not None and first.path != second.path
    assert spill.reserve(100) is None and spill.bytes == 200  # a third would pass the bound
    assert spill.release(first) == [Path(first.path)] and spill.bytes == 100
    third = spilled(spill, b"C" * 100)
    assert third is not None and read_back([third]) == [b"C" * 100] and spill.bytes == 200
    assert spill.release(second) == [Path(second.path)] and spill.bytes == 100  # the reaper removes it
    assert spill.release(third) == [Path(third.path)] and spill.files == 0  # caught up: the current file goes too
    fourth = spilled(spill, b"D" * 10)
    assert fourth is not None and fourth.path not in (first.path, second.path, third.path) and read_back([fourth]) == [b"D" * 10]
    spill.close()


async def test_typed_fields_of_a_failed_append_are_let_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group commit that fails releases its batches' columns from the bound, and its spill file, unused
    now, goes to the reaper with the next flushed range (not deleted behind its back)."""
    spool = Spool(tmp_path, 1 << 20, 1 << 20, max_columns_bytes=100)
    spool.open()
    committer = asyncio.create_task(spool.run_committer())

    def failing_fdatasync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    with pytest.raises(Exception):
        await asyncio.gather(spool.append(1, b'{"a":1}\n', 1, b"C" * 100), spool.append(2, b'{"a":1}\n', 1, b"D" * 100))
    assert spool.columns_bytes == 0 and not spool.index and spool.columns_spill.files == 0
    (unused,) = tmp_path.glob("columns-*.spill")
    monkeypatch.undo()
    assert spool.forget_flushed(0) == [unused]
    spool.close()
    await committer
    spool.release()


async def test_spilled_typed_fields_are_written_by_the_commit_thread_never_the_loop(tmp_path: Path) -> None:
    """A batch whose typed fields spill is committed in a worker thread even when its group is small enough
    for the loop, so the event loop never waits on a spill write; the fields read back whole."""
    import threading

    spool = Spool(tmp_path, 1 << 20, 1 << 20, max_columns_bytes=0)
    spool.open()
    threads: list[str] = []
    write = spool.columns_spill.write

    def recording(piece: SpilledColumns, columns: bytes) -> bool:
        threads.append(threading.current_thread().name)
        return write(piece, columns)

    spool.columns_spill.write = recording  # type: ignore[method-assign]
    committer = asyncio.create_task(spool.run_committer())
    await spool.append(1, b'{"a":1}\n', 1, b"C" * 100)
    assert threads and threading.current_thread().name not in threads
    (entry,) = spool.index
    assert isinstance(entry.columns, SpilledColumns) and read_back([entry.columns]) == [b"C" * 100]
    spool.close()
    await committer
    spool.release()


async def test_a_spill_write_that_fails_leaves_the_batch_durable_without_typed_fields(tmp_path: Path) -> None:
    """A spill write that fails does not fail the batch: it is acknowledged and indexed with no typed fields
    (its flush parses the lines), and the spill file it would have used goes to the reaper."""
    spool = Spool(tmp_path, 1 << 20, 1 << 20, max_columns_bytes=0)
    spool.open()
    spool.columns_spill.write = lambda piece, columns: False  # type: ignore[method-assign]
    committer = asyncio.create_task(spool.run_committer())
    seq = await spool.append(1, b'{"a":1}\n', 1, b"C" * 100)
    (entry,) = spool.index
    assert entry.seq == seq and entry.columns is None and spool.columns_spill.files == 0
    (unused,) = tmp_path.glob("columns-*.spill")
    assert spool.forget_flushed(seq) == [unused]
    spool.close()
    await committer
    spool.release()


async def test_release_leaves_the_files_open_while_a_stalled_commit_still_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A shutdown whose drain deadline passed cancels the committer while its thread is still in ``fdatasync``:
    ``release`` then leaves the segment's and the spill's descriptors open (closed under the thread, their
    numbers could be reused by the next file opened), and says so; once the thread is done it closes them."""
    import threading

    spool = Spool(tmp_path, 1 << 24, 1 << 30, max_columns_bytes=0)
    spool.open()
    entered, go_on = threading.Event(), threading.Event()
    real_fdatasync = os.fdatasync

    def stalled_fdatasync(fd: int) -> None:
        entered.set()
        go_on.wait(10)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", stalled_fdatasync)
    committer = asyncio.create_task(spool.run_committer())
    appended = spool.append(1, b'{"a":1}\n', 1, b"C" * 100)  # a spill: committed in the thread
    assert await asyncio.to_thread(entered.wait, 10)
    committer.cancel()
    with caplog.at_level("WARNING", logger="auditlake.writer.spool"):
        spool.release()
    assert "group commit is still running" in caplog.text
    segment_fd, (spill_fd,) = spool._fd, spool.columns_spill._fds.values()
    os.fstat(segment_fd), os.fstat(spill_fd)  # still open: no EBADF
    go_on.set()
    while spool._writing:
        await asyncio.sleep(0.01)
    spool.release()
    for fd in (segment_fd, spill_fd):
        with pytest.raises(OSError):
            os.fstat(fd)
    appended.cancel()
