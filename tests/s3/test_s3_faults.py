"""S3 faults under load: an outage, throttling, and an upload whose reply was lost."""

from __future__ import annotations

import io
import time

import pyarrow.parquet as pq

from tests.ledger import Ledger, LoadGenerator, poll, settle, wait_for_acks
from tests.s3.conftest import s3_client
from tests.s3.helpers import object_keys, stored_events
from tests.s3.proxy import FaultyProxy


def _settle(moto_endpoint: str, bucket: str, ledger: Ledger):
    """Wait until every acknowledged event is uploaded; return the verdict over the bucket."""
    return settle(ledger, lambda: stored_events(moto_endpoint, bucket), timeout=60)


def _all_objects_readable(moto_endpoint: str, bucket: str) -> None:
    client = s3_client(moto_endpoint)
    for key in object_keys(moto_endpoint, bucket):
        if "/_digests/" in key:  # tamper-evidence digests, keys and pointers (JSON, PEM)
            continue
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert key.endswith(".parquet")
        pq.read_table(io.BytesIO(body))


def test_thirty_second_outage_under_load(service_factory, s3_env, moto_endpoint, bucket) -> None:
    """S3 down for 30 s: storage down in status, ingest keeps acknowledging, then every event uploads once."""
    proxy = FaultyProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    try:
        service = service_factory(**{**s3_env, "AUDIT_SERVICE_S3_ENDPOINT_URL": proxy.endpoint})
        ledger = Ledger()
        producers = [LoadGenerator(service, ledger, batch_size=20) for _ in range(2)]
        for producer in producers:
            producer.start()
        try:
            wait_for_acks(ledger, 200)
            proxy.set_down(True)
            poll(lambda: service.get("/v1/audit/status")[1]["storage"]["status"] == "down", 10,
                  "storage never reported down")
            during = len(ledger.acknowledged)
            started = time.monotonic()
            wait_for_acks(ledger, during + 500)
            poll(lambda: service.writer_status()["failed_flushes"] > 0, 15, "no upload failed during the outage")
            remaining = 30 - (time.monotonic() - started)
            if remaining > 0:
                time.sleep(remaining)
            proxy.set_down(False)
            poll(lambda: service.get("/v1/audit/status")[1]["storage"]["status"] == "healthy", 15,
                  "storage never recovered")
            wait_for_acks(ledger, len(ledger.acknowledged) + 200)
        finally:
            for producer in producers:
                producer.stop()
        verdict = _settle(moto_endpoint, bucket, ledger)
        assert verdict.acknowledged >= 900
        assert (verdict.lost, verdict.duplicated, verdict.phantom) == ([], [], [])
        _all_objects_readable(moto_endpoint, bucket)
        poll(lambda: service.writer_status()["spool_backlog_events"] == 0, 15, "staged events never all uploaded")
    finally:
        proxy.close()


def test_throttling_loses_and_doubles_nothing(service_factory, s3_env, moto_endpoint, bucket) -> None:
    """With 40 % of S3 requests answered 503 SlowDown, every acknowledged event is uploaded exactly once."""
    service = service_factory(**s3_env, AUDIT_SERVICE_TEST_S3_THROTTLE="0.4")
    ledger = Ledger()
    producers = [LoadGenerator(service, ledger, batch_size=20) for _ in range(2)]
    for producer in producers:
        producer.start()
    try:
        wait_for_acks(ledger, 1500)
        # each request is throttled at random: keep the load on until some were (a fast writer needs few)
        poll(lambda: "injected SlowDown" in service.tail(100_000), 60, "the throttle hook never fired")
    finally:
        for producer in producers:
            producer.stop()
    verdict = _settle(moto_endpoint, bucket, ledger)
    assert (verdict.lost, verdict.duplicated, verdict.phantom) == ([], [], [])
    _all_objects_readable(moto_endpoint, bucket)


def test_an_upload_whose_reply_was_lost_is_retried_to_the_same_key(service_factory, s3_env, moto_endpoint,
                                                                    bucket) -> None:
    """A PUT that S3 stored but whose answer never arrived is sent again under the same key: no duplicate."""
    proxy = FaultyProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    try:
        service = service_factory(**{**s3_env, "AUDIT_SERVICE_S3_ENDPOINT_URL": proxy.endpoint})
        proxy.swallow_parquet_puts = 2
        ledger = Ledger()
        producer = LoadGenerator(service, ledger, batch_size=20)
        producer.start()
        try:
            wait_for_acks(ledger, 400)
            poll(lambda: proxy.swallowed >= 2, 20, "no reply was swallowed")
            wait_for_acks(ledger, len(ledger.acknowledged) + 200)
        finally:
            producer.stop()
        verdict = _settle(moto_endpoint, bucket, ledger)
        assert (verdict.lost, verdict.duplicated, verdict.phantom) == ([], [], [])
        keys = object_keys(moto_endpoint, bucket, "audit/")
        assert len(keys) == len(set(keys))
    finally:
        proxy.close()
