"""Finite-difference schemes as immutable values with exact coefficients.

One module per concept:

- :mod:`verigrad.schemes.weights`: exact Fornberg weights, moments, the leading truncation term;
- :mod:`verigrad.schemes.scheme`: the :class:`Scheme` value and its builders (from offsets, from
  weights, Richardson extrapolation), and the float reference :func:`apply_scheme`;
- :mod:`verigrad.schemes.registry`: the named built-in schemes (:data:`SCHEME_NAMES`), the
  parametrised methods (:data:`METHOD_SIGNATURES`) and lookup by string (:func:`get_scheme`);
- :mod:`verigrad.schemes.syntax`: the scheme syntax ``name(key=value, ...)`` (a small parser, never ``eval``);
- :mod:`verigrad.schemes.adaptive`: Ridders' method and numDeriv's default as method values
  returning an :class:`Estimate` (value, error estimate, status, steps);
- :mod:`verigrad.schemes.steps`: nominal and representable steps, the recommended step and step grid.

The names below are the public surface; :class:`StepMode` is defined in :mod:`verigrad.spec`.
"""

from verigrad.schemes.adaptive import UNDERSTATEMENT_FACTOR, Estimate, EstimateStatus, NumDeriv, Ridders
from verigrad.schemes.registry import METHOD_SIGNATURES, SCHEME_NAMES, get_scheme
from verigrad.schemes.scheme import (
    Scheme,
    SchemeKind,
    apply_scheme,
    richardson_scheme,
    scaled_scheme,
    scheme_from_offsets,
    scheme_from_weights,
)
from verigrad.schemes.steps import default_step, default_step_grid, nominal_steps, representable_step
from verigrad.schemes.weights import TruncationTerm, fornberg_weights
from verigrad.spec import StepMode

__all__ = [
    "METHOD_SIGNATURES",
    "SCHEME_NAMES",
    "UNDERSTATEMENT_FACTOR",
    "Estimate",
    "EstimateStatus",
    "NumDeriv",
    "Ridders",
    "scaled_scheme",
    "Scheme",
    "SchemeKind",
    "StepMode",
    "TruncationTerm",
    "apply_scheme",
    "default_step",
    "default_step_grid",
    "fornberg_weights",
    "get_scheme",
    "nominal_steps",
    "representable_step",
    "richardson_scheme",
    "scheme_from_offsets",
    "scheme_from_weights",
]
