"""The S3 backend end to end: exact round trip, layout, independent readers, replicas, legacy objects."""

from __future__ import annotations

import io
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests.ledger import make_events
from tests.s3.conftest import s3_client
from tests.s3.helpers import object_keys, wait_uploaded


def _poll_total(service, query: str, expected: int, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = service.get(f"/v1/audit/events?{query}")[1]
        if body["total"] == expected or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_every_field_comes_back_exactly(service_factory, s3_env, moto_endpoint, bucket) -> None:
    """Nested, unicode, numeric and boolean fields read back unchanged, before and after upload."""
    service = service_factory(**s3_env)
    events = make_events(3, "exact")
    events[0].update({"details": {"deep": {"list": [1, 2.5, True, None, "ü🚀"]}}, "count": 2**53,
                      "flag": False, "user_email": "Zoë@Example.com", "tenant_id": "t-ß"})
    events[1]["details"] = {"empty": {}, "text": "line\nbreak \"quoted\""}
    assert service.post({"events": events})[0] == 202
    before = service.get("/v1/audit/events?correlation_id=exact")[1]
    wait_uploaded(moto_endpoint, bucket, 3)
    after = service.get("/v1/audit/events?correlation_id=exact")[1]
    for body in (before, after):
        got = {record["audit_event_id"]: record for record in body["records"]}
        assert body["total"] == 3
        for event in events:
            record = got[event["audit_event_id"]]
            assert {key: record[key] for key in event if key != "ts"} == {k: v for k, v in event.items() if k != "ts"}
            assert record["received_at"].endswith("Z")
    deadline = time.monotonic() + 10  # the upload was built from the typed fields ingest sent, not a parse
    while (status := service.writer_status())["flushes"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status["flushes"] >= 1 and (status["parsed_flushes"], status["typed_field_mismatches"]) == (0, 0)


def test_objects_are_hive_partitioned_by_each_events_own_ts(service_factory, s3_env, moto_endpoint, bucket) -> None:
    """Events of two hours land in two hour partitions with deterministic writer-range names."""
    service = service_factory(**s3_env)
    events = make_events(4, "layout")
    events[0]["ts"] = events[1]["ts"] = "2026-03-04T05:06:07Z"
    events[2]["ts"] = events[3]["ts"] = "2026-03-04T09:00:00.5Z"
    assert service.post({"events": events})[0] == 202
    wait_uploaded(moto_endpoint, bucket, 4)
    keys = sorted(object_keys(moto_endpoint, bucket, "audit/dt=2026-03-04/"))
    assert [key.rsplit("/", 1)[0] for key in keys] == ["audit/dt=2026-03-04/hour=05", "audit/dt=2026-03-04/hour=09"]
    name = keys[0].rsplit("/", 1)[1]
    assert name.startswith("writer-a-") and name.endswith(".parquet")
    assert keys[0].rsplit("-", 2)[1:] == keys[1].rsplit("-", 2)[1:], "one spool range, one name per partition"


@pytest.mark.parametrize("partition, expected", [("minute", "audit/dt=2026-03-04/hour=05/minute=06"),
                                                 ("day", "audit/dt=2026-03-04")])
def test_partition_granularity(service_factory, s3_env, moto_endpoint, bucket, partition, expected) -> None:
    """AUDIT_SERVICE_S3_PARTITION=minute adds minute=MM; day drops hour=."""
    service = service_factory(**s3_env, AUDIT_SERVICE_S3_PARTITION=partition)
    events = make_events(2, "granularity")
    for event in events:
        event["ts"] = "2026-03-04T05:06:07Z"
    assert service.post({"events": events})[0] == 202
    wait_uploaded(moto_endpoint, bucket, 2)
    assert [key.rsplit("/", 1)[0] for key in object_keys(moto_endpoint, bucket, "audit/dt=2026-03-04")] == [expected]
    body = _poll_total(service, "since=2026-03-04T05:00:00Z&until=2026-03-04T06:00:00Z", 2)
    assert body["total"] == 2


def test_a_backlog_is_uploaded_in_objects_of_at_most_the_object_bound(service_factory, s3_env, moto_endpoint,
                                                                      bucket) -> None:
    """With uploads held back by the interval, AUDIT_SERVICE_S3_MAX_OBJECT_BYTES alone starts a flush, and
    no object holds more spooled bytes than the bound (the writer's memory for a flush follows it)."""
    bound = 12_000
    service = service_factory(**{**s3_env, "AUDIT_SERVICE_S3_UPLOAD_INTERVAL_SECONDS": "3600",
                                 "AUDIT_SERVICE_S3_MAX_OBJECT_BYTES": str(bound)})
    for request in range(12):  # one spool record each, about 5 KB
        assert service.post({"events": make_events(20, f"bound-{request}")})[0] == 202
    uploaded = [event["audit_event_id"] for event in wait_uploaded(moto_endpoint, bucket, 200)]
    assert len(uploaded) == len(set(uploaded))
    client = s3_client(moto_endpoint)
    sizes = []
    for key in object_keys(moto_endpoint, bucket, "audit/dt="):  # not the tamper-evidence digests beside them
        table = pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key=key)["Body"].read()),
                              columns=["record_json"])
        sizes.append(sum(len(line.encode()) + 1 for line in table.column("record_json").to_pylist()))
    assert len(sizes) >= 5
    assert max(sizes) <= bound


def test_objects_read_independently_with_pyarrow_and_duckdb(service_factory, s3_env, moto_endpoint, bucket,
                                                            tmp_path: Path) -> None:
    """pyarrow.dataset (Hive partitioning, straight from the bucket) and DuckDB see the same typed rows."""
    service = service_factory(**s3_env)
    events = make_events(50, "engines")
    for index, event in enumerate(events):
        event["ts"] = f"2026-05-06T{7 + index % 3:02d}:{index:02d}:00Z"
    assert service.post({"events": events})[0] == 202
    wait_uploaded(moto_endpoint, bucket, 50)
    fs = pafs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1",
                           endpoint_override=moto_endpoint.replace("http://", ""), scheme="http")
    dataset = ds.dataset(f"{bucket}/audit", filesystem=fs, format="parquet", partitioning="hive")
    ours = ds.field("correlation_id") == "engines"
    table = dataset.to_table(filter=(ds.field("hour") == 8) & ours)
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.num_rows == sum(1 for index in range(50) if 7 + index % 3 == 8)
    full = dataset.to_table(filter=ours)
    assert sorted(full.column("audit_event_id").to_pylist()) == sorted(e["audit_event_id"] for e in events)
    client = s3_client(moto_endpoint)
    for key in object_keys(moto_endpoint, bucket, "audit/"):
        target = tmp_path / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    rows = duckdb.sql(
        f"SELECT audit_event_id, ts, hour FROM read_parquet('{tmp_path}/audit/**/*.parquet', hive_partitioning=true) "
        "WHERE correlation_id = 'engines' ORDER BY ts"
    ).fetchall()
    assert len(rows) == 50
    assert isinstance(rows[0][1], datetime)
    assert sorted(row[0] for row in rows) == sorted(full.column("audit_event_id").to_pylist())
    first = min(full.column("ts").to_pylist())
    assert rows[0][1].replace(tzinfo=timezone.utc) == first.astimezone(timezone.utc)


def test_two_writer_ids_in_one_bucket_are_both_read(service_factory, s3_env, moto_endpoint, bucket) -> None:
    """Two replicas (writer-a, writer-b) write to the same bucket; a query on either sees both."""
    first = service_factory(**s3_env)
    second = service_factory(**{**s3_env, "AUDIT_SERVICE_WRITER_ID": "writer-b"})
    events_a, events_b = make_events(3, "replicas"), make_events(4, "replicas")
    assert first.post({"events": events_a})[0] == 202
    assert second.post({"events": events_b})[0] == 202
    wait_uploaded(moto_endpoint, bucket, 7)
    writers = {key.rsplit("/", 1)[1].rsplit("-", 2)[0] for key in object_keys(moto_endpoint, bucket, "audit/dt=")}
    assert writers == {"writer-a", "writer-b"}
    for service in (first, second):
        assert _poll_total(service, "correlation_id=replicas", 7)["total"] == 7


def _legacy_object(events: list[dict], null_columns: bool) -> bytes:
    columns = ["ts", "type", "outcome", "component", "correlation_id", "tenant_id", "source", "action", "capability",
               "resource_ref", "subject_hash", "subject_ref", "actor_ref", "reason_code", "agent_name", "tool_name",
               "user_email"]
    data = {}
    for name in columns:
        values = [event.get(name) for event in events]
        data[name] = pa.array(values, pa.null() if null_columns and all(v is None for v in values) else pa.string())
    data["record_json"] = pa.array([orjson.dumps(event).decode() for event in events], pa.string())
    sink = io.BytesIO()
    pq.write_table(pa.table(data), sink, compression="snappy")
    return sink.getvalue()


def test_legacy_objects_of_the_old_service_are_returned(service_factory, s3_env, moto_endpoint, bucket) -> None:
    """Objects in the old layout (minute folders and day folders, string ts, null-typed columns) are read."""
    now = datetime.now(timezone.utc)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"
    minute_events = make_events(3, "legacy")
    day_events = make_events(2, "legacy")
    for event in minute_events + day_events:
        event["ts"] = stamp
        event.pop("details")
    client = s3_client(moto_endpoint)
    compact = now.strftime("%Y%m%dT%H%M%SZ")
    client.put_object(Bucket=bucket, Key=f"audit/{now:%Y/%m/%d/%H/%M}/audit-{compact}-0123456789ab.parquet",
                      Body=_legacy_object(minute_events, null_columns=True))
    client.put_object(Bucket=bucket, Key=f"audit/{now:%Y/%m/%d}/audit-{compact}-ba9876543210.parquet",
                      Body=_legacy_object(day_events, null_columns=False))
    service = service_factory(**s3_env)
    body = service.get("/v1/audit/events?correlation_id=legacy&window=1h")[1]
    assert body["total"] == 5
    assert {r["audit_event_id"] for r in body["records"]} == {e["audit_event_id"] for e in minute_events + day_events}
    assert service.get("/v1/audit/events?correlation_id=legacy&window=1h&user_email=LOAD@")[1]["total"] == 5
    assert service.get("/v1/audit/events?correlation_id=legacy&capability=nope")[1]["total"] == 0
