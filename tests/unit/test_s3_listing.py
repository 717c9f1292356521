"""S3 listing for a read: new-layout days always, legacy days only when the bucket has legacy years."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ingest.s3_reader import ObjectCache, S3Sources


class FakePaginator:
    """list_objects_v2 over a sorted key list, with Delimiter and PageSize like S3 (and a call log)."""

    def __init__(self, keys: list[str], calls: list[dict[str, Any]]) -> None:
        self.keys = sorted(keys)
        self.calls = calls

    def paginate(self, Bucket: str, Prefix: str, Delimiter: str | None = None,
                 PaginationConfig: dict[str, int] | None = None):
        self.calls.append({"Prefix": Prefix, "Delimiter": Delimiter})
        entries: list[tuple[str, bool]] = []
        for key in self.keys:
            if not key.startswith(Prefix):
                continue
            rest = key[len(Prefix):]
            if Delimiter and Delimiter in rest:
                common = Prefix + rest.split(Delimiter)[0] + Delimiter
                if not entries or entries[-1] != (common, True):
                    entries.append((common, True))
            else:
                entries.append((key, False))
        size = (PaginationConfig or {}).get("PageSize", 1000)
        for start in range(0, max(len(entries), 1), size):
            page = entries[start:start + size]
            self.calls[-1]["pages"] = self.calls[-1].get("pages", 0) + 1
            yield {"Contents": [{"Key": key, "ETag": "e"} for key, common in page if not common],
                   "CommonPrefixes": [{"Prefix": key} for key, common in page if common]}


class FakeClient:
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.calls: list[dict[str, Any]] = []

    def get_paginator(self, name: str) -> FakePaginator:
        assert name == "list_objects_v2"
        return FakePaginator(self.keys, self.calls)


def _sources(client: FakeClient, tmp_path: Path) -> S3Sources:
    return S3Sources(client, "b", "audit", "hour", "w", tmp_path, ObjectCache(1 << 20))


SINCE = datetime(2026, 5, 1, 3, tzinfo=timezone.utc)
UNTIL = datetime(2026, 5, 2, 3, tzinfo=timezone.utc)
NEW = ["audit/dt=2026-05-01/hour=05/w-00000000000000000001-00000000000000000002.parquet",
       "audit/dt=2026-05-02/hour=01/w-00000000000000000003-00000000000000000004.parquet",
       "audit/_digests/w/latest.json"]
LEGACY = ["audit/2026/05/02/audit-20260502T010000Z-abc.parquet", "audit/2025/12/31/audit-20251231T010000Z-a.parquet"]


def test_without_legacy_years_only_new_layout_days_are_listed(tmp_path: Path) -> None:
    """No ``YYYY/`` prefix: two day listings plus one short top-level listing, no legacy day listings."""
    client = FakeClient(NEW + [f"audit/dt=2026-04-{day:02d}/hour=00/w-1-2.parquet" for day in range(1, 29)])
    listed = [item["Key"] for listing in _sources(client, tmp_path)._listings(SINCE, UNTIL, -1) for item in listing]
    assert sorted(listed) == sorted(NEW[:2])
    day_calls = sorted(call["Prefix"] for call in client.calls if call["Delimiter"] is None)
    assert day_calls == ["audit/dt=2026-05-01/", "audit/dt=2026-05-02/"]
    top = [call for call in client.calls if call["Delimiter"] == "/"]
    assert len(top) == 1 and top[0]["pages"] == 1


def test_legacy_days_are_listed_under_existing_years(tmp_path: Path) -> None:
    """A legacy year prefix brings the legacy day prefixes of the range (and the day after) back."""
    client = FakeClient(NEW + LEGACY)
    sources = _sources(client, tmp_path)
    assert sources.legacy_years() == {"2025", "2026"}
    listed = [item["Key"] for listing in sources._listings(SINCE, UNTIL, -1) for item in listing]
    assert sorted(listed) == sorted(NEW[:2] + LEGACY[:1])
    day_calls = {call["Prefix"] for call in client.calls if call["Delimiter"] is None}
    assert {"audit/2026/05/01/", "audit/2026/05/02/", "audit/2026/05/03/"} <= day_calls


def test_a_listing_is_reused_only_while_the_checkpoint_stands_and_briefly(tmp_path: Path, monkeypatch) -> None:
    """Same checkpoint within LISTING_REUSE_SECONDS: no new list calls; a moved checkpoint or age relists."""
    from ingest import s3_reader

    client = FakeClient(list(NEW))
    sources = _sources(client, tmp_path)
    clock = [1000.0]
    monkeypatch.setattr(s3_reader.time, "monotonic", lambda: clock[0])

    def keys(checkpoint: int) -> list[str]:
        return sorted(item["Key"] for listing in sources._listings(SINCE, UNTIL, checkpoint) for item in listing)

    assert keys(7) == sorted(NEW[:2])
    calls = len(client.calls)
    client.keys.append("audit/dt=2026-05-01/hour=06/w-00000000000000000005-00000000000000000006.parquet")
    assert keys(7) == sorted(NEW[:2]) and len(client.calls) == calls  # reused: seqs 5-6 are still spooled
    assert len(keys(8)) == 3 and len(client.calls) > calls  # the checkpoint moved: listed again
    calls = len(client.calls)
    client.keys.append("audit/dt=2026-05-01/hour=07/other-00000000000000000001-00000000000000000001.parquet")
    clock[0] += s3_reader.LISTING_REUSE_SECONDS
    assert len(keys(8)) == 4 and len(client.calls) > calls  # too old: listed again (other replicas, retention)
    calls = len(client.calls)
    assert len(keys(-1)) == 4 and len(client.calls) > calls  # no checkpoint known: never reused
