"""Time limits enforced while the work runs, not after it.

A :func:`time_limit` scope gives a piece of work (the symbolic differentiation of a case,
one certification) a deadline.  The work is stopped *at* the deadline, wherever it is:

* the long loops call :func:`check` at natural points (once per graph node, once per
  precision step) - a cheap comparison against a clock;
* between those points (one Arb ball per entry of a 3000 x 3000 node, sympy simplifying a
  formula) a watchdog thread, shared by every scope of the process, raises the deadline in
  the working thread at its next Python instruction (CPython's
  ``PyThreadState_SetAsyncExc``; elsewhere only the :func:`check` points apply).

Either way the scope ends with a :class:`~verigrad.errors.LimitError` that names the limit,
its value and how to raise it (the ``[limits]`` key of the case file), exit code 2.  State
a stopped computation may leave changed - mpmath's working precision, flint's, numpy's
error state - is restored when the scope ends.

Examples
--------
>>> with time_limit(120.0, limit="certify_seconds", what="certification"):
...     pass  # the work; check() in its loops
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
import time
from dataclasses import dataclass, field

from verigrad.errors import LimitError

__all__ = ["DeadlinePassed", "ball_bytes", "check", "check_memory", "memory_available", "remaining",
           "time_limit"]


class DeadlinePassed(BaseException):
    """Raised inside the work when its deadline passes (a BaseException, so that no
    ``except Exception`` of the work swallows it); :func:`time_limit` turns it into a
    :class:`~verigrad.errors.LimitError`."""

    def __init__(self, token: int = 0):
        super().__init__(token)
        self.token = token


@dataclass
class _Scope:
    deadline: float
    seconds: float
    limit: str
    what: str
    where: str
    token: int
    thread: int
    fired: bool = False
    active: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)


_tokens = itertools.count(1)
_local = threading.local()


def _stack() -> list[_Scope]:
    s = getattr(_local, "stack", None)
    if s is None:
        s = _local.stack = []
    return s


def check() -> None:
    """Raise :class:`DeadlinePassed` if the innermost time limit of this thread has passed.

    About 0.2 microseconds when a limit is set, less when none is; call it once per graph
    node or per loop iteration of real work, not per array entry.
    """
    s = getattr(_local, "stack", None)
    if s:
        now = time.monotonic()
        for scope in s:
            if now > scope.deadline:
                raise DeadlinePassed(scope.token)


def remaining() -> float:
    """Seconds left before the nearest deadline of this thread (``inf`` without one)."""
    s = getattr(_local, "stack", None)
    if not s:
        return float("inf")
    return min(sc.deadline for sc in s) - time.monotonic()


# -- the watchdog ------------------------------------------------------------------------------


def _async_raiser():
    """``raise_in(thread_id, exc_type)``; ``raise_in(thread_id, None)`` withdraws a pending one."""
    with contextlib.suppress(Exception):
        import ctypes

        setexc = ctypes.pythonapi["PyThreadState_SetAsyncExc"]  # a private function pointer each
        setexc.argtypes, setexc.restype = (ctypes.c_ulong, ctypes.py_object), ctypes.c_int
        clear = ctypes.pythonapi["PyThreadState_SetAsyncExc"]
        clear.argtypes, clear.restype = (ctypes.c_ulong, ctypes.c_void_p), ctypes.c_int

        def raise_in(thread: int, exc) -> int:
            return clear(thread, None) if exc is None else setexc(thread, exc)

        return raise_in
    return None


class _Watchdog:
    """One daemon thread per process holding a heap of deadlines; started on first use."""

    def __init__(self):
        self.cond = threading.Condition()
        self.heap: list[tuple[float, int, _Scope]] = []
        self.thread: threading.Thread | None = None
        self.raiser = _async_raiser()

    def add(self, scope: _Scope) -> None:
        if self.raiser is None:
            return
        with self.cond:
            heapq.heappush(self.heap, (scope.deadline, scope.token, scope))
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="verigrad-deadlines", daemon=True)
                self.thread.start()
            self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                while self.heap and not self.heap[0][2].active:
                    heapq.heappop(self.heap)
                if not self.heap:
                    self.cond.wait()
                    continue
                wait = self.heap[0][0] - time.monotonic()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                _, _, scope = heapq.heappop(self.heap)
            with scope.lock:
                if scope.active and not scope.fired:
                    scope.fired = True
                    self.raiser(scope.thread, DeadlinePassed)


_watchdog = _Watchdog()


def _after_fork_in_child() -> None:  # the watchdog thread does not survive a fork
    global _watchdog
    _watchdog = _Watchdog()
    _local.__dict__.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _saved_state():
    """mpmath's and flint's working precisions and numpy's error state (modules not imported yet
    are not imported here: the work cannot have changed what it had not loaded before)."""
    import sys

    import numpy as np

    mpm, fl = sys.modules.get("mpmath"), sys.modules.get("flint")
    return (mpm.mp.prec if mpm is not None else None, np.geterr(),
            fl.ctx.prec if fl is not None and hasattr(fl, "ctx") else None)


def _restore_state(state) -> None:
    import sys

    import numpy as np

    prec, err, flint_prec = state
    if prec is not None:
        sys.modules["mpmath"].mp.prec = prec
    np.seterr(**err)
    if flint_prec is not None:
        with contextlib.suppress(Exception):
            sys.modules["flint"].ctx.prec = flint_prec


@contextlib.contextmanager
def time_limit(seconds: float, *, limit: str, what: str, where: str = ""):
    """Run the block with a deadline ``seconds`` from now.

    Parameters
    ----------
    seconds : float
        The limit's value (positive; ``inf`` or 0 sets no deadline).
    limit : str
        The ``[limits]`` key that sets it, e.g. ``"certify_seconds"`` (named in the message).
    what : str
        The work, for the message: ``"certification"``, ``"symbolic work"``.
    where : str
        ``file::case`` for the message.

    Raises
    ------
    LimitError
        The deadline passed while the block ran: "certification was stopped at the time limit
        of 300 s ([limits] certify_seconds = 300)", hint "raise [limits] certify_seconds ...".
    """
    if not seconds or seconds == float("inf"):
        yield None
        return
    state = _saved_state()
    scope = _Scope(deadline=time.monotonic() + seconds, seconds=seconds, limit=limit, what=what, where=where,
                   token=next(_tokens), thread=threading.get_ident())
    stack = _stack()
    stack.append(scope)
    caught: DeadlinePassed | None = None
    try:
        _watchdog.add(scope)
        yield scope
    except DeadlinePassed as exc:
        caught = exc
    finally:
        fired = _close(scope, stack)
    mine = fired or (caught is not None and caught.token == scope.token)  # token 0: the watchdog's, fired is set
    if caught is not None and not mine:
        raise caught  # an enclosing scope's deadline: that scope reports it
    if mine:
        _restore_state(state)
        _raise(scope)


def _close(scope: _Scope, stack: list) -> bool:
    """Retire ``scope`` (the watchdog leaves it alone from here); True if its deadline fired.

    Retried until done: an exception the watchdog raised just before is delivered here at the
    latest, and must not cut the clean-up short (a scope left on the stack would stop all later work).
    """
    while True:
        try:
            with scope.lock:
                scope.active = False
                fired = scope.fired
            if fired and _watchdog.raiser is not None:
                _watchdog.raiser(scope.thread, None)  # withdraw one raised but not yet delivered
            with contextlib.suppress(ValueError):
                stack.remove(scope)
            return fired
        except DeadlinePassed:
            continue


def _raise(scope: _Scope) -> None:
    value = f"{scope.seconds:g}"
    raise LimitError(f"{scope.what} was stopped at the time limit of {value} s ([limits] {scope.limit} = {value})",
                     where=scope.where, hint=f"raise [limits] {scope.limit} in the case file (at most 86400 s), "
                     f"or make the case smaller") from None


# -- memory ------------------------------------------------------------------------------------


def ball_bytes(prec: int) -> int:
    """Bytes one Arb ball (or mpmath number) of ``prec`` bits costs in an object array, about.

    Measured with python-flint: 126 bytes at 144 bits, 195 at 1024, 2012 at 16384 - a little
    under ``96 + prec / 8`` for large precisions, so estimates err towards going ahead.
    """
    return 96 + prec // 8


def memory_available() -> float:
    """Bytes this process can still allocate, about: the least of the system's available memory
    (``MemAvailable``), the cgroup's room and the address-space limit; ``inf`` if none is known."""
    room = [float("inf")]
    with contextlib.suppress(Exception):
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                room.append(float(line.split()[1]) * 1024)
                break
    with contextlib.suppress(Exception):
        top = open("/sys/fs/cgroup/memory.max").read().strip()
        if top != "max":
            room.append(float(top) - float(open("/sys/fs/cgroup/memory.current").read()))
    with contextlib.suppress(Exception):
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            used = float(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            room.append(soft - used)
    return max(min(room), 0.0)


#: needs at or below this many bytes are not checked (a MemoryError there still ends in exit 2)
_SMALL_NEED = 16 << 20


def check_memory(entries: int, bytes_per_entry: int, *, what: str, where: str = "", hint: str = "") -> None:
    """Refuse work that would need more memory than is available, before it starts.

    Raises
    ------
    LimitError
        ``entries * bytes_per_entry`` exceeds :func:`memory_available`: the message gives both
        figures, so that the work never ends in a ``MemoryError`` or the kernel's out-of-memory
        kill (which leaves no report at all).
    """
    need = float(entries) * bytes_per_entry
    if need <= _SMALL_NEED:
        return  # reading /proc and the cgroup costs ~0.1 ms: more than a small certificate's arithmetic
    room = memory_available()
    if need > room:
        raise LimitError(f"{what} needs about {_size(need)} ({entries:,} entries at {bytes_per_entry:,} bytes), "
                         f"more than the {_size(room)} of memory available", where=where,
                         hint=hint or "make the case smaller, or run it on a machine with more memory")


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} bytes"
