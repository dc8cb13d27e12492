"""Differences of the loss between nearby points, without cancellation, on the double-double engine.

f(b + d) - f(b) computed as f(b + d) and f(b) separately loses every bit they share: for a
sum of a million Rosenbrock terms the difference between two stencil nodes (~1e-10) sits far
below the error bound of either value (~1e-22 of 4e8 is fine, but the *difference* of two such
balls is known only to 1e-22, a few digits of it). Here every node carries the pair (its value
at b, its change d), and each operation propagates the change with a rule that keeps its
relative accuracy: linear operations act on the change itself; x y changes by dx (y + dy) + x dy;
x / y by (dx y - x dy) / (y (y + dy)); sqrt by dx / (sqrt(x + dx) + sqrt(x)); exp by
exp(x) expm1(dx); log by log1p(dx / x); logsumexp by log1p(sum e^(x-m) expm1(dx) / sum e^(x-m));
the piecewise operations by the piece both points are on. The other functions (and points on
different pieces) take the difference of their values, which is exact enough where the
change is not small.

The error bound of the loss's change is then a small multiple of 2^-104 times the size of the
changes it sums, not of the loss: the step error S of a stencil along a dense direction,
sum_i (t_i(y) - t_i(z)), is resolved to ~30 digits instead of ~12.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from verigrad.engine.fastball import evaluate_releasing
from verigrad.expr.graph import Node, Op
from verigrad.studies.series import _FnNode, _align, _full

__all__ = ["loss_changes"]

_STRUCTURAL = (Op.TRANSPOSE, Op.GETITEM, Op.RESHAPE, Op.BROADCAST, Op.SCATTER)


def _fb():
    from verigrad.engine import fastball as fb

    return fb


class _Delta:
    """Evaluates nodes as pairs (value at b, change to b + d); a change of None is exactly 0."""

    def __init__(self, leaves_b: Mapping, leaves_d: Mapping):
        self.fb = _fb()
        self.lb, self.ld = dict(leaves_b), dict(leaves_d)

    def _one(self, like):
        o = np.ones((1,) * like.ndim)
        return self.fb.Ball(o, np.zeros_like(o), np.zeros_like(o))

    def _zeros(self, like):
        z = np.zeros((1,) + like.shape[1:])
        return self.fb.Ball(z, z, z)

    def node(self, n: Node, args: list):
        fb = self.fb
        op = n.op
        if op is Op.LEAF:
            return self.lb[n.params[0]], self.ld.get(n.params[0])
        vals = [a[0] for a in args]
        ds = [a[1] for a in args]
        v = fb.eval_ball(n, vals, self.lb)
        if op is Op.CONST or all(d is None for d in ds):
            return v, None
        if op is Op.NEG or op in _STRUCTURAL or op is Op.SUM:
            return v, fb.eval_ball(n, ds, self.lb)
        if op in (Op.ADD, Op.SUB):
            dd = [d if d is not None else self._zeros(x) for d, x in zip(ds, vals)]
            return v, fb.eval_ball(n, dd, self.lb)
        if op in (Op.MUL, Op.MATMUL):
            (x, y), (dx, dy) = vals, ds
            if dy is None:
                return v, fb.eval_ball(n, [dx, y], self.lb)
            if dx is None:
                return v, fb.eval_ball(n, [x, dy], self.lb)
            if op is Op.MUL:
                nd = len(n.shape)
                y1 = fb.ball_add(_align(y, nd), _align(dy, nd))
                return v, fb.ball_add(fb.ball_mul(_align(dx, nd), y1), fb.ball_mul(_align(x, nd), _align(dy, nd)))
            y1 = fb.ball_add(y, dy)  # the second operand at b + d (same node: same axes)
            return v, fb.ball_add(fb.eval_ball(n, [dx, y1], self.lb), fb.eval_ball(n, [x, dy], self.lb))
        if op is Op.DIV:
            (x, y), (dx, dy) = vals, ds
            nd = len(n.shape)
            x, y = _align(x, nd), _align(y, nd)
            if dy is None:
                return v, fb.ball_div(_align(dx, nd), y, n)
            dy = _align(dy, nd)
            num = fb.ball_mul(_align(dx, nd), y) if dx is not None else None
            xdy = fb.ball_mul(x, dy)
            num = fb.ball_sub(num, xdy) if num is not None else fb.ball_sub(self._zeros(xdy), xdy)
            den = fb.ball_mul(y, fb.ball_add(y, dy))
            return v, fb.ball_div(num, den, n)
        if op is Op.POW:
            return v, self._pow(n, vals, ds, v)
        if op is Op.UNARY:
            return v, self._unary(n, vals[0], ds[0], v)
        if op is Op.LOGSUMEXP:
            return v, self._logsumexp(n, vals[0], ds[0], v)
        return v, self._direct(n, vals, ds, v)

    def _new(self, vals, ds):
        fb = self.fb
        return [x if d is None else fb.ball_add(x, d) for x, d in zip(vals, ds)]

    def _direct(self, n: Node, vals, ds, v):
        """The difference of the values (exact enough where the change is not small)."""
        fb = self.fb
        w = fb.eval_ball(n, self._new(vals, ds), self.lb)
        return fb.ball_sub(w, v)

    def _pow(self, n: Node, vals, ds, v):
        fb = self.fb
        ex = n.args[1]
        if ds[1] is not None or ex.op is not Op.CONST or ex.params[0] != "rational" or ex.params[2] != 1 \
                or not 1 <= ex.params[1] <= 64:
            return self._direct(n, vals, ds, v)
        k = int(ex.params[1])
        nd = len(n.shape)
        x, dx = _align(vals[0], nd), _align(ds[0], nd)
        # (x + d)^k - x^k by binary powering of pairs: (a, da) (b, db) -> (ab, da (b + db) + a db)
        acc = None
        base = (x, dx)
        while True:
            if k & 1:
                acc = base if acc is None else self._mul_pair(acc, base)
            k >>= 1
            if not k:
                break
            base = self._mul_pair(base, base)
        return acc[1]

    def _mul_pair(self, p, q):
        fb = self.fb
        (a, da), (b, db) = p, q
        ab = fb.ball_mul(a, b)
        return ab, fb.ball_add(fb.ball_mul(da, fb.ball_add(b, db)), fb.ball_mul(a, db))

    def _unary(self, n: Node, x, d, v):
        fb = self.fb
        name = n.fn.name
        if name == "square":
            return fb.ball_mul(d, fb.ball_add(fb.ball_add(x, x), d))
        if name == "sqrt":
            w = fb.eval_ball(n, [fb.ball_add(x, d)], self.lb)
            return fb.ball_div(d, fb.ball_add(w, v), n)
        if name == "exp":
            return fb.ball_mul(v, fb.eval_ball(_FnNode("expm1", d.shape[1:]), [d], self.lb))
        if name == "expm1":
            return fb.ball_mul(fb.ball_add(v, self._one(v)), fb.eval_ball(_FnNode("expm1", d.shape[1:]), [d], self.lb))
        if name == "log":
            return fb.eval_ball(_FnNode("log1p", n.shape), [fb.ball_div(d, x, n)], self.lb)
        if name == "log1p":
            return fb.eval_ball(_FnNode("log1p", n.shape), [fb.ball_div(d, fb.ball_add(x, self._one(x)), n)], self.lb)
        if name == "sigmoid":  # s(x + d) - s(x) = -s(x + d) s(-x) expm1(-d)
            s1 = fb.eval_ball(n, [fb.ball_add(x, d)], self.lb)
            sm = fb.eval_ball(n, [fb.ball_neg(x)], self.lb)
            e = fb.eval_ball(_FnNode("expm1", d.shape[1:]), [fb.ball_neg(d)], self.lb)
            return fb.ball_neg(fb.ball_mul(fb.ball_mul(s1, sm), e))
        if name == "softplus":  # log1p(s(x) expm1(d))
            sx = fb.eval_ball(_FnNode("sigmoid", x.shape[1:]), [x], self.lb)
            e = fb.eval_ball(_FnNode("expm1", d.shape[1:]), [d], self.lb)
            return fb.eval_ball(_FnNode("log1p", n.shape), [fb.ball_mul(sx, e)], self.lb)
        if name in ("sin", "cos"):  # 2 cos(x + d/2) sin(d/2), -2 sin(x + d/2) sin(d/2)
            half = fb.ball_mul(d, fb.from_float(np.full((1,) * d.ndim, 0.5)))
            mid = fb.ball_add(x, half)
            sh = fb.eval_ball(_FnNode("sin", half.shape[1:]), [half], self.lb)
            other = fb.eval_ball(_FnNode("cos" if name == "sin" else "sin", mid.shape[1:]), [mid], self.lb)
            out = fb.ball_mul(fb.ball_mul(other, sh), fb.from_float(np.full((1,) * d.ndim, 2.0)))
            return out if name == "sin" else fb.ball_neg(out)
        if name in ("relu", "abs"):
            pos0, neg0, zero0 = fb._signs(x)
            x1 = fb.ball_add(x, d)
            pos1, neg1, zero1 = fb._signs(x1)
            if name == "relu":
                same_on = pos0 & pos1
                same_off = (neg0 | zero0) & (neg1 | zero1)
                if not (same_on | same_off).all():
                    return self._direct(n, [x], [d], v)
                dd = _full(d, np.broadcast_shapes(d.shape, x.shape))
                return fb.Ball(*(np.where(same_on, a, 0.0) for a in (dd.hi, dd.lo, dd.rad)))
            same_pos, same_neg = pos0 & pos1, neg0 & neg1
            if not (same_pos | same_neg).all():
                return self._direct(n, [x], [d], v)
            dd = _full(d, np.broadcast_shapes(d.shape, x.shape))
            s = np.where(same_neg, -1.0, 1.0)
            return fb.Ball(dd.hi * s, dd.lo * s, dd.rad)
        return self._direct(n, [x], [d], v)

    def _logsumexp(self, n: Node, x, d, v):
        fb = self.fb
        axes, keepdims = n.params
        nd = x.ndim - 1
        bax = tuple(range(1, nd + 1)) if axes is None else tuple(a + 1 for a in axes)
        xf = _full(x, np.broadcast_shapes(x.shape, d.shape))
        m = np.max(xf.hi, axis=bax, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        e = fb.eval_ball(_FnNode("exp", xf.shape[1:]), [fb.ball_sub(xf, fb.from_float(m))], self.lb)
        q = fb.ball_mul(e, fb.eval_ball(_FnNode("expm1", d.shape[1:]), [d], self.lb))
        ratio = fb.ball_div(fb.ball_sum(q, bax, True), fb.ball_sum(e, bax, True))
        out = fb.eval_ball(_FnNode("log1p", ratio.shape[1:]), [ratio], self.lb)
        if not keepdims:
            out = out.map(lambda a: np.squeeze(a, axis=bax))
        return out


def loss_changes(model, leaves_b: Mapping, leaves_d: Mapping) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f(b + d) - f(b) per row of a batch, as (hi, lo, rad) arrays.

    Parameters
    ----------
    model : Model
    leaves_b : mapping of str to Ball
        The base point b per leaf (batch axis first, 1 or B rows).
    leaves_d : mapping of str to Ball
        The change d of the leaves that move (batch axis first); absent leaves do not move.

    Raises
    ------
    verigrad.engine.fastball.FastPathUnavailable, verigrad.engine.arb.Undecided, ArithmeticError
        What the fast engine cannot prove.
    """
    ev = _Delta(leaves_b, leaves_d)
    (loss_value,) = evaluate_releasing([model.loss], ev.node)
    _, d = loss_value
    if d is None:
        z = np.zeros(1)
        return z, z, z
    return tuple(np.broadcast_to(a, d.shape).reshape(-1).copy() for a in (d.hi, d.lo, d.rad))
