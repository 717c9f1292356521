"""bench/timeline_marks.py: its wrappers find the steps they name in ingest and the writer, and note them in order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": f"{BENCH}:{REPO}", "PATH": "/usr/bin:/bin"})


def test_every_wrapped_step_exists_and_is_wrapped(tmp_path: Path) -> None:
    """A renamed method in ingest or the writer fails here, not silently in the benchmark."""
    result = _run(f"""
import timeline_marks
from aiohttp import web_protocol
from ingest import link
from writer import server, spool
originals = (web_protocol.RequestHandler.data_received, link.WriterLink._next_batch, server.SocketServer._on_batch,
             spool.sync_data)
marks = timeline_marks.Marks({str(tmp_path / 'steps')!r}, 0)
timeline_marks._ingest(marks)
timeline_marks._writer(marks)
wrapped = (web_protocol.RequestHandler.data_received, link.WriterLink._next_batch, server.SocketServer._on_batch,
           spool.sync_data)
print(all(new is not old and new.__wrapped__ is old for new, old in zip(wrapped, originals)))
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_steps_are_noted_in_order_with_the_thread_and_written_once(tmp_path: Path) -> None:
    result = _run(f"""
import os, threading, timeline_marks
marks = timeline_marks.Marks({str(tmp_path / 'steps')!r}, 0)
class Owner:
    def step(self, value):
        return value * 2
timeline_marks._around(Owner, "step", marks, "before", "after", when=lambda self, value: value > 0)
assert Owner().step(3) == 6 and Owner().step(-1) == -2  # the second is not noted
marks.write()
marks.mark("late")
marks.write()  # written once: the late step is not added
print(os.getpid(), threading.get_native_id())
""")
    assert result.returncode == 0, result.stderr
    pid, thread = result.stdout.split()
    lines = [line.split() for line in (tmp_path / f"steps.{pid}").read_text().splitlines()]
    assert [line[1] for line in lines] == ["before", "after"]
    assert int(lines[0][0]) <= int(lines[1][0])
    assert {line[3] for line in lines} == {thread}


def test_nothing_is_noted_before_the_skip(tmp_path: Path) -> None:
    result = _run(f"""
import os, timeline_marks
marks = timeline_marks.Marks({str(tmp_path / 'steps')!r}, 60)
marks.mark("early")
marks.write()
print(os.getpid())
""")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / f"steps.{result.stdout.strip()}").read_text() == ""
