"""Publishes a signed, chained digest of the manifest every AUDIT_SERVICE_DIGEST_INTERVAL_SECONDS (empty ones too).

A cut is written to ``<spool>/evidence/digest-pending.json`` first (digest, pointer and the next state),
then stored, then committed to ``state.json``; a crash or store error in between makes the next cut (the
first after a restart is due at once) store the same bytes first, so a digest number is never issued
twice with different content. Without local state (a new or lost spool) the chain continues from the
newest digest the store holds, or starts with an empty genesis digest. Start writes nothing to the store.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from shared import digests as d
from shared.events import parse_iso
from writer.fsutil import write_atomic
from writer.manifest import ManifestJournal
from writer.signing_key import load_or_create
from writer.stats import utc_now_iso

log = logging.getLogger("auditlake.writer.digests")
RETRY_SECONDS = 5.0
RESUME_SECONDS = 30.0
START_DELAY_SECONDS = 1.0
PUBLIC_KEY_REFRESH_SECONDS = 12 * 3600


class DigestPublisher:
    """Owns the digest state and the signing key; every method but ``run`` runs in a worker thread."""

    def __init__(self, directory: Path, key_path: Path, writer_id: str, sink: Any, journal: ManifestJournal,
                 interval_seconds: float) -> None:
        self.directory = directory
        self.key_path = key_path
        self.writer_id = writer_id
        self.sink = sink
        self.journal = journal
        self.interval_seconds = interval_seconds
        self.state: dict[str, Any] = {}
        self.published = 0
        self.failures = 0
        self._key: Any = None
        self._public_pem = b""
        self._key_published_at = float("-inf")
        self._overdue = True
        self._started = float("-inf")
        self._lock = threading.Lock()

    # -- start ----------------------------------------------------------------------------------------

    def start(self, first_seq: int) -> None:
        """Load (or create) the key, load or resume the state, load the journal; the store is written by ``cut``."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._key = load_or_create(self.key_path)
        self._public_pem = d.public_pem(self._key)
        fingerprint = d.fingerprint(self._key.public_key())
        write_atomic(self.directory / d.PUBLIC_KEY_NAME, self._public_pem)
        log.info("digest signing key", extra={"key_fingerprint": fingerprint, "key_file": str(self.key_path),
                                              "public_key": d.public_key_name(self.writer_id)})
        self.state = self._read(d.STATE_NAME) or self._resume_retrying() or self._genesis(first_seq)
        write_atomic(self.directory / d.STATE_NAME, d.canonical(self.state))
        self.journal.load(self.state["head"], self.state["head_n"])
        self._overdue = self.state["number"] == 0 or (self.directory / d.PENDING_NAME).exists()
        self._started = time.monotonic()

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            return orjson.loads((self.directory / name).read_bytes())
        except FileNotFoundError:
            return None

    def _genesis(self, first_seq: int) -> dict[str, Any]:
        now = utc_now_iso()
        log.info("starting a new digest chain", extra={"writer_id": self.writer_id, "chain_start_seq": first_seq})
        return {"writer_id": self.writer_id, "number": 0, "name": None, "sha256": None, "end": now, "head": d.GENESIS,
                "head_n": 0, "covered_seq": 0, "chain_start_seq": first_seq, "chain_started": now}

    def _resume_retrying(self) -> dict[str, Any] | None:
        """``_resume``, retried while the store answers errors (the entry chain cannot start without it)."""
        deadline = time.monotonic() + RESUME_SECONDS
        while True:
            try:
                return self._resume()
            except Exception as exc:  # any store error; give up (a start error) only after the deadline
                if time.monotonic() > deadline:
                    raise
                log.warning("reading the newest digest failed; retrying", extra={"error": repr(exc)})
                time.sleep(RETRY_SECONDS / 10)

    def _resume(self) -> dict[str, Any] | None:
        """The state after the newest digest in the store, when this writer's local state was lost."""
        data = self.sink.get(d.pointer_name(self.writer_id))
        if data is None:
            return None
        pointer = orjson.loads(data)
        body = self.sink.get(pointer["name"])
        digest = orjson.loads(body) if body is not None and d.sha256_hex(body) == pointer["sha256"] else None
        log.warning("no local digest state: continuing the chain from the store",
                    extra={"number": pointer["number"], "digest_found": digest is not None})
        source = digest or {}
        return {"writer_id": self.writer_id, "number": pointer["number"], "name": pointer["name"],
                "sha256": pointer["sha256"], "end": pointer["end"], "head": source.get("head", d.GENESIS),
                "head_n": source.get("head_n", 0), "covered_seq": source.get("covered_seq", 0),
                "chain_start_seq": source.get("chain_start_seq", 0),
                "chain_started": source.get("chain_started", pointer["end"])}

    def _publish_key(self) -> None:
        self.sink.put(d.public_key_name(self.writer_id), self._public_pem)
        self._key_published_at = time.monotonic()

    # -- cuts -----------------------------------------------------------------------------------------

    @property
    def overdue(self) -> bool:
        """True until the first cut after start succeeds when it is a genesis or finishes an interrupted one."""
        return self._overdue

    def due_in(self) -> float:
        """Seconds until the next digest is due (negative when overdue)."""
        if self._overdue:  # a genesis or unfinished cut: soon, but not in the fsyncs of the first acks
            return self._started + min(self.interval_seconds, START_DELAY_SECONDS) - time.monotonic()
        elapsed = (datetime.now(timezone.utc) - parse_iso(self.state["end"])).total_seconds()
        return self.interval_seconds - elapsed

    def cut(self) -> None:
        """Sign and store a digest of every entry not covered yet (possibly none), then commit the state."""
        with self._lock:
            unfinished = self._read(d.PENDING_NAME)
            if unfinished is not None:  # an earlier cut failed half way: finish it with the same bytes first
                self._commit(unfinished)
            state = self.state
            entries, head, head_n = self.journal.uncovered()
            end = max(utc_now_iso(), state["end"])
            number = state["number"] + 1
            covered_seq = max([state["covered_seq"]] + [entry["last_seq"] for entry in entries
                                                        if entry.get("kind") == d.PUBLISH])
            document = {
                "format": d.DIGEST_FORMAT, "writer_id": self.writer_id, "number": number,
                "start": state["end"], "end": end, "backend": self.sink.backend, "expiry": self.sink.expiry,
                "retention_days": self.sink.retention_days(),
                "previous_digest": {"name": state["name"], "sha256": state["sha256"]} if state["name"] else None,
                "chain_start_seq": state["chain_start_seq"], "chain_started": state["chain_started"],
                "covered_seq": covered_seq, "head": head, "head_n": head_n, "entries": entries,
            }
            data = d.sign(document, self._key)
            name = d.digest_name(self.writer_id, number, end)
            pointer = d.sign(d.pointer(self.writer_id, number, name, d.sha256_hex(data), end), self._key)
            following = {**state, "number": number, "name": name, "sha256": d.sha256_hex(data), "end": end,
                         "head": head, "head_n": head_n, "covered_seq": covered_seq}
            pending = {"name": name, "digest": data.decode(), "pointer": pointer.decode(), "state": following}
            write_atomic(self.directory / d.PENDING_NAME, d.canonical(pending))
            self._commit(pending)
            self._overdue = False
        log.info("digest published", extra={"digest": name, "entries": len(entries), "head_n": head_n})

    def _commit(self, pending: dict[str, Any]) -> None:
        """Store a prepared digest and its pointer, then make its state the current one."""
        if time.monotonic() - self._key_published_at > PUBLIC_KEY_REFRESH_SECONDS:
            self._publish_key()  # before the pointer: a reader never finds a pointer without its key
        self.sink.put(pending["name"], pending["digest"].encode())
        self.sink.put(d.pointer_name(self.writer_id), pending["pointer"].encode())
        write_atomic(self.directory / d.STATE_NAME, d.canonical(pending["state"]))
        (self.directory / d.PENDING_NAME).unlink(missing_ok=True)
        self.state = pending["state"]
        self.journal.covered(self.state["head_n"])
        self.published += 1

    # -- the loop -------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Cut a digest whenever one is due; failures are logged and retried."""
        loop = asyncio.get_running_loop()
        while True:
            wait = self.due_in()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            try:
                await loop.run_in_executor(None, self.cut)
            except Exception as exc:  # a store outage must not stop the chain; the next try covers everything
                self.failures += 1
                log.error("digest publish failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(min(RETRY_SECONDS, self.interval_seconds))
