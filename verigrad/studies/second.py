"""Step sweeps of second-order finite differences: one Hessian or HVP entry, E = T + S + R per step.

:func:`run_second_study` sweeps the steps of one scheme of :mod:`verigrad.fd.second` for one
entry and returns the same :class:`~verigrad.studies.Study` record as first-order sweeps (so
``verigrad study`` prints, plots and writes it with the same tables, figures and JSON):

* ``second-difference`` (``second3``): ``H_ii`` from ``[1, -2, 1]`` differences of the loss;
* ``mixed-4point`` (``mixed4``): ``H_ij`` from the 4-point rule on the loss;
* ``gradient-central`` (``grad-central``): ``(H v)_i`` from central differences of the exact
  gradient graph evaluated in the dtype (``v = e_j`` for a Hessian entry, or the seeded HVP
  direction of the case's ``hvp`` candidates);
* ``richardson(<scheme>)``: one Richardson step, ``(4 D(h/2) - D(h)) / 3``.

Definitions (DESIGN.md "Finite differences", as in :mod:`verigrad.fd.second`): ``h_p = fl_p(h)``,
nodes rounded once, ``T = D_exact - H*``, ``S = D_nodes - D_exact``, ``R = D_float - D_nodes``;
``D_exact`` and ``D_nodes`` in mpmath at a precision raised with ``|log2 h|``; ``H*`` certified
(:func:`verigrad.engine.hessian.certify_hvp`).

Model (per scheme of order ``p``, differences of a function divided by ``h^q``; ``q = 2`` for the
loss, ``q = 1`` for the gradient):

* truncation ``|T| ~ A h^p`` with ``A = lim T(h) / h^p`` computed from the exact loss (or
  gradient): ``A = (D_exact(h0) - D_exact(h0/2)) / (h0^p (1 - 2^-p))`` at ``h0 = 2^-40`` in
  mpmath (relative error ``O(h0^2)``, about ``1e-24``; ``H*`` is not needed);
* round-off ``|R| ~ B_r / h^q`` with ``B_r = nu sum|w| / den`` (``nu`` the median over the steps
  of the rms error ``|F_k - f(y_k)|`` of the float values at the nodes; times ``(4 2^q + 1)/3``
  after a Richardson step);
* step error ``|S| <= B_s / h^q`` with ``B_s = sum over perturbed coordinates of
  |f'| ulp(x)/2 sum|w| / den`` (loss: the gradient entry; gradient: ``|H_ij|`` for ``v = e_j``,
  not modelled for a dense ``v``).

Hence ``h* = (q B / (p A))^(1/(p+q))``: ``~ u^(1/4)`` for the 3-point and 4-point rules,
``~ u^(1/3)`` for central differences of the gradient (``u^(1/6)``, ``u^(1/5)`` after Richardson).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import mpmath
import numpy as np

from verigrad.engine.model import Model
from verigrad.errors import UsageError
from verigrad.fd.directions import Direction
from verigrad.fd.second import (SECOND_DIFFERENCE, MIXED_4POINT, GRADIENT_CENTRAL, SecondKind, SecondScheme,
                                _float_losses, _gradient_rows, _locate, _loss_rows, _mp_nodes, get_second_scheme)
from verigrad.schemes import SchemeKind, StepMode
from verigrad.spec import Dtype
from verigrad.studies.sweep import Observed, Study, StudyModel, StudyRow, _contradictions, _observed

__all__ = ["SECOND_ALIASES", "resolve_second_scheme", "SecondSchemeView", "SecondTarget", "entry_label",
           "second_step_grid", "run_second_study", "second_target"]

#: short names accepted by ``verigrad study --second-order --scheme``
SECOND_ALIASES = {"second3": SECOND_DIFFERENCE.name, "mixed4": MIXED_4POINT.name,
                  "grad-central": GRADIENT_CENTRAL.name}

#: the model's truncation coefficient is read at this step (exact values; relative error O(h0^2))
_H0 = 2.0 ** -40


def resolve_second_scheme(text: str, *, diagonal: bool = True) -> SecondScheme:
    """A second-order scheme from its name or alias (``second3``, ``mixed4``, ``grad-central``, the
    full names of :data:`verigrad.fd.second.SECOND_SCHEMES`, ``richardson(<any of them>)``, or
    ``richardson`` alone: one Richardson step on the entry's default loss scheme)."""
    t = text.strip()
    if t == "richardson":
        return (SECOND_DIFFERENCE if diagonal else MIXED_4POINT).extrapolated()
    if t.startswith("richardson(") and t.endswith(")"):
        return resolve_second_scheme(t[len("richardson("):-1], diagonal=diagonal).extrapolated()
    try:
        return get_second_scheme(SECOND_ALIASES.get(t, t))
    except UsageError:
        allowed = ", ".join([*SECOND_ALIASES, *SECOND_ALIASES.values(), "richardson", "richardson(<scheme>)"])
        raise UsageError(f"unknown second-order scheme {text!r}", hint=f"allowed: {allowed}") from None


@dataclass(frozen=True)
class SecondSchemeView:
    """What a :class:`Study` reads of its scheme, for a second-order scheme.

    ``derivative`` is the power of ``h`` the differences are divided by (2 for the loss, 1 for a
    gradient): the round-off slope of the sweep is ``-derivative``.
    """

    name: str
    order: int
    derivative: int
    kind: SchemeKind = SchemeKind.LINEAR
    error_reference: object = None
    second: SecondScheme | None = None


@dataclass(frozen=True)
class SecondTarget:
    """The entry a second-order study estimates.

    Attributes
    ----------
    row : int
        Flattened index (declaration order, C order within a variable) of the entry.
    column : int or None
        Column ``j`` of a Hessian entry ``H_ij``; None for an HVP entry ``(H v)_i``.
    vector : dict of str to ndarray or None
        The direction ``v`` of an HVP entry (values of the dtype), or None.
    vector_seed : list of int or None
    label : str
        ``H[w[0], b]`` or ``(H v)[w[0]]``.
    """

    row: int
    column: int | None
    vector: dict | None
    vector_seed: list | None
    label: str

    def to_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "vector_seed": self.vector_seed, "label": self.label}


def entry_label(model: Model, k: int) -> str:
    """``w[0, 1]`` for the flattened entry ``k`` (declaration order, C order within each variable)."""
    name, idx = _locate(model, k)
    shape = model.shape(name)
    if not shape:
        return name
    return f"{name}[{', '.join(str(int(i)) for i in np.unravel_index(idx, shape))}]"


def _unit(model: Model, k: int) -> dict:
    name, idx = _locate(model, k)
    v = np.zeros(model.shape(name))
    v.reshape(-1)[idx] = 1.0
    return {name: v}


def second_step_grid(scheme: SecondScheme, dtype: Dtype, per_decade: int = 3) -> np.ndarray:
    """Decade grid around the modelled optimum ``u^(1/(p+q))``: four decades below (round-off arm,
    slope ``-q``) to three above (truncation arm, slope ``p``), capped at 1."""
    q = 2 if scheme.kind is SecondKind.LOSS else 1
    u = dtype.eps / 2
    centre = math.log10(u ** (1.0 / (scheme.order + q)))
    lo, hi = math.floor(centre) - 4, min(math.ceil(centre) + 3, 0)
    return np.logspace(lo, hi, per_decade * (hi - lo) + 1)


def _prec(h_min: float, p: int, q: int) -> int:
    # D_exact loses q |log2 h| bits to cancellation, T ~ h^p another p |log2 h|: keep 128 beyond both
    return min(160 + int(math.ceil(max(-math.log2(h_min), 1.0))) * (p + q + 1), 6000)


def _loss_batch(model, point, target, base: SecondScheme, hs, dtype):
    rows_r, rows_e, weights = [], [], None
    for h in hs:
        r, e, w = _loss_rows(model, point, target.row, target.column, float(h), base, dtype)
        rows_r.extend(r)
        rows_e.extend(e)
        weights = w
    return rows_r, rows_e, weights


def _gradient_batch(point, vector, hs, dtype):
    rows_r, rows_e = [], []
    for h in hs:
        for c, _w in GRADIENT_CENTRAL.nodes:
            r, e = _gradient_rows(point, vector, float(h), c, dtype)
            rows_r.append(r)
            rows_e.append(e)
    return rows_r, rows_e, [w for _c, w in GRADIENT_CENTRAL.nodes]


def _entry_of(values, shape: tuple, idx: int, count: int) -> np.ndarray:
    """Entry ``idx`` of each of ``count`` batched values of a variable of ``shape`` (a batch axis of 1,
    or none, broadcasts)."""
    a = np.asarray(values)
    if a.ndim == len(shape):  # no batch axis: the same value for every row
        a = a[None, ...]
    return np.broadcast_to(a, (count,) + tuple(shape)).reshape(count, -1)[:, idx]


class _Evaluator:
    """Exact and float values of the differenced function at batches of nodes."""

    def __init__(self, model: Model, point, target: SecondTarget, base: SecondScheme, dtype: Dtype):
        self.model, self.point, self.target, self.base, self.dtype = model, point, target, base, dtype
        self.loss = base.kind is SecondKind.LOSS
        if not self.loss:
            self.vector = target.vector if target.vector is not None else _unit(model, target.column)
            self.name, self.idx = _locate(model, target.row)
        self.q = 2 if self.loss else 1

    def nodes(self, hs):
        if self.loss:
            return _loss_batch(self.model, self.point, self.target, self.base, hs, self.dtype)
        return _gradient_batch(self.point, self.vector, hs, self.dtype)

    def floats(self, rows) -> np.ndarray:
        if self.loss:
            return np.asarray(_float_losses(self.model, self.point, rows, self.dtype))
        from verigrad.fd.nodes import batched_leaves

        base = {n: np.asarray(self.point[n])[None, ...] for n in self.model.leaves}
        leaves = batched_leaves(base, [{k: self.dtype.numpy.type(v) for k, v in r.items()} for r in rows])
        with np.errstate(all="ignore"):
            (out,) = self.model.float_eval([self.model.gradient[self.name]], leaves, self.dtype.numpy, batched=True)
        return _entry_of(out, self.model.shape(self.name), self.idx, len(rows))

    def exact(self, rows, prec: int) -> list:
        node = self.model.loss if self.loss else self.model.gradient[self.name]
        (out,) = _mp_nodes(self.model, self.point, rows, [node], prec)
        if self.loss:
            return list(np.broadcast_to(np.asarray(out, dtype=object), (len(rows),)))
        return list(_entry_of(np.asarray(out, dtype=object), self.model.shape(self.name), self.idx, len(rows)))


def _exact_rows(ev: _Evaluator, rows_e, rows_r, S: int, prec: int):
    """Exact values at the exact and rounded nodes, one batch; when a node leaves the loss's domain
    (log of a negative number at a large step), step by step, those steps marked (values 0)."""
    try:
        return ev.exact(rows_e, prec), ev.exact(rows_r, prec), np.zeros(len(rows_e) // S, dtype=bool)
    except (ValueError, ZeroDivisionError, ArithmeticError):
        pass
    fe, fr, outside = [], [], []
    for r in range(len(rows_e) // S):
        sl = slice(r * S, (r + 1) * S)
        try:
            e, f = ev.exact(rows_e[sl], prec), ev.exact(rows_r[sl], prec)
            outside.append(False)
        except (ValueError, ZeroDivisionError, ArithmeticError):
            e, f = [mpmath.mpf(0)] * S, [mpmath.mpf(0)] * S
            outside.append(True)
        fe.extend(e)
        fr.extend(f)
    return fe, fr, np.array(outside)


def _combine_float(values, weights, den: int, h: float, q: int, dtype: Dtype):
    t = dtype.numpy.type
    with np.errstate(all="ignore"):
        acc = t(0)
        for w, f in zip(weights, values):
            acc = t(acc + t(w) * t(f))
        hp = t(h)
        d = t(den) * hp if q == 1 else t(t(den) * hp) * hp
        return t(acc / d)


def _combine_exact(values, weights, den: int, h: float, q: int):
    return mpmath.fsum(w * v for w, v in zip(weights, values)) / (den * mpmath.mpf(h) ** q)


def run_second_study(model: Model, *, dtype: Dtype, scheme: SecondScheme | str, target: SecondTarget,
                     steps: Sequence[float] | None = None, point=None, digits: int = 30) -> Study:
    """Sweep the steps of one second-order scheme for one Hessian or HVP entry.

    Parameters
    ----------
    model : Model
    dtype : Dtype
    scheme : SecondScheme or str
        A loss scheme needs a Hessian entry (``target.column`` set; ``second-difference`` only on
        the diagonal); ``gradient-central`` takes a Hessian entry (``v = e_j``) or an HVP entry.
    target : SecondTarget
    steps : sequence of float, optional
        Nominal steps (default :func:`second_step_grid`); ``h_p = fl_p(h)``.
    point : mapping, optional
        The point in ``dtype`` (default the case's point rounded to ``dtype``).
    digits : int
        Certified digits of the truth ``H*``.

    Returns
    -------
    Study
        ``truth`` is ``H*`` (mpmath); every row has ``error = truncation + step + roundoff`` to the
        working precision ``precision``; ``model`` and ``observed`` as for first-order studies
        (``model.roundoff_power`` is ``q``).

    Examples
    --------
    >>> from verigrad.casefile.loader import load_case_text
    >>> from verigrad.engine.model import compile_case
    >>> m = compile_case(load_case_text('name = "e"\\nloss = "exp(x)"\\n[symbols]\\nx = { value = 0.0 }\\n'))
    >>> st = run_second_study(m, dtype=Dtype.FLOAT64, scheme="second3",
    ...                       target=SecondTarget(0, 0, None, None, "H[x, x]"), steps=[1e-2, 1e-1])
    >>> round(st.rows[0].truncation / 0.01 ** 2, 4)  # T ~ h^2 f''''/12 = h^2/12
    0.0833
    """
    from verigrad.casefile.loader import point_in_dtype
    from verigrad.engine.hessian import certify_hvp

    t0 = time.perf_counter()
    sch = resolve_second_scheme(scheme, diagonal=target.row == target.column) if isinstance(scheme, str) else scheme
    point = point_in_dtype(model.point, dtype) if point is None else point
    if sch.kind is SecondKind.LOSS and target.column is None:
        raise UsageError(f"{sch.name} differences the loss: it estimates Hessian entries H_ij, not an HVP entry",
                         hint="use --scheme grad-central for an HVP entry, or give --entry I,J")
    base = get_second_scheme(sch.name[len("richardson("):-1]) if sch.richardson else sch
    if base is SECOND_DIFFERENCE and target.row != target.column:
        raise UsageError(f"{sch.name} estimates diagonal entries only; {target.label} is off the diagonal",
                         hint="use mixed4 (the mixed 4-point rule) or grad-central")
    ev = _Evaluator(model, point, target, base, dtype)
    q = ev.q
    np_dt = dtype.numpy
    nominal = np.asarray(second_step_grid(sch, dtype) if steps is None else steps, dtype=np.float64)
    hp = np.array([float(np_dt.type(h)) for h in nominal])
    if np.any(hp <= 0) or not np.all(np.isfinite(hp)):
        raise UsageError(f"a step rounds to 0 or overflows in {dtype.value}: {nominal[(hp <= 0) | ~np.isfinite(hp)]}",
                         hint="use steps the dtype can represent")
    prec = _prec(float(hp.min()) / (2 if sch.richardson else 1), sch.order, q)
    # the truth H* (column j of H, or H v), certified
    vec = target.vector if target.vector is not None else _unit(model, target.column)
    truth_hv = certify_hvp(model, point, vec, dtype, digits=digits)
    name_i, idx_i = _locate(model, target.row)
    key = np.unravel_index(idx_i, model.shape(name_i)) if model.shape(name_i) else ()
    with mpmath.workprec(prec):
        hstar = mpmath.fadd(float(truth_hv.gradient_hi[name_i][key]), float(truth_hv.gradient_lo[name_i][key]),
                            exact=True)
    levels = [hp, hp / 2] if sch.richardson else [hp]
    S = len(base.nodes)
    parts, noises = [], []
    collapsed = np.zeros(len(hp), dtype=bool)  # every node rounds to the same point: the estimate is 0
    outside = np.zeros(len(hp), dtype=bool)  # a node outside the loss's domain
    for hs in levels:
        rows_r, rows_e, weights = ev.nodes(hs)
        collapsed |= np.array([all(rows_r[r * S + k] == rows_r[r * S] for k in range(S)) for r in range(len(hs))])
        F = ev.floats(rows_r).reshape(len(hs), S)
        fe, fr, out = _exact_rows(ev, rows_e, rows_r, S, prec)
        outside |= out
        d_float, d_exact, d_nodes, noise = [], [], [], []
        with mpmath.workprec(prec):
            for r, h in enumerate(hs):
                sl = slice(r * S, (r + 1) * S)
                d_float.append(_combine_float(F[r], weights, base.den, float(h), q, dtype))
                d_exact.append(_combine_exact(fe[sl], weights, base.den, float(h), q))
                d_nodes.append(_combine_exact(fr[sl], weights, base.den, float(h), q))
                dev = [float(mpmath.mpf(float(a)) - b) if np.isfinite(a) else math.nan for a, b in zip(F[r], fr[sl])]
                noise.append(math.sqrt(sum(d * d for d in dev) / S))
        parts.append((d_float, d_exact, d_nodes))
        noises.append(noise)
    rows: list[StudyRow] = []
    with mpmath.workprec(prec):
        for r in range(len(hp)):
            if sch.richardson:
                t = np_dt.type
                with np.errstate(all="ignore"):
                    dfl = t(t(t(4) * parts[1][0][r] - parts[0][0][r]) / t(3))
                dex = (4 * parts[1][1][r] - parts[0][1][r]) / 3
                dno = (4 * parts[1][2][r] - parts[0][2][r]) / 3
                nz = max(noises[0][r], noises[1][r])
            else:
                dfl, dex, dno, nz = parts[0][0][r], parts[0][1][r], parts[0][2][r], noises[0][r]
            finite = bool(np.isfinite(dfl)) and math.isfinite(nz) and not collapsed[r] and not outside[r]
            if not finite:
                nan = math.nan
                rows.append(StudyRow(float(hp[r]), float(nominal[r]), float(dfl), nan, nan, nan, nan, nan, False))
                continue
            df = mpmath.mpf(float(dfl))
            rows.append(StudyRow(float(hp[r]), float(nominal[r]), float(dfl), float(df - hstar), float(dex - hstar),
                                 float(dno - dex), float(df - dno), nz, True))
    view = SecondSchemeView(sch.name, sch.order, q, second=sch)
    notes: list[str] = []
    if collapsed.any():
        notes.append(f"{int(collapsed.sum())} of the smallest steps (up to {hp[collapsed].max():.1e}) are excluded: "
                     f"every node rounds to the same point in {dtype.value} (the step is below half an ulp), so the "
                     f"estimate is 0, all step error")
    if outside.any():
        notes.append(f"{int(outside.sum())} steps (from {hp[outside].min():.1e}) are excluded: a node leaves the "
                     f"loss's domain")
    model_ = _second_model(model, point, dtype, sch, base, ev, target, rows, hstar, notes)
    if model_.truncation_vanishes:
        floor = 1e-22 * (abs(float(hstar)) + 1e-300)
        rows = [r if not r.finite or abs(r.truncation) > floor else
                StudyRow(r.h, r.nominal, r.estimate, r.error, 0.0, r.step, r.roundoff, r.noise, r.finite)
                for r in rows]
        notes.append(model_.note)
    observed: Observed = _observed(rows, view)
    notes.extend(_contradictions(model_, observed, view))
    if ev.loss is False:
        notes.append(f"the gradient differenced is the exact gradient graph evaluated in {dtype.value} "
                     f"(R includes its rounding)")
    direction = Direction(label=target.label, vector=vec, variable=None, index=None,
                          seed=None if target.vector_seed is None else int(target.vector_seed[0]))
    return Study(case=model.case.name, direction=direction, dtype=dtype, scheme=view, truth=hstar, rows=tuple(rows),
                 model=model_, observed=observed, source="expression", step_mode=StepMode.ABSOLUTE,
                 representable=False, precision=prec, seconds=time.perf_counter() - t0, notes=tuple(notes))


def _truncation_coefficient(ev: _Evaluator, sch: SecondScheme, base: SecondScheme) -> object:
    """``A = lim T(h)/h^p`` from the exact function at ``h0`` and ``h0/2`` (no H* needed)."""
    p, q = sch.order, ev.q
    prec = 200 + 40 * (p + q + 2)

    def d_exact(h):
        _r, rows_e, weights = ev.nodes([h])
        return _combine_exact(ev.exact(rows_e, prec), weights, base.den, h, q)

    with mpmath.workprec(prec):
        if sch.richardson:
            def d(h):
                return (4 * d_exact(h / 2) - d_exact(h)) / 3
        else:
            d = d_exact
        return (d(_H0) - d(_H0 / 2)) / (mpmath.mpf(_H0) ** p * (1 - mpmath.mpf(2) ** -p))


def _second_model(model, point, dtype, sch, base, ev, target, rows, hstar, notes) -> StudyModel:
    from verigrad.engine.truth import certify

    p, q = sch.order, ev.q
    coef = float(_truncation_coefficient(ev, sch, base))
    scale = abs(float(hstar)) + 1.0
    vanishes = abs(coef) < 1e-20 * scale
    rich = (4 * 2 ** q + 1) / 3 if sch.richardson else 1.0
    sw = sum(abs(w[-1]) for w in base.nodes) / base.den * rich
    noise = [r.noise for r in rows if r.finite and math.isfinite(r.noise)]
    nu = float(np.median(noise)) if noise else math.nan
    br = nu * sw

    def ulp_half(k):
        name, idx = _locate(model, k)
        x = float(np.asarray(point[name]).reshape(-1)[idx])
        return float(np.spacing(dtype.numpy.type(abs(x)))) / 2 if x != 0 else 0.0

    if ev.loss:
        g = certify(model, point, dtype)
        coords = {target.row, target.column}
        bs = sum(abs(float(np.asarray(g.gradient[n]).reshape(-1)[i])) * ulp_half(k)
                 for k in coords for n, i in [_locate(model, k)]) * sw
    elif target.vector is None:
        bs = abs(float(hstar)) * ulp_half(target.column) * sw
    else:
        bs = 0.0
        notes.append("the step error S of a dense direction v is measured, not modelled (the model's h* balances "
                     "truncation and round-off only)")
    note = ""
    if vanishes:
        note = (f"the truncation error of {sch.name} vanishes for {target.label} (the loss is a polynomial of low "
                f"degree there): all of the error is step and round-off error; there is no interior optimal step")
        h_opt = e_opt = math.nan
    else:
        b = br + bs
        h_opt = (q * b / (p * abs(coef))) ** (1.0 / (p + q)) if b > 0 else math.nan
        e_opt = abs(coef) * h_opt ** p + b / h_opt ** q if b > 0 else math.nan
    return StudyModel(truncation_coefficient=coef, truncation_power=p, roundoff_coefficient=br, step_coefficient=bs,
                      noise=nu, optimal_step=h_opt, min_error=e_opt, truncation_vanishes=vanishes, note=note,
                      flat_roundoff=False, roundoff_power=q)


def second_target(model: Model, dtype: Dtype, *, entry: tuple[int, int | None] = (0, 0), hvp: bool = False,
                  ) -> SecondTarget:
    """The :class:`SecondTarget` of ``(i, j)`` (a Hessian entry) or of ``(H v)_i`` with the case's
    seeded HVP direction (:func:`verigrad.runner.second.hvp_vector`'s rule: standard normal from
    ``numpy.random.default_rng([seed, 22])``, rounded to the dtype)."""
    from verigrad.engine.hessian import flat_offsets

    n = sum(b - a for a, b in flat_offsets(model).values())
    i, j = entry
    for k, what in ((i, "row"), (j, "column")):
        if k is not None and not 0 <= k < n:
            raise UsageError(f"{model.case.name}: the {what} index {k} is outside the {n} variable entries "
                             f"(0 … {n - 1}, declaration order, C order within each variable)",
                             hint="e.g. --entry 0,0")
    if hvp:
        seed = [int(model.case.seed), 22]
        rng = np.random.default_rng(seed)
        v = {name: rng.standard_normal(model.shape(name)).astype(dtype.numpy) for name in model.gradient}
        return SecondTarget(i, None, v, seed, f"(H v)[{entry_label(model, i)}]")
    return SecondTarget(i, j, None, None, f"H[{entry_label(model, i)}, {entry_label(model, j)}]")


