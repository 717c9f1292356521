"""Read side of tamper evidence: list and hash a local store or a bucket, read digests, run the check.

Used by ``GET /v1/audit/verify`` (in a worker thread) and by ``auditlake verify`` (offline). Read-only.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import ClientError

from shared import digests as d
from shared import layout, s3_layout
from shared.events import format_ts, parse_iso, shifted
from shared.evidence_check import Evidence, Listed, check

log = logging.getLogger("auditlake.ingest.evidence")
CHUNK = 1024 * 1024
DIGEST_SLACK = timedelta(days=1)


class Source(Protocol):
    """A store as verification sees it: names relative to the root or prefix."""

    def scan(self) -> tuple[dict[str, Listed], list[str]]:
        """Data objects, and every name under ``_digests/``."""

    def read(self, name: str) -> bytes | None:
        """The bytes of an object, or None when it is gone."""

    def sha256(self, name: str) -> str | None:
        """Hex SHA-256 of an object's bytes, or None when it is gone."""


class LocalSource:
    """The local backend's files: ``YYYY/MM/DD/*`` (temp files left out) and ``_digests/**``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def scan(self) -> tuple[dict[str, Listed], list[str]]:
        """Stat every file of the day directories; list the digest folder."""
        objects = {}
        for directory in layout.all_day_dirs(self.root):
            for path in directory.iterdir():
                if path.name.startswith(".tmp-") or not path.is_file():
                    continue
                name = path.relative_to(self.root).as_posix()
                objects[name] = _local_listed(name, path, path.stat())
        folder = self.root / d.DIGEST_DIR
        digest_names = sorted(path.relative_to(self.root).as_posix() for path in folder.rglob("*")
                              if path.is_file() and not path.name.startswith(".tmp-")) if folder.is_dir() else []
        return objects, digest_names

    def read(self, name: str) -> bytes | None:
        """File bytes, or None."""
        try:
            return (self.root / name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None

    def sha256(self, name: str) -> str | None:
        """Hash a file in chunks."""
        digest = hashlib.sha256()
        try:
            with open(self.root / name, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        return digest.hexdigest()


def _local_listed(name: str, path: Path, stat: Any) -> Listed:
    base = path.with_name(path.name[: -len(layout.SIDECAR_SUFFIX)]) if layout.is_sidecar(path) else path
    info = layout.describe(base)
    if info is None:
        return Listed(name, stat.st_size, stat.st_mtime)
    if info.first_seq is None:
        return Listed(name, stat.st_size, stat.st_mtime, legacy=True)
    return Listed(name, stat.st_size, stat.st_mtime, format_ts(info.min_ts), format_ts(info.max_ts),
                  info.first_seq, info.last_seq)


class S3Source:
    """The objects under a bucket prefix, listed with one paginated scan; bodies read with GetObject."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.base = s3_layout.base(prefix)

    def scan(self) -> tuple[dict[str, Listed], list[str]]:
        """List every object under the prefix."""
        objects: dict[str, Listed] = {}
        digest_names = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.base):
            for item in page.get("Contents", []):
                name = item["Key"][len(self.base):]
                if name.startswith(d.DIGEST_DIR + "/"):
                    digest_names.append(name)
                    continue
                mtime = item["LastModified"].timestamp()
                info = s3_layout.describe_key(self.prefix, item["Key"])
                if info is None:
                    objects[name] = Listed(name, item["Size"], mtime)
                elif info.legacy:
                    objects[name] = Listed(name, item["Size"], mtime, legacy=True)
                else:
                    objects[name] = Listed(name, item["Size"], mtime, format_ts(info.start), format_ts(info.end),
                                           info.first_seq, info.last_seq, info.writer_id)
        return objects, sorted(digest_names)

    def read(self, name: str) -> bytes | None:
        """Object bytes, or None."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.base + name)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def sha256(self, name: str) -> str | None:
        """Hash an object's body as it streams."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.base + name)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        digest = hashlib.sha256()
        for chunk in body.iter_chunks(CHUNK):
            digest.update(chunk)
        return digest.hexdigest()


def gather(source: Source, since: str | None = None) -> Evidence:
    """Read what verification needs: digests ending after ``since`` − 1 day (all without ``since``), plus the
    one before them to check the link, every writer's pointer and public key, and the object listing."""
    objects, names = source.scan()
    cutoff = d.compact(format_ts(shifted(parse_iso(since), -DIGEST_SLACK))) if since else None
    by_writer: dict[str, list[tuple[int, str, str]]] = {}
    pointers: dict[str, bytes | None] = {}
    public_keys: dict[str, bytes | None] = {}
    stray = []
    for name in names:
        parsed = d.parse_digest_name(name)
        if parsed is not None:
            by_writer.setdefault(parsed[0], []).append((parsed[1], parsed[2], name))
            continue
        parts = name.split("/")
        if len(parts) == 3 and parts[2] in (d.POINTER_NAME, d.PUBLIC_KEY_NAME):
            (pointers if parts[2] == d.POINTER_NAME else public_keys)[parts[1]] = source.read(name)
        else:
            stray.append(name)
    chosen: dict[str, bytes] = {}
    partial = False
    for writer, items in by_writer.items():
        items.sort()
        first = 0
        if cutoff is not None:
            later = [index for index, (_, end, _) in enumerate(items) if end >= cutoff]
            first = max(0, (later[0] if later else len(items)) - 1)
            partial = partial or first > 0
        for _, _, name in items[first:]:
            data = source.read(name)
            if data is not None:
                chosen[name] = data
    for writer in set(by_writer) | set(pointers):
        pointers.setdefault(writer, None)
        public_keys.setdefault(writer, None)
    return Evidence(chosen, pointers, public_keys, stray, objects, partial=partial)


def verify_store(source: Source, trusted_pems: Iterable[bytes], since: str | None = None, until: str | None = None,
                 journal: list[dict[str, Any]] | None = None, journal_writer: str | None = None,
                 trust_published: Callable[[str], bool] = lambda writer: False, now: datetime | None = None,
                 hashes: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Gather and check; object hashes are computed once and only for objects that need them."""
    trusted = {}
    for pem in trusted_pems:
        key = d.load_public(pem)
        trusted[d.fingerprint(key)] = key
    evidence = gather(source, since)
    evidence.journal, evidence.journal_writer = journal, journal_writer
    hashes = {} if hashes is None else hashes

    def hash_of(name: str) -> str | None:
        if name not in hashes:
            hashes[name] = source.sha256(name)
        return hashes[name]

    return check(evidence, trusted, hash_of, now or datetime.now(timezone.utc), since, until, trust_published)
