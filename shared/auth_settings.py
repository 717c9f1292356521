"""The token variables of the settings: ``AUDIT_SERVICE_{INGEST,READ,ADMIN}_TOKENS`` (and ``_FILE``) parsed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from shared.errors import ConfigError

MIN_TOKEN_LENGTH = 16
TOKEN_SCOPES = ("ingest", "read", "admin")
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+")
_TENANT = re.compile(r"[^\x00-\x20\x7f,]+")

TokenSpec = tuple[str, "str | None"]


def variable(scope: str) -> str:
    """The environment variable holding the comma-separated tokens of a scope."""
    return f"AUDIT_SERVICE_{scope.upper()}_TOKENS"


def parse_spec(raw: str, name: str) -> TokenSpec:
    """``token`` or ``token:tenant`` as (token, tenant or None); raise ConfigError naming ``name``."""
    token, sep, tenant = raw.strip().partition(":")
    if not _TOKEN.fullmatch(token):
        raise ConfigError(name, "a token may hold only letters, digits and ._~+/=- (the value is not shown)")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(name, f"a token is shorter than {MIN_TOKEN_LENGTH} characters (the value is not shown)")
    if sep and not _TENANT.fullmatch(tenant):
        raise ConfigError(name, "a token's tenant binding (after ':') must be non-empty, without spaces or commas")
    return token, (tenant if sep else None)


def _from_file(name: str, raw_path: str) -> list[str]:
    try:
        text = Path(raw_path.strip()).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, f"cannot read the token file: {exc.__class__.__name__}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def tokens_from_env(env: Mapping[str, str]) -> dict[str, tuple[TokenSpec, ...]]:
    """``{"ingest_tokens": (...), "read_tokens": (...), "admin_tokens": (...)}`` from the environment."""
    values: dict[str, tuple[TokenSpec, ...]] = {}
    bindings: dict[str, str | None] = {}
    for scope in TOKEN_SCOPES:
        specs: list[TokenSpec] = []
        name = variable(scope)
        sources = [(name, [item for item in env.get(name, "").split(",") if item.strip()])]
        if env.get(f"{name}_FILE", "").strip():
            sources.append((f"{name}_FILE", _from_file(f"{name}_FILE", env[f"{name}_FILE"])))
        for source, items in sources:
            for item in items:
                token, tenant = parse_spec(item, source)
                if bindings.setdefault(token, tenant) != tenant:
                    raise ConfigError(source, "one token is bound to different tenants (the value is not shown)")
                specs.append((token, tenant))
        values[f"{scope}_tokens"] = tuple(dict.fromkeys(specs))
    return values
