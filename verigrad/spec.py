"""Frozen records describing a case: symbols, candidates, checks, limits.

These are values produced by :mod:`verigrad.casefile.loader` after validation; the rest
of the package assumes they are valid.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Dtype", "is_float_dtype", "Expect", "RngKind", "StepMode", "Init", "Symbol", "CodeRef",
           "CandidateKind", "CandidateSpec", "CheckSpec", "DirectionSpec", "ExprLimits", "Limits", "Case"]


class Dtype(enum.Enum):
    """A floating-point format under test.

    ``float16`` is IEEE binary16 (numpy's ``float16``: 11 significand bits, largest 65504,
    subnormals below 2**-14); ``bfloat16`` is the brain float (``ml_dtypes.bfloat16``, which
    JAX uses: 8 significand bits, float32's exponent range). numpy has no complex type of
    either, so half precision has no complex step (:attr:`complex` raises).
    """

    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def numpy(self) -> np.dtype:
        if self is Dtype.BFLOAT16:
            import ml_dtypes  # imported when bfloat16 is used: ``import verigrad`` stays light

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(self.value)

    @property
    def half(self) -> bool:
        """True for the 16-bit formats (no complex step; their float baseline is defined per op)."""
        return self in (Dtype.FLOAT16, Dtype.BFLOAT16)

    @property
    def complex(self) -> np.dtype:
        """The complex dtype used for the complex step in this precision.

        Raises
        ------
        UsageError
            For float16 and bfloat16: numpy has no complex type of 16-bit parts, and a
            complex64 evaluation would compute the nodes in float32, not in the dtype under test.
        """
        if self.half:
            from verigrad.errors import UsageError

            raise UsageError(f"the complex step is not defined in {self.value}: numpy has no complex "
                              f"{self.value} type, and complex64 would evaluate the loss in float32, not in "
                              f"{self.value}",
                              hint=f"use a real scheme (central, central4, ...) in {self.value}, or the "
                                   "complex step in float32/float64")
        return np.dtype(np.complex64 if self is Dtype.FLOAT32 else np.complex128)

    @property
    def eps(self) -> float:
        """Machine epsilon 2**(1 - t): float16 2**-10, bfloat16 2**-7, float32 2**-23, float64 2**-52."""
        return float(np.finfo(self.numpy).eps)

    @property
    def unit_roundoff(self) -> float:
        """u = eps / 2 = 2**-t, the largest relative error of one rounding to nearest."""
        return self.eps / 2

    @property
    def mantissa_bits(self) -> int:
        """t, significand bits including the implicit one: 11, 8, 24, 53."""
        return int(np.finfo(self.numpy).nmant) + 1

    @property
    def min_exponent(self) -> int:
        """Exponent of the smallest normal number: -14, -126, -126, -1022."""
        return int(np.finfo(self.numpy).minexp)

    @property
    def max(self) -> float:
        """The largest finite value (float16: 65504)."""
        return float(np.finfo(self.numpy).max)


def is_float_dtype(dtype) -> bool:
    """True for a real binary floating dtype verigrad grades in (numpy kind ``f`` or bfloat16).

    ``ml_dtypes.bfloat16`` is a numpy user dtype of kind ``V``, so ``dtype.kind == "f"`` misses it.
    """
    dt = np.dtype(dtype)
    return dt.kind == "f" or dt.name == "bfloat16"


class CandidateKind(enum.Enum):
    """How a ``[[candidate]]``'s code is called (``kind = "..."``; docs/frameworks.md).

    ``NUMPY``: numpy arrays in, the gradient out (the default). ``TORCH``: a PyTorch callable
    (tensors in, the gradient as tensors out). ``TORCH_AUTOGRAD``: the code is a forward pass
    (a function, or a ``torch.autograd.Function``), returning the scalar loss; verigrad
    backpropagates through it. ``JAX``: a JAX callable returning the gradient. ``JAX_GRAD``:
    ``jax.grad`` of the code's forward pass (``custom_vjp`` rules included).
    """

    NUMPY = "numpy"
    TORCH = "torch"
    TORCH_AUTOGRAD = "torch-autograd"
    JAX = "jax"
    JAX_GRAD = "jax-grad"
    #: second order (docs/second-order.md): numpy code returning the Hessian, ``H v`` (called with the
    #: point and ``v``), or the Hessian's diagonal
    HESSIAN = "hessian"
    HVP = "hvp"
    HESSIAN_DIAG = "hessian_diag"

    @property
    def framework(self) -> str | None:
        """``"torch"``, ``"jax"``, or None for numpy code."""
        if self is CandidateKind.NUMPY or self.order == 2:
            return None
        return self.value.split("-")[0]

    @property
    def order(self) -> int:
        """The derivative order the code returns: 2 for ``hessian``, ``hvp``, ``hessian_diag``; else 1."""
        return 2 if self in (CandidateKind.HESSIAN, CandidateKind.HVP, CandidateKind.HESSIAN_DIAG) else 1


class Expect(enum.Enum):
    PASS = "pass"
    FAIL = "fail"


class RngKind(enum.Enum):
    NUMPY = "numpy"
    NUMPY_LEGACY = "numpy-legacy"


class StepMode(enum.Enum):
    """How a nominal step ``h`` becomes a per-coordinate step ``h_i``.

    ``ABSOLUTE``: ``h_i = h``. ``RELATIVE``: ``h_i = h * max(1, |x_i|)``.
    """

    ABSOLUTE = "absolute"
    RELATIVE = "relative"


@dataclass(frozen=True)
class Init:
    """A seeded distribution: ``normal(mu, sigma)`` or ``uniform(a, b)``."""

    kind: str
    a: float
    b: float

    def __str__(self) -> str:
        return f"{self.kind}({self.a:g}, {self.b:g})"


@dataclass(frozen=True, eq=False)
class Symbol:
    """A variable or constant of the loss.

    ``value`` (float64, in ``shape``) is set for given values; ``init`` for drawn ones.
    ``integer`` marks an integer constant (``dtype = "int64"``): its ``value`` is an int64
    array, used only as indices (gathers, ``one_hot``), passed to candidates as int64 and
    never perturbed, rounded to a float dtype or graded.
    """

    name: str
    shape: tuple[int, ...]
    constant: bool
    init: Init | None = None
    value: np.ndarray | None = None
    integer: bool = False

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class CodeRef:
    """``path/to/module.py:function``, the path resolved against the case file."""

    path: Path
    function: str
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class CandidateSpec:
    """A ``[[candidate]]``: its code and what it is expected to do.

    ``expect`` applies to every dtype unless ``expect_by_dtype`` names the dtype
    (``expect = { float32 = "fail", float64 = "pass" }`` in the case file).
    ``allow_upcast`` (``allow_upcast = true``): a float64 return for float32 inputs (verdict
    ``not exercised``) meets ``expect = "pass"``; by default it does not.
    ``kind`` says how the code is called (:class:`CandidateKind`); ``device`` names the
    framework device of a torch or JAX candidate (None: the CPU).
    """

    name: str
    code: CodeRef
    expect: Expect
    expect_by_dtype: tuple[tuple[Dtype, Expect], ...] = ()
    allow_upcast: bool = False
    kind: CandidateKind = CandidateKind.NUMPY
    device: str | None = None

    def expectation(self, dtype: Dtype) -> Expect:
        return dict(self.expect_by_dtype).get(dtype, self.expect)


@dataclass(frozen=True)
class CheckSpec:
    """The ``[check]`` table.

    Attributes
    ----------
    dtypes : tuple of Dtype
        Dtypes in which candidates are graded (default both).
    schemes : tuple of str
        Finite-difference schemes graded as candidates (``verigrad run``).
    steps : tuple of float or None
        Nominal steps for those schemes; None means the recommended step.
    step_mode : StepMode
    tolerance_factor : float or None
        Overrides the grading factor against the float baseline.
    floor_ulps : float or None
        Overrides the grading floor in ulps of the gradient's scale.
    entry_sigmas : float or None
        The per-entry tolerance in standard deviations of the baseline's rounding model
        (default 9: ``entry_lambda = 2`` times ``SPREAD_SIGMAS = 4.5``); the grade's
        ``entry_lambda`` is ``entry_sigmas / 4.5``.
    digits : int
        Certified digits of the truth.
    classic : bool
        Whether ``verigrad run`` adds the classic-check note (what a central difference
        with eps = 1e-7 would conclude) to each hand-written candidate's grade.
    scheme_steps : tuple of (str, tuple of float)
        Steps per scheme (``steps`` written as a table keyed by the scheme strings); a scheme
        not in it uses ``coordinate_steps``, else the recommended step.
    coordinate_steps : tuple of (str, tuple of float)
        ``[check.coordinate_steps]``: a nominal step per entry of a variable (flat, C order), as
        SciPy's ``approx_fprime`` takes a step per coordinate; variables not named use the
        recommended step.
    """

    dtypes: tuple[Dtype, ...] = (Dtype.FLOAT32, Dtype.FLOAT64)
    schemes: tuple[str, ...] = ()
    steps: tuple[float, ...] | None = None
    step_mode: StepMode = StepMode.RELATIVE
    tolerance_factor: float | None = None
    floor_ulps: float | None = None
    entry_sigmas: float | None = None
    digits: int = 24
    classic: bool = True
    scheme_steps: tuple[tuple[str, tuple[float, ...]], ...] = ()
    coordinate_steps: tuple[tuple[str, tuple[float, ...]], ...] = ()
    #: ``[check] second_order_schemes``: FD Hessian/HVP rows of ``run`` (None: the defaults for the
    #: case's second-order candidates; ``()``: none) — verigrad.runner.secondfd
    second_order_schemes: tuple[str, ...] | None = None

    def steps_for(self, scheme: str) -> tuple[float, ...] | None:
        """The explicit steps of ``scheme`` (its entry of ``scheme_steps``, else ``steps``), or None."""
        for name, steps in self.scheme_steps:
            if name == scheme:
                return steps
        return self.steps


@dataclass(frozen=True)
class DirectionSpec:
    """A named direction of the case file's ``[directions]`` table.

    ``vectors`` holds, per variable named, its entries (flat, C order, float64 values);
    ``normalize`` divides by the 2-norm when the direction is built.
    """

    name: str
    vectors: tuple[tuple[str, tuple[float, ...]], ...]
    normalize: bool = False


@dataclass(frozen=True)
class ExprLimits:
    """Resource limits for one expression string.

    Attributes
    ----------
    max_length : int
        Characters per expression (``[limits] max_expression_length``).
    max_depth : int
        Nesting depth of the syntax tree (``[limits] max_expression_depth``, at
        most :data:`verigrad.expr.parser.MAX_DEPTH_CEILING`).  A chain ``a + b - c + ...`` counts as one
        level however long it is; every parenthesis, call argument, index and
        unary operator counts one more.
    max_nodes : int
        Syntax-tree nodes (names, numbers, operators, calls, keywords) per
        expression (``[limits] max_expression_nodes``).
    max_elements : int
        Entries of any array the expression builds, intermediate results
        included (``[limits] max_intermediate_elements``).
    """

    max_length: int = 20_000
    max_depth: int = 100
    max_nodes: int = 20_000
    max_elements: int = 10_000_000


@dataclass(frozen=True)
class Limits:
    """Resource limits (``[limits]`` table); each error message says how to raise it."""

    max_elements: int = 2_000_000
    max_symbol_elements: int = 1_000_000
    max_precision_bits: int = 16_384
    symbolic_seconds: float = 120.0
    candidate_seconds: float = 60.0
    #: one certification (one dtype's truth): stopped at this time, while it runs
    certify_seconds: float = 300.0
    expression: ExprLimits = field(default_factory=ExprLimits)


@dataclass(frozen=True, eq=False)
class Case:
    """One validated case file."""

    name: str
    path: Path
    description: str
    seed: int
    rng: RngKind
    loss: str
    symbols: tuple[Symbol, ...]
    defines: tuple[tuple[str, str], ...]
    candidates: tuple[CandidateSpec, ...] = ()
    check: CheckSpec = field(default_factory=CheckSpec)
    loss_code: CodeRef | None = None
    limits: Limits = field(default_factory=Limits)
    directions: tuple[DirectionSpec, ...] = ()

    @property
    def variables(self) -> tuple[Symbol, ...]:
        return tuple(s for s in self.symbols if not s.constant)

    @property
    def constants(self) -> tuple[Symbol, ...]:
        return tuple(s for s in self.symbols if s.constant)

    def symbol(self, name: str) -> Symbol:
        for s in self.symbols:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def parameter_count(self) -> int:
        return sum(s.size for s in self.variables)
