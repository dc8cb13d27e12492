"""Incremental line evaluation (verigrad.engine.lines) and the full-gradient split built on it.

References are independent of the code under test: the whole graph evaluated by the
Arb backend at the perturbed point, closed-form Taylor coefficients, and the split's
defining identity E = T + S + R.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from verigrad.engine import arb as ab
from verigrad.casefile.loader import point_in_dtype
from verigrad.expr.evaluate import evaluate
from verigrad.engine.lines import LineEvaluator, Unsupported, coefficients, object_array, series_cap, series_ok
from verigrad.spec import Dtype
from verigrad.fd import batched_leaves
from verigrad.studies import fd_sweep_split
from verigrad.schemes import default_step_grid, get_scheme

from casefiles import model_of, write_case

pytestmark = pytest.mark.skipif(not ab.available(), reason="python-flint not installed")

ROOT = Path(__file__).resolve().parents[1]
CASES = sorted((ROOT / "cases").glob("*.toml"))


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_incremental_equals_whole_graph(path):
    """Every shipped case: the loss with one entry moved equals the whole graph re-evaluated."""
    model = model_of(path)
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    rng = np.random.default_rng(0)
    for var in model.gradient:
        n = point[var].size
        idx = rng.integers(0, n, 12)
        with ab.arb_precision(200):
            vals = np.empty(idx.size, dtype=object)
            vals[:] = [ab.arb(float(point[var].ravel()[i])) + ab.arb(0.001) * (k - 6) for k, i in enumerate(idx)]
            base = {k: ab.from_float(point[k])[None] for k in model.leaves}
            leaves = batched_leaves(base, [{(var, int(i)): v} for i, v in zip(idx, vals)])
            try:
                got = LineEvaluator(model, point, var, prec=200).losses(idx, vals)
            except Unsupported:
                continue
            except ArithmeticError as exc:  # a domain edge or kink: the whole graph fails the same way
                with pytest.raises(type(exc)):
                    evaluate([model.loss], leaves, ab.ArbBackend())
                continue
            ref = evaluate([model.loss], leaves, ab.ArbBackend())[0].ravel()
            for a, b in zip(got, ref):
                assert a.overlaps(b)
                assert abs(float((a - b).mid())) <= 1e-50 * max(1.0, abs(float(b.mid())))


def test_only_changed_entries_are_recomputed(tmp_path):
    """A one-hot weighted softmax: the (32, 10) intermediates change in one entry per row."""
    model = model_of(ROOT / "benchmarks" / "cases" / "softmax-500.toml")
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    ev = LineEvaluator(model, point, "W", prec=128)
    with ab.arb_precision(128):
        _, work = ev._run(np.array([7]), np.array([ab.arb(0.5)], dtype=object))
    # matmul column (32) + logsumexp (32) + sub/mul at the labels (<= 32 each) + sums; not 320-wide
    assert work < 200


def test_taylor_coefficients_closed_form(tmp_path):
    """f = sum(exp(2 x)) + sum(x**3): along x_i the series is exp(2x_i) 2^m/m! + (x_i + t)^3 terms."""
    model = write_case(tmp_path, "sum(exp(2*x)) + sum(x**3)", 'x = { value = [0.5, -1.25, 2.0] }')
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    assert series_ok(model, "x")
    L = 10
    with ab.arb_precision(192), series_cap(L):
        ev = LineEvaluator(model, point, "x", prec=192, series=L)
        ser = ev.losses(np.arange(3), [ab.flint.arb_series([ab.arb(v), 1]) for v in point["x"]])
    x = point["x"]
    for i, s in enumerate(ser):
        a = coefficients(s, L)
        for m in range(L):
            want = math.exp(2 * x[i]) * 2**m / math.factorial(m)
            want += math.comb(3, m) * x[i] ** (3 - m) if m <= 3 else 0.0
            if m == 0:
                want += sum(math.exp(2 * x[j]) + x[j] ** 3 for j in range(3) if j != i)
            assert float(a[m].mid()) == pytest.approx(want, rel=1e-14)


def test_series_refused_through_kinks(tmp_path):
    model = write_case(tmp_path, "sum(relu(x)) + sum(y**2)", 'x = { value = [0.5, -1.0] }\ny = { value = [1.0, 2.0] }')
    assert not series_ok(model, "x")
    assert series_ok(model, "y")
    with pytest.raises(Unsupported):
        LineEvaluator(model, point_in_dtype(model.point, Dtype.FLOAT64), "x", prec=128, series=8)


def test_domain_errors_are_not_skipped(tmp_path):
    """0 * log(x): the log is computed (and fails) even though a zero weight hides its value."""
    model = write_case(tmp_path, "sum(c * log(x))", 'x = { value = [1.0, 2.0] }\nc = { constant = true, value = [0.0, 1.0] }')
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    ev = LineEvaluator(model, point, "x", prec=128)
    with ab.arb_precision(128), pytest.raises(ArithmeticError):
        ev.losses(np.array([0]), np.array([ab.arb(-1)], dtype=object))


def test_domain_errors_are_not_skipped_in_taylor_mode(tmp_path):
    """The same in Taylor mode: the series' constant term is checked."""
    model = write_case(tmp_path, "sum(c * log(x))", 'x = { value = [1.0, 2.0] }\nc = { constant = true, value = [0.0, 1.0] }')
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    with ab.arb_precision(128), series_cap(4):
        ev = LineEvaluator(model, point, "x", prec=128, series=4)
        with pytest.raises(ArithmeticError):
            ev.losses(np.array([0]), object_array([ab.flint.arb_series([ab.arb(-1), 1])]))


def test_hidden_values_are_checked_not_computed(tmp_path, monkeypatch):
    """Where an exact 0 hides log's value, the argument is checked but the log is not evaluated;
    where the value counts, it is (and the loss is right)."""
    model = write_case(tmp_path, "sum(c * log(x))", 'x = { value = [1.0, 2.0] }\nc = { constant = true, value = [0.0, 3.0] }')
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    counts = {"check": 0, "apply": 0}
    check, apply = ab.ArbBackend.check_unary, ab.ArbBackend.apply_unary

    def counting_check(self, fn, x, node):
        counts["check"] += x.size
        return check(self, fn, x, node)

    def counting_apply(fn, x):
        counts["apply"] += x.size
        return apply(fn, x)

    ev = LineEvaluator(model, point, "x", prec=128)
    monkeypatch.setattr(ab.ArbBackend, "check_unary", counting_check)
    monkeypatch.setattr(ab.ArbBackend, "apply_unary", staticmethod(counting_apply))
    with ab.arb_precision(128):
        got = ev.losses(np.array([0, 1]), object_array([ab.arb(5), ab.arb(4)]))
        want = [3 * ab.arb(2).log(), 3 * ab.arb(4).log()]
    assert counts == {"check": 2, "apply": 1}
    for g, w in zip(got, want):
        assert abs(float(g - w)) < 1e-30


def _split_identity_and_truncation(model, dtype, scheme_name, steps):
    res = fd_sweep_split(model, dtype=dtype, scheme=scheme_name, steps=steps)
    for r in res:
        for v in r.error:
            E, T, S, R = r.error[v], r.truncation[v], r.step_error[v], r.roundoff[v]
            ok = np.isfinite(E)
            scale = np.maximum.reduce([np.abs(E), np.abs(T), np.abs(S), np.abs(R)])
            assert np.all(np.abs(E - (T + S + R))[ok] <= 4e-16 * scale[ok])
    return res


def test_split_matches_closed_form_truncation(tmp_path):
    """f = sum(sin(x)), central: T = sum over j>=3 odd of f^(j) h^(j-1)/j! exactly, at every step."""
    model = write_case(tmp_path, "sum(sin(x))", 'x = { value = [0.3, 1.1, -2.0, 0.75] }')
    steps = [1e-12, 1e-6, 1e-3, 0.05, 0.5]
    res = _split_identity_and_truncation(model, Dtype.FLOAT64, "central", steps)
    _assert_sin_truncation(model, res)


def _assert_sin_truncation(model, res):
    """T of central differences of sum(sin(x)) is the closed form cos x (sin h / h − 1) (mpmath)."""
    import mpmath

    x = point_in_dtype(model.point, Dtype.FLOAT64)["x"]
    for r in res:
        for i, xi in enumerate(x):
            h = mpmath.mpf(float(r.h["x"][i]))
            # (sin(x+h) - sin(x-h)) / 2h - cos x = cos x (sin h / h - 1), exactly
            with mpmath.workprec(600):
                want = mpmath.cos(mpmath.mpf(float(xi))) * (mpmath.sin(h) / h - 1)
            assert r.truncation["x"][i] == pytest.approx(float(want), rel=1e-13, abs=0)


def test_split_with_and_without_series_agree(tmp_path, monkeypatch):
    """The Taylor path and the direct path give the same parts (to float64) on a softmax case."""
    from verigrad.engine import lines

    model = model_of(ROOT / "cases" / "softmax-regression.toml")
    steps = list(default_step_grid(get_scheme("central4"), np.float32, count=8))
    fast = _split_identity_and_truncation(model, Dtype.FLOAT32, "central4", steps)
    monkeypatch.setattr(lines, "series_ok", lambda model, variable: False)
    slow = fd_sweep_split(model, dtype=Dtype.FLOAT32, scheme="central4", steps=steps)
    for a, b in zip(fast, slow):
        for part in ("error", "truncation", "step_error", "roundoff"):
            for v in getattr(a, part):
                x, y = getattr(a, part)[v], getattr(b, part)[v]
                scale = np.maximum.reduce([np.abs(getattr(b, p)[v]) for p in ("truncation", "step_error", "roundoff")])
                assert np.all(np.abs(x - y) <= 1e-14 * scale + 1e-300)


def test_quadratic_central_truncation_is_exactly_zero(tmp_path):
    model = write_case(tmp_path, "sum((x - 1)**2) + x[0]*x[1]", 'x = { value = [0.3, 1.7, -2.5] }')
    res = fd_sweep_split(model, dtype=Dtype.FLOAT64, scheme="central", steps=[1e-9, 1e-3, 0.5])
    for r in res:
        assert np.all(r.truncation["x"] == 0.0)


def test_representable_steps_have_zero_step_error(tmp_path):
    """x and h powers of two: every node is representable, so S = 0 exactly."""
    model = write_case(tmp_path, "sum(exp(x))", 'x = { value = [0.5, 1.0, 0.25] }')
    res = fd_sweep_split(model, dtype=Dtype.FLOAT32, scheme="central", steps=[2.0**-10, 2.0**-4])
    for r in res:
        assert np.all(r.step_error["x"] == 0.0)
        assert np.all(r.truncation["x"] != 0.0)


def _mp_sigmoid(v):
    import mpmath

    return 1 / (1 + mpmath.exp(-v))


def test_every_part_is_accurate_to_itself():
    """Saturated sigmoids, float32, forward differences: S is down to 1e-14 of T, and both must
    still be right to 12 digits. Reference: 3000-bit mpmath at the actual nodes, T from the
    closed-form derivative s (1 - s)."""
    import mpmath

    from verigrad.schemes import StepMode
    from verigrad.fd import entry_steps
    from verigrad.fd.nodes import _nodes

    model = model_of(ROOT / "cases" / "saturation-sigmoid-tanh.toml")
    scheme = get_scheme("forward")
    steps = [float(h) for h in default_step_grid(scheme, np.float32, count=14)]
    res = fd_sweep_split(model, dtype=Dtype.FLOAT32, scheme=scheme, steps=steps)
    x = point_in_dtype(model.point, Dtype.FLOAT32)["x"]
    checked = 0
    with mpmath.workprec(3000):
        for r, step in zip(res, steps):
            hp = entry_steps(step, "x", x, StepMode.RELATIVE).astype(np.float32)
            ys = [_nodes(x, hp, c, np.dtype(np.float32)) for c in scheme.offsets]
            for i in range(x.size):
                xi, h = mpmath.mpf(float(x[i])), mpmath.mpf(float(hp[i]))
                s = _mp_sigmoid(xi)
                exact = [_mp_sigmoid(xi + mpmath.mpf(c.numerator) / c.denominator * h) for c in scheme.offsets]
                nodes = [_mp_sigmoid(mpmath.mpf(float(y[i]))) for y in ys]
                w = [mpmath.mpf(c.numerator) / c.denominator for c in scheme.weights]
                T = sum(wk * e for wk, e in zip(w, exact)) / h - s * (1 - s)
                S = sum(wk * (f - e) for wk, f, e in zip(w, nodes, exact)) / h
                for got, want in ((r.truncation["x"][i], T), (r.step_error["x"][i], S)):
                    assert abs(got - float(want)) <= 1e-12 * abs(float(want)), (step, i, got, float(want))
                    checked += want != 0
    assert checked > 60


def test_unresolved_units_are_evaluated_again(monkeypatch):
    """Starting every direct evaluation at 64 bits (far too few) changes nothing: the units it
    leaves unresolved are evaluated again with the bits they lacked."""
    from verigrad.studies import split as studies

    model = model_of(ROOT / "cases" / "gradient-checking-3layer.toml")  # ReLU: every unit is direct
    steps = [float(h) for h in default_step_grid(get_scheme("central4"), np.float64, count=6)]
    want = fd_sweep_split(model, dtype=Dtype.FLOAT64, scheme="central4", steps=steps)
    precs = []
    chunk = studies._Line._direct_chunk

    def spy(self, units, prec):
        precs.append(prec)
        return chunk(self, units, prec)

    monkeypatch.setattr(studies, "_direct_precision", lambda h, scheme, dtype: 64)
    monkeypatch.setattr(studies._Line, "_direct_chunk", spy)
    got = fd_sweep_split(model, dtype=Dtype.FLOAT64, scheme="central4", steps=steps)
    assert min(precs) == 64 and max(precs) > 64
    # the guarantee: each part to 2^-50 of itself, or, below 2^-100 of the unit's scale (largest
    # part, float round-off u |f| / h), to 2^-50 of that
    f = abs(float(model.float_eval([model.loss], point_in_dtype(model.point, Dtype.FLOAT64), np.float64)[0]))
    for a, b in zip(got, want):
        for v in a.error:
            parts = ("truncation", "step_error", "roundoff")
            scale = np.maximum(np.maximum.reduce([np.abs(getattr(b, p)[v]) for p in parts]),
                               2.0 ** -53 * f / b.h[v])
            for part in ("error",) + parts:
                x, y = getattr(a, part)[v], getattr(b, part)[v]
                tol = 2.0 ** -49 * np.maximum(np.abs(y), 2.0 ** -100 * scale)
                assert np.all((np.abs(x - y) <= tol) | (np.isnan(x) & np.isnan(y)))


def test_piecewise_quadratic_truncation_is_exactly_zero():
    """Lasso (abs: no Taylor mode, every unit direct): away from w = 0 the loss is quadratic
    along each coordinate, so central differences have T = 0 exactly, not the truth's rounding."""
    model = model_of(ROOT / "cases" / "lasso-regression.toml")
    steps = [1e-6, 1e-4, 1e-2]
    for dtype in (Dtype.FLOAT32, Dtype.FLOAT64):
        for r in fd_sweep_split(model, dtype=dtype, scheme="central", steps=steps):
            assert np.all(r.truncation["w"] == 0.0)
            assert np.any(r.roundoff["w"] != 0.0)


def test_a_change_that_never_reaches_the_loss_returns_the_base_ball(tmp_path):
    """relu stays off: the loss is the very same ball as at the base point (so differences of it
    are exactly 0), and only entries that do change are carried."""
    model = write_case(tmp_path, "sum(relu(x) * c)", 'x = { value = [-1.0, 2.0] }\nc = { constant = true, value = [3.0, 5.0] }')
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    ev = LineEvaluator(model, point, "x", prec=128)
    with ab.arb_precision(128):
        base = ev.flat[model.loss.id][0]
        got = ev.losses(np.array([0, 0, 1]), object_array([ab.arb(-0.5), ab.arb(0.25), ab.arb(2.5)]))
    assert got[0] is base
    assert float(got[1]) == 10.75 and float(got[2]) == 12.5


def test_bits_short_equals_the_array_rule():
    """studies.split._bits_short gives the answer of the rule written out here on 20,000 random
    units (parts from 0 to 1e10, errors from 0 to 1e10, noise 0 to 1e5)."""
    import math

    from verigrad.studies import split as sp

    def array_rule(parts, err_t, err_s, noise):
        parts = np.abs(np.array(parts, dtype=np.float64))
        errs = np.array([err_t, err_s, err_t + err_s])
        allowed = sp._TAIL * np.maximum(parts, sp._NEGLIGIBLE * max(float(parts.max()), float(noise)))
        if np.all(errs <= allowed):
            return 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio = float(np.max(errs / allowed))
        return int(math.ceil(math.log2(ratio))) if math.isfinite(ratio) else 1 << 20

    rng = np.random.default_rng(7)
    for _ in range(20_000):
        parts = rng.choice([0.0, 1.0], 3) * 10.0 ** rng.uniform(-300, 10, 3) * rng.choice([-1, 1], 3)
        e_t, e_s = (rng.choice([0.0, 1.0]) * 10.0 ** rng.uniform(-320, 10) for _ in range(2))
        noise = rng.choice([0.0, 1.0]) * 10.0 ** rng.uniform(-300, 5)
        assert sp._bits_short(parts, e_t, e_s, noise) == array_rule(parts, e_t, e_s, noise)


# -- Taylor mode on double-double balls (verigrad.studies.splitseries) ---------------------------


def test_resolved_equals_bits_short_per_unit():
    """studies.split._resolved (all units at once) is _bits_short(...) == 0 unit by unit, on 20,000
    random units with zeros, ties at the allowed error, infinities and NaNs."""
    from verigrad.studies import split as sp

    rng = np.random.default_rng(11)
    n = 20_000
    parts = rng.choice([0.0, 1.0], (3, n)) * 10.0 ** rng.uniform(-300, 10, (3, n)) * rng.choice([-1, 1], (3, n))
    e_t, e_s = (rng.choice([0.0, 1.0], n) * 10.0 ** rng.uniform(-320, 10, n) for _ in range(2))
    noise = rng.choice([0.0, 1.0], n) * 10.0 ** rng.uniform(-300, 5, n)
    tie = rng.random(n) < 0.2  # errors exactly at the allowed 2^-50 |T|
    e_t = np.where(tie, sp._TAIL * np.abs(parts[0]), e_t)
    e_s = np.where(tie, 0.0, e_s)
    for arr, frac in ((parts[1], 0.01), (parts[2], 0.01), (e_t, 0.01), (noise, 0.01)):
        pick = rng.random(n) < frac
        arr[pick] = rng.choice([np.inf, -np.inf, np.nan], int(pick.sum()))
    with np.errstate(all="ignore"):
        got = sp._resolved(tuple(parts), np.abs(e_t), e_s, noise)
    with np.errstate(all="ignore"):
        want = np.array([sp._bits_short(parts[:, u], abs(e_t[u]), e_s[u], noise[u]) == 0 for u in range(n)])
    assert got.dtype == bool and np.array_equal(got, want)
    assert 1000 < want.sum() < n - 1000  # both answers are exercised


def _taylor_runs(monkeypatch, model, dtype, scheme, steps, *, refuse=None):
    """fd_sweep_split's results and every _Line.taylor answer; ``refuse(H)`` True makes the
    double-double path refuse those steps (FastPathUnavailable), as values out of range would."""
    from verigrad.engine.ballcore import FastPathUnavailable
    from verigrad.studies import split as sp
    from verigrad.studies import splitseries

    seen, calls = [], {"dd": 0, "arb": 0}
    taylor, dd_rows, arb_row = sp._Line.taylor, splitseries._dd_rows, splitseries._arb_row
    monkeypatch.setattr(splitseries, "_FAST_MIN_UNITS", 0)  # these cases are small: use the fast pass anyway

    def spy_taylor(self, wanted):
        out = taylor(self, wanted)
        seen.append((self.name, (dict(out[0]), dict(out[1]))))  # copies: fd_sweep_split pops from them
        return out

    def spy_dd(A, moments, offsets, weights, x, H, Y):
        if refuse is not None and refuse(H):
            raise FastPathUnavailable("refused by the test")
        out = dd_rows(A, moments, offsets, weights, x, H, Y)
        calls["dd"] += H.shape[0]  # steps the fast path answered
        return out

    def spy_arb(*args):
        calls["arb"] += 1
        return arb_row(*args)

    with monkeypatch.context() as mp:
        mp.setattr(sp._Line, "taylor", spy_taylor)
        mp.setattr(splitseries, "_dd_rows", spy_dd)
        mp.setattr(splitseries, "_arb_row", spy_arb)
        res = fd_sweep_split(model, dtype=dtype, scheme=scheme, steps=steps)
    return res, seen, calls


@pytest.mark.parametrize("case, dtype, scheme", [
    ("softmax-regression", Dtype.FLOAT32, "central4"),
    ("layer-norm", Dtype.FLOAT64, "forward"),
    ("saturation-sigmoid-tanh", Dtype.FLOAT32, "central"),
])
def test_taylor_double_double_equals_arb_fallback(monkeypatch, case, dtype, scheme):
    """The double-double T and S and the Arb fallback's (every step refused) take the same units,
    with the same largest step per entry, and their T and S agree within the sum of their error
    bounds; the split's parts agree to those bounds too."""
    model = model_of(ROOT / "cases" / f"{case}.toml")
    steps = [float(h) for h in default_step_grid(get_scheme(scheme), dtype.numpy, count=12)]
    fast, seen_dd, calls_dd = _taylor_runs(monkeypatch, model, dtype, scheme, steps)
    slow, seen_arb, calls_arb = _taylor_runs(monkeypatch, model, dtype, scheme, steps, refuse=lambda H: True)
    assert calls_dd["arb"] == 0 and calls_dd["dd"] > 0  # the fast path ran, the fallback did not
    assert calls_arb["dd"] == 0 and calls_arb["arb"] == len(steps) * len(seen_arb)
    taken = 0
    for (name, (ra, ca)), (name_b, (rb, cb)) in zip(seen_dd, seen_arb):
        assert name == name_b and list(ra) == list(rb) and ca == cb
        taken += len(ra)
        for unit, a in ra.items():
            b = rb[unit]
            for k, e in ((4, 6), (5, 7)):  # T and S balls, their error bounds
                assert abs(float(a[k] - b[k])) <= a[e] + b[e], (name, unit, k)
                assert abs(a[k - 3] - b[k - 3]) <= a[e] + b[e] + 2.0 ** -52 * abs(b[k - 3]), (name, unit, k)
    assert taken > 40
    for a, b in zip(fast, slow):
        for part in ("error", "truncation", "step_error", "roundoff"):
            for v in getattr(a, part):
                x, y = getattr(a, part)[v], getattr(b, part)[v]
                scale = np.maximum.reduce([np.abs(getattr(b, p)[v]) for p in ("truncation", "step_error", "roundoff")])
                assert np.all((x == y) | (np.abs(x - y) <= 2.0 ** -50 * scale)), (part, v)


def test_taylor_refused_steps_alone_go_to_arb(monkeypatch):
    """A step the double-double path refuses is evaluated in Arb by itself; the others stay on the
    fast path, and the answers are those of the all-Arb evaluation."""
    model = model_of(ROOT / "cases" / "softmax-regression.toml")
    steps = [float(h) for h in default_step_grid(get_scheme("central"), np.float64, count=6)]
    small = min(steps)
    mixed, seen_mix, calls_mix = _taylor_runs(monkeypatch, model, Dtype.FLOAT64, "central", steps,
                                              refuse=lambda H: H.min() <= small * 8)
    _, seen_arb, _ = _taylor_runs(monkeypatch, model, Dtype.FLOAT64, "central", steps, refuse=lambda H: True)
    assert calls_mix["arb"] == len(seen_mix)  # one step per variable refused
    assert calls_mix["dd"] == (len(steps) - 1) * len(seen_mix)
    for (_, (ra, ca)), (_, (rb, cb)) in zip(seen_mix, seen_arb):
        assert list(ra) == list(rb) and ca == cb
        for unit, a in ra.items():
            if unit[0] == steps.index(small):  # the refused step: the very Arb numbers
                assert a[:4] == rb[unit][:4] and a[6:] == rb[unit][6:]


def test_taylor_tiny_step_leaves_the_fast_range(tmp_path, monkeypatch):
    """h = 1e-80: h^3 is below the double-double range (2^-900), so that step alone is evaluated in
    Arb; T still equals the closed form cos x (sin h / h − 1) at every step, the tiny one included."""
    model = write_case(tmp_path, "sum(sin(x))", 'x = { value = [0.3, 1.1, -2.0, 0.75] }')
    steps = [1e-80, 1e-6, 0.5]
    res, seen, calls = _taylor_runs(monkeypatch, model, Dtype.FLOAT64, "central", steps)
    assert calls == {"dd": 2, "arb": 1}
    assert {m for m, _ in seen[0][1][0]} >= {0, 1}  # Taylor answers at the tiny step (Arb) and at 1e-6 (dd)
    _assert_sin_truncation(model, res)


# -- Taylor mode: series shared by position (engine.lines._Scaled) -----------------------------

def _matrix_symbols(name, a):
    rows = ", ".join("[" + ", ".join(repr(float(v)) for v in r) + "]" for r in a)
    return f"{name} = {{ constant = true, value = [{rows}] }}"


def _series_of_every_coordinate(model, var, L, prec=192):
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    x = point[var].ravel()
    with ab.arb_precision(prec), series_cap(L):
        ev = LineEvaluator(model, point, var, prec=prec, series=L)
        ser = ev.losses(np.arange(x.size), [ab.flint.arb_series([ab.arb(float(v)), 1]) for v in x])
        return [coefficients(s, L) for s in ser]


def _shared_calls(monkeypatch):
    """Count the unary and binary nodes evaluated on shared series."""
    from verigrad.engine import lines

    calls = {"unary": 0, "binary": 0, "logsumexp": 0}
    for kind in calls:
        orig = getattr(lines.LineEvaluator, f"_scaled_{kind}")

        def spy(self, *a, _orig=orig, _kind=kind):
            out = _orig(self, *a)
            calls[_kind] += out is not None
            return out
        monkeypatch.setattr(lines.LineEvaluator, f"_scaled_{kind}", spy)
    return calls


def test_shared_series_equal_mpmath_taylor_coefficients(tmp_path, monkeypatch):
    """f(w) = Σ_r [log σ(z_r) + exp(z_r) z_r], z = X w + b: along w_i the series is
    Σ_r ψ_m(z_r) X_ri^m with ψ_m the Taylor coefficients of log σ(u) + u e^u at z_r (mpmath at
    200 digits). Every row of X @ w shares its position's series across the 8 coordinates; z
    feeds exp and the product (the same scale object), and X has exact zeros (scale 0)."""
    import mpmath

    rng = np.random.default_rng(5)
    X = np.round(rng.normal(size=(5, 8)), 3)
    X[1, 2] = X[3, 2] = X[0, 6] = 0.0
    w = np.round(rng.normal(scale=0.5, size=8), 4)
    model = write_case(tmp_path, "sum(log(sigmoid(z)) + exp(z) * z)",
                       _matrix_symbols("X", X) + "\nw = { value = [" + ", ".join(repr(float(v)) for v in w) + "] }\n"
                       "b = { constant = true, value = 0.25 }", 'z = "X @ w + b"')
    calls = _shared_calls(monkeypatch)
    L = 12
    got = _series_of_every_coordinate(model, "w", L)
    assert calls["unary"] >= 2 and calls["binary"] >= 2  # the shared path ran
    with mpmath.workdps(200), ab.arb_precision(700):
        z = [mpmath.fsum(mpmath.mpf(float(X[r, j])) * mpmath.mpf(float(w[j])) for j in range(8)) + mpmath.mpf(0.25)
             for r in range(5)]
        psi = [mpmath.taylor(lambda u: -mpmath.log1p(mpmath.exp(-u)) + mpmath.exp(u) * u, zr, L - 1) for zr in z]
        for i in range(8):
            for m in range(L):
                want = mpmath.fsum(psi[r][m] * mpmath.mpf(float(X[r, i])) ** m for r in range(5))
                a = got[i][m]
                assert a.contains(ab.arb(mpmath.nstr(want, 80)))
                assert float(a.rad()) <= 1e-40 * max(1.0, abs(float(want)))


def test_shared_series_equal_per_row_series(tmp_path, monkeypatch):
    """The same coefficients with sharing off (every row its own series), on graphs where it falls
    back part-way: two differently scaled entries meet (σ(X w) σ(Y w)), a division and a power of
    a shared series, and a transpose between shared nodes."""
    from verigrad.engine import sharedseries

    rng = np.random.default_rng(9)
    X, Y = np.round(rng.normal(size=(4, 6)), 3), np.round(rng.normal(size=(4, 6)), 3)
    sym = _matrix_symbols("X", X) + "\n" + _matrix_symbols("Y", Y) + "\nw = { value = [0.1, -0.2, 0.3, 0.05, -0.4, 0.25] }"
    losses = ["sum(sigmoid(X @ w) * sigmoid(Y @ w))", "sum(1 / (2 + tanh(X @ w)**2))",
              "sum(transpose(reshape(exp(X @ w), [2, 2])) * Y[0:2, 0:2])",
              # two changed inputs in each slice: the logsumexp itself is not shared, the sigmoid is
              "sum(logsumexp(reshape(X @ w, [2, 2]), axis=1)) + sum(sigmoid(Y @ w))"]
    for k, loss in enumerate(losses):
        d = tmp_path / str(k)
        d.mkdir()
        model = write_case(d, loss, sym)
        calls = _shared_calls(monkeypatch)
        got = _series_of_every_coordinate(model, "w", 10)
        assert calls["unary"] + calls["binary"] >= 1, loss  # shared, at least part of the way
        monkeypatch.setattr(sharedseries, "_SHARE_MIN", 10**9)
        ref = _series_of_every_coordinate(model, "w", 10)
        monkeypatch.undo()
        for ga, ra in zip(got, ref):
            for a, b in zip(ga, ra):
                assert a.overlaps(b)
                assert abs(float(a.mid()) - float(b.mid())) <= 1e-45 * max(1.0, abs(float(b.mid())))


def test_long_shared_series_agree_with_direct_evaluation(tmp_path, monkeypatch):
    """A logistic regression whose rows share their series: the split takes the long series
    (p + _SERIES_EXTRA_SHARED terms), which reaches steps past 0.1 in float32, and every part
    equals the split without Taylor mode (direct exact losses only) to float64."""
    from verigrad.engine import lines
    from verigrad.studies import split

    rng = np.random.default_rng(11)
    X = np.round(rng.normal(size=(40, 24)), 3)
    y = "[" + ", ".join(str(int(v)) for v in rng.integers(0, 2, 40)) + "]"
    model = write_case(tmp_path, "mean(-t*log(A) - (1 - t)*log(1 - A)) + 0.1/2 * sum(w**2)",
                       _matrix_symbols("X", X) + f"\nt = {{ constant = true, value = {y} }}\n"
                       "w = { shape = [24], init = \"normal(0, 0.2)\" }", 'A = "sigmoid(X @ w)"')
    steps = [float(h) for h in default_step_grid(get_scheme("central"), np.float32, count=30)]
    lengths, taken = [], []
    series, taylor = split._Line._series, split._Line.taylor

    def spy_series(self, W, L_own, L_shared):
        out = series(self, W, L_own, L_shared)
        lengths.append((out[1], L_shared))
        return out

    def spy_taylor(self, wanted):
        out = taylor(self, wanted)
        taken.extend(float(self.hps[m][i]) for m, i in out[0])
        return out
    monkeypatch.setattr(split._Line, "_series", spy_series)
    monkeypatch.setattr(split._Line, "taylor", spy_taylor)
    fast = fd_sweep_split(model, dtype=Dtype.FLOAT32, scheme="central", steps=steps)
    assert lengths and all(L == L_shared for L, L_shared in lengths)
    assert sum(h > 0.1 for h in taken) >= 24  # past the reach of the p + 21 series
    monkeypatch.setattr(lines, "series_ok", lambda model, variable: False)
    slow = fd_sweep_split(model, dtype=Dtype.FLOAT32, scheme="central", steps=steps)
    for a, b in zip(fast, slow):
        for part in ("error", "truncation", "step_error", "roundoff"):
            x, z = getattr(a, part)["w"], getattr(b, part)["w"]
            scale = np.maximum.reduce([np.abs(getattr(b, p)["w"]) for p in ("truncation", "step_error", "roundoff")])
            assert np.all(np.abs(x - z) <= 1e-14 * scale + 1e-300)


def test_shared_logsumexp_equals_mpmath_taylor_coefficients(tmp_path, monkeypatch):
    """f(W) = Σ_n [logsumexp_c (X Wᵀ)_nc − (X Wᵀ)_n,y_n]: along W_cj row n's logsumexp is
    log(Σ_c' e^(z_nc') + e^(z_nc)(e^(X_nj t) − 1)), one changed input per row, shared by the 4
    coordinates of row c of W. Coefficients against mpmath's Taylor series at 120 digits."""
    import mpmath

    rng = np.random.default_rng(21)
    X = np.round(rng.normal(size=(6, 4)), 3)
    Wv = np.round(rng.normal(scale=0.5, size=(3, 4)), 4)
    Y = np.eye(3)[[0, 2, 1, 1, 0, 2]]
    model = write_case(tmp_path, "sum(logsumexp(X @ W.T, axis=1)) - sum(Y * (X @ W.T))",
                       _matrix_symbols("X", X) + "\n" + _matrix_symbols("Y", Y) + "\n"
                       + _matrix_symbols("W", Wv).replace("constant = true, ", ""))
    calls = _shared_calls(monkeypatch)
    L = 10
    got = _series_of_every_coordinate(model, "W", L)
    assert calls["logsumexp"] >= 1
    with mpmath.workdps(120), ab.arb_precision(500):
        Z = [[mpmath.fsum(mpmath.mpf(float(X[n, j])) * mpmath.mpf(float(Wv[c, j])) for j in range(4)) for c in range(3)]
             for n in range(6)]
        for c in range(3):
            for j in range(4):
                def phi(t):
                    return mpmath.fsum(mpmath.log(mpmath.fsum(mpmath.exp(Z[n][k] + (X[n, j] * t if k == c else 0))
                                                              for k in range(3)))
                                       - sum(float(Y[n, k]) * (Z[n][k] + (X[n, j] * t if k == c else 0)) for k in range(3))
                                       for n in range(6))
                want = mpmath.taylor(phi, 0, L - 1)
                for m in range(L):
                    a = got[c * 4 + j][m]
                    assert abs(a - ab.arb(mpmath.nstr(want[m], 100))) < 1e-45 * max(1.0, abs(float(want[m])))
                    assert float(a.rad()) <= 1e-30


def test_with_series_equals_a_fresh_evaluator(tmp_path):
    """A Taylor-mode evaluator re-used at another length gives the very balls of one built anew
    (what the split does when a variable's series turn out not to be shared)."""
    model = write_case(tmp_path, "sum(100*(x[1:] - x[:-1]**2)**2 + (1 - x[:-1])**2) + sum(exp(x) / (2 + x))",
                       'x = { value = [0.3, -1.1, 0.7, 1.9, -0.4] }')
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    x = point["x"]
    with ab.arb_precision(128):
        long = LineEvaluator(model, point, "x", prec=128, series=20)
        with series_cap(20):
            long.losses(np.arange(2), [ab.flint.arb_series([ab.arb(float(v)), 1]) for v in x[:2]])
        results = []
        for ev in (long.with_series(9), LineEvaluator(model, point, "x", prec=128, series=9)):
            with series_cap(9):
                got = ev.losses(np.arange(5), [ab.flint.arb_series([ab.arb(float(v)), 1]) for v in x])
            assert all(s.length() <= 9 for s in got)
            results.append([[(a.mid(), a.rad()) for a in coefficients(s, 9)] for s in got])
        assert results[0] == results[1]
        assert long.series == 20  # the original keeps its length
        with pytest.raises(ValueError):
            LineEvaluator(model, point, "x", prec=128).with_series(9)
