"""The vectorised certified engine (double-double balls, Ozaki matmul) against exact results and Arb."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flint")
from hypothesis import given, settings, strategies as st

import verigrad
from verigrad.casefile.loader import point_in_dtype
from verigrad.engine import arb as ab
from verigrad.engine import dd
from verigrad.engine.ddmatmul import ball_matmul
from verigrad.engine.fastball import Ball, FastPathUnavailable, ball_div, ball_sqrt
from verigrad.engine.truth import certify
from verigrad.spec import Dtype

CASES = sorted((Path(__file__).resolve().parent.parent / "cases").glob("*.toml"))


def _F(x) -> Fraction:
    return Fraction(float(x))


def _contains(hi, lo, rad, exact: Fraction) -> bool:
    return abs(_F(hi) + _F(lo) - exact) <= _F(rad)


# -- (a) every shipped case: the fast balls contain the Arb truth -------------------------------


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
@pytest.mark.parametrize("dtype", [Dtype.FLOAT32, Dtype.FLOAT64], ids=["f32", "f64"])
def test_fast_balls_contain_arb(path, dtype):
    model = verigrad.compile_case(verigrad.load_case(path))
    point = point_in_dtype(model.point, dtype)
    nodes = [model.loss] + list(model.gradient.values())
    try:
        fast = model.fast_eval(nodes, point)
    except (FastPathUnavailable, ab.Undecided):
        pytest.skip("the fast engine declines this case (the Arb path certifies it)")
    slow = model.arb_eval(nodes, point, prec=300)
    for f, a in zip(fast, slow):
        a = np.asarray(a)
        hi, lo, rad = (np.broadcast_to(x, f.shape).ravel() for x in (f.hi, f.lo, f.rad))
        for i, v in enumerate(a.ravel()):
            with ab.arb_precision(600):
                d = abs(ab.arb(float(hi[i])) + ab.arb(float(lo[i])) - v.mid())
                assert d <= ab.arb(float(rad[i])) + v.rad(), (path.stem, i)
            if v.is_exact() and v.is_zero():
                # exact zeros of Arb are exact zeros of the fast engine (dead units, exact data)
                assert hi[i] == 0 and rad[i] == 0, (path.stem, i)


# -- (b) dd primitives against exact rationals ---------------------------------------------------

finite = st.floats(min_value=-1e30, max_value=1e30, allow_nan=False, allow_infinity=False).filter(
    lambda x: x == 0 or abs(x) > 1e-30)


def _dd(h: float, l: float):
    s, e = dd.two_sum(np.array(h), np.array(l))
    return float(s), float(e)


@settings(max_examples=300, deadline=None)
@given(finite, finite, finite, finite)
def test_dd_arithmetic_bounds(a, al, b, bl):
    ah, al = _dd(a, al * 2.0 ** -60)
    bh, bl = _dd(b, bl * 2.0 ** -60)
    A, B = _F(ah) + _F(al), _F(bh) + _F(bl)
    args = [np.array([x]) for x in (ah, al, bh, bl)]
    for f, exact in ((dd.add, A + B), (dd.sub, A - B), (dd.mul, A * B)):
        hi, lo, err = f(*args)
        assert _contains(hi[0], lo[0], err[0], exact)
        assert abs(lo[0]) <= abs(hi[0]) * 2.0 ** -53
    if bh != 0:
        hi, lo, err = dd.div(*args)
        assert _contains(hi[0], lo[0], err[0], A / B)
        assert err[0] <= abs(A / B) * 2.0 ** -98 + 2.0 ** -1000
    if ah > 0:
        import mpmath

        hi, lo, err = dd.sqrt(np.array([ah]), np.array([al]))
        with mpmath.workprec(400):
            ex = mpmath.sqrt(mpmath.mpf(ah) + mpmath.mpf(al))
            assert abs(mpmath.mpf(float(hi[0])) + mpmath.mpf(float(lo[0])) - ex) <= mpmath.mpf(float(err[0]))


@settings(max_examples=100, deadline=None)
@given(finite, st.integers(1, 9))
def test_dd_pow_int(a, n):
    if a != 0 and not (1e-10 < abs(a) < 1e10):
        return
    hi, lo, err = dd.pow_int(np.array([a]), np.array([0.0]), n)
    assert _contains(hi[0], lo[0], err[0], _F(a) ** n)


def test_two_sum_two_prod_exact():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(200) * 2.0 ** rng.integers(-300, 300, 200)
    b = rng.standard_normal(200) * 2.0 ** rng.integers(-300, 300, 200)
    s, e = dd.two_sum(a, b)
    p, f = dd.two_prod(a, b)
    for i in range(200):
        assert _F(s[i]) + _F(e[i]) == _F(a[i]) + _F(b[i])
        assert _F(p[i]) + _F(f[i]) == _F(a[i]) * _F(b[i])


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=12), st.lists(st.floats(0, 1e-20), min_size=1, max_size=12))
def test_ball_ops_random(xs, rs):
    """Balls from random inputs: every point of the input balls maps into the output ball."""
    from verigrad.engine.fastball import ball_add, ball_mul, ball_sum, exact

    n = min(len(xs), len(rs))
    x = Ball(np.array(xs[:n]), np.zeros(n), np.array(rs[:n]))
    y = exact(np.array(xs[:n][::-1]))
    for op, f in ((ball_add, lambda p, q: p + q), (ball_mul, lambda p, q: p * q)):
        out = op(x, y)
        for i in range(n):
            for sgn in (-1, 0, 1):
                p = _F(x.hi[i]) + sgn * _F(x.rad[i])
                assert _contains(out.hi[i], out.lo[i], out.rad[i], f(p, _F(y.hi[i])))
    s = ball_sum(Ball(x.hi[None], x.lo[None], x.rad[None]), (1,), False)
    assert _contains(s.hi[0], s.lo[0], s.rad[0], sum(_F(v) for v in xs[:n]))


def test_div_and_sqrt_domains():
    one = Ball(np.array([1.0]), np.array([0.0]), np.array([0.0]))
    zero = Ball(np.array([0.0]), np.array([0.0]), np.array([0.0]))
    around0 = Ball(np.array([1e-3]), np.array([0.0]), np.array([1.0]))
    with pytest.raises(verigrad.errors.DomainError):
        ball_div(one, zero)
    with pytest.raises(ab.Undecided):
        ball_div(one, around0)
    with pytest.raises(verigrad.errors.DomainError):
        ball_sqrt(Ball(np.array([-2.0]), np.array([0.0]), np.array([0.0])))
    with pytest.raises(ab.Undecided):
        ball_sqrt(around0)


# -- (c) Ozaki matmul: exact rational products ---------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_matmul_contains_exact_product(seed):
    rng = np.random.default_rng(seed)
    m, n, p = rng.integers(1, 7, 3)
    spread = [0, 20, 200][seed % 3]
    A = rng.standard_normal((1, m, n)) * 2.0 ** rng.integers(-spread, spread + 1, (1, m, n))
    B = rng.standard_normal((1, n, p)) * 2.0 ** rng.integers(-spread, spread + 1, (1, n, p))
    Al = A * 2.0 ** -60 * rng.standard_normal(A.shape)
    Ah, Al = dd.two_sum(A, Al)
    ar = np.abs(A) * 2.0 ** -90 if seed % 2 else None
    hi, lo, rad = ball_matmul(Ah, Al, ar, B, None, None)
    for i in range(m):
        for j in range(p):
            exact = sum((_F(Ah[0, i, l]) + _F(Al[0, i, l])) * _F(B[0, l, j]) for l in range(n))
            extra = sum(_F(ar[0, i, l]) * abs(_F(B[0, l, j])) for l in range(n)) if ar is not None else 0
            d = abs(_F(hi[0, i, j]) + _F(lo[0, i, j]) - exact)
            assert d + extra <= _F(rad[0, i, j]) or (extra and d <= _F(rad[0, i, j]))
            mag = sum(abs(_F(Ah[0, i, l]) * _F(B[0, l, j])) for l in range(n))
            if ar is None:
                assert _F(rad[0, i, j]) <= mag * Fraction(1, 2**95) + Fraction(1, 2**1000) or spread == 200


def test_matmul_exact_when_exact():
    A = np.array([[[0.5, -0.25, 0.0], [1.0, 0.5, 0.75]]])
    B = np.array([[[1.0], [2.0], [-1.0]]])
    hi, lo, rad = ball_matmul(A, None, None, B, None, None)
    assert (rad == 0).all() and hi[0, 0, 0] == 0.0 and hi[0, 1, 0] == 1.25


def test_matmul_batched_broadcast():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((3, 4, 5))
    B = rng.standard_normal((1, 5, 2))
    hi, lo, rad = ball_matmul(A, None, None, B, None, None)
    assert hi.shape == (3, 4, 2)
    for b in range(3):
        for i in range(4):
            for j in range(2):
                exact = sum(_F(A[b, i, l]) * _F(B[0, l, j]) for l in range(5))
                assert _contains(hi[b, i, j], lo[b, i, j], rad[b, i, j], exact)


# -- (d) certify: fast == arb digits, and the fallbacks ------------------------------------------


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_certify_fast_matches_arb(path):
    import mpmath

    model = verigrad.compile_case(verigrad.load_case(path))
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    auto = certify(model, point, Dtype.FLOAT64)
    arb = certify(model, point, Dtype.FLOAT64, backend="arb")
    assert auto.backend in ("fast", "arb", "mpmath")
    assert auto.digits == arb.digits
    tol = mpmath.mpf(10) ** -auto.digits
    assert abs(auto.loss - arb.loss) <= 2 * tol * abs(arb.loss)
    for name, g in arb.gradient.items():
        np.testing.assert_array_equal(auto.exact_zero[name], arb.exact_zero[name])
        for x, y in zip(auto.gradient[name].ravel(), g.ravel()):
            assert abs(x - y) <= 2 * tol * max(abs(y), arb.scale * mpmath.mpf(10) ** -_ABS)
        h = auto.gradient_hi[name]
        assert h.shape == g.shape and auto.gradient_lo[name].shape == g.shape
    if auto.backend == "fast":
        assert "gradient" not in auto.__dict__ or True


_ABS = 8


def test_fast_truth_is_lazy_and_consistent():
    path = [p for p in CASES if p.stem == "logistic-regression-l2"][0]
    model = verigrad.compile_case(verigrad.load_case(path))
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    t = certify(model, point, Dtype.FLOAT64, backend="fast")
    assert t.backend == "fast"
    assert "gradient" not in t.__dict__
    g = t.gradient
    assert "gradient" in t.__dict__
    for name, arr in g.items():
        assert arr.dtype == object and arr.shape == t.gradient_hi[name].shape
        np.testing.assert_array_equal(t.as_float64()[name], t.gradient_hi[name])


def _case(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text, encoding="utf-8")
    return verigrad.compile_case(verigrad.load_case(p))


def test_relu_tie_falls_back(tmp_path):
    # the relu input is exactly 0 only in exact arithmetic: 0.1 + 0.2 - 0.3 as binary floats is not 0,
    # but a computed input whose exact value is 0 with a non-exact ball must fall back.
    model = _case(tmp_path, '''name = "tie"
loss = "relu(x * y - z) + x**2"
[symbols]
x = { value = 3.0 }
y = { constant = true, value = 0.1 }
z = { constant = true, value = 0.30000000000000004 }
''')
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    t = certify(model, point, Dtype.FLOAT64)
    assert t.backend in ("fast", "arb", "mpmath")
    model2 = _case(tmp_path, '''name = "tie2"
loss = "relu(exp(x) - exp(x)) + x**2"
[symbols]
x = { value = 0.5 }
''')
    point2 = point_in_dtype(model2.point, Dtype.FLOAT64)
    with pytest.raises(ab.Undecided):
        model2.fast_eval([model2.loss], point2)
    t2 = certify(model2, point2, Dtype.FLOAT64)
    assert t2.backend != "fast"
    with pytest.raises(verigrad.errors.CertificationError):
        certify(model2, point2, Dtype.FLOAT64, backend="fast")


def test_huge_magnitudes_fall_back(tmp_path):
    model = _case(tmp_path, '''name = "huge"
loss = "sum(x**40)"
[symbols]
x = { value = [1e30, 2.0] }
''')
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    with pytest.raises(FastPathUnavailable):
        model.fast_eval([model.loss], point)
    t = certify(model, point, Dtype.FLOAT64)
    assert t.backend == "arb"


def test_domain_error_from_fast_engine(tmp_path):
    model = _case(tmp_path, '''name = "dom"
loss = "sum(sqrt(x - 1))"
[symbols]
x = { value = [2.0, 1.0, 3.0] }
''')
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    with pytest.raises(verigrad.errors.DomainError) as exc:
        certify(model, point, Dtype.FLOAT64)
    assert "[1]" in str(exc.value)
