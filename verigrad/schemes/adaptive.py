"""Adaptive extrapolation methods as immutable values: Ridders' method and numDeriv's default.

Unlike a linear :class:`~verigrad.schemes.scheme.Scheme`, these methods *choose* among the
entries of a Richardson tableau at run time (Ridders), or apply a fixed tableau whose first
column has steps that depend on the point (numDeriv). A method is a frozen value; calling
:meth:`Ridders.estimate` / :meth:`NumDeriv.estimate` on a function returns a new
:class:`Estimate` record (value, error estimate, status, the steps and nodes used) and never
changes the method.

Every tableau entry is a linear combination of central differences with exact coefficients,
so the entry a method returns is itself a linear scheme (:meth:`Ridders.entry_scheme`,
:meth:`NumDeriv.entry_scheme`), whose exact truncation / step / round-off split the studies
compute (:mod:`verigrad.studies.adaptive`).

The float arithmetic is done in the requested dtype (numpy scalars of float32 or float64), in
the order of the published algorithms, so that float64 reproduces them digit for digit:

* Ridders: W. H. Press et al., *Numerical Recipes*, 3rd ed. (2007), section 5.7, routine
  ``dfridr`` (C. J. F. Ridders, Adv. Eng. Software 4 (1982) 75-76);
* numDeriv: P. Gilbert and R. Varadhan, R package ``numDeriv``, ``grad(method="Richardson")``
  (``grad.default``, version 2016.8-1.1).

This module depends on the standard library and numpy only.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Sequence

import numpy as np

from verigrad.schemes.scheme import Scheme, _build_linear
from verigrad.spec import is_float_dtype
from verigrad.schemes.syntax import format_value
from verigrad.schemes.weights import _fmt

__all__ = ["AdaptiveMethod", "Estimate", "EstimateStatus", "NumDeriv", "Ridders", "UNDERSTATEMENT_FACTOR"]

#: an error estimate below the true error by more than this factor is flagged as understated
UNDERSTATEMENT_FACTOR = 10.0


class EstimateStatus(enum.Enum):
    """How an adaptive estimate ended.

    ``CONVERGED``: finite, and the method's error estimate is at most ``sqrt(eps)`` of the
    estimate (or exactly 0). ``NOT_CONVERGED``: finite but the error estimate is larger; the
    typical cause is a first step so large that the tableau spans a pole or a region where the
    function is not smooth (Numerical Recipes: "if err is not small, try a different h").
    ``NONFINITE``: a function value, the estimate or its error is inf or NaN.
    """

    CONVERGED = "converged"
    NOT_CONVERGED = "not converged"
    NONFINITE = "non-finite"


@dataclass(frozen=True, eq=False)
class Estimate:
    """The result of one adaptive estimate (a new record per call).

    Attributes
    ----------
    value : float
        The estimate, in the dtype of the call.
    error_estimate : float
        The method's own estimate of ``|value - f'(x)|`` (NaN when the method has none).
    status : EstimateStatus
    entry : tuple of (int, int)
        ``(level, column)`` of the tableau entry returned: level 0 is the central
        differences, column ``i`` uses the step ``steps[i]``.
    steps : tuple of float
        The float steps ``h_i`` of the columns that were computed, in order.
    nodes : tuple of float
        The offsets ``t`` at which ``f`` was evaluated (``+h_i, -h_i`` per column, or the
        one-sided pair), in evaluation order.
    values : tuple of float
        ``f`` at those nodes.
    evaluations : int
        Number of function evaluations the algorithm made (without early exit numDeriv
        makes ``2 r``; Ridders ``2 (columns used)``).
    method : str
        The method's canonical string.
    dtype : str
    reason : str
        Why the status is not ``CONVERGED`` ("" otherwise).
    """

    value: float
    error_estimate: float
    status: EstimateStatus
    entry: tuple[int, int]
    steps: tuple[float, ...]
    nodes: tuple[float, ...]
    values: tuple[float, ...]
    evaluations: int
    method: str
    dtype: str
    reason: str = ""

    def __repr__(self) -> str:
        return (f"Estimate({self.value!r}, error_estimate={self.error_estimate:.3g}, status={self.status.value!r}, "
                f"entry={self.entry}, evaluations={self.evaluations})")


def _dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if not is_float_dtype(dt) or dt.itemsize > 8:
        raise TypeError(f"dtype must be float16, bfloat16, float32 or float64, got {dt}")
    return dt


def _status(value, err, dt: np.dtype, values) -> tuple[EstimateStatus, str]:
    if not all(math.isfinite(float(v)) for v in values):
        return EstimateStatus.NONFINITE, "a function value is not finite (a node outside the domain or at a pole)"
    if not (math.isfinite(float(value)) and math.isfinite(float(err))):
        return EstimateStatus.NONFINITE, "the estimate or its error estimate is not finite"
    tol = math.sqrt(float(np.finfo(dt).eps))
    if float(err) > tol * abs(float(value)):
        return (EstimateStatus.NOT_CONVERGED,
                f"the error estimate {float(err):.2e} exceeds sqrt(eps) = {tol:.1e} of the estimate "
                f"{float(value):.6g}: the tableau did not settle (a first step too large for the function, "
                "a pole or a kink within reach, or noise)")
    return EstimateStatus.CONVERGED, ""


def _column_scheme(offsets: Sequence[Fraction], weights: Sequence[Fraction]) -> dict[Fraction, Fraction]:
    return dict(zip(offsets, weights))


def _combine(columns: dict[int, dict[Fraction, Fraction]], coefficients: dict[int, Fraction], *, name: str,
             description: str) -> Scheme:
    """The linear scheme sum_c coefficient_c * column_c (each column a dict offset -> weight, units of h)."""
    merged: dict[Fraction, Fraction] = {}
    for c, a in coefficients.items():
        for off, w in columns[c].items():
            merged[off] = merged.get(off, Fraction(0)) + a * w
    offs = tuple(merged)
    return _build_linear(offs, tuple(merged[o] for o in offs), name=name, description=description)


def _tableau_coefficients(level: int, column: int, factor: Callable[[int], Fraction]) -> dict[int, Fraction]:
    """Coefficients over the first-level columns of tableau entry (level, column) where
    a[m][c] = (F_m a[m-1][c] - a[m-1][c-1]) / (F_m - 1), F_m = factor(m)."""
    if level == 0:
        return {column: Fraction(1)}
    hi = _tableau_coefficients(level - 1, column, factor)
    lo = _tableau_coefficients(level - 1, column - 1, factor)
    f = factor(level)
    out: dict[int, Fraction] = {}
    for c, a in hi.items():
        out[c] = out.get(c, Fraction(0)) + f * a / (f - 1)
    for c, a in lo.items():
        out[c] = out.get(c, Fraction(0)) - a / (f - 1)
    return out


def _positive(name: str, value, *, what: str, integer: bool = False, minimum=None, strict: bool = True):
    if isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be a number ({what})")
    try:
        q = Fraction(value) if not isinstance(value, float) else Fraction(str(value))
    except (TypeError, ValueError):
        raise TypeError(f"{name}={value!r} must be a number ({what})") from None
    if integer and q.denominator != 1:
        raise ValueError(f"{name}={format_value(q)} must be a whole number ({what})")
    lo = Fraction(0) if minimum is None else Fraction(minimum)
    if (q <= lo) if strict else (q < lo):
        rel = ">" if strict else ">="
        raise ValueError(f"{name}={format_value(q)} must be {rel} {format_value(lo)} ({what})")
    return int(q) if integer else q


# --------------------------------------------------------------------------------------------
# Ridders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ridders:
    """Ridders' method: a tableau of central differences at steps ``h0 / con^i``, extrapolated
    by ``con^2``, returning the entry whose error estimate is smallest (Numerical Recipes ``dfridr``).

    Parameters
    ----------
    h0 : Fraction or None
        First step (need not be small: "an increment over which f changes substantially").
        None: the step comes from the caller (a study's sweep, ``[check] steps``) or
        :data:`DEFAULT_H0`.
    con : Fraction, default 1.4
        Step ratio between columns (> 1).
    ntab : int, default 10
        Size of the tableau (columns; >= 2).
    safe : Fraction, default 2
        Quit when the diagonal's change exceeds ``safe`` times the best error so far (> 1).

    Notes
    -----
    With ``h_i = h0 / con^i``, ``a[0][i] = (f(x + h_i) - f(x - h_i)) / (2 h_i)`` and
    ``a[j][i] = (con^(2j) a[j-1][i] - a[j-1][i-1]) / (con^(2j) - 1)``; the entry ``a[j][i]``
    has order ``2 (j + 1)``. Its error estimate is
    ``max(|a[j][i] - a[j-1][i]|, |a[j][i] - a[j-1][i-1]|)``; the entry with the smallest one is
    returned, and the loop stops when ``|a[i][i] - a[i-1][i-1]| >= safe * err``.

    References
    ----------
    C. J. F. Ridders, "Accurate computation of F'(x) and F'(x)F''(x)", Advances in Engineering
    Software 4 (1982), 75-76. W. H. Press, S. A. Teukolsky, W. T. Vetterling, B. P. Flannery,
    *Numerical Recipes*, 3rd ed., Cambridge (2007), section 5.7 (``dfridr``).

    Examples
    --------
    >>> import math
    >>> est = Ridders(h0=Fraction(1, 10)).estimate(math.tan, 1.0)
    >>> abs(est.value - 1 / math.cos(1.0) ** 2) < 1e-12, est.error_estimate < 1e-11
    (True, True)
    """

    h0: Fraction | None = None
    con: Fraction = Fraction(7, 5)
    ntab: int = 10
    safe: Fraction = Fraction(2)

    #: the first step used when neither the method nor the caller gives one
    DEFAULT_H0 = Fraction(1, 10)

    def __post_init__(self) -> None:
        if self.h0 is not None:
            object.__setattr__(self, "h0", _positive("h0", self.h0, what="the first step, > 0"))
        object.__setattr__(self, "con", _positive("con", self.con, what="the step ratio between columns",
                                                  minimum=1))
        object.__setattr__(self, "ntab", _positive("ntab", self.ntab, what="the number of columns, at least 2",
                                                   integer=True, minimum=2, strict=False))
        object.__setattr__(self, "safe", _positive("safe", self.safe, what="the early-exit factor", minimum=1))
        if self.ntab > 40:
            raise ValueError(f"ntab={self.ntab} must be at most 40 (the steps h0/con^i would underflow the tableau)")

    kind = "ridders"
    derivative = 1

    @property
    def name(self) -> str:
        """The canonical string (every parameter, defaults included)."""
        parts = [] if self.h0 is None else [f"h0={format_value(self.h0)}"]
        parts += [f"con={format_value(self.con)}", f"ntab={self.ntab}", f"safe={format_value(self.safe)}"]
        return f"ridders({', '.join(parts)})"

    @property
    def description(self) -> str:
        return (f"Ridders' method (Numerical Recipes dfridr): central differences at h0/{_fmt(self.con)}^i, "
                f"i < {self.ntab}, extrapolated by {_fmt(self.con)}^2; returns the entry with the smallest "
                "error estimate")

    def __str__(self) -> str:
        return f"{self.name}: {self.description}"

    def _steps(self, h: float, dt: np.dtype) -> list:
        t = dt.type
        con = t(float(self.con))
        hh = t(h)
        out = [hh]
        for _ in range(1, self.ntab):
            hh = t(hh / con)
            out.append(hh)
        return out

    def nodes(self, h: float, dtype=np.float64) -> list[float]:
        """Every offset the algorithm may evaluate (``+h_i, -h_i`` per column), in order."""
        dt = _dtype(dtype)
        out = []
        for hh in self._steps(h, dt):
            out += [float(hh), float(-hh)]
        return out

    def estimate(self, f: Callable, x: float = 0.0, *, h: float | None = None, dtype=np.float64,
                 values: Callable[[list[float]], Sequence[float]] | None = None) -> Estimate:
        """Ridders' estimate of ``f'(x)`` in ``dtype``.

        Parameters
        ----------
        f : callable
            ``f(y)`` for a scalar ``y`` of ``dtype`` (called at ``fl(x + h_i)``, ``fl(x - h_i)``,
            one column at a time, stopping where the algorithm stops).
        x : float
            The point (rounded to ``dtype``).
        h : float, optional
            First step (default: the method's ``h0``, else :data:`DEFAULT_H0`).
        dtype : float32 or float64
            Every operation is done in this dtype.
        values : callable, optional
            ``values(offsets) -> f at x + offset`` for all offsets of :meth:`nodes` at once
            (a batched evaluation; the caller rounds the nodes). Replaces ``f``.

        Returns
        -------
        Estimate
        """
        dt = _dtype(dtype)
        t = dt.type
        h = float(self.h0 if h is None and self.h0 is not None else (self.DEFAULT_H0 if h is None else h))
        if not (math.isfinite(h) and h != 0):
            raise ValueError(f"h0={h!r} must be finite and nonzero")
        steps = self._steps(h, dt)
        if values is not None:
            table = [t(v) for v in values(self.nodes(h, dt))]

            def column(i):
                return table[2 * i], table[2 * i + 1]
        else:
            xp = t(x)

            def column(i):
                return t(f(t(xp + steps[i]))), t(f(t(xp - steps[i])))

        two, one = t(2), t(1)
        con = t(float(self.con))
        con2 = t(con * con)
        safe = t(float(self.safe))
        nodes, fvals = [], []
        a = [[None] * self.ntab for _ in range(self.ntab)]

        def first(i):
            fp, fm = column(i)
            nodes.extend([float(steps[i]), float(-steps[i])])
            fvals.extend([float(fp), float(fm)])
            with np.errstate(all="ignore"):
                return t((fp - fm) / (two * steps[i]))

        a[0][0] = first(0)
        err = t(np.finfo(dt).max)
        ans, entry = t(np.nan), (0, 0)
        columns = 1
        with np.errstate(all="ignore"):
            for i in range(1, self.ntab):
                a[0][i] = first(i)
                columns += 1
                fac = con2
                for j in range(1, i + 1):
                    a[j][i] = t((a[j - 1][i] * fac - a[j - 1][i - 1]) / (fac - one))
                    fac = t(con2 * fac)
                    errt = max(abs(a[j][i] - a[j - 1][i]), abs(a[j][i] - a[j - 1][i - 1]))
                    if errt <= err:
                        err, ans, entry = errt, a[j][i], (j, i)
                if abs(a[i][i] - a[i - 1][i - 1]) >= safe * err:
                    break
        status, reason = _status(ans, err, dt, fvals)
        if entry == (0, 0) and not math.isfinite(float(ans)):
            err = t(np.nan)
        return Estimate(float(ans), float(err), status, entry, tuple(float(s) for s in steps[:columns]),
                        tuple(nodes), tuple(fvals), 2 * columns, self.name, dt.name, reason)

    def entry_scheme(self, entry: tuple[int, int]) -> Scheme:
        """Tableau entry ``(level j, column i)`` as an exact linear scheme in units of ``h0``.

        Column ``c`` is the central difference at ``h0 / con^c`` (offsets ``±con^-c``); the
        coefficients follow the tableau with the exact ``con^(2m)``. The scheme's order is
        ``2 (j + 1)``.
        """
        j, i = entry
        if not (0 <= j <= i < self.ntab):
            raise ValueError(f"entry {entry} is not in a tableau of {self.ntab} columns (need 0 <= level <= column)")
        con = self.con
        columns = {c: _column_scheme((-con ** -c, con ** -c), (-con ** c / 2, con ** c / 2))
                   for c in range(i - j, i + 1)}
        coef = _tableau_coefficients(j, i, lambda m: con ** (2 * m))
        return _combine(columns, coef, name=f"ridders entry (level {j}, column {i})",
                        description=f"Ridders tableau entry a[{j}][{i}] of {self.name}, in units of h0")


# --------------------------------------------------------------------------------------------
# numDeriv
# --------------------------------------------------------------------------------------------


def _default_zero_tol() -> float:
    # R: sqrt(.Machine$double.eps / 7e-7)
    return math.sqrt(2.0**-52 / 7e-7)


@dataclass(frozen=True)
class NumDeriv:
    """The default method of R's numDeriv ``grad``: ``r`` central differences at ``h / v^k``,
    extrapolated ``r - 1`` times by ``4^m``.

    Parameters
    ----------
    d : Fraction, default 1e-4
        Relative first step: ``h = |d x| + eps * (|x| < zero_tol)``.
    eps : Fraction, default 1e-4
        Absolute first step added for ``|x| < zero_tol``.
    zero_tol : Fraction or None
        Default ``sqrt(.Machine$double.eps / 7e-7)`` (about 1.78e-5).
    r : int, default 4
        Number of first-level columns (``r - 1`` extrapolations).
    v : Fraction, default 2
        Step reduction factor between columns.
    side : int, default 0
        0: central differences; +1 / -1: one-sided (numDeriv's ``side``), i.e. the forward
        difference ``(f(x + 2h) - f(x)) / (2h)`` or the backward one.

    Notes
    -----
    numDeriv extrapolates with ``4^m`` whatever ``v`` is (its comment: "this formula assumes
    v=2"); with ``v != 2`` the extrapolation does not cancel the error terms, and the entry's
    exact order (:meth:`entry_scheme`) is 2. One-sided columns have errors in every power of
    ``h``, so with ``side != 0`` the extrapolation by ``4^m`` leaves order 1 too. When the
    function has more than one variable, numDeriv sets a column's later first-level values to
    0 once one is below 1e-20 in magnitude (``tiny_zero=True`` reproduces this). The error
    estimate is verigrad's addition (numDeriv returns none): ``|A - B|``, where ``A`` is the
    final entry and ``B`` the previous level's entry on the finest steps.

    References
    ----------
    P. Gilbert, R. Varadhan, numDeriv: Accurate Numerical Derivatives, R package
    (version 2016.8-1.1), ``grad.default``, method "Richardson". L. F. Richardson (1927).

    Examples
    --------
    >>> import math
    >>> NumDeriv().estimate(math.sin, math.pi).value  # numDeriv: grad(sin, pi)
    -0.9999999999933815
    """

    d: Fraction = Fraction(1, 10**4)
    eps: Fraction = Fraction(1, 10**4)
    zero_tol: Fraction | None = None
    r: int = 4
    v: Fraction = Fraction(2)
    side: int = 0

    kind = "numderiv"
    derivative = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "d", _positive("d", self.d, what="the relative first step"))
        object.__setattr__(self, "eps", _positive("eps", self.eps, what="the absolute step near zero",
                                                  strict=False))
        if self.zero_tol is not None:
            object.__setattr__(self, "zero_tol", _positive("zero_tol", self.zero_tol,
                                                           what="|x| below it adds eps to the step", strict=False))
        object.__setattr__(self, "r", _positive("r", self.r, what="the number of columns, 1 to 20", integer=True,
                                                minimum=1, strict=False))
        if self.r > 20:
            raise ValueError(f"r={self.r} must be at most 20 (the number of columns)")
        object.__setattr__(self, "v", _positive("v", self.v, what="the step reduction between columns",
                                                minimum=1))
        if isinstance(self.side, bool) or self.side not in (0, 1, -1):
            shown = format_value(self.side) if isinstance(self.side, Fraction) else repr(self.side)
            raise ValueError(f"side={shown} must be 0 (central), 1 (forward) or -1 (backward)")
        object.__setattr__(self, "side", int(self.side))

    @property
    def name(self) -> str:
        parts = [f"d={format_value(self.d)}", f"eps={format_value(self.eps)}"]
        if self.zero_tol is not None:
            parts.append(f"zero_tol={format_value(self.zero_tol)}")
        parts += [f"r={self.r}", f"v={format_value(self.v)}"]
        if self.side:
            parts.append(f"side={self.side}")
        return f"numderiv({', '.join(parts)})"

    @property
    def description(self) -> str:
        sided = {0: "central", 1: "forward (side=1)", -1: "backward (side=-1)"}[self.side]
        return (f"R numDeriv grad(method=\"Richardson\"): {self.r} {sided} differences at h/{_fmt(self.v)}^k, "
                f"h = |d x| + eps (|x| < zero_tol), extrapolated by 4^m")

    def __str__(self) -> str:
        return f"{self.name}: {self.description}"

    @property
    def zero_tolerance(self) -> float:
        return _default_zero_tol() if self.zero_tol is None else float(self.zero_tol)

    def first_step(self, x: float, *, scale: float | None = None) -> float:
        """numDeriv's first step at ``x``: ``|d x| + eps * (|x| < zero_tol)`` in float64.

        ``scale`` replaces ``x`` (``d`` is then read as a multiplier of the given step, as in a
        step sweep)."""
        x = float(x)
        if scale is not None:
            return abs(float(self.d) * float(scale))
        return abs(float(self.d) * x) + float(self.eps) * float(abs(x) < self.zero_tolerance)

    def _steps(self, h: float, dt: np.dtype) -> list:
        t = dt.type
        v = t(float(self.v))
        hh = t(h)
        out = [hh]
        for _ in range(1, self.r):
            hh = t(hh / v)
            out.append(hh)
        return out

    def _pair(self, hh):
        if self.side == 1:
            return 2 * hh, hh * 0
        if self.side == -1:
            return hh * 0, 2 * hh
        return hh, hh

    def nodes(self, h: float, dtype=np.float64) -> list[float]:
        """Every offset evaluated (``+ph_k, -mh_k`` per column), in order."""
        dt = _dtype(dtype)
        out = []
        for hh in self._steps(h, dt):
            ph, mh = self._pair(hh)
            out += [float(ph), float(-mh)]
        return out

    def estimate(self, f: Callable, x: float = 0.0, *, h: float | None = None, dtype=np.float64,
                 values: Callable[[list[float]], Sequence[float]] | None = None,
                 tiny_zero: bool = False) -> Estimate:
        """numDeriv's estimate of ``f'(x)`` in ``dtype`` (float64 reproduces R digit for digit).

        Parameters
        ----------
        f : callable
            ``f(y)`` for a scalar ``y``.
        x : float
        h : float, optional
            The first step; default :meth:`first_step` at ``x``.
        dtype : float32 or float64
        values : callable, optional
            Batched ``values(offsets)`` replacing ``f`` (see :meth:`Ridders.estimate`).
        tiny_zero : bool
            numDeriv's rule for functions of several variables (see Notes of the class).

        Returns
        -------
        Estimate
        """
        dt = _dtype(dtype)
        t = dt.type
        h = self.first_step(x) if h is None else float(h)
        steps = self._steps(h, dt)
        if values is not None:
            fv = [t(v) for v in values(self.nodes(h, dt))]
        else:
            xp = t(x)
            fv = []
            for hh in steps:
                ph, mh = self._pair(hh)
                fv += [t(f(t(xp + ph))), t(f(t(xp - mh)))]
        two = t(2)
        a = []
        with np.errstate(all="ignore"):
            for k, hh in enumerate(steps):
                if tiny_zero and k > 0 and abs(a[k - 1]) < 1e-20:
                    a.append(t(0))
                else:
                    a.append(t((fv[2 * k] - fv[2 * k + 1]) / (two * hh)))
            prev = None
            for m in range(1, self.r):
                p4 = t(4.0**m)
                prev = a
                a = [t((a[k + 1] * p4 - a[k]) / (p4 - t(1))) for k in range(len(a) - 1)]
        value = a[0]
        err = abs(value - prev[-1]) if prev is not None else t(np.nan)
        status, reason = _status(value, err if prev is not None else 0.0, dt, fv)
        nodes = self.nodes(h, dt)
        return Estimate(float(value), float(err), status, (self.r - 1, self.r - 1),
                        tuple(float(s) for s in steps), tuple(nodes), tuple(float(v) for v in fv), 2 * self.r,
                        self.name, dt.name, reason)

    def entry_scheme(self, entry: tuple[int, int] | None = None) -> Scheme:
        """The final entry as an exact linear scheme in units of the first step ``h``."""
        v = self.v
        columns = {}
        for k in range(self.r):
            s = v ** -k
            if self.side == 0:
                columns[k] = _column_scheme((-s, s), (-1 / (2 * s), 1 / (2 * s)))
            elif self.side == 1:
                columns[k] = _column_scheme((Fraction(0), 2 * s), (-1 / (2 * s), 1 / (2 * s)))
            else:
                columns[k] = _column_scheme((-2 * s, Fraction(0)), (-1 / (2 * s), 1 / (2 * s)))
        coef = _tableau_coefficients(self.r - 1, self.r - 1, lambda m: Fraction(4) ** m)
        return _combine(columns, coef, name="numderiv final entry",
                        description=f"the final entry of {self.name}, in units of the first step h")


AdaptiveMethod = Ridders | NumDeriv
