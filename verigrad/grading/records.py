"""The records of a grade: verdicts, bug shapes, the tolerance parameters, and the Grade itself.

:class:`Grade` (one candidate in one dtype) holds a :class:`VariableGrade` per variable, an
:class:`EntryError` per wrong entry and a :class:`Diagnosis` per failing variable; the error
figures are :class:`~verigrad.grading.metrics.ErrorSummary` records.  Every record is frozen
and has a JSON-ready ``to_dict``.  The rule these records report is in the Notes of
:mod:`verigrad.grading`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from verigrad.grading.metrics import ErrorSummary, _json_float

__all__ = [
    "BugShape",
    "Diagnosis",
    "EntryError",
    "Grade",
    "ToleranceSource",
    "Tolerances",
    "VariableGrade",
    "Verdict",
    "WrongReason",
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
    complex data); :attr:`Grade.reason` says what.  NOT_EXERCISED: every entry is
    within tolerance, but some variable came back in a wider float type than the dtype
    under test (float64 for float32 inputs): the computation in that dtype never ran, so
    nothing was shown about it (a case meets ``expect = "pass"`` with it only when the
    candidate says ``allow_upcast = true``).  NO_ESTIMATE: a finite-difference row with
    nothing left to grade (every entry excluded); never returned by :func:`grade`.
    UNRESOLVED: no entry is wrong, but some are off by more than the tolerance capped at half
    the variable's scale while within the rounding noise of the dtype there (the cap binds:
    ``factor * A_k > cap * S_k``, as near a stationary point in a short dtype, where the
    gradient is a small difference of large terms); a correct gradient and a sign-flipped one
    are alike at such a point, so it is neither a pass nor a fail (``met`` is null).
    """

    PASS = "pass"
    FAIL = "fail"
    NONFINITE = "nonfinite"
    ERROR = "error"
    NOT_EXERCISED = "not exercised"
    NO_ESTIMATE = "no estimate"
    UNRESOLVED = "unresolved"


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
    MISSING_TERM: ``v = g - d_j``, ``d_j`` the gradient of one term of the loss (a sum of
    terms), named in :attr:`Diagnosis.term` ("missing the gradient of 0.01*sum(W1**2)").
    TERM_SIGN: ``v = g - 2 d_j``: the gradient of that term with its sign flipped.
    REVERSED: ``v`` is the truth reversed along some axes (a flipped convolution kernel);
    :attr:`Diagnosis.region` spells it, e.g. ``"k[::-1, ::-1]"``.
    OFFSET: ``v = g + c`` for a constant ``c != 0`` (:attr:`Diagnosis.factor`).
    BROADCAST: ``v`` is one value ``c`` in every entry (a reduction broadcast where the
    entries were meant); :attr:`Diagnosis.factor` is ``c``.
    WRONG_AXIS: ``v`` is constant along some (not all) axes along which the truth varies: the
    truth summed (or averaged) along them and broadcast back -- a reduction over the wrong
    axis -- or one slice of the truth broadcast where a sum was meant; :attr:`Diagnosis.region`
    says which (``"sum over axis 0, broadcast back"``, ``"W[0, :] broadcast along axis 0"``).
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
    MISSING_TERM = "missing_term"
    TERM_SIGN = "term_sign_flipped"
    REVERSED = "reversed"
    OFFSET = "offset"
    BROADCAST = "broadcast"
    WRONG_AXIS = "wrong_axis"


class WrongReason(enum.Enum):
    """Which test an entry failed (see the Notes of :mod:`verigrad.grading`)."""

    TOLERANCE = "tolerance"  # |v - g| > tau_k
    RELATIVE = "relative"  # relative guard on a nonzero true entry
    NONFINITE = "nonfinite"  # NaN or inf


class ToleranceSource(enum.Enum):
    """Which term of ``tau_k`` is binding (see the Notes of :mod:`verigrad.grading`)."""

    BASELINE = "baseline"  # factor * A_k
    CAP = "cap"  # cap * S_k
    FLOOR = "floor"  # factor * floor_ulps * ulp_p(S)
    GIVEN = "given"  # the caller's entry_tolerance (finite-difference rows)
    ENTRY = "entry"  # per-entry tolerances from the baseline's error model (tau_k the loosest)


@dataclass(frozen=True)
class Tolerances:
    """Parameters of the pass/fail rule (see the Notes of :mod:`verigrad.grading` for the formula).

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
    entry_lambda : float, default 2
        With an error model of the baseline (``grade(error_model=...)``), an entry whose
        baseline error is within the model's bound ``m_i`` gets its own tolerance
        ``min(tau_k, max(entry_lambda * m_i, 2 ulp_p(g_i)))``.  Must be >= 1.

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
    entry_lambda: float = 2.0

    def __post_init__(self) -> None:
        checks = (
            ("factor", lambda x: x >= 1,
             "a finite number >= 1 (a candidate cannot be asked to beat the float baseline)", 32),
            ("floor_ulps", lambda x: x >= 0, "a finite number >= 0", 4),
            ("cap", lambda x: 0 < x <= 1, "a number in (0, 1]", 0.5),
            ("guard_ulps", lambda x: x >= 0, "a finite number >= 0", 8),
            ("guard_relative", lambda x: 0 < x <= 1, "a number in (0, 1]", 0.5),
            ("entry_lambda", lambda x: x >= 1, "a finite number >= 1", 2),
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
                "guard_ulps": self.guard_ulps, "guard_relative": self.guard_relative,
                "entry_lambda": self.entry_lambda}


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
        As defined in the Notes of :mod:`verigrad.grading` (``inf`` for a non-finite value).
    tolerance : float
        The entry's tolerance (absolute): ``tau_k`` of the variable, or the entry's own.
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
    term : str or None
        For MISSING_TERM and TERM_SIGN, the term of the loss, as written in the case file.
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
    term: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``term`` only for the shapes that name one)."""
        out = {"variable": self.variable, "shape": self.shape.value,
               "factor": None if self.factor is None else _json_float(self.factor),
               "factor_text": self.factor_text, "rows": self.rows, "cols": self.cols,
               "region": self.region, "other": self.other, "message": self.message}
        if self.term is not None:
            out["term"] = self.term
        return out


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
    detection : float
        The tolerance of the largest true entry over its magnitude (see
        :attr:`detection_threshold`); NaN when not computed.
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
    detection: float = math.nan

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

    @property
    def detection_threshold(self) -> float:
        """The detection power of this grade: ``tau_i* / |g_i*|`` at the largest true entry ``i*``.

        An error of more than this fraction of the variable's largest true entry, at that
        entry, is caught ("would catch relative errors above 3e-7 here").  With one tolerance
        per variable it is ``tolerance / scale`` and smaller entries need a larger relative
        error; with per-entry tolerances (``tolerance_source`` ``entry``) each entry has its
        own.  ``inf`` for an all-zero truth, NaN when the variable could not be graded.
        """
        if self.detection == self.detection:
            return self.detection
        if not (self.tolerance == self.tolerance):
            return math.nan
        return self.tolerance / self.scale if self.scale > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"variable": self.variable, "shape": list(self.shape),
                "verdict": self.verdict.value, "returned_dtype": self.returned_dtype,
                "errors": self.errors.to_dict(), "baseline_errors": self.baseline.to_dict(),
                "scale": _json_float(self.scale), "tolerance": _json_float(self.tolerance),
                "tolerance_source": (None if self.tolerance_source is None
                                     else self.tolerance_source.value),
                "n_entries": self.n_entries, "n_wrong": self.n_wrong,
                "detects_relative": _json_float(self.detection_threshold),
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
            warnings; for ERROR, the reason; for UNRESOLVED, the reason first.
        """
        out = list(self.warnings)
        if self.verdict is Verdict.ERROR:
            out.append(f"{self.case} › {self.candidate} › {self.dtype}: {self.reason}")
        elif self.verdict is Verdict.UNRESOLVED:  # why it is neither pass nor fail comes first
            out.insert(0, f"{self.case} › {self.candidate} › {self.dtype}: {self.reason}")
        out.extend(d.message for d in self.diagnosis)
        entries = list(self.entry_messages)
        if max_entries is not None and len(entries) > max_entries:
            rest = len(entries) - max_entries
            entries = entries[:max_entries] + [f"… and {rest} more wrong entr{'y' if rest == 1 else 'ies'}"]
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
