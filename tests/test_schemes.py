"""Tests for verigrad.schemes: exact coefficients, orders, error tables, steps."""

from __future__ import annotations

import dataclasses
import math
import pickle
from fractions import Fraction as F

import mpmath
import numpy as np
import pytest
import sympy

from verigrad.schemes import (
    SCHEME_NAMES,
    Scheme,
    SchemeKind,
    StepMode,
    TruncationTerm,
    apply_scheme,
    default_step,
    default_step_grid,
    fornberg_weights,
    get_scheme,
    nominal_steps,
    representable_step,
    richardson_scheme,
    scheme_from_offsets,
    scheme_from_weights,
)

EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)


def fr(*values):
    return tuple(F(v) for v in values)


# ---------------------------------------------------------------------------
# Exact weights against published tables
# ---------------------------------------------------------------------------

# Fornberg (1988), Table 1 (first derivative, centred) and the standard
# one-sided second-order formula; the zero centre weight is dropped.
WEIGHT_TABLE = [
    ("forward", fr(0, 1), fr(-1, 1)),
    ("backward", fr(-1, 0), fr(-1, 1)),
    ("central", fr(-1, 1), fr("-1/2", "1/2")),
    ("central-half", fr("-1/2", "1/2"), fr(-1, 1)),
    ("forward2", fr(0, 1, 2), fr("-3/2", 2, "-1/2")),
    ("central4", fr(-2, -1, 1, 2), fr("1/12", "-2/3", "2/3", "-1/12")),
    ("central6", fr(-3, -2, -1, 1, 2, 3), fr("-1/60", "3/20", "-3/4", "3/4", "-3/20", "1/60")),
    (
        "central8",
        fr(-4, -3, -2, -1, 1, 2, 3, 4),
        fr("1/280", "-4/105", "1/5", "-4/5", "4/5", "-1/5", "4/105", "-1/280"),
    ),
    # (4 D_c(h/2) - D_c(h))/3 = [4 f(x+h/2) - 4 f(x-h/2) - f(x+h)/2 + f(x-h)/2] / (3h)
    ("richardson-central", fr(-1, "-1/2", "1/2", 1), fr("1/6", "-4/3", "4/3", "-1/6")),
    # 2 D_f(h/2) - D_f(h) = [-3 f(x) + 4 f(x+h/2) - f(x+h)] / h
    ("richardson-forward", fr(0, "1/2", 1), fr(-3, 4, -1)),
]


@pytest.mark.parametrize("name, offsets, weights", WEIGHT_TABLE)
def test_exact_weights(name, offsets, weights):
    s = get_scheme(name)
    assert s.kind is SchemeKind.LINEAR
    assert s.offsets == offsets
    assert s.weights == weights
    assert all(isinstance(q, F) for q in s.offsets + s.weights)


def test_fornberg_keeps_zero_weight_aligned_with_offsets():
    assert fornberg_weights([-2, -1, 0, 1, 2]) == fr("1/12", "-2/3", 0, "2/3", "-1/12")
    assert 0 not in get_scheme("central4").offsets


def test_fornberg_other_derivatives():
    assert fornberg_weights([-1, 0, 1], 2) == fr(1, -2, 1)
    assert fornberg_weights([-2, -1, 0, 1, 2], 2) == fr("-1/12", "4/3", "-5/2", "4/3", "-1/12")
    assert fornberg_weights([-1, 0, 1], 0) == fr(0, 1, 0)
    assert fornberg_weights([0, 1, 2, 3], 3) == fr(-1, 3, -3, 1)


@pytest.mark.parametrize(
    "offsets, derivative",
    [
        ((0, 1, 3), 1),
        ((-3, F(1, 3), 2, 7), 1),
        ((-1, F(1, 2), 2, 5, 11), 2),
        ((F(-7, 3), -1, 0, F(5, 4), 4, 9), 3),
        ((2, 0, -1), 1),  # unsorted offsets keep their order
    ],
)
def test_fornberg_matches_vandermonde_solve(offsets, derivative):
    # Independent reference: solve sum_k w_k c_k^j = q! [j == q], j = 0..n-1, with sympy.
    n = len(offsets)
    c = [sympy.Rational(o.numerator, o.denominator) if isinstance(o, F) else sympy.Integer(o) for o in offsets]
    A = sympy.Matrix(n, n, lambda j, k: c[k] ** j)
    b = sympy.Matrix(n, 1, lambda j, _: sympy.factorial(derivative) if j == derivative else 0)
    expected = tuple(F(int(v.p), int(v.q)) for v in A.LUsolve(b))
    assert fornberg_weights(offsets, derivative) == expected


def test_fornberg_is_cached():
    a = fornberg_weights([-3, -1, 2, 5])
    b = fornberg_weights((F(-3), F(-1), F(2), F(5)))
    assert a is b
    assert fornberg_weights.cache_info().hits >= 1


# ---------------------------------------------------------------------------
# Orders and leading coefficients, computed from the moments
# ---------------------------------------------------------------------------

ORDER_TABLE = [
    # name, order p, leading coefficient C in T = C f^(p+1) h^p
    ("forward", 1, F(1, 2)),
    ("backward", 1, F(-1, 2)),
    ("central", 2, F(1, 6)),
    ("central-half", 2, F(1, 24)),
    ("forward2", 2, F(-1, 3)),
    ("central4", 4, F(-1, 30)),
    ("central6", 6, F(1, 140)),
    ("central8", 8, F(-1, 630)),
    # (4/16 - 1)/3 * 1/120: the h^4 term of central, after extrapolation
    ("richardson-central", 4, F(-1, 480)),
    # (2/4 - 1) * 1/6: the h^2 term of forward, after extrapolation
    ("richardson-forward", 2, F(-1, 12)),
    ("complex-step", 2, F(-1, 6)),
]


@pytest.mark.parametrize("name, order, leading", ORDER_TABLE)
def test_order_and_leading_coefficient(name, order, leading):
    s = get_scheme(name)
    assert s.order == order
    assert s.leading_coefficient == leading
    assert s.leading_derivative == order + 1
    # consistency: m_0 = 0, m_1 = 1, m_2..m_p = 0, m_{p+1} = C (p+1)!
    assert s.moment(0) == 0
    assert s.moment(1) == 1
    assert all(s.moment(j) == 0 for j in range(2, order + 1))
    assert s.moment(order + 1) == leading * math.factorial(order + 1)


def test_orders_cover_all_names():
    assert {row[0] for row in ORDER_TABLE} == set(SCHEME_NAMES)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("forward", F(2)),
        ("central", F(1)),
        ("central-half", F(2)),
        ("central4", F(3, 2)),
        ("forward2", F(4)),
        ("richardson-forward", F(8)),
        ("complex-step", F(1)),
    ],
)
def test_sum_abs_weights(name, expected):
    assert get_scheme(name).sum_abs_weights() == expected


def test_complex_step_value():
    s = get_scheme("complex-step")
    assert s.kind is SchemeKind.COMPLEX_STEP
    assert s.requires_analytic
    assert s.offsets == () and s.weights == ()
    assert [s.moment(j) for j in range(6)] == [0, 1, 0, -1, 0, 1]
    assert s.truncation_series(7) == [(3, F(-1, 6)), (5, F(1, 120)), (7, F(-1, 5040))]
    assert not any(get_scheme(n).requires_analytic for n in SCHEME_NAMES if n != "complex-step")


def test_richardson_scheme_merges_and_extrapolates():
    central = get_scheme("central")
    r = richardson_scheme(central)
    assert (r.offsets, r.weights) == (get_scheme("richardson-central").offsets, get_scheme("richardson-central").weights)
    # The merged scheme equals the tableau step in exact arithmetic.
    with mpmath.workdps(40):
        f = mpmath.sin
        x, h = mpmath.mpf(1) / 3, mpmath.mpf(1) / 10

        def d(s, step):
            return sum(mpmath.mpf(w.numerator) / w.denominator * f(x + mpmath.mpf(c.numerator) / c.denominator * step)
                       for c, w in zip(s.offsets, s.weights)) / step

        tableau = (4 * d(central, h / 2) - d(central, h)) / 3
        assert abs(d(r, h) - tableau) < mpmath.mpf(10) ** -35
        fwd = get_scheme("forward")
        assert abs(d(get_scheme("richardson-forward"), h) - (2 * d(fwd, h / 2) - d(fwd, h))) < mpmath.mpf(10) ** -35
    # ratio 3 on forward: (3 D(h/3) - D(h))/2, order 2
    r3 = richardson_scheme(get_scheme("forward"), ratio=3)
    assert r3.order == 2
    assert r3.offsets == fr(0, "1/3", 1)
    assert r3.weights == fr(-4, "9/2", "-1/2")


def test_scheme_from_offsets_and_weights():
    s = scheme_from_offsets([2, 0, -1])
    assert s.name == "stencil[-1,0,2]"
    assert s.offsets == fr(-1, 0, 2)
    assert s.weights == fr("-2/3", "1/2", "1/6")
    assert s.order == 2
    # symmetric stencil gains one order; the zero-weight centre is dropped
    t = scheme_from_offsets(["-3/2", "-1/2", 0, "1/2", "3/2"], name="staggered4")
    assert t.order == 4 and F(0) not in t.offsets and t.name == "staggered4"
    u = scheme_from_weights([0, 0, 1, 1], [-1, 0, 2, -1], name="merged")
    assert (u.offsets, u.weights) == (fr(0, 1), fr(-1, 1))
    assert u.order == 1


# ---------------------------------------------------------------------------
# Truncation series against mpmath at 50 digits
# ---------------------------------------------------------------------------


def _mp(q: F):
    return mpmath.mpf(q.numerator) / q.denominator


def _exact_error_exp0(scheme: Scheme, h):
    """D(h) - f'(0) for f = exp, exactly (50 digits)."""
    if scheme.kind is SchemeKind.COMPLEX_STEP:
        return mpmath.im(mpmath.exp(mpmath.mpc(0, h))) / h - 1
    return sum(_mp(w) * mpmath.exp(_mp(c) * h) for c, w in zip(scheme.offsets, scheme.weights)) / h - 1


@pytest.mark.parametrize(
    "name, max_order",
    [
        ("forward", 12),
        ("backward", 12),
        ("central", 12),
        ("central-half", 12),
        ("forward2", 12),
        ("richardson-forward", 12),
        ("complex-step", 12),
        # higher-order schemes: their error is ~h^p, so more terms are needed
        # for the omitted tail to be 1e-25 of it
        ("central4", 20),
        ("richardson-central", 20),
        ("central6", 26),
        ("central8", 30),
    ],
)
def test_truncation_series_reproduces_exact_error(name, max_order):
    s = get_scheme(name)
    with mpmath.workdps(50):
        h = mpmath.mpf(1e-2)  # the binary double nearest 0.01, exactly
        exact = _exact_error_exp0(s, h)
        series = mpmath.fsum(_mp(t.coefficient) * h ** (t.derivative - 1) for t in s.truncation_series(max_order))
        assert abs(series - exact) <= mpmath.mpf(10) ** -25 * abs(exact)


def test_truncation_series_shape():
    terms = get_scheme("central").truncation_series(7)
    assert terms == [(3, F(1, 6)), (5, F(1, 120)), (7, F(1, 5040))]
    assert all(isinstance(t, TruncationTerm) for t in terms)
    assert terms[0].derivative == 3 and terms[0].coefficient == F(1, 6)
    assert get_scheme("central4").truncation_series(4) == []


# ---------------------------------------------------------------------------
# The classic error-vs-h table: f = exp at x = 0 in float64
# ---------------------------------------------------------------------------

STEPS = [10.0**-k for k in range(1, 10)]


def _exact_truncation(name: str, h: float):
    hm = mpmath.mpf(h)
    if name == "forward":
        return (mpmath.exp(hm) - 1) / hm - 1
    return (mpmath.exp(hm) - mpmath.exp(-hm)) / (2 * hm) - 1


@pytest.mark.parametrize("h", STEPS)
def test_error_table_forward_central_exp(h):
    # np.exp, not math.exp: the two libms may differ in the last bit
    fwd = apply_scheme(get_scheme("forward"), np.exp, 0.0, h)
    cen = apply_scheme(get_scheme("central"), np.exp, 0.0, h)
    # the float64 results are exactly the textbook expressions
    assert fwd == float((np.exp(np.float64(h)) - np.float64(1.0)) / np.float64(h))
    assert cen == float((np.exp(np.float64(h)) - np.exp(np.float64(-h))) / (np.float64(2.0) * np.float64(h)))
    with mpmath.workdps(50):
        for name, value in (("forward", fwd), ("central", cen)):
            s = get_scheme(name)
            total = mpmath.mpf(value) - 1  # E, exact: the float converts exactly
            trunc = _exact_truncation(name, h)  # T at the exact float step h
            # E - T is the round-off: at most a couple of ulps of f times sum|w|/h
            roundoff = abs(total - trunc)
            assert roundoff <= 2 * EPS64 * float(s.sum_abs_weights()) / h + EPS64
            # the truncation model: T = C f^(p+1) h^p (1 + O(h))
            model = float(s.leading_coefficient) * h**s.order
            assert abs(trunc / model - 1) < 2 * h


def test_error_table_known_values():
    # reference values: exact truncation errors of exp at 0, mpmath 50 digits
    with mpmath.workdps(50):
        assert mpmath.nstr(_exact_truncation("forward", 1e-1), 16) == "0.05170918075647625"
        assert mpmath.nstr(_exact_truncation("central", 1e-1), 16) == "0.001667500198440258"
        assert mpmath.nstr(_exact_truncation("forward", 1e-3), 16) == "0.0005001667083416681"
    # total float64 errors: truncation regime, optimum, round-off regime
    # (the round-off regime depends on the libm's last bit, so it is checked
    # against the bound in test_error_table_forward_central_exp, not pinned)
    err = {h: apply_scheme(get_scheme("forward"), np.exp, 0.0, h) - 1.0 for h in STEPS}
    assert err[1e-1] == pytest.approx(0.05170918075647624, rel=1e-13)
    assert err[1e-3] == pytest.approx(0.0005001667083416681, rel=1e-9)
    errc = {h: apply_scheme(get_scheme("central"), np.exp, 0.0, h) - 1.0 for h in STEPS}
    assert errc[1e-1] == pytest.approx(0.001667500198440, rel=1e-12)
    # the V: the best forward step is near sqrt(eps) = 1.5e-8, the best
    # central near eps^(1/3) = 6e-6; far from them the error is 100x worse
    best_f = min(STEPS, key=lambda h: abs(err[h]))
    best_c = min(STEPS, key=lambda h: abs(errc[h]))
    assert best_f in (1e-7, 1e-8)
    assert best_c in (1e-5, 1e-6)
    assert abs(err[1e-4]) > 100 * abs(err[best_f])
    assert abs(errc[1e-2]) > 100 * abs(errc[best_c]) and abs(errc[1e-9]) > 100 * abs(errc[best_c])


def _slope(scheme, f, fprime, x, hs):
    errs = [abs(apply_scheme(scheme, f, x, h) - fprime(x)) for h in hs]
    slope, _ = np.polyfit(np.log(hs), np.log(errs), 1)
    return slope


def _exp_c(z):
    return np.exp(z)


@pytest.mark.parametrize(
    "name, f, fprime, x, h_hi, h_lo",
    [
        ("forward", math.exp, math.exp, 0.0, 1e-1, 1e-3),
        ("backward", math.exp, math.exp, 0.0, 1e-1, 1e-3),
        ("central", math.exp, math.exp, 0.0, 1e-1, 1e-3),
        ("central-half", math.exp, math.exp, 0.0, 1e-1, 1e-3),
        ("forward2", math.exp, math.exp, 0.0, 1e-1, 1e-3),
        ("richardson-forward", math.exp, math.exp, 0.0, 1e-1, 1e-3),
        ("central", math.sin, math.cos, 1.0, 1e-1, 1e-3),
        # higher orders reach round-off (~1e-14) sooner: shorter truncation regime
        ("central4", math.exp, math.exp, 0.0, 1e-1, 1e-2),
        ("central4", math.sin, math.cos, 1.0, 1e-1, 1e-2),
        ("richardson-central", math.exp, math.exp, 0.0, 1e-1, 1e-2),
        ("central6", math.exp, math.exp, 0.0, 3e-1, 3e-2),
        ("central8", math.exp, math.exp, 0.0, 5e-1, 1e-1),
        ("complex-step", _exp_c, math.exp, 0.0, 1e-1, 1e-3),
    ],
)
def test_truncation_slope_float64(name, f, fprime, x, h_hi, h_lo):
    s = get_scheme(name)
    hs = np.logspace(np.log10(h_hi), np.log10(h_lo), 9)
    assert _slope(s, f, fprime, x, hs) == pytest.approx(s.order, abs=0.1)


def test_roundoff_slope_float64():
    # left arm of the V: error ~ eps/h, slope -1 (forward, exp at 0, h = 1e-10 .. 1e-14)
    hs = np.logspace(-10, -14, 30)
    assert _slope(get_scheme("forward"), math.exp, math.exp, 0.0, hs) == pytest.approx(-1.0, abs=0.25)


def test_complex_step_has_no_roundoff_arm():
    s = get_scheme("complex-step")
    for h in (1e-8, 1e-12, 1e-20, default_step(s, np.float64)):
        assert abs(apply_scheme(s, _exp_c, 0.5, h) - math.exp(0.5)) <= 2 * EPS64 * math.exp(0.5)


# ---------------------------------------------------------------------------
# Names, errors, immutability, display
# ---------------------------------------------------------------------------


def test_scheme_names():
    assert SCHEME_NAMES == (
        "forward",
        "backward",
        "central",
        "central-half",
        "forward2",
        "central4",
        "central6",
        "central8",
        "richardson-forward",
        "richardson-central",
        "complex-step",
    )
    for name in SCHEME_NAMES:
        assert get_scheme(name).name == name


def test_get_scheme_unknown_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown scheme 'centrl' \(did you mean 'central'\?\); valid schemes: ") as info:
        get_scheme("centrl")
    for name in SCHEME_NAMES:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="unknown scheme 'zzz'; valid schemes: forward, backward, central"):
        get_scheme("zzz")


def test_schemes_are_immutable_and_picklable():
    s = get_scheme("central4")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.order = 3
    with pytest.raises(AttributeError):
        s.weights = ()
    assert pickle.loads(pickle.dumps(s)) == s
    assert hash(s) == hash(get_scheme("central4"))


def test_repr_and_str_are_pinned():
    assert repr(get_scheme("central4")) == (
        "Scheme('central4', order=4, offsets=[-2,-1,1,2], weights=[1/12,-2/3,2/3,-1/12])"
    )
    assert repr(get_scheme("complex-step")) == "Scheme('complex-step', order=2, kind='complex-step')"
    assert str(get_scheme("central")) == (
        "central: f'(x) ~ [-1/2 f(x-h) + 1/2 f(x+h)] / h; order 2, error 1/6 f^(3)(x) h^2 + ..."
    )
    assert str(get_scheme("forward")) == "forward: f'(x) ~ [-f(x) + f(x+h)] / h; order 1, error 1/2 f^(2)(x) h + ..."
    assert get_scheme("central-half").formula() == "f'(x) ~ [-f(x-(1/2)h) + f(x+(1/2)h)] / h"


def test_direct_constructor_checks_the_moments():
    with pytest.raises(ValueError, match="the moments give order=2, leading_coefficient=1/6"):
        Scheme(
            name="liar",
            kind=SchemeKind.LINEAR,
            offsets=fr(-1, 1),
            weights=fr("-1/2", "1/2"),
            order=4,
            leading_coefficient=F(1, 6),
            leading_derivative=3,
            requires_analytic=False,
            description="",
        )
    with pytest.raises(ValueError, match="zero weights must be dropped"):
        Scheme(
            name="z",
            kind=SchemeKind.LINEAR,
            offsets=fr(-1, 0, 1),
            weights=fr("-1/2", 0, "1/2"),
            order=2,
            leading_coefficient=F(1, 6),
            leading_derivative=3,
            requires_analytic=False,
            description="",
        )


INVALID = [
    (lambda: fornberg_weights([0, 0, 1]), ValueError, r"offsets must be distinct, got repeated offset\(s\) 0"),
    (lambda: fornberg_weights([0], 1), ValueError, "need at least 2 distinct offsets for this derivative, got 1"),
    (lambda: fornberg_weights([0, 1], -1), ValueError, "derivative must be >= 0, got derivative=-1"),
    (lambda: fornberg_weights([0, 1], 1.5), TypeError, "derivative must be an int"),
    (lambda: fornberg_weights(["a", 1]), ValueError, r"offsets\[0\] must be a rational number"),
    (lambda: fornberg_weights([float("nan"), 1]), ValueError, r"offsets\[0\] must be finite"),
    (lambda: scheme_from_offsets([1]), ValueError, "need at least 2 distinct offsets"),
    (
        lambda: scheme_from_weights([0, 1], [1, 1], name="bad"),
        ValueError,
        r"scheme 'bad': the weights do not estimate a first derivative: need sum\(w\) = 0",
    ),
    (lambda: scheme_from_weights([0, 1], [1], name="bad"), ValueError, "offsets and weights differ in length: 2 != 1"),
    (lambda: richardson_scheme(get_scheme("central"), ratio=1), ValueError, "ratio must be > 1, got ratio=1"),
    (lambda: richardson_scheme(get_scheme("complex-step")), ValueError, "needs a linear scheme"),
    (lambda: get_scheme(3), TypeError, "scheme name must be a string"),
    (lambda: get_scheme("central").truncation_series(1), ValueError, "max_order must be >= 2"),
    (lambda: get_scheme("central").moment(-1), ValueError, "moment index must be an int >= 0, got j=-1"),
    (lambda: nominal_steps(0.0, np.zeros(2), StepMode.ABSOLUTE), ValueError, "step h must be finite and > 0, got h=0.0"),
    (lambda: nominal_steps(1e-3, np.zeros(2), "relativ"), ValueError, "unknown step mode 'relativ'; valid step modes: absolute, relative"),
    (lambda: nominal_steps(1e-3, np.arange(3), StepMode.ABSOLUTE), TypeError, "x must be a real floating-point array"),
    (lambda: representable_step(np.ones(2), 1e-3, np.complex128), TypeError,
     "dtype must be float16, bfloat16, float32 or float64, got complex128"),
    (lambda: default_step(get_scheme("central"), "int32"), TypeError, "dtype must be float16, bfloat16, float32, float64"),
    (lambda: default_step_grid(get_scheme("central"), np.float64, count=1), ValueError, "count must be an int >= 2, got count=1"),
]


@pytest.mark.parametrize("call, exc, message", INVALID)
def test_invalid_inputs(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------


def test_nominal_steps():
    x = np.array([0.0, 0.5, -3.0, 1e6], dtype=np.float32)
    a = nominal_steps(1e-4, x, StepMode.ABSOLUTE)
    assert a.dtype == np.float64 and a.shape == x.shape
    assert np.all(a == 1e-4)
    r = nominal_steps(1e-4, x, StepMode.RELATIVE)
    assert r.dtype == np.float64
    np.testing.assert_array_equal(r, 1e-4 * np.array([1.0, 1.0, 3.0, 1e6]))
    np.testing.assert_array_equal(nominal_steps(1e-4, x, "relative"), r)
    m = nominal_steps(1e-2, np.ones((2, 3)), mode=StepMode.RELATIVE)
    assert m.shape == (2, 3)


def test_representable_step_float32():
    x = np.float32(1.0)
    h = representable_step(x, 1e-7, np.float32)
    assert h.dtype == np.float32
    assert float(h) == 2.0**-23  # one ulp of 1 in float32: the nearest float32 to 1 + 1e-7 is 1 + 2^-23
    assert (x + h) - x == h
    assert float(h) / float(np.spacing(x)) == 1.0
    assert math.frexp(float(h))[0] == 0.5  # a power of two


def test_representable_step_arrays():
    x = np.array([1.0, 3.0, 1000.0, -7.25], dtype=np.float64)
    h = np.array([1e-8, 1e-8, 1e-8, 1e-8])
    s = representable_step(x, h, np.float64)
    assert s.dtype == np.float64 and s.shape == x.shape
    np.testing.assert_array_equal((x + s) - x, s)
    # every step is a whole number of ulps of its x
    ulps = s / np.spacing(x)
    np.testing.assert_array_equal(ulps, np.round(ulps))
    assert np.all(np.abs(s - h) <= np.abs(np.spacing(x)))
    # float32 from float64 input: x is rounded to float32 first (x_p = fl_p(x))
    s32 = representable_step(np.array([0.1, 2.0]), 1e-3, np.float32)
    assert s32.dtype == np.float32
    x32 = np.array([0.1, 2.0], dtype=np.float32)
    np.testing.assert_array_equal((x32 + s32) - x32, s32)
    # below half an ulp the step is lost, and says so by being 0
    assert representable_step(np.float32(1e6), 1e-4, np.float32) == 0


@pytest.mark.parametrize(
    "name, dtype, expected",
    [
        ("forward", np.float64, EPS64**0.5),
        ("central", np.float64, EPS64 ** (1 / 3)),
        ("central", np.float32, EPS32 ** (1 / 3)),
        ("central4", np.float64, EPS64 ** (1 / 5)),
        ("central8", np.float32, EPS32 ** (1 / 9)),
        ("complex-step", np.float64, EPS64),
        ("complex-step", np.complex64, EPS32),
    ],
)
def test_default_step(name, dtype, expected):
    assert default_step(get_scheme(name), dtype) == pytest.approx(expected, rel=1e-15)


def test_default_step_forward_float64_is_sqrt_eps():
    assert default_step(get_scheme("forward"), np.float64) == 2.0**-26


@pytest.mark.parametrize("name", SCHEME_NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_step_grid(name, dtype):
    s = get_scheme(name)
    g = default_step_grid(s, dtype)
    assert g.dtype == np.float64 and g.shape == (30,)
    assert np.all(np.diff(g) > 0)
    assert g[0] < default_step(s, dtype) < g[-1]
    assert g[-1] == 1.0
    ratios = g[1:] / g[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)


@pytest.mark.parametrize("name", ["forward", "central", "central4"])
def test_default_step_grid_shows_both_arms_float64(name):
    # exp at x = 1 in float64: the minimum is interior and near default_step,
    # and both ends are much worse than the minimum.
    s = get_scheme(name)
    g = default_step_grid(s, np.float64, count=40)
    errs = np.array([abs(apply_scheme(s, math.exp, 1.0, h) - math.e) for h in g])
    i = int(np.argmin(errs))
    assert 0 < i < len(g) - 1
    assert default_step(s, np.float64) / 100 < g[i] < default_step(s, np.float64) * 100
    assert errs[0] > 1e3 * errs[i] and errs[-1] > 1e3 * errs[i]


def test_apply_scheme_central4_on_sin():
    s = get_scheme("central4")
    err = apply_scheme(s, math.sin, 1.0, 1e-2) - math.cos(1.0)
    # model: C f^(5)(1) h^4 = -1/30 cos(1) 1e-8
    assert err == pytest.approx(-math.cos(1.0) * 1e-8 / 30, rel=1e-3)
