"""The whitelisted elementwise functions, each defined once symbolically.

Every function has a sympy definition (what the user means, used for display,
higher derivatives and cross-checks), a float implementation in numpy that keeps
the dtype of its input, an mpmath implementation for the certified truth, and a
rule for its derivative expressed with other whitelisted functions.  The tests
check each derivative rule against ``sympy.diff`` of the definition, so the
local derivative rules the reverse accumulation uses are sympy's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import mpmath
import numpy as np


class _LazySympy:
    """sympy, imported on first use: the definitions are only needed for display and checks."""

    def __getattr__(self, name: str):
        import sympy as _sympy

        return getattr(_sympy, name)


sympy = _LazySympy()

__all__ = ["ElemFn", "FUNCTIONS", "get_function"]

def _x():
    return sympy.Symbol("x", real=True)


@dataclass(frozen=True)
class ElemFn:
    """An elementwise function of one argument.

    Attributes
    ----------
    name : str
        Name in case-file expressions.
    definition : callable
        ``sympy.Expr -> sympy.Expr``: the mathematical definition.
    np_f : callable
        Float (and complex where analytic) implementation; must return the
        dtype of its argument.
    mp_f : callable
        Scalar mpmath implementation (``mpf -> mpf``; ``mpc -> mpc`` when analytic).
    domain : callable or None
        ``mpf -> bool``: whether the function *and its derivative* are defined
        at the argument; ``domain_text`` says it in words.
    smooth : bool
        False for functions with kinks (``relu``, ``abs``) or jumps.
    analytic : bool
        Whether the complex step is valid through this function.
    """

    name: str
    definition: Callable[[sympy.Expr], sympy.Expr]
    np_f: Callable[[np.ndarray], np.ndarray]
    mp_f: Callable[[object], object]
    domain: Callable[[object], bool] | None = None
    domain_text: str = ""
    smooth: bool = True
    analytic: bool = True
    kink_text: str = ""
    internal: bool = False
    sympy_display: Callable[[sympy.Expr], sympy.Expr] | None = field(default=None)

    def sympy_of(self, arg: sympy.Expr) -> sympy.Expr:
        """The function applied to ``arg`` in sympy, as shown to users."""
        if self.sympy_display is not None:
            return self.sympy_display(arg)
        return self.definition(arg)

    @property
    def derivative_expr(self) -> sympy.Expr:
        """d/dx of the definition, from sympy (for real x)."""
        return _sympy_derivative(self.name)


@lru_cache(maxsize=None)
def _sympy_derivative(name: str) -> sympy.Expr:
    x = _x()
    return sympy.diff(FUNCTIONS[name].definition(x), x)


def _real_only(name: str, f: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def wrapped(x: np.ndarray) -> np.ndarray:
        if np.iscomplexobj(x):
            raise TypeError(f"{name} is not analytic; it has no complex evaluation")
        return f(x)

    return wrapped


def _mp_real_only(name: str, f: Callable[[object], object]) -> Callable[[object], object]:
    def wrapped(x: object) -> object:
        if isinstance(x, mpmath.mpc):
            raise TypeError(f"{name} is not analytic; it has no complex evaluation")
        return f(x)

    return wrapped


def _np_sigmoid(x: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(x):
        return 1 / (1 + np.exp(-x))
    # exp of a non-positive number never overflows: the two halves are stable.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _np_dsigmoid(x: np.ndarray) -> np.ndarray:
    # e/(1+e)^2 with e = exp(-|x|) is symmetric, never overflows and keeps the
    # tiny tails (s*(1-s) rounds to 0 in float32 for |x| > 17).
    e = np.exp(-np.abs(x)) if not np.iscomplexobj(x) else np.exp(-x)
    return e / (1 + e) ** 2


def _np_dtanh(x: np.ndarray) -> np.ndarray:
    # 1 - tanh^2 loses everything for |x| > 9 in float32; 4e/(1+e)^2, e = exp(-2|x|), does not.
    e = np.exp(-2 * np.abs(x)) if not np.iscomplexobj(x) else np.exp(-2 * x)
    return 4 * e / (1 + e) ** 2


def _np_softplus(x: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(x):
        return np.log1p(np.exp(x))
    return np.logaddexp(x.dtype.type(0), x)


def _np_erf(x: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(x):
        raise TypeError("erf has no complex float implementation here")
    # numpy has no erf; math.erf is correctly rounded to float64, then rounded to the dtype.
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)


def _np_relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, x.dtype.type(0))


def _np_step(x: np.ndarray) -> np.ndarray:
    return (x > 0).astype(x.dtype)


def _mp_sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def _mp_dsigmoid(x):
    e = mpmath.exp(-abs(x)) if not isinstance(x, mpmath.mpc) else mpmath.exp(-x)
    return e / (1 + e) ** 2


def _mp_dtanh(x):
    return 1 / mpmath.cosh(x) ** 2


def _mp_softplus(x):
    return mpmath.log1p(mpmath.exp(x))


def _positive(x) -> bool:
    return x > 0


def _gt_minus_one(x) -> bool:
    return x > -1


def _open_unit(x) -> bool:
    return -1 < x < 1


def _not_odd_half_pi(x) -> bool:
    return mpmath.cos(x) != 0


def _sx(a):
    return sympy.Function("sigmoid")(a)

FUNCTIONS: dict[str, ElemFn] = {
    f.name: f
    for f in [
        ElemFn("exp", lambda a: sympy.exp(a), np.exp, mpmath.exp),
        ElemFn("log", lambda a: sympy.log(a), np.log, mpmath.log, _positive, "argument > 0"),
        ElemFn("log1p", lambda a: sympy.log(1 + a), np.log1p, mpmath.log1p, _gt_minus_one, "argument > -1"),
        ElemFn("expm1", lambda a: sympy.exp(a) - 1, np.expm1, mpmath.expm1),
        ElemFn("sqrt", lambda a: sympy.sqrt(a), np.sqrt, mpmath.sqrt, _positive,
               "argument > 0 (sqrt has no derivative at 0)"),
        ElemFn("square", lambda a: a**2, np.square, lambda a: a * a),
        ElemFn("sin", lambda a: sympy.sin(a), np.sin, mpmath.sin),
        ElemFn("cos", lambda a: sympy.cos(a), np.cos, mpmath.cos),
        ElemFn("tan", lambda a: sympy.tan(a), np.tan, mpmath.tan, _not_odd_half_pi, "cos(argument) != 0"),
        ElemFn("sinh", lambda a: sympy.sinh(a), np.sinh, mpmath.sinh),
        ElemFn("cosh", lambda a: sympy.cosh(a), np.cosh, mpmath.cosh),
        ElemFn("tanh", lambda a: sympy.tanh(a), np.tanh, mpmath.tanh),
        ElemFn("arcsin", lambda a: sympy.asin(a), np.arcsin, mpmath.asin, _open_unit,
               "-1 < argument < 1 (the derivative is infinite at ±1)"),
        ElemFn("arccos", lambda a: sympy.acos(a), np.arccos, mpmath.acos, _open_unit,
               "-1 < argument < 1 (the derivative is infinite at ±1)"),
        ElemFn("arctan", lambda a: sympy.atan(a), np.arctan, mpmath.atan),
        ElemFn("erf", lambda a: sympy.erf(a), _np_erf, mpmath.erf),
        ElemFn("sigmoid", lambda a: 1 / (1 + sympy.exp(-a)), _np_sigmoid, _mp_sigmoid,
               sympy_display=lambda a: _sx(a)),
        ElemFn("softplus", lambda a: sympy.log(1 + sympy.exp(a)), _np_softplus, _mp_softplus),
        ElemFn("relu", lambda a: sympy.Max(a, 0), _real_only("relu", _np_relu),
               _mp_real_only("relu", lambda a: a if a > 0 else 0 * a),
               smooth=False, analytic=False, kink_text="argument = 0"),
        ElemFn("abs", lambda a: sympy.Abs(a), _real_only("abs", np.abs), _mp_real_only("abs", abs),
               smooth=False, analytic=False, kink_text="argument = 0"),
        # Internal derivative functions: not callable from case files.
        ElemFn("dsigmoid", lambda a: sympy.exp(-a) / (1 + sympy.exp(-a)) ** 2, _np_dsigmoid, _mp_dsigmoid,
               internal=True, sympy_display=lambda a: _sx(a) * (1 - _sx(a))),
        ElemFn("dtanh", lambda a: 1 - sympy.tanh(a) ** 2, _np_dtanh, _mp_dtanh, internal=True),
        ElemFn("step", lambda a: sympy.Heaviside(a), _real_only("step", _np_step),
               _mp_real_only("step", lambda a: mpmath.mpf(1) if a > 0 else mpmath.mpf(0)),
               smooth=False, analytic=False, internal=True, kink_text="argument = 0",
               sympy_display=lambda a: sympy.Heaviside(a, 0)),
        ElemFn("sign", lambda a: sympy.sign(a), _real_only("sign", np.sign), _mp_real_only("sign", mpmath.sign),
               smooth=False, analytic=False, internal=True, kink_text="argument = 0"),
    ]
}

PUBLIC_FUNCTIONS = tuple(sorted(n for n, f in FUNCTIONS.items() if not f.internal))


def get_function(name: str) -> ElemFn:
    """Look up an elementwise function by name (``KeyError`` if unknown)."""
    return FUNCTIONS[name]
