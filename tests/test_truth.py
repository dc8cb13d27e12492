"""The exact gradient and its certification, against independent references."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy

from verigrad import DomainError, Dtype, certify, compile_case, load_case_text
from verigrad.casefile.loader import point_in_dtype
from verigrad.expr.functions import FUNCTIONS
from verigrad.expr.evaluate import evaluate
from verigrad.expr.graph import Builder
from verigrad.expr.reverse import gradient_graph
from verigrad.engine.backends import MPBackend, FloatBackend

F64, F32 = Dtype.FLOAT64, Dtype.FLOAT32


def _model(text: str):
    return compile_case(load_case_text(text, path="t.toml"))


def _truth(model, dtype=F64, digits=30):
    return certify(model, point_in_dtype(model.point, dtype), dtype, digits=digits)


def _q(x: float) -> Fraction:
    return Fraction(float(x))


LINREG = """
name = "linreg"
seed = 7
loss = "sum((y - X @ b)**2) / (2*20)"
[symbols]
X = { constant = true, shape = [20, 2], init = "normal" }
y = { constant = true, shape = [20], init = "normal" }
b = { shape = [2], init = "normal" }
"""


@pytest.mark.parametrize("dtype", [F32, F64])
def test_linear_regression_closed_form_exact_rationals(dtype):
    m = _model(LINREG)
    t = _truth(m, dtype, digits=40)
    p = t.point
    X = [[_q(v) for v in row] for row in p["X"]]
    y = [_q(v) for v in p["y"]]
    b = [_q(v) for v in p["b"]]
    n = 20
    r = [y[i] - sum(X[i][j] * b[j] for j in range(2)) for i in range(n)]
    exact = [-Fraction(1, n) * sum(X[i][j] * r[i] for i in range(n)) for j in range(2)]
    with mpmath.workdps(60):
        for j in range(2):
            ref = mpmath.mpf(exact[j].numerator) / exact[j].denominator
            assert abs(t.gradient["b"][j] - ref) <= mpmath.mpf(10) ** -38 * abs(ref)


def test_no_53_bit_rounding_of_constants():
    """Products of data with 1/200 must not be rounded to 53 bits (the measured sympy-Float trap)."""
    text = """
name = "trap"
seed = 3
loss = "sum(X @ w) * (1/200) + sum(0.1 * w**2)"
[symbols]
X = { constant = true, shape = [200, 3], init = "normal" }
w = { shape = [3], init = "normal" }
"""
    m = _model(text)
    t = _truth(m, F64, digits=40)
    X = m.point["X"]
    w = m.point["w"]
    for j in range(3):
        exact = sum(_q(X[i, j]) for i in range(200)) * Fraction(1, 200) + Fraction(2, 10) * _q(w[j])
        with mpmath.workdps(60):
            ref = mpmath.mpf(exact.numerator) / exact.denominator
            rel = abs(t.gradient["w"][j] - ref) / abs(ref)
        # a 53-bit rounding anywhere would leave ~1e-16 here
        assert rel < 1e-35


LOGREG = """
name = "logreg"
seed = 2
loss = "mean(softplus(-y * (X @ w))) + 0.01 * sum(w**2)"
[symbols]
X = { constant = true, shape = [30, 4], init = "normal" }
y = { constant = true, value = [1, -1, 1, 1, -1, -1, 1, -1, 1, 1, 1, -1, -1, 1, -1, 1, -1, 1, 1, -1, 1, -1, -1, 1, 1, -1, 1, -1, 1, 1] }
w = { shape = [4], init = "normal" }
"""


def test_logistic_regression_against_closed_form_in_mpmath():
    m = _model(LOGREG)
    t = _truth(m, F64, digits=30)
    X, y, w = m.point["X"], m.point["y"], m.point["w"]
    with mpmath.workdps(70):
        g = [mpmath.mpf(0)] * 4
        for i in range(30):
            z = -mpmath.mpf(y[i]) * mpmath.fsum(mpmath.mpf(X[i, j]) * mpmath.mpf(w[j]) for j in range(4))
            s = 1 / (1 + mpmath.exp(-z))  # d softplus(z)/dz
            for j in range(4):
                g[j] += s * (-mpmath.mpf(y[i]) * mpmath.mpf(X[i, j])) / 30
        for j in range(4):
            g[j] += mpmath.mpf("0.02") * mpmath.mpf(w[j])
            assert abs(t.gradient["w"][j] - g[j]) < mpmath.mpf(10) ** -29 * abs(g[j])


def test_rosenbrock_closed_form():
    text = """
name = "rosen"
loss = "sum(100*(x[1:] - x[:-1]**2)**2 + (1 - x[:-1])**2)"
[symbols]
x = { value = [-1.2, 1.0, 0.5, 2.0, -0.3] }
"""
    m = _model(text)
    t = _truth(m, F64, digits=30)
    x = [_q(v) for v in m.point["x"]]
    n = len(x)
    g = [Fraction(0)] * n
    for i in range(n - 1):
        g[i] += -400 * x[i] * (x[i + 1] - x[i] ** 2) - 2 * (1 - x[i])
        g[i + 1] += 200 * (x[i + 1] - x[i] ** 2)
    for i in range(n):
        assert t.gradient["x"][i] == pytest.approx(float(g[i]), rel=1e-15)
        with mpmath.workdps(50):
            assert abs(t.gradient["x"][i] - mpmath.mpf(g[i].numerator) / g[i].denominator) < 1e-28 * (1 + abs(g[i]))


NET = """
name = "net"
seed = 1
rng = "numpy-legacy"
loss = "mean(-Y*log(A2) - (1 - Y)*log(1 - A2))"
[symbols]
X  = { constant = true, shape = [3, 2], init = "normal" }
Y  = { constant = true, value = [[1, 0]] }
W1 = { shape = [2, 3], init = "normal" }
b1 = { shape = [2, 1], value = 0.1 }
[define]
Z1 = "W1 @ X + b1"
A1 = "tanh(Z1)"
A2 = "sigmoid(sum(A1, axis=0, keepdims=True))"
"""


def test_reverse_accumulation_matches_sympy_diff_per_entry():
    m = _model(NET)
    t = _truth(m, F64, digits=30)
    syms = m.sympy_symbols()
    loss = m.sympy_eval([m.loss], syms, display=False)[0][()]
    subs = {}
    for k, a in syms.items():
        for idx in np.ndindex(*a.shape):
            subs[a[idx]] = sympy.Rational(float(m.point[k][idx]))
    for name in ("W1", "b1"):
        for idx in np.ndindex(*m.shape(name)):
            d = sympy.diff(loss, syms[name][idx]).subs(subs)
            with mpmath.workdps(60):
                ref = mpmath.mpf(sympy.N(d, 50))
                assert abs(t.gradient[name][idx] - ref) < mpmath.mpf(10) ** -29 * abs(ref)


def test_legacy_rng_reproduces_numpy_seed_scripts():
    m = _model(NET)
    np.random.seed(1)
    X = np.random.randn(3, 2)
    W1 = np.random.randn(2, 3)
    assert np.array_equal(m.point["X"], X)
    assert np.array_equal(m.point["W1"], W1)


def test_float32_truth_is_at_the_float32_point():
    m = _model(NET)
    t32 = _truth(m, F32)
    assert t32.point["W1"].dtype == np.float32
    # the truth uses x_32 exactly: recomputing at x_32 upcast to float64 gives the same numbers
    p = {k: v.astype(np.float64) for k, v in t32.point.items()}
    t = certify(m, p, F64, digits=30)
    assert all(t.gradient["W1"][i] == t32.gradient["W1"][i] for i in np.ndindex(2, 3))
    t64 = _truth(m, F64)
    assert t64.gradient["W1"][0, 0] != t32.gradient["W1"][0, 0]  # input-rounding sensitivity is visible


def test_exact_zeros_of_dead_relu_are_exact():
    text = """
name = "dead"
loss = "sum(relu(w * x))"
[symbols]
x = { constant = true, value = [1.0, 2.0, 3.0] }
w = { value = [-1.0, 0.5, -2.0] }
"""
    t = _truth(_model(text))
    assert list(t.exact_zero["w"]) == [True, False, True]
    assert t.gradient["w"][1] == 2


def test_certified_digits_and_precision_scoped():
    before = mpmath.mp.prec
    m = _model(LOGREG)
    t = certify(m, point_in_dtype(m.point, F64), F64, digits=50)
    assert mpmath.mp.prec == before
    assert t.precision >= 50 * 3.32
    t2 = certify(m, point_in_dtype(m.point, F64), F64, digits=80)
    with mpmath.workdps(90):
        assert abs(t.gradient["w"][0] - t2.gradient["w"][0]) < mpmath.mpf(10) ** -49 * abs(t2.gradient["w"][0])


def test_cancellation_is_resolved_by_raising_precision():
    # (1 - cos x)/x^2 at x = 1e-30: naive evaluation at 100 bits loses everything; certification must raise it
    text = """
name = "cancel"
loss = "(1 - cos(x)) / x**2"
[symbols]
x = { value = 1e-30 }
"""
    m = _model(text)
    t = certify(m, point_in_dtype(m.point, F64), F64, digits=20)
    x = mpmath.mpf(1e-30)
    with mpmath.workdps(200):
        ref = mpmath.diff(lambda s: (1 - mpmath.cos(s)) / s**2, x)
    assert abs(t.gradient["x"][()] - ref) < 1e-19 * abs(ref)
    assert t.precision > 200


def test_domain_error_names_the_subexpression():
    text = """
name = "dom"
loss = "sum(log(1 - x))"
[symbols]
x = { value = [0.5, 2.0] }
"""
    m = _model(text)
    with pytest.raises(DomainError, match=r"log is undefined at -1\.0.*loss: log\(1 - x\) at entry \[1\]"):
        _truth(m)


@pytest.mark.parametrize("expr, values, message", [
    ("sum(log(x))", "[3.0, 2.0, 1.0, 0.0, 5.0]", r"log is undefined at 0\.0 .*entry \[3\]"),
    ("sum(arcsin(x))", "[0.5, -0.25, 1.0, 0.0]", r"arcsin is undefined at 1\.0 .*entry \[2\]"),
    ("sum(sqrt(x))", "[4.0, -1.0, 0.0]", r"sqrt is undefined at -1\.0 .*entry \[1\]"),
    ("sum(log1p(x))", "[0.5, 2.0, -1.0]", r"log1p is undefined at -1\.0 .*entry \[2\]"),
])
def test_domain_error_names_the_first_bad_entry(expr, values, message):
    """The vectorised domain check still names the first entry outside (or on the edge of) the domain."""
    m = _model(f'name = "dom"\nloss = "{expr}"\n[symbols]\nx = {{ value = {values} }}\n')
    with pytest.raises(DomainError, match=message):
        _truth(m)


def test_magnitude_limit_names_the_entry():
    """exp of 1e30000 overflows every format: refused (not attempted), naming the entry, while the
    harmless entry before it passes the one-bound-for-all check's fallback loop."""
    from verigrad.errors import LimitError

    m = _model('name = "mag"\nloss = "sum(exp(x**100))"\n[symbols]\nx = { value = [1.0, 1e300] }\n'
               '[check]\ndtypes = ["float64"]\n')
    with pytest.raises(LimitError, match=r"argument of exp exceeds 2\*\*65536 in magnitude in loss: exp\(x\*\*100\) "
                                         r"at entry \[1\]"):
        _truth(m)


@pytest.mark.parametrize("name", sorted(n for n, f in FUNCTIONS.items() if not f.internal and f.smooth))
def test_derivative_rules_agree_with_sympy_diff(name):
    """The local derivative rules of the reverse accumulation are sympy's (checked at 3 points)."""
    fn = FUNCTIONS[name]
    b = Builder()
    x = b.leaf("x", (3,), variable=True)
    loss = b.sum(b.unary(name, x))
    g = gradient_graph(b, loss, {"x": x})["x"]
    pts = {"arcsin": [-0.5, 0.1, 0.7], "arccos": [-0.5, 0.1, 0.7], "log": [0.3, 1.0, 4.0],
           "sqrt": [0.3, 1.0, 4.0], "log1p": [-0.5, 0.2, 3.0]}.get(name, [-1.3, 0.4, 2.2])
    with mpmath.workdps(40):
        vals = np.array([mpmath.mpf(v) for v in pts], dtype=object)[None, :]
        got = evaluate([g], {"x": vals}, MPBackend())[0][0]
        s = sympy.Symbol("s", real=True)
        dexpr = sympy.diff(fn.definition(s), s)
        for p, v in zip(pts, got):
            ref = mpmath.mpf(sympy.N(dexpr.subs(s, sympy.Rational(p)), 45))
            assert abs(v - ref) < mpmath.mpf(10) ** -35 * (1 + abs(ref)), name


@pytest.mark.parametrize("name", sorted(n for n, f in FUNCTIONS.items() if not f.internal))
def test_float32_stays_float32(name):
    b = Builder()
    x = b.leaf("x", (4,), variable=True)
    loss = b.sum(b.unary(name, x))
    g = gradient_graph(b, loss, {"x": x})["x"]
    v = np.array([[0.25, 0.5, 0.75, 0.125]], dtype=np.float32)
    with np.errstate(all="ignore"):
        out = evaluate([loss, g], {"x": v}, FloatBackend(np.float32))
    assert out[0].dtype == np.float32 and out[1].dtype == np.float32


def test_float_baseline_keeps_sigmoid_tails():
    """The baseline's sigmoid' must not round to 0 in float32 where the truth is 4e-18."""
    text = """
name = "sat"
loss = "sum(sigmoid(x))"
[symbols]
x = { value = [40.0, -40.0] }
"""
    m = _model(text)
    p = point_in_dtype(m.point, F32)
    g = m.float_eval([m.gradient["x"]], p, np.float32)[0]
    exact = float(mpmath.exp(-40) / (1 + mpmath.exp(-40)) ** 2)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, [exact, exact], rtol=1e-6)


def test_softmax_and_logsumexp_large_inputs():
    text = """
name = "lse"
loss = "logsumexp(x) + sum(log_softmax(x, axis=0) * c)"
[symbols]
x = { value = [1000.0, 999.0, -5.0] }
c = { constant = true, value = [0.2, 0.3, 0.5] }
"""
    m = _model(text)
    t = _truth(m)
    with mpmath.workdps(50):
        xs = [mpmath.mpf(v) for v in (1000.0, 999.0, -5.0)]
        z = mpmath.fsum(mpmath.exp(v) for v in xs)
        sm = [mpmath.exp(v) / z for v in xs]
        # d/dx_i [lse + sum_j c_j (x_j - lse)] = sm_i + c_i - sm_i * sum(c)
        ref = [sm[i] + [0.2, 0.3, 0.5][i] - sm[i] * 1 for i in range(3)]
    for i in range(3):
        assert abs(t.gradient["x"][i] - mpmath.mpf(ref[i])) < 1e-25
    f = m.float_eval([m.loss], point_in_dtype(m.point, F32), np.float32)[0]
    assert np.isfinite(f)  # the float evaluation is stable


def test_exact_matmul_is_correctly_rounded():
    """The integer matmul of mpf arrays equals the exact product rounded once (batched, zeros, wide exponents)."""
    from verigrad.engine.backends import _exact_matmul

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 12)) * 10.0 ** rng.integers(-30, 30, (2, 4, 12))
    x[0, 1, 3] = 0.0
    y = rng.standard_normal((1, 12, 3))
    with mpmath.workprec(80):
        X, Y = MPBackend.from_float(x), MPBackend.from_float(y)
        got = _exact_matmul(X, Y)
        for b in range(2):
            for i in range(4):
                for j in range(3):
                    exact = sum(Fraction(float(x[b, i, k])) * Fraction(float(y[0, k, j])) for k in range(12))
                    ref = mpmath.mpf(exact.numerator) / exact.denominator  # one rounding at 80 bits
                    assert got[b, i, j] == ref


SHIPPED = sorted((__import__("pathlib").Path(__file__).resolve().parent.parent / "cases").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_arb_and_mpmath_certificates_agree_on_shipped_cases(path):
    """The two certifiers (ball radii vs agreement of two precisions) give the same digits."""
    from verigrad import load_case

    m = compile_case(load_case(path))
    for dt in (F32, F64):
        p = point_in_dtype(m.point, dt)
        a = certify(m, p, dt, digits=24, backend="arb")
        b = certify(m, p, dt, digits=24, backend="mpmath")
        assert a.backend == "arb" and b.backend == "mpmath"
        with mpmath.workprec(400):
            assert abs(a.loss[()] - b.loss[()]) <= mpmath.mpf(10) ** -23 * abs(b.loss[()])
            for name in a.gradient:
                for x, y in zip(a.gradient[name].ravel(), b.gradient[name].ravel()):
                    assert abs(x - y) <= mpmath.mpf(10) ** -23 * max(abs(y), b.scale * mpmath.mpf(10) ** -8), name
            assert all((a.exact_zero[n] == b.exact_zero[n]).all() for n in a.gradient)


@pytest.mark.parametrize("backend", ["arb", "mpmath"])
def test_total_cancellation_is_never_certified_wrongly(backend):
    """1 - cos(1e-30) is exactly 0 at 128 bits; both certifiers must raise the precision, not return 0."""
    m = _model('name = "c"\nloss = "w * (1 - cos(x))"\n[symbols]\nx = { value = 1e-30 }\nw = { value = 1.0 }\n')
    t = certify(m, point_in_dtype(m.point, F64), F64, digits=20, backend=backend)
    with mpmath.workdps(100):
        ref = 1 - mpmath.cos(mpmath.mpf(1e-30))
        assert abs(t.gradient["w"][()] - ref) < mpmath.mpf(10) ** -20 * ref


def test_float32_literals_are_rounded_once():
    """23917.1627002 rounds to 23917.162109375 in float32; rounding the numerator to 24 bits before
    dividing (a double rounding) gives 23917.1640625, one ulp off."""
    from fractions import Fraction as Fr

    from verigrad.engine.backends import round_fraction

    assert round_fraction(Fr("23917.1627002"), np.float32) == 23917.162109375
    m = _model('name = "lit"\nloss = "x * 23917.1627002"\n[symbols]\nx = { value = 1.0 }\n')
    f = m.float_eval([m.loss], point_in_dtype(m.point, F32), np.float32)[0]
    assert f == np.float32(23917.162109375)


@pytest.mark.parametrize("backend", ["arb", "mpmath"])
def test_double_double_parts_are_the_mpf_gradient_with_its_sign(backend):
    """gradient_hi + gradient_lo is the certified midpoint, sign included, whatever the backend
    (mpmath's ``mpf.man_exp`` drops the sign: a regression once flipped every negative entry)."""
    import mpmath

    import verigrad
    from verigrad.casefile.loader import point_in_dtype
    from verigrad.spec import Dtype

    path = Path(__file__).resolve().parent.parent / "cases" / "softmax-regression.toml"
    model = verigrad.compile_case(verigrad.load_case(path))
    truth = verigrad.certify(model, point_in_dtype(model.point, Dtype.FLOAT64), Dtype.FLOAT64, backend=backend)
    negative = 0
    for name, g in truth.gradient.items():
        for idx in np.ndindex(*g.shape):
            hi, lo = truth.gradient_hi[name][idx], truth.gradient_lo[name][idx]
            with mpmath.workprec(4000):
                assert abs(mpmath.mpf(hi) + mpmath.mpf(lo) - g[idx]) <= truth.gradient_rad[name][idx]
            negative += hi < 0
        assert np.array_equal(truth.as_float64()[name], np.array([float(v) for v in g.ravel()]).reshape(g.shape))
    assert negative > 0
