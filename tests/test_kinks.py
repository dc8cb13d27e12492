"""Kinks, domains and subgradients (verigrad.kinks): hand-verified one-sided derivatives,
stencil crossings with their distances, safe steps, and grading at kinks without false alarms."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import mpmath
import numpy as np
import pytest

import verigrad as vg
from verigrad.casefile.loader import point_in_dtype
from verigrad.errors import UsageError
from verigrad.grading import Verdict, grade
from verigrad.kinks import (Boundary, SiteKind, SiteRule, accept_at_kinks, at_kink, distance_along,
                            fd_crossings, fd_kink_adjustment, find_sites, kink_acceptance, kink_analysis,
                            kink_limit, one_sided_gradient, safe_steps, site_values, stencil_crossings,
                            study_kinks, subgradient_set)
from verigrad.schemes import StepMode, get_scheme
from verigrad.spec import Dtype
from verigrad.fd import coordinate_direction, fd_gradient
from verigrad.studies import run_study
from verigrad.engine.truth import certify

F64, F32 = Dtype.FLOAT64, Dtype.FLOAT32
CASES = Path(__file__).resolve().parent.parent / "cases"

# -- small cases (TOML strings) ---------------------------------------------------------------

RELU_AT_ZERO = """
name = "relu-at-zero"
loss = "a * relu(w * x + b)"
[symbols]
x = { constant = true, value = 2.0 }
a = { value = 3.0 }
w = { value = 0.5 }
b = { value = -1.0 }
"""

ABS_AT_ZERO = """
name = "abs-at-zero"
loss = "sum(abs(u)) + 0.5 * sum(u**2)"
[symbols]
u = { value = [0.0, 2.0] }
"""

MAXPOOL_TIE = """
name = "maxpool-tie"
loss = "sum(C * max(x, axis=1))"
[symbols]
x = { value = [[1.0, 3.0, 3.0, 2.0], [0.0, -1.0, 4.0, 1.5]] }
C = { constant = true, value = [1.0, -1.0] }
"""

HUBER_SWITCH = """
name = "huber-switch"
loss = "0.5*q**2 + delta*(a - q)"
[symbols]
w = { value = 2.0 }
y = { constant = true, value = 1.0 }
delta = { constant = true, value = 1.0 }
[define]
r = "w - y"
a = "abs(r)"
q = "minimum(a, delta)"
"""

L1_ZERO = """
name = "l1-zero-weight"
loss = "lam * sum(abs(w)) + 0.5 * sum(w**2)"
[symbols]
w = { value = [0.5, 0.0] }
lam = { constant = true, value = 0.25 }
"""

LOG_NEAR_ZERO = """
name = "log-near-zero"
loss = "sum(log(x))"
[symbols]
x = { value = [0.001, 1.0] }
"""

# Z1 = W1 @ X + b1 = [[0.75, 0.875], [0, 1.75], [-4e-4, 1.3746]]: Z1[1, 0] is exactly 0 (on the kink),
# Z1[2, 0] is 4e-4 below it.
TINY_NET = """
name = "tiny-net"
loss = "sum(v * A1)"
[symbols]
W1 = { value = [[0.5, -0.25], [1.0, 0.5], [0.25, 0.75]] }
X  = { constant = true, value = [[1.0, 2.0], [-1.0, 0.5]] }
b1 = { value = [[0.0], [-0.5], [0.4996]] }
v  = { constant = true, value = [[1.0, 2.0], [-1.0, 0.5], [3.0, -2.0]] }
[define]
Z1 = "W1 @ X + b1"
A1 = "relu(Z1)"
"""

SITES = """
name = "sites"
loss = "sum(A1) - sum(log(1 - A2)) + sum(a / b) + max(a) + sum(b**1.5) + sum(q)"
[symbols]
a = { value = [0.5, -1.0, 2.0] }
b = { value = [1.5, 0.25, 2.0] }
[define]
A1 = "relu(a)"
A2 = "sigmoid(b)"
q = "minimum(abs(a), 1)"
"""


@lru_cache(maxsize=None)
def model_of(text: str):
    return vg.compile_case(vg.load_case_text(text))


@lru_cache(maxsize=None)
def truth_of(text: str, dtype: Dtype = F64):
    m = model_of(text)
    return certify(m, point_in_dtype(m.point, dtype), dtype)


def f(x) -> float:
    return float(x)


def one_sided(text: str, dtype: Dtype = F64):
    m = model_of(text)
    t = truth_of(text, dtype)
    return one_sided_gradient(m, t.point, dtype, truth=t)


# -- sites ------------------------------------------------------------------------------------


def test_find_sites_names_each_condition_on_an_argument_node():
    sites = {s.text: s for s in find_sites(model_of(SITES))}
    assert list(sites) == [
        "relu(a) at a = 0",
        "abs(a) at a = 0",
        "minimum(abs(a), 1) at abs(a) - 1 = 0",
        "log(1 - A2) at 1 - A2 = 0",
        "division by b at b = 0",
        "max(a) at ties among the maxima of a",
        "b**1.5 at b = 0",
    ]
    relu = sites["relu(a) at a = 0"]
    assert (relu.kind, relu.rule, relu.boundary, relu.label) == (SiteKind.KINK, SiteRule.RELU, Boundary.KINK,
                                                                 "[define] A1: relu(a)")
    log = sites["log(1 - A2) at 1 - A2 = 0"]
    assert (log.kind, log.boundary, log.domain_text) == (SiteKind.DOMAIN, Boundary.POSITIVE, "1 - A2 > 0")
    assert sites["division by b at b = 0"].boundary is Boundary.NONZERO
    assert sites["minimum(abs(a), 1) at abs(a) - 1 = 0"].label == "[define] q: minimum(abs(a), 1)"
    assert relu.describe((2,)) == "relu(a[2])"


def test_site_values_are_exact_and_batched():
    m = model_of(SITES)
    sites = find_sites(m)
    vals = dict(zip([s.text for s in sites], site_values(m, m.point, sites)))
    assert vals["relu(a) at a = 0"].shape == (1, 3)
    assert vals["relu(a) at a = 0"].dtype == object
    assert [f(v) for v in vals["minimum(abs(a), 1) at abs(a) - 1 = 0"][0]] == [-0.5, 0.0, 1.0]
    # max gap: x_i - max_{j != i} x_j, 0 only at ties
    assert [f(v) for v in vals["max(a) at ties among the maxima of a"][0]] == [-1.5, -3.0, 1.5]
    with mpmath.workprec(200):
        expect = 1 - 1 / (1 + mpmath.exp(-mpmath.mpf(1.5)))
        assert abs(vals["log(1 - A2) at 1 - A2 = 0"][0, 0] - expect) < mpmath.mpf(10) ** -50


def test_at_kink_finds_exact_zeros_ties_and_switches():
    def kinks(text):
        m = model_of(text)
        return [(k.site.name, k.entries) for k in at_kink(m, m.point)]

    assert kinks(RELU_AT_ZERO) == [("relu", ((),))]
    assert kinks(ABS_AT_ZERO) == [("abs", ((0,),))]
    assert kinks(MAXPOOL_TIE) == [("max", ((0, 1), (0, 2)))]
    assert kinks(HUBER_SWITCH) == [("minimum", ((),))]
    assert kinks(L1_ZERO) == [("abs", ((1,),))]
    assert kinks(TINY_NET) == [("relu", ((1, 0),))]
    assert kinks(LOG_NEAR_ZERO) == []
    # |abs(a)| = 1 at a[1] = -1: the minimum of SITES is at its switch there
    assert ("minimum", ((1,),)) in kinks(SITES)


# -- one-sided derivatives, hand-verified -----------------------------------------------------


def test_one_sided_relu_input_exactly_zero():
    # f = a relu(w x + b) at w x + b = 0: along b, d- = 0 and d+ = a = 3; along w, d+ = a x = 6; along a, 0.
    os_ = one_sided(RELU_AT_ZERO)
    assert (f(os_.minus["b"]), f(os_.plus["b"])) == pytest.approx((0.0, 3.0), abs=1e-25)
    assert (f(os_.minus["w"]), f(os_.plus["w"])) == pytest.approx((0.0, 6.0), abs=1e-25)
    assert (f(os_.minus["a"]), f(os_.plus["a"])) == (0.0, 0.0)
    lo, hi = os_
    assert (f(lo["b"]), f(hi["b"])) == pytest.approx((0.0, 3.0), abs=1e-25)
    assert bool(os_.computed["b"]) and not bool(os_.computed["a"])


def test_one_sided_abs_at_zero():
    os_ = one_sided(ABS_AT_ZERO)
    assert [f(v) for v in os_.minus["u"]] == pytest.approx([-1.0, 3.0], abs=1e-25)
    assert [f(v) for v in os_.plus["u"]] == pytest.approx([1.0, 3.0], abs=1e-25)


def test_one_sided_maxpool_tie_of_two_entries():
    os_ = one_sided(MAXPOOL_TIE)
    lo, hi = os_
    # each tied entry alone: [0, 1]; the others: their (unique) derivative
    assert [f(v) for v in lo["x"][0]] == pytest.approx([0, 0, 0, 0], abs=1e-25)
    assert [f(v) for v in hi["x"][0]] == pytest.approx([0, 1, 1, 0], abs=1e-25)
    assert [f(v) for v in hi["x"][1]] == pytest.approx([0, 0, -1, 0], abs=1e-25)


def test_one_sided_huber_at_its_switch_collapses():
    # |r| = delta: 0.5 r^2 and delta |r| - delta^2/2 have the same slope r = delta = 1
    m = model_of(HUBER_SWITCH)
    t = truth_of(HUBER_SWITCH)
    sset = subgradient_set(m, t.point)
    assert not sset.choices and len(sset.continuous) == 1
    os_ = one_sided_gradient(m, t.point, F64, truth=t, entries=[("w", 0)])
    assert f(os_.minus["w"]) == pytest.approx(1.0, abs=1e-25)
    assert f(os_.plus["w"]) == pytest.approx(1.0, abs=1e-25)
    acc = kink_acceptance(m, t, {"w": np.float64(1.0)})
    assert acc.conventions == () and f(acc.truth["w"]) == 1.0


def test_one_sided_l1_at_a_zero_weight():
    lo, hi = one_sided(L1_ZERO)
    assert (f(lo["w"][1]), f(hi["w"][1])) == pytest.approx((-0.25, 0.25), abs=1e-25)
    assert (f(lo["w"][0]), f(hi["w"][0])) == (0.75, 0.75)


# -- distances, crossings, safe steps --------------------------------------------------------


def test_distance_along_is_exact_for_linear_arguments_and_inf_when_independent():
    m = model_of(TINY_NET)
    d = coordinate_direction(m, "b1", (2, 0))
    (sd,) = distance_along(m, m.point, d)
    assert sd.crossing[2, 0] == pytest.approx(4e-4, rel=1e-12)
    assert sd.crossing[2, 1] == pytest.approx(-(0.25 * 2 + 0.75 * 0.5 + 0.4996), rel=1e-12)
    assert math.isinf(sd.distance[0, 0]) and math.isinf(sd.distance[1, 0])  # b1[2] does not move rows 0, 1
    assert sd.verified[2, 0] and sd.verified[2, 1]
    assert sd.nearest() == ((2, 0), pytest.approx(4e-4, rel=1e-12))


def test_central_stencil_crossing_relu_is_flagged_with_distance_and_entry():
    m = model_of(TINY_NET)
    d = coordinate_direction(m, "b1", (2, 0))
    h = Fraction(1, 1000)
    (c,) = stencil_crossings(m, m.point, d, [-h, h], label="central h=1e-3")
    assert c.message == "stencil of central h=1e-3 crosses relu(Z1[2, 0]) at distance 4.0e-4"
    assert c.entry == (2, 0) and c.nodes == (0.001,) and not c.on_kink
    assert c.distance == pytest.approx(4e-4, rel=1e-8)
    # a forward stencil points away from the kink along -b1[2]... but not along +b1[2]: same crossing
    assert [x.entry for x in stencil_crossings(m, m.point, d, [Fraction(0), h])] == [(2, 0)]
    assert stencil_crossings(m, m.point, d, [-h, Fraction(0)]) == []


def test_safe_step_keeps_the_stencil_inside():
    m = model_of(TINY_NET)
    d = coordinate_direction(m, "b1", (2, 0))
    ss = safe_steps(m, m.point, d, "central")
    assert ss.limit == pytest.approx(4e-4, rel=1e-10)
    assert 3.9e-4 < ss.step < 4e-4
    assert "relu(Z1[2, 0])" in ss.message
    h = Fraction(ss.step)
    assert stencil_crossings(m, m.point, d, [-h, h]) == []
    assert stencil_crossings(m, m.point, d, [-h, h], dtype=F32) == []
    # central4 reaches 2h: its safe step is half as large
    assert safe_steps(m, m.point, d, "central4").limit == pytest.approx(2e-4, rel=1e-10)
    # on the kink of Z1[1, 0] no step is safe along b1[1]
    on = safe_steps(m, m.point, coordinate_direction(m, "b1", (1, 0)), "central")
    assert on.limit == 0.0 and on.step == 0.0 and "on the kink of relu(Z1[1, 0])" in on.message


def test_log_near_zero_domain_crossing_is_flagged_for_a_big_step():
    m = model_of(LOG_NEAR_ZERO)
    d = coordinate_direction(m, "x", (0,))
    (c,) = stencil_crossings(m, m.point, d, [Fraction(-1, 100), Fraction(1, 100)], label="central h=1e-2")
    assert c.leaves_domain and c.message == ("stencil of central h=1e-2 leaves the domain of log(x[0]) (x > 0) "
                                             "at distance 1.0e-3")
    assert stencil_crossings(m, m.point, d, [Fraction(-1, 10000), Fraction(1, 10000)]) == []
    fdc = fd_crossings(m, dtype=F64, scheme="central", step=1e-2, step_mode=StepMode.ABSOLUTE)
    assert fdc.excluded["x"].tolist() == [True, False]
    assert fdc.messages() == ["x[0]: stencil of central h=1.0e-2 leaves the domain of log(x[0]) (x > 0) "
                              "at distance 1.0e-3"]
    assert safe_steps(m, m.point, d, "central").limit == pytest.approx(1e-3, rel=1e-12)


def test_fd_crossings_mark_coordinates_of_the_full_gradient():
    m = model_of(TINY_NET)
    for dt in (F64, F32):
        fdc = fd_crossings(m, dtype=dt, scheme="central", step=1e-3, step_mode=StepMode.ABSOLUTE)
        assert fdc.excluded["b1"][:, 0].tolist() == [False, False, True]
        assert fdc.excluded["W1"].tolist() == [[False, False], [False, False], [True, True]]
        assert fdc.on_kink["b1"][:, 0].tolist() == [False, True, False]
        assert fdc.on_kink["W1"].tolist() == [[False, False], [True, True], [False, False]]
    msgs = fd_crossings(m, dtype=F64, scheme="central", step=1e-3, step_mode=StepMode.ABSOLUTE).messages()
    assert "b1[2, 0]: stencil of central h=1.0e-3 crosses relu(Z1[2, 0]) at distance 4.0e-4" in msgs
    assert ("b1[1, 0]: stencil of central h=1.0e-3 straddles relu(Z1[1, 0]): the point is on the kink "
            "(Z1[1, 0] = 0 exactly)") in msgs
    # a small step crosses nothing away from the kink
    small = fd_crossings(m, dtype=F64, scheme="central", step=1e-5, step_mode=StepMode.ABSOLUTE)
    assert not any(v.any() for v in small.excluded.values())


def test_kink_limit_of_schemes():
    assert kink_limit("forward")[:2] == (1, 0)
    assert kink_limit("backward")[:2] == (0, 1)
    assert kink_limit("central")[:2] == (Fraction(1, 2), Fraction(1, 2))
    assert kink_limit("central4")[:2] == (Fraction(1, 2), Fraction(1, 2))
    assert "mean of the one-sided" in kink_limit("central6")[2]


def test_finite_differences_on_a_kink_are_graded_against_their_limit():
    case = vg.load_case(CASES / "kinks-relu-l1.toml")
    m = vg.compile_case(case)
    for dt in (F32, F64):
        t = certify(m, point_in_dtype(m.point, dt), dt)
        for name in ("central", "forward", "backward"):
            scheme = get_scheme(name)
            h = 1e-3 if dt is F32 else 1e-6
            est = fd_gradient(m, dtype=dt, scheme=scheme, step=h)
            plain = grade(truth=t.gradient, value=est, baseline=est, dtype=dt.numpy, case="k", candidate=name)
            adj = fd_kink_adjustment(m, t, est, scheme=scheme, step=h)
            g = grade(truth=adj.truth, value=est, baseline=est, dtype=dt.numpy, case="k", candidate=name)
            assert plain.normwise_relative > 0.2
            assert g.normwise_relative < (1e-3 if dt is F32 else 1e-7)
            assert adj.on_kink_count == 4 and adj.excluded_count == 0
            assert kink_limit(scheme)[2] in adj.notes[0]


def test_study_on_a_kink_uses_the_limit_of_the_scheme():
    m = model_of(RELU_AT_ZERO)
    d = coordinate_direction(m, "b")
    sk = study_kinks(m, m.point, d, "central", [1e-6, 1e-3, 1.0], dtype=F64)
    assert f(sk.plus) == pytest.approx(3.0) and f(sk.minus) == pytest.approx(0.0, abs=1e-25)
    assert f(sk.reference) == pytest.approx(1.5)
    assert not sk.crossing.any() and "(d+ + d-)/2" in sk.notes[0]
    net = model_of(TINY_NET)
    sk = study_kinks(net, net.point, coordinate_direction(net, "b1", (2, 0)), "central", [1e-5, 1e-3, 1e-1])
    assert sk.reference is None and sk.crossing.tolist() == [False, True, True]


@pytest.mark.parametrize("scheme", ["central", "forward", "central4"])
def test_study_kinks_batches_the_steps_and_attributes_each_crossing(monkeypatch, scheme):
    """All steps' nodes go through one exact crossing check (plus one to locate the first crossing),
    and each step is flagged exactly when its own stencil, checked alone, crosses a site."""
    from verigrad.fd import random_direction
    from verigrad.kinks import steps as kinks_steps

    net = model_of(TINY_NET)
    d = random_direction(net, 3)
    hs = [1e-5, 1e-3, 3e-2, 1e-1, 0.3, 1.0, 2.5, 8.0]
    calls = []
    orig = kinks_steps._crossings
    monkeypatch.setattr(kinks_steps, "_crossings", lambda *a, **k: calls.append(len(a[3])) or orig(*a, **k))
    sk = study_kinks(net, net.point, d, scheme, hs, dtype=F64)
    offsets = get_scheme(scheme).offsets
    assert len(calls) <= 2 and calls[0] == len({c * Fraction(h) for h in hs for c in offsets})
    want = [any(not c.on_kink for c in stencil_crossings(net, net.point, d, [c * Fraction(h) for c in offsets],
                                                         dtype=F64, locate=False)) for h in hs]
    assert sk.crossing.tolist() == want and 0 < sum(want) < len(hs)


# -- grading at kinks -------------------------------------------------------------------------


def _net_backprop(relu_prime_at_zero: float):
    def backward(W1, X, b1, v):
        Z = W1 @ X + b1
        d = np.where(Z > 0, 1.0, np.where(Z == 0, relu_prime_at_zero, 0.0)).astype(Z.dtype)
        dZ = v * d
        return {"W1": dZ @ X.T, "b1": np.sum(dZ, axis=1, keepdims=True)}
    return backward


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("prime, passes", [(0.0, True), (0.5, True), (1.0, True), (2.0, False)])
def test_backprop_at_a_relu_kink_passes_with_any_valid_convention(dtype, prime, passes):
    m = model_of(TINY_NET)
    t = truth_of(TINY_NET, dtype)
    base = dict(zip(m.gradient, m.float_eval(list(m.gradient.values()), t.point, dtype.numpy)))
    value = _net_backprop(prime)(**{k: np.array(v) for k, v in t.point.items()})
    acc = kink_acceptance(m, t, value, base)
    g = grade(truth=acc.truth, value=value, baseline=acc.baseline, dtype=dtype.numpy, case="net", candidate="bp")
    assert (g.verdict is Verdict.PASS) == passes, g.messages()
    assert acc.matched == passes
    if passes:
        assert acc.conventions[0].startswith(f"relu'(0) = {Fraction(prime).limit_denominator(4)}")
        assert acc.conventions[0].endswith("at Z1[1, 0]")
    else:
        assert acc.conventions[0].startswith("nearest valid: relu'(0) = 1")
    # the per-entry test agrees on this single kink
    lo, hi = one_sided_gradient(m, t.point, dtype, truth=t)
    eff, conv = accept_at_kinks(t.gradient, value, lo, hi, 1e-5)
    g2 = grade(truth=eff, value=value, baseline=base, dtype=dtype.numpy, case="net", candidate="bp")
    assert (g2.verdict is Verdict.PASS) == passes
    if prime == 0.0:
        assert any("the lower one-sided derivative" in c for c in conv)


def test_without_kink_acceptance_a_valid_convention_is_a_false_alarm():
    m = model_of(TINY_NET)
    t = truth_of(TINY_NET)
    base = dict(zip(m.gradient, m.float_eval(list(m.gradient.values()), t.point, np.float64)))
    value = _net_backprop(0.5)(**{k: np.array(v) for k, v in t.point.items()})
    plain = grade(truth=t.gradient, value=value, baseline=base, dtype=np.float64, case="net", candidate="bp")
    assert plain.verdict is Verdict.FAIL


def test_maxpool_tie_is_judged_jointly_not_per_entry():
    m = model_of(MAXPOOL_TIE)
    t = truth_of(MAXPOOL_TIE)
    base = dict(zip(m.gradient, m.float_eval(list(m.gradient.values()), t.point, np.float64)))
    argmax = {"x": np.array([[0, 1, 0, 0], [0, 0, -1, 0]], dtype=np.float64)}
    split = {"x": np.array([[0, 0.5, 0.5, 0], [0, 0, -1, 0]], dtype=np.float64)}
    mask = {"x": np.array([[0, 1, 1, 0], [0, 0, -1, 0]], dtype=np.float64)}
    verdicts = {}
    for name, value in [("argmax", argmax), ("split", split), ("mask", mask)]:
        acc = kink_acceptance(m, t, value, base)
        g = grade(truth=acc.truth, value=value, baseline=acc.baseline, dtype=np.float64, case="mp", candidate=name)
        verdicts[name] = (g.verdict, acc.conventions)
    assert verdicts["argmax"] == (Verdict.PASS, ("max tie: all to x[0, 1] at x[0, 1], x[0, 2]",))
    assert verdicts["split"] == (Verdict.PASS, ("max tie split 1/2 each at x[0, 1], x[0, 2]",))
    assert verdicts["mask"][0] is Verdict.FAIL
    # every entry of the mask bug lies in its own interval [0, 1]: the per-entry test cannot see it
    lo, hi = one_sided_gradient(m, t.point, F64, truth=t)
    eff, _ = accept_at_kinks(t.gradient, mask, lo, hi, 1e-12)
    assert grade(truth=eff, value=mask, baseline=base, dtype=np.float64, case="mp", candidate="mask").verdict \
        is Verdict.PASS


@pytest.mark.parametrize("case_file", ["kinks-relu-l1.toml", "maxpool-ties.toml"])
def test_shipped_kink_cases_meet_their_expectations(case_file):
    from verigrad.runner.candidates import load_function
    from verigrad.spec import Expect

    case = vg.load_case(CASES / case_file)
    m = vg.compile_case(case)
    for dt in case.check.dtypes:
        p = point_in_dtype(m.point, dt)
        t = certify(m, p, dt)
        base = dict(zip(m.gradient, m.float_eval(list(m.gradient.values()), p, dt.numpy)))
        assert kink_analysis(m, t) is kink_analysis(m, t)  # cached per truth
        for cand in case.candidates:
            value = load_function(cand.code)(**{k: np.array(v) for k, v in p.items()})
            acc = kink_acceptance(m, t, value, base)
            g = grade(truth=acc.truth, value=value, baseline=acc.baseline, dtype=dt.numpy, case=case.name,
                      candidate=cand.name)
            assert (g.verdict is Verdict.PASS) == (cand.expect is Expect.PASS), (cand.name, dt, g.messages())


def test_off_kink_the_truth_is_unchanged():
    m = model_of(LOG_NEAR_ZERO)
    t = truth_of(LOG_NEAR_ZERO)
    acc = kink_acceptance(m, t, {"x": np.array([1000.0, 1.0])})
    assert acc.truth["x"] is not None and not acc.at_kink and acc.conventions == ()
    assert [f(v) for v in acc.truth["x"]] == [f(v) for v in t.gradient["x"]]


# -- complex step ----------------------------------------------------------------------------


def test_complex_step_refusal_names_the_site():
    m = model_of(TINY_NET)
    d = coordinate_direction(m, "b1", (0, 0))
    with pytest.raises(UsageError, match=re.escape("[define] A1: relu(Z1)")):
        run_study(m, dtype=F64, scheme="complex-step", direction=d, steps=[1e-20])
    with pytest.raises(UsageError, match=r"complex-step is refused for tiny-net.*relu\(Z1\)"):
        fd_gradient(m, dtype=F64, scheme="complex-step", step=1e-20)
    h = model_of(HUBER_SWITCH)
    with pytest.raises(UsageError, match=re.escape("[define] q: minimum(a, delta)")):
        fd_gradient(h, dtype=F64, scheme="complex-step", step=1e-20)


def test_recommended_steps_keep_stencils_inside_the_smooth_region():
    """relu's input is 1e-4 from its kink: the float32 rule-of-thumb step (4.9e-3) would cross it;
    the recommender reduces that coordinate's step, and then no stencil crosses and FD is accurate."""
    from verigrad import compile_case, load_case_text
    from verigrad.casefile.loader import point_in_dtype
    from verigrad.kinks import fd_crossings, recommend_steps
    from verigrad.spec import Dtype
    from verigrad.fd import fd_gradient
    from verigrad.engine.truth import certify

    text = ('name = "near"\nloss = "sum(relu(x) * c) + sum(x**2)"\n[symbols]\n'
            'x = { value = [0.0001, 2.0] }\nc = { constant = true, value = [3.0, 1.0] }\n')
    m = compile_case(load_case_text(text, path="t.toml"))
    dt = Dtype.FLOAT32
    before = fd_crossings(m, dtype=dt, scheme="central", step=4.9e-3)
    assert before.excluded["x"].tolist() == [True, False]
    rec = recommend_steps(m, dtype=dt, scheme="central")
    assert rec.reduced["x"].tolist() == [True, False]
    assert 0 < rec.steps["x"][0] < 1e-4 and rec.steps["x"][1] == pytest.approx(4.9e-3 * 2, rel=0.01)
    assert "step reduced at 1 coordinate" in rec.notes[0]
    after = fd_crossings(m, dtype=dt, scheme="central", step=rec.steps)
    assert not after.excluded["x"].any()
    est = fd_gradient(m, dtype=dt, scheme="central", step=rec.steps)
    t = certify(m, point_in_dtype(m.point, dt), dt)
    assert abs(float(est["x"][0]) - float(t.gradient["x"][0])) < 1e-2 * 3.0  # right side of the kink: 3 + 2x
