"""Bearer tokens: who a request is (scopes, tenant binding, fingerprint), compared in constant time."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

from shared.settings import Settings

INGEST = "ingest"
READ = "read"
ADMIN = "admin"
OPEN = "open"
# What each configured token list grants. Admin may do everything read may do, but not ingest:
# producers and operators hold different secrets, so an operator's token cannot forge events.
GRANTS: dict[str, frozenset[str]] = {
    INGEST: frozenset({INGEST}),
    READ: frozenset({READ}),
    ADMIN: frozenset({READ, ADMIN}),
}
FINGERPRINT_CHARS = 12


def fingerprint(token: str) -> str:
    """A stable, non-reversible name for a token in logs and audit events: sha256 hex, 12 chars."""
    return hashlib.sha256(token.encode()).hexdigest()[:FINGERPRINT_CHARS]


@dataclasses.dataclass(frozen=True)
class Principal:
    """The caller of one request: what it may do and, for a tenant-bound token, its one tenant."""

    grants: frozenset[str]
    tenant: str | None = None
    fingerprint: str = "anonymous"
    authenticated: bool = False

    def may(self, scope: str) -> bool:
        """True when the caller holds ``scope`` (``open`` is held by everyone)."""
        return scope == OPEN or scope in self.grants

    @property
    def actor(self) -> str:
        """How audit events name this caller: ``token:<fingerprint>`` or ``anonymous``."""
        return f"token:{self.fingerprint}" if self.authenticated else "anonymous"


ANONYMOUS = Principal(grants=frozenset())
OPEN_MODE = Principal(grants=frozenset({INGEST, READ, ADMIN}))


@dataclasses.dataclass(frozen=True)
class _Entry:
    digest: bytes
    grants: frozenset[str]
    tenant: str | None
    fingerprint: str


class TokenTable:
    """The configured tokens, held as SHA-256 digests; empty means open mode (no authentication)."""

    def __init__(self, settings: Settings) -> None:
        merged: dict[str, tuple[set[str], str | None]] = {}
        for scope, specs in ((INGEST, settings.ingest_tokens), (READ, settings.read_tokens),
                             (ADMIN, settings.admin_tokens)):
            for token, tenant in specs:
                grants, _ = merged.setdefault(token, (set(), tenant))
                grants.update(GRANTS[scope])
        self._entries = tuple(
            _Entry(hashlib.sha256(token.encode()).digest(), frozenset(grants), tenant, fingerprint(token))
            for token, (grants, tenant) in merged.items()
        )

    @property
    def enabled(self) -> bool:
        """True when at least one token is configured."""
        return bool(self._entries)

    def identify(self, token: str) -> Principal | None:
        """The principal of a presented token, or None when it matches no configured token.

        Every configured digest is compared (``hmac.compare_digest``), so the time taken does not
        reveal which token, or how much of one, matched.
        """
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: _Entry | None = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest):
                found = entry
        if found is None:
            return None
        return Principal(found.grants, found.tenant, found.fingerprint, authenticated=True)
