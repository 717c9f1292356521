"""HTTP delivery of one batch: POST with optional gzip, short timeouts, bounded retries with backoff."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import gzip
import json
import random
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import aiohttp

from producer.options import ProducerOptions

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_RESPONSE_BYTES = 64 * 1024
MAX_DETAIL_CHARS = 500


@dataclasses.dataclass(frozen=True)
class SendResult:
    """How a batch ended: ``sent``, ``rejected`` (a non-retryable answer) or ``failed`` (gave up)."""

    outcome: str
    attempts: int
    status: int | None = None
    reason: str = ""
    accepted: int | None = None


def build_body(items: list[bytes]) -> bytes:
    """The request body for already-encoded events."""
    return b'{"events":[' + b",".join(items) + b"]}"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent/bad."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = (moment - datetime.now(timezone.utc)).total_seconds()
    if seconds != seconds:
        return None
    return max(0.0, seconds)


def error_detail(raw: bytes) -> str:
    """The service's ``{"detail": ...}`` message, or the start of the body as text."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        return text[:MAX_DETAIL_CHARS]
    if isinstance(parsed, dict) and "detail" in parsed:
        detail = parsed["detail"]
        return (detail if isinstance(detail, str) else json.dumps(detail))[:MAX_DETAIL_CHARS]
    return text[:MAX_DETAIL_CHARS]


def _accepted(raw: bytes) -> int | None:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    value = parsed.get("accepted") if isinstance(parsed, dict) else None
    return value if isinstance(value, int) else None


class ShutdownSafeResolver(aiohttp.ThreadedResolver):
    """The threaded resolver, resolving inline once the interpreter refuses new executor work (at exit)."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        try:
            return await super().resolve(host, port, family)
        except RuntimeError:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
            flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
            return [
                {"hostname": host, "host": address[0], "port": address[1], "family": fam, "proto": proto, "flags": flags}
                for fam, _, proto, _, address in infos
            ]


def make_session(options: ProducerOptions, shutdown_safe: bool = False) -> aiohttp.ClientSession:
    """A client session for one producer; call inside the event loop that will use it."""
    resolver = ShutdownSafeResolver() if shutdown_safe else None
    connector = aiohttp.TCPConnector(limit=4, resolver=resolver)
    headers = {"Content-Type": "application/json", "User-Agent": options.user_agent}
    if options.token:
        headers["Authorization"] = f"Bearer {options.token}"
    return aiohttp.ClientSession(connector=connector, headers=headers, raise_for_status=False)


class Transport:
    """Posts batches to the service; remembers a ``Retry-After`` pause for the requests that follow."""

    def __init__(
        self,
        options: ProducerOptions,
        session: aiohttp.ClientSession,
        offload_compression: bool = False,
        rng: random.Random | None = None,
    ):
        self.options = options
        self.session = session
        self.not_before = 0.0
        self._offload = offload_compression
        self._rng = rng or random.Random()

    def pause_remaining(self) -> float:
        """Seconds left of the pause the service asked for with ``Retry-After`` (0 when none)."""
        return max(0.0, self.not_before - time.monotonic())

    def backoff(self, attempt: int) -> float:
        """Capped exponential backoff with jitter before re-send number ``attempt`` (1, 2, ...)."""
        ceiling = min(self.options.backoff_max, self.options.backoff_base * (2 ** (attempt - 1)))
        return ceiling * (0.5 + self._rng.random() / 2)

    async def encode(self, items: list[bytes]) -> tuple[bytes, bool]:
        """The body to post and whether it is gzip-compressed (above the configured threshold)."""
        body = build_body(items)
        if len(body) <= self.options.gzip_threshold:
            return body, False
        if self._offload:
            return await asyncio.to_thread(gzip.compress, body, 5, mtime=0), True
        return gzip.compress(body, 5, mtime=0), True

    async def send(self, items: list[bytes], on_retry: Callable[[], None] | None = None) -> SendResult:
        """Post one batch, retrying 429/5xx/timeouts/connection errors within the attempt and time budget."""
        opts = self.options
        body, compressed = await self.encode(items)
        headers = {"Content-Encoding": "gzip"} if compressed else None
        budget_end = time.monotonic() + opts.retry_budget
        attempt = 0
        while True:
            attempt += 1
            remaining = budget_end - time.monotonic()
            if remaining <= 0:
                return SendResult("failed", attempt - 1, None, "retry budget exhausted")
            status, raw, retry_after, reason = await self._attempt(body, headers, min(opts.total_timeout, remaining))
            if status is not None and 200 <= status < 300:
                return SendResult("sent", attempt, status, "", _accepted(raw))
            if status is not None and status not in RETRYABLE_STATUS:
                return SendResult("rejected", attempt, status, error_detail(raw) or reason)
            if retry_after is not None:
                retry_after = min(retry_after, opts.max_retry_after)
                self.not_before = max(self.not_before, time.monotonic() + retry_after)
            if attempt >= opts.max_attempts:
                return SendResult("failed", attempt, status, f"{reason} after {attempt} attempts")
            delay = retry_after if retry_after is not None else self.backoff(attempt)
            if time.monotonic() + delay >= budget_end:
                return SendResult("failed", attempt, status, f"{reason}; retry budget of {opts.retry_budget:g}s exhausted")
            if on_retry is not None:
                on_retry()
            await asyncio.sleep(delay)

    async def _attempt(
        self, body: bytes, headers: dict[str, str] | None, total: float
    ) -> tuple[int | None, bytes, float | None, str]:
        opts = self.options
        timeout = aiohttp.ClientTimeout(total=total, connect=opts.connect_timeout, sock_connect=opts.connect_timeout)
        try:
            async with self.session.post(opts.events_url, data=body, headers=headers, timeout=timeout) as response:
                raw = await response.content.read(MAX_RESPONSE_BYTES)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                return response.status, raw, retry_after, f"HTTP {response.status}"
        except asyncio.TimeoutError:
            return None, b"", None, f"timed out after {total:.3g}s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return None, b"", None, f"connection error: {exc.__class__.__name__}: {exc}"
