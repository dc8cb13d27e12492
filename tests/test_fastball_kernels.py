"""The fused/specialised kernels of the fast engine against exact rational arithmetic.

Every kernel added for speed (issue 16: squares, products by constants and floats, float-dd
sums and differences, the extraction sum, the ADD->SUM fusion) must return a ball that contains
the exact result, computed here with Python Fractions (exact), and must stay as tight as the
generic kernel it replaces (within a small factor).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from verigrad.engine import dd
from verigrad.engine.ballcore import Ball, ball_add, ball_mul, ball_sqr, ball_sub, exact
from verigrad.engine.ballsum import sum_last
from verigrad.engine import fastball as fb


def F(x) -> Fraction:
    return Fraction(float(x))


def _dd_array(rng, n, scale=1.0, lo_rel=2.0 ** -60):
    h = rng.standard_normal(n) * scale
    hi, lo = dd.two_sum(h, h * rng.standard_normal(n) * lo_rel)
    return hi, lo


def _ball(rng, n, rad_rel=1e-25, exact_zero_every=0):
    hi, lo = _dd_array(rng, n, np.exp(rng.uniform(-5, 5, n)))
    rad = np.abs(hi) * rad_rel * rng.uniform(0, 1, n)
    if exact_zero_every:
        hi[::exact_zero_every] = 0.0
        lo[::exact_zero_every] = 0.0
        rad[::exact_zero_every] = 0.0
    return Ball(hi, lo, rad)


def _contains(b: Ball, exact_values, radii=None) -> None:
    hi, lo, rad = (np.broadcast_to(a, b.shape).ravel() for a in (b.hi, b.lo, b.rad))
    for i, v in enumerate(exact_values):
        extra = radii[i] if radii is not None else 0
        assert abs(F(hi[i]) + F(lo[i]) - v) + extra <= F(rad[i]), (i, float(v))
        assert hi[i] == float(hi[i] + lo[i])  # normalised


def _mid(b: Ball, i) -> Fraction:
    return F(np.broadcast_to(b.hi, b.shape).ravel()[i]) + F(np.broadcast_to(b.lo, b.shape).ravel()[i])


def _rad(b: Ball, i) -> Fraction:
    return F(np.broadcast_to(b.rad, b.shape).ravel()[i])


finite = st.floats(min_value=-1e20, max_value=1e20, allow_nan=False, allow_infinity=False).filter(
    lambda x: x == 0 or abs(x) > 1e-20)


@settings(max_examples=300, deadline=None)
@given(finite, finite, finite, st.sampled_from([100.0, 3.0, 0.1, -7.0, 1e-3, 12345.678]))
def test_dd_kernels_exact(a, al, b, c):
    """two_square / two_prod_const / two_diff are error free; add_float, float_sub, sqr, mul_float bound their error."""
    ah, al = (float(v[0]) for v in dd.two_sum(np.array([a]), np.array([al * 2.0 ** -60])))
    A = F(ah) + F(al)
    x = np.array([ah]), np.array([al])
    p, e = dd.two_square(x[0])
    assert F(p[0]) + F(e[0]) == F(ah) ** 2
    p, e = dd.two_prod_const(x[0], c)
    assert F(p[0]) + F(e[0]) == F(ah) * F(c)
    s, e = dd.two_diff(x[0], np.array([b]))
    assert F(s[0]) + F(e[0]) == F(ah) - F(b)
    bb = np.array([b])
    for (hi, lo, err), want in ((dd.add_float(*x, bb), A + F(b)), (dd.float_sub(bb, *x), F(b) - A),
                                (dd.sqr(*x), A * A), (dd.mul_float(*x, bb), A * F(b))):
        assert abs(F(hi[0]) + F(lo[0]) - want) <= F(err[0])
        assert hi[0] == float(hi[0] + lo[0])
    # the specialised square is the generic product: the same pair, the same bound up to its last roundings
    (h1, l1, e1), (h2, l2, e2) = dd.sqr(*x), dd.mul(*x, *x)
    assert h1[0] == h2[0] and l1[0] == l2[0]
    assert abs(e1[0] - e2[0]) <= 2.0 ** -48 * e2[0]


def test_kernels_vectorised_in_place_do_not_touch_inputs():
    rng = np.random.default_rng(1)
    hi, lo = _dd_array(rng, 1000)
    keep = hi.copy(), lo.copy()
    dd.sqr(hi, lo)
    dd.mul(hi, lo, hi[::-1], lo[::-1])
    dd.two_prod(hi, hi[::-1])
    dd.add_float(hi, lo, hi[::-1])
    dd.float_sub(hi[::-1], hi, lo)
    assert np.array_equal(hi, keep[0]) and np.array_equal(lo, keep[1])
    # read-only broadcast inputs are fine
    ro = np.broadcast_to(np.float64(3.0), (1000,))
    h2, l2, e2 = dd.mul_float(hi, lo, ro)
    for i in range(0, 1000, 97):
        want = (F(hi[i]) + F(lo[i])) * 3
        assert abs(F(h2[i]) + F(l2[i]) - want) <= F(e2[i])


@pytest.mark.parametrize("seed", range(4))
def test_ball_sqr_and_sub_contain_exact(seed):
    rng = np.random.default_rng(seed)
    x = _ball(rng, 300, exact_zero_every=7)
    y = _ball(rng, 300)
    xs = ball_sqr(x)
    ys = fb.ball_mul(x, Ball(x.hi, x.lo, x.rad))  # the generic product of two distinct objects
    for i in range(300):
        m, r = _mid(x, i), _rad(x, i)
        # the square of every point of the ball: the extreme points bound it
        for p in (m - r, m + r, m):
            assert abs(_mid(xs, i) - p * p) <= _rad(xs, i)
        assert _rad(xs, i) <= _rad(ys, i) * 2 + Fraction(1, 2 ** 1000)
        if m == 0 and r == 0:
            assert xs.hi[i] == 0 and xs.rad[i] == 0  # exact zeros stay exact
    e = exact(rng.standard_normal(300))
    d = ball_sub(e, y)  # float minus dd: the float_sub path
    for i in range(300):
        want = F(e.hi[i]) - _mid(y, i)
        assert abs(_mid(d, i) - want) + _rad(y, i) <= _rad(d, i)
    sq = ball_sqr(e)
    assert all(F(sq.hi[i]) + F(sq.lo[i]) == F(e.hi[i]) ** 2 for i in range(300))
    assert not np.any(sq.rad)


@pytest.mark.parametrize("case", ["random", "cancel", "huge-range", "zeros", "groups", "exact-floats", "parts"])
def test_sum_last_contains_exact_sum(case):
    rng = np.random.default_rng(hash(case) % 2 ** 32)
    n = 2000
    parts = None
    if case == "random":
        x = _ball(rng, n).map(lambda a: a.reshape(1, n))
    elif case == "cancel":  # the sum cancels to a tiny fraction of the terms
        hi, lo = _dd_array(rng, n // 2, 1e6)
        h = np.concatenate([hi, -hi])
        l = np.concatenate([lo, -lo * (1 + 2.0 ** -40)])
        h[0] += 1e-3
        x = Ball(h.reshape(1, n), l.reshape(1, n), np.zeros((1, n)))
    elif case == "huge-range":
        hi, lo = _dd_array(rng, n, np.exp(rng.uniform(-300, 300, n)))
        x = Ball(hi.reshape(1, n), lo.reshape(1, n), np.abs(hi).reshape(1, n) * 1e-28)
    elif case == "zeros":
        x = Ball(np.zeros((1, n)), np.zeros((1, n)), np.zeros((1, n)))
    elif case == "groups":
        x = _ball(rng, 4 * 500).map(lambda a: a.reshape(4, 500))
        x.hi[2] = 0.0
        x.lo[2] = 0.0
        x.rad[2] = 0.0
    elif case == "exact-floats":
        x = exact(rng.standard_normal((3, 700)) * 1e5)
    else:
        a = _ball(rng, 900).map(lambda v: v.reshape(1, 900))
        b = _ball(rng, 900).map(lambda v: v.reshape(1, 900))
        parts = [a, b]
    got = sum_last(parts if parts is not None else x)
    assert got is not None
    items = parts if parts is not None else [x]
    groups = items[0].shape[0]
    for g in range(groups):
        want = Fraction(0)
        R = Fraction(0)
        for b in items:
            for a in (b.hi, b.lo):
                want += sum(F(v) for v in np.broadcast_to(a, b.shape)[g])
            R += sum(F(v) for v in np.broadcast_to(b.rad, b.shape)[g])
        d = abs(F(got.hi[g]) + F(got.lo[g]) - want)
        assert d + R <= F(got.rad[g]), (case, g)
        if want and case != "huge-range":
            assert F(got.rad[g]) - R <= abs(want) * Fraction(1, 2 ** 100) + R * Fraction(1, 2 ** 40), case
        if want == 0 and R == 0:
            assert got.hi[g] == 0 and got.rad[g] == 0  # an exact zero sum stays exact


def test_sum_last_tighter_than_tree():
    rng = np.random.default_rng(5)
    x = _ball(rng, 4096, rad_rel=0.0).map(lambda a: a.reshape(1, 4096))
    x = Ball(x.hi, x.lo, np.zeros((1, 4096)))
    fast = sum_last(x)
    tree = fb._tree(x, ball_add)
    assert fast.rad[0] <= tree.rad[0, 0]


def test_fused_sum_of_sum_and_difference_matches_arb(tmp_path):
    """sum(a + b) and sum(a - b) with the ADD/SUB deferred to the SUM contain the Arb value."""
    from verigrad.engine import arb as ab
    import verigrad

    path = tmp_path / "fused.toml"
    path.write_text('''name = "fused"
seed = 4
rng = "numpy"
loss = "sum(100*(x[1:] - x[:-1]**2)**2 + (1 - x[:-1])**2) + sum(x**3 - 3*x) + sum(exp(x) - x**2, axis=0)"

[symbols]
x = { shape = [300], init = "uniform(-2, 2)" }
''')
    model = verigrad.compile_case(verigrad.load_case(path))
    nodes = [model.loss] + list(model.gradient.values())
    fused_ops = fb._sum_fusable(fb.topological(nodes), {n.id for n in nodes})
    assert fused_ops  # the case exercises the fusion
    fast = model.fast_eval(nodes, model.point)
    slow = model.arb_eval(nodes, model.point, prec=400)
    for f, a in zip(fast, slow):
        a = np.asarray(a)
        hi, lo, rad = (np.broadcast_to(v, f.shape).ravel() for v in (f.hi, f.lo, f.rad))
        for i, v in enumerate(a.ravel()):
            with ab.arb_precision(600):
                d = abs(ab.arb(float(hi[i])) + ab.arb(float(lo[i])) - v.mid())
                assert d <= ab.arb(float(rad[i])) + v.rad()
            assert rad[i] <= abs(hi[i]) * 1e-28 + 1e-300
