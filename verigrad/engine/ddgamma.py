"""Vectorised double-double ball rules of gammaln, digamma, trigamma and tetragamma for x > 0.

Conventions of :mod:`verigrad.engine.ddfunctions`: each rule takes a ball array (float64 ``hi``,
``lo``, ``rad``) and returns ``(parts, declined)``; the declined entries go through Arb.  Declined:
``xh < 2**-200`` (in particular every ``x <= 0``: poles, reflection), ``xh > 2**150``, and radii above
``xh/4``.

Method
------
The function is evaluated at the exact midpoint ``m = xh + xl`` in ball arithmetic (double-double
midpoints, rounded-up radii: the radius bounds every rounding error), then widened by
``rad * D``, ``D`` a bound of ``|f'|`` on the argument ball ``[a, b]`` (``a`` a lower bound of
``xh - rad``, ``b`` an upper bound of ``xh + rad``), from ``psi(y) in (log y - 1/y, log y)`` and
``psi^(k)(y) = (-1)**(k+1) k! sum_{i>=0} (y + i)**-(k+1)`` with the sum at most
``y**-(k+1) + y**-k / k`` (first term plus the integral):

* ``|gammaln'| = |psi| <= max(|log a|, |log b|) + 1/a``;
* ``|digamma'| = psi_1 <= 1/a + 1/a**2``;  ``|trigamma'| <= 1/a**2 + 2/a**3``;
  ``|tetragamma'| <= 2/a**3 + 6/a**4``

(each evaluated in float64 and enlarged by the factor ``1 + 2**-20``, far above the few roundings).

Midpoint: with ``n = max(0, ceil(24 - mh))`` and ``z = m + n >= 24`` the recurrences
``lgamma(m) = lgamma(z) - log prod_{i<n} (m + i)``, ``psi(m) = psi(z) - sum_{i<n} 1/(m + i)``,
``psi_1(m) = psi_1(z) + sum 1/(m + i)**2``, ``psi_2(m) = psi_2(z) - 2 sum 1/(m + i)**3`` shift the
argument; each sum is accumulated as one fraction ``num/den`` (``num <- num f**p + den``,
``den <- den f**p``, ``f = m + i``: products only, one division at the end).  At ``z`` the
asymptotic (Stirling) series with ``w = 1/z**2``:

* ``lgamma(z) = (z - 1/2) log z - z + log(2 pi)/2 + (1/z) sum_{k=1}^{13} B_2k/(2k(2k-1)) w**(k-1)``;
* ``psi(z) = log z - 1/(2z) - w sum_{k=1}^{14} B_2k/(2k) w**(k-1)``;
* ``psi_1(z) = (1/z) (1 + 1/(2z) + w sum_{k=1}^{15} B_2k w**(k-1))``;
* ``psi_2(z) = -w (1 + 1/z + w sum_{k=1}^{16} (2k+1) B_2k w**(k-1))``,

by ball Horner with double-double coefficient balls (exact Bernoulli numbers rounded, the rounding in
the radius).  For real ``z > 0`` these series are enveloping: the remainder is at most the first
omitted term in magnitude (DLMF 5.11.ii and 5.15; for ``lgamma`` and ``psi`` this is classical, the
polygamma cases follow from the completely monotone remainders); the radius gets *twice* that term,
evaluated at an upper bound of ``1/z``.  At ``z = 24`` the omitted terms are below ``2**-110`` of the
value.  ``log`` is :func:`verigrad.engine.ddfunctions._log_pos`.

Accuracy: relative radius about ``2**-100`` on ordinary arguments; near the zeros of ``gammaln``
(1, 2) and of ``digamma`` (1.4616...) the radius is the absolute error ``~2**-100`` times the size
of the terms, as the conditioning there dictates.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from verigrad.engine.dd import UP, up
from verigrad.engine.ddfunctions import (Parts, _add, _arb_fraction, _const, _dd_parts, _div_pos, _full, _log_pos,
                                         _mul, _neg, _result, _safe, _sub)

__all__ = ["gammaln", "digamma", "trigamma", "tetragamma", "GAMMA_MIN", "GAMMA_MAX", "chunked", "CHUNK", "horner_tail"]

#: smallest argument midpoint evaluated here (smaller and non-positive ones: Arb)
GAMMA_MIN = 2.0 ** -200
#: largest argument midpoint evaluated here
GAMMA_MAX = 2.0 ** 150
#: the recurrence shifts the argument up to at least this
_SHIFT_TO = 24
_TERMS = {"gammaln": 13, "digamma": 14, "trigamma": 15, "tetragamma": 16}
_SAFE = 1.0 + 2.0 ** -20


#: entries per chunk: the kernels run on slices this long, so their many temporaries stay in the
#: cache and no large array is allocated per operation (the cost is then set by the arithmetic)
CHUNK = 1 << 15


def chunked(rule):
    """Apply an elementwise ball rule ``Parts -> (Parts, declined)`` to the flattened arrays, slice by slice
    (the same results; the rule itself sees 1-d arrays of at most ``CHUNK`` entries)."""

    def run(b):
        x = _full(b)
        n = x[0].size
        flat = [a.reshape(-1) for a in x]  # the rules see 1-d arrays
        if n <= CHUNK:
            p, d = rule(Parts(*flat))
            shape = x[0].shape
            # writeable arrays of their own: the evaluator writes the Arb values of declined entries into them
            parts = (a.reshape(shape) if a.flags.writeable else a.reshape(shape).copy() for a in (p.hi, p.lo, p.rad))
            return Parts(*parts), (None if d is None else d.reshape(shape))
        out = [np.empty(n) for _ in range(3)]
        dec = np.zeros(n, dtype=bool)
        for i in range(0, n, CHUNK):
            p, d = rule(Parts(*(a[i:i + CHUNK] for a in flat)))
            for o, a in zip(out, (p.hi, p.lo, p.rad)):
                o[i:i + CHUNK] = a.reshape(-1)
            if d is not None:
                dec[i:i + CHUNK] = d.reshape(-1)
        shape = x[0].shape
        return Parts(*(o.reshape(shape) for o in out)), (dec.reshape(shape) if dec.any() else None)

    run.__doc__ = rule.__doc__
    run.__name__ = rule.__name__
    return run


class _G:
    ready = False


def _bern(k: int) -> Fraction:
    import mpmath

    return Fraction(mpmath.bernfrac(k)[0], mpmath.bernfrac(k)[1])


def _init() -> None:
    if _G.ready:
        return
    from flint import arb, ctx

    old = ctx.prec
    ctx.prec = 320
    try:
        m, r = _arb_fraction((2 * arb.pi()).log() / 2)
        _G.HALF_LOG_2PI = _dd_parts(m, r)
    finally:
        ctx.prec = old
    B = {k: _bern(2 * k) for k in range(1, 20)}
    co, rem = {}, {}
    K = _TERMS["gammaln"]
    co["gammaln"] = [_dd_parts(B[k] / (2 * k * (2 * k - 1))) for k in range(1, K + 1)]
    rem["gammaln"] = (float(2 * abs(B[K + 1]) / ((2 * K + 2) * (2 * K + 1))) * 1.01, 2 * K + 1)
    K = _TERMS["digamma"]
    co["digamma"] = [_dd_parts(B[k] / (2 * k)) for k in range(1, K + 1)]
    rem["digamma"] = (float(2 * abs(B[K + 1]) / (2 * K + 2)) * 1.01, 2 * K + 2)
    K = _TERMS["trigamma"]
    co["trigamma"] = [_dd_parts(B[k]) for k in range(1, K + 1)]
    rem["trigamma"] = (float(2 * abs(B[K + 1])) * 1.01, 2 * K + 3)
    K = _TERMS["tetragamma"]
    co["tetragamma"] = [_dd_parts((2 * k + 1) * B[k]) for k in range(1, K + 1)]
    rem["tetragamma"] = (float(2 * (2 * K + 3) * abs(B[K + 1])) * 1.01, 2 * K + 4)
    _G.CO, _G.REM = co, rem
    _G.ready = True


def _horner(u, coeffs):
    """``sum_k coeffs[k] u**k`` by ball Horner; ``u = 1/z**2`` is in ``[2**-300, 1/576]`` and every partial
    sum is dominated by its constant coefficient (``>= 1/1000`` in magnitude), so the products stay exact."""
    s = _const(coeffs[-1])
    for c in reversed(coeffs[:-1]):
        s = _add(_const(c), _mul(u, s))
    return s


def horner_tail(u, coeffs, tail):
    """``sum_k coeffs[k] u**k + u**K T(u)``, ``K = len(coeffs)``, ``T(u) = sum_i tail[i] u**i`` (alternating,
    ``|tail[i+1]| u <= |tail[i]|/100``) evaluated in float64 at ``uh`` as the ball
    ``[fl(T(uh)) ± (2**-49 |tail[0]| + 1.01 |tail[1]| (|ul| + ur))]``: Horner's rounding (``gamma_4``) and the
    rounding of the float coefficients (``u`` each) are at most ``2**-49 |tail[0]|``, and ``|T'| <= 1.01
    |tail[1]|`` covers the rest of the ball ``u``.  Used with ``u <= 2**-13``, where ``u**K`` times that radius
    is below ``2**-100`` of the value; the rest is the ball Horner of :func:`_horner` (shared by
    :mod:`~verigrad.engine.ddspecial` and :mod:`~verigrad.engine.ddinverse`)."""
    uh, ul, ur = u
    T = tail[-1]
    for c in reversed(tail[:-1]):
        T = c + uh * T
    T_rad = up(2.0 ** -49 * abs(tail[0]) + 1.01 * abs(tail[1]) * (np.abs(ul) + ur))
    s = (T, np.zeros_like(uh), T_rad)
    for c in reversed(coeffs):
        s = _add(_const(c), _mul(u, s))  # u >= 2**-122, |s| >= |tail[0]|/2 > 2**-30
    return s


def _rho(x):
    return (np.abs(x[0]) + np.abs(x[1]) + x[2]) * UP


def _shift_sum(m, n, p: int):
    """``(num, den)`` balls with ``den = prod_{i<n} (m + i)**p`` and ``num/den = sum_{i<n} (m + i)**-p``
    (per entry ``n``, sorted in decreasing order so that the entries still shifting at step ``i`` are a
    prefix; ``p = 0``: only the product).  Values stay in ``[2**-600, 2**300]``: products exact."""
    size = m[0].shape[0]
    num = [np.zeros(size), np.zeros(size), np.zeros(size)]
    den = [np.ones(size), np.zeros(size), np.zeros(size)]
    nmax = int(n[0]) if size else 0
    counts = np.searchsorted(-n, -np.arange(nmax, dtype=np.float64), side="left")  # entries with n > i
    for i in range(nmax):
        k = int(counts[i])
        f = _add((m[0][:k], m[1][:k], m[2][:k]), (float(i), 0.0, 0.0))
        fp = f if p <= 1 else (_mul(f, f) if p == 2 else _mul(_mul(f, f), f))
        dk = (den[0][:k], den[1][:k], den[2][:k])
        if p:
            nk = _add(_mul((num[0][:k], num[1][:k], num[2][:k]), fp), dk)
            for a, v in zip(num, nk):
                a[:k] = v
        for a, v in zip(den, _mul(dk, fp)):
            a[:k] = v
    return tuple(num), tuple(den)


def _deriv_bound(name: str, x):
    """``D >= max |f'|`` over the argument ball (see the module Notes); ``x`` certainly ``>= xh/2 > 0``."""
    xh, r = x[0], x[2]
    a = (xh - r) * (1.0 - 2.0 ** -50)
    with np.errstate(over="ignore", divide="ignore"):
        ia = 1.0 / a
        if name == "gammaln":
            b = (xh + r) * UP
            d = np.abs(np.log(a)) + np.abs(np.log(b)) + ia
        elif name == "digamma":
            d = ia + ia * ia
        elif name == "trigamma":
            d = ia * ia + 2.0 * ia * ia * ia
        else:
            d = 2.0 * ia * ia * ia + 6.0 * ia * ia * ia * ia
    return d * _SAFE


def _evaluate(b, name: str):
    _init()
    x0 = _full(b)
    xh, xl, xr = x0
    ok = (xh >= GAMMA_MIN) & (xh <= GAMMA_MAX) & (xr <= 0.25 * xh)
    x0 = _safe(x0, ok, 1.0)
    n0 = np.maximum(0.0, np.ceil(_SHIFT_TO - x0[0]))
    # sorted by decreasing shift: the entries still shifting at each step are a prefix (views, no masks)
    order = np.argsort(-n0, kind="stable")
    n = n0[order]
    x = tuple(a[order] for a in x0)
    xh, xl, xr = x
    k = int(np.count_nonzero(n))
    zero = np.zeros_like(xh)
    m = (xh, xl, zero)
    z = _add(m, (n, zero, zero))
    iz = _div_pos((1.0, 0.0, 0.0), z)  # z in [24, 2**150]
    w = _mul(iz, iz)
    coef, power = _G.REM[name]
    rem = up(coef * _rho(iz) ** power, maybe=True)
    H = _horner(w, _G.CO[name])
    one = (1.0, 0.0, 0.0)
    p = {"gammaln": 0, "digamma": 1, "trigamma": 2, "tetragamma": 3}[name]
    num, den = _shift_sum(m, n, p)
    num, den = tuple(a[:k] for a in num), tuple(a[:k] for a in den)  # the rest: 0 and 1
    okl = np.ones_like(xh, dtype=bool)
    if name == "gammaln":
        L, okl = _log_pos(z)
        v = _add(_mul(_sub(z, (0.5, 0.0, 0.0)), L), _neg(z))
        v = _add(_add(v, _const(_G.HALF_LOG_2PI)), _mul(iz, H))
        corr, okp = _log_pos(den)  # den in [2**-200, 24!]
        okl[:k] &= okp
    elif name == "digamma":
        L, okl = _log_pos(z)
        v = _sub(_sub(L, (0.5 * iz[0], 0.5 * iz[1], 0.5 * iz[2])), _mul(w, H))
        corr = _div_pos(num, den)
    elif name == "trigamma":
        s = _add(_add(one, (0.5 * iz[0], 0.5 * iz[1], 0.5 * iz[2])), _mul(w, H))
        v = _mul(iz, s)
        corr = _neg(_div_pos(num, den))
    else:
        s = _add(_add(one, iz), _mul(w, H))
        v = _neg(_mul(w, s))
        q = _div_pos(num, den)
        corr = (2.0 * q[0], 2.0 * q[1], 2.0 * q[2])
    if k:  # v - corr on the shifted prefix
        vk = _sub(tuple(a[:k] for a in v), corr)
        v = tuple(np.concatenate([a, b_[k:]]) for a, b_ in zip(vk, v))
    D = _deriv_bound(name, x)
    v = (v[0], v[1], up(v[2] + rem + xr * D, maybe=True))
    back = np.empty_like(order)
    back[order] = np.arange(order.size)
    v = tuple(a[back] for a in v)
    return _result(v, ok & okl[back], b.shape)


@chunked
def gammaln(b):
    """``log Γ(x)`` for ``x > 0`` (see the module Notes)."""
    return _evaluate(b, "gammaln")


@chunked
def digamma(b):
    """``ψ(x)`` for ``x > 0`` (see the module Notes)."""
    return _evaluate(b, "digamma")


@chunked
def trigamma(b):
    """``ψ'(x)`` for ``x > 0`` (see the module Notes)."""
    return _evaluate(b, "trigamma")


@chunked
def tetragamma(b):
    """``ψ''(x)`` for ``x > 0`` (see the module Notes)."""
    return _evaluate(b, "tetragamma")
