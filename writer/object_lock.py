"""S3 Object Lock: check the bucket at start, and the retention arguments every upload then carries."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import ClientError

from shared.errors import ConfigError
from shared.settings import Settings

log = logging.getLogger("auditlake.writer.object_lock")
NOT_CONFIGURED = {"ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"}


@dataclasses.dataclass(frozen=True)
class ObjectLock:
    """The retention mode and period each upload sets (the upload's Content-MD5 is the checksum S3 requires)."""

    mode: str
    days: int

    def put_args(self, now: datetime | None = None) -> dict[str, Any]:
        """``ObjectLockMode`` and ``ObjectLockRetainUntilDate`` for a PutObject made now."""
        moment = now or datetime.now(timezone.utc)
        return {"ObjectLockMode": self.mode, "ObjectLockRetainUntilDate": moment + timedelta(days=self.days)}


def bucket_lock_enabled(client: Any, bucket: str) -> bool:
    """True when the bucket was created with Object Lock enabled."""
    try:
        config = client.get_object_lock_configuration(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in NOT_CONFIGURED:
            return False
        raise
    return config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"


def configure(client: Any, settings: Settings) -> ObjectLock | None:
    """The lock uploads set: None unless AUDIT_SERVICE_S3_OBJECT_LOCK_MODE is set; a start error when the
    bucket has no Object Lock (it can only be enabled when a bucket is created)."""
    if settings.s3_object_lock_mode is None:
        return None
    bucket = settings.s3_bucket or ""
    try:
        enabled = bucket_lock_enabled(client, bucket)
    except ClientError as exc:
        raise ConfigError("AUDIT_SERVICE_S3_OBJECT_LOCK_MODE", "cannot read the bucket's Object Lock configuration: "
                          f"{exc.response.get('Error', {}).get('Code')}") from None
    if not enabled:
        raise ConfigError("AUDIT_SERVICE_S3_OBJECT_LOCK_MODE",
                          f"bucket {bucket!r} does not have Object Lock enabled (create it with "
                          "ObjectLockEnabledForBucket=true), or unset the variable")
    lock = ObjectLock(settings.s3_object_lock_mode, settings.s3_object_lock_days)
    log.info("uploads set object lock retention", extra={"mode": lock.mode, "days": lock.days, "bucket": bucket})
    return lock
