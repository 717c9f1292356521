"""Untouched data verifies clean across restarts, crash-and-redo flushes and retention, live and offline."""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson

from ingest.evidence_sources import LocalSource, verify_store
from shared import digests as d
from shared import layout
from tests.service import REPO
from tests.tamper.conftest import WRITER_ID, Prepared


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producer.cli", "verify", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def _entries(store: Path) -> list[dict]:
    return [entry for path in sorted((store / d.DIGEST_DIR / WRITER_ID).glob("digest-*.json"))
            for entry in orjson.loads(path.read_bytes())["entries"]]


def test_live_verification_stayed_clean_through_the_run(prepared: Prepared) -> None:
    """GET /v1/audit/verify found nothing before and after two crash-and-redo flushes and after retention."""
    assert prepared.kills == [-9, -9], prepared.logs
    for report in prepared.live_reports:
        assert report["ok"], report["problems"][:5]
        assert report["verified"] > 0
    assert prepared.live_reports[-1]["deleted"] >= 2
    assert any(report["from_journal"] > 0 for report in prepared.live_reports)


def test_offline_verification_of_the_stopped_store_is_clean(prepared: Prepared) -> None:
    """After a clean stop the final digest covers everything: every file and sidecar verified, none pending."""
    report = verify_store(LocalSource(prepared.store), [prepared.public_key.read_bytes()])
    assert report["ok"], report["problems"][:5]
    files = [path for directory in layout.all_day_dirs(prepared.store) for path in directory.iterdir()]
    assert report["verified"] == len(files) and report["pending"] == 0
    assert report["deleted"] == len(prepared.purged) == 2
    assert report["writers"][WRITER_ID]["digests"] == report["digests"] >= 5


def test_redone_flushes_issue_each_entry_once(prepared: Prepared) -> None:
    """The redo after mid_publish and after_journal kills published the same names; no entry appears twice."""
    entries = _entries(prepared.store)
    published = collections.Counter(entry["key"] for entry in entries if entry["kind"] == d.PUBLISH)
    assert published and max(published.values()) == 1, published.most_common(3)
    assert [entry["n"] for entry in entries] == list(range(1, len(entries) + 1))
    deleted = sorted(entry["key"] for entry in entries if entry["kind"] == d.DELETE)
    assert deleted == sorted(prepared.purged)
    days = {key.rsplit("/", 1)[0] for key in published}
    assert {"2026/01/05", "2026/01/06", "2026/01/07"} <= days


def test_cli_reports_ok_and_exits_zero(prepared: Prepared) -> None:
    """``auditlake verify --local`` with the trusted key: exit 0, OK, figures printed; --json is the report."""
    result = _cli("--local", str(prepared.store), "--public-key", str(prepared.public_key))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": OK" in result.stdout and "modified 0" in result.stdout
    result = _cli("--local", str(prepared.store), "--public-key", str(prepared.public_key), "--json",
                  "--since", "2026-01-06T00:00:00Z", "--until", "2026-01-06T23:59:59Z")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"] and 0 < report["verified"] < 10


def test_cli_exits_non_zero_and_names_the_first_bad_item(prepared: Prepared, tmp_path: Path) -> None:
    """A deleted file makes the CLI exit 1 and name it; an unreadable key is exit 2."""
    copy = tmp_path / "store"
    shutil.copytree(prepared.store, copy)
    victim = sorted(copy.rglob("audit-*.ndjson.gz"))[0]
    victim.unlink()
    result = _cli("--local", str(copy), "--public-key", str(prepared.public_key))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PROBLEMS FOUND" in result.stdout
    assert f"first problem: missing: {victim.relative_to(copy).as_posix()}" in result.stdout
    result = _cli("--local", str(copy), "--public-key", str(tmp_path / "nope.pem"))
    assert result.returncode == 2


def test_a_key_that_is_not_the_writers_fails_every_signature(prepared: Prepared, tmp_path: Path) -> None:
    """Verifying with another key (say, the store's own public key after an attacker replaced it) fails."""
    other = tmp_path / "other.pem"
    other.write_bytes(d.public_pem(d.load_private(d.generate_private_pem())))
    report = verify_store(LocalSource(prepared.store), [other.read_bytes()])
    assert not report["ok"] and report["signature_failures"] == report["digests"] + 1
