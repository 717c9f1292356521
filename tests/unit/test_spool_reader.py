"""SpoolReader: events past the checkpoint, exact as the checkpoint advances and segments grow or rotate."""

from __future__ import annotations

from pathlib import Path

import orjson

from ingest import spool_reader
from ingest.spool_reader import SpoolReader
from shared import spool_format


def _append(path: Path, first: int, count: int) -> None:
    with open(path, "ab") as handle:
        for seq in range(first, first + count):
            payload = b"\n".join(orjson.dumps({"n": seq, "part": part}) for part in range(2))
            handle.write(spool_format.encode_record(seq, seq, payload))


def _checkpoint(spool: Path, flushed: int) -> None:
    (spool / spool_format.CHECKPOINT_NAME).write_bytes(orjson.dumps({"flushed_seq": flushed}))


def _seqs(reader: SpoolReader) -> list[int]:
    events = reader.events()
    assert all(event["n"] == seq and ts is None for seq, event, ts in events)
    return sorted({seq for seq, _, _ in events})


def test_events_follow_the_checkpoint_and_the_growing_segment(tmp_path: Path) -> None:
    """As records are appended and flushed, every read returns exactly the unflushed ones (twice each line)."""
    segment = tmp_path / spool_format.segment_name(1)
    reader = SpoolReader(tmp_path)
    assert reader.events() == []
    _append(segment, 1, 50)
    assert _seqs(reader) == list(range(1, 51)) and len(reader.events()) == 100
    _checkpoint(tmp_path, 30)
    assert _seqs(reader) == list(range(31, 51))
    _append(segment, 51, 10)
    assert _seqs(reader) == list(range(31, 61))
    _checkpoint(tmp_path, 60)
    assert _seqs(reader) == []
    _append(segment, 61, 5)
    assert _seqs(reader) == list(range(61, 66))
    assert SpoolReader(tmp_path).events() == reader.events()


def test_a_replaced_or_rotated_segment_is_read_from_its_start(tmp_path: Path) -> None:
    """A new segment, or a segment file replaced under the same name, does not reuse an old offset."""
    first = tmp_path / spool_format.segment_name(1)
    _append(first, 1, 20)
    _checkpoint(tmp_path, 15)
    reader = SpoolReader(tmp_path)
    assert _seqs(reader) == list(range(16, 21))
    second = tmp_path / spool_format.segment_name(21)
    _append(second, 21, 10)
    _checkpoint(tmp_path, 22)
    assert _seqs(reader) == list(range(23, 31))
    replacement = tmp_path / "replacement"
    _append(replacement, 21, 4)
    replacement.replace(second)
    assert _seqs(reader) == [23, 24]


def test_a_checkpoint_going_back_is_still_exact(tmp_path: Path) -> None:
    """An offset remembered for a later checkpoint is not used for an earlier one."""
    segment = tmp_path / spool_format.segment_name(1)
    _append(segment, 1, 40)
    reader = SpoolReader(tmp_path)
    _checkpoint(tmp_path, 35)
    assert _seqs(reader) == list(range(36, 41))
    _checkpoint(tmp_path, 10)
    assert _seqs(reader) == list(range(11, 41))


def test_records_parsed_once_are_reused_and_the_memo_is_bounded(tmp_path: Path, monkeypatch) -> None:
    """A second read parses only records appended since; past the bound every read parses again."""
    parsed: list[bytes] = []
    real_loads = spool_reader.orjson.loads

    def counting_loads(data):
        parsed.append(data)
        return real_loads(data)

    segment = tmp_path / spool_format.segment_name(1)
    _append(segment, 1, 30)
    _checkpoint(tmp_path, 0)
    reader = SpoolReader(tmp_path)
    bounded = SpoolReader(tmp_path, memo_events=10)
    monkeypatch.setattr(spool_reader.orjson, "loads", counting_loads)
    assert _seqs(reader) == list(range(1, 31))
    first = len(parsed)
    _append(segment, 31, 5)
    _checkpoint(tmp_path, 20)
    assert _seqs(reader) == list(range(21, 36))
    assert len(parsed) - first == 2 * 5 + 1  # five new records of two events, and the checkpoint
    parsed.clear()
    assert _seqs(bounded) == list(range(21, 36)) and _seqs(bounded) == list(range(21, 36))
    assert len(parsed) == 2 * (2 * 15 + 1)
