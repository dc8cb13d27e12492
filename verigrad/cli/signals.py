"""SIGTERM handled like Ctrl-C: stop, let every ``finally`` kill its children, write the finished reports.

CI systems stop a job that runs out of time with SIGTERM (and SIGKILL a little later). Python's
default for SIGTERM is to die at once, with no report and with the candidates' worker processes
left running. :func:`terminate_like_interrupt` installs a handler that raises
:class:`Terminated` (a :class:`KeyboardInterrupt`), so the code path is exactly the Ctrl-C one:
every context manager closes (workers are killed, pools terminated) and ``verigrad run`` writes
what finished. The exit code is then 143 (128 + SIGTERM), as a shell reports a process killed
by SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal

__all__ = ["Terminated", "terminate_like_interrupt", "EXIT_TERMINATED"]

EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; handled wherever a KeyboardInterrupt is."""


@contextlib.contextmanager
def terminate_like_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated`; yields a record whose ``received`` says
    whether it did (a second SIGTERM while cleaning up is ignored: the first one is being handled)."""

    class State:
        received = False

    state = State()

    def handler(signum, frame):
        if state.received:
            return
        state.received = True
        raise Terminated("SIGTERM")

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a test runner's worker thread)
        yield state
        return
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, old)
