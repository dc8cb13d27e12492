"""schemes (being split into one module per concept)."""

from verigrad.schemes._legacy import *  # noqa: F401,F403
from verigrad.schemes._legacy import (  # noqa: F401
    SCHEME_NAMES,
    Scheme,
    SchemeKind,
    StepMode,
    TruncationTerm,
    apply_scheme,
    default_step,
    default_step_grid,
    fornberg_weights,
    get_scheme,
    nominal_steps,
    representable_step,
    richardson_scheme,
    scheme_from_offsets,
    scheme_from_weights,
)
