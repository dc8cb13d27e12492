"""studies (being split into one module per concept)."""

from verigrad.studies._legacy import *  # noqa: F401,F403
from verigrad.studies._legacy import (  # noqa: F401
    Direction,
    _nodes,
    batched_leaves,
    coordinate_direction,
    entry_steps,
    fd_gradient,
    fd_split,
    fd_sweep_split,
    non_analytic_sites,
    random_direction,
    recommended_step,
    run_study,
)
