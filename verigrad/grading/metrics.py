"""The error figures: per entry (absolute, relative, ulps) and per array (norm-wise, symmetric).

:class:`ErrorSummary` is the record of one array's (or the whole gradient's) errors against
the truth; ``_entry_errors`` computes every figure exactly from raw floats (see
:mod:`verigrad.grading.exact`) and rounds only the result, as defined in the Notes of
:mod:`verigrad.grading`.  ``_json_float`` is how a figure is written to JSON (NaN and
infinities as strings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

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
# per-variable computation
# ---------------------------------------------------------------------------


@dataclass
class _Sums:
    """Sums of squares (192-bit mpf) for norms: ||d||^2, ||v||^2, ||g||^2."""

    d: Any
    v: Any
    g: Any
    nonfinite: bool = False
    nan: bool = False

    def __iadd__(self, other: "_Sums") -> "_Sums":
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


def _zero_sums() -> _Sums:
    z = mpmath.mp.make_mpf(_FZERO)
    return _Sums(z, z, z)


@dataclass
class _Errors:
    """Per-entry errors of one array against the truth of one variable."""

    diff: list[tuple | None]  # exact |v - g| (None: non-finite value)
    abs: list[float]
    rel: list[float]
    ulps: list[float]
    sums: _Sums

    def summary(self) -> ErrorSummary:
        return ErrorSummary(
            normwise_relative=self.sums.normwise(), symmetric=self.sums.symmetric(),
            max_ulps=max(self.ulps, default=0.0), max_abs=max(self.abs, default=0.0),
            max_rel=max(self.rel, default=0.0))


def _entry_errors(vals: Sequence[tuple | None], nan_mask: Sequence[bool],
                  g: Sequence[tuple], gabs: Sequence[tuple], kulp: Sequence[int],
                  zero_ref: tuple, zero_kulp: int) -> _Errors:
    """Exact errors of ``vals`` against ``g`` (see the Notes of :mod:`verigrad.grading`)."""
    diff: list[tuple | None] = []
    a_f: list[float] = []
    r_f: list[float] = []
    u_f: list[float] = []
    mk = mpmath.mp.make_mpf
    sums = _zero_sums()
    with mpmath.workprec(_PREC):
        sd, sv, sg = sums.d, sums.v, sums.g
        for i, v in enumerate(vals):
            gi = g[i]
            sg += mk(libmp.mpf_mul(gi, gi, _PREC, _RN))
            if v is None:
                diff.append(None)
                a_f.append(math.inf)
                r_f.append(math.inf)
                u_f.append(math.inf)
                sums.nonfinite = True
                sums.nan |= bool(nan_mask[i])
                continue
            d = libmp.mpf_abs(libmp.mpf_sub(v, gi, 0))  # exact
            diff.append(d)
            a_f.append(_to_float(d))
            if gi != _FZERO:
                r_f.append(_to_float(libmp.mpf_div(d, gabs[i], _PREC, _RN)))
                u_f.append(_to_float(libmp.mpf_shift(d, -kulp[i])))
            else:
                if zero_ref != _FZERO:
                    r_f.append(_to_float(libmp.mpf_div(d, zero_ref, _PREC, _RN)))
                else:
                    r_f.append(0.0 if d == _FZERO else math.inf)
                u_f.append(_to_float(libmp.mpf_shift(d, -zero_kulp)))
            sd += mk(libmp.mpf_mul(d, d, _PREC, _RN))
            sv += mk(libmp.mpf_mul(v, v, _PREC, _RN))
        sums.d, sums.v, sums.g = sd, sv, sg
    return _Errors(diff, a_f, r_f, u_f, sums)
