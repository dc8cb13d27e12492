"""A vectorised certified evaluator: graphs over arrays of double-double balls.

A :class:`Ball` array holds three float64 arrays of one shape: a normalised double-double
midpoint ``hi + lo`` and a radius ``rad``; entry ``i`` stands for the closed interval
``[hi_i + lo_i - rad_i, hi_i + lo_i + rad_i]``, which provably contains the exact value
of the node at the point.  An *exact* value has ``rad = 0``; an exact zero has
``hi = lo = rad = 0``.  Every operation of :class:`verigrad.expr.graph.Op` is evaluated on
whole arrays with numpy (no Python object per entry):

* ``+ - *  /``, integer powers, ``square``, ``sqrt``, ``abs``, negation: double-double
  arithmetic (:mod:`verigrad.engine.dd`) with proved error bounds added to the radius;
* matrix products: error-free Ozaki splitting with BLAS (:mod:`verigrad.engine.ddmatmul`);
* sums and products along axes: pairwise trees of ball additions / multiplications;
* decisions (``relu``, ``step``, ``sign``, ``maximum``, tie weights, ``max``, argmax weights):
  made on the balls; a ball that straddles the decision point without being exactly on it
  raises :class:`verigrad.engine.arb.Undecided`, as :class:`verigrad.engine.arb.ArbBackend` does;
* the other elementary functions, ``logsumexp`` and general powers: the entries are
  converted exactly to Arb balls, the :class:`~verigrad.engine.arb.ArbBackend` operation is
  applied at :data:`ARB_PREC` bits (with its domain checks) and the results are converted
  back (midpoint rounded to double-double, the rounding residual added to the radius,
  rounded up).  These act on small arrays in the losses verigrad sees (after contractions).

Whatever the fast path cannot prove raises :class:`FastPathUnavailable` (a non-finite
value, a non-zero magnitude outside ``[2**-900, 2**900]``, a possible underflow, a complex
input), and the caller falls back to the Arb evaluator.

Rigour: the bounds of every primitive are proved in the docstrings of :mod:`verigrad.engine.dd`
and :mod:`verigrad.engine.ddmatmul` and of the ball functions below, with the unit roundoff
``u = 2**-53``, ``gamma_n = n u/(1 - n u)``, the upward factor ``UP = 1 + 2**-44`` and the
absolute underflow term ``TINY = 2**-1060``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np

from verigrad.engine import dd
from verigrad.engine.arb import ArbBackend, Undecided, arb_precision
from verigrad.engine.backends import _where_text
from verigrad.engine.ddmatmul import FastMatmulUnavailable, ball_matmul
from verigrad.engine.dd import TINY, U, UP
from verigrad.errors import DomainError
from verigrad.expr.graph import ELEMENTWISE_BINARY, Node, Op, decode_index, topological

try:  # the graph helpers moved to verigrad.expr.evaluate
    from verigrad.expr.evaluate import _align, _batched_axes
except ImportError:  # pragma: no cover
    from verigrad.expr.graph import _align, _batched_axes

__all__ = ["Ball", "FastPathUnavailable", "evaluate", "from_float", "from_fraction", "from_arb", "to_arb",
           "ball_add", "ball_sub", "ball_mul", "ball_div", "ball_sqrt", "ball_pow_int", "LOW", "HIGH", "ARB_PREC"]

#: smallest non-zero magnitude of a midpoint the fast path accepts
LOW = 2.0 ** -900
#: largest magnitude of a midpoint (and radius) the fast path accepts
HIGH = 2.0 ** 900
#: Arb precision (bits) for the functions evaluated through Arb
ARB_PREC = 192

#: functions computed natively in double-double; the others go through Arb
_NATIVE = frozenset({"square", "sqrt", "abs", "relu", "step", "sign"})


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


def _check(b: Ball) -> Ball:
    """Refuse values outside the proved range: raises :class:`FastPathUnavailable`.

    Midpoints must be finite and exactly 0 or of magnitude in ``[LOW, HIGH]``; radii finite
    and at most ``HIGH`` (NaN fails every comparison and is refused too).
    """
    h = b.hi
    flat = h.reshape(-1) if h.flags.c_contiguous else None
    step = 1 << 18
    if flat is not None and flat.size > step:  # in chunks: no large temporaries
        parts = (flat[i:i + step] for i in range(0, flat.size, step))
    else:
        parts = (h,) if h.size else ()
    for part in parts:
        a = np.abs(part)
        if not (np.max(a) <= HIGH and np.min(a, where=part != 0, initial=np.inf) >= LOW):
            raise FastPathUnavailable("a value is outside [2**-900, 2**900] or not finite")
    r = b.rad
    if not (r.strides and not any(r.strides) and r.size and r.flat[0] == 0):
        if not (r <= HIGH).all():
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
    return Ball(-x.hi, -x.lo, x.rad)


def ball_add(x: Ball, y: Ball) -> Ball:
    """``x + y``.

    Notes
    -----
    ``rad = up(rx + ry + err_add)`` with the exact-dropped-terms bound of :func:`dd.add`; only
    additions of non-negative numbers, so no underflow term: exact sums stay exact.
    """
    hi, lo, err = dd.add(x.hi, x.lo, y.hi, y.lo)
    return _check(Ball(hi, lo, (x.rad + y.rad + err) * UP))


def ball_sub(x: Ball, y: Ball) -> Ball:
    """``x - y`` (the bound of :func:`ball_add`)."""
    return ball_add(x, ball_neg(y))


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
    the output range check guarantees the exactness of ``two_prod``.
    """
    hi, lo, err = dd.mul(x.hi, x.lo, y.hi, y.lo)
    if ((hi == 0) & (x.hi != 0) & (y.hi != 0)).any():
        raise FastPathUnavailable("a product underflows")
    rad = np.abs(x.hi) * y.rad
    rad += x.rad * np.abs(y.hi)
    rad += x.rad * y.rad
    rad += err
    rad = dd.up(rad, maybe=((x.hi != 0) & (y.rad != 0)) | ((x.rad != 0) & ((y.hi != 0) | (y.rad != 0))))
    return _check(Ball(hi, lo, rad))


def _signs(x: Ball) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of entries certainly > 0, certainly < 0, exactly 0.

    Notes
    -----
    For ``hi > 0`` (normal, by the range check): ``fl(hi (1 - 2**-50)) <= hi (1 - u) <= hi + lo``,
    so ``fl(hi (1 - 2**-50)) > rad`` proves ``hi + lo - rad > 0``; symmetrically for ``< 0``.
    """
    t = x.hi * (1.0 - 2.0 ** -50)
    pos = t > x.rad
    neg = -t > x.rad
    zero = (x.hi == 0) & (x.rad == 0)
    return pos, neg, zero


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.ravel())[0])


def _show(x: Ball, i: int) -> str:
    import mpmath

    h = float(np.broadcast_to(x.hi, x.shape).ravel()[i])
    l = float(np.broadcast_to(x.lo, x.shape).ravel()[i])
    with mpmath.workprec(120):
        return mpmath.nstr(mpmath.mpf(h) + mpmath.mpf(l), 10)


def ball_div(x: Ball, y: Ball, node: Node | None = None) -> Ball:
    """``x / y``; a divisor that is exactly 0 is a DomainError, one that straddles 0 is Undecided.

    Notes
    -----
    With ``q = hi + lo`` and ``|q - xm/ym| <= e_q`` (:func:`dd.div`):
    ``|a/b - xm/ym| <= (rx + |xm/ym| ry) / (|ym| - ry)`` for ``a``, ``b`` in the balls, and
    ``|xm/ym| <= |qh|(1 + u) + e_q``; ``|ym| - ry`` is bounded below by :func:`dd.lower_pos`.
    ``rad = up((rx + (|qh| + e_q) ry) / D + e_q)``.
    """
    shape = np.broadcast_shapes(x.shape, y.shape)
    pos, neg, zero = _signs(y)
    ok = pos | neg
    if not ok.all():
        bad = np.broadcast_to(~ok, shape)
        i = _first(bad)
        if np.broadcast_to(zero, shape).ravel()[i]:
            label = node.label if node is not None else "/"
            where = _where_text(node, np.empty(shape, dtype=np.int8), i) if node is not None else f"entry {i}"
            raise DomainError(f"division by zero in {where}", expression=label)
        raise Undecided
    hi, lo, eq = dd.div(x.hi, x.lo, y.hi, y.lo)
    if ((hi == 0) & (x.hi != 0)).any():
        raise FastPathUnavailable("a quotient underflows")
    D = dd.lower_pos(np.abs(y.hi), y.rad)
    if not (D > 0).all():
        raise Undecided
    num = x.rad + (np.abs(hi) + eq) * y.rad
    rad = dd.up(num / D + eq, maybe=(num > 0) | (y.rad > 0))
    rad = np.broadcast_to(rad, shape)
    return _check(Ball(np.broadcast_to(hi, shape), np.broadcast_to(lo, shape), rad))


def ball_sqrt(x: Ball, node: Node | None = None, fn=None) -> Ball:
    """``sqrt(x)`` for balls certainly > 0; DomainError for balls certainly <= 0 (or exact 0).

    Notes
    -----
    For ``a in [xm ± r]`` with ``xm - r > 0``:
    ``|sqrt(a) - sqrt(xm)| = |a - xm| / (sqrt(a) + sqrt(xm)) <= r / sqrt(xm)`` and
    ``sqrt(xm) >= q - e_q >= hi (1 - u) - e_q`` (bounded below by :func:`dd.lower_pos`).
    ``rad = up(r / D + e_q)``.
    """
    pos, neg, zero = _signs(x)
    if not pos.all():
        i = _first(~pos)
        if neg.ravel()[i] or zero.ravel()[i]:
            if node is not None and fn is not None:
                raise DomainError(f"{fn.name} is undefined at {_show(x, i)} (it needs {fn.domain_text}) in "
                                  f"{_where_text(node, x.hi, i)}", expression=node.label)
            raise DomainError(f"sqrt is undefined at {_show(x, i)}")
        raise Undecided
    hi, lo, eq = dd.sqrt(x.hi, x.lo)
    D = dd.lower_pos(hi, eq)
    if not (D > 0).all():
        raise Undecided
    rad = dd.up(x.rad / D + eq, maybe=x.rad > 0)
    return _check(Ball(hi, lo, rad))


def ball_pow_int(x: Ball, n: int) -> Ball:
    """``x**n`` for an integer ``n >= 1`` by binary powering with :func:`ball_mul`."""
    result = None
    base = x
    while True:
        if n & 1:
            result = base if result is None else ball_mul(result, base)
        n >>= 1
        if not n:
            return result
        base = ball_mul(base, base)


def ball_abs(x: Ball) -> Ball:
    """``|x|``: ``abs`` is 1-Lipschitz, so ``[|xm| ± r]`` contains ``|a|`` for every ``a`` in the
    ball; ``|xm| = sign(hi) xm`` exactly (a normalised pair has the sign of ``hi``)."""
    s = np.where(x.hi < 0, -1.0, 1.0)
    return Ball(x.hi * s, x.lo * s, x.rad)


def _select(mask: np.ndarray, a: Ball, b: Ball) -> Ball:
    return Ball(np.where(mask, a.hi, b.hi), np.where(mask, a.lo, b.lo), np.where(mask, a.rad, b.rad))


def _const_ball(value: float, shape) -> Ball:
    return Ball(np.full(shape, value), _zeros_view(shape), _zeros_view(shape))


def _decide(x: Ball) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos, neg, zero = _signs(x)
    if not (pos | neg | zero).all():
        raise Undecided
    return pos, neg, zero


def _unary_native(name: str, x: Ball, node: Node) -> Ball:
    if name == "square":
        return ball_mul(x, x)
    if name == "sqrt":
        return ball_sqrt(x, node, node.fn)
    if name == "abs":
        return ball_abs(x)
    pos, neg, zero = _decide(x)
    shape = x.shape
    if name == "relu":
        return _select(pos, x.full(), _const_ball(0.0, shape))
    if name == "step":
        return _const_ball(0.0, shape) if not pos.any() else \
            Ball(np.where(pos, 1.0, 0.0), _zeros_view(shape), _zeros_view(shape))
    if name == "sign":
        return Ball(np.where(pos, 1.0, np.where(neg, -1.0, 0.0)), _zeros_view(shape), _zeros_view(shape))
    raise AssertionError(name)  # pragma: no cover


def _unary_arb(x: Ball, node: Node) -> Ball:
    bk = ArbBackend()
    with arb_precision(ARB_PREC):
        xa = to_arb(x)
        bk.check_unary(node.fn, xa, node)
        return from_arb(bk.apply_unary(node.fn, xa))


# -- reductions ------------------------------------------------------------------------


def _to_last(x: Ball, axes: tuple[int, ...]) -> tuple[Ball, tuple[int, ...]]:
    """Move the (batched) ``axes`` to the end and flatten them into one; also the kept shape."""
    nd = x.ndim
    rest = [a for a in range(nd) if a not in axes]
    perm = rest + list(axes)
    kept = tuple(x.shape[a] for a in rest)
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64)) if axes else 1
    xf = x.full()
    return xf.map(lambda a: np.transpose(a, perm).reshape(kept + (n,))), kept


def _keep_shape(shape, axes, keepdims) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _tree(x: Ball, combine) -> Ball:
    """Pairwise reduction of the last axis with a ball operation (``ball_add`` or ``ball_mul``)."""
    while x.shape[-1] > 1:
        n = x.shape[-1]
        m = n // 2
        a = x[..., 0:2 * m:2]
        b = x[..., 1:2 * m:2]
        y = combine(a, b)
        if n % 2:
            first = combine(y[..., 0:1], x[..., n - 1:n])
            y = Ball(np.concatenate([first.hi, y.hi[..., 1:]], -1) if m > 1 else first.hi,
                     np.concatenate([first.lo, y.lo[..., 1:]], -1) if m > 1 else first.lo,
                     np.concatenate([first.rad, y.rad[..., 1:]], -1) if m > 1 else first.rad)
        x = y
    return x


def ball_sum(x: Ball, axes: tuple[int, ...], keepdims: bool) -> Ball:
    """Sum over the (batched) ``axes``: a pairwise tree of :func:`ball_add` (each level proved)."""
    out_shape = _keep_shape(x.shape, axes, keepdims)
    xf, kept = _to_last(x, axes)
    if xf.shape[-1] == 0:
        return exact(np.zeros(out_shape))
    r = _tree(xf, ball_add)
    return r.map(lambda a: a.reshape(out_shape))


def ball_prod(x: Ball, axes: tuple[int, ...], keepdims: bool) -> Ball:
    """Product over the (batched) ``axes``: a pairwise tree of :func:`ball_mul`."""
    out_shape = _keep_shape(x.shape, axes, keepdims)
    xf, kept = _to_last(x, axes)
    if xf.shape[-1] == 0:
        return _const_ball(1.0, out_shape)
    r = _tree(xf, ball_mul)
    return r.map(lambda a: a.reshape(out_shape))


def _argmax_decide(x: Ball, axes: tuple[int, ...]):
    """The top entry of each group and the mask of entries tied with it.

    Notes
    -----
    ``i*`` is an index of the largest ``hi`` in the group.  Every other entry ``j`` must be
    either certainly below ``x_{i*}`` (the ball ``x_{i*} - x_j`` certainly > 0) or exactly
    equal to it (both balls exact, the difference exactly 0); otherwise Undecided.  Then
    ``max = x_{i*}`` and the tied entries are exactly the maximisers.
    """
    xf, kept = _to_last(x, axes)
    idx = np.argmax(xf.hi, axis=-1)[..., None]
    top = xf.map(lambda a: np.take_along_axis(a, idx, axis=-1))
    d = ball_sub(top, xf)
    pos, neg, zero = _signs(d)
    tied = zero
    np.put_along_axis(tied, idx, True, axis=-1)  # the top entry itself
    if not (pos | tied).all():
        raise Undecided
    return top, tied, xf, kept


def ball_max(x: Ball, axes: tuple[int, ...], keepdims: bool) -> Ball:
    """Maximum over the (batched) ``axes``, decided on the balls (see :func:`_argmax_decide`)."""
    out_shape = _keep_shape(x.shape, axes, keepdims)
    top, _, _, _ = _argmax_decide(x, axes)
    return top.map(lambda a: a.reshape(out_shape))


def ball_argmax_weight(x: Ball, axes: tuple[int, ...]) -> Ball:
    """``1/c`` on the ``c`` maximisers of each group, 0 elsewhere (in the shape of ``x``)."""
    _, tied, xf, kept = _argmax_decide(x, axes)
    count = np.sum(tied, axis=-1, keepdims=True).astype(np.float64)
    one = np.ones_like(count)
    hi, lo, err = dd.div(one, np.zeros_like(count), count, np.zeros_like(count))
    w = Ball(np.where(tied, hi, 0.0), np.where(tied, lo, 0.0), np.where(tied, err, 0.0))
    # undo the move of the axes to the end
    nd = x.ndim
    rest = [a for a in range(nd) if a not in axes]
    perm = rest + list(axes)
    moved_shape = tuple(x.shape[a] for a in perm)
    inv = np.argsort(perm)
    return w.map(lambda a: np.transpose(a.reshape(moved_shape), inv))


# -- the evaluator ---------------------------------------------------------------------


def _matmul(x: Ball, y: Ball) -> Ball:
    """Batched matmul of balls with numpy's broadcasting of the leading axes."""
    lead = np.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    m, n = x.shape[-2:]
    p = y.shape[-1]

    def flat(b: Ball, r: int, c: int) -> Ball:
        if int(np.prod(b.shape[:-2], dtype=np.int64)) == 1:
            return b.map(lambda a: np.broadcast_to(a, b.shape).reshape((1, r, c)))
        return b.map(lambda a: np.broadcast_to(a, lead + (r, c)).reshape((-1, r, c)))

    xf, yf = flat(x, m, n), flat(y, n, p)
    try:
        hi, lo, rad = ball_matmul(xf.hi, xf.lo, xf.rad, yf.hi, yf.lo, yf.rad)
    except FastMatmulUnavailable as exc:
        raise FastPathUnavailable(str(exc)) from None
    out = Ball(hi, lo, rad).map(lambda a: a.reshape(lead + (m, p)))
    return _check(out)


def _const(params: tuple) -> Ball:
    if params[0] == "rational":
        b = from_fraction(Fraction(params[1], params[2]))
    else:
        from flint import arb

        with arb_precision(256):
            v = arb.pi() if params[0] == "pi" else arb.const_e()
            b = from_arb(np.array([v], dtype=object).reshape(()))
    return b.map(lambda a: np.asarray(a, dtype=np.float64).reshape(1))


def _int_exponent(node: Node) -> int | None:
    ex = node.args[1]
    if ex.op is Op.CONST and ex.params[0] == "rational" and ex.params[2] == 1 and 1 <= ex.params[1] <= 64:
        return int(ex.params[1])
    return None


def _via_arb(method: str, balls: Sequence[Ball], *extra) -> Ball:
    bk = ArbBackend()
    with arb_precision(ARB_PREC):
        arrs = [to_arb(b) for b in balls]
        return from_arb(np.asarray(getattr(bk, method)(*arrs, *extra), dtype=object))


def eval_ball(n: Node, args: list[Ball], leaves: Mapping[str, Ball]) -> Ball:
    """One node's ball value from its arguments' (batched) ball values."""
    op = n.op
    nd = len(n.shape)
    if op is Op.LEAF:
        return leaves[n.params[0]]
    if op is Op.CONST:
        return _const(n.params)
    if op in ELEMENTWISE_BINARY:
        x = args[0].map(lambda a: _align(a, nd))
        y = args[1].map(lambda a: _align(a, nd))
        if op is Op.ADD:
            return ball_add(x, y)
        if op is Op.SUB:
            return ball_sub(x, y)
        if op is Op.MUL:
            return ball_mul(x, y)
        if op is Op.DIV:
            return ball_div(x, y, n)
        if op is Op.POW:
            k = _int_exponent(n)
            if k is not None:
                return ball_pow_int(x, k)
            shape = np.broadcast_shapes(x.shape, y.shape)
            return _via_arb("pow", [x.map(lambda a: np.broadcast_to(a, shape)),
                                    y.map(lambda a: np.broadcast_to(a, shape))], n)
        d = ball_sub(x, y)
        pos, neg, zero = _decide(d)
        shape = d.shape
        if op is Op.MAXIMUM:
            xs = x.map(lambda a: np.broadcast_to(a, shape))
            ys = y.map(lambda a: np.broadcast_to(a, shape))
            return _select(pos | zero, xs, ys)
        return Ball(np.where(pos, 1.0, np.where(zero, 0.5, 0.0)), _zeros_view(shape), _zeros_view(shape))
    if op is Op.NEG:
        return ball_neg(args[0])
    if op is Op.UNARY:
        name = n.params[0]
        if name in _NATIVE:
            return _unary_native(name, args[0], n)
        return _unary_arb(args[0], n)
    if op is Op.MATMUL:
        x, y = args
        xs, ys = n.args[0].shape, n.args[1].shape
        if len(xs) == 1:
            x = x[:, None, :]
        if len(ys) == 1:
            y = y[..., None]
        k = max(x.ndim, y.ndim) - 1
        out = _matmul(x.map(lambda a: _align(a, k)), y.map(lambda a: _align(a, k)))
        if len(xs) == 1:
            out = out[..., 0, :]
        if len(ys) == 1:
            out = out[..., 0]
        return out
    if op is Op.TRANSPOSE:
        perm = (0,) + tuple(a + 1 for a in n.params)
        return args[0].map(lambda a: np.transpose(a, perm))
    if op is Op.GETITEM:
        index = (slice(None),) + decode_index(n.params)
        return args[0].map(lambda a: a[index])
    if op is Op.SCATTER:
        g = args[0]
        index_code, shape = n.params
        index = (slice(None),) + decode_index(index_code)
        full = (g.shape[0],) + tuple(shape)

        def scatter(a):
            out = np.zeros(full)
            out[index] = a
            return out

        return g.map(scatter)
    if op is Op.RESHAPE:
        x = args[0]
        return x.map(lambda a: a.reshape((x.shape[0],) + n.shape))
    if op is Op.BROADCAST:
        x = args[0].map(lambda a: _align(a, nd))
        return x.map(lambda a: np.broadcast_to(a, (x.shape[0],) + n.shape))
    if op in (Op.SUM, Op.PROD, Op.MAX, Op.LOGSUMEXP):
        axes, keepdims = n.params
        x = args[0]
        bax = _batched_axes(axes, x.ndim - 1)
        if op is Op.SUM:
            return ball_sum(x, bax, keepdims)
        if op is Op.PROD:
            return ball_prod(x, bax, keepdims)
        if op is Op.MAX:
            return ball_max(x, bax, keepdims)
        return _via_arb("logsumexp", [x], bax, keepdims, n)
    if op is Op.ARGMAX_WEIGHT:
        (axes,) = n.params
        x = args[0]
        return ball_argmax_weight(x, _batched_axes(axes, x.ndim - 1))
    raise NotImplementedError(op)  # pragma: no cover


def evaluate(outputs: Sequence[Node], leaves: Mapping[str, Ball]) -> list[Ball]:
    """Evaluate nodes on ball arrays; intermediates are released after their last use.

    Parameters
    ----------
    outputs : sequence of Node
    leaves : mapping of str to Ball
        Every LEAF reached, with a leading batch axis of length 1.

    Returns
    -------
    list of Ball
        ``(1, *node.shape)`` per output; each contains the exact value.

    Raises
    ------
    FastPathUnavailable
        Something the fast path cannot prove (fall back to Arb).
    verigrad.engine.arb.Undecided
        A decision that these balls cannot make (fall back to Arb, which raises precision).
    DomainError
        The expression is certainly undefined at the point.
    """
    order = topological(outputs)
    last: dict[int, int] = {}
    for pos, n in enumerate(order):
        for a in n.args:
            last[a.id] = pos
    keep = {o.id for o in outputs}
    values: dict[int, Ball] = {}
    with np.errstate(all="ignore"):
        for pos, n in enumerate(order):
            v = eval_ball(n, [values[a.id] for a in n.args], leaves)
            values[n.id] = v
            for a in n.args:
                if last.get(a.id) == pos and a.id not in keep:
                    values.pop(a.id, None)
    return [values[o.id] for o in outputs]
