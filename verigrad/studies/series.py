"""The power series of the loss along a dense line, on the vectorised double-double engine.

phi(t) = f(x_p + t e) = sum_j a_j t^j for a direction e that moves every entry (a seeded random
direction): every node of the graph becomes a truncated power series in t whose coefficients
are arrays of double-double balls (:class:`verigrad.engine.fastball.Ball`, the coefficient index
on the leading batch axis). Linear operations act on each coefficient (the fast engine's own
evaluation of the node, :func:`verigrad.engine.fastball.eval_ball`); products are Cauchy
products; division, ``sqrt``, ``exp`` and ``log`` use their recurrences; the non-analytic
operations take the piece of the point's side (and refuse a point on a kink); the other
elementary functions go entry by entry through Arb's power series.

A node keeps only the coefficients it can have: x + t e has two, a product of degree-2
series five, so a polynomial loss (Rosenbrock) costs a few arrays per node and its series
terminates exactly. The coefficients give, without cancellation, the directional derivative
a_1 = g*.e, the truncation error of a stencil at small steps and the derivatives of the
study's model (:mod:`verigrad.studies.dense`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Mapping

import numpy as np

from verigrad.engine.fastball import evaluate_releasing
from verigrad.expr.graph import Node, Op

__all__ = ["SeriesUnsupported", "line_series"]

_STRUCTURAL = (Op.TRANSPOSE, Op.GETITEM, Op.RESHAPE, Op.BROADCAST, Op.SCATTER)


class SeriesUnsupported(Exception):
    """The series cannot be formed here (a point on a kink, an operation without a rule)."""


def _fb():
    from verigrad.engine import fastball as fb

    return fb


def _full(b, shape=None):
    shape = b.shape if shape is None else shape
    return _fb().Ball(*(np.ascontiguousarray(np.broadcast_to(a, shape)) for a in (b.hi, b.lo, b.rad)))


def _cat(parts):
    fb = _fb()
    parts = [_full(p) for p in parts]
    return fb.Ball(*(np.concatenate([getattr(p, k) for p in parts], axis=0) for k in ("hi", "lo", "rad")))


def _zeros(shape):
    fb = _fb()
    z = np.zeros(shape)
    return fb.Ball(z, z.copy(), z.copy())


def _pad(b, L: int):
    """The series ``b`` with zero coefficients up to length ``L``."""
    if b.shape[0] >= L:
        return b
    return _cat([b, _zeros((L - b.shape[0],) + b.shape[1:])])


def _align(b, nd: int):
    from verigrad.expr.evaluate import _align as al

    return b.map(lambda a: al(a, nd))


def _sum0(b):
    """Sum over the coefficient axis (a few terms): a chain of ball additions."""
    fb = _fb()
    acc = b[0:1]
    for i in range(1, b.shape[0]):
        acc = fb.ball_add(acc, b[i:i + 1])
    return acc


def _scale(b, q: Fraction):
    """``q b`` for a rational ``q`` (exactly for integers and powers of two, else a proved ball)."""
    fb = _fb()
    c = fb.from_fraction(Fraction(q)).map(lambda a: np.asarray(a).reshape((1,) * b.ndim))
    return fb.ball_mul(b, c)


class _Series:
    """Evaluates nodes as truncated series of length at most ``L`` (coefficients on axis 0)."""

    def __init__(self, model, point: Mapping[str, np.ndarray], direction: Mapping[str, np.ndarray], L: int):
        fb = _fb()
        self.fb, self.L = fb, int(L)
        self.truncated = False  # some node's series was cut at L (phi is not held whole)
        self.leaves = {}
        for name in model.leaves:
            x = np.asarray(point[name], dtype=np.float64)
            e = direction.get(name)
            if e is None or not np.any(e):
                self.leaves[name] = fb.from_float(x[None, ...])
            else:
                self.leaves[name] = fb.from_float(np.stack([x, np.asarray(e, dtype=np.float64).reshape(x.shape)]))

    # -- helpers ---------------------------------------------------------------------------

    def node(self, n: Node, args: list):
        out = self._node(n, args)
        if out.shape[0] >= self.L:
            self.truncated = True
        return out

    def _node(self, n: Node, args: list):
        op = n.op
        fb = self.fb
        if op is Op.LEAF:
            return self.leaves[n.params[0]]
        if op is Op.CONST or all(a.shape[0] == 1 for a in args):
            return fb.eval_ball(n, args, self.leaves)  # constant in t: the fast engine itself
        if op in (Op.NEG,) or op in _STRUCTURAL or op is Op.SUM:
            return fb.eval_ball(n, args, self.leaves)
        if op in (Op.ADD, Op.SUB):
            L = max(a.shape[0] for a in args)
            return fb.eval_ball(n, [_pad(a, L) for a in args], self.leaves)  # a constant enters coefficient 0
        if op is Op.MUL:
            return self._cauchy(n, args[0], args[1])
        if op is Op.MATMUL:
            x, y = args
            if x.shape[0] == 1 or y.shape[0] == 1:
                return fb.eval_ball(n, args, self.leaves)
            return self._cauchy(n, x, y)
        if op is Op.DIV:
            return self._div(n, *args)
        if op is Op.POW:
            return self._pow(n, *args)
        if op is Op.UNARY:
            return self._unary(n, args[0])
        if op is Op.LOGSUMEXP:
            return self._logsumexp(n, args[0])
        if op in (Op.MAXIMUM, Op.TIE_WEIGHT):
            return self._pick(n, *args)
        if op is Op.MAX:
            return self._max(n, args[0])
        if op is Op.ARGMAX_WEIGHT:
            self._max_index(n, args[0])  # raises at ties
            return fb.eval_ball(n, [args[0][0:1]], self.leaves)
        raise SeriesUnsupported(f"{op.value} has no series rule here")

    def _bin(self, n: Node, x, y, f):
        nd = len(n.shape)
        return f(_align(x, nd), _align(y, nd))

    def _cauchy(self, n: Node, x, y):
        """Coefficients c_k = sum_i x_i y_(k-i) of a product node ``n`` (MUL or MATMUL)."""
        fb = self.fb
        m, p = x.shape[0], y.shape[0]
        if m == 1 or p == 1:
            return fb.eval_ball(n, [x, y], self.leaves)
        out = []
        for k in range(min(self.L, m + p - 1)):
            lo, hi = max(0, k - p + 1), min(k, m - 1)
            xs = x[lo:hi + 1]
            ys = _full(y[k - hi:k - lo + 1][::-1])
            prod = fb.eval_ball(n, [xs, ys], self.leaves)
            out.append(_sum0(prod))
        return _cat(out)

    def _mul(self, n: Node, x, y):
        """Cauchy product of two series of the shape of ``n`` (elementwise)."""
        fb = self.fb
        m, p = x.shape[0], y.shape[0]
        if m == 1 or p == 1:
            return self._bin(n, x, y, fb.ball_mul)
        out = []
        for k in range(min(self.L, m + p - 1)):
            lo, hi = max(0, k - p + 1), min(k, m - 1)
            xs = x[lo:hi + 1]
            ys = _full(y[k - hi:k - lo + 1][::-1])
            out.append(_sum0(self._bin(n, xs, ys, fb.ball_mul)))
        return _cat(out)

    def _div(self, n: Node, x, y):
        fb = self.fb
        if y.shape[0] == 1:
            return fb.eval_ball(n, [x, y], self.leaves)
        L = self.L
        nd = len(n.shape)
        x = _pad(_align(x, nd), L)
        y = _align(y, nd)
        y0 = y[0:1]
        q = []
        for k in range(L):
            acc = x[k:k + 1]
            for j in range(1, min(k, y.shape[0] - 1) + 1):
                acc = fb.ball_sub(acc, fb.ball_mul(y[j:j + 1], q[k - j]))
            q.append(fb.ball_div(acc, y0, n))
        return _cat(q)

    def _pow(self, n: Node, x, y):
        fb = self.fb
        ex = n.args[1]
        if y.shape[0] != 1 or ex.op is not Op.CONST or ex.params[0] != "rational":
            raise SeriesUnsupported("a power with a moving or irrational exponent")
        num, den = ex.params[1], ex.params[2]
        if den != 1:
            raise SeriesUnsupported("a fractional power")
        k = int(num)
        if k == 0:
            return fb.eval_ball(n, [x[0:1], y], self.leaves)
        base, acc, e = x, None, abs(k)
        while True:
            if e & 1:
                acc = base if acc is None else self._mul(n, acc, base)
            e >>= 1
            if not e:
                break
            base = self._mul(n, base, base)
        if k < 0:
            one = fb.from_float(np.ones((1,) + n.shape))
            acc = self._div(n, one, acc)
        return acc

    def _const_term(self, n: Node, x0):
        """The node's own value at the point (the fast engine's rule for the function)."""
        return self.fb.eval_ball(n, [x0], self.leaves)

    def _unary(self, n: Node, x):
        fb = self.fb
        name = n.fn.name
        L = self.L
        if name == "square":
            return self._mul(n, x, x)
        if name in ("relu", "abs", "step", "sign"):
            pos, neg, zero = fb._signs(x[0:1])
            if not (pos | neg | zero).all():
                raise fb.Undecided
            moving = zero & np.any(np.broadcast_to(x.hi[1:] != 0, x[1:].shape) |
                                   np.broadcast_to(x.rad[1:] != 0, x[1:].shape), axis=0, keepdims=True)
            if moving.any():
                raise SeriesUnsupported(f"{name} on its kink")
            if name in ("step", "sign"):
                return self._const_term(n, x[0:1])
            keep = pos if name == "relu" else (pos | neg)
            sign = np.where(neg & (name == "abs"), -1.0, 1.0)
            xf = _full(x)
            return fb.Ball(*(np.where(keep, a * (sign if k != "rad" else 1.0), 0.0)
                             for k, a in (("hi", xf.hi), ("lo", xf.lo), ("rad", xf.rad))))
        x = _pad(x, L)
        if name == "exp":
            e = [self._const_term(n, x[0:1])]
            for k in range(1, L):
                acc = None
                for j in range(1, k + 1):
                    t = _scale(fb.ball_mul(x[j:j + 1], e[k - j]), Fraction(j, k))
                    acc = t if acc is None else fb.ball_add(acc, t)
                e.append(acc)
            return _cat(e)
        if name == "log":
            x0 = x[0:1]
            out = [self._const_term(n, x0)]
            for k in range(1, L):
                acc = x[k:k + 1]
                for j in range(1, k):
                    acc = fb.ball_sub(acc, _scale(fb.ball_mul(out[j], x[k - j:k - j + 1]), Fraction(j, k)))
                out.append(fb.ball_div(acc, x0))
            return _cat(out)
        if name == "sqrt":
            s0 = self._const_term(n, x[0:1])
            out = [s0]
            two_s0 = _scale(s0, Fraction(2))
            for k in range(1, L):
                acc = x[k:k + 1]
                for j in range(1, k):
                    acc = fb.ball_sub(acc, fb.ball_mul(out[j], out[k - j]))
                out.append(fb.ball_div(acc, two_s0))
            return _cat(out)
        return self._via_arb(n, x)

    def _via_arb(self, n: Node, x):
        """Entry by entry through Arb's power series of the function (its ``series`` rule)."""
        fb = self.fb
        fn = n.fn
        if fn.series is None:
            raise SeriesUnsupported(f"{fn.name} has no power series")
        from verigrad.engine import arb as ab
        from verigrad.engine.lines import coefficients, series_cap

        L = self.L
        bk = ab.ArbBackend()
        with ab.arb_precision(fb.ARB_PREC), series_cap(L):
            coeffs = fb.to_arb(_full(x)).reshape(L, -1)
            out = np.empty(coeffs.shape, dtype=object)
            bk.check_unary(fn, coeffs[0], n)
            for i in range(coeffs.shape[1]):
                s = fn.series(ab.flint.arb_series(list(coeffs[:, i])))
                out[:, i] = coefficients(s, L)
        return fb.from_arb(out.reshape((L,) + x.shape[1:]))

    def _logsumexp(self, n: Node, x):
        fb = self.fb
        axes, keepdims = n.params
        nd = x.ndim - 1
        bax = tuple(range(1, nd + 1)) if axes is None else tuple(a + 1 for a in axes)
        m = np.max(np.broadcast_to(x.hi[0:1], x[0:1].shape), axis=bax, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        shifted = _cat([fb.ball_sub(x[0:1], fb.from_float(m)), x[1:]]) if x.shape[0] > 1 else \
            fb.ball_sub(x, fb.from_float(m))
        exp_node = _FnNode("exp", x.shape[1:])
        e = self._unary(exp_node, shifted)
        s = fb.ball_sum(e, bax, True)
        out = self._unary(_FnNode("log", s.shape[1:]), s)
        out = _cat([fb.ball_add(out[0:1], fb.from_float(m)), out[1:]]) if out.shape[0] > 1 else \
            fb.ball_add(out, fb.from_float(m))
        if not keepdims:
            out = out.map(lambda a: np.squeeze(a, axis=bax))
        return out

    def _pick(self, n: Node, x, y):
        fb = self.fb
        nd = len(n.shape)
        L = max(x.shape[0], y.shape[0])
        xa, ya = _align(x, nd), _align(y, nd)
        d = fb.ball_sub(xa[0:1], ya[0:1])
        pos, neg, zero = fb._signs(d)
        if not (pos | neg | zero).all():
            raise fb.Undecided
        if zero.any():
            raise SeriesUnsupported("a tie of maximum")
        shape = (L,) + np.broadcast_shapes(xa.shape[1:], ya.shape[1:])
        if n.op is Op.TIE_WEIGHT:
            return fb.eval_ball(n, [xa[0:1], ya[0:1]], self.leaves)
        xs, ys = _full(_pad(xa, L), shape), _full(_pad(ya, L), shape)
        return fb.Ball(*(np.where(pos, getattr(xs, k), getattr(ys, k)) for k in ("hi", "lo", "rad")))

    def _max_index(self, n: Node, x):
        fb = self.fb
        axes = n.params[0]
        nd = x.ndim - 1
        bax = tuple(range(1, nd + 1)) if axes is None else tuple(a + 1 for a in axes)
        x0 = _full(x[0:1])
        rest = [a for a in range(x0.ndim) if a not in bax]
        perm = rest + list(bax)
        moved = x0.map(lambda a: np.transpose(a, perm))
        kept = moved.shape[:len(rest)]
        flat = moved.map(lambda a: a.reshape(kept + (-1,)))
        idx = np.argmax(flat.hi, axis=-1)[..., None]
        top = flat.map(lambda a: np.take_along_axis(a, idx, axis=-1))
        pos, neg, zero = fb._signs(fb.ball_sub(top, flat))
        others = np.ones(flat.shape, dtype=bool)
        np.put_along_axis(others, idx, False, axis=-1)
        if not (pos | ~others).all():
            raise SeriesUnsupported("a tie (or an undecided order) of max")
        return perm, kept, idx

    def _max(self, n: Node, x):
        axes, keepdims = n.params
        perm, kept, idx = self._max_index(n, x)
        L = x.shape[0]
        xf = _full(x)
        moved = xf.map(lambda a: np.transpose(a, perm).reshape((L,) + kept[1:] + (-1,)))
        idxL = np.broadcast_to(idx, (L,) + idx.shape[1:])
        out = moved.map(lambda a: np.take_along_axis(a, idxL, axis=-1)[..., 0])
        shape = (L,) + n.shape
        return out.map(lambda a: a.reshape(shape))


class _FnNode:
    """A stand-in for a UNARY node of one function (for the recurrences of logsumexp)."""

    op = Op.UNARY
    label = "logsumexp"
    args = ()

    def __init__(self, name: str, shape):
        from verigrad.expr.functions import FUNCTIONS

        self.fn = FUNCTIONS[name]
        self.params = (name,)
        self.shape = tuple(shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def line_series(model, point: Mapping[str, np.ndarray], direction: Mapping[str, np.ndarray], length: int, *,
                with_degree: bool = False):
    """The coefficients a_0..a_(length-1) of t -> loss(point + t direction) as double-double balls.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        x_p (float arrays, exact).
    direction : mapping of str to ndarray
        e per variable (float64 arrays, exact); variables not given do not move.
    length : int

    with_degree : bool
        Also return the degree of phi when it is a polynomial the series holds whole: no node ever
        needed more than ``length`` coefficients (only sums, products and integer powers), so
        nothing was truncated and a_j = 0 exactly beyond it; None otherwise.

    Returns
    -------
    list of (hi, lo, rad) float triples
        ``a_j`` lies in ``[hi + lo - rad, hi + lo + rad]`` (and, with ``with_degree``, the degree).

    Raises
    ------
    SeriesUnsupported, verigrad.engine.fastball.FastPathUnavailable, verigrad.engine.arb.Undecided
        The caller evaluates otherwise.
    """
    ev = _Series(model, point, direction, length)
    (loss_value,) = evaluate_releasing([model.loss], ev.node)
    s = _full(loss_value)
    degree = s.shape[0] - 1 if s.shape[0] < length and not ev.truncated else None
    out = []
    for j in range(length):
        if j < s.shape[0]:
            out.append((float(s.hi.reshape(s.shape[0], -1)[j, 0]), float(s.lo.reshape(s.shape[0], -1)[j, 0]),
                        float(s.rad.reshape(s.shape[0], -1)[j, 0])))
        else:
            out.append((0.0, 0.0, 0.0))
    return (out, degree) if with_degree else out
