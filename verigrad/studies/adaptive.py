"""Adaptive methods (Ridders, numDeriv) against the truth: a sweep over first steps, the exact
split of the entry each returns, and how far each error estimate can be trusted.

For every nominal first step h (Ridders' ``h0``, numDeriv's ``h``) the method runs in dtype p
on the loss along the direction (:func:`verigrad.fd.adaptive_directional`) and returns a
value, an error estimate and the tableau entry it chose. That entry is a linear scheme with
exact weights in units of the first step h_p = fl_p(h)
(:meth:`~verigrad.schemes.adaptive.Ridders.entry_scheme`), so the split of
:mod:`verigrad.studies` applies to it:

* D_exact = sum_k w_k f(x_p + c_k h_p e) / h_p (the entry's ideal nodes: exact geometric steps);
* D_nodes = sum_k w_k f(y_k) / h_p at the nodes the algorithm evaluated, y_k = fl_p(x_p + t_k e)
  with its float steps t_k (``hh /= con`` in p);
* D_float = the value the method returned (its tableau arithmetic in p);

T = D_exact - g*, S = D_nodes - D_exact, R = D_float - D_nodes, E = T + S + R exactly. S holds
the rounding of the float step sequence (the nodes are not at the ideal steps), R every
rounding of the tableau (including its division by the float steps).

The error estimate is graded against the true error |E|
(:func:`verigrad.studies.estimates.grade_error_estimates`): an estimate below
|E| / :data:`~verigrad.schemes.adaptive.UNDERSTATEMENT_FACTOR` is *understated*.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Sequence

import mpmath
import numpy as np

from verigrad.engine.model import Model
from verigrad.engine.truth import certify
from verigrad.fd.directions import Direction
from verigrad.fd.extrapolation import adaptive_directional
from verigrad.fd.steps import _effective_steps
from verigrad.schemes import StepMode
from verigrad.schemes.adaptive import UNDERSTATEMENT_FACTOR, NumDeriv, Ridders
from verigrad.spec import Dtype
from verigrad.studies.estimates import EstimateGrade, grade_error_estimates

__all__ = ["AdaptiveRow", "AdaptiveStudy", "EstimateGrade", "grade_error_estimates", "run_adaptive_study"]


@dataclass(frozen=True)
class AdaptiveRow:
    """One first step of an adaptive sweep (errors are signed, absolute).

    ``h`` is the first step used (h_p), ``nominal`` the one asked for; ``entry`` the
    (level, column) returned and ``order`` that entry's exact order; ``understated`` is
    ``|error| > 10 * error_estimate``; ``finite`` False when a value was not finite or a node
    crossed a kink (the row is then left out of the grade).
    """

    h: float
    nominal: float
    estimate: float
    error: float
    error_estimate: float
    status: str
    entry: tuple[int, int]
    order: int
    truncation: float
    step: float
    roundoff: float
    evaluations: int
    understated: bool
    finite: bool = True


@dataclass(frozen=True, eq=False)
class AdaptiveStudy:
    """A sweep of an adaptive method over first steps, in one dtype along one direction."""

    case: str
    direction: Direction
    dtype: Dtype
    method: Ridders | NumDeriv
    truth: object
    rows: tuple[AdaptiveRow, ...]
    grade: EstimateGrade
    step_mode: StepMode
    precision: int
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def best(self) -> AdaptiveRow | None:
        """The finite row with the smallest |E|."""
        ok = [r for r in self.rows if r.finite and math.isfinite(r.error)]
        return min(ok, key=lambda r: abs(r.error)) if ok else None

    @property
    def scheme(self):
        """The method (the name ``scheme`` matches :class:`verigrad.studies.Study`)."""
        return self.method

    def __repr__(self) -> str:
        b = self.best
        best = f"best h0 = {b.h:.2g} (|E| = {abs(b.error):.2g})" if b else "no finite row"
        return (f"<AdaptiveStudy {self.case} › {self.direction.label} › {self.dtype.value} › {self.method.name}: "
                f"{best}; {self.grade.verdict}; steps {len(self.rows)}>")


def _column_offsets(method, c: int) -> tuple[Fraction, Fraction]:
    """Exact (+, -) offsets of tableau column ``c`` in units of the first step."""
    if isinstance(method, Ridders):
        s = method.con ** -c
        return s, -s
    s = method.v ** -c
    if method.side == 1:
        return 2 * s, Fraction(0)
    if method.side == -1:
        return Fraction(0), -2 * s
    return s, -s


def _entry_nodes(method, est):
    """(exact offset, float offset, float value) of every node of the chosen entry's scheme."""
    scheme = method.entry_scheme(est.entry) if isinstance(method, Ridders) else method.entry_scheme()
    found: dict[Fraction, tuple[float, float]] = {}
    for c in range(len(est.steps)):
        for k, off in enumerate(_column_offsets(method, c)):
            found.setdefault(off, (est.nodes[2 * c + k], est.values[2 * c + k]))
    return scheme, [(off, *found[off]) for off in scheme.offsets]


def run_adaptive_study(model: Model, *, dtype: Dtype, method: Ridders | NumDeriv, direction: Direction,
                       steps: Sequence[float] | None = None, step_mode: StepMode = StepMode.ABSOLUTE,
                       loss_values=None, truth=None) -> AdaptiveStudy:
    """Sweep an adaptive method's first step; split each returned entry exactly; grade the estimates.

    Parameters
    ----------
    model : Model
    dtype : Dtype
    method : Ridders or NumDeriv
    direction : Direction
    steps : sequence of float, optional
        Nominal first steps (default: 16 from 1e-4 to 1, log-spaced: Ridders wants a large h0;
        for numDeriv they replace ``|d x|``).
    step_mode : StepMode
    loss_values : callable, optional
        The case's own ``loss_code`` (see :func:`verigrad.studies.run_study`).
    truth : Truth, optional

    Returns
    -------
    AdaptiveStudy
    """
    from verigrad.casefile.loader import point_in_dtype
    from verigrad.kinks import study_kinks
    from verigrad.studies.exact import _exact_values
    from verigrad.studies.sweep import _coordinate_line, _directional_truth, _LazyScale

    t0 = time.perf_counter()
    np_dt = dtype.numpy
    point = point_in_dtype(model.point, dtype)
    nominal = np.asarray(np.logspace(-4, 0, 16) if steps is None else steps, dtype=np.float64)
    hp = _effective_steps(nominal, direction, point, np_dt, step_mode, False)
    estimates = [adaptive_directional(model, dtype=dtype, method=method, direction=direction, step=float(h),
                                      loss_values=loss_values) if h > 0 else None for h in hp]
    entries = []
    for est in estimates:
        entries.append(_entry_nodes(method, est) if est is not None else (None, []))
    # precision: the smallest node step, the entry's order and the cancellation of its weights
    need = 0
    for (scheme, nodes), h in zip(entries, hp):
        if scheme is None:
            continue
        smallest = min(abs(off) for off, _, _ in nodes if off != 0) * Fraction(float(h))
        sw = float(scheme.sum_abs_weights())
        need = max(need, int(math.ceil(-math.log2(float(smallest)))) * (scheme.leading_derivative + 2)
                   + int(math.ceil(math.log2(sw + 1))))
    prec = min(128 + 70 + max(need, 0), 6000)
    digits = int(min(1000, max(24, (prec - 64) * math.log10(2))))
    line = _coordinate_line(model, point, direction, prec, need_loss=True)
    if line is not None:
        from verigrad.engine.arb import to_mpf

        gstar, g_ball = to_mpf(line.gstar), line.gstar
    else:
        if truth is None or truth.digits < digits:
            truth = certify(model, point, dtype, digits=digits)
        gstar, g_ball = _directional_truth(truth, direction), None
    scale = _LazyScale(model, point, dtype, truth)
    entry_dirs = direction.entries()
    notes: list[str] = []
    crossed: list[float] = []
    rows: list[AdaptiveRow] = []
    for r, (est, (scheme, nodes), h) in enumerate(zip(estimates, entries, hp)):
        nan = math.nan
        if est is None:
            rows.append(AdaptiveRow(float(h), float(nominal[r]), nan, nan, nan, "non-finite", (0, 0), 0,
                                    nan, nan, nan, 0, False, False))
            continue
        kinks = study_kinks(model, point, direction, scheme, [float(h)], dtype=dtype, scale=scale)
        reference, ref_ball = (kinks.reference, None) if kinks.reference is not None else (gstar, g_ball)
        if kinks.reference is not None:  # on a kink: the entry tends to its limit of d+ and d-
            for note in kinks.notes:
                if note not in notes:
                    notes.append(note)
        if kinks.crossing[0] or kinks.leaves_domain[0]:
            crossed.append(float(h))
        hq = Fraction(float(h))
        exact_nodes, float_nodes = [], []
        for off, t, _ in nodes:
            ex, fl = {}, {}
            for name, i, e in entry_dirs:
                x = Fraction(float(point[name].reshape(-1)[i]))
                ex[(name, i)] = x + off * hq * e
                if e == 1:
                    # float(x) is exact (x is a value of the dtype); bfloat16 does not take a Fraction
                    fl[(name, i)] = float(np_dt.type(np_dt.type(float(x)) + np_dt.type(t)))
                else:
                    from verigrad.engine.backends import round_fraction

                    fl[(name, i)] = round_fraction(x + Fraction(float(t)) * e, np_dt)
            exact_nodes.append(ex)
            float_nodes.append(fl)
        F = np.array([v for _, _, v in nodes], dtype=np_dt)
        finite = bool(np.all(np.isfinite(F))) and math.isfinite(est.value) and not bool(kinks.crossing[0])
        if not finite:
            rows.append(AdaptiveRow(float(h), float(nominal[r]), est.value, nan, est.error_estimate,
                                    est.status.value, est.entry, scheme.order, nan, nan, nan, est.evaluations,
                                    False, False))
            continue
        exact = _exact_values(model, point, line, exact_nodes, float_nodes, prec, False)
        if not exact.in_domain(0, len(nodes)):
            if "domain" not in " ".join(notes):
                notes.append("some first steps put a node outside the loss's domain; those rows are excluded")
            rows.append(AdaptiveRow(float(h), float(nominal[r]), est.value, nan, est.error_estimate,
                                    est.status.value, est.entry, scheme.order, nan, nan, nan, est.evaluations,
                                    False, False))
            continue
        (e, tt, ss, rr), _noise = exact.parts(0, len(nodes), float(h), list(scheme.weights), F, est.value,
                                              reference, ref_ball)
        under = math.isfinite(est.error_estimate) and abs(e) > UNDERSTATEMENT_FACTOR * est.error_estimate
        rows.append(AdaptiveRow(float(h), float(nominal[r]), est.value, e, est.error_estimate, est.status.value,
                                est.entry, scheme.order, tt, ss, rr, est.evaluations, bool(under), True))
    if crossed:
        notes.append(f"{len(crossed)} of {len(rows)} first steps put a node of the returned entry across a kink or "
                     f"outside the loss's domain (from h0 = {min(crossed):.2g}); those rows are excluded")
    ok = [x for x in rows if x.finite]
    grade = grade_error_estimates([x.h for x in ok], [x.error for x in ok], [x.error_estimate for x in ok])
    not_conv = [x for x in rows if x.status != "converged"]
    if not_conv:
        notes.append(f"{len(not_conv)} of {len(rows)} first steps did not converge (status "
                     f"'{not_conv[0].status}' at h0 = {not_conv[0].h:.2g}): the method's own flag")
    if grade.understated:
        notes.append(f"the error estimate understates the true error by more than {grade.factor:g}x at "
                     f"{grade.understated} of {grade.rows} steps (worst |E|/estimate = {grade.max_ratio:.2g} "
                     f"at h0 = {grade.worst_step:.2g})")
    with mpmath.workprec(prec):
        truth_value = gstar
    return AdaptiveStudy(case=model.case.name, direction=direction, dtype=dtype, method=method, truth=truth_value,
                         rows=tuple(rows), grade=grade, step_mode=step_mode, precision=prec,
                         seconds=time.perf_counter() - t0, notes=tuple(notes))
