"""Vectorised double-double ball versions of exp, expm1, log, log1p and the functions built on them.

Every function takes a ball array (anything with float64 arrays ``hi``, ``lo``, ``rad`` and a
``shape``, such as :class:`verigrad.engine.fastball.Ball`: double-double midpoint ``hi + lo``,
radius ``rad``) and returns ``(parts, declined)``: a :class:`Parts` ball array that contains
``f(y)`` for *every* ``y`` in the argument ball, except at the entries where the boolean
array ``declined`` is True (there the value is unspecified and the caller evaluates the
entry through Arb: huge arguments, wide argument balls, arguments not certainly inside
the domain).  ``declined`` is None when nothing is declined.

Method
------
The input radius is carried through the whole algorithm by ball arithmetic (midpoints in
double-double, radii rounded upwards), so no separate derivative bound is needed: each
step ``z = x op y`` returns a ball containing ``x' op y'`` for all ``x'``, ``y'`` in the
argument balls (the rules of :func:`verigrad.engine.fastball.ball_add`,
:func:`~verigrad.engine.fastball.ball_mul`, :func:`~verigrad.engine.fastball.ball_div`, with
the error bounds of :mod:`verigrad.engine.dd`).  The helpers below apply those rules without
the range check of the evaluator: instead every product formed here has factors whose
product is provably 0 or at least ``2**-968`` in magnitude and below ``2**1000``
(so :func:`verigrad.engine.dd.two_prod` is exact); the reason is stated at each step.
Where a value could be smaller, it is *flushed*: ``[h + l ± r]`` with ``0 < |h| < t`` is
replaced by the ball ``[0 ± (|h| + |l| + r)]`` (rounded up), which contains it.

``exp``.  For ``a`` in the ball ``[ah + al ± ra]`` with ``|ah| <= 650`` and ``ra <= 2**-20``:
``N = rint(ah * 64 / ln2)`` (any integer is valid; this one makes ``|r|`` small),
``N = 64 k + j`` with ``0 <= j < 64``, and ``exp(a) = 2**k * 2**(j/64) * exp(r)`` with
``r = a - N ln2/64``.  ``ln2/64 = C1 + C2 + C3 + dC`` with ``C1``, ``C2`` of at most 35
significant bits (``|N| < 2**16`` so ``N C1``, ``N C2`` are exact), ``|dC| <= DC``; all from Arb
at 320 bits (rigorous).  ``t = ah - N C1`` is exact (Sterbenz: for ``N != 0``,
``|ah - N C1| <= 0.0055 <= |N C1| / 2``), ``N C3`` is an exact :func:`dd.two_prod` and the rest is
summed with :func:`dd.add`, so the reduced argument is a ball ``r`` containing
``y - N ln2/64`` for every ``y`` in the input ball, radius ``ra + err + |N| DC``.  Then
``exp(r) = 1 + u``, ``u = r (1 + r (1/2 + r (1/6 + ... + r (1/720 + r T))))`` by Horner in ball
arithmetic with double-double coefficients (their rounding errors in the radii), where the
tail ``T = sum_{i=7}^{12} r^i/i! / r^7`` is evaluated in float64 at ``rh`` as a ball whose radius
is ``gamma_12 * 1.1/5040 + u 1.1/5040`` (Horner in floating point, coefficient rounding;
``sum_i |c_i| |rh|^(i-7) <= 1.1 c_7`` for ``|rh| <= 0.01``) plus ``(|rl| + rad_r) 2/40320``
(``|T'| <= 2 c_8`` on the ball), and the Taylor remainder ``sum_{i>=13} |r|^i/i! <=
rho^13/13! / (1 - rho)``, ``rho = |rh| + |rl| + rad_r <= 0.0056``, is added to the radius of ``u``.
The table ``2**(j/64)`` is a double-double ball per ``j`` from Arb.  Finally ``exp(a) =
2**k (T_j + T_j u)`` (the product before the scaling, so no factor is tiny) and the scaling
by ``2**k`` is exact except for a low word or radius that lands in the subnormal range,
where ``2**-1074`` is added to the radius.  ``expm1(a) = u`` where ``N = 0`` (``T_0 = 1``,
``k = 0``: relative accuracy for small ``a``), and ``2**k (T_j + T_j u) - 1`` elsewhere (there
``|a| >= ln2/128`` so ``|expm1(a)| >= 0.0054``: no harmful cancellation).  Reduced arguments
``|rh| < 2**-400`` are flushed (then ``u`` is a ball around 0 of radius about ``|r|``); for
``expm1`` the arguments with ``|ah| + ra <= 2**-400`` use ``expm1(y) in [y, y + y**2]``
instead, which keeps the relative accuracy (``a = 0`` exactly gives exactly 0).

``log`` and ``log1p`` (:func:`_log_pos`, :func:`log1p`).  ``x = 2**e x'`` exactly (``e = 0``
for ``xh`` in ``[1/2, 2)``, else ``x'`` in ``[1/2, 1)``), ``log x = e ln2 + log x'`` with
``e ln2`` from the split ``ln2/64``; ``y0 = fl(log(x'h))`` is any float, and with the balls
``P = exp(y0)``, ``M = expm1(y0)`` (as above) the exact identity
``log x' = y0 + log1p(z)``, ``z = ((x' - 1) - M) / P`` holds.  ``log1p(x)`` for ``|xh| < 1/2`` uses
``y0 = fl(log1p(xh))`` and ``z = (x - M)/P``; for ``|xh| >= 1/2`` it is ``log(1 + x)``; for
``|xh| + rx <= 2**-400`` it is ``[y - y**2, y]``.  The numerator of ``z`` is flushed below
``max(2**-400 |x' - 1|, 2**-900)`` (resp. ``max(2**-400 |x|, 2**-900)``): a change of the result by
at most ``2**-398`` of itself, and it keeps the quotient's products exact (``P`` is in
``[1/2, 2]``).  ``z`` must satisfy ``|z| <= 2**-24`` over its ball (else the entry is declined);
it is flushed below ``2**-900`` and ``log1p(z) = z (1 + z (-1/2 + z (1/3 - z/4))) + R`` by ball
Horner, ``|R| <= rho**5 / (5 (1 - rho))``, ``rho = max |z|`` over the ball.

Derived functions (``s = sign(xh)``, ``+1`` at 0; ``y = s x`` has a midpoint ``>= 0``; all are
identities valid for every real ``y``, so a ball straddling 0 is no problem):
``sigmoid(x) = 1/(1 + e)`` for ``s > 0`` and ``e/(1 + e)`` for ``s < 0``, ``e = exp(-y)``;
``dsigmoid(x) = e/(1 + e)**2``; ``tanh(x) = -s m/(2 + m)``, ``m = expm1(-2y)``;
``dtanh(x) = 4 e/(1 + e)**2``, ``e = exp(-2y)``; ``softplus(x) = [s > 0] x + log1p(exp(-y))``.
``logsumexp`` subtracts the exact float ``c = max xh`` of each group:
``c + log(sum exp(x - c))``; terms whose argument ball lies below ``-600`` are the ball
``[0 ± 2**-865]`` (``e**-600 < 2**-865``).

Accuracy on ordinary arguments: relative radius about ``2**-100`` (tested: at most
``2**-95``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from verigrad.engine import dd
from verigrad.engine.dd import U, UP, up

__all__ = ["exp", "expm1", "log", "log1p", "sigmoid", "dsigmoid", "tanh", "dtanh", "softplus", "log_sigmoid",
           "logsumexp_parts", "EXP_MAX"]

#: largest |argument| of exp/expm1 evaluated here (the result must stay inside [2**-900, 2**900])
EXP_MAX = 620.0
#: largest argument radius accepted by exp/expm1
RAD_MAX = 2.0 ** -20
#: relative size of the log1p series argument accepted
Z_MAX = 2.0 ** -24

_FLUSH = 2.0 ** -400


# -- constants (rigorous, from Arb) ----------------------------------------------------------

class _Const:
    ready = False


def _float_up(q: Fraction) -> float:
    f = float(q)
    if Fraction(f) < q:
        f = float(np.nextafter(f, np.inf))
    return f


def _round_bits(q: Fraction, bits: int) -> Fraction:
    """``q`` rounded to ``bits`` significant bits (exact rational, q != 0)."""
    e = math.floor(math.log2(abs(q)))
    scale = Fraction(2) ** (bits - 1 - e)
    return Fraction(round(q * scale)) / scale


def _arb_fraction(v) -> tuple[Fraction, Fraction]:
    """(midpoint, radius upper bound) of an Arb ball as Fractions."""
    m = v.mid()
    r = v.rad()
    mm, me = m.man_exp()
    rm, re = r.man_exp()
    mid = Fraction(int(mm)) * Fraction(2) ** int(me)
    rad = Fraction(int(rm)) * Fraction(2) ** int(re)
    return mid, rad


def _dd_parts(q: Fraction, extra: Fraction = Fraction(0)) -> tuple[float, float, float]:
    hi = float(q)
    lo = float(q - Fraction(hi))
    err = abs(q - Fraction(hi) - Fraction(lo)) + extra
    return hi, lo, (_float_up(err) if err else 0.0)


def _init() -> None:
    if _Const.ready:
        return
    from flint import arb, ctx

    old = ctx.prec
    ctx.prec = 320
    try:
        c, cr = _arb_fraction(arb(2).log() / 64)
        c1 = _round_bits(c, 35)
        c2 = _round_bits(c - c1, 35)
        c3 = float(c - c1 - c2)
        _Const.C1, _Const.C2, _Const.C3 = float(c1), float(c2), c3
        assert Fraction(_Const.C1) == c1 and Fraction(_Const.C2) == c2
        _Const.DC = _float_up(abs(c - c1 - c2 - Fraction(c3)) + cr)
        _Const.INV = float(64 / (arb(2).log()).mid())  # any float: only makes |r| small
        th, tl, te = [], [], []
        for j in range(64):
            m, r = _arb_fraction(arb(2) ** (arb(j) / 64))
            h, l, e = _dd_parts(m, r)
            th.append(h), tl.append(l), te.append(e)
        _Const.TH, _Const.TL, _Const.TE = np.array(th), np.array(tl), np.array(te)
    finally:
        ctx.prec = old
    # Taylor coefficients 1/i!: double-double with a radius for i = 3..6, floats for the tail
    _Const.CI = {i: _dd_parts(Fraction(1, math.factorial(i))) for i in range(0, 7)}
    _Const.TAIL = [float(Fraction(1, math.factorial(i))) for i in range(7, 13)]
    g12 = dd.gamma(12)
    _Const.TAIL_RAD = _float_up(Fraction(g12) * Fraction(11, 10) / 5040 + Fraction(1, 2**53) * Fraction(11, 10) / 5040)
    _Const.TAIL_DER = _float_up(Fraction(2, 40320))
    _Const.FACT13 = float(math.factorial(13))  # exact (< 2**53)
    _Const.THIRD = _dd_parts(Fraction(1, 3))
    _Const.ready = True


# -- ball helpers without the evaluator's range check (see the module Notes) ------------------
# A ball here is a tuple (hi, lo, rad) of float64 arrays (or scalars) that broadcast.


def _add(x, y):
    """``x + y`` (the rule of :func:`fastball.ball_add`)."""
    hi, lo, err = dd.add(x[0], x[1], y[0], y[1])
    return hi, lo, (x[2] + y[2] + err) * UP


def _neg(x):
    return -x[0], -x[1], x[2]


def _sub(x, y):
    return _add(x, _neg(y))


def _mul(x, y):
    """``x * y`` (the rule of :func:`fastball.ball_mul`); the caller guarantees the exactness of
    ``two_prod(x.hi, y.hi)`` (a zero factor or a product of magnitude in ``[2**-968, 2**1000]``)."""
    hi, lo, err = dd.mul(x[0], x[1], y[0], y[1])
    xh, yh, xr, yr = x[0], y[0], x[2], y[2]
    rad = np.abs(xh) * yr + xr * np.abs(yh) + xr * yr + err
    rad = up(rad, maybe=(np.asarray(xh != 0) & np.asarray(yr != 0)) | (np.asarray(xr != 0) & (np.asarray(yh != 0) | np.asarray(yr != 0))))
    return hi, lo, rad


def _div_pos(x, y):
    """``x / y`` for a denominator ball certainly > 0 (the rule of :func:`fastball.ball_div`).

    With ``q = hi + lo``, ``|q - xm/ym| <= e_q``: ``|a/b - xm/ym| <= (rx + |xm/ym| ry)/(|ym| - ry)``
    for ``a``, ``b`` in the balls, and ``|ym| - ry >= D = lower_pos(yh, ry)``.  Where ``D <= 0``
    (never for the denominators used here) the radius is made infinite, which the evaluator
    refuses.  The caller guarantees ``|xh| >= 2**-900`` or ``xh = 0`` and ``yh`` in
    ``[2**-930, 2**930]``, so the products inside :func:`dd.div` are exact.
    """
    hi, lo, eq = dd.div(x[0], x[1], y[0], y[1])
    D = dd.lower_pos(y[0], y[2])
    D = np.where(D > 0, D, 0.0)
    num = x[2] + (np.abs(hi) + eq) * y[2]
    rad = up(num / D + eq, maybe=(num > 0) | (y[2] > 0))
    return hi, lo, rad


def _const(v):
    """A constant ball (hi, lo, rad) of floats."""
    return (float(v[0]), float(v[1]), float(v[2])) if isinstance(v, tuple) else (float(v), 0.0, 0.0)


def _flush(x, thr):
    """Entries with ``0 < |hi| < thr`` become ``[0 ± (|hi| + |lo| + rad)]`` (rounded up): a ball containing them."""
    h, l, r = x
    small = (np.abs(h) < thr) & (h != 0)
    if not small.any():
        return x
    wide = (np.abs(h) + np.abs(l) + r) * UP
    return np.where(small, 0.0, h), np.where(small, 0.0, l), np.where(small, wide, r)


def _scale2(x, k):
    """``2**k x`` for integer arrays ``k`` with ``|k| <= 1000`` and ``|hi| in [1/2, 4)``: exact, except a low
    word or a radius landing below ``2**-1022``, where ``2**-1074`` (the largest rounding error there) is
    added to the radius."""
    h, l, r = x
    h2 = np.ldexp(h, k)
    l2 = np.ldexp(l, k)
    r2 = np.ldexp(r, k)
    sub = ((np.abs(l2) < 2.0 ** -1022) & (l != 0)) | ((r2 < 2.0 ** -1022) & (r != 0))
    if sub.any():
        r2 = np.where(sub, r2 + 2.0 ** -1074, r2)
    return h2, l2, r2


def _tiny_linear(x, sign: float):
    """``f(y) in [y, y + y**2]`` (sign +1: expm1) or ``[y - y**2, y]`` (sign -1: log1p) for ``|y| <= 2**-400``:
    the ball ``[x ± (r + (|xh| (1 + 2u) + r)**2)]`` (rounded up; exact 0 stays exact)."""
    h, l, r = x
    with np.errstate(over="ignore"):  # the entries where this is used are tiny
        m = np.abs(h) * (1.0 + 2.0 ** -51) + r
        return h, l, up(r + m * m, maybe=m > 0)


# -- exp core ---------------------------------------------------------------------------------


def _exp_core(x):
    """``(N, k, T_j ball, u ball)`` with ``exp(a) = 2**k T_j (1 + u)`` for every ``a`` in the ball ``x``.

    Preconditions (the callers mask the entries): ``|xh| <= 650``, ``rad <= 2**-20``.
    """
    _init()
    ah, al, ar = x
    N = np.rint(ah * _Const.INV)
    # reduction: r = a - N (C1 + C2 + C3 + dC)
    t = ah - N * _Const.C1  # exact (Sterbenz for N != 0)
    nc2 = N * _Const.C2  # exact (|N| < 2**16, C2 has <= 35 bits)
    p3, e3 = dd.two_prod(N, np.float64(_Const.C3))  # exact (|N C3| >= 2**-90 or N = 0)
    s0, e0 = dd.two_sum(t, -nc2)  # exact
    h1, l1, err1 = dd.add(s0, e0, al, np.zeros_like(al))  # errors ~u^2 |r|: the words are ordered
    rh, rl, err2 = dd.add(h1, l1, -p3, -e3)
    rr = up(ar + err1 + err2 + np.abs(N) * _Const.DC, maybe=N != 0)
    r = _flush((rh, rl, rr), _FLUSH)  # products below: |rh| >= 2**-400 times factors >= 1/5040
    rh, rl, rr = r
    # tail T = sum_{i=7}^{12} rh^(i-7)/i! in float64, as a ball
    c = _Const.TAIL
    T = c[5]
    for ci in reversed(c[:5]):
        T = ci + rh * T
    T_rad = up(_Const.TAIL_RAD + (np.abs(rl) + rr) * _Const.TAIL_DER)
    s = (T, np.zeros_like(T), T_rad)
    for i in range(6, 0, -1):
        s = _add(_const(_Const.CI[i]), _mul(r, s))  # |r s| >= 2**-400 / 5040 or r = 0
    u = _mul(r, s)  # u = r (1 + r/2 + ...) = exp(r) - 1 - remainder
    rho = (np.abs(rh) + np.abs(rl) + rr) * UP
    rho2 = rho * rho
    rho4 = rho2 * rho2
    rho13 = rho4 * rho4 * rho4 * rho
    rem = up(rho13 / _Const.FACT13 / (1.0 - rho), maybe=rho > 0)
    u = (u[0], u[1], up(u[2] + rem, maybe=False))
    Ni = N.astype(np.int64)
    j = np.mod(Ni, 64)
    k = (Ni - j) // 64
    Tj = (_Const.TH[j], _Const.TL[j], _Const.TE[j])
    return Ni, k, Tj, u


def _exp_ball(x):
    """exp on a ball whose entries satisfy the preconditions of :func:`_exp_core`."""
    N, k, Tj, u = _exp_core(x)
    V = _add(Tj, _mul(Tj, u))  # T_j in [1, 2): |T_j u| >= 2**-401 or u = 0
    return _scale2(V, k)


def _expm1_ball(x):
    """expm1 on a ball whose entries satisfy the preconditions of :func:`_exp_core`."""
    N, k, Tj, u = _exp_core(x)
    V = _scale2(_add(Tj, _mul(Tj, u)), k)
    W = _add(V, (-1.0, 0.0, 0.0))
    z = N == 0
    out = tuple(np.where(z, ui, wi) for ui, wi in zip(u, W))
    tiny = np.abs(x[0]) + x[2] <= _FLUSH
    if tiny.any():
        t = _tiny_linear(x, 1.0)
        out = tuple(np.where(tiny, ti, oi) for ti, oi in zip(t, out))
    return out


def _parts(b):
    return np.asarray(b.hi, dtype=np.float64), np.asarray(b.lo, dtype=np.float64), np.asarray(b.rad, dtype=np.float64)


class Parts:
    """A result: three float64 arrays of one shape (``hi``, ``lo``, ``rad``), read like a ball array."""

    __slots__ = ("hi", "lo", "rad")

    def __init__(self, hi, lo, rad) -> None:
        self.hi, self.lo, self.rad = hi, lo, rad

    @property
    def shape(self) -> tuple[int, ...]:
        return self.hi.shape


def _ball(t, shape):
    return Parts(*(np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=np.float64), shape)) for a in t))


def _full(b):
    s = b.shape
    return tuple(np.array(np.broadcast_to(a, s), dtype=np.float64) for a in (b.hi, b.lo, b.rad))


def _exp_ok(x, limit=EXP_MAX):
    h, _, r = x
    return (np.abs(h) <= limit) & (r <= RAD_MAX)


def _safe(x, ok, value=0.0):
    """Replace the declined entries by an exact harmless value."""
    if ok.all():
        return x
    return np.where(ok, x[0], value), np.where(ok, x[1], 0.0), np.where(ok, x[2], 0.0)


def _result(t, ok, shape):
    declined = None if ok.all() else ~ok
    return _ball(t, shape), declined


# -- public rules -------------------------------------------------------------------------------


def exp(b):
    """``exp`` (see the module Notes)."""
    x = _full(b)
    ok = _exp_ok(x)
    return _result(_exp_ball(_safe(x, ok)), ok, b.shape)


def expm1(b):
    """``expm1`` (see the module Notes)."""
    x = _full(b)
    ok = _exp_ok(x)
    return _result(_expm1_ball(_safe(x, ok)), ok, b.shape)


def _certainly_pos(x):
    return dd.lower_pos(x[0], x[2]) > 0


def _exp_expm1(y0):
    """``(P, M)`` = balls of ``exp(y0)`` and ``expm1(y0)`` for an exact float array ``|y0| <= 650``."""
    y0b = (y0, np.zeros_like(y0), np.zeros_like(y0))
    N, k, Tj, u = _exp_core(y0b)
    P = _scale2(_add(Tj, _mul(Tj, u)), k)
    W = _add(P, (-1.0, 0.0, 0.0))
    M = tuple(np.where(N == 0, ui, wi) for ui, wi in zip(u, W))
    return P, M


def _log_tail(y0, d, P, thr):
    """``y0 + log1p(d / P)`` and the mask where ``|d/P| <= 2**-24`` (others declined).

    ``d`` is flushed below ``thr`` (chosen by the caller so that this changes the result by at most
    ``2**-398`` of itself, and so that ``|d| >= 2**-900``: with ``P`` in ``[1/4, 2]`` the products in
    the quotient are exact); ``z = d/P`` is flushed below ``2**-900``; then
    ``log1p(z) = z (1 + z (-1/2 + z (1/3 - z/4))) + R``, ``|R| <= rho**5 / (5 (1 - rho))``.
    """
    dh, dl, dr = d
    small = (np.abs(dh) < thr) & (dh != 0)
    if small.any():
        wide = (np.abs(dh) + np.abs(dl) + dr) * UP
        d = (np.where(small, 0.0, dh), np.where(small, 0.0, dl), np.where(small, wide, dr))
    z = _flush(_div_pos(d, P), 2.0 ** -900)
    zh, zl, zr = z
    rho = (np.abs(zh) + np.abs(zl) + zr) * UP
    ok = rho <= Z_MAX
    z = _safe(z, ok)
    rho = np.where(ok, rho, 0.0)
    s = _add(_const(_Const.THIRD), _mul(z, (-0.25, 0.0, 0.0)))  # |z| >= 2**-900 or z = 0
    s = _add((-0.5, 0.0, 0.0), _mul(z, s))
    s = _add((1.0, 0.0, 0.0), _mul(z, s))
    L = _mul(z, s)
    rho5 = rho * rho * rho * rho * rho
    rem = up(rho5 / 5.0 / (1.0 - rho), maybe=rho > 0)
    L = (L[0], L[1], up(L[2] + rem, maybe=False))
    y0b = (y0, np.zeros_like(y0), np.zeros_like(y0))
    return _add(y0b, L), ok


def _log_pos(x):
    """``log`` of balls certainly > 0 with ``xh`` in ``[2**-900, 2**900]``; and the accepted mask.

    ``x = 2**e x'`` with ``e = 0`` for ``xh`` in ``[1/2, 2)`` (keeping the relative accuracy near 1)
    and ``x'`` in ``[1/2, 1)`` otherwise (exact scaling, :func:`_scale2`); ``log x = e ln2 + log x'``
    (``|log x| >= ln2`` where ``e != 0``: no cancellation); ``log x' = y0 + log1p(z)``,
    ``y0 = fl(log(x'h))``, ``z = ((x' - 1) - expm1(y0)) / exp(y0)``; ``d = (x' - 1) - expm1(y0)`` is
    flushed below ``max(2**-400 |x'h - 1|, 2**-900)``.  ``e ln2 = 64 e (C1 + C2 + C3 + dC)`` with
    ``64 e C1``, ``64 e C2`` exact and ``64 e C3`` an exact :func:`dd.two_prod`.
    """
    _init()
    _, e = np.frexp(x[0])
    e = np.where((x[0] >= 0.5) & (x[0] < 2.0), 0, e)
    xs = _scale2(x, -e)
    y0 = np.log(xs[0])
    P, M = _exp_expm1(y0)
    xm1 = _add(xs, (-1.0, 0.0, 0.0))
    d = _sub(xm1, M)
    out, ok = _log_tail(y0, d, P, np.maximum(_FLUSH * np.abs(xm1[0]), 2.0 ** -900))
    if (e != 0).any():
        E = (64.0 * e).astype(np.float64)
        p3, e3 = dd.two_prod(E, np.float64(_Const.C3))
        s0, e0 = dd.two_sum(E * _Const.C1, E * _Const.C2)  # exact
        h1, l1, err1 = dd.add(s0, e0, p3, e3)
        eln2 = (h1, l1, up(err1 + np.abs(E) * _Const.DC, maybe=E != 0))
        out = _add(out, eln2)
    return out, ok


def log(b):
    """``log`` for entries certainly > 0 (others declined: Arb decides the domain)."""
    x = _full(b)
    ok = _certainly_pos(x)
    out, ok2 = _log_pos(_safe(x, ok, 1.0))
    return _result(out, ok & ok2, b.shape)


def log1p(b):
    """``log1p`` for entries certainly > -1 (others declined).

    ``|xh| + rx <= 2**-400``: ``[y - y**2, y]``; ``|xh| < 1/2``: ``y0 = fl(log1p(xh))``,
    ``log1p(x) = y0 + log1p((x - expm1(y0)) / exp(y0))`` with ``x - expm1(y0)`` flushed below
    ``max(2**-400 |xh|, 2**-900)`` (here ``exp(y0)`` is in ``[1/2, 3/2]``); otherwise ``log(1 + x)``.
    """
    _init()
    x = _full(b)
    xp1 = _add(x, (1.0, 0.0, 0.0))
    ok = _certainly_pos(xp1)
    x = _safe(x, ok, 0.0)
    xp1 = _safe(xp1, ok, 1.0)
    tiny = np.abs(x[0]) + x[2] <= _FLUSH
    near = (np.abs(x[0]) < 0.5) & ~tiny
    out = None
    okm = np.ones(x[0].shape, dtype=bool)
    if near.any():
        xs = _safe(x, near, 0.25)
        y0 = np.log1p(xs[0])
        P, M = _exp_expm1(y0)
        out, ok2 = _log_tail(y0, _sub(xs, M), P, np.maximum(_FLUSH * np.abs(xs[0]), 2.0 ** -900))
        okm &= ok2 | ~near
    far = ~near & ~tiny
    if far.any():
        o2, ok3 = _log_pos(_safe(xp1, far, 2.0))
        okm &= ok3 | ~far
        out = o2 if out is None else tuple(np.where(far, a2, a1) for a1, a2 in zip(out, o2))
    if tiny.any():
        t = _tiny_linear(x, -1.0)
        out = t if out is None else tuple(np.where(tiny, ti, oi) for ti, oi in zip(t, out))
    return _result(out, ok & okm, b.shape)


def _sym(x):
    """``s = sign(xh)`` (+1 at 0) and ``y = s x``."""
    s = np.where(x[0] < 0, -1.0, 1.0)
    return s, (x[0] * s, x[1] * s, x[2])


def sigmoid(b):
    """``sigmoid(x) = 1/(1 + e)`` (``x >= 0``) or ``e/(1 + e)`` (``x < 0``), ``e = exp(-|x|)``."""
    x = _full(b)
    ok = _exp_ok(x)
    s, y = _sym(_safe(x, ok))
    e = _exp_ball(_neg(y))  # in [2**-895, ~1]
    q = _div_pos((1.0, 0.0, 0.0), _add((1.0, 0.0, 0.0), e))  # denominator in [1, 2]
    eq = _mul(e, q)  # e >= 2**-895, q >= 1/2
    out = tuple(np.where(s > 0, a, c) for a, c in zip(q, eq))
    return _result(out, ok, b.shape)


def dsigmoid(b):
    """``dsigmoid(x) = e/(1 + e)**2``, ``e = exp(-|x|)``."""
    x = _full(b)
    ok = _exp_ok(x)
    s, y = _sym(_safe(x, ok))
    e = _exp_ball(_neg(y))
    q = _div_pos((1.0, 0.0, 0.0), _add((1.0, 0.0, 0.0), e))
    out = _mul(_mul(e, q), q)  # e q >= 2**-896, q >= 1/2
    return _result(out, ok, b.shape)


def tanh(b):
    """``tanh(x) = -s m/(2 + m)``, ``m = expm1(-2|x|)`` in ``(-1, 0]``."""
    x = _full(b)
    ok = _exp_ok(x, EXP_MAX / 2)
    s, y = _sym(_safe(x, ok))
    m = _expm1_ball((-2.0 * y[0], -2.0 * y[1], 2.0 * y[2]))  # exact scaling
    den = _add((2.0, 0.0, 0.0), m)  # in [1, 2]
    t = _div_pos(_neg(m), den)
    out = (t[0] * s, t[1] * s, t[2])
    return _result(out, ok, b.shape)


def dtanh(b):
    """``dtanh(x) = 4 e/(1 + e)**2``, ``e = exp(-2|x|)``."""
    x = _full(b)
    ok = _exp_ok(x, EXP_MAX / 2)
    s, y = _sym(_safe(x, ok))
    e = _exp_ball((-2.0 * y[0], -2.0 * y[1], 2.0 * y[2]))
    q = _div_pos((1.0, 0.0, 0.0), _add((1.0, 0.0, 0.0), e))
    eq = _mul(e, q)
    out = _mul(eq, q)
    out = (4.0 * out[0], 4.0 * out[1], 4.0 * out[2])  # exact scaling (no overflow: <= 4)
    return _result(out, ok, b.shape)


def softplus(b):
    """``softplus(x) = [x >= 0] x + log1p(exp(-|x|))``."""
    x = _full(b)
    ok = _exp_ok(x)
    s, y = _sym(_safe(x, ok))
    e = _exp_ball(_neg(y))  # in [2**-895, ~1]
    L, dec = log1p(Parts(*e))
    Lt = _parts(L)
    xs = _safe(x, ok)
    plus = _add(xs, Lt)
    out = tuple(np.where(s > 0, a, c) for a, c in zip(plus, Lt))
    if dec is not None:
        ok = ok & ~dec
    return _result(out, ok, b.shape)


def log_sigmoid(b):
    """``log_sigmoid(x) = -softplus(-x)`` (negation is exact)."""
    x = _full(b)
    p, declined = softplus(Parts(-x[0], -x[1], x[2]))
    return Parts(-p.hi, -p.lo, p.rad), declined


def logsumexp_parts(b, axes: tuple[int, ...]):
    """The pieces of ``logsumexp`` over ``axes`` (``keepdims`` shape): ``(c, E)`` with ``E = exp(x - c)`` a
    ball tuple in the shape of ``b`` and ``c = max xh`` per group (exact floats), or None when some entry
    is outside the range handled here.

    ``logsumexp = c + log(sum E)`` (the caller sums with the ball sum and takes the ball log).
    """
    x = _full(b)
    c = np.max(x[0], axis=axes, keepdims=True)
    d = _sub(x, (c, np.zeros_like(c), np.zeros_like(c)))
    far = d[0] + d[2] < -600.0  # every point of the ball below -600: exp < 2**-865
    ok = _exp_ok(d) | far
    if not ok.all():
        return None
    E = _exp_ball(_safe(d, ~far))
    if far.any():
        E = (np.where(far, 0.0, E[0]), np.where(far, 0.0, E[1]), np.where(far, 2.0 ** -865, E[2]))
    return c, E
