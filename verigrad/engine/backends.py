"""Arithmetic backends for :func:`verigrad.expr.graph.evaluate`.

* :class:`FloatBackend` - numpy in one explicit dtype (float32, float64, complex64,
  complex128).  Nothing is upcast: every constant is rounded to the dtype first,
  and the result dtype of every operation is checked.
* :class:`MPBackend` - numpy object arrays of mpmath numbers at the precision of
  the enclosing ``mpmath.workprec`` scope; checks the domain of every operation
  and raises :class:`~verigrad.errors.DomainError` naming the sub-expression.
* :class:`SympyBackend` - object arrays of sympy expressions, for display and for
  the independent ``sympy.diff`` cross-check.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np

from verigrad.expr.functions import sympy  # imported lazily, on first use

from verigrad.errors import DomainError, LimitError
from verigrad.expr.functions import FUNCTIONS, ElemFn

__all__ = ["FloatBackend", "MPBackend", "SympyBackend", "leaf_index"]


def leaf_index(flat_batched_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Index of an entry of a batched array ``(B, *shape)`` without its batch position."""
    if not shape:
        return ()
    size = int(np.prod(shape))
    full = np.unravel_index(flat_batched_index % size, tuple(shape))
    return tuple(int(i) for i in full)


#: Arguments beyond 2**MAX_MAG_BITS in magnitude are refused: argument reduction of exp/sin
#: or an integer power with such a number needs billions of bits (a hang, not an answer).
MAX_MAG_BITS = 65536
#: the functions whose evaluation cost grows with the argument's magnitude (argument reduction);
#: derived from ``ElemFn.magnitude_sensitive`` in the function table
MAGNITUDE_SENSITIVE = frozenset(name for name, f in FUNCTIONS.items() if f.magnitude_sensitive)


def _check_magnitude(arr: np.ndarray, node, what: str) -> None:
    for i, v in enumerate(arr.ravel()):
        m = getattr(v, "_mpf_", None)
        if m is not None:
            if m[1] == 0 or m[2] + m[3] <= MAX_MAG_BITS:  # zero, or exponent + bit count small enough
                continue
        elif not isinstance(v, mpmath.mpc) or not v:
            continue
        if mpmath.mag(v) > MAX_MAG_BITS:
            raise LimitError(f"{what} has magnitude about 2**{int(mpmath.mag(v))} in {_where_text(node, arr, i)}, "
                             f"beyond the 2**{MAX_MAG_BITS} the exact evaluation accepts",
                             hint="the loss overflows every float format here; rescale the expression")


def _where_text(node, arr: np.ndarray, flat: int) -> str:
    idx = leaf_index(flat, arr.shape[1:])
    entry = f" at entry [{', '.join(map(str, idx))}]" if idx else ""
    return f"{node.label}{entry}"


class FloatBackend:
    """numpy arithmetic in a single dtype.

    Parameters
    ----------
    dtype : numpy dtype
        ``float16``, ``bfloat16`` (``ml_dtypes``), ``float32``, ``float64``, ``complex64`` or
        ``complex128``.

    Notes
    -----
    Half precision (float16, bfloat16) rounds once per graph node, the node computed in
    float32 from its half-precision operands: this is numpy's own float16 semantics (its
    float16 loops, ``sum``, ``prod`` and ``matmul`` compute in float32 and round once), and for
    bfloat16 the elementwise loops of ``ml_dtypes`` do the same; its ``sum``/``prod`` (which
    would round after every addition) and its ``matmul`` (which returns float32) are replaced
    here by the float32 computation rounded once (:meth:`_half_reduce`). Addition,
    multiplication, division and square root are then correctly rounded (float32 has more than
    2 t + 2 bits, so the double rounding is innocuous).
    """

    def __init__(self, dtype) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64, np.complex64, np.complex128, np.float16) \
                and self.dtype.name != "bfloat16":
            raise ValueError(f"unsupported dtype {self.dtype}")
        self.complex = self.dtype.kind == "c"
        if self.complex:
            self.real_dtype = np.dtype(np.float32) if self.dtype == np.complex64 else np.dtype(np.float64)
        else:
            self.real_dtype = self.dtype
        # bfloat16's reductions and matmul go through float32 explicitly (see Notes)
        self._via32 = self.dtype.name == "bfloat16"

    def _half_reduce(self, fn, *args, **kw) -> np.ndarray:
        """``fn`` computed in float32 from the bfloat16 operands (exact), rounded once to bfloat16."""
        return np.asarray(fn(*(a.astype(np.float32) for a in args), **kw)).astype(self.dtype)

    def _check(self, out: np.ndarray, node) -> np.ndarray:
        if out.dtype != self.dtype:
            raise TypeError(f"internal: {node.label} evaluated to {out.dtype}, not {self.dtype}")
        return out

    def const(self, params: tuple) -> np.ndarray:
        if params[0] == "rational":
            value = round_fraction(Fraction(params[1], params[2]), self.real_dtype)
        else:
            value = float(mpmath.pi if params[0] == "pi" else mpmath.e)
        return np.array([value], dtype=self.dtype)

    def div(self, x, y, node):
        return self._check(x / y, node)

    def pow(self, x, y, node):
        return self._check(x**y, node)

    def maximum(self, x, y, node):
        if self.complex:
            raise TypeError(f"maximum is not analytic ({node.label}); the complex step does not apply")
        return np.maximum(x, y)

    def tie_weight(self, x, y, node):
        one, half, zero = self.dtype.type(1), self.dtype.type(0.5), self.dtype.type(0)
        return np.where(x > y, one, np.where(x == y, half, zero))

    def unary(self, fn: ElemFn, x, node):
        if self.complex and not fn.analytic:
            raise TypeError(f"{fn.name} is not analytic ({node.label}); the complex step does not apply")
        return self._check(fn.np_f(x), node)

    def matmul(self, x, y):
        if self._via32:
            return self._half_reduce(np.matmul, x, y)
        return np.matmul(x, y)

    def zeros(self, shape, like=None):
        return np.zeros(shape, dtype=self.dtype)

    def sum(self, x, axes, keepdims):
        if self._via32:
            return self._half_reduce(np.sum, x, axis=axes, keepdims=keepdims)
        return np.sum(x, axis=axes, keepdims=keepdims)

    def prod(self, x, axes, keepdims):
        if self._via32:
            return self._half_reduce(np.prod, x, axis=axes, keepdims=keepdims)
        return np.prod(x, axis=axes, keepdims=keepdims)

    def max(self, x, axes, keepdims, node):
        if self.complex:
            raise TypeError(f"max is not analytic ({node.label}); the complex step does not apply")
        return np.max(x, axis=axes, keepdims=keepdims)

    def logsumexp(self, x, axes, keepdims, node):
        # Shift by the (real) maximum: exact identity, no overflow.
        m = np.max(x.real, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, self.real_dtype.type(0)).astype(self.real_dtype)
        s = self.sum(np.exp(x - m), axes, True)
        out = np.log(s) + m
        if not keepdims:
            out = np.squeeze(out, axis=axes)
        return self._check(out.astype(self.dtype, copy=False), node)

    def argmax_weight(self, x, axes, node):
        m = np.max(x, axis=axes, keepdims=True)
        mask = (x == m).astype(self.dtype)
        return mask / self.sum(mask, axes, True)


def round_fraction(q: Fraction, dtype) -> float:
    """Round an exact rational to the nearest value of ``dtype``, once (ties to even).

    Any binary format numpy knows (float16, bfloat16, float32, float64): the significand is
    chosen by exact integer arithmetic at the format's quantum (subnormals included), so there
    is no double rounding; beyond the largest finite value the result is ``±inf`` (IEEE
    round-to-nearest overflow). The float returned is exactly that value (every one of these
    formats embeds in float64).
    """
    dt = np.dtype(dtype)
    if dt == np.float64:
        return float(q)  # int / int true division is correctly rounded, subnormals included
    if q == 0:
        return 0.0
    fi = np.finfo(dt)
    t, emin = int(fi.nmant) + 1, int(fi.minexp)
    a = abs(q)
    n, d = a.numerator, a.denominator
    e = n.bit_length() - d.bit_length()  # floor(log2 a) is e or e - 1
    if (n << max(-e, 0)) < (d << max(e, 0)):
        e -= 1
    k = max(e, emin) - t + 1  # the quantum (ulp) at a
    num, den = (n, d << k) if k >= 0 else (n << -k, d)
    m, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and m & 1):
        m += 1
    v = math.ldexp(float(m), k)
    if v > float(fi.max):
        v = math.inf
    return -v if q < 0 else v


_mpf = np.frompyfunc(lambda v: mpmath.mpf(v), 1, 1)


class MPBackend:
    """Exact-as-possible arithmetic on numpy object arrays of mpmath numbers.

    Precision is whatever the enclosing ``mpmath.workprec``/``workdps`` scope set;
    this class never changes it.  Every partial operation checks its domain.

    Parameters
    ----------
    complex : bool
        Allow ``mpc`` values (the exact complex step); non-analytic operations are refused.
    """

    def __init__(self, *, complex: bool = False) -> None:
        self.complex = complex

    @staticmethod
    def from_float(values: np.ndarray) -> np.ndarray:
        """Exact conversion of a float/complex array to mpmath numbers (object array, same shape)."""
        arr = np.asarray(values)
        out = np.empty(arr.shape, dtype=object)
        flat = out.reshape(-1)
        if arr.dtype.kind == "c":
            for i, v in enumerate(arr.astype(np.complex128).ravel().tolist()):
                flat[i] = mpmath.mpc(v.real, v.imag)
        else:
            # exact: a binary float converts without rounding at any precision
            make, conv = mpmath.mp.make_mpf, mpmath.libmp.from_float
            for i, v in enumerate(arr.astype(np.float64).ravel().tolist()):
                flat[i] = make(conv(v))
        return out

    def const(self, params: tuple) -> np.ndarray:
        if params[0] == "rational":
            v = mpmath.mpf(params[1]) / params[2] if params[2] != 1 else mpmath.mpf(params[1])
        elif params[0] == "pi":
            v = +mpmath.pi
        else:
            v = +mpmath.e
        out = np.empty(1, dtype=object)
        out[0] = v
        return out

    def div(self, x, y, node):
        x, y = np.broadcast_arrays(x, y)
        flat = y.ravel()
        for i, v in enumerate(flat):
            if not v:
                raise DomainError(f"division by zero in {_where_text(node, y, i)}", expression=node.label)
        return x / y

    def pow(self, x, y, node):
        if y.size == 1 and not isinstance(y.flat[0], mpmath.mpc):
            e = y.flat[0]
            if e == int(e) and 0 < e <= 64:
                # a constant small positive integer power: defined everywhere, exact squaring
                n = int(e)
                _check_magnitude(x, node, "a base")
                return np.frompyfunc(lambda a: a**n, 1, 1)(np.broadcast_to(x, np.broadcast_shapes(x.shape, y.shape)))\
                    .astype(object)
        x, y = np.broadcast_arrays(x, y)
        _check_magnitude(x, node, "a base")
        _check_magnitude(y, node, "an exponent")
        out = np.empty(x.shape, dtype=object)
        fx, fy, fo = x.ravel(), y.ravel(), out.reshape(-1)
        for i in range(fx.size):
            a, e = fx[i], fy[i]
            if not self.complex or not isinstance(a, mpmath.mpc):
                is_int = isinstance(e, int) or (not isinstance(e, mpmath.mpc) and e == int(e))
                if a < 0 and not is_int:
                    raise DomainError(f"negative base {mpmath.nstr(a, 8)} to the non-integer power "
                                      f"{mpmath.nstr(e, 8)} in {_where_text(node, x, i)}", expression=node.label)
                if a == 0 and e <= 0:
                    raise DomainError(f"0 to the power {mpmath.nstr(e, 8)} in {_where_text(node, x, i)}",
                                      expression=node.label)
                if is_int:
                    e = int(e)
            fo[i] = a**e
        return out

    def maximum(self, x, y, node):
        self._refuse_complex("maximum", node)
        x, y = np.broadcast_arrays(x, y)
        return np.where(_ge(x, y), x, y).astype(object)

    def tie_weight(self, x, y, node):
        self._refuse_complex("maximum", node)
        x, y = np.broadcast_arrays(x, y)
        out = np.empty(x.shape, dtype=object)
        one, half, zero = mpmath.mpf(1), mpmath.mpf(0.5), mpmath.mpf(0)
        for i, (a, b) in enumerate(zip(x.ravel(), y.ravel())):
            out.reshape(-1)[i] = one if a > b else (half if a == b else zero)
        return out

    def _refuse_complex(self, name, node):
        if self.complex:
            raise TypeError(f"{name} is not analytic ({node.label}); the complex step does not apply")

    def unary(self, fn: ElemFn, x, node):
        if self.complex and not fn.analytic:
            raise TypeError(f"{fn.name} is not analytic ({node.label}); the complex step does not apply")
        if fn.magnitude_sensitive:
            _check_magnitude(x, node, f"the argument of {fn.name}")
        if fn.domain is not None:
            for i, v in enumerate(x.ravel()):
                if isinstance(v, mpmath.mpc):
                    continue
                if not fn.domain(v):
                    raise DomainError(
                        f"{fn.name} is undefined at {mpmath.nstr(v, 10)} (it needs {fn.domain_text}) "
                        f"in {_where_text(node, x, i)}", expression=node.label)
        return np.frompyfunc(fn.mp_f, 1, 1)(x).astype(object)

    def matmul(self, x, y):
        if self.complex or x.ndim != 3 or y.ndim != 3 or x.shape[-1] < 8:
            return np.matmul(x, y)
        return _exact_matmul(x, y)

    def zeros(self, shape, like=None):
        return np.full(shape, mpmath.mpf(0), dtype=object)

    def sum(self, x, axes, keepdims):
        return np.sum(x, axis=axes, keepdims=keepdims).astype(object)

    def prod(self, x, axes, keepdims):
        return np.prod(x, axis=axes, keepdims=keepdims).astype(object)

    def max(self, x, axes, keepdims, node):
        self._refuse_complex("max", node)
        return reduce_object(_OBJ_MAX, x, axes, keepdims)

    def logsumexp(self, x, axes, keepdims, node):
        e = np.frompyfunc(mpmath.exp, 1, 1)(x)
        s = np.sum(e, axis=axes, keepdims=keepdims)
        return np.frompyfunc(mpmath.log, 1, 1)(s).astype(object)

    def argmax_weight(self, x, axes, node):
        self._refuse_complex("max", node)
        m = self.max(x, axes, True, node)
        mask = np.equal(x, np.broadcast_to(m, x.shape)).astype(np.int64)
        count = np.sum(mask, axis=axes, keepdims=True)
        return (_mpf(mask) / _mpf(np.broadcast_to(count, x.shape).astype(np.float64))).astype(object)


def _to_ints(a: np.ndarray) -> tuple[list[list[int]], int] | None:
    """An (m, n) object array of mpf as integer rows M and one exponent E: a = M * 2**E exactly."""
    rows = []
    emin = None
    flat = []
    for v in a.ravel().tolist():
        if not isinstance(v, mpmath.mpf):
            return None
        sign, man, exp, _ = v._mpf_
        if man == 0:
            if exp != 0:  # inf / nan
                return None
            flat.append((0, 0))
            continue
        flat.append((-man if sign else man, exp))
        emin = exp if emin is None or exp < emin else emin
    if emin is None:
        emin = 0
    n = a.shape[1]
    ints = [m << (e - emin) if m else 0 for m, e in flat]
    rows = [ints[i * n:(i + 1) * n] for i in range(a.shape[0])]
    return rows, emin


_INT_CACHE: dict = {}


def _cached_ints(a: np.ndarray, transpose: bool):
    """:func:`_to_ints` of ``a`` (or ``a.T``), cached while the underlying array lives.

    The model converts a point's constants once and passes views of the same object
    array to every evaluation; keying on the buffer address, shape and strides (with a
    weak reference that must still be alive) reuses the integer form safely.
    """
    import weakref

    base = a
    while isinstance(base.base, np.ndarray):
        base = base.base
    key = (a.__array_interface__["data"][0], a.shape, a.strides, transpose)
    hit = _INT_CACHE.get(key)
    if hit is not None and hit[0]() is base:
        return hit[1]
    res = _to_ints(np.ascontiguousarray(a.T) if transpose else a)
    if a.size >= 4096:
        if len(_INT_CACHE) > 64:
            _INT_CACHE.clear()
        try:
            _INT_CACHE[key] = (weakref.ref(base), res)
        except TypeError:
            pass
    return res


def _exact_matmul(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Batched matmul of mpf arrays, computed exactly in integers and rounded once per entry.

    Every mpf is man * 2**exp exactly, so a dot product is an integer times a power of
    two; rounding it once to the working precision is *more* accurate than mpmath's
    rounding after every product and sum, and much faster.
    """
    import operator

    B = max(x.shape[0], y.shape[0])
    m, n = x.shape[1], x.shape[2]
    k = y.shape[2]
    prec = mpmath.mp.prec
    make, from_man_exp = mpmath.mp.make_mpf, mpmath.libmp.from_man_exp
    out = np.empty((B, m, k), dtype=object)
    cache_x = cache_y = None
    for b in range(B):
        xb = x[b if x.shape[0] > 1 else 0]
        yb = y[b if y.shape[0] > 1 else 0]
        if cache_x is None or x.shape[0] > 1:
            cache_x = _cached_ints(xb, False)
        if cache_y is None or y.shape[0] > 1:
            cache_y = _cached_ints(yb, True)
        if cache_x is None or cache_y is None:
            return np.matmul(x, y)
        (mx, ex), (my, ey) = cache_x, cache_y
        e = ex + ey
        for i in range(m):
            row = mx[i]
            for j in range(k):
                out[b, i, j] = make(from_man_exp(sum(map(operator.mul, row, my[j])), e, prec, "n"))
    return out


def reduce_object(ufunc2, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Reduce an object array over several axes with a binary frompyfunc ufunc (e.g. a max)."""
    out = x
    for a in sorted(axes, reverse=True):
        out = ufunc2.reduce(out, axis=a, keepdims=True)
    if not keepdims:
        out = np.squeeze(out, axis=axes)
    return np.asarray(out, dtype=object)


def _ge(x, y):
    return np.frompyfunc(lambda a, b: a >= b, 2, 1)(x, y).astype(bool)


_OBJ_MAX = np.frompyfunc(lambda a, b: a if a >= b else b, 2, 1)


class SympyBackend:
    """Object arrays of sympy expressions (display and cross-checks only).

    Parameters
    ----------
    display : bool
        Keep named functions (``sigmoid``) unexpanded for reading; with False,
        every function is replaced by its definition (for numeric cross-checks).
    """

    complex = False

    def __init__(self, *, display: bool = True) -> None:
        self.display = display

    def const(self, params):
        if params[0] == "rational":
            v = sympy.Rational(params[1], params[2])
        else:
            v = sympy.pi if params[0] == "pi" else sympy.E
        out = np.empty(1, dtype=object)
        out[0] = v
        return out

    def div(self, x, y, node):
        return x / y

    def pow(self, x, y, node):
        return np.frompyfunc(lambda a, b: a**b, 2, 1)(x, y)

    def maximum(self, x, y, node):
        return np.frompyfunc(sympy.Max, 2, 1)(x, y)

    def tie_weight(self, x, y, node):
        f = lambda a, b: sympy.Piecewise((1, sympy.StrictGreaterThan(a, b)), (sympy.Rational(1, 2), sympy.Eq(a, b)),
                                         (0, True))
        return np.frompyfunc(f, 2, 1)(x, y)

    def unary(self, fn: ElemFn, x, node):
        return np.frompyfunc(fn.sympy_of if self.display else fn.definition, 1, 1)(x)

    def matmul(self, x, y):
        return np.matmul(x, y)

    def zeros(self, shape, like=None):
        return np.full(shape, sympy.Integer(0), dtype=object)

    def sum(self, x, axes, keepdims):
        return np.sum(x, axis=axes, keepdims=keepdims)

    def prod(self, x, axes, keepdims):
        return np.prod(x, axis=axes, keepdims=keepdims)

    def max(self, x, axes, keepdims, node):
        return reduce_object(np.frompyfunc(sympy.Max, 2, 1), x, axes, keepdims)

    def logsumexp(self, x, axes, keepdims, node):
        s = np.sum(np.frompyfunc(sympy.exp, 1, 1)(x), axis=axes, keepdims=keepdims)
        return np.frompyfunc(sympy.log, 1, 1)(s)

    def argmax_weight(self, x, axes, node):
        raise NotImplementedError("the symbolic form of a max-reduction's derivative is not displayed")
