"""Finite-difference Hessians and Hessian-vector products, with their exact error split.

Schemes (:class:`SecondScheme`), for the entry ``(i, j)`` of the Hessian or the HVP along ``v``:

* ``second-difference``: differences of the loss, ``[1, -2, 1]`` on the diagonal,
  ``D_ii(h) = (f(x + h e_i) - 2 f(x) + f(x - h e_i)) / h^2``;
* ``mixed-4point``: differences of the loss off the diagonal,
  ``D_ij(h) = (f(x+h e_i+h e_j) - f(x+h e_i-h e_j) - f(x-h e_i+h e_j) + f(x-h e_i-h e_j)) / (4 h^2)``
  (a full FD Hessian uses ``second-difference`` on the diagonal and this off it);
* ``gradient-central``: central differences of a gradient (the user's gradient code or any
  callable), ``D(h) = (g(x + h v) - g(x - h v)) / (2 h)``, an HVP (a Hessian column for
  ``v = e_j``);
* ``richardson(<scheme>)``: one Richardson step with halving,
  ``(4 D(h/2) - D(h)) / 3`` (each is of order 2).

The split (DESIGN.md "Finite differences", second order): with ``h_p = fl_p(h)``, nodes
``y_k = fl_p(x_p + c_k h_p e)`` rounded once per coordinate, and ``H*`` the certified truth,

====  ==============================  ============================================
T     D_exact - H*                    the scheme's own error (~ h^2 f''''/12 for [1,-2,1])
S     D_nodes - D_exact               the nodes were not where intended
R     D_float - D_nodes               rounding in f_p (or in the gradient code) and in the combination
E     D_float - H* = T + S + R
====  ==============================  ============================================

``D_exact``/``D_nodes`` are the scheme's combination of the exact loss (or gradient) at the
exact/rounded nodes, evaluated in mpmath at ``prec`` bits (default 320: the parts are exact to
about ``10^-90`` relative, far below any of them); ``D_float`` is the dtype's computation.

Steps. For the 3-point second difference the truncation is ``h^2 |f''''| / 12`` and the
round-off about ``4 u |f| / h^2`` (u the unit round-off), so the best step is
``h* = (48 u |f| / |f''''|)^(1/4) ~ u^(1/4)`` and the best attainable error ``~ u^(1/2)``
(about 1e-8 relative in float64, 3e-4 in float32); for central differences of the gradient
``h* ~ u^(1/3)`` and the error ``~ u^(2/3)``. :func:`default_step` uses those exponents.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Mapping

import mpmath
import numpy as np

from verigrad.engine.backends import MPBackend, round_fraction
from verigrad.engine.model import Model
from verigrad.errors import UsageError
from verigrad.fd.nodes import batched_leaves
from verigrad.spec import Dtype

__all__ = ["SecondKind", "SecondScheme", "SECOND_SCHEMES", "get_second_scheme", "default_step", "SecondSplit",
           "fd_hessian", "fd_hessian_entry", "fd_hvp", "hessian_entry_splits", "hvp_split", "DEFAULT_SPLIT_PREC"]

DEFAULT_SPLIT_PREC = 320


class SecondKind(enum.Enum):
    LOSS = "loss"          # differences of the loss
    GRADIENT = "gradient"  # differences of a gradient


@dataclass(frozen=True)
class SecondScheme:
    """A second-order difference scheme (a value: immutable, named).

    Attributes
    ----------
    name : str
    kind : SecondKind
    nodes : tuple
        LOSS: ``(a, b, w)`` with ``D = sum w f(x + a h e_i + b h e_j) / (den h^2)``;
        GRADIENT: ``(c, w)`` with ``D = sum w g(x + c h v) / (den h)``.
    den : int
    order : int
        Of the truncation error (2 for the base schemes, 4 after one Richardson step).
    step_exponent : Fraction
        Default step ``u^step_exponent`` (1/4 for loss differences, 1/3 for gradient differences).
    richardson : bool
    """

    name: str
    kind: SecondKind
    nodes: tuple
    den: int
    order: int
    step_exponent: Fraction
    richardson: bool = False

    def extrapolated(self) -> "SecondScheme":
        """One Richardson step with halving: ``(4 D(h/2) - D(h)) / 3``."""
        if self.richardson:
            raise UsageError(f"{self.name} is already extrapolated", hint="one Richardson step is supported")
        return SecondScheme(f"richardson({self.name})", self.kind, self.nodes, self.den, self.order + 2,
                            Fraction(1, 6) if self.kind is SecondKind.LOSS else Fraction(1, 5), True)


SECOND_DIFFERENCE = SecondScheme("second-difference", SecondKind.LOSS, ((1, 0, 1), (0, 0, -2), (-1, 0, 1)), 1, 2,
                                 Fraction(1, 4))
MIXED_4POINT = SecondScheme("mixed-4point", SecondKind.LOSS, ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)), 4, 2,
                            Fraction(1, 4))
GRADIENT_CENTRAL = SecondScheme("gradient-central", SecondKind.GRADIENT, ((1, 1), (-1, -1)), 2, 2, Fraction(1, 3))
SECOND_SCHEMES = {s.name: s for s in (SECOND_DIFFERENCE, MIXED_4POINT, GRADIENT_CENTRAL)}


def get_second_scheme(name: str) -> SecondScheme:
    """A scheme by name: ``second-difference``, ``mixed-4point``, ``gradient-central``, or ``richardson(<name>)``."""
    text = name.strip()
    if text.startswith("richardson(") and text.endswith(")"):
        return get_second_scheme(text[len("richardson("):-1]).extrapolated()
    if text not in SECOND_SCHEMES:
        allowed = ", ".join(list(SECOND_SCHEMES) + ["richardson(<scheme>)"])
        raise UsageError(f"unknown second-order scheme {name!r}", hint=f"allowed: {allowed}")
    return SECOND_SCHEMES[text]


def default_step(scheme: SecondScheme, dtype: Dtype, scale: float = 1.0) -> float:
    """``u^step_exponent * max(1, |scale|)``, u the unit round-off of ``dtype`` (float64: 1.1e-16)."""
    u = dtype.eps / 2
    return float(u ** float(scheme.step_exponent)) * max(1.0, abs(float(scale)))


@dataclass(frozen=True)
class SecondSplit:
    """One finite-difference second derivative and its exact split.

    Attributes
    ----------
    scheme : str
    dtype : Dtype
    entry : tuple
        ``(i, j)`` of the flattened Hessian, or ``(variable, flat index)`` of an HVP.
    h : float
        ``h_p`` (a value of the dtype).
    estimate : float
        ``D_float``.
    truth, error, truncation, step_error, roundoff : mpmath.mpf
        ``H*``, ``E``, ``T``, ``S``, ``R`` (exact to the working precision; ``E = T + S + R``).
    """

    scheme: str
    dtype: Dtype
    entry: tuple
    h: float
    estimate: float
    truth: object
    error: object
    truncation: object
    step_error: object
    roundoff: object

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "dtype": self.dtype.value, "entry": list(self.entry), "h": self.h,
                "estimate": self.estimate, **{k: float(getattr(self, k)) for k in
                                              ("truth", "error", "truncation", "step_error", "roundoff")}}


def _locate(model: Model, k: int) -> tuple[str, int]:
    from verigrad.engine.hessian import flat_offsets

    for name, (a, b) in flat_offsets(model).items():
        if a <= k < b:
            return name, k - a
    raise IndexError(f"entry {k} is beyond the {sum(b - a for a, b in flat_offsets(model).values())} variables")


def _value(point, name: str, idx: int) -> float:
    return float(np.asarray(point[name]).reshape(-1)[idx])


def _loss_rows(model: Model, point, i: int, j: int, h: float, scheme: SecondScheme, dtype: Dtype):
    """Per node: the rounded row (float) and the exact row (Fraction), and the weights."""
    (ni, ki), (nj, kj) = _locate(model, i), _locate(model, j)
    xi, xj = Fraction(_value(point, ni, ki)), Fraction(_value(point, nj, kj))
    hq = Fraction(h)
    rounded, exact, weights = [], [], []
    for a, b, w in scheme.nodes:
        if i == j:
            q = {(ni, ki): xi + (a + b) * hq}
        else:
            q = {(ni, ki): xi + a * hq, (nj, kj): xj + b * hq}
        exact.append(q)
        rounded.append({k: round_fraction(v, dtype.numpy) for k, v in q.items()})
        weights.append(w)
    return rounded, exact, weights


def _float_losses(model: Model, point, rows, dtype: Dtype) -> np.ndarray:
    base = {n: np.asarray(point[n])[None, ...] for n in model.leaves}
    leaves = batched_leaves(base, [{k: dtype.numpy.type(v) for k, v in r.items()} for r in rows])
    (out,) = model.float_eval([model.loss], leaves, dtype.numpy, batched=True)
    return np.broadcast_to(out, (len(rows),))


def _mp_nodes(model: Model, point, rows, nodes, prec: int) -> list:
    """Exact values of ``nodes`` (mpmath at ``prec``) at each row (``{(name, i): Fraction or float}``)."""
    with mpmath.workprec(prec):
        base = {n: MPBackend.from_float(np.asarray(point[n]))[None, ...] for n in model.leaves}
        conv = [{k: (mpmath.mpf(v.numerator) / v.denominator if isinstance(v, Fraction) else mpmath.mpf(v))
                 for k, v in r.items()} for r in rows]
        leaves = batched_leaves(base, conv)
        return model.mp_eval(nodes, leaves, prec=prec, batched=True)


def _float_combination(values: np.ndarray, weights, den: int, h, power: int, dtype: Dtype):
    """``fl(sum w_k F_k / fl(den h^power))`` in ``dtype`` (integer weights, summed in node order)."""
    t = dtype.numpy.type
    with np.errstate(all="ignore"):
        acc = t(0)
        for w, f in zip(weights, values):
            acc = t(acc + t(w) * f)
        hp = t(h)
        d = t(den) * hp if power == 1 else t(t(den) * hp) * hp
        return t(acc / d)


def _hessian_entry_base(model, point, i, j, h, scheme, dtype, prec):
    rounded, exact, weights = _loss_rows(model, point, i, j, h, scheme, dtype)
    F = _float_losses(model, point, rounded, dtype)
    d_float = _float_combination(F, weights, scheme.den, h, 2, dtype)
    (fe,) = _mp_nodes(model, point, exact, [model.loss], prec)
    (fr,) = _mp_nodes(model, point, rounded, [model.loss], prec)
    with mpmath.workprec(prec):
        scale = scheme.den * mpmath.mpf(h) ** 2
        d_exact = mpmath.fsum(w * v for w, v in zip(weights, np.broadcast_to(fe, (len(weights),)))) / scale
        d_nodes = mpmath.fsum(w * v for w, v in zip(weights, np.broadcast_to(fr, (len(weights),)))) / scale
    return d_float, d_exact, d_nodes


def _combine(parts_h, parts_h2, scheme, dtype, prec):
    """Richardson: ``(4 D(h/2) - D(h)) / 3`` in the dtype for D_float, exactly for the others."""
    if not scheme.richardson:
        return parts_h
    t = dtype.numpy.type
    with np.errstate(all="ignore"):
        d_float = t(t(t(4) * parts_h2[0] - parts_h[0]) / t(3))
    with mpmath.workprec(prec):
        return (d_float, (4 * parts_h2[1] - parts_h[1]) / 3, (4 * parts_h2[2] - parts_h[2]) / 3)


def _split(scheme, dtype, entry, h, parts, truth, prec) -> SecondSplit:
    d_float, d_exact, d_nodes = parts
    with mpmath.workprec(prec):
        tr = mpmath.mpf(truth) if not isinstance(truth, mpmath.mpf) else truth
        df = mpmath.mpf(float(d_float))
        return SecondSplit(scheme.name, dtype, entry, float(h), float(d_float), tr, df - tr, d_exact - tr,
                           d_nodes - d_exact, df - d_nodes)


def hessian_entry_splits(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, truth, entries, *,
                         step: float | None = None, richardson: bool = False,
                         prec: int = DEFAULT_SPLIT_PREC) -> list[SecondSplit]:
    """Finite-difference Hessian entries from the loss, each split exactly into T + S + R.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        Every symbol in ``dtype``.
    dtype : Dtype
    truth : verigrad.engine.hessian.HessianTruth
        The certified Hessian at the same point.
    entries : iterable of (int, int)
        Flattened ``(i, j)``.
    step : float, optional
        Nominal step (default :func:`default_step` at ``|x_i|``); ``h_p = fl_p(step)``.
    richardson : bool
        One Richardson step (``(4 D(h/2) - D(h)) / 3``). The scheme is ``second-difference`` on the
        diagonal and ``mixed-4point`` off it.

    Returns
    -------
    list of SecondSplit
    """
    out = []
    for i, j in entries:
        sch = SECOND_DIFFERENCE if i == j else MIXED_4POINT
        sch = sch.extrapolated() if richardson else sch
        name, k = _locate(model, i)
        h = step if step is not None else default_step(sch, dtype, _value(point, name, k))
        hp = float(dtype.numpy.type(h))
        base = SecondScheme(sch.name, sch.kind, sch.nodes, sch.den, sch.order, sch.step_exponent)
        parts = _hessian_entry_base(model, point, i, j, hp, base, dtype, prec)
        parts2 = _hessian_entry_base(model, point, i, j, hp / 2, base, dtype, prec) if sch.richardson else None
        exact = mpmath.fadd(float(truth.hi[i, j]), float(truth.lo[i, j]), exact=True)
        out.append(_split(sch, dtype, (i, j), hp, _combine(parts, parts2, sch, dtype, prec), exact, prec))
    return out


def fd_hessian(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, *, step: float | None = None,
               richardson: bool = False) -> np.ndarray:
    """The finite-difference Hessian from the loss in ``dtype`` (``N x N``, symmetric by construction).

    ``[1, -2, 1]`` on the diagonal and the mixed 4-point rule off it, at ``step`` (default
    ``u^(1/4) max(1, |x_i|)``, or ``u^(1/6)`` with ``richardson``); the float part only (no split).
    """
    from verigrad.engine.hessian import flat_offsets

    n = sum(b - a for a, b in flat_offsets(model).values())
    out = np.zeros((n, n), dtype=dtype.numpy)
    for i in range(n):
        for j in range(i, n):
            out[i, j] = out[j, i] = fd_hessian_entry(model, point, dtype, i, j, step=step, richardson=richardson)
    return out


def fd_hessian_entry(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, i: int, j: int, *,
                     step: float | None = None, richardson: bool = False):
    """One entry of :func:`fd_hessian` (a value of ``dtype``): ``[1, -2, 1]`` for ``i == j``, the mixed
    4-point rule otherwise, at ``step`` (default :func:`default_step` at ``|x_i|``)."""
    sch = SECOND_DIFFERENCE if i == j else MIXED_4POINT
    sch_used = sch.extrapolated() if richardson else sch
    name, k = _locate(model, i)
    h = step if step is not None else default_step(sch_used, dtype, _value(point, name, k))
    hp = float(dtype.numpy.type(h))
    vals = []
    for hh in ((hp, hp / 2) if richardson else (hp,)):
        rounded, _, weights = _loss_rows(model, point, i, j, hh, sch, dtype)
        vals.append(_float_combination(_float_losses(model, point, rounded, dtype), weights, sch.den, hh, 2, dtype))
    return vals[0] if not richardson else _combine((vals[0], 0, 0), (vals[1], 0, 0), sch_used, dtype, 64)[0]


def _gradient_rows(point, vector, h: float, c: int, dtype: Dtype) -> tuple[dict, dict]:
    """Rounded (float) and exact (Fraction) entries of ``x + c h v`` for every variable of ``vector``."""
    rounded, exact = {}, {}
    hq = Fraction(h)
    for name, v in vector.items():
        x = np.asarray(point[name]).reshape(-1)
        vv = np.asarray(v).reshape(-1)
        for k in range(x.size):
            if vv[k] == 0:
                continue
            q = Fraction(float(x[k])) + c * hq * Fraction(float(vv[k]))
            exact[(name, k)] = q
            rounded[(name, k)] = round_fraction(q, dtype.numpy)
    return rounded, exact


def fd_hvp(gradient: Callable[[dict], Mapping[str, np.ndarray]], point: Mapping[str, np.ndarray],
           vector: Mapping[str, np.ndarray], dtype: Dtype, *, step: float | None = None,
           richardson: bool = False) -> dict[str, np.ndarray]:
    """``H v`` by central differences of a gradient: ``(g(x + h v) - g(x - h v)) / (2 h)`` in ``dtype``.

    Parameters
    ----------
    gradient : callable
        ``gradient(point) -> {variable: array}``: the user's gradient code (or any gradient) at a
        point given as arrays of ``dtype``.
    vector : mapping of str to ndarray
        ``v`` per variable (values of ``dtype``).
    step : float, optional
        Default ``u^(1/3)`` (``u^(1/5)`` with ``richardson``).
    """
    sch = GRADIENT_CENTRAL.extrapolated() if richardson else GRADIENT_CENTRAL
    h = step if step is not None else default_step(sch, dtype)
    hp = float(dtype.numpy.type(h))
    ests = []
    for hh in ((hp, hp / 2) if richardson else (hp,)):
        gs = []
        for c in (1, -1):
            rounded, _ = _gradient_rows(point, vector, hh, c, dtype)
            p = {k: np.array(v, copy=True) for k, v in point.items()}
            for (name, k), val in rounded.items():
                p[name].reshape(-1)[k] = val
            gs.append(gradient(p))
        t = dtype.numpy.type
        with np.errstate(all="ignore"):
            ests.append({n: ((np.asarray(gs[0][n], dtype=dtype.numpy) - np.asarray(gs[1][n], dtype=dtype.numpy))
                             / (t(2) * t(hh))).astype(dtype.numpy) for n in gs[0]})
    if not richardson:
        return ests[0]
    t = dtype.numpy.type
    with np.errstate(all="ignore"):
        return {n: ((t(4) * ests[1][n] - ests[0][n]) / t(3)).astype(dtype.numpy) for n in ests[0]}


def hvp_split(model: Model, gradient: Callable[[dict], Mapping[str, np.ndarray]], point, vector, dtype: Dtype,
              truth, *, step: float | None = None, richardson: bool = False,
              prec: int = DEFAULT_SPLIT_PREC) -> list[SecondSplit]:
    """:func:`fd_hvp` with every entry split exactly: ``E = T + S + R``.

    ``truth`` is the certified HVP (:func:`verigrad.engine.hessian.certify_hvp` at the same point and
    vector); the exact gradient at the nodes is the model's gradient graph in mpmath. ``R`` holds the
    rounding of the gradient code and of the final combination.
    """
    sch = GRADIENT_CENTRAL.extrapolated() if richardson else GRADIENT_CENTRAL
    h = step if step is not None else default_step(sch, dtype)
    hp = float(dtype.numpy.type(h))
    names = list(model.gradient)
    est = fd_hvp(gradient, point, vector, dtype, step=h, richardson=richardson)

    def exact_parts(hh):
        rows_e, rows_r = [], []
        for c in (1, -1):
            r, e = _gradient_rows(point, vector, hh, c, dtype)
            rows_e.append(e)
            rows_r.append(r)
        ge = _mp_nodes(model, point, rows_e, [model.gradient[n] for n in names], prec)
        gr = _mp_nodes(model, point, rows_r, [model.gradient[n] for n in names], prec)
        with mpmath.workprec(prec):
            den = 2 * mpmath.mpf(hh)
            return ({n: (a[0] - a[1]) / den for n, a in zip(names, ge)},
                    {n: (a[0] - a[1]) / den for n, a in zip(names, gr)})

    ex1, nd1 = exact_parts(hp)
    if richardson:
        ex2, nd2 = exact_parts(hp / 2)
        with mpmath.workprec(prec):
            ex1 = {n: (4 * ex2[n] - ex1[n]) / 3 for n in names}
            nd1 = {n: (4 * nd2[n] - nd1[n]) / 3 for n in names}
    out = []
    for n in names:
        for k in range(int(np.prod(model.shape(n), dtype=np.int64))):
            idx = np.unravel_index(k, model.shape(n)) if model.shape(n) else ()
            exact_truth = mpmath.fadd(float(truth.gradient_hi[n][idx]), float(truth.gradient_lo[n][idx]), exact=True)
            parts = (np.asarray(est[n]).reshape(-1)[k], np.asarray(ex1[n]).reshape(-1)[k],
                     np.asarray(nd1[n]).reshape(-1)[k])
            out.append(_split(sch, dtype, (n, k), hp, parts, exact_truth, prec))
    return out
