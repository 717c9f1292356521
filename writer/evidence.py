"""Tamper evidence in the writer: hooks the manifest journal into flushes and retention, runs the digest task."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from shared import digests as d
from shared import s3_layout
from writer.digest_publisher import DigestPublisher
from writer.digest_sink import LocalDigestSink, S3DigestSink
from writer.local_store import LocalStore
from writer.manifest import ManifestJournal

log = logging.getLogger("auditlake.writer.evidence")
FINAL_DIGEST_SECONDS = 5.0


class TamperEvidence:
    """Owns the journal and the digest publisher of one writer service."""

    def __init__(self, service: Any) -> None:
        settings = service.settings
        self.service = service
        self.directory = settings.resolved_spool_path / d.EVIDENCE_DIR
        self.key_path = settings.signing_key_file or settings.resolved_spool_path / d.DEFAULT_KEY_NAME
        base = s3_layout.base(settings.s3_prefix) if settings.backend == "s3" else ""
        self.journal = ManifestJournal(self.directory, settings.writer_id,
                                       functools.partial(_relative, base), service.spool.faults)
        self.publisher: DigestPublisher | None = None
        service.flusher.journal = self.journal
        if isinstance(service.store, LocalStore):
            service.store.before_delete = functools.partial(self.journal.record_deleted, reason="retention")

    async def start(self) -> None:
        """Load the key, state and journal (after the spool is open and the store prepared); cut a genesis."""
        settings = self.service.settings
        store = self.service.store
        if isinstance(store, LocalStore):
            sink: Any = LocalDigestSink(store.root, store.retention_days)
        else:
            sink = S3DigestSink(store)
        self.publisher = DigestPublisher(self.directory, self.key_path, settings.writer_id, sink, self.journal,
                                         settings.digest_interval_seconds)
        spool = self.service.spool
        first_seq = spool.flushed_seq + 1 if spool.flushed_seq else (
            spool.index[0].seq if spool.index else spool.next_seq)
        await asyncio.get_running_loop().run_in_executor(None, self.publisher.start, first_seq)

    async def run(self) -> None:
        """The digest task."""
        assert self.publisher is not None
        await self.publisher.run()

    async def close(self) -> None:
        """At shutdown, after the flusher drained: one last digest, so a clean stop leaves nothing pending."""
        if self.publisher is None or not self.publisher.state:
            return
        cut = asyncio.get_running_loop().run_in_executor(None, self.publisher.cut)
        try:
            async with asyncio.timeout(FINAL_DIGEST_SECONDS):
                await cut
        except Exception as exc:  # the journal keeps the entries; the next start's first digest covers them
            log.warning("final digest not published", extra={"error": repr(exc)})

    def status(self) -> dict[str, Any]:
        """Digest figures for the writer's status."""
        publisher = self.publisher
        state = publisher.state if publisher is not None else {}
        return {"digests_published": publisher.published if publisher else 0,
                "digest_failures": publisher.failures if publisher else 0,
                "last_digest": state.get("name"), "last_digest_end": state.get("end"),
                "manifest_entries": state.get("head_n", 0)}


def _relative(base: str, name: str) -> str:
    return name[len(base):] if base and name.startswith(base) else name
