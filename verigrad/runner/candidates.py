"""Load and call user code (candidates and ``loss_code``) in isolation.

Only the module named in the case file is imported, from its own directory.
User code never runs in the verigrad process: it runs in a *worker*, a forked
child process that :func:`worker_scope` (held by :func:`verigrad.runner.case.run_case`
for one case) starts at the first call and reuses for every call of the case,
candidates and ``loss_code`` alike.  Calls and results travel through a pipe as
plain numpy arrays; what comes back is untrusted data.

Isolation, call by call:

* every batch of calls (one candidate call; one batch of ``loss_code`` calls)
  imports the module afresh from its source, so module-level state never carries
  over from one batch to the next - each candidate sees the module a separate run
  would;
* after every batch the worker restores the process state user code commonly
  changes: numpy's error state, print options and legacy global random state,
  ``random``'s state, ``mpmath.mp`` precision, ``sys.path``, ``sys.modules``
  entries, the working directory, ``os.environ``, warning filters (and their
  once-registries), the recursion limit, and the attributes of ``builtins``,
  ``math``, ``numpy``, ``numpy.linalg`` and ``mpmath`` that existed when the
  worker started (a monkeypatched ``np.dot`` is put back);
* a call that crashes the worker (``os._exit``, a segfault), runs past the time
  limit (the worker is killed) or leaves threads running ends that worker; the
  next call starts a fresh one.  A call that raises (``SystemExit`` included)
  is reported and the worker goes on;
* what user code says is untrusted text (:mod:`verigrad.runner.untrusted`): its file
  descriptors 1 and 2 write into a private file (never into verigrad's output), and its
  output, error messages and returned keys are escaped where they enter the records; what it
  returns crosses the pipe as numbers and text only (an object becomes its ``repr``);
* a worker never outlives its scope: it is stopped (killed if it does not exit)
  when the scope closes, it exits when the verigrad process's end of its pipe
  closes, and on Linux the kernel kills it if the verigrad process dies.

Outside a :func:`worker_scope`, :func:`call_isolated` uses a worker for that one
batch only (the same isolation, one process per batch).

Calling convention (docs/case-files.md): the function receives every symbol as a
keyword argument - numpy arrays of the dtype under test, 0-d for scalars - and
returns a mapping from variable name to an array of that variable's shape (a
sequence in declaration order is accepted too).  ``loss_code`` functions return
a scalar.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.machinery
import importlib.util
import io
import multiprocessing as mp
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from verigrad.errors import CandidateError
from verigrad.runner.adapters import adapted
from verigrad.runner.untrusted import FdCapture, escape_text, escape_values, safe_str, unhide_numpy_warnings
from verigrad.spec import CodeRef, is_float_dtype

__all__ = ["CallResult", "call_isolated", "load_function", "normalise_gradient", "loss_code_evaluator",
           "worker_scope"]


@dataclass(frozen=True)
class CallResult:
    """Outcome of a batch of calls.

    Attributes
    ----------
    values : list
        One return value per call (numpy arrays / dicts of arrays), when ``error`` is empty.
    error : str
        Empty on success; otherwise what went wrong, in one paragraph.
    kind : str
        ``"ok"``, ``"load"`` (file/function missing), ``"signature"``, ``"raised"``,
        ``"timeout"``, ``"crashed"``; for PyTorch and JAX code (:mod:`verigrad.runner.adapters`)
        also ``"missing"`` (the framework is not installed) and ``"device"`` (no such device here).
    stdout : str
        What the code printed (captured, never shown unasked).
    seconds : float
    """

    values: list = field(default_factory=list)
    error: str = ""
    kind: str = "ok"
    stdout: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def load_function(ref: CodeRef):
    """Import ``ref.path`` as a private module and return ``ref.function``.

    The module's directory is on ``sys.path`` only while it is imported, and
    modules it imported from that directory are removed from ``sys.modules``
    afterwards, so one case's helpers never shadow another's.

    Raises
    ------
    CandidateError
        Missing file, import failure, or missing/non-callable function.
    """
    return _load_function(ref, None)


class _CachedSourceLoader(importlib.machinery.SourceFileLoader):
    """A source loader that compiles each (path, mtime, size) once per worker; the module still runs afresh."""

    def __init__(self, fullname: str, path: str, cache: dict):
        super().__init__(fullname, path)
        self._code_cache = cache

    def get_code(self, fullname):
        st = os.stat(self.path)
        key = (self.path, st.st_mtime_ns, st.st_size)
        code = self._code_cache.get(key)
        if code is None:
            code = self._code_cache[key] = super().get_code(fullname)
        return code


def _load_function(ref: CodeRef, code_cache: dict | None):
    path = Path(ref.path)
    if not path.is_file():
        raise CandidateError(f"{ref.text}: file {path} not found", kind="load")
    directory = str(path.parent.resolve())
    name = f"_verigrad_user_{abs(hash(str(path.resolve())))}"
    before = set(sys.modules)
    sys.path.insert(0, directory)
    try:
        loader = None if code_cache is None else _CachedSourceLoader(name, str(path), code_cache)
        spec = importlib.util.spec_from_file_location(name, path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - user code may raise anything
            raise CandidateError(f"{ref.text}: importing {path.name} raised {type(exc).__name__}: {safe_str(exc)}",
                                 kind="load") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(directory)
        for mod in set(sys.modules) - before:
            f = getattr(sys.modules[mod], "__file__", None) or ""
            if f.startswith(directory):
                sys.modules.pop(mod, None)
    fn = getattr(module, ref.function, None)
    if fn is None:
        public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise CandidateError(f"{ref.text}: {path.name} has no function '{ref.function}'"
                             f" (it defines: {', '.join(public) or 'nothing callable'})", kind="load")
    if not callable(fn):
        raise CandidateError(f"{ref.text}: '{ref.function}' is not callable", kind="load")
    return fn


def _signature_problem(fn, names: Sequence[str]) -> str:
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return ""
    try:
        sig.bind(**{n: None for n in names})
    except TypeError as exc:
        params = ", ".join(sig.parameters)
        return (f"cannot be called with the symbols as keyword arguments ({exc}); it takes ({params}) "
                f"but the case declares {', '.join(names)}; accept every symbol (or **kwargs)")
    return ""


def _run_batch(ref: CodeRef, calls: list, code_cache: dict, capture: FdCapture | None = None) -> tuple:
    """Run one batch in this (worker) process: ``(kind, error, stdout, values)``, never raising.

    What the code prints through ``sys.stdout``/``sys.stderr`` (warnings included) and what it
    writes to descriptors 1 and 2 (``capture``) are both returned as its output.
    """
    buf = io.StringIO()
    try:
        if capture is not None:
            capture.begin()
        reply = _run_calls(ref, calls, code_cache, buf)
    except BaseException as exc:  # noqa: BLE001 - anything user code can make the machinery raise
        reply = ("crashed", f"{ref.text}: result could not be returned: {type(exc).__name__}: {safe_str(exc)}",
                 None, None)
    raw = ""
    if capture is not None:
        try:
            raw = capture.end()
        except BaseException:  # noqa: BLE001
            raw = ""
    try:
        out = buf.getvalue()
    except BaseException:  # noqa: BLE001
        out = ""
    return (reply[0], reply[1], out + raw, reply[3])


def _run_calls(ref: CodeRef, calls: list, code_cache: dict, buf: io.StringIO) -> tuple:
    try:
        sys.stdin = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                # PyTorch or JAX code is wrapped by its framework's adapter (runner.adapters)
                fn = adapted(lambda: _load_function(ref, code_cache), ref)
            except CandidateError as exc:
                return (exc.fields.get("kind", "load"), str(exc), None, None)
            problem = _signature_problem(fn, list(calls[0].kwargs) if calls else [])
            if problem:
                return ("signature", f"{ref.text}: {problem}", None, None)
            out = []
            for call in calls:
                try:
                    res = fn(**call.fresh())
                except CandidateError as exc:  # a framework adapter's verdict on what the code returned
                    return ("raised", f"{ref.text}: {safe_str(exc)}", None, None)
                except BaseException as exc:  # noqa: BLE001
                    tb = traceback.extract_tb(exc.__traceback__)
                    frame = next((f for f in reversed(tb) if Path(f.filename).resolve() == Path(ref.path).resolve()),
                                 next((f for f in reversed(tb) if _users(f.filename)), None))
                    at = f" at {Path(frame.filename).name}:{frame.lineno} ({frame.line})" if frame else ""
                    return ("raised", f"{ref.text} raised {type(exc).__name__}: {safe_str(exc)}{at}", None, None)
                out.append(_plain(res))
        return ("ok", "", None, out)
    except BaseException as exc:  # noqa: BLE001 - anything user code can make the machinery raise
        return ("crashed", f"{ref.text}: result could not be returned: {type(exc).__name__}: {safe_str(exc)}",
                None, None)


def _users(filename: str) -> bool:
    """Whether a traceback frame is the user's code, not verigrad's or an installed package's (torch's
    autograd engine raising about a ``backward``: a line of torch/autograd/graph.py would mislead)."""
    path = Path(filename).resolve()
    return not (path.is_relative_to(Path(__file__).resolve().parents[1])
                or any(p in ("site-packages", "dist-packages") for p in path.parts) or filename.startswith("<"))


def _plain(value: Any) -> Any:
    """Make a return value picklable and detached (numpy arrays, dicts, lists)."""
    if isinstance(value, Mapping):
        return {safe_str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    try:
        arr = np.array(value)
    except Exception:  # noqa: BLE001
        return _repr(value)
    # an object array would carry user objects (and their pickling code) to the parent: send text
    # (strings too: np.array("w") is no gradient), keeping the type's name for the message
    return _Shown.of(value) if arr.dtype.kind in "OUS" else arr  # not "V": bfloat16


class _Shown(str):
    """The repr of a returned object that is not an array; ``type_name`` names what was returned."""

    type_name = "object"

    @classmethod
    def of(cls, value: Any) -> "_Shown":
        s = cls(_repr(value))
        s.type_name = type(value).__name__
        return s


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except BaseException:  # noqa: BLE001
        return safe_str(value)


# ---------------------------------------------------------------------------------------------
# Sending calls: a large array equal (bit for bit) to the last one sent under the same keyword
# is not sent again; the worker keeps it and hands every call its own copy.  The data of a
# case (a design matrix, a batch of images) then crosses the pipe once per worker, not once
# per loss call of a finite-difference batch.

#: arrays of at least this many bytes are remembered on both sides of the pipe
_HOLD_BYTES = 64 * 1024


class _Hold:
    """An array the worker keeps as the last value of its keyword (sent in full)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array


class _Same:
    """'The array the worker kept for this keyword' (bit-identical to the one the caller passed)."""

    __slots__ = ()


def _holdable(v: Any) -> bool:
    return (type(v) is np.ndarray and v.nbytes >= _HOLD_BYTES and v.dtype.kind in "biufc"
            and v.flags.c_contiguous)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    word = np.uint64 if a.nbytes % 8 == 0 else np.uint8
    return bool(np.array_equal(a.reshape(-1).view(word), b.reshape(-1).view(word)))


class _Encoder:
    """The parent's side of the kept arrays of one worker (a private copy of each, to compare)."""

    def __init__(self):
        self._kept: dict[str, np.ndarray] = {}

    def encode(self, calls: list[dict]) -> list[dict]:
        out = []
        for kw in calls:
            enc = {}
            for k, v in kw.items():
                if _holdable(v):
                    kept = self._kept.get(k)
                    if kept is not None and _same_bits(v, kept):
                        enc[k] = _Same()
                        continue
                    self._kept[k] = v.copy()
                    enc[k] = _Hold(v)
                else:
                    enc[k] = v
            out.append(enc)
        return out


class _Call:
    """One decoded call in the worker: kept arrays are copied for the call, just before it."""

    __slots__ = ("kwargs", "copies")

    def __init__(self, kwargs: dict, copies: tuple):
        self.kwargs = kwargs
        self.copies = copies

    def fresh(self) -> dict:
        kw = dict(self.kwargs)
        for k in self.copies:
            kw[k] = np.array(kw[k], copy=True)
        return kw


def _decode(calls: list[dict], kept: dict) -> list[_Call]:
    out = []
    for enc in calls:
        kw, copies = {}, []
        for k, v in enc.items():
            if isinstance(v, _Hold):
                kept[k] = kw[k] = v.array
                copies.append(k)
            elif isinstance(v, _Same):
                kw[k] = kept[k]
                copies.append(k)
            else:
                kw[k] = v
        out.append(_Call(kw, tuple(copies)))
    return out


# ---------------------------------------------------------------------------------------------
# The worker process.

#: modules whose attributes (those present when the worker starts) are put back after each batch
_GUARDED_MODULES = ("builtins", "math", "numpy", "numpy.linalg", "mpmath")
_MISSING = object()


class _ProcessState:
    """What user code commonly changes in a process, captured when the worker starts.

    :meth:`restore` runs after every batch (a worker whose state cannot be restored retires).
    """

    def __init__(self):
        import warnings

        self.path = list(sys.path)
        self.cwd = os.getcwd()
        self.environ = dict(os.environ)
        self.environ_data = dict(getattr(os.environ, "_data", self.environ))  # encoded: cheap to compare
        self.modules = dict(sys.modules)
        self.namespaces = {m: (vars(sys.modules[m]), dict(vars(sys.modules[m])))
                           for m in _GUARDED_MODULES if m in sys.modules}
        self.recursion = sys.getrecursionlimit()
        self.warning_filters = list(warnings.filters)
        self.showwarning = warnings.showwarning
        self.np_err = np.geterr()
        self.np_errcall = np.geterrcall()
        self.np_print = np.get_printoptions()
        self.np_random = sys.modules["numpy.random"].get_state() if "numpy.random" in sys.modules else None
        self.random = sys.modules["random"].getstate() if "random" in sys.modules else None
        mpm = sys.modules.get("mpmath")
        self.mp = (mpm.mp.prec, mpm.mp.pretty) if mpm is not None else None

    def restore(self) -> None:
        import warnings

        sys.path[:] = self.path
        with contextlib.suppress(OSError):
            if os.getcwd() != self.cwd:
                os.chdir(self.cwd)
        if getattr(os.environ, "_data", os.environ) != self.environ_data:
            os.environ.clear()
            os.environ.update(self.environ)
        for name, mod in self.modules.items():
            if sys.modules.get(name, _MISSING) is not mod:
                sys.modules[name] = mod
        for ns, saved in self.namespaces.values():
            for k, v in saved.items():
                if ns.get(k, _MISSING) is not v:
                    ns[k] = v
        sys.setrecursionlimit(self.recursion)
        warnings.filters[:] = self.warning_filters
        warnings.showwarning = self.showwarning
        getattr(warnings, "_filters_mutated", lambda: None)()  # forget which warnings were shown once
        np.seterr(**self.np_err)
        np.seterrcall(self.np_errcall)
        np.set_printoptions(**self.np_print)
        if self.np_random is not None:
            sys.modules["numpy.random"].set_state(self.np_random)
        if self.random is not None:
            sys.modules["random"].setstate(self.random)
        if self.mp is not None:
            mpm = sys.modules["mpmath"]
            mpm.mp.prec, mpm.mp.pretty = self.mp


def _die_with_parent(parent_pid: int) -> None:
    """Linux: have the kernel kill this worker when the verigrad process dies (best effort)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        pr_set_pdeathsig, zero = ctypes.c_int(1), ctypes.c_ulong(0)
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, ctypes.c_ulong(int(signal.SIGKILL)), zero, zero, zero)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(0)


#: the worker's answer to a batch it will not run (its state could not be restored): use a fresh worker
_RETIRED = "retired"
#: the worker's exit code when it cannot answer because user code closed its pipe to verigrad
_EXIT_PIPE_CLOSED = 86


def _worker_main(conn, parent_end, parent_pid: int) -> None:
    """Serve batches from ``conn`` until it closes or says ``None``; exits with ``os._exit``.

    The reply to a batch is sent first; the process state is restored after it, while the
    parent grades the result.  A worker that could not restore it answers the next batch
    with :data:`_RETIRED` (the parent sends that batch to a fresh worker) and exits.
    """
    import signal
    import threading

    parent_end.close()  # so that the parent closing its end is seen here as end of file
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    _die_with_parent(parent_pid)
    try:
        capture = FdCapture()  # descriptors 1 and 2 of user code go to a private file, never to verigrad's
    except OSError:
        capture = None
    unhide_numpy_warnings()
    state = _ProcessState()
    threads = set(threading.enumerate())
    kept: dict[str, np.ndarray] = {}
    code_cache: dict = {}
    broken = False
    while True:
        try:
            msg = conn.recv()
        except BaseException:  # noqa: BLE001 - end of file, or the parent is gone
            break
        if msg is None:
            break
        if broken:
            with contextlib.suppress(BaseException):
                conn.send(_RETIRED)
            break
        ref, encoded = msg
        try:
            calls = _decode(encoded, kept)
        except BaseException as exc:  # noqa: BLE001 - out of step with the parent (never expected): retire
            reply, retire = ("crashed", f"{ref.text}: the worker could not read the call: {type(exc).__name__}: "
                             f"{exc}", "", None), True
        else:
            reply = _run_batch(ref, calls, code_cache, capture)
            del calls, encoded
            # a thread the user's code left running could change later calls: this worker retires
            retire = any(t.is_alive() for t in threading.enumerate() if t not in threads)
        try:
            conn.send((*reply, retire))
        except OSError:  # the user's code closed the descriptor of this pipe (os.closerange)
            os._exit(_EXIT_PIPE_CLOSED)
        except BaseException as exc:  # noqa: BLE001 - an unpicklable result
            try:
                conn.send(("crashed", f"{ref.text}: result could not be returned: {type(exc).__name__}: "
                           f"{safe_str(exc)}", reply[2], None, retire))
            except BaseException:  # noqa: BLE001
                os._exit(_EXIT_PIPE_CLOSED)
        del reply
        if retire:
            break
        try:
            state.restore()  # the next batch finds the process as the worker started
        except BaseException:  # noqa: BLE001 - user code broke something that cannot be put back
            broken = True
    os._exit(0)


#: worker processes started by this process (tests count them)
_started = 0


def workers_started() -> int:
    """How many worker processes this process has started (for tests and benchmarks)."""
    return _started


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self):
        global _started
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, self.conn, os.getpid()), daemon=True,
                                name="verigrad-worker")
        self.proc.start()
        child.close()
        _started += 1
        self.encoder = _Encoder()

    def stop(self, *, kill: bool = False) -> None:
        """End the worker: ask it to exit (or kill it), and reap it."""
        if not kill:
            with contextlib.suppress(Exception):
                self.conn.send(None)
        with contextlib.suppress(Exception):
            self.conn.close()
        if not kill:
            self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        with contextlib.suppress(Exception):
            self.proc.close()


class _Workers:
    """The worker of one scope: started at the first call, replaced after a crash or a timeout."""

    def __init__(self):
        self._worker: _Worker | None = None
        self._busy = False

    def call(self, ref: CodeRef, calls: list[dict], timeout: float, t0: float) -> CallResult:
        for _attempt in range(3):
            if self._worker is None:
                self._worker = _Worker()
            w = self._worker
            self._busy = True
            try:
                w.conn.send((ref, w.encoder.encode(calls)))
            except OSError:  # it had died between calls: start another
                self._discard(kill=True)
                continue
            except BaseException:  # the request may be half sent (and the kept arrays out of step): end it
                self._discard(kill=True)
                raise
            if not w.conn.poll(timeout):
                self._discard(kill=True)
                return CallResult(error=f"{ref.text} did not return within {timeout:g} s (killed)",
                                  kind="timeout", seconds=time.perf_counter() - t0)
            try:
                reply = w.conn.recv()
            except (EOFError, OSError):
                w.proc.join(timeout=5)
                code = w.proc.exitcode
                self._discard(kill=True)
                if code == _EXIT_PIPE_CLOSED:
                    why = ("closed file descriptors it did not open (os.close / os.closerange), among them the "
                           "worker's pipe to verigrad, so its result could not be returned")
                else:
                    why = f"ended the process (exit code {code}) without returning"
                return CallResult(error=f"{ref.text} {why}", kind="crashed", seconds=time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - a reply that cannot be read is the candidate's failure
                self._discard(kill=True)
                return CallResult(error=f"{ref.text}: its result could not be read: {type(exc).__name__}: "
                                  f"{escape_text(safe_str(exc), 500)}", kind="crashed",
                                  seconds=time.perf_counter() - t0)
            self._busy = False
            if reply == _RETIRED:  # its state could not be restored after the last batch: a fresh worker
                self._discard(kill=True)
                continue
            kind, error, stdout, values, retire = reply
            if retire:
                self._discard(kill=True)
            # what comes back is untrusted text: escaped here, where it enters verigrad's records
            return CallResult(values=escape_values(values or []), error=escape_text(error),
                              kind=kind, stdout=escape_text(stdout or ""), seconds=time.perf_counter() - t0)
        return CallResult(error=f"{ref.text}: could not start a worker process", kind="crashed",
                          seconds=time.perf_counter() - t0)

    def _discard(self, *, kill: bool) -> None:
        w, self._worker, self._busy = self._worker, None, False
        if w is not None:
            w.stop(kill=kill)

    def close(self) -> None:
        self._discard(kill=self._busy)


_SCOPE: contextvars.ContextVar[_Workers | None] = contextvars.ContextVar("verigrad_workers", default=None)


@contextlib.contextmanager
def worker_scope():
    """Within this block, :func:`call_isolated` reuses one worker process for every call.

    The worker starts at the first call and is stopped when the block ends (killed if it
    does not exit at once, or if the block ends during a call); a call that crashed or
    timed out has its worker replaced.  :func:`verigrad.runner.case.run_case` holds one
    scope per case (with ``--jobs``, each pool process its own).
    """
    workers = _Workers()
    token = _SCOPE.set(workers)
    try:
        yield workers
    finally:
        _SCOPE.reset(token)
        workers.close()


def call_isolated(ref: CodeRef, calls: list[dict], *, timeout: float) -> CallResult:
    """Call ``ref`` once per keyword dict in ``calls``, in a worker process.

    The module is imported afresh for the batch (module state is shared by the calls
    of one batch only); inside a :func:`worker_scope` the scope's worker is reused,
    otherwise a worker is started for this batch and stopped after it.

    Parameters
    ----------
    ref : CodeRef
    calls : list of dict
        Keyword arguments per call (numpy arrays).  Each call receives its own copies.
    timeout : float
        Seconds for the whole batch; the worker is killed after it.

    Returns
    -------
    CallResult
    """
    t0 = time.perf_counter()
    workers = _SCOPE.get()
    if workers is not None:
        return workers.call(ref, calls, timeout, t0)
    with worker_scope() as workers:
        return workers.call(ref, calls, timeout, t0)


def normalise_gradient(value: Any, variables: Mapping[str, tuple[int, ...]], label: str) -> tuple[dict, list[str]]:
    """Check a returned gradient against the declared variables.

    Parameters
    ----------
    value : mapping or sequence
        What the candidate returned.
    variables : mapping of str to shape
        Declared variables in order.
    label : str
        ``case › candidate › dtype`` for messages.

    Returns
    -------
    (dict of str to ndarray, list of str)
        Arrays per variable (validated shape) and problems (empty when valid).
        Size-1 arrays are accepted for scalar variables.
    """
    problems: list[str] = []
    names = list(variables)
    if isinstance(value, Mapping):
        got = dict(value)
        missing = [n for n in names if n not in got]
        extra = [k for k in got if k not in variables]
        if missing:
            problems.append(f"{label}: missing variable(s) {', '.join(missing)} in the returned mapping "
                            f"(returned keys: {', '.join(got) or 'none'})")
        if extra:
            problems.append(f"{label}: returned key(s) {', '.join(extra)} that are not variables "
                            f"(variables: {', '.join(names)})")
    elif isinstance(value, (list, tuple)) and len(value) == len(names):
        got = dict(zip(names, value))
    else:
        kind = getattr(value, "type_name", type(value).__name__)
        n = f" of length {len(value)}" if isinstance(value, (list, tuple)) else ""
        problems.append(f"{label}: returned a {kind}{n}; expected a mapping {{variable: array}} "
                        f"or a sequence of {len(names)} arrays in the order {', '.join(names)}")
        return {}, problems
    out: dict[str, np.ndarray] = {}
    for n in names:
        if n not in got:
            continue
        arr = got[n]
        if isinstance(arr, list):  # nested lists of numbers (0-d arrays by now): read as numpy.asarray would
            try:
                arr = np.asarray(arr)
            except (ValueError, TypeError):  # ragged: refused below, as given
                pass
        if not isinstance(arr, np.ndarray) or (arr.dtype.kind not in "fiuc" and not is_float_dtype(arr.dtype)) \
                or arr.dtype == object:  # is_float_dtype: bfloat16 is numpy kind "V"
            what = getattr(arr, "type_name", type(arr).__name__)
            problems.append(f"{label}: {n} is not a numeric array (got {what}: {str(arr)[:60]})")
            continue
        if arr.dtype.kind == "c":
            problems.append(f"{label}: {n} is complex ({arr.dtype}); a real gradient is expected")
            continue
        shape = variables[n]
        if arr.shape != shape:
            if shape == () and arr.size == 1:
                arr = arr.reshape(())
            else:
                problems.append(f"{label}: {n} has shape {list(arr.shape)}, expected {list(shape)}")
                continue
        out[n] = arr
    return out, problems


def loss_code_evaluator(case):
    """A function evaluating the case's ``loss_code`` at a list of float points, isolated.

    Each list is one batch of :func:`call_isolated` (the scope's worker inside
    :func:`worker_scope`), with a budget of 10 x ``[limits] candidate_seconds``.
    """
    # integer constants (labels, indices) are not graph leaves, so the finite-difference points lack
    # them: every call gets them, as int64 copies (the user's code may write into its arguments)
    integers = [s for s in getattr(case, "symbols", ()) if getattr(s, "integer", False)]

    def evaluate(calls):
        if integers:
            calls = [{**{s.name: np.array(s.value, dtype=np.int64) for s in integers}, **c} for c in calls]
        res = call_isolated(case.loss_code, calls, timeout=case.limits.candidate_seconds * 10)
        if not res.ok:
            raise CandidateError(f"{case.path}::{case.name}::loss_code: {res.error}")
        out = []
        for v in res.values:
            a = np.asarray(v)
            real = is_float_dtype(a.dtype) or a.dtype.kind == "c"  # bfloat16 is numpy kind "V"
            if not real or a.size != 1:
                if not real and a.size == 1:
                    raise CandidateError(f"{case.path}::{case.name}::loss_code: returned {a.dtype} {a!r}, "
                                         f"expected a float (or complex, for the complex step) scalar")
                raise CandidateError(f"{case.path}::{case.name}::loss_code: returned shape {list(a.shape)}, "
                                     f"expected a scalar")
            out.append(a.reshape(()))
        return np.array(out)
    return evaluate
