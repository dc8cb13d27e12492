"""Per-entry errors on float64 arrays, exact wherever a reported figure or a decision depends on it.

A grade needs, per entry ``i`` of a value array ``v`` (candidate or baseline) against the truth
``g``, the exact difference ``d_i = |v_i - g_i|``, and from it three rounded figures (absolute,
relative, ulps) and a few comparisons (against the tolerance, the relative guard).  Computing all
of them in mpmath costs one Python object per entry; here they are computed on numpy arrays:

* the truth of a variable is held as a float64 *expansion* ``g0 + g1 + g2`` with a bound ``rho``
  of what it leaves out (:class:`TruthVar`; ``rho = 0`` unless an mpf truth has more than 159
  significant bits), read without a per-entry mpmath call;
* ``v_i - g_i`` is then exact in a few error-free :func:`~verigrad.grading.exact.two_sum` steps,
  and rounded to a double-double ``dh + dl`` with a proved bound ``eps`` (a relative ``2**-104``);
* each figure is the float64 nearest to an exact quantity.  It is computed with a proved bound,
  and :func:`~verigrad.grading.exact.rn_certified` says where that bound leaves no doubt about the
  rounding; each comparison is decided in float64 unless it is within a relative ``1e-12`` of its
  threshold.

Every entry that is undecided, out of the float64 range the bounds assume, or not exactly a
float64 (an object array, ``longdouble``) is *resolved*: computed exactly, on raw mpf tuples, by
the same formulas as before (:func:`verigrad.grading.metrics._exact_entry`).  Resolution happens
only where it matters (a wrong entry's figures, the entries that may hold a maximum, a close
decision), so the figures of :class:`~verigrad.grading.records.Grade` are identical to an
all-mpmath computation, at the speed of the arrays.
"""

from __future__ import annotations

import gc
import math
from operator import attrgetter, itemgetter
from typing import Any, Callable

import numpy as np
from mpmath import libmp

from verigrad.grading.exact import (
    _FZERO,
    _RN,
    _SAFE,
    _U,
    DDTruth,
    _convert_array,
    _from_number,
    _is_finite_raw,
    _raw_max,
    _to_float,
    floor_log2,
    rn_certified,
    two_prod,
    two_square,
    two_sum,
)
from verigrad.grading.metrics import _exact_entry, _ExactSums, _Sums
from verigrad.spec import is_float_dtype

__all__: list[str] = []  # private to verigrad.grading

_BIG = 2.0 ** 1000  # the fast path handles |x| <= _BIG (no overflow in any step)
_TINY = 2.0 ** -900  # quotients and products need operands above this (no underflow)
_CLOSE = 1e-12  # a float64 decision within this relative distance of its threshold is made exactly
_MANY = 256  # a maximum with more tied candidates than this is first narrowed in float64


class TruthVar:
    """One variable's truth, flattened, as float64 arrays with exact access to every entry.

    Attributes
    ----------
    shape : tuple of int
    n : int
    g0, g1, g2, rho : ndarray of float64
        ``|g - (g0 + g1 + g2)| <= rho`` (``rho = 0`` where the expansion is exact); the parts
        do not overlap: ``|g1| < ulp(g0)``, ``|g2| < ulp(g1)``.
    zero : ndarray of bool
        ``g = 0`` exactly.
    kexp : ndarray of int64
        ``floor(log2 |g|)`` exactly (0 for zeros).
    fast : ndarray of bool
        Entries the array arithmetic handles (``g = 0`` or ``2**-900 <= |g| <= 2**1000`` for an
        mpf truth; ``|hi| <= 2**1000`` for a :class:`DDTruth`).
    g64 : ndarray of float64
        ``g`` rounded to float64 exactly as :func:`mpmath.libmp.to_float` rounds it.
    """

    def __init__(self, shape: tuple[int, ...], g0: np.ndarray, g1: np.ndarray, g2: np.ndarray,
                 rho: np.ndarray, zero: np.ndarray, kexp: np.ndarray, fast: np.ndarray,
                 g64: np.ndarray, raw: Callable[[int], tuple]) -> None:
        self.shape, self.n = shape, int(g0.size)
        self.g0, self.g1, self.g2, self.rho = g0, g1, g2, rho
        self.zero, self.kexp, self.fast, self.g64 = zero, kexp, fast, g64
        self._raw = raw

    def raw(self, i: int) -> tuple:
        """Entry ``i`` as an exact raw mpf tuple."""
        return self._raw(int(i))

    def gabs(self, i: int) -> tuple:
        """``|g_i|`` as an exact raw mpf tuple."""
        return libmp.mpf_abs(self._raw(int(i)))

    def max_abs(self) -> tuple:
        """``max_i |g_i|`` exactly (raw tuple; zero for an empty variable)."""
        a0 = np.abs(self.g0)
        spread = (np.abs(self.g1) + np.abs(self.g2) + self.rho) * _SAFE
        ok = self.fast
        return _exact_max(lo=np.where(ok, (a0 - spread) * (1 - 2.0 ** -50), -np.inf),
                          up=np.where(ok, (a0 + spread) * _SAFE, np.inf),
                          mask=np.ones(self.n, dtype=bool), exact=self.gabs,
                          lex=(a0, np.sign(self.g0) * self.g1, np.sign(self.g0) * self.g2),
                          lex_ok=ok & (self.rho == 0), key=self.raw)

    def sumsq(self) -> tuple[tuple, tuple]:
        """``sum g_i**2``: (approximation, bound of its error) as raw tuples."""
        with np.errstate(all="ignore"):
            y = self.g1 + self.g2
            e = self.rho + _U * np.abs(y)
        approx, bound = _sumsq(self.g0, y, e, self.fast)
        for i in np.flatnonzero(~self.fast):
            t = self.raw(i)
            approx = libmp.mpf_add(approx, libmp.mpf_mul(t, t), 0)
        return approx, bound


def _expansion_of_raw(raw: list[tuple]) -> tuple[np.ndarray, ...]:
    """(g0, g1, g2, rho, zero, kexp, fast, g64) of finite raw mpf tuples, without mpmath calls.

    Each mantissa is aligned to 256 bits and cut into 53-bit parts by numpy on its bytes, so
    the only per-entry Python work is a shift and ``to_bytes``.
    """
    n = len(raw)
    if n == 0:
        z = np.zeros(0)
        return z, z, z, z, np.zeros(0, bool), np.zeros(0, np.int64), np.zeros(0, bool), z
    sign, man, exp, bc = (list(map(itemgetter(j), raw)) for j in range(4))
    bca = np.array(bc, dtype=np.int64)
    tail = np.zeros(n, dtype=bool)
    if int(bca.max()) <= 256:
        blob = b"".join([(m << (256 - b)).to_bytes(32, "big") for m, b in zip(man, bc)])
    else:
        parts = []
        for i, (m, b) in enumerate(zip(man, bc)):
            if b > 256:
                tail[i] = bool(m & ((1 << (b - 256)) - 1))
                m, b = m >> (b - 256), 256
            parts.append((m << (256 - b)).to_bytes(32, "big"))
        blob = b"".join(parts)
    w = np.frombuffer(blob, dtype=">u8").reshape(n, 4).astype(np.uint64)
    c0 = w[:, 0] >> np.uint64(11)
    c1 = ((w[:, 0] & np.uint64(0x7FF)) << np.uint64(42)) | (w[:, 1] >> np.uint64(22))
    c2 = ((w[:, 1] & np.uint64((1 << 22) - 1)) << np.uint64(31)) | (w[:, 2] >> np.uint64(33))
    rest = ((w[:, 2] & np.uint64((1 << 33) - 1)) != 0) | (w[:, 3] != 0) | tail
    zero = c0 == 0
    try:
        expa = np.array(exp, dtype=np.int64)
    except OverflowError:  # exponents beyond 2**63: far outside any float; saturate
        expa = np.array([max(min(int(e), 2 ** 60), -2 ** 60) for e in exp], dtype=np.int64)
    kexp = np.where(zero, 0, expa + bca - 1)
    neg = np.where(np.array(sign, dtype=bool), -1.0, 1.0)
    k = np.clip(kexp, -5000, 5000)
    with np.errstate(all="ignore"):
        g0 = neg * np.ldexp(c0.astype(np.float64), k - 52)
        g1 = neg * np.ldexp(c1.astype(np.float64), k - 105)
        g2 = neg * np.ldexp(c2.astype(np.float64), k - 158)
        rho = np.where(rest, np.ldexp(1.0, k - 158), 0.0)
        # to_float: round the mantissa to 53 bits (nearest, ties to even), then ldexp
        half = (c1 >> np.uint64(52)).astype(bool)
        below = ((c1 & np.uint64((1 << 52) - 1)) != 0) | (c2 != 0) | rest
        up = half & (below | (c0 & np.uint64(1)).astype(bool))
        g64 = neg * np.ldexp((c0 + up.astype(np.uint64)).astype(np.float64), k - 52)
    g64[zero] = 0.0
    fast = zero | ((kexp >= -900) & (kexp <= 1000))
    return g0, g1, g2, rho, zero, kexp, fast, g64


def truth_var(name: str, arr: Any) -> TruthVar:
    """A :class:`TruthVar` from an array of exact numbers (mpf, ints, floats) or a :class:`DDTruth`.

    Raises ValueError (naming the variable and the entry) for entries that are not real numbers
    or not finite.
    """
    from verigrad.grading.shapes import _idx_str, _unravel

    if isinstance(arr, DDTruth):
        return _truth_of_dd(name, arr)
    a = arr if isinstance(arr, np.ndarray) else np.asarray(arr, dtype=object)
    if is_float_dtype(a.dtype) and a.dtype.itemsize <= 8:
        f = a.astype(np.float64)
        if not np.isfinite(f).all():
            bad = int(np.flatnonzero(~np.isfinite(f.reshape(-1)))[0])
            raise ValueError(f"truth[{name!r}] is not finite at {name}{_idx_str(_unravel(bad, a.shape))}; "
                             "a certified truth must be finite")
        return _truth_of_dd(name, DDTruth(f, np.zeros_like(f)))
    flat = a.reshape(-1)
    enabled = gc.isenabled()
    gc.disable()  # a million small tuples: the collector would rescan them all, for nothing
    try:
        import mpmath

        if flat.size and set(map(type, flat)) == {mpmath.mpf}:
            raw = list(map(attrgetter("_mpf_"), flat))
            # a non-finite mpf has a zero mantissa and a negative bit count
            bad = np.flatnonzero(np.fromiter(map(itemgetter(3), raw), dtype=np.int64, count=len(raw)) < 0)
        else:
            try:
                raw = [_from_number(x) for x in flat]
            except TypeError as exc:
                raise ValueError(f"truth[{name!r}] has an entry of type {exc.args[0]}; "
                                 "entries must be mpmath.mpf (or exact ints/floats)") from None
            bad = [i for i, t in enumerate(raw) if t is None or not _is_finite_raw(t)]
        if len(bad):
            raise ValueError(f"truth[{name!r}] is not finite at "
                             f"{name}{_idx_str(_unravel(int(bad[0]), a.shape))}; "
                             "a certified truth must be finite")
        g0, g1, g2, rho, zero, kexp, fast, g64 = _expansion_of_raw(raw)
    finally:
        if enabled:
            gc.enable()
    return TruthVar(tuple(a.shape), g0, g1, g2, rho, zero, kexp, fast, g64, raw.__getitem__)


def _truth_of_dd(name: str, t: DDTruth) -> TruthVar:
    from verigrad.grading.shapes import _idx_str, _unravel

    hi, lo = t.hi.reshape(-1), t.lo.reshape(-1)
    good = np.isfinite(hi) & np.isfinite(lo)
    if not good.all():
        bad = int(np.flatnonzero(~good)[0])
        raise ValueError(f"truth[{name!r}] is not finite at {name}{_idx_str(_unravel(bad, t.shape))}; "
                         "a certified truth must be finite")
    with np.errstate(all="ignore"):
        h, l = two_sum(hi, lo)  # normalised: h = fl(h + l), exactly the same number
    ok = np.isfinite(h) & (np.abs(h) <= _BIG)
    h = np.where(ok, h, hi)
    l = np.where(ok, l, lo)

    def raw(i: int) -> tuple:
        return libmp.mpf_add(libmp.from_float(float(h[i])), libmp.from_float(float(l[i])), 0)

    zero = (h == 0) & (l == 0)
    kexp = floor_log2(h)
    pow2 = np.abs(np.frexp(h)[0]) == 0.5
    kexp = np.where(pow2 & (l != 0) & (np.sign(l) != np.sign(h)), kexp - 1, kexp)
    kexp = np.where(zero, 0, kexp)
    g64 = h.copy()
    for i in np.flatnonzero(~ok):
        t_i = raw(int(i))
        g64[i] = _to_float(t_i)
        kexp[i] = 0 if t_i == _FZERO else t_i[2] + t_i[3] - 1
    z = np.zeros_like(h)
    return TruthVar(t.shape, h, l, z, z.copy(), zero, kexp.astype(np.int64), ok, g64, raw)


# ---------------------------------------------------------------------------
# the values graded (candidate or baseline)
# ---------------------------------------------------------------------------


class Values:
    """A value array, flattened: float64 view, exactness, raw access.

    ``disp`` is the float64 view used for display and diagnosis, ``rounded`` each finite entry
    rounded to float64 by :func:`mpmath.libmp.to_float`; when ``exact``, ``disp`` is every entry
    exactly (float16/32/64 data, integers up to 2**53) and the array arithmetic applies.
    """

    def __init__(self, arr: np.ndarray) -> None:
        kind = "f" if is_float_dtype(arr.dtype) else arr.dtype.kind  # bfloat16 is numpy kind "V"
        flat = arr.reshape(-1)
        self.raw_list: list[tuple | None] | None = None
        if kind == "f" and (arr.dtype.itemsize <= 8 or np.finfo(arr.dtype).nmant <= 52):
            self.disp = flat.astype(np.float64)
            self.exact = True
        elif kind in "iu" and flat.size and (flat.min() >= -2 ** 53) and (flat.max() <= 2 ** 53):
            self.disp = flat.astype(np.float64)
            self.exact = True
        elif kind in "iu" and not flat.size:
            self.disp = flat.astype(np.float64)
            self.exact = True
        else:
            self.raw_list, self.disp = _convert_array(arr)  # TypeError for non-real data
            self.exact = False
        if self.exact:
            self.finite = np.isfinite(self.disp)
            self.rounded = self.disp
        else:
            self.finite = np.array([t is not None for t in self.raw_list], dtype=bool)
            self.rounded = np.array([_to_float(t) if t is not None else math.nan for t in self.raw_list],
                                    dtype=np.float64)
        self.nan = np.isnan(self.disp)
        self.dtype_name = arr.dtype.name

    def raw(self, i: int) -> tuple | None:
        """Entry ``i`` as an exact raw mpf tuple (None for NaN/inf)."""
        if self.raw_list is not None:
            return self.raw_list[i]
        x = float(self.disp[i])
        return libmp.from_float(x) if math.isfinite(x) else None


# ---------------------------------------------------------------------------
# per-entry errors
# ---------------------------------------------------------------------------


class EntryErrors:
    """The errors of one value array against one variable's truth.

    Parameters
    ----------
    truth : TruthVar
    values : Values
    kulp : ndarray of int64
        Per entry, ``k`` with ulp = ``2**k`` used for the ulps figure (``zero_kulp`` at exact
        zeros of the truth).
    zero_ref : raw tuple
        The reference ``R`` of relative errors at exact zeros of the truth (zero: the whole
        gradient is zero).
    zero_kulp : int

    Notes
    -----
    On construction only the differences are computed for every entry (``dh + dl`` with a
    bound ``eps``, kept as ``a = |dh|``, ``al = sign(dh) dl``); a figure (``"abs"``, ``"rel"``,
    ``"ulps"``) is certified only for the entries that need it (:meth:`figure`), from cheap
    bounds for the others (:meth:`bounds`).  An entry read exactly is *resolved*: its exact
    difference and figures are kept.
    """

    KEYS = ("abs", "rel", "ulps")

    def __init__(self, truth: TruthVar, values: Values, *, kulp: np.ndarray, zero_ref: tuple,
                 zero_kulp: int) -> None:
        self.truth, self.values = truth, values
        self.kulp, self.zero_ref, self.zero_kulp = kulp, zero_ref, zero_kulp
        n = truth.n
        self.finite, self.nan = values.finite, values.nan
        v = values.disp
        fast = self.finite & truth.fast & values.exact
        with np.errstate(all="ignore"):
            fast &= np.abs(v) <= _BIG
            self.fast = fast
            self._differences(v if fast.all() else np.where(fast, v, 0.0))
        self.exact: dict[int, tuple | None] = {}
        self.resolved = ~fast  # entries whose exact difference is known (or that are not finite)
        self.known = {k: np.full(n, math.inf) for k in self.KEYS}  # figures of the resolved entries
        self._den: tuple[np.ndarray, ...] | None = None
        for i in np.flatnonzero(self.finite & ~fast):
            self._resolve_one(int(i))
        for i in np.flatnonzero(~self.finite):
            self.exact[int(i)] = None

    # -- the difference -----------------------------------------------------------------

    def _differences(self, v: np.ndarray) -> None:
        """``d = v - g`` as a normalised double-double ``dh + dl`` with ``|d - dh - dl| <= eps``."""
        t = self.truth
        f = self.fast
        whole = bool(f.all())
        g0, g1, g2 = ((x if whole else np.where(f, x, 0.0)) for x in (t.g0, t.g1, t.g2))
        s0, s1 = two_sum(v, -g0)
        a0, a1 = two_sum(s1, -g1)
        if g2.any():
            b0, b1 = two_sum(a0, -g2)
        else:
            b0, b1 = a0, None
        c0, c1 = two_sum(s0, b0)
        # now v - (g0 + g1 + g2) = c0 + c1 + b1 + a1 exactly
        if b1 is not None:
            e0, e1 = two_sum(b1, a1)
            f0, f1 = two_sum(c1, e0)
            t0, t1 = two_sum(c0, f0)  # = t0 + t1 + f1 + e1
            w = f1 + e1
            dl = t1 + w
            err = _U * (np.abs(w) + np.abs(dl))
        else:
            f0, f1 = two_sum(c1, a1)
            t0, t1 = two_sum(c0, f0)  # = t0 + t1 + f1
            dl = t1 + f1
            err = _U * np.abs(dl)
        if t.rho.any():
            err += np.where(f, t.rho, 0.0)
        dh, dl = two_sum(t0, dl)
        self.a, self.al, self.eps = np.abs(dh), np.sign(dh) * dl, err * _SAFE

    def _denominators(self) -> tuple[np.ndarray, ...]:
        """``(d0, d1, d2, drho, zero_inf)``: the expansion of ``|g_i|`` (of ``R`` at exact zeros of
        the truth) and where the relative error is 0 or inf (the whole gradient is zero)."""
        if self._den is None:
            t = self.truth
            s = np.sign(t.g0)
            d0, d1, d2, drho = np.abs(t.g0), s * t.g1, s * t.g2, t.rho
            zero_inf = np.zeros(t.n, dtype=bool)
            if t.zero.any():
                if self.zero_ref == _FZERO:
                    zero_inf = t.zero
                else:
                    z0, z1, z2, zr = _expansion_of_tuple(self.zero_ref)
                    d0, d1, d2, drho = (np.where(t.zero, z, x) for z, x in ((z0, d0), (z1, d1), (z2, d2), (zr, drho)))
            self._den = (d0, d1, d2, drho, zero_inf)
        return self._den

    def bounds(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``lo <= F_i <= up`` for every entry, ``F_i`` the rounded figure ``key``."""
        a, s = self.a, (np.abs(self.al) + self.eps) * _SAFE
        with np.errstate(all="ignore"):
            lo = np.maximum((a - s) * (1 - 2.0 ** -50), 0.0)
            up = (a + s) * _SAFE
            if key == "ulps":
                lo = np.maximum(np.ldexp(lo, -self.kulp) * (1 - 2.0 ** -50) - 2.0 ** -1074, 0.0)
                up = np.ldexp(up, -self.kulp) * _SAFE + 2.0 ** -1074
            elif key == "rel":
                d0, d1, d2, drho, zero_inf = self._denominators()
                spread = np.abs(d1) + np.abs(d2) + drho
                valid = (d0 >= _TINY) & (d0 <= _BIG)
                lo = np.where(valid, lo / ((d0 + spread) * _SAFE) * (1 - 2.0 ** -50), 0.0)
                up = np.where(valid, up / ((d0 - spread) * (1 - 2.0 ** -50)) * _SAFE, np.inf)
                if zero_inf.any():
                    exact_zero = (a == 0) & (self.eps == 0)
                    lo = np.where(zero_inf, np.where(a > s, np.inf, 0.0), lo)
                    up = np.where(zero_inf, np.where(exact_zero, 0.0, np.inf), up)
        res = self.resolved
        known = self.known[key]
        return np.where(res, known, lo), np.where(res, known, up)

    def _certify(self, key: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidate figures ``key`` of the (fast, unresolved) entries ``idx`` and where they are certain."""
        a, al, eps = self.a[idx], self.al[idx], self.eps[idx]
        with np.errstate(all="ignore"):
            if key != "rel":
                ok = rn_certified(a, al, eps)
                return (a if key == "abs" else np.ldexp(a, -self.kulp[idx])), ok
            d0, d1, d2, drho, zero_inf = (x[idx] for x in self._denominators())
            valid = (d0 >= _TINY) & (d0 <= _BIG) & ((a == 0) | ((a >= _TINY) & (a <= _BIG)))
            d0v = np.where(valid, d0, 1.0)
            q1 = np.where(valid, a / d0v, 0.0)
            p, pe = two_prod(q1, np.where(valid, d0, 0.0))
            t_ = a - p  # exact (Sterbenz: p is within a factor 2 of a)
            m1, m2 = q1 * d1, q1 * d2
            r = (((t_ - pe) + al) - m1) - m2
            err_r = 2.0 ** -49 * (np.abs(t_) + np.abs(pe) + np.abs(al) + np.abs(m1) + np.abs(m2)) + 2.0 ** -1070
            q2 = np.where(valid, r / d0v, 0.0)
            spread = np.abs(d1) + np.abs(d2) + drho
            den_low = np.where(valid, (d0 - spread) * (1 - 2.0 ** -50), 1.0)
            # |d| / |g| - (q1 + q2): the residual's rounding, eps and rho over |g|, r / |g| vs r / d0,
            # the rounding of q2, and the _PREC-bit quotient the definition rounds from
            bound = ((eps + q1 * drho + err_r + np.abs(r) * spread / d0v) / den_low
                     + 2.0 ** -52 * np.abs(q2) + 2.0 ** -180 * q1) * _SAFE
            x, xr = two_sum(q1, q2)
            ok = valid & rn_certified(x, xr, bound)
            if zero_inf.any():
                exact_zero = (a == 0) & (eps == 0)
                surely = a > (np.abs(al) + eps) * _SAFE
                x = np.where(zero_inf, np.where(exact_zero, 0.0, np.inf), x)
                ok = np.where(zero_inf, exact_zero | surely, ok)
        return x, ok

    def figure(self, key: str, idx: np.ndarray) -> np.ndarray:
        """The figures ``key`` of the entries ``idx``, exactly as the definition rounds them."""
        idx = np.asarray(idx, dtype=np.int64)
        out = self.known[key][idx].copy()
        todo = ~self.resolved[idx]
        if todo.any():
            x, ok = self._certify(key, idx[todo])
            sub = out[todo]
            sub[ok] = x[ok]
            out[todo] = sub
            for i in idx[todo][~ok]:
                self._resolve_one(int(i))
            out = np.where(self.resolved[idx], self.known[key][idx], out)
        return out

    # -- exact resolution -------------------------------------------------------------------

    def _resolve_one(self, i: int) -> None:
        t = self.truth
        gi = t.raw(i)
        d, *figs = _exact_entry(self.values.raw(i), gi, libmp.mpf_abs(gi), int(self.kulp[i]), self.zero_ref,
                                self.zero_kulp)
        self.exact[i] = d
        self.resolved[i] = True
        for key, x in zip(self.KEYS, figs):
            self.known[key][i] = x

    def diff(self, i: int) -> tuple | None:
        """Exact ``|v_i - g_i|`` (raw tuple; None for a non-finite value)."""
        i = int(i)
        if i not in self.exact:
            self._resolve_one(i)
        return self.exact[i]

    def figures_of(self, idx: np.ndarray) -> list[tuple[float, float, float]]:
        """``(abs, rel, ulps)`` of the entries ``idx``, exactly as mpmath rounds them."""
        return list(zip(*(self.figure(k, idx).tolist() for k in self.KEYS)))

    def figures(self, i: int) -> tuple[float, float, float]:
        """``(abs, rel, ulps)`` of entry ``i``."""
        return self.figures_of(np.array([i]))[0]

    # -- reductions -------------------------------------------------------------------------

    def max(self, key: str) -> float:
        """The largest rounded figure ``key`` (``"abs"``, ``"rel"``, ``"ulps"``); 0 when empty."""
        if self.truth.n == 0:
            return 0.0
        lo, up = self.bounds(key)
        cand = np.flatnonzero(~(up < lo.max()))
        return float(self.figure(key, cand).max())

    def max_diff(self, mask: np.ndarray) -> tuple:
        """``max |v_i - g_i|`` over the finite entries of ``mask``, exactly (zero when none)."""
        mask = mask & self.finite
        if not mask.any():
            return _FZERO
        lo, up = self.bounds("abs")  # lo <= d <= up for the unresolved entries
        res = self.resolved  # (for the others, bounds of d from its rounding)
        with np.errstate(all="ignore"):
            lo = np.where(res, np.maximum(lo * (1 - 2.0 ** -50) - 2.0 ** -1074, 0.0), lo)
            up = np.where(res, up * _SAFE + 2.0 ** -1074, up)
        return _exact_max(lo=lo, up=up, mask=mask, exact=self.diff, lex=(self.a, self.al),
                          lex_ok=~self.resolved & (self.eps == 0), key=self._key)

    def _key(self, i: int) -> Any:
        """Entries with equal keys have equal differences (the same value and the same truth)."""
        return self.values.raw(i), self.truth.raw(i)

    def gt(self, thr: np.ndarray, exact_thr: Callable[[int], tuple], mask: np.ndarray,
           thr_ok: np.ndarray | None = None) -> np.ndarray:
        """Where ``|v_i - g_i| > T_i`` (over the finite entries of ``mask``; False elsewhere).

        ``thr`` approximates ``T_i`` to a relative ``2**-50`` where ``thr_ok`` (default: where it
        is finite); ``exact_thr(i)`` is ``T_i`` as a raw tuple, used for the entries decided exactly.
        """
        mask = mask & self.finite
        out = np.zeros(self.truth.n, dtype=bool)
        good = np.isfinite(thr) if thr_ok is None else (thr_ok & np.isfinite(thr))
        good &= (thr == 0) | (np.abs(thr) >= 2.0 ** -1000)  # no subnormal threshold
        with np.errstate(all="ignore"):
            margin = _CLOSE * np.abs(thr) + 2 * (np.abs(self.al) + self.eps) + 2.0 ** -1060
            close = ~good | (np.abs(self.a - thr) <= margin)
        quick = mask & ~self.resolved & ~close
        out[quick] = self.a[quick] > thr[quick]
        for i in np.flatnonzero(mask & ~quick):
            out[i] = libmp.mpf_gt(self.diff(int(i)), exact_thr(int(i)))
        return out

    def sums(self, g_sums: tuple[tuple, tuple]) -> _Sums:
        """Sums of squares ``||d||^2, ||v||^2, ||g||^2`` with bounds, and the exact fallback."""
        f = self.fast
        # a difference lost in its own bound (a value equal to a truth's leading 159 bits) is read
        # exactly, so that a sum of such differences is not all bound
        vague = f & (self.eps > 0) & (self.a <= 4 * (np.abs(self.al) + self.eps))
        d_approx, d_bound = _sumsq(self.a, self.al, self.eps, f & ~vague)
        for i in np.flatnonzero(vague):
            d = self.diff(int(i))
            d_approx = libmp.mpf_add(d_approx, libmp.mpf_mul(d, d), 0)
        v = self.values.disp
        v_approx, v_bound = _sumsq(np.where(f, v, 0.0), np.zeros_like(v), np.zeros_like(v), f)
        for i in np.flatnonzero(self.finite & ~f):
            d, x = self.exact[int(i)], self.values.raw(int(i))
            d_approx = libmp.mpf_add(d_approx, libmp.mpf_mul(d, d), 0)
            v_approx = libmp.mpf_add(v_approx, libmp.mpf_mul(x, x), 0)
        return _Sums(d=d_approx, bd=d_bound, v=v_approx, bv=v_bound, g=g_sums[0], bg=g_sums[1],
                     n=self.truth.n, nonfinite=bool((~self.finite).any()), nan=bool(self.nan.any()),
                     legacy=self._legacy_sums)

    def _legacy_sums(self) -> _ExactSums:
        t, vals = self.truth, self.values
        return _ExactSums.of([vals.raw(i) for i in range(t.n)], [t.raw(i) for i in range(t.n)],
                             self.nan)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _expansion_of_tuple(t: tuple) -> tuple[float, float, float, float]:
    """(g0, g1, g2, rho) of one nonzero finite raw tuple (|g| in the fast range), positive."""
    g0, g1, g2, rho, *_ = _expansion_of_raw([libmp.mpf_abs(t)])
    return float(g0[0]), float(g1[0]), float(g2[0]), float(rho[0])


def _exact_max(*, lo: np.ndarray, up: np.ndarray, mask: np.ndarray, exact: Callable[[int], tuple],
               lex: tuple[np.ndarray, ...], lex_ok: np.ndarray, key: Callable[[int], Any]) -> tuple:
    """Exact maximum of ``exact(i)`` over ``mask``, from float64 bounds ``lo <= x_i <= up``.

    Only the entries whose upper bound reaches the largest lower bound are read exactly.  When
    they are many (ties), those whose value is exactly the float64 expansion ``lex``
    (``lex_ok``) are first narrowed to the largest in lexicographic order, and of the others
    only one per ``key(i)`` (entries with equal keys have equal values) is read.
    """
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return _FZERO
    floor = float(np.max(lo[idx]))
    cand = idx[~(up[idx] < floor)]
    if cand.size > _MANY:
        exact_dd = cand[lex_ok[cand]]
        rest = cand[~lex_ok[cand]]
        first: dict[Any, int] = {}
        for i in rest.tolist():
            first.setdefault(key(i), i)
        cand = np.array(list(first.values()), dtype=np.int64)
        if exact_dd.size:
            keys = tuple(k[exact_dd] for k in reversed(lex))
            cand = np.concatenate([[exact_dd[np.lexsort(keys)[-1]]], cand])
    return _raw_max(exact(int(i)) for i in cand)


def _accurate_sum(x: np.ndarray) -> tuple[tuple, float]:
    """``sum x`` as a raw tuple (exact sum of a few floats) and a bound of its error.

    Three error-free extractions (Rump, Ogita and Oishi, "Accurate floating-point summation
    part I", SIAM J. Sci. Comput. 31, 2008: ``ExtractVector``): with ``sigma = 2**k >= 2**M max|r|``
    and ``2**M >= n + 2``, ``q = (sigma + r) - sigma`` is exact, so is ``r - q``, and the ``q`` are
    multiples of ``2**(k - 53)`` whose partial sums never exceed ``sigma``: ``sum q`` is exact in
    any order.  Each extraction takes about ``53 - M`` bits; the rest is summed in float64 with the
    worst-case bound of any order.  No overflow: ``|x| <= 2**900`` (the caller scales).
    """
    n = x.size
    if n == 0:
        return _FZERO, 0.0
    m = int(math.ceil(math.log2(n + 2)))
    total = _FZERO
    r = x
    for _ in range(3):
        top = float(np.max(np.abs(r)))
        if top < 2.0 ** -900:
            break
        sigma = math.ldexp(1.0, math.frexp(top)[1] + m)
        q = (sigma + r) - sigma
        total = libmp.mpf_add(total, libmp.from_float(float(np.sum(q))), 0)
        r = r - q
    total = libmp.mpf_add(total, libmp.from_float(float(np.sum(r))), 0)
    return total, (n + 1) * _U * float(np.sum(np.abs(r))) * _SAFE + n * 2.0 ** -1074


def _sumsq(x: np.ndarray, y: np.ndarray, e: np.ndarray, mask: np.ndarray) -> tuple[tuple, tuple]:
    """``sum over mask of (x + y + delta)**2`` with ``|delta| <= e``: (approximation, bound) as raw tuples.

    ``|y|`` is at most about ``2**-52 |x|``.  The entries are scaled by a power of two so that the
    largest is in ``[1, 2)``; ``x**2 = p + pe`` is split error-free (:func:`two_square`); ``sum p``
    is added error-free to a relative ``2**-100`` or better (:func:`_accurate_sum`) and the small
    terms (``pe + 2 x y + y**2``, relative ``2**-51`` and below) in float64 with the worst-case
    bound of any summation order.  What underflows after scaling is at most ``2**-1060`` per
    entry, far below the largest square.
    """
    if not mask.all():
        x, y, e = x[mask], y[mask], e[mask]
    if x.size == 0:
        return _FZERO, _FZERO
    n = x.size
    with np.errstate(all="ignore"):
        ax = np.abs(x)
        has_y, has_e = bool(y.any()), bool(e.any())
        top = float(np.max(ax + np.abs(y) + e if (has_y or has_e) else ax))
        if top == 0.0:
            return _FZERO, _FZERO
        sigma = -int(floor_log2(np.array([top]))[0])
        if -200 <= sigma <= 200:
            sigma = 0  # squares neither overflow nor underflow where it matters
            xs = x
        else:
            xs = np.ldexp(x, sigma)
        p, small = two_square(xs)
        slack = n * 2.0 ** -1060
        if has_y:
            ys = y if sigma == 0 else np.ldexp(y, sigma)
            xy = 2 * xs * ys
            small = small + (xy + ys * ys)  # three roundings, each <= u (|pe| + 2 |x y| + y**2)
            slack += 3 * _U * float(np.sum(np.abs(small) + 2 * np.abs(xy)))
        approx, b = _accurate_sum(p)
        approx = libmp.mpf_add(approx, libmp.from_float(float(np.sum(small))), 0)
        b += (n + 1) * _U * float(np.sum(np.abs(small)))
        if has_e:
            es = (e if sigma == 0 else np.ldexp(e, sigma)) + 2.0 ** -1070
            ay = np.abs(xs) + (np.abs(ys) if has_y else 0.0)
            slack += float(np.sum((2 * ay + es) * es))
        elif sigma:
            slack += float(np.sum(np.abs(xs))) * 2.0 ** -1068  # the scaling may underflow
    bound = (b + slack) * (1 + n * 2 * _U) * _SAFE
    return (libmp.mpf_shift(approx, -2 * sigma),
            libmp.mpf_shift(libmp.from_float(bound), -2 * sigma))
