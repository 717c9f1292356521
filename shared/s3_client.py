"""How both processes reach the object store: one boto3 S3 client built from the settings."""

from __future__ import annotations

import logging
import random
from urllib.parse import urlsplit
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from botocore.exceptions import ClientError

from shared.s3_layout import lifecycle_rules, retention_days
from shared.settings import Settings

log = logging.getLogger("auditlake.s3")


def make_s3_client(settings: Settings, connect_timeout: float = 3.0, read_timeout: float = 20.0,
                   max_attempts: int = 3) -> Any:
    """A boto3 S3 client for the configured region and endpoint, with short timeouts and few retries."""
    session = boto3.session.Session()
    client = session.client(
        "s3",
        region_name=settings.s3_region,
        endpoint_url=settings.s3_endpoint_url,
        config=Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"} if settings.s3_endpoint_url else None,
        ),
    )
    if settings.s3_test_throttle_ratio > 0:
        _inject_throttling(client, settings.s3_test_throttle_ratio)
    return client


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any):
        yield self._data


def _inject_throttling(client: Any, ratio: float) -> None:
    """Test only: answer a share of object requests with 503 SlowDown before they are sent.

    Bucket-level calls (the startup checks) are left alone: a writer that gives up at start is not what
    the throttling tests are about, and random refusals there would make them flaky.
    """
    body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")

    def maybe_throttle(request: Any, **_: Any) -> AWSResponse | None:
        if "/" in urlsplit(request.url).path.strip("/") and random.random() < ratio:
            log.warning("test throttle: injected SlowDown", extra={"url": request.url})
            return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, _Body(body))
        return None

    client.meta.events.register("before-send.s3", maybe_throttle)


def read_rules(client: Any, bucket: str) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules ([] when it has none); other errors propagate."""
    try:
        return client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            raise
        return []


def read_retention(client: Any, bucket: str) -> int:
    """The days of our retention rule in the bucket (0 when absent)."""
    return retention_days(read_rules(client, bucket))


def apply_retention(client: Any, bucket: str, prefix: str, days: int) -> None:
    """Set our lifecycle rules for the prefix, leaving every other rule of the bucket as it is.

    When reading the current configuration fails, nothing is written.
    """
    rules = lifecycle_rules(read_rules(client, bucket), prefix, days)
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
