"""Grade a candidate gradient against its certified exact value.

A *grade* compares what a candidate returned with the *truth* (the exact
gradient at the dtype's point, an object array of :class:`mpmath.mpf`) and with
the *float baseline* (the exact gradient expression evaluated naively in the
dtype under test).  Every error is computed exactly in mpmath on the binary
values involved and only then rounded to a Python float for reporting, so that
an error of one ulp of float64 is measured as exactly ``1.0``.

The module is pure: no I/O, no printing, no global mpmath precision.

Public surface
--------------
:func:`grade`
    candidate + truth + baseline -> :class:`Grade`.
:func:`relative_difference`, :func:`classic_check`
    the classic finite-difference gradient-check metric, for comparison.
:func:`ulp`
    the spacing of float32/float64 at a real number, exactly.

Records: :class:`Tolerances`, :class:`ErrorSummary`, :class:`EntryError`,
:class:`Diagnosis`, :class:`VariableGrade`, :class:`Grade`; enums
:class:`Verdict`, :class:`BugShape`, :class:`WrongReason`,
:class:`ToleranceSource`.

Notes
-----
Notation used throughout: for one variable with ``N`` entries, ``g_i`` is the
truth, ``v_i`` the candidate's value and ``b_i`` the float baseline, all taken
as the exact real numbers they represent.  ``p`` is the dtype under test with
``t`` significand bits (24 or 53) and smallest normal exponent ``e_min``
(-126 or -1022).

*ulp.*  ``ulp_p(x) = 2**(max(floor(log2|x|), e_min) - t + 1)`` for ``x != 0``
and ``ulp_p(0) = 2**(e_min - t + 1)`` (the subnormal spacing).  It is the
spacing of ``p`` in the binade of ``|x|``; at a power of two it is the spacing
*above*, so a value one float below ``1.0`` is ``0.5`` ulp away.

*Scales.*  ``S_k = max_i |g_i|`` over variable ``k`` (the variable's scale),
``S = max_k S_k`` over the whole gradient (the gradient's scale).

*Per entry* (:class:`EntryError`, always exact before the final rounding):

- absolute error ``|v_i - g_i|``;
- relative error ``|v_i - g_i| / |g_i|`` if ``g_i != 0``; for an exact zero of
  the truth, ``|v_i - g_i| / R`` with ``R = S_k`` (or ``S`` when the whole
  variable is zero); if the whole gradient is zero it is ``0`` for ``v_i = 0``
  and ``inf`` otherwise -- never a division by zero;
- ulps ``|v_i - g_i| / ulp_p(g_i)``, and ``|v_i - g_i| / ulp_p(R)`` for an
  exact zero of the truth.

*Per variable and overall* (:class:`ErrorSummary`; overall = over all
variables concatenated):

- norm-wise relative error ``||v - g||_2 / ||g||_2``; if ``||g||_2 = 0`` it is
  the absolute ``||v - g||_2``;
- symmetric relative difference ``||v - g||_2 / (||v||_2 + ||g||_2)``, ``0``
  when both norms are zero; always in ``[0, 1]``;
- ``max_ulps``, ``max_abs``, ``max_rel``: maxima of the entry figures.

A non-finite value has infinite absolute, relative, ulp and norm-wise errors
and an unknown (NaN) symmetric difference.

*Tolerance* (one absolute tolerance ``tau_k`` per variable)::

    A_k   = max_i |b_i - g_i|       over the finite baseline entries of k
    tau_k = max( min(factor * A_k, cap * S_k),  factor * floor_ulps * ulp_p(S) )

An entry is *wrong* when any of the following holds:

1. ``v_i`` is NaN or infinite (:attr:`WrongReason.NONFINITE`);
2. ``|v_i - g_i| > tau_k`` (:attr:`WrongReason.TOLERANCE`);
3. the *relative guard*: ``g_i`` is a nonzero normal number of ``p``, the
   baseline gets it to within ``guard_ulps * ulp_p(g_i)``, and yet
   ``|v_i - g_i| > guard_relative * |g_i|`` (:attr:`WrongReason.RELATIVE`).

Why this rule:

- The baseline is the reference for "as accurate as dtype p allows".  A
  correct candidate evaluates the same mathematics in another order, so its
  rounding errors are of the same *size* as the baseline's but land on other
  entries: any single baseline entry may be lucky (even exact).  ``A_k``, the
  worst baseline error over the variable, measures the rounding noise of the
  variable rather than of one entry, and is what makes float32 free of false
  alarms.
- ``factor = 32`` covers the ratio between summation orders: for a sum of
  ``n`` terms the worst-case bound is ``(n - 1) u sum|x|`` for recursive and
  ``ceil(log2 n) u sum|x|`` for pairwise summation, and the typical
  (random-walk) errors differ by about ``sqrt(n / log2 n)``, i.e. ~10 for
  ``n = 1000``; 32 leaves a factor ~3 on top.  It is still small enough that
  a relative error of 1e-4 of the gradient's scale fails in float32 and one of
  1e-10 fails in float64 (with baselines of a few ulps).
- The floor ``floor_ulps = 4`` ulps of the *gradient's* scale ``S`` (times the
  factor) covers variables on which the baseline is exact everywhere (a single
  bias, say), where ``A_k = 0`` tells nothing about the noise of another order.
  Exact zeros of the truth (dead ReLU units) are judged by this absolute rule:
  in float64 with ``S = 1`` a candidate returning ``1e-20`` there passes
  (``tau >= 128 * 2**-52 ~ 2.8e-14``), one returning ``1e-3`` fails.
- ``cap = 0.5``: however poor the naive evaluation, the baseline-derived
  part of the tolerance never exceeds half the variable's scale, so a
  candidate wrong by as much as the gradient itself (a factor 2, a sign flip)
  still fails.  When the cap binds, the grade says so in its warnings.
- The relative guard makes tiny-but-nonzero true entries visible: with
  ``S = 1`` an entry ``g_i = 1e-30`` returned as ``0`` passes the absolute
  test, but if the baseline got it to a few relative ulps the candidate's
  relative error ``1`` exceeds ``guard_relative = 0.5`` and the entry is
  wrong.  The guard only catches gross errors (zero, wrong sign, off by a
  factor >= 1.5 or <= 0.5), so a lucky baseline entry cannot cause a false
  alarm for a candidate whose noise is merely larger; it applies only to
  normal numbers, so a true subnormal flushed to zero by the dtype is not
  blamed on the candidate.

References
----------
N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
SIAM, 2002, ch. 4 (summation) and sec. 2.1 (ulp).
J.-M. Muller, "On the definition of ulp(x)", INRIA RR-5504, 2005.

Examples
--------
>>> import mpmath, numpy as np
>>> truth = {"w": np.array([mpmath.mpf(3) / 4, mpmath.mpf(-1) / 10], dtype=object)}
>>> base = {"w": np.array([0.75, -0.1])}
>>> g = grade(truth=truth, value={"w": np.array([1.5, -0.2])}, baseline=base,
...           dtype=np.float64, case="demo", candidate="hand")
>>> g.verdict, g.diagnosis[0].shape, g.diagnosis[0].factor
(<Verdict.FAIL: 'fail'>, <BugShape.SCALED: 'scaled'>, 2.0)
>>> g.diagnosis[0].message
'demo › w › float64: scaled by 2 (truth 0.75, got 1.5)'
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterable, Mapping, Sequence

import mpmath
import numpy as np
from mpmath import libmp

__all__ = [
    "BugShape",
    "Diagnosis",
    "EntryError",
    "ErrorSummary",
    "Grade",
    "ToleranceSource",
    "Tolerances",
    "VariableGrade",
    "Verdict",
    "WrongReason",
    "classic_check",
    "grade",
    "relative_difference",
    "ulp",
]

# ---------------------------------------------------------------------------
# enums and records
# ---------------------------------------------------------------------------


class Verdict(enum.Enum):
    """Outcome of a grade (or of one variable of it).

    PASS: every entry within tolerance.  FAIL: some entry wrong.
    NONFINITE: the candidate returned NaN or an infinity somewhere (the
    entries are listed in :attr:`Grade.wrong`).  ERROR: the candidate's
    return could not be graded (wrong shape, missing variable, non-numeric or
    complex data); :attr:`Grade.reason` says what.
    """

    PASS = "pass"
    FAIL = "fail"
    NONFINITE = "nonfinite"
    ERROR = "error"


class BugShape(enum.Enum):
    """Recognised shape of the error of one failing variable.

    ZERO: every entry is (within tolerance of) zero.
    SIGN_FLIP: ``v = -g``.
    SCALED: ``v = c g`` for a constant ``c`` (:attr:`Diagnosis.factor`).
    TRANSPOSED: ``v = g^T`` (square 2-D), or ``v = reshape(g^T)`` (non-square).
    SWAPPED: ``v`` is the truth of another variable of the same shape
    (:attr:`Diagnosis.other`).
    BLOCK: the wrong entries fill a sub-block (some rows, some columns, a
    contiguous region); :attr:`Diagnosis.region`, and the block's factor if
    the block itself is scaled.
    SCATTERED: wrong entries with no recognised pattern.
    UNKNOWN: no diagnosis attempted (non-finite values).
    """

    ZERO = "zero"
    SIGN_FLIP = "sign_flip"
    SCALED = "scaled"
    TRANSPOSED = "transposed"
    SWAPPED = "swapped"
    BLOCK = "block"
    SCATTERED = "scattered"
    UNKNOWN = "unknown"


class WrongReason(enum.Enum):
    """Which test an entry failed (see the module Notes)."""

    TOLERANCE = "tolerance"  # |v - g| > tau_k
    RELATIVE = "relative"  # relative guard on a nonzero true entry
    NONFINITE = "nonfinite"  # NaN or inf


class ToleranceSource(enum.Enum):
    """Which term of ``tau_k`` is binding (see the module Notes)."""

    BASELINE = "baseline"  # factor * A_k
    CAP = "cap"  # cap * S_k
    FLOOR = "floor"  # factor * floor_ulps * ulp_p(S)


@dataclass(frozen=True)
class Tolerances:
    """Parameters of the pass/fail rule (see the module Notes for the formula).

    Parameters
    ----------
    factor : float, default 32
        A candidate may be this many times worse than the float baseline's
        worst error on the variable.  Must be >= 1.
    floor_ulps : float, default 4
        The tolerance is at least ``factor * floor_ulps * ulp_p(S)``, ``S`` the
        gradient's scale.  Must be >= 0.
    cap : float, default 0.5
        The baseline-derived part of the tolerance is at most ``cap * S_k``.
        Must be in (0, 1].
    guard_ulps : float, default 8
        The relative guard applies to an entry when the baseline is within
        this many ulps of it.  Must be >= 0.
    guard_relative : float, default 0.5
        Relative error above which a guarded entry is wrong.  Must be in (0, 1].

    Examples
    --------
    >>> Tolerances(factor=64).factor
    64.0
    >>> Tolerances(factor=0.5)
    Traceback (most recent call last):
    ...
    ValueError: Tolerances(factor=0.5): factor must be a finite number >= 1 (a candidate cannot be asked to beat the float baseline); e.g. factor=32
    """

    factor: float = 32.0
    floor_ulps: float = 4.0
    cap: float = 0.5
    guard_ulps: float = 8.0
    guard_relative: float = 0.5

    def __post_init__(self) -> None:
        checks = (
            ("factor", lambda x: x >= 1,
             "a finite number >= 1 (a candidate cannot be asked to beat the float baseline)", 32),
            ("floor_ulps", lambda x: x >= 0, "a finite number >= 0", 4),
            ("cap", lambda x: 0 < x <= 1, "a number in (0, 1]", 0.5),
            ("guard_ulps", lambda x: x >= 0, "a finite number >= 0", 8),
            ("guard_relative", lambda x: 0 < x <= 1, "a number in (0, 1]", 0.5),
        )
        for name, ok, allowed, example in checks:
            raw = getattr(self, name)
            if isinstance(raw, bool) or not isinstance(raw, (int, float, np.integer, np.floating)):
                raise TypeError(
                    f"Tolerances({name}={raw!r}): {name} must be a number, "
                    f"got {type(raw).__name__}; e.g. {name}={example}")
            val = float(raw)
            if not (math.isfinite(val) and ok(val)):
                raise ValueError(
                    f"Tolerances({name}={raw!r}): {name} must be {allowed}; "
                    f"e.g. {name}={example}")
            object.__setattr__(self, name, val)

    def to_dict(self) -> dict[str, float]:
        """The parameters as a JSON-ready dict."""
        return {"factor": self.factor, "floor_ulps": self.floor_ulps, "cap": self.cap,
                "guard_ulps": self.guard_ulps, "guard_relative": self.guard_relative}


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
        against the scale, see the module Notes).

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
        """JSON-ready dict (non-finite floats as strings, see :meth:`Grade.to_dict`)."""
        return {"normwise_relative": _json_float(self.normwise_relative),
                "symmetric": _json_float(self.symmetric),
                "max_ulps": _json_float(self.max_ulps),
                "max_abs": _json_float(self.max_abs),
                "max_rel": _json_float(self.max_rel)}


@dataclass(frozen=True)
class EntryError:
    """One wrong entry.

    Attributes
    ----------
    variable : str
    index : tuple of int
        Index into the variable (``()`` for a scalar).
    truth : str
        The exact value, 17 significant digits (``mpmath.nstr``).
    value : float
        What the candidate returned (exact for float16/32/64 returns).
    abs_error, rel_error, ulps : float
        As defined in the module Notes (``inf`` for a non-finite value).
    tolerance : float
        ``tau_k`` of the variable (absolute).
    reason : WrongReason
        Which test failed.
    """

    variable: str
    index: tuple[int, ...]
    truth: str
    value: float
    abs_error: float
    rel_error: float
    ulps: float
    tolerance: float
    reason: WrongReason

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"variable": self.variable, "index": list(self.index), "truth": self.truth,
                "value": _json_float(self.value), "abs_error": _json_float(self.abs_error),
                "rel_error": _json_float(self.rel_error), "ulps": _json_float(self.ulps),
                "tolerance": _json_float(self.tolerance), "reason": self.reason.value}


@dataclass(frozen=True)
class Diagnosis:
    """Recognised shape of the error of one failing variable.

    Attributes
    ----------
    variable : str
    shape : BugShape
    factor : float or None
        The constant for SCALED (``c`` in ``v = c g``), -1 for SIGN_FLIP, 0 for
        ZERO, the block's factor for a scaled BLOCK; None otherwise.
    factor_text : str or None
        The factor as a recognisable fraction (``"2"``, ``"1/2"``, ``"4/3"``,
        ``"1/1000"``), None when it is not one (then ``factor`` is the
        least-squares value ``v.g / g.g``).
    rows, cols : str or None
        For BLOCK, the indices along axis 0 and axis 1 holding wrong entries,
        as compact ranges (``"2"``, ``"0:4"`` = 0..3, ``":"`` = all,
        ``"{1, 3, 5:8}"``); ``cols`` is None for 1-D variables.
    region : str or None
        For BLOCK, the variable indexed by the region, e.g. ``"W2[2, :]"``.
    other : str or None
        For SWAPPED, the variable whose gradient was returned.
    message : str
        Breadcrumb, e.g. ``"net › W2[2, :] › float64: scaled by 2 (truth
        0.4579, got 0.9158)"``.
    """

    variable: str
    shape: BugShape
    factor: float | None
    factor_text: str | None
    rows: str | None
    cols: str | None
    region: str | None
    other: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"variable": self.variable, "shape": self.shape.value,
                "factor": None if self.factor is None else _json_float(self.factor),
                "factor_text": self.factor_text, "rows": self.rows, "cols": self.cols,
                "region": self.region, "other": self.other, "message": self.message}


@dataclass(frozen=True)
class VariableGrade:
    """The grade of one variable.

    Attributes
    ----------
    variable : str
    shape : tuple of int
        The truth's shape.
    verdict : Verdict
    returned_dtype : str
        The dtype the candidate returned for this variable (``"?"`` if none).
    errors : ErrorSummary
        The candidate's errors (NaN when the variable is an ERROR).
    baseline : ErrorSummary
        The float baseline's errors, by the same metrics.
    scale : float
        ``S_k = max |g_i|``.
    tolerance : float
        ``tau_k`` (absolute), NaN when the variable is an ERROR.
    tolerance_source : ToleranceSource or None
        Which term of ``tau_k`` binds.
    n_entries, n_wrong : int
    diagnosis : Diagnosis or None
        For failing variables.
    message : str
        Empty for PASS; the reason otherwise.
    """

    variable: str
    shape: tuple[int, ...]
    verdict: Verdict
    returned_dtype: str
    errors: ErrorSummary
    baseline: ErrorSummary
    scale: float
    tolerance: float
    tolerance_source: ToleranceSource | None
    n_entries: int
    n_wrong: int
    diagnosis: Diagnosis | None
    message: str = ""

    @property
    def normwise_relative(self) -> float:
        """Shortcut for ``errors.normwise_relative``."""
        return self.errors.normwise_relative

    @property
    def symmetric(self) -> float:
        """Shortcut for ``errors.symmetric``."""
        return self.errors.symmetric

    @property
    def max_ulps(self) -> float:
        """Shortcut for ``errors.max_ulps``."""
        return self.errors.max_ulps

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"variable": self.variable, "shape": list(self.shape),
                "verdict": self.verdict.value, "returned_dtype": self.returned_dtype,
                "errors": self.errors.to_dict(), "baseline_errors": self.baseline.to_dict(),
                "scale": _json_float(self.scale), "tolerance": _json_float(self.tolerance),
                "tolerance_source": (None if self.tolerance_source is None
                                     else self.tolerance_source.value),
                "n_entries": self.n_entries, "n_wrong": self.n_wrong,
                "diagnosis": None if self.diagnosis is None else self.diagnosis.to_dict(),
                "message": self.message}


@dataclass(frozen=True)
class Grade:
    """The grade of one candidate in one dtype.

    Attributes
    ----------
    case, candidate : str
    dtype : str
        ``"float32"`` or ``"float64"``: the dtype under test.
    verdict : Verdict
    returned_dtype : str
        The dtype the candidate returned (``"float32"``; ``"mixed(float32,
        float64)"`` when variables differ; ``"?"`` when nothing usable).
    dtype_mismatch : bool
        The returned dtype differs from ``dtype`` for some variable.  A warning
        only: the values are graded exactly as returned (a float64 return is
        not rounded to float32).
    errors : ErrorSummary
        Over the whole gradient (NaN for ERROR).
    baseline : ErrorSummary
        The float baseline's errors over the whole gradient.
    scale : float
        The gradient's scale ``S``.
    variables : tuple of VariableGrade
        In the order of the truth mapping.
    wrong : tuple of EntryError
        Every wrong entry (never truncated), variable by variable, in C order.
    diagnosis : tuple of Diagnosis
        One per failing variable.
    reason : str
        One-line summary of the verdict.
    warnings : tuple of str
        Breadcrumbs that do not change the verdict (dtype mismatch, poor or
        non-finite baseline).
    tolerances : Tolerances
        The parameters used.
    entry_messages : tuple of str
        One breadcrumb per entry of :attr:`wrong`, in the same order.
    """

    case: str
    candidate: str
    dtype: str
    verdict: Verdict
    returned_dtype: str
    dtype_mismatch: bool
    errors: ErrorSummary
    baseline: ErrorSummary
    scale: float
    variables: tuple[VariableGrade, ...]
    wrong: tuple[EntryError, ...]
    diagnosis: tuple[Diagnosis, ...]
    reason: str
    warnings: tuple[str, ...] = ()
    tolerances: Tolerances = field(default_factory=Tolerances)
    entry_messages: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """``verdict is Verdict.PASS``."""
        return self.verdict is Verdict.PASS

    @property
    def normwise_relative(self) -> float:
        """Shortcut for ``errors.normwise_relative``."""
        return self.errors.normwise_relative

    @property
    def symmetric(self) -> float:
        """Shortcut for ``errors.symmetric``."""
        return self.errors.symmetric

    @property
    def max_ulps(self) -> float:
        """Shortcut for ``errors.max_ulps``."""
        return self.errors.max_ulps

    def variable(self, name: str) -> VariableGrade:
        """The grade of variable ``name`` (KeyError listing the names otherwise)."""
        for vg in self.variables:
            if vg.variable == name:
                return vg
        raise KeyError(f"no variable {name!r} in grade of {self.case}/{self.candidate}; "
                       f"variables: {', '.join(v.variable for v in self.variables)}")

    def messages(self, *, max_entries: int | None = None) -> list[str]:
        """Breadcrumb messages: warnings, then one per diagnosis, then per wrong entry.

        Parameters
        ----------
        max_entries : int or None
            Keep at most this many per-entry lines (followed by a line counting
            the rest); None keeps all.  :attr:`wrong` always has every entry.

        Returns
        -------
        list of str
            e.g. ``"logreg › w[3] › float32: rel err 4.2e-02 > tol 2.0e-05
            (truth 0.7310585786, got 0.762)"``.  Empty for a PASS without
            warnings; for ERROR, the reason.
        """
        out = list(self.warnings)
        if self.verdict is Verdict.ERROR:
            out.append(f"{self.case} › {self.candidate} › {self.dtype}: {self.reason}")
        out.extend(d.message for d in self.diagnosis)
        entries = list(self.entry_messages)
        if max_entries is not None and len(entries) > max_entries:
            rest = len(entries) - max_entries
            entries = entries[:max_entries] + [f"… and {rest} more wrong entries"]
        out.extend(entries)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data.

        Returns
        -------
        dict
            Keys ``case, candidate, dtype, verdict`` (lowercase string),
            ``returned_dtype, dtype_mismatch, reason, warnings, scale,
            tolerances, errors`` (``normwise_relative, symmetric, max_ulps,
            max_abs, max_rel``), ``baseline_errors``, ``variables``, ``wrong``
            (``variable, index`` list, ``truth`` decimal string, ``value`` ...),
            ``diagnosis`` (``variable, shape`` lowercase, ``factor`` ...) and
            ``messages``.  Finite floats stay floats; NaN, inf and -inf become
            the strings ``"nan"``, ``"inf"``, ``"-inf"`` so the result passes
            ``json.dumps(..., allow_nan=False)``; an absent factor is None.
        """
        return {
            "case": self.case, "candidate": self.candidate, "dtype": self.dtype,
            "verdict": self.verdict.value, "returned_dtype": self.returned_dtype,
            "dtype_mismatch": self.dtype_mismatch, "reason": self.reason,
            "warnings": list(self.warnings), "scale": _json_float(self.scale),
            "tolerances": self.tolerances.to_dict(),
            "errors": self.errors.to_dict(), "baseline_errors": self.baseline.to_dict(),
            "variables": [v.to_dict() for v in self.variables],
            "wrong": [w.to_dict() for w in self.wrong],
            "diagnosis": [d.to_dict() for d in self.diagnosis],
            "messages": self.messages(),
        }


def _json_float(x: float) -> float | str:
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


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
    """Exact errors of ``vals`` against ``g`` (see the module Notes)."""
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


def _raw_max(items: Iterable[tuple]) -> tuple:
    best = _FZERO
    for t in items:
        if libmp.mpf_gt(t, best):
            best = t
    return best


# ---------------------------------------------------------------------------
# formatting helpers
# ---------------------------------------------------------------------------


def _idx_str(index: tuple[int, ...]) -> str:
    return "" if not index else "[" + ", ".join(str(i) for i in index) + "]"


def _ranges(indices: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def _axis_spec(indices: Sequence[int], n: int) -> str:
    if len(indices) == n and n > 1:
        return ":"
    parts = [str(a) if b == a + 1 else f"{a}:{b}" for a, b in _ranges(indices)]
    return parts[0] if len(parts) == 1 else "{" + ", ".join(parts) + "}"


def _fraction_text(fr: Fraction) -> str:
    return str(fr.numerator) if fr.denominator == 1 else f"{fr.numerator}/{fr.denominator}"


def _num(x: float) -> str:
    return f"{x:.4g}"


# ---------------------------------------------------------------------------
# diagnosis
# ---------------------------------------------------------------------------


def _recognisable(fr: Fraction) -> bool:
    p, q = abs(fr.numerator), fr.denominator
    return q == 1 or p == 1 or (p <= 16 and q <= 16)


def _factor_candidates(c: float) -> list[Fraction]:
    """Recognisable fractions near ``c``: integers, 1/n, p/q with p, q <= 16."""
    if not math.isfinite(c):
        return []
    cands = {Fraction(0)}
    if abs(c) >= 0.5:
        for n in (math.floor(c), math.ceil(c)):
            if abs(n) < 2**62:
                cands.add(Fraction(n))
    if c != 0 and abs(c) <= 2:
        r = 1 / c
        for n in (math.floor(r), math.ceil(r)):
            if n != 0 and abs(n) < 2**62:
                cands.add(Fraction(1, n))
    for q in range(1, 17):
        p = round(c * q)
        if abs(p) <= 16:
            cands.add(Fraction(p, q))
    return sorted((f for f in cands if _recognisable(f)),
                  key=lambda f: (abs(float(f) - c), f.denominator))


def _fits(v: np.ndarray, g: np.ndarray, c: float, tau: float) -> bool:
    return bool(np.all(np.abs(v - c * g) <= max(1.0, abs(c)) * tau))


def _fit_factor(v: np.ndarray, g: np.ndarray, tau: float,
                *, require_recognised: bool) -> tuple[float, Fraction | None] | None:
    """Constant c with |v - c g| <= max(1, |c|) tau everywhere, or None.

    The least-squares ``c = v.g / g.g`` is rounded to the closest recognisable
    fraction that still fits; if none fits, ``c`` itself is returned (unless
    ``require_recognised``) when it fits.
    """
    gg = float(np.dot(g, g))
    if gg == 0.0 or not math.isfinite(gg):
        return None
    c = float(np.dot(v, g)) / gg
    for fr in _factor_candidates(c):
        if _fits(v, g, float(fr), tau):
            return float(fr), fr
    if not require_recognised and _fits(v, g, c, tau):
        return c, None
    return None


def _largest(g: np.ndarray, mask: np.ndarray | None = None) -> int:
    a = np.abs(g) if mask is None else np.where(mask, np.abs(g), -1.0)
    return int(np.argmax(a))


def _diagnose(*, name: str, shape: tuple[int, ...], g: np.ndarray, v: np.ndarray,
              wrong: np.ndarray, finite: np.ndarray, tau: float,
              others: Mapping[str, tuple[np.ndarray, float]], dtype: str,
              case: str) -> Diagnosis:
    """Recognise the bug shape of one failing variable (flat float64 arrays)."""

    def crumb(loc: str, text: str) -> str:
        return f"{case} › {loc} › {dtype}: {text}"

    def at(i: int) -> str:
        return f"truth {_num(g[i])}, got {_num(v[i])}"

    def at_precise(i: int) -> str:
        # scattered errors can be tiny relative ones: show enough digits to see them
        return f"truth {float(g[i]):.10g}, got {float(v[i]):.10g}"

    def make(shape_: BugShape, text: str, *, factor: float | None = None,
             ftext: str | None = None, loc: str = name, rows: str | None = None,
             cols: str | None = None, region: str | None = None,
             other: str | None = None) -> Diagnosis:
        return Diagnosis(name, shape_, factor, ftext, rows, cols, region, other,
                         crumb(loc, text))

    if not finite.all():
        bad = np.flatnonzero(~finite)
        listed = ", ".join(f"{name}{_idx_str(_unravel(int(i), shape))}={v[i]}"
                           for i in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        return make(BugShape.UNKNOWN,
                    f"non-finite values in {len(bad)} of {v.size} entries: {listed}{more}")

    def worst() -> int:
        return _largest(np.abs(v - g), wrong) if wrong.any() else _largest(np.abs(v - g))

    n_nonzero = int(np.count_nonzero(g))
    imax = _largest(g)
    # ZERO
    if np.all(np.abs(v) <= tau) and n_nonzero:
        return make(BugShape.ZERO,
                    f"all zero (largest truth {name}{_idx_str(_unravel(imax, shape))} = "
                    f"{_num(g[imax])})", factor=0.0, ftext="0")
    # SWAPPED
    for oname, (og, otau) in others.items():
        if og.shape == g.shape and np.count_nonzero(og) and \
                np.all(np.abs(v - og) <= max(tau, otau)):
            iw = worst()
            return make(BugShape.SWAPPED,
                        f"swapped with {oname} (got the gradient of {oname}; "
                        f"{name}{_idx_str(_unravel(iw, shape))}: {at(iw)})", other=oname)
    # TRANSPOSED
    if len(shape) == 2 and n_nonzero:
        gt = g.reshape(shape).T
        iw = worst()
        where_w = f"{name}{_idx_str(_unravel(iw, shape))}: {at(iw)}"
        if shape[0] == shape[1]:
            if not np.array_equal(gt, g.reshape(shape)) and \
                    np.all(np.abs(v - gt.reshape(-1)) <= tau):
                i, j = _unravel(iw, shape)
                return make(BugShape.TRANSPOSED,
                            f"transposed ({where_w} = truth of {name}[{j}, {i}])")
        elif np.all(np.abs(v - gt.reshape(-1)) <= tau):
            return make(BugShape.TRANSPOSED,
                        f"transposed and reshaped to {shape} ({where_w})")
    # SIGN_FLIP / SCALED
    fit = _fit_factor(v, g, tau, require_recognised=n_nonzero < 3)
    if fit is not None and fit[0] != 1.0:
        c, fr = fit
        if fr == -1:
            return make(BugShape.SIGN_FLIP, f"sign flipped ({at(imax)})",
                        factor=-1.0, ftext="-1")
        if fr is not None:
            text = _fraction_text(fr)
            shown = text if fr.denominator == 1 else f"{text} = {_num(c)}"
            return make(BugShape.SCALED, f"scaled by {shown} ({at(imax)})",
                        factor=c, ftext=text)
        if c != 0.0:
            return make(BugShape.SCALED,
                        f"scaled by {_num(c)} (least squares; not a simple fraction; "
                        f"{at(imax)})", factor=c)
    # BLOCK
    if len(shape) >= 1 and wrong.any():
        w = wrong.reshape(shape)
        axes = [sorted(set(np.flatnonzero(w.any(axis=tuple(j for j in range(len(shape))
                                                            if j != a))).tolist()))
                for a in range(len(shape))]
        size = math.prod(len(ix) for ix in axes)
        proper = any(len(ix) < n for ix, n in zip(axes, shape))
        fill = int(wrong.sum()) / size
        contiguous = all(ix[-1] - ix[0] + 1 == len(ix) for ix in axes)
        if proper and (fill == 1.0 or (contiguous and fill >= 0.5)):
            specs = [_axis_spec(ix, n) for ix, n in zip(axes, shape)]
            region = f"{name}[{', '.join(specs)}]"
            rows = specs[0]
            cols = specs[1] if len(shape) >= 2 else None
            iw = _largest(g, wrong)
            bfit = _fit_factor(v[wrong], g[wrong], tau, require_recognised=True)
            if bfit is not None and bfit[0] != 1.0:
                c, fr = bfit
                text = _fraction_text(fr)  # type: ignore[arg-type]
                if c == 0.0:
                    what = "zero"
                elif c == -1.0:
                    what = "sign flipped"
                else:
                    what = f"scaled by {text if fr.denominator == 1 else f'{text} = {_num(c)}'}"
                return make(BugShape.BLOCK, f"{what} ({at(iw)})", factor=c, ftext=text,
                            loc=region, rows=rows, cols=cols, region=region)
            n_w = int(wrong.sum())
            return make(BugShape.BLOCK,
                        f"{n_w} wrong entr{'y' if n_w == 1 else 'ies'}, all in this block "
                        f"({at(iw)})", loc=region, rows=rows, cols=cols, region=region)
    iw = worst()
    n_w = int(wrong.sum())
    return make(BugShape.SCATTERED,
                f"{n_w} of {v.size} entries wrong, no recognised pattern (worst "
                f"{name}{_idx_str(_unravel(iw, shape))}: {at_precise(iw)})")


def _unravel(i: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(j) for j in np.unravel_index(i, shape)) if shape else ()


# ---------------------------------------------------------------------------
# grade
# ---------------------------------------------------------------------------


def _validated_truth(truth: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], list[tuple]]]:
    if not isinstance(truth, Mapping) or not truth:
        raise ValueError(f"truth must be a non-empty mapping of variable name to array, "
                         f"got {type(truth).__name__}")
    out = {}
    for name, arr in truth.items():
        a = np.asarray(arr, dtype=object) if not isinstance(arr, np.ndarray) else arr
        try:
            raw = [_from_number(x) for x in a.reshape(-1)]
        except TypeError as exc:
            raise ValueError(f"truth[{name!r}] has an entry of type {exc.args[0]}; "
                             "entries must be mpmath.mpf (or exact ints/floats)") from None
        bad = [i for i, t in enumerate(raw) if t is None]
        if bad:
            raise ValueError(f"truth[{name!r}] is not finite at "
                             f"{name}{_idx_str(_unravel(bad[0], a.shape))}; "
                             "a certified truth must be finite")
        out[name] = (tuple(a.shape), raw)
    return out


def _validated_baseline(baseline: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]
                        ) -> dict[str, tuple[list[tuple | None], np.ndarray]]:
    if not isinstance(baseline, Mapping):
        raise ValueError(f"baseline must be a mapping of variable name to array, "
                         f"got {type(baseline).__name__}")
    missing = [k for k in shapes if k not in baseline]
    extra = [k for k in baseline if k not in shapes]
    if missing or extra:
        raise ValueError(f"baseline variables {list(baseline)} do not match the truth's "
                         f"{list(shapes)} (missing {missing}, extra {extra})")
    out = {}
    for name, shape in shapes.items():
        b = np.asarray(baseline[name])
        if b.shape != shape:
            raise ValueError(f"baseline[{name!r}] has shape {b.shape}, "
                             f"the truth has {shape}")
        try:
            raw, disp = _convert_array(b)
        except TypeError as exc:
            raise ValueError(f"baseline[{name!r}]: {exc.args[0]}") from None
        out[name] = (raw, np.isnan(disp))
    return out


def _read_candidate(value: Any, shapes: Mapping[str, tuple[int, ...]]
                    ) -> tuple[dict[str, tuple[list[tuple | None], np.ndarray, np.ndarray, str]],
                               dict[str, str], list[str], dict[str, str]]:
    """Read the untrusted return: (usable variables, per-variable errors, all error
    messages in order, returned dtype names).  Usable variables map to (exact raw
    entries, float64 view, NaN mask, dtype name)."""
    names = list(shapes)
    errors_msgs: list[str] = []
    cand: dict[str, tuple[list[tuple | None], np.ndarray, np.ndarray, str]] = {}
    var_error: dict[str, str] = {}
    returned: dict[str, str] = {}
    if not isinstance(value, Mapping):
        errors_msgs.append(f"the candidate returned {type(value).__name__}, "
                           f"expected a mapping of variables {names}")
        value = {}
    else:
        for extra in (k for k in value if k not in shapes):
            errors_msgs.append(f"unexpected variable {extra!r} returned; "
                               f"expected variables: {', '.join(names)}")
    for name in names:
        if name not in value:
            var_error[name] = f"{name}: missing from the returned gradient"
            continue
        try:
            arr = np.asarray(value[name])
        except Exception as exc:  # noqa: BLE001 - untrusted object
            var_error[name] = f"{name}: cannot be read as an array ({exc})"
            continue
        returned[name] = arr.dtype.name
        if arr.shape != shapes[name]:
            var_error[name] = f"{name}: expected shape {shapes[name]}, got {arr.shape}"
            continue
        try:
            raw, disp = _convert_array(arr)
        except TypeError as exc:
            var_error[name] = f"{name}: {exc.args[0]}"
            continue
        cand[name] = (raw, disp, np.isnan(disp), arr.dtype.name)
    errors_msgs.extend(var_error[n] for n in names if n in var_error)
    return cand, var_error, errors_msgs, returned


def grade(
    *,
    truth: Mapping[str, np.ndarray],
    value: Mapping[str, np.ndarray],
    baseline: Mapping[str, np.ndarray],
    dtype: Any,
    case: str,
    candidate: str,
    tolerances: Tolerances = Tolerances(),
) -> Grade:
    """Grade a candidate gradient against the certified truth.

    Parameters
    ----------
    truth : mapping of str to ndarray of mpmath.mpf
        Per variable, the exact gradient at the dtype's point, in the
        variable's shape (0-d for scalars).  The mapping order is the variable
        order of the report.  Must be finite.
    value : mapping of str to array_like
        What the candidate returned.  Not trusted: a missing or extra variable,
        a wrong shape, complex, boolean or non-numeric data give
        :attr:`Verdict.ERROR`; NaN/inf give :attr:`Verdict.NONFINITE`.  Any real
        dtype is graded exactly as returned.
    baseline : mapping of str to ndarray of ``dtype``
        The float baseline: the exact gradient expression evaluated naively in
        ``dtype``.  Same variables and shapes as ``truth`` (ValueError
        otherwise).  Non-finite entries are allowed and give no allowance.
    dtype : numpy.float32 or numpy.float64
        The dtype under test.
    case, candidate : str
        Names, for breadcrumbs.
    tolerances : Tolerances
        Parameters of the rule (module Notes).

    Returns
    -------
    Grade

    Raises
    ------
    ValueError
        For invalid ``truth``, ``baseline`` or ``dtype`` (the caller's inputs,
        not the candidate's).

    Notes
    -----
    Per variable ``k``: ``A_k = max |b_i - g_i|`` over finite baseline
    entries, ``S_k = max |g_i|``, ``S = max_k S_k`` and
    ``tau_k = max(min(factor A_k, cap S_k), factor floor_ulps ulp_p(S))``.
    Entry ``i`` is wrong if ``v_i`` is not finite, if ``|v_i - g_i| > tau_k``,
    or if ``g_i`` is a nonzero normal number, ``|b_i - g_i| <= guard_ulps
    ulp_p(g_i)`` and ``|v_i - g_i| > guard_relative |g_i|``.  All comparisons
    are exact; see the module docstring for the metrics and the reasons.

    Examples
    --------
    >>> import mpmath, numpy as np
    >>> t = {"b": np.array(mpmath.mpf(1) / 3, dtype=object)}
    >>> g = grade(truth=t, value={"b": np.float32(1 / 3)}, baseline={"b": np.float32(1 / 3)},
    ...           dtype=np.float32, case="c", candidate="x")
    >>> g.verdict, round(g.max_ulps, 3)
    (<Verdict.PASS: 'pass'>, 0.333)
    """
    fmt = _fmt_of(dtype)
    if not isinstance(tolerances, Tolerances):
        raise ValueError(f"tolerances={tolerances!r} must be a verigrad Tolerances record")
    tv = _validated_truth(truth)
    shapes = {k: s for k, (s, _) in tv.items()}
    bv = _validated_baseline(baseline, shapes)
    case, candidate = str(case), str(candidate)
    names = list(tv)

    cand, var_error, errors_msgs, returned = _read_candidate(value, shapes)

    rdt = sorted(set(returned.values()))
    returned_dtype = rdt[0] if len(rdt) == 1 else ("?" if not rdt else
                                                    f"mixed({','.join(rdt)})")
    dtype_mismatch = any(d != fmt.name for d in returned.values())
    warnings: list[str] = []
    if dtype_mismatch:
        odd = [f"{n} as {d}" for n, d in returned.items() if d != fmt.name]
        warnings.append(f"{case} › {candidate} › {fmt.name}: dtype mismatch, returned "
                        f"{', '.join(odd)} for {fmt.name} inputs "
                        f"({fmt.name} not exercised; graded as returned)")

    # --- scales and tolerances ----------------------------------------------
    gabs = {k: [libmp.mpf_abs(t) for t in raw] for k, (_, raw) in tv.items()}
    s_k = {k: _raw_max(gabs[k]) for k in names}
    s_all = _raw_max(s_k.values())
    tol = tolerances
    f_factor = libmp.from_float(tol.factor)
    floor = libmp.mpf_mul(libmp.mpf_mul(f_factor, libmp.from_float(tol.floor_ulps)),
                          libmp.mpf_shift(libmp.fone, _ulp_exp(s_all, fmt)))
    guard_rel = libmp.from_float(tol.guard_relative)
    guard_ulps = libmp.from_float(tol.guard_ulps)

    variables: list[VariableGrade] = []
    wrong: list[EntryError] = []
    entry_msgs: list[str] = []
    cand_sums, base_sums = _zero_sums(), _zero_sums()
    cand_sum_ok = True
    pending: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]] = []
    g64s: dict[str, np.ndarray] = {}
    taus: dict[str, float] = {}
    var_parts: dict[str, dict[str, Any]] = {}

    for name in names:
        shape, graw = tv[name]
        ga = gabs[name]
        kulp = [_ulp_exp(t, fmt) for t in ga]
        zero_ref = s_k[name] if s_k[name] != _FZERO else s_all
        zero_kulp = _ulp_exp(zero_ref, fmt)
        g64 = np.array([_to_float(t) for t in graw], dtype=np.float64)
        g64s[name] = g64
        braw, b_nan = bv[name]
        base = _entry_errors(braw, b_nan, graw, ga, kulp, zero_ref, zero_kulp)
        base_sums += base.sums
        bad_base = [i for i, t in enumerate(braw) if t is None]
        if bad_base:
            warnings.append(f"{case} › {name} › {fmt.name}: the float baseline is not finite "
                            f"at {len(bad_base)} entr{'y' if len(bad_base) == 1 else 'ies'} "
                            f"(first {name}{_idx_str(_unravel(bad_base[0], shape))}); "
                            "they give no allowance")
        # entries where the baseline itself has no correct digit: the expression is ill-conditioned
        # as written in this dtype there, and a candidate as poor as the baseline still passes
        lost = []
        for i, t in enumerate(braw):
            if t is not None and g64[i] != 0:
                rel_b = abs(_to_float(t) - g64[i]) / abs(g64[i])
                if rel_b >= 0.5:
                    lost.append((rel_b, i))
        if lost:
            rel_b, i = max(lost)
            warnings.append(f"{case} › {name} › {fmt.name}: the float baseline has no correct digit at "
                            f"{len(lost)} entr{'y' if len(lost) == 1 else 'ies'} (worst "
                            f"{name}{_idx_str(_unravel(i, shape))}: relative error {rel_b:.2g}): the gradient "
                            f"expression is ill-conditioned as written in {fmt.name}; only at those entries is "
                            "the tolerance that poor, and a stable formulation does far better")
        # the variable's tolerance comes from the entries where the baseline has correct digits, so
        # one ill-conditioned entry cannot loosen the others; the lost entries get their own below
        lost_set = {i for _, i in lost}
        kept = [d for j, d in enumerate(base.diff) if d is not None and j not in lost_set]
        a_k = _raw_max(kept) if kept else _raw_max(d for d in base.diff if d is not None)
        base_part = libmp.mpf_mul(f_factor, a_k)
        cap = libmp.mpf_mul(libmp.from_float(tol.cap), s_k[name])
        source = ToleranceSource.BASELINE
        poor = libmp.mpf_gt(base_part, cap)
        if poor:
            base_part, source = cap, ToleranceSource.CAP
        tau = base_part
        if libmp.mpf_ge(floor, tau):
            tau, source = floor, ToleranceSource.FLOOR
        tau_f = _to_float(tau)
        taus[name] = tau_f
        tau_at: dict[int, tuple] = {}
        for i in lost_set:
            t_i = libmp.mpf_mul(f_factor, base.diff[i])
            if libmp.mpf_gt(t_i, cap):
                t_i = cap
            tau_at[i] = t_i if libmp.mpf_gt(t_i, tau) else tau
        if poor:
            warnings.append(f"{case} › {name} › {fmt.name}: the float baseline is poor (max "
                            f"error {_num(_to_float(a_k))} vs scale "
                            f"{_num(_to_float(s_k[name]))}): ill-conditioned in {fmt.name}; "
                            f"tolerance limited to {tau_f:.2g} (cap {tol.cap:g} x scale)")

        if name not in cand:
            variables.append(VariableGrade(
                variable=name, shape=shape, verdict=Verdict.ERROR,
                returned_dtype=returned.get(name, "?"), errors=ErrorSummary.unknown(),
                baseline=base.summary(), scale=_to_float(s_k[name]), tolerance=tau_f,
                tolerance_source=source, n_entries=len(graw), n_wrong=0, diagnosis=None,
                message=var_error.get(name, "")))
            cand_sum_ok = False
            continue

        vraw, vdisp, vnan, vdt = cand[name]
        ce = _entry_errors(vraw, vnan, graw, ga, kulp, zero_ref, zero_kulp)
        cand_sums += ce.sums
        wmask = np.zeros(len(graw), dtype=bool)
        finite = np.array([t is not None for t in vraw], dtype=bool)
        for i, d in enumerate(ce.diff):
            reason = None
            if d is None:
                reason = WrongReason.NONFINITE
            elif libmp.mpf_gt(d, tau_at.get(i, tau)):
                reason = WrongReason.TOLERANCE
            elif graw[i] != _FZERO and _floor_log2(ga[i]) >= fmt.emin and braw[i] is not None \
                    and libmp.mpf_gt(d, libmp.mpf_mul(guard_rel, ga[i])):
                eb = base.diff[i]
                if libmp.mpf_le(libmp.mpf_shift(eb, -kulp[i]), guard_ulps):
                    reason = WrongReason.RELATIVE
            if reason is None:
                continue
            wmask[i] = True
            idx = _unravel(i, shape)
            tstr = mpmath.nstr(mpmath.mp.make_mpf(graw[i]), 17)
            wrong.append(EntryError(
                variable=name, index=idx, truth=tstr, value=float(vdisp[i]),
                abs_error=ce.abs[i], rel_error=ce.rel[i], ulps=ce.ulps[i], tolerance=tau_f,
                reason=reason))
            entry_msgs.append(_entry_message(
                case=case, where=f"{name}{_idx_str(idx)}", dtype=fmt.name, reason=reason,
                truth=graw[i], value=float(vdisp[i]), abs_err=ce.abs[i], rel_err=ce.rel[i],
                tau=tau_f, gabs=ga[i], tol=tol))
        n_wrong = int(wmask.sum())
        if not finite.all():
            verdict = Verdict.NONFINITE
        elif n_wrong:
            verdict = Verdict.FAIL
        else:
            verdict = Verdict.PASS
        var_parts[name] = dict(
            variable=name, shape=shape, verdict=verdict, returned_dtype=vdt,
            errors=ce.summary(), baseline=base.summary(), scale=_to_float(s_k[name]),
            tolerance=tau_f, tolerance_source=source, n_entries=len(graw), n_wrong=n_wrong)
        if verdict is not Verdict.PASS:
            pending.append((name, vdisp, wmask, finite, tau_f))
        variables.append(None)  # type: ignore[arg-type]  # filled below

    # --- diagnosis -------------------------------------------------------------
    diagnoses: dict[str, Diagnosis] = {}
    for name, vdisp, wmask, finite, tau_f in pending:
        others = {o: (g64s[o], taus[o]) for o in names
                  if o != name and tv[o][0] == tv[name][0]}
        diagnoses[name] = _diagnose(
            name=name, shape=tv[name][0], g=g64s[name], v=vdisp, wrong=wmask,
            finite=finite, tau=tau_f, others=others, dtype=fmt.name, case=case)
    for j, name in enumerate(names):
        if variables[j] is None:
            parts = var_parts[name]
            diag = diagnoses.get(name)
            msg = "" if diag is None else diag.message
            variables[j] = VariableGrade(**parts, diagnosis=diag, message=msg)

    # --- verdict ---------------------------------------------------------------
    n_entries = sum(len(tv[n][1]) for n in names)
    if errors_msgs:
        verdict = Verdict.ERROR
        reason = "; ".join(errors_msgs)
    elif any(v.verdict is Verdict.NONFINITE for v in variables):
        verdict = Verdict.NONFINITE
        bad = [w for w in wrong if w.reason is WrongReason.NONFINITE]
        listed = ", ".join(f"{w.variable}{_idx_str(w.index)}={w.value}" for w in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        reason = f"non-finite values at {len(bad)} of {n_entries} entries: {listed}{more}"
    elif wrong:
        verdict = Verdict.FAIL
        failing = [v for v in variables if v.verdict is Verdict.FAIL]
        parts_s = ", ".join(f"{v.variable} ({_shape_phrase(v.diagnosis)})" for v in failing)
        reason = (f"{len(wrong)} of {n_entries} entries wrong in {len(failing)} "
                  f"variable{'s' if len(failing) != 1 else ''}: {parts_s}")
    else:
        verdict = Verdict.PASS
        reason = f"all {n_entries} entries within tolerance"
    errors = (ErrorSummary(
        normwise_relative=cand_sums.normwise(), symmetric=cand_sums.symmetric(),
        max_ulps=max((v.errors.max_ulps for v in variables), default=0.0),
        max_abs=max((v.errors.max_abs for v in variables), default=0.0),
        max_rel=max((v.errors.max_rel for v in variables), default=0.0))
        if cand_sum_ok and not errors_msgs else ErrorSummary.unknown())
    if verdict is Verdict.PASS:
        reason += (f" (max {_num(errors.max_ulps)} ulps, norm-wise relative "
                   f"{errors.normwise_relative:.2e})")
    base_summary = ErrorSummary(
        normwise_relative=base_sums.normwise(), symmetric=base_sums.symmetric(),
        max_ulps=max((v.baseline.max_ulps for v in variables), default=0.0),
        max_abs=max((v.baseline.max_abs for v in variables), default=0.0),
        max_rel=max((v.baseline.max_rel for v in variables), default=0.0))
    return Grade(
        case=case, candidate=candidate, dtype=fmt.name, verdict=verdict,
        returned_dtype=returned_dtype, dtype_mismatch=dtype_mismatch, errors=errors,
        baseline=base_summary, scale=_to_float(s_all), variables=tuple(variables),
        wrong=tuple(wrong), diagnosis=tuple(diagnoses[n] for n in names if n in diagnoses),
        reason=reason, warnings=tuple(warnings), tolerances=tolerances,
        entry_messages=tuple(entry_msgs))


def _shape_phrase(d: Diagnosis | None) -> str:
    if d is None:
        return "?"
    if d.shape is BugShape.SCALED:
        return f"scaled by {d.factor_text or _num(d.factor or math.nan)}"
    if d.shape is BugShape.SWAPPED:
        return f"swapped with {d.other}"
    if d.shape is BugShape.BLOCK:
        return f"block {d.region}"
    return d.shape.value.replace("_", " ")


def _entry_message(*, case: str, where: str, dtype: str, reason: WrongReason, truth: tuple,
                   value: float, abs_err: float, rel_err: float, tau: float, gabs: tuple,
                   tol: Tolerances) -> str:
    ts = mpmath.nstr(mpmath.mp.make_mpf(truth), 10)
    got = f"{value:.7g}"
    head = f"{case} › {where} › {dtype}: "
    if reason is WrongReason.NONFINITE:
        return head + f"non-finite value (truth {ts}, got {got})"
    if reason is WrongReason.RELATIVE:
        return head + (f"rel err {rel_err:.1e} > {tol.guard_relative:.1e} on a nonzero entry "
                       f"the float baseline gets within {tol.guard_ulps:g} ulps "
                       f"(truth {ts}, got {got})")
    if gabs == _FZERO:
        return head + f"abs err {abs_err:.1e} > tol {tau:.1e} (truth 0, got {got})"
    with mpmath.workprec(_PREC):
        rtol = float(mpmath.mpf(tau) / mpmath.mp.make_mpf(gabs))
    return head + f"rel err {rel_err:.1e} > tol {rtol:.1e} (truth {ts}, got {got})"


# ---------------------------------------------------------------------------
# the classic metric
# ---------------------------------------------------------------------------


def _flat_raw(x: Any, what: str, keys: Sequence[str] | None = None) -> list[tuple | None]:
    if isinstance(x, Mapping):
        arrays = [x[k] for k in (keys if keys is not None else list(x))]
    elif isinstance(x, (list, tuple)) and x and all(
            isinstance(a, np.ndarray) for a in x):
        arrays = list(x)
    else:
        arrays = [x]
    out: list[tuple | None] = []
    for a in arrays:
        arr = np.asarray(a)
        try:
            out.extend(_convert_array(arr)[0])
        except TypeError as exc:
            raise ValueError(f"{what}: {exc.args[0]}") from None
    return out


def relative_difference(a: Any, b: Any) -> float:
    """The classic gradient-check metric ``||a - b||_2 / (||a||_2 + ||b||_2)``.

    Parameters
    ----------
    a, b : array_like, sequence of ndarray, or mapping of str to array_like
        Flattened and concatenated (a mapping in ``a``'s key order; ``b`` must
        have the same keys); any real dtype, object arrays of mpmath.mpf
        included.  The total sizes must agree.

    Returns
    -------
    float
        Computed exactly (192-bit sums of exact squares, rounded once to
        float); 0 when both are zero; NaN if any entry is NaN or infinite.

    Examples
    --------
    >>> relative_difference(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    0.0
    >>> relative_difference(np.array([1.0]), np.array([-1.0]))
    1.0
    """
    keys = None
    if isinstance(a, Mapping):
        if not isinstance(b, Mapping) or set(a) != set(b):
            raise ValueError("relative_difference: a and b must be mappings with the same "
                             f"keys, got {list(a)} and "
                             f"{list(b) if isinstance(b, Mapping) else type(b).__name__}")
        keys = list(a)
    ra = _flat_raw(a, "relative_difference(a)", keys)
    rb = _flat_raw(b, "relative_difference(b)", keys)
    if len(ra) != len(rb):
        raise ValueError(f"relative_difference: a has {len(ra)} entries, b has {len(rb)}")
    if any(t is None for t in ra) or any(t is None for t in rb):
        return math.nan
    mk = mpmath.mp.make_mpf
    with mpmath.workprec(_PREC):
        sd = sa = sb = mk(_FZERO)
        for x, y in zip(ra, rb):
            d = libmp.mpf_sub(x, y, 0)
            sd += mk(libmp.mpf_mul(d, d, _PREC, _RN))
            sa += mk(libmp.mpf_mul(x, x, _PREC, _RN))
            sb += mk(libmp.mpf_mul(y, y, _PREC, _RN))
        den = mpmath.sqrt(sa) + mpmath.sqrt(sb)
        return float(mpmath.sqrt(sd) / den) if den else 0.0


def classic_check(candidate_value: Any, fd_value: Any, threshold: float = 1e-7) -> bool:
    """The classic pass/fail check: ``relative_difference(candidate, fd) <= threshold``.

    This is what most gradient checkers do (with a finite difference as the
    oracle); verigrad provides it only for comparison with :func:`grade`.

    Parameters
    ----------
    candidate_value, fd_value : array_like or mapping of str to array_like
        See :func:`relative_difference`.
    threshold : float, default 1e-7
        Positive and finite.

    Returns
    -------
    bool
        False if the difference is NaN.

    Examples
    --------
    >>> classic_check(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]), 1e-7)
    True
    """
    t = float(threshold)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"classic_check(threshold={threshold!r}): threshold must be a "
                         "positive finite number, e.g. threshold=1e-7")
    r = relative_difference(candidate_value, fd_value)
    return bool(r <= t)
