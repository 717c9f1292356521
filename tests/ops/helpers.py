"""Helpers of the operations tests: scrape /metrics, read a process's JSON log lines, poll with a deadline."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.service import Service

T = TypeVar("T")


class Scrape:
    """One scrape of a /metrics endpoint: families by name and sample values by name and labels."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
            self.content_type = response.headers.get("Content-Type", "")
            self.text = response.read().decode()
        self.families = {family.name: family for family in text_string_to_metric_families(self.text)}
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in self.families.values():
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 when there are none)."""
        return sum(value for sample_labels, value in self.samples.get(name, [])
                   if all(sample_labels.get(key) == wanted for key, wanted in labels.items()))

    def label_values(self, name: str, label: str) -> set[str]:
        """Every value ``label`` takes among the samples of ``name``."""
        return {sample_labels[label] for sample_labels, _ in self.samples.get(name, []) if label in sample_labels}


def log_lines(service: Service, process: str) -> list[dict[str, Any]]:
    """Every line the process wrote to its log (all of its starts), each parsed as JSON."""
    lines = []
    for path in service.logs:
        if path.name.startswith(f"{process}-"):
            lines.extend(orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip())
    return lines


def raw_log(service: Service) -> bytes:
    """Everything every process of the service wrote."""
    return b"".join(path.read_bytes() for path in service.logs if path.exists())


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
