"""Fixtures of the S3 tests: a moto server on loopback, a bucket per test, services wired to it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.service import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server in server mode on 127.0.0.1 (real HTTP), for the whole session."""
    os.environ.update(CREDENTIALS)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    """A plain boto3 client on the moto server."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    """A fresh, empty bucket."""
    name = f"audit-{uuid.uuid4().hex[:12]}"
    s3_client(moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_env(moto_endpoint: str, bucket: str) -> dict[str, str]:
    """Environment for a service on the S3 backend with quick uploads."""
    return {
        **CREDENTIALS,
        "AUDIT_SERVICE_BACKEND": "s3",
        "AUDIT_SERVICE_S3_BUCKET": bucket,
        "AUDIT_SERVICE_S3_ENDPOINT_URL": moto_endpoint,
        "AUDIT_SERVICE_S3_PREFIX": "audit",
        "AUDIT_SERVICE_S3_UPLOAD_INTERVAL_SECONDS": "0.5",
        "AUDIT_SERVICE_WRITER_ID": "writer-a",
    }
