"""The whitelisted elementwise functions: the one place to add an elementary function.

Each function is one :class:`ElemFn` record in :data:`FUNCTIONS`, and every
backend reads its rules from that record (none keeps a table of its own):

* ``definition`` - the sympy definition (what the user means, used for display,
  higher derivatives and cross-checks); ``sympy_display`` optionally keeps a
  named function unexpanded for reading;
* ``np_f`` - the float implementation in numpy, keeping the dtype of its input
  (:class:`~verigrad.engine.backends.FloatBackend`);
* ``mp_f`` - the mpmath implementation for the certified truth
  (:class:`~verigrad.engine.backends.MPBackend`);
* ``domain`` / ``domain_text`` - where the function *and its derivative* are
  defined (mpmath predicate, and in words);
* ``open_domain`` / ``ball_nonzero`` - the same domain for Arb balls: strict
  bounds on the argument, or a function of the argument that must not be 0;
* ``ball`` - the Arb ball implementation (:class:`~verigrad.engine.arb.ArbBackend`);
  it raises :class:`Undecided` where a ball cannot decide (``relu`` at a ball
  containing 0);
* ``series`` - the Arb power-series implementation (Taylor mode of
  :mod:`verigrad.engine.lines`); ``None`` for a non-analytic function;
* ``dd_ball`` - optional: the name of the function's vectorised double-double ball rule in
  :mod:`verigrad.engine.ddfunctions` or :mod:`verigrad.engine.ddspecial` (the fast engine); without it the fast engine goes
  through ``ball``;
* ``magnitude_sensitive`` - whether evaluation cost grows with the argument's
  magnitude (argument reduction), so huge arguments are refused;
* ``piecewise_constant`` - whether the value can stay exactly the same when the
  argument moves (``relu`` off, ``step``, ``sign``);
* ``derivative`` - the local derivative rule for reverse accumulation, as graph
  nodes built from other whitelisted functions (:mod:`verigrad.expr.reverse`);
* ``smooth`` / ``kink_text``, ``analytic`` (complex step valid), ``internal``
  (a derivative helper, not callable from case files).

Adding a function means adding one ``ElemFn(...)`` entry below (plus its tests
and a docs line); ``tests/test_functions.py`` checks that every function has
every rule the backends need, and that the ball and series rules contain the
mpmath values.  The tests check each ``derivative`` rule against ``sympy.diff`` of
the definition, so the local derivative rules the reverse accumulation uses are
sympy's.

python-flint is never imported here at module import time: the ``ball`` and
``series`` rules only call methods of their argument (and import flint lazily
where they must name a type).
"""

from __future__ import annotations

import math
from fractions import Fraction
from dataclasses import dataclass, field
from functools import lru_cache
from operator import methodcaller
from typing import Callable

import mpmath
import numpy as np

from verigrad.expr import special as _sp
from verigrad.expr.special import Undecided  # defined there: the special-function ball rules raise it too


class _LazySympy:
    """sympy, imported on first use: the definitions are only needed for display and checks."""

    def __getattr__(self, name: str):
        import sympy as _sympy

        return getattr(_sympy, name)


sympy = _LazySympy()

__all__ = ["ElemFn", "FUNCTIONS", "PUBLIC_FUNCTIONS", "Undecided", "ball_sign", "get_function"]

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
    kink_text : str
        Where the kink or jump is, in words (non-smooth functions).
    internal : bool
        A derivative helper (``dsigmoid``, ``step``, ...), not callable from case files.
    sympy_display : callable or None
        ``sympy.Expr -> sympy.Expr`` shown to users instead of the definition.
    ball : callable or None
        Arb ball implementation (``arb -> arb``), containing the exact value for
        every point of the argument ball; raises :class:`Undecided` when it needs
        a decision the ball cannot make. Needed by every function.
    series : callable or None
        Arb power-series implementation (``arb_series -> arb_series``);
        ``None`` exactly when the function is not analytic.
    open_domain : tuple or None
        ``(lo, hi)``: the ball domain check, ``lo < argument < hi`` strictly
        (``None`` for an unbounded side); the ball form of ``domain``.
    ball_nonzero : callable or None
        ``arb -> arb`` that must not be 0 for the function to be defined (tan:
        cos); the ball form of a ``domain`` that is not an interval.
    magnitude_sensitive : bool
        Whether the cost of evaluating it grows with the argument's magnitude
        (argument reduction of exp, sin, ...): huge arguments are refused.
    piecewise_constant : bool
        Whether the value can stay exactly the same when the argument moves
        (``relu`` off, ``step``, ``sign``).
    dd_ball : str or None
        Name of the vectorised rule of the fast engine in :mod:`verigrad.engine.ddfunctions` or
        :mod:`verigrad.engine.ddspecial`
        (a name, so that this layer imports nothing of the engine):
        ``fastball.Ball -> (Ball, declined)``, containing the value for every point of each
        argument ball except where the boolean array ``declined`` (or None) is True; those
        entries go through ``ball`` (Arb).
    derivative : callable or None
        ``(builder, node, arg) -> Node``: d fn(arg)/d arg as a graph node, built with
        :class:`~verigrad.expr.graph.Builder` methods only (``node`` is ``fn(arg)``
        itself, e.g. exp' = exp); checked against ``sympy.diff`` of ``definition`` in
        the tests. The internal derivative helpers have one too (second order: Hessians are the
        gradient graph differentiated again); ``step`` and ``sign`` have derivative zero away from
        their kink.
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
    ball: Callable[[object], object] | None = None
    series: Callable[[object], object] | None = None
    open_domain: tuple[int | None, int | None] | None = None
    ball_nonzero: Callable[[object], object] | None = None
    magnitude_sensitive: bool = False
    piecewise_constant: bool = False
    derivative: Callable[[object, object, object], object] | None = None
    dd_ball: str | None = None

    def sympy_of(self, arg: sympy.Expr) -> sympy.Expr:
        """The function applied to ``arg`` in sympy, as shown to users."""
        if self.sympy_display is not None:
            return self.sympy_display(arg)
        return self.definition(arg)

    @property
    def can_fail(self) -> bool:
        """Whether evaluating it can raise a domain or magnitude error."""
        return self.domain is not None or self.magnitude_sensitive

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


def ball_sign(b) -> int:
    """-1, 0 or 1 for an Arb ball, or :class:`Undecided` when it contains 0 without being exactly 0."""
    if b > 0:
        return 1
    if b < 0:
        return -1
    if b.is_exact() and b == 0:
        return 0
    raise Undecided


# Arb ball rules (arb -> arb). They only call methods of their argument, so that this
# module needs no python-flint; type(x)(0) is an exact arb 0.

def _ball_sigmoid(x):
    return 1 / (1 + (-x).exp())


def _ball_dsigmoid(x):
    e = (-abs(x)).exp()
    return e / (1 + e) ** 2


def _ball_dtanh(x):
    return 1 / x.cosh() ** 2


def _ball_relu(x):
    return x if ball_sign(x) > 0 else type(x)(0)


def _ball_step(x):
    return type(x)(1) if ball_sign(x) > 0 else type(x)(0)


def _ball_sign(x):
    return type(x)(ball_sign(x))


# Arb power-series rules (arb_series -> arb_series; a plain ball is a constant series).
# Where a formula cancels in its constant term, the constant term is recomputed directly.

_ARB_SERIES = None  # flint.arb_series, looked up on first use: this module does not need python-flint


def _series_const(s):
    """The constant term of a series (a ball is its own); s[0] reads one coefficient, coeffs() would copy all."""
    global _ARB_SERIES
    if _ARB_SERIES is None:
        from flint import arb_series

        _ARB_SERIES = arb_series
    return s[0] if isinstance(s, _ARB_SERIES) else s


def _series_with_const(s, c0):
    """The series ``s`` with its constant term replaced (kept accurate where the formula cancels)."""
    cs = s.coeffs()
    if not cs:
        return s
    cs[0] = c0
    return type(s)(cs)


def _series_log1p(s):
    return _series_with_const((1 + s).log(), _series_const(s).log1p())


def _series_expm1(s):
    return _series_with_const(s.exp(), _series_const(s).expm1())


def _series_sinh(s):
    e = s.exp()
    return _series_with_const((e - 1 / e) / 2, _series_const(s).sinh())


def _series_cosh(s):
    e = s.exp()
    return (e + 1 / e) / 2


def _series_tanh(s):
    e = (2 * s).exp()
    return _series_with_const(1 - 2 / (e + 1), _series_const(s).tanh())


def _series_sigmoid(s):
    return 1 / (1 + (-s).exp())


def _series_softplus(s):
    return _series_with_const((1 + s.exp()).log(), _series_const(s).exp().log1p())


def _series_dsigmoid(s):
    e = (-s).exp()
    return e / (1 + e) ** 2


def _series_dtanh(s):
    return 1 / _series_cosh(s) ** 2


def _square(x):
    return x * x


_m = methodcaller  # _m("exp")(x) is x.exp()


def _sx(a):
    return sympy.Function("sigmoid")(a)


def _d_erf(b, n, x):
    # erf'(x) = 2/sqrt(pi) exp(-x^2)
    return b.mul(b.div(b.const(2), b.unary("sqrt", b.const("pi"))), b.unary("exp", b.neg(b.mul(x, x))))


FUNCTIONS: dict[str, ElemFn] = {
    f.name: f
    for f in [
        ElemFn("exp", lambda a: sympy.exp(a), np.exp, mpmath.exp,
               ball=_m("exp"), series=_m("exp"), magnitude_sensitive=True, dd_ball="exp",
               derivative=lambda b, n, x: n),
        ElemFn("log", lambda a: sympy.log(a), np.log, mpmath.log, _positive, "argument > 0",
               ball=_m("log"), series=_m("log"), open_domain=(0, None), dd_ball="log",
               derivative=lambda b, n, x: b.div(b.const(1), x)),
        ElemFn("log1p", lambda a: sympy.log(1 + a), np.log1p, mpmath.log1p, _gt_minus_one, "argument > -1",
               ball=_m("log1p"), series=_series_log1p, open_domain=(-1, None), dd_ball="log1p",
               derivative=lambda b, n, x: b.div(b.const(1), b.add(b.const(1), x))),
        ElemFn("expm1", lambda a: sympy.exp(a) - 1, np.expm1, mpmath.expm1,
               ball=_m("expm1"), series=_series_expm1, magnitude_sensitive=True, dd_ball="expm1",
               derivative=lambda b, n, x: b.add(n, b.const(1))),
        ElemFn("sqrt", lambda a: sympy.sqrt(a), np.sqrt, mpmath.sqrt, _positive,
               "argument > 0 (sqrt has no derivative at 0)",
               ball=_m("sqrt"), series=_m("sqrt"), open_domain=(0, None),
               derivative=lambda b, n, x: b.div(b.const(Fraction(1, 2)), n)),
        ElemFn("square", lambda a: a**2, np.square, lambda a: a * a, ball=_square, series=_square,
               derivative=lambda b, n, x: b.mul(b.const(2), x)),
        ElemFn("sin", lambda a: sympy.sin(a), np.sin, mpmath.sin,
               ball=_m("sin"), series=_m("sin"), magnitude_sensitive=True, dd_ball="sin",
               derivative=lambda b, n, x: b.unary("cos", x)),
        ElemFn("cos", lambda a: sympy.cos(a), np.cos, mpmath.cos,
               ball=_m("cos"), series=_m("cos"), magnitude_sensitive=True, dd_ball="cos",
               derivative=lambda b, n, x: b.neg(b.unary("sin", x))),
        ElemFn("tan", lambda a: sympy.tan(a), np.tan, mpmath.tan, _not_odd_half_pi, "cos(argument) != 0",
               ball=_m("tan"), series=_m("tan"), ball_nonzero=_m("cos"), magnitude_sensitive=True, dd_ball="tan",
               derivative=lambda b, n, x: b.add(b.const(1), b.mul(n, n))),
        ElemFn("sinh", lambda a: sympy.sinh(a), np.sinh, mpmath.sinh,
               ball=_m("sinh"), series=_series_sinh, magnitude_sensitive=True, dd_ball="sinh",
               derivative=lambda b, n, x: b.unary("cosh", x)),
        ElemFn("cosh", lambda a: sympy.cosh(a), np.cosh, mpmath.cosh,
               ball=_m("cosh"), series=_series_cosh, magnitude_sensitive=True, dd_ball="cosh",
               derivative=lambda b, n, x: b.unary("sinh", x)),
        ElemFn("tanh", lambda a: sympy.tanh(a), np.tanh, mpmath.tanh,
               ball=_m("tanh"), series=_series_tanh, magnitude_sensitive=True, dd_ball="tanh",
               derivative=lambda b, n, x: b.unary("dtanh", x)),
        ElemFn("arcsin", lambda a: sympy.asin(a), np.arcsin, mpmath.asin, _open_unit,
               "-1 < argument < 1 (the derivative is infinite at ±1)",
               ball=_m("asin"), series=_m("asin"), open_domain=(-1, 1), dd_ball="arcsin",
               derivative=lambda b, n, x: b.div(b.const(1), b.unary("sqrt", b.sub(b.const(1), b.mul(x, x))))),
        ElemFn("arccos", lambda a: sympy.acos(a), np.arccos, mpmath.acos, _open_unit,
               "-1 < argument < 1 (the derivative is infinite at ±1)",
               ball=_m("acos"), series=_m("acos"), open_domain=(-1, 1), dd_ball="arccos",
               derivative=lambda b, n, x: b.neg(b.div(b.const(1), b.unary("sqrt", b.sub(b.const(1), b.mul(x, x)))))),
        ElemFn("arctan", lambda a: sympy.atan(a), np.arctan, mpmath.atan,
               ball=_m("atan"), series=_m("atan"), magnitude_sensitive=True, dd_ball="arctan",
               derivative=lambda b, n, x: b.div(b.const(1), b.add(b.const(1), b.mul(x, x)))),
        ElemFn("erf", lambda a: sympy.erf(a), _np_erf, mpmath.erf,
               ball=_m("erf"), series=_m("erf"), magnitude_sensitive=True, dd_ball="erf",
               derivative=_d_erf),
        ElemFn("sigmoid", lambda a: 1 / (1 + sympy.exp(-a)), _np_sigmoid, _mp_sigmoid,
               sympy_display=lambda a: _sx(a),
               ball=_ball_sigmoid, series=_series_sigmoid, magnitude_sensitive=True, dd_ball="sigmoid",
               derivative=lambda b, n, x: b.unary("dsigmoid", x)),
        ElemFn("softplus", lambda a: sympy.log(1 + sympy.exp(a)), _np_softplus, _mp_softplus,
               ball=lambda x: x.exp().log1p(), series=_series_softplus, magnitude_sensitive=True,
               dd_ball="softplus",
               derivative=lambda b, n, x: b.unary("sigmoid", x)),
        ElemFn("relu", lambda a: sympy.Max(a, 0), _real_only("relu", _np_relu),
               _mp_real_only("relu", lambda a: a if a > 0 else 0 * a),
               smooth=False, analytic=False, kink_text="argument = 0", ball=_ball_relu, piecewise_constant=True,
               derivative=lambda b, n, x: b.unary("step", x)),
        ElemFn("abs", lambda a: sympy.Abs(a), _real_only("abs", np.abs), _mp_real_only("abs", abs),
               ball=abs, smooth=False, analytic=False, kink_text="argument = 0",
               derivative=lambda b, n, x: b.unary("sign", x)),
        # Special functions (scipy.special / numpy names); their longer rules are in verigrad.expr.special.
        ElemFn("gammaln", lambda a: sympy.loggamma(a), _sp.np_gammaln, _sp.mp_gammaln, _sp.not_a_pole,
               "argument not in 0, -1, -2, ... (the poles of Γ); log|Γ(x)| for x < 0, like scipy",
               ball=_sp.ball_gammaln, series=_sp.series_gammaln, ball_nonzero=_m("rgamma"), dd_ball="gammaln",
               derivative=lambda b, n, x: b.unary("digamma", x)),
        ElemFn("digamma", lambda a: sympy.polygamma(0, a), _sp.np_digamma, mpmath.digamma, _sp.not_a_pole,
               "argument not in 0, -1, -2, ... (the poles of ψ)",
               ball=_sp.ball_digamma, series=_sp.series_digamma, ball_nonzero=_m("rgamma"), dd_ball="digamma",
               derivative=lambda b, n, x: b.unary("trigamma", x)),
        ElemFn("log_sigmoid", lambda a: -sympy.log(1 + sympy.exp(-a)), _sp.np_log_sigmoid, _sp.mp_log_sigmoid,
               ball=_sp.ball_log_sigmoid, series=_sp.series_log_sigmoid, magnitude_sensitive=True,
               dd_ball="log_sigmoid",
               derivative=lambda b, n, x: b.unary("sigmoid", b.neg(x))),
        ElemFn("sinc", lambda a: sympy.sinc(sympy.pi * a), _sp.np_sinc, mpmath.sincpi,
               ball=_m("sinc_pi"), series=_sp.series_sinc, magnitude_sensitive=True, dd_ball="sinc",
               derivative=lambda b, n, x: b.unary("dsinc", x)),
        # Internal derivative functions: not callable from case files.
        ElemFn("trigamma", lambda a: sympy.polygamma(1, a), _sp.np_trigamma, _sp.mp_trigamma, _sp.not_a_pole,
               "argument not in 0, -1, -2, ... (the poles of ψ')", internal=True,
               ball=_sp.ball_trigamma, series=_sp.series_trigamma, ball_nonzero=_m("rgamma"), dd_ball="trigamma",
               derivative=lambda b, n, x: b.unary("tetragamma", x)),
        ElemFn("tetragamma", lambda a: sympy.polygamma(2, a), _sp.np_tetragamma, _sp.mp_tetragamma, _sp.not_a_pole,
               "argument not in 0, -1, -2, ... (the poles of ψ'')", internal=True,
               ball=_sp.ball_tetragamma, series=_sp.series_tetragamma, ball_nonzero=_m("rgamma"),
               dd_ball="tetragamma"),
        ElemFn("dsinc", lambda a: (sympy.cos(sympy.pi * a) - sympy.sin(sympy.pi * a) / (sympy.pi * a)) / a, _sp.np_dsinc,
               _sp.mp_dsinc, internal=True, ball=_sp.ball_dsinc, series=_sp.series_dsinc, dd_ball="dsinc",
               magnitude_sensitive=True, derivative=lambda b, n, x: b.unary("d2sinc", x)),
        ElemFn("d2sinc", lambda a: ((2 - sympy.pi**2 * a**2) * sympy.sin(sympy.pi * a)
                                    - 2 * sympy.pi * a * sympy.cos(sympy.pi * a)) / (sympy.pi * a**3),
               _sp.np_d2sinc, _sp.mp_d2sinc, internal=True, ball=_sp.ball_d2sinc, series=_sp.series_d2sinc, dd_ball="d2sinc",
               magnitude_sensitive=True),
        ElemFn("dsigmoid", lambda a: sympy.exp(-a) / (1 + sympy.exp(-a)) ** 2, _np_dsigmoid, _mp_dsigmoid,
               internal=True, sympy_display=lambda a: _sx(a) * (1 - _sx(a)),
               ball=_ball_dsigmoid, series=_series_dsigmoid, magnitude_sensitive=True, dd_ball="dsigmoid",
               # second order (Hessians): (s(1-s))' = s(1-s)(1-2s)
               derivative=lambda b, n, x: b.mul(n, b.sub(b.const(1), b.mul(b.const(2), b.unary("sigmoid", x))))),
        ElemFn("dtanh", lambda a: 1 - sympy.tanh(a) ** 2, _np_dtanh, _mp_dtanh, internal=True,
               ball=_ball_dtanh, series=_series_dtanh, magnitude_sensitive=True, dd_ball="dtanh",
               # second order (Hessians): (1 - tanh^2)' = -2 tanh (1 - tanh^2)
               derivative=lambda b, n, x: b.mul(b.const(-2), b.mul(b.unary("tanh", x), n))),
        ElemFn("step", lambda a: sympy.Heaviside(a), _real_only("step", _np_step),
               _mp_real_only("step", lambda a: mpmath.mpf(1) if a > 0 else mpmath.mpf(0)),
               internal=True, sympy_display=lambda a: sympy.Heaviside(a, 0),
               smooth=False, analytic=False, kink_text="argument = 0", ball=_ball_step, piecewise_constant=True,
               # zero away from the kink (second derivatives of relu; undefined on it: the kink analysis says so)
               derivative=lambda b, n, x: b.zeros(x.shape)),
        ElemFn("sign", lambda a: sympy.sign(a), _real_only("sign", np.sign), _mp_real_only("sign", mpmath.sign),
               smooth=False, analytic=False, internal=True, kink_text="argument = 0",
               ball=_ball_sign, piecewise_constant=True,
               derivative=lambda b, n, x: b.zeros(x.shape)),
    ]
}

PUBLIC_FUNCTIONS = tuple(sorted(n for n, f in FUNCTIONS.items() if not f.internal))


def get_function(name: str) -> ElemFn:
    """Look up an elementwise function by name (``KeyError`` if unknown)."""
    return FUNCTIONS[name]
