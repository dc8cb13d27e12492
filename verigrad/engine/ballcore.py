"""Ball arrays of the vectorised certified engine: the type, conversions, range check, ``+ - *``.

See :mod:`verigrad.engine.fastball` (the evaluator, which re-exports these names) for the
conventions: a :class:`Ball` holds a normalised double-double midpoint ``hi + lo`` and a
float64 radius ``rad`` per entry; every operation here returns balls that provably contain
the exact results for all points of the argument balls, with the bounds of
:mod:`verigrad.engine.dd` (``u = 2**-53``, ``UP = 1 + 2**-44``, ``TINY = 2**-1060``); values
outside the proved range raise :class:`FastPathUnavailable`.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from verigrad.engine import dd
from verigrad.engine.dd import U, UP

__all__ = ["Ball", "FastPathUnavailable", "exact", "from_float", "from_fraction", "from_arb", "to_arb",
           "ball_add", "ball_sub", "ball_mul", "ball_neg", "LOW", "HIGH"]

#: smallest non-zero magnitude of a midpoint the fast path accepts
LOW = 2.0 ** -900
#: largest magnitude of a midpoint (and radius) the fast path accepts
HIGH = 2.0 ** 900


class FastPathUnavailable(ArithmeticError):
    """The fast engine cannot prove this evaluation; fall back to Arb."""


class Ball:
    """An array of double-double balls ``[hi + lo ± rad]`` (three float64 arrays, one shape).

    Attributes
    ----------
    hi, lo : ndarray of float64
        Normalised double-double midpoint (``hi = fl(hi + lo)``); either may be a
        read-only broadcast view.
    rad : ndarray of float64
        Radius, ``>= 0``.
    """

    __slots__ = ("hi", "lo", "rad")

    def __init__(self, hi: np.ndarray, lo: np.ndarray, rad: np.ndarray) -> None:
        self.hi, self.lo, self.rad = hi, lo, rad

    @property
    def shape(self) -> tuple[int, ...]:
        return self.hi.shape

    @property
    def ndim(self) -> int:
        return self.hi.ndim

    def map(self, f) -> "Ball":
        """A structural operation (index, transpose, reshape, broadcast) applied to all three arrays."""
        return Ball(f(self.hi), f(self.lo), f(self.rad))

    def __getitem__(self, index) -> "Ball":
        return self.map(lambda a: a[index])

    def full(self) -> "Ball":
        """The same ball with all three arrays of the full shape (materialised)."""
        s = self.shape
        return Ball(self.hi, np.broadcast_to(self.lo, s), np.broadcast_to(self.rad, s))

    def mid_fraction(self, index) -> Fraction:
        """The exact midpoint of one entry as a Fraction."""
        return Fraction(float(self.hi[index])) + Fraction(float(self.lo[index]))

    def __repr__(self) -> str:
        return f"Ball(shape={self.shape})"


def _zeros_view(shape) -> np.ndarray:
    return np.broadcast_to(np.float64(0.0), shape)


def exact(hi: np.ndarray) -> Ball:
    """Exact balls of a float64 array (``lo = rad = 0`` as zero-stride views)."""
    return Ball(hi, _zeros_view(hi.shape), _zeros_view(hi.shape))


def _uniform(a: np.ndarray) -> bool:
    """Whether every entry of ``a`` is one stored number (0-d or all strides 0: a broadcast view)."""
    if a.size == 0:
        return False
    if a.size > 1 and a.flags.c_contiguous:  # the common case, decided without a loop: a real array
        return False
    for st, n in zip(a.strides, a.shape):  # a plain loop: this runs a few hundred times per evaluation
        if st and n != 1:
            return False
    return True


def _zero(a: np.ndarray) -> bool:
    """Whether ``a`` is known to be all zeros without reading it (a broadcast view of 0)."""
    return _uniform(a) and a.reshape(-1)[0] == 0


def _one(a: np.ndarray) -> np.ndarray:
    """The stored number of a uniform array, as a 0-d array."""
    return a.reshape(-1)[:1].reshape(())


def _check(b: Ball) -> Ball:
    """Refuse values outside the proved range: raises :class:`FastPathUnavailable`.

    Midpoints must be finite and exactly 0 or of magnitude in ``[LOW, HIGH]``; radii finite
    and at most ``HIGH`` (NaN fails every comparison and is refused too).
    """
    h = b.hi
    if _uniform(h):
        h = _one(h)
    step = 1 << 18
    if h.size > step and h.flags.c_contiguous:  # in chunks: no large temporaries
        flat = h.reshape(-1)
        parts = [flat[i:i + step] for i in range(0, flat.size, step)]
    else:
        parts = (h,) if h.size else ()
    for part in parts:
        a = np.abs(part)
        if not a.max() <= HIGH:  # ndarray methods: no Python-level wrapper per call
            raise FastPathUnavailable("a value is outside [2**-900, 2**900] or not finite")
        if not a.min() >= LOW and not np.min(a, where=part != 0, initial=np.inf) >= LOW:
            raise FastPathUnavailable("a value is outside [2**-900, 2**900] or not finite")
    r = b.rad
    if _uniform(r):
        r = _one(r)
        if r == 0:
            return b
    if not r.max() <= HIGH:  # one pass; a NaN maximum fails the comparison too
        raise FastPathUnavailable("a radius is too wide or not finite")
    return b


def from_float(values: np.ndarray) -> Ball:
    """Exact balls of a real float array (any float dtype; converted to float64 exactly).

    Raises
    ------
    FastPathUnavailable
        For complex input or entries outside the accepted range.
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu":
        raise FastPathUnavailable(f"dtype {arr.dtype} is not handled by the fast path")
    if arr.dtype.kind in "iu" and arr.size and np.max(np.abs(arr)) >= 2**53:
        raise FastPathUnavailable("integers beyond 2**53")
    return _check(exact(np.asarray(arr, dtype=np.float64)))


def _float_up(q: Fraction) -> float:
    """The smallest float64 >= q (q >= 0, finite result)."""
    f = float(q)
    if Fraction(f) < q:
        f = float(np.nextafter(f, np.inf))
    return f


def from_fraction(q: Fraction) -> Ball:
    """A ball of shape ``()`` containing the rational ``q`` (exact when ``q`` is a dd number)."""
    try:
        hi = float(q)
    except OverflowError:
        raise FastPathUnavailable("constant beyond the float range") from None
    rem = q - Fraction(hi)
    lo = float(rem)
    hi, lo = hi + lo, (hi - (hi + lo)) + lo  # normalise (exact: |lo| <= ulp(hi)/2 already)
    rest = q - Fraction(hi) - Fraction(lo)
    rad = _float_up(abs(rest)) if rest else 0.0
    return _check(Ball(np.array(hi), np.array(lo), np.array(rad)))


def _arb_to_parts(v) -> tuple[float, float, float]:
    """One Arb ball as (hi, lo, rad) floats, with the rounding residual in the radius.

    ``hi`` and ``lo`` are any floats (here: the nearest to the midpoint and to the midpoint's
    remainder); the radius is an upper bound of ``|x - hi - lo|`` over the ball, from the Arb
    ball ``v - hi - lo`` (whose own rounding Arb adds to its radius), rounded up to a float.
    """
    from flint import arb

    if not v.is_finite():
        raise FastPathUnavailable("non-finite Arb value")
    m = v.mid()
    hi = float(m)
    if not math.isfinite(hi) or abs(hi) > HIGH:
        raise FastPathUnavailable("Arb value beyond the accepted range")
    rest = m - arb(hi)
    lo = float(rest)
    e = v - arb(hi) - arb(lo) if lo else v - arb(hi)
    if e.is_exact() and e.is_zero():
        return hi, lo, 0.0
    ub = e.abs_upper()
    r = float(ub)
    if not math.isfinite(r) or r > HIGH:
        raise FastPathUnavailable("Arb radius beyond the accepted range")
    if arb(r) < ub:
        r = float(np.nextafter(r, np.inf))
    hi, lo = hi + lo, (hi - (hi + lo)) + lo  # fast_two_sum: normalised (|lo| <= ulp(hi)/2 here)
    return hi, lo, r


def from_arb(arr: np.ndarray) -> Ball:
    """Balls containing an object array of ``flint.arb`` (one Python step per entry).

    Notes
    -----
    The Arb midpoint ``m`` is rounded to ``hi = fl(m)``, ``lo = fl(m - hi)``; the radius is
    an upper bound of the Arb ball ``v - hi - lo`` (Arb's outward rounding included),
    rounded up to a float64 (checked by an exact comparison).
    """
    flat = arr.ravel()
    n = flat.size
    hi = np.empty(n)
    lo = np.empty(n)
    rad = np.empty(n)
    for i, v in enumerate(flat):
        hi[i], lo[i], rad[i] = _arb_to_parts(v)
    return _check(Ball(hi.reshape(arr.shape), lo.reshape(arr.shape), rad.reshape(arr.shape)))


def to_arb(b: Ball) -> np.ndarray:
    """An object array of ``flint.arb`` balls containing ``b`` (exact conversion plus Arb's rounding).

    The midpoint is ``arb(hi) + arb(lo)`` (Arb rounds outwards if the sum needs more bits
    than the working precision) and the radius is added as ``arb(0, rad)``.
    """
    from flint import arb

    s = b.shape
    hi = np.broadcast_to(b.hi, s).ravel().tolist()
    lo = np.broadcast_to(b.lo, s).ravel().tolist()
    rad = np.broadcast_to(b.rad, s).ravel().tolist()
    out = np.empty(len(hi), dtype=object)
    for i, (h, l, r) in enumerate(zip(hi, lo, rad)):
        v = arb(h)
        if l:
            v = v + arb(l)
        if r:
            v = v + arb(0, r)
        out[i] = v
    return out.reshape(s)


# -- elementwise ball arithmetic -------------------------------------------------------


def _nonzero(b: Ball) -> np.ndarray:
    """Entries that are not exactly zero."""
    return (b.hi != 0) | (b.rad != 0)


def ball_neg(x: Ball) -> Ball:
    """``-x``: exact."""
    return Ball(-x.hi, x.lo if _zero(x.lo) else -x.lo, x.rad)


def _exact_float(b: Ball) -> bool:
    """Whether ``b`` is known to be exact float64 values (``lo`` and ``rad`` broadcast zeros)."""
    return _zero(b.lo) and _zero(b.rad)


def _constant(b: Ball):
    """The exact float constant of a uniform exact ball (all entries one float), or None."""
    if _uniform(b.hi) and _exact_float(b):
        return float(b.hi.reshape(-1)[0])
    return None


def _compact(x: Ball, y: Ball, op) -> Ball | None:
    """``op`` on two balls whose three arrays are all uniform: computed once and broadcast."""
    shape = np.broadcast_shapes(x.shape, y.shape)
    if math.prod(shape) > 1 and all(_uniform(a) for a in (x.hi, x.lo, x.rad, y.hi, y.lo, y.rad)):
        one = lambda b: Ball(*(_one(a).reshape((1,) * len(shape)) for a in (b.hi, b.lo, b.rad)))
        r = op(one(x), one(y))
        return r.map(lambda a: np.broadcast_to(a, shape))
    return None


def _bshape(x: Ball, y: Ball, b: Ball) -> Ball:
    """``b`` broadcast to the common shape of ``x`` and ``y``."""
    shape = np.broadcast_shapes(x.shape, y.shape)
    if b.shape == shape:
        return b
    return b.map(lambda a: np.broadcast_to(a, shape))


def ball_add(x: Ball, y: Ball) -> Ball:
    """``x + y``.

    Notes
    -----
    ``rad = up(rx + ry + err_add)`` with the exact-dropped-terms bound of :func:`dd.add`; only
    additions of non-negative numbers, so no underflow term: exact sums stay exact.  Special
    cases (same bound, fewer operations): a uniform exact 0 operand returns the other one;
    two exact float operands give the exact :func:`dd.two_sum` (radius 0).
    """
    c = _compact(x, y, ball_add)
    if c is not None:
        return c
    if _constant(y) == 0.0:
        return _bshape(x, y, x)
    if _constant(x) == 0.0:
        return _bshape(x, y, y)
    ex, ey = _exact_float(x), _exact_float(y)
    if ex and ey:
        hi, lo = dd.two_sum(x.hi, y.hi)
        return _check(Ball(hi, lo, _zeros_view(hi.shape)))
    if ex or ey:  # one exact float operand: dd.add_float, the bound of dd.add with bl = 0
        a, b = (y, x) if ex else (x, y)
        hi, lo, err = dd.add_float(a.hi, a.lo, b.hi)
        if _zero(a.rad):
            return _check(Ball(hi, lo, err))
        err += a.rad
        err *= UP
        return _check(Ball(hi, lo, err))
    hi, lo, err = dd.add(x.hi, x.lo, y.hi, y.lo)
    if _zero(x.rad) and _zero(y.rad):
        rad = err * UP
    else:
        rad = (x.rad + y.rad + err) * UP
    return _check(Ball(hi, lo, rad))


def ball_sub(x: Ball, y: Ball) -> Ball:
    """``x - y`` (the bound of :func:`ball_add`).

    An exact float ``x`` minus a dd ``y`` uses :func:`dd.float_sub` (bitwise the result of
    :func:`dd.add_float` on ``-y`` and ``x``, without materialising ``-y``).
    """
    if _exact_float(x) and not _zero(y.lo) and not _uniform(y.hi) and _constant(x) != 0.0:
        hi, lo, err = dd.float_sub(x.hi, y.hi, y.lo)
        if _zero(y.rad):
            return _check(Ball(hi, lo, err))
        err += y.rad
        err *= UP
        return _check(Ball(hi, lo, err))
    return ball_add(x, ball_neg(y))


def _scale_pow2(x: Ball, c: float) -> Ball:
    """``c x`` for a power of two ``c``: ``hi c``, ``lo c``, ``rad |c|`` are exact, except where a low word
    or radius lands below ``2**-1022`` (possible only for ``|c| < 1``): there ``2**-1074``, the largest
    rounding error of such a product, is added to the radius."""
    hi = x.hi * c
    lo = x.lo if _zero(x.lo) else x.lo * c
    rad = x.rad if _zero(x.rad) else x.rad * abs(c)
    if abs(c) < 1.0:
        bad = None
        if not _zero(x.lo):
            bad = (np.abs(lo) < 2.0 ** -1022) & (x.lo != 0)
        if not _zero(x.rad):
            b2 = (rad < 2.0 ** -1022) & (x.rad != 0)
            bad = b2 if bad is None else bad | b2
        if bad is not None and bad.any():
            rad = np.broadcast_to(rad, hi.shape) + np.where(bad, 2.0 ** -1074, 0.0)
    return _check(Ball(hi, lo, rad))


def _mul_const(x: Ball, c: float, shape) -> Ball:
    """``c x`` for an exact float constant ``c``: :func:`dd.mul` with ``bl = 0`` and ``ry = 0``.

    Notes
    -----
    ``p, e = two_prod(xh, c)`` (exact: range checked); ``t = fl(xl c)``; ``f, ef = two_sum(e, t)``;
    ``hi, lo = two_sum(p, f)``: the error is ``|xl c - t| + |ef| <= u |t| (1 + u)... <= 2.01 u |xl c| + |ef|``
    (the bound of :func:`dd.mul` with ``bl = 0``); ``rad = up(|c| rx + err)``.
    """
    if c == 1.0:
        return x if x.shape == shape else x.map(lambda a: np.broadcast_to(a, shape))
    if c == 0.0:
        return exact(np.zeros(shape))
    m, _ = math.frexp(c)
    if abs(m) == 0.5:
        b = _scale_pow2(x, c)
        return b if b.shape == shape else b.map(lambda a: np.broadcast_to(a, shape))
    p, e = dd.two_prod_const(x.hi, c)
    if _zero(x.lo):
        hi, lo = p, e  # exact, and normalised: p = fl(p + e)
        err = None
    else:
        t = x.lo * c
        f, ef = dd.two_sum(e, t)
        hi, lo = dd.two_sum(p, f)
        err = np.abs(ef) + np.abs(t) * (2.01 * U)  # rounded up below, with the radius term if any
    _underflow(hi, x.hi)
    if _zero(x.rad):
        rad = _zeros_view(hi.shape) if err is None else dd.up_inplace(err, maybe=lambda: x.lo != 0)
    elif err is None:
        rad = dd.up(x.rad * abs(c), maybe=lambda: x.rad != 0)
    else:  # one bound expression, one upward rounding: |ef| + 2.01 u |t| + |c| rad
        err += x.rad * abs(c)
        rad = dd.up_inplace(err, maybe=lambda: (x.lo != 0) | (x.rad != 0))
    out = Ball(hi, lo, rad)
    if out.shape != shape:
        out = out.map(lambda a: np.broadcast_to(a, shape))
    return _check(out)


def ball_mul(x: Ball, y: Ball) -> Ball:
    """``x * y``.

    Notes
    -----
    For ``a in [xm ± rx]``, ``b in [ym ± ry]``:
    ``|ab - xm ym| <= |xm| ry + rx |ym| + rx ry`` and ``|xm| <= (1 + u)|xh|``, so
    ``rad = up(|xh| ry + rx |yh| + rx ry + err_mul)`` (the factor ``1 + u`` is one of the
    operations covered by ``UP``), rounded up with :func:`dd.up` (its underflow term only where
    one of these products has two non-zero factors: a product with an exactly-zero factor is
    exact, and ``err_mul`` carries its own).  A product that underflows to 0 from non-zero factors is refused, which with
    the output range check guarantees the exactness of ``two_prod``.  Special cases: a uniform
    exact constant factor (:func:`_mul_const`: 1 returns the other factor, a power of two scales
    exactly); two exact float factors give the exact ``two_prod`` (radius 0).
    """
    c = _compact(x, y, ball_mul)
    if c is not None:
        return c
    shape = np.broadcast_shapes(x.shape, y.shape)
    cy = _constant(y)
    if cy is not None:
        return _mul_const(x, cy, shape)
    cx = _constant(x)
    if cx is not None:
        return _mul_const(y, cx, shape)
    if x is y:
        return ball_sqr(x)
    if _exact_float(x) and _exact_float(y):
        hi, lo = dd.two_prod(x.hi, y.hi)
        _underflow(hi, x.hi, y.hi)
        return _check(Ball(hi, lo, _zeros_view(hi.shape)))
    if _zero(y.lo):  # a float midpoint: dd.mul_float, the bound of dd.mul with bl = 0
        hi, lo, err = dd.mul_float(x.hi, x.lo, y.hi)
    elif _zero(x.lo):
        hi, lo, err = dd.mul_float(y.hi, y.lo, x.hi)
    else:
        hi, lo, err = dd.mul(x.hi, x.lo, y.hi, y.lo)
    _underflow(hi, x.hi, y.hi)
    zx, zy = _zero(x.rad), _zero(y.rad)
    if zx and zy:
        rad = err
    else:
        if err.shape != hi.shape or not err.flags.writeable:
            err = np.array(np.broadcast_to(err, hi.shape))
        rad = err  # a temporary of ours: accumulate in place (same operations, same order)
        if not zy:
            rad += np.abs(x.hi) * y.rad
        if not zx:
            rad += x.rad * np.abs(y.hi)
            if not zy:
                rad += x.rad * y.rad
        rad = dd.up_inplace(rad, maybe=lambda: ((x.hi != 0) & (y.rad != 0)) | ((x.rad != 0) & ((y.hi != 0) | (y.rad != 0))))
    return _check(Ball(hi, lo, rad))


def _underflow(hi: np.ndarray, a: np.ndarray, b: np.ndarray | None = None) -> None:
    """Refuse a product ``hi`` of the factors ``a`` and ``b`` (``b = a`` for a square) that underflowed to 0.

    The detailed test runs only when some ``hi`` is 0 (``hi.all()`` is one pass over the data).
    """
    if hi.all():
        return
    bad = (hi == 0) & (a != 0)
    if b is not None:
        bad &= b != 0
    if bad.any():
        raise FastPathUnavailable("a product underflows")


def ball_sqr(x: Ball) -> Ball:
    """``x * x`` (one ball times itself): the result of :func:`ball_mul` ``(x, x)`` with fewer operations.

    Notes
    -----
    For ``a in [xm ± r]``: ``|a^2 - xm^2| = |a - xm||a + xm| <= r (2|xm| + r)``, the bound of
    :func:`ball_mul` with ``y = x``: ``rad = up(2 |xh| r + r^2 + err)`` with ``err`` of
    :func:`dd.sqr` (the same numbers as :func:`dd.mul` computes for ``b = a``).  An exact float
    ``x`` gives the exact :func:`dd.two_square` (radius 0).  Squares of non-zero numbers that
    underflow are refused, as in :func:`ball_mul`.
    """
    c = _constant(x)
    if c is not None or all(_uniform(a) for a in (x.hi, x.lo, x.rad)):
        one = Ball(*(_one(a).reshape((1,) * x.ndim) for a in (x.hi, x.lo, x.rad)))
        r = ball_mul(one, Ball(one.hi, one.lo, one.rad))  # a distinct object: the generic product
        return r.map(lambda a: np.broadcast_to(a, x.shape)) if x.shape != r.shape else r
    if _exact_float(x):
        hi, lo = dd.two_square(x.hi)
        _underflow(hi, x.hi)
        return _check(Ball(hi, lo, _zeros_view(hi.shape)))
    hi, lo, err = dd.sqr(x.hi, x.lo)
    _underflow(hi, x.hi)
    if _zero(x.rad):
        return _check(Ball(hi, lo, err))
    r = x.rad
    v = np.abs(x.hi) * r
    v += v
    v += r * r
    v += err
    rad = dd.up(v, maybe=lambda: r != 0)
    return _check(Ball(hi, lo, rad))


