"""What open endpoints (status, readyz) show a caller without a read token: no paths, buckets or error texts."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ingest import keys
from ingest.auth import principal
from ingest.tokens import READ

REDACTED = "redacted"
# Keys whose text may name a path, bucket, prefix, host or an error message. Numbers and booleans under
# such keys (counters, flags) stay visible; strings and lists of strings are replaced.
_SENSITIVE_KEY = re.compile(r"path|bucket|prefix|endpoint|url|host|error|detail|reason|quarantine|segment_name",
                            re.IGNORECASE)


def redact(value: Any) -> Any:
    """A copy of a status document with every sensitive text replaced by ``"redacted"``."""
    if isinstance(value, dict):
        return {key: _hide(item) if _SENSITIVE_KEY.search(key) else redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _hide(value: Any) -> Any:
    if isinstance(value, str):
        return REDACTED
    if isinstance(value, list):
        return [REDACTED if isinstance(item, (str, dict, list)) else item for item in value]
    if isinstance(value, dict):
        return {key: _hide(item) for key, item in value.items()}
    return value


def sees_everything(request: web.Request) -> bool:
    """True in open mode and for callers with an unbound read or admin token."""
    caller = principal(request)
    return not request.app[keys.TOKENS].enabled or (caller.may(READ) and caller.tenant is None)


def visible_status(request: web.Request, document: dict[str, Any]) -> dict[str, Any]:
    """The status document for this caller, with ``auth`` and the service's own audit counters added."""
    document = {**document, "auth": "enabled" if request.app[keys.TOKENS].enabled else "disabled",
                "self_audit": request.app[keys.TRAIL].counters()}
    return document if sees_everything(request) else redact(document)


def visible_reason(request: web.Request, reason: str) -> str:
    """A not-ready reason for this caller: only its first clause (``storage down``) when details are hidden."""
    return reason if sees_everything(request) else reason.split(":", 1)[0]
