"""S3 backend: objects and digests carry Object Lock retention; the chain verifies live and offline (moto over HTTP)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.s3.conftest import CREDENTIALS, s3_client
from tests.s3.helpers import object_keys, wait_uploaded
from tests.service import REPO
from tests.tamper.conftest import poll

WRITER = "writer-a"


def _env(endpoint: str, bucket: str, **extra: str) -> dict[str, str]:
    return {**CREDENTIALS, "AUDIT_SERVICE_BACKEND": "s3", "AUDIT_SERVICE_S3_BUCKET": bucket,
            "AUDIT_SERVICE_S3_ENDPOINT_URL": endpoint, "AUDIT_SERVICE_S3_PREFIX": "audit",
            "AUDIT_SERVICE_S3_UPLOAD_INTERVAL_SECONDS": "0.5", "AUDIT_SERVICE_WRITER_ID": WRITER,
            "AUDIT_SERVICE_DIGEST_INTERVAL_SECONDS": "1", **extra}


def _events(day: str, hours: list[int]) -> list[dict[str, str]]:
    return [{"type": "auth", "ts": f"{day}T{hour:02d}:15:00Z", "actor_ref": f"user:{hour}"} for hour in hours]


def _cli(endpoint: str, bucket: str, key: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producer.cli", "verify", "--s3-bucket", bucket, "--s3-prefix",
                           "audit", "--s3-endpoint-url", endpoint, "--public-key", str(key), "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, env={**CREDENTIALS, "PATH": ""})


def _named(report: dict, finding: str, item: str) -> bool:
    return any(problem["finding"] == finding and problem["item"] == item for problem in report["problems"])


def test_locked_objects_verify_through_a_redo_and_every_tampering_is_reported(service_factory, moto_endpoint,
                                                                              tmp_path: Path) -> None:
    """Uploads set GOVERNANCE retention for a day; after a mid-publish kill and redo the endpoint and the offline
    CLI find nothing; then an overwrite, a deletion, a forged object, a deleted digest and a replaced public key
    are each reported by name and the CLI exits 1 (the digest deleted is an empty interval's, so the files of
    the other mutations stay vouched for)."""
    client = s3_client(moto_endpoint)
    bucket = f"lock-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    service = service_factory(**_env(moto_endpoint, bucket, AUDIT_SERVICE_S3_OBJECT_LOCK_MODE="governance",
                                     AUDIT_SERVICE_S3_OBJECT_LOCK_DAYS="1"))
    assert service.post({"events": _events("2026-04-01", [1, 2, 3]) + _events("2026-04-02", [5])})[0] == 202
    wait_uploaded(moto_endpoint, bucket, 4)
    data_keys = sorted(key for key in object_keys(moto_endpoint, bucket, "audit/dt=2026-04-0"))
    poll(lambda: object_keys(moto_endpoint, bucket, f"audit/_digests/{WRITER}/latest.json"), 10, "no digest")
    for key in (data_keys[0], f"audit/_digests/{WRITER}/latest.json"):
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE", key
        until = head["ObjectLockRetainUntilDate"].astimezone(timezone.utc)
        assert abs(until - (datetime.now(timezone.utc) + timedelta(days=1))) < timedelta(hours=1)

    service.signal("writer", signal.SIGTERM)
    service.start("writer", AUDIT_SERVICE_FAULT_POINT="mid_publish:1")
    service.wait_ready()
    assert service.post({"events": _events("2026-04-03", [7, 8])})[0] == 202
    assert service.procs["writer"].wait(timeout=30) == -9
    service.start("writer")
    service.wait_ready()
    wait_uploaded(moto_endpoint, bucket, 6)
    status, report, _ = service.get("/v1/audit/verify", timeout=60)
    assert status == 200 and report["ok"], report["problems"][:5]
    assert report["verified"] >= 6
    key = tmp_path / "public-key.pem"
    key.write_bytes((service.spool / "evidence" / "public-key.pem").read_bytes())
    service.stop()

    clean = _cli(moto_endpoint, bucket, key)
    report = json.loads(clean.stdout)
    assert clean.returncode == 0 and report["ok"] and report["pending"] == 0, clean.stdout + clean.stderr

    data_keys = sorted(key for key in object_keys(moto_endpoint, bucket, "audit/dt=2026-04-0"))
    digests = sorted(key for key in object_keys(moto_endpoint, bucket, f"audit/_digests/{WRITER}/digest-"))
    relative = [key.removeprefix("audit/") for key in data_keys]
    client.put_object(Bucket=bucket, Key=data_keys[0], Body=b"PAR1 rewritten")
    client.delete_object(Bucket=bucket, Key=data_keys[1])
    forged = data_keys[2].rsplit("/", 1)[0] + f"/{WRITER}-00000000000000000001-00000000000000000002.parquet"
    client.put_object(Bucket=bucket, Key=forged, Body=b"PAR1 forged")
    empty = next(index for index in range(1, len(digests) - 1)
                 if not json.loads(client.get_object(Bucket=bucket, Key=digests[index])["Body"].read())["entries"])
    client.delete_object(Bucket=bucket, Key=digests[empty])
    client.put_object(Bucket=bucket, Key=f"audit/_digests/{WRITER}/public-key.pem", Body=b"not the key")
    tampered = _cli(moto_endpoint, bucket, key)
    report = json.loads(tampered.stdout)
    assert tampered.returncode == 1 and not report["ok"]
    assert _named(report, "modified", relative[0]) and _named(report, "missing", relative[1])
    assert _named(report, "unexpected", forged.removeprefix("audit/"))
    assert _named(report, "chain_breaks", digests[empty + 1].removeprefix("audit/"))
    assert _named(report, "modified", f"_digests/{WRITER}/public-key.pem")


def test_object_lock_mode_without_a_locked_bucket_is_a_start_error(service_factory, moto_endpoint) -> None:
    """AUDIT_SERVICE_S3_OBJECT_LOCK_MODE on a bucket created without Object Lock stops the writer (exit 3)."""
    bucket = f"plain-{uuid.uuid4().hex[:12]}"
    s3_client(moto_endpoint).create_bucket(Bucket=bucket)
    service = service_factory(start=False, **_env(moto_endpoint, bucket, AUDIT_SERVICE_S3_OBJECT_LOCK_MODE="compliance",
                                                  AUDIT_SERVICE_S3_OBJECT_LOCK_DAYS="30"))
    assert service.start("writer").wait(timeout=30) == 3
    assert "AUDIT_SERVICE_S3_OBJECT_LOCK_MODE" in service.tail()
