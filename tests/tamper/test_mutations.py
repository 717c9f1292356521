"""At least 100 random mutations of a prepared store: every one is detected with the right finding, named."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from ingest.evidence_sources import LocalSource, verify_store
from tests.tamper.conftest import Prepared
from tests.tamper.mutations import MUTATIONS

CASES = 124


@pytest.fixture(scope="module")
def trusted(prepared: Prepared) -> bytes:
    """The writer's public key, as copied when the run ended (not the one published in the store)."""
    return prepared.public_key.read_bytes()


def test_the_untouched_copy_has_no_findings(prepared: Prepared, trusted: bytes, tmp_path: Path) -> None:
    """A byte-for-byte copy of the store verifies clean: the baseline every mutation starts from."""
    copy = tmp_path / "copy"
    shutil.copytree(prepared.store, copy)
    report = verify_store(LocalSource(copy), [trusted])
    assert report["ok"], report["problems"][:5]
    assert report["verified"] > 0 and report["pending"] == 0


@pytest.mark.parametrize("case", range(CASES))
def test_mutation_is_detected(prepared: Prepared, trusted: bytes, tmp_path: Path, case: int) -> None:
    """Mutation ``case % kinds`` applied at a random place is reported with its finding and item, first or not."""
    mutation = MUTATIONS[case % len(MUTATIONS)]
    rng = random.Random(f"tamper-{case}")
    copy = tmp_path / "store"
    shutil.copytree(prepared.store, copy)
    expect = mutation(copy, rng)
    report = verify_store(LocalSource(copy), [trusted])
    named = [problem for problem in report["problems"]
             if problem["finding"] == expect.finding and expect.item in problem["item"]]
    assert not report["ok"] and report[expect.finding] >= 1, (mutation.__name__, expect, report["problems"][:5])
    assert named, (mutation.__name__, expect, report["problems"][:5])
    assert report["first_problem"] == report["problems"][0]
