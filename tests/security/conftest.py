"""Fixtures of the security tests: one service with tokens of every scope, shared by the whole package."""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from tests.service import Service

INGEST = "ingest-0123456789abcdef"
INGEST_ACME = "ingest-acme-0123456789ab"
READ = "read-0123456789abcdefgh"
READ_ACME = "read-acme-0123456789abcd"
ADMIN = "admin-0123456789abcdefg"
WRONG = "wrong-0123456789abcdefg"
TENANT = "acme"
TOKENS = {"ingest": INGEST, "ingest_acme": INGEST_ACME, "read": READ, "read_acme": READ_ACME, "admin": ADMIN}


def bearer(token: str | None) -> dict[str, str]:
    """The Authorization header of a token (none for None)."""
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def fingerprint(token: str) -> str:
    """How audit events name a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def marker(prefix: str = "sec") -> str:
    """A value no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def call(svc: Service, method: str, path: str, token: str | None = None, body: Any = None,
         headers: dict[str, str] | None = None, timeout: float = 15.0) -> tuple[int, Any, dict[str, str]]:
    """One HTTP call to ingest with an optional bearer token; JSON answers decoded, others as bytes."""
    data = body if isinstance(body, (bytes, type(None))) else orjson.dumps(body)
    merged = {**bearer(token), **(headers or {})}
    if data is not None and "Content-Type" not in merged:
        merged["Content-Type"] = "application/json"
    request = urllib.request.Request(f"{svc.url}{path}", data=data, method=method, headers=merged)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, answer_headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, raw, answer_headers = exc.code, exc.read(), dict(exc.headers)
    if raw and (header(answer_headers, "Content-Type") or "").startswith("application/json"):
        return status, orjson.loads(raw), answer_headers
    return status, raw, answer_headers


def poll(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Call ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def header(headers: dict[str, str], name: str) -> str | None:
    """A response header, case-insensitively."""
    return next((value for key, value in headers.items() if key.lower() == name.lower()), None)


def assert_json_error(response: tuple[int, Any, dict[str, str]], status: int) -> dict[str, Any]:
    """The response has this status and the one JSON error shape."""
    code, body, headers = response
    assert code == status, (code, body)
    assert (header(headers, "Content-Type") or "").startswith("application/json"), headers
    assert isinstance(body, dict) and list(body) == ["detail"] and isinstance(body["detail"], str), body
    return body


@pytest.fixture(scope="package")
def secure_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service with ingest, read and admin tokens (admin from a token file), tenant-bound tokens for
    ``acme``, and the ``standard`` verbosity (keeps ``auth`` events, would drop ``audit_read``)."""
    root = tmp_path_factory.mktemp("secure")
    token_file = root / "admin-tokens"
    token_file.write_text(f"# admin tokens, one a line\n\n{ADMIN}\n")
    service = Service(
        root,
        AUDIT_SERVICE_INGEST_TOKENS=f"{INGEST}, {INGEST_ACME}:{TENANT}",
        AUDIT_SERVICE_READ_TOKENS=f"{READ},{READ_ACME}:{TENANT}",
        AUDIT_SERVICE_ADMIN_TOKENS_FILE=str(token_file),
        AUDIT_SERVICE_REQUIRE_AUTH="true",
        AUDIT_LOG_VERBOSITY="standard",
        AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.2",
    )
    try:
        yield service.start_all()
    finally:
        service.stop()


def events_where(svc: Service, timeout: float = 10.0, **params: str) -> list[dict[str, Any]]:
    """Records of a read with the admin token (which records an audit_read of its own)."""
    query = "&".join(f"{key}={value}" for key, value in params.items())
    status, body, _ = call(svc, "GET", f"/v1/audit/events?window=1h&limit=10000&{query}", ADMIN, timeout=timeout)
    assert status == 200, body
    return body["records"]

