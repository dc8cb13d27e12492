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


# -- (e) vectorised dd elementary functions (ddfunctions) against Arb at 300 bits -----------------

from verigrad.engine import ddfunctions as ddf  # noqa: E402

_DDF = ["exp", "expm1", "log", "log1p", "sigmoid", "dsigmoid", "tanh", "dtanh", "softplus"]


def _arb_value(name, v):
    if name == "sigmoid":
        return 1 / (1 + (-v).exp())
    if name == "dsigmoid":
        e = (-v).exp()
        return e / (1 + e) ** 2
    if name == "dtanh":
        return 1 / v.cosh() ** 2
    if name == "softplus":
        return v.exp().log1p()
    return getattr(v, name)()


def _ddf_check(name, hi, lo, rad, tight=None):
    """Every point of each argument ball (both ends and the midpoint) maps into the result ball;
    ``tight``: the relative radius bound on accepted entries with an exact argument."""
    s, e = dd.two_sum(np.asarray(hi, dtype=np.float64), np.asarray(lo, dtype=np.float64))
    b = Ball(s, e, np.asarray(rad, dtype=np.float64))
    out, declined = getattr(ddf, name)(b)
    assert out.shape == b.shape
    for i in range(b.shape[0]):
        if declined is not None and declined[i]:
            continue
        for sgn in (-1, 0, 1):
            with ab.arb_precision(2300):  # exact sums of floats
                v = ab.arb(float(s[i])) + ab.arb(float(e[i])) + sgn * ab.arb(float(b.rad[i]))
            with ab.arb_precision(300):
                a = _arb_value(name, v)
            with ab.arb_precision(2300):
                m = ab.arb(float(out.hi[i])) + ab.arb(float(out.lo[i]))
                assert abs(m - a.mid()) <= ab.arb(float(out.rad[i])) + a.rad(), (name, i, s[i], e[i], b.rad[i])
        assert abs(out.lo[i]) <= abs(out.hi[i]) * 2.0 ** -52 or out.hi[i] == 0
        if tight is not None and b.rad[i] == 0 and out.hi[i] != 0:
            assert out.rad[i] <= tight * abs(out.hi[i]), (name, s[i], out.rad[i] / abs(out.hi[i]))
    return out, declined


_WIDE = st.one_of(st.floats(-800, 800), st.floats(-1e-3, 1e-3), st.floats(-1e-200, 1e-200),
                  st.sampled_from([0.0, 1.0, -1.0, 0.5, 620.0, -620.0, 700.0, -745.0, 2.0 ** -400, 1e-300]))
_POSITIVE = st.one_of(st.floats(2.0 ** -899, 2.0 ** 899), st.floats(1 - 1e-6, 1 + 1e-6), st.floats(1e-300, 10.0),
                      st.sampled_from([1.0, 0.5, 2.0, 2.0 ** -899, 2.0 ** 899, 1 + 2.0 ** -52]))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(_DDF), st.lists(_WIDE, min_size=1, max_size=8), st.integers(-70, 70),
       st.sampled_from([0.0, 2.0 ** -90, 2.0 ** -60, 2.0 ** -21]))
def test_ddfunctions_contain_arb(name, xs, lo_shift, relrad):
    """Containment over the whole range: huge and tiny arguments, wide balls, domain edges."""
    if name in ("log",):
        xs = [abs(x) if x else 1.0 for x in xs]
    if name == "log1p":
        xs = [max(x, -0.999) for x in xs]
    x = np.array(xs, dtype=np.float64)
    lo = x * 2.0 ** (lo_shift - 60) * 0.37
    rad = np.abs(x) * relrad
    _ddf_check(name, x, lo, rad)


@settings(max_examples=25, deadline=None)
@given(st.lists(_POSITIVE, min_size=1, max_size=8), st.sampled_from([0.0, 2.0 ** -80]))
def test_dd_log_contains_arb(xs, relrad):
    x = np.array(xs, dtype=np.float64)
    _ddf_check("log", x, x * 2.0 ** -58, np.abs(x) * relrad)
    _ddf_check("log1p", x - 1.0, np.zeros_like(x), np.abs(x) * relrad)


@pytest.mark.parametrize("name", _DDF)
def test_ddfunctions_tight_on_ordinary_arguments(name):
    rng = np.random.default_rng(5)
    x = rng.uniform(-30, 30, 200)
    if name == "log":
        x = np.exp(rng.uniform(-600, 600, 200))
    if name == "log1p":
        x = rng.uniform(-0.99, 30, 200)
    out, declined = _ddf_check(name, x, x * 2.0 ** -57 * rng.standard_normal(200), np.zeros(200), tight=2.0 ** -95)
    assert declined is None or not declined.any()


def test_ddfunctions_exact_values_stay_exact():
    z = Ball(np.zeros(3), np.zeros(3), np.zeros(3))
    one = Ball(np.ones(3), np.zeros(3), np.zeros(3))
    for name, b, want in (("exp", z, 1.0), ("expm1", z, 0.0), ("log", one, 0.0), ("log1p", z, 0.0),
                          ("sigmoid", z, 0.5), ("tanh", z, 0.0)):
        out, _ = getattr(ddf, name)(b)
        assert (out.hi == want).all() and (out.lo == 0).all() and (out.rad == 0).all(), name


def test_ddfunctions_decline_outside_their_range():
    b = Ball(np.array([1.0, 700.0, -0.5]), np.zeros(3), np.array([0.0, 0.0, 1.0]))
    _, dec = ddf.exp(b)
    assert list(dec) == [False, True, True]
    _, dec = ddf.log(Ball(np.array([2.0, -1.0, 1e-3]), np.zeros(3), np.array([0.0, 0.0, 1.0])))
    assert list(dec) == [False, True, True]


def test_logsumexp_and_unary_through_the_evaluator(tmp_path):
    model = _case(tmp_path, '''name = "lse"
loss = "sum(logsumexp(X @ w, axis=1)) + sum(softplus(w)) + sum(tanh(w)) + sum(log1p(w * w)) + sum(expm1(w))"
[symbols]
X = { constant = true, value = [[0.5, -1.25, 2.0], [3.0, 0.125, -0.75]] }
w = { value = [[0.3, -1.1], [2.5, 0.01], [-30.0, 1e-9]] }
''')
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    nodes = [model.loss] + list(model.gradient.values())
    fast = model.fast_eval(nodes, point)
    slow = model.arb_eval(nodes, point, prec=300)
    for f, a in zip(fast, slow):
        a = np.asarray(a)
        hi, lo, rad = (np.broadcast_to(x, f.shape).ravel() for x in (f.hi, f.lo, f.rad))
        for i, v in enumerate(a.ravel()):
            with ab.arb_precision(600):
                assert abs(ab.arb(float(hi[i])) + ab.arb(float(lo[i])) - v.mid()) <= ab.arb(float(rad[i])) + v.rad()


# -- (f) blocked Ozaki products and the elementwise special cases ---------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_blocked_matmul_contains_exact_product(seed, monkeypatch):
    """Row blocks and inner-dimension blocks (a transposed large operand), exact and dd operands."""
    from verigrad.engine import ddmatmul

    monkeypatch.setattr(ddmatmul, "BLOCK_ELEMS", 8)
    rng = np.random.default_rng(100 + seed)
    m, n, p = [int(v) for v in rng.integers(1, 9, 3)]
    m += 6
    A = rng.standard_normal((n, m)).T[None] if seed % 2 else rng.standard_normal((1, m, n))  # F-order half the time
    A = A * 2.0 ** rng.integers(-30, 30, (1, m, 1))
    B = rng.standard_normal((1, n, p))
    Bl = B * 2.0 ** -60 * rng.standard_normal(B.shape) if seed % 3 else None
    Bh, Bl = dd.two_sum(B, Bl) if Bl is not None else (B, None)
    br = np.abs(B) * 2.0 ** -100 if seed % 4 == 1 else None
    hi, lo, rad = ball_matmul(A, None, None, Bh, Bl, br)
    for i in range(m):
        for j in range(p):
            exact = sum(_F(A[0, i, l]) * (_F(Bh[0, l, j]) + (_F(Bl[0, l, j]) if Bl is not None else 0)) for l in range(n))
            extra = sum(abs(_F(A[0, i, l])) * _F(br[0, l, j]) for l in range(n)) if br is not None else 0
            assert abs(_F(hi[0, i, j]) + _F(lo[0, i, j]) - exact) + extra <= _F(rad[0, i, j])
    if Bl is None and br is None:
        # exact operands of few bits: exact product, radius 0
        Ai = np.round(A * 8) / 8
        Bi = np.round(B * 8) / 8
        hi, lo, rad = ball_matmul(np.ascontiguousarray(Ai), None, None, Bi, None, None)
        assert (rad == 0).all()
        np.testing.assert_array_equal(hi, np.matmul(Ai, Bi))


def test_elementwise_special_cases_contain_exact():
    from verigrad.engine.fastball import ball_add, ball_mul, exact

    rng = np.random.default_rng(7)
    x = rng.standard_normal(50) * 2.0 ** rng.integers(-20, 20, 50)
    xl = x * 2.0 ** -60 * rng.standard_normal(50)
    xh, xl = dd.two_sum(x, xl)
    ball = Ball(xh, xl, np.abs(xh) * 2.0 ** -90)
    for c in (2.0, 0.5, -0.25, 100.0, 0.1, 1.0, -1.0, 0.0):
        const = Ball(np.array([c]), np.zeros(1), np.zeros(1))
        for a, b in ((ball, const), (const, ball), (exact(xh), const), (exact(xh), exact(xh[::-1].copy()))):
            out = ball_mul(a, b)
            for i in range(50):
                for sgn in (-1, 0, 1):
                    pa = _F(np.broadcast_to(a.hi, out.shape)[i]) + _F(np.broadcast_to(a.lo, out.shape)[i]) + \
                        sgn * _F(np.broadcast_to(a.rad, out.shape)[i])
                    pb = _F(np.broadcast_to(b.hi, out.shape)[i]) + _F(np.broadcast_to(b.lo, out.shape)[i])
                    assert _contains(np.broadcast_to(out.hi, out.shape)[i], np.broadcast_to(out.lo, out.shape)[i],
                                     np.broadcast_to(out.rad, out.shape)[i], pa * pb)
    s = ball_add(exact(xh), exact(xl))
    assert (np.broadcast_to(s.rad, s.shape) == 0).all()
    for i in range(50):
        assert _F(s.hi[i]) + _F(s.lo[i]) == _F(xh[i]) + _F(xl[i])
