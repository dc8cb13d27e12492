"""Finite differences against the truth: the exact truncation / step / round-off split.

For a linear scheme (offsets c_k, weights w_k), a direction e, dtype p and a
nominal step h (DESIGN.md, "Finite differences"):

* h_p = fl_p(h) (or the representable step ``(x+h)-x`` on request);
* nodes y_k = fl_p(x_p + c_k h_p e), rounded *once* from the exact value;
* F_k = f_p(y_k), the loss evaluated in dtype p (the expression, or the case's
  own ``loss_code``); D_float = fl_p(sum_k fl_p(w_k) F_k / h_p), accumulated in p;
* D_exact = sum_k w_k f(x_p + c_k h_p e) / h_p and D_nodes = sum_k w_k f(y_k) / h_p
  in mpmath, at a precision raised with |log2 h| so that the differences of
  exact values keep their digits.

Then T = D_exact - g*, S = D_nodes - D_exact, R = D_float - D_nodes and
E = D_float - g* = T + S + R, with g* the certified directional derivative.
The complex step Im f(x + i h_p e)/h_p is evaluated in complex64/complex128 and
exactly with mpmath complex numbers; it has S = 0 for coordinate directions.

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
from typing import Mapping, Sequence

import mpmath
import numpy as np

from verigrad.engine.backends import round_fraction
from verigrad.casefile.loader import point_in_dtype
from verigrad.errors import LimitError as LimitErrorType, UsageError
from verigrad.expr.graph import Op, shared_workspace, topological
from verigrad.engine.model import Model
from verigrad.schemes import Scheme, SchemeKind, StepMode, default_step, default_step_grid, get_scheme
from verigrad.spec import Dtype
from verigrad.engine.truth import certify

__all__ = ["Direction", "coordinate_direction", "random_direction", "StudyRow", "StudyModel", "Observed",
           "Study", "run_study", "batched_leaves", "fd_gradient", "fd_split", "fd_sweep_split", "FDSplit", "non_analytic_sites", "recommended_step"]


@dataclass(frozen=True, eq=False)
class Direction:
    """A direction e over all variables: a coordinate (one-hot) or a seeded random unit vector.

    Attributes
    ----------
    label : str
        ``W1[1, 2]`` or ``random(seed=0)``.
    vector : dict of str to ndarray
        float64 arrays in each variable's shape.
    variable, index : str or None, tuple or None
        Set for coordinate directions.
    seed : int or None
        Set for random directions.
    """

    label: str
    vector: dict[str, np.ndarray]
    variable: str | None = None
    index: tuple[int, ...] | None = None
    seed: int | None = None

    def entries(self) -> list[tuple[str, int, Fraction]]:
        """Nonzero entries as (variable, flat index, exact value)."""
        out = []
        for name, v in self.vector.items():
            flat = v.ravel()
            for i in np.flatnonzero(flat):
                out.append((name, int(i), Fraction(float(flat[i]))))
        return out


def coordinate_direction(model: Model, variable: str | None = None, index: Sequence[int] | None = None) -> Direction:
    """The unit vector of one variable entry (default: the first entry of the first variable)."""
    names = list(model.gradient)
    variable = variable or names[0]
    if variable not in model.gradient:
        raise UsageError(f"--variable {variable!r} is not a variable of {model.case.name} "
                         f"(variables: {', '.join(names)})")
    shape = model.shape(variable)
    index = tuple(index) if index is not None else (0,) * len(shape)
    if len(index) != len(shape) or any(not -n <= i < n for i, n in zip(index, shape)):
        raise UsageError(f"--index {','.join(map(str, index)) or '(none)'} does not fit {variable} of shape "
                         f"{list(shape)}", hint="give one integer per axis, e.g. --index 1,2")
    index = tuple(i % n for i, n in zip(index, shape))
    vec = {n: np.zeros(model.shape(n)) for n in names}
    vec[variable][index] = 1.0
    label = variable + (f"[{', '.join(map(str, index))}]" if index else "")
    return Direction(label, vec, variable=variable, index=index)


def random_direction(model: Model, seed: int = 0) -> Direction:
    """A seeded random unit direction (``numpy.random.default_rng(seed)``, normal entries, unit 2-norm)."""
    rng = np.random.default_rng(seed)
    vec = {n: rng.standard_normal(model.shape(n)) for n in model.gradient}
    norm = math.sqrt(sum(float(np.sum(v * v)) for v in vec.values()))
    vec = {n: v / norm for n, v in vec.items()}
    return Direction(f"random(seed={seed})", vec, seed=seed)


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

    def predict(self, h: np.ndarray) -> dict[str, np.ndarray]:
        """Model curves |T|, |R|, |S| and their sum at the steps ``h``."""
        h = np.asarray(h, dtype=np.float64)
        t = abs(self.truncation_coefficient) * h ** self.truncation_power
        r = np.full_like(h, self.roundoff_coefficient) if self.flat_roundoff else self.roundoff_coefficient / h
        s = self.step_coefficient / h
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


# -- helpers ------------------------------------------------------------------------------


def _is_power_of_two(q: Fraction) -> bool:
    n, d = abs(q.numerator), q.denominator
    return n > 0 and n & (n - 1) == 0 and d & (d - 1) == 0


def _nodes(x: np.ndarray, h: np.ndarray, c: Fraction, dtype: np.dtype) -> np.ndarray:
    """fl_p(x + c h), rounded once from the exact value, for arrays x, h of ``dtype``.

    For power-of-two offsets c*h is exact in the dtype, so one IEEE addition *is* the
    correctly rounded node; other offsets (3 in central6/8) go through exact rationals.
    """
    if c == 0:
        return x.copy()
    if _is_power_of_two(c):
        with np.errstate(all="ignore"):
            return (x + dtype.type(float(c)) * h).astype(dtype)
    return np.array([round_fraction(Fraction(float(a)) + c * Fraction(float(b)), dtype) for a, b in zip(x, h)],
                    dtype=dtype)


def non_analytic_sites(model: Model) -> list[str]:
    """Sub-expressions of the loss through which the complex step is invalid."""
    out = []
    for n in topological([model.loss]):
        if n.op is Op.UNARY and not n.fn.analytic:
            out.append(n.label)
        elif n.op in (Op.MAXIMUM, Op.MAX):
            out.append(n.label)
    return out


def _refuse_complex(model: Model) -> None:
    sites = non_analytic_sites(model)
    if sites:
        raise UsageError(f"complex-step is refused for {model.case.name}: the loss is not analytic at "
                         f"{'; '.join(dict.fromkeys(sites))} (abs/relu/maximum/max have no complex extension "
                         f"that gives the derivative)", hint="use a real scheme such as central or central4")


def _prepare(model: Model, scheme: Scheme | str, dtype: Dtype):
    """(scheme, is complex step, numpy dtype, point in dtype); the complex step refused for non-analytic losses."""
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    is_cs = scheme.kind is SchemeKind.COMPLEX_STEP
    if is_cs:
        _refuse_complex(model)
    return scheme, is_cs, dtype.numpy, point_in_dtype(model.point, dtype)


def _directional_truth(truth, direction: Direction):
    with mpmath.workprec(truth.precision):
        s = mpmath.mpf(0)
        for name, i, e in direction.entries():
            s += truth.gradient[name].ravel()[i] * (mpmath.mpf(e.numerator) / e.denominator)
    return s


def _effective_steps(steps: np.ndarray, direction: Direction, point: dict, dtype: np.dtype, mode: StepMode,
                     representable: bool) -> np.ndarray:
    """h_p per nominal step, in ``dtype`` values (as float64 numbers)."""
    if mode is StepMode.RELATIVE:
        if direction.variable is not None:
            scale = max(1.0, abs(float(point[direction.variable][direction.index])))
        else:
            scale = max([1.0] + [float(np.max(np.abs(point[n]))) for n in direction.vector])
        steps = steps * scale
    hp = steps.astype(dtype).astype(np.float64)
    if representable:
        if direction.variable is None:
            raise UsageError("--representable needs a coordinate direction (--variable/--index)")
        x = point[direction.variable][direction.index]
        with np.errstate(all="ignore"):
            hp = ((x + steps.astype(dtype)) - x).astype(np.float64)
    return hp


def batched_leaves(base: Mapping[str, np.ndarray], rows: Sequence[Mapping[tuple[str, int], object]]) -> dict:
    """Leaves of a batch: the base point (arrays with a batch axis of 1) repeated once per row,
    with the entries ``{(variable, flat index): value}`` of each row replaced; untouched leaves stay
    unbatched (batch 1, broadcast)."""
    B = len(rows)
    touched = {name for row in rows for (name, _) in row}
    out = {}
    for name, arr in base.items():
        if name not in touched:
            out[name] = arr
            continue
        a = np.repeat(arr, B, axis=0)
        flat = a.reshape(B, -1)
        for b, row in enumerate(rows):
            for (n, i), v in row.items():
                if n == name:
                    flat[b, i] = v
        out[name] = a
    return out


def _line_leaves(model: Model, point: dict, values_per_node: list[dict[tuple[str, int], object]], *,
                 as_object: bool) -> dict[str, np.ndarray]:
    """Batched leaves: the point (as exact mpmath numbers with ``as_object``) repeated per node."""
    base = {n: (_obj(point[n]) if as_object else np.asarray(point[n]))[None, ...] for n in model.leaves}
    return batched_leaves(base, values_per_node)


def _obj(a: np.ndarray) -> np.ndarray:
    from verigrad.engine.backends import MPBackend

    return MPBackend.from_float(np.asarray(a))


def _mp_loss(model: Model, leaves: dict, prec: int, complex: bool = False) -> np.ndarray:
    """Exact loss at every node of a batch; None where a node is outside the loss's domain."""
    from verigrad.engine.backends import MPBackend
    from verigrad.errors import DomainError
    from verigrad.expr.graph import evaluate

    with mpmath.workprec(prec):
        try:
            return evaluate([model.loss], leaves, MPBackend(complex=complex))[0]
        except DomainError:
            pass
        B = max(v.shape[0] for v in leaves.values())
        out = np.empty(B, dtype=object)
        for b in range(B):
            one = {n: (v[b:b + 1] if v.shape[0] > 1 else v) for n, v in leaves.items()}
            try:
                out[b] = evaluate([model.loss], one, MPBackend(complex=complex))[0][0]
            except DomainError:
                out[b] = None
        return out


def _mp_losses(model, point, exact_nodes, float_nodes, prec, is_cs):
    """Exact loss at the exact and at the rounded nodes of a sweep, with mpmath (None outside the domain)."""
    with mpmath.workprec(prec):
        if is_cs:
            ex_vals = [{k: mpmath.mpc(mpmath.mpf(float(re)), mpmath.mpf(im.numerator) / im.denominator)
                        for k, (re, im) in d.items()} for d in exact_nodes]
            fl_vals = [{k: mpmath.mpc(float(re), im) for k, (re, im) in d.items()} for d in float_nodes]
        else:
            ex_vals = [{k: mpmath.mpf(q.numerator) / q.denominator for k, q in d.items()} for d in exact_nodes]
            fl_vals = [{k: mpmath.mpf(v) for k, v in d.items()} for d in float_nodes]
        f_exact = _mp_loss(model, _line_leaves(model, point, ex_vals, as_object=True), prec, is_cs)
        f_nodes = _mp_loss(model, _line_leaves(model, point, fl_vals, as_object=True), prec, is_cs)
    return f_exact, f_nodes


def _arb_losses(model, point, exact_nodes, float_nodes, prec):
    """The same in Arb ball arithmetic (midpoints as mpf), or None when a ball cannot decide a node
    (a node on a kink, tie or domain edge): the caller then uses mpmath, which marks such nodes."""
    from verigrad.engine import arb as ab
    from verigrad.expr.graph import evaluate

    if not ab.available():
        return None
    out = []
    with ab.arb_precision(prec):
        base = {n: ab.from_float(point[n]) for n in model.leaves}
        for nodes, conv in ((exact_nodes, lambda q: ab.arb(q.numerator) / q.denominator),
                            (float_nodes, lambda v: ab.arb(v))):
            leaves = batched_leaves({n: a[None, ...] for n, a in base.items()},
                                    [{k: conv(v) for k, v in d.items()} for d in nodes])
            try:
                f = evaluate([model.loss], leaves, ab.ArbBackend())[0]
            except (ab.Undecided, ArithmeticError, LimitErrorType):
                return None
            if not all(v.is_finite() for v in f.ravel()):
                return None
            out.append(np.array([ab.to_mpf(v) for v in f.ravel()], dtype=object))
    return out[0], out[1]


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
            from verigrad.expr.graph import evaluate

            return evaluate([model.loss], leaves, MPBackend())[0][0]

        return mpmath.diff(phi, mpmath.mpf(0), order)


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
        The certified truth at ``dtype``'s point (computed if absent).

    Returns
    -------
    Study

    Notes
    -----
    E = T + S + R holds exactly (to the working precision, reported as ``precision``).
    """
    t0 = time.perf_counter()
    scheme, is_cs, np_dt, point = _prepare(model, scheme, dtype)
    nominal = np.asarray(default_step_grid(scheme, np_dt) if steps is None else steps, dtype=np.float64)
    hp = _effective_steps(nominal, direction, point, np_dt, step_mode, representable)
    # T ~ h^p must be resolved below g*: certify g* to enough digits for the smallest step
    tiny = float(hp[hp > 0].min()) if np.any(hp > 0) else 1.0
    study_prec = min(128 + 70 + int(math.ceil(-math.log2(tiny))) * (scheme.leading_derivative + 2), 6000)
    # g* to the study's own working precision: T = D_exact - g* is then resolved down to what D_exact
    # itself resolves (exactly 0 shows as ~1e-(digits) |g*|, e.g. central differences of a quadratic)
    digits = int(min(1000, max(24, (study_prec - 64) * math.log10(2))))
    if truth is None or truth.digits < digits:
        truth = certify(model, point, dtype, digits=digits)
    gstar = _directional_truth(truth, direction)
    from verigrad.kinks import study_kinks  # on a kink: measure against the scheme's limit; flag steps across kinks

    kinks = study_kinks(model, point, direction, scheme, hp, dtype=dtype, scale=truth.scale)
    if kinks.reference is not None:
        gstar = kinks.reference
    entries = direction.entries()
    offsets = [Fraction(1)] if is_cs else list(scheme.offsets)
    weights = [Fraction(1)] if is_cs else list(scheme.weights)
    K, S = len(hp), len(offsets)
    positive = hp[hp > 0]
    h_min = float(positive.min()) if positive.size else 1.0
    prec = min(128 + 70 + int(math.ceil(-math.log2(h_min))) * (scheme.leading_derivative + 2), 6000)

    # exact (unrounded) and rounded node values of the perturbed entries
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

    notes: list[str] = list(kinks.notes)
    arb_vals = None if is_cs else _arb_losses(model, point, exact_nodes, float_nodes, prec)
    if arb_vals is not None:
        f_exact, f_nodes = arb_vals
    else:
        f_exact, f_nodes = _mp_losses(model, point, exact_nodes, float_nodes, prec, is_cs)

    # the float evaluation, batched over every node of the sweep
    if is_cs:
        cdt = dtype.complex
        cpoint = {n: v.astype(cdt) for n, v in point.items()}
        cvals = [{k: np.asarray(complex(re, im), dtype=cdt) for k, (re, im) in d.items()} for d in float_nodes]
        leaves = _line_leaves(model, cpoint, cvals, as_object=False)
        if loss_values is not None:
            # the case's own forward pass, called with complex arrays (it must be complex-safe)
            B = K * S
            calls = [{n: np.array(leaves[n][b if leaves[n].shape[0] > 1 else 0]) for n in model.leaves}
                     for b in range(B)]
            F = np.asarray(loss_values(calls)).astype(cdt).reshape(K, S)
        else:
            F = model.float_eval([model.loss], leaves, cdt, batched=True)[0].reshape(K, S)
    elif loss_values is not None:
        leaves = _line_leaves(model, point, [{k: np_dt.type(v) for k, v in d.items()} for d in float_nodes],
                              as_object=False)
        B = K * S
        calls = [{n: np.array(leaves[n][b if leaves[n].shape[0] > 1 else 0]) for n in model.leaves} for b in range(B)]
        F = np.asarray(loss_values(calls), dtype=np_dt).reshape(K, S)
    else:
        leaves = _line_leaves(model, point, [{k: np_dt.type(v) for k, v in d.items()} for d in float_nodes],
                              as_object=False)
        F = model.float_eval([model.loss], leaves, np_dt, batched=True)[0].reshape(K, S)
    with np.errstate(all="ignore"):
        if is_cs:
            d_float = (F.imag[:, 0] / hp.astype(np_dt)).astype(np_dt)
        else:
            acc = np.zeros(K, dtype=np_dt)
            for k, w in enumerate(weights):
                acc = acc + np_dt.type(float(w)) * F[:, k]
            d_float = acc / hp.astype(np_dt)

    rows: list[StudyRow] = []
    noise_all: list[float] = []
    with mpmath.workprec(prec):
        wq = [mpmath.mpf(w.numerator) / w.denominator for w in weights]
        for r in range(K):
            h = hp[r]
            in_domain = all(f_exact[r * S + k] is not None and f_nodes[r * S + k] is not None for k in range(S))
            finite = (bool(np.all(np.isfinite(F[r]))) and h > 0 and bool(np.isfinite(d_float[r])) and in_domain
                      and not kinks.crossing[r])
            if not in_domain and "domain" not in " ".join(notes):
                notes.append("some steps put a node outside the loss's domain; those rows are excluded")
            if not finite:
                nan = float("nan")
                rows.append(StudyRow(float(h), float(nominal[r]), float(d_float[r]), nan, nan, nan, nan, nan, False))
                continue
            hm = mpmath.mpf(float(h))
            if is_cs:
                de = mpmath.im(f_exact[r * S]) / hm
                dn = mpmath.im(f_nodes[r * S]) / hm
                nz = [abs(float(F[r, 0].imag) - mpmath.im(f_nodes[r * S]))]
            else:
                de = sum(w * f_exact[r * S + k] for k, w in enumerate(wq)) / hm
                dn = sum(w * f_nodes[r * S + k] for k, w in enumerate(wq)) / hm
                nz = [abs(mpmath.mpf(float(F[r, k])) - f_nodes[r * S + k]) for k in range(S)]
            df = mpmath.mpf(float(d_float[r]))
            noise = float(mpmath.sqrt(sum(v * v for v in nz) / len(nz)))
            noise_all.append(noise / float(h) if is_cs else noise)
            rows.append(StudyRow(float(h), float(nominal[r]), float(d_float[r]), float(df - gstar), float(de - gstar),
                                 float(dn - de), float(df - dn), noise, True))

    model_ = _model(model, point, direction, scheme, dtype, gstar, rows, noise_all, prec, representable, notes)
    if model_.truncation_vanishes:
        # every term of the truncation series vanishes: what is left in T is working-precision residue
        floor = 1e-22 * (abs(float(gstar)) + 1e-300)
        rows = [r if not r.finite or abs(r.truncation) > floor else
                StudyRow(r.h, r.nominal, r.estimate, r.error, 0.0, r.step, r.roundoff, r.noise, r.finite) for r in rows]
    observed = _observed(rows, scheme)
    if model_.truncation_vanishes and not is_cs:
        notes.append(model_.note)
    notes.extend(_contradictions(model_, observed, scheme))
    return Study(case=model.case.name, direction=direction, dtype=dtype, scheme=scheme, truth=gstar,
                 rows=tuple(rows), model=model_, observed=observed,
                 source="loss_code" if loss_values is not None else "expression", step_mode=step_mode,
                 representable=representable, precision=prec, seconds=time.perf_counter() - t0, notes=tuple(notes))


def _model(model, point, direction, scheme: Scheme, dtype: Dtype, gstar, rows, noise_all, prec, representable,
           notes) -> StudyModel:
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
        d = _directional_derivative(model, point, direction, term.derivative, 120)
        value = float(term.coefficient) * float(d)
        if abs(float(d)) > 1e-25 * scale:
            coef, power, vanishes = value, term.derivative - 1, False
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
        h_opt = (b / (power * abs(coef))) ** (1.0 / (power + 1)) if b > 0 else float("nan")
        e_opt = abs(coef) * h_opt**power + b / h_opt if b > 0 else float("nan")
    return StudyModel(truncation_coefficient=coef, truncation_power=power, roundoff_coefficient=br,
                      step_coefficient=bs, noise=nu, optimal_step=h_opt, min_error=e_opt,
                      truncation_vanishes=vanishes, note=note, flat_roundoff=is_cs)


def _contradictions(model_: StudyModel, observed: Observed, scheme: Scheme) -> list[str]:
    """Where the measurement contradicts its model, say so (DESIGN: never hidden)."""
    out = []
    st = observed.slopes.get("truncation", float("nan"))
    if math.isfinite(st) and not model_.truncation_vanishes and abs(st - model_.truncation_power) > 0.5:
        out.append(f"the measured truncation slope {st:.2f} contradicts the model's order "
                   f"{model_.truncation_power}: the leading term does not dominate over these steps")
    sr = observed.slopes.get("roundoff", float("nan"))
    if math.isfinite(sr) and scheme.kind is SchemeKind.LINEAR and abs(sr + 1) > 0.5:
        out.append(f"the measured round-off slope {sr:.2f} contradicts the 1/h model (slope -1)")
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


# -- full-gradient finite differences ---------------------------------------------------------


def entry_steps(step, name: str, x: np.ndarray, step_mode: StepMode) -> np.ndarray:
    """Nominal step per entry of variable ``name`` (float64, flat).

    ``step`` is one nominal step (relative mode: h max(1, |x_i|)) or a mapping of per-entry
    nominal steps by variable (as :func:`verigrad.kinks.recommend_steps` returns), used as given.
    """
    if isinstance(step, Mapping):
        return np.asarray(step[name], dtype=np.float64).reshape(-1)
    xf = np.abs(np.asarray(x).reshape(-1).astype(np.float64))
    return np.full(xf.size, float(step)) * (np.maximum(1.0, xf) if step_mode is StepMode.RELATIVE else 1.0)


def recommended_step(scheme: Scheme, dtype: Dtype) -> float:
    """The nominal relative step used when a case does not give one: eps^(1/(p+1)) (eps for the complex step)."""
    return default_step(scheme, dtype.numpy)


def fd_gradient(model: Model, *, dtype: Dtype, scheme: Scheme | str, step: float | Mapping[str, np.ndarray],
                step_mode: StepMode = StepMode.RELATIVE, max_batch_elements: int = 250_000,
                loss_values=None) -> dict[str, np.ndarray]:
    """The full finite-difference gradient in ``dtype`` (every coordinate), batched and chunked.

    Parameters
    ----------
    step : float or mapping of str to ndarray
        Nominal step; relative mode uses h * max(1, |x_i|) per coordinate. A mapping gives
        the nominal step of every entry (see :func:`verigrad.kinks.recommend_steps`).
    max_batch_elements : int
        Bound on (nodes in one batch) x (entries of the perturbed variable). It caps memory,
        and the default keeps each batched intermediate (2 MB in float64) inside a core's
        L2 cache: on a 2-core machine with 2 MB L2, batches of 2 M entries ran 3x slower
        for a 1000-dimensional Rosenbrock than batches of 250 k (``docs/benchmarks.md``).

    Returns
    -------
    dict of str to ndarray
        Estimates of ``dtype`` per variable.
    """
    scheme, is_cs, np_dt, point = _prepare(model, scheme, dtype)
    out: dict[str, np.ndarray] = {}
    workspace = shared_workspace()
    offsets = [Fraction(1)] if is_cs else list(scheme.offsets)
    weights = [float(w) for w in ([Fraction(1)] if is_cs else scheme.weights)]
    for name in model.gradient:
        x = point[name]
        n = x.size
        hp = entry_steps(step, name, x, step_mode).astype(np_dt)
        est = np.empty(n, dtype=np_dt)
        per = max(1, max_batch_elements // max(1, n * len(offsets)))
        for start in range(0, n, per):
            idx = np.arange(start, min(n, start + per))
            B = len(idx) * len(offsets)
            if is_cs:
                cdt = dtype.complex
                base = workspace.take((B, n), np.dtype(cdt))
                base[...] = x.astype(cdt).reshape(1, -1)
                base[np.arange(B), idx] += 1j * hp[idx].astype(cdt)
                leaves = {m: (base.reshape((B,) + x.shape) if m == name else point[m].astype(cdt)[None, ...])
                          for m in model.leaves}
                if loss_values is not None:
                    calls = [{m: np.array(leaves[m][b if m == name else 0]) for m in model.leaves} for b in range(B)]
                    F = np.asarray(loss_values(calls)).astype(cdt)
                else:
                    F = model.float_eval([model.loss], leaves, cdt, batched=True)[0]
                with np.errstate(all="ignore"):
                    est[idx] = (F.imag / hp[idx]).astype(np_dt)
                workspace.give(base)  # F is consumed: nothing refers to the rows any more
                continue
            base = workspace.take((B, n), np_dt)
            base[...] = x.reshape(1, -1)
            rows = np.arange(B)
            cols = np.repeat(idx, len(offsets))
            node_vals = np.stack([_nodes(x.ravel()[idx], hp[idx], c, np_dt) for c in offsets], axis=1).ravel()
            base[rows, cols] = node_vals
            leaves = {m: (base.reshape((B,) + x.shape) if m == name else point[m][None, ...]) for m in model.leaves}
            if loss_values is not None:
                calls = [{m: np.array(leaves[m][b if m == name else 0]) for m in model.leaves} for b in range(B)]
                F = np.asarray(loss_values(calls), dtype=np_dt)
            else:
                F = model.float_eval([model.loss], leaves, np_dt, batched=True)[0]
            F = F.reshape(len(idx), len(offsets))
            with np.errstate(all="ignore"):
                acc = np.zeros(len(idx), dtype=np_dt)
                for k, w in enumerate(weights):
                    acc = acc + np_dt.type(w) * F[:, k]
                est[idx] = acc / hp[idx]
            workspace.give(base)
        out[name] = est.reshape(x.shape)
    return out


# -- the full-gradient split -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FDSplit:
    """A full-gradient finite-difference estimate at one step, with its exact split per entry.

    Attributes
    ----------
    scheme : Scheme
    dtype : Dtype
    step : float
        Nominal step; the step used per entry is in ``h``.
    h : dict of str to ndarray
        h_p per entry (float64 values of the dtype's step).
    estimate : dict of str to ndarray
        D_float per entry, of ``dtype``.
    error, truncation, step_error, roundoff : dict of str to ndarray
        E, T, S, R per entry (float64), with E = T + S + R.
    precision : int
        Bits of the exact evaluations.
    """

    scheme: Scheme
    dtype: Dtype
    step: float
    h: dict
    estimate: dict
    error: dict
    truncation: dict
    step_error: dict
    roundoff: dict
    precision: int

    def norms(self) -> dict[str, float]:
        """2-norms of E, T, S, R over all entries."""
        def n(d):
            return float(np.sqrt(sum(float(np.sum(np.square(v))) for v in d.values())))
        return {"error": n(self.error), "truncation": n(self.truncation), "step": n(self.step_error),
                "roundoff": n(self.roundoff)}


def _rows_leaves(model: Model, base: dict, name: str, rows, convert) -> dict[str, np.ndarray]:
    """Batched object leaves: the point with entry i of ``name`` set to ``convert(q)`` per row (i, q)."""
    return batched_leaves({m: v[None, ...] for m, v in base.items()}, [{(name, i): convert(q)} for i, q in rows])


def fd_split(model: Model, *, dtype: Dtype, scheme: Scheme | str, step: float | Mapping[str, np.ndarray],
             step_mode: StepMode = StepMode.RELATIVE, truth=None, loss_values=None,
             reference: Mapping[str, np.ndarray] | None = None, entries: Mapping[str, Sequence[int]] | None = None,
             max_batch_objects: int = 400_000) -> FDSplit:
    """Full-gradient finite differences at one step, each entry split exactly into T, S and R.

    Parameters
    ----------
    model : Model
    dtype : Dtype
    scheme : Scheme or str
        A linear scheme (the complex step has S = 0 and T from :func:`run_study`; refused here).
    step : float
        Nominal step (relative mode: h max(1, |x_i|) per entry).
    truth : Truth, optional
        The certified truth at ``dtype``'s point.
    loss_values : callable, optional
        The case's ``loss_code`` evaluator (see :func:`run_study`).
    reference : mapping of str to object ndarray, optional
        What E and T are measured against instead of the truth (e.g. the scheme's limit of the
        one-sided derivatives at coordinates exactly on a kink).
    entries : mapping of str to sequence of int, optional
        Split only these flat entries per variable (others: NaN parts); default all.
    max_batch_objects : int
        Bound on (nodes in one exact batch) x (entries of the perturbed variable).

    Returns
    -------
    FDSplit

    Notes
    -----
    Per entry i, with nodes z_k = x_p + c_k h_p e_i (exact) and y_k = fl_p(z_k):
    T = Σ w_k f(z_k)/h_p − g_i, S = Σ w_k (f(y_k) − f(z_k))/h_p, R = D_float − Σ w_k f(y_k)/h_p,
    the exact values in Arb ball arithmetic or mpmath, directly or from Taylor series
    (see :func:`fd_sweep_split`).
    """
    return fd_sweep_split(model, dtype=dtype, scheme=scheme, steps=[step], step_mode=step_mode, truth=truth,
                          loss_values=loss_values, reference=reference, entries=entries,
                          max_batch_objects=max_batch_objects)[0]


def fd_sweep_split(model: Model, *, dtype: Dtype, scheme: Scheme | str,
                   steps: Sequence[float | Mapping[str, np.ndarray]], step_mode: StepMode = StepMode.RELATIVE,
                   truth=None, loss_values=None, reference: Mapping[str, np.ndarray] | None = None,
                   entries: Mapping[str, Sequence[int]] | None = None,
                   max_batch_objects: int = 400_000) -> tuple[FDSplit, ...]:
    """:func:`fd_split` at several steps at once, for the whole gradient.

    Returns
    -------
    tuple of FDSplit
        One per step, in order.

    Notes
    -----
    The exact loss is needed at 2 S nodes per (step, entry). Two devices keep this cheap:

    * **Incremental evaluation** (:class:`verigrad.engine.lines.LineEvaluator`): the loss at a
      point that differs from x_p in one entry is updated from one evaluation at x_p,
      recomputing only the entries that depend on the perturbed one.
    * **Taylor mode** for variables on an analytic path to the loss: one power series
      φ_i(t) = f(x_p + t e_i) = Σ_{j<L} a_j t^j per entry (Arb balls) gives, without
      cancellation, T = Σ_{j≠1} a_j m_j h^(j-1) (m_j = Σ_k w_k c_k^j) and
      S = Σ_k w_k Σ_j a_j ((c_k h + δ_k)^j − (c_k h)^j) / h (δ_k = y_k − x_p − c_k h).
      A (step, entry) takes these values only where the estimated omitted terms plus the
      ball radii are below 2^-50 of each part they enter (T's error enters T and R, S's
      enters S and R; a part below 2^-100 of the largest part or of the float's round-off
      scale is held to 2^-50 of that instead), for every smaller step too; the largest such
      step of each entry is also evaluated directly, and the series is discarded for an
      entry whose two answers disagree. Everything else is evaluated directly, at a
      precision that grows with |log2 h| so that differences of exact values keep their
      digits.

    Either way R = D_float − D_nodes = E − T − S exactly.
    """
    from verigrad.engine import arb as ab
    from verigrad.engine.lines import series_ok

    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    if scheme.kind is SchemeKind.COMPLEX_STEP:
        raise UsageError("fd_split takes linear schemes; study the complex step with run_study")
    np_dt = dtype.numpy
    point = point_in_dtype(model.point, dtype)
    truth = truth or certify(model, point, dtype, digits=30)
    ests = [fd_gradient(model, dtype=dtype, scheme=scheme, step=st, step_mode=step_mode, loss_values=loss_values)
            for st in steps]
    offsets, weights = list(scheme.offsets), list(scheme.weights)
    M = len(steps)
    h_all = [dict() for _ in steps]
    parts = [{k: {} for k in ("error", "truncation", "step", "roundoff")} for _ in steps]
    prec_used = 0
    g_exact: dict = {}
    for name in model.gradient:
        x = point[name]
        n = x.size
        hps = [entry_steps(st, name, x, step_mode).astype(np_dt) for st in steps]
        y_nodes = [[_nodes(x.ravel(), hp, c, np_dt) for c in offsets] for hp in hps]
        g_ref = (reference if reference is not None else truth.gradient)[name].ravel()
        wanted = list(range(n)) if entries is None else [int(i) for i in entries.get(name, ())]
        if name not in g_exact and ab.available():
            g_exact.update(_exact_gradient(model, point))
        line = _Line(model, point, name, x.ravel(), hps, y_nodes, scheme, ests, g_ref, dtype, truth,
                     g_exact.get(name))
        outs = [{k: np.full(n, np.nan) for k in parts[0]} for _ in steps]
        taylor: dict[tuple[int, int], tuple] = {}
        checks: dict[int, int] = {}
        if ab.available() and series_ok(model, name) and wanted:
            taylor, checks = line.taylor(wanted)
        direct = [(m, i) for i in wanted for m in range(M) if (m, i) not in taylor]
        direct_set = set(direct)
        direct += [(m, i) for i, m in checks.items() if (m, i) not in direct_set]
        found = line.direct(direct, max_batch_objects)
        retry = []
        for i, m in checks.items():
            if (m, i) not in found:
                continue
            if not line.agree(taylor[(m, i)], found[(m, i)]):
                retry += [(mm, i) for mm in range(M) if (mm, i) in taylor and (mm, i) not in found]
                for mm in range(M):
                    taylor.pop((mm, i), None)
            elif sum(found[(m, i)][6:]) < sum(taylor[(m, i)][6:]):
                taylor.pop((m, i))  # both agree: keep the one with the smaller error bound
        found.update(line.direct(retry, max_batch_objects))
        for (m, i), res in list(found.items()) + list(taylor.items()):
            e, t, st_, r = res[:4]
            outs[m]["error"][i], outs[m]["truncation"][i], outs[m]["step"][i], outs[m]["roundoff"][i] = e, t, st_, r
        prec_used = max(prec_used, line.prec_used)
        for m in range(M):
            h_all[m][name] = hps[m].astype(np.float64).reshape(x.shape)
            for k in parts[m]:
                parts[m][k][name] = outs[m][k].reshape(x.shape)
    return tuple(FDSplit(scheme=scheme, dtype=dtype, step=steps[m], h=h_all[m], estimate=ests[m],
                         error=parts[m]["error"], truncation=parts[m]["truncation"], step_error=parts[m]["step"],
                         roundoff=parts[m]["roundoff"], precision=prec_used) for m in range(M))


#: Taylor values are used where the first omitted terms are below this fraction of the parts.
_TAIL = 2.0 ** -50
#: Parts below this fraction of a unit's scale are held to _TAIL of it, not of themselves.
_NEGLIGIBLE = 2.0 ** -100
#: Bits of the power series' coefficients.
_SERIES_PREC = 128


#: Largest working precision of a direct evaluation; units still unresolved there are reported as they are.
_MAX_DIRECT_PREC = 4000


def _direct_precision(h: float, scheme: Scheme, dtype: Dtype) -> int:
    """Bits to start the exact losses at the nodes of step h with.

    T·h is about h^(p+1) of f, and S·h about ulp(x)·f' (2^-mantissa of f): each loses that
    many bits to cancellation, and needs ~100 more (50 for the resolution asked of every
    part, the rest for the growth of the balls' radii). A guess: units it leaves
    unresolved are evaluated again with more bits (:meth:`_Line.direct`).
    """
    lost = max(np.finfo(dtype.numpy).nmant + 1,
               int(math.ceil(-math.log2(h))) * (scheme.leading_derivative + 2) if 0 < h < 1 else 0)
    return min(_MAX_DIRECT_PREC, 64 * -(-(100 + lost) // 64))


class _Line:
    """The exact parts of one variable's full-gradient split (helper of :func:`fd_sweep_split`).

    Results per (step m, entry i): (E, T, S, R) as floats, then T and S as balls and
    their absolute error bounds (for comparisons between the two ways of computing them).
    """

    def __init__(self, model, point, name, x, hps, y_nodes, scheme, ests, g_ref, dtype, truth, g_exact):
        from verigrad.engine import arb as ab
        from verigrad.engine.lines import object_array

        self.model, self.point, self.name, self.x, self.dtype = model, point, name, x, dtype
        self.hps, self.y_nodes, self.scheme, self.ests = hps, y_nodes, scheme, ests
        self.offsets, self.weights = list(scheme.offsets), list(scheme.weights)
        self.prec_used = 0
        self._evaluators: dict[int, object] = {}
        self._ab = ab
        g_true = truth.gradient[name].ravel()
        self.g_ref = object_array(_arb_of_mpf(v) for v in g_ref)
        # E and T are measured from g_base: the exact derivative (a tight ball) where the
        # reference is the truth, so that no part carries the truth's own rounding; the
        # reference itself elsewhere (e.g. a kink's one-sided limit), known to ref_err.
        same = np.array([a is b for a, b in zip(g_true, g_ref)], dtype=bool)
        exact = object_array(_arb_of_mpf(v) for v in g_true) if g_exact is None else g_exact
        self.g_base = np.where(same, exact, self.g_ref)
        ref_err = _reference_error(truth, name, g_ref, same)
        self.ref_err = ref_err if g_exact is None else np.where(same, 0.0, ref_err)
        # a Taylor T is measured from the series' own derivative: this moves it to g_base
        if same.all():
            self.series_shift = None
        else:
            with ab.arb_precision(_EXACT_G_PREC + 64):
                self.series_shift = np.where(same, ab.arb(0), exact - self.g_ref)

    def _q(self, q: Fraction):
        return self._ab.arb(q.numerator) / q.denominator

    def _combine(self, m, I, T, S, err_T, err_S, *, series=False) -> dict:
        """Results for entries I at step m from T and S (balls) with their error bounds.

        A series T is measured from the series' exact derivative; it is moved to g_base here.
        T and S within their error bound are indistinguishable from 0 and reported as 0."""
        ab = self._ab
        dfl = self.ests[m][self.name].ravel()[I].astype(np.float64)
        fin = np.isfinite(dfl)
        out = {}
        with ab.arb_precision(max(self.prec_used, 256) + 64):  # E, T and R exactly, never rounded to 53 bits
            zero = ab.arb(0)
            T = np.where(np.abs(T.astype(np.float64)) <= err_T, zero, T)
            S = np.where(np.abs(S.astype(np.float64)) <= err_S, zero, S)
            if series and self.series_shift is not None:
                T = T + self.series_shift[I]
            E = ab.from_float(np.where(fin, dfl, 0.0)) - self.g_base[I]
            R = E - T - S
            Ef, Tf, Sf, Rf = (v.astype(np.float64) for v in (E, T, S, R))
            # R carries T's and S's errors (and its own rounding): within them it is 0 too
            Rf = np.where(np.abs(Rf) <= err_T + err_S + _up(_RAD(R)), 0.0, Rf)
        for u in np.flatnonzero(fin):
            out[(m, int(I[u]))] = (Ef[u], Tf[u], Sf[u], Rf[u], T[u], S[u], float(err_T[u]), float(err_S[u]))
        return out

    # -- Taylor mode ----------------------------------------------------------------------------

    def taylor(self, wanted):
        """Units whose T and S come from power series, and the step of each entry to check directly."""
        ab = self._ab
        from verigrad.engine.lines import LineEvaluator, Unsupported, coefficients, series_cap

        scheme, M = self.scheme, len(self.hps)
        moments = [sum((w * c**j for c, w in zip(self.offsets, self.weights)), Fraction(0))
                   for j in range(scheme.leading_derivative + 13)]
        if moments[0] != 0 or moments[1] != 1:
            return {}, {}
        L = len(moments)
        W = np.asarray(wanted, dtype=np.int64)
        prec = _SERIES_PREC
        self.prec_used = max(self.prec_used, prec)
        result: dict[tuple[int, int], tuple] = {}
        checks: dict[int, int] = {}
        with ab.arb_precision(prec), series_cap(L):
            try:
                ev = LineEvaluator(self.model, self.point, self.name, prec=prec, series=L)
                ser = ev.losses(W, [ab.flint.arb_series([ab.arb(float(self.x[i])), 1]) for i in W])
            except (Unsupported, ab.Undecided, ArithmeticError):
                return {}, {}
            A = [np.empty(W.size, dtype=object) for _ in range(L)]
            for u, s in enumerate(ser):
                for j, a in enumerate(coefficients(s, L)):
                    A[j][u] = a
            tail_j = (L - 2, L - 1)
            absA = {j: np.exp2(np.array([_log2_abs(a) for a in A[j]])) for j in tail_j}
            xs = ab.from_float(self.x[W])
            ok_until = np.ones(W.size, dtype=bool)
            unit_roundoff = 2.0 ** -(np.finfo(self.dtype.numpy).nmant + 1)
            finite = np.frompyfunc(lambda v: v.is_finite(), 1, 1)
            order = sorted(range(M), key=lambda m: float(np.max(self.hps[m][W])) if W.size else 0.0)
            for m in order:
                hf = self.hps[m][W].astype(np.float64)
                h = ab.from_float(hf)
                T = np.full(W.size, ab.arb(0), dtype=object)
                hj = np.full(W.size, ab.arb(1), dtype=object)  # h^(j-1)
                for j in range(2, L):
                    hj = hj * h
                    if moments[j] != 0:
                        T = T + A[j] * hj * self._q(moments[j])
                S = np.full(W.size, ab.arb(0), dtype=object)
                tail_S = np.zeros(W.size)
                for k, (c, w) in enumerate(zip(self.offsets, self.weights)):
                    sk = h * self._q(c)
                    dk = ab.from_float(self.y_nodes[m][k][W].astype(np.float64)) - xs - sk
                    absd = np.abs(dk.astype(np.float64))
                    if not absd.any():
                        continue
                    q = np.full(W.size, ab.arb(0), dtype=object)
                    spow = np.full(W.size, ab.arb(1), dtype=object)  # s^(j-1)
                    acc = np.full(W.size, ab.arb(0), dtype=object)
                    for j in range(1, L):
                        q = (sk + dk) * q + dk * spow  # (s + d)^j - s^j, without cancellation
                        spow = spow * sk
                        acc = acc + A[j] * q
                    S = S + acc * self._q(w)
                    with np.errstate(all="ignore"):
                        for j in tail_j:
                            tail_S += float(abs(w)) * j * absA[j] * (float(abs(c)) * hf) ** (j - 1) * absd
                S = S / h
                with np.errstate(all="ignore"):
                    tail_S = tail_S / hf
                    tail_T = np.maximum(*[absA[j] * float(sum(abs(w) * abs(c) ** j for c, w in
                                                              zip(self.offsets, self.weights))) * hf ** (j - 1)
                                          for j in tail_j])
                    err_T = tail_T + _RAD(T).astype(np.float64)
                    err_S = tail_S + _RAD(S).astype(np.float64)
                live = np.flatnonzero(ok_until)
                res = self._combine(m, W[live], T[live], S[live], err_T[live], err_S[live], series=True)
                fin_T = finite(T).astype(bool) & finite(S).astype(bool)
                noise = unit_roundoff * np.abs(A[0].astype(np.float64)) / hf
                for u in live:
                    r = res.get((m, int(W[u])))
                    if r is None:
                        continue
                    if fin_T[u] and _bits_short(r[1:4], err_T[u], err_S[u], noise[u]) == 0:
                        result[(m, int(W[u]))] = r
                        checks[int(W[u])] = m
                    else:
                        ok_until[u] = False
        return result, checks

    def agree(self, series, direct) -> bool:
        """Whether a Taylor and a direct answer for the same unit agree within their error bounds."""
        scale = max(abs(direct[1]), abs(direct[2]), abs(direct[3]))
        with self._ab.arb_precision(max(self.prec_used, 256) + 64):
            # T (ball 4, bound 6) and S (ball 5, bound 7), each against its own size: both
            # answers resolve it to 2^-50 of itself (or of the unit's scale when negligible)
            for k, e, f in ((4, 6, 1), (5, 7, 2)):
                diff = abs(float(series[k] - direct[k]))
                if diff > series[e] + direct[e] + 2.0 ** -40 * max(abs(direct[f]), _NEGLIGIBLE * scale):
                    return False
        return True

    # -- direct evaluation ----------------------------------------------------------------------

    def direct(self, units, max_batch_objects):
        """E, T, S, R from exact losses at the nodes, per unit (m, i).

        T and S carry the radii of the balls they come from as error bounds. A unit whose
        parts are not resolved (:func:`_resolved`) at the precision it started with is
        evaluated again with as many more bits as it fell short by, up to the cap, so the
        starting precision (:func:`_direct_precision`) only needs to be a good guess."""
        groups: dict[int, list] = {}
        for m, i in units:
            if self.hps[m][i] == 0:
                continue
            groups.setdefault(_direct_precision(float(self.hps[m][i]), self.scheme, self.dtype), []).append((m, i))
        out = {}
        while groups:
            prec = min(groups)
            us = groups.pop(prec)
            self.prec_used = max(self.prec_used, prec)
            per = max(1, max_batch_objects // max(1, self.x.size * len(self.offsets) * 2))
            for start in range(0, len(us), per):
                for unit, (res, short) in self._direct_chunk(us[start:start + per], prec).items():
                    if short <= 0 or prec >= _MAX_DIRECT_PREC:
                        out[unit] = res
                    else:
                        more = min(_MAX_DIRECT_PREC, prec + 64 * -(-(short + 16) // 64))
                        groups.setdefault(more, []).append(unit)
        return out

    def _direct_chunk(self, chunk, prec):
        """{unit: (result, bits short of resolving it)} for units whose nodes are all in the domain."""
        from verigrad.engine.lines import object_array

        ab = self._ab
        K = len(self.offsets)
        n = len(chunk)
        rows, same = [], np.zeros((n, K), dtype=bool)
        for m, i in chunk:
            xi, hi = Fraction(float(self.x[i])), Fraction(float(self.hps[m][i]))
            rows += [(i, xi + c * hi) for c in self.offsets]
        for j, (m, i) in enumerate(chunk):
            for k in range(K):
                y = Fraction(float(self.y_nodes[m][k][i]))
                if y == rows[j * K + k][1]:
                    same[j, k] = True  # the float node is the exact node: its step error is exactly 0
                else:
                    rows.append((i, y))
        f = self._losses(rows, prec)
        zero = ab.arb(0)
        missing = np.array([v is None for v in f], dtype=bool)  # outside the domain
        f = object_array(zero if v is None else v for v in f)
        fx = f[:n * K].reshape(n, K)
        fy = fx.copy()
        fy[~same] = f[n * K:]
        bad = missing[:n * K].reshape(n, K)
        bad_y = np.zeros((n, K), dtype=bool)
        bad_y[~same] = missing[n * K:]
        valid = ~(bad | bad_y).any(axis=1)
        out = {}
        with ab.arb_precision(prec):
            hs = ab.from_float(np.array([float(self.hps[m][i]) for m, i in chunk]))
            # Σ w_k = 0, so D = Σ w_k (f_k − f_0) / h; a loss the change never reached is the very
            # same ball, and its difference is exactly 0 (a dead ReLU's weight, a masked entry)
            diffs = _exact_differences(fx, fx[:, :1], zero)
            de = sum(diffs[:, k] * self._q(w) for k, w in enumerate(self.weights)) / hs
            err_de = _up(_RAD(de))
            dS = np.where(same, zero, _exact_differences(fy, fx, zero))
            S = sum(dS[:, k] * self._q(w) for k, w in enumerate(self.weights)) / hs
            fmax = np.max(np.abs(fx.astype(np.float64)), axis=1)
            noise = 2.0 ** -(np.finfo(self.dtype.numpy).nmant + 1) * fmax / hs.astype(np.float64)
            for m in sorted({m for m, _ in chunk}):
                sel = np.flatnonzero(valid & np.array([mm == m for mm, _ in chunk]))
                if not sel.size:
                    continue
                I = np.array([chunk[j][1] for j in sel], dtype=np.int64)
                T = de[sel] - self.g_base[I]
                err_S = _up(_RAD(S[sel]))
                # T is known only as well as what it is measured from; more bits here cannot
                # improve that, so only the nodes' own error enters the resolution test
                res = self._combine(m, I, T, S[sel], _up(_RAD(T)) + self.ref_err[I], err_S)
                for u, (j, i) in enumerate(zip(sel, I)):
                    r = res.get((m, int(i)))
                    if r is not None:
                        out[(m, int(i))] = (r, _bits_short(r[1:4], err_de[j], err_S[u], noise[j]))
        return out

    def _losses(self, rows, prec):
        """Exact losses at the point with entry i set to q, per row (i, q): balls whose radii
        bound the error, or None outside the domain."""
        ab = self._ab
        from verigrad.expr.graph import evaluate
        from verigrad.engine.lines import LineEvaluator, Unsupported, object_array

        if ab.available():
            with ab.arb_precision(prec):
                vals = object_array(self._q(q) for _, q in rows)
                idx = np.array([i for i, _ in rows], dtype=np.int64)
                f = None
                try:
                    ev = self._evaluators.get(prec)
                    if ev is None:
                        ev = self._evaluators[prec] = LineEvaluator(self.model, self.point, self.name, prec=prec)
                    f = ev.losses(idx, vals)
                except Unsupported:
                    base = {m: ab.from_float(np.asarray(self.point[m])) for m in self.model.leaves}
                    try:
                        f = evaluate([self.model.loss], _rows_leaves(self.model, base, self.name, list(zip(idx, vals)),
                                                                     lambda v: v), ab.ArbBackend())[0].ravel()
                    except (ab.Undecided, ArithmeticError):
                        f = None
                except (ab.Undecided, ArithmeticError):
                    f = None
                # balls this wide mean lost digits: the mpmath path below re-derives them
                bound = 2.0 ** (96 - prec)
                if f is not None and all(v.is_finite() and float(v.rad()) <= bound * abs(float(v.mid())) + 2.0 ** -prec
                                         for v in f):
                    return list(f)
        with mpmath.workprec(prec):
            base = {m: self.model.mp_values(m, self.point[m]) for m in self.model.leaves}
            leaves = _rows_leaves(self.model, base, self.name, rows, lambda q: mpmath.mpf(q.numerator) / q.denominator)
            vals = list(_mp_loss(self.model, leaves, prec).ravel())
            # mpmath's own error bound for a whole evaluation, as a radius
            err = [None if v is None else _arb_of_mpf(abs(v) * mpmath.ldexp(1, 32 - prec)) for v in vals]
        return [None if v is None else ab.arb(_arb_of_mpf(v), e) for v, e in zip(vals, err)]


_RAD = np.frompyfunc(lambda v: float(v.rad()), 1, 1)


_IS = np.frompyfunc(lambda u, v: u is v, 2, 1)


def _exact_differences(a: np.ndarray, b: np.ndarray, zero) -> np.ndarray:
    """a − b for object arrays of balls (b broadcast), exactly ``zero`` where both are the same
    object (subtracting a ball from itself would double its radius instead)."""
    return np.where(_IS(a, b).astype(bool), zero, a - b)


def _up(r) -> np.ndarray:
    """Float radii rounded up (a float64 of an Arb radius may round down by half an ulp)."""
    return np.asarray(r, dtype=np.float64) * (1 + 2.0 ** -50)


#: Bits of the exact gradient that direct T is measured from (far beyond any truth's digits).
_EXACT_G_PREC = 320


def _exact_gradient(model: Model, point) -> dict:
    """The gradient at ``point`` as Arb balls at :data:`_EXACT_G_PREC` bits, per variable (flat
    object arrays); empty where ball arithmetic cannot decide it (a kink argument that is
    not exactly 0, a domain edge): the reference is used there instead."""
    names = list(model.gradient)
    try:
        vals = model.arb_eval([model.gradient[v] for v in names], point, prec=_EXACT_G_PREC)
    except (ArithmeticError, LimitErrorType):
        return {v: None for v in names}
    out = {}
    for v, g in zip(names, vals):
        flat = np.asarray(g, dtype=object).reshape(-1)
        out[v] = flat if all(b.is_finite() for b in flat) else None
    return out


def _reference_error(truth, name: str, g_ref, same: np.ndarray) -> np.ndarray:
    """Bound on |reference − exact gradient| per flat entry (float64): the truth's certified
    accuracy (relative 10^(1−digits), absolute where it is certified absolutely, 0 where it is
    an exact zero); a reference that is not the truth (``same`` False) is taken as certified
    alike."""
    digits = truth.digits
    mag = np.array([abs(float(v)) for v in g_ref], dtype=np.float64)
    err = 10.0 ** (1 - digits) * mag
    absolute = np.asarray(truth.absolute[name]).ravel()
    err = np.where(absolute, err + 10.0 ** -(digits + 7) * float(truth.scale), err)
    return np.where(np.asarray(truth.exact_zero[name]).ravel() & same, 0.0, err)


def _bits_short(parts, err_T: float, err_S: float, noise: float) -> int:
    """By how many bits the error bounds of a unit's parts miss resolving them (0 when resolved).

    ``parts`` are its T, S, R (floats); T carries the error err_T, S err_S, and R = E − T − S
    both. Each part must be known to 2^-50 of itself; a part below 2^-100 of the unit's
    scale — the largest of its parts and of ``noise`` (the dtype's unit round-off times
    |f| / h, the size of the float's own round-off) — to 2^-50 of that instead, which is
    what a part that is exactly 0 (T of a quadratic) needs. A looser rule (an absolute
    2^-100 of the scale for every part) would let a part just above the floor keep only a
    few correct digits: S of a saturated sigmoid is 1e-14 of its T.
    """
    parts = np.abs(np.array(parts, dtype=np.float64))
    errs = np.array([err_T, err_S, err_T + err_S])
    if not np.all(np.isfinite(errs)):
        return 1 << 20
    allowed = _TAIL * np.maximum(parts, _NEGLIGIBLE * max(float(parts.max()), float(noise)))
    if np.all(errs <= allowed):
        return 0
    with np.errstate(divide="ignore"):
        ratio = float(np.max(errs / allowed))
    return int(math.ceil(math.log2(ratio))) if math.isfinite(ratio) else 1 << 20


def _arb_of_mpf(v):
    """The exact ball of an mpmath number (or of an Arb ball, unchanged)."""
    from verigrad.engine import arb as ab

    if not isinstance(v, mpmath.mpf):
        return v
    if not mpmath.isfinite(v):
        return ab.arb(float(v))
    sign, man, exp, _ = v._mpf_
    man, exp = (-int(man) if sign else int(man)), int(exp)
    if man == 0:
        return ab.arb(0)
    with ab.arb_precision(max(64, man.bit_length() + 8)):
        return ab.arb(man) * ab.arb(2) ** exp


def _log2_abs(a) -> float:
    """log2 |midpoint| of a ball (-inf for 0), without overflow."""
    m = a.mid()
    if m == 0:
        return -math.inf
    man, exp = m.man_exp()
    man = int(man)
    return math.log2(abs(man)) + int(exp)
