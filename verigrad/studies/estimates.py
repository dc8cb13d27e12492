"""How far an error estimate can be trusted: a method's estimates against the true errors of a sweep.

Shared by the linear sweeps (:mod:`verigrad.studies.sweep`, schemes with an
:attr:`~verigrad.schemes.Scheme.error_reference` such as ``richardson(...)``) and the adaptive
ones (:mod:`verigrad.studies.adaptive`, Ridders and numDeriv).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from verigrad.schemes.adaptive import UNDERSTATEMENT_FACTOR

__all__ = ["EstimateGrade", "grade_error_estimates"]


@dataclass(frozen=True)
class EstimateGrade:
    """How an error estimate compares with the true error over a sweep.

    Attributes
    ----------
    rows : int
        Rows with a finite error and a finite error estimate.
    understated : int
        Rows where ``|E| > factor * estimate`` (the estimate promises more accuracy than there is).
    factor : float
        The flagging factor (:data:`UNDERSTATEMENT_FACTOR`, 10).
    median_ratio, max_ratio : float
        Of ``|E| / estimate`` over the rows (an honest, conservative estimate has ratios <= 1).
    worst_step : float
        The step of the row with the largest ratio (NaN without rows).
    verdict : str
        ``"trustworthy"`` (no row understated), ``"understated"`` or ``"no estimate"``.
    """

    rows: int
    understated: int
    factor: float
    median_ratio: float
    max_ratio: float
    worst_step: float
    verdict: str

    def __str__(self) -> str:
        if self.verdict == "no estimate":
            return "error estimate: none to grade"
        return (f"error estimate {self.verdict}: |E|/estimate median {self.median_ratio:.2g}, max "
                f"{self.max_ratio:.2g} (at h = {self.worst_step:.2g}); {self.understated} of {self.rows} "
                f"steps understated by more than {self.factor:g}x")


def grade_error_estimates(steps: Sequence[float], errors: Sequence[float], estimates: Sequence[float], *,
                          factor: float = UNDERSTATEMENT_FACTOR) -> EstimateGrade:
    """Compare error estimates with the true errors, step by step.

    Parameters
    ----------
    steps, errors, estimates : sequences of float
        Per row: the step, the true signed error E and the method's (non-negative) estimate.
    factor : float
        An estimate is *understated* when ``|E| > factor * estimate``.

    Returns
    -------
    EstimateGrade

    Examples
    --------
    >>> grade_error_estimates([1e-3, 1e-2], [1e-12, -5e-9], [1e-11, 1e-10]).understated
    1
    """
    h, e, s = (np.asarray(a, dtype=np.float64) for a in (steps, errors, estimates))
    ok = np.isfinite(e) & np.isfinite(s) & (s >= 0)
    if not ok.any():
        return EstimateGrade(0, 0, factor, math.nan, math.nan, math.nan, "no estimate")
    ae, se, hh = np.abs(e[ok]), s[ok], h[ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(se > 0, ae / se, np.where(ae > 0, np.inf, 0.0))
    under = int(np.sum(ae > factor * se))
    k = int(np.argmax(ratio))
    return EstimateGrade(int(ok.sum()), under, factor, float(np.median(ratio)), float(ratio[k]), float(hh[k]),
                         "understated" if under else "trustworthy")


