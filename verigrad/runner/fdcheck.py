"""Finite differences as candidates in ``verigrad run``, and the classic relative-difference check.

Each scheme of a case's ``[check]`` is evaluated for the full gradient at its
step(s) (default: the recommended relative step eps^(1/(p+1))) and graded
against the truth.  These rows are informational (no expectation): their
verdict says whether the estimate reached the accuracy the scheme can
theoretically reach in the dtype,

    normwise relative error <= 1000 * eps_p^(p/(p+1))     (linear scheme of order p)
    normwise relative error <= 1000 * eps_p * sqrt(N)      (complex step),

i.e. within three orders of magnitude of the optimum of |T| ~ h^p and
|R| ~ eps/h for a well-scaled loss: a "fail" means the estimate is far from
what the scheme can do (a stencil across a kink, a node outside the domain,
tiny gradients under the noise floor, an ill-conditioned loss), not a small
miss of an idealised bound.  The
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
#: the exact T/S/R split of a full-gradient estimate is computed when N x stencil nodes is at most this
SPLIT_MAX_NODES = 20_000


def fd_tolerance(scheme, dtype, n: int) -> float:
    """Relative accuracy a scheme can reach in ``dtype`` (see module docstring)."""
    eps = dtype.eps
    if scheme.kind is SchemeKind.COMPLEX_STEP:
        return FD_FACTOR * eps * math.sqrt(max(n, 1))
    p = scheme.order
    return FD_FACTOR * eps ** (p / (p + 1))


class ClassicOutcome:
    AGREE = "agree"
    FALSE_ALARM = "false alarm"
    MISSED_BUG = "missed bug"


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


def grade_schemes(model, truth, baseline) -> list:
    """One informational Result per scheme x step of the case's [check], at ``truth``'s dtype."""
    from verigrad.grading import grade
    from verigrad.runner.records import Result
    from verigrad.runner.candidates import loss_code_evaluator

    case = model.case
    out = []
    loss_values = loss_code_evaluator(case) if case.loss_code is not None else None
    n = case.parameter_count
    for name in case.check.schemes:
        scheme = get_scheme(name)
        if case.check.steps:
            steps, rec_notes = list(case.check.steps), ()
        else:
            from verigrad.kinks import recommend_steps  # the rule of thumb, kept inside smooth regions

            rec = recommend_steps(model, dtype=truth.dtype, scheme=scheme, step_mode=case.check.step_mode)
            steps, rec_notes = [rec.steps if any(r.any() for r in rec.reduced.values())
                                else recommended_step(scheme, truth.dtype)], rec.notes
        for h in steps:
            h_label = recommended_step(scheme, truth.dtype) if isinstance(h, dict) else h
            label = f"{name} h={h_label:.1e}"
            try:
                est = fd_gradient(model, dtype=truth.dtype, scheme=scheme, step=h, step_mode=case.check.step_mode,
                                  loss_values=loss_values)
            except VerigradError as exc:
                out.append(Result(case.name, label, "fd", truth.dtype.value, None, "error", None, None, str(exc),
                                  scheme=name, step=h_label))
                continue
            from verigrad.kinks import fd_kink_adjustment  # exclude stencils across kinks; on a kink, the limit

            adj = fd_kink_adjustment(model, truth, est, scheme=scheme, step=h, step_mode=case.check.step_mode)
            g = grade(truth=adj.truth, value=est, baseline=baseline, dtype=truth.dtype.numpy, case=case.name,
                      candidate=label)
            rel = g.errors.normwise_relative
            tol = fd_tolerance(scheme, truth.dtype, n)
            if rel is None or (isinstance(rel, float) and not math.isfinite(rel)):
                verdict = "nonfinite"
            else:
                verdict = "pass" if rel <= tol else "fail"
            msg = (f"{case.name} › {label} › {truth.dtype.value}: normwise relative error {rel:.2e} "
                   f"{'<=' if verdict == 'pass' else '>'} {tol:.1e} (1000 x what {name} can reach in {truth.dtype.value})"
                   if verdict in ("pass", "fail") else f"{case.name} › {label}: non-finite estimate")
            msg += "".join(f"; {note}" for note in (*rec_notes, *adj.notes))
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
                              scheme=name, step=h_label, extra={"tolerance": tol, "source": "loss_code" if loss_values else "expression",
                                                          "kinks": list(adj.notes), "split": split}))
    return out
