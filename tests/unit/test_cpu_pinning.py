"""CPU pinning: the setting's forms, which CPUs each process takes, and pinning a real process's threads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from shared import cpu_pinning
from shared.errors import ConfigError
from shared.settings import Settings
from tests.service import REPO

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")


@pytest.mark.parametrize("raw, expected", [
    ("auto", "auto"), (" AUTO ", "auto"), ("all", "all"),
    ("0", frozenset({0})), ("1-3", frozenset({1, 2, 3})), ("0,2, 5-6", frozenset({0, 2, 5, 6})), ("4-4", frozenset({4})),
])
def test_the_setting_reads_auto_all_and_cpu_lists(raw: str, expected: object) -> None:
    assert cpu_pinning.parse_cpus(raw) == expected


@pytest.mark.parametrize("raw", ["", "none", "-1", "1-", "3-1", "0,,1", "a-b", "1.5"])
def test_anything_else_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        cpu_pinning.parse_cpus(raw)


def test_settings_default_to_auto_and_name_the_variable_of_a_bad_value() -> None:
    settings = Settings.from_env({})
    assert (settings.ingest_cpus, settings.writer_cpus) == ("auto", "auto")
    assert Settings.from_env({"AUDIT_SERVICE_INGEST_CPUS": "", "AUDIT_SERVICE_WRITER_CPUS": "2-3"}).writer_cpus == {2, 3}
    with pytest.raises(ConfigError, match="AUDIT_SERVICE_WRITER_CPUS"):
        Settings.from_env({"AUDIT_SERVICE_WRITER_CPUS": "one"})


def test_auto_gives_each_process_one_of_two_cpus_and_leaves_other_counts_alone() -> None:
    two = frozenset({3, 7})
    assert cpu_pinning.chosen_cpus("ingest", "auto", two, "V") == {3}
    assert cpu_pinning.chosen_cpus("writer", "auto", two, "V") == {7}
    for allowed in (frozenset({0}), frozenset({0, 1, 2}), frozenset(range(8))):
        assert cpu_pinning.chosen_cpus("ingest", "auto", allowed, "V") is None
        assert cpu_pinning.chosen_cpus("writer", "auto", allowed, "V") is None


def test_all_never_pins_and_a_list_must_be_among_the_allowed_cpus() -> None:
    assert cpu_pinning.chosen_cpus("writer", "all", frozenset({0, 1}), "V") is None
    assert cpu_pinning.chosen_cpus("writer", frozenset({1}), frozenset({0, 1}), "V") == {1}
    with pytest.raises(ConfigError, match="AUDIT_SERVICE_WRITER_CPUS.*2.*0,1"):
        cpu_pinning.chosen_cpus("writer", frozenset({1, 2}), frozenset({0, 1}), "AUDIT_SERVICE_WRITER_CPUS")
    with pytest.raises(ValueError):
        cpu_pinning.chosen_cpus("reader", "auto", frozenset({0, 1}), "V")


def _pinned_child(setting: str) -> list[str]:
    """Run a child that starts a thread, pins the process as the writer with ``setting``, starts another
    thread, and prints the CPUs of every thread and of a grandchild spread back to where it began."""
    script = textwrap.dedent(f"""
        import os, subprocess, sys, threading
        from shared import cpu_pinning
        from shared.settings import Settings
        stop = threading.Event()
        early = threading.Thread(target=stop.wait); early.start()
        setting = Settings.from_env({{"AUDIT_SERVICE_WRITER_CPUS": {setting!r}}}).writer_cpus
        pinning = cpu_pinning.pin_process("writer", setting, "V")
        late = threading.Thread(target=stop.wait); late.start()
        for tid in sorted(os.listdir("/proc/self/task")):
            print(sorted(os.sched_getaffinity(int(tid))))
        stop.set()
        code = ("from shared import cpu_pinning; import os, sys; "
                "cpu_pinning.spread_to(cpu_pinning.parse_cpus(sys.argv[1])); print(sorted(os.sched_getaffinity(0)))")
        if pinning.cpus is not None:
            print(subprocess.run([sys.executable, "-c", code, cpu_pinning.format_cpus(pinning.allowed_before)],
                                 capture_output=True, text=True, check=True).stdout.strip())
        print("pinned", pinning.describe())
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@needs_affinity
def test_pinning_reaches_threads_started_before_and_after_and_a_child_can_spread_back() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("needs two CPUs")
    lines = _pinned_child(str(allowed[-1]))
    assert lines[:3] == [str([allowed[-1]])] * 3  # main thread, the early thread, the late thread
    assert lines[3] == str(allowed)  # the grandchild runs where the child began
    assert lines[4] == f"pinned {[allowed[-1]]}"


@needs_affinity
def test_auto_pins_only_on_two_cpus_and_all_leaves_the_process_alone() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    auto = _pinned_child("auto")
    if len(allowed) == 2:
        assert auto[:3] == [str([allowed[1]])] * 3 and auto[-1] == f"pinned {[allowed[1]]}"
    else:
        assert auto[:3] == [str(allowed)] * 3 and auto[-1] == "pinned None"
    everything = _pinned_child("all")
    assert everything == [str(allowed)] * 3 + ["pinned None"]
