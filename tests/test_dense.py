"""Sweeps along a dense (random) direction on the double-double engine (verigrad.studies.dense):
the loss's power series along the line, cancellation-free changes between nearby points, and
the study's parts against the exact whole-graph path."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest

from verigrad import Dtype, compile_case, load_case_text
from verigrad.casefile.loader import load_case, point_in_dtype
from verigrad.engine import arb as ab
from verigrad.fd import random_direction
from verigrad.studies import run_study
from verigrad.studies.series import SeriesUnsupported, line_series

pytestmark = pytest.mark.skipif(not ab.available(), reason="python-flint is not installed")

CASES = Path(__file__).resolve().parent.parent / "cases"
F32, F64 = Dtype.FLOAT32, Dtype.FLOAT64


def _taylor(model, point, direction, order, prec=200):
    """Taylor coefficients of t -> loss(point + t e) by mpmath.diff of whole evaluations."""
    from verigrad.engine.backends import MPBackend
    from verigrad.expr.evaluate import evaluate

    entries = direction.entries()
    with mpmath.workprec(prec):
        base = {n: model.mp_values(n, point[n]) for n in model.leaves}

        def phi(t):
            leaves = {}
            for n, arr in base.items():
                a = arr.copy()
                fl = a.reshape(-1)
                for name, i, e in entries:
                    if name == n:
                        fl[i] = fl[i] + t * (mpmath.mpf(e.numerator) / e.denominator)
                leaves[n] = a[None, ...]
            return evaluate([model.loss], leaves, MPBackend())[0][0]

        return [mpmath.diff(phi, mpmath.mpf(0), j) / mpmath.factorial(j) for j in range(order + 1)]


@pytest.mark.parametrize("name", ["logistic-regression-l2", "softmax-regression", "attention-head", "rosenbrock-10d",
                                  "spring-chain", "saturation-sigmoid-tanh", "logsumexp-large", "lennard-jones-4"])
def test_line_series_contains_the_taylor_coefficients(name):
    m = compile_case(load_case(CASES / f"{name}.toml"))
    pt = point_in_dtype(m.point, F64)
    d = random_direction(m, 0)
    got = line_series(m, pt, d.vector, 6)
    ref = _taylor(m, pt, d, 5)
    scale = max(abs(r) for r in ref) + 1
    for (hi, lo, rad), r in zip(got, ref):
        with mpmath.workprec(200):
            mid = mpmath.mpf(hi) + mpmath.mpf(lo)
            # the ball contains the coefficient (up to mpmath.diff's own error) and is tight
            assert abs(mid - r) <= rad + 1e-40 * scale
            assert rad <= 1e-25 * scale


def test_line_series_of_a_polynomial_terminates():
    m = compile_case(load_case(CASES / "rosenbrock-10d.toml"))
    got, degree = line_series(m, m.point, random_direction(m, 3).vector, 8, with_degree=True)
    assert degree == 4 and all(c == (0.0, 0.0, 0.0) for c in got[5:])  # degree 4 along any line
    assert got[4][0] != 0.0
    # a truncated series says so: x^20 at 0 has zero coefficients up to t^19
    m = compile_case(load_case_text('name = "p"\nloss = "x**20 + x"\n[symbols]\nx = { value = 0.0 }\n',
                                    path="p.toml"))
    got, degree = line_series(m, m.point, {"x": np.array(1.0)}, 8, with_degree=True)
    assert degree is None and got[1][0] == 1.0


def test_line_series_refuses_a_point_on_a_kink():
    m = compile_case(load_case(CASES / "kinks-relu-l1.toml"))
    with pytest.raises(SeriesUnsupported):
        line_series(m, m.point, random_direction(m, 0).vector, 4)


@pytest.mark.parametrize("name", ["rosenbrock-10d", "softmax-regression", "gradient-checking-3layer", "spring-chain"])
def test_loss_changes_are_resolved_relative_to_the_change(name):
    """f(y) - f(z) for a rounded node y next to an exact one z, from the change pairs, contains the
    exact difference and is resolved relative to it (not to f)."""
    from verigrad.studies.dense import DenseLine

    m = compile_case(load_case(CASES / f"{name}.toml"))
    pt = point_in_dtype(m.point, F64)
    d = random_direction(m, 1)
    line = DenseLine(m, pt, d, length=4)
    ts = [Fraction(1, 2**20), Fraction(-3, 2**10)]
    ys = [line.float_nodes(t, np.float64) for t in ts]
    got_z = line.changes(ts)
    got_yz = line.changes(ts, ys)
    with mpmath.workprec(400):
        base = {n: m.mp_values(n, pt[n]) for n in m.leaves}
        f0 = m.mp_eval([m.loss], base, prec=400)[0]
        for t, y, dz, dyz in zip(ts, ys, got_z, got_yz):
            z = {}
            for n in m.leaves:
                if n in d.vector:
                    z[n] = np.array([mpmath.mpf(float(a)) + mpmath.mpf(t.numerator) / t.denominator * mpmath.mpf(float(e))
                                     for a, e in zip(pt[n].reshape(-1), d.vector[n].reshape(-1))],
                                    dtype=object).reshape(pt[n].shape)
                else:
                    z[n] = base[n]
            fz = m.mp_eval([m.loss], z, prec=400)[0]
            fy = m.mp_eval([m.loss], {**base, **{n: m.mp_values(n, y[n]) for n in y}}, prec=400)[0]
            for got, exact in ((dz, fz - f0), (dyz, fy - fz)):
                assert abs(ab.to_mpf(got) - exact) <= float(got.rad()) * (1 + 1e-9) + 1e-60
                if exact:
                    assert float(got.rad()) <= 2.0 ** -60 * abs(float(exact))


def test_float_nodes_are_rounded_once():
    from verigrad.engine.backends import round_fraction
    from verigrad.studies.dense import DenseLine

    m = compile_case(load_case(CASES / "softmax-regression.toml"))
    d = random_direction(m, 2)
    for dt in (F64, F32):
        pt = point_in_dtype(m.point, dt)
        line = DenseLine(m, pt, d, length=3)
        for t in (Fraction(1, 3 * 2**30), Fraction(7, 10), Fraction(-2, 2**52)):
            y = line.float_nodes(t, dt.numpy)
            for n, e in d.vector.items():
                x = pt[n].reshape(-1)
                exact = [float(round_fraction(Fraction(float(a)) + t * Fraction(float(b)), dt.numpy))
                         for a, b in zip(x, e.reshape(-1))]
                assert y[n].reshape(-1).tolist() == exact


@pytest.mark.parametrize("name,dtypes,schemes", [
    ("rosenbrock-10d", (F64, F32), ("forward", "central4")),
    ("logistic-regression-l2", (F64,), ("central4",)),
    pytest.param("softmax-regression", (F64, F32), ("forward", "central4"), marks=pytest.mark.slow),
    pytest.param("gradient-checking-3layer", (F64, F32), ("forward", "central4"), marks=pytest.mark.slow),
])
def test_dense_study_matches_the_exact_path(monkeypatch, name, dtypes, schemes):
    """The fast dense path (forced on a small case) reports the exact path's rows to the digits it
    proves (2^-40), the same finite rows, and the same model."""
    from verigrad.studies import sweep

    m = compile_case(load_case(CASES / f"{name}.toml"))
    d = random_direction(m, 0)
    for dt in dtypes:
        for scheme in schemes:
            a = run_study(m, dtype=dt, scheme=scheme, direction=d)
            with monkeypatch.context() as mp:
                mp.setattr(sweep, "_DENSE_EXACT_WORK", 0)
                b = run_study(m, dtype=dt, scheme=scheme, direction=d)
            assert float(a.truth) == pytest.approx(float(b.truth), rel=1e-25)
            assert a.model.truncation_coefficient == pytest.approx(b.model.truncation_coefficient, rel=1e-14)
            assert a.model.truncation_vanishes == b.model.truncation_vanishes
            for r1, r2 in zip(a.rows, b.rows):
                assert r1.finite == r2.finite
                if not r1.finite:
                    continue
                scale = max(abs(r1.error), abs(r1.truncation), abs(r1.step), abs(r1.roundoff))
                for k in ("error", "truncation", "step", "roundoff", "noise"):
                    assert getattr(r1, k) == pytest.approx(getattr(r2, k), rel=2.0 ** -38, abs=1e-25 * scale)


def test_dense_complex_step_on_a_large_graph_is_left_out_with_a_note(monkeypatch):
    from verigrad.studies import sweep

    m = compile_case(load_case(CASES / "rosenbrock-10d.toml"))
    monkeypatch.setattr(sweep, "_DENSE_EXACT_WORK", 0)
    st = run_study(m, dtype=F64, scheme="complex-step", direction=random_direction(m, 0))
    assert not any(r.finite for r in st.rows)
    assert any("complex step" in n and "coordinate" in n for n in st.notes)


def test_memory_failure_is_a_message_and_exit_2(monkeypatch, capsys):
    import importlib

    main = importlib.import_module("verigrad.cli.main")
    study = importlib.import_module("verigrad.cli.study")

    def out_of_memory(args, console, err):
        raise MemoryError

    monkeypatch.setattr(study, "command", out_of_memory)
    assert main.main(["study", str(CASES / "squire-trapp.toml")]) == 2
    err = capsys.readouterr().err
    assert "out of memory" in err and "--variable/--index" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_large_dense_sweep_runs_on_the_fast_engine():
    """A 20,000-dimensional Rosenbrock along a random direction: no whole exact evaluation, every row
    resolved (T from the series at small steps, S from the change pairs)."""
    m = compile_case(load_case_text('''
name = "rb"
seed = 2
loss = "sum(100*(x[1:] - x[:-1]**2)**2 + (1 - x[:-1])**2)"
[symbols]
x = { shape = [20000], init = "uniform(-2, 2)" }
''', path="rb.toml"))
    st = run_study(m, dtype=F64, scheme="central", direction=random_direction(m, 0))
    assert all(r.finite for r in st.rows)
    assert st.model.truncation_power == 2 and not st.model.truncation_vanishes
    assert abs(st.observed.slopes["truncation"] - 2) < 0.2
