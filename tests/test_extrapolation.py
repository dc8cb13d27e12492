"""The scheme syntax, any stencil, multi-level Richardson, Ridders and numDeriv, against references.

References reproduced here:

* R numDeriv 2016.8-1.1, ``grad(method="Richardson")``: every value below was printed by R
  (``sprintf("%.17g")``) on the same C library (glibc ``sin``/``exp``); they are the digits of
  numDeriv's documented examples (``grad(sin, pi)``, ``grad(sin, (0:10)*2*pi/10)``,
  ``func1 <- function(x) sin(10*x) - exp(-x)`` at 2.04 and 1:10) and of its tests
  (``tests/grad01.R``: ``grad(sin, pi)`` within 1e-11 of cos(pi)). They must come out digit for digit.
* Numerical Recipes 3rd ed., section 5.7 ``dfridr``: transcribed line by line below
  (:func:`nr_dfridr`) and compared digit for digit; the TI-89 port of dfridr published in the
  TI-89 tip list prints ``{3.42551882081, 1.4E-12}`` for tan at 1 with h = 0.1 (its 12 digits).
* Closed forms with mpmath at 60 digits: tan'(x) = sec(x)^2, the exact truncation of the schemes.
"""

from __future__ import annotations

import math
from fractions import Fraction as F

import mpmath
import numpy as np
import pytest

from verigrad.schemes import (
    METHOD_SIGNATURES,
    SCHEME_NAMES,
    EstimateStatus,
    NumDeriv,
    Ridders,
    Scheme,
    apply_scheme,
    default_step,
    fornberg_weights,
    get_scheme,
    richardson_scheme,
    scheme_from_offsets,
)
from verigrad.schemes.syntax import format_value, parse_call


# ---------------------------------------------------------------------------------------------
# numDeriv, digit for digit
# ---------------------------------------------------------------------------------------------

def func1(x):
    return math.sin(10 * x) - math.exp(-x)


NUMDERIV = [
    # (method string, function, x, R's printed value)
    ("numderiv()", math.sin, math.pi, "-0.99999999999338152"),
    ("numderiv()", func1, 2.04, "0.33353714419808045"),
    ("numderiv()", math.exp, 1.0, "2.718281828442632"),
    ("numderiv()", math.exp, 0.0, "0.99999999999748479"),
    ("numderiv()", math.exp, 1e-6, "1.0000010000030661"),
    ("numderiv(d=0.01)", math.sin, math.pi, "-1.0000000000000757"),
    ("numderiv(r=6)", math.sin, math.pi, "-0.99999999999597688"),
    ("numderiv(v=3)", math.sin, math.pi, "-1.0000000000128397"),
    ("numderiv(side=1)", math.sin, math.pi, "-1.0000000000029328"),
    ("numderiv(side=-1)", math.sin, math.pi, "-1.0000000000029328"),
]
# grad(sin, (0:10)*2*pi/10): sin applied to a vector, one derivative per point (numDeriv "case 3")
SIN_VECTOR = ["1", "0.80901699436724894", "0.30901699437215852", "-0.3090169943735675", "-0.80901699436884356",
              "-0.99999999999338152", "-0.80901699437029773", "-0.3090169943733122", "0.30901699437204233",
              "0.80901699436918528", "0.99999999999338118"]
# grad(func1, 1:10)
FUNC1_VECTOR = ["-8.022835849642167", "4.2161559013969718", "1.5923015672381202", "-6.6510649776784367",
                "9.6563982319125969", "-9.5216510519310056", "6.3341039129072891", "-1.103536975769297",
                "-4.4806127514944443", "8.6232341227995981"]


@pytest.mark.parametrize("spec, f, x, published", NUMDERIV)
def test_numderiv_reproduces_r_digit_for_digit(spec, f, x, published):
    est = get_scheme(spec).estimate(f, x)
    assert est.value == float(published)
    assert est.evaluations == 2 * get_scheme(spec).r


def test_numderiv_vector_examples_digit_for_digit():
    nd = get_scheme("numderiv()")
    xs = [k * 2 * math.pi / 10 for k in range(11)]
    assert [nd.estimate(math.sin, x).value for x in xs] == [float(v) for v in SIN_VECTOR]
    assert [nd.estimate(func1, float(x)).value for x in range(1, 11)] == [float(v) for v in FUNC1_VECTOR]
    # numDeriv's own test (tests/grad01.R): within 1e-11 of cos(pi)
    assert abs(nd.estimate(math.sin, math.pi).value - math.cos(math.pi)) < 1e-11


def test_numderiv_steps_follow_its_rule():
    nd = NumDeriv()
    assert nd.zero_tolerance == math.sqrt(2.0**-52 / 7e-7)
    assert nd.first_step(math.pi) == abs(1e-4 * math.pi)
    assert nd.first_step(0.0) == 1e-4  # |x| < zero.tol adds eps
    assert nd.first_step(1e-6) == abs(1e-4 * 1e-6) + 1e-4
    est = nd.estimate(math.exp, 1.0)
    assert est.steps == (1e-4, 1e-4 / 2, 1e-4 / 4, 1e-4 / 8)


def test_numderiv_entry_scheme_exact_order():
    # v = 2: the 4^m extrapolation cancels h^2, h^4, h^6: order 8
    assert get_scheme("numderiv()").entry_scheme().order == 8
    # v != 2: numDeriv still uses 4^m (its comment: "this formula assumes v=2"), so only order 2
    assert get_scheme("numderiv(v=3)").entry_scheme().order == 2
    assert get_scheme("numderiv(side=1)").entry_scheme().order == 1
    w = get_scheme("numderiv(r=2)").entry_scheme()
    assert w == richardson_scheme(get_scheme("central"), name=w.name, description=w.description)


def test_numderiv_model_path_reproduces_r_for_two_variables(tmp_path):
    """grad(rosen, c(2, 3)) with rosen <- function(x) (1-x[1])^2 + 105*(x[2]-x[1]^2)^2 (R prints below)."""
    from verigrad.casefile.loader import load_case
    from verigrad.engine.model import compile_case
    from verigrad.fd import adaptive_gradient
    from verigrad.spec import Dtype

    path = tmp_path / "rosen.toml"
    path.write_text('name = "rosen"\nloss = "(1 - x[0])**2 + 105*(x[1] - x[0]**2)**2"\n'
                    "[symbols]\nx = { value = [2.0, 3.0] }\n")
    model = compile_case(load_case(path))
    res = adaptive_gradient(model, dtype=Dtype.FLOAT64, method=NumDeriv())
    assert res.value["x"].tolist() == [841.99999999384931, -209.99999999964456]
    assert set(res.status["x"].tolist()) == {"converged"}


# ---------------------------------------------------------------------------------------------
# Ridders, digit for digit against a transcription of Numerical Recipes
# ---------------------------------------------------------------------------------------------

def nr_dfridr(func, x, h, ntab=10, con=1.4, safe=2.0):
    """Numerical Recipes 3rd ed. dfridr, transcribed line by line (doubles; BIG = DBL_MAX)."""
    con2 = con * con
    big = 1.7976931348623157e308
    a = [[0.0] * ntab for _ in range(ntab)]
    hh = h
    a[0][0] = (func(x + hh) - func(x - hh)) / (2.0 * hh)
    err = big
    ans = None
    for i in range(1, ntab):
        hh /= con
        a[0][i] = (func(x + hh) - func(x - hh)) / (2.0 * hh)
        fac = con2
        for j in range(1, i + 1):
            a[j][i] = (a[j - 1][i] * fac - a[j - 1][i - 1]) / (fac - 1.0)
            fac = con2 * fac
            errt = max(abs(a[j][i] - a[j - 1][i]), abs(a[j][i] - a[j - 1][i - 1]))
            if errt <= err:
                err = errt
                ans = a[j][i]
        if abs(a[i][i] - a[i - 1][i - 1]) >= safe * err:
            break
    return ans, err


@pytest.mark.parametrize("f, x, h", [(math.tan, 1.0, 0.1), (math.exp, 1.0, 0.5), (math.sin, 2.0, 1.0),
                                     (math.log, 3.0, 0.3), (lambda t: t ** 3 - 2 * t, -1.25, 0.2),
                                     (math.atan, 0.3, 0.05)])
def test_ridders_matches_numerical_recipes_digit_for_digit(f, x, h):
    est = get_scheme(f"ridders(h0={h})").estimate(f, x)
    ans, err = nr_dfridr(f, x, h)
    assert (est.value, est.error_estimate) == (ans, err)


def test_ridders_tan_against_closed_form_and_the_published_port():
    est = Ridders(h0=F(1, 10)).estimate(math.tan, 1.0)
    with mpmath.workdps(60):
        exact = mpmath.sec(1) ** 2
    assert abs(est.value - float(exact)) < 1e-13
    assert f"{est.value:.12g}" == "3.42551882081"  # TI-89 tip list, nder1("tan", 1, .1)
    assert est.error_estimate < 1.4e-12  # the port prints 1.4E-12 in 14-digit decimal arithmetic
    assert est.status is EstimateStatus.CONVERGED
    assert est.evaluations == 2 * len(est.steps) and len(est.nodes) == est.evaluations
    # the returned entry is an exact linear scheme of order 2 (level + 1)
    j, i = est.entry
    assert Ridders().entry_scheme(est.entry).order == 2 * (j + 1)


def test_ridders_flags_a_tableau_across_a_pole():
    """tan has a pole at pi/2 = 1.5708: from x = 1.5 a first step of 1 spans it (NR: try another h)."""
    est = Ridders(h0=F(1)).estimate(math.tan, 1.5)
    assert est.status is EstimateStatus.NOT_CONVERGED
    assert "did not settle" in est.reason
    assert abs(est.value - 1 / math.cos(1.5) ** 2) > 100  # the estimate is garbage ...
    assert est.error_estimate > 1  # ... and its error estimate says so
    ok = Ridders(h0=F(1, 100)).estimate(math.tan, 1.5)
    assert ok.status is EstimateStatus.CONVERGED and abs(ok.value - 1 / math.cos(1.5) ** 2) < 1e-8


def test_ridders_nonfinite_values_are_flagged():
    est = Ridders(h0=F(2)).estimate(lambda t: math.sqrt(t) if t >= 0 else math.nan, 1.0)
    assert est.status is EstimateStatus.NONFINITE


def test_ridders_float32_arithmetic_stays_float32():
    est = Ridders(h0=F(1, 10)).estimate(lambda t: np.float32(np.tan(np.float32(t))), 1.0, dtype=np.float32)
    assert est.dtype == "float32"
    assert all(float(np.float32(s)) == s for s in est.steps)
    assert abs(est.value - 3.4255188208147) < 1e-4


def test_adaptive_methods_are_immutable_values():
    r = get_scheme("ridders(h0=0.1)")
    r.estimate(math.sin, 1.0)
    assert r == Ridders(h0=F(1, 10)) and hash(r) == hash(Ridders(h0=F(1, 10)))
    with pytest.raises(AttributeError):
        r.h0 = 1
    assert r.name == "ridders(h0=0.1, con=1.4, ntab=10, safe=2)"
    assert get_scheme(r.name) == r
    assert NumDeriv().name == "numderiv(d=1e-4, eps=1e-4, r=4, v=2)"


# ---------------------------------------------------------------------------------------------
# Richardson: any number of terms, any ratio, exact weights
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio", [2, 3, F(3, 2)])
@pytest.mark.parametrize("terms", [2, 3, 4])
def test_richardson_terms_equal_the_unique_maximal_order_stencil(terms, ratio):
    s = get_scheme(f'richardson(base="central", terms={terms}, ratio={ratio})')
    offsets = sorted({sign * F(ratio) ** -k for k in range(terms) for sign in (1, -1)})
    assert s.offsets == tuple(offsets)
    # 2 terms nodes ±1, ±1/r have a unique weight vector of order 4 (and so on): Fornberg's
    assert s.weights == tuple(w for w in fornberg_weights(offsets, 1) if w != 0)
    assert s.order == 2 * terms
    assert s.error_reference is not None and s.error_reference.order == 2 * (terms - 1)


def test_richardson_two_terms_is_the_registry_scheme_and_three_terms_is_order_six():
    two = get_scheme('richardson(base="central", terms=2, ratio=2)')
    assert two.weights == get_scheme("richardson-central").weights
    three = get_scheme('richardson(base="central", terms=3)')
    assert [str(w) for w in three.weights] == ["-1/90", "4/9", "-128/45", "128/45", "-4/9", "1/90"]
    assert three.leading_coefficient == F(1, 322560)
    fwd = get_scheme('richardson(base="forward", terms=3)')
    assert fwd.order == 3 and fwd.offsets == (0, F(1, 4), F(1, 2), 1)


def test_richardson_truncation_is_exact_against_mpmath():
    """D(h) - f'(x) equals the exact series sum m_j/j! f^(j)(x) h^(j-1) (f = exp at x = 0.3)."""
    s = get_scheme('richardson(base="central", terms=3, ratio=2)')
    with mpmath.workdps(80):
        x, h = mpmath.mpf("0.3"), mpmath.mpf("0.25")
        d = sum(mpmath.mpf(w.numerator) / w.denominator * mpmath.exp(x + mpmath.mpf(c.numerator) / c.denominator * h)
                for c, w in zip(s.offsets, s.weights)) / h
        t = d - mpmath.exp(x)
        series = sum(mpmath.mpf(term.coefficient.numerator) / term.coefficient.denominator * mpmath.exp(x)
                     * h ** (term.derivative - 1) for term in s.truncation_series(40))
        assert abs(t - series) < mpmath.mpf(10) ** -60
        assert abs(t / (mpmath.exp(x) * h**6 / 322560) - 1) < 0.01  # the leading term dominates


# ---------------------------------------------------------------------------------------------
# Any stencil, any derivative
# ---------------------------------------------------------------------------------------------

def test_stencil_syntax_gives_exact_fornberg_weights():
    s = get_scheme("stencil(offsets=[-2, -1, 0, 1, 2], deriv=1)")
    assert s == get_scheme("stencil(offsets=[-2,-1,0,1,2])")
    assert s.weights == get_scheme("central4").weights and s.order == 4
    q = get_scheme("stencil(offsets=[0, 1/2, 1])")
    assert [str(w) for w in q.weights] == ["-3", "4", "-1"] and q.name == "stencil(offsets=[0, 1/2, 1])"
    d2 = get_scheme("stencil(offsets=[-1, 0, 1], deriv=2)")
    assert d2.weights == (1, -2, 1) and d2.derivative == 2 and d2.order == 2
    assert d2.leading_coefficient == F(1, 12) and d2.leading_derivative == 4
    assert d2.formula() == "f''(x) ~ [f(x-h) - 2 f(x) + f(x+h)] / h^2"
    assert str(d2).endswith("order 2, error 1/12 f^(4)(x) h^2 + ...")
    # a rational stencil for the third derivative
    d3 = get_scheme("stencil(offsets=[-3/2, -1/2, 1/2, 3/2], deriv=3)")
    assert d3.weights == (-1, 3, -3, 1) and d3.order == 2


@pytest.mark.parametrize("spec, offsets, weights, order", [
    ("central(deriv=2)", [-1, 0, 1], [1, -2, 1], 2),
    ("central4(deriv=2)", [-2, -1, 0, 1, 2], ["-1/12", "4/3", "-5/2", "4/3", "-1/12"], 4),
    ("forward(deriv=2)", [0, 1, 2], [1, -2, 1], 1),
    ("backward(deriv=2)", [-2, -1, 0], [1, -2, 1], 1),
    ("central(deriv=3)", [-2, -1, 1, 2], ["-1/2", 1, -1, "1/2"], 2),
    ("central(deriv=4)", [-2, -1, 0, 1, 2], [1, -4, 6, -4, 1], 2),
    ("central(deriv=1)", [-1, 1], ["-1/2", "1/2"], 2),
])
def test_named_schemes_take_a_derivative_order(spec, offsets, weights, order):
    s = get_scheme(spec)
    assert s.offsets == tuple(F(c) for c in offsets)
    assert s.weights == tuple(F(w) for w in weights)
    assert s.order == order


def test_second_difference_against_mpmath_and_its_optimal_step():
    s = get_scheme("central(deriv=2)")
    with mpmath.workdps(50):
        x, h = mpmath.mpf(1), mpmath.mpf("0.01")
        d = (mpmath.exp(x - h) - 2 * mpmath.exp(x) + mpmath.exp(x + h)) / h**2
        t = d - mpmath.exp(x)
        assert abs(t / (mpmath.exp(x) * h**2 / 12) - 1) < 1e-4
    assert apply_scheme(s, math.exp, 1.0, 1e-3) == pytest.approx(math.e, rel=1e-5)
    # h* ~ eps^(1/(p+q)) = eps^(1/4): u^(1/4) scaling
    assert default_step(s, np.float64) == pytest.approx(np.finfo(np.float64).eps ** 0.25)
    assert default_step(s, np.float32) == pytest.approx(np.finfo(np.float32).eps ** 0.25)


def test_scheme_from_offsets_derivative_validation():
    with pytest.raises(ValueError, match="derivative must be an int >= 1, got derivative=0"):
        scheme_from_offsets([0, 1], derivative=0)
    with pytest.raises(ValueError, match="need at least 3 distinct offsets"):
        scheme_from_offsets([0, 1], derivative=2)


# ---------------------------------------------------------------------------------------------
# The syntax and its errors
# ---------------------------------------------------------------------------------------------

def test_existing_names_are_unchanged():
    for name in SCHEME_NAMES:
        s = get_scheme(name)
        assert s.name == name and s.derivative == 1 and s.error_reference is None
        assert get_scheme(name + "()") is s


def test_parse_call_keeps_numbers_exact():
    c = parse_call('ridders(h0=0.1, con=1.4, ntab=10)')
    assert c.kwargs == {"h0": F(1, 10), "con": F(7, 5), "ntab": 10}
    assert parse_call("stencil(offsets=[-1/2, 1e-1, +3])").kwargs["offsets"] == (F(-1, 2), F(1, 10), F(3))
    assert format_value(F(1, 10000)) == "1e-4" and format_value(F(7, 5)) == "1.4"
    assert format_value(F(1, 3)) == "1/3"


BAD = [
    ("ridders(h=0.1)", r"scheme 'ridders\(h=0\.1\)': unknown parameter h=0\.1 \(did you mean 'h0'\?\); "
                       r"ridders takes h0, con, ntab, safe"),
    ("ridders(con=1)", r"con=1 must be > 1 \(the step ratio between columns\)"),
    ("ridders(ntab=1.5)", r"ntab=1\.5 must be a whole number"),
    ("numderiv(side=2)", r"side=2 must be 0 \(central\), 1 \(forward\) or -1 \(backward\)"),
    ("numderiv(r=0)", r"r=0 must be >= 1"),
    ("central(deriv=0)", r"deriv=0 must be a whole number from 1 to 12 \(the derivative order\)"),
    ("central(order=2)", r"unknown parameter order=2 .*; central takes deriv"),
    ("complex-step(deriv=2)", r"unknown parameter deriv=2; complex-step takes no parameters"),
    ("stencil(deriv=2)", r"stencil needs offsets=\[\.\.\.\]"),
    ("stencil(offsets=[0])", r"offsets=\[0\] has 1 offsets; deriv=1 needs at least 2"),
    ("stencil(offsets=[1, 1])", r"offsets must be distinct, got repeated offset\(s\) 1"),
    ("stencil(offsets=1)", r"offsets=1 must be a list of numbers"),
    ('richardson(base="complex-step")', r'base="complex-step" must be a linear scheme'),
    ('richardson(terms=1)', r"terms=1 must be a whole number from 2 to 8"),
    ('richardson(ratio=1)', r"ratio=1 must be > 1"),
    ('richardson(base="centrl")', r"unknown scheme 'centrl' \(did you mean 'central'\?\)"),
    ("foo(x=1)", r"unknown scheme 'foo' in 'foo\(x=1\)'; valid schemes: forward, backward, central, .*"
                 r"ridders\(h0=0\.1, con=1\.4, ntab=10, safe=2\)"),
    ("ridders(h0=0.1", r"expected '\)' at position 14, got the end of the string"),
    ("ridders(h0=0.1, h0=0.2)", r"parameter 'h0' is given twice"),
    ("ridders(h0=$)", r"unexpected character '\$' at position 11"),
    ("ridders(h0=1/0)", r"division by zero"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_scheme_strings_are_refused_with_the_reason(text, message):
    with pytest.raises(ValueError, match=message):
        get_scheme(text)


def test_unknown_names_list_the_parametrised_methods():
    with pytest.raises(ValueError) as info:
        get_scheme("zzz")
    for sig in METHOD_SIGNATURES.values():
        assert sig in str(info.value)


def test_a_scheme_string_is_never_evaluated():
    with pytest.raises(ValueError):
        get_scheme("__import__('os').system('true')")
    with pytest.raises(ValueError):
        get_scheme("stencil(offsets=[1, 2] + [3])")


def test_get_scheme_returns_scheme_or_adaptive_method():
    assert isinstance(get_scheme("stencil(offsets=[0, 1])"), Scheme)
    assert isinstance(get_scheme("ridders()"), Ridders)
    assert isinstance(get_scheme("numderiv()"), NumDeriv)


def test_ridders_on_a_case_loss_is_dfridr_on_the_float_loss():
    """Along a coordinate, the model path evaluates f_p(fl(x + h_i)): the same as dfridr on numpy's exp."""
    from verigrad.casefile.loader import load_case_text
    from verigrad.engine.model import compile_case
    from verigrad.fd import adaptive_directional, adaptive_gradient, coordinate_direction
    from verigrad.spec import Dtype

    model = compile_case(load_case_text('name = "e"\nloss = "exp(x) * 3"\n[symbols]\nx = { value = 1.0 }\n',
                                        path="e.toml"))
    est = adaptive_directional(model, dtype=Dtype.FLOAT64, method=Ridders(h0=F(1, 2)),
                               direction=coordinate_direction(model))
    ans, err = nr_dfridr(lambda t: float(np.exp(np.float64(t)) * 3), 1.0, 0.5)
    assert (est.value, est.error_estimate) == (ans, err)
    g = adaptive_gradient(model, dtype=Dtype.FLOAT64, method=NumDeriv())
    assert float(g.value["x"]) == NumDeriv().estimate(lambda t: float(np.exp(np.float64(t)) * 3), 1.0).value
