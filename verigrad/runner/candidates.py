"""Load and call user code (candidates and ``loss_code``) in isolation.

Only the module named in the case file is imported, from its own directory.
Each batch of calls runs in a forked child process, so a candidate that raises,
loops forever (it is killed after the time limit), prints, calls ``sys.exit``,
or changes global numpy/mpmath state cannot break the run or the other
results.  Results come back through a pipe as plain numpy arrays.

Calling convention (docs/case-files.md): the function receives every symbol as a
keyword argument - numpy arrays of the dtype under test, 0-d for scalars - and
returns a mapping from variable name to an array of that variable's shape (a
sequence in declaration order is accepted too).  ``loss_code`` functions return
a scalar.
"""

from __future__ import annotations

import contextlib
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
from verigrad.spec import CodeRef

__all__ = ["CallResult", "call_isolated", "load_function", "normalise_gradient", "loss_code_evaluator"]


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
        ``"timeout"``, ``"crashed"``.
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
    path = Path(ref.path)
    if not path.is_file():
        raise CandidateError(f"{ref.text}: file {path} not found", kind="load")
    directory = str(path.parent.resolve())
    name = f"_verigrad_user_{abs(hash(str(path.resolve())))}"
    before = set(sys.modules)
    sys.path.insert(0, directory)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - user code may raise anything
            raise CandidateError(f"{ref.text}: importing {path.name} raised {type(exc).__name__}: {exc}",
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


def _child(conn, ref: CodeRef, calls: list[dict]) -> None:
    buf = io.StringIO()
    try:
        sys.stdin = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                fn = load_function(ref)
            except CandidateError as exc:
                conn.send(("load", str(exc), buf.getvalue(), None))
                return
            problem = _signature_problem(fn, list(calls[0]) if calls else [])
            if problem:
                conn.send(("signature", f"{ref.text}: {problem}", buf.getvalue(), None))
                return
            out = []
            for kw in calls:
                try:
                    res = fn(**kw)
                except BaseException as exc:  # noqa: BLE001
                    tb = traceback.extract_tb(exc.__traceback__)
                    frame = next((f for f in reversed(tb) if Path(f.filename).resolve() == Path(ref.path).resolve()),
                                 tb[-1] if tb else None)
                    at = f" at {Path(frame.filename).name}:{frame.lineno} ({frame.line})" if frame else ""
                    conn.send(("raised", f"{ref.text} raised {type(exc).__name__}: {exc}{at}", buf.getvalue(), None))
                    return
                out.append(_plain(res))
        conn.send(("ok", "", buf.getvalue(), out))
    except BaseException as exc:  # noqa: BLE001 - anything unpicklable etc.
        with contextlib.suppress(Exception):
            conn.send(("crashed", f"{ref.text}: result could not be returned: {type(exc).__name__}: {exc}",
                       buf.getvalue(), None))
    finally:
        conn.close()


def _plain(value: Any) -> Any:
    """Make a return value picklable and detached (numpy arrays, dicts, lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    try:
        return np.array(value)
    except Exception:  # noqa: BLE001
        return repr(value)


def call_isolated(ref: CodeRef, calls: list[dict], *, timeout: float) -> CallResult:
    """Call ``ref`` once per keyword dict in ``calls``, in a forked child process.

    Parameters
    ----------
    ref : CodeRef
    calls : list of dict
        Keyword arguments per call (numpy arrays).
    timeout : float
        Seconds for the whole batch; the child is killed after it.

    Returns
    -------
    CallResult
    """
    t0 = time.perf_counter()
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, ref, calls), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            proc.kill()
            proc.join()
            return CallResult(error=f"{ref.text} did not return within {timeout:g} s (killed)",
                              kind="timeout", seconds=time.perf_counter() - t0)
        try:
            kind, error, stdout, values = parent.recv()
        except (EOFError, OSError):
            proc.join()
            return CallResult(error=f"{ref.text} ended the process (exit code {proc.exitcode}) without returning",
                              kind="crashed", seconds=time.perf_counter() - t0)
    finally:
        parent.close()
    proc.join(timeout=5)
    if proc.is_alive():
        proc.kill()
    return CallResult(values=values or [], error=error, kind=kind, stdout=stdout, seconds=time.perf_counter() - t0)


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
        kind = type(value).__name__
        n = f" of length {len(value)}" if isinstance(value, (list, tuple)) else ""
        problems.append(f"{label}: returned a {kind}{n}; expected a mapping {{variable: array}} "
                        f"or a sequence of {len(names)} arrays in the order {', '.join(names)}")
        return {}, problems
    out: dict[str, np.ndarray] = {}
    for n in names:
        if n not in got:
            continue
        arr = got[n]
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiuc" or arr.dtype == object:
            problems.append(f"{label}: {n} is not a numeric array (got {type(arr).__name__}: {str(arr)[:60]})")
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
    """A function evaluating the case's ``loss_code`` at a list of float points, in one isolated child."""
    def evaluate(calls):
        res = call_isolated(case.loss_code, calls, timeout=case.limits.candidate_seconds * 10)
        if not res.ok:
            raise CandidateError(f"{case.path}::{case.name}::loss_code: {res.error}")
        out = []
        for v in res.values:
            a = np.asarray(v)
            if a.dtype.kind not in "fc" or a.size != 1:
                if a.dtype.kind not in "fc" and a.size == 1:
                    raise CandidateError(f"{case.path}::{case.name}::loss_code: returned {a.dtype} {a!r}, "
                                         f"expected a float (or complex, for the complex step) scalar")
                raise CandidateError(f"{case.path}::{case.name}::loss_code: returned shape {list(a.shape)}, "
                                     f"expected a scalar")
            out.append(a.reshape(()))
        return np.array(out)
    return evaluate
