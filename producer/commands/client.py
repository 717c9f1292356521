"""A small blocking JSON-over-HTTP client for the CLI's read commands (query, tail, status)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from producer.transport import error_detail

USER_AGENT = "auditlake-cli/0.1"


class ServiceError(Exception):
    """The service answered with an error status (``status``) or could not be reached (``status`` None)."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(detail if status is None else f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class ServiceClient:
    """GETs JSON documents from one auditlake service, with an optional bearer token."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"--url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def url(self, path: str, params: dict[str, str] | None = None) -> str:
        """The full URL of ``path`` with ``params`` as its query string."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"{self.base_url}{path}{query}"

    def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, decoded JSON body) for any HTTP status; ServiceError(None, ...) when unreachable."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url(path, params), headers=headers, method="GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, _decode(raw)
            except ValueError:
                return exc.code, {"detail": error_detail(raw)}
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceError(None, f"cannot reach {self.base_url}: {reason}") from None

    def get_ok(self, path: str, params: dict[str, str] | None = None) -> Any:
        """The decoded body of a 200; ServiceError with the service's ``detail`` otherwise."""
        status, body = self.get(path, params)
        if status != 200:
            detail = body.get("detail") if isinstance(body, dict) else None
            raise ServiceError(status, str(detail or body))
        return body


def _decode(raw: bytes) -> Any:
    return json.loads(raw) if raw else None
