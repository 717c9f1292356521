"""Shared fixtures: a running two-process service per test or per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service import Service


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator:
    """Build services with custom environment; every one started is stopped at the end."""
    started: list[Service] = []

    def make(start: bool = True, **env: str) -> Service:
        service = Service(tmp_path / f"svc{len(started)}", **env)
        service.root.mkdir(parents=True)
        started.append(service)
        return service.start_all() if start else service

    yield make
    stuck = []
    for service in started:
        try:
            service.stop()
        except TimeoutError as exc:  # the others are still stopped; then the stuck one is reported
            stuck.append(exc)
    if stuck:
        raise stuck[0]


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One running service (verbosity ``verbose``) shared by the tests of a module."""
    root = tmp_path_factory.mktemp("svc")
    service = Service(root)
    try:
        yield service.start_all()
    finally:
        service.stop()
