"""The function table is the one place an elementary function is defined.

Every function in ``verigrad.expr.functions.FUNCTIONS`` carries every rule the
backends need (float, mpmath, Arb ball, Arb power series where analytic, the ball
form of its domain), and the ball and series rules agree with mpmath: the
mpmath value at 200 bits lies in the ball.
"""

from __future__ import annotations

import subprocess
import sys

import mpmath
import numpy as np
import pytest

from verigrad.expr.functions import FUNCTIONS, PUBLIC_FUNCTIONS, Undecided

flint = pytest.importorskip("flint")
arb, arb_series = flint.arb, flint.arb_series

from verigrad.engine import arb as ab  # noqa: E402
from verigrad.engine.backends import MAGNITUDE_SENSITIVE  # noqa: E402

NAMES = sorted(FUNCTIONS)

#: points inside every domain, away from kinks (exact binary fractions)
_POINTS = {"log": [0.375, 1.0, 5.5], "sqrt": [0.375, 1.0, 5.5], "log1p": [-0.625, 0.25, 3.0],
           "arcsin": [-0.75, 0.125, 0.875], "arccos": [-0.75, 0.125, 0.875]}
_DEFAULT_POINTS = [-2.25, -0.5, 0.3125, 1.75]


def _points(name):
    return _POINTS.get(name, _DEFAULT_POINTS)


def _contains(ball, value) -> bool:
    """Whether the ball contains the mpmath number, up to mpmath's own rounding at 200 bits, and is tight."""
    with mpmath.workprec(400):
        value = mpmath.mpf(value)  # exact: mpmath values at 200 bits, or an int
    with ab.arb_precision(400):
        sign, man, exp, _ = value._mpf_
        exact = arb(-int(man) if sign else int(man)) * arb(2) ** int(exp) if value else arb(0)  # exactly
        slack = arb(0, 2.0**-190) * (1 + abs(exact))
        return ball.overlaps(exact + slack) and bool(ball.rad() < 2.0**-150 * (1 + abs(ball.mid())))


def _mp_value(fn, p):
    with mpmath.workprec(200):
        return fn.mp_f(mpmath.mpf(p))


def test_public_functions_are_the_callable_ones():
    assert PUBLIC_FUNCTIONS == tuple(sorted(n for n, f in FUNCTIONS.items() if not f.internal))
    assert {"exp", "log", "sigmoid", "relu", "abs"} <= set(PUBLIC_FUNCTIONS)


@pytest.mark.parametrize("name", NAMES)
def test_every_function_has_every_rule_the_backends_need(name):
    fn = FUNCTIONS[name]
    assert fn.name == name
    assert callable(fn.definition) and callable(fn.np_f) and callable(fn.mp_f), name
    assert callable(fn.ball), f"{name} has no Arb ball rule"
    # a power series exactly for the analytic functions (Taylor mode refuses the others)
    assert (fn.series is not None) == fn.analytic, f"{name}: series rule vs analytic={fn.analytic}"
    # the ball domain check says what the mpmath domain says
    assert (fn.domain is not None) == (fn.open_domain is not None or fn.ball_nonzero is not None), name
    assert (fn.domain is not None) == bool(fn.domain_text), name
    if fn.open_domain is not None:
        lo, hi = fn.open_domain
        assert lo is not None or hi is not None
        with mpmath.workprec(200):
            for bound in (lo, hi):
                if bound is not None:
                    assert not fn.domain(mpmath.mpf(bound)), f"{name}: {bound} is in its domain"
    if not fn.smooth:
        assert fn.kink_text and not fn.analytic
    if fn.piecewise_constant:
        assert not fn.smooth
    # every function a case file can call is differentiated by its own rule
    assert (fn.derivative is not None) or fn.internal, f"{name} has no derivative rule"


@pytest.mark.parametrize("name", [n for n in NAMES if FUNCTIONS[n].derivative is not None and FUNCTIONS[n].smooth])
def test_derivative_rule_is_sympys(name):
    """The rule, built as a graph and shown with sympy, equals sympy.diff of the definition."""
    import sympy

    from verigrad.expr.graph import Builder
    from verigrad.expr.reverse import gradient_graph
    from verigrad.engine.backends import SympyBackend
    from verigrad.expr.evaluate import evaluate

    b = Builder()
    x = b.leaf("x", (), variable=True)
    loss = b.unary(name, x)
    (g,) = gradient_graph(b, loss, {"x": x}).values()
    s = sympy.Symbol("x", real=True)
    (val,) = evaluate([g], {"x": np.array([s], dtype=object)}, SympyBackend(display=False))
    want = sympy.diff(FUNCTIONS[name].definition(s), s)
    assert sympy.simplify(val[0] - want) == 0, f"{name}: {val[0]} != {want}"


def test_derived_tables_come_from_the_function_table():
    assert MAGNITUDE_SENSITIVE == frozenset(n for n, f in FUNCTIONS.items() if f.magnitude_sensitive)
    # the set as it was when it lived in engine/backends.py
    assert MAGNITUDE_SENSITIVE == frozenset({"exp", "expm1", "sinh", "cosh", "tanh", "sin", "cos", "tan", "sigmoid",
                                             "softplus", "dsigmoid", "dtanh", "erf", "arctan",
                                             "log_sigmoid", "sinc", "dsinc", "d2sinc"})
    assert set(ab._FN) == set(FUNCTIONS) and all(ab._FN[n] is FUNCTIONS[n].ball for n in FUNCTIONS)
    assert ab._OPEN_DOMAIN == {"log": (0, None), "sqrt": (0, None), "log1p": (-1, None), "arcsin": (-1, 1),
                               "arccos": (-1, 1)}
    assert {n for n, f in FUNCTIONS.items() if f.piecewise_constant} == {"relu", "step", "sign"}
    assert {n for n, f in FUNCTIONS.items() if f.can_fail} == \
        {"log", "log1p", "sqrt", "arcsin", "arccos", "tan", "gammaln", "digamma", "trigamma", "tetragamma"} | set(MAGNITUDE_SENSITIVE)
    assert ab.Undecided is Undecided


@pytest.mark.parametrize("name", NAMES)
def test_ball_rule_contains_the_mpmath_value(name):
    fn = FUNCTIONS[name]
    with ab.arb_precision(200):
        for p in _points(name):
            got = fn.ball(arb(p))
            assert _contains(got, _mp_value(fn, p)), f"{name}({p}) = {got}"


@pytest.mark.parametrize("name", [n for n in NAMES if FUNCTIONS[n].series is not None])
def test_series_rule_contains_the_mpmath_taylor_coefficients(name):
    """f(p + t) as a series: the constant term is f(p), the next ones f^(k)(p)/k! (mpmath.taylor)."""
    fn = FUNCTIONS[name]
    length = 4
    with ab.arb_precision(200), _cap(length):
        for p in _points(name):
            s = fn.series(arb_series([arb(p), arb(1)]))
            cs = list(s.coeffs()) + [arb(0)] * length
            with mpmath.workprec(260):
                ref = mpmath.taylor(fn.mp_f, mpmath.mpf(p), length - 1)
            for k in range(length):
                assert _contains(cs[k], ref[k]), f"{name}: coefficient {k} at {p} is {cs[k]}, mpmath {ref[k]}"
            # a constant series: the rule gives the function's value
            assert _contains(_const(fn.series(arb_series([arb(p)]))), _mp_value(fn, p)), name


def _const(s):
    return s.coeffs()[0] if s.coeffs() else arb(0)


class _cap:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = flint.ctx.cap
        flint.ctx.cap = self.n

    def __exit__(self, *exc):
        flint.ctx.cap = self.old


@pytest.mark.parametrize("name", [n for n in NAMES if FUNCTIONS[n].piecewise_constant])
def test_piecewise_rules_decide_or_raise_undecided(name):
    fn = FUNCTIONS[name]
    with ab.arb_precision(200):
        assert fn.ball(arb(0)).is_exact()
        assert _contains(fn.ball(arb(0)), _mp_value(fn, 0))
        with pytest.raises(Undecided):
            fn.ball(arb(0, 1e-10))  # a ball straddling the kink cannot be decided


def test_ball_domain_check_reads_the_table():
    from verigrad.errors import DomainError

    class _Node:
        label = "t"

    backend = ab.ArbBackend()
    with ab.arb_precision(100):
        x = ab.from_float(np.array([0.5, -0.25]))
        with pytest.raises(DomainError, match=r"log is undefined at -0.25 \(it needs argument > 0\)"):
            backend.unary(FUNCTIONS["log"], x, _Node())
        with pytest.raises(Undecided):  # a ball containing the domain edge
            backend.check_unary(FUNCTIONS["log"], np.array([arb(0, 1e-10)], dtype=object), _Node())
        with pytest.raises(Undecided):  # tan at a ball containing a pole
            backend.check_unary(FUNCTIONS["tan"], np.array([arb.pi() / 2], dtype=object), _Node())
        backend.check_unary(FUNCTIONS["tan"], x, _Node())


def test_the_table_does_not_import_flint():
    code = "import verigrad.expr.functions, sys; print('flint' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_arb_array_rules_give_the_per_entry_balls():
    """ArbBackend.apply_unary runs one Arb method per entry (or sigmoid's four array operations)
    without a Python call per entry: every function's balls are bit for bit those of its per-entry rule."""
    import numpy as np

    from verigrad.engine import arb as A
    from verigrad.expr.functions import FUNCTIONS

    if not A.available():
        pytest.skip("python-flint not installed")
    rng = np.random.default_rng(1)
    vals = [A.arb(float(v), 1e-20 * abs(float(v))) for v in rng.uniform(0.05, 0.95, 200)] + \
           [A.arb(float(v)) for v in rng.normal(size=200)]
    x = np.empty(len(vals), dtype=object)
    x[:] = vals
    compared = 0
    with A.arb_precision(160):
        for name, fn in FUNCTIONS.items():
            if fn.ball is None:
                continue
            try:
                old = A._ufunc(fn.ball)(x)
            except Exception:  # undecided somewhere (relu at 0 ± r): not an array-rule question
                continue
            new = A.ArbBackend.apply_unary(fn, x)
            assert new.dtype == object and new.shape == x.shape
            for a, b in zip(old, new):
                assert (a.mid() == b.mid() and a.rad() == b.rad()) or not (a.is_finite() or b.is_finite()), name
            compared += 1
    assert compared >= 30
