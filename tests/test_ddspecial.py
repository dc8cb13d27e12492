"""The vectorised ball rules of verigrad.engine.ddspecial / ddgamma against mpmath at 1400 bits.

Every accepted entry's ball must contain the mpmath value at its midpoint and at points of the
ball (its ends), and the radius must be tight on well-conditioned arguments (relative radius below
1e-28, so 24 certified digits need no Arb fallback)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from verigrad.engine import ddspecial as ds
from verigrad.engine.ddfunctions import Parts
from verigrad.expr import special as sp

PREC = 1400  # the radii of tiny arguments are ~x**3: relative 2**-800 and below
_GAMMA_FAMILY = ("gammaln", "digamma", "trigamma", "tetragamma")


def _prec(name: str) -> int:
    """The reference precision: the gamma family has no tiny arguments (>= 2**-200), 400 bits suffice."""
    return 400 if name in _GAMMA_FAMILY else PREC

REFS = {
    "sin": mpmath.sin, "cos": mpmath.cos, "tan": mpmath.tan, "sinh": mpmath.sinh, "cosh": mpmath.cosh,
    "sinc": mpmath.sincpi, "dsinc": sp.mp_dsinc, "d2sinc": sp.mp_d2sinc,
    "gammaln": mpmath.loggamma, "digamma": mpmath.digamma,
    "trigamma": lambda x: mpmath.psi(1, x), "tetragamma": lambda x: mpmath.psi(2, x),
    "arctan": mpmath.atan, "arcsin": mpmath.asin, "arccos": mpmath.acos, "erf": mpmath.erf,
}

_rng = np.random.default_rng(20261206)
_PI = float(np.pi)
# adversarial: near zeros of sin (multiples of pi/2 rounded to floats, famous near-multiples 355,
# 103993, 1.e22-free ranges), tiny, subnormal, exact zero, the reduction limit
_TRIG = np.concatenate([
    _rng.normal(size=60) * 3, _rng.uniform(-1e5, 1e5, 40), _rng.uniform(-2.0**20, 2.0**20, 10),
    [k * _PI / 2 for k in range(-9, 10)], [np.nextafter(k * _PI, 0) for k in (1, 2, 7, 1000)],
    [0.0, 5e-324, 1e-300, -1e-20, 2.0**-60, 3e-10, 355.0, 103993.0, 2.0**20, -2.0**20, 0.785398163, 1 / 128,
     51.5 / 64, 0.7853981633974483],
])
_HYP = np.concatenate([_rng.normal(size=60) * 5, [0.0, 5e-324, 1e-300, 1e-12, -1e-5, 0.999, 1.0, 1.001,
                                                  -30.0, 600.0, -619.5]])
_SINC = np.concatenate([
    _rng.normal(size=60) * 3, _rng.uniform(-1e6, 1e6, 20),
    [0.0, 5e-324, 1e-300, 1e-120, -1e-8, 0.3, 0.30000000000000004, -0.29999, 0.5, 1.0, 2.0, -3.0,
     1.0 + 2.0**-52, 3.0 - 2.0**-51, 1e5 + 0.5, 2.0**52 + 1, 2.0**100, 1.4302966531242027],
])
_GAMMA = np.concatenate([
    _rng.uniform(0, 30, 60), np.exp(_rng.uniform(-40, 40, 20)),
    [2.0**-199, 1e-50, 1e-8, 0.5, 1.0, 2.0, 1.4616321449683622, 1.4616321449683623, 23.5, 24.0, 24.5,
     3.0000000001, 1e10, 1e40, 2.0**150],
])
_ATAN = np.concatenate([_rng.normal(size=60) * 3, np.exp(_rng.uniform(-300, 300, 20)),
                        [0.0, 5e-324, 1e-300, 2.0**-401, 1e-10, 1 / 128, 0.5, 63.5 / 64, 1.0, -1.0, 1.0 + 2.0**-52,
                         1e100, 2.0**450, -3.0]])
_UNIT = np.concatenate([_rng.uniform(-1, 1, 60), [0.0, 5e-324, 1e-300, 1e-10, 0.5, -0.5, 0.9999999, -0.9999999,
                                                   1 - 2.0**-29, -1 + 2.0**-29, 1 - 2.0**-31, 0.7071067811865476]])
_ERF = np.concatenate([_rng.normal(size=60), [0.0, 5e-324, 1e-300, 2.0**-401, 1e-10, 2.0, -2.0, 1.999, 9.0, -9.5,
                                                30.0, 1e300]])
CASES = {"erf": _ERF, "arctan": _ATAN, "arcsin": _UNIT, "arccos": _UNIT, "sin": _TRIG, "cos": _TRIG, "tan": _TRIG,
         "sinh": _HYP, "cosh": _HYP, "sinc": _SINC, "dsinc": _SINC,
         "d2sinc": _SINC, "gammaln": _GAMMA, "digamma": _GAMMA, "trigamma": _GAMMA, "tetragamma": _GAMMA}


def _run(name, hi, lo=None, rad=None):
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.zeros_like(hi) if lo is None else lo
    rad = np.zeros_like(hi) if rad is None else rad
    p, dec = getattr(ds, name)(Parts(hi, lo, rad))
    return p, (np.zeros(hi.shape, bool) if dec is None else dec)


def _contains(p, i, v):
    mid = mpmath.mpf(float(p.hi[i])) + mpmath.mpf(float(p.lo[i]))
    return abs(v - mid) <= mpmath.mpf(float(p.rad[i]))


@pytest.mark.parametrize("name", sorted(CASES))
def test_point_balls_contain_mpmath(name):
    xs = CASES[name]
    p, dec = _run(name, xs)
    f = REFS[name]
    accepted = 0
    with mpmath.workprec(_prec(name)):
        for i, x in enumerate(xs):
            if dec[i]:
                continue
            accepted += 1
            v = f(mpmath.mpf(float(x)))
            assert _contains(p, i, v), (name, float(x), float(v), p.hi[i], p.lo[i], p.rad[i])
    assert accepted >= len(xs) - (30 if name == "erf" else 6)  # declined only outside the stated range


@pytest.mark.parametrize("name", sorted(CASES))
def test_wide_balls_contain_every_point(name):
    xs = CASES[name]
    lo = xs * 2.0**-60  # a non-trivial low word (keeps the pair normalised)
    rad = np.abs(xs) * 1e-9 + 1e-300
    if name in _GAMMA_FAMILY:
        rad = np.minimum(rad, np.abs(xs) * 0.2)
    if name in ("arcsin", "arccos"):
        rad = np.minimum(rad, np.maximum(1 - np.abs(xs), 0) * 0.5)
    p, dec = _run(name, xs, lo, rad)
    f = REFS[name]
    with mpmath.workprec(_prec(name)):
        for i, x in enumerate(xs):
            if dec[i]:
                continue
            m = mpmath.mpf(float(x)) + mpmath.mpf(float(lo[i]))
            for y in (m - mpmath.mpf(float(rad[i])), m, m + mpmath.mpf(float(rad[i]))):
                try:
                    v = f(y)
                except (ValueError, ZeroDivisionError):
                    continue
                assert _contains(p, i, v), (name, float(x), float(y))


_TIGHT = {
    "sin": np.array([0.1, 0.5, 1.0, 2.5, -3.0, 10.0, 100.0, 12345.678, -1e5, 2.0**19, 1e-10, 3.141592653589793]),
    "sinh": np.array([1e-10, 0.1, 0.9, 1.1, -5.0, 50.0, -300.0]),
    "sinc": np.array([1e-10, 0.1, 0.3, 0.31, -0.7, 2.5, 1e5 + 0.25, 3.0 + 2.0**-40]),
    "gammaln": np.array([1e-20, 0.1, 0.5, 3.5, 7.0, 23.9, 24.1, 100.0, 1e8, 1e30]),
}
_TIGHT.update(cos=_TIGHT["sin"], tan=_TIGHT["sin"], cosh=_TIGHT["sinh"], dsinc=_TIGHT["sinc"][1:],
              d2sinc=_TIGHT["sinc"], digamma=_TIGHT["gammaln"], trigamma=_TIGHT["gammaln"],
              tetragamma=_TIGHT["gammaln"], arctan=np.array([1e-10, 0.1, 0.6, 1.0, -2.0, 1e5, 1e100]),
              erf=np.array([1e-10, 0.1, -0.6, 1.0, 1.9, -2.0, 9.0, -20.0]),
              arcsin=np.array([1e-10, 0.1, -0.6, 0.99, 0.9999999]),
              arccos=np.array([1e-10, 0.1, -0.6, 0.99, -0.9999999]))


@pytest.mark.parametrize("name", sorted(CASES))
def test_tight_on_well_conditioned_arguments(name):
    xs = _TIGHT[name]
    p, dec = _run(name, xs)
    assert not dec.any()
    with mpmath.workprec(PREC):
        for i, x in enumerate(xs):
            v = REFS[name](mpmath.mpf(float(x)))
            assert _contains(p, i, v)
            assert p.rad[i] <= 1e-28 * abs(float(v)), (name, float(x), p.rad[i] / abs(float(v)))


def test_exact_values_stay_exact():
    p, _ = _run("sin", [0.0])
    assert (p.hi[0], p.lo[0], p.rad[0]) == (0.0, 0.0, 0.0)
    p, _ = _run("cos", [0.0])
    assert (p.hi[0], p.rad[0]) == (1.0, 0.0)
    p, _ = _run("sinc", [0.0])
    assert (p.hi[0], p.rad[0]) == (1.0, 0.0)
    p, _ = _run("dsinc", [0.0])
    assert (p.hi[0], p.rad[0]) == (0.0, 0.0)


def test_decline_outside_the_range():
    _, dec = _run("sin", [2.0**21, 1.0, -1e30])
    assert dec.tolist() == [True, False, True]
    _, dec = _run("gammaln", [-0.5, 0.0, 1.0, -3.0, 2.0**200])
    assert dec.tolist() == [True, True, False, True, True]
    _, dec = _run("tan", [_PI / 2, 1.0], rad=np.array([1e-3, 0.0]))  # the ball holds the pole
    assert dec.tolist() == [True, False]
    _, dec = _run("sinh", [700.0, 1.0])
    assert dec.tolist() == [True, False]
    _, dec = _run("arcsin", [1.0, 1 - 2.0**-40, 0.5, -1.5])
    assert dec.tolist() == [True, True, False, True]
    _, dec = _run("erf", [1.0, 3.0, -8.9, 9.0])
    assert dec.tolist() == [False, True, True, False]


def test_chunked_matches_unchunked():
    xs = _rng.normal(size=ds.chunked.__globals__["CHUNK"] * 2 + 17) * 20
    big, _ = _run("sin", xs)
    for j in (0, 40000, xs.size - 1):
        one, _ = _run("sin", xs[j:j + 1])
        assert (big.hi[j], big.lo[j], big.rad[j]) == (one.hi[0], one.lo[0], one.rad[0])


def test_fast_engine_uses_the_rules():
    """sum(sin(A)) through the fast evaluator (no Arb entry) against mpmath."""
    from verigrad.engine import fastball
    from verigrad.expr.graph import Builder

    b = Builder()
    a = b.leaf("A", (50,), variable=True)
    node = b.sum(b.unary("sin", a))
    xs = _rng.normal(size=50) * 100
    calls = []
    orig = fastball._unary_arb
    fastball._unary_arb = lambda x, n: calls.append(n) or orig(x, n)
    try:
        out = fastball.evaluate([node], {"A": fastball.from_float(xs[None])})[0]
    finally:
        fastball._unary_arb = orig
    assert not calls
    out = fastball.Ball(*(np.asarray(t).reshape(()) for t in (out.hi, out.lo, out.rad)))
    with mpmath.workprec(PREC):
        ref = mpmath.fsum(mpmath.sin(mpmath.mpf(float(x))) for x in xs)
        mid = mpmath.mpf(float(out.hi)) + mpmath.mpf(float(out.lo))
        assert abs(mid - ref) <= float(out.rad) <= 1e-28 * abs(float(ref))


@pytest.mark.parametrize("name", ["sin", "cos", "tan", "sinh", "cosh", "arctan", "erf", "sinc", "dsinc"])
def test_small_midpoints_with_wide_radii(name):
    """A midpoint far below the radius (the products there would underflow): still enclosed."""
    xs = np.array([1e-300, -3e-200, 0.0, 1e-30, 2.0**-301, 5e-324])
    rad = np.array([2.0**-21, 2.0**-22, 2.0**-25, 1e-8, 2.0**-40, 1e-12])
    p, dec = _run(name, xs, rad=rad)
    with mpmath.workprec(PREC):
        for i in range(xs.size):
            assert not dec[i]
            m, r = mpmath.mpf(float(xs[i])), mpmath.mpf(float(rad[i]))
            for y in (m - r, m + r):
                assert _contains(p, i, REFS[name](y)), (name, float(xs[i]), float(y))


@pytest.mark.parametrize("name, xs", [("gammaln", [-0.5, 2.5, -1.5, 1e-250]), ("sin", [1e7, 1.0, -3e9]),
                                      ("erf", [0.5, 3.0, -10.0]), ("arcsin", [0.5, 1 - 2.0**-40, -0.999])])
def test_declined_entries_go_through_arb(name, xs):
    """Mixed arrays: the declined entries (poles' neighbourhood, huge arguments, ...) get Arb's balls."""
    from verigrad.engine import fastball
    from verigrad.expr.graph import Builder

    b = Builder()
    node = b.unary(name, b.leaf("x", (len(xs),), variable=True))
    out = fastball.evaluate([node], {"x": fastball.from_float(np.array(xs)[None])})[0]
    f = (lambda y: mpmath.log(abs(mpmath.gamma(y)))) if name == "gammaln" else REFS[name]
    with mpmath.workprec(400):
        for i, x in enumerate(xs):
            mid = mpmath.mpf(float(out.hi[0, i])) + mpmath.mpf(float(out.lo[0, i]))
            v = f(mpmath.mpf(x))
            assert abs(v - mid) <= float(out.rad[0, i]) <= 1e-28 * abs(float(v))
