"""A writer's evidence parts without the processes: the real journal and digest publisher over a local folder."""

from __future__ import annotations

import gzip
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ingest.evidence_sources import LocalSource, verify_store
from shared import digests as d
from shared import layout
from writer.batches import FlushBatch
from writer.digest_publisher import DigestPublisher
from writer.digest_sink import LocalDigestSink
from writer.manifest import ManifestJournal
from writer.store import PublishedFile, PublishResult


class LifecycleSink(LocalDigestSink):
    """A folder that behaves like a bucket whose lifecycle rule expires objects unrecorded."""

    backend = "s3"
    expiry = d.EXPIRY_LIFECYCLE


class Harness:
    """Publish files into ``root`` and record them as the flusher does; cut digests; verify."""

    def __init__(self, base: Path, lifecycle_days: int | None = None, writer_id: str = "w1", first_seq: int = 100,
                 key_name: str = "key.pem") -> None:
        self.root = base / "store"
        self.evidence = base / "spool" / d.EVIDENCE_DIR
        self.key_path = base / key_name
        self.writer_id = writer_id
        self.root.mkdir(parents=True, exist_ok=True)
        sink_class = LifecycleSink if lifecycle_days is not None else LocalDigestSink
        self.sink = sink_class(self.root, lifecycle_days or 0)
        self.journal = ManifestJournal(self.evidence, writer_id, lambda name: name)
        self.publisher = DigestPublisher(self.evidence, self.key_path, writer_id, self.sink, self.journal, 3600)
        self.publisher.start(first_seq)
        if self.publisher.overdue:  # what the digest task does first: the genesis, or an unfinished cut
            self.publisher.cut()

    @property
    def public_pem(self) -> bytes:
        """The writer's public key."""
        return (self.evidence / d.PUBLIC_KEY_NAME).read_bytes()

    def publish(self, first_seq: int, last_seq: int, day: str = "2026-01-02", events: int = 2,
                salt: str = "") -> list[str]:
        """Write one file (and sidecar) for a range, as the local store does, and journal it; return its names."""
        ts = f"{day}T01:02:03.000000Z"
        name = f"{day[0:4]}/{day[5:7]}/{day[8:10]}/" + layout.file_name(ts, ts, first_seq, last_seq, True)
        body = gzip.compress(b"".join(b'{"n":%d,"s":"%s"}\n' % (index, salt.encode()) for index in range(events)),
                             mtime=0)
        sidecar = b"PAR1" + body + b"PAR1"
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        layout.sidecar_path(path).write_bytes(sidecar)
        item = PublishedFile(name, d.sha256_hex(body), len(body), events, ts, ts, d.sha256_hex(sidecar), len(sidecar))
        self.journal.record_published(FlushBatch(first_seq, last_seq, {}, events, 0, [], []), PublishResult([item]))
        return [name, name + d.SIDECAR_SUFFIX]

    def age(self, name: str, days: float) -> None:
        """Set a stored file's mtime ``days`` back."""
        stamp = time.time() - days * 86400
        os.utime(self.root / name, (stamp, stamp))

    def journal_entries(self) -> list[dict[str, Any]]:
        """The journal file's entries."""
        return d.parse_journal((self.evidence / d.JOURNAL_NAME).read_bytes())

    def verify(self, live: bool = False, now: datetime | None = None, keys: list[bytes] | None = None,
               **kwargs: Any) -> dict[str, Any]:
        """Verify the folder offline, or live (with the journal, as the HTTP endpoint does)."""
        journal = self.journal_entries() if live else None
        return verify_store(LocalSource(self.root), keys or [self.public_pem], journal=journal,
                            journal_writer=self.writer_id if live else None, now=now or datetime.now(timezone.utc),
                            **kwargs)
