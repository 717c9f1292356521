"""The read engine over many files: exact totals, newest-first pages and cursor walks equal a brute-force scan."""

from __future__ import annotations

import concurrent.futures
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest import filter_scan
from ingest.column_cache import ColumnCache
from ingest.page_candidates import best_rows
from ingest.parquet_source import Footer, FooterCache, ParquetSource, open_parquet, read_footer
from ingest.read_engine import search
from ingest.read_plan import Parsed, Plan, event_micros, matches_event
from shared.s3_layout import DICTIONARY_COLUMNS, SCHEMA, STRING_COLUMNS

BASE = datetime(2026, 3, 1, tzinfo=timezone.utc)
TYPES = ("auth", "cas_grant", "cas_decision", "credential_action")
NEEDLE = "needle-0123456789abcdef"


def _events(generator: random.Random, count: int, start: int) -> list[dict[str, Any]]:
    events = []
    for index in range(start, start + count):
        moment = BASE + timedelta(seconds=generator.randrange(0, 3600))  # about two events per second: ties
        event = {"audit_event_id": f"id-{index:06d}", "ts": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                 "type": TYPES[index % len(TYPES)], "outcome": "deny" if index % 5 == 0 else "allow",
                 "correlation_id": f"c-{generator.randrange(10**9):09d}", "action": ("read", "write")[index % 2]}
        if index % 11:
            event["user_email"] = f"User{index % 97}@Example.com"
        if index % 13 == 0:
            event["capability"] = "grant"
        events.append(event)
    return events


def _write(path: Path, events: list[dict[str, Any]], legacy: bool = False) -> None:
    events = sorted(events, key=lambda event: event["ts"])
    columns: dict[str, pa.Array] = {"ts": pa.array([e["ts"] for e in events]).cast(SCHEMA.field("ts").type)}
    for name in STRING_COLUMNS:
        if legacy and name in ("user_email", "capability", "audit_event_id"):
            continue
        columns[name] = pa.array([e.get(name) for e in events], pa.string())
    columns["record_json"] = pa.array([orjson.dumps(e).decode() for e in events], pa.string())
    table = pa.table(columns)
    pq.write_table(table, path, row_group_size=97, data_page_size=2048, write_batch_size=32,
                   use_dictionary=False if legacy else DICTIONARY_COLUMNS)


def _source(path: Path, cache: ColumnCache, footers: FooterCache) -> ParquetSource:
    """A source as the S3 reader makes them: cached footer, body in memory, page reads from it."""
    data = path.read_bytes()

    def footer() -> Footer:
        return footers.get(path, lambda: read_footer(open_parquet(pa.BufferReader(data))))

    return ParquetSource(lambda: open_parquet(pa.BufferReader(data), footer().metadata), footer, (str(path),), cache,
                         lambda offset, size: memoryview(data)[offset:offset + size])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[dict[str, Any]], list[dict[str, Any]]]:
    """40 files of 20 to 400 events (one legacy-shaped), a needle in a middle file, and unpublished events."""
    root = tmp_path_factory.mktemp("engine")
    generator = random.Random(5)
    files, stored, start = [], [], 0
    for number in range(40):
        events = _events(generator, generator.randrange(20, 400), start)
        start += len(events)
        if number == 17:
            events[len(events) // 2]["correlation_id"] = NEEDLE
        path = root / f"f{number:02d}.parquet"
        if number == 23:  # an old writer's file: no user_email or capability, ids only in record_json
            for event in events:
                event.pop("user_email", None)
                event.pop("capability", None)
        _write(path, events, legacy=number == 23)
        files.append(path)
        stored.extend(events)
    pending = _events(generator, 50, start)
    return files, stored, pending


def _expected(plan: Plan, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    matches = [e for e in events if matches_event(e, event_micros(e), plan)]
    return sorted(matches, key=lambda e: (event_micros(e), e["audit_event_id"]), reverse=True)


PLANS = [
    {"filters": {"correlation_id": NEEDLE}},
    {"filters": {"type": "auth"}},
    {"filters": {"type": "auth", "outcome": "deny"}},
    {"filters": {"type": "nothing"}},
    {"filters": {}, "user_email": "user4@EXAMPLE"},
    {"filters": {}, "user_email": "ExAmPlE.cOm"},
    {"filters": {}, "capability": "grant"},
    {"filters": {"outcome": "allow"}, "capability": "read", "user_email": "user1"},
    {"filters": {}},
]


@pytest.mark.parametrize("spec", PLANS, ids=lambda spec: "-".join(f"{k}" for k in spec["filters"]) + "-" +
                         "-".join(k for k in ("capability", "user_email") if k in spec))
@pytest.mark.parametrize("window", ["all", "part"])
def test_totals_pages_and_cursor_walks_equal_a_brute_force_scan(store, spec: dict, window: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Every page has the exact total; walking the cursor returns every match once, newest first.

    Small pages walk only the first 10 pages; pages of 300 walk to the end. The whole range is searched
    with two workers (filters evaluated in two halves, records decoded in parallel), the part without.
    """
    files, stored, pending = store
    workers = None
    if window == "all":
        monkeypatch.setattr(filter_scan, "PARALLEL_ROWS", 0)
        workers = concurrent.futures.ThreadPoolExecutor(2)
    cache, footers = ColumnCache(), FooterCache()
    since, until = BASE, BASE + timedelta(hours=1)
    if window == "part":
        since, until = BASE + timedelta(minutes=13, microseconds=7_000), BASE + timedelta(minutes=41)
    since_us = int(since.timestamp() * 1_000_000)
    until_us = int(until.timestamp() * 1_000_000)
    for limit, pages in ((1, 10), (7, 10), (300, 10_000)):
        cursor, walked = None, []
        expected = None
        for _ in range(pages):
            plan = Plan(since_us, until_us, limit, dict(spec["filters"]), spec.get("capability"),
                        spec.get("user_email"), cursor)
            expected = expected or _expected(plan, stored + pending)
            result = search(plan, [_source(path, cache, footers) for path in files], [Parsed(list(pending))], workers)
            assert result.total == len(expected)
            walked.extend(result.records)
            assert len(result.records) <= limit
            if not result.more:
                break
            cursor = result.last
        assert [e["audit_event_id"] for e in walked] == [e["audit_event_id"] for e in expected[:len(walked)]]
        assert walked == expected[:len(walked)]
        assert len(walked) == min(len(expected), limit * pages)


def test_best_rows_are_the_newest_and_their_ties() -> None:
    """A row group's candidates: the newest ``limit`` matching rows plus every row tied with the oldest."""
    ts = pa.chunked_array([pa.array([5, 9, 7, 9, 3, 7, 7, 1, 8, 7], pa.int64())])
    mask = pa.chunked_array([pa.array([True, True, True, True, True, True, False, True, True, True])])
    rows = best_rows("unit", ts, mask, 4, 9)
    assert sorted((row[0], row[2][1]) for row in rows) == [(7, 2), (7, 5), (7, 9), (8, 8), (9, 1), (9, 3)]
    assert len(best_rows("unit", ts, mask, 20, 9)) == 9
