"""The dedupe window: membership, restarts, the time bound and the count bound (within one busy hour too)."""

from __future__ import annotations

import array
import random
from pathlib import Path

from writer.dedupe import BUCKET_SECONDS, DedupeWindow, id_hash

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


def test_a_restart_loads_the_window_and_drops_expired_files(tmp_path: Path) -> None:
    """Ids survive a restart; files of hours outside the window are deleted; old one-file-per-hour names load."""
    window = DedupeWindow(tmp_path, 2 * BUCKET_SECONDS, 1000)
    window.remember([id_hash("old")], now=_at(HOUR - 5))
    window.remember([id_hash("a"), id_hash("b")], now=_at(HOUR - 1))
    window.remember([id_hash("c")], now=_at(HOUR))
    (tmp_path / f"ids-{HOUR}.bin").write_bytes(array.array("Q", [id_hash("legacy")]).tobytes())
    again = DedupeWindow(tmp_path, 2 * BUCKET_SECONDS, 1000)
    again.load(now=_at(HOUR, 10))
    names = ["a", "b", "c", "legacy", "old"]
    assert again.seen([id_hash(name) for name in names]) == {id_hash(name) for name in names[:4]}
    assert not list(tmp_path.glob(f"ids-{HOUR - 5}*"))
    again.remember([id_hash("d")], now=_at(HOUR, 20))
    third = DedupeWindow(tmp_path, 2 * BUCKET_SECONDS, 1000)
    third.load(now=_at(HOUR, 30))
    assert id_hash("d") in third.seen([id_hash("d")]) and third.size == 5


def test_the_count_bound_holds_within_one_busy_hour(tmp_path: Path) -> None:
    """Ten times max_ids stored in one hour: memory and files stay bounded, the newest ids are kept."""
    window = DedupeWindow(tmp_path, 24 * BUCKET_SECONDS, 10_000)
    batches = [[id_hash(f"{batch}-{index}") for index in range(1000)] for batch in range(100)]
    for second, batch in enumerate(batches):
        window.remember(batch, now=_at(HOUR, second))
    assert 9_000 <= window.size <= 10_000
    assert window.seen(batches[-1]) == set(batches[-1])
    assert window.seen(batches[0]) == set()
    assert sum(path.stat().st_size for path in tmp_path.glob("ids-*.bin")) <= 8 * 11_000
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
