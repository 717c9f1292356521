"""Pure verification of a store against its signed digest chains (and, live, the manifest journal).

The caller lists the store and reads the digests (``Evidence``) and supplies ``hash_of`` for object
bodies; this module does no I/O of its own. Findings: ``modified``, ``missing``, ``unexpected``,
``chain_breaks``, ``signature_failures``. Not findings: ``pending`` (newer than the newest digest,
offline), ``expired`` (gone after the S3 lifecycle rule's days), ``deleted`` (recorded deletions),
``legacy`` (objects of the old service) and ``predates_chain`` (published before the chain began).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from shared import digests as d
from shared.events import format_ts, parse_iso

FINDINGS = ("modified", "missing", "unexpected", "chain_breaks", "signature_failures")
NOT_FINDINGS = ("pending", "expired", "deleted", "legacy", "predates_chain")
MAX_PROBLEMS = 1000
PENDING_SLACK = timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class Listed:
    """One stored data object as listed: name relative to the root or prefix, and what its name tells."""

    name: str
    size: int
    mtime: float
    start: str | None = None
    end: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    writer_id: str | None = None
    legacy: bool = False


@dataclasses.dataclass
class Evidence:
    """Everything read from a store (and a live writer) that verification looks at."""

    digests: dict[str, bytes]
    pointers: dict[str, bytes | None]
    public_keys: dict[str, bytes | None]
    stray: list[str]
    objects: dict[str, Listed]
    journal: list[dict[str, Any]] | None = None
    journal_writer: str | None = None
    partial: bool = False


@dataclasses.dataclass
class _Chain:
    writer_id: str
    newest: dict[str, Any] | None = None
    entries: list[tuple[dict[str, Any], str]] = dataclasses.field(default_factory=list)
    digests: int = 0
    trust: str = "given"


@dataclasses.dataclass
class _Expect:
    sha256: str
    size: int
    entry: dict[str, Any]
    source: str
    writer_id: str


class _Report:
    def __init__(self) -> None:
        self.counts = {name: 0 for name in ("verified", *FINDINGS, *NOT_FINDINGS, "from_journal", "digests")}
        self.problems: list[dict[str, str]] = []

    def add(self, finding: str, item: str, detail: str) -> None:
        self.counts[finding] += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append({"finding": finding, "item": item, "detail": detail})


def check(evidence: Evidence, trusted: dict[str, Any], hash_of: Callable[[str], str | None], now: datetime,
          since: str | None = None, until: str | None = None,
          trust_published: Callable[[str], bool] = lambda writer: False) -> dict[str, Any]:
    """Verify digests, chains and every object in range; return the report (``ok`` False on any finding).

    ``trusted`` maps key fingerprints to Ed25519 public keys. Writers for which ``trust_published`` is true
    may also be verified with the public key published beside their digests (other replicas, live).
    """
    report = _Report()
    writers = sorted({parsed[0] for parsed in map(d.parse_digest_name, evidence.digests) if parsed}
                     | set(evidence.pointers) | set(evidence.public_keys))
    chains = {writer: _check_chain(writer, evidence, trusted, trust_published, now, report) for writer in writers}
    if evidence.journal is not None and evidence.journal_writer is not None:
        chain = chains.setdefault(evidence.journal_writer, _Chain(evidence.journal_writer))
        _check_journal(chain, evidence.journal, report)
    if not writers and evidence.journal is None and any(not listed.legacy for listed in evidence.objects.values()):
        report.add("chain_breaks", d.DIGEST_DIR + "/", "no digest chain found, but the store holds objects")
    for name in evidence.stray:
        report.add("unexpected", name, "file in the digest folder that is no digest, pointer or key")
    expected, deleted = _expectations(chains)
    _check_objects(evidence, chains, expected, deleted, hash_of, now, since, until, report)
    return _summary(report, chains, since, until, now)


def _keys_for(writer: str, evidence: Evidence, trusted: dict[str, Any], trust_published: Callable[[str], bool],
              report: _Report, chain: _Chain) -> dict[str, Any]:
    keys = dict(trusted)
    name = d.public_key_name(writer)
    published = evidence.public_keys.get(writer)
    try:
        key = d.load_public(published) if published is not None else None
    except ValueError:
        key = None
    if trust_published(writer) and key is not None:
        keys[d.fingerprint(key)] = key
        chain.trust = "published"
    elif published is None:
        report.add("missing", name, "the writer's published public key is gone")
    elif key is None or d.fingerprint(key) not in trusted:
        report.add("modified", name, "the published public key is not a trusted key")
    return keys


def _check_chain(writer: str, evidence: Evidence, trusted: dict[str, Any], trust_published: Callable[[str], bool],
                 now: datetime, report: _Report) -> _Chain:
    chain = _Chain(writer)
    keys = _keys_for(writer, evidence, trusted, trust_published, report, chain)
    numbered = sorted((parsed[1], name) for name in evidence.digests
                      if (parsed := d.parse_digest_name(name)) and parsed[0] == writer)
    previous: tuple[int, str, bytes, dict[str, Any] | None] | None = None
    for number, name in numbered:
        data = evidence.digests[name]
        report.counts["digests"] += 1
        chain.digests += 1
        document = _open(data, keys, name, report)
        if document is not None and (document.get("format") != d.DIGEST_FORMAT or document.get("writer_id") != writer
                                     or document.get("number") != number):
            report.add("chain_breaks", name, "digest content does not match its name")
            document = None
        _check_link(writer, number, name, data, document, previous, evidence.partial, now, report)
        if document is not None:
            linked = previous is not None and previous[3] is not None and previous[0] == number - 1
            _entries_linked(document, previous[3] if linked else None, report, name)
            chain.entries.extend((entry, "digest") for entry in document.get("entries", []))
            chain.newest = document
        previous = (number, name, data, document)
    _check_pointer(writer, evidence.pointers.get(writer), keys, numbered, evidence.digests, report)
    return chain


def _open(data: bytes, keys: dict[str, Any], name: str, report: _Report) -> dict[str, Any] | None:
    try:
        return d.open_signed(data, keys)
    except d.SignatureError as exc:
        report.add("signature_failures", name, str(exc))
        return None


def _check_link(writer: str, number: int, name: str, data: bytes, document: dict[str, Any] | None,
                previous: tuple[int, str, bytes, dict[str, Any] | None] | None, partial: bool, now: datetime,
                report: _Report) -> None:
    link = document.get("previous_digest") if document is not None else None
    if previous is None:
        if number == 1 or partial:
            return
        if document is not None and _expired_before(document, now):
            report.counts["expired"] += 1
            return
        report.add("chain_breaks", name, f"digests of {writer} before number {number} are missing")
        return
    if number != previous[0] + 1:
        report.add("chain_breaks", name, f"digest {previous[0] + 1} of {writer} is missing")
        return
    if document is not None and (not isinstance(link, dict) or link.get("name") != previous[1]
                                 or link.get("sha256") != d.sha256_hex(previous[2])):
        report.add("chain_breaks", name, f"does not chain to {previous[1]} (previous digest altered or replaced)")


def _expired_before(document: dict[str, Any], now: datetime) -> bool:
    days = int(document.get("retention_days") or 0)
    if document.get("expiry") != d.EXPIRY_LIFECYCLE or days <= 0:
        return False
    return parse_iso(str(document.get("start"))) < now - timedelta(days=days)


def _entries_linked(document: dict[str, Any], previous: dict[str, Any] | None, report: _Report, name: str) -> None:
    """Entries of a signed digest chain to each other, to the previous digest's head, and to its own head."""
    entries = document.get("entries") or []
    if previous is not None:
        head, head_n = previous.get("head"), previous.get("head_n")
    elif document.get("number") == 1:
        head, head_n = d.GENESIS, 0
    elif entries:
        head, head_n = entries[0].get("prev"), int(entries[0].get("n", 1)) - 1
    else:
        head, head_n = document.get("head"), document.get("head_n")
    for entry in entries:
        if entry.get("prev") != head or entry.get("n") != head_n + 1:
            report.add("chain_breaks", name, f"manifest entry {entry.get('n')} does not chain to the one before")
            return
        head, head_n = d.entry_hash(entry), entry.get("n")
    if document.get("head") != head or document.get("head_n") != head_n:
        report.add("chain_breaks", name, "digest head does not match its entries")


def _check_pointer(writer: str, data: bytes | None, keys: dict[str, Any], numbered: list[tuple[int, str]],
                   digests: dict[str, bytes], report: _Report) -> None:
    name = d.pointer_name(writer)
    if data is None:
        report.add("chain_breaks", name, "the pointer to the newest digest is gone")
        return
    document = _open(data, keys, name, report)
    if document is None:
        return
    target = document.get("name")
    if not numbered:
        report.add("chain_breaks", str(target), f"no digest of {writer} found")
    elif document.get("number", 0) > numbered[-1][0]:
        report.add("chain_breaks", str(target), f"newest digest {document.get('number')} of {writer} is missing")
    elif target in digests and d.sha256_hex(digests[target]) != document.get("sha256"):
        report.add("chain_breaks", str(target), "newest digest differs from the one the pointer names")
    elif numbered and target not in digests and document.get("number", 0) >= numbered[0][0]:
        report.add("chain_breaks", str(target), "the digest the pointer names is missing")


def _check_journal(chain: _Chain, journal: list[dict[str, Any]], report: _Report) -> None:
    """Entries the newest digest does not cover yet must continue its chain (live verification)."""
    newest = chain.newest
    head, head_n = (newest["head"], newest["head_n"]) if newest is not None else (None, None)
    covered = {entry["n"]: d.entry_hash(entry) for entry, _ in chain.entries}
    for entry in journal:
        n = entry.get("n")
        if head_n is not None and isinstance(n, int) and n <= head_n:
            if n in covered and covered[n] != d.entry_hash(entry):
                report.add("chain_breaks", f"journal entry {n}", "differs from the entry in the digest")
            continue
        if head is not None and (entry.get("prev") != head or n != head_n + 1):
            report.add("chain_breaks", f"journal entry {n}", "does not chain to the newest digest")
            return
        chain.entries.append((entry, "journal"))
        head, head_n = d.entry_hash(entry), n


def _expectations(chains: dict[str, _Chain]) -> tuple[dict[str, _Expect], dict[str, _Expect | None]]:
    expected: dict[str, _Expect] = {}
    deleted: dict[str, _Expect | None] = {}
    for writer, chain in chains.items():
        for entry, source in chain.entries:
            if entry.get("kind") == d.PUBLISH:
                for name, sha, size in d.expected_objects(entry):
                    expected[name] = _Expect(sha, size, entry, source, writer)
                    deleted.pop(name, None)
            elif entry.get("kind") == d.DELETE:
                deleted[entry["key"]] = expected.pop(entry["key"], None)
    return expected, deleted


def _overlaps(start: str | None, end: str | None, since: str | None, until: str | None) -> bool:
    if start is None or end is None:
        return True
    return (since is None or end >= since) and (until is None or start <= until)


def _check_objects(evidence: Evidence, chains: dict[str, _Chain], expected: dict[str, _Expect],
                   deleted: dict[str, _Expect | None], hash_of: Callable[[str], str | None], now: datetime,
                   since: str | None, until: str | None, report: _Report) -> None:
    objects = evidence.objects
    for name in sorted(expected):
        want = expected[name]
        if not _overlaps(want.entry.get("first_ts"), want.entry.get("last_ts"), since, until):
            continue
        listed = objects.get(name)
        if listed is None:
            _gone(name, want, chains[want.writer_id], now, report)
        elif listed.size != want.size:
            report.add("modified", name, f"{listed.size} bytes, the manifest says {want.size}")
        elif hash_of(name) != want.sha256:
            report.add("modified", name, "SHA-256 differs from the manifest")
        else:
            report.counts["verified"] += 1
            report.counts["from_journal"] += want.source == "journal"
    for name in sorted(deleted):
        last = deleted[name]
        listed = objects.get(name)
        if listed is None:
            report.counts["deleted"] += 1
        elif last is not None and (listed.size != last.size or hash_of(name) != last.sha256):
            report.add("modified", name, "recorded as deleted, but present with other content")
    for name in sorted(set(objects) - set(expected) - set(deleted)):
        listed = objects[name]
        if _overlaps(listed.start, listed.end, since, until):
            live = evidence.journal is not None and listed.writer_id in (None, evidence.journal_writer)
            _unvouched(listed, chains, live, now, report)


def _gone(name: str, want: _Expect, chain: _Chain, now: datetime, report: _Report) -> None:
    newest = chain.newest or {}
    days = int(newest.get("retention_days") or 0)
    if newest.get("expiry") == d.EXPIRY_LIFECYCLE and days > 0 and \
            parse_iso(str(want.entry.get("at"))) < now - timedelta(days=days):
        report.counts["expired"] += 1
    else:
        report.add("missing", name, f"listed in the manifest (entry {want.entry.get('n')} of "
                                    f"{want.writer_id}) but not in the store")


def _unvouched(listed: Listed, chains: dict[str, _Chain], live: bool, now: datetime, report: _Report) -> None:
    if listed.legacy:
        report.counts["legacy"] += 1
        return
    relevant = [chain for chain in chains.values() if chain.newest is not None
                and (listed.writer_id is None or chain.writer_id == listed.writer_id)]
    mtime = format_ts(datetime.fromtimestamp(listed.mtime, tz=timezone.utc))
    if listed.last_seq is not None and relevant and all(
            listed.last_seq < int(chain.newest.get("chain_start_seq", 0))
            and mtime < str(chain.newest.get("chain_started"))
            for chain in relevant):
        report.counts["predates_chain"] += 1
        return
    if not live and listed.first_seq is not None and relevant and listed.first_seq <= now.timestamp() * 1_000_000:
        newest_end = max(parse_iso(str(chain.newest["end"])) for chain in relevant)
        covered = max(int(chain.newest.get("covered_seq", 0)) for chain in relevant)
        if listed.first_seq > covered and parse_iso(mtime) >= newest_end - PENDING_SLACK:
            report.counts["pending"] += 1
            return
    detail = "in no manifest entry" + ("" if live else " of a published digest")
    report.add("unexpected", listed.name, detail)


def _summary(report: _Report, chains: dict[str, _Chain], since: str | None, until: str | None,
             now: datetime) -> dict[str, Any]:
    ok = all(report.counts[name] == 0 for name in FINDINGS)
    return {
        "ok": ok,
        **report.counts,
        "writers": {writer: {"digests": chain.digests, "trust": chain.trust,
                             "newest_digest": (chain.newest or {}).get("number"),
                             "newest_end": (chain.newest or {}).get("end"),
                             "key_fingerprint": (chain.newest or {}).get("key_fingerprint")}
                    for writer, chain in sorted(chains.items())},
        "first_problem": report.problems[0] if report.problems else None,
        "problems": report.problems,
        "since": since,
        "until": until,
        "checked_at": format_ts(now),
    }
