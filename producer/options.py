"""Producer settings: one validated, immutable options object shared by both flavours."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

DEFAULT_URL = "http://127.0.0.1:8010"
URL_ENV = "AUDITLAKE_URL"
TOKEN_ENV = "AUDITLAKE_TOKEN"
EVENTS_PATH = "/v1/audit/events"
DROP_POLICIES = ("newest", "oldest")


def default_url(environ: Mapping[str, str] | None = None) -> str:
    """The service URL from ``AUDITLAKE_URL``, else the local default."""
    env = os.environ if environ is None else environ
    return (env.get(URL_ENV) or "").strip() or DEFAULT_URL


def default_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The bearer token from ``AUDITLAKE_TOKEN``, or None when unset or empty."""
    env = os.environ if environ is None else environ
    return (env.get(TOKEN_ENV) or "").strip() or None


@dataclasses.dataclass(frozen=True)
class ProducerOptions:
    """Every knob of a producer; ``base_url``/``token`` default to the environment, then localhost."""

    base_url: str | None = None
    token: str | None = None
    batch_size: int = 100
    flush_interval: float = 1.0
    max_buffer_events: int = 10_000
    max_buffer_bytes: int = 8 * 1024 * 1024
    max_batch_bytes: int = 1024 * 1024
    drop_policy: str = "newest"
    gzip_threshold: int = 64 * 1024
    connect_timeout: float = 1.0
    total_timeout: float = 5.0
    max_attempts: int = 3
    retry_budget: float = 10.0
    backoff_base: float = 0.2
    backoff_max: float = 2.0
    max_retry_after: float = 60.0
    outage_backoff_max: float = 30.0
    close_timeout: float = 5.0
    log_interval: float = 60.0
    logger_name: str = "auditlake.producer"
    user_agent: str = "auditlake-producer/0.1"

    def __post_init__(self) -> None:
        if self.base_url is None:
            object.__setattr__(self, "base_url", default_url())
        if self.token is None:
            object.__setattr__(self, "token", default_token())
        if not str(self.base_url).startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        for name in ("batch_size", "max_buffer_events", "max_buffer_bytes", "max_batch_bytes", "max_attempts"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("flush_interval", "connect_timeout", "total_timeout", "retry_budget", "close_timeout"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0")
        for name in (
            "gzip_threshold",
            "backoff_base",
            "backoff_max",
            "max_retry_after",
            "outage_backoff_max",
            "log_interval",
        ):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.drop_policy not in DROP_POLICIES:
            raise ValueError(f"drop_policy must be one of {', '.join(DROP_POLICIES)}")

    @property
    def events_url(self) -> str:
        """Where batches are posted."""
        return str(self.base_url).rstrip("/") + EVENTS_PATH
