"""Tests for verigrad.grading.

Truths are built here from closed forms, exactly (Fractions) or in mpmath at
50 digits; float baselines evaluate the same formulas naively (recursive
summation, every operation rounded to the dtype); candidates are ordinary
numpy code (BLAS products, other summation orders, other formulas).
"""

import json
import math
from fractions import Fraction
from functools import lru_cache

import mpmath
import numpy as np
import pytest

from verigrad.grading import (
    BugShape,
    Grade,
    Tolerances,
    ToleranceSource,
    Verdict,
    WrongReason,
    classic_check,
    grade,
    relative_difference,
    ulp,
)

DTYPES = [np.float32, np.float64]
DT_IDS = ["float32", "float64"]

# ---------------------------------------------------------------------------
# model zoo: exact truths, naive baselines, numpy candidates
# ---------------------------------------------------------------------------

DPS = 50


def mp_arr(a):
    """float array -> object array of exact mpf."""
    a = np.asarray(a)
    out = np.empty(a.shape, dtype=object)
    for i, x in np.ndenumerate(a):
        out[i] = mpmath.mpf(float(x))
    return out


def frac_to_mpf(fr):
    with mpmath.workprec(256):
        return mpmath.mpf(fr.numerator) / fr.denominator


def vmap(f, a):
    out = np.empty(a.shape, dtype=object)
    for i, x in np.ndenumerate(a):
        out[i] = f(x)
    return out


def naive_matmul(A, B):
    """A @ B by recursive summation over k, every operation rounded to the dtype."""
    dt = A.dtype
    acc = np.zeros((A.shape[0], B.shape[1]), dtype=dt)
    for k in range(A.shape[1]):
        acc = (acc + A[:, k:k + 1] * B[k:k + 1, :]).astype(dt)
    return acc


def naive_colsum(A):
    dt = A.dtype
    acc = np.zeros(A.shape[1], dtype=dt)
    for i in range(A.shape[0]):
        acc = (acc + A[i]).astype(dt)
    return acc


# ---------------- linear regression: L = (1/2n)||y - X b||^2 -----------------
def linreg_point(seed, dt, n=1000, d=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dt)
    y = (X.astype(float) @ rng.normal(size=d) + 0.5 * rng.normal(size=n)).astype(dt)
    b = rng.normal(size=d).astype(dt)
    return X, y, b


def linreg_truth(X, y, b):
    """g = -(1/n) X^T (y - X b), exactly (Fractions), as mpf."""
    n, d = X.shape
    Xf = [[Fraction(float(v)) for v in row] for row in X]
    bf = [Fraction(float(v)) for v in b]
    r = [Fraction(float(y[i])) - sum(Xf[i][j] * bf[j] for j in range(d)) for i in range(n)]
    g = [-sum(Xf[i][j] * r[i] for i in range(n)) / n for j in range(d)]
    return {"b": np.array([frac_to_mpf(x) for x in g], dtype=object)}


def linreg_baseline(X, y, b):
    dt = X.dtype
    r = (y[:, None] - naive_matmul(X, b[:, None])).astype(dt)
    return {"b": (-naive_matmul(X.T, r)[:, 0] / dt.type(X.shape[0])).astype(dt)}


def linreg_numpy(X, y, b):
    return {"b": -(X.T @ (y - X @ b)) / X.dtype.type(X.shape[0])}


def linreg_reversed(X, y, b):
    return linreg_baseline(X[::-1].copy(), y[::-1].copy(), b)


def linreg_mean(X, y, b):
    return {"b": -np.mean(X * (y - X @ b)[:, None], axis=0)}


# ---------------- logistic regression: L = mean BCE(sigmoid(X w), t) ----------
def logreg_point(seed, dt, n=200, d=20):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dt)
    t = (rng.random(n) < 0.5).astype(dt)
    w = (0.5 * rng.normal(size=d)).astype(dt)
    return X, t, w


def logreg_truth(X, t, w):
    with mpmath.workdps(DPS):
        Xm, tm, wm = mp_arr(X), mp_arr(t), mp_arr(w)
        z = Xm @ wm
        s = vmap(lambda u: 1 / (1 + mpmath.exp(-u)), z)
        g = Xm.T @ (s - tm) / X.shape[0]
    return {"w": g}


def logreg_baseline(X, t, w):
    dt = X.dtype
    z = naive_matmul(X, w[:, None])[:, 0]
    s = (dt.type(1) / (dt.type(1) + np.exp(-z))).astype(dt)
    return {"w": (naive_matmul(X.T, (s - t)[:, None])[:, 0] / dt.type(X.shape[0])).astype(dt)}


def logreg_numpy(X, t, w):
    dt = X.dtype
    z = X @ w
    s = (dt.type(0.5) * (dt.type(1) + np.tanh(z / dt.type(2)))).astype(dt)
    return {"w": X.T @ (s - t) / dt.type(X.shape[0])}


# ---------------- softmax cross-entropy: W (d, k), b (k,) ---------------------
def softmax_point(seed, dt, n=100, d=50, k=10):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dt)
    Y = np.eye(k, dtype=dt)[rng.integers(0, k, size=n)]
    W = (0.3 * rng.normal(size=(d, k))).astype(dt)
    b = (0.1 * rng.normal(size=k)).astype(dt)
    return X, Y, W, b


def softmax_truth(X, Y, W, b):
    n = X.shape[0]
    with mpmath.workdps(DPS):
        Xm, Ym = mp_arr(X), mp_arr(Y)
        Z = Xm @ mp_arr(W) + mp_arr(b)
        E = vmap(mpmath.exp, Z)
        P = E / E.sum(axis=1)[:, None]
        D = (P - Ym) / n
        return {"W": Xm.T @ D, "b": D.sum(axis=0)}


def softmax_baseline(X, Y, W, b):
    dt = X.dtype
    n = dt.type(X.shape[0])
    Z = (naive_matmul(X, W) + b).astype(dt)
    E = np.exp(Z)
    P = (E / naive_colsum(E.T)[:, None]).astype(dt)
    D = ((P - Y) / n).astype(dt)
    return {"W": naive_matmul(X.T, D), "b": naive_colsum(D)}


def softmax_numpy(X, Y, W, b):
    dt = X.dtype
    Z = X @ W + b
    Z = Z - Z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(Z).sum(axis=1, keepdims=True))
    P = np.exp(Z - lse)
    D = (P - Y) / dt.type(X.shape[0])
    return {"W": X.T @ D, "b": D.sum(axis=0)}


# ---------------- two-layer net: L = (1/2m)||act(X W1 + b1) W2 + b2 - Y||^2 -----
def net_point(seed, dt, m=32, d=8, h=16, k=4, dead=()):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, d)).astype(dt)
    Y = rng.normal(size=(m, k)).astype(dt)
    W1 = (rng.normal(size=(d, h)) / np.sqrt(d)).astype(dt)
    b1 = (0.1 * rng.normal(size=h)).astype(dt)
    b1[list(dead)] = -100.0  # dead ReLU units: exact zeros in the gradient
    W2 = (rng.normal(size=(h, k)) / np.sqrt(h)).astype(dt)
    b2 = (0.1 * rng.normal(size=k)).astype(dt)
    return X, Y, {"W1": W1, "b1": b1, "W2": W2, "b2": b2}


def net_truth(X, Y, P, act="relu"):
    m = X.shape[0]
    with mpmath.workdps(DPS):
        Xm, Ym = mp_arr(X), mp_arr(Y)
        W1, b1, W2, b2 = (mp_arr(P[k]) for k in ("W1", "b1", "W2", "b2"))
        Z = Xm @ W1 + b1
        if act == "relu":
            H = vmap(lambda u: u if u > 0 else mpmath.mpf(0), Z)
            dact = vmap(lambda u: mpmath.mpf(1) if u > 0 else mpmath.mpf(0), Z)
        else:
            H = vmap(mpmath.tanh, Z)
            dact = vmap(lambda u: 1 - mpmath.tanh(u) ** 2, Z)
        D2 = (H @ W2 + b2 - Ym) / m
        D1 = (D2 @ W2.T) * dact
        return {"W1": Xm.T @ D1, "b1": D1.sum(axis=0), "W2": H.T @ D2, "b2": D2.sum(axis=0)}


def _net_forward(X, P, act, mm):
    dt = X.dtype
    Z = (mm(X, P["W1"]) + P["b1"]).astype(dt)
    if act == "relu":
        H = np.maximum(Z, dt.type(0))
        dact = (Z > 0).astype(dt)
    else:
        H = np.tanh(Z)
        dact = (dt.type(1) - H * H).astype(dt)
    return Z, H, dact


def net_baseline(X, Y, P, act="relu"):
    dt = X.dtype
    m = dt.type(X.shape[0])
    _, H, dact = _net_forward(X, P, act, naive_matmul)
    D2 = (((naive_matmul(H, P["W2"]) + P["b2"]).astype(dt) - Y) / m).astype(dt)
    D1 = (naive_matmul(D2, P["W2"].T.copy()) * dact).astype(dt)
    return {"W1": naive_matmul(X.T.copy(), D1), "b1": naive_colsum(D1),
            "W2": naive_matmul(H.T.copy(), D2), "b2": naive_colsum(D2)}


def net_numpy(X, Y, P, act="relu", *, db1_scale=None):
    """Backprop as usually hand-written: per-sample deltas, mean at the end."""
    dt = X.dtype
    m = X.shape[0]
    _, H, dact = _net_forward(X, P, act, np.matmul)
    E = H @ P["W2"] + P["b2"] - Y
    D1 = (E @ P["W2"].T) * dact
    s = dt.type(1) / dt.type(m)
    g = {"W1": (X.T @ D1) * s, "b1": D1.sum(axis=0) * s,
         "W2": (H.T @ E) * s, "b2": E.sum(axis=0) * s}
    if db1_scale is not None:
        g["b1"] = D1.sum(axis=0) * dt.type(db1_scale)
    return g


# ---------------------------------------------------------------------------
# cached problems
# ---------------------------------------------------------------------------


@lru_cache(maxsize=None)
def linreg(seed, dtn):
    X, y, b = linreg_point(seed, np.dtype(dtn))
    return (X, y, b), linreg_truth(X, y, b), linreg_baseline(X, y, b)


@lru_cache(maxsize=None)
def logreg(seed, dtn):
    X, t, w = logreg_point(seed, np.dtype(dtn))
    return (X, t, w), logreg_truth(X, t, w), logreg_baseline(X, t, w)


@lru_cache(maxsize=None)
def softmax(seed, dtn):
    X, Y, W, b = softmax_point(seed, np.dtype(dtn))
    return (X, Y, W, b), softmax_truth(X, Y, W, b), softmax_baseline(X, Y, W, b)


@lru_cache(maxsize=None)
def net(seed, dtn, act="relu", m=32, d=8, h=16, k=4, dead=()):
    X, Y, P = net_point(seed, np.dtype(dtn), m=m, d=d, h=h, k=k, dead=dead)
    return (X, Y, P), net_truth(X, Y, P, act), net_baseline(X, Y, P, act)


def run(problem, value, dt, case="case", candidate="cand", **kw):
    _, truth, base = problem
    return grade(truth=truth, value=value, baseline=base, dtype=dt, case=case,
                 candidate=candidate, **kw)


def mpv(*xs):
    """1-D object array of mpf (exact for floats)."""
    return np.array([x if isinstance(x, mpmath.mpf) else mpmath.mpf(x) for x in xs],
                    dtype=object)


def one(truth, value, baseline=None, dt=np.float64, **kw):
    """Grade a single variable 'w' given as lists."""
    t = mpv(*truth)
    b = np.array([float(x) for x in truth] if baseline is None else baseline, dtype=dt)
    return grade(truth={"w": t}, value={"w": np.asarray(value)}, baseline={"w": b},
                 dtype=dt, case="c", candidate="x", **kw)


# ---------------------------------------------------------------------------
# 1. correct candidates pass, in both dtypes
# ---------------------------------------------------------------------------

CORRECT = [
    ("linreg numpy", linreg, linreg_numpy),
    ("linreg reversed-order sum", linreg, linreg_reversed),
    ("linreg np.mean", linreg, linreg_mean),
    ("logreg tanh-sigmoid", logreg, logreg_numpy),
    ("softmax logsumexp", softmax, softmax_numpy),
]


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("label, problem, cand", CORRECT, ids=[c[0] for c in CORRECT])
def test_correct_candidates_pass(label, problem, cand, seed, dt):
    prob = problem(seed, np.dtype(dt).name)
    g = run(prob, cand(*prob[0]), dt)
    assert g.verdict is Verdict.PASS, g.messages(max_entries=5)
    assert g.wrong == () and g.diagnosis == () and not g.dtype_mismatch
    assert g.returned_dtype == np.dtype(dt).name
    for vg in g.variables:
        # real margin, not a near miss: at least 4x below the tolerance
        assert vg.errors.max_abs <= vg.tolerance / 4
    limit = 1e-4 if dt is np.float32 else 1e-12
    assert 0 < g.errors.normwise_relative < limit
    assert 0 <= g.errors.symmetric <= g.errors.normwise_relative


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correct_backprop_passes(seed, act, dt):
    prob = net(seed, np.dtype(dt).name, act, dead=(1, 5))
    g = run(prob, net_numpy(*prob[0], act), dt, case="net")
    assert g.verdict is Verdict.PASS, g.messages(max_entries=5)
    assert [v.variable for v in g.variables] == ["W1", "b1", "W2", "b2"]
    assert all(v.errors.max_abs <= v.tolerance / 4 for v in g.variables)


def test_pass_reason_and_metrics_are_reported():
    prob = linreg(0, "float32")
    g = run(prob, linreg_numpy(*prob[0]), np.float32, case="linreg")
    assert g.reason.startswith("all 5 entries within tolerance (max ")
    assert g.messages() == []
    vg = g.variable("b")
    assert vg.n_entries == 5 and vg.n_wrong == 0 and vg.diagnosis is None
    assert vg.baseline.max_ulps > 0 and vg.errors.max_ulps > 0
    assert vg.tolerance_source in (ToleranceSource.BASELINE, ToleranceSource.FLOOR)
    # the tolerance is derived from the baseline: factor x its worst error, or the floor
    floor = 32 * 4 * float(ulp(g.scale, np.float32))
    assert vg.tolerance == pytest.approx(max(32 * vg.baseline.max_abs, floor), rel=1e-12)


# ---------------------------------------------------------------------------
# 2. bugs fail, and their shape is recognised
# ---------------------------------------------------------------------------


def _scale(var, c):
    def bug(vals):
        vals = dict(vals)
        vals[var] = vals[var] * vals[var].dtype.type(c)
        return vals
    return bug


def _swap(a, b):
    def bug(vals):
        vals = dict(vals)
        vals[a], vals[b] = vals[b], vals[a]
        return vals
    return bug


def _transpose(var):
    def bug(vals):
        return {**vals, var: vals[var].T.copy()}
    return bug


def _zero(var):
    def bug(vals):
        return {**vals, var: np.zeros_like(vals[var])}
    return bug


NET = dict(m=32, d=8, h=16, k=4)
SQUARE = dict(m=5, d=4, h=4, k=4)

# label, problem kwargs, candidate-with-bug, variable, shape, factor, factor_text, other
BUGS = [
    ("W2 doubled", NET, lambda p: _scale("W2", 2)(net_numpy(*p)), "W2",
     BugShape.SCALED, 2.0, "2", None),
    ("W1 halved", NET, lambda p: _scale("W1", 0.5)(net_numpy(*p)), "W1",
     BugShape.SCALED, 0.5, "1/2", None),
    ("b2 sign flipped", NET, lambda p: _scale("b2", -1)(net_numpy(*p)), "b2",
     BugShape.SIGN_FLIP, -1.0, "-1", None),
    ("db1 with 4/m instead of 1/m, m=3", dict(NET, m=3),
     lambda p: net_numpy(*p, db1_scale=4 / 3), "b1", BugShape.SCALED, 4.0, "4", None),
    ("db1 with 1/(m-1) instead of 1/m, m=4", dict(NET, m=4),
     lambda p: net_numpy(*p, db1_scale=1 / 3), "b1", BugShape.SCALED, 4 / 3, "4/3", None),
    ("W1 transposed", SQUARE, lambda p: _transpose("W1")(net_numpy(*p)), "W1",
     BugShape.TRANSPOSED, None, None, None),
    ("W1 and W2 swapped", SQUARE, lambda p: _swap("W1", "W2")(net_numpy(*p)), "W1",
     BugShape.SWAPPED, None, None, "W2"),
    ("b1 and b2 swapped", SQUARE, lambda p: _swap("b1", "b2")(net_numpy(*p)), "b2",
     BugShape.SWAPPED, None, None, "b1"),
    ("W1 zero", NET, lambda p: _zero("W1")(net_numpy(*p)), "W1",
     BugShape.ZERO, 0.0, "0", None),
]


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("label, kw, bug, var, shape, factor, text, other", BUGS,
                         ids=[b[0] for b in BUGS])
def test_net_bugs_are_recognised(label, kw, bug, var, shape, factor, text, other, dt):
    prob = net(0, np.dtype(dt).name, **kw)
    g = run(prob, bug(prob[0]), dt, case="net")
    assert g.verdict is Verdict.FAIL
    diag = {d.variable: d for d in g.diagnosis}
    d = diag[var]
    assert d.shape is shape, d.message
    if factor is None:
        assert d.factor is None
    else:
        assert d.factor == pytest.approx(factor, rel=1e-15)
    assert d.factor_text == text and d.other == other
    assert d.message.startswith(f"net › {var} › {np.dtype(dt).name}: ")
    assert g.variable(var).verdict is Verdict.FAIL and g.variable(var).diagnosis == d
    assert all(w.variable in diag for w in g.wrong)  # no collateral false alarms


def test_swap_is_reported_on_both_sides():
    prob = net(0, "float64", **SQUARE)
    g = run(prob, _swap("W1", "W2")(net_numpy(*prob[0])), np.float64, case="net")
    assert [(d.variable, d.shape, d.other) for d in g.diagnosis] == [
        ("W1", BugShape.SWAPPED, "W2"), ("W2", BugShape.SWAPPED, "W1")]
    assert "W1 (swapped with W2), W2 (swapped with W1)" in g.reason


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("label, cand, factor, text", [
    ("sum instead of mean", lambda X, y, b: {"b": -(X.T @ (y - X @ b))}, 1000.0, "1000"),
    ("divided by n twice", lambda X, y, b: {"b": linreg_numpy(X, y, b)["b"]
                                            / X.dtype.type(1000)}, 1e-3, "1/1000"),
])
def test_linreg_factor_n(label, cand, factor, text, dt):
    prob = linreg(0, np.dtype(dt).name)
    g = run(prob, cand(*prob[0]), dt, case="linreg")
    (d,) = g.diagnosis
    assert (d.shape, d.factor_text) == (BugShape.SCALED, text)
    assert d.factor == pytest.approx(factor, rel=1e-15)
    assert len(g.wrong) == 5


def test_factor_not_a_simple_fraction_is_reported_as_least_squares():
    prob = softmax(0, "float64")
    vals = softmax_numpy(*prob[0])
    vals["W"] = vals["W"] * 1.0374
    g = run(prob, vals, np.float64)
    (d,) = g.diagnosis
    assert d.shape is BugShape.SCALED and d.factor_text is None
    assert d.factor == pytest.approx(1.0374, rel=1e-12)
    assert "scaled by 1.037 (least squares; not a simple fraction" in d.message


@pytest.mark.parametrize("got, shape, text", [
    (2 * 0.3, BugShape.SCALED, "2"),
    (-0.3, BugShape.SIGN_FLIP, "-1"),
    (0.3 * 1.0374, BugShape.SCATTERED, None),  # one entry: only a simple factor is named
])
def test_scalar_variable(got, shape, text):
    with mpmath.workprec(200):
        t = mpmath.mpf(3) / 10
    g = grade(truth={"w": mpv(0.5, -1.0), "b": np.array(t, dtype=object)},
              value={"w": np.array([0.5, -1.0]), "b": got},
              baseline={"w": np.array([0.5, -1.0]), "b": np.float64(0.3)},
              dtype=np.float64, case="c", candidate="x")
    (w,) = g.wrong
    assert (w.variable, w.index, w.truth) == ("b", (), "0.3")  # 3/10, not fl(0.3)
    (d,) = g.diagnosis
    assert (d.variable, d.shape, d.factor_text) == ("b", shape, text)
    assert d.message.startswith("c › b › float64: ")
    assert g.messages()[-1].startswith("c › b › float64: rel err ")


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_block_one_row_scaled(dt):
    prob = net(0, np.dtype(dt).name, **NET)
    vals = net_numpy(*prob[0])
    vals["W2"] = vals["W2"].copy()
    vals["W2"][2] *= 2
    g = run(prob, vals, dt, case="net")
    (d,) = g.diagnosis
    assert (d.variable, d.shape, d.rows, d.cols, d.region) == (
        "W2", BugShape.BLOCK, "2", ":", "W2[2, :]")
    assert (d.factor, d.factor_text) == (2.0, "2")
    assert d.message.startswith(f"net › W2[2, :] › {np.dtype(dt).name}: scaled by 2 (truth ")
    assert sorted(w.index for w in g.wrong) == [(2, j) for j in range(4)]


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_block_column_sign_flipped_and_vector_range(dt):
    prob = softmax(0, np.dtype(dt).name)
    vals = softmax_numpy(*prob[0])
    vals["W"] = vals["W"].copy()
    vals["W"][:, 3] *= -1
    vals["b"] = vals["b"].copy()
    vals["b"][2:5] *= 3
    g = run(prob, vals, dt, case="softmax")
    dw, db = g.diagnosis
    assert (dw.shape, dw.rows, dw.cols, dw.region, dw.factor) == (
        BugShape.BLOCK, ":", "3", "W[:, 3]", -1.0)
    assert "sign flipped" in dw.message
    assert (db.shape, db.rows, db.cols, db.region, db.factor_text) == (
        BugShape.BLOCK, "2:5", None, "b[2:5]", "3")
    assert len([w for w in g.wrong if w.variable == "W"]) == 50


def test_block_unscaled_and_non_contiguous_rows():
    prob = net(0, "float64", **NET)
    vals = net_numpy(*prob[0])
    W2 = vals["W2"].copy()
    W2[[1, 3, 7]] += np.arange(12).reshape(3, 4) * 0.01 + 0.3  # no common factor
    g = run(prob, {**vals, "W2": W2}, np.float64, case="net")
    (d,) = g.diagnosis
    assert (d.shape, d.rows, d.cols, d.region, d.factor) == (
        BugShape.BLOCK, "{1, 3, 7}", ":", "W2[{1, 3, 7}, :]", None)
    assert "12 wrong entries, all in this block" in d.message


def test_scattered_entries():
    prob = softmax(1, "float64")
    vals = softmax_numpy(*prob[0])
    W = vals["W"].copy()
    for (i, j), e in zip([(0, 0), (13, 7), (41, 2), (49, 9)], [0.1, -0.2, 0.05, 0.3]):
        W[i, j] += e
    g = run(prob, {**vals, "W": W}, np.float64, case="softmax")
    (d,) = g.diagnosis
    assert d.shape is BugShape.SCATTERED and d.region is None
    assert "4 of 500 entries wrong, no recognised pattern (worst W[49, 9]" in d.message
    assert [w.index for w in g.wrong] == [(0, 0), (13, 7), (41, 2), (49, 9)]


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_single_wrong_entry_is_listed_with_its_index(dt):
    prob = softmax(2, np.dtype(dt).name)
    truth = prob[1]["W"]
    i, j = np.unravel_index(int(np.argmax(np.abs(truth.astype(float)))), truth.shape)
    vals = softmax_numpy(*prob[0])
    W = vals["W"].astype(np.float64)  # not rounded back: the bug is exactly 1e-3
    W[i, j] = float(truth[i, j]) * (1 + 1e-3)
    g = run(prob, {**vals, "W": W.astype(dt)}, dt, case="softmax")
    assert g.verdict is Verdict.FAIL
    (w,) = g.wrong
    assert (w.variable, w.index, w.reason) == ("W", (int(i), int(j)), WrongReason.TOLERANCE)
    assert w.rel_error == pytest.approx(1e-3, rel=1e-3)
    assert w.truth == mpmath.nstr(truth[i, j], 17)
    (d,) = g.diagnosis
    assert (d.shape, d.region, d.factor) == (BugShape.BLOCK, f"W[{i}, {j}]", None)


def test_small_relative_error_everywhere_fails_in_float64():
    prob = logreg(0, "float64")
    vals = logreg_numpy(*prob[0])
    g = run(prob, {"w": vals["w"] * (1 + 1e-9)}, np.float64)
    assert g.verdict is Verdict.FAIL
    assert g.errors.normwise_relative == pytest.approx(1e-9, rel=1e-3)


def test_all_wrong_entries_are_listed():
    prob = softmax(0, "float32")
    vals = softmax_numpy(*prob[0])
    g = run(prob, {**vals, "W": vals["W"] * np.float32(2)}, np.float32)
    assert len(g.wrong) == 500 == g.variable("W").n_wrong
    assert len({w.index for w in g.wrong}) == 500
    assert len(g.messages()) == 1 + 500
    short = g.messages(max_entries=3)
    assert len(short) == 1 + 3 + 1 and short[-1] == "… and 497 more wrong entries"


# ---------------------------------------------------------------------------
# 3. exact zeros and tiny entries
# ---------------------------------------------------------------------------


def test_dead_relu_exact_zeros():
    prob = net(0, "float64", dead=(1, 5))
    truth = prob[1]
    assert all(x == 0 for x in truth["W1"][:, 1]) and truth["b1"][5] == 0
    vals = net_numpy(*prob[0])
    assert run(prob, vals, np.float64).passed

    W1 = vals["W1"].copy()
    W1[:, [1, 5]] = 1e-20  # noise at the exact zeros, far below the floor
    g = run(prob, {**vals, "W1": W1}, np.float64)
    assert g.verdict is Verdict.PASS
    # judged against the gradient's scale: 1e-20 is far below 32 x 4 ulps of it
    assert g.variable("W1").tolerance >= 128 * float(ulp(g.scale, np.float64)) > 1e-20

    W1[:, [1, 5]] = 1e-3
    g = run(prob, {**vals, "W1": W1}, np.float64, case="net")
    (d,) = g.diagnosis
    assert (d.shape, d.region, d.factor) == (BugShape.BLOCK, "W1[:, {1, 5}]", None)
    assert all(w.truth == "0.0" and w.value == 1e-3 for w in g.wrong)
    assert g.wrong[0].rel_error == pytest.approx(1e-3 / g.variable("W1").scale)
    assert "abs err 1.0e-03 > tol" in g.messages()[1]


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("got, verdict", [
    (0.0, Verdict.FAIL),          # rounded to zero
    (-1e-30, Verdict.FAIL),       # wrong sign
    (1e-28, Verdict.FAIL),        # off by 100x
    (0.2e-30, Verdict.FAIL),      # off by 5x
    (1.2e-30, Verdict.PASS),      # within the relative guard (50 %)
])
def test_tiny_nonzero_truth_is_judged_relatively(got, verdict, dt):
    tiny = float(dt(1e-30))
    g = one([0.75, tiny, -0.5], np.array([0.75, got, -0.5], dtype=dt), dt=dt)
    assert g.verdict is verdict
    if verdict is Verdict.FAIL:
        (w,) = g.wrong
        assert (w.index, w.reason) == ((1,), WrongReason.RELATIVE)
        assert w.abs_error < w.tolerance  # invisible to an absolute tolerance
        assert "on a nonzero entry the float baseline gets within 8 ulps" in g.messages()[-1]


def test_tiny_entry_the_baseline_also_loses_is_not_blamed():
    # the baseline returns 0 for the tiny entry too: zero is as good as dtype allows
    g = one([0.75, 1e-30, -0.5], [0.75, 0.0, -0.5], baseline=[0.75, 0.0, -0.5])
    assert g.verdict is Verdict.PASS


def test_subnormal_truth_flushed_to_zero_is_not_blamed():
    t = mpmath.ldexp(3, -151)  # below float32's smallest subnormal spacing
    g = grade(truth={"w": mpv(1.0, t)}, value={"w": np.array([1.0, 0.0], np.float32)},
              baseline={"w": np.array([1.0, 0.0], np.float32)}, dtype=np.float32,
              case="c", candidate="x")
    assert g.verdict is Verdict.PASS


def test_all_zero_gradient():
    z = mpv(0, 0)
    g = grade(truth={"w": z}, value={"w": np.zeros(2)}, baseline={"w": np.zeros(2)},
              dtype=np.float64, case="c", candidate="x")
    assert g.verdict is Verdict.PASS
    assert (g.errors.normwise_relative, g.errors.symmetric, g.errors.max_rel) == (0, 0, 0)
    g = grade(truth={"w": z}, value={"w": np.array([0.0, 1e-3])},
              baseline={"w": np.zeros(2)}, dtype=np.float64, case="c", candidate="x")
    assert g.verdict is Verdict.FAIL
    # norm-wise relative falls back to the absolute norm; relative error is inf
    assert g.errors.normwise_relative == 1e-3 and g.errors.symmetric == 1.0
    assert g.wrong[0].rel_error == math.inf


# ---------------------------------------------------------------------------
# 4. non-finite values, dtype mismatch, errors
# ---------------------------------------------------------------------------


def test_nonfinite_values_are_named():
    prob = net(0, "float32", **NET)
    vals = {k: v.copy() for k, v in net_numpy(*prob[0]).items()}
    vals["W1"][0, 1] = np.nan
    vals["b2"][2] = np.inf
    vals["W2"] *= 2  # also wrong, but non-finite values take precedence
    g = run(prob, vals, np.float32, case="net")
    assert g.verdict is Verdict.NONFINITE
    bad = [(w.variable, w.index) for w in g.wrong if w.reason is WrongReason.NONFINITE]
    assert bad == [("W1", (0, 1)), ("b2", (2,))]
    assert g.reason == "non-finite values at 2 of 212 entries: W1[0, 1]=nan, b2[2]=inf"
    assert g.variable("W1").verdict is Verdict.NONFINITE
    assert g.variable("W2").verdict is Verdict.FAIL
    assert g.variable("W1").diagnosis.shape is BugShape.UNKNOWN
    assert g.errors.normwise_relative == math.inf and math.isnan(g.errors.symmetric)
    d = g.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["verdict"] == "nonfinite" and d["wrong"][0]["value"] == "nan"


def test_float64_returned_for_float32_is_reported_and_graded_unrounded():
    prob = net(0, "float32", **NET)
    (X, Y, P) = prob[0]
    up = net_numpy(X.astype(np.float64), Y.astype(np.float64),
                   {k: v.astype(np.float64) for k, v in P.items()})
    g = run(prob, up, np.float32, case="net", candidate="upcast")
    # correct, but float32 never ran: a verdict of its own, not a pass
    assert g.verdict is Verdict.NOT_EXERCISED and not g.passed
    assert g.reason.startswith("float32 not exercised: returned W1 as float64, b1 as float64, "
                               "W2 as float64, b2 as float64 for float32 inputs; all ")
    assert g.to_dict()["verdict"] == "not exercised"
    assert g.dtype_mismatch and g.returned_dtype == "float64" and g.dtype == "float32"
    assert g.warnings == ("net › upcast › float32: dtype mismatch, returned W1 as float64, "
                          "b1 as float64, W2 as float64, b2 as float64 for float32 inputs "
                          "(float32 not exercised; graded as returned)",)
    assert g.messages() == list(g.warnings)
    # a float64 value is graded as returned, not rounded to float32 first
    b2 = up["b2"].copy()
    b2[0] = float(prob[1]["b2"][0]) + 1e-3 + 2.0**-40
    g = run(prob, {**up, "b2": b2}, np.float32)
    assert g.verdict is Verdict.FAIL  # a wrong upcast gradient fails as any other
    (w,) = g.wrong
    assert w.value == b2[0] and w.value != float(np.float32(b2[0]))


def test_mixed_returned_dtypes():
    g = grade(truth={"a": mpv(1.0), "b": mpv(2.0)},
              value={"a": np.array([1.0], np.float32), "b": np.array([2.0])},
              baseline={"a": np.array([1.0], np.float32), "b": np.array([2.0], np.float32)},
              dtype=np.float32, case="c", candidate="x")
    assert g.verdict is Verdict.NOT_EXERCISED and g.dtype_mismatch  # b came back as float64
    assert g.reason.startswith("float32 not exercised: returned b as float64 for float32 inputs")
    assert g.returned_dtype == "mixed(float32,float64)"
    assert [v.returned_dtype for v in g.variables] == ["float32", "float64"]


@pytest.mark.parametrize("value, message", [
    ({"w": np.zeros((3, 2))}, "w: expected shape (2, 3), got (3, 2)"),
    ({"w": np.zeros(6)}, "w: expected shape (2, 3), got (6,)"),
    ({}, "w: missing from the returned gradient"),
    ({"w": np.zeros((2, 3)), "v": np.zeros(1)},
     "unexpected variable 'v' returned; expected variables: w"),
    ({"w": np.zeros((2, 3), complex)}, "w: dtype complex128 is complex; a real gradient"),
    ({"w": np.zeros((2, 3), bool)}, "w: dtype bool is not a gradient"),
    ({"w": np.full((2, 3), "a")}, "w: dtype <U1 is not numeric"),
    ({"w": np.array([[1, 2, "x"], [1, 2, 3]], dtype=object)}, "w: entry 2 is str"),
    ([np.zeros((2, 3))], "the candidate returned list, expected a mapping"),
])
def test_ungradable_returns_are_errors(value, message):
    t = np.array([[mpmath.mpf(i) for i in range(3)] for _ in range(2)], dtype=object)
    g = grade(truth={"w": t}, value=value, baseline={"w": np.zeros((2, 3))},
              dtype=np.float64, case="c", candidate="x")
    assert g.verdict is Verdict.ERROR
    assert message in g.reason
    assert math.isnan(g.errors.normwise_relative) and math.isnan(g.errors.max_ulps)
    assert any(m.startswith("c › x › float64: ") for m in g.messages())
    json.dumps(g.to_dict(), allow_nan=False)


def test_error_in_one_variable_still_grades_the_others():
    g = grade(truth={"a": mpv(1.0), "b": mpv(2.0, 3.0)},
              value={"a": np.array([2.0]), "b": np.array([2.0])},
              baseline={"a": np.array([1.0]), "b": np.array([2.0, 3.0])},
              dtype=np.float64, case="c", candidate="x")
    assert g.verdict is Verdict.ERROR and g.reason == "b: expected shape (2,), got (1,)"
    assert [v.verdict for v in g.variables] == [Verdict.FAIL, Verdict.ERROR]
    assert g.variable("a").diagnosis.shape is BugShape.SCALED


@pytest.mark.parametrize("value, returned", [
    (np.array([1, 2]), "int64"),
    (np.array([1.0, 2.0], np.float16), "float16"),
    (np.array([mpmath.mpf(1), 2.0], dtype=object), "object"),
    (np.array([1.0, 2.0], np.longdouble), np.dtype(np.longdouble).name),
])
def test_other_real_dtypes_are_graded_exactly(value, returned):
    g = one([1.0, 2.0], value)
    # a wider float (long double for float64) means the dtype under test never ran
    wider = value.dtype.kind == "f" and np.finfo(value.dtype).nmant > 52
    assert g.verdict is (Verdict.NOT_EXERCISED if wider else Verdict.PASS) and g.returned_dtype == returned
    assert g.dtype_mismatch and g.errors.max_abs == 0.0


# ---------------------------------------------------------------------------
# 5. exact metrics
# ---------------------------------------------------------------------------

with mpmath.workprec(300):
    TENTH = mpmath.mpf(1) / 10
    MINUS_TENTH = -TENTH  # negation rounds to the ambient precision: keep it scoped
    ONE_PLUS_HALF_ULP = mpmath.mpf(1) + mpmath.ldexp(1, -53)


@pytest.mark.parametrize("dt, truth, value, ulps", [
    (np.float64, 0.75, np.nextafter(0.75, 1.0), 1.0),
    (np.float64, 0.75, np.nextafter(0.75, 0.0), 1.0),
    (np.float64, 1.0, np.nextafter(1.0, 0.0), 0.5),   # spacing above at a power of 2
    (np.float64, ONE_PLUS_HALF_ULP, 1.0, 0.5),        # truth halfway: not representable
    (np.float64, ONE_PLUS_HALF_ULP, 1.0 + 2.0**-52, 0.5),
    (np.float64, TENTH, 0.1, 0.4),                    # |fl(0.1) - 1/10| = 2^-55 / 5
    (np.float64, MINUS_TENTH, -0.1, 0.4),
    (np.float64, 3 * 2.0**-1074, 4 * 2.0**-1074, 1.0),  # subnormals
    (np.float32, TENTH, np.float32(0.1), 0.2),        # |fl32(0.1) - 1/10| = 2^-27 / 5
    (np.float32, 0.75, np.nextafter(np.float32(0.75), np.float32(1)), 1.0),
    (np.float32, 0.75, 0.75 + 2.0**-30, 2.0**-6),     # float64 value under float32
    (np.float32, 3 * 2.0**-149, 0.0, 3.0),            # float32 subnormal spacing
])
def test_ulps_are_exact(dt, truth, value, ulps):
    t = truth if isinstance(truth, mpmath.mpf) else mpmath.mpf(truth)
    g = grade(truth={"w": np.array(t, dtype=object)}, value={"w": np.array(value)},
              baseline={"w": np.array(value, dtype=dt)}, dtype=dt, case="c", candidate="x")
    assert g.variable("w").errors.max_ulps == ulps


def test_errors_are_not_polluted_by_rounding_the_truth():
    g = one([TENTH], [0.1])
    vg = g.variable("w")
    assert vg.errors.max_abs == 2.0**-55 / 5      # correctly rounded exact error
    assert vg.errors.max_rel == 2.0**-54          # (2^-55/5) / (1/10), exactly
    assert vg.errors.max_ulps == 0.4
    assert vg.errors.normwise_relative == 2.0**-54
    assert vg.errors.symmetric == pytest.approx(2.0**-55, rel=1e-15)


def test_zero_truth_entries_measured_at_the_variable_scale():
    g = one([0.0, 1.0], [2.0**-60, 1.0])
    vg = g.variable("w")
    assert vg.errors.max_ulps == 2.0**-8 and vg.errors.max_rel == 2.0**-60


def test_overall_norms_concatenate_variables():
    g = grade(truth={"a": mpv(3.0), "b": mpv(4.0)}, value={"a": np.array([3.0]),
              "b": np.array([4.0 + 2.0**-40])},
              baseline={"a": np.array([3.0]), "b": np.array([4.0])},
              dtype=np.float64, case="c", candidate="x")
    assert g.errors.normwise_relative == 2.0**-40 / 5
    assert g.variable("b").errors.normwise_relative == 2.0**-42
    assert g.errors.symmetric == pytest.approx(2.0**-40 / (5 + math.hypot(3, 4 + 2.0**-40)))


@pytest.mark.parametrize("x, dt, expected", [
    (1.0, np.float64, mpmath.ldexp(1, -52)),
    (0.75, np.float64, mpmath.ldexp(1, -53)),
    (0.0, np.float64, mpmath.ldexp(1, -1074)),
    (2.0**-1030, np.float64, mpmath.ldexp(1, -1074)),
    (1.0, np.float32, mpmath.ldexp(1, -23)),
    (-3.0, np.float32, mpmath.ldexp(1, -22)),
    (TENTH, np.float32, mpmath.ldexp(1, -27)),
    (0.0, np.float32, mpmath.ldexp(1, -149)),
])
def test_ulp(x, dt, expected):
    assert ulp(x, dt) == expected


# ---------------------------------------------------------------------------
# 6. tolerance rule details
# ---------------------------------------------------------------------------


def test_float32_tolerance_is_derived_from_the_baseline():
    prob = softmax(0, "float32")
    vg = run(prob, softmax_numpy(*prob[0]), np.float32).variable("W")
    # no magic constant: 32 x the baseline's worst error (or the 4-ulp floor)
    assert vg.tolerance == pytest.approx(max(32 * vg.baseline.max_abs,
                                             128 * float(ulp(vg.scale, np.float32))))
    assert vg.tolerance / vg.scale < 1e-4


def test_factor_loosens_the_tolerance():
    # exact baseline: the floor binds, factor * 4 ulps of S = 2 (ulp 2^-51)
    g = one([1.0, 2.0], [1.0, 2.0 + 2.0**-42], tolerances=Tolerances(factor=32))
    assert g.verdict is Verdict.FAIL and g.variable("w").tolerance == 2.0**-44
    g = one([1.0, 2.0], [1.0, 2.0 + 2.0**-42], tolerances=Tolerances(factor=1024))
    assert g.variable("w").tolerance == 2.0**-39
    assert g.verdict is Verdict.PASS


def test_poor_baseline_is_capped_and_warned():
    # the baseline is 30 % off: 32 x its error (9.6) would let anything through; the cap holds the
    # tolerance at half the scale (1.0), and an error beyond the noise 9.6 fails
    g = one([1.0, -2.0], [1.0 + 12.0, -2.0], baseline=[1.3, -2.0])
    vg = g.variable("w")
    assert vg.tolerance_source is ToleranceSource.CAP and vg.tolerance == 1.0
    assert g.verdict is Verdict.FAIL and [w.index for w in g.wrong] == [(0,)]
    assert "the float baseline is poor" in g.warnings[0]


def test_sign_flip_within_a_poor_baselines_noise_is_unresolved():
    # errors 2 and 4: beyond the capped tolerance 1.0, within the noise 32 x 0.3 = 9.6 that the
    # baseline shows: a correct evaluation could be as far off, so neither pass nor fail
    g = one([1.0, -2.0], [-1.0, 2.0], baseline=[1.3, -2.0])
    vg = g.variable("w")
    assert vg.tolerance_source is ToleranceSource.CAP and vg.tolerance == 1.0
    assert g.verdict is Verdict.UNRESOLVED and vg.verdict is Verdict.UNRESOLVED and not g.wrong
    assert "w: 2 of 2 entries off by more than the tolerance" in g.reason
    assert "noise 9.6" in g.reason


def test_nonfinite_baseline_gives_no_allowance():
    g = one([1.0, 2.0], [1.0 + 2.0**-40, 2.0], baseline=[np.inf, 2.0])
    assert g.verdict is Verdict.FAIL
    assert g.variable("w").tolerance_source is ToleranceSource.FLOOR
    assert "float baseline is not finite at 1 entry (first w[0]; 1 inf, 0 nan" in g.warnings[0]
    assert g.baseline.max_abs == math.inf


# ---------------------------------------------------------------------------
# 7. messages and JSON
# ---------------------------------------------------------------------------


def test_messages_are_pinned():
    t = np.array([[mpmath.mpf(x) for x in row] for row in
                  [[0.5, -0.25, 0.125, 1.0], [0.375, 0.75, -1.5, 0.0625]]], dtype=object)
    base = {"W2": t.astype(float)}
    v = t.astype(float)
    v[1] *= 2
    g = grade(truth={"W2": t}, value={"W2": v}, baseline=base, dtype=np.float64,
              case="net", candidate="hand")
    assert g.messages(max_entries=1) == [
        "net › W2[1, :] › float64: scaled by 2 (truth -1.5, got -3)",
        "net › W2[1, 0] › float64: rel err 1.0e+00 > tol 7.6e-14 (truth 0.375, got 0.75)",
        "… and 3 more wrong entries",
    ]
    assert g.reason == "4 of 8 entries wrong in 1 variable: W2 (block W2[1, :])"

    with mpmath.workdps(30):
        s = 1 / (1 + mpmath.exp(-1))
    w = np.array([mpmath.mpf(0.1), mpmath.mpf(-0.2), mpmath.mpf(0.3), s], dtype=object)
    b32 = w.astype(float).astype(np.float32)
    got = b32.copy()
    got[3] = 0.762
    g = grade(truth={"w": w}, value={"w": got}, baseline={"w": b32}, dtype=np.float32,
              case="logreg", candidate="hand")
    assert g.messages()[-1] == ("logreg › w[3] › float32: rel err 4.2e-02 > tol 1.0e-05 "
                                "(truth 0.7310585786, got 0.762)")


def test_to_dict_shape():
    prob = net(0, "float64", **NET)
    g = run(prob, _scale("W2", 2)(net_numpy(*prob[0])), np.float64, case="net",
            candidate="hand")
    d = g.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text) == d
    assert {"case", "candidate", "dtype", "verdict", "errors", "wrong", "diagnosis"} <= set(d)
    assert (d["case"], d["candidate"], d["dtype"], d["verdict"]) == (
        "net", "hand", "float64", "fail")
    assert set(d["errors"]) >= {"normwise_relative", "symmetric", "max_ulps"}
    assert d["errors"]["normwise_relative"] == g.errors.normwise_relative
    w0 = d["wrong"][0]
    assert (w0["variable"], w0["index"], w0["reason"]) == ("W2", [0, 0], "tolerance")
    assert isinstance(w0["truth"], str) and isinstance(w0["value"], float)
    assert d["diagnosis"] == [{
        "variable": "W2", "shape": "scaled", "factor": 2.0, "factor_text": "2",
        "rows": None, "cols": None, "region": None, "other": None,
        "message": g.diagnosis[0].message}]
    assert [v["variable"] for v in d["variables"]] == ["W1", "b1", "W2", "b2"]


def test_grade_is_frozen():
    g = one([1.0], [1.0])
    with pytest.raises(AttributeError):
        g.verdict = Verdict.FAIL  # type: ignore[misc]
    assert isinstance(g, Grade)


# ---------------------------------------------------------------------------
# 8. validation of the caller's inputs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(factor=0.5), ValueError, r"Tolerances\(factor=0.5\): factor must be a finite "
                                   r"number >= 1 .*; e\.g\. factor=32"),
    (dict(factor=math.inf), ValueError, r"Tolerances\(factor=inf\)"),
    (dict(floor_ulps=-1), ValueError, r"Tolerances\(floor_ulps=-1\): floor_ulps must be "
                                      r"a finite number >= 0; e\.g\. floor_ulps=4"),
    (dict(cap=0), ValueError, r"Tolerances\(cap=0\): cap must be a number in \(0, 1\]"),
    (dict(guard_relative=2), ValueError, r"guard_relative must be a number in \(0, 1\]"),
    (dict(guard_ulps=math.nan), ValueError, r"Tolerances\(guard_ulps=nan\)"),
    (dict(factor="32"), TypeError, r"Tolerances\(factor='32'\): factor must be a number, "
                                   r"got str; e\.g\. factor=32"),
])
def test_invalid_tolerances(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Tolerances(**kwargs)


def test_tolerances_normalised_to_float():
    t = Tolerances(factor=64, floor_ulps=np.int64(2))
    assert (t.factor, t.floor_ulps) == (64.0, 2.0) and type(t.floor_ulps) is float


@pytest.mark.parametrize("kwargs, match", [
    (dict(dtype=np.int32), r"dtype=int32: grading is defined for float16, bfloat16, float32 and float64"),
    (dict(dtype="complex128"), r"dtype=complex128"),
    (dict(truth={}), r"truth must be a non-empty mapping"),
    (dict(truth={"w": np.array([mpmath.inf], dtype=object)}),
     r"truth\['w'\] is not finite at w\[0\]"),
    (dict(truth={"w": np.array(["1"], dtype=object)}),
     r"truth\['w'\] has an entry of type str"),
    (dict(baseline={"w": np.zeros(2)}), r"baseline\['w'\] has shape \(2,\), the truth has "
                                        r"\(1,\)"),
    (dict(baseline={"v": np.zeros(1)}), r"baseline variables \['v'\] do not match"),
    (dict(tolerances=32), r"tolerances=32 must be a verigrad Tolerances record"),
])
def test_invalid_caller_inputs(kwargs, match):
    args = dict(truth={"w": mpv(1.0)}, value={"w": np.ones(1)},
                baseline={"w": np.ones(1)}, dtype=np.float64, case="c", candidate="x")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        grade(**args)


def test_truth_entries_keep_their_precision():
    # an mpf at 300 bits must not be rounded to the ambient 53 bits
    g = one([ONE_PLUS_HALF_ULP], [1.0])
    assert g.variable("w").errors.max_abs == 2.0**-53


# ---------------------------------------------------------------------------
# 9. the classic metric
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, expected", [
    (np.array([1.0, 2.0]), np.array([1.0, 2.0]), 0.0),
    (np.zeros(3), np.zeros(3), 0.0),
    (np.array([1.0]), np.array([-1.0]), 1.0),
    (np.array([3.0, 0.0]), np.array([0.0, 4.0]), 5.0 / 7.0),
    (np.array([1.0, np.nan]), np.array([1.0, 1.0]), math.nan),
    ({"a": np.array([3.0]), "b": np.array([[0.0]])},
     {"b": np.array([[4.0]]), "a": np.array([0.0])}, 5.0 / 7.0),
    ([np.array([3.0]), np.array([0.0])], [np.array([0.0]), np.array([4.0])], 5.0 / 7.0),
    (np.array([mpmath.mpf(1) / 3], dtype=object), np.array([1 / 3]),
     float(abs(mpmath.mpf(1 / 3) - mpmath.mpf(1) / 3) / (2 / 3))),
])
def test_relative_difference(a, b, expected):
    r = relative_difference(a, b)
    if math.isnan(expected):
        assert math.isnan(r)
    else:
        assert r == pytest.approx(expected, rel=1e-12, abs=0)


def test_relative_difference_errors():
    with pytest.raises(ValueError, match="a has 2 entries, b has 3"):
        relative_difference(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="same keys"):
        relative_difference({"a": np.zeros(1)}, {"b": np.zeros(1)})


@pytest.mark.parametrize("fd, threshold, ok", [
    (np.array([1.0, 2.0 + 1e-9]), 1e-7, True),
    (np.array([1.0, 2.0 + 1e-5]), 1e-7, False),
    (np.array([1.0, np.nan]), 1e-7, False),
    (np.array([2.0, 4.0]), 0.5, True),
])
def test_classic_check(fd, threshold, ok):
    assert classic_check(np.array([1.0, 2.0]), fd, threshold) is ok


def test_classic_check_threshold_must_be_positive():
    with pytest.raises(ValueError, match=r"classic_check\(threshold=0\)"):
        classic_check(np.ones(1), np.ones(1), 0)


def test_classic_check_cannot_tell_a_float32_false_alarm_from_a_bug():
    """Why verigrad grades against the truth: the classic metric with a float32
    finite difference flags a correct gradient; grade() passes it."""
    prob = logreg(0, "float32")
    X, t, w = prob[0]
    cand = logreg_numpy(X, t, w)

    def loss(wv):
        z = X @ wv
        return np.mean(np.logaddexp(np.float32(0), z) - t * z, dtype=np.float32)

    h = np.float32(1e-3)
    fd = np.array([(loss(w + h * e) - loss(w - h * e)) / (2 * h)
                   for e in np.eye(len(w), dtype=np.float32)])
    assert not classic_check(cand["w"], fd, 1e-7)
    assert run(prob, cand, np.float32).passed
