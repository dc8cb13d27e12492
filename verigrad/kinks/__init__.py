"""Kinks, domains and subgradients: no false alarms at ReLU, abs and max.

The most common false failure of a gradient checker is a finite-difference
stencil that straddles a non-differentiable point (``relu`` at 0, ``abs``,
``maximum``/``max`` with ties, Huber written with ``minimum``) or leaves the
loss's domain (``log``, ``sqrt`` near 0).  verigrad knows the expression, so it
knows these places exactly.  This package

* finds every *site* of the loss graph (:func:`find_sites`): a kink (the
  derivative jumps where a condition value is 0) or a domain boundary (the loss
  or its derivative is undefined beyond it), each as an entry-wise condition on
  an argument node, e.g. ``relu(Z1) at Z1 = 0``;
* evaluates the condition values exactly (:func:`site_values`), their distance
  along a direction (:func:`distance_along`), and whether the nodes of a
  stencil lie on another side than the point (:func:`stencil_crossings`,
  :func:`fd_crossings`, :func:`safe_steps`);
* at a point exactly on a kink (:func:`at_kink`), computes the certified
  one-sided partial derivatives (:func:`one_sided_gradient`) and the set of
  valid gradients a candidate may return (:func:`subgradient_set`), and
  grades a candidate against the element of that set nearest to it
  (:func:`kink_acceptance`), stating the convention it used
  (``relu'(0) = 0 (the left derivative of relu) at Z1[2, 0]``).

Modules, in the order they build on each other:

* ``sites``: :class:`Site` and :func:`find_sites`;
* ``conditions``: exact condition values (:func:`site_values`) and their signs;
* ``crossings``: distances along a direction and stencil crossings;
* ``subgradients``: points on a kink (:func:`at_kink`) and the set of valid gradients;
* ``onesided``: one-sided derivatives and the limit of a scheme at a kink (:func:`kink_limit`);
* ``acceptance``: grading a candidate at kinks (:func:`kink_acceptance`, :func:`accept_at_kinks`);
* ``fdgradient``: a full finite-difference gradient near sites (:func:`fd_crossings`,
  :func:`fd_kink_adjustment`);
* ``steps``: steps that avoid sites (:func:`safe_steps`, :func:`recommend_steps`,
  :func:`study_kinks`).

The finite-difference estimates themselves (directions, steps, nodes) are in
:mod:`verigrad.fd`, below this package.

References
----------
F. H. Clarke, *Optimization and Nonsmooth Analysis*, Wiley, 1983, ch. 2.
J. Bolte and E. Pauwels, "Conservative set valued fields, automatic
differentiation, stochastic gradient methods and deep learning", Math.
Program. 188 (2021) 19-51.
A. Griewank and A. Walther, *Evaluating Derivatives*, 2nd ed., SIAM, 2008,
ch. 14 (piecewise differentiable functions).

Examples
--------
>>> import verigrad as vg
>>> from verigrad.kinks import at_kink, find_sites
>>> case = vg.load_case_text('''
... name = "relu-at-zero"
... loss = "a * relu(w * x + b)"
... [symbols]
... x = { constant = true, value = 2.0 }
... a = { value = 3.0 }
... w = { value = 0.5 }
... b = { value = -1.0 }
... ''')
>>> model = vg.compile_case(case)
>>> [s.text for s in find_sites(model)]
['relu(w * x + b) at w * x + b = 0']
>>> [(k.site.name, k.entries) for k in at_kink(model, model.point)]
[('relu', ((),))]
"""

from __future__ import annotations

from verigrad.kinks.acceptance import (KinkAcceptance, KinkAnalysis, PerEntryAcceptance, accept_at_kinks,
                                       kink_acceptance, kink_analysis)
from verigrad.kinks.conditions import nondifferentiable_error, site_values
from verigrad.kinks.crossings import Crossing, SiteDistance, distance_along, stencil_crossings
from verigrad.kinks.fdgradient import FDAdjustment, FDCrossings, fd_crossings, fd_kink_adjustment
from verigrad.kinks.onesided import OneSided, directional_one_sided, kink_limit, one_sided_gradient
from verigrad.kinks.sites import Boundary, Site, SiteKind, SiteRule, find_sites
from verigrad.kinks.steps import (RecommendedSteps, SafeStep, StudyKinks, recommend_steps, safe_steps,
                                  study_kinks)
from verigrad.kinks.subgradients import AtKink, Choice, SubgradientSet, at_kink, subgradient_set

__all__ = [
    "recommend_steps", "RecommendedSteps",
    "SiteKind", "SiteRule", "Boundary", "Site", "find_sites", "site_values",
    "SiteDistance", "distance_along", "Crossing", "stencil_crossings", "AtKink", "at_kink",
    "OneSided", "one_sided_gradient", "PerEntryAcceptance", "accept_at_kinks",
    "SafeStep", "safe_steps", "FDCrossings", "fd_crossings", "kink_limit",
    "Choice", "SubgradientSet", "subgradient_set", "KinkAcceptance", "KinkAnalysis", "kink_analysis",
    "kink_acceptance", "FDAdjustment", "fd_kink_adjustment", "StudyKinks", "study_kinks",
    "directional_one_sided", "nondifferentiable_error",
]
