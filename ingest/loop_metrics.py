"""Counters and histograms updated only on ingest's event loop: plain numbers, no lock, exposed at scrape time.

prometheus_client's own Counter and Histogram take a lock for every update, and a histogram walks its
bounds in Python: 1.3 µs a request for the request counter and the latency histogram, against 0.24 µs
for these (``bench/request_metrics.py``, one run). Ingest updates them from its one
event loop only, so nothing here needs a lock. A scrape reads them through ``LoopCollector``, which
produces the very samples prometheus_client's classes would (``_total``/``_created`` for a counter;
``_bucket`` with ``le``, ``_count``, ``_sum``, ``_created`` for a histogram), so ``/metrics`` reads the same.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString


class CounterChild:
    """One label combination of a ``LoopCounter``."""

    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value = 0
        self.created = time.time()

    def inc(self, amount: int = 1) -> None:
        """Add ``amount`` (never negative)."""
        self.value += amount


class HistogramChild:
    """One label combination of a ``LoopHistogram``: a count per bucket (the last one ``+Inf``) and a sum."""

    __slots__ = ("bounds", "counts", "sum", "created")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose bound is at least ``value`` (Prometheus's ``le``)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class _LoopInstrument:
    """An instrument with labels: one child per combination of label values, made on first use."""

    kind = ""  # the Prometheus type

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        """The child of these label values (created empty on first use)."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._new_child()
        return child

    def _new_child(self) -> Any:
        raise NotImplementedError


class LoopCounter(_LoopInstrument):
    """A Prometheus counter with labels, for one event loop."""

    kind = "counter"

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def metric(self) -> Metric:
        """The samples prometheus_client's ``Counter`` gives: ``_total`` and ``_created`` per child."""
        family = Metric(self.name, self.documentation, self.kind)
        for values, child in self._children.items():
            labels = dict(zip(self.labelnames, values))
            family.add_sample(f"{self.name}_total", labels, child.value)
            family.add_sample(f"{self.name}_created", labels, child.created)
        return family


class LoopHistogram(_LoopInstrument):
    """A Prometheus histogram with labels, for one event loop."""

    kind = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        super().__init__(name, documentation, labelnames)
        self.bounds = tuple(float(bound) for bound in buckets if bound != float("inf"))
        self._le = [*map(floatToGoString, self.bounds), "+Inf"]

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def metric(self) -> Metric:
        """The samples prometheus_client's ``Histogram`` gives: cumulative ``_bucket``s, ``_count``, ``_sum``
        and ``_created`` per child."""
        family = Metric(self.name, self.documentation, self.kind)
        for values, child in self._children.items():
            labels = dict(zip(self.labelnames, values))
            total = 0
            for le, count in zip(self._le, child.counts):
                total += count
                family.add_sample(f"{self.name}_bucket", {**labels, "le": le}, total)
            family.add_sample(f"{self.name}_count", labels, total)
            family.add_sample(f"{self.name}_sum", labels, child.sum)
            family.add_sample(f"{self.name}_created", labels, child.created)
        return family


class LoopCollector:
    """Registers loop counters and histograms with a ``CollectorRegistry``; read when it is scraped."""

    def __init__(self, instruments: Sequence[LoopCounter | LoopHistogram]) -> None:
        self.instruments = tuple(instruments)

    def describe(self) -> list[Metric]:
        """The families (empty) so that the registry knows their names without collecting."""
        return [Metric(item.name, item.documentation, item.kind) for item in self.instruments]

    def collect(self) -> Iterator[Metric]:
        """Every instrument's current samples."""
        for item in self.instruments:
            yield item.metric()
