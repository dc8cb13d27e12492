"""Vectorised double-double ball rules of arctan, arcsin and arccos (re-exported by
:mod:`verigrad.engine.ddspecial`; conventions of :mod:`verigrad.engine.ddfunctions`).

Method
------
Each rule is evaluated at the exact midpoint ``m = xh + xl`` in ball arithmetic, then widened by the
input radius times a bound of ``|f'|`` on the argument ball: ``|arctan'| <= 1``;
``|arcsin'| = |arccos'| = 1/sqrt(1 - y**2) <= 1/sqrt((1 - rho)(1 + rho))``, ``rho`` an upper bound of
``|y|`` on the ball (float64, enlarged by ``1 + 2**-40``, far above its few roundings); balls
reaching within ``2**-30`` of ``±1`` are declined, as are ``|xh| > 2**500`` for arctan.

``arctan`` (:func:`_atan_unit` for ``v`` in ``[0, 1]``): ``j = rint(64 vh)``, ``c = j/64``,
``arctan v = arctan c + arctan t`` with ``t = (v - c)/(1 + v c)`` (the addition formula; ``v, c >= 0``),
``|t| <= 1/128``; ``vh - c`` is exact (Sterbenz for ``j >= 1``), ``t = v`` for ``j = 0``.  The table
``arctan(j/64)`` holds double-double balls from Arb.  ``arctan t = t sum_{k<=7} (-u)**k/(2k+1) + R``,
``u = t**2``, ``|R| <= |t| u**8/17`` (Lagrange), the terms ``k >= 4`` in float64 with their error in
the radius (:func:`verigrad.engine.ddgamma.horner_tail`); ``|t| <= 2**-60``: ``[t ± rho**3/3]``.
``|x| > 1``: ``arctan |x| = pi/2 - arctan(1/|x|)`` (no cancellation: the second term is at most
``pi/4``); the sign is restored exactly.

``arcsin x = arctan(x / sqrt((1 - x)(1 + x)))`` and ``arccos x = 2 arctan(sqrt((1 - x)/(1 + x)))``
(both exact identities on ``(-1, 1)``, with no cancellation near ``±1``: ``1 - x`` and ``1 + x`` are
formed in double-double); the square roots by :func:`verigrad.engine.dd.sqrt` with the radius
``r / sqrt(m)`` for a ball ``[m ± r]`` (``|sqrt y - sqrt m| = |y - m|/(sqrt y + sqrt m)``).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from verigrad.engine import dd
from verigrad.engine.dd import UP, up
from verigrad.engine.ddfunctions import (_add, _arb_fraction, _dd_parts, _div_pos, _flush, _full, _mul, _result,
                                         _safe, _sub)
from verigrad.engine.ddgamma import chunked, horner_tail as _horner_tail

__all__ = ["arctan", "arcsin", "arccos", "ATAN_MAX"]

#: largest |argument| of arctan evaluated here
ATAN_MAX = 2.0 ** 500
_EDGE = 2.0 ** -30


class _A:
    ready = False


def _init() -> None:
    if _A.ready:
        return
    from flint import arb, ctx

    old = ctx.prec
    ctx.prec = 320
    try:
        tab = [_dd_parts(*_arb_fraction((arb(j) / 64).atan())) for j in range(65)]
        _A.HALF_PI = _dd_parts(*_arb_fraction(arb.pi() / 2))
    finally:
        ctx.prec = old
    _A.TAB = tuple(np.array([t[i] for t in tab]) for i in range(3))
    _A.C = [_dd_parts(Fraction((-1) ** k, 2 * k + 1)) for k in range(4)]
    _A.T = [(-1) ** k / (2 * k + 1) for k in range(4, 8)]
    _A.ready = True


def _rho(x):
    return (np.abs(x[0]) + np.abs(x[1]) + x[2]) * UP


def _pick(mask, a, b):
    return tuple(np.where(mask, ai, bi) for ai, bi in zip(a, b))


def _atan_unit(v):
    """``arctan`` of a ball ``v`` with ``vh`` in ``[0, 1]`` and ``|vh| >= 2**-400`` or ``v = 0`` (module Notes)."""
    vh, vl, vr = v
    j = np.rint(vh * 64.0)
    c = j / 64.0
    nh, nl = dd.two_sum(vh - c, vl)  # vh - c exact (Sterbenz for j >= 1)
    num = (nh, nl, vr)
    den = _add((1.0, 0.0, 0.0), _mul(v, (c, np.zeros_like(c), np.zeros_like(c))))  # v c: 0 or >= 2**-406
    num_f = _safe(num, np.abs(nh) >= 2.0 ** -800)  # the tiny numerators: t = v - c itself below
    t = _div_pos(num_f, den)  # den in [1, 2]
    t = _pick(j == 0, v, t)
    rho = _rho(t)
    tiny = rho <= 2.0 ** -60
    ts = _flush(_safe(t, ~tiny, 2.0 ** -10), 2.0 ** -300)
    u = _mul(ts, ts)  # 0 or >= 2**-600
    r2 = np.where(tiny, 0.0, rho) ** 2
    r16 = (r2 * r2) ** 4
    A = _mul(ts, _horner_tail(u, _A.C, _A.T))
    A = (A[0], A[1], up(A[2] + np.where(tiny, 0.0, rho) * r16 / 17.0, maybe=False))
    if tiny.any():
        A = _pick(tiny, (t[0], t[1], up(t[2] + rho * rho * rho / 3.0, maybe=rho > 0)), A)
        A = _pick(tiny & (np.abs(nh) < 2.0 ** -800) & (j != 0), (np.zeros_like(vh), np.zeros_like(vh),
                  up(rho + num[2] + 2.0 ** -800)), A)
    ji = j.astype(np.int64)
    T = tuple(a[ji] for a in _A.TAB)
    return _pick(j == 0, A, _add(T, A))


def _atan_mid(m):
    """``arctan`` at exact midpoints (hi, lo), ``|mh| <= 2**500``."""
    _init()
    mh, ml = m
    s = np.where(mh < 0, -1.0, 1.0)
    y = (mh * s, ml * s, np.zeros_like(mh))
    big = y[0] > 1.0
    y_small = _safe(y, ~big, 0.5)
    y_small = (np.where(y_small[0] < 2.0 ** -400, 0.0, y_small[0]), y_small[1], y_small[2])
    tiny = (~big) & (y[0] < 2.0 ** -400)
    inv = _div_pos((1.0, 0.0, 0.0), _safe(y, big, 2.0))  # 1/y in [2**-500, 1)
    a_small = _atan_unit(y_small)
    a_big = _sub(_A.HALF_PI, _atan_unit(inv))
    v = _pick(big, a_big, a_small)
    if tiny.any():  # arctan y in [y - y**3/3, y]: the ball [y ± y**3/3]
        yy = np.where(tiny, np.abs(y[0]), 0.0) * UP
        v = _pick(tiny, (y[0], y[1], up(yy * yy * yy / 3.0, maybe=yy > 0)), v)
    return v[0] * s, v[1] * s, v[2]


@chunked
def arctan(b):
    """``arctan`` (module Notes); ``|x| > 2**500`` declined."""
    x = _full(b)
    ok = (np.abs(x[0]) <= ATAN_MAX) & np.isfinite(x[2])
    x = _safe(x, ok)
    v = _atan_mid((x[0], x[1]))
    return _result((v[0], v[1], up(v[2] + x[2], maybe=False)), ok, b.shape)


def _sqrt_pos(x):
    """``sqrt`` of a ball certainly ``>= 2**-900`` at its midpoint: radius ``err + r / sqrt(m)``."""
    h, l, e = dd.sqrt(x[0], x[1])
    lower = np.sqrt(x[0]) * (1.0 - 2.0 ** -50)  # <= sqrt(xh (1 - u)) <= sqrt(m)
    return h, l, up(e + x[2] / lower, maybe=x[2] > 0)


def _edge_ok(x):
    rho = _rho(x)
    return rho <= 1.0 - _EDGE, rho


def _asin_acos(b, which: str):
    _init()
    x = _full(b)
    ok, rho = _edge_ok(x)
    x = _safe(x, ok)
    mh, ml = x[0], x[1]
    m = (mh, ml, np.zeros_like(mh))
    one = (1.0, 0.0, 0.0)
    omx = _sub(one, m)  # in [2**-30, 2]
    opx = _add(one, m)
    if which == "arcsin":
        tiny = np.abs(mh) < 2.0 ** -400
        mf = _safe(m, ~tiny)
        q = _div_pos(mf, _sqrt_pos(_mul(omx, opx)))  # |q| <= 2**15
        v = _atan_mid_ball(q)
        if tiny.any():  # arcsin y in [y, y + y**3/6 ...]: the ball [y ± y**3]
            yy = np.where(tiny, np.abs(mh), 0.0) * UP
            v = _pick(tiny, (mh, ml, up(yy * yy * yy, maybe=yy > 0)), v)
    else:
        q = _sqrt_pos(_div_pos(omx, opx))  # in [2**-16, 2**16]
        v = _atan_mid_ball(q)
        v = (2.0 * v[0], 2.0 * v[1], 2.0 * v[2])
    with np.errstate(divide="ignore"):
        rs = np.where(ok, rho, 0.0)
        d = 1.0 / np.sqrt((1.0 - rs) * (1.0 + rs)) * (1.0 + 2.0 ** -40)
    v = (v[0], v[1], up(v[2] + x[2] * d, maybe=x[2] > 0))
    return _result(v, ok, b.shape)


def _atan_mid_ball(q):
    """``arctan`` over a ball ``q``: its radius times ``max |arctan'| = 1/(1 + l**2)`` on the ball, ``l`` a lower
    bound of ``|y|`` there (enlarged by ``1 + 2**-40`` for the roundings)."""
    v = _atan_mid((q[0], q[1]))
    low = np.maximum(np.abs(q[0]) * (1.0 - 2.0 ** -50) - q[2], 0.0)
    d = (1.0 + 2.0 ** -40) / (1.0 + low * low)
    return v[0], v[1], up(v[2] + q[2] * d, maybe=q[2] > 0)


@chunked
def arcsin(b):
    """``arcsin`` (module Notes); balls within ``2**-30`` of ``±1`` declined."""
    return _asin_acos(b, "arcsin")


@chunked
def arccos(b):
    """``arccos`` (module Notes); balls within ``2**-30`` of ``±1`` declined."""
    return _asin_acos(b, "arccos")

