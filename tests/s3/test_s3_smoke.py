"""Smoke: post through the two processes on the S3 backend and read back."""

from __future__ import annotations

import time

from tests.ledger import make_events
from tests.s3.conftest import s3_client


def test_round_trip(service_factory, s3_env, moto_endpoint, bucket) -> None:
    """Events posted on the S3 backend are readable at once and land as Parquet objects."""
    service = service_factory(**s3_env)
    events = make_events(5, "smoke")
    events[0]["details"] = {"nested": {"ü": [1, 2.5, True, None]}}
    assert service.post({"events": events})[0] == 202
    _, body, _ = service.get("/v1/audit/events?correlation_id=smoke")
    assert body["total"] == 5
    deadline = time.monotonic() + 10
    keys = []
    while time.monotonic() < deadline and not keys:
        keys = [item["Key"] for item in s3_client(moto_endpoint).list_objects_v2(Bucket=bucket).get("Contents", [])]
        time.sleep(0.1)
    assert keys and keys[0].startswith("audit/dt=") and keys[0].endswith(".parquet"), keys
    _, body, _ = service.get("/v1/audit/events?correlation_id=smoke")
    assert body["total"] == 5
    got = {record["audit_event_id"]: record for record in body["records"]}
    assert got[events[0]["audit_event_id"]]["details"] == {"nested": {"ü": [1, 2.5, True, None]}}
