"""verigrad: certified exact gradients to grade gradient code and finite differences.

Declare a loss symbolically in a case file; verigrad derives the exact gradient,
evaluates it in certified high precision with mpmath, and grades hand-written
gradient code and finite-difference estimates against it in float32 and float64.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("verigrad")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

from verigrad.casefile.loader import load_case, load_case_text
from verigrad.errors import (CandidateError, CaseError, CertificationError, DomainError, ExpressionError, LimitError,
                     ShapeError, UsageError, VerigradError)
from verigrad.engine.model import Model, compile_case
from verigrad.spec import Dtype
from verigrad.engine.truth import Truth, certify

__all__ = [
    "__version__", "load_case", "load_case_text", "compile_case", "certify", "Model", "Truth", "Dtype",
    "VerigradError", "CaseError", "ExpressionError", "ShapeError", "LimitError", "DomainError",
    "CertificationError", "CandidateError", "UsageError",
]
