"""Case -> truths, float baselines, grades and studies (no printing here).

:func:`run_case` is the unit of work of ``verigrad run``: it never raises for a
problem of the case or of one candidate; it returns a :class:`CaseReport` that
says what happened, so the other candidates and cases still run.  The CLI glue
at the bottom (``cmd_run``/``cmd_study``) only wires arguments to these
functions and to :mod:`verigrad.report`.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from verigrad.casefile.loader import find_case_files, load_case, point_in_dtype
from verigrad.runner.candidates import call_isolated, normalise_gradient
from verigrad.errors import CaseError, UsageError, VerigradError
from verigrad.engine.model import Model, compile_case
from verigrad.spec import CandidateSpec, Case, Dtype, Expect
from verigrad.engine.truth import Truth, certify

__all__ = ["Result", "CaseReport", "RunReport", "run_case", "run_paths"]


@dataclass(frozen=True)
class Result:
    """One graded candidate (hand-written code or a finite difference) in one dtype.

    Attributes
    ----------
    case, candidate : str
    kind : str
        ``"code"`` (hand-written) or ``"fd"`` (finite difference ``scheme`` at ``step``).
    dtype : str
    expect : str or None
        ``"pass"``/``"fail"`` for code; None for finite differences (informational).
    verdict : str
        ``pass``, ``fail``, ``nonfinite``, ``error``.
    met : bool or None
        Whether the expectation held (None without expectation).
    grade : Grade or None
        The full grade (None when the candidate could not be run).
    message : str
        Why, for errors; the first breadcrumb for failures.
    stdout : str
        What the candidate printed.
    seconds : float
    """

    case: str
    candidate: str
    kind: str
    dtype: str
    expect: str | None
    verdict: str
    met: bool | None
    grade: object | None = None
    message: str = ""
    stdout: str = ""
    seconds: float = 0.0
    scheme: str | None = None
    step: float | None = None
    extra: dict = field(default_factory=dict)
    value: dict | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class CaseReport:
    """Everything about one case file."""

    path: str
    name: str
    description: str = ""
    error: str = ""
    results: tuple[Result, ...] = ()
    truths: dict = field(default_factory=dict)
    seconds: float = 0.0
    parameters: int = 0
    seed: int | None = None
    rng: str | None = None
    loss_code: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error and all(r.met is not False for r in self.results)


@dataclass(frozen=True)
class RunReport:
    cases: tuple[CaseReport, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cases)

    @property
    def results(self) -> list[Result]:
        return [r for c in self.cases for r in c.results]

    def summary(self) -> dict:
        res = self.results
        return {
            "cases": len(self.cases),
            "case_errors": sum(1 for c in self.cases if c.error),
            "results": len(res),
            "expectations_met": sum(1 for r in res if r.met is True),
            "expectations_not_met": sum(1 for r in res if r.met is False),
            "informational": sum(1 for r in res if r.met is None),
            "ok": self.ok,
        }


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
    from verigrad.studies import fd_gradient

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


def run_paths(paths, *, dtypes=None, with_fd: bool = True, progress=None,
              on_case: Callable[[CaseReport], None] | None = None) -> RunReport:
    """Run every case file under ``paths`` (sorted); duplicate case names are an error of the later file."""
    t0 = time.perf_counter()
    files = find_case_files(paths)
    reports: list[CaseReport] = []
    names: dict[str, str] = {}
    for f in files:
        rep = run_case(f, dtypes=dtypes, with_fd=with_fd, progress=progress)
        if not rep.error and rep.name in names:
            rep = CaseReport(str(f), rep.name, error=f"{f}::{rep.name}::name: duplicate case name "
                             f"(also in {names[rep.name]})\n  hint: case names are unique within a directory")
        names.setdefault(rep.name, str(f))
        reports.append(rep)
        if on_case:
            on_case(rep)
    return RunReport(tuple(reports), time.perf_counter() - t0)


# -- CLI glue ---------------------------------------------------------------------------


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", default=["cases"], help="case files or directories (default: cases/)")
    p.add_argument("--dtype", action="append", choices=["float32", "float64"],
                   help="restrict to these dtypes (default: each case's [check] dtypes)")
    p.add_argument("--json", metavar="FILE", help="write the JSON report (docs/report-schema.md)")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    p.add_argument("--no-fd", action="store_true", help="skip the finite-difference schemes of [check]")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="cases run in N worker processes (default 1); reports are identical for any N")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", help="print only failures")
    g.add_argument("-v", "--verbose", action="store_true", help="print every entry of every grade")


def add_study_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", help="a case file (.toml)")
    p.add_argument("--dtype", action="append", choices=["float32", "float64"], help="repeatable (default both)")
    p.add_argument("--scheme", action="append", help="finite-difference scheme, repeatable (default: forward, "
                   "central, central4, complex-step when analytic)")
    p.add_argument("--variable", help="variable to perturb (default: the first)")
    p.add_argument("--index", help="entry of the variable, e.g. 1,2 (default: the first entry)")
    p.add_argument("--direction", choices=["random"], help="a seeded random unit direction instead of one entry")
    p.add_argument("--seed", type=int, default=0, help="seed of the random direction (default 0)")
    p.add_argument("--steps", help="FROM:TO:COUNT, log-spaced, both ends included (default: per dtype)")
    p.add_argument("--step-mode", choices=["absolute", "relative"], default="absolute",
                   help="absolute h, or h*max(1,|x_i|) (default absolute)")
    p.add_argument("--representable", action="store_true", help="use (x+h)-x so that the step error S vanishes")
    p.add_argument("--plot", metavar="FILE", help="write the error-vs-step figure (.png, .svg, .pdf)")
    p.add_argument("--json", metavar="FILE", help="write the study as JSON (docs/report-schema.md)")
    p.add_argument("--html", metavar="FILE", help="write the study as a self-contained HTML page with its figure")


def cmd_run(args, console, err) -> int:
    from verigrad import __version__
    from verigrad.report import jsonio
    from verigrad.report.terminal import run_summary, case_details

    dtypes = tuple(Dtype(d) for d in dict.fromkeys(args.dtype)) if args.dtype else None
    files = find_case_files(args.paths)
    reports: list[CaseReport] = []
    t0 = time.perf_counter()
    interrupted = False
    from rich.progress import Progress, BarColumn, TextColumn, TimeElapsedColumn

    show_progress = console.is_terminal and not args.quiet
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=err, transient=True, disable=not show_progress,
                        auto_refresh=False)
    names: dict[str, str] = {}
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: use 1 or more worker processes")
    try:
        with progress, _case_reports(files, dtypes, not args.no_fd, args.jobs) as next_report:
            task = progress.add_task("verigrad run", total=len(files))
            for f in files:
                def note(msg, _task=task):
                    progress.update(_task, description=msg[:50])
                    progress.refresh()
                rep = next_report(f, note)
                if not rep.error and rep.name in names:
                    rep = CaseReport(str(f), rep.name, error=f"{f}::{rep.name}::name: duplicate case name (also in "
                                     f"{names[rep.name]})\n  hint: case names are unique within a directory")
                names.setdefault(rep.name, str(f))
                reports.append(rep)
                progress.advance(task)
                progress.refresh()
                if not args.quiet or not rep.ok:
                    console.print(case_details(rep, verbose=args.verbose, quiet=args.quiet))
    except KeyboardInterrupt:
        interrupted = True
    run = RunReport(tuple(reports), time.perf_counter() - t0)
    console.print(run_summary(run, quiet=args.quiet))
    if args.json:
        from verigrad.report.runjson import run_document

        jsonio.write_atomic(args.json, jsonio.dumps(run_document(run, version=__version__, interrupted=interrupted)))
    if args.junit:
        from verigrad.report.junit import junit_xml

        jsonio.write_atomic(args.junit, junit_xml(run))
    if args.html:
        from verigrad.report.html import run_html

        jsonio.write_atomic(args.html, run_html(run, version=__version__))
    if interrupted:
        return 130
    return 0 if run.ok else 1


@contextlib.contextmanager
def _case_reports(files, dtypes, with_fd: bool, jobs: int):
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


def cmd_study(args, console, err) -> int:
    from verigrad.cli.study import run_study_command

    return run_study_command(args, console, err)
