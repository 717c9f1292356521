"""``GET /v1/audit/verify``: the store checked against the signed digests and the writer's manifest journal.

Admin scope (``ingest/auth.py`` ROUTE_RULES). Runs in a worker thread, one verification at a time. The
trusted key is the one this replica's writer keeps in its spool; other writers' chains in a shared bucket
are checked with the keys they publish (reported as ``"trust": "published"``). Entries no digest covers
yet are checked against the journal, so nothing is ``pending`` here. When the first pass finds something,
the journal and listing are read once more before answering, so that a flush or purge racing the scan
is not reported.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError

from ingest import keys
from ingest.auth import principal
from ingest.errors import error, json_response, unavailable
from ingest.evidence_sources import LocalSource, S3Source, Source, verify_store
from shared import digests as d
from shared.events import format_ts, parse_iso
from shared.s3_client import make_s3_client
from shared.settings import Settings

log = logging.getLogger("auditlake.ingest.verify")
PATH = "/v1/audit/verify"


class KeyUnavailable(Exception):
    """The writer has not written its public key yet."""


class Verifier:
    """Builds the store source once and runs verifications one at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = asyncio.Lock()
        self._source: Source | None = None

    def source(self) -> Source:
        """The configured backend's source (the S3 client is made on first use)."""
        if self._source is None:
            settings = self.settings
            if settings.backend == "s3":
                self._source = S3Source(make_s3_client(settings), settings.s3_bucket or "", settings.s3_prefix)
            else:
                self._source = LocalSource(settings.local_path)
        return self._source

    def _journal(self) -> list[dict[str, Any]]:
        try:
            return d.parse_journal((self.settings.resolved_spool_path / d.EVIDENCE_DIR / d.JOURNAL_NAME).read_bytes())
        except FileNotFoundError:
            return []

    def run(self, since: str | None, until: str | None) -> dict[str, Any]:
        """Verify (worker thread); a second pass settles findings that a concurrent flush may have caused."""
        try:
            public = (self.settings.resolved_spool_path / d.EVIDENCE_DIR / d.PUBLIC_KEY_NAME).read_bytes()
        except FileNotFoundError:
            raise KeyUnavailable("the writer has not published its signing key yet") from None
        own = self.settings.writer_id
        hashes: dict[str, str | None] = {}
        report: dict[str, Any] = {}
        for _ in range(2):
            report = verify_store(self.source(), [public], since, until, self._journal(), own,
                                  trust_published=lambda writer: writer != own, hashes=hashes)
            if report["ok"]:
                break
            hashes = {name: value for name, value in hashes.items()
                      if name not in {problem["item"] for problem in report["problems"]}}
        return report


VERIFIER = web.AppKey("verifier", Verifier)


def install(app: web.Application) -> None:
    """Register the route and the verifier (call from the app factory)."""
    app[VERIFIER] = Verifier(app[keys.SETTINGS])
    app.router.add_get(PATH, verify)


def _bound(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return format_ts(parse_iso(raw))
    except (ValueError, OverflowError):
        raise ValueError(f"'{name}' is not an ISO-8601 timestamp: {raw!r}") from None


async def verify(request: web.Request) -> web.Response:
    """Report files verified, modified, missing, unexpected, chain breaks and signature failures."""
    try:
        since, until = _bound(request, "since"), _bound(request, "until")
    except ValueError as exc:
        return error(400, str(exc))
    if since and until and since > until:
        return error(400, "'since' is after 'until'")
    verifier = request.app[VERIFIER]
    async with verifier.lock:
        try:
            report = await asyncio.get_running_loop().run_in_executor(None, verifier.run, since, until)
        except KeyUnavailable as exc:
            return unavailable(str(exc))
        except (ClientError, BotoCoreError) as exc:
            return unavailable(f"object store unavailable: {type(exc).__name__}")
    counts = {name: report[name] for name in ("verified", "modified", "missing", "unexpected", "chain_breaks",
                                              "signature_failures")}
    request.app[keys.TRAIL].record("audit_read", principal(request).actor, PATH,
                                   {"since": since, "until": until, "ok": report["ok"], **counts})
    if not report["ok"]:
        log.warning("verification found problems", extra={**counts, "first_problem": report["first_problem"]})
    return json_response(report)
