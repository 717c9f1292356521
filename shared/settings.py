"""The settings object: every environment variable both processes read, parsed and validated once."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shared.auth_settings import TokenSpec, tokens_from_env
from shared.cpu_pinning import AUTO, parse_cpus
from shared.errors import ConfigError

MAX_UNIX_SOCKET_PATH_BYTES = 100
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected true or false")


def _parse_int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be <= {maximum}")
        return value

    return parse


def _parse_float(minimum: float = 0.0, exclusive: bool = False) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        if value < minimum or (exclusive and value == minimum):
            raise ValueError(f"must be {'>' if exclusive else '>='} {minimum:g}")
        return value

    return parse


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _parse_str(raw: str) -> str:
    return raw.strip()


def _parse_path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("must not be empty")
    return Path(raw.strip())


def _default_writer_id() -> str:
    host = re.sub(r"[^a-z0-9]+", "-", socket.gethostname().lower()).strip("-")
    return host[:40] or "writer"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Validated configuration of one process; built once in ``__main__`` and passed down."""

    backend: str = "local"
    local_path: Path = Path("/var/lib/caipe-audit-service")
    local_gzip: bool = True
    local_retention_days: int = 1
    disk_warning_percent: float = 85.0
    disk_critical_percent: float = 95.0
    s3_bucket: str | None = None
    s3_prefix: str = "audit"
    s3_region: str = "us-east-1"
    s3_endpoint_url: str | None = None
    s3_retention_days: int = 0
    s3_partition: str = "hour"
    s3_upload_interval_seconds: float = 60.0
    # Spooled bytes of one upload (one flush). A flush holds its range and the parsed columns at once, so this
    # bounds the writer's memory: in S3 overload runs the writer peaked at ~394 MB with 64 MiB, ~330 with 32 MiB
    # and ~274 with 16 MiB, at the same throughput (docs/benchmarks.md, "Fifth session").
    s3_max_object_bytes: int = 16 * 1024 * 1024
    s3_create_bucket: bool = False
    s3_test_throttle_ratio: float = 0.0
    queue_max_size: int = 10000
    queue_max_bytes: int = 64 * 1024 * 1024
    flush_batch_size: int = 500
    flush_interval_seconds: float = 1.0
    read_default_limit: int = 1000
    read_max_limit: int = 10000
    read_max_days: int = 31
    read_concurrency: int = 4
    read_priority: str = "idle"  # CPU priority of ingest's read process: idle (SCHED_IDLE), low (nice 10), normal
    # The writer's encoder process runs this many nice levels below the writer (0-19). It shares a CPU with
    # the writer's loop and commit threads; at 0 a flush's encoding held the spool's group commits back (in
    # step at ~60 % of the maximum: commits slower than 1 ms 6-10 %, wrk's p99 7.8-8.7 ms), at 5 they ran
    # first (3.5-4.2 %, 6.6-7.0 ms). 10 was as quick but took so much CPU from the encoder at the maximum
    # that the writer stored 150,000-165,000 of 183,000 events/s accepted; at 5 171,000-178,000 (at 0 all).
    # docs/benchmarks.md, twenty-second session.
    encoder_niceness: int = 5
    read_cache_bytes: int = 192 * 1024 * 1024
    test_read_delay_seconds: float = 0.0
    verbosity: str = "minimal"
    host: str = "0.0.0.0"
    port: int = 8010
    socket_path: Path | None = None
    spool_path: Path | None = None
    spool_max_bytes: int = 1024 * 1024 * 1024
    spool_segment_bytes: int = 64 * 1024 * 1024
    writer_health_host: str = "127.0.0.1"
    writer_health_port: int = 8011
    writer_id: str = dataclasses.field(default_factory=_default_writer_id)
    max_frame_bytes: int = 16 * 1024 * 1024
    max_body_bytes: int = 5 * 1024 * 1024
    max_events_per_request: int = 10000
    max_event_bytes: int = 64 * 1024
    body_read_timeout_seconds: float = 10.0
    header_read_timeout_seconds: float = 10.0
    ingest_tokens: tuple[TokenSpec, ...] = dataclasses.field(default=(), repr=False)
    read_tokens: tuple[TokenSpec, ...] = dataclasses.field(default=(), repr=False)
    admin_tokens: tuple[TokenSpec, ...] = dataclasses.field(default=(), repr=False)
    require_auth: bool = False
    ack_timeout_seconds: float = 30.0
    drain_seconds: float = 20.0
    retention_interval_seconds: float = 3600.0
    flush_failing_ready_seconds: float = 30.0
    dedupe_window_seconds: float = 86400.0
    dedupe_max_ids: int = 1_000_000
    log_level: str = "INFO"
    access_log_sample_rate: float = 0.0
    fault_point: str | None = None
    digest_interval_seconds: float = 3600.0
    signing_key_file: Path | None = None
    s3_object_lock_mode: str | None = None
    s3_object_lock_days: int = 0
    # The CPUs each process runs on (``shared.cpu_pinning``): ``auto`` pins ingest and the writer to one CPU
    # each on a two-CPU machine and leaves them alone otherwise, ``all`` never pins, a list pins to it.
    ingest_cpus: str | frozenset[int] = AUTO
    writer_cpus: str | frozenset[int] = AUTO

    @property
    def resolved_spool_path(self) -> Path:
        """Where the writer keeps its spool: the configured path or ``<local_path>/_spool``."""
        return self.spool_path if self.spool_path is not None else self.local_path / "_spool"

    @property
    def resolved_socket_path(self) -> Path:
        """The writer's Unix socket: the configured path or ``writer.sock`` inside the spool."""
        return self.socket_path if self.socket_path is not None else self.resolved_spool_path / "writer.sock"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables; raise ConfigError naming the first bad one."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for variable, (field_name, parse) in _ENV_FIELDS.items():
            raw = env.get(variable)
            if raw is None or (raw.strip() == "" and field_name in _EMPTY_MEANS_UNSET):
                continue
            try:
                values[field_name] = parse(raw)
            except ValueError as exc:
                raise ConfigError(variable, f"invalid value {raw!r}: {exc}") from None
        values.update(tokens_from_env(env))
        settings = cls(**values)
        settings.validate()
        return settings

    @property
    def auth_enabled(self) -> bool:
        """True when any token is configured: every non-health endpoint then needs one."""
        return bool(self.ingest_tokens or self.read_tokens or self.admin_tokens)

    def validate(self) -> None:
        """Check rules that span several settings; raise ConfigError naming the variable."""
        if self.require_auth and not self.auth_enabled:
            raise ConfigError("AUDIT_SERVICE_REQUIRE_AUTH", "is true but no token is configured; set "
                              "AUDIT_SERVICE_INGEST_TOKENS, AUDIT_SERVICE_READ_TOKENS or AUDIT_SERVICE_ADMIN_TOKENS "
                              "(or their _FILE forms)")
        if self.backend == "s3" and not self.s3_bucket:
            raise ConfigError("AUDIT_SERVICE_S3_BUCKET", "required when AUDIT_SERVICE_BACKEND=s3")
        if self.backend == "s3" and self.s3_retention_days > 0 and not self.s3_prefix:
            raise ConfigError("AUDIT_SERVICE_S3_PREFIX", "must not be empty when a retention rule is applied")
        if self.disk_warning_percent > self.disk_critical_percent:
            raise ConfigError(
                "AUDIT_SERVICE_LOCAL_DISK_WARNING_PERCENT",
                "must not exceed AUDIT_SERVICE_LOCAL_DISK_CRITICAL_PERCENT",
            )
        if self.read_default_limit > self.read_max_limit:
            raise ConfigError("AUDIT_SERVICE_READ_DEFAULT_LIMIT", "must not exceed AUDIT_SERVICE_READ_MAX_LIMIT")
        if len(os.fsencode(self.resolved_socket_path)) > MAX_UNIX_SOCKET_PATH_BYTES:
            raise ConfigError(
                "AUDIT_SERVICE_SOCKET_PATH",
                f"{self.resolved_socket_path} is longer than {MAX_UNIX_SOCKET_PATH_BYTES} bytes; "
                "set a shorter socket path",
            )
        if self.fault_point is not None and not re.fullmatch(r"[a-z_]+(:[0-9]+)?", self.fault_point):
            raise ConfigError("AUDIT_SERVICE_FAULT_POINT", "expected NAME or NAME:COUNT (test use only)")
        if self.s3_object_lock_mode is not None and self.s3_object_lock_days < 1:
            raise ConfigError("AUDIT_SERVICE_S3_OBJECT_LOCK_DAYS",
                              "must be >= 1 when AUDIT_SERVICE_S3_OBJECT_LOCK_MODE is set")
        if self.max_body_bytes + 1024 * 1024 > self.max_frame_bytes:
            raise ConfigError("AUDIT_SERVICE_MAX_FRAME_BYTES", "must exceed AUDIT_SERVICE_MAX_BODY_BYTES by 1 MiB")


_EMPTY_MEANS_UNSET = {"s3_bucket", "s3_endpoint_url", "socket_path", "spool_path", "fault_point", "signing_key_file",
                      "s3_object_lock_mode", "ingest_cpus", "writer_cpus"}

_ENV_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "AUDIT_SERVICE_BACKEND": ("backend", _parse_choice("local", "s3")),
    "AUDIT_SERVICE_LOCAL_PATH": ("local_path", _parse_path),
    "AUDIT_SERVICE_LOCAL_GZIP": ("local_gzip", _parse_bool),
    "AUDIT_SERVICE_LOCAL_RETENTION_DAYS": ("local_retention_days", _parse_int(0)),
    "AUDIT_SERVICE_LOCAL_DISK_WARNING_PERCENT": ("disk_warning_percent", _parse_float(0.0)),
    "AUDIT_SERVICE_LOCAL_DISK_CRITICAL_PERCENT": ("disk_critical_percent", _parse_float(0.0)),
    "AUDIT_SERVICE_S3_BUCKET": ("s3_bucket", _parse_str),
    "AUDIT_SERVICE_S3_PREFIX": ("s3_prefix", lambda raw: raw.strip().strip("/")),
    "AUDIT_SERVICE_S3_REGION": ("s3_region", _parse_str),
    "AUDIT_SERVICE_S3_ENDPOINT_URL": ("s3_endpoint_url", _parse_str),
    "AUDIT_SERVICE_S3_RETENTION_DAYS": ("s3_retention_days", _parse_int(0)),
    "AUDIT_SERVICE_S3_PARTITION": ("s3_partition", _parse_choice("hour", "minute", "day")),
    "AUDIT_SERVICE_S3_UPLOAD_INTERVAL_SECONDS": ("s3_upload_interval_seconds", _parse_float(0.0, exclusive=True)),
    "AUDIT_SERVICE_S3_MAX_OBJECT_BYTES": ("s3_max_object_bytes", _parse_int(1024)),
    "AUDIT_SERVICE_S3_CREATE_BUCKET": ("s3_create_bucket", _parse_bool),
    "AUDIT_SERVICE_TEST_S3_THROTTLE": ("s3_test_throttle_ratio", _parse_float(0.0)),
    "AUDIT_SERVICE_QUEUE_MAX_SIZE": ("queue_max_size", _parse_int(1)),
    "AUDIT_SERVICE_QUEUE_MAX_BYTES": ("queue_max_bytes", _parse_int(1024)),
    "AUDIT_SERVICE_FLUSH_BATCH_SIZE": ("flush_batch_size", _parse_int(1)),
    "AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS": ("flush_interval_seconds", _parse_float(0.0, exclusive=True)),
    "AUDIT_SERVICE_READ_DEFAULT_LIMIT": ("read_default_limit", _parse_int(1)),
    "AUDIT_SERVICE_READ_MAX_LIMIT": ("read_max_limit", _parse_int(1)),
    "AUDIT_SERVICE_READ_MAX_DAYS": ("read_max_days", _parse_int(1)),
    "AUDIT_SERVICE_READ_CONCURRENCY": ("read_concurrency", _parse_int(1, 256)),
    "AUDIT_SERVICE_READ_PRIORITY": ("read_priority", _parse_choice("idle", "low", "normal")),
    "AUDIT_SERVICE_ENCODER_NICENESS": ("encoder_niceness", _parse_int(0, 19)),
    "AUDIT_SERVICE_READ_CACHE_BYTES": ("read_cache_bytes", _parse_int(0)),
    "AUDIT_SERVICE_TEST_READ_DELAY_SECONDS": ("test_read_delay_seconds", _parse_float(0.0)),
    "AUDIT_LOG_VERBOSITY": ("verbosity", lambda raw: raw.strip().lower()),
    "AUDIT_SERVICE_HOST": ("host", _parse_str),
    "AUDIT_SERVICE_PORT": ("port", _parse_int(0, 65535)),
    "AUDIT_SERVICE_SOCKET_PATH": ("socket_path", _parse_path),
    "AUDIT_SERVICE_SPOOL_PATH": ("spool_path", _parse_path),
    "AUDIT_SERVICE_SPOOL_MAX_BYTES": ("spool_max_bytes", _parse_int(1024)),
    "AUDIT_SERVICE_SPOOL_SEGMENT_BYTES": ("spool_segment_bytes", _parse_int(4096)),
    "AUDIT_SERVICE_WRITER_HEALTH_HOST": ("writer_health_host", _parse_str),
    "AUDIT_SERVICE_WRITER_HEALTH_PORT": ("writer_health_port", _parse_int(0, 65535)),
    "AUDIT_SERVICE_WRITER_ID": ("writer_id", lambda raw: _parse_writer_id(raw)),
    "AUDIT_SERVICE_MAX_FRAME_BYTES": ("max_frame_bytes", _parse_int(64 * 1024)),
    "AUDIT_SERVICE_MAX_BODY_BYTES": ("max_body_bytes", _parse_int(1024)),
    "AUDIT_SERVICE_MAX_EVENTS_PER_REQUEST": ("max_events_per_request", _parse_int(1)),
    "AUDIT_SERVICE_MAX_EVENT_BYTES": ("max_event_bytes", _parse_int(1024)),
    "AUDIT_SERVICE_BODY_READ_TIMEOUT_SECONDS": ("body_read_timeout_seconds", _parse_float(0.0, exclusive=True)),
    "AUDIT_SERVICE_HEADER_READ_TIMEOUT_SECONDS": ("header_read_timeout_seconds", _parse_float(0.0, exclusive=True)),
    "AUDIT_SERVICE_REQUIRE_AUTH": ("require_auth", _parse_bool),
    "AUDIT_SERVICE_ACK_TIMEOUT_SECONDS": ("ack_timeout_seconds", _parse_float(0.0, exclusive=True)),
    "AUDIT_SERVICE_DRAIN_SECONDS": ("drain_seconds", _parse_float(0.0)),
    "AUDIT_SERVICE_RETENTION_INTERVAL_SECONDS": ("retention_interval_seconds", _parse_float(0.0, exclusive=True)),
    "AUDIT_SERVICE_FLUSH_FAILING_READY_SECONDS": ("flush_failing_ready_seconds", _parse_float(0.0)),
    "AUDIT_SERVICE_DEDUPE_WINDOW_SECONDS": ("dedupe_window_seconds", _parse_float(0.0)),
    "AUDIT_SERVICE_DEDUPE_MAX_IDS": ("dedupe_max_ids", _parse_int(0)),
    "AUDIT_SERVICE_FAULT_POINT": ("fault_point", _parse_str),
    "AUDIT_SERVICE_DIGEST_INTERVAL_SECONDS": ("digest_interval_seconds", _parse_float(0.0, exclusive=True)),
    "AUDIT_SERVICE_SIGNING_KEY_FILE": ("signing_key_file", _parse_path),
    "AUDIT_SERVICE_S3_OBJECT_LOCK_MODE": ("s3_object_lock_mode",
                                          lambda raw: _parse_choice("governance", "compliance")(raw).upper()),
    "AUDIT_SERVICE_S3_OBJECT_LOCK_DAYS": ("s3_object_lock_days", _parse_int(1)),
    "AUDIT_SERVICE_INGEST_CPUS": ("ingest_cpus", parse_cpus),
    "AUDIT_SERVICE_WRITER_CPUS": ("writer_cpus", parse_cpus),
    "AUDIT_SERVICE_ACCESS_LOG": ("access_log_sample_rate", lambda raw: _parse_sample_rate(raw)),
    "AUDIT_SERVICE_LOG_LEVEL": ("log_level", lambda raw: _parse_choice("debug", "info", "warning", "error")(raw).upper()),
}


def _parse_sample_rate(raw: str) -> float:
    """``off`` (0), ``on`` (1) or a fraction of requests between 0 and 1, such as ``0.01``."""
    value = raw.strip().lower()
    if value in ("off", "on"):
        return 1.0 if value == "on" else 0.0
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError("expected off, on or a sample rate between 0 and 1")
    return rate


def _parse_writer_id(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", value):
        raise ValueError("must be 1-63 letters, digits, '.', '_' or '-'")
    return value
