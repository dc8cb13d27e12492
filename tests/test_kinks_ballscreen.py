"""Certified crossing tests of full finite-difference gradients (verigrad.kinks.ballscreen,
fd_crossings, recommend_steps) against mpmath at high precision, on adversarial points: conditions
that float64 rounds to 0, exact ties of pooling windows (dead windows after a relu), near ties one
ulp apart; and the 2-norm / std kinks."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest

import verigrad as vg
from verigrad.engine import fastball as fb
from verigrad.engine.truth import certify
from verigrad.errors import DomainError
from verigrad.fd import coordinate_direction
from verigrad.kinks import (SiteKind, SiteRule, fd_crossings, find_sites, nondifferentiable_error,
                            recommend_steps, stencil_crossings)
from verigrad.kinks.ballscreen import UNDECIDED, certified_signs
from verigrad.kinks.conditions import site_values
from verigrad.schemes import StepMode, get_scheme
from verigrad.spec import Dtype

F64, F32 = Dtype.FLOAT64, Dtype.FLOAT32


def model_of(text: str):
    return vg.compile_case(vg.load_case_text(text, path="t.toml"))


def exact_signs(model, point, sites, var, i, value, prec=400):
    """Signs of every site's condition, evaluated in mpmath at ``prec`` bits (the reference)."""
    p = {k: np.array(v, dtype=np.float64, copy=True) for k, v in point.items()}
    if var is not None:
        p[var].reshape(-1)[i] = value
    vals = site_values(model, p, sites, prec=prec)
    return [np.array([int(mpmath.sign(q)) for q in np.asarray(v, dtype=object).reshape(-1)]) for v in vals]


# a = fl(x*y) exactly representable; c - a*b is the rounding error of the product: float64 says 0
CANCEL = """
name = "cancel"
loss = "sum(relu(x * y - c)) + sum(abs(x - d))"
[symbols]
x = { value = [1.1, 0.7, 3.0] }
y = { constant = true, value = [1.3, 0.9, 1.0] }
c = { constant = true, value = [1.4300000000000002, 0.63, 3.0] }
d = { constant = true, value = [1.1, 0.0, 2.0] }
"""


def test_signs_float64_gets_wrong_are_proved_and_match_mpmath():
    m = model_of(CANCEL)
    sites = find_sites(m)
    # float64 evaluates 1.1*1.3 - fl(1.1*1.3) and 0.7*0.9 - 0.63 to 0 (or the wrong sign): the exact values are not 0
    assert float(1.1) * float(1.3) - 1.4300000000000002 == 0.0
    mids, codes, failed = certified_signs(m, m.point, sites, None, [], [])
    ref = exact_signs(m, m.point, sites, None, 0, 0.0)
    assert not failed
    for c, r in zip(codes, ref):
        assert c[0].tolist() == r.tolist()
    assert ref[0].tolist()[0] != 0 and ref[0].tolist()[2] == 0  # x*y - c: nonzero, and exactly 0 at 3*1 - 3
    # nodes: move x[0] by one ulp either way, x[2] to the other side of 3, x[0] onto d[0]
    x0 = 1.1
    rows = [(0, np.nextafter(x0, 2)), (0, np.nextafter(x0, 0)), (2, np.nextafter(3.0, 0)), (2, 3.0 + 2**-40),
            (1, 0.7 + 1e-17), (1, 0.0)]
    _, codes, failed = certified_signs(m, m.point, sites, "x", [i for i, _ in rows], [v for _, v in rows])
    assert not failed
    for r, (i, v) in enumerate(rows):
        ref = exact_signs(m, m.point, sites, "x", i, v)
        for k in range(len(sites)):
            assert codes[k][r].tolist() == ref[k].tolist(), (r, k)
            assert UNDECIDED not in codes[k][r].tolist()


POOL = """
name = "pool"
loss = "sum(C * max(relu(x), axis=1))"
[symbols]
x = { value = [[-1.0, -2.0, -0.5, -3.0], [1.0, 1.0, 0.25, -1.0], [2.0, 2.0000000000000004, 0.0, 1.0]] }
C = { constant = true, value = [1.0, -1.0, 2.0] }
"""


def test_max_gap_signs_on_dead_windows_and_near_ties_match_mpmath():
    """Row 0 is a dead window (all relu outputs 0: every gap exactly 0), row 1 an exact tie,
    row 2 a tie broken by one ulp."""
    m = model_of(POOL)
    sites = find_sites(m)
    assert [s.rule for s in sites] == [SiteRule.RELU, SiteRule.MAX]
    _, codes, _ = certified_signs(m, m.point, sites, None, [], [])
    ref = exact_signs(m, m.point, sites, None, 0, 0.0)
    assert codes[1][0].tolist() == ref[1].tolist()
    assert codes[1][0].reshape(3, 4).tolist() == [[0, 0, 0, 0], [0, 0, -1, -1], [-1, 1, -1, -1]]
    # nodes: wake one entry of the dead window, break the exact tie by an ulp, make the near tie exact
    rows = [(0, 1e-300), (0, -1e-3), (4, np.nextafter(1.0, 2)), (5, 1.0 - 2**-52), (8, 2.0000000000000004),
            (9, 2.0), (2, 0.0)]
    _, codes, failed = certified_signs(m, m.point, sites, "x", [i for i, _ in rows], [v for _, v in rows])
    assert not failed
    for r, (i, v) in enumerate(rows):
        ref = exact_signs(m, m.point, sites, "x", i, v)
        for k in range(len(sites)):
            assert codes[k][r].tolist() == ref[k].tolist(), (r, k)


DEAD_NET = """
name = "dead-net"
loss = "sum(v * reshape(max_pool2d(relu(conv2d(X, W) + b[:, None, None]), 2), (2, 4)))"
[symbols]
X = { constant = true, value = [[[[0.5, -1.0, 2.0, 0.25, 1.0], [1.0, 0.0, -0.5, 1.5, -1.0],
      [0.75, -0.25, 1.0, 2.0, 0.5], [-1.0, 0.5, 0.5, -2.0, 0.25], [0.0, 1.0, -1.5, 0.5, 2.0]]]] }
W = { value = [[[[0.5, -0.25], [0.25, 0.5]]], [[[0.125, 0.5], [-0.5, 0.25]]]] }
b = { value = [-0.625, -1.0] }
v = { constant = true, value = [[1.0, -2.0, 0.5, 3.0], [2.0, 1.0, -1.0, 0.5]] }
"""


def brute_force_crossings(m, dtype, scheme, step):
    """Each coordinate's stencil checked by the exact (mpmath) stencil_crossings, one coordinate at a time."""
    sc = get_scheme(scheme)
    out_ex, out_k = {}, {}
    pt = {k: np.asarray(v) for k, v in m.point.items()}
    for name in m.gradient:
        ex = np.zeros(m.shape(name), dtype=bool)
        on = np.zeros(m.shape(name), dtype=bool)
        for idx in np.ndindex(*m.shape(name)):
            x = float(pt[name][idx])
            h = float(np.float64(step * max(1.0, abs(x))).astype(dtype.numpy))
            d = coordinate_direction(m, name, idx)
            cs = stencil_crossings(m, pt, d, [c * Fraction(h) for c in sc.offsets], dtype=dtype, locate=False)
            if any(not c.on_kink for c in cs):
                ex[idx] = True
            elif cs:
                on[idx] = True
        out_ex[name], out_k[name] = ex, on
    return out_ex, out_k


@pytest.mark.parametrize("b0,dtype,step", [("-0.625", F64, 0.3), ("-0.625", F64, 0.05), ("-0.625", F32, 0.05),
                                         ("-0.6", F64, 0.05), ("-0.6", F32, 0.1)])
def test_fd_crossings_with_dead_windows_agree_with_the_exact_check(b0, dtype, step):
    m = model_of(DEAD_NET.replace("[-0.625, -1.0]", f"[{b0}, -1.0]"))
    vals = site_values(m, m.point, find_sites(m))
    assert sum(int(q == 0) for q in np.asarray(vals[1], dtype=object).reshape(-1)) >= 4  # dead windows: ties at 0
    fdc = fd_crossings(m, dtype=dtype, scheme="central", step=step)
    ex, on = brute_force_crossings(m, dtype, "central", step)
    for n in m.gradient:
        assert fdc.excluded[n].tolist() == ex[n].tolist(), n
        assert fdc.on_kink[n].tolist() == on[n].tolist(), n
    assert any(v.any() for v in ex.values()) or b0 == "-0.625"
    if b0 == "-0.6":  # a mix: channel 0 crosses, channel 1 sits on a kink
        assert fdc.excluded["W"].reshape(-1).tolist() == [True] * 4 + [False] * 4
        assert fdc.on_kink["W"].reshape(-1).tolist() == [False] * 4 + [True] * 4


def test_crossing_distances_are_located_against_the_exact_line():
    m = model_of(DEAD_NET)
    fdc = fd_crossings(m, dtype=F64, scheme="central", step=0.3)
    assert fdc.crossings
    for c in fdc.crossings[:4]:
        name, rest = c.where.split("[", 1)
        idx = tuple(int(q) for q in rest.rstrip("]").split(", "))
        d = coordinate_direction(m, name, idx)
        exact = stencil_crossings(m, m.point, d, [Fraction(t) for t in c.nodes])
        near = min(e.distance for e in exact if not e.on_kink)
        assert c.distance == pytest.approx(near, rel=2e-3)


def test_recommended_steps_leave_no_crossing_on_dead_windows():
    m = model_of(DEAD_NET.replace('b = { value = [-0.625, -1.0] }', 'b = { value = [-0.625, -0.9995] }'))
    for dt in (F32, F64):
        rec = recommend_steps(m, dtype=dt, scheme="central")
        after = fd_crossings(m, dtype=dt, scheme="central", step=rec.steps)
        assert not any(v.any() for v in after.excluded.values())
        for n in m.gradient:  # reduced steps are really reduced, the others untouched
            base = 6.055454452393343e-06 if dt is F64 else 0.004921566601151848
            full = base * np.maximum(1.0, np.abs(m.point[n]))
            assert np.all(rec.steps[n][rec.reduced[n]] < full[rec.reduced[n]])
            assert np.allclose(rec.steps[n][~rec.reduced[n]], full[~rec.reduced[n]], rtol=1e-12)


@pytest.mark.parametrize("sa,sb", [((3, 1, 2, 4), (1, 2, 4, 3)), ((3, 2, 2, 4), (1, 2, 4, 3)),
                                   ((2, 3, 2, 4), (4, 3)), ((2, 4), (3, 1, 4, 2))])
def test_batched_ball_matmul_contains_the_exact_products(sa, sb):
    """The stacked products (a batch of nodes against shared or broadcast operands) enclose the
    exact products, entry by entry, as the product per batch entry does."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal(sa) * 10.0 ** rng.integers(-3, 3, sa)
    b = rng.standard_normal(sb) / 3
    out = fb._matmul(fb.from_float(a), fb.from_float(b))
    ref = np.matmul(a, b)
    assert out.shape == ref.shape
    A = np.broadcast_to(a, ref.shape[:-2] + a.shape[-2:])
    Bm = np.broadcast_to(b, ref.shape[:-2] + b.shape[-2:])
    for idx in np.ndindex(*ref.shape):
        lead, r, c = idx[:-2], idx[-2], idx[-1]
        exact = sum(Fraction(float(A[lead + (r, k)])) * Fraction(float(Bm[lead + (k, c)])) for k in range(a.shape[-1]))
        mid = Fraction(float(out.hi[idx])) + Fraction(float(out.lo[idx]))
        assert abs(mid - exact) <= Fraction(float(out.rad[idx]))
        assert out.rad[idx] <= 1e-28 * (1 + abs(float(exact)))


NORMS = """
name = "norms"
loss = "norm(W) + std(V) + sum(u * u)"
[symbols]
W = { value = [0.001, 0.0, 0.0] }
V = { value = [1.0, 1.0, 1.25] }
u = { value = [1.0, 2.0] }
"""


def test_norm_and_std_are_kink_sites_with_their_own_words():
    m = model_of(NORMS)
    sites = {s.name: s for s in find_sites(m)}
    assert sites["norm"].kind is SiteKind.KINK and sites["norm"].rule is SiteRule.NORM
    assert sites["norm"].text == "norm(W) at W = 0 (every entry)"
    assert sites["std"].text == "std(V) at var(V) = 0 (all entries of V equal)"
    # a central stencil of h = 1e-3 on W[0] reaches W = 0 exactly: it crosses the 2-norm's kink
    fdc = fd_crossings(m, dtype=F64, scheme="central", step=1e-3, step_mode=StepMode.ABSOLUTE)
    assert fdc.excluded["W"].tolist() == [True, False, False]
    assert fdc.messages()[0] == "W[0]: stencil of central h=1.0e-3 crosses norm(W) at distance 1.0e-3"
    assert not fdc.excluded["V"].any()


def test_a_point_on_the_norm_kink_is_reported_as_not_differentiable():
    m = model_of(NORMS.replace("[0.001, 0.0, 0.0]", "[0.0, 0.0, 0.0]").replace("[1.0, 1.0, 1.25]", "[2.0, 2.0, 2.0]"))
    with pytest.raises(DomainError) as info:
        certify(m, m.point, F64)
    err = nondifferentiable_error(m, m.point, info.value)
    assert str(err).startswith("not differentiable at this point: it is on the kink of norm(W) (W = 0 exactly)")
    assert "unit ball" in str(err)
    m2 = model_of(NORMS.replace("[1.0, 1.0, 1.25]", "[2.0, 2.0, 2.0]"))
    err2 = nondifferentiable_error(m2, m2.point, DomainError("sqrt"))
    assert "kink of std(V) (var(V) = 0 exactly)" in str(err2)
    # off the kinks the error passes through unchanged
    m3 = model_of(NORMS)
    e = DomainError("x")
    assert nondifferentiable_error(m3, m3.point, e) is e


def test_subgradient_set_with_dead_windows_matches_the_all_mpmath_evaluation(monkeypatch):
    """The vertex rows screened out on balls (ties in dead windows) are exactly those whose
    effect the all-mpmath evaluation finds to be 0; the kept choices and their effects agree."""
    from verigrad.kinks import at_kink, subgradient_set
    from verigrad.kinks import ballscreen

    m = model_of(DEAD_NET.replace("[-0.625, -1.0]", "[-0.6, -1.0]"))
    kinks = at_kink(m, m.point)
    fast = subgradient_set(m, m.point, kinks)
    calls = []
    real = ballscreen.negligible_rows
    monkeypatch.setattr(ballscreen, "negligible_rows",
                        lambda *a, **k: calls.append(real(*a, **k)) or np.zeros(len(a[4]), dtype=bool))
    slow = subgradient_set(m, m.point, kinks)
    assert calls and calls[0].sum() >= 8  # the dead windows' vertices were screened out
    assert len(fast.choices) == len(slow.choices) >= 1 and len(fast.continuous) == len(slow.continuous) >= 2
    assert [c.members for c in fast.choices] == [c.members for c in slow.choices]
    assert fast.interacting == slow.interacting
    assert np.array_equal(fast.effects, slow.effects)
    assert all(a == b for a, b in zip(fast.base, slow.base))
