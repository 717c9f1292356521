"""Helpers of the S3 tests: waiting for uploads and reading every object directly."""

from __future__ import annotations

import io
import time
from typing import Any

import orjson
import pyarrow.parquet as pq

from tests.s3.conftest import s3_client
from tests.service import SERVICE_EVENT_TYPES


def object_keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    """Every key in the bucket under a prefix."""
    client = s3_client(endpoint)
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def stored_events(endpoint: str, bucket: str, prefix: str = "audit/") -> list[dict[str, Any]]:
    """Every event of every Parquet object (from record_json); fails on an unreadable object."""
    client = s3_client(endpoint)
    events = []
    for key in object_keys(endpoint, bucket, prefix):
        if not key.endswith(".parquet"):
            continue
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        table = pq.read_table(io.BytesIO(body), columns=["record_json"])
        events.extend(orjson.loads(value) for value in table.column("record_json").to_pylist())
    return [event for event in events if event.get("type") not in SERVICE_EVENT_TYPES]


def wait_uploaded(endpoint: str, bucket: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Poll the bucket until it holds at least ``count`` events."""
    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        events = stored_events(endpoint, bucket)
        if len(events) >= count:
            return events
        time.sleep(0.2)
    raise TimeoutError(f"bucket holds {len(events)} of {count} events")
