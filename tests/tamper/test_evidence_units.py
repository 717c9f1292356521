"""Journal, digest publisher and the pure check, without processes: redo, pruning, expiry, pending, resumption."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from shared import digests as d
from shared.errors import ConfigError
from tests.tamper.harness import Harness
from writer.batches import FlushBatch
from writer.digest_publisher import DigestPublisher
from writer.digest_sink import LocalDigestSink
from writer.manifest import ManifestJournal
from writer.object_lock import ObjectLock
from writer.signing_key import load_or_create
from writer.store import PublishResult


def test_a_redone_range_with_the_same_content_is_recorded_once(tmp_path: Path) -> None:
    """Publishing and recording the same range twice (a redo after a crash past the journal) adds no entry."""
    harness = Harness(tmp_path)
    harness.publish(100, 101)
    harness.publish(100, 101)
    assert len(harness.journal_entries()) == 1
    harness.publisher.cut()
    harness.publish(100, 101)
    assert len(harness.journal_entries()) == 1, "the covered newest range is kept in the journal for redo checks"
    report = harness.verify()
    assert report["ok"] and report["verified"] == 2


def test_a_rewritten_name_is_issued_again_and_verifies(tmp_path: Path) -> None:
    """A redo that writes other content under the same name re-issues the entry; the newest entry counts."""
    harness = Harness(tmp_path)
    harness.publish(100, 101)
    harness.publisher.cut()
    harness.publish(100, 101, salt="again")
    harness.publisher.cut()
    issued = [entry["sha256"] for path in sorted((harness.root / d.DIGEST_DIR / "w1").glob("digest-*.json"))
              for entry in orjson.loads(path.read_bytes())["entries"]]
    assert len(issued) == len(set(issued)) == 2
    report = harness.verify()
    assert report["ok"] and report["verified"] == 2, report["problems"]


def test_stale_copies_of_a_redone_range_are_recorded_as_deleted(tmp_path: Path) -> None:
    """record_removed writes delete entries (file and sidecar) only for names the journal vouched for."""
    harness = Harness(tmp_path)
    names = harness.publish(100, 101)
    harness.journal.record_removed([names[0], "2026/01/02/never-published.ndjson.gz"])
    assert [entry["reason"] for entry in harness.journal_entries() if entry["kind"] == d.DELETE] == ["rewrite"] * 2
    for name in names:
        (harness.root / name).unlink()
    harness.publisher.cut()
    report = harness.verify()
    assert report["ok"] and report["deleted"] == 2


def test_a_torn_journal_tail_is_trimmed_and_the_chain_goes_on(tmp_path: Path) -> None:
    """A half-written last line (a crash mid-append) is cut off at the next start; later entries chain on."""
    harness = Harness(tmp_path)
    harness.publish(100, 101)
    with open(harness.evidence / d.JOURNAL_NAME, "ab") as handle:
        handle.write(b'{"n":2,"prev":"abc')
    again = Harness(tmp_path)
    assert len(again.journal_entries()) == 1
    again.publish(102, 103)
    again.publisher.cut()
    report = again.verify()
    assert report["ok"] and report["verified"] == 4, report["problems"]


def test_local_deletions_are_told_apart_from_missing_files(tmp_path: Path) -> None:
    """A deletion recorded before the unlink (retention) is ``deleted``; an unrecorded one is ``missing``."""
    harness = Harness(tmp_path)
    kept = harness.publish(100, 101, day="2026-01-02")
    purged = harness.publish(102, 103, day="2026-01-03")
    harness.journal.record_deleted(purged, "retention")
    for name in purged:
        (harness.root / name).unlink()
    harness.publisher.cut()
    assert harness.verify()["deleted"] == 2 and harness.verify()["ok"]
    (harness.root / kept[0]).unlink()
    later = datetime.now(timezone.utc) + timedelta(days=30)
    report = harness.verify(now=later)
    assert report["missing"] == 1 and report["first_problem"]["item"] == kept[0]


def test_on_s3_a_missing_object_older_than_the_lifecycle_days_is_expired(tmp_path: Path) -> None:
    """With lifecycle expiry, a gone object is ``expired`` once older than the rule's days, ``missing`` before."""
    harness = Harness(tmp_path, lifecycle_days=2)
    names = harness.publish(100, 101)
    harness.publisher.cut()
    for name in names:
        (harness.root / name).unlink()
    report = harness.verify()
    assert report["missing"] == 2 and not report["ok"]
    report = harness.verify(now=datetime.now(timezone.utc) + timedelta(days=3))
    assert report["ok"] and report["expired"] == 2 and report["missing"] == 0


def test_expired_first_digests_are_not_a_chain_break_on_s3(tmp_path: Path) -> None:
    """The lifecycle rule also expires the oldest digests: a chain starting after them is fine once they are old."""
    harness = Harness(tmp_path, lifecycle_days=1)
    harness.publisher.cut()
    harness.publisher.cut()
    first = sorted((harness.root / d.DIGEST_DIR / "w1").glob("digest-*.json"))[0]
    first.unlink()
    assert harness.verify()["chain_breaks"] == 1
    report = harness.verify(now=datetime.now(timezone.utc) + timedelta(days=2))
    assert report["ok"] and report["expired"] == 1


def test_offline_pending_and_live_journal_checks(tmp_path: Path) -> None:
    """Files newer than the newest digest are ``pending`` offline and checked against the journal live."""
    harness = Harness(tmp_path)
    names = harness.publish(100, 101)
    offline = harness.verify()
    assert offline["ok"] and offline["pending"] == 2 and offline["verified"] == 0
    live = harness.verify(live=True)
    assert live["ok"] and live["verified"] == live["from_journal"] == 2
    (harness.root / names[0]).write_bytes(b"changed")
    live = harness.verify(live=True)
    assert live["modified"] == 1 and live["first_problem"]["item"] == names[0]
    forged = harness.root / names[0].replace("-000000000101-", "-000000000102-")
    forged.write_bytes(b"forged")
    assert harness.verify(live=True)["unexpected"] == 1


def test_a_journal_entry_that_does_not_chain_is_a_break(tmp_path: Path) -> None:
    """Live verification checks the journal's own chain from the newest digest's head."""
    harness = Harness(tmp_path)
    harness.publish(100, 101)
    path = harness.evidence / d.JOURNAL_NAME
    entry = orjson.loads(path.read_bytes())
    entry["prev"] = "f" * 64
    path.write_bytes(d.canonical(entry) + b"\n")
    report = harness.verify(live=True)
    assert report["chain_breaks"] == 1 and report["first_problem"]["item"] == "journal entry 1"


def test_files_published_before_the_chain_began_are_not_findings(tmp_path: Path) -> None:
    """An old file whose range ends before the chain's first seq is counted as ``predates_chain``."""
    harness = Harness(tmp_path, first_seq=500)
    old = harness.root / "2025/01/01" / "audit-20250101T000000Z-000000000010-000000000020-20250101T000000Z.ndjson.gz"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x")
    harness.age(old.relative_to(harness.root).as_posix(), 30)
    report = harness.verify()
    assert report["ok"] and report["predates_chain"] == 1


def test_since_and_until_limit_the_files_checked(tmp_path: Path) -> None:
    """A modified file outside the requested span is not looked at; inside it, it is reported."""
    harness = Harness(tmp_path)
    early = harness.publish(100, 101, day="2026-01-02")
    harness.publish(102, 103, day="2026-03-04")
    harness.publisher.cut()
    (harness.root / early[0]).write_bytes(b"changed")
    assert harness.verify(since="2026-03-01T00:00:00.000000Z")["ok"]
    assert harness.verify(until="2026-01-31T00:00:00.000000Z")["modified"] == 1


def test_a_lost_spool_continues_the_chain_from_the_store(tmp_path: Path) -> None:
    """Without local state (and with a new key) the next digest chains to the newest one in the store."""
    harness = Harness(tmp_path)
    harness.publish(100, 101)
    harness.publisher.cut()
    first_key = harness.public_pem
    for path in harness.evidence.iterdir():
        path.unlink()
    harness.key_path.unlink()
    again = Harness(tmp_path)
    again.publish(102, 103)
    again.publisher.cut()
    numbers = sorted(d.parse_digest_name(f"{d.DIGEST_DIR}/w1/{path.name}")[1]
                     for path in (tmp_path / "store" / d.DIGEST_DIR / "w1").glob("digest-*.json"))
    assert numbers == list(range(1, len(numbers) + 1))
    report = again.verify(keys=[first_key, again.public_pem])
    assert report["ok"] and report["verified"] == 4, report["problems"]


def test_an_interrupted_digest_is_stored_again_with_the_same_bytes(tmp_path: Path, monkeypatch) -> None:
    """A crash after the pending file and before the state commit re-stores that digest at the next start."""
    harness = Harness(tmp_path)
    harness.publish(100, 101)
    monkeypatch.setattr(harness.publisher, "_commit", lambda pending: None)
    harness.publisher.cut()
    pending = orjson.loads((harness.evidence / d.PENDING_NAME).read_bytes())
    monkeypatch.undo()
    again = Harness(tmp_path)
    assert not (again.evidence / d.PENDING_NAME).exists()
    assert (again.root / pending["name"]).read_bytes() == pending["digest"].encode()
    assert again.verify()["ok"] and again.verify()["verified"] == 2


def test_the_signing_key_is_created_owner_only_and_checked(tmp_path: Path) -> None:
    """A missing key file is generated with mode 0600 and reused; anything else than Ed25519 PEM stops the start."""
    path = tmp_path / "keys" / "signing.pem"
    key = load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert d.fingerprint(load_or_create(path).public_key()) == d.fingerprint(key.public_key())
    path.write_bytes(b"not a key")
    with pytest.raises(ConfigError) as caught:
        load_or_create(path)
    assert caught.value.variable == "AUDIT_SERVICE_SIGNING_KEY_FILE"


def test_object_lock_retention_runs_from_the_upload() -> None:
    """Each upload asks for retention until now plus the configured days, in the configured mode."""
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    args = ObjectLock("COMPLIANCE", 7).put_args(now)
    assert args == {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": now + timedelta(days=7)}


def test_an_empty_publish_records_nothing(tmp_path: Path) -> None:
    """A flush whose events were all duplicates publishes no file and writes no entry."""
    harness = Harness(tmp_path)
    harness.journal.record_published(FlushBatch(1, 2, {}, 0, 2, [], []), PublishResult([]))
    assert not (harness.evidence / d.JOURNAL_NAME).exists()


def test_a_digest_whose_store_failed_half_way_is_finished_before_the_next(tmp_path: Path, monkeypatch) -> None:
    """The digest was stored but its pointer was not: the next cut stores the same digest again, then the next
    number, so the store never holds two digests of one number."""
    harness = Harness(tmp_path)
    harness.publish(100, 101)
    real_put = harness.sink.put

    def put(name: str, data: bytes) -> None:
        if name.endswith(d.POINTER_NAME):
            raise OSError("store went away")
        real_put(name, data)

    monkeypatch.setattr(harness.sink, "put", put)
    with pytest.raises(OSError):
        harness.publisher.cut()
    monkeypatch.setattr(harness.sink, "put", real_put)
    harness.publisher.cut()
    names = sorted(path.name for path in (harness.root / d.DIGEST_DIR / "w1").glob("digest-*.json"))
    assert [name.split("-")[1] for name in names] == ["000000000001", "000000000002", "000000000003"]
    report = harness.verify()
    assert report["ok"] and report["verified"] == 2, report["problems"]


def test_start_writes_nothing_to_the_store_and_the_first_cut_is_due_at_once(tmp_path: Path) -> None:
    """A store that refuses writes does not stop the writer's start; the genesis digest is due immediately."""
    class Refusing(LocalDigestSink):
        def put(self, name: str, data: bytes) -> None:
            raise OSError("read-only store")

    evidence = tmp_path / "evidence"
    journal = ManifestJournal(evidence, "w1", lambda name: name)
    publisher = DigestPublisher(evidence, tmp_path / "key.pem", "w1", Refusing(tmp_path / "store", 0), journal, 3600)
    publisher.start(1)
    assert publisher.overdue and publisher.due_in() <= 1.0 and publisher.state["number"] == 0
    with pytest.raises(OSError):
        publisher.cut()
    assert (evidence / d.PENDING_NAME).exists() and publisher.overdue


def test_the_public_key_is_stored_before_any_pointer(tmp_path: Path) -> None:
    """A live verify between two puts never finds a pointer without its key: first cut and a redone cut."""
    order: list[str] = []

    class Recording(LocalDigestSink):
        def put(self, name: str, data: bytes) -> None:
            if name.endswith(d.POINTER_NAME) and not (self.root / d.public_key_name("w1")).exists():
                raise AssertionError(f"pointer {name} stored before the public key")
            order.append(name.rsplit("/", 1)[-1])
            super().put(name, data)

    evidence = tmp_path / "evidence"
    publisher = DigestPublisher(evidence, tmp_path / "key.pem", "w1", Recording(tmp_path / "store", 0),
                                ManifestJournal(evidence, "w1", lambda name: name), 3600)
    publisher.start(1)
    publisher.cut()
    assert order[0] == d.PUBLIC_KEY_NAME and order[-1] == d.POINTER_NAME, order
    (tmp_path / "store" / d.public_key_name("w1")).unlink()  # a restart must store it again before a redo
    pending = {"name": "x", "digest": "{}", "pointer": "{}", "state": publisher.state}
    (evidence / d.PENDING_NAME).write_bytes(d.canonical(pending))
    restarted = DigestPublisher(evidence, tmp_path / "key.pem", "w1", Recording(tmp_path / "store", 0),
                                ManifestJournal(evidence, "w1", lambda name: name), 3600)
    restarted.start(1)
    order.clear()
    restarted.cut()
    assert order[0] == d.PUBLIC_KEY_NAME and order.count(d.POINTER_NAME) == 2, order
