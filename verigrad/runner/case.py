"""Case -> truths, float baselines, grades and studies (no printing here).

:func:`run_case` is the unit of work of ``verigrad run``: it never raises for a
problem of the case or of one candidate; it returns a :class:`CaseReport` that
says what happened, so the other candidates and cases still run.  The command
line (:mod:`verigrad.cli`) wires arguments to these functions and to
:mod:`verigrad.report`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
import weakref

import numpy as np

from verigrad.casefile.loader import find_case_files, load_case, point_in_dtype
from verigrad.runner.candidates import call_isolated, normalise_gradient, worker_scope
from verigrad.errors import DomainError, VerigradError
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
    if case.check.entry_sigmas is not None:
        from verigrad.grading.errormodel import SPREAD_SIGMAS

        kw["entry_lambda"] = case.check.entry_sigmas / SPREAD_SIGMAS
    return Tolerances(**kw)


def baseline_gradient(model: Model, point: dict[str, np.ndarray], dtype: Dtype) -> dict[str, np.ndarray]:
    """The float baseline: the exact gradient graph evaluated naively in ``dtype``."""
    vals = model.float_eval(list(model.gradient.values()), point, dtype.numpy)
    return dict(zip(model.gradient, vals))


CLASSIC_SCHEME = "central"
CLASSIC_EPS = 1e-7
#: the classic check differences every coordinate while its 2N loss calls are estimated to
#: cost at most this many seconds; beyond that it samples (the run must stay O(N), not O(N^2))
CLASSIC_FULL_SECONDS = 0.5
#: coordinates a sampled classic check differences (the entries grading flagged come first)
CLASSIC_SAMPLE = 256
#: of those, at most this many are entries grading flagged
CLASSIC_FLAGGED = 64
#: seeded random unit directions a sampled classic check adds
CLASSIC_DIRECTIONS = 4


@dataclass(frozen=True)
class ClassicPlan:
    """How the classic-check note is computed for one case × dtype.

    Attributes
    ----------
    full : dict of str to ndarray or None
        The central difference of every coordinate (when that is cheap), shared by the candidates.
    sampled : bool
        True when each candidate is checked on a sample instead (:func:`classic_sample`).
    seed : int
        Seed of the sample's coordinates and directions (the case's ``seed``, or 0).
    seconds_per_call : float
        Measured time of one loss evaluation in the dtype (the basis of the choice).
    """

    full: dict | None
    sampled: bool
    seed: int
    seconds_per_call: float


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


def classic_plan(model: Model, point: dict[str, np.ndarray], dtype: Dtype) -> ClassicPlan:
    """Full classic check when 2N loss calls are cheap (:data:`CLASSIC_FULL_SECONDS`), else a sample.

    A gradient of at most :data:`CLASSIC_SAMPLE` entries is always differenced in full (a
    sample would be all of it).

    The cost of one loss call is measured at the point (the best of three evaluations; one
    call of ``loss_code`` when the case has one, including its round trip to the case's worker process).
    """
    from verigrad.runner.candidates import loss_code_evaluator

    case = model.case
    n = case.parameter_count
    seed = case.seed if case.seed is not None else 0
    if case.loss_code is not None:
        t0 = time.perf_counter()
        try:
            loss_code_evaluator(case)([{k: np.array(v) for k, v in point.items()}])
        except VerigradError:
            return ClassicPlan(None, False, seed, float("nan"))
        per_call = time.perf_counter() - t0
    else:
        per_call = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            model.float_eval([model.loss], point, dtype.numpy)
            per_call = min(per_call, time.perf_counter() - t0)
    if n <= CLASSIC_SAMPLE or 2 * n * per_call <= CLASSIC_FULL_SECONDS:
        return ClassicPlan(classic_reference(model, dtype), False, seed, per_call)
    return ClassicPlan(None, True, seed, per_call)


def classic_sample(model: Model, dtype: Dtype, value: dict[str, np.ndarray], grade, *, seed: int
                   ) -> tuple[dict, dict] | None:
    """The classic check on a sample: the flagged entries, random coordinates and random directions.

    Coordinates: up to :data:`CLASSIC_FLAGGED` entries that grading found wrong (the worst
    first), then seeded uniformly random coordinates up to :data:`CLASSIC_SAMPLE` in all;
    plus :data:`CLASSIC_DIRECTIONS` seeded random unit directions over every variable.
    Returns ``(candidate values, central differences)`` as two dicts of 1-D float arrays
    (the sampled coordinates per variable, and the directional derivatives under the key
    ``"<directions>"``), ready for :func:`verigrad.runner.fdcheck.classic_verdict`, and the
    coverage record; None when the loss cannot be differenced.
    """
    from verigrad.fd import fd_directional, fd_gradient
    from verigrad.runner.candidates import loss_code_evaluator
    from verigrad.schemes import StepMode

    case = model.case
    shapes = {name: model.shape(name) for name in model.gradient}
    sizes = {name: int(np.prod(shape, dtype=np.int64)) for name, shape in shapes.items()}
    total = sum(sizes.values())
    names = list(shapes)
    offsets = np.cumsum([0] + [sizes[nm] for nm in names])
    chosen: list[int] = []
    wrong = sorted(getattr(grade, "wrong", ()) or (), key=lambda e: -(e.ulps if e.ulps == e.ulps else math.inf))
    for e in wrong[:CLASSIC_FLAGGED]:
        if e.variable in sizes:
            k = names.index(e.variable)
            chosen.append(int(offsets[k] + np.ravel_multi_index(e.index, shapes[e.variable])) if e.index
                          else int(offsets[k]))
    rng = np.random.default_rng(seed)
    want = min(CLASSIC_SAMPLE, total)
    picked = set(chosen)
    while len(picked) < want:
        for j in rng.choice(total, size=min(total, 2 * want), replace=False):
            if len(picked) >= want:
                break
            picked.add(int(j))
    flat = np.array(sorted(picked), dtype=np.int64)
    entries = {nm: flat[(flat >= offsets[k]) & (flat < offsets[k + 1])] - offsets[k] for k, nm in enumerate(names)}
    directions = []
    for _ in range(CLASSIC_DIRECTIONS):
        d = {nm: rng.standard_normal(shapes[nm]) for nm in names}
        norm = math.sqrt(sum(float(np.sum(v * v)) for v in d.values())) or 1.0
        directions.append({nm: v / norm for nm, v in d.items()})
    lv = loss_code_evaluator(case) if case.loss_code is not None else None
    try:
        fd = fd_gradient(model, dtype=dtype, scheme=CLASSIC_SCHEME, step=CLASSIC_EPS, step_mode=StepMode.ABSOLUTE,
                         loss_values=lv, entries=entries)
        fd_dir = fd_directional(model, dtype=dtype, directions=directions, step=CLASSIC_EPS, loss_values=lv)
    except VerigradError:
        return None
    cand, ref = {}, {}
    for nm in names:
        idx = entries[nm]
        cand[nm] = np.asarray(value[nm]).reshape(-1)[idx]
        ref[nm] = fd[nm].reshape(-1)[idx]
    cand["<directions>"] = np.array([sum(float(np.sum(np.asarray(value[nm], np.float64) * d[nm])) for nm in names)
                                     for d in directions])
    ref["<directions>"] = fd_dir.astype(np.float64)
    coverage = {"mode": "sample", "coordinates": int(flat.size), "of": int(total),
                "flagged": int(min(len(wrong), CLASSIC_FLAGGED)), "directions": CLASSIC_DIRECTIONS, "seed": seed}
    return (cand, ref), coverage


#: the baseline error model of a truth (one per case and dtype), shared by every candidate graded
#: against it: it depends on the graph and the point only
_ERROR_MODELS: "weakref.WeakKeyDictionary[Truth, dict]" = weakref.WeakKeyDictionary()
#: per model, the perturbed runs of the error model, shared by float32 and float64
_SPREAD_MEMO: "weakref.WeakKeyDictionary[Model, dict]" = weakref.WeakKeyDictionary()


def _error_model(model: Model, truth: Truth) -> dict[str, np.ndarray]:
    from verigrad.grading import baseline_error_model

    em = _ERROR_MODELS.get(truth)
    if em is None:
        memo = _SPREAD_MEMO.setdefault(model, {})
        em = _ERROR_MODELS[truth] = baseline_error_model(model, truth.point, truth.dtype.numpy, memo=memo)
    return em


def grade_candidate(model: Model, cand: CandidateSpec, truth: Truth, baseline: dict[str, np.ndarray],
                    *, timeout: float, classic_fd: dict[str, np.ndarray] | None = None,
                    classic: ClassicPlan | None = None, other_loss: bool = False) -> Result:
    """Call one candidate in isolation at ``truth``'s point and grade it.

    ``other_loss``: the case's ``loss_code`` disagrees with the declared loss, so the classic
    check (which differences ``loss_code``) differenced another function: its note then says so
    (outcome ``other loss``) instead of calling the verdict a false alarm or a missed bug.
    """
    from verigrad.grading import grade

    case = model.case
    dtype = truth.dtype
    label = f"{case.name} › {cand.name} › {dtype.value}"
    kwargs = {k: np.array(v, copy=True) for k, v in truth.point.items()}
    from verigrad.runner.adapters import FRAMEWORK_IMPORT_SECONDS, FrameworkRef, candidate_ref

    ref = candidate_ref(case, cand)
    call = None
    if isinstance(ref, FrameworkRef):
        # importing PyTorch or JAX (seconds, once per worker) is not the candidate's time: a batch of
        # no calls does it first; what it cannot get past (the framework missing, the module failing
        # to import, a device that is not here) is the candidate's result
        call = call_isolated(ref, [], timeout=timeout + FRAMEWORK_IMPORT_SECONDS)
        call = None if call.kind in ("ok", "signature") else call
    call = call or call_isolated(ref, [kwargs], timeout=timeout)

    def result(verdict: str, message: str, g=None) -> Result:
        expect = cand.expectation(dtype)
        if expect is Expect.PASS:
            # an upcast (float32 never ran) passes only where the case allows it
            met = verdict == "pass" or (verdict == "not exercised" and cand.allow_upcast)
        else:
            met = verdict in ("fail", "nonfinite")  # a buggy candidate must be *caught*, not crash
        if verdict in ("skipped", "unresolved"):
            # its framework is not installed here, or the dtype cannot resolve the gradient at this
            # point: informational, neither met nor failed
            met = None
        return Result(case.name, cand.name, "code", dtype.value, expect.value, verdict, met, g, message,
                      call.stdout, call.seconds)

    if call.kind == "missing":  # a PyTorch/JAX candidate without its framework (docs/frameworks.md)
        return result("skipped", call.error)
    if not call.ok:
        return result("error", call.error)
    beyond = truth_overflow(truth)
    if beyond:
        # the correctly rounded answer is inf: no value of the dtype can be graded as right or wrong
        return result("error", f"{label}: {beyond}")
    shapes = {n: model.shape(n) for n in model.gradient}
    value, problems = normalise_gradient(call.values[0], shapes, label)
    transposed = _transposed_returns(call.values[0], shapes, truth, label)
    if transposed and len(transposed) == len(problems):
        return result("fail", "; ".join(transposed))
    if problems:
        return result("error", "; ".join(problems))
    from verigrad.kinks import kink_acceptance  # on a kink: grade against the nearest valid subgradient

    kinks = kink_acceptance(model, truth, value, baseline)
    graded = kinks.truth
    if not kinks.at_kink and getattr(truth, "backend", None) == "fast" and getattr(truth, "gradient_hi", None):
        # the fast engine's gradient is exactly gradient_hi + gradient_lo: grade the float64 arrays
        # (the same numbers, so the same grade) without an object per entry
        from verigrad.grading import DDTruth

        graded = {n: DDTruth(truth.gradient_hi[n], truth.gradient_lo[n]) for n in kinks.truth}
    # the per-entry tolerance (docs/numerics.md): a bound of the baseline's own rounding error at each
    # entry, in any order of its sums; not on a kink, where the graded value is a subgradient
    emodel = None if kinks.at_kink else _error_model(model, truth)
    g = grade(truth=graded, value=value, baseline=kinks.baseline, dtype=dtype.numpy, case=case.name,
              candidate=cand.name, tolerances=_tolerances(case), error_model=emodel)
    if g.verdict.value == "fail" and len(loss_terms(model)) > 1:
        # the loss is a sum of terms: is the candidate missing one term's gradient, or its sign?
        terms = term_gradients(model, truth.point)
        if terms:
            g = grade(truth=graded, value=value, baseline=kinks.baseline, dtype=dtype.numpy, case=case.name,
                      candidate=cand.name, tolerances=_tolerances(case), term_gradients=terms,
                      error_model=emodel)
    verdict = g.verdict.value.lower()
    msgs = g.messages() if hasattr(g, "messages") else []
    res = result(verdict, msgs[0] if msgs else "", g)
    res = Result(**{**res.__dict__, "value": value})
    if kinks.at_kink:
        res = Result(**{**res.__dict__, "extra": {**res.extra, "kinks": {
            "conventions": list(kinks.conventions), "notes": list(kinks.notes)}}})
    if classic is not None and classic.full is not None:
        classic_fd = classic.full
    if verdict in ("pass", "fail", "not exercised") and (classic_fd is not None or (classic is not None and classic.sampled)):
        from verigrad.runner.fdcheck import classic_verdict

        coverage = {"mode": "full", "coordinates": truth_size(truth), "of": truth_size(truth), "flagged": 0,
                    "directions": 0, "seed": None}
        pair = (value, classic_fd)
        if classic_fd is None:
            sample = classic_sample(model, dtype, value, g, seed=classic.seed)
            pair = None if sample is None else sample[0]
            coverage = None if sample is None else sample[1]
        if pair is not None:
            with np.errstate(all="ignore"):
                note = classic_verdict(*pair, truth_verdict_pass=(verdict != "fail"))
            note.update(scheme=CLASSIC_SCHEME, eps=CLASSIC_EPS, coverage=coverage)
            if other_loss and case.loss_code is not None:
                from verigrad.runner.fdcheck import ClassicOutcome

                note["outcome"] = ClassicOutcome.OTHER_LOSS
            res = Result(**{**res.__dict__, "extra": {**res.extra, "classic": note}})
    return res


def truth_overflow(truth: Truth) -> str:
    """Why ``truth``'s gradient cannot be graded in its dtype, or "" (every entry is finite there).

    An exact gradient entry beyond the dtype's largest value (float16: 65504) rounds to inf:
    no candidate of that dtype can return it, so a ``nonfinite`` verdict would blame the
    candidate for the format. The message names the first such entry.
    """
    dt = truth.dtype.numpy
    for name, g in truth.as_float64().items():
        with np.errstate(over="ignore"):
            over = ~np.isfinite(np.asarray(g, dtype=np.float64).astype(dt))
        if np.any(over):
            first = tuple(int(i) for i in np.argwhere(over)[0]) if over.ndim else ()
            at = f"[{', '.join(map(str, first))}]" if first else ""
            return (f"the exact gradient overflows {truth.dtype.value} at {name}{at} (truth "
                    f"{float(np.asarray(g)[first]):.6g}, largest {truth.dtype.value} {truth.dtype.max:.6g}) and "
                    f"{int(over.sum())} entr{'y' if over.sum() == 1 else 'ies'} in all: no {truth.dtype.value} "
                    f"value represents it, so no candidate can be graded in {truth.dtype.value} here; rescale the "
                    f"loss, or leave {truth.dtype.value} out of [check] dtypes")
    return ""


def truth_size(truth: Truth) -> int:
    """Number of gradient entries of a truth."""
    return int(sum(m.size for m in truth.exact_zero.values()))


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
    """The case's own forward pass at x_p, graded against the declared loss like a candidate.

    The reference is the *float baseline of the loss* (the declared loss expression evaluated
    naively in the dtype): with ``A = |b - L|`` its error, the forward pass passes when
    ``|loss_code - L| <= max(factor A, factor floor_ulps ulp_p(L))`` (the rule of
    :mod:`verigrad.grading`, same ``[check]`` factor and floor).  Beyond it the case fails:
    every other verdict assumes that ``loss_code`` and ``loss`` are the same function.  Where
    the loss is a sum of terms (an ADD/SUB tree at the top), each term is evaluated exactly and
    the message names the term whose absence (``loss_code = L - term``) or flipped sign
    (``L - 2 term``) explains the difference.

    Returns ``{"dtype", "value", "returned_dtype", "error", "ulps", "verdict", "tolerance",
    "baseline_error", "message", "explained_by"}`` or ``{"error_message"}``.
    """
    import mpmath

    from verigrad.grading import grade
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
    rec = {"dtype": truth.dtype.value, "value": float(got), "returned_dtype": str(np.asarray(got).dtype),
           "error": err, "ulps": err / ulp}
    if np.iscomplexobj(got):
        return rec
    base = np.asarray(model.float_eval([model.loss], truth.point, dt)[0], dtype=dt)
    truth_arr = np.empty((), dtype=object)
    truth_arr[()] = exact
    g = grade(truth={"loss": truth_arr}, value={"loss": np.asarray(got)}, baseline={"loss": base}, dtype=dt,
              case=model.case.name, candidate="loss_code", tolerances=_tolerances(model.case))
    vg = g.variables[0]
    verdict = g.verdict.value
    rec.update(verdict=verdict, tolerance=vg.tolerance, baseline_error=vg.baseline.max_abs)
    label = f"{model.case.name} › loss_code › {truth.dtype.value}"
    if verdict in ("pass", "not exercised", "unresolved"):  # unresolved: no mismatch can be shown
        rec.update(message="", explained_by=None)
        return rec
    if verdict == "nonfinite":
        rec.update(message=f"{label}: the forward pass returned {float(got)} where the declared loss is "
                           f"{mpmath.nstr(exact, 10)}", explained_by=None)
        return rec
    explained = _explain_loss_difference(model, truth, float(got), exact, vg.tolerance)
    msg = (f"{label}: loss_code disagrees with the declared loss: it returned {float(got):.9g}, the exact "
           f"loss is {mpmath.nstr(exact, 10)}, off by {err:.3g} ({err / ulp:.3g} ulps of {truth.dtype.value}), "
           f"beyond the tolerance {vg.tolerance:.2g} (the float baseline of the loss is off by "
           f"{vg.baseline.max_abs:.2g})")
    if explained is not None:
        msg += f"; {explained['text']}"
    msg += ("; every other verdict of this case assumes loss_code and loss are the same function: fix one of "
            "them")
    rec.update(message=msg, explained_by=explained)
    return rec


def loss_terms(model: Model) -> list[tuple[int, object]]:
    """The top-level terms of the declared loss with their signs: ``[(+1, t1), (-1, t2), ...]``.

    The loss is read as the sum its ADD/SUB/NEG tree at the top spells; a loss that is not a sum
    is one term.
    """
    from verigrad.expr.graph import Op

    out: list[tuple[int, object]] = []

    def walk(node, sign):
        if node.op is Op.ADD:
            walk(node.args[0], sign)
            walk(node.args[1], sign)
        elif node.op is Op.SUB:
            walk(node.args[0], sign)
            walk(node.args[1], -sign)
        elif node.op is Op.NEG:
            walk(node.args[0], -sign)
        else:
            out.append((sign, node))

    walk(model.loss, 1)
    return out


def term_gradients(model: Model, point: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Per top-level term of the loss (by its text), the gradient of the signed term, as float64.

    Built with :func:`verigrad.expr.reverse.gradient_graph` on the model's graph and evaluated
    with the certified double-double engine (rounded once to float64), or at 128 bits in mpmath
    where that engine declines.  Terms that do not depend on any variable are left out.
    """
    from verigrad.expr.reverse import gradient_graph

    out: dict[str, dict[str, np.ndarray]] = {}
    for sign, node in loss_terms(model):
        if node.shape != () or not node.variables:
            continue
        variables = {v: model.leaves[v] for v in model.gradient if v in node.variables}
        try:
            grads = gradient_graph(model.builder, node, variables)
        except VerigradError:
            continue
        names = list(grads)
        try:
            vals = [np.asarray(b.hi, dtype=np.float64) for b in model.fast_eval([grads[n] for n in names], point)]
        except Exception:  # noqa: BLE001 - the fast engine declines: mpmath at 128 bits
            try:
                vals = [np.array([float(x) for x in np.asarray(a, dtype=object).ravel()]).reshape(a.shape)
                        for a in model.mp_eval([grads[n] for n in names], point, prec=128)]
            except VerigradError:
                continue
        text = term_text(node)
        out[text if sign > 0 else f"-({text})"] = {n: sign * v for n, v in zip(names, vals)}
    return out


def term_text(node) -> str:
    """The expression text of a term, as written in the case file (its label without the field)."""
    label = node.label or ""
    head, sep, rest = label.partition(": ")
    return rest if sep and " " not in head.strip().replace("define ", "") else (label or f"node {node.id}")


def _explain_loss_difference(model: Model, truth: Truth, got: float, exact, tol: float) -> dict | None:
    """The term whose absence or flipped sign makes the declared loss equal ``got`` (within ``tol``)."""
    import mpmath

    terms = loss_terms(model)
    if len(terms) < 2:
        return None
    try:
        vals = model.mp_eval([t for _, t in terms], truth.point, prec=192)
    except VerigradError:
        return None
    best = None
    with mpmath.workprec(192):
        gap = abs(mpmath.mpf(got) - exact)
        allow = max(mpmath.mpf(tol), gap * mpmath.mpf(2) ** -12)
        for (sign, node), v in zip(terms, vals):
            value = sign * v[()]
            for k, how in ((1, "missing"), (2, "sign flipped")):
                resid = abs(mpmath.mpf(got) - (exact - k * value))
                if resid <= allow and (best is None or resid < best[0]):
                    best = (resid, how, node, value)
    if best is None:
        return None
    resid, how, node, value = best
    text = term_text(node)
    words = (f"it equals the declared loss without the term {text} (= {mpmath.nstr(value, 6)}): loss_code leaves "
             f"it out" if how == "missing" else
             f"it equals the declared loss with the sign of the term {text} (= {mpmath.nstr(value, 6)}) flipped")
    return {"term": text, "how": how, "term_value": float(value), "residual": float(resid), "text": words}


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
        # one worker process runs every candidate and loss_code call of the case (stopped on the way out)
        with worker_scope():
            for dt in dtypes or case.check.dtypes:
                point = point_in_dtype(model.point, dt)
                note(f"{case.name} › {dt.value} › truth")
                try:
                    truth = certify(model, point, dt, digits=truth_digits(case))
                except DomainError as exc:  # on the kink of a 2-norm or std: say so (verigrad.kinks)
                    from verigrad.kinks import nondifferentiable_error

                    raise nondifferentiable_error(model, point, exc) from exc
                truths[dt.value] = truth
                baseline = baseline_gradient(model, point, dt)
                if case.loss_code is not None:
                    loss_code[dt.value] = grade_loss_code(model, truth)
                other_loss = loss_code.get(dt.value, {}).get("verdict") in ("fail", "nonfinite")
                plan = (classic_plan(model, point, dt) if with_fd and case.check.classic
                        and any(c.kind.order == 1 for c in case.candidates) else None)
                second_cache = None
                for cand in case.candidates:
                    note(f"{case.name} › {cand.name} › {dt.value}")
                    if cand.kind.order == 2:  # hessian, hvp, hessian_diag (runner/second.py)
                        second_cache, res = grade_second_order(model, cand, point, dt, second_cache)
                        results.append(res)
                        continue
                    results.append(grade_candidate(model, cand, truth, baseline, timeout=case.limits.candidate_seconds,
                                                   classic=plan, other_loss=other_loss))
                if with_fd and case.check.schemes:
                    from verigrad.runner.fdcheck import grade_schemes

                    note(f"{case.name} › finite differences › {dt.value}")
                    results.extend(grade_schemes(model, truth, baseline))
                if with_fd:  # FD Hessians / HVPs (runner/secondfd.py): informational rows
                    from verigrad.runner.secondfd import default_second_schemes, grade_second_schemes

                    if default_second_schemes(case):
                        note(f"{case.name} › second-order finite differences › {dt.value}")
                        results.extend(grade_second_schemes(model, point, dt, second_cache))
    except VerigradError as exc:
        return CaseReport(str(path), case.name, case.description, error=str(exc), results=tuple(results),
                          truths=truths, seconds=time.perf_counter() - t0, parameters=case.parameter_count,
                          seed=case.seed, rng=case.rng.value, loss_code=loss_code)
    return CaseReport(str(path), case.name, case.description, results=tuple(results), truths=truths,
                      seconds=time.perf_counter() - t0, parameters=case.parameter_count, seed=case.seed,
                      rng=case.rng.value, loss_code=loss_code)


def grade_second_order(model: Model, cand: CandidateSpec, point: dict[str, np.ndarray], dtype: Dtype, cache=None):
    """A second-order candidate's Result (and the truths it certified, shared by the next ones of the dtype)."""
    from verigrad.runner.second import SecondCache, grade_second_candidate

    cache = cache if cache is not None else SecondCache()
    terms = loss_terms(model)
    terms = [(sign, node, term_text(node) if sign > 0 else f"-({term_text(node)})") for sign, node in terms
             if node.shape == () and node.variables] if len(terms) > 1 else []
    res = grade_second_candidate(model, cand, point, dtype, timeout=model.case.limits.candidate_seconds,
                                 digits=truth_digits(model.case), tolerances=_tolerances(model.case), cache=cache,
                                 terms=terms)
    return cache, res


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
    depend on it (each pool process forks the candidate worker of the case it runs, and
    stops it when the case is done: :func:`run_case`).

    When the consumer stops (Ctrl-C, SIGTERM, an error), the pool is terminated at once:
    running cases are not waited for, and their candidate workers die with their pool
    process. Pool processes ignore SIGINT (the terminal sends it to the whole process group;
    the parent alone decides), so an interrupt never prints a worker's traceback.
    """
    if jobs == 1:
        yield lambda f, note: run_case(f, dtypes=dtypes, with_fd=with_fd, progress=note)
        return
    import concurrent.futures as cf
    import multiprocessing as mp

    warm_imports()  # once here, not once per pool process: they fork with the modules loaded
    # not multiprocessing.Pool: its processes are daemonic and may not start candidate workers
    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork"), initializer=_pool_worker_init)
    # the longest cases first (the pool takes them in submission order): no long case starts last
    futures = {f: pool.submit(run_case, f, dtypes=dtypes, with_fd=with_fd) for f in submission_order(files)}
    try:
        yield lambda f, note: (note(f"{Path(f).stem} (worker)"), futures[f].result())[1]
    except BaseException:
        _terminate(pool)
        raise
    else:
        pool.shutdown(wait=True)


def submission_order(files) -> list:
    """``files`` with the (probably) longest cases first, to balance parallel workers.

    The cost of a case is not known before it runs; the size of its file is a cheap proxy
    (more symbols, candidates and schemes).  Run in this order, no worker starts a long case
    when the others are about to finish: on the shipped corpus (23 cases, 2 workers, the
    case times of a serial run) the simulated wall time is 5.0 s against 5.4 s in file order
    and 4.9 s knowing every time in advance.  Ties keep file order.
    """
    def size(f) -> int:
        try:
            return Path(f).stat().st_size
        except OSError:
            return 0

    return sorted(files, key=lambda f: -size(f))


def warm_imports() -> None:
    """Import what the cases of a corpus need (flint, the fast engine, grading, kinks, scipy's linprog, ...).

    A process pool forks after this, so its processes start with these modules loaded
    instead of each importing them again: on an idle machine about 0.3 s per process for
    verigrad's own modules and python-flint, and about 1 s for ``scipy.optimize``, which the
    grading at a kink needs (``linprog``: the nearest valid subgradient) and most corpora
    have kinks (ReLU, abs, max).  With 2 processes that is over a second of CPU per process
    that the pool would spend twice, out of about 7 s for the shipped corpus.
    """
    import scipy.optimize  # noqa: F401 - kinks.acceptance (linprog)
    import scipy.sparse  # noqa: F401

    import verigrad.engine.arb  # noqa: F401 - python-flint
    import verigrad.engine.fastball  # noqa: F401
    import verigrad.engine.lines  # noqa: F401
    import verigrad.fd  # noqa: F401
    import verigrad.grading  # noqa: F401
    import verigrad.kinks  # noqa: F401
    import verigrad.runner.fdcheck  # noqa: F401
    import verigrad.studies  # noqa: F401


def _terminate(pool) -> None:
    """Stop a ProcessPoolExecutor now: cancel what has not started, kill what runs."""
    kill = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if kill is not None:
        kill()
        pool.shutdown(wait=False, cancel_futures=True)
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them: read first
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)


def _pool_worker_init() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
