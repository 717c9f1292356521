"""The dedupe window: membership, restarts, the time bound and the count bound (within one busy hour too)."""

from __future__ import annotations

import array
import random
from pathlib import Path

import numpy as np
import pyarrow as pa

from writer.dedupe import BUCKET_SECONDS, DedupeWindow
from writer.id_hashes import column_hashes, id_hash, id_hashes, legacy_hashes

HOUR = 500_000  # an hour number; times below are inside it


def _at(hour: int, second: int = 0) -> float:
    return hour * BUCKET_SECONDS + second


def test_seen_finds_exactly_the_remembered_ids(tmp_path: Path) -> None:
    """Against a plain set, over many batches in three hours' segments, ids repeated within and across batches,
    values at the 64-bit edges, probes in no order."""
    generator = random.Random(5)
    window = DedupeWindow(tmp_path, 3 * BUCKET_SECONDS, 1_000_000)
    truth: set[int] = set()
    for batch in range(40):
        values = [generator.getrandbits(64) for _ in range(500)] + [0, 2**64 - 1] * (batch == 7)
        values += generator.sample(values, 20) + generator.sample(sorted(truth), min(len(truth), 30))
        window.remember(values, now=_at(HOUR + batch // 15, batch))
        truth.update(values)
        probe = [generator.choice(values) for _ in range(50)] + [generator.getrandbits(64) for _ in range(50)]
        assert window.seen(probe) == truth.intersection(probe)
    assert len(window.segments) == 3  # an id posted again in a later hour is in both hours' segments
    assert set().union(*(segment.ids.tolist() for segment in window.segments)) == truth
    assert all((segment.ids[1:] > segment.ids[:-1]).all() for segment in window.segments)  # sorted, unique
    assert window.seen([]) == set()


def _legacy_hash(event_id: str) -> int:
    return int(legacy_hashes([event_id.encode()])[0])


def test_a_restart_loads_the_window_and_drops_expired_files(tmp_path: Path) -> None:
    """Ids survive a restart; files of hours outside the window are deleted; files of earlier versions load
    (BLAKE2b hashes: ``ids-<hour>-<n>.bin``, and one file per hour, ``ids-<hour>.bin``) and are searched with
    the ids' legacy hashes, whose matches come back as the ids' current hashes."""
    window = DedupeWindow(tmp_path, 2 * BUCKET_SECONDS, 1000)
    window.remember([id_hash("old")], now=_at(HOUR - 5))
    window.remember([id_hash("a"), id_hash("b")], now=_at(HOUR - 1))
    window.remember([id_hash("c")], now=_at(HOUR))
    assert sorted(path.name.split("-")[0] for path in tmp_path.iterdir()) == ["keys"] * 2  # "old" has left
    (tmp_path / f"ids-{HOUR}.bin").write_bytes(array.array("Q", [_legacy_hash("legacy")]).tobytes())
    (tmp_path / f"ids-{HOUR - 1}-0.bin").write_bytes(array.array("Q", [_legacy_hash("older")]).tobytes())
    (tmp_path / f"ids-{HOUR - 5}-0.bin").write_bytes(array.array("Q", [_legacy_hash("expired")]).tobytes())
    again = DedupeWindow(tmp_path, 2 * BUCKET_SECONDS, 1000)
    again.load(now=_at(HOUR, 10))
    assert any(segment.legacy for segment in again.segments) and again.size == 5
    names = ["a", "b", "c", "legacy", "older", "old", "expired", "new"]
    current = [id_hash(name) for name in names]
    legacy_calls: list[int] = []

    def legacy() -> list[int]:
        legacy_calls.append(1)
        return [_legacy_hash(name) for name in names]

    assert again.seen(current, legacy) == set(current[:5])
    assert again.seen(current) == set(current[:3])  # without the legacy hashes, the legacy files are not searched
    assert legacy_calls == [1]
    assert not list(tmp_path.glob(f"*-{HOUR - 5}*"))
    again.remember([id_hash("d")], now=_at(HOUR, 20))  # never into a legacy segment
    assert (tmp_path / f"ids-{HOUR}.bin").stat().st_size == 8
    third = DedupeWindow(tmp_path, 2 * BUCKET_SECONDS, 1000)
    third.load(now=_at(HOUR, 30))
    assert id_hash("d") in third.seen([id_hash("d")]) and third.size == 6


def test_once_legacy_files_leave_the_window_their_hashes_are_not_asked_for(tmp_path: Path) -> None:
    """The legacy hashes cost a BLAKE2b an id: they are computed only while a legacy segment is in the window."""
    (tmp_path / f"ids-{HOUR}-0.bin").write_bytes(array.array("Q", [_legacy_hash("x")]).tobytes())
    window = DedupeWindow(tmp_path, 1 * BUCKET_SECONDS, 1000)
    window.load(now=_at(HOUR, 10))
    window.remember([id_hash("y")], now=_at(HOUR, 11))

    def refused() -> list[int]:
        raise AssertionError("legacy hashes asked for")

    assert window.seen([id_hash("x")], lambda: [_legacy_hash("x")]) == {id_hash("x")}
    window.remember([id_hash("z")], now=_at(HOUR + 2, 0))  # two hours on: the legacy hour has left
    assert not any(segment.legacy for segment in window.segments) and not list(tmp_path.glob("ids-*"))
    assert window.seen([id_hash("z"), id_hash("x")], refused) == {id_hash("z")}


def test_column_hashes_depend_on_each_ids_bytes_alone() -> None:
    """Each row's hash is that of its bytes alone: the same in any column, slice or chunking, for ids of every
    length around the word size, empty, NUL-padded, multibyte, long; distinct ids hash apart."""
    ids = ["", "a", "a\0", "\0", "ab", "a" * 7, "a" * 8, "a" * 9, "a" * 16, "a" * 17, "é", "😀" * 40,
           "0b3c8d0e-6f1a-4b2c-9d3e-4f5a6b7c8d9e", "x" * 5000, "\ud800x"]
    together = id_hashes(ids)
    assert together.dtype == np.uint64 and len(set(together.tolist())) == len(ids)
    assert [id_hash(event_id) for event_id in ids] == together.tolist()
    column = pa.array([event_id.encode("utf-8", "surrogatepass") for event_id in ids], pa.binary())
    for start in range(len(ids)):
        assert column_hashes(column.slice(start)).tolist() == together[start:].tolist()
    chunked = pa.chunked_array([column.slice(0, 4), column.slice(4, 0), column.slice(4)])
    assert column_hashes(chunked).tolist() == together.tolist()
    assert column_hashes(pa.array(ids[:-1], pa.string())).tolist() == together[:-1].tolist()
    assert column_hashes(pa.chunked_array([], pa.string())).tolist() == []
    assert id_hash("a") == 0x3F8805A87949ECB3  # fixed: the values on disk must not change between versions


def test_column_hashes_of_many_similar_ids_do_not_collide() -> None:
    """A million sequential ids (one character apart) and a million random ones: no two hash the same."""
    sequential = column_hashes(pa.array([f"evt-{index:012d}" for index in range(1_000_000)]))
    generator = random.Random(3)
    randomly = column_hashes(pa.array([generator.randbytes(16).hex() for _ in range(1_000_000)]))
    assert len(np.unique(np.concatenate([sequential, randomly]))) == 2_000_000


def test_the_count_bound_holds_within_one_busy_hour(tmp_path: Path) -> None:
    """Ten times max_ids stored in one hour: memory and files stay bounded, the newest ids are kept."""
    window = DedupeWindow(tmp_path, 24 * BUCKET_SECONDS, 10_000)
    batches = [[id_hash(f"{batch}-{index}") for index in range(1000)] for batch in range(100)]
    for second, batch in enumerate(batches):
        window.remember(batch, now=_at(HOUR, second))
    assert 9_000 <= window.size <= 10_000
    assert window.seen(batches[-1]) == set(batches[-1])
    assert window.seen(batches[0]) == set()
    assert sum(path.stat().st_size for path in tmp_path.glob("keys-*.bin")) <= 8 * 11_000
    reloaded = DedupeWindow(tmp_path, 24 * BUCKET_SECONDS, 10_000)
    reloaded.load(now=_at(HOUR, 200))
    assert reloaded.size == window.size and reloaded.seen(batches[-1]) == set(batches[-1])


def test_each_segment_is_searched_only_for_hashes_its_bit_filter_lets_through(tmp_path: Path, monkeypatch) -> None:
    """A lookup tests each segment's bit filter first: of 2,000 fresh hashes against 10 segments, only the few
    whose bit another id set are searched (not 20,000), and every remembered one is still found."""
    import numpy as np

    from writer import dedupe

    generator = random.Random(9)
    window = DedupeWindow(tmp_path, 3 * BUCKET_SECONDS, 100_000)
    remembered: list[int] = []
    for second in range(10):
        batch = [generator.getrandbits(64) for _ in range(window.segment_ids)]
        window.remember(batch, now=_at(HOUR, second))
        remembered += generator.sample(batch, 10)
    assert len(window.segments) == 10
    searched: list[int] = []
    real_search = np.searchsorted
    monkeypatch.setattr(dedupe.np, "searchsorted", lambda ids, keys: searched.append(len(keys)) or real_search(ids, keys))
    fresh = [generator.getrandbits(64) for _ in range(2000)]
    assert window.seen(fresh + remembered) == set(remembered)
    assert sum(searched) < 0.15 * len(fresh) * len(window.segments)


def test_the_bit_filters_are_rebuilt_at_load_even_for_segments_larger_than_now_configured(tmp_path: Path) -> None:
    """Segments written under a larger ``max_ids`` load into filters sized for today's bound: fuller, so
    less selective, but no remembered id is missed."""
    generator = random.Random(11)
    big = DedupeWindow(tmp_path, 3 * BUCKET_SECONDS, 200_000)
    values = [generator.getrandbits(64) for _ in range(20_000)]
    big.remember(values, now=_at(HOUR))
    small = DedupeWindow(tmp_path, 3 * BUCKET_SECONDS, 20_000)  # segments of 2,000 ids, filters for that
    small.load(now=_at(HOUR, 5))
    fresh = [generator.getrandbits(64) for _ in range(1000)]
    assert small.size == 20_000 and small.seen(values + fresh) == set(values)


def test_segments_merge_to_the_sorted_union() -> None:
    """``_merged`` and ``sorted_unique`` against numpy's set routines, with repeats within and across."""
    from writer.dedupe import _merged, sorted_unique

    generator = np.random.default_rng(4)
    for size, spread in ((0, 10), (1, 10), (50, 30), (5000, 2**64 - 1), (5000, 3000)):
        values = generator.integers(0, spread, size, dtype=np.uint64)
        ids = np.unique(generator.integers(0, spread, 40, dtype=np.uint64))
        assert np.array_equal(sorted_unique(values), np.unique(values))
        assert np.array_equal(_merged(ids, values), np.union1d(ids, values))
        assert np.array_equal(_merged(np.empty(0, np.uint64), values), np.unique(values))
