"""Where digests, pointers and the public key are stored: ``<root>/_digests/`` or ``<prefix>/_digests/``."""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared import digests as d
from shared import s3_layout
from shared.s3_client import read_retention
from writer.fsutil import write_atomic

log = logging.getLogger("auditlake.writer.digests")


class LocalDigestSink:
    """Digest files beside the day directories of the local store (reads and retention ignore ``_digests``)."""

    backend = "local"
    expiry = d.EXPIRY_RECORDED

    def __init__(self, root: Path, retention_days: int) -> None:
        self.root = root
        self._retention_days = retention_days

    def put(self, name: str, data: bytes) -> None:
        """Write ``<root>/<name>`` atomically (temp file, fsync, rename, fsync the directory)."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data, 0o640)

    def get(self, name: str) -> bytes | None:
        """The stored bytes of ``name``, or None."""
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def retention_days(self) -> int:
        """Days after which retention deletes files (each deletion is recorded in the chain)."""
        return self._retention_days


class S3DigestSink:
    """Digest objects in the bucket, uploaded like data objects (Content-MD5, Object Lock when configured)."""

    backend = "s3"
    expiry = d.EXPIRY_LIFECYCLE

    def __init__(self, store: Any) -> None:
        self.store = store
        self.client = store.client
        self.bucket = store.bucket
        self.base = s3_layout.base(store.prefix)

    def put(self, name: str, data: bytes) -> None:
        """PutObject ``<prefix>/<name>``."""
        lock = self.store.object_lock
        self.client.put_object(Bucket=self.bucket, Key=self.base + name, Body=data,
                               ContentType="application/x-pem-file" if name.endswith(".pem") else "application/json",
                               ContentMD5=base64.b64encode(hashlib.md5(data).digest()).decode(),
                               **(lock.put_args() if lock else {}))

    def get(self, name: str) -> bytes | None:
        """The body of ``<prefix>/<name>``, or None when there is no such object."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.base + name)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def retention_days(self) -> int:
        """The days of the bucket's lifecycle rule now (what verification counts as expired), or the setting."""
        try:
            return read_retention(self.client, self.bucket)
        except (ClientError, BotoCoreError) as exc:
            log.warning("could not read the lifecycle rule for the digest", extra={"error": repr(exc)})
            return self.store.retention_days
