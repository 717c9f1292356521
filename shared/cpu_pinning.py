"""CPU pinning at start: on two CPUs ingest keeps one and the writer the other (``AUDIT_SERVICE_*_CPUS``)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from shared.errors import ConfigError

# The setting's two words; anything else is a CPU list such as ``0`` or ``1-3,6``.
AUTO = "auto"
ALL = "all"
# Why ``auto`` pins only on two CPUs: there, ingest's one event loop and the writer's threads (which mostly
# take turns on the writer's GIL) each keep a CPU of their own, so neither is moved off it by the other's
# work and each keeps its caches. Measured at the maximum with 100-event bodies (bench/cpu_split.py,
# docs/benchmarks.md "Twelfth session"): 113,300 events/s unpinned against 127,400 pinned, mean of nine
# alternated rounds, pinned ahead in eight; the machine's idle share fell from 12-15 % to 4-8 %. On more
# CPUs the scheduler is left alone: nothing was measured there, and the writer's Arrow work can use several.
AUTO_CPU_COUNT = 2
ROLES = ("ingest", "writer")


@dataclasses.dataclass(frozen=True)
class Pinning:
    """What ``pin_process`` did: the CPUs the process now runs on (None: left as it was) and those it could
    run on before (None where the platform cannot tell)."""

    cpus: frozenset[int] | None
    allowed_before: frozenset[int] | None

    def describe(self) -> list[int] | None:
        """The pinned CPUs as a sorted list for status answers and logs, None when not pinned."""
        return sorted(self.cpus) if self.cpus is not None else None


def parse_cpus(raw: str) -> str | frozenset[int]:
    """``auto``, ``all`` or a CPU list (``0``, ``0,2``, ``1-3``) as a frozenset; ValueError otherwise."""
    value = raw.strip().lower()
    if value in (AUTO, ALL):
        return value
    cpus: set[int] = set()
    for part in value.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError("expected auto, all or a list of CPU numbers such as 0 or 1-3,6")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(f"the range {part.strip()} runs backwards")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def chosen_cpus(role: str, setting: str | frozenset[int], allowed: frozenset[int],
                variable: str) -> frozenset[int] | None:
    """The CPUs ``role`` (``ingest`` or ``writer``) should run on, given the ones it may use now; None to
    leave it as it is. A list that names a CPU outside ``allowed`` is a ConfigError naming ``variable``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if setting == ALL:
        return None
    if setting == AUTO:
        if len(allowed) != AUTO_CPU_COUNT:
            return None
        low, high = sorted(allowed)
        return frozenset({low if role == "ingest" else high})
    assert isinstance(setting, frozenset)
    if not setting or not setting <= allowed:
        raise ConfigError(variable, f"CPUs {_text(setting)} are not all among those this process may use "
                                    f"({_text(allowed)})")
    return setting


def pin_process(role: str, setting: str | frozenset[int], variable: str) -> Pinning:
    """Pin every thread of this process (those running now, and so every later one) to the CPUs
    ``chosen_cpus`` picks; call first thing in ``main``. A no-op where the platform has no CPU affinity."""
    if not hasattr(os, "sched_setaffinity"):
        return Pinning(None, None)
    allowed = frozenset(os.sched_getaffinity(0))
    cpus = chosen_cpus(role, setting, allowed, variable)
    if cpus is None:
        return Pinning(None, allowed)
    _set_every_thread(cpus)
    return Pinning(cpus, allowed)


def spread_to(cpus: frozenset[int] | None) -> None:
    """Let every thread of this process (a child of a pinned one) run on ``cpus`` again; None leaves it."""
    if cpus is not None and hasattr(os, "sched_setaffinity"):
        _set_every_thread(cpus)


def _set_every_thread(cpus: frozenset[int]) -> None:
    """Set the CPUs of each thread running now; threads started later inherit them from their starter."""
    for thread_id in _thread_ids():
        try:
            os.sched_setaffinity(thread_id, cpus)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue


def format_cpus(cpus: frozenset[int]) -> str:
    """A CPU set as the list ``parse_cpus`` reads (``0,1,2``)."""
    return ",".join(map(str, sorted(cpus)))


def _thread_ids() -> list[int]:
    """This process's threads (Linux: ``/proc/self/task``), else only the calling one."""
    try:
        return [int(name) for name in os.listdir(Path("/proc/self/task"))]
    except OSError:
        return [0]


def _text(cpus: frozenset[int]) -> str:
    return format_cpus(cpus) or "none"
