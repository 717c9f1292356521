"""The manifest journal: fsync'd, hash-chained entries of every object this writer publishes or deletes.

Lives in ``<spool>/evidence/journal.ndjson``, one canonical entry per line (``shared/digests.py``). The
flusher records a range's files after publishing them and before its checkpoint, so a crash leaves
either no entries (the flush marker redoes the range, which records them) or all of them (the redo
publishes the same names and content, and entries equal to ones already recorded are not written
again). Deletions are recorded before the files go. The digest publisher takes the entries it has not
covered yet and, once a digest is stored, prunes the covered ones (keeping the newest range's for redo).
All methods run in worker threads; a lock serialises them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared import digests as d
from writer.batches import FlushBatch
from writer.faults import FaultPoints
from writer.fsutil import fsync_dir, write_atomic
from writer.stats import utc_now_iso
from writer.store import PublishResult

log = logging.getLogger("auditlake.writer.manifest")


class ManifestJournal:
    """Appends entries durably and hands the uncovered ones to the digest publisher."""

    def __init__(self, directory: Path, writer_id: str, relative: Callable[[str], str],
                 faults: FaultPoints | None = None) -> None:
        self.directory = directory
        self.path = directory / d.JOURNAL_NAME
        self.writer_id = writer_id
        self.relative = relative
        self.faults = faults or FaultPoints(None)
        self.entries: list[dict[str, Any]] = []
        self.head = d.GENESIS
        self.head_n = 0
        self.covered_n = 0
        self.recent_range: tuple[int, int] | None = None
        self.recent: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def load(self, covered_head: str, covered_n: int) -> None:
        """Read the journal (trimming a torn last line); continue after ``covered_n`` (the newest digest)."""
        with self._lock:
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                data = b""
            complete = data.rfind(b"\n") + 1
            if complete < len(data):
                log.warning("trimming torn manifest journal tail", extra={"bytes": len(data) - complete})
                with open(self.path, "r+b") as handle:
                    handle.truncate(complete)
                    os.fsync(handle.fileno())
            entries = d.parse_journal(data[:complete])
            if len(entries) != data[:complete].count(b"\n"):
                log.error("manifest journal damaged; entries after the damage are ignored",
                          extra={"kept": len(entries)})
            self.entries = entries
            self.covered_n = covered_n
            self.head, self.head_n = covered_head, covered_n
            if entries and entries[-1]["n"] > covered_n:
                self.head, self.head_n = d.entry_hash(entries[-1]), entries[-1]["n"]
            publishes = [entry for entry in entries if entry.get("kind") == d.PUBLISH]
            if publishes:
                self.recent_range = (publishes[-1]["first_seq"], publishes[-1]["last_seq"])
                self.recent = {entry["key"]: entry for entry in publishes
                               if (entry["first_seq"], entry["last_seq"]) == self.recent_range}

    def record_published(self, batch: FlushBatch, result: PublishResult) -> None:
        """Append one entry per published file, unless an equal entry for the range is recorded already."""
        with self._lock:
            if self.recent_range != (batch.first_seq, batch.last_seq):
                self.recent_range, self.recent = (batch.first_seq, batch.last_seq), {}
            fresh = []
            for item in result.files:
                key = self.relative(item.name)
                sidecar = (item.sidecar_sha256, item.sidecar_size) if item.sidecar_sha256 else None
                known = self.recent.get(key)
                if known is not None and (known["sha256"], known["size"], known.get("sidecar_sha256")) == (
                        item.sha256, item.size, item.sidecar_sha256):
                    continue
                entry = d.publish_entry(self.head_n + 1, self.head, self.writer_id, utc_now_iso(), key, item.sha256,
                                        item.size, item.events, item.first_ts, item.last_ts, batch.first_seq,
                                        batch.last_seq, sidecar)
                self._advance(entry)
                fresh.append(entry)
                self.recent[key] = entry
            self._append(fresh)
        if fresh:
            self.faults.reach("after_journal")

    def record_deleted(self, names: list[str], reason: str) -> None:
        """Append one entry per object about to be deleted (call before deleting)."""
        with self._lock:
            fresh = []
            for name in names:
                key = self.relative(name)
                if key.rsplit("/", 1)[-1].startswith(".tmp-"):
                    continue
                entry = d.delete_entry(self.head_n + 1, self.head, self.writer_id, utc_now_iso(), key, reason)
                self._advance(entry)
                fresh.append(entry)
                self.recent.pop(key, None)
            self._append(fresh)

    def record_removed(self, names: list[str]) -> None:
        """Stale copies of a redone range are about to be removed: record those that have entries."""
        doomed = []
        with self._lock:
            for name in names:
                known = self.recent.get(self.relative(name))
                if known is not None:
                    doomed.append(name)
                    if known.get("sidecar_sha256"):
                        doomed.append(name + d.SIDECAR_SUFFIX)
        if doomed:
            self.record_deleted(doomed, "rewrite")

    def _advance(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        self.head, self.head_n = d.entry_hash(entry), entry["n"]

    def _append(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        data = b"".join(d.canonical(entry) + b"\n" for entry in entries)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.directory)

    def uncovered(self) -> tuple[list[dict[str, Any]], str, int]:
        """A copy of the entries no digest covers yet, and the head after them."""
        with self._lock:
            return [entry for entry in self.entries if entry["n"] > self.covered_n], self.head, self.head_n

    def covered(self, head_n: int) -> None:
        """A digest now covers entries up to ``head_n``: rewrite the journal without them (keeping the newest range)."""
        with self._lock:
            self.covered_n = head_n
            kept = [entry for entry in self.entries if entry["n"] > head_n or (
                entry.get("kind") == d.PUBLISH and (entry["first_seq"], entry["last_seq"]) == self.recent_range)]
            if len(kept) != len(self.entries):
                write_atomic(self.path, b"".join(d.canonical(entry) + b"\n" for entry in kept))
                self.entries = kept
