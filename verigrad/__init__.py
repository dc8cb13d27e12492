"""verigrad: certified exact gradients to grade gradient code and finite differences.

Declare a loss symbolically in a case file; verigrad derives the exact gradient,
evaluates it in certified high precision (Arb balls), and grades hand-written
gradient code and finite-difference estimates against it in float32 and float64.

The names below are imported on first use (PEP 562), so that ``import verigrad`` and
``verigrad --help`` do not load numpy, mpmath or sympy.  The package layout follows
the pipeline; see ``docs/architecture.md``.
"""

from __future__ import annotations

import importlib

__all__ = [
    "__version__", "load_case", "load_case_text", "compile_case", "certify", "Model", "Truth", "Dtype",
    "VerigradError", "CaseError", "ExpressionError", "ShapeError", "LimitError", "DomainError",
    "CertificationError", "CandidateError", "UsageError",
]

# public name -> module that defines it
_LAZY = {
    "load_case": "verigrad.casefile.loader", "load_case_text": "verigrad.casefile.loader",
    "compile_case": "verigrad.engine.model", "Model": "verigrad.engine.model",
    "certify": "verigrad.engine.truth", "Truth": "verigrad.engine.truth",
    "Dtype": "verigrad.spec",
    # the notebook view of the records of lower layers (their ``_repr_html_``), resolved by name when a
    # notebook asks for it: records never import the report layer (docs/architecture.md)
    "repr_html": "verigrad.report.notebook",
    **{name: "verigrad.errors" for name in (
        "VerigradError", "CaseError", "ExpressionError", "ShapeError", "LimitError", "DomainError",
        "CertificationError", "CandidateError", "UsageError")},
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("verigrad")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0+unknown"


def __getattr__(name: str):
    if name == "__version__":
        value = _version()
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'verigrad' has no attribute {name!r}")
    globals()[name] = value  # cache: the next access is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
