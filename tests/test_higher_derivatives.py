"""Second and higher derivatives along a line: exact truth from the graph, exact T + S + R split,
models that scale as 1/h^q (h* ~ u^(1/4) for the three-point second difference), and the
Richardson tableau's error estimate graded over a sweep."""

from __future__ import annotations

from pathlib import Path

import mpmath
import numpy as np
import pytest

from verigrad.casefile.loader import load_case, load_case_text
from verigrad.engine.model import compile_case
from verigrad.errors import UsageError
from verigrad.fd import coordinate_direction, fd_gradient, user_direction
from verigrad.spec import Dtype
from verigrad.studies import run_study

ROOT = Path(__file__).resolve().parents[1]


def squire_trapp(x):
    return mpmath.exp(x) / mpmath.sqrt(mpmath.sin(x) ** 3 + mpmath.cos(x) ** 3)


@pytest.fixture(scope="module")
def model():
    return compile_case(load_case(ROOT / "cases" / "squire-trapp.toml"))


@pytest.fixture(scope="module")
def second(model):
    d = coordinate_direction(model)
    return {dt: run_study(model, dtype=dt, scheme="central(deriv=2)", direction=d) for dt in Dtype}


def test_second_derivative_truth_and_split(second):
    with mpmath.workdps(50):
        exact = mpmath.diff(squire_trapp, mpmath.mpf(1.5), 2)
    for dt, st in second.items():
        assert abs(st.truth - exact) < 1e-25 * abs(exact)
        ok = [r for r in st.rows if r.finite]
        assert len(ok) >= 25
        for r in ok:  # E = T + S + R, exactly up to the reported floats' rounding
            assert abs(r.error - (r.truncation + r.step + r.roundoff)) <= 1e-12 * max(abs(r.error), 1e-300) + 1e-15


def test_second_difference_models_scale_as_u_to_the_quarter(second):
    st64, st32 = second[Dtype.FLOAT64], second[Dtype.FLOAT32]
    assert st64.model.truncation_power == 2 and st64.model.roundoff_power == 2
    assert st64.observed.slopes["truncation"] == pytest.approx(2, abs=0.2)
    assert st64.observed.slopes["roundoff"] == pytest.approx(-2, abs=0.3)
    # h* = (2B/(2|A|))^(1/4) with B ~ u: the ratio of the optima is about (u32/u64)^(1/4) = 152
    ratio = st32.model.optimal_step / st64.model.optimal_step
    assert 0.5 * 152 < ratio < 2 * 152
    assert 0.1 < st64.observed.optimal_step / st64.model.optimal_step < 10
    regimes = {rg.kind: rg.model_slope for rg in st64.regimes}
    assert regimes.get("roundoff") == -2


def test_third_derivative_along_a_user_direction():
    case = load_case_text('name = "cubic"\nloss = "x[0]**3 * x[1] + exp(x[1])"\n'
                          "[symbols]\nx = { value = [0.5, -0.25] }\n", path="cubic.toml")
    model = compile_case(case)
    d = user_direction(model, {"x": [1.0, 2.0]})
    st = run_study(model, dtype=Dtype.FLOAT64, scheme="central(deriv=3)", direction=d, steps=[1e-3, 1e-2, 1e-1])
    # f(x + t e) along e = (1, 2): third derivative at t = 0, exactly
    with mpmath.workdps(50):
        x0, x1 = mpmath.mpf("0.5"), mpmath.mpf("-0.25")
        phi = lambda t: (x0 + t) ** 3 * (x1 + 2 * t) + mpmath.exp(x1 + 2 * t)
        exact = mpmath.diff(phi, 0, 3)
    assert abs(st.truth - exact) < 1e-20
    assert all(r.finite for r in st.rows)


def test_gradient_refuses_a_second_derivative_scheme(model):
    with pytest.raises(UsageError, match=r"estimates derivative 2, not the gradient"):
        fd_gradient(model, dtype=Dtype.FLOAT64, scheme="central(deriv=2)", step=1e-3)


def test_no_second_derivative_at_a_kink():
    model = compile_case(load_case(ROOT / "cases" / "kinks-relu-l1.toml"))
    d = coordinate_direction(model)
    with pytest.raises(UsageError, match="has no derivative of order 2 there"):
        run_study(model, dtype=Dtype.FLOAT64, scheme="central(deriv=2)", direction=d, steps=[1e-3])


def test_richardson_error_estimate_is_graded_over_the_sweep(model):
    d = coordinate_direction(model)
    st = run_study(model, dtype=Dtype.FLOAT64, scheme='richardson(base="central", terms=3)', direction=d)
    rows = [r for r in st.rows if r.finite]
    assert all(np.isfinite(r.error_estimate) and r.error_estimate >= 0 for r in rows)
    g = st.estimate_grade
    assert g.rows == len(rows) and g.verdict in ("trustworthy", "understated")
    assert any(n.startswith("error estimate ") for n in st.notes)
    plain = run_study(model, dtype=Dtype.FLOAT64, scheme="central", direction=d, steps=[1e-3])
    assert np.isnan(plain.rows[0].error_estimate) and plain.estimate_grade.verdict == "no estimate"
