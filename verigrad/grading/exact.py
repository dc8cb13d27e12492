"""Exact arithmetic on binary floats: the dtype formats, ulp, exact reading of numbers, and
the error-free float64 transformations the vectorised grading is built on.

Every value the grading compares (truth, baseline, candidate) can be read here into a raw
mpmath ``mpf`` tuple that represents it exactly (``None`` for NaN and infinities), and
``ulp_p`` is computed on those tuples, as defined in the Notes of :mod:`verigrad.grading`.
Arithmetic on raw tuples is exact unless a precision is given (``_PREC`` bits for sums of
squares, norms and quotients, before the single rounding to a Python float).

The same numbers are also handled as numpy float64 arrays: :class:`DDTruth` (a truth given
as a double-double ``hi + lo`` per entry), :func:`two_sum` and :func:`two_prod` (error-free:
``a + b = s + e`` and ``a b = p + e`` exactly, barring overflow and, for products,
underflow), and :func:`rn_certified`, which says where a float64 approximation with a
proved error bound is certainly the round-to-nearest value of the exact number it
approximates.  :mod:`verigrad.grading.entries` uses them to compute every figure of the
grade on arrays and to fall back to the raw-tuple arithmetic only for the entries that the
bound cannot decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable

import mpmath
import numpy as np
from mpmath import libmp

from verigrad.spec import is_float_dtype

__all__ = ["DDTruth", "ulp"]

# ---------------------------------------------------------------------------
# exact arithmetic on raw mpf tuples (exact unless a precision is given)
# ---------------------------------------------------------------------------

_RN = libmp.round_nearest
_FZERO = libmp.fzero
_PREC = 192  # bits for sums of squares, norms and quotients before rounding to float


@dataclass(frozen=True)
class _Format:
    name: str
    bits: int  # t: significand bits including the implicit one
    emin: int  # exponent of the smallest normal number


#: the formats grading is defined for, by numpy dtype name (bfloat16 is ``ml_dtypes.bfloat16``)
_FORMATS = {
    "float16": _Format("float16", 11, -14),
    "bfloat16": _Format("bfloat16", 8, -126),
    "float32": _Format("float32", 24, -126),
    "float64": _Format("float64", 53, -1022),
}


def _fmt_of(dtype: Any) -> _Format:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype={dtype!r} is not a numpy dtype; "
                         "use numpy.float16, ml_dtypes.bfloat16, numpy.float32 or numpy.float64") from exc
    if dt.name not in _FORMATS or not is_float_dtype(dt):
        raise ValueError(f"dtype={dt.name}: grading is defined for float16, bfloat16, float32 and float64; "
                         "use numpy.float16, ml_dtypes.bfloat16, numpy.float32 or numpy.float64")
    return _FORMATS[dt.name]


def _is_finite_raw(t: tuple) -> bool:
    return bool(t[1]) or t == _FZERO


def _floor_log2(t: tuple) -> int:
    return t[2] + t[3] - 1


def _ulp_exp(t: tuple, fmt: _Format) -> int:
    """k such that ulp_p(|t|) = 2**k (t a finite raw mpf)."""
    if t == _FZERO:
        return fmt.emin - fmt.bits + 1
    return max(_floor_log2(t), fmt.emin) - fmt.bits + 1


def _to_float(t: tuple) -> float:
    return libmp.to_float(t, False, _RN)


def _from_number(x: Any) -> tuple | None:
    """Exact raw mpf of a real number; None for NaN/inf; TypeError otherwise."""
    if isinstance(x, (bool, np.bool_)):
        raise TypeError("bool")
    if isinstance(x, mpmath.mpf):
        t = x._mpf_
        return t if _is_finite_raw(t) else None
    if isinstance(x, (int, np.integer)):
        return libmp.from_int(int(x))
    if isinstance(x, np.longdouble) and np.finfo(np.longdouble).nmant > 52:
        if not np.isfinite(x):
            return None
        p, q = x.as_integer_ratio()
        return libmp.mpf_shift(libmp.from_int(p), -(q.bit_length() - 1))
    if isinstance(x, (float, np.floating)) or type(x).__name__ == "bfloat16":  # ml_dtypes' scalar
        xf = float(x)
        return libmp.from_float(xf) if math.isfinite(xf) else None
    if isinstance(x, Fraction):
        if x.denominator & (x.denominator - 1) == 0:  # dyadic: exact
            return libmp.mpf_shift(libmp.from_int(x.numerator), -(x.denominator.bit_length() - 1))
        raise TypeError("non-dyadic Fraction")
    if hasattr(x, "_mpf_") and isinstance(getattr(x, "_mpf_"), tuple):  # e.g. sympy.Float
        t = x._mpf_
        return t if _is_finite_raw(t) else None
    raise TypeError(type(x).__name__)


def _convert_array(arr: np.ndarray) -> tuple[list[tuple | None], np.ndarray]:
    """Exact raw entries (None = non-finite) and a float64 view for display/diagnosis.

    Raises TypeError (message = what is wrong) for data that is not real numbers.
    """
    kind = "f" if is_float_dtype(arr.dtype) else arr.dtype.kind  # bfloat16 is numpy kind "V"
    flat = arr.reshape(-1)
    if kind == "f":
        if arr.dtype.itemsize <= 8 or np.finfo(arr.dtype).nmant <= 52:
            f64 = flat.astype(np.float64)  # exact: float16/bfloat16/32/64 embed in float64
            raw = [libmp.from_float(x) if math.isfinite(x) else None for x in f64.tolist()]
            return raw, f64
        raw = [_from_number(x) for x in flat]
        return raw, flat.astype(np.float64)
    if kind in "iu":
        raw = [libmp.from_int(int(x)) for x in flat.tolist()]
        return raw, flat.astype(np.float64)
    if kind == "O":
        raw = []
        disp = np.empty(flat.shape, dtype=np.float64)
        for i, x in enumerate(flat):
            try:
                t = _from_number(x)
            except TypeError as exc:
                raise TypeError(f"entry {i} is {exc.args[0]}, not a real number") from None
            raw.append(t)
            disp[i] = math.nan if t is None else _to_float(t)
        return raw, disp
    if kind == "c":
        raise TypeError(f"dtype {arr.dtype.name} is complex; a real gradient was expected")
    if kind == "b":
        raise TypeError("dtype bool is not a gradient")
    raise TypeError(f"dtype {arr.dtype} is not numeric")


def ulp(x: Any, dtype: Any) -> mpmath.mpf:
    """Spacing of ``dtype`` at the real number ``x``, exactly.

    Parameters
    ----------
    x : float, int or mpmath.mpf
        Any finite real number (it need not be representable in ``dtype``).
    dtype : numpy.float16, ml_dtypes.bfloat16, numpy.float32 or numpy.float64

    Returns
    -------
    mpmath.mpf
        ``2**(max(floor(log2|x|), e_min) - t + 1)``, and ``2**(e_min - t + 1)``
        for ``x = 0`` (``t`` = 11, 8, 24 or 53, ``e_min`` = -14, -126, -126 or -1022).

    Examples
    --------
    >>> ulp(1.0, "float64") == mpmath.ldexp(1, -52)
    True
    >>> ulp(0.75, "float32") == mpmath.ldexp(1, -24)
    True
    """
    fmt = _fmt_of(dtype)
    try:
        t = _from_number(x)
    except TypeError:
        raise TypeError(f"ulp(x={x!r}): x must be a real number") from None
    if t is None:
        raise ValueError(f"ulp(x={x!r}): x must be finite")
    return mpmath.mp.make_mpf(libmp.mpf_shift(libmp.fone, _ulp_exp(libmp.mpf_abs(t), fmt)))


def _raw_max(items: Iterable[tuple]) -> tuple:
    best = _FZERO
    for t in items:
        if libmp.mpf_gt(t, best):
            best = t
    return best


# ---------------------------------------------------------------------------
# a truth given as double-double arrays
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DDTruth:
    """One variable's exact gradient as a double-double: the entries are exactly ``hi + lo``.

    Pass it as a value of :func:`verigrad.grading.grade`'s ``truth`` mapping instead of an
    object array of :class:`mpmath.mpf` when the truth is at hand as float64 arrays (the
    vectorised certified engine's ``gradient_hi``/``gradient_lo``): no Python object per
    entry is then built.

    Parameters
    ----------
    hi, lo : array_like of float64
        Same shape (the variable's); finite.  The truth of each entry is the exact real
        number ``hi + lo`` (106 bits and more): it is graded exactly as that number.  The
        pair need not be normalised.

    Notes
    -----
    ``hi + lo`` is usually itself a rounding of a certified value ``m`` (an Arb midpoint or a
    double-double midpoint with a radius): with ``hi = fl(m)`` and ``lo = fl(m - hi)``,
    ``|m - (hi + lo)| <= 2**-106 |m|`` (for ``|m|`` above ``2**-960``).  That is the one
    rounding between the certified value and the number graded; it is below ``10**-31``
    relative, ``2**-53`` ulp of float64 and ``2**-82`` ulp of float32, far below anything a
    grade reports to its 17 significant digits, and within the certificate's radius whenever
    the truth is certified to 32 digits or fewer.

    Examples
    --------
    >>> t = DDTruth(np.array([1.0]), np.array([2.0 ** -60]))
    >>> t.shape
    (1,)
    """

    hi: np.ndarray
    lo: np.ndarray

    def __post_init__(self) -> None:
        hi = np.asarray(self.hi)
        lo = np.asarray(self.lo)
        for what, a in (("hi", hi), ("lo", lo)):
            if a.dtype.kind not in "fiu" or (a.dtype.kind == "f" and a.dtype.itemsize > 8):
                raise ValueError(f"DDTruth.{what} has dtype {a.dtype}; use float64 arrays")
        if hi.shape != lo.shape:
            raise ValueError(f"DDTruth: hi has shape {hi.shape}, lo has shape {lo.shape}; "
                             "they must agree")
        object.__setattr__(self, "hi", np.array(hi, dtype=np.float64))
        object.__setattr__(self, "lo", np.array(lo, dtype=np.float64))

    @property
    def shape(self) -> tuple[int, ...]:
        """The variable's shape."""
        return tuple(self.hi.shape)

    def entry(self, i: int) -> tuple:
        """Entry ``i`` (flat index) as an exact raw mpf tuple."""
        h = float(self.hi.reshape(-1)[i])
        lo = float(self.lo.reshape(-1)[i])
        return libmp.mpf_add(libmp.from_float(h), libmp.from_float(lo), 0)

    def to_mpf(self) -> np.ndarray:
        """The entries as an object array of exact :class:`mpmath.mpf` (one object per entry)."""
        out = np.empty(self.hi.shape, dtype=object)
        flat = out.reshape(-1)
        mk = mpmath.mp.make_mpf
        for i in range(flat.size):
            flat[i] = mk(self.entry(i))
        return out


# ---------------------------------------------------------------------------
# error-free transformations on float64 arrays
# ---------------------------------------------------------------------------

_SPLITTER = 134217729.0  # 2**27 + 1
#: rounding-error unit of float64 (2**-53) and its slack for bounds computed in float64
_U = 2.0 ** -53
_SAFE = 1.0 + 2.0 ** -40


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth; finite, no overflow)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p, e)`` with ``p = fl(a b)`` and ``a b = p + e`` exactly (Dekker).

    Exact when ``|a|, |b| < 2**995``, no overflow and ``a b = 0`` or ``|a b| >= 2**-969``;
    below that, ``|a b - (p + e)| <= 2**-1070``.
    """
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def two_square(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`two_prod` of ``a`` and itself (one split)."""
    p = a * a
    ah, al = _split(a)
    e = ((ah * ah - p) + 2 * (ah * al)) + al * al
    return p, e


def floor_log2(x: np.ndarray) -> np.ndarray:
    """``floor(log2 |x|)`` of nonzero finite float64 entries (int64; 0 for zeros)."""
    return (np.frexp(x)[1] - 1).astype(np.int64)


def rn_certified(x: np.ndarray, resid: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Where ``x`` is certainly the float64 nearest to ``y`` (round to nearest, ties even).

    ``y`` is known only as ``x + resid + delta`` with ``|delta| <= bound``.  The answer is
    True where ``x`` is a normal float64 (or ``x = resid = bound = 0``) and
    ``|resid| + bound`` is below half the smaller spacing of float64 next to ``x``, so that
    no rounding boundary lies within reach; False elsewhere (the caller decides those
    entries exactly).
    """
    ax = np.abs(x)
    with np.errstate(all="ignore"):
        half = np.ldexp(1.0, floor_log2(ax) - 54)  # half the spacing below a power of two
        slack = (np.abs(resid) + bound) * _SAFE
        ok = (ax >= 2.0 ** -1021) & (ax <= 2.0 ** 1020) & (slack < half)
    return ok | ((x == 0) & (resid == 0) & (bound == 0))
