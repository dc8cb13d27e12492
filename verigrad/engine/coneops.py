"""The arithmetic of :class:`verigrad.engine.cone.Cone` on its three kinds of values.

Arb balls (:class:`BallOps`, the rules of :class:`verigrad.engine.arb.ArbBackend`), truncated
Arb power series in the line's parameter (:class:`SeriesOps`: domain decisions on the constant
terms, and the analytic piece of the point's side of a kink), and mpmath numbers for the exact
complex step (:class:`ComplexOps`, the rules of :class:`verigrad.engine.backends.MPBackend`).
Each gives the elementwise operations, the reductions along the last axis, its zero, the
conversion of the cone's (Arb) base values, and the change of the perturbed entry.
"""

from __future__ import annotations

import numpy as np

from verigrad.engine import arb as ab
from verigrad.expr.functions import ball_sign

__all__ = ["BallOps", "SeriesOps", "ComplexOps", "ConeUnsupported"]


class ConeUnsupported(Exception):
    """The cone machinery cannot evaluate this graph or point (the caller uses a full evaluation)."""


def _filled(shape, value) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.fill(value)
    return out


def _unsupported(message: str) -> ConeUnsupported:
    return ConeUnsupported(message)


def _const_term(s):
    return s[0] if isinstance(s, ab.flint.arb_series) else s


class _ArbValues:
    """Values in Arb (balls or series): the cone's Arb base values are used as they are, and the
    perturbed entry changes by its new value minus the exact ball of x0."""

    @staticmethod
    def from_base(vals):
        return vals

    @staticmethod
    def leaf_delta(new, x0: float):
        return new - ab.arb(x0)


class SeriesOps(_ArbValues):
    """Elementwise operations on object arrays of Arb series (or balls) of the same shape.

    Domain decisions are made on the constant terms (as :class:`verigrad.engine.arb.ArbBackend`
    would at the point); non-analytic operations take the analytic piece of the side the
    constant term is on, and a constant term exactly on a kink raises :class:`ConeUnsupported`.
    """

    def __init__(self):
        self._arb = ab.ArbBackend()
        self._c = np.frompyfunc(_const_term, 1, 1)
        self.zero = ab.arb(0)

    def consts(self, x):
        return self._c(x).astype(object)

    @staticmethod
    def _sign(c) -> int:
        return ball_sign(c)  # Undecided for a ball that contains 0 without being exactly 0

    def div(self, x, y, node):
        self._arb.div(self.consts(x), self.consts(y), node)
        return x / y

    def pow(self, x, y, node):
        x, y = np.broadcast_arrays(x, y)
        self._arb.pow(self.consts(x), self.consts(y), node)
        out = np.empty(x.shape, dtype=object)
        fo = out.reshape(-1)
        for i, (a, e) in enumerate(zip(x.reshape(-1), y.reshape(-1))):
            if not isinstance(e, ab.flint.arb_series) and e.is_exact() and e.is_integer() and abs(e) <= 64:
                k = int(e.mid().man_exp()[0]) * 2 ** int(e.mid().man_exp()[1])
                fo[i] = a ** k if k > 0 else (1 / a ** (-k) if k < 0 else ab.arb(1) + 0 * a)
            else:
                la = a.log() if isinstance(a, ab.flint.arb_series) else ab.flint.arb_series([a]).log()
                fo[i] = (e * la).exp()
        return out

    def unary(self, fn, x, node):
        if fn.analytic and fn.series is not None:
            self._arb.check_unary(fn, self.consts(x), node)
            return np.frompyfunc(fn.series, 1, 1)(x).astype(object)
        out = np.empty(x.shape, dtype=object)
        fo, fx = out.reshape(-1), x.reshape(-1)
        for i, v in enumerate(fx):
            c = _const_term(v)
            s = self._sign(c)
            if s == 0:
                raise _unsupported(f"{fn.name} is not analytic at a kink")
            if fn.name == "relu":
                fo[i] = v if s > 0 else ab.arb(0)
            elif fn.name == "abs":
                fo[i] = v if s > 0 else -v
            elif fn.piecewise_constant:
                fo[i] = fn.ball(c)
            else:
                raise _unsupported(f"{fn.name} has no power series here")
        return out

    def _pick(self, x, y, node, tie):
        x, y = np.broadcast_arrays(x, y)
        out = np.empty(x.shape, dtype=object)
        fo = out.reshape(-1)
        for i, (a, b) in enumerate(zip(x.reshape(-1), y.reshape(-1))):
            s = self._sign(_const_term(a) - _const_term(b))
            if s == 0:
                raise _unsupported("a tie is not analytic")
            fo[i] = tie(s, a, b)
        return out

    def maximum(self, x, y, node):
        return self._pick(x, y, node, lambda s, a, b: a if s > 0 else b)

    def tie_weight(self, x, y, node):
        return self._pick(x, y, node, lambda s, a, b: ab.arb(1) if s > 0 else ab.arb(0))

    def _argmax(self, x):
        """Index of the strict maximum of the constant terms along the last axis."""
        c = self.consts(x)
        flat = c.reshape(-1, c.shape[-1])
        idx = np.empty(flat.shape[0], dtype=np.int64)
        for g in range(flat.shape[0]):
            best = 0
            for j in range(1, flat.shape[1]):
                if self._sign(flat[g, j] - flat[g, best]) > 0:
                    best = j
            for j in range(flat.shape[1]):
                if j != best and self._sign(flat[g, best] - flat[g, j]) <= 0:
                    raise _unsupported("a tie of a max is not analytic")
            idx[g] = best
        return idx.reshape(c.shape[:-1])

    def max_last(self, x):
        idx = self._argmax(x)
        return np.take_along_axis(x, idx[..., None], axis=-1)[..., 0]

    def argmax_weight_last(self, x):
        idx = self._argmax(x)
        out = _filled(x.shape, ab.arb(0))
        np.put_along_axis(out, idx[..., None], ab.arb(1), axis=-1)
        return out

    def logsumexp_last(self, x):
        e = np.frompyfunc(lambda v: v.exp(), 1, 1)(x)
        s = np.sum(e, axis=-1)
        return np.frompyfunc(lambda v: v.log(), 1, 1)(np.asarray(s, dtype=object)).astype(object)


class _BackendOps:
    """The operations a cone evaluation takes straight from a backend ``self.bk`` (shared by
    :class:`BallOps` and :class:`ComplexOps`; :class:`SeriesOps` has its own rules)."""

    def div(self, x, y, node):
        return self.bk.div(x, y, node)

    def pow(self, x, y, node):
        return self.bk.pow(x, y, node)

    def unary(self, fn, x, node):
        return self.bk.unary(fn, x, node)

    def maximum(self, x, y, node):
        return self.bk.maximum(x, y, node)

    def tie_weight(self, x, y, node):
        return self.bk.tie_weight(x, y, node)

    def max_last(self, x):
        return np.asarray(self.bk.max(x, (x.ndim - 1,), False, None), dtype=object)

    def argmax_weight_last(self, x):
        return np.asarray(self.bk.argmax_weight(x, (x.ndim - 1,), None), dtype=object)

    def logsumexp_last(self, x):
        return np.asarray(self.bk.logsumexp(x, (x.ndim - 1,), False, None), dtype=object)


class BallOps(_ArbValues, _BackendOps):
    """The same interface for balls, from :class:`verigrad.engine.arb.ArbBackend`."""

    def __init__(self):
        self.bk = ab.ArbBackend()
        self.zero = ab.arb(0)


class ComplexOps(_BackendOps):
    """mpmath numbers (``mpc`` along the imaginary line of the complex step), with the rules of
    :class:`verigrad.engine.backends.MPBackend` (``complex=True``); base values are the
    midpoints of the Arb base balls."""

    def __init__(self):
        import mpmath

        from verigrad.engine.backends import MPBackend

        self.mp = mpmath
        self.bk = MPBackend(complex=True)
        self.zero = mpmath.mpf(0)
        self._to = np.frompyfunc(ab.to_mpf, 1, 1)

    def from_base(self, vals):
        return self._to(vals).astype(object) if vals.size else vals

    def leaf_delta(self, new, x0: float):
        return new - self.mp.mpf(x0)
