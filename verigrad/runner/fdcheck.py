"""Finite differences as candidates in ``verigrad run``, and the classic relative-difference check.

Each scheme of a case's ``[check]`` is evaluated for the full gradient at its
step(s) (default: the recommended relative step eps^(1/(p+1))) and graded
against the truth.  These rows are informational (no expectation): their
verdict says whether the estimate reached the accuracy the scheme can
theoretically reach in the dtype,

    normwise relative error <= min(1000 * eps_p^(p/(p+1)), 1/2)     (linear scheme of order p)
    normwise relative error <= min(1000 * eps_p * sqrt(N), 1/2)      (complex step),

i.e. within three orders of magnitude of the optimum of |T| ~ h^p and
|R| ~ eps/h for a well-scaled loss, and never beyond an error of half the gradient (in float16
and bfloat16 the optimum itself is 3e-2 to 9e-2 relative, and three orders of magnitude above it
would pass anything): a "fail" means the estimate is far from
what the scheme can do (a stencil across a kink, a node outside the domain,
tiny gradients under the noise floor, an ill-conditioned loss), not a small
miss of an idealised bound.  The row's entries are graded with the absolute tolerance this
rule implies, ``tol * ||g||_2``, so that a row never passes over entries called wrong; a row
whose every coordinate is excluded (stencils across a kink or a pole) is ``no estimate``.  The
record also carries what the classic check (relative difference
||g - g_fd|| / (||g|| + ||g_fd||) < threshold) concludes, next to the truth.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np

from verigrad.errors import VerigradError
from verigrad.schemes import SchemeKind, get_scheme
from verigrad.fd import fd_gradient, recommended_step

__all__ = ["grade_schemes", "classic_verdict", "ClassicOutcome", "fd_tolerance"]

#: The gradient-checking exercise (deeplearning.ai, "Gradient Checking") flags a mistake when the
#: relative difference exceeds 2e-7 with central differences at epsilon = 1e-7.
CLASSIC_THRESHOLD = 2e-7
FD_FACTOR = 1000.0
#: the FD tolerance never exceeds this relative error (it binds only in float16/bfloat16)
FD_MAX_RELATIVE = 0.5
#: the exact T/S/R split of a full-gradient estimate is computed when N x stencil nodes is at most this
SPLIT_MAX_NODES = 20_000


def fd_tolerance(scheme, dtype, n: int) -> float:
    """Relative accuracy a scheme can reach in ``dtype`` (see module docstring)."""
    eps = dtype.eps
    if scheme.kind is SchemeKind.COMPLEX_STEP:
        return min(FD_FACTOR * eps * math.sqrt(max(n, 1)), FD_MAX_RELATIVE)
    p = scheme.order
    return min(FD_FACTOR * eps ** (p / (p + 1)), FD_MAX_RELATIVE)


class ClassicOutcome:
    AGREE = "agree"
    FALSE_ALARM = "false alarm"
    MISSED_BUG = "missed bug"
    #: the check differenced ``loss_code``, which disagrees with the declared loss: no comparison
    OTHER_LOSS = "other loss"


def classic_verdict(candidate: dict, fd: dict, *, truth_verdict_pass: bool, threshold: float = CLASSIC_THRESHOLD) -> dict:
    """What the classic gradient check concludes, next to what the truth concludes.

    The metric and the pass rule are :func:`verigrad.grading.relative_difference` and
    :func:`verigrad.grading.classic_check` (pass when the difference is <= threshold, as
    the exercise's ``if difference > 2e-7: mistake``).

    Parameters
    ----------
    candidate, fd : dict of str to ndarray
        The candidate's gradient and a finite-difference gradient.
    truth_verdict_pass : bool
        Whether the candidate passed against the exact truth.
    threshold : float
        The classic check passes when ||a - b|| / (||a|| + ||b||) < threshold.

    Returns
    -------
    dict
        ``relative_difference``, ``threshold``, ``classic_pass``, ``truth_pass`` and
        ``outcome`` (agree / false alarm / missed bug).
    """
    from verigrad.grading import classic_check, relative_difference

    rd = relative_difference(candidate, fd)
    classic_pass = classic_check(candidate, fd, threshold)
    if classic_pass == truth_verdict_pass:
        outcome = ClassicOutcome.AGREE
    elif truth_verdict_pass:
        outcome = ClassicOutcome.FALSE_ALARM
    else:
        outcome = ClassicOutcome.MISSED_BUG
    return {"relative_difference": rd, "threshold": threshold, "classic_pass": classic_pass,
            "truth_pass": truth_verdict_pass, "outcome": outcome}


def _scheme_steps(model, truth, scheme, name: str):
    """The steps of one scheme of ``[check]``: (list of step, notes).

    Explicit steps (``[check] steps``, as a list or keyed by this scheme) come first; then
    ``[check.coordinate_steps]`` (a per-entry mapping: the named variables' steps as given, the
    others the recommended step); then the recommended step, kept inside smooth regions.
    """
    from verigrad.casefile.loader import point_in_dtype
    from verigrad.fd import entry_steps
    from verigrad.schemes import Scheme

    case = model.case
    explicit = case.check.steps_for(name)
    if explicit:
        return list(explicit), ()
    if case.check.coordinate_steps:
        given = dict(case.check.coordinate_steps)
        point = point_in_dtype(model.point, truth.dtype)
        rec = recommended_step(scheme, truth.dtype) if isinstance(scheme, Scheme) else None
        mapping = {}
        for v in model.gradient:
            if v in given:
                mapping[v] = np.asarray(given[v], dtype=np.float64)
            elif rec is not None:
                mapping[v] = entry_steps(rec, v, point[v], case.check.step_mode)
            else:  # an adaptive method's own first step
                mapping[v] = np.full(point[v].size, np.nan)
        return [mapping], ()
    if not isinstance(scheme, Scheme):
        return [None], ()
    from verigrad.kinks import recommend_steps  # the rule of thumb, kept inside smooth regions

    rec = recommend_steps(model, dtype=truth.dtype, scheme=scheme, step_mode=case.check.step_mode)
    return [rec.steps if any(r.any() for r in rec.reduced.values())
            else recommended_step(scheme, truth.dtype)], rec.notes


def _estimate_grade(truth, value: dict, estimate: dict) -> dict:
    """The error estimates of a method against the true errors, entry by entry."""
    from verigrad.schemes import UNDERSTATEMENT_FACTOR

    errs, ests = [], []
    for v in truth.gradient:
        g = np.array([float(t) for t in np.asarray(truth.gradient[v], dtype=object).ravel()])
        errs.append(np.asarray(value[v], dtype=np.float64).ravel() - g)
        ests.append(np.asarray(estimate[v], dtype=np.float64).ravel())
    e, s = np.abs(np.concatenate(errs)), np.concatenate(ests)
    ok = np.isfinite(e) & np.isfinite(s)
    if not ok.any():
        return {"entries": 0, "understated": 0, "max_ratio": None, "verdict": "no estimate"}
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(s[ok] > 0, e[ok] / s[ok], np.where(e[ok] > 0, np.inf, 0.0))
    under = int(np.sum(e[ok] > UNDERSTATEMENT_FACTOR * s[ok]))
    worst = float(np.max(ratio))
    return {"entries": int(ok.sum()), "understated": under, "factor": UNDERSTATEMENT_FACTOR,
            "max_ratio": worst if math.isfinite(worst) else None,
            "verdict": "understated" if under else "trustworthy"}


def _row_grade(graded_truth, value, baseline, dtype, case: str, label: str, tol: float):
    """Grade a finite-difference row by its own rule: (grade, verdict, note on its entries).

    The row passes when its norm-wise relative error is at most ``tol``.  Its entries are
    graded with the one absolute tolerance that rule implies, ``tol ||g||_2`` (``tol`` for a
    zero gradient): an entry beyond it alone puts the norm beyond ``tol``, so a row never
    passes while some entry under it is called wrong (and a row that fails with no entry
    beyond it says that its error is spread).
    """
    from verigrad.grading import grade

    g64 = [np.asarray([float(x) for x in np.asarray(a, dtype=object).ravel()]) for a in graded_truth.values()]
    norm = math.sqrt(sum(float(np.sum(a * a)) for a in g64))
    thr = tol * (norm if norm > 0 and math.isfinite(norm) else 1.0)
    g = grade(truth=graded_truth, value=value, baseline=baseline, dtype=dtype.numpy, case=case, candidate=label,
              entry_tolerance=thr, label=label)
    rel = g.errors.normwise_relative
    if rel is None or (isinstance(rel, float) and not math.isfinite(rel)):
        return g, "nonfinite", ""
    if rel <= tol and not g.wrong:
        return g, "pass", ""
    n = sum(a.size for a in g64)
    if g.wrong:
        note = (f"; {len(g.wrong)} of {n} entr{'y' if n == 1 else 'ies'} beyond {thr:.1e} (= {tol:.1e} x ‖g‖₂, "
                "each alone beyond what the scheme can reach)")
    else:
        note = f"; no single entry beyond {thr:.1e} (= {tol:.1e} x ‖g‖₂): the error is spread over the entries"
    return g, "fail", note


def _adaptive_rows(model, truth, baseline, name, method, loss_values) -> list:
    """Ridders / numDeriv for the full gradient: graded, with their error estimates graded too."""
    from verigrad.fd import adaptive_gradient
    from verigrad.grading import grade
    from verigrad.runner.records import Result

    case = model.case
    out = []
    own = getattr(method, "h0", None) is not None and not case.check.steps_for(name)
    steps = [None] if own else _scheme_steps(model, truth, method, name)[0]
    eps = truth.dtype.eps
    p = 2 * method.ntab if hasattr(method, "ntab") else method.entry_scheme().order
    tol = min(FD_FACTOR * eps ** (p / (p + 1)), FD_MAX_RELATIVE)
    for h in steps:
        mapping = isinstance(h, dict)
        label = f"{name} h={'per-coordinate' if mapping else ('default' if h is None else f'{h:.1e}')}"
        if mapping:
            h = {v: a for v, a in h.items() if not np.all(np.isnan(a))} or None
        elif own:
            label = name
        try:
            res = adaptive_gradient(model, dtype=truth.dtype, method=method, step=h, step_mode=case.check.step_mode,
                                    loss_values=loss_values)
        except VerigradError as exc:
            out.append(Result(case.name, label, "fd", truth.dtype.value, None, "error", None, None, str(exc),
                              scheme=name, step=None))
            continue
        g, verdict, entries_note = _row_grade(truth.gradient, res.value, baseline, truth.dtype, case.name, label, tol)
        rel = g.errors.normwise_relative
        est = _estimate_grade(truth, res.value, res.error_estimate)
        counts = res.counts()
        msg = (f"{case.name} › {label} › {truth.dtype.value}: normwise relative error {rel:.2e} "
               f"{'<=' if verdict == 'pass' else '>'} {tol:.1e} (1000 x eps^({p}/{p + 1}))" + entries_note
               if verdict in ("pass", "fail") else f"{case.name} › {label} › {truth.dtype.value}: non-finite estimate")
        msg += (f"; error estimate {est['verdict']}"
                + (f" ({est['understated']} of {est['entries']} entries understated by more than 10x)"
                   if est["understated"] else ""))
        if counts.get("not converged") or counts.get("non-finite"):
            msg += f"; {counts['not converged']} not converged, {counts['non-finite']} non-finite"
        step_value = None if (mapping or h is None) else float(h)
        out.append(Result(case.name, label, "fd", truth.dtype.value, None, verdict, None, g, msg, scheme=name,
                          step=step_value, extra={"tolerance": tol, "source": "loss_code" if loss_values else
                                                  "expression", "error_estimate": est, "status": counts}))
    return out


def grade_schemes(model, truth, baseline) -> list:
    """One informational Result per scheme x step of the case's [check], at ``truth``'s dtype."""
    from verigrad.grading import grade
    from verigrad.runner.records import Result
    from verigrad.runner.candidates import loss_code_evaluator
    from verigrad.schemes import Scheme

    case = model.case
    out = []
    loss_values = loss_code_evaluator(case) if case.loss_code is not None else None
    n = case.parameter_count
    for name in case.check.schemes:
        scheme = get_scheme(name)
        if not isinstance(scheme, Scheme):
            out.extend(_adaptive_rows(model, truth, baseline, name, scheme, loss_values))
            continue
        steps, rec_notes = _scheme_steps(model, truth, scheme, name)
        for h in steps:
            per_coordinate = isinstance(h, dict) and bool(case.check.coordinate_steps) and not case.check.steps_for(name)
            h_label = recommended_step(scheme, truth.dtype) if isinstance(h, dict) else h
            label = f"{name} h=per-coordinate" if per_coordinate else f"{name} h={h_label:.1e}"
            step_value = None if per_coordinate else h_label
            try:
                est = fd_gradient(model, dtype=truth.dtype, scheme=scheme, step=h, step_mode=case.check.step_mode,
                                  loss_values=loss_values)
            except VerigradError as exc:
                out.append(Result(case.name, label, "fd", truth.dtype.value, None, "error", None, None, str(exc),
                                  scheme=name, step=step_value))
                continue
            from verigrad.kinks import fd_kink_adjustment  # exclude stencils across kinks; on a kink, the limit

            adj = fd_kink_adjustment(model, truth, est, scheme=scheme, step=h, step_mode=case.check.step_mode)
            tol = fd_tolerance(scheme, truth.dtype, n)
            crumb = f"{case.name} › {label} › {truth.dtype.value}"
            if n and adj.excluded_count >= n:
                # every coordinate excluded: nothing left to grade.  The errors reported are the estimate's
                # real errors against the truth (no entry is called wrong: the row makes no claim)
                g = grade(truth=truth.gradient, value=est, baseline=baseline, dtype=truth.dtype.numpy,
                          case=case.name, candidate=label, entry_tolerance=math.inf, label=label)
                verdict = "no estimate"
                rel = g.errors.normwise_relative
                first = next((c.message for c in adj.crossings.crossings if not c.on_kink), "")
                msg = (f"{crumb}: no estimate: all {n} coordinates are excluded, their stencil crosses a kink or "
                       f"domain boundary ({first}{'; ...' if n > 1 else ''}); the estimate's norm-wise relative "
                       f"error against the truth is {rel:.2e}; use a smaller step (see verigrad.kinks.safe_steps)")
                msg += "".join(f"; {note}" for note in rec_notes)
            else:
                g, verdict, entries_note = _row_grade(adj.truth, est, baseline, truth.dtype, case.name, label, tol)
                rel = g.errors.normwise_relative
                msg = (f"{crumb}: normwise relative error {rel:.2e} "
                       f"{'<=' if verdict == 'pass' else '>'} {tol:.1e} (1000 x what {name} can reach in "
                       f"{truth.dtype.value})" + entries_note
                       if verdict in ("pass", "fail") else f"{crumb}: non-finite estimate")
                msg += "".join(f"; {note}" for note in (*rec_notes, *adj.notes))
            extra_estimate = {}
            if scheme.error_reference is not None:
                # the Richardson tableau's error estimate |D(h) - D_ref(h)|, graded against the truth
                try:
                    ref = fd_gradient(model, dtype=truth.dtype, scheme=scheme.error_reference, step=h,
                                      step_mode=case.check.step_mode, loss_values=loss_values)
                    e_est = {v: np.abs(np.asarray(est[v], dtype=np.float64) - np.asarray(ref[v], dtype=np.float64))
                             for v in est}
                    extra_estimate = {"error_estimate": _estimate_grade(truth, est, e_est)}
                    msg += f"; error estimate {extra_estimate['error_estimate']['verdict']}"
                except VerigradError:
                    extra_estimate = {}
            split = None
            if scheme.kind is SchemeKind.LINEAR and n * len(scheme.offsets) <= SPLIT_MAX_NODES:
                from verigrad.studies import fd_split

                try:
                    # on a kink the scheme converges to its limit of the one-sided derivatives: split against it
                    ref = {v: np.where(adj.crossings.on_kink[v], adj.truth[v], truth.gradient[v]).astype(object)
                           for v in truth.gradient}
                    sp = fd_split(model, dtype=truth.dtype, scheme=scheme, step=h, step_mode=case.check.step_mode,
                                  truth=truth, loss_values=loss_values, reference=ref)
                    split = sp.norms()
                    part = max(("truncation", "step", "roundoff"), key=lambda k: split[k])
                    msg += (f"; {part} dominates (norms: T {split['truncation']:.1e}, S {split['step']:.1e}, "
                            f"R {split['roundoff']:.1e})")
                except VerigradError:
                    split = None
            out.append(Result(case.name, label, "fd", truth.dtype.value, None, verdict, None, g, msg,
                              scheme=name, step=step_value, extra={"tolerance": tol, "source": "loss_code" if loss_values else "expression",
                                                          "kinks": list(adj.notes), "split": split, **extra_estimate}))
    return out
