"""Fixtures of the operations tests: one running service shared by the whole package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3.conftest import bucket, moto_endpoint, s3_env  # noqa: F401  (the S3 tests' fixtures, for tests/ops)
from tests.service import Service


@pytest.fixture(scope="package")
def ops_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A running service (verbosity ``verbose``, quick flushes) for tests that add only uniquely tagged events."""
    service = Service(tmp_path_factory.mktemp("ops"), AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.2")
    try:
        yield service.start_all()
    finally:
        service.stop()
