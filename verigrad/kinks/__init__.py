"""kinks (being split into one module per concept)."""

from verigrad.kinks._legacy import *  # noqa: F401,F403
from verigrad.kinks._legacy import (  # noqa: F401
    Boundary,
    SiteKind,
    SiteRule,
    accept_at_kinks,
    at_kink,
    distance_along,
    fd_crossings,
    fd_kink_adjustment,
    find_sites,
    kink_acceptance,
    kink_analysis,
    kink_limit,
    one_sided_gradient,
    recommend_steps,
    safe_steps,
    site_values,
    stencil_crossings,
    study_kinks,
    subgradient_set,
)
