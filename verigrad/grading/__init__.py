"""grading (being split into one module per concept)."""

from verigrad.grading._legacy import *  # noqa: F401,F403
from verigrad.grading._legacy import (  # noqa: F401
    BugShape,
    Grade,
    ToleranceSource,
    Tolerances,
    Verdict,
    WrongReason,
    classic_check,
    grade,
    relative_difference,
    ulp,
)
