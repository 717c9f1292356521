"""The fast path for a posted batch in compact JSON: a C-speed round trip instead of byte scans, few steps per event.

When ``orjson.dumps(orjson.loads(body)) == body`` (what the project's producer, orjson and compact
encoders send), the body has no repeated key, no integer beyond 64 bits and no escaped character that the
raw-byte checks of ``ingest.hardening`` look for: a repeated key would be dropped by the parse and a large
integer would come back as a float, so the bytes would differ. What remains is checked here per event with
C-level helpers (``map``, ``set``, ``str.join``/``isprintable``). Anything unusual (a null value, a
non-string named field, a non-canonical ``ts``, a control character, a nested value too deep, a service
event type, another tenant) makes ``prepare`` return None, and the caller takes the general path, which
produces the precise error or the normalized events; nothing here rejects a request on its own.
"""

from __future__ import annotations

import uuid
from collections import deque
from itertools import chain, compress, repeat
from operator import setitem
from typing import Any

import orjson

from ingest.hardening import MAX_DEPTH
from shared.errors import EventError
from shared.events import NAMED_FIELDS, RECEIVED_AT, SERVICE_EVENT_TYPES, canonical_stamps

_STRING_FIELDS = tuple(name for name in NAMED_FIELDS if name != "ts")
_NESTED = frozenset({dict, list})
_IS_DICT = frozenset({dict}).__contains__
_IS_LIST = frozenset({list}).__contains__
_IS_NESTED = _NESTED.__contains__
_NONE_TYPE = type(None)
_EVENT_DEPTH = 3  # {"events": [ {event} ]}: an event's own values sit at depth 4 at most


def round_trips(body: bytes, document: Any) -> bool:
    """True when re-encoding the parsed document gives back the body byte for byte (ignoring trailing space)."""
    try:
        encoded = orjson.dumps(document)
    except orjson.JSONEncodeError:
        return False
    if len(encoded) == len(body):
        return encoded == body
    return len(encoded) < len(body) and body[len(encoded):].isspace() and body.startswith(encoded)


def _within_depth(level: list[Any], depth: int) -> bool:
    """True when the containers of ``level`` (at ``depth``) and everything below stay within MAX_DEPTH."""
    while level:
        if depth > MAX_DEPTH:
            return False
        kinds = list(map(type, level))
        children = list(chain(chain.from_iterable(map(dict.values, compress(level, map(_IS_DICT, kinds)))),
                              chain.from_iterable(compress(level, map(_IS_LIST, kinds)))))
        level = list(compress(children, map(_IS_NESTED, map(type, children))))
        depth += 1
    return True


def _field(events: list[dict[str, Any]], name: str, default: Any = None) -> list[Any]:
    return list(map(dict.get, events, repeat(name), repeat(default)))


def prepare(posted: list[Any], received_at: str, tenant: str | None, max_event_bytes: int) -> list[bytes] | None:
    """The stored JSON line of every posted event, or None when the general path must decide.

    Every step iterates in C (``map``/``compress``/``join``); the events are completed in place only once
    every check has passed.
    """
    if not posted or set(map(type, posted)) != {dict}:
        return None
    values = list(chain.from_iterable(map(dict.values, posted)))
    kinds = set(map(type, values))
    if _NONE_TYPE in kinds:
        return None
    if not kinds.isdisjoint(_NESTED):
        if not _within_depth(list(compress(values, map(_IS_NESTED, map(type, values)))), _EVENT_DEPTH + 1):
            return None
    try:
        texts = "\x20".join(chain.from_iterable(_field(posted, name, "") for name in _STRING_FIELDS))
    except TypeError:  # a named field that is not a string
        return None
    if not texts.isprintable():
        return None  # control characters (or unusual printable ones): the general path decides
    if not SERVICE_EVENT_TYPES.isdisjoint(_field(posted, "type")):
        return None
    if tenant is not None and set(_field(posted, "tenant_id", tenant)) != {tenant}:
        return None
    try:
        stamps = canonical_stamps(_field(posted, "ts"), received_at)
    except EventError:  # the general path names the problem
        return None
    for event in posted:  # the general path's key order: a generated id, then ts, then received_at
        if "audit_event_id" not in event:
            event["audit_event_id"] = str(uuid.uuid4())
    deque(map(setitem, posted, repeat("ts"), stamps), 0)
    deque(map(setitem, posted, repeat(RECEIVED_AT), repeat(received_at)), 0)
    if tenant is not None:
        deque(map(dict.setdefault, posted, repeat("tenant_id"), repeat(tenant)), 0)
    lines = list(map(orjson.dumps, posted))
    if max(map(len, lines)) > max_event_bytes:
        return None
    return lines
