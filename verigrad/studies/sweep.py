"""A step sweep of one scheme in one dtype along one direction: E, T, S and R per step.

The exact parts are defined in :mod:`verigrad.studies`; :func:`run_study` measures them
at every step of a grid and fits their models.

Models: the truncation term C f^(j)(x_p; e) h^p from the scheme's exact series
and the exact j-th directional derivative (mpmath.diff of the exact loss along
the line, at raised precision); round-off from the measured noise of f_p at the
nodes, nu = median over the steps of rms_k |F_k - f(y_k)|, amplified by sum|w_k| / h; the step error bound
|g*| ulp(x_i)/2 sum|w_k| / h.  They give the predicted optimal step and error.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Sequence

import mpmath
import numpy as np

from verigrad.engine.backends import round_fraction
from verigrad.engine.model import Model
from verigrad.engine.truth import certify
from verigrad.fd.directions import Direction
from verigrad.fd.estimate import _prepare
from verigrad.fd.steps import _effective_steps
from verigrad.kinks import study_kinks
from verigrad.schemes import Scheme, SchemeKind, StepMode, default_step_grid
from verigrad.spec import Dtype
from verigrad.studies.exact import _dense_values, _exact_values, _float_values, _obj

__all__ = ["StudyRow", "StudyModel", "Observed", "Regime", "Study", "run_study"]


@dataclass(frozen=True)
class StudyRow:
    """One step of a sweep; errors are signed absolute errors (floats).

    ``h`` is the step actually used (h_p); ``nominal`` the step asked for.
    ``noise`` is rms |F_k - f(y_k)| at this row's nodes.  ``finite`` is False
    when some F_k was inf/nan (the row is excluded from fits and optima).
    """

    h: float
    nominal: float
    estimate: float
    error: float
    truncation: float
    step: float
    roundoff: float
    noise: float
    finite: bool = True
    error_estimate: float = float("nan")


@dataclass(frozen=True)
class StudyModel:
    """Predicted error parts: |T| ~ A h^p, |R| ~ B_r / h, |S| <= B_s / h."""

    truncation_coefficient: float
    truncation_power: int
    roundoff_coefficient: float
    step_coefficient: float
    noise: float
    optimal_step: float
    min_error: float
    truncation_vanishes: bool
    note: str = ""
    flat_roundoff: bool = False
    roundoff_power: int = 1

    def predict(self, h: np.ndarray) -> dict[str, np.ndarray]:
        """Model curves |T|, |R|, |S| and their sum at the steps ``h`` (``/h^q`` for the q-th derivative)."""
        h = np.asarray(h, dtype=np.float64)
        q = self.roundoff_power
        t = abs(self.truncation_coefficient) * h ** self.truncation_power
        r = np.full_like(h, self.roundoff_coefficient) if self.flat_roundoff else self.roundoff_coefficient / h**q
        s = self.step_coefficient / h**q
        return {"truncation": t, "roundoff": r, "step": s, "total": t + r + s}


@dataclass(frozen=True)
class Observed:
    optimal_step: float
    min_error: float
    slopes: dict[str, float]


@dataclass(frozen=True, eq=False)
class Study:
    """A step sweep of one scheme in one dtype along one direction."""

    case: str
    direction: Direction
    dtype: Dtype
    scheme: Scheme
    truth: object
    rows: tuple[StudyRow, ...]
    model: StudyModel
    observed: Observed
    source: str
    step_mode: StepMode
    representable: bool
    precision: int
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    # -- reading aids: views of the fields above for tables, plots and notebooks --------------

    @property
    def usable_steps(self) -> tuple[float, float]:
        """Smallest and largest step of the rows that count (``finite``: no node across a kink or
        outside the domain, every value finite); ``(nan, nan)`` when there is none."""
        hs = [r.h for r in self.rows if r.finite]
        return (min(hs), max(hs)) if hs else (math.nan, math.nan)

    @property
    def optimum_note(self) -> str:
        """Why the model's optimal step is not a step to use on this sweep; ``""`` when it is.

        The model's h* is usable when it is finite and lies within :attr:`usable_steps`: outside
        them it extrapolates the model past the steps measured (and, on a piecewise loss, past
        its kinks).
        """
        h, (lo, hi) = self.model.optimal_step, self.usable_steps
        if self.model.truncation_vanishes:
            return ("no optimal step: the truncation error vanishes along "
                    f"{self.direction.label}, so the error falls as h grows")
        if not (math.isfinite(h) and h > 0):
            return "the model has no optimal step (no round-off or step error to balance the truncation)"
        if not math.isfinite(lo):
            return f"the model's h* = {h:.2g}, but no step of the sweep gives a usable estimate"
        excluded = any(not r.finite for r in self.rows)
        why = " (the steps beyond it are excluded: see the notes)" if excluded else ""
        if h > hi:
            return f"the model's h* = {h:.2g} is larger than every usable step of the sweep (the largest is {hi:.2g}){why}"
        if h < lo:
            return f"the model's h* = {h:.2g} is smaller than every usable step of the sweep (the smallest is {lo:.2g}){why}"
        return ""

    @property
    def regimes(self) -> tuple["Regime", ...]:
        """The steps where truncation dominates and those where round-off and step error do.

        A row belongs to the truncation regime when ``|T| >= 10 (|R| + |S|)`` and to the
        round-off regime when ``|R| + |S| >= 10 |T|`` (the rows :attr:`Observed.slopes` are
        fitted on); rows in between belong to neither.
        """
        ok = [r for r in self.rows if r.finite]
        t = np.abs(np.array([r.truncation for r in ok]))
        parts = {"truncation": t, "step": np.abs(np.array([r.step for r in ok])),
                 "roundoff": np.abs(np.array([r.roundoff for r in ok]))}
        rs = parts["step"] + parts["roundoff"]
        model_slope = {"truncation": (math.nan if self.model.truncation_vanishes
                                      else float(self.model.truncation_power)),
                       "roundoff": 0.0 if self.model.flat_roundoff else -float(self.model.roundoff_power)}
        out = []
        for kind, mask in (("roundoff", rs >= 10 * t), ("truncation", t >= 10 * rs)):
            if not mask.any():
                continue
            h = np.array([r.h for r in ok])[mask]
            dominant = max(parts, key=lambda k: float(np.median(parts[k][mask])))
            out.append(Regime(kind, float(h.min()), float(h.max()), int(mask.sum()),
                              self.observed.slopes.get(kind, math.nan), model_slope[kind], dominant))
        return tuple(out)

    @property
    def estimate_grade(self):
        """How the scheme's error estimate (:attr:`StudyRow.error_estimate`, for schemes with an
        :attr:`~verigrad.schemes.Scheme.error_reference`) compares with the true error over the
        sweep (:class:`verigrad.studies.estimates.EstimateGrade`)."""
        from verigrad.studies.estimates import grade_error_estimates

        ok = [r for r in self.rows if r.finite]
        return grade_error_estimates([r.h for r in ok], [r.error for r in ok], [r.error_estimate for r in ok])

    def __repr__(self) -> str:
        h, e = self.observed.optimal_step, self.observed.min_error
        return (f"<Study {self.case} › {self.direction.label} › {self.dtype.value} › {self.scheme.name}: "
                f"best h = {h:.2g} (|E| = {e:.2g}), model h* = {self.model.optimal_step:.2g}; steps {len(self.rows)}>")

    def _repr_html_(self) -> str:
        """The study's table and figure, inline in Jupyter (rendered by :mod:`verigrad.report.notebook`)."""
        import verigrad

        return verigrad.repr_html(self)


@dataclass(frozen=True)
class Regime:
    """A range of steps where one kind of error dominates (:attr:`Study.regimes`).

    Attributes
    ----------
    kind : str
        ``"truncation"`` (large steps) or ``"roundoff"`` (small steps: round-off and step error).
    h_min, h_max : float
        The smallest and largest step of the regime; ``count`` steps lie in it.
    count : int
    slope, model_slope : float
        The fitted slope of log|E| against log h (:attr:`Observed.slopes`), and the model's
        (the scheme's order; -1 for round-off, 0 for the complex step's flat round-off).
    dominant : str
        The part with the largest median magnitude there: ``"truncation"``, ``"step"`` or ``"roundoff"``.
    """

    kind: str
    h_min: float
    h_max: float
    count: int
    slope: float
    model_slope: float
    dominant: str


def _directional_truth(truth, direction: Direction):
    with mpmath.workprec(truth.precision):
        s = mpmath.mpf(0)
        for name, i, e in direction.entries():
            s += truth.gradient[name].ravel()[i] * (mpmath.mpf(e.numerator) / e.denominator)
    return s


def _fit_slope(h: np.ndarray, e: np.ndarray) -> float:
    ok = (h > 0) & (e > 0) & np.isfinite(e)
    if ok.sum() < 3:
        return float("nan")
    return float(np.polyfit(np.log10(h[ok]), np.log10(e[ok]), 1)[0])


def _directional_derivative(model: Model, point: dict, direction: Direction, order: int, prec: int):
    """d^order/dt^order f(x_p + t e) at t = 0, exactly up to the working precision."""
    entries = direction.entries()
    with mpmath.workprec(prec):
        base = {n: _obj(point[n]) for n in model.leaves}

        def phi(t):
            leaves = {}
            for n, arr in base.items():
                a = arr.copy()
                flat = a.reshape(-1)
                for name, i, e in entries:
                    if name == n:
                        flat[i] = flat[i] + t * (mpmath.mpf(e.numerator) / e.denominator)
                leaves[n] = a[None, ...]
            from verigrad.engine.backends import MPBackend
            from verigrad.expr.evaluate import evaluate

            return evaluate([model.loss], leaves, MPBackend())[0][0]

        return mpmath.diff(phi, mpmath.mpf(0), order)


def _coordinate_line(model: Model, point: dict, direction: Direction, prec: int, *, need_loss: bool):
    """The cone of a coordinate direction (:class:`CoordinateLine`), or None (evaluate whole graphs)."""
    if direction.variable is None:
        return None
    from verigrad.studies.coordinate import CoordinateLine, LineUnavailable

    index = int(np.ravel_multi_index(direction.index, model.shape(direction.variable))) if direction.index else 0
    try:
        return CoordinateLine(model, point, direction.variable, index, prec=prec, need_loss=need_loss)
    except LineUnavailable:
        return None


def _node_values(point: dict, direction: Direction, hp, offsets, np_dt, is_cs: bool):
    """The exact (unrounded) and rounded node values of the perturbed entries, per (step, offset)."""
    entries = direction.entries()
    exact_nodes: list[dict] = []
    float_nodes: list[dict] = []
    for h in hp:
        hq = Fraction(float(h))
        for c in offsets:
            ex, fl = {}, {}
            for name, i, e in entries:
                x = Fraction(float(point[name].ravel()[i]))
                if is_cs:
                    ex[(name, i)] = (x, c * hq * e)
                    fl[(name, i)] = (x, round_fraction(c * hq * e, np_dt))
                else:
                    ex[(name, i)] = x + c * hq * e
                    fl[(name, i)] = round_fraction(x + c * hq * e, np_dt)
            exact_nodes.append(ex)
            float_nodes.append(fl)
    return exact_nodes, float_nodes


#: whole-graph exact evaluations (rows x graph entries) a dense direction may cost before the
#: sweep switches to the double-double engine (the shipped cases stay below it)
_DENSE_EXACT_WORK = 4_000_000


def _graph_entries(model: Model) -> int:
    from verigrad.expr.graph import topological

    return sum(n.size for n in topological([model.loss]))


def _too_dense(model: Model, direction: Direction, rows: int) -> bool:
    return direction.variable is None and rows * _graph_entries(model) > _DENSE_EXACT_WORK


def _unaffordable_study(model, dtype, scheme, direction, hp, nominal, step_mode, representable, prec, loss_values,
                        t0, truth, point) -> Study:
    """A complex-step sweep along a dense direction of a large graph: its exact parts need an exact
    complex evaluation of the whole loss per node, which is not afforded; every row is left out."""
    if truth is None:
        truth = certify(model, point, dtype)
    gstar = _directional_truth(truth, direction)
    nan = float("nan")
    rows = tuple(StudyRow(float(h), float(n), nan, nan, nan, nan, nan, nan, False) for h, n in zip(hp, nominal))
    note = (f"the exact parts of the complex step along {direction.label} need an exact complex evaluation of the "
            f"whole loss ({_graph_entries(model):,} entries) at every step, which is not afforded for a dense "
            f"direction this large; study a coordinate (--variable/--index)")
    model_ = StudyModel(truncation_coefficient=nan, truncation_power=scheme.order, roundoff_coefficient=nan,
                        step_coefficient=0.0, noise=nan, optimal_step=nan, min_error=nan, truncation_vanishes=False,
                        note=note, flat_roundoff=True)
    return Study(case=model.case.name, direction=direction, dtype=dtype, scheme=scheme, truth=gstar, rows=rows,
                 model=model_, observed=_observed(rows, scheme),
                 source="loss_code" if loss_values is not None else "expression", step_mode=step_mode,
                 representable=representable, precision=prec, seconds=time.perf_counter() - t0, notes=(note,))


def _dense_line(model: Model, point: dict, direction: Direction, scheme: Scheme, rows: int, is_cs: bool):
    """The fast engine's line along a dense direction (:class:`DenseLine`) when whole exact
    evaluations of every node would cost more than :data:`_DENSE_EXACT_WORK`, else None."""
    if direction.variable is not None or is_cs or rows * _graph_entries(model) <= _DENSE_EXACT_WORK:
        return None
    from verigrad.studies.dense import DenseLine, DenseUnavailable

    try:
        return DenseLine(model, point, direction, length=scheme.leading_derivative + 5)
    except DenseUnavailable:
        return None


class _LazyScale:
    """The gradient's scale (max |g|), certified only when asked for (a point on a kink)."""

    def __init__(self, model, point, dtype, truth):
        self.model, self.point, self.dtype, self.truth = model, point, dtype, truth

    def __call__(self):
        if self.truth is None:
            self.truth = certify(self.model, self.point, self.dtype)
        return self.truth.scale


def _derivatives(model: Model, point: dict, direction: Direction, line, scheme: Scheme, gstar, prec: int = 120):
    """``order -> d^order/dt^order f(x_p + t e)`` at 0: from the line's Taylor series when there
    is a line (cached, one series for every order), else by :func:`mpmath.diff` of whole evaluations."""
    cache: dict[int, object] = {}

    def derivative(order: int):
        if order not in cache and line is not None:
            from verigrad.studies.coordinate import LineUnavailable

            top = scheme.leading_derivative if order <= scheme.leading_derivative else scheme.leading_derivative + 4
            try:
                if hasattr(line, "derivatives"):
                    cache.update(enumerate(line.derivatives(max(top, order), scale=abs(float(gstar)) + 1.0)))
                elif order < line.length:
                    cache[order] = line.derivative(order)
            except LineUnavailable:
                pass
        if order not in cache:
            cache[order] = _directional_derivative(model, point, direction, order, prec)
        return cache[order]

    return derivative


# -- the study ------------------------------------------------------------------------------


def run_study(model: Model, *, dtype: Dtype, scheme: Scheme | str, direction: Direction,
              steps: Sequence[float] | None = None, step_mode: StepMode = StepMode.ABSOLUTE,
              representable: bool = False, loss_values=None, truth=None) -> Study:
    """Sweep the steps of one scheme: estimate, E, T, S, R per step, models and optimum.

    Parameters
    ----------
    model : Model
    dtype : Dtype
    scheme : Scheme or str
    direction : Direction
    steps : sequence of float, optional
        Nominal steps (default :func:`verigrad.schemes.default_step_grid`).
    step_mode : StepMode
    representable : bool
        Use h_p = (x_i + h) - x_i, which makes S = 0.
    loss_values : callable, optional
        ``list of {symbol: array} -> array of F_k``: the case's own ``loss_code``
        evaluated at float nodes (default: the loss expression in ``dtype``).
    truth : Truth, optional
        The certified truth at ``dtype``'s point (computed if absent and needed).

    Returns
    -------
    Study

    Notes
    -----
    E = T + S + R holds exactly (to the working precision, reported as ``precision``).

    Along a coordinate the exact values come from the line's cone
    (:class:`verigrad.studies.coordinate.CoordinateLine`): the partial derivative, the changes
    of the loss at the nodes and the Taylor coefficients of the model, at O(steps x cone)
    cost and without evaluating the whole gradient. Other directions, and graphs the cone
    does not handle, evaluate the whole loss at every node.
    """
    t0 = time.perf_counter()
    scheme, is_cs, np_dt, point = _prepare(model, scheme, dtype)
    q = scheme.derivative  # D(h) = sum_k w_k f(x + c_k h e) / h^q
    nominal = np.asarray(default_step_grid(scheme, np_dt) if steps is None else steps, dtype=np.float64)
    hp = _effective_steps(nominal, direction, point, np_dt, step_mode, representable)
    positive = hp[hp > 0]
    h_min = float(positive.min()) if positive.size else 1.0
    # T ~ h^p must be resolved below g*: the exact values (and g*) to a precision that grows with
    # |log2 h|, so that differences of exact values keep their digits (exactly 0 shows as
    # ~2^-prec |g*|, e.g. central differences of a quadratic)
    prec = min(128 + 70 + max(0, int(math.ceil(-math.log2(h_min)))) * (scheme.leading_derivative + 2), 6000)
    digits = int(min(1000, max(24, (prec - 64) * math.log10(2))))
    offsets = [Fraction(1)] if is_cs else list(scheme.offsets)
    weights = [Fraction(1)] if is_cs else list(scheme.weights)
    K, S = len(hp), len(offsets)
    line = _coordinate_line(model, point, direction, prec, need_loss=not is_cs)
    dense = None if line is not None or q > 1 else _dense_line(model, point, direction, scheme, 2 * K * S, is_cs)
    if dense is None and is_cs and _too_dense(model, direction, 2 * K * S):
        return _unaffordable_study(model, dtype, scheme, direction, hp, nominal, step_mode, representable, prec,
                                   loss_values, t0, truth, point)
    if line is not None or dense is not None:
        from verigrad.engine.arb import to_mpf

        g_ball = (line or dense).gstar
        gstar = to_mpf(g_ball)
        scale = _LazyScale(model, point, dtype, truth)
    else:
        if truth is None or truth.digits < digits:
            truth = certify(model, point, dtype, digits=digits)
        gstar, g_ball, scale = _directional_truth(truth, direction), None, truth.scale
    # on a kink: measure against the scheme's limit; flag steps across kinks
    kinks = study_kinks(model, point, direction, scheme, hp, dtype=dtype, scale=scale)
    if kinks.reference is not None:
        if q > 1:
            from verigrad.errors import UsageError

            raise UsageError(f"the point is on a kink along {direction.label}: the loss has no derivative of "
                             f"order {q} there", hint="study it at a smooth point, or study first derivatives "
                             "(--one-sided gives d+ and d-)")
        gstar, g_ball = kinks.reference, None
    first = gstar  # the first directional derivative (the step model's |f'|)
    if q > 1:  # the truth is the q-th directional derivative, exact from the graph
        gstar, g_ball = _derivatives(model, point, direction, line, scheme, first, prec=prec)(q), None
    notes: list[str] = list(kinks.notes)
    if dense is not None:
        def exact_gstar():  # g* to the working precision, for rows evaluated exactly
            t = truth if truth is not None and truth.digits >= digits else certify(model, point, dtype, digits=digits)
            return _directional_truth(t, direction)

        exact, F = _dense_values(model, point, dense, hp, offsets, weights, dtype, loss_values, prec, exact_gstar,
                                 kinks.crossing)
        F = F.reshape(K, S)
    else:
        exact_nodes, float_nodes = _node_values(point, direction, hp, offsets, np_dt, is_cs)
        exact = _exact_values(model, point, line, exact_nodes, float_nodes, prec, is_cs)
        F = _float_values(model, point, float_nodes, dtype, is_cs, loss_values).reshape(K, S)
    with np.errstate(all="ignore"):
        if is_cs:
            d_float = (F.imag[:, 0] / hp.astype(np_dt)).astype(np_dt)
        else:
            acc = np.zeros(K, dtype=np_dt)
            for k, w in enumerate(weights):
                acc = acc + np_dt.type(float(w)) * F[:, k]
            d_float = acc / hp.astype(np_dt)
            for _ in range(q - 1):  # / h^q, one rounding per division
                d_float = d_float / hp.astype(np_dt)
            d_ref = None
            if scheme.error_reference is not None:  # the tableau's error estimate, from the same values
                ref = scheme.error_reference
                at = {c: k for k, c in enumerate(offsets)}
                acc = np.zeros(K, dtype=np_dt)
                for c, w in zip(ref.offsets, ref.weights):
                    acc = acc + np_dt.type(float(w)) * F[:, at[c]]
                d_ref = acc / hp.astype(np_dt)
                for _ in range(q - 1):
                    d_ref = d_ref / hp.astype(np_dt)

    rows: list[StudyRow] = []
    noise_all: list[float] = []
    for r in range(K):
        h = hp[r]
        in_domain = exact.in_domain(r, S)
        finite = (bool(np.all(np.isfinite(F[r]))) and h > 0 and bool(np.isfinite(d_float[r])) and in_domain
                  and not kinks.crossing[r] and getattr(exact, "available", lambda r: True)(r))
        if not in_domain and "domain" not in " ".join(notes):
            notes.append("some steps put a node outside the loss's domain; those rows are excluded")
        if not finite:
            nan = float("nan")
            rows.append(StudyRow(float(h), float(nominal[r]), float(d_float[r]), nan, nan, nan, nan, nan, False))
            continue
        row_weights = weights if q == 1 else [w / Fraction(float(h)) ** (q - 1) for w in weights]
        (e, t, s, rr), noise = exact.parts(r, S, float(h), row_weights, F[r], float(d_float[r]), gstar, g_ball)
        noise_all.append(noise / float(h) if is_cs else noise)
        est = float(abs(np.float64(d_float[r]) - np.float64(d_ref[r]))) if not is_cs and d_ref is not None \
            else float("nan")
        rows.append(StudyRow(float(h), float(nominal[r]), float(d_float[r]), e, t, s, rr, noise, True, est))

    notes.extend(getattr(exact, "notes", ()))
    derivative = _derivatives(model, point, direction, line or dense, scheme, first)
    model_ = _model(model, point, direction, scheme, dtype, first, rows, noise_all, prec, representable, notes,
                    derivative)
    if model_.truncation_vanishes:
        # every term of the truncation series vanishes: what is left in T is working-precision residue
        floor = 1e-22 * (abs(float(gstar)) + 1e-300)
        rows = [r if not r.finite or abs(r.truncation) > floor else
                StudyRow(r.h, r.nominal, r.estimate, r.error, 0.0, r.step, r.roundoff, r.noise, r.finite) for r in rows]
    observed = _observed(rows, scheme)
    if model_.truncation_vanishes and not is_cs:
        notes.append(model_.note)
    notes.extend(_contradictions(model_, observed, scheme))
    if scheme.error_reference is not None:  # how far the tableau's error estimate can be trusted
        from verigrad.studies.estimates import grade_error_estimates

        ok = [r for r in rows if r.finite]
        notes.append(str(grade_error_estimates([r.h for r in ok], [r.error for r in ok],
                                               [r.error_estimate for r in ok])))
    return Study(case=model.case.name, direction=direction, dtype=dtype, scheme=scheme, truth=gstar,
                 rows=tuple(rows), model=model_, observed=observed,
                 source="loss_code" if loss_values is not None else "expression", step_mode=step_mode,
                 representable=representable, precision=prec, seconds=time.perf_counter() - t0, notes=tuple(notes))


def _model(model, point, direction, scheme: Scheme, dtype: Dtype, gstar, rows, noise_all, prec, representable,
           notes, derivative) -> StudyModel:
    is_cs = scheme.kind is SchemeKind.COMPLEX_STEP
    p = scheme.order
    sw = float(scheme.sum_abs_weights())
    finite_noise = [v for v in noise_all if math.isfinite(v)]
    # the median row: a few nodes far away (near a pole, or at huge steps) must not set the noise level
    nu = float(np.median(finite_noise)) if finite_noise else float("nan")
    # leading non-vanishing truncation term, from exact directional derivatives
    coef, power, vanishes, note = 0.0, p, True, ""
    scale = abs(float(gstar)) + 1.0
    for term in scheme.truncation_series(scheme.leading_derivative + 4):
        d = derivative(term.derivative)
        value = float(term.coefficient) * float(d)
        if abs(float(d)) > 1e-25 * scale:
            coef, power, vanishes = value, term.derivative - scheme.derivative, False
            if term.derivative != scheme.leading_derivative:
                note = (f"the leading truncation term (f^({scheme.leading_derivative})) vanishes along "
                        f"{direction.label}; the model uses the next one, f^({term.derivative})")
            break
    if vanishes:
        note = (f"the truncation error of {scheme.name} vanishes along {direction.label} (the loss is a "
                f"polynomial of low degree there): all of the error is step and round-off error, which "
                f"falls as h grows; there is no interior optimal step")
    if is_cs:
        br, bs = nu, 0.0
    else:
        br = nu * sw
        if representable or direction.variable is None:
            bs = 0.0
        else:
            x = float(point[direction.variable][direction.index])
            ulp = float(np.spacing(dtype.numpy.type(abs(x)))) if x != 0 else 0.0
            bs = abs(float(gstar)) * ulp / 2 * sw
    if vanishes:
        h_opt, e_opt = float("nan"), float("nan")
    elif is_cs:
        # flat error ~ nu below the crossover where the truncation reaches it
        h_opt = (br / abs(coef)) ** (1.0 / power) if br > 0 and coef else float("nan")
        e_opt = br
    else:
        b = br + bs
        q = scheme.derivative  # minimise |A| h^p + B / h^q
        h_opt = (q * b / (power * abs(coef))) ** (1.0 / (power + q)) if b > 0 else float("nan")
        e_opt = abs(coef) * h_opt**power + b / h_opt**q if b > 0 else float("nan")
    return StudyModel(truncation_coefficient=coef, truncation_power=power, roundoff_coefficient=br,
                      step_coefficient=bs, noise=nu, optimal_step=h_opt, min_error=e_opt,
                      truncation_vanishes=vanishes, note=note, flat_roundoff=is_cs,
                      roundoff_power=scheme.derivative)


def _contradictions(model_: StudyModel, observed: Observed, scheme: Scheme) -> list[str]:
    """Where the measurement contradicts its model, say so (DESIGN: never hidden)."""
    out = []
    st = observed.slopes.get("truncation", float("nan"))
    if math.isfinite(st) and not model_.truncation_vanishes and abs(st - model_.truncation_power) > 0.5:
        out.append(f"the measured truncation slope {st:.2f} contradicts the model's order "
                   f"{model_.truncation_power}: the leading term does not dominate over these steps")
    sr = observed.slopes.get("roundoff", float("nan"))
    q = scheme.derivative
    if math.isfinite(sr) and scheme.kind is SchemeKind.LINEAR and abs(sr + q) > 0.5:
        model_text = "1/h model (slope -1)" if q == 1 else f"1/h^{q} model (slope -{q})"
        out.append(f"the measured round-off slope {sr:.2f} contradicts the {model_text}")
    if (math.isfinite(model_.min_error) and math.isfinite(observed.min_error) and model_.min_error > 0
            and observed.min_error > 10 * model_.min_error):
        out.append(f"the smallest measured error {observed.min_error:.1e} is more than 10x the model's "
                   f"{model_.min_error:.1e}: an error source the model does not include")
    return out


def _observed(rows: Sequence[StudyRow], scheme: Scheme) -> Observed:
    ok = [r for r in rows if r.finite]
    if not ok:
        return Observed(float("nan"), float("nan"), {"truncation": float("nan"), "roundoff": float("nan")})
    best = min(ok, key=lambda r: abs(r.error))
    h = np.array([r.h for r in ok])
    e = np.abs(np.array([r.error for r in ok]))
    t = np.abs(np.array([r.truncation for r in ok]))
    rs = np.abs(np.array([r.roundoff for r in ok])) + np.abs(np.array([r.step for r in ok]))
    trunc_regime = t >= 10 * rs
    round_regime = rs >= 10 * t
    slopes = {"truncation": _fit_slope(h[trunc_regime], e[trunc_regime]),
              "roundoff": _fit_slope(h[round_regime], e[round_regime])}
    return Observed(best.h, abs(best.error), slopes)
