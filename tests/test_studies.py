"""Finite-difference studies: the exact split and its models, against independent references."""

from __future__ import annotations

import json

import mpmath
import numpy as np
import pytest

from verigrad import Dtype, UsageError, compile_case, load_case_text
from verigrad.cli.main import main
from verigrad.fd import coordinate_direction, fd_gradient, random_direction
from verigrad.studies import run_study

F32, F64 = Dtype.FLOAT32, Dtype.FLOAT64


def _model(text):
    return compile_case(load_case_text(text, path="t.toml"))


EXP0 = 'name = "exp0"\nloss = "exp(x)"\n[symbols]\nx = { value = 0.0 }\n'
SQUIRE = 'name = "st"\nloss = "exp(x)/sqrt(sin(x)**3 + cos(x)**3)"\n[symbols]\nx = { value = 1.5 }\n'
QUAD = """
name = "quad"
seed = 4
loss = "sum((y - X @ b)**2) / 40"
[symbols]
X = { constant = true, shape = [20, 2], init = "normal" }
y = { constant = true, shape = [20], init = "normal" }
b = { shape = [2], init = "normal" }
"""


@pytest.mark.parametrize("scheme", ["forward", "central"])
def test_classic_exp_table_float64(scheme):
    """f = exp at 0: the float64 estimates are exactly those of the textbook formulas."""
    m = _model(EXP0)
    steps = 10.0 ** -np.arange(1, 10)
    st = run_study(m, dtype=F64, scheme=scheme, direction=coordinate_direction(m), steps=steps)
    for r, h in zip(st.rows, steps):
        if scheme == "forward":
            ref = (np.exp(h) - 1.0) / h
            with mpmath.workdps(50):
                exact_t = (mpmath.exp(mpmath.mpf(h)) - 1) / mpmath.mpf(h) - 1
        else:
            ref = (np.exp(h) * 0.5 + np.exp(-h) * -0.5) / h  # weights applied in float64, then / h
            with mpmath.workdps(50):
                exact_t = (mpmath.exp(mpmath.mpf(h)) - mpmath.exp(-mpmath.mpf(h))) / (2 * mpmath.mpf(h)) - 1
        assert r.h == h
        assert r.estimate == pytest.approx(ref, rel=1e-14, abs=1e-14)
        assert r.truncation == pytest.approx(float(exact_t), rel=1e-10)
    assert st.rows[0].error == pytest.approx(0.05170918075647624 if scheme == "forward" else 0.0016675001984409387,
                                             rel=1e-12)


def test_split_identity_and_slopes():
    m = _model(SQUIRE)
    d = coordinate_direction(m)
    for dt in (F32, F64):
        for scheme, order in [("forward", 1), ("central", 2), ("central4", 4)]:
            st = run_study(m, dtype=dt, scheme=scheme, direction=d)
            for r in st.rows:
                if r.finite:
                    # E = T + S + R (floats of exactly computed parts)
                    assert r.error == pytest.approx(r.truncation + r.step + r.roundoff, rel=1e-12, abs=1e-300)
            if dt is F64:
                assert st.observed.slopes["truncation"] == pytest.approx(order, abs=0.25)
                assert st.observed.slopes["roundoff"] == pytest.approx(-1, abs=0.25)
                # the observed optimum is where the model says, within a factor 10
                assert 0.1 < st.observed.optimal_step / st.model.optimal_step < 10


def test_truth_value_squire_trapp():
    m = _model(SQUIRE)
    st = run_study(m, dtype=F64, scheme="central", direction=coordinate_direction(m), steps=[1e-3, 1e-2])
    # Squire & Trapp (1998), Martins et al. (2003): f'(1.5) = 4.0534278938986201...
    assert float(st.truth) == pytest.approx(4.05342789389862, rel=1e-14)


def test_complex_step_reaches_about_one_ulp():
    m = _model(SQUIRE)
    st = run_study(m, dtype=F64, scheme="complex-step", direction=coordinate_direction(m), steps=[1e-20, 1e-30])
    ulp = np.spacing(4.05342789389862)
    for r in st.rows:
        assert r.step == 0
        assert abs(r.error) <= 4 * ulp


def test_representable_steps_remove_the_step_error():
    text = 'name = "big"\nloss = "sin(x)"\n[symbols]\nx = { value = 1000.3 }\n'
    m = _model(text)
    d = coordinate_direction(m)
    st = run_study(m, dtype=F32, scheme="central", direction=d, steps=np.logspace(-6, -1, 12))
    assert any(abs(r.step) > 1e-6 for r in st.rows)
    st2 = run_study(m, dtype=F32, scheme="central", direction=d, steps=np.logspace(-6, -1, 12), representable=True)
    assert all(r.step == 0 for r in st2.rows if r.finite)


def test_quadratic_central_truncation_vanishes():
    m = _model(QUAD)
    st = run_study(m, dtype=F64, scheme="central", direction=coordinate_direction(m, "b", (1,)))
    assert st.model.truncation_vanishes
    assert "vanishes" in st.model.note
    assert all(abs(r.truncation) < 1e-60 for r in st.rows if r.finite)
    st_f = run_study(m, dtype=F64, scheme="forward", direction=coordinate_direction(m, "b", (1,)))
    assert not st_f.model.truncation_vanishes  # forward differences see the curvature


def test_random_direction_is_seeded_and_unit():
    m = _model(QUAD)
    a, b = random_direction(m, 3), random_direction(m, 3)
    assert np.array_equal(a.vector["b"], b.vector["b"])
    assert np.linalg.norm(a.vector["b"]) == pytest.approx(1.0)
    st = run_study(m, dtype=F64, scheme="central", direction=a, steps=[1e-4, 1e-3])
    assert all(r.finite for r in st.rows)


def test_complex_step_refused_for_relu():
    m = _model('name = "r"\nloss = "sum(relu(x)**2)"\n[symbols]\nx = { value = [1.0, -2.0] }\n')
    with pytest.raises(UsageError, match=r"complex-step is refused .*relu\(x\)"):
        run_study(m, dtype=F64, scheme="complex-step", direction=coordinate_direction(m))


def test_fd_gradient_float32_no_upcast_and_accuracy():
    m = _model(QUAD)
    est = fd_gradient(m, dtype=F32, scheme="central", step=1e-2)
    assert est["b"].dtype == np.float32
    est64 = fd_gradient(m, dtype=F64, scheme="central", step=1e-6)
    from verigrad.casefile.loader import point_in_dtype
    from verigrad.engine.truth import certify

    t = certify(m, point_in_dtype(m.point, F64), F64)
    np.testing.assert_allclose(est64["b"], t.as_float64()["b"], rtol=1e-8)


def test_study_cli_json_and_plot(tmp_path):
    case = tmp_path / "st.toml"
    case.write_text(SQUIRE)
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    code = main(["study", str(case), "--scheme", "central", "--dtype", "float64", "--steps", "1e-8:1e-2:7",
                 "--json", str(out), "--plot", str(png), "--no-color"])
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["case"] == "st" and doc["variable"] == "x"
    assert doc["truth"].startswith("4.05342789389862")
    s = doc["studies"][0]
    assert s["dtype"] == "float64" and s["scheme"] == "central" and len(s["rows"]) == 7
    assert set(s["rows"][0]) >= {"h", "estimate", "error", "truncation", "step", "roundoff"}
    assert s["model"]["optimal_step"] > 0 and s["observed"]["slopes"]["truncation"] == pytest.approx(2, abs=0.3)
    assert png.stat().st_size > 10_000


def test_study_cli_bad_steps(tmp_path, capsys):
    case = tmp_path / "st.toml"
    case.write_text(SQUIRE)
    assert main(["study", str(case), "--steps", "1e-3:1e-5:4"]) == 2
    assert "FROM < TO" in capsys.readouterr().err


def test_fd_split_matches_study_and_identity():
    from verigrad.schemes import StepMode
    from verigrad.studies import fd_split

    m = _model(QUAD.replace('b = { shape = [2], init = "normal" }', 'b = { shape = [3], init = "normal" }')
               .replace("shape = [20, 2]", "shape = [20, 3]"))
    for dt, h in ((F32, 1e-2), (F64, 1e-6)):
        sp = fd_split(m, dtype=dt, scheme="central", step=h, step_mode=StepMode.ABSOLUTE)
        for i in range(3):
            st = run_study(m, dtype=dt, scheme="central", direction=coordinate_direction(m, "b", (i,)), steps=[h])
            r = st.rows[0]
            assert sp.error["b"][i] == pytest.approx(r.error, rel=1e-12, abs=1e-300)
            assert sp.step_error["b"][i] == pytest.approx(r.step, rel=1e-12, abs=1e-300)
            assert sp.roundoff["b"][i] == pytest.approx(r.roundoff, rel=1e-12, abs=1e-300)
            assert abs(sp.truncation["b"][i]) < 1e-40  # a quadratic: central differences are exact
            assert sp.error["b"][i] == pytest.approx(sp.truncation["b"][i] + sp.step_error["b"][i]
                                                     + sp.roundoff["b"][i], rel=1e-12, abs=1e-300)
        assert sp.estimate["b"].dtype == dt.numpy


def test_cone_arb_and_mpmath_exact_nodes_agree(monkeypatch):
    """Along a coordinate the sweep's exact values come from the line's cone; evaluating the whole
    loss at every node in Arb, or in mpmath, gives the same split."""
    from verigrad.studies import exact, sweep

    m = _model(SQUIRE)
    d = coordinate_direction(m)
    a = run_study(m, dtype=F32, scheme="central4", direction=d)
    monkeypatch.setattr(sweep, "_coordinate_line", lambda *args, **kw: None)
    b = run_study(m, dtype=F32, scheme="central4", direction=d)
    monkeypatch.setattr(exact, "_arb_losses", lambda *args: None)
    c = run_study(m, dtype=F32, scheme="central4", direction=d)
    for r1, r2, r3 in zip(a.rows, b.rows, c.rows):
        assert r1.finite == r2.finite == r3.finite
        if r1.finite:
            for r in (r2, r3):
                assert r1.error == r.error
                assert r1.truncation == pytest.approx(r.truncation, rel=1e-14, abs=1e-300)
                assert r1.step == pytest.approx(r.step, rel=1e-14, abs=1e-300)
                assert r1.roundoff == pytest.approx(r.roundoff, rel=1e-14, abs=1e-300)
                assert r1.noise == pytest.approx(r.noise, rel=1e-14, abs=1e-300)
    assert a.model.truncation_coefficient == pytest.approx(b.model.truncation_coefficient, rel=1e-14)


def test_a_measurement_that_contradicts_its_model_is_reported():
    """sigmoid'(40) ~ 4e-18: every float32 node rounds to the same loss, the estimate is 0 and the
    'round-off' part is flat, not ~1/h: the study must say that the model is contradicted."""
    m = _model('name = "sat"\nloss = "sigmoid(x)"\n[symbols]\nx = { value = 40.0 }\n')
    st = run_study(m, dtype=F32, scheme="central", direction=coordinate_direction(m))
    assert any("contradicts the 1/h model" in n for n in st.notes)
    st64 = run_study(m := _model(SQUIRE), dtype=F64, scheme="central", direction=coordinate_direction(m))
    assert not any("contradicts" in n for n in st64.notes)
