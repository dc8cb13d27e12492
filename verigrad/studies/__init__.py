"""Finite differences against the truth: the exact truncation / step / round-off split.

For a linear scheme (offsets c_k, weights w_k), a direction e, dtype p and a
nominal step h (DESIGN.md, "Finite differences"):

* h_p = fl_p(h) (or the representable step ``(x+h)-x`` on request);
* nodes y_k = fl_p(x_p + c_k h_p e), rounded *once* from the exact value;
* F_k = f_p(y_k), the loss evaluated in dtype p (the expression, or the case's
  own ``loss_code``); D_float = fl_p(sum_k fl_p(w_k) F_k / h_p), accumulated in p;
* D_exact = sum_k w_k f(x_p + c_k h_p e) / h_p and D_nodes = sum_k w_k f(y_k) / h_p
  in mpmath, at a precision raised with |log2 h| so that the differences of
  exact values keep their digits.

Then T = D_exact - g*, S = D_nodes - D_exact, R = D_float - D_nodes and
E = D_float - g* = T + S + R, with g* the certified directional derivative.
The complex step Im f(x + i h_p e)/h_p is evaluated in complex64/complex128 and
exactly with mpmath complex numbers; it has S = 0 for coordinate directions.

Modules:

* ``sweep``: a step sweep along one direction (:func:`run_study`): the parts per step,
  their models, the optimal step and the slopes;
* ``split``: the full-gradient split, every coordinate at one or several steps
  (:func:`fd_split`, :func:`fd_sweep_split`);
* ``exact``: the exact losses at the nodes, shared by both;
* ``adaptive``: Ridders and numDeriv swept over their first step, the exact split of the entry
  each returns, and how far their error estimates can be trusted (:func:`run_adaptive_study`).

The float estimates themselves (directions, steps, nodes, :func:`verigrad.fd.fd_gradient`)
are in :mod:`verigrad.fd`; kinks and domain boundaries that a stencil crosses in
:mod:`verigrad.kinks`.
"""

from __future__ import annotations

from verigrad.studies.split import FDSplit, fd_split, fd_sweep_split
from verigrad.studies.sweep import Observed, Study, StudyModel, StudyRow, run_study
from verigrad.studies.adaptive import AdaptiveStudy, run_adaptive_study
from verigrad.studies.estimates import EstimateGrade, grade_error_estimates

__all__ = ["StudyRow", "StudyModel", "Observed", "Study", "run_study", "FDSplit", "fd_split", "fd_sweep_split",
           "AdaptiveStudy", "EstimateGrade", "grade_error_estimates", "run_adaptive_study"]
