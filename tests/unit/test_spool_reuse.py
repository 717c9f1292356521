"""Reused spool segments: a flushed full segment becomes the next one, its old records are never replayed
nor read, and the zeroed header that ends a segment's records still tells a corrupt segment from an end."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import orjson
import pytest

from ingest.spool_reader import SpoolReader
from shared import spool_format
from writer.spool import Spool

SEGMENT_BYTES = 600


def _payload(seq: int) -> bytes:
    return orjson.dumps({"n": seq, "pad": "x" * 150}) + b"\n"


async def _append(spool: Spool, seqs: range) -> None:
    for seq in seqs:  # one group commit each: segments roll over every few records
        assert await spool.append(5000 + seq, _payload(seq), 1) == seq


async def _rolled_and_flushed(directory: Path) -> tuple[Spool, asyncio.Task, Path, int]:
    """A spool whose first (full) segment is flushed and kept for reuse; return the spool, its committer,
    that segment and its inode."""
    spool = Spool(directory, SEGMENT_BYTES, 1 << 30)
    spool.open()
    committer = asyncio.create_task(spool.run_committer())
    await _append(spool, range(1, 13))
    first = spool_format.list_segments(directory)[0][1]
    in_first = [entry.seq for entry in spool.index if entry.path == first]
    assert len(spool_format.list_segments(directory)) >= 3 and in_first
    spool.checkpoint(in_first[-1])
    assert spool.forget_flushed(in_first[-1]) == []  # nothing to remove: the flushed segment is kept
    assert spool.spares == [first]
    return spool, committer, first, os.stat(first).st_ino


async def test_a_flushed_full_segment_becomes_the_next_one_written_over(tmp_path: Path) -> None:
    spool, committer, first, inode = await _rolled_and_flushed(tmp_path)
    old = first.read_bytes()
    before = {path for _, path in spool_format.list_segments(tmp_path)}
    while spool.reused_segments == 0:
        await _append(spool, range(spool.next_seq, spool.next_seq + 1))
    await _append(spool, range(spool.next_seq, spool.next_seq + 1))  # the first record of the reused segment
    spool.close()
    await committer
    spool.release()
    segments = {path for _, path in spool_format.list_segments(tmp_path)}
    (reused,) = segments - before
    assert not first.exists() and os.stat(reused).st_ino == inode and spool.spares == []
    assert reused.stat().st_size >= len(old)  # written over from its start, not cut down
    data = reused.read_bytes()
    end, unfinished = spool_format.records_end(data, spool_format.segment_first_seq(reused) - 1)
    assert not unfinished and data.startswith(spool_format.END_OF_RECORDS, end)
    after = end + spool_format.HEADER_SIZE
    assert 0 < after < len(old) and data[after:len(old)] == old[after:]  # the old bytes after it, untouched


async def test_a_reused_segment_replays_only_its_own_records(tmp_path: Path, caplog) -> None:
    """After a stop (or a crash: nothing is cut off at the stop), a reopened spool indexes exactly the unflushed
    records; the reused segment is cut after its last record; nothing is quarantined."""
    spool, committer, _first, inode = await _rolled_and_flushed(tmp_path)
    while spool.reused_segments == 0:
        await _append(spool, range(spool.next_seq, spool.next_seq + 1))
    await _append(spool, range(spool.next_seq, spool.next_seq + 2))
    unflushed = [entry.seq for entry in spool.index]
    reused = next(path for _, path in spool_format.list_segments(tmp_path) if os.stat(path).st_ino == inode)
    ours = [entry.seq for entry in spool.index if entry.path == reused]
    spool.close()
    await committer
    spool.release()
    caplog.set_level(logging.INFO, "auditlake.writer.spool")
    reopened = Spool(tmp_path, SEGMENT_BYTES, 1 << 30)
    reopened.open()
    assert [entry.seq for entry in reopened.index] == unflushed and reopened.quarantined == []
    assert [entry.seq for entry in reopened.index if entry.path == reused] == ours
    assert not any(record.levelno >= logging.WARNING for record in caplog.records)
    assert reused.stat().st_size == sum(entry.length for entry in reopened.index if entry.path == reused)
    reopened.release()


async def test_a_zeroed_header_with_later_records_after_it_is_corruption(tmp_path: Path, caplog) -> None:
    """Zeros where a record's header was, with records after them, is damage (quarantined, the good prefix
    kept); zeros with nothing but older records after them is where the records end."""
    spool = Spool(tmp_path, 1 << 20, 1 << 30)
    spool.open()
    committer = asyncio.create_task(spool.run_committer())
    await _append(spool, range(1, 4))
    spool.close()
    await committer
    spool.release()
    (_, segment), = spool_format.list_segments(tmp_path)
    data = bytearray(segment.read_bytes())
    second = spool_format.HEADER_SIZE + len(_payload(1))
    data[second:second + spool_format.HEADER_SIZE] = spool_format.END_OF_RECORDS
    segment.write_bytes(bytes(data))
    reopened = Spool(tmp_path, 1 << 20, 1 << 30)
    reopened.open()
    assert [entry.seq for entry in reopened.index] == [1] and len(reopened.quarantined) == 1
    (logged,) = [record for record in caplog.records if record.getMessage() == "quarantined corrupt spool segment"]
    assert "zeroed record header before later records" in logged.reason
    reopened.release()


def test_records_end_at_a_zeroed_header_a_lower_seq_or_not_a_header() -> None:
    records = b"".join(spool_format.encode_record(seq, seq, _payload(seq)) for seq in (7, 8, 9))
    stale = spool_format.encode_record(3, 3, _payload(3))
    assert spool_format.seq_floor(Path(spool_format.segment_name(7))) == 6
    assert spool_format.seq_floor(Path("checkpoint.json")) is None
    assert spool_format.records_end(records + spool_format.END_OF_RECORDS + stale, 6) == (len(records), False)
    assert spool_format.records_end(records + stale, 6) == (len(records), False)  # 3 does not rise above 9
    assert spool_format.records_end(records + b"garbage" * 10, 6) == (len(records), False)
    assert spool_format.records_end(records, 6) == (len(records), True)  # the file may go on
    assert spool_format.records_end(records[:-5], 6) == (len(records) - len(_payload(9)) - spool_format.HEADER_SIZE, True)
    assert spool_format.records_end(records, 7) == (0, False)  # the first record is below the segment's name
    assert [record.seq for _, record in spool_format.iter_records(records + stale, Path("seg"), 6)] == [7, 8, 9]
    assert [record.seq for _, record in spool_format.iter_records(stale + stale, Path("seg"), 6)] == []
    with pytest.raises(spool_format.SpoolCorrupt, match="out of sequence before later records"):
        list(spool_format.iter_records(records[:len(records) // 3] + stale + records, Path("seg"), 6))


def test_skip_stops_before_a_record_that_reads_half_written() -> None:
    """A header that reads whole over a payload that does not (a record being written over a reused
    segment's old bytes) is not stepped over: the walk would go wherever its length says."""
    records = [spool_format.encode_record(seq, seq, _payload(seq)) for seq in (1, 2, 3)]
    torn = bytearray(records[2])
    torn[-10:] = b"0123456789"
    data = records[0] + records[1] + bytes(torn)
    assert spool_format.skip_records(data, 3) == len(records[0]) + len(records[1])
    assert spool_format.skip_records(records[0] + records[1] + records[2], 3) == sum(map(len, records))
    assert spool_format.skip_records(data, 1) == len(records[0])


def test_the_reader_reads_a_reused_segment_up_to_its_records(tmp_path: Path, monkeypatch) -> None:
    """Events of the records before the zeroed header only, read a piece at a time (not the old megabytes
    after it), and the same once more records were written over the old ones."""
    segment = tmp_path / spool_format.segment_name(101)
    old = b"".join(spool_format.encode_record(seq, seq, _payload(seq)) for seq in range(1, 6000))
    new = [spool_format.encode_record(seq, seq, _payload(seq)) for seq in range(101, 111)]
    segment.write_bytes(b"".join(new[:5]) + spool_format.END_OF_RECORDS + old)
    read_bytes = []
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, size, offset: read_bytes.append(size) or real_pread(fd, size, offset))
    monkeypatch.setattr("ingest.spool_reader.FIRST_READ_BYTES", 4096)
    reader = SpoolReader(tmp_path)
    assert sorted(seq for seq, _, _ in reader.events()) == list(range(101, 106))
    assert sum(read_bytes) <= 2 * 4096 and segment.stat().st_size > 1_000_000
    with open(segment, "r+b") as handle:  # the writer's next groups, over the zeroed header
        handle.seek(sum(map(len, new[:5])))
        handle.write(b"".join(new[5:]) + spool_format.END_OF_RECORDS)
    assert sorted(seq for seq, _, _ in reader.events()) == list(range(101, 111))
    assert sorted(seq for seq, _, _ in SpoolReader(tmp_path).events()) == list(range(101, 111))


def test_the_reader_skips_a_record_half_written_and_finds_it_once_whole(tmp_path: Path, caplog) -> None:
    """A record that reads half new, half old (written over a reused segment while read) is left out
    without a warning for the active segment, and not remembered as read: once whole, it is found, once."""
    segment = tmp_path / spool_format.segment_name(1)
    records = [spool_format.encode_record(seq, seq, _payload(seq)) for seq in (1, 2, 3)]
    torn = bytearray(records[2])
    torn[-10:] = b"0123456789"
    segment.write_bytes(records[0] + records[1] + bytes(torn) + spool_format.END_OF_RECORDS)
    caplog.set_level(logging.DEBUG, "auditlake.ingest.read")
    reader = SpoolReader(tmp_path)
    assert sorted(seq for seq, _, _ in reader.events()) == [1, 2]
    assert not any(record.levelno >= logging.WARNING for record in caplog.records)
    segment.write_bytes(b"".join(records) + spool_format.END_OF_RECORDS)
    assert sorted(seq for seq, _, _ in reader.events()) == [1, 2, 3]


async def test_a_failed_append_over_a_reused_segment_is_cut_off_and_the_next_one_goes_on(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    """A group commit that fails half written over a reused segment is refused and cut off (with the old
    records after it); the next appends go on from there and a reopen finds exactly them."""
    spool, committer, _first, inode = await _rolled_and_flushed(tmp_path)
    while spool.reused_segments == 0:
        await _append(spool, range(spool.next_seq, spool.next_seq + 1))
    await _append(spool, range(spool.next_seq, spool.next_seq + 1))
    real_pwritev = os.pwritev

    def half_then_fail(fd: int, buffers: list, offset: int) -> int:
        real_pwritev(fd, [bytes(buffers[0])[:10]], offset)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwritev", half_then_fail)
    failed = spool.next_seq
    with pytest.raises(Exception, match="spool write failed"):
        await spool.append(9999, _payload(failed), 1)
    monkeypatch.undo()
    await _append(spool, range(spool.next_seq, spool.next_seq + 2))
    unflushed = [entry.seq for entry in spool.index]
    assert failed not in unflushed
    reused = next(path for _, path in spool_format.list_segments(tmp_path) if os.stat(path).st_ino == inode)
    spool.close()
    await committer
    spool.release()
    reopened = Spool(tmp_path, SEGMENT_BYTES, 1 << 30)
    reopened.open()
    assert [entry.seq for entry in reopened.index] == unflushed and reopened.quarantined == []
    assert not reopened.knows_batch(9999)
    assert reused.stat().st_size == sum(entry.length for entry in reopened.index if entry.path == reused)
    reopened.release()
