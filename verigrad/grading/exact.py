"""Exact arithmetic on binary floats: the dtype formats, ulp, and exact reading of numbers.

Every value the grading compares (truth, baseline, candidate) is read here into a raw
mpmath ``mpf`` tuple that represents it exactly (``None`` for NaN and infinities), and
``ulp_p`` is computed on those tuples, as defined in the Notes of :mod:`verigrad.grading`.
Arithmetic on raw tuples is exact unless a precision is given (``_PREC`` bits for sums of
squares, norms and quotients, before the single rounding to a Python float).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable

import mpmath
import numpy as np
from mpmath import libmp

__all__ = ["ulp"]

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


_FORMATS = {
    np.dtype(np.float32): _Format("float32", 24, -126),
    np.dtype(np.float64): _Format("float64", 53, -1022),
}


def _fmt_of(dtype: Any) -> _Format:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype={dtype!r} is not a numpy dtype; "
                         "use numpy.float32 or numpy.float64") from exc
    if dt not in _FORMATS:
        raise ValueError(f"dtype={dt.name}: grading is defined for float32 and float64; "
                         "use numpy.float32 or numpy.float64")
    return _FORMATS[dt]


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
    if isinstance(x, (float, np.floating)):
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
    kind = arr.dtype.kind
    flat = arr.reshape(-1)
    if kind == "f":
        if arr.dtype.itemsize <= 8 or np.finfo(arr.dtype).nmant <= 52:
            f64 = flat.astype(np.float64)  # exact: float16/32/64 embed in float64
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
    dtype : numpy.float32 or numpy.float64

    Returns
    -------
    mpmath.mpf
        ``2**(max(floor(log2|x|), e_min) - t + 1)``, and ``2**(e_min - t + 1)``
        for ``x = 0`` (``t`` = 24 or 53, ``e_min`` = -126 or -1022).

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
