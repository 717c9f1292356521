"""Opaque page cursors: the position (ts, audit_event_id) of a page's last record and the query's range."""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import orjson

from ingest.query_params import QueryError

VERSION = 1


@dataclasses.dataclass(frozen=True)
class Cursor:
    """Where the previous page ended, for the range and filters it was issued for."""

    ts_us: int
    event_id: str
    since_us: int
    until_us: int
    filters_digest: str


def filters_digest(filters: dict[str, str | None]) -> str:
    """A short fingerprint of the filters a cursor belongs to."""
    body = orjson.dumps({key: value for key, value in sorted(filters.items()) if value is not None})
    return hashlib.sha256(body).hexdigest()[:16]


def encode(cursor: Cursor) -> str:
    """The opaque token sent as ``next_cursor``."""
    body = orjson.dumps({"v": VERSION, "t": cursor.ts_us, "i": cursor.event_id, "s": cursor.since_us,
                         "u": cursor.until_us, "f": cursor.filters_digest})
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def decode(token: str) -> Cursor:
    """Parse a token; raise QueryError (400) when it is not one of ours."""
    try:
        body = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if body.get("v") != VERSION:
            raise ValueError("version")
        cursor = Cursor(int(body["t"]), str(body["i"]), int(body["s"]), int(body["u"]), str(body["f"]))
    except (ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError):
        raise QueryError("invalid cursor") from None
    if cursor.since_us > cursor.until_us:
        raise QueryError("invalid cursor")
    return cursor
