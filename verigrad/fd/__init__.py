"""Finite-difference estimates: directions, steps, nodes and :func:`fd_gradient` (the float part).

* ``directions``: the direction e of a perturbation (coordinate or seeded random);
* ``steps``: the nominal step per entry and the rule of thumb eps^(1/(p+1));
* ``nodes``: the nodes y_k = fl_p(x_p + c_k h_p e), rounded once, and batches of them;
* ``estimate``: the full finite-difference gradient in a float dtype;
* ``extrapolation``: adaptive methods (Ridders, numDeriv) on the loss along a line, per coordinate.

The exact split of these estimates against the truth is in :mod:`verigrad.studies`;
the kinks and domain boundaries their stencils may cross in :mod:`verigrad.kinks`.
Neither is imported here.
"""

from __future__ import annotations

from verigrad.fd.directions import Direction, coordinate_direction, random_direction, user_direction
from verigrad.fd.estimate import fd_directional, fd_gradient, fd_gradients, non_analytic_sites
from verigrad.fd.extrapolation import AdaptiveGradient, adaptive_directional, adaptive_gradient
from verigrad.fd.nodes import batched_leaves
from verigrad.fd.steps import entry_steps, recommended_step

__all__ = ["Direction", "coordinate_direction", "random_direction", "user_direction", "entry_steps",
           "recommended_step", "batched_leaves", "fd_gradient", "fd_gradients", "fd_directional", "non_analytic_sites",
           "AdaptiveGradient", "adaptive_directional", "adaptive_gradient"]
