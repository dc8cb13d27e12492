"""The error figures: per entry (absolute, relative, ulps) and per array (norm-wise, symmetric).

:class:`ErrorSummary` is the record of one array's (or the whole gradient's) errors against
the truth.  ``_exact_entry`` and :class:`_ExactSums` *define* every figure: computed exactly
from raw floats (see :mod:`verigrad.grading.exact`), only the result rounded, as in the Notes
of :mod:`verigrad.grading`.  The grade computes them on float64 arrays instead
(:mod:`verigrad.grading.entries`, :class:`_Sums`) and returns the same floats.
``_json_float`` is how a figure is written to JSON (NaN and infinities as strings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import mpmath
from mpmath import libmp

from verigrad.grading.exact import _FZERO, _PREC, _RN, _to_float

__all__ = ["ErrorSummary"]


@dataclass(frozen=True)
class ErrorSummary:
    """Aggregate errors of one array (or of the whole gradient) against the truth.

    Attributes
    ----------
    normwise_relative : float
        ``||v - g||_2 / ||g||_2``; the absolute ``||v - g||_2`` if ``g = 0``.
    symmetric : float
        ``||v - g||_2 / (||v||_2 + ||g||_2)``, 0 when both are zero.
    max_ulps : float
        Largest entry error in ulps of the dtype under test.
    max_abs : float
        Largest absolute entry error.
    max_rel : float
        Largest relative entry error (exact zeros of the truth measured
        against the scale, see the Notes of :mod:`verigrad.grading`).

    NaN means unknown (the grade is an ERROR, or a value was NaN for
    ``symmetric``); ``inf`` means a non-finite value.
    """

    normwise_relative: float
    symmetric: float
    max_ulps: float
    max_abs: float
    max_rel: float

    @classmethod
    def unknown(cls) -> "ErrorSummary":
        """A summary whose every figure is NaN."""
        nan = math.nan
        return cls(nan, nan, nan, nan, nan)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite floats as strings, see :meth:`verigrad.grading.records.Grade.to_dict`)."""
        return {"normwise_relative": _json_float(self.normwise_relative),
                "symmetric": _json_float(self.symmetric),
                "max_ulps": _json_float(self.max_ulps),
                "max_abs": _json_float(self.max_abs),
                "max_rel": _json_float(self.max_rel)}


def _json_float(x: float) -> float | str:
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


# ---------------------------------------------------------------------------
# exact per-entry figures and sums (the definition; the arrays in entries.py reproduce them)
# ---------------------------------------------------------------------------


def _exact_entry(v: tuple | None, g: tuple, gabs: tuple, kulp: int, zero_ref: tuple,
                 zero_kulp: int) -> tuple[tuple | None, float, float, float]:
    """``(|v - g|, abs, rel, ulps)`` of one entry, exactly (see the Notes of :mod:`verigrad.grading`).

    ``kulp`` is the ulp exponent of ``|g|`` (``zero_kulp`` when ``g = 0``); ``zero_ref`` the
    reference of relative errors at exact zeros of the truth.  The difference is exact and each
    figure is rounded once to float (the relative error after a ``_PREC``-bit quotient).
    """
    if v is None:
        return None, math.inf, math.inf, math.inf
    d = libmp.mpf_abs(libmp.mpf_sub(v, g, 0))  # exact
    a = _to_float(d)
    if g != _FZERO:
        return d, a, _to_float(libmp.mpf_div(d, gabs, _PREC, _RN)), _to_float(libmp.mpf_shift(d, -kulp))
    if zero_ref != _FZERO:
        r = _to_float(libmp.mpf_div(d, zero_ref, _PREC, _RN))
    else:
        r = 0.0 if d == _FZERO else math.inf
    return d, a, r, _to_float(libmp.mpf_shift(d, -zero_kulp))


@dataclass
class _ExactSums:
    """Sums of squares (``_PREC``-bit mpf, rounded at every addition): ||d||^2, ||v||^2, ||g||^2.

    The reference computation of the norms; :class:`_Sums` reproduces its results from
    float64 sums with error bounds and falls back to it when they cannot decide.
    """

    d: Any
    v: Any
    g: Any
    nonfinite: bool = False
    nan: bool = False

    @classmethod
    def of(cls, vals: Sequence[tuple | None], g: Sequence[tuple], nan_mask: Sequence[bool]) -> "_ExactSums":
        """The sums of one array against one variable's truth, entry by entry in C order."""
        mk = mpmath.mp.make_mpf
        sums = _zero_sums()
        with mpmath.workprec(_PREC):
            sd, sv, sg = sums.d, sums.v, sums.g
            for i, v in enumerate(vals):
                gi = g[i]
                sg += mk(libmp.mpf_mul(gi, gi, _PREC, _RN))
                if v is None:
                    sums.nonfinite = True
                    sums.nan |= bool(nan_mask[i])
                    continue
                d = libmp.mpf_abs(libmp.mpf_sub(v, gi, 0))
                sd += mk(libmp.mpf_mul(d, d, _PREC, _RN))
                sv += mk(libmp.mpf_mul(v, v, _PREC, _RN))
            sums.d, sums.v, sums.g = sd, sv, sg
        return sums

    def __iadd__(self, other: "_ExactSums") -> "_ExactSums":
        with mpmath.workprec(_PREC):
            self.d += other.d
            self.v += other.v
            self.g += other.g
        self.nonfinite |= other.nonfinite
        self.nan |= other.nan
        return self

    def normwise(self) -> float:
        if self.nonfinite:
            return math.inf
        with mpmath.workprec(_PREC):
            nd = mpmath.sqrt(self.d)
            return float(nd / mpmath.sqrt(self.g)) if self.g else float(nd)

    def symmetric(self) -> float:
        if self.nan:
            return math.nan
        if self.nonfinite:
            return 1.0
        with mpmath.workprec(_PREC):
            den = mpmath.sqrt(self.v) + mpmath.sqrt(self.g)
            return float(mpmath.sqrt(self.d) / den) if den else 0.0


def _zero_sums() -> _ExactSums:
    z = mpmath.mp.make_mpf(_FZERO)
    return _ExactSums(z, z, z)


class _Uncertain(Exception):
    """The float64 sums cannot decide the rounding of a figure (the caller computes it exactly)."""


_CHECK_PREC = 320  # bits of the certified evaluation of norms from the float64 sums


@dataclass
class _Sums:
    """Sums of squares ||d||^2, ||v||^2, ||g||^2 as exact raw tuples ``d, v, g`` of float64
    parts, each with a bound (``bd, bv, bg``) of its distance to the exact sum.

    :meth:`normwise` and :meth:`symmetric` return exactly what :class:`_ExactSums` returns
    (the ``_PREC``-bit computation, rounded to float): the figure is evaluated at
    ``_CHECK_PREC`` bits from the parts, the bounds and the rounding of the ``_PREC``-bit
    computation (at most ``2 n + 8`` roundings of ``2**-_PREC`` relative for ``n`` entries)
    give an interval, and when both ends round to the same float that is the answer;
    otherwise the exact sums are computed (``legacy``), entry by entry.
    """

    d: tuple
    bd: tuple
    v: tuple
    bv: tuple
    g: tuple
    bg: tuple
    n: int
    nonfinite: bool = False
    nan: bool = False
    legacy: Callable[[], _ExactSums] | None = None
    parts: list["_Sums"] = field(default_factory=list)

    @classmethod
    def zero(cls) -> "_Sums":
        """The empty sum (identity of ``+=``)."""
        return cls(_FZERO, _FZERO, _FZERO, _FZERO, _FZERO, _FZERO, 0)

    def __iadd__(self, other: "_Sums") -> "_Sums":
        add = libmp.mpf_add
        self.d, self.bd = add(self.d, other.d, 0), add(self.bd, other.bd, 0)
        self.v, self.bv = add(self.v, other.v, 0), add(self.bv, other.bv, 0)
        self.g, self.bg = add(self.g, other.g, 0), add(self.bg, other.bg, 0)
        self.n += other.n
        self.nonfinite |= other.nonfinite
        self.nan |= other.nan
        self.parts.append(other)
        return self

    def exact(self) -> _ExactSums:
        """The reference sums (every part's, added in order as the reference adds them)."""
        if self.legacy is not None:
            return self.legacy()
        total = _zero_sums()
        for p in self.parts:
            total += p.exact()
        return total

    def normwise(self) -> float:
        try:
            return self._normwise()
        except _Uncertain:
            return self.exact().normwise()

    def symmetric(self) -> float:
        try:
            return self._symmetric()
        except _Uncertain:
            return self.exact().symmetric()

    # -- certified evaluation ---------------------------------------------------------------

    def _rel(self, x: tuple, b: tuple) -> Any:
        """Relative bound ``b / x`` (mpf) of a positive sum; _Uncertain if it is not small."""
        mk = mpmath.mp.make_mpf
        if x == _FZERO or libmp.mpf_sign(x) <= 0:
            raise _Uncertain
        r = mk(b) / mk(x)
        if r > mpmath.ldexp(1, -60):
            raise _Uncertain
        return r

    def _exact_zero(self, x: tuple, b: tuple) -> bool:
        if x == _FZERO and b == _FZERO:
            return True
        if libmp.mpf_le(x, b):  # cannot tell zero from nonzero
            raise _Uncertain
        return False

    def _certified(self, y: Any, w: Any) -> float:
        """The float nearest to every number within a relative ``w`` of ``y`` (else _Uncertain)."""
        w = w + mpmath.mpf(self.n * 2 + 16) * mpmath.ldexp(1, -_PREC + 1) + mpmath.ldexp(1, -_CHECK_PREC + 8)
        lo, hi = float(y * (1 - w)), float(y * (1 + w))
        if lo != hi or not (2.0 ** -1021 <= abs(lo) <= 2.0 ** 1020):
            raise _Uncertain
        return lo

    def _normwise(self) -> float:
        if self.nonfinite:
            return math.inf
        with mpmath.workprec(_CHECK_PREC):
            mk = mpmath.mp.make_mpf
            if self._exact_zero(self.d, self.bd):
                return 0.0
            wd = self._rel(self.d, self.bd)
            if self._exact_zero(self.g, self.bg):
                return self._certified(mpmath.sqrt(mk(self.d)), wd / 2 * (1 + wd))
            wg = self._rel(self.g, self.bg)
            y = mpmath.sqrt(mk(self.d) / mk(self.g))
            return self._certified(y, (wd + wg) / 2 * (1 + 2 * (wd + wg)))

    def _symmetric(self) -> float:
        if self.nan:
            return math.nan
        if self.nonfinite:
            return 1.0
        with mpmath.workprec(_CHECK_PREC):
            mk = mpmath.mp.make_mpf
            zv = self._exact_zero(self.v, self.bv)
            zg = self._exact_zero(self.g, self.bg)
            if zv and zg:
                return 0.0
            if self._exact_zero(self.d, self.bd):
                return 0.0
            wd = self._rel(self.d, self.bd)
            wv = mpmath.mpf(0) if zv else self._rel(self.v, self.bv)
            wg = mpmath.mpf(0) if zg else self._rel(self.g, self.bg)
            y = mpmath.sqrt(mk(self.d)) / (mpmath.sqrt(mk(self.v)) + mpmath.sqrt(mk(self.g)))
            w = (wd + max(wv, wg)) / 2
            return self._certified(y, w * (1 + 2 * w))
