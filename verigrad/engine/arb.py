"""Ball arithmetic (Arb, via python-flint) for *proved* digits of the truth.

Every value is a ball [m ± r] that provably contains the exact value, so the
digits of the truth are certified by the radii instead of by agreement between
two precisions: a cancellation that wipes out every bit (1 − cos(1e-30) at 100
bits) shows up as a ball containing 0, and the precision is raised.

Decisions that a ball cannot make (is this relu input > 0? is this log
argument > 0? is this max a tie?) raise :class:`Undecided`; the certifier then
raises the precision, and falls back to the mpmath backend only when the value
is exactly on the boundary in a way balls cannot prove (documented there).

The ball rules of the elementwise functions (the function itself, its domain, whether
huge arguments are refused) are fields of their :class:`~verigrad.expr.functions.ElemFn`
records; this module only applies them.
"""

from __future__ import annotations

import contextlib
import importlib.util
from fractions import Fraction
from operator import methodcaller

import numpy as np

from verigrad.engine.backends import MAX_MAG_BITS, _where_text, reduce_object
from verigrad.errors import DomainError, LimitError
from verigrad.expr.functions import FUNCTIONS, ElemFn, Undecided, _ball_relu, _ball_sigmoid, ball_sign

class _OnFirstUse:
    """``flint`` or ``flint.arb``, imported at the first use (attribute or call), which rebinds the
    module's name to the real object: python-flint's import is ~40 ms of every run's start-up, and
    the fast engine certifies most cases without it."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _real(self):
        import flint as real_flint

        globals().update(flint=real_flint, arb=real_flint.arb)
        return globals()[self._name]

    def __getattr__(self, key: str):
        return getattr(self._real(), key)

    def __call__(self, *args, **kwargs):
        return self._real()(*args, **kwargs)


# python-flint is optional: mpmath remains a complete backend
_HAVE_FLINT = importlib.util.find_spec("flint") is not None
flint = _OnFirstUse("flint") if _HAVE_FLINT else None
arb = _OnFirstUse("arb") if _HAVE_FLINT else None

__all__ = ["available", "ArbBackend", "Undecided", "arb_precision", "from_float", "to_mpf"]


def available() -> bool:
    return _HAVE_FLINT


@contextlib.contextmanager
def arb_precision(bits: int):
    """Scoped Arb working precision (restored afterwards, even on error)."""
    old = flint.ctx.prec
    flint.ctx.prec = int(bits)
    try:
        yield
    finally:
        flint.ctx.prec = old


def from_float(values: np.ndarray) -> np.ndarray:
    """Exact balls (radius 0) of a float array."""
    arr = np.asarray(values, dtype=np.float64)
    out = np.empty(arr.shape, dtype=object)
    flat = out.reshape(-1)
    for i, v in enumerate(arr.ravel().tolist()):
        flat[i] = arb(v)
    return out


def to_mpf(b):
    """The midpoint of a ball as an exact mpmath number."""
    import mpmath

    man, exp = b.mid().man_exp()
    man, exp = int(man), int(exp)
    with mpmath.workprec(max(64, man.bit_length() + 8)):
        return mpmath.mpf((man, exp)) if man else mpmath.mpf(0)


def _show(b) -> str:
    import mpmath

    return mpmath.nstr(to_mpf(b), 10)


#: -1, 0 or 1, or Undecided when the ball contains 0 without being exactly 0
_sign = ball_sign


def _cmp(a, b) -> int:
    return _sign(a - b)


_ARB_MAX = np.frompyfunc(lambda a, b: a if _cmp(a, b) >= 0 else b, 2, 1)


_vec = {}


def _ufunc(f):
    key = id(f)
    if key not in _vec:
        _vec[key] = np.frompyfunc(f, 1, 1)
    return _vec[key]


_ARRAY_RULES: dict = {}


def _array_rule(fn: ElemFn):
    """``fn``'s ball rule over an object array of balls.

    Where the rule is one Arb method (``exp``, ``log``, ``tanh``...) numpy calls the method
    itself, and sigmoid's ``1 / (1 + exp(-x))`` runs as four array operations: the same Arb
    operations in the same order, so the same balls, without a Python call per entry (which
    cost as much as the logarithm itself). Any other rule is called per entry."""
    rule = _ARRAY_RULES.get(fn.name)
    if rule is None:
        b = fn.ball
        red = b.__reduce__() if isinstance(b, methodcaller) else None
        if red is not None and len(red) == 2 and len(red[1]) == 1 and isinstance(red[1][0], str) \
                and hasattr(arb, red[1][0]):
            rule = np.frompyfunc(getattr(arb, red[1][0]), 1, 1)
        elif b is _ball_sigmoid:
            exp = np.frompyfunc(arb.exp, 1, 1)

            def rule(x):
                return 1 / (1 + exp(-x))
        elif b is _ball_relu:
            rule = _relu_array
        else:
            rule = _ufunc(b)
        _ARRAY_RULES[fn.name] = rule
    return rule


def _relu_array(x):
    """relu over an object array: x where x > 0, an exact 0 where x < 0 or x is exactly 0 (the
    per-entry rule's decisions, by two array comparisons), Undecided where the ball holds 0."""
    x = np.asarray(x, dtype=object)
    pos = (x > 0).astype(bool)
    off = (x < 0).astype(bool) | pos
    if not off.all():
        for v in x[~off]:
            ball_sign(v)  # raises Undecided unless exactly 0
    out = np.empty(x.shape, dtype=object)
    out[...] = arb(0)
    out[pos] = x[pos]
    return out


# Derived from the function table (kept for importers): the ball rule of every function,
# and the strict bounds of the ball domain check.
_FN = {name: f.ball for name, f in FUNCTIONS.items()}
_OPEN_DOMAIN = {name: f.open_domain for name, f in FUNCTIONS.items() if f.open_domain is not None}


_BOUND = None


def _mag_ok(arr, node, what):
    global _BOUND
    if _BOUND is None:
        _BOUND = arb(2) ** MAX_MAG_BITS  # an exact power of two: valid at every precision
    flat = arr.ravel()
    if flat.size:
        total = np.sum(np.abs(flat))  # one bound for all: each |v| <= the sum
        if total.is_finite() and total < _BOUND:
            return
    for i, v in enumerate(flat):
        if v.is_finite() and not (abs(v) < _BOUND):
            raise LimitError(f"{what} exceeds 2**{MAX_MAG_BITS} in magnitude in {_where_text(node, arr, i)}",
                             hint="the loss overflows every float format here; rescale the expression")


class ArbBackend:
    """numpy object arrays of Arb balls; precision from :func:`arb_precision`."""

    complex = False

    def const(self, params):
        if params[0] == "rational":
            v = arb(params[1]) / params[2] if params[2] != 1 else arb(params[1])
        elif params[0] == "pi":
            v = arb.pi()
        else:
            v = arb.const_e()
        out = np.empty(1, dtype=object)
        out[0] = v
        return out

    def div(self, x, y, node):
        x, y = np.broadcast_arrays(x, y)
        for i, v in enumerate(y.ravel()):
            if _sign(v) == 0:
                raise DomainError(f"division by zero in {_where_text(node, y, i)}", expression=node.label)
        return x / y

    def pow(self, x, y, node):
        if y.size == 1:
            e = y.flat[0]
            if e.is_exact() and e.is_integer() and 0 < e <= 64:
                n = int(e.mid().man_exp()[0]) * 2 ** int(e.mid().man_exp()[1])
                return _ufunc(lambda a, n=n: a**n)(np.broadcast_to(x, np.broadcast_shapes(x.shape, y.shape)))\
                    .astype(object)
        x, y = np.broadcast_arrays(x, y)
        _mag_ok(y, node, "an exponent")
        out = np.empty(x.shape, dtype=object)
        fo = out.reshape(-1)
        for i, (a, e) in enumerate(zip(x.ravel(), y.ravel())):
            if e.is_exact() and e.is_integer():
                n = int(e.mid().man_exp()[0]) * 2 ** int(e.mid().man_exp()[1])
                if n <= 0 and _sign(a) == 0:
                    raise DomainError(f"0 to the power {n} in {_where_text(node, x, i)}", expression=node.label)
                fo[i] = a ** n
            else:
                s = _sign(a)
                if s < 0:
                    raise DomainError(f"negative base {_show(a)} to a non-integer power in {_where_text(node, x, i)}",
                                      expression=node.label)
                if s == 0:
                    if _sign(e) <= 0:
                        raise DomainError(f"0 to a non-positive power in {_where_text(node, x, i)}",
                                          expression=node.label)
                    fo[i] = arb(0)
                else:
                    fo[i] = (e * a.log()).exp()
        return out

    def maximum(self, x, y, node):
        x, y = np.broadcast_arrays(x, y)
        out = np.empty(x.shape, dtype=object)
        fo = out.reshape(-1)
        for i, (a, b) in enumerate(zip(x.ravel(), y.ravel())):
            fo[i] = a if _cmp(a, b) >= 0 else b
        return out

    def tie_weight(self, x, y, node):
        x, y = np.broadcast_arrays(x, y)
        out = np.empty(x.shape, dtype=object)
        fo = out.reshape(-1)
        one, half, zero = arb(1), arb(0.5), arb(0)
        for i, (a, b) in enumerate(zip(x.ravel(), y.ravel())):
            c = _cmp(a, b)
            fo[i] = one if c > 0 else (half if c == 0 else zero)
        return out

    def check_unary(self, fn: ElemFn, x, node) -> None:
        """Raise what :meth:`unary` would raise on ``x`` (magnitude, domain), without computing it."""
        if fn.magnitude_sensitive:
            _mag_ok(x, node, f"the argument of {fn.name}")
        dom, nonzero = fn.open_domain, fn.ball_nonzero
        if dom is None and nonzero is None:
            return
        lo, hi = dom if dom is not None else (None, None)
        flat = x.ravel()
        if nonzero is None:
            # one vectorised comparison per bound; the loop below only runs to name a bad entry
            inside = np.ones(flat.size, dtype=bool)
            if lo is not None:
                inside &= (flat > arb(lo)).astype(bool)
            if hi is not None:
                inside &= (flat < arb(hi)).astype(bool)
            if inside.all():
                return
        for i, v in enumerate(flat):
            bad = (lo is not None and not (v > lo)) or (hi is not None and not (v < hi))
            pole = nonzero is not None and _sign(nonzero(v)) == 0
            if bad or pole:
                definitely = pole or (lo is not None and (v < lo or (v.is_exact() and v == lo))) or \
                             (hi is not None and (v > hi or (v.is_exact() and v == hi)))
                if not definitely:
                    raise Undecided
                raise DomainError(f"{fn.name} is undefined at {_show(v)} (it needs {fn.domain_text}) in "
                                  f"{_where_text(node, x, i)}", expression=node.label)

    @staticmethod
    def apply_unary(fn: ElemFn, x):
        """The function on every entry, with no checks (call :meth:`check_unary` first)."""
        return np.asarray(_array_rule(fn)(x), dtype=object)

    def unary(self, fn: ElemFn, x, node):
        self.check_unary(fn, x, node)
        return self.apply_unary(fn, x)

    def matmul(self, x, y):
        return np.matmul(x, y)

    def zeros(self, shape, like=None):
        return np.full(shape, arb(0), dtype=object)

    def sum(self, x, axes, keepdims):
        return np.asarray(np.sum(x, axis=axes, keepdims=keepdims), dtype=object)

    def prod(self, x, axes, keepdims):
        return np.asarray(np.prod(x, axis=axes, keepdims=keepdims), dtype=object)

    def max(self, x, axes, keepdims, node):
        return reduce_object(_ARB_MAX, x, axes, keepdims)

    def logsumexp(self, x, axes, keepdims, node):
        s = np.sum(_ufunc(lambda v: v.exp())(x), axis=axes, keepdims=keepdims)
        return np.asarray(_ufunc(lambda v: v.log())(np.asarray(s, dtype=object)), dtype=object)

    def argmax_weight(self, x, axes, node):
        m = np.broadcast_to(self.max(x, axes, True, node), x.shape)
        mask = np.frompyfunc(lambda a, b: 1 if _cmp(a, b) == 0 else 0, 2, 1)(x, m).astype(np.int64)
        count = np.broadcast_to(np.sum(mask, axis=axes, keepdims=True), x.shape)
        out = np.empty(x.shape, dtype=object)
        fo = out.reshape(-1)
        for i, (k, c) in enumerate(zip(mask.ravel(), count.ravel())):
            fo[i] = arb(int(k)) / int(c)
        return out
