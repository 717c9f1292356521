"""Every thread's Python stack written to stderr on SIGUSR2: the first look at a process that seems stuck."""

from __future__ import annotations

import faulthandler
import signal
import sys

STACK_DUMP_SIGNAL = signal.SIGUSR2


def install() -> None:
    """Dump all threads' stacks to stderr on ``STACK_DUMP_SIGNAL`` (the process goes on running).

    The handler is faulthandler's, in C: it answers even when the event loop or the interpreter lock is
    held by a stuck thread, which a Python-level handler would wait for.
    """
    faulthandler.register(STACK_DUMP_SIGNAL, file=sys.stderr, all_threads=True)
