"""The local store layout: where published NDJSON files live and what their names say."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from shared.events import day_path, days_back, shifted

COMPACT_TS = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(
    r"^audit-(?P<min>\d{8}T\d{6}Z)-(?P<first>\d{12,20})-(?P<last>\d{12,20})-(?P<max>\d{8}T\d{6}Z)\.ndjson(?:\.gz)?$"
)
_LEGACY = re.compile(r"^audit-(?P<ts>\d{8}T\d{6}Z)-[^/]+\.ndjson(?:\.gz)?$")


@dataclasses.dataclass(frozen=True, slots=True)
class StoredFile:
    """What a published file's name tells: its time bounds and, for our own files, its spool range."""

    path: Path
    min_ts: datetime | None
    max_ts: datetime | None
    first_seq: int | None
    last_seq: int | None


SIDECAR_SUFFIX = ".parquet"


def sidecar_path(path: Path) -> Path:
    """The Parquet sidecar of a published NDJSON file: the same events, typed, for fast reads."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def is_sidecar(path: Path) -> bool:
    """True for the sidecar of one of our published files."""
    return path.name.endswith(SIDECAR_SUFFIX) and _NAME.match(path.name[: -len(SIDECAR_SUFFIX)]) is not None


def compact(canonical_ts: str) -> str:
    """``2026-11-29T05:00:01.123456Z`` → ``20261129T050001Z``."""
    return (
        canonical_ts[0:4] + canonical_ts[5:7] + canonical_ts[8:10] + "T"
        + canonical_ts[11:13] + canonical_ts[14:16] + canonical_ts[17:19] + "Z"
    )


def day_parts(canonical_ts: str) -> tuple[str, str, str]:
    """The ``YYYY``, ``MM``, ``DD`` directory names for an event's canonical ``ts``."""
    return canonical_ts[0:4], canonical_ts[5:7], canonical_ts[8:10]


def file_name(min_ts: str, max_ts: str, first_seq: int, last_seq: int, gzip: bool) -> str:
    """Deterministic name of the file holding spool records first..last for one day."""
    suffix = ".ndjson.gz" if gzip else ".ndjson"
    return f"audit-{compact(min_ts)}-{first_seq:012d}-{last_seq:012d}-{compact(max_ts)}{suffix}"


def _parse_compact(text: str) -> datetime:
    return datetime.strptime(text, COMPACT_TS).replace(tzinfo=timezone.utc)


def describe(path: Path) -> StoredFile | None:
    """Read a published file's name; None when it is not an audit file (temp files, strays)."""
    match = _NAME.match(path.name)
    if match:
        return StoredFile(
            path,
            _parse_compact(match["min"]),
            shifted(_parse_compact(match["max"]), timedelta(seconds=1)),  # 9999-12-31T23:59:59 ends at the last instant
            int(match["first"]),
            int(match["last"]),
        )
    if _LEGACY.match(path.name):
        return StoredFile(path, None, None, None, None)
    return None


def day_dir(root: Path, year: str, month: str, day: str) -> Path:
    """The directory of one UTC day."""
    return root / year / month / day


def day_dirs_between(root: Path, since: datetime, until: datetime) -> list[Path]:
    """Existing day directories from ``since``'s day to ``until``'s day, newest first."""
    found = []
    for day in days_back(until.date(), since.date()):
        path = root / day_path(day, "/")
        if path.is_dir():
            found.append(path)
    return found


def all_day_dirs(root: Path) -> list[Path]:
    """Every ``YYYY/MM/DD`` directory under the store root, oldest first."""
    dirs = []
    for year in sorted(p for p in _children(root) if _digits(p.name, 4)):
        for month in sorted(p for p in _children(year) if _digits(p.name, 2)):
            dirs.extend(sorted(p for p in _children(month) if _digits(p.name, 2)))
    return dirs


def _children(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _digits(name: str, width: int) -> bool:
    return len(name) == width and name.isdigit()
