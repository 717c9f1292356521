"""The fast path for a posted batch in compact JSON: a round trip through each event's encoding, then C-level passes and byte scans.

When the body is byte for byte the canonical encoding of what it parses to (``canonical_events``: what the
project's producer, orjson and compact encoders send), it has no repeated key, no integer beyond 64 bits
and no escaped character that the raw-byte checks of ``ingest.hardening`` look for: a repeated key would
be dropped by the parse and a large integer would come back as a float, so the bytes would differ. What
remains is checked here with C-level helpers (``map``, ``set``, ``compress``) and byte scans of the body
and of each event's encoding. Anything unusual (a null value, a non-string named field, a non-canonical
``ts``, a control character, a nested value too deep, a service event type, another tenant) makes
``prepare`` return None, and the caller takes the general path, which produces the precise error or the
normalized events; nothing here rejects a request on its own.
"""

from __future__ import annotations

import re
import uuid
from collections import deque
from collections.abc import Sequence
from itertools import chain, compress, repeat
from operator import is_not, itemgetter, setitem
from typing import Any

import numpy as np
import orjson

from ingest.hardening import MAX_DEPTH
from shared import typed_columns
from shared.errors import EventError
from shared.events import NAMED_FIELDS, RECEIVED_AT, SERVICE_EVENT_TYPES, canonical_stamps, is_canonical_stamp

_STRING_FIELDS = tuple(name for name in NAMED_FIELDS if name != "ts")
_NESTED = frozenset({dict, list})
_IS_DICT = frozenset({dict}).__contains__
_IS_LIST = frozenset({list}).__contains__
_IS_NESTED = _NESTED.__contains__
_NONE_TYPE = type(None)
_EVENT_DEPTH = 3  # {"events": [ {event} ]}: an event's own values sit at depth 4 at most
# A line nests no deeper than its count of "{" and "[" (strings' brackets included), and its event object
# sits at _EVENT_DEPTH at most: up to this many brackets, its deepest container is within MAX_DEPTH.
_LINE_BRACKETS = MAX_DEPTH - _EVENT_DEPTH + 1
_STRING_FIELDS_SET = frozenset(_STRING_FIELDS)
_C1_CONTROL = re.compile(b"\xc2[\x80-\x9f]")
_ENVELOPE_HEAD = b'{"events":['
_ENVELOPE_TAIL = b"]}"
_OPEN_BRACKET = ord("[")
_BRACKET_FOLD = 0xFF ^ (ord("{") ^ ord("["))  # clears the one bit in which "{" and "[" differ
_ALL_BUT_LAST = itemgetter(slice(None, -1))


def canonical_events(body: bytes, document: Any) -> list[bytes] | None:
    """Each posted event's canonical encoding when the body is, byte for byte, the canonical encoding of the
    document (trailing whitespace aside) in one of the accepted shapes; else None."""
    if type(document) is list:
        events, head, tail = document, b"[", b"]"
    elif type(document) is dict and "events" not in document:
        events, head, tail = [document], b"", b""
    elif type(document) is dict and len(document) == 1 and type(document["events"]) is list:
        events, head, tail = document["events"], _ENVELOPE_HEAD, _ENVELOPE_TAIL
    else:
        return None
    try:
        encoded = list(map(orjson.dumps, events))
    except orjson.JSONEncodeError:
        return None
    joined = b",".join(encoded)
    end = len(head) + len(joined) + len(tail)
    if not (body.startswith(head) and body.startswith(joined, len(head)) and body.startswith(tail, end - len(tail))):
        return None
    return encoded if len(body) == end or body[end:].isspace() else None


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


def has_control_bytes(body: bytes) -> bool:
    """True when a compact body may hold a control character in some string: a backslash (a canonical
    encoding escapes U+0000-U+001F), DEL, or a C1 control (U+0080-U+009F: the bytes C2 80 to C2 9F)."""
    # ``find``, not ``in``: ``in`` first tries the needle as an integer and formats a TypeError (about 3,000 instructions).
    return (body.find(b"\\") >= 0 or body.find(b"\x7f") >= 0
            or (body.find(b"\xc2") >= 0 and _C1_CONTROL.search(body) is not None))


def _named_fields_printable(posted: list[dict[str, Any]]) -> bool:
    """True when every named string field is printable (the general path judges anything else)."""
    return "\x20".join(chain.from_iterable(_field(posted, name, "") for name in _STRING_FIELDS)).isprintable()


def _lines_within_depth(lines: list[bytes], longest: int) -> bool:
    """True when no line can nest deeper than MAX_DEPTH: it holds at most ``_LINE_BRACKETS`` brackets.
    ``longest`` is the length of the longest line.

    First over the lines back to back: a line holding more brackets than that would hold
    ``_LINE_BRACKETS + 1`` consecutive ones less than ``longest`` bytes apart, so when every such run spans
    ``longest`` bytes or more, no line does (realistic lines, a few brackets in hundreds of bytes, end
    here). Otherwise each line's brackets are counted. The run test took 17 µs for a 100-event body of
    53 KB where counting per line took 29 (``bench/step_costs.py``): in the service this check was 11 % of ingest's CPU.
    """
    if len(lines) == 1:
        return lines[0].count(b"{") + lines[0].count(b"[") <= _LINE_BRACKETS
    data = np.frombuffer(b"".join(lines), dtype=np.uint8)
    positions = np.flatnonzero((data & _BRACKET_FOLD) == _OPEN_BRACKET)  # "{" is "[" with bit 0x20 set
    if len(positions) <= _LINE_BRACKETS:
        return True
    if bool((positions[_LINE_BRACKETS:] - positions[:-_LINE_BRACKETS] >= longest).all()):
        return True
    ends = np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)))
    return int(np.bincount(np.searchsorted(ends, positions, side="right")).max()) <= _LINE_BRACKETS


# What the fast path makes of a batch: the NDJSON of the posted events (every stored line and its newline;
# a stored line holds no raw newline), and their ``typed_columns.encode`` or None (the caller encodes the
# completed events then). A plain tuple: making a NamedTuple added about 6,000 instructions to a one-event
# ``prepare`` of 75,000 (callgrind).
Prepared = tuple[bytes, bytes | None]


def prepare(posted: list[Any], encoded: list[bytes], body: bytes, received_at: str, tenant: str | None,
            max_event_bytes: int) -> Prepared | None:
    """The stored lines of the posted events, as NDJSON (and, for a batch whose events share their keys or a
    usual single event, their typed fields), or None when the general path must decide.

    A single event goes to ``prepare_single`` first, and through the steps below only when that declines.

    ``encoded`` is what ``canonical_events(body, document)`` returned for the document ``posted`` comes
    from: the body is the canonical encoding, so byte scans of it speak for every string in it. Every step
    iterates in C (``map``/``compress``/``join``, byte scans, numpy). Events that all have the same keys
    are checked column by column (``typed_columns.transposed``): a typed field whose values join is all
    strings, and the joins are its typed entry. When an event only gains ``received_at`` (it has an id and
    a canonical ``ts``), its line is its encoding with that member spliced in before the closing brace,
    which is what encoding the completed event gives (the NDJSON is one join of the encodings with that
    member, a brace and a newline); otherwise the events are completed in place and encoded again. The
    events are completed only once every check but the size bound has passed; when that one declines, the
    general path normalizes the completed events to the same result.
    """
    if len(posted) == 1:
        single = prepare_single(posted[0], encoded[0], body, received_at, tenant, max_event_bytes)
        if single is not None:
            return single
    if not posted or set(map(type, posted)) != {dict}:
        return None
    columns = typed_columns.transposed(posted) if len(posted) > 1 else None
    if columns is None:
        field_entries = None
        nested = _nested_by_values(posted)
    else:
        free = typed_columns.separator_free(body)
        field_entries = typed_columns.entries(columns, free)
        nested = _nested_by_columns(columns, field_entries)
    if nested is None:
        return None
    longest = max(map(len, encoded))
    if nested and not _lines_within_depth(encoded, longest):
        values = chain.from_iterable(map(dict.values, posted))
        if not _within_depth([value for value in values if type(value) in _NESTED], _EVENT_DEPTH + 1):
            return None
    if has_control_bytes(body) and not _named_fields_printable(posted):
        return None  # control characters (or unusual printable ones): the general path decides
    if not SERVICE_EVENT_TYPES.isdisjoint(_values(posted, columns, "type")):
        return None
    if tenant is not None and set(_values(posted, columns, "tenant_id", tenant)) != {tenant}:
        return None
    stamps_posted = _values(posted, columns, "ts")
    try:
        stamps = canonical_stamps(stamps_posted, received_at)
    except EventError:  # the general path names the problem
        return None
    if stamps is stamps_posted and _gains_only_received_at(posted, columns, tenant):
        end = _spliced_end(received_at, longest, max_event_bytes)
        if end is None:
            return None
        typed = None
        if field_entries is not None:
            typed = typed_columns.encode_entries(len(posted), received_at, columns.get("ts"), field_entries, free)
        return end.join([*map(_ALL_BUT_LAST, encoded), b""]), typed
    lines = _completed(posted, stamps, received_at, tenant)
    if max(map(len, lines)) > max_event_bytes:
        return None
    return b"\n".join([*lines, b""]), None


def prepare_single(event: Any, encoded: bytes, body: bytes, received_at: str, tenant: str | None,
                   max_event_bytes: int) -> Prepared | None:
    """``prepare`` for a body of one event in the usual case, with its typed fields; None when ``prepare``
    must look at it (which may still take it).

    The usual case: an object with an id, a canonical ``ts``, no ``received_at``, no null value, its named
    fields strings, not a service type, of the bound tenant if any, few enough brackets, and a body without
    a backslash, DEL or C1 byte (so no value holds a control character or the typed fields' separator).
    Its line is its encoding with ``received_at`` spliced in, as ``prepare`` makes it. ``prepare``'s steps
    are built for batches (C-level passes over columns); for one event they cost more than the checks.
    """
    if type(event) is not dict or has_control_bytes(body):
        return None
    odd = [name for name, value in event.items() if type(value) is not str]
    if odd:
        if not _STRING_FIELDS_SET.isdisjoint(odd) or None in map(event.get, odd):
            return None
        if (any(type(event[name]) in _NESTED for name in odd)
                and encoded.count(b"{") + encoded.count(b"[") > _LINE_BRACKETS):
            return None
    if (not is_canonical_stamp(event.get("ts")) or "audit_event_id" not in event or RECEIVED_AT in event
            or event.get("type") in SERVICE_EVENT_TYPES or (tenant is not None and event.get("tenant_id") != tenant)):
        return None
    end = _spliced_end(received_at, len(encoded), max_event_bytes)
    if end is None:
        return None
    if typed_columns.TYPED_NAMES.isdisjoint(odd):
        return encoded[:-1] + end, typed_columns.encode_strings(event, received_at)
    return encoded[:-1] + end, typed_columns.encode((event,), received_at)


def _spliced_end(received_at: str, longest: int, max_event_bytes: int) -> bytes | None:
    """What replaces each encoding's closing brace (``received_at``, the brace, the newline), or None when the
    longest encoding (``longest`` bytes) would then make a line over ``max_event_bytes``."""
    end = f',"{RECEIVED_AT}":"{received_at}"}}\n'.encode()
    return end if longest - 1 + len(end) - 1 <= max_event_bytes else None


def _nested_by_values(posted: list[dict[str, Any]]) -> bool | None:
    """None when a value is null or a named field (``ts`` aside) is not a string; else whether any value is
    an object or an array."""
    kinds_in_order = list(map(type, chain.from_iterable(map(dict.values, posted))))
    kinds = set(kinds_in_order)
    if _NONE_TYPE in kinds:
        return None
    if kinds != {str}:  # a named field that is not a string goes to the general path
        not_strings = map(is_not, kinds_in_order, repeat(str))
        if not _STRING_FIELDS_SET.isdisjoint(compress(chain.from_iterable(map(dict.keys, posted)), not_strings)):
            return None
    return not kinds.isdisjoint(_NESTED)


def _nested_by_columns(columns: dict[str, tuple[Any, ...]], field_entries: list[Any]) -> bool | None:
    """``_nested_by_values`` for events that share their keys, column by column: a typed field whose entry
    is a joined string holds only strings, the other columns' types are looked at."""
    joined = {name for name, entry in zip(typed_columns.FIELDS, field_entries) if type(entry) is str}
    nested = False
    for name, values in columns.items():
        if name in joined:
            continue
        kinds = set(map(type, values))
        if kinds == {str}:
            continue
        if _NONE_TYPE in kinds or name in _STRING_FIELDS_SET:
            return None
        nested = nested or not kinds.isdisjoint(_NESTED)
    return nested


def _values(posted: list[dict[str, Any]], columns: dict[str, tuple[Any, ...]] | None, name: str,
            default: Any = None) -> Sequence[Any]:
    """Every event's value of ``name`` (``default`` where absent), from the columns when there are some."""
    if columns is None:
        return _field(posted, name, default)
    return columns.get(name) or [default] * len(posted)


def _gains_only_received_at(posted: list[dict[str, Any]], columns: dict[str, tuple[Any, ...]] | None,
                            tenant: str | None) -> bool:
    """True when completing the events adds ``received_at`` and nothing else (the stamps being canonical)."""
    if columns is not None:  # every event has every key of the columns
        return "audit_event_id" in columns and RECEIVED_AT not in columns and (tenant is None or "tenant_id" in columns)
    return (all(map(dict.__contains__, posted, repeat("audit_event_id")))
            and not any(map(dict.__contains__, posted, repeat(RECEIVED_AT)))
            and (tenant is None or all(map(dict.__contains__, posted, repeat("tenant_id")))))


def _completed(posted: list[dict[str, Any]], stamps: list[str], received_at: str, tenant: str | None) -> list[bytes]:
    """Complete the events in place in the general path's key order (a generated id, then ts, then
    received_at, then a bound tenant) and encode them."""
    for event in posted:
        if "audit_event_id" not in event:
            event["audit_event_id"] = str(uuid.uuid4())
    deque(map(setitem, posted, repeat("ts"), stamps), 0)
    deque(map(setitem, posted, repeat(RECEIVED_AT), repeat(received_at)), 0)
    if tenant is not None:
        deque(map(dict.setdefault, posted, repeat("tenant_id"), repeat(tenant)), 0)
    return list(map(orjson.dumps, posted))
