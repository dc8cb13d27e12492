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
* ``exp``, ``expm1``, ``log``, ``log1p``, ``sigmoid``, ``softplus``, ``tanh``, ``dsigmoid``,
  ``dtanh`` and ``logsumexp``: vectorised double-double rules with proved bounds
  (:mod:`verigrad.engine.ddfunctions`, the ``dd_ball`` field of each function's record), the
  entries they decline (huge or wide arguments, arguments not certainly inside the domain)
  through Arb as below;
* the other elementary functions and general powers: the entries are
  converted exactly to Arb balls, the :class:`~verigrad.engine.arb.ArbBackend` operation is
  applied at :data:`ARB_PREC` bits (with its domain checks) and the results are converted
  back (midpoint rounded to double-double, the rounding residual added to the radius,
  rounded up).  These act on small arrays in the losses verigrad sees (after contractions).

Whatever the fast path cannot prove raises :class:`FastPathUnavailable` (a non-finite
value, a non-zero magnitude outside ``[2**-900, 2**900]``, a possible underflow, a complex
input), and the caller falls back to the Arb evaluator.

The ball type, conversions and elementwise ``+ - *`` live in :mod:`verigrad.engine.ballcore`
(re-exported here).

Rigour: the bounds of every primitive are proved in the docstrings of :mod:`verigrad.engine.dd`
and :mod:`verigrad.engine.ddmatmul` and of the ball functions below, with the unit roundoff
``u = 2**-53``, ``gamma_n = n u/(1 - n u)``, the upward factor ``UP = 1 + 2**-44`` and the
absolute underflow term ``TINY = 2**-1060``.
"""

from __future__ import annotations

import contextlib
import math
import os
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np

from verigrad.engine import dd
from verigrad.engine.arb import ArbBackend, Undecided, arb_precision
from verigrad.engine.backends import _where_text
from verigrad.engine.ballcore import (HIGH, LOW, Ball, FastPathUnavailable, _check, _zeros_view, ball_add,
                                      ball_mul, ball_neg, ball_sub, exact, from_arb, from_float, from_fraction,
                                      to_arb)
from verigrad.engine.ballcore import _arb_to_parts, _float_up, _one, _uniform, _zero  # noqa: F401
from verigrad.engine.budget import check
from verigrad.engine.ddmatmul import FastMatmulUnavailable, ball_matmul
from verigrad.engine.dd import TINY, U, UP
from verigrad.errors import DomainError
from verigrad.expr.graph import ELEMENTWISE_BINARY, Node, Op, decode_index, topological

try:  # the graph helpers moved to verigrad.expr.evaluate
    from verigrad.expr.evaluate import _align, _batched_axes
except ImportError:  # pragma: no cover
    from verigrad.expr.graph import _align, _batched_axes

__all__ = ["Ball", "FastPathUnavailable", "evaluate", "evaluate_releasing", "from_float", "from_fraction", "from_arb", "to_arb",
           "ball_add", "ball_sub", "ball_mul", "ball_div", "ball_sqrt", "ball_pow_int", "LOW", "HIGH", "ARB_PREC"]

#: Arb precision (bits) for the functions evaluated through Arb
ARB_PREC = 192

#: functions computed natively in double-double; the others go through Arb
_NATIVE = frozenset({"square", "sqrt", "abs", "relu", "step", "sign"})


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


def _unary_fn(x: Ball, node: Node) -> Ball:
    """An elementary function: its vectorised ``dd_ball`` rule (:mod:`verigrad.engine.ddfunctions`) where
    it has one, with the entries that rule declines (and every entry of the other functions) through Arb."""
    name = getattr(node.fn, "dd_ball", None)
    if name is None:
        return _unary_arb(x, node)
    from verigrad.engine import ddfunctions, ddspecial  # the rules live in one of the two

    parts, declined = (getattr(ddfunctions, name, None) or getattr(ddspecial, name))(x)
    out = Ball(parts.hi, parts.lo, parts.rad)
    if declined is not None and declined.any():
        idx = np.flatnonzero(declined.ravel())
        sub = Ball(*(np.ascontiguousarray(np.broadcast_to(a, x.shape)).ravel()[idx] for a in (x.hi, x.lo, x.rad)))
        try:
            got = _unary_arb(sub, node)
        except DomainError:
            return _unary_arb(x, node)  # the message names the entry of the whole array
        for a, g in zip((out.hi, out.lo, out.rad), (got.hi, got.lo, got.rad)):
            a.reshape(-1)[idx] = g
    return _check(out)


def _logsumexp(x: Ball, axes: tuple[int, ...], keepdims: bool, node: Node) -> Ball:
    """``c + log(sum exp(x - c))`` with ``c`` the exact float maximum of each group's midpoints
    (:func:`verigrad.engine.ddfunctions.logsumexp_parts`); Arb where that declines."""
    from verigrad.engine import ddfunctions

    parts = ddfunctions.logsumexp_parts(x, axes)
    if parts is None:
        return _via_arb("logsumexp", [x], axes, keepdims, node)
    c, E = parts
    S = ball_sum(_check(Ball(*E)), axes, True)
    L, declined = ddfunctions.log(S)
    if declined is not None and declined.any():
        return _via_arb("logsumexp", [x], axes, keepdims, node)
    out = ball_add(_check(Ball(L.hi, L.lo, L.rad)), exact(np.asarray(c, dtype=np.float64)))
    if not keepdims:
        out = out.map(lambda a: np.squeeze(a, axis=axes))
    return out


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
    """Sum over the (batched) ``axes``: :func:`verigrad.engine.ballsum.sum_last` (error-free extraction),
    or a pairwise tree of :func:`ball_add` (each level proved) where that declines."""
    out_shape = _keep_shape(x.shape, axes, keepdims)
    xf, kept = _to_last(x, axes)
    if xf.shape[-1] == 0:
        return exact(np.zeros(out_shape))
    from verigrad.engine.ballsum import sum_last

    r = sum_last(xf)  # error-free extraction: a few passes instead of log2(n) levels of ball_add
    if r is None:
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

    nd = len(lead)
    xl = (1,) * (nd - len(x.shape[:-2])) + tuple(x.shape[:-2])
    yl = (1,) * (nd - len(y.shape[:-2])) + tuple(y.shape[:-2])
    L = int(np.prod(lead, dtype=np.int64))
    xs, ys = int(np.prod(xl, dtype=np.int64)), int(np.prod(yl, dtype=np.int64))
    if L > 1 and ys > 1 and xs < L and not (xs > 1 and ys <= xs):
        # y varies along axes over which x is broadcast: the same on (x y)^T = y^T x^T
        def swap(a: np.ndarray) -> np.ndarray:
            return np.swapaxes(a, -1, -2)

        return _matmul(y.map(swap), x.map(swap)).map(lambda a: np.ascontiguousarray(swap(a)))
    if L > 1 and xs > 1 and ys < L:
        # x varies along axes over which y is broadcast: stack those matrices of x into the rows of
        # one product per matrix of y, [X_1; X_2; ...] @ Y_j.  Every small product is a block of a
        # larger 2-D product and ball_matmul's bound of an entry depends only on its row of A, its
        # column of B and n: the same proved enclosure, in ys calls instead of L
        ax = [d for d in range(nd) if yl[d] > 1]
        other = [d for d in range(nd) if yl[d] == 1]
        perm = ax + other + [nd, nd + 1]
        rows = int(np.prod([lead[d] for d in other], dtype=np.int64))

        def stack(a: np.ndarray) -> np.ndarray:
            a = np.broadcast_to(a, lead + (m, n)).transpose(perm)
            return a.reshape((ys, rows * m, n))

        def cols(a: np.ndarray) -> np.ndarray:
            return np.broadcast_to(a, y.shape).reshape((ys, n, p))

        xf, yf = x.map(stack), y.map(cols)
        try:
            hi, lo, rad = ball_matmul(xf.hi, xf.lo, xf.rad, yf.hi, yf.lo, yf.rad)
        except FastMatmulUnavailable as exc:
            raise FastPathUnavailable(str(exc)) from None
        inv = np.argsort(perm)

        def back(a: np.ndarray) -> np.ndarray:
            a = a.reshape(tuple(lead[d] for d in ax) + tuple(lead[d] for d in other) + (m, p))
            return np.ascontiguousarray(a.transpose(inv))

        return _check(Ball(hi, lo, rad).map(back))
    xf, yf = flat(x, m, n), flat(y, n, p)
    try:
        hi, lo, rad = ball_matmul(xf.hi, xf.lo, xf.rad, yf.hi, yf.lo, yf.rad)
    except FastMatmulUnavailable as exc:
        raise FastPathUnavailable(str(exc)) from None
    out = Ball(hi, lo, rad).map(lambda a: a.reshape(lead + (m, p)))
    return _check(out)


_CONSTS: dict = {}


def _const(params: tuple) -> Ball:
    """The ball of a constant node (cached: the arrays are read-only, so sharing them is safe)."""
    b = _CONSTS.get(params)
    if b is None:
        b = _const_ball_of(params)
        for a in (b.hi, b.lo, b.rad):
            a.flags.writeable = False
        if len(_CONSTS) < 4096:
            _CONSTS[params] = b
    return b


def _const_ball_of(params: tuple) -> Ball:
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
        return _unary_fn(args[0], n)
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
        return _logsumexp(x, bax, keepdims, n)
    if op is Op.ARGMAX_WEIGHT:
        (axes,) = n.params
        x = args[0]
        return ball_argmax_weight(x, _batched_axes(axes, x.ndim - 1))
    raise NotImplementedError(op)  # pragma: no cover


_LIBC: list = []


def _glibc():
    """glibc's ``mallopt``/``malloc_trim`` through ctypes, or None (another C library, or disabled with
    ``VERIGRAD_MALLOPT=0``)."""
    if not _LIBC:
        lib = None
        if os.environ.get("VERIGRAD_MALLOPT", "1") != "0":
            try:
                import ctypes

                c = ctypes.CDLL(None)
                c.gnu_get_libc_version  # glibc only
                c.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                c.malloc_trim.argtypes = [ctypes.c_size_t]
                lib = c
            except (OSError, AttributeError):
                lib = None
        _LIBC.append(lib)
    return _LIBC[0]


#: evaluations whose nodes hold more than this many bytes (estimated) return their memory afterwards
_TRIM_BYTES = 256 << 20


@contextlib.contextmanager
def _allocator(big: bool = True):
    """Keep freed temporaries in the heap during one evaluation.

    The evaluator creates many temporaries of the size of the data (each dd operation is
    several numpy calls); with glibc's default thresholds every one of them above 128 kB is a
    fresh ``mmap`` whose pages fault in on first touch, which measured as 10-15x the cost of
    the arithmetic itself.  During the evaluation the ``mmap`` threshold is raised to 64 MB and
    the trim threshold to 1 GB.  After a ``big`` evaluation (nodes over :data:`_TRIM_BYTES`) the
    trim threshold goes back to glibc's default 128 kB and ``malloc_trim(0)`` returns the free
    memory to the system; after a small one the heap is left as it is (at most that evaluation's
    peak stays reserved), so that the next evaluation and the caller's own arrays reuse warm pages
    instead of faulting fresh ones in (trimming after every Rosenbrock 10^4 certificate cost about
    as much as the evaluation).  The ``mmap`` threshold stays at 64 MB: once set explicitly, glibc's
    own adaptive threshold is off, and 128 kB would make every later array above it a fresh ``mmap``.
    Disabled by ``VERIGRAD_MALLOPT=0``; a no-op without glibc.
    """
    lib = _glibc()
    if lib is None:
        yield
        return
    lib.mallopt(-3, 1 << 26)  # M_MMAP_THRESHOLD
    lib.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    try:
        yield
    finally:
        if big:
            lib.mallopt(-1, 128 * 1024)
            lib.malloc_trim(0)


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
    fusable = _sum_fusable(order, {o.id for o in outputs})

    def step(n: Node, args: list) -> Ball:
        if n.id in fusable:
            x = args[0].map(lambda a: _align(a, len(n.shape)))
            y = args[1].map(lambda a: _align(a, len(n.shape)))
            if x.shape == y.shape:  # no broadcasting between the terms: defer to the SUM
                return _Terms(x, y if n.op is Op.ADD else ball_neg(y))
            args = [x, y]
        if n.op is Op.SUM and isinstance(args[0], _Terms):
            return _sum_terms(n, args[0])
        return eval_ball(n, [a.ball() if isinstance(a, _Terms) else a for a in args], leaves)

    return evaluate_releasing(outputs, step)


class _Terms:
    """The operands of an ADD (or SUB, with the second negated) whose only consumer is a SUM.

    The SUM adds the terms of both in one extraction (:func:`verigrad.engine.ballsum.sum_last`),
    so the elementwise double-double addition is never formed.
    """

    __slots__ = ("x", "y")

    def __init__(self, x: Ball, y: Ball) -> None:
        self.x, self.y = x, y

    def ball(self) -> Ball:
        return ball_add(self.x, self.y)


def _sum_fusable(order: Sequence[Node], outputs: set[int]) -> set[int]:
    """Ids of the ADD/SUB nodes used exactly once, by a SUM, and not an output."""
    uses: dict[int, list[Node]] = {}
    for n in order:
        for a in n.args:
            uses.setdefault(a.id, []).append(n)
    return {n.id for n in order if n.op in (Op.ADD, Op.SUB) and n.id not in outputs
            and len(uses.get(n.id, ())) == 1 and uses[n.id][0].op is Op.SUM}


def _sum_terms(n: Node, t: _Terms) -> Ball:
    """``sum(x + y)`` over the node's axes as one certified sum of the terms of ``x`` and of ``y``."""
    from verigrad.engine.ballsum import sum_last

    axes, keepdims = n.params
    bax = _batched_axes(axes, t.x.ndim - 1)
    out_shape = _keep_shape(t.x.shape, bax, keepdims)
    xf, _ = _to_last(t.x, bax)
    yf, _ = _to_last(t.y, bax)
    r = sum_last([xf, yf]) if xf.shape[-1] else None
    if r is None:
        return ball_sum(t.ball(), bax, keepdims)
    return r.map(lambda a: a.reshape(out_shape))


def evaluate_releasing(outputs: Sequence[Node], step) -> list:
    """Values of ``outputs``, each node computed by ``step(node, argument values)`` in topological order.

    Every intermediate value is dropped right after its last use, and the whole evaluation
    runs in the allocator scope (freed temporaries are reused instead of returned to the
    system), so peak memory is the live set, not the graph. Numpy warnings are silenced:
    non-finite values are checked by the steps themselves.
    """
    order = topological(outputs)
    last: dict[int, int] = {}
    for pos, n in enumerate(order):
        for a in n.args:
            last[a.id] = pos
    keep = {o.id for o in outputs}
    values: dict[int, object] = {}
    big = sum(math.prod(n.shape) for n in order) * 24 > _TRIM_BYTES  # three float64 words per entry
    with np.errstate(all="ignore"), _allocator(big):
        for pos, n in enumerate(order):
            check()  # [limits] certify_seconds, once per node (the watchdog covers the time within one)
            values[n.id] = step(n, [values[a.id] for a in n.args])
            for a in n.args:
                if last.get(a.id) == pos and a.id not in keep:
                    values.pop(a.id, None)
    return [values[o.id] for o in outputs]
