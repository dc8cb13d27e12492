"""The vectorised grading equals its exact definition, entry by entry and grade by grade.

:mod:`verigrad.grading.entries` computes every per-entry figure (absolute, relative, ulps), every
decision and every norm on float64 arrays and falls back to mpmath only where its proved bounds
cannot decide.  These tests check the promise behind it: whatever the inputs (subnormals, zeros,
huge values, NaN/inf candidates, truths of any bit length), every figure it certifies is the one
the exact computation (:func:`verigrad.grading.metrics._exact_entry`, :class:`_ExactSums`) gives,
and a truth given as double-double arrays (:class:`~verigrad.grading.DDTruth`) grades like the
same truth as an object array of mpf.
"""

from __future__ import annotations

import math
from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mpmath import libmp

from verigrad.grading import DDTruth, Tolerances, Verdict, grade
from verigrad.grading.entries import EntryErrors, Values, truth_var
from verigrad.grading.exact import _fmt_of, _ulp_exp
from verigrad.grading.metrics import _exact_entry, _ExactSums

# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------

DTYPES = [np.float32, np.float64]


@st.composite
def mpf_numbers(draw, exp_range=(-1080, 1030)):
    """Exact real numbers of 1 to 300 significant bits over (beyond) the float64 range, and zero."""
    if draw(st.integers(0, 9)) == 0:
        return mpmath.mpf(0)
    bits = draw(st.sampled_from([1, 2, 24, 53, 54, 80, 106, 107, 150, 159, 160, 200, 300]))
    man = draw(st.integers(2 ** (bits - 1), 2 ** bits - 1))
    if draw(st.booleans()):
        man |= 1  # as many bits as announced
    where = draw(st.sampled_from(["unit", "unit", "unit", "any", "f32edge"]))
    if where == "unit":
        e = draw(st.integers(-40, 40))
    elif where == "f32edge":
        e = draw(st.integers(-160, -110))
    else:
        e = draw(st.integers(*exp_range))
    x = mpmath.mpf((man, e - bits + 1))
    if draw(st.integers(0, 6)) == 0:  # a float64 with noise far below it (an Arb midpoint, say)
        with mpmath.workprec(400):
            f = mpmath.mpf(float(x)) if abs(x) < 1.7e308 else x
            x = f + f * mpmath.ldexp(draw(st.sampled_from([1, -1])), -draw(st.integers(100, 300)))
    return -x if draw(st.booleans()) else x


@st.composite
def values_near(draw, truth, dtype):
    """A value of ``dtype`` near ``truth`` (a few ulps, a factor, or anything at all)."""
    kind = draw(st.sampled_from(["near", "near", "near", "factor", "any", "special", "sub"]))
    f = float(truth) if abs(truth) < 1.7e308 else math.copysign(math.inf, truth)
    with np.errstate(all="ignore"):
        if kind == "near":
            x = np.array(f, dtype=dtype)
            k = draw(st.integers(-3, 3))
            for _ in range(abs(k)):
                x = np.nextafter(x, np.array(math.copysign(math.inf, k), dtype=dtype))
            return float(x)
        if kind == "factor":
            return float(np.array(f * draw(st.sampled_from([2.0, 0.5, -1.0, 1 + 2 ** -20])), dtype=dtype))
        if kind == "special":
            return draw(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0]))
        if kind == "sub":
            return float(np.array(draw(st.integers(-2 ** 20, 2 ** 20)) * 5e-324, dtype=np.float64))
        return float(np.array(draw(st.floats(allow_nan=True, allow_infinity=True, width=64)), dtype=dtype))


@st.composite
def graded_arrays(draw, exp_range=(-1080, 1030)):
    """(truth object array, values array of the dtype, dtype)."""
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(1, 12))
    if draw(st.integers(0, 4)) == 0:  # ties: a few distinct values repeated
        base = draw(st.lists(mpf_numbers(exp_range), min_size=1, max_size=3))
        truth = [base[draw(st.integers(0, len(base) - 1))] for _ in range(n)]
    else:
        truth = draw(st.lists(mpf_numbers(exp_range), min_size=n, max_size=n))
    vals = [draw(values_near(t, dtype)) for t in truth]
    t = np.empty(n, dtype=object)
    t[:] = truth
    with np.errstate(all="ignore"):
        v = np.array(vals, dtype=np.float64).astype(dtype)
    return t, v, dtype


def _dd_of(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hi = np.array([float(x) for x in t.reshape(-1)]).reshape(t.shape)
    with mpmath.workprec(2000):
        lo = np.array([float(x - h) for x, h in zip(t.reshape(-1), hi.reshape(-1))]).reshape(t.shape)
    return hi, lo


def _errors(tr, values, dtype):
    """EntryErrors with the ulp exponents and zero reference grade() uses."""
    fmt = _fmt_of(dtype)
    s = tr.max_abs()
    zero_kulp = _ulp_exp(s, fmt)
    kulp = np.where(tr.zero, zero_kulp, np.maximum(tr.kexp, fmt.emin) - fmt.bits + 1)
    return EntryErrors(tr, values, kulp=kulp, zero_ref=s, zero_kulp=zero_kulp), kulp, s, zero_kulp


def _same(x: float, y: float) -> bool:
    return (math.isnan(x) and math.isnan(y)) or x == y


def _check_entries(tr, values, dtype):
    ee, kulp, s, zk = _errors(tr, values, dtype)
    exact = []
    for i in range(tr.n):
        g = tr.raw(i)
        exact.append(_exact_entry(values.raw(i), g, libmp.mpf_abs(g), int(kulp[i]), s, zk))
    # what the arrays certify is exact, and the bounds hold
    fresh = ~ee.resolved
    for key, j in (("abs", 1), ("rel", 2), ("ulps", 3)):
        lo, up = ee.bounds(key)
        for i in range(tr.n):
            assert not (exact[i][j] > up[i] or exact[i][j] < lo[i]), (key, i, lo[i], up[i], exact[i])
        idx = np.flatnonzero(fresh)
        x, ok = ee._certify(key, idx)
        for i, xi in zip(idx[ok], x[ok]):
            assert _same(float(xi), exact[i][j]), (key, i, xi, exact[i])
    # maxima, the exact maximum difference, figures on demand
    for key, j in (("abs", 1), ("rel", 2), ("ulps", 3)):
        assert _same(ee.max(key), max(e[j] for e in exact)), key
    for i in range(tr.n):
        assert all(_same(a, b) for a, b in zip(ee.figures(i), exact[i][1:])), (i, ee.figures(i), exact[i])
        assert ee.diff(i) == exact[i][0]
    finite = values.finite
    diffs = [e[0] for e in exact if e[0] is not None]
    want = max(diffs, key=lambda t: mpmath.mp.make_mpf(t)) if diffs else libmp.fzero
    assert libmp.mpf_eq(ee.max_diff(np.ones(tr.n, dtype=bool)), want)
    # decisions against thresholds, including the differences themselves
    thr_raw = [e[0] if e[0] is not None and k % 2 else libmp.from_float(float(k) * 0.3) for k, e in enumerate(exact)]
    thr = np.array([libmp.to_float(t) for t in thr_raw])
    got = ee.gt(thr, lambda i: thr_raw[i], np.ones(tr.n, dtype=bool))
    for i in range(tr.n):
        want_i = finite[i] and libmp.mpf_gt(exact[i][0], thr_raw[i])
        assert bool(got[i]) == bool(want_i), (i, exact[i][0], thr_raw[i])
    return ee


# ---------------------------------------------------------------------------
# per entry: the arrays against the exact definition
# ---------------------------------------------------------------------------


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graded_arrays())
def test_entry_figures_equal_the_exact_computation(case):
    t, v, dtype = case
    _check_entries(truth_var("w", t), Values(v), dtype)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graded_arrays(exp_range=(-1000, 1000)))
def test_entry_figures_with_a_double_double_truth(case):
    t, v, dtype = case
    hi, lo = _dd_of(t)
    _check_entries(truth_var("w", DDTruth(hi, lo)), Values(v), dtype)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graded_arrays(), st.sampled_from(["int", "object", "float64"]))
def test_entry_figures_for_other_returns(case, kind):
    """Integer, object and upcast returns are graded exactly as returned."""
    t, v, dtype = case
    with np.errstate(all="ignore"):
        if kind == "int":
            w = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float64).clip(-2 ** 62, 2 ** 62)
            w = w.astype(np.int64) * 3
        elif kind == "object":
            w = np.empty(v.shape, dtype=object)
            w[:] = [mpmath.mpf(float(x)) * (1 + mpmath.mpf(2) ** -80) if math.isfinite(x) else float(x) for x in v]
        else:
            w = v.astype(np.float64)
    _check_entries(truth_var("w", t), Values(w), dtype)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graded_arrays())
def test_norms_equal_the_exact_sums(case):
    t, v, dtype = case
    tr = truth_var("w", t)
    values = Values(v)
    ee, *_ = _errors(tr, values, dtype)
    sums = ee.sums(tr.sumsq())
    ref = _ExactSums.of([values.raw(i) for i in range(tr.n)], [tr.raw(i) for i in range(tr.n)], values.nan)
    assert _same(sums.normwise(), ref.normwise())
    assert _same(sums.symmetric(), ref.symmetric())
    # and the certified evaluation alone, where it decides
    try:
        assert _same(sums._normwise(), ref.normwise())
    except Exception as exc:  # noqa: BLE001 - only "cannot decide" is allowed
        assert type(exc).__name__ == "_Uncertain"


def test_large_sums_are_certified_without_the_fallback(monkeypatch):
    """10^5 entries of a correct float64 candidate: the norms come from the float64 sums."""
    rng = np.random.default_rng(1)
    n = 100_000
    hi = rng.standard_normal(n)
    lo = hi * rng.uniform(-1, 1, n) * 2.0 ** -54
    cand = hi.copy()
    cand[::5] = np.nextafter(cand[::5], np.inf)
    tr = truth_var("w", DDTruth(hi, lo))
    ee, *_ = _errors(tr, Values(cand), np.float64)
    sums = ee.sums(tr.sumsq())

    def boom():
        raise AssertionError("fell back to the exact sums")

    monkeypatch.setattr(sums, "legacy", boom)
    nw, sy = sums.normwise(), sums.symmetric()
    with mpmath.workprec(300):
        g = [mpmath.mpf(float(h)) + mpmath.mpf(float(l)) for h, l in zip(hi[:2000], lo[:2000])]
    assert 1e-17 < nw < 1e-15 and 0 < sy < nw
    assert all(g)  # (the truth is nonzero)


def test_exact_maximum_among_many_ties():
    """A variable whose entries are all the same value: the maxima are found without reading each exactly."""
    n = 5000
    t = np.empty(n, dtype=object)
    with mpmath.workprec(200):
        t[:] = [mpmath.mpf(1) / 3] * n
    v = np.full(n, np.float32(1 / 3))
    tr = truth_var("w", t)
    ee, *_ = _errors(tr, Values(v), np.float32)
    assert mpmath.mp.make_mpf(tr.max_abs()) == t[0]
    with mpmath.workprec(200):
        assert mpmath.mp.make_mpf(ee.max_diff(np.ones(n, dtype=bool))) == abs(mpmath.mpf(float(v[0])) - t[0])
    assert len(ee.exact) < 2 * 256 + 10


def test_truths_beyond_the_fast_range_are_exact():
    """Huge, tiny and subnormal truths and values take the exact path, with the same answers."""
    with mpmath.workprec(200):
        t = np.array([mpmath.mpf(2) ** 1030 / 3, mpmath.mpf(2) ** -1080 / 3, mpmath.mpf(5e-324) * 7,
                      mpmath.mpf(1) / 3, mpmath.mpf(0)], dtype=object)
    v = np.array([1e308, 0.0, 5e-324 * 7, 1 / 3, 5e-324])
    _check_entries(truth_var("w", t), Values(v), np.float64)


def test_ddtruth_validation():
    with pytest.raises(ValueError, match="shape"):
        DDTruth(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="dtype"):
        DDTruth(np.zeros(3, dtype=complex), np.zeros(3))
    with pytest.raises(ValueError, match="not finite at w\\[1\\]"):
        grade(truth={"w": DDTruth(np.array([1.0, np.inf]), np.zeros(2))}, value={"w": np.zeros(2)},
              baseline={"w": np.zeros(2)}, dtype=np.float64, case="c", candidate="x")
    t = DDTruth(np.array([1.0, 0.5]), np.array([2.0 ** -60, 0.0]))
    assert t.shape == (2,)
    with mpmath.workprec(200):
        assert list(t.to_mpf()) == [1 + mpmath.mpf(2) ** -60, mpmath.mpf(0.5)]


# ---------------------------------------------------------------------------
# grades: object truth and double-double truth
# ---------------------------------------------------------------------------


def _pair(t: np.ndarray):
    hi, lo = _dd_of(t)
    return DDTruth(hi, lo)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graded_arrays(exp_range=(-900, 900)), st.sampled_from([1.0, 32.0]), st.sampled_from([0.0, 4.0]))
def test_grade_of_an_exact_double_double_truth_is_identical(case, factor, floor_ulps):
    """When the mpf truth is exactly hi + lo (the fast engine's), both forms give the same Grade."""
    t, v, dtype = case
    hi, lo = _dd_of(t)
    t2 = np.array([mpmath.fadd(float(h), float(l), exact=True) for h, l in zip(hi, lo)], dtype=object)
    with np.errstate(all="ignore"):
        base = np.array([float(x) for x in t2], dtype=dtype)
    tol = Tolerances(factor=factor, floor_ulps=floor_ulps)
    kw = dict(value={"w": v}, baseline={"w": base}, dtype=dtype, case="c", candidate="x", tolerances=tol)
    a = grade(truth={"w": t2}, **kw).to_dict()
    b = grade(truth={"w": DDTruth(hi, lo)}, **kw).to_dict()
    assert a == b


CASES = Path(__file__).resolve().parent.parent / "cases"


@pytest.fixture(scope="module")
def shipped_grades():
    """(label, model, truth, result) of every graded candidate of every shipped case (no FD)."""
    from verigrad.casefile.loader import find_case_files, load_case
    from verigrad.engine.model import compile_case
    from verigrad.runner.case import run_case

    out = []
    for f in find_case_files([CASES]):
        rep = run_case(f, with_fd=False)
        assert not rep.error, rep.error
        case = load_case(f)
        case = case[0] if isinstance(case, (list, tuple)) else case
        model = compile_case(case)
        second = {c.name for c in case.candidates if c.kind.order == 2}  # graded against a Hessian, not the gradient
        for r in rep.results:
            if r.grade is not None and getattr(r, "value", None) is not None and r.candidate not in second:
                out.append((f"{f.stem}/{r.candidate}/{r.dtype}", model, rep.truths[r.dtype], r))
    assert len(out) >= 80
    return out


def _regrade(model, truth, r, as_dd: bool):
    from verigrad.kinks import kink_acceptance
    from verigrad.runner.case import _tolerances, baseline_gradient, loss_terms, term_gradients

    base = baseline_gradient(model, truth.point, truth.dtype)
    kinks = kink_acceptance(model, truth, r.value, base)
    t = {n: _pair(np.asarray(g, dtype=object)) for n, g in kinks.truth.items()} if as_dd else kinks.truth
    # as the runner does: the terms' gradients for a failing candidate of a loss that is a sum of terms
    terms = (term_gradients(model, truth.point)
             if r.grade.verdict is Verdict.FAIL and len(loss_terms(model)) > 1 else None)
    from verigrad.grading import baseline_error_model

    em = None if kinks.at_kink else baseline_error_model(model, truth.point, truth.dtype.numpy)
    return grade(truth=t, value=r.value, baseline=kinks.baseline, dtype=truth.dtype.numpy,
                 case=model.case.name, candidate=r.candidate, tolerances=_tolerances(model.case),
                 term_gradients=terms or None, error_model=em)


def _close(a, b, path=""):
    """Equal, except floats that may differ in their last bits (rel 1e-9)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=0), path
    else:
        assert a == b, path


def test_shipped_cases_grade_alike_from_object_and_double_double_truths(shipped_grades):
    """Every candidate grade of every shipped case: regraded from the object truth it is identical;
    from the same truth rounded to double-double, verdicts, reasons, messages, diagnoses, wrong
    entries and tolerances are identical and the error figures agree to their last bits."""
    assert any(r.grade.verdict is Verdict.FAIL for *_, r in shipped_grades)
    for label, model, truth, r in shipped_grades:
        got = r.grade.to_dict()
        same = _regrade(model, truth, r, as_dd=False).to_dict()
        assert same == got, label
        dd = _regrade(model, truth, r, as_dd=True).to_dict()
        for key in ("verdict", "reason", "messages", "warnings", "diagnosis", "returned_dtype"):
            assert dd[key] == got[key], (label, key)
        assert [(w["variable"], w["index"], w["reason"], w["tolerance"]) for w in dd["wrong"]] == \
            [(w["variable"], w["index"], w["reason"], w["tolerance"]) for w in got["wrong"]], label
        _close(dd, got, label)
