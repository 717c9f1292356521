"""JSON encoding of events: orjson when installed, stdlib json otherwise; odd values never make it raise."""

from __future__ import annotations

import binascii
import dataclasses
import enum
import importlib
import json
import math
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

Dumps = Callable[[Any], bytes]
MAX_DEPTH = 64


def format_datetime(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds and ``Z``; a naive datetime is taken as UTC (as the service does)."""
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def bytes_text(data: bytes) -> str:
    """UTF-8 text when the bytes decode cleanly, standard base64 otherwise."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return binascii.b2a_base64(data, newline=False).decode("ascii") if data else ""


def to_jsonable(value: Any) -> Any:
    """One step towards JSON for a value the encoder does not know; ``str()`` as the last resort."""
    try:
        return _convert(value)
    except Exception:  # a broken __str__, model_dump or property must not escape
        return _safe_str(value)


def _convert(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes_text(bytes(value))
    if isinstance(value, (set, frozenset)):
        return _ordered(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):
        try:
            return model_dump(mode="json")
        except TypeError:
            return model_dump()
    return _safe_str(value)


def _ordered(items: set[Any] | frozenset[Any]) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=repr)


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unserializable {type(value).__name__}>"


def sanitize(value: Any, depth: int = 0) -> Any:
    """A plain-JSON copy: string keys, finite floats, valid UTF-8, bounded depth, known types only."""
    if depth > MAX_DEPTH:
        return "<too deep>"
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return _clean_text(str(value))
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_clean_text(_key(key)): sanitize(item, depth + 1) for key, item in list(value.items())}
    if isinstance(value, list):
        return [sanitize(item, depth + 1) for item in value]
    converted = to_jsonable(value)
    if converted is value or type(converted) is type(value):
        return _clean_text(_safe_str(value))
    return sanitize(converted, depth + 1)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    converted = to_jsonable(key)
    return converted if isinstance(converted, str) else json.dumps(sanitize(converted))


def _clean_text(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _stdlib_dumps(value: Any) -> bytes:
    return json.dumps(value, default=to_jsonable, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


def stdlib_dumps(value: Any) -> bytes:
    """Encode with the standard library; falls back to a sanitized copy when the fast path fails."""
    try:
        return _stdlib_dumps(value)
    except (ValueError, TypeError, RecursionError):
        return _stdlib_dumps(sanitize(value))


def make_dumps(prefer_orjson: bool = True) -> Dumps:
    """The fastest available encoder: orjson with our conversions, or the stdlib one."""
    if not prefer_orjson:
        return stdlib_dumps
    try:
        orjson = importlib.import_module("orjson")
    except ImportError:
        return stdlib_dumps
    fast = orjson.dumps
    options = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
    encode_error = orjson.JSONEncodeError

    def orjson_dumps(value: Any) -> bytes:
        try:
            return fast(value, default=to_jsonable, option=options)
        except (encode_error, RecursionError):
            return stdlib_dumps(sanitize(value))

    return orjson_dumps


def has_orjson() -> bool:
    """Whether orjson can be imported here."""
    try:
        importlib.import_module("orjson")
    except ImportError:
        return False
    return True
