"""S3 objects of a flush: lines by partition exactly as one partition_of call per line would group them."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from shared import s3_layout
from writer import event_table
from writer.batches import FlushBatch
from writer.s3_store import partition_groups


def _table(rows: list[tuple[str, str]]) -> pa.Table:
    columns = {name: [None] * len(rows) for name in event_table.SCHEMA.names}
    columns["ts"] = [ts for ts, _ in rows]
    columns["line"] = [line for _, line in rows]
    return pa.Table.from_pydict(columns, schema=event_table.SCHEMA)


def _reference(batch: FlushBatch, granularity: str) -> list[tuple[str, list[tuple[str, str]]]]:
    grouped: dict[str, list[tuple[str, str]]] = {}
    for events in batch.days.values():
        for ts, line in zip(events.column("ts").to_pylist(), events.column("line").to_pylist()):
            grouped.setdefault(s3_layout.partition_of(ts, granularity), []).append((ts, line))
    return sorted(grouped.items())


def _as_rows(groups: list[tuple[str, pa.Table]]) -> list[tuple[str, list[tuple[str, str]]]]:
    return [(partition, list(zip(events.column("ts").to_pylist(), events.column("line").to_pylist())))
            for partition, events in groups]


@pytest.mark.parametrize("granularity", ["day", "hour", "minute"])
def test_groups_equal_one_partition_per_line(granularity: str) -> None:
    """Sorted days, days out of order, odd stamps that share a day but not a partition prefix."""
    generator = random.Random(5)
    stamps = sorted(f"2026-11-{day:02d}T{hour:02d}:{minute:02d}:00.{tick:06d}Z" for day in (29, 30)
                    for hour in (0, 1, 23) for minute in (0, 1, 59) for tick in (0, 1))
    odd = ["2026/11/29T00:00:00.000000Z", "2026-11-29", "", "2026-11-29T00:0"]
    for _ in range(30):
        days: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        for index, ts in enumerate(sorted(generator.sample(stamps, generator.randint(1, len(stamps))) + odd[:2])):
            days.setdefault((ts[0:4], ts[5:7], ts[8:10]), []).append((ts, f"{index}\n"))
        days[("", "", "")] = [(ts, "odd\n") for ts in generator.sample(odd, 3)]
        tables = {key: _table(rows) for key, rows in reversed(list(days.items()))}
        batch = FlushBatch(1, 2, tables, 0, 0, [], [])
        assert _as_rows(partition_groups(batch, granularity)) == _reference(batch, granularity)
