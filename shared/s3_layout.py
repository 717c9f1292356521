"""The S3 layout: object keys of new (Hive-partitioned) and legacy objects, the Parquet schema, lifecycle rules."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa

from shared.events import NAMED_FIELDS, day_path, days_back, shifted

PARTITIONS = ("day", "hour", "minute")
RETENTION_RULE_ID = "caipe-audit-retention"
ABORT_MULTIPART_RULE_ID = "caipe-audit-abort-multipart"
EXTRA_STRING_FIELDS = ("user_email", "capability", "agent_name", "tool_name")
STRING_COLUMNS = tuple(name for name in NAMED_FIELDS if name != "ts") + EXTRA_STRING_FIELDS
DICTIONARY_COLUMNS = [
    "type", "outcome", "component", "tenant_id", "source", "action", "pdp", "reason_code",
    "capability", "agent_name", "tool_name",
]
UTC_MICROS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [pa.field("ts", UTC_MICROS, nullable=False), pa.field("received_at", UTC_MICROS)]
    + [pa.field(name, pa.string()) for name in STRING_COLUMNS]
    + [pa.field("record_json", pa.string(), nullable=False)]
)

_NEW_KEY = re.compile(
    r"dt=(?P<date>\d{4}-\d{2}-\d{2})(?:/hour=(?P<hour>\d{2}))?(?:/minute=(?P<minute>\d{2}))?/"
    r"(?P<writer>[A-Za-z0-9][A-Za-z0-9_.-]*)-(?P<first>\d+)-(?P<last>\d+)\.parquet$"
)
_LEGACY_KEY = re.compile(
    r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?:\d{2}/\d{2}/)?audit-(?P<ts>\d{8}T\d{6}Z)-[0-9a-fA-F]+\.parquet$"
)


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What an object key tells: its writer and spool range (new layout) and its time bounds."""

    key: str
    legacy: bool
    partition: str | None
    writer_id: str | None
    first_seq: int | None
    last_seq: int | None
    start: datetime | None
    end: datetime | None


def base(prefix: str) -> str:
    """The key prefix with a trailing slash ('' when there is no prefix)."""
    return f"{prefix.strip('/')}/" if prefix.strip("/") else ""


def partition_of(canonical_ts: str, granularity: str) -> str:
    """The Hive partition path of an event's canonical ``ts``: ``dt=YYYY-MM-DD/hour=HH[/minute=MM]``."""
    path = f"dt={canonical_ts[0:10]}"
    if granularity in ("hour", "minute"):
        path += f"/hour={canonical_ts[11:13]}"
    if granularity == "minute":
        path += f"/minute={canonical_ts[14:16]}"
    return path


def object_key(prefix: str, partition: str, writer_id: str, first_seq: int, last_seq: int) -> str:
    """The deterministic key of the object holding spool records first..last for one partition."""
    return f"{base(prefix)}{partition}/{writer_id}-{first_seq:020d}-{last_seq:020d}.parquet"


def describe_key(prefix: str, key: str) -> ObjectInfo | None:
    """Parse a key of the new or the legacy layout; None for anything else."""
    head = base(prefix)
    if not key.startswith(head):
        return None
    rest = key[len(head):]
    match = _NEW_KEY.match(rest)
    if match:
        start = datetime.strptime(match["date"], "%Y-%m-%d").replace(tzinfo=timezone.utc)
        span = timedelta(days=1)
        if match["hour"] is not None:
            start += timedelta(hours=int(match["hour"]))
            span = timedelta(hours=1)
        if match["minute"] is not None:
            start += timedelta(minutes=int(match["minute"]))
            span = timedelta(minutes=1)
        partition = rest.rsplit("/", 1)[0]
        return ObjectInfo(key, False, partition, match["writer"], int(match["first"]), int(match["last"]),
                          start, shifted(start, span))
    match = _LEGACY_KEY.match(rest)
    if match:
        newest = datetime.strptime(match["ts"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        return ObjectInfo(key, True, None, None, None, None, None, shifted(newest, timedelta(seconds=1)))
    return None


def day_prefixes(prefix: str, since: datetime, until: datetime) -> list[str]:
    """Key prefixes to list for a time range, newest day first: new-layout days and legacy days.

    Legacy objects were filed under the newest event of their batch, so the legacy day after ``until``
    is listed as well.
    """
    head = base(prefix)
    prefixes = []
    newest = until.date()
    if newest < date.max:
        prefixes.append(f"{head}{day_path(newest + timedelta(days=1), '/')}/")
    for day in days_back(newest, since.date()):
        prefixes.append(f"{head}dt={day_path(day, '-')}/")
        prefixes.append(f"{head}{day_path(day, '/')}/")
    return prefixes


def lifecycle_rules(existing: list[dict[str, Any]], prefix: str, days: int) -> list[dict[str, Any]]:
    """The bucket's rules with ours replaced: retention (absent when ``days`` is 0) and multipart abort."""
    if not prefix.strip("/"):
        raise ValueError("refusing a lifecycle rule for an empty prefix: it would cover the whole bucket")
    ours = {RETENTION_RULE_ID, ABORT_MULTIPART_RULE_ID}
    rules = [rule for rule in existing if rule.get("ID") not in ours]
    scope = {"Prefix": base(prefix)}
    if days > 0:
        rules.append({"ID": RETENTION_RULE_ID, "Filter": scope, "Status": "Enabled", "Expiration": {"Days": days}})
    rules.append({"ID": ABORT_MULTIPART_RULE_ID, "Filter": scope, "Status": "Enabled",
                  "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}})
    return rules


def retention_days(rules: list[dict[str, Any]]) -> int:
    """The days of our retention rule among a bucket's rules (0 when there is none)."""
    for rule in rules:
        if rule.get("ID") == RETENTION_RULE_ID and rule.get("Status") == "Enabled":
            return int(rule.get("Expiration", {}).get("Days", 0))
    return 0
