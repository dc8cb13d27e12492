"""Case -> truths, float baselines, grades and studies (no printing here).

:func:`run_case` is the unit of work of ``verigrad run``: it never raises for a
problem of the case or of one candidate; it returns a :class:`CaseReport` that
says what happened, so the other candidates and cases still run.  The command
line (:mod:`verigrad.cli`) wires arguments to these functions and to
:mod:`verigrad.report`.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable

import numpy as np

from verigrad.casefile.loader import find_case_files, load_case, point_in_dtype
from verigrad.runner.candidates import call_isolated, normalise_gradient
from verigrad.errors import VerigradError
from verigrad.engine.model import Model, compile_case
from verigrad.spec import CandidateSpec, Case, Dtype, Expect
from verigrad.engine.truth import Truth, certify
from verigrad.runner.records import CaseReport, Result, RunReport

__all__ = ["Result", "CaseReport", "RunReport", "run_case", "run_paths", "case_reports", "unique_name"]


def truth_digits(case: Case) -> int:
    """Certified digits used for grading: the case's [check] digits, at least 20 (float64 to ~1e-4 ulp)."""
    return max(case.check.digits, 20)


def _tolerances(case: Case):
    from verigrad.grading import Tolerances

    kw = {}
    if case.check.tolerance_factor is not None:
        kw["factor"] = case.check.tolerance_factor
    if case.check.floor_ulps is not None:
        kw["floor_ulps"] = case.check.floor_ulps
    return Tolerances(**kw)


def baseline_gradient(model: Model, point: dict[str, np.ndarray], dtype: Dtype) -> dict[str, np.ndarray]:
    """The float baseline: the exact gradient graph evaluated naively in ``dtype``."""
    vals = model.float_eval(list(model.gradient.values()), point, dtype.numpy)
    return dict(zip(model.gradient, vals))


CLASSIC_SCHEME = "central"
CLASSIC_EPS = 1e-7


def classic_reference(model: Model, dtype: Dtype) -> dict[str, np.ndarray] | None:
    """The oracle of the classic gradient check: central differences, absolute eps = 1e-7, in ``dtype``.

    Like the classic exercise, it differences the case's own forward pass (``loss_code``) when there is one.
    """
    from verigrad.schemes import StepMode
    from verigrad.fd import fd_gradient

    from verigrad.runner.candidates import loss_code_evaluator

    lv = loss_code_evaluator(model.case) if model.case.loss_code is not None else None
    try:
        return fd_gradient(model, dtype=dtype, scheme=CLASSIC_SCHEME, step=CLASSIC_EPS, step_mode=StepMode.ABSOLUTE,
                           loss_values=lv)
    except VerigradError:
        return None


def grade_candidate(model: Model, cand: CandidateSpec, truth: Truth, baseline: dict[str, np.ndarray],
                    *, timeout: float, classic_fd: dict[str, np.ndarray] | None = None) -> Result:
    """Call one candidate in isolation at ``truth``'s point and grade it."""
    from verigrad.grading import grade

    case = model.case
    dtype = truth.dtype
    label = f"{case.name} › {cand.name} › {dtype.value}"
    kwargs = {k: np.array(v, copy=True) for k, v in truth.point.items()}
    call = call_isolated(cand.code, [kwargs], timeout=timeout)

    def result(verdict: str, message: str, g=None) -> Result:
        expect = cand.expectation(dtype)
        met = (verdict == "pass") == (expect is Expect.PASS)
        if verdict == "error" and expect is Expect.FAIL:
            met = False  # a buggy candidate must be *caught*, not crash
        return Result(case.name, cand.name, "code", dtype.value, expect.value, verdict, met, g, message,
                      call.stdout, call.seconds)

    if not call.ok:
        return result("error", call.error)
    shapes = {n: model.shape(n) for n in model.gradient}
    value, problems = normalise_gradient(call.values[0], shapes, label)
    transposed = _transposed_returns(call.values[0], shapes, truth, label)
    if transposed and len(transposed) == len(problems):
        return result("fail", "; ".join(transposed))
    if problems:
        return result("error", "; ".join(problems))
    from verigrad.kinks import kink_acceptance  # on a kink: grade against the nearest valid subgradient

    kinks = kink_acceptance(model, truth, value, baseline)
    g = grade(truth=kinks.truth, value=value, baseline=kinks.baseline, dtype=dtype.numpy, case=case.name,
              candidate=cand.name, tolerances=_tolerances(case))
    verdict = g.verdict.value.lower()
    msgs = g.messages() if hasattr(g, "messages") else []
    res = result(verdict, msgs[0] if msgs else "", g)
    res = Result(**{**res.__dict__, "value": value})
    if kinks.at_kink:
        res = Result(**{**res.__dict__, "extra": {**res.extra, "kinks": {
            "conventions": list(kinks.conventions), "notes": list(kinks.notes)}}})
    if classic_fd is not None and verdict in ("pass", "fail"):
        from verigrad.runner.fdcheck import classic_verdict

        with np.errstate(all="ignore"):
            classic = classic_verdict(value, classic_fd, truth_verdict_pass=(verdict == "pass"))
        classic.update(scheme=CLASSIC_SCHEME, eps=CLASSIC_EPS)
        res = Result(**{**res.__dict__, "extra": {**res.extra, "classic": classic}})
    return res


def _transposed_returns(value, shapes, truth, label) -> list[str]:
    """Messages for 2-D variables returned with the transposed shape (a bug shape, so a *fail*)."""
    if isinstance(value, (list, tuple)) and len(value) == len(shapes):
        value = dict(zip(shapes, value))
    if not isinstance(value, dict):
        return []
    out = []
    for name, shape in shapes.items():
        v = value.get(name)
        if isinstance(v, np.ndarray) and len(shape) == 2 and v.shape == shape[::-1] and shape[0] != shape[1]:
            g = truth.as_float64()[name]
            with np.errstate(all="ignore"):
                close = np.allclose(np.asarray(v, np.float64).T, g, rtol=1e-3, atol=1e-3 * (np.abs(g).max() or 1))
            what = "its transpose matches the truth: transposed" if close else "its transpose does not match either"
            out.append(f"{label.split(' › ')[0]} › {name} › {truth.dtype.value}: returned shape {list(v.shape)} for a "
                       f"variable of shape {list(shape)}; {what}")
    return out


def grade_loss_code(model: Model, truth: Truth) -> dict:
    """The case's own forward pass at x_p against the exact loss: value, absolute error, error in ulps.

    Returns ``{"value", "error", "ulps", "dtype", "returned_dtype"}`` or ``{"error_message"}``.
    """
    import mpmath

    from verigrad.runner.candidates import loss_code_evaluator

    try:
        got = loss_code_evaluator(model.case)([{k: np.array(v) for k, v in truth.point.items()}])[0]
    except VerigradError as exc:
        return {"error_message": str(exc)}
    exact = truth.loss[()]
    dt = truth.dtype.numpy
    ulp = float(np.spacing(dt.type(abs(float(exact))))) or float(np.finfo(dt).tiny)
    with mpmath.workprec(256):
        err = float(abs(mpmath.mpf(float(got)) - exact)) if np.isfinite(got) else float("inf")
    return {"dtype": truth.dtype.value, "value": float(got), "returned_dtype": str(np.asarray(got).dtype),
            "error": err, "ulps": err / ulp}


def run_case(path: str | Path, *, dtypes: tuple[Dtype, ...] | None = None, with_fd: bool = True,
             progress: Callable[[str], None] | None = None) -> CaseReport:
    """Load, compile, certify and grade one case file; never raises for case problems."""
    t0 = time.perf_counter()
    path = Path(path)
    note = progress or (lambda _msg: None)
    try:
        case = load_case(path)
        model = compile_case(case)
    except VerigradError as exc:
        return CaseReport(str(path), path.stem, error=str(exc), seconds=time.perf_counter() - t0)
    results: list[Result] = []
    truths: dict[str, Truth] = {}
    loss_code: dict[str, dict] = {}
    try:
        for dt in dtypes or case.check.dtypes:
            point = point_in_dtype(model.point, dt)
            note(f"{case.name} › {dt.value} › truth")
            truth = certify(model, point, dt, digits=truth_digits(case))
            truths[dt.value] = truth
            baseline = baseline_gradient(model, point, dt)
            if case.loss_code is not None:
                loss_code[dt.value] = grade_loss_code(model, truth)
            classic_fd = classic_reference(model, dt) if case.candidates else None
            for cand in case.candidates:
                note(f"{case.name} › {cand.name} › {dt.value}")
                results.append(grade_candidate(model, cand, truth, baseline, timeout=case.limits.candidate_seconds,
                                               classic_fd=classic_fd))
            if with_fd and case.check.schemes:
                from verigrad.runner.fdcheck import grade_schemes

                note(f"{case.name} › finite differences › {dt.value}")
                results.extend(grade_schemes(model, truth, baseline))
    except VerigradError as exc:
        return CaseReport(str(path), case.name, case.description, error=str(exc), results=tuple(results),
                          truths=truths, seconds=time.perf_counter() - t0, parameters=case.parameter_count,
                          seed=case.seed, rng=case.rng.value, loss_code=loss_code)
    return CaseReport(str(path), case.name, case.description, results=tuple(results), truths=truths,
                      seconds=time.perf_counter() - t0, parameters=case.parameter_count, seed=case.seed,
                      rng=case.rng.value, loss_code=loss_code)


def unique_name(rep: CaseReport, path, seen: dict[str, str]) -> CaseReport:
    """``rep``, or an error report when an earlier file (recorded in ``seen``, updated here) has its name."""
    if not rep.error and rep.name in seen:
        rep = CaseReport(str(path), rep.name, error=f"{path}::{rep.name}::name: duplicate case name "
                         f"(also in {seen[rep.name]})\n  hint: case names are unique within a directory")
    seen.setdefault(rep.name, str(path))
    return rep


def run_paths(paths, *, dtypes=None, with_fd: bool = True, progress=None,
              on_case: Callable[[CaseReport], None] | None = None) -> RunReport:
    """Run every case file under ``paths`` (sorted); duplicate case names are an error of the later file."""
    t0 = time.perf_counter()
    files = find_case_files(paths)
    reports: list[CaseReport] = []
    names: dict[str, str] = {}
    for f in files:
        rep = unique_name(run_case(f, dtypes=dtypes, with_fd=with_fd, progress=progress), f, names)
        reports.append(rep)
        if on_case:
            on_case(rep)
    return RunReport(tuple(reports), time.perf_counter() - t0)


@contextlib.contextmanager
def case_reports(files, dtypes, with_fd: bool, jobs: int):
    """Yield ``next_report(path, note) -> CaseReport``; with jobs > 1 the cases run in a process pool.

    Reports come back in file order whatever the number of jobs, so output and JSON do not
    depend on it (candidate calls fork their own children from the workers).
    """
    if jobs == 1:
        yield lambda f, note: run_case(f, dtypes=dtypes, with_fd=with_fd, progress=note)
        return
    import concurrent.futures as cf
    import multiprocessing as mp

    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork")) as pool:
        futures = {f: pool.submit(run_case, f, dtypes=dtypes, with_fd=with_fd) for f in files}
        try:
            yield lambda f, note: (note(f"{Path(f).stem} (worker)"), futures[f].result())[1]
        except BaseException:
            for fut in futures.values():
                fut.cancel()
            raise
