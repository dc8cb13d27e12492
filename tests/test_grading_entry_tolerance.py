"""Per-entry tolerances from the float baseline's error model, and the bug shape wrong_axis (issue 17).

The per-entry rule: with ``error_model`` (a bound ``m_i`` of the baseline's rounding error per
entry), an entry whose baseline error is within ``m_i`` gets ``min(tau_k, max(2 m_i, 2 ulp(g_i)))``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mpmath
import numpy as np
import pytest

from verigrad.grading import BugShape, ToleranceSource, Tolerances, grade

CASES = Path(__file__).resolve().parents[1] / "cases"


def _exact(a) -> np.ndarray:
    return np.array([mpmath.mpf(float(x)) for x in np.asarray(a, dtype=np.float64).reshape(-1)],
                    dtype=object).reshape(np.shape(a))


# ---------------------------------------------------------------------------
# grade(error_model=...): closed-form thresholds
# ---------------------------------------------------------------------------


def test_entry_tolerance_catches_three_ulps_that_tau_k_allows():
    g = np.array([1.0, 3.0])
    truth = {"w": _exact(g)}
    base = {"w": g.astype(np.float32)}  # exact: the baseline has no error at either entry
    v = {"w": np.array([1 + 3 * 2.0 ** -23, 3.0], dtype=np.float32)}  # 3 ulps off at w[0]
    # tau_k: the floor 32 * 4 ulp_32(S = 3) = 128 * 2**-22
    plain = grade(truth=truth, value=v, baseline=base, dtype=np.float32, case="c", candidate="x")
    assert plain.verdict.value == "pass"
    assert plain.variables[0].tolerance == 2.0 ** -15
    assert plain.variables[0].tolerance_source is ToleranceSource.FLOOR
    # m = [2**-24, 1e-3]: w[0] gets max(2 * 2**-24, 2 ulp_32(1) = 2**-22) = 2**-22; w[1] min(tau_k, 2e-3) = tau_k
    em = {"w": np.array([2.0 ** -24, 1e-3])}
    g2 = grade(truth=truth, value=v, baseline=base, dtype=np.float32, case="c", candidate="x", error_model=em)
    assert g2.verdict.value == "fail"
    (w,) = g2.wrong
    assert w.index == (0,) and w.tolerance == 2.0 ** -22 and w.ulps == 3.0
    assert g2.entry_messages[0] == "c › w[0] › float32: rel err 3.6e-07 > tol 2.4e-07 (truth 1.0, got 1.000000358)"
    vg = g2.variables[0]
    assert vg.tolerance == 2.0 ** -15 and vg.tolerance_source is ToleranceSource.ENTRY
    # the largest entry (3.0) keeps tau_k: detection 2**-15 / 3
    assert vg.detection_threshold == pytest.approx(2.0 ** -15 / 3, rel=1e-15)
    assert vg.to_dict()["tolerance_source"] == "entry"


def test_entry_tolerance_needs_the_model_to_explain_the_baseline():
    g = np.array([1.0, 3.0])
    truth = {"w": _exact(g)}
    # the baseline is 4 ulps off at w[0], more than the model's bound: the model is not trusted there
    base = {"w": np.array([1 + 4 * 2.0 ** -23, 3.0], dtype=np.float32)}
    v = {"w": np.array([1 + 3 * 2.0 ** -23, 3.0], dtype=np.float32)}
    em = {"w": np.array([2.0 ** -24, 1e-3])}
    g2 = grade(truth=truth, value=v, baseline=base, dtype=np.float32, case="c", candidate="x", error_model=em)
    assert g2.verdict.value == "pass"
    # w[1] qualifies but min(tau_k, 2e-3) = tau_k: no entry is held tighter, the floor still binds
    assert g2.variables[0].tolerance_source is ToleranceSource.FLOOR
    # lambda scales the model's part: with entry_lambda = 8, m = 2**-22 gives 2**-19 (16 ulps) at w[0]
    em = {"w": np.array([2.0 ** -22, 1e-3])}
    base = {"w": g.astype(np.float32)}
    g3 = grade(truth=truth, value=v, baseline=base, dtype=np.float32, case="c", candidate="x", error_model=em,
               tolerances=Tolerances(entry_lambda=8))
    assert g3.verdict.value == "pass"
    v4 = {"w": np.array([1 + 17 * 2.0 ** -23, 3.0], dtype=np.float32)}
    g4 = grade(truth=truth, value=v4, baseline=base, dtype=np.float32, case="c", candidate="x", error_model=em,
               tolerances=Tolerances(entry_lambda=8))
    assert g4.verdict.value == "fail" and g4.wrong[0].tolerance == 2.0 ** -19


def test_error_model_shape_mismatch_and_lambda_validation():
    truth = {"w": _exact([1.0, 3.0])}
    with pytest.raises(ValueError, match=r"error_model\['w'\] has shape \(3,\), the truth has \(2,\)"):
        grade(truth=truth, value={"w": np.ones(2)}, baseline={"w": np.ones(2)}, dtype=np.float64, case="c",
              candidate="x", error_model={"w": np.ones(3)})
    with pytest.raises(ValueError, match=r"entry_lambda must be a finite number >= 1"):
        Tolerances(entry_lambda=0.5)


# ---------------------------------------------------------------------------
# baseline_error_model on real cases: it bounds the baseline, and correct candidates with a margin
# ---------------------------------------------------------------------------


def _setup(name: str, dtype: str):
    from verigrad.casefile.loader import load_case, point_in_dtype
    from verigrad.engine.model import compile_case
    from verigrad.engine.truth import certify
    from verigrad.grading import baseline_error_model
    from verigrad.runner.case import baseline_gradient, truth_digits
    from verigrad.spec import Dtype

    case = load_case(CASES / f"{name}.toml")
    model = compile_case(case)
    dt = Dtype(dtype)
    point = point_in_dtype(model.point, dt)
    truth = certify(model, point, dt, digits=truth_digits(case))
    cand = next(c for c in case.candidates if c.expectation(dt).value == "pass")
    spec = importlib.util.spec_from_file_location(f"_t_{cand.code.path.stem}", cand.code.path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    value = getattr(mod, cand.code.function)(**{k: np.array(v, copy=True) for k, v in point.items()})
    return (truth, baseline_gradient(model, point, dt), baseline_error_model(model, point, dt.numpy),
            {k: np.asarray(x) for k, x in value.items()}, dt)


FRESH = ["mlp-weight-decay", "gaussian-mixture", "layer-norm", "softmax-ce-labels", "cauchy-regression"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", FRESH + ["logistic-regression-l2", "rosenbrock-10d", "matrix-factorisation",
                                  "softplus-net-sigmoid", "tied-tanh-autoencoder"])
def test_error_model_bounds_baseline_and_correct_candidate(name, dtype):
    truth, base, em, value, dt = _setup(name, dtype)
    worst_b = worst_v = 0.0
    for k, m in em.items():
        g = np.array([float(x) for x in np.asarray(truth.gradient[k], dtype=object).reshape(-1)])
        m = m.reshape(-1)
        nz = g != 0
        assert np.isfinite(m[nz]).all()
        worst_b = max(worst_b, float(np.max(np.abs(base[k].reshape(-1).astype(float) - g)[nz] / m[nz])))
        worst_v = max(worst_v, float(np.max(np.abs(value[k].reshape(-1).astype(float) - g)[nz] / m[nz])))
    # measured 2026-12-06 (m = min(worst case, 4.5 sigma)): baseline <= 0.37 m, correct candidates <= 0.48 m
    # (softplus-net-sigmoid, float64); entry_lambda = 2 leaves >= 4.2x
    assert worst_b <= 0.5
    assert worst_v <= 0.5
    # and the grade with the per-entry rule passes the correct candidate
    g = grade(truth=truth.gradient, value=value, baseline=base, dtype=dt.numpy, case=name, candidate="c",
              error_model=em)
    assert g.verdict.value == "pass", g.reason


def test_entry_rule_catches_one_entry_off_by_1e_6_on_rosenbrock():
    """rosenbrock-10d, float32: x[8] off by 1e-6 relative fails only with the per-entry rule.

    The model there is 4.5 sigma ~ 4e-7 |g| (the worst-case bound alone is 4.67e-7 |g|), so the
    entry's tolerance is 2 * 4.5 sigma ~ 8e-7 |g|; tau_k is 32 * 4 ulps of the gradient's scale
    (3567), 8.8e-6 of |g_8| = 882.  sigma is a seeded 128-run estimate: checked against 4,096
    runs of another seed (the sampling error of 128 runs is ~6%)."""
    from verigrad.casefile.loader import load_case, point_in_dtype
    from verigrad.engine.model import compile_case
    from verigrad.grading.errormodel import baseline_error_spread
    from verigrad.spec import Dtype

    truth, base, em, value, dt = _setup("rosenbrock-10d", "float32")
    v = {"x": value["x"].copy()}
    v["x"][8] = np.float32(float(v["x"][8]) * (1 + 1e-6))
    kw = dict(truth=truth.gradient, value=v, baseline=base, dtype=np.float32, case="r", candidate="c")
    assert grade(**kw).verdict.value == "pass"  # tau_k = 32 * 4 ulps of the scale
    g = grade(**kw, error_model=em)
    assert g.verdict.value == "fail" and [w.index for w in g.wrong] == [(8,)]
    assert g.wrong[0].rel_error == pytest.approx(1e-6, rel=0.2)
    g8 = abs(float(g.wrong[0].truth))
    model = compile_case(load_case(CASES / "rosenbrock-10d.toml"))
    point = point_in_dtype(model.point, Dtype.FLOAT32)
    sigma = float(baseline_error_spread(model, point, np.float32)["x"][8])
    assert g.wrong[0].tolerance == pytest.approx(2 * 4.5 * sigma, rel=1e-12)  # the rule, exactly
    many = float(baseline_error_spread(model, point, np.float32, samples=4096, seed=1)["x"][8])
    assert sigma == pytest.approx(many, rel=0.15)
    assert 2 * 4.5 * many / g8 == pytest.approx(8e-7, rel=0.1)


# ---------------------------------------------------------------------------
# baseline_error_spread: the signed propagation of random roundings
# ---------------------------------------------------------------------------


def _compiled(text: str, dtype):
    from verigrad.casefile.loader import load_case_text, point_in_dtype
    from verigrad.engine.model import compile_case
    from verigrad.spec import Dtype

    model = compile_case(load_case_text(text))
    return model, point_in_dtype(model.point, Dtype(np.dtype(dtype).name))


SQ = '''
name = "sq"
loss = "sum(x**2) / 2"
[symbols]
x = { value = [3.0, -0.5] }
'''


def test_spread_closed_form_two_roundings():
    """grad = (1/2) (2 x): two roundings of relative size u, uniform on [-u, u], independent.

    Each contributes variance u**2 x**2 / 3, so sigma = u |x| sqrt(2/3) = 0.8165 u |x| (128 runs:
    the estimate is within ~15%).  The worst-case bound alone is [6, 1] u (module docstring)."""
    from verigrad.grading import baseline_error_model
    from verigrad.grading.errormodel import baseline_error_spread

    model, point = _compiled(SQ, np.float32)
    u = 2.0 ** -24
    sd = baseline_error_spread(model, point, np.float32)["x"]
    assert sd / (u * np.array([3.0, 0.5])) == pytest.approx([0.8165, 0.8165], rel=0.15)
    worst = baseline_error_model(model, point, np.float32, spread=False)["x"]
    assert list(worst / u) == [6.0, 1.0]
    m = baseline_error_model(model, point, np.float32)["x"]
    assert np.array_equal(m, np.minimum(worst, 4.5 * sd))
    # seeded: the same sigma every time, another seed another estimate
    assert np.array_equal(sd, baseline_error_spread(model, point, np.float32)["x"])
    assert not np.array_equal(sd, baseline_error_spread(model, point, np.float32, seed=1)["x"])


def test_spread_of_a_sum_against_float32_reorderings():
    """grad w = X^T 1, column sums of 64 mixed-sign terms: sigma vs 400 real float32 orders.

    Independent reference: the same sums in float32, sequentially, in 400 random orders; their
    errors (against the exact float64 sum of the float32 terms) have a standard deviation the
    model must not underestimate, nor overstate by more than the factor its conservatism buys
    (measured 1.2-1.6: random orders plus the natural and reversed loops, a full u per rounding)."""
    from verigrad.grading.errormodel import baseline_error_spread

    model, point = _compiled('''
name = "colsum"
seed = 5
rng = "numpy"
loss = "sum(X @ w)"
[symbols]
X = { constant = true, shape = [64, 4], init = "normal(0.3, 1)" }
w = { shape = [4], init = "normal" }
''', np.float32)
    sd = baseline_error_spread(model, point, np.float32)["w"]
    X = np.asarray(point["X"], dtype=np.float32)
    exact = X.astype(np.float64).sum(axis=0)  # exact: 64 float32 terms fit in float64's 53 bits here
    rng = np.random.default_rng(0)
    errs = []
    for _ in range(400):
        acc = np.zeros(4, np.float32)
        for row in X[rng.permutation(64)]:
            acc = acc + row
        errs.append(acc.astype(np.float64) - exact)
    emp = np.std(np.array(errs), axis=0)
    ratio = sd / emp
    assert np.all(ratio > 1.0) and np.all(ratio < 3.0), ratio


def test_spread_allows_the_textbook_tanh_derivative(monkeypatch):
    """1 - t*t with t = fl32(tanh(x)) at x = 3: relative error ~ 2 u sinh(x)**2 = 200 u.

    The graph's dtanh is a stable form (a few ulps); both models allow the textbook form a
    correct candidate writes (``_textbook``), so its grade passes; without that allowance
    (8 u |f| for the composite) it would fail."""
    from verigrad.grading import errormodel
    import mpmath as mp

    from verigrad.grading import baseline_error_model

    model, point = _compiled('''
name = "th"
loss = "sum(tanh(x))"
[symbols]
x = { value = [3.0, 2.5, 0.25] }
''', np.float32)
    x = np.asarray(point["x"], dtype=np.float32)
    t = np.tanh(x)
    cand = {"x": (1 - t * t).astype(np.float32)}
    with mp.workprec(120):  # scoped: the process's precision stays as it was
        exact = np.array([mp.mpf(1) - mp.tanh(mp.mpf(float(v))) ** 2 for v in x], dtype=object)
    g = np.array([float(v) for v in exact])
    err = np.abs(cand["x"].astype(np.float64) - g)
    assert err[0] / (2.0 ** -24 * g[0]) > 20  # the textbook form is far off at x = 3
    m = baseline_error_model(model, point, np.float32)["x"]
    assert np.all(err <= 0.5 * m)
    truth = {"x": exact}
    base = {"x": np.array([np.float32(v) for v in g])}
    kw = dict(truth=truth, value=cand, baseline=base, dtype=np.float32, case="th", candidate="c")
    assert grade(**kw, error_model={"x": m}).verdict.value == "pass"
    monkeypatch.setattr(errormodel, "_textbook", lambda name, a: 0.0)
    m0 = baseline_error_model(model, point, np.float32)["x"]
    assert err[0] > 2 * m0[0]
    assert grade(**kw, error_model={"x": m0}).verdict.value == "fail"


def test_spread_falls_back_to_the_worst_case_when_a_node_is_too_large(monkeypatch):
    from verigrad.grading import baseline_error_model, errormodel

    model, point = _compiled(SQ, np.float32)
    monkeypatch.setattr(errormodel, "_SPREAD_BUDGET", 16)  # 2 entries: only 8 runs fit, fewer than 16
    assert errormodel.baseline_error_spread(model, point, np.float32) is None
    assert list(baseline_error_model(model, point, np.float32)["x"] / 2.0 ** -24) == [6.0, 1.0]


# ---------------------------------------------------------------------------
# bug shape: wrong_axis (real arrays)
# ---------------------------------------------------------------------------


def _grade64(g: np.ndarray, v: np.ndarray):
    return grade(truth={"W": _exact(g)}, value={"W": v}, baseline={"W": g}, dtype=np.float64, case="c",
                 candidate="x")


G = np.array([[0.5, -1.25, 2.0], [1.5, 0.25, -0.75], [-2.0, 1.0, 0.125], [0.75, -0.5, 1.75]])


def test_wrong_axis_sum_broadcast_back():
    v = np.broadcast_to(G.sum(axis=0, keepdims=True), G.shape).copy()  # column sums in every row
    g = _grade64(G, v)
    (d,) = g.diagnosis
    assert d.shape is BugShape.WRONG_AXIS and d.region == "sum over axis 0, broadcast back"
    assert d.message.startswith("c › W › float64: the truth summed over axis 0 and broadcast back along it: "
                                "a reduction over the wrong axis (W[")
    assert "(sum over axis 0, broadcast back)" in g.reason
    v = np.broadcast_to(G.sum(axis=1, keepdims=True), G.shape).copy()  # row sums in every column
    assert _grade64(G, v).diagnosis[0].region == "sum over axis 1, broadcast back"


def test_wrong_axis_mean_slice_and_constant():
    v = np.broadcast_to(G.mean(axis=1, keepdims=True), G.shape).copy()
    assert _grade64(G, v).diagnosis[0].region == "mean over axis 1, broadcast back"
    v = np.broadcast_to(G[2:3, :], G.shape).copy()  # one sample's row where the sum was meant
    (d,) = _grade64(G, v).diagnosis
    assert d.shape is BugShape.WRONG_AXIS and d.region == "W[2, :] broadcast along axis 0"
    assert "one slice broadcast where a sum was meant" in d.message
    v = np.broadcast_to(np.array([[9.0, -9.0, 4.0]]), G.shape).copy()
    (d,) = _grade64(G, v).diagnosis
    assert d.shape is BugShape.WRONG_AXIS and d.region == "constant along axis 0"


def test_wrong_axis_not_claimed_when_the_truth_is_constant_along_it():
    g = np.broadcast_to(np.array([[1.0, 2.0, 3.0]]), (4, 3)).copy()  # truth constant along axis 0
    (d,) = _grade64(g, 2 * g).diagnosis
    assert d.shape is BugShape.SCALED
    # a 3-D truth summed over two axes
    g3 = np.arange(24, dtype=np.float64).reshape(2, 3, 4) - 11.5
    v3 = np.broadcast_to(g3.sum(axis=(0, 2), keepdims=True), g3.shape).copy()
    d3 = grade(truth={"T": _exact(g3)}, value={"T": v3}, baseline={"T": g3}, dtype=np.float64, case="c",
               candidate="x").diagnosis[0]
    assert d3.shape is BugShape.WRONG_AXIS and d3.region == "sum over axes 0, 2, broadcast back"


@pytest.mark.parametrize("case, candidate, shape, region", [
    ("softmax-ce-labels", "dW-summed-over-inputs", "wrong_axis", "sum over axis 0, broadcast back"),
    ("softmax-ce-labels", "dW-first-row-broadcast", "wrong_axis", "W[0, :] broadcast along axis 0"),
    ("cauchy-regression", "coefficients-reversed", "reversed", "w[::-1]"),
    ("cauchy-regression", "constant-offset", "offset", None),
])
def test_shipped_axis_shapes(case, candidate, shape, region):
    from verigrad.runner.case import run_case

    rep = run_case(CASES / f"{case}.toml", with_fd=False)
    rs = [r for r in rep.results if r.candidate == candidate]
    assert [r.dtype for r in rs] == ["float32", "float64"]
    for r in rs:
        assert r.verdict == "fail" and r.met is True
        (d,) = r.grade.diagnosis
        assert d.shape.value == shape and d.region == region
    if shape == "offset":
        assert rs[0].grade.diagnosis[0].factor == pytest.approx(0.25)


# ---------------------------------------------------------------------------
# [check] entry_sigmas: the user's choice of margin against detection power
# ---------------------------------------------------------------------------


def test_entry_sigmas_trades_margin_for_detection(tmp_path):
    """float32, entries off by 1e-6 (8 to 17 ulps) one at a time: at 6 standard deviations more of
    them fail than at the default 9 (rosenbrock-10d: the same 8 of 10; layer-norm's X: more), and
    the correct candidates still pass."""
    from verigrad.casefile.loader import load_case
    from verigrad.runner.case import _tolerances

    text = (CASES / "rosenbrock-10d.toml").read_text().replace("[check]\n", "[check]\nentry_sigmas = 6\n")
    (tmp_path / "impl").mkdir()
    for f in (CASES / "impl").glob("rosenbrock*.py"):
        (tmp_path / "impl" / f.name).write_text(f.read_text())
    (tmp_path / "r.toml").write_text(text)
    tol6 = _tolerances(load_case(tmp_path / "r.toml"))
    assert tol6.entry_lambda == pytest.approx(6 / 4.5)
    for name, var, n_max in (("rosenbrock-10d", "x", 10), ("layer-norm", "X", 48)):
        truth, base, em, value, dt = _setup(name, "float32")
        kw = dict(truth=truth.gradient, baseline=base, dtype=np.float32, case="r", candidate="c", error_model=em)
        assert grade(value=value, tolerances=tol6, **kw).verdict.value == "pass"
        caught = {9: 0, 6: 0}
        for i in range(min(value[var].size, n_max)):
            v = {k: a.copy() for k, a in value.items()}
            flat = v[var].reshape(-1)
            flat[i] = np.float32(float(flat[i]) * (1 + 1e-6))
            caught[9] += grade(value=v, **kw).verdict.value == "fail"
            caught[6] += grade(value=v, tolerances=tol6, **kw).verdict.value == "fail"
        assert caught[6] >= caught[9] and (caught[6] > caught[9] or name == "rosenbrock-10d"), (name, caught)


@pytest.mark.parametrize("value, why", [(3, "must be a number from 4.5 to 1000"), (1001, "must be a number from 4.5 to 1000"),
                                        ('"9"', "a number")])
def test_entry_sigmas_is_checked(tmp_path, value, why):
    from verigrad.casefile.loader import load_case_text
    from verigrad.errors import CaseError

    with pytest.raises(CaseError) as e:
        load_case_text(f'name = "q"\nloss = "sum(x**2)"\n[symbols]\nx = {{ value = [1.0] }}\n'
                       f"[check]\nentry_sigmas = {value}\n")
    assert "entry_sigmas" in str(e.value) and why in str(e.value)
