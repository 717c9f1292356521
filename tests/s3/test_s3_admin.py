"""S3 administration: lifecycle retention, storage figures, start-up configuration errors, cached health."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from shared.s3_layout import ABORT_MULTIPART_RULE_ID, RETENTION_RULE_ID, lifecycle_rules
from tests.s3.conftest import s3_client
from tests.s3.proxy import FaultyProxy
from tests.service import REPO, http

FOREIGN_RULE = {"ID": "someone-elses-rule", "Filter": {"Prefix": "other/"}, "Status": "Enabled",
                "Expiration": {"Days": 400}}


def _rules(endpoint: str, bucket: str) -> dict[str, dict]:
    config = s3_client(endpoint).get_bucket_lifecycle_configuration(Bucket=bucket)
    return {rule["ID"]: rule for rule in config["Rules"]}


def test_lifecycle_rule_created_changed_removed_and_foreign_rule_kept(service_factory, s3_env, moto_endpoint,
                                                                      bucket) -> None:
    """PUT retention creates, changes and (0) removes our rule, scoped to the prefix; a foreign rule survives."""
    s3_client(moto_endpoint).put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [FOREIGN_RULE]})
    service = service_factory(**s3_env)
    url = f"{service.url}/v1/audit/retention"
    assert http("GET", url)[1] == {"backend": "s3", "retention_days": 0, "configurable": True,
                                   "bucket": bucket, "prefix": "audit"}
    status, body, _ = http("PUT", url, {"days": 30})
    assert (status, body["retention_days"]) == (200, 30)
    rules = _rules(moto_endpoint, bucket)
    assert rules[RETENTION_RULE_ID]["Expiration"]["Days"] == 30
    assert rules[RETENTION_RULE_ID]["Filter"]["Prefix"] == "audit/"
    assert rules[ABORT_MULTIPART_RULE_ID]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    assert rules["someone-elses-rule"] == FOREIGN_RULE
    assert http("GET", url)[1]["retention_days"] == 30
    assert http("PUT", url, {"days": 7})[0] == 200
    assert _rules(moto_endpoint, bucket)[RETENTION_RULE_ID]["Expiration"]["Days"] == 7
    assert http("PUT", url, {"days": 0})[0] == 200
    rules = _rules(moto_endpoint, bucket)
    assert RETENTION_RULE_ID not in rules and rules["someone-elses-rule"] == FOREIGN_RULE
    assert http("GET", url)[1]["retention_days"] == 0
    for bad in ({}, {"days": "7"}, {"days": -1}, {"days": 1.5}):
        status, body, _ = http("PUT", url, bad)
        assert status == 400 and "detail" in body
    assert _rules(moto_endpoint, bucket)["someone-elses-rule"] == FOREIGN_RULE


def test_a_failed_read_of_the_configuration_changes_nothing(service_factory, s3_env, moto_endpoint, bucket) -> None:
    """When reading the lifecycle configuration fails, PUT answers 502 and writes nothing."""
    s3_client(moto_endpoint).put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [FOREIGN_RULE]})
    proxy = FaultyProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    try:
        service = service_factory(**{**s3_env, "AUDIT_SERVICE_S3_ENDPOINT_URL": proxy.endpoint})
        proxy.fail_requests_containing = b"GET /" + bucket.encode() + b"?lifecycle"
        status, body, _ = http("PUT", f"{service.url}/v1/audit/retention", {"days": 9})
        assert status == 502 and "nothing was changed" in body["detail"]
        assert _rules(moto_endpoint, bucket) == {"someone-elses-rule": FOREIGN_RULE}
    finally:
        proxy.close()


def test_retention_days_applied_at_start(service_factory, s3_env, moto_endpoint, bucket) -> None:
    """AUDIT_SERVICE_S3_RETENTION_DAYS installs the rule when the writer starts."""
    s3_client(moto_endpoint).put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [FOREIGN_RULE]})
    service_factory(**s3_env, AUDIT_SERVICE_S3_RETENTION_DAYS="90")
    rules = _rules(moto_endpoint, bucket)
    assert rules[RETENTION_RULE_ID]["Expiration"]["Days"] == 90 and "someone-elses-rule" in rules


def test_lifecycle_rules_refuse_an_empty_prefix() -> None:
    """A retention rule for an empty prefix (the whole bucket) is refused."""
    with pytest.raises(ValueError):
        lifecycle_rules([], "", 30)
    with pytest.raises(ValueError):
        lifecycle_rules([], "/", 30)


def test_storage_reports_objects_and_bytes(service_factory, s3_env, moto_endpoint, bucket) -> None:
    """GET /v1/audit/storage counts the objects under the prefix and says whether the scan was capped."""
    client = s3_client(moto_endpoint)
    for index in range(3):
        client.put_object(Bucket=bucket, Key=f"audit/dt=2026-01-01/hour=00/x-{index:020d}-{index:020d}.parquet",
                          Body=b"x" * 100)
    client.put_object(Bucket=bucket, Key="elsewhere/file", Body=b"y" * 1000)
    service = service_factory(**s3_env)

    def audit_objects() -> tuple[int, int]:  # the service stores its own events too: count what is there
        items = [item for item in client.list_objects_v2(Bucket=bucket, Prefix="audit/").get("Contents", [])
                 if not item["Key"].startswith("audit/_digests/")]
        return len(items), sum(item["Size"] for item in items)

    before = audit_objects()
    body = service.get("/v1/audit/storage")[1]
    after = audit_objects()
    assert before[0] >= 3 and before[1] >= 300
    assert before[0] <= body["object_count"] <= after[0] and before[1] <= body["total_bytes"] <= after[1], body
    assert {key: body[key] for key in ("backend", "capped", "bucket", "prefix")} == {
        "backend": "s3", "capped": False, "bucket": bucket, "prefix": "audit"}
    assert body["total_bytes_human"].endswith(("B", "KiB"))


def _start_writer_expecting_failure(env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "writer"], cwd=REPO, env=env, capture_output=True, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    return proc.stderr.decode()


def test_bad_s3_configuration_is_a_clear_start_error(service_factory, s3_env, moto_endpoint) -> None:
    """No bucket, an unknown partition, an unreachable endpoint or a missing bucket stop the writer (exit 3)."""
    service = service_factory(start=False, **s3_env)
    base = {**service.env}
    no_bucket = {key: value for key, value in base.items() if key != "AUDIT_SERVICE_S3_BUCKET"}
    assert "AUDIT_SERVICE_S3_BUCKET" in _start_writer_expecting_failure(no_bucket)
    assert "AUDIT_SERVICE_S3_PARTITION" in _start_writer_expecting_failure({**base, "AUDIT_SERVICE_S3_PARTITION": "week"})
    unreachable = {**base, "AUDIT_SERVICE_S3_ENDPOINT_URL": "http://127.0.0.1:9"}
    assert "AUDIT_SERVICE_S3_ENDPOINT_URL" in _start_writer_expecting_failure(unreachable)
    missing = {**base, "AUDIT_SERVICE_S3_BUCKET": "no-such-bucket-here"}
    assert "does not exist" in _start_writer_expecting_failure(missing)
    assert "no-such-bucket-here" not in {b["Name"] for b in s3_client(moto_endpoint).list_buckets()["Buckets"]}


def test_missing_bucket_is_created_when_allowed(service_factory, s3_env, moto_endpoint) -> None:
    """AUDIT_SERVICE_S3_CREATE_BUCKET=true creates a missing bucket at start."""
    service_factory(**{**s3_env, "AUDIT_SERVICE_S3_BUCKET": "created-by-writer", "AUDIT_SERVICE_S3_CREATE_BUCKET": "true"})
    assert "created-by-writer" in {b["Name"] for b in s3_client(moto_endpoint).list_buckets()["Buckets"]}


def test_health_answers_from_cache_while_s3_hangs(service_factory, s3_env, moto_endpoint) -> None:
    """With the object store refusing connections, readyz and status still answer within 50 ms."""
    proxy = FaultyProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    try:
        service = service_factory(**{**s3_env, "AUDIT_SERVICE_S3_ENDPOINT_URL": proxy.endpoint})
        proxy.set_down(True)
        deadline = time.monotonic() + 10
        while service.get("/v1/audit/status")[1]["storage"]["status"] != "down":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        durations = []
        for path in ("/readyz", "/v1/audit/status", "/healthz") * 20:
            started = time.monotonic()
            service.get(path, timeout=2)
            durations.append(time.monotonic() - started)
        durations.sort()
        assert durations[len(durations) // 2] < 0.05
        assert service.get("/readyz")[0] == 503
        assert http("GET", f"{service.writer_url}/readyz")[0] == 503
    finally:
        proxy.close()
