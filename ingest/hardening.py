"""Checks on posted JSON that orjson does not make, and the per-event rules that depend on the caller.

orjson already refuses invalid UTF-8, lone surrogates (raw or escaped), NaN/Infinity and a BOM. Here:
nesting deeper than ``MAX_DEPTH``, a repeated named-field key in one object, integer literals outside
64 bits (orjson would silently turn them into floats), control characters in named fields, too many or
too large events, service-only event types, and events of another tenant than a tenant-bound token's.

The duplicate-key and integer checks scan the raw bytes first (C speed) and re-parse with the standard
library, in a worker thread, only when that scan cannot rule a problem out. Compact bodies skip all of
this: ``ingest.compact_batch`` proves the same properties with one re-encoding and takes this general
path only when something needs judging.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
from collections.abc import Callable
from itertools import chain
from typing import Any

import orjson
from aiohttp import web

from ingest.body import Rejected, read_body
from ingest.turns import LARGE_BODY_BYTES, ParseTurns
from shared.events import NAMED_FIELDS, SERVICE_EVENT_TYPES
from shared.settings import Settings

MAX_DEPTH = 32
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
_NAMED = frozenset(NAMED_FIELDS)
_NAMED_QUOTED = tuple((name, b'"' + name.encode() + b'"') for name in NAMED_FIELDS)
_ESCAPED_KEY_CHAR = re.compile(rb"\\u00[4-7][0-9A-Fa-f]")
# Any integer outside 64 bits has at least 19 digits; digits become "0" and everything else " ".
_DIGITS_ONLY = bytes(ord("0") if 0x30 <= byte <= 0x39 else ord(" ") for byte in range(256))
_NINETEEN_DIGITS = b"0" * 19
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _admit_all() -> None:
    """Every body may be parsed."""


async def read_json(request: web.Request, settings: Settings, turns: ParseTurns,
                    admit: Callable[[], None] = _admit_all) -> tuple[bytes, Any]:
    """The request's body and its parsed JSON document; raise Rejected when the body is not JSON.

    A large body waits for its parse turn, so that bodies arriving together are parsed one per loop
    iteration (``ingest.turns``); the turn covers the caller's work up to its next await (for a compact
    body, until its batch is submitted to the writer link). ``admit`` runs once the body is read and its
    turn has come, just before the parse, and raises when it should not be parsed any more (the writer's
    queue filled while it waited: under overload a fifth of the bodies parsed were then refused anyway).
    """
    body = await read_body(request, settings)
    if len(body) >= LARGE_BODY_BYTES:
        await turns.take()
    admit()
    try:
        return body, orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, f"malformed JSON: {exc}") from None


async def check_structure(body: bytes, document: Any) -> None:
    """Raise Rejected for nesting beyond MAX_DEPTH, a repeated named key or an integer beyond 64 bits."""
    key_counts = _walk(document)
    if _needs_strict_parse(body, key_counts):
        problem = await asyncio.to_thread(_strict_problem, body)
        if problem is not None:
            raise Rejected(400, problem)


def _walk(document: Any) -> dict[str, int]:
    """Check the nesting depth; count, per named field, the objects that hold it as a key (level by level)."""
    keys: collections.Counter[str] = collections.Counter()
    level = [document]
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            raise Rejected(400, f"JSON nested deeper than {MAX_DEPTH} levels")
        objects = [value for value in level if type(value) is dict]
        arrays = [value for value in level if type(value) is list]
        keys.update(chain.from_iterable(objects))
        children = chain(chain.from_iterable(value.values() for value in objects), chain.from_iterable(arrays))
        level = [child for child in children if type(child) is dict or type(child) is list]
        depth += 1
    return {name: keys[name] for name in NAMED_FIELDS}


def _needs_strict_parse(body: bytes, key_counts: dict[str, int]) -> bool:
    """False when the raw bytes prove there is no repeated named key and no integer beyond 64 bits."""
    if _NINETEEN_DIGITS in body.translate(_DIGITS_ONLY) or _ESCAPED_KEY_CHAR.search(body):
        return True
    return any(body.count(quoted) > key_counts[name] for name, quoted in _NAMED_QUOTED)


class _Problem(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in _NAMED:
            if key in seen:
                raise _Problem(f"duplicate key {key!r} in an object")
            seen.add(key)


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > 20 or not INT_MIN <= int(text) <= INT_MAX:
        raise _Problem(f"integer {text[:24]}{'...' if len(text) > 24 else ''} does not fit in 64 bits")
    return 0


def _strict_problem(body: bytes) -> str | None:
    """Re-parse with the standard library to find repeated named keys or oversized integers."""
    try:
        json.loads(body, object_pairs_hook=_pairs, parse_int=_integer)
    except _Problem as exc:
        return str(exc)
    except (ValueError, RecursionError):
        return "malformed JSON"
    return None


def check_count(posted: list[Any], settings: Settings) -> None:
    """413 for more events in one request than ``max_events_per_request``."""
    if len(posted) > settings.max_events_per_request:
        raise Rejected(413, f"{len(posted)} events in one request; the limit is {settings.max_events_per_request}")


def check_posted(posted: list[Any]) -> None:
    """400 for a control character in a named field (checked before normalizing)."""
    texts = [value for event in posted if type(event) is dict
             for name in NAMED_FIELDS if type(value := event.get(name)) is str]
    joined = "\x20".join(texts)
    if joined.isprintable() or not _CONTROL.search(joined):
        return
    for index, event in enumerate(posted):
        for name in NAMED_FIELDS:
            value = event.get(name) if type(event) is dict else None
            if type(value) is str and _CONTROL.search(value):
                raise Rejected(400, f"event {index}: field '{name}' contains a control character")


def guard_events(events: list[dict[str, Any]], tenant: str | None) -> None:
    """Refuse service-only types and other tenants' events; fill in a bound token's tenant where absent."""
    for index, event in enumerate(events):
        if event.get("type") in SERVICE_EVENT_TYPES:
            raise Rejected(403, f"event {index}: type {event['type']!r} is written only by the service itself")
    if tenant is not None:
        for index, event in enumerate(events):
            if event.setdefault("tenant_id", tenant) != tenant:
                raise Rejected(403, f"event {index}: this token may only post events of its own tenant")


def encode_events(events: list[dict[str, Any]], max_event_bytes: int) -> list[bytes]:
    """Each event as one JSON line (without the newline); 413 for an event over ``max_event_bytes``."""
    lines = []
    for index, event in enumerate(events):
        try:
            line = orjson.dumps(event)
        except orjson.JSONEncodeError as exc:
            raise Rejected(400, f"event {index} cannot be stored: {exc}") from None
        if len(line) > max_event_bytes:
            raise Rejected(413, f"event {index} is {len(line)} bytes serialized; the limit is {max_event_bytes}")
        lines.append(line)
    return lines
