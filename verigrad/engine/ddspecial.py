"""Vectorised double-double ball rules of sin, cos, tan, sinh, cosh, erf and the sinc family.

The rules follow the conventions of :mod:`verigrad.engine.ddfunctions` (each takes a ball array with
float64 ``hi``, ``lo``, ``rad`` and returns ``(parts, declined)``; ``parts`` contains ``f(y)`` for
every ``y`` of each argument ball except where ``declined`` is True, and those entries go through
Arb) and reuse its ball helpers (double-double midpoints, radii rounded upwards, every product
with factors keeping :func:`verigrad.engine.dd.two_prod` exact: the reason is stated at each step).
The gamma family is in :mod:`verigrad.engine.ddgamma`, arctan/arcsin/arccos in
:mod:`verigrad.engine.ddinverse`; both are re-exported here, so that the fast evaluator finds every
rule by name in :mod:`~verigrad.engine.ddfunctions` or in this module.

Method
------
``sin``, ``cos`` (:func:`_reduce_half_pi`, :func:`_sincos_reduced`).  The midpoint ``m = xh + xl``
(exact) with ``|xh| <= 2**20`` is reduced by ``pi/2``: ``N = rint(xh fl(2/pi))``, ``|N| < 2**20``, and
``pi/2 = P1 + P2 + P3 + P4 + dP`` with ``P1``, ``P2``, ``P3`` of 32 significant bits (so ``N Pi`` is
an exact float), ``P4`` a float (``N P4`` an exact :func:`dd.two_prod`) and ``|dP| <= DP ~ 2**-150``,
all from Arb at 400 bits.  ``r = m - N pi/2`` is summed with :func:`dd.two_sum`/:func:`dd.add`
(their error bounds in the radius) plus ``|N| DP``: a ball containing the exact reduced argument,
``|r| <= pi/4 + 2**-30``.  Then ``j = rint(64 rh)`` (``|j| <= 51``), ``s = r - j/64`` (``rh - j/64``
is exact by Sterbenz; re-normalised by :func:`dd.two_sum`), ``|s| <= 1/128 + rad``, and
``sin r = S_j cos s + C_j sin s``, ``cos r = C_j cos s - S_j sin s`` with the table
``S_j = sin(j/64)``, ``C_j = cos(j/64)`` as double-double balls from Arb (``j = 0`` uses ``sin s``,
``cos s`` directly, which keeps the relative accuracy near the zeros of ``sin``).  With ``u = s**2``
(a ball), ``sin s = s sum_{k<=5} (-u)**k/(2k+1)! + R``, ``|R| <= rho**13/13!``, and
``cos s = sum_{k<=6} (-u)**k/(2k)! + R'``, ``|R'| <= rho**14/14!`` (Lagrange; ``rho`` bounds ``|s|`` on
the ball), by ball Horner with double-double coefficient balls.  Where ``rho <= 2**-60`` instead
``sin s = [s ± rho**3/6]``, ``cos s = [1 ± rho**2/2]`` (products there could underflow).  The
quadrant ``N mod 4`` picks ``±sin r`` or ``±cos r``.  The input radius is added at the end
(``|sin'|, |cos'| <= 1``).  ``|xh| > 2**20`` is declined.

``tan`` carries the input radius through the reduction (``r`` then contains ``y - N pi/2`` for
every ``y`` of the ball), so the balls ``sin r``, ``cos r`` hold for the whole argument ball and
``tan x = sin r / cos r`` (``N`` even) or ``-cos r / sin r`` (``N`` odd) by ball division; a
denominator ball not certainly away from 0, or an input radius above ``2**-20``, is declined.

``sinh``, ``cosh`` for ``|x| <= 620``, radius ``<= 2**-20`` (``y = |x|``, ``s = sign``; exp/expm1 balls
of :mod:`~verigrad.engine.ddfunctions`, which carry the input radius): ``cosh y = (E + 1/E)/2``,
``E = exp(y)``; ``sinh y = (E - 1/E)/2`` for ``y >= 1`` and ``M (M + 2) / (2 (M + 1))``,
``M = expm1(y)``, for ``y < 1`` (no cancellation); ``|x| + rad <= 2**-400``:
``sinh = [x ± (rad + rho**3/5)]``, ``cosh = [1 ± rho**2]``.

``sinc(x) = sin(pi x)/(pi x)`` and its derivatives ``dsinc``, ``d2sinc`` are evaluated at the
midpoint and widened by a bound of their derivative on the whole line: ``sinc(x) = int_0^1
cos(pi x t) dt`` gives ``|sinc'| <= min(pi/2, pi**2 |x|/3)``, ``|sinc''| <= pi**2/3``,
``|sinc'''| <= pi**3/4``.  At the midpoint, with ``t = pi m``: for ``|m| < 2**-400`` the values at 0
(``1``, ``0``, ``-pi**2/3``) with ``|m|`` added to the radius; for ``|mh| <= 0.3`` (``|t| < 0.95``) the
power series in ``u = t**2`` (``sinc = sum (-u)**k/(2k+1)!``, ``dsinc = pi t sum_{k>=1}
(-1)**k 2k u**(k-1)/(2k+1)!``, ``d2sinc = pi**2 sum_{k>=1} (-1)**k 2k(2k-1) u**(k-1)/(2k+1)!``),
alternating with decreasing terms, so the remainder is at most the first omitted term;
otherwise ``S = sin(pi m)``, ``C = cos(pi m)`` by reducing ``m`` modulo ``1/2`` exactly
(:func:`_sincos_pi`; no limit on ``|m|``, full relative accuracy near the integers) and
``sinc = S/t``, ``dsinc = (C - S/t)/m``, ``d2sinc = pi**2 ((2 - t**2) S - 2 t C)/t**3``
(``|mh| <= 2**200``).

``erf`` (:func:`_erf_series`): ``|x| <= 2``: ``(2/sqrt(pi)) x exp(-x**2) sum_k 2**k x**(2k)/(2k+1)!!`` (positive
terms, the tail bounded geometrically), widened by ``rad * 2/sqrt(pi)``; ``|x| >= 9``: ``±1`` with radius
``2**-119 >= erfc(9)``; between: Arb.

Accuracy: relative radius about ``2**-100`` on ordinary arguments; near the zeros of the function
the radius is the absolute error of the midpoint evaluation (``~2**-105`` times the size of the
terms), as the conditioning there dictates.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from verigrad.engine import dd
from verigrad.engine.dd import UP, up
from verigrad.engine.ddfunctions import (EXP_MAX, RAD_MAX, _add, _arb_fraction, _const, _dd_parts, _div_pos,
                                         _exp_ball, _expm1_ball, _flush, _full, _mul, _neg, _result, _round_bits,
                                         _safe, _sub)
from verigrad.engine.ddgamma import chunked, digamma, gammaln, horner_tail as _horner_tail, tetragamma, trigamma
from verigrad.engine.ddinverse import arccos, arcsin, arctan

__all__ = ["sin", "cos", "tan", "sinh", "cosh", "sinc", "dsinc", "d2sinc", "gammaln", "digamma", "trigamma",
           "tetragamma", "arctan", "arcsin", "arccos", "erf", "TRIG_MAX"]

#: largest |argument| of sin/cos/tan evaluated here (beyond it: Arb)
TRIG_MAX = 2.0 ** 20
#: largest |argument| of the sinc family evaluated here
SINC_MAX = 2.0 ** 200
_TINY_S = 2.0 ** -60


class _K:
    ready = False


def _ball_of(v) -> tuple[float, float, float]:
    """A double-double ball (hi, lo, rad) containing the Arb ball ``v``."""
    m, r = _arb_fraction(v)
    return _dd_parts(m, r)


def _init() -> None:
    if _K.ready:
        return
    from flint import arb, ctx

    old = ctx.prec
    ctx.prec = 400
    try:
        hp, hr = _arb_fraction(arb.pi() / 2)
        p1 = _round_bits(hp, 32)
        p2 = _round_bits(hp - p1, 32)
        p3 = _round_bits(hp - p1 - p2, 32)
        p4 = float(hp - p1 - p2 - p3)
        _K.P = (float(p1), float(p2), float(p3), p4)
        assert all(Fraction(f) == q for f, q in zip(_K.P[:3], (p1, p2, p3)))
        _K.DP = float(abs(hp - p1 - p2 - p3 - Fraction(p4)) + hr) * 2.0  # doubled: covers the float rounding
        _K.TWO_OVER_PI = float(2 / (arb.pi()).mid())  # any float: only makes |r| small
        _K.PI = _ball_of(arb.pi())
        _K.PI2_3 = _ball_of(arb.pi() ** 2 / 3)
        tab = [(_ball_of((arb(j) / 64).sin()), _ball_of((arb(j) / 64).cos())) for j in range(-52, 53)]
    finally:
        ctx.prec = old
    _K.SJ = tuple(np.array([t[0][i] for t in tab]) for i in range(3))
    _K.CJ = tuple(np.array([t[1][i] for t in tab]) for i in range(3))
    _K.SIN_C = [_dd_parts(Fraction((-1) ** k, math.factorial(2 * k + 1))) for k in range(3)]
    _K.SIN_T = [(-1) ** k / math.factorial(2 * k + 1) for k in range(3, 6)]
    _K.COS_C = [_dd_parts(Fraction((-1) ** k, math.factorial(2 * k))) for k in range(4)]
    _K.COS_T = [(-1) ** k / math.factorial(2 * k) for k in range(4, 7)]
    K = 16
    _K.SINC = [_dd_parts(Fraction((-1) ** k, math.factorial(2 * k + 1))) for k in range(K)]
    _K.SINC_REM = float(Fraction(1, math.factorial(2 * K + 1))) * 1.01
    _K.DSINC = [_dd_parts(Fraction((-1) ** k * 2 * k, math.factorial(2 * k + 1))) for k in range(1, K + 1)]
    _K.DSINC_REM = float(Fraction(2 * (K + 1), math.factorial(2 * K + 3))) * 1.01
    _K.D2SINC = [_dd_parts(Fraction((-1) ** k * 2 * k * (2 * k - 1), math.factorial(2 * k + 1)))
                 for k in range(1, K + 1)]
    _K.D2SINC_REM = float(Fraction(2 * (K + 1) * (2 * K + 1), math.factorial(2 * K + 3))) * 1.01
    _K.ready = True


def _horner(u, coeffs):
    """``sum_k coeffs[k] u**k`` in ball arithmetic (``u`` flushed below ``2**-800`` by the caller or
    certainly 0: every partial sum is dominated by its constant coefficient, at least ``2**-120``, so the
    products stay exact)."""
    s = _const(coeffs[-1])
    for c in reversed(coeffs[:-1]):
        s = _add(_const(c), _mul(u, s))
    return s


def _widen(x, extra, maybe=True):
    return x[0], x[1], up(x[2] + extra, maybe=maybe)


def _rho(x):
    return (np.abs(x[0]) + np.abs(x[1]) + x[2]) * UP


def _pick(mask, a, b):
    return tuple(np.where(mask, ai, bi) for ai, bi in zip(a, b))


# -- sin and cos -------------------------------------------------------------------------------


def _reduce_half_pi(m):
    """``(N, r)``: ``r`` a ball containing ``y - N pi/2`` for every ``y`` of the ball ``m`` (``|mh| <= 2**20``)."""
    _init()
    xh, xl, xr = m
    N = np.rint(xh * _K.TWO_OVER_PI)
    P1, P2, P3, P4 = _K.P
    a1, a2 = dd.two_sum(xh, -(N * P1))  # N P1 exact (32 + 20 bits)
    z = np.zeros_like(xh)
    h, l, e1 = dd.add(a1, a2, xl, z)
    h, l, e2 = dd.add(h, l, -(N * P2), z)
    h, l, e3 = dd.add(h, l, -(N * P3), z)
    p4h, p4l = dd.two_prod(N, np.float64(P4))  # exact: |N P4| >= 2**-100 or N = 0
    h, l, e4 = dd.add(h, l, -p4h, -p4l)
    rad = up(xr + e1 + e2 + e3 + e4 + np.abs(N) * _K.DP, maybe=N != 0)
    return N, (h, l, rad)


def _sincos_reduced(r, q=None):
    """Balls of ``sin y`` and ``cos y`` for every ``y`` of the ball ``r`` (``|rh| <= pi/4 + 2**-30``); with the
    quadrant array ``q`` (floats 0..3) only the ball of ``sin(y + q pi/2)`` (one of ``±sin y``, ``±cos y``)."""
    _init()
    rh, rl, rr = r
    j = np.rint(rh * 64.0)
    sh, sl = dd.two_sum(rh - j / 64.0, rl)  # rh - j/64 exact (Sterbenz for j != 0)
    s = (sh, sl, rr)
    rho = _rho(s)
    tiny = rho <= _TINY_S
    s_safe = _safe(s, ~tiny, 2.0 ** -10)  # the tiny entries get their own ball below
    # a small midpoint with a larger radius (tan carries the input radius) becomes [0 ± ...]
    s_safe = _flush(s_safe, 2.0 ** -300)
    u = _mul(s_safe, s_safe)  # |sh| >= 2**-300 or 0: the square is 0 or >= 2**-600
    rs = np.where(tiny, 0.0, rho)
    r2 = rs * rs
    r4 = r2 * r2
    r12 = r4 * r4 * r4
    S = _widen(_mul(s_safe, _horner_tail(u, _K.SIN_C, _K.SIN_T)), r12 * rs / 6227020800.0, maybe=False)  # 13!
    C = _widen(_horner_tail(u, _K.COS_C, _K.COS_T), r12 * r2 / 87178291200.0, maybe=False)  # 14!
    if tiny.any():
        St = (sh, sl, up(rr + rho * rho * rho / 6.0, maybe=rho > 0))
        Ct = (np.ones_like(sh), np.zeros_like(sh), up(rho * rho / 2.0, maybe=rho > 0))
        S, C = _pick(tiny, St, S), _pick(tiny, Ct, C)
    if q is not None:
        want_sin = (q == 0.0) | (q == 2.0)
        sign = np.where(q < 2.0, 1.0, -1.0)
    if not (j != 0).any():
        if q is None:
            return S, C
        v = _pick(want_sin, S, C)
        return v[0] * sign, v[1] * sign, v[2]
    ji = (j.astype(np.int64) + 52)
    Sj = tuple(t[ji] for t in _K.SJ)
    Cj = tuple(t[ji] for t in _K.CJ)
    Sf = _flush(S, 2.0 ** -400)  # products with the table entries (>= 1/100) stay exact
    if q is not None:  # sin r = Sj C + Cj S, cos r = Cj C - Sj S: the one wanted, A C + B S
        A = _pick(want_sin, Sj, Cj)
        B = _pick(want_sin, Cj, _neg(Sj))
        v = _pick(j == 0, _pick(want_sin, S, C), _add(_mul(A, C), _mul(B, Sf)))
        return v[0] * sign, v[1] * sign, v[2]
    sin_r = _add(_mul(Sj, C), _mul(Cj, Sf))
    cos_r = _sub(_mul(Cj, C), _mul(Sj, Sf))
    j0 = j == 0
    return _pick(j0, S, sin_r), _pick(j0, C, cos_r)


def _quadrant(N, S, C, shift: int):
    """``sin(r + (N + shift) pi/2)`` from the balls of ``sin r``, ``cos r``."""
    q = np.mod(np.mod(N, 4.0) + shift, 4.0)  # in floats: exact for every N
    val = _pick(q == 0, S, _pick(q == 1, C, _pick(q == 2, _neg(S), _neg(C))))
    return val


def _sin_cos(b, shift: int):
    x = _full(b)
    ok = (np.abs(x[0]) <= TRIG_MAX) & np.isfinite(x[2])
    x = _safe(x, ok)
    N, r = _reduce_half_pi((x[0], x[1], np.zeros_like(x[0])))
    v = _sincos_reduced(r, np.mod(np.mod(N, 4.0) + shift, 4.0))
    v = (v[0], v[1], up(v[2] + x[2], maybe=False))  # Lipschitz: |sin'|, |cos'| <= 1
    return _result(v, ok, b.shape)


@chunked
def sin(b):
    """``sin`` (see the module Notes); ``|x| > 2**20`` declined."""
    return _sin_cos(b, 0)


@chunked
def cos(b):
    """``cos(x) = sin(x + pi/2)``: the quadrant shifted by one (see the module Notes)."""
    return _sin_cos(b, 1)


def _div_signed(x, y, ok):
    """``x / y`` where ``y`` is certainly non-zero (``ok``; the other entries get a harmless value)."""
    s = np.where(y[0] < 0, -1.0, 1.0)
    ya = _safe((y[0] * s, y[1] * s, y[2]), ok, 1.0)
    q = _div_pos(_safe(x, ok), ya)
    return q[0] * s, q[1] * s, q[2]


def _nonzero(y):
    a = np.abs(y[0])
    return dd.lower_pos(a, y[2]) > 0


@chunked
def tan(b):
    """``tan = sin/cos`` with the input radius carried through the reduction (see the module Notes)."""
    x = _full(b)
    ok = (np.abs(x[0]) <= TRIG_MAX) & (x[2] <= RAD_MAX)
    x = _safe(x, ok)
    N, r = _reduce_half_pi(x)
    S, C = _sincos_reduced(r)
    odd = np.mod(N, 2.0) == 1.0
    num = _pick(odd, _neg(C), S)
    den = _pick(odd, S, C)
    # the quotient's products: numerator 0 or >= 2**-400 (flushed), denominator in [2**-400, 1]
    num = _flush(num, 2.0 ** -400)
    den = _flush(den, 2.0 ** -400)
    nz = _nonzero(den)
    v = _div_signed(num, den, nz)
    rho = _rho(x)
    tiny = rho <= _TINY_S
    if tiny.any():  # |tan y - y| <= |y|**3/2 there: keeps the relative accuracy the flushes above lose
        v = _pick(tiny, (x[0], x[1], up(x[2] + rho * rho * rho / 2.0, maybe=rho > 0)), v)
        nz = nz | tiny
    return _result(v, ok & nz, b.shape)


# -- sinh and cosh -----------------------------------------------------------------------------


def _hyp(b, which: str):
    x = _full(b)
    ok = (np.abs(x[0]) <= EXP_MAX) & (x[2] <= RAD_MAX)
    x = _safe(x, ok)
    s = np.where(x[0] < 0, -1.0, 1.0)
    y = (x[0] * s, x[1] * s, x[2])
    one = (1.0, 0.0, 0.0)
    E = _exp_ball(y)  # in [1/2, 2**895]
    iE = _div_pos(one, E)
    if which == "cosh":
        v = _add(E, iE)
    else:
        big = _sub(E, iE)
        M = _expm1_ball(_safe(y, y[0] < 1.0, 0.5))  # only used below 1: no overflow in the products
        Mf = _flush(M, 2.0 ** -400)  # the product below stays exact; tiny arguments have their own ball
        small = _div_pos(_mul(Mf, _add(Mf, (2.0, 0.0, 0.0))), _add(Mf, one))  # M + 1 in [1/2, 2.8]
        v = _pick(y[0] >= 1.0, big, small)
    v = (0.5 * v[0], 0.5 * v[1], 0.5 * v[2])  # exact: no value here is near the subnormal range
    rho = _rho(y)
    tiny = rho <= 2.0 ** -400
    if tiny.any():
        if which == "cosh":
            t = (np.ones_like(y[0]), np.zeros_like(y[0]), up(rho * rho, maybe=rho > 0))
        else:
            t = (y[0], y[1], up(y[2] + rho * rho * rho / 5.0, maybe=rho > 0))
        v = _pick(tiny, t, v)
    if which == "sinh":
        v = (v[0] * s, v[1] * s, v[2])
    return _result(v, ok, b.shape)


@chunked
def sinh(b):
    """``sinh`` (see the module Notes); ``|x| > 620`` or radius ``> 2**-20`` declined."""
    return _hyp(b, "sinh")


@chunked
def cosh(b):
    """``cosh`` (see the module Notes); ``|x| > 620`` or radius ``> 2**-20`` declined."""
    return _hyp(b, "cosh")


# -- sinc and its derivatives ------------------------------------------------------------------


def _sincos_pi(m):
    """Balls of ``sin(pi y)``, ``cos(pi y)`` at the exact midpoint ``m`` (hi, lo): ``m = N/2 + f`` exactly
    (``N = rint(2 mh)``; ``mh - N/2`` exact, re-summed with the low word), then ``pi f``, ``|f| <= 1/4``."""
    _init()
    mh, ml = m
    N1 = np.rint(2.0 * mh)
    a1, a2 = dd.two_sum(mh, -0.5 * N1)
    gh, gl, e = dd.add(a1, a2, ml, np.zeros_like(mh))  # ml may exceed 1/2 when |mh| > 2**52
    N2 = np.rint(2.0 * gh)
    fh, fl = dd.two_sum(gh - 0.5 * N2, gl)  # gh - N2/2 exact (Sterbenz for N2 != 0)
    f = _flush((fh, fl, e), 2.0 ** -800)
    r = _mul(f, _K.PI)  # |f| >= 2**-800 or 0, pi: exact products
    S, C = _sincos_reduced(r)
    N = np.mod(np.mod(N1, 4.0) + np.mod(N2, 4.0), 4.0)  # exact in floats: only N mod 4 matters
    return _quadrant(N, S, C, 0), _quadrant(N, S, C, 1)


def _sinc_near(mh, ml, order: int):
    """The sinc family at the exact midpoints ``mh + ml``, ``|mh| <= 0.3``: the power series (module Notes)."""
    t = _mul((mh, ml, np.zeros_like(mh)), _K.PI)  # |mh| >= 2**-400 or 0: exact products
    u = _mul(t, t)  # >= 2**-800 or 0
    rho_u = _rho(u)
    if order == 0:
        return _widen(_horner(u, _K.SINC), rho_u ** 16 * _K.SINC_REM, maybe=rho_u > 0)
    if order == 1:
        v = _mul(_mul(t, _horner(u, _K.DSINC)), _K.PI)
        return _widen(v, 3.1416 * _rho(t) * rho_u ** 16 * _K.DSINC_REM, maybe=rho_u > 0)
    v = _mul(_mul(_horner(u, _K.D2SINC), _K.PI), _K.PI)
    return _widen(v, 9.8697 * rho_u ** 16 * _K.D2SINC_REM, maybe=rho_u > 0)


def _sinc_far(mh, ml, order: int):
    """The sinc family at the exact midpoints ``mh + ml``, ``|mh| > 0.3``: from ``sin(pi m)``, ``cos(pi m)``."""
    zero = np.zeros_like(mh)
    tf = _mul((mh, ml, zero), _K.PI)  # |t| in [0.9, 2**202]
    S, C = _sincos_pi((mh, ml))
    S = _flush(S, 2.0 ** -600)
    C = _flush(C, 2.0 ** -600)
    allnz = np.ones(mh.shape, dtype=bool)
    if order == 0:
        return _div_signed(S, tf, allnz)
    if order == 1:
        d = _flush(_sub(C, _div_signed(S, tf, allnz)), 2.0 ** -600)
        return _div_signed(d, (mh, ml, zero), allnz)
    t2 = _mul(tf, tf)
    a = _sub(_mul(_sub((2.0, 0.0, 0.0), t2), S), _mul(_mul((2.0, 0.0, 0.0), tf), C))
    a = _flush(a, 2.0 ** -400)
    t3 = _mul(t2, tf)  # t**3 < 2**607
    return _mul(_mul(_div_signed(a, t3, allnz), _K.PI), _K.PI)


def _sinc_family(b, order: int):
    _init()
    x = _full(b)
    ok = (np.abs(x[0]) <= SINC_MAX) & np.isfinite(x[2])
    x = _safe(x, ok)
    xr = x[2]
    tiny = np.abs(x[0]) < 2.0 ** -400
    # the tiny midpoints move to 0, their size joins the radius
    mh = np.where(tiny, 0.0, x[0])
    ml = np.where(tiny, 0.0, x[1])
    xr = np.where(tiny, up(xr + np.abs(x[0]) + np.abs(x[1]), maybe=False), xr)
    near = np.abs(mh) <= 0.3
    out = [np.empty_like(mh) for _ in range(3)]
    for sel, v in ((near, _sinc_near), (~near, _sinc_far)):  # each on its own entries only
        if sel.any():
            for o, a in zip(out, v(mh[sel], ml[sel], order)):
                o[sel] = a
    # widening by the derivative bound over the argument ball
    if order == 0:
        rho = _rho(x)
        dbound = np.minimum(1.5708, 3.2899 * rho)
    elif order == 1:
        dbound = 3.2899
    else:
        dbound = 7.7516
    out = (out[0], out[1], up(out[2] + xr * dbound, maybe=xr > 0))
    if tiny.any():  # midpoint 0: the exact values 1, 0, -pi**2/3
        z = np.zeros_like(mh)
        if order == 0:
            v0 = (np.ones_like(mh), z, z)
        elif order == 1:
            v0 = (z, z, z)
        else:
            v0 = (np.full_like(mh, -_K.PI2_3[0]), np.full_like(mh, -_K.PI2_3[1]), np.full_like(mh, _K.PI2_3[2]))
        v0 = (v0[0], v0[1], up(v0[2] + xr * dbound, maybe=xr > 0))
        out = _pick(tiny, v0, out)
    return _result(out, ok, b.shape)


@chunked
def sinc(b):
    """``sinc(x) = sin(pi x)/(pi x)`` (see the module Notes); ``|x| > 2**200`` declined."""
    return _sinc_family(b, 0)


@chunked
def dsinc(b):
    """``sinc'(x) = (cos(pi x) - sinc(x))/x`` (see the module Notes)."""
    return _sinc_family(b, 1)


@chunked
def d2sinc(b):
    """``sinc''(x)`` (see the module Notes)."""
    return _sinc_family(b, 2)


# -- erf ---------------------------------------------------------------------------------------

#: erf: the series is used for |x| <= ERF_SERIES, the constant ±1 for |x| >= ERF_ONE (between: Arb)
ERF_SERIES = 2.0
ERF_ONE = 9.0


def _erf_init() -> None:
    if getattr(_K, "erf_ready", False):
        return
    from flint import arb, ctx

    old = ctx.prec
    ctx.prec = 320
    try:
        _K.TWO_OVER_SQRTPI = _ball_of(2 / arb.pi().sqrt())
    finally:
        ctx.prec = old
    c = [Fraction(1)]
    for k in range(1, 80):
        c.append(c[-1] * 2 / (2 * k + 1))
    v = Fraction(4)
    K = next(k for k in range(10, 79) if c[k + 1] * v ** (k + 1) / (1 - Fraction(8, 2 * k + 5)) < Fraction(1, 2**116))
    _K.ERF_C = [_dd_parts(ci) for ci in c[:K + 1]]
    _K.ERF_REM = (float(c[K + 1]) * 1.01 / (1 - 8 / (2 * K + 5)), K + 1)
    _K.erf_ready = True


def _erf_series(mh, ml):
    """``erf`` at exact midpoints, ``|mh| <= 2``: ``erf x = (2/sqrt(pi)) x exp(-x**2) sum_k 2**k x**(2k)/(2k+1)!!``
    (all terms positive; the tail after ``K`` terms is below ``c_{K+1} v**(K+1) / (1 - 2v/(2K+5))``, ``v = x**2``,
    the ratio of consecutive terms being ``2v/(2k+3)``)."""
    zero = np.zeros_like(mh)
    tiny = np.abs(mh) < 2.0 ** -300
    m = _safe((mh, ml, zero), ~tiny)
    v = _mul(m, m)  # >= 2**-600 or 0: times coefficients >= 2**-220 the products stay exact
    coef, power = _K.ERF_REM
    rho = _rho(v)
    P = _horner(v, _K.ERF_C)  # partial sums dominated by their coefficients (>= 2**-220): exact products
    P = _widen(P, coef * rho ** power, maybe=rho > 0)
    E = _exp_ball((-v[0], -v[1], v[2]))  # in [e**-4, 1]
    out = _mul(_mul(_mul(m, _K.TWO_OVER_SQRTPI), E), P)
    if tiny.any():  # erf x = (2/sqrt(pi)) (x - x**3/3 + ...), |x| < 2**-300: [c x ± (c |x| 2**-100)]
        c = _K.TWO_OVER_SQRTPI
        ok = np.abs(mh) >= 2.0 ** -900  # there the product c x is an exact two_prod
        cx = _mul(_safe((mh, ml, zero), ok), c)
        cx = _widen(cx, np.abs(mh) * c[0] * 2.0 ** -100)
        # below 2**-900: the float product, its rounding (relative 2**-53, or 2**-1075 if subnormal) in the radius
        crude = (mh * c[0], zero, up(np.abs(mh) * (c[0] * 2.0 ** -51 + c[2]) + 2.0 ** -1074))
        out = _pick(tiny, _pick(ok, cx, crude), out)
    return out


@chunked
def erf(b):
    """``erf`` (see :func:`_erf_series`); ``2 < |x| < 9`` declined (Arb); for ``|x| >= 9``:
    ``±1`` with radius ``exp(-x**2)/(|x| sqrt(pi)) <= 2**-119`` (the classical erfc bound)."""
    _init()
    _erf_init()
    x = _full(b)
    a = np.abs(x[0])
    ser = a <= ERF_SERIES
    one = a >= ERF_ONE
    ok = (ser | one) & np.isfinite(x[2])
    x = _safe(x, ok)
    out = [np.zeros_like(a), np.zeros_like(a), np.zeros_like(a)]
    if ser.any():
        for o, t in zip(out, _erf_series(x[0][ser], x[1][ser])):
            o[ser] = t
    if one.any():
        out[0][one] = np.sign(x[0][one])
        out[2][one] = 2.0 ** -119
    out = (out[0], out[1], up(out[2] + x[2] * 1.1284, maybe=x[2] > 0))  # |erf'| <= 2/sqrt(pi) < 1.1284
    return _result(out, ok, b.shape)

