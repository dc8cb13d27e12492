"""Grade a candidate gradient against its certified exact value.

A *grade* compares what a candidate returned with the *truth* (the exact
gradient at the dtype's point: an object array of :class:`mpmath.mpf`, or a
:class:`DDTruth` of float64 arrays ``hi + lo``) and with the *float baseline*
(the exact gradient expression evaluated naively in the dtype under test).
Every error is the exact value on the binary numbers involved, rounded once to
a Python float for reporting, so that an error of one ulp of float64 is
measured as exactly ``1.0``; it is computed on numpy arrays, with mpmath only
where float64 bounds cannot decide (see *Computation* in the Notes).

The package is pure: no I/O, no printing, no global mpmath precision.

Public surface
--------------
:func:`grade`
    candidate + truth + baseline -> :class:`Grade`.
:func:`relative_difference`, :func:`classic_check`
    the classic finite-difference gradient-check metric, for comparison.
:func:`ulp`
    the spacing of float32/float64 at a real number, exactly.
:func:`baseline_error_model`
    per entry, a bound of the float baseline's rounding error in any order (per-entry tolerances).

:class:`DDTruth`
    a truth given as double-double float64 arrays (no Python object per entry).

Records: :class:`Tolerances`, :class:`ErrorSummary`, :class:`EntryError`,
:class:`Diagnosis`, :class:`VariableGrade`, :class:`Grade`; enums
:class:`Verdict`, :class:`BugShape`, :class:`WrongReason`,
:class:`ToleranceSource`.

Modules
-------
``records``   the records above and their JSON form;
``exact``     exact reading of binary floats, ``ulp``, :class:`DDTruth`, error-free float64 transforms;
``metrics``   the error figures (per entry, norm-wise, symmetric) defined exactly, :class:`ErrorSummary`;
``entries``   the same figures and decisions on float64 arrays, exact where they matter;
``shapes``    bug-shape recognition (:class:`Diagnosis`);
``grader``    :func:`grade`: validation, tolerances, wrong entries, verdict, messages;
``classic``   :func:`relative_difference`, :func:`classic_check`.

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

*Per-entry tolerances* (with ``grade(error_model=m)``, ``m`` from
:func:`baseline_error_model`: ``m_i`` a first-order bound of the rounding error of entry
``i`` of the gradient expression evaluated in ``p``, in any order of its sums; see
:mod:`verigrad.grading.errormodel`)::

    tau_i = min( tau_k,  max(entry_lambda * m_i,  2 * ulp_p(g_i)) )     (entry_lambda = 2)

for each entry where ``g_i`` is a nonzero normal number of ``p``, the baseline is finite and
not an entry without correct digits, and ``|b_i - g_i| <= m_i`` (the baseline's own error,
known exactly, is explained by the model); ``tau_k`` elsewhere.  Rule 2 below then reads
``|v_i - g_i| > tau_i``.  ``tau_i`` is computed in float64 and is a float64 number, so the
decisions against it are exact.


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
  still fails.  When the cap binds, the grade says so in its warnings.  A variable whose
  rounding noise reaches ``cap * S_k`` (the noise: the tolerance before the cap, or the noise of
  its reductions from the error model, :meth:`ErrorModel.reduction_noise`, over the entries the
  baseline gets right) cannot be resolved by the dtype at this point: an entry of it off by more than its tolerance
  but within the noise is *unresolved*, not wrong -- a correct and a sign-flipped gradient are
  alike there (near a stationary point in a short dtype).  A grade with such entries and no
  wrong one has the verdict ``unresolved`` (docs/numerics.md, "Verdicts").
- The per-entry rule replaces the variable's worst baseline error by the entry's own
  conditioning: ``m_i`` is small where the entry is a short, well-conditioned computation and
  large where it is a sum of many terms that cancel, for the baseline and for any correct
  reordering alike.  ``m_i = min(W_i, 4.5 sigma_i)``: ``W_i`` the worst-case first-order bound,
  ``sigma_i`` the spread of the entry's rounding error measured by propagating a seeded random
  perturbation of each rounding's size through the graph (the larger of a random order and the
  natural and reversed loops for sums and products; :func:`baseline_error_spread`), so
  ``tau_i = max(9 sigma_i, 2 ulp(g_i))`` where that binds (``[check] entry_sigmas``).  Measured
  over 12,198 float32 evaluations of every shipped case (reordered graphs and every correct
  candidate) and 3,901 grades of 36 rewritten correct formulas, the worst correct error is
  2.80 ``sigma_i``: a margin of 3.2 (docs/numerics.md).
- The relative guard makes tiny-but-nonzero true entries visible: with
  ``S = 1`` an entry ``g_i = 1e-30`` returned as ``0`` passes the absolute
  test, but if the baseline got it to a few relative ulps the candidate's
  relative error ``1`` exceeds ``guard_relative = 0.5`` and the entry is
  wrong.  The guard only catches gross errors (zero, wrong sign, off by a
  factor >= 1.5 or <= 0.5), so a lucky baseline entry cannot cause a false
  alarm for a candidate whose noise is merely larger; it applies only to
  normal numbers, so a true subnormal flushed to zero by the dtype is not
  blamed on the candidate.

*Computation.*  The definitions above are exact; the grade evaluates them on
float64 arrays without a Python object per entry (:mod:`verigrad.grading.entries`)
and returns the same floats, bit for bit:

- the truth of a variable is read as a float64 expansion ``g0 + g1 + g2``
  (159 bits; an mpf truth with more significant bits keeps a bound ``rho`` of
  the rest) -- for a :class:`DDTruth`, ``hi + lo`` itself; ``v_i - g_i`` is then
  exact in a few error-free ``two_sum`` steps and held as a double-double with
  a proved bound (relative ``2**-104``);
- every reported figure (absolute, relative, ulps, their maxima, the norm-wise
  and symmetric norms, whose sums of squares use error-free products and an
  error-free summation tree) comes with a proved error bound, and is accepted
  only where the bound leaves no doubt about its rounding to float64 (the
  nearest float, as mpmath rounds: a bound that could reach a rounding
  boundary is "undecided"); ulps are powers of two, so ``abs * 2**-k`` is exact;
- every comparison (the tolerance, the relative guard) is made in float64
  unless it is within a relative ``1e-12`` of its threshold, and every maximum
  that enters the tolerance (``A_k``, ``S_k``) is read exactly among the
  entries that can reach it;
- undecided entries, close decisions, the wrong entries' figures, and values
  that are not exactly float64 (object arrays, ``longdouble``, integers beyond
  ``2**53``) or outside ``[2**-900, 2**1000]`` are computed exactly, one by one,
  by the defining mpmath code; an undecided norm is recomputed exactly from
  every entry.

The only rounding between a certified truth and the number graded is the one
that made it a :class:`DDTruth`: with ``hi = fl(m)``, ``lo = fl(m - hi)`` of a
certified value ``m``, ``|m - (hi + lo)| <= 2**-106 |m|`` (``|m| > 2**-960``),
i.e. below ``10**-31`` relative, ``2**-53`` ulp of float64 and ``2**-82`` ulp of
float32 -- far below anything a grade reports, and within the certificate's
radius for a truth certified to 32 digits or fewer.  The grade is then exactly
that of the number ``hi + lo``; a truth that *is* ``hi + lo`` (the vectorised
engine's) grades identically in either form.

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

from verigrad.grading.classic import classic_check, relative_difference
from verigrad.grading.errormodel import baseline_error_model
from verigrad.grading.exact import DDTruth, ulp
from verigrad.grading.grader import grade
from verigrad.grading.metrics import ErrorSummary
from verigrad.grading.records import (
    BugShape,
    Diagnosis,
    EntryError,
    Grade,
    ToleranceSource,
    Tolerances,
    VariableGrade,
    Verdict,
    WrongReason,
)

__all__ = [
    "BugShape",
    "DDTruth",
    "Diagnosis",
    "EntryError",
    "ErrorSummary",
    "Grade",
    "ToleranceSource",
    "Tolerances",
    "VariableGrade",
    "Verdict",
    "WrongReason",
    "baseline_error_model",
    "classic_check",
    "grade",
    "relative_difference",
    "ulp",
]
