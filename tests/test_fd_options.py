"""Finite-difference options of case files, the CLI and Python: scheme strings in [check], steps per
scheme and per coordinate, user directions (numdifftools' [1, -1]/sqrt(2)), adaptive methods in
``run`` and ``study`` with their error estimates graded, one-sided derivatives on request."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mpmath
import numpy as np
import pytest

from verigrad.casefile.loader import load_case, point_in_dtype
from verigrad.cli.main import main
from verigrad.engine.model import compile_case
from verigrad.errors import CaseError, UsageError
from verigrad.fd import user_direction
from verigrad.schemes import get_scheme
from verigrad.spec import Dtype

ROOT = Path(__file__).resolve().parents[1]

# numdifftools' test function and point (tests/test_numdifftools.py::test_directional_diff): the
# directional derivative along [1, -1]/sqrt(2) is published as 743.87633380824832 (= 526 sqrt(2))
ROSEN = '''name = "rosen-nd"
loss = "(1 - x[0])**2 + 105*(x[1] - x[0]**2)**2"

[symbols]
x = { value = [2.0, 3.0] }
'''


def write(tmp_path, text: str, name: str = "case.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_check_schemes_accept_the_syntax(tmp_path):
    case = load_case(write(tmp_path, ROSEN + '[check]\nschemes = ["central", "ridders(h0=0.1)", '
                                           '"stencil(offsets=[-2, -1, 0, 1, 2])", '
                                           '\'richardson(base="central", terms=3)\', "numderiv()"]\n'))
    assert case.check.schemes[1] == "ridders(h0=0.1)"


@pytest.mark.parametrize("check, field, message", [
    ('schemes = ["centre"]', "[check] schemes", r"unknown scheme 'centre'"),
    ('schemes = ["ridders(h=1)"]', "[check] schemes", r"unknown parameter h=1 \(did you mean 'h0'\?\)"),
    ('schemes = ["central(deriv=2)"]', "[check] schemes", r"estimates derivative 2; \[check\] schemes estimate "
                                                          r"the gradient"),
    ('schemes = ["central"]\nsteps = { forward = [1e-3] }', "[check] steps.forward",
     r"'forward' is not one of \[check\] schemes"),
    ('schemes = ["central"]\nsteps = { central = [] }', "[check] steps.central", r"the list is empty"),
    ('coordinate_steps = { y = 1e-3 }', "[check] coordinate_steps.y", r"'y' is not a variable"),
    ('coordinate_steps = { x = [1e-3, 1e-3, 1e-3] }', "[check] coordinate_steps.x",
     r"shape \[3\] does not match x of shape \[2\]"),
    ('coordinate_steps = { x = [1e-3, -1e-3] }', "[check] coordinate_steps.x", r"step -0\.001 must be > 0"),
])
def test_check_keys_are_validated(tmp_path, check, field, message):
    with pytest.raises(CaseError, match=message) as info:
        load_case(write(tmp_path, ROSEN + "[check]\n" + check + "\n"))
    assert f"::{field}:" in str(info.value)


@pytest.mark.parametrize("directions, message", [
    ("diag = { y = [1, -1] }", r"'y' is not a variable"),
    ("diag = { x = [1, -1, 0] }", r"shape \[3\] does not match x of shape \[2\]"),
    ("diag = { x = [0, 0] }", r"the direction has no nonzero entry"),
    ("diag = { x = 1 }", r"one number for x of shape \[2\]"),
    ("random = { x = [1, 0] }", r"invalid direction name 'random'"),
    ('diag = { x = "missing.npy" }', r"not found"),
])
def test_directions_are_validated(tmp_path, directions, message):
    with pytest.raises(CaseError, match=message):
        load_case(write(tmp_path, ROSEN + "[directions]\n" + directions + "\n"))


def test_numdifftools_direction_truth(tmp_path):
    """The exact derivative along the float64 values of [1, -1]/sqrt(2) is g . e = 1052 fl(1/sqrt 2)."""
    np.save(tmp_path / "diag.npy", np.array([1.0, -1.0]))
    case = load_case(write(tmp_path, ROSEN + '[directions]\ndiag = { x = [1, -1], normalize = true }\n'
                                             'fromfile = { x = "diag.npy", normalize = true }\n'))
    model = compile_case(case)
    spec = case.directions[0]
    d = user_direction(model, dict((k, list(v)) for k, v in spec.vectors), normalize=spec.normalize, label="diag")
    e = d.vector["x"]
    assert e.tolist() == (np.array([1.0, -1.0]) / np.linalg.norm([1.0, -1.0])).tolist()  # numdifftools' vec/norm
    from verigrad.engine.truth import certify
    from verigrad.studies.sweep import _directional_truth

    truth = certify(model, point_in_dtype(model.point, Dtype.FLOAT64), Dtype.FLOAT64, digits=30)
    with mpmath.workdps(40):
        exact = _directional_truth(truth, d)
        assert exact == 842 * mpmath.mpf(e[0]) - 210 * mpmath.mpf(e[1])
        # the published value to its 17 digits, and 526 sqrt(2) up to the rounding of e
        assert abs(exact - mpmath.mpf("743.87633380824832")) < 1e-12
        assert abs(exact / (526 * mpmath.sqrt(2)) - 1) < 2e-16
    # Ridders along it, as numdifftools' Derivative would
    from verigrad.fd import adaptive_directional

    est = adaptive_directional(model, dtype=Dtype.FLOAT64, method=get_scheme("ridders(h0=0.1)"), direction=d)
    assert abs(est.value - 743.87633380824832) < 1e-10


def test_user_direction_errors(tmp_path):
    model = compile_case(load_case(write(tmp_path, ROSEN)))
    with pytest.raises(UsageError, match="'y' is not a variable"):
        user_direction(model, {"y": [1, 0]})
    with pytest.raises(UsageError, match=r"x has shape \[3\], the variable has shape \[2\]"):
        user_direction(model, {"x": [1, 0, 0]})
    with pytest.raises(UsageError, match="every entry is 0"):
        user_direction(model, {"x": [0, 0]})
    one_hot = user_direction(model, {"x": [0, 1]})
    assert one_hot.variable == "x" and one_hot.index == (1,)


def test_run_grades_adaptive_methods_and_their_error_estimates(tmp_path):
    path = write(tmp_path, ROSEN + '[check]\ndtypes = ["float64"]\n'
                                   'schemes = ["central", "ridders(h0=0.1)", "numderiv()", '
                                   '\'richardson(base="central", terms=3)\']\n'
                                   'steps = { central = [1e-6, 1e-5] }\n'
                                   '[check.coordinate_steps]\nx = [1e-3, 1e-2]\n')
    out = tmp_path / "r.json"
    assert main(["run", str(path), "--json", str(out), "-q"]) == 0
    rows = {r["candidate"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"central h=1.0e-06", "central h=1.0e-05", "ridders(h0=0.1)",
                         "numderiv() h=per-coordinate", 'richardson(base="central", terms=3) h=per-coordinate'}
    rid = rows["ridders(h0=0.1)"]
    assert rid["verdict"] == "pass" and rid["fd"]["error_estimate"]["verdict"] == "trustworthy"
    assert rid["fd"]["status"] == {"converged": 2, "not converged": 0, "non-finite": 0}
    assert rows['richardson(base="central", terms=3) h=per-coordinate']["fd"]["error_estimate"]["entries"] == 2
    assert rows['richardson(base="central", terms=3) h=per-coordinate']["step"] is None
    # numDeriv's estimate measures only its last correction: understated where round-off dominates
    assert rows["numderiv() h=per-coordinate"]["fd"]["error_estimate"]["verdict"] in ("trustworthy", "understated")


def test_per_coordinate_steps_are_used_as_given(tmp_path):
    from verigrad.fd import fd_gradient
    from verigrad.runner.fdcheck import _scheme_steps
    from verigrad.engine.truth import certify

    case = load_case(write(tmp_path, ROSEN + '[check]\nschemes = ["forward"]\n'
                                             '[check.coordinate_steps]\nx = [1e-3, 1e-2]\n'))
    model = compile_case(case)
    truth = certify(model, point_in_dtype(model.point, Dtype.FLOAT64), Dtype.FLOAT64)
    (steps,), _ = _scheme_steps(model, truth, get_scheme("forward"), "forward")
    assert steps["x"].tolist() == [1e-3, 1e-2]
    est = fd_gradient(model, dtype=Dtype.FLOAT64, scheme="forward", step=steps)
    x0, x1 = 2.0, 3.0
    f = lambda a, b: (1 - a) ** 2 + 105 * (b - a * a) ** 2
    assert est["x"][0] == (f(x0 + 1e-3, x1) - f(x0, x1)) / 1e-3
    assert est["x"][1] == (f(x0, x1 + 1e-2) - f(x0, x1)) / 1e-2


# ---------------------------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------------------------

def test_cli_scheme_prints_weights_and_leading_term(capsys, tmp_path):
    assert main(["scheme", "stencil(offsets=[-1, 0, 1], deriv=2)", "--no-color", "--json",
                 str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "f''(x) ~ [f(x-h) - 2 f(x) + f(x+h)] / h^2" in out
    assert "weights       1, -2, 1   (exact)" in out
    assert "leading term  1/12 f^(4)(x) h^2" in out
    doc = json.loads((tmp_path / "s.json").read_text())["schemes"][0]
    assert doc["weights"] == ["1", "-2", "1"] and doc["leading_term"] == {"coefficient": "1/12", "derivative": 4}
    assert main(["scheme", "ridders(h0=0.1)", "numderiv()", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "h_i = h0 / 1.4^i, i = 0..9" in out and "8, leading term -1/1486356480 f^(9)(x) h^8" in out
    assert main(["scheme", "ridders(h=1)"]) == 2
    assert "unknown parameter h=1 (did you mean 'h0'?)" in capsys.readouterr().err


def test_cli_study_adaptive_direction_and_errors(capsys, tmp_path):
    path = write(tmp_path, ROSEN + '[directions]\ndiag = { x = [1, -1], normalize = true }\n')
    out = tmp_path / "st.json"
    code = main(["study", str(path), "--dtype", "float64", "--direction", "diag", "--scheme", "ridders()",
                 "--steps", "1e-2,1e-1", "--json", str(out), "--no-color"])
    assert code == 0
    text = capsys.readouterr().out
    assert "rosen-nd › diag › float64 › ridders(con=1.4, ntab=10, safe=2)" in text
    assert "743.876333808247" in text
    doc = json.loads(out.read_text())
    assert doc["kind"] == "adaptive-study" and doc["studies"] == [] and doc["direction"] == "diag"
    import jsonschema

    jsonschema.validate(doc, json.loads((ROOT / "verigrad" / "schemas" / "study.schema.json").read_text()))
    rows = doc["adaptive_studies"][0]["rows"]
    assert [r["h"] for r in rows] == [1e-2, 1e-1]
    for r in rows:  # E = T + S + R
        assert abs(r["error"] - (r["truncation"] + r["step"] + r["roundoff"])) <= 1e-12 * abs(r["error"]) + 1e-25
    # inline values, normalised: the same direction
    assert main(["study", str(path), "--dtype", "float64", "--direction", "x=[1, -1]", "--normalize",
                 "--scheme", "central", "--steps", "1e-4", "--no-color"]) == 0
    assert "743.876333808247" in capsys.readouterr().out
    assert main(["study", str(path), "--direction", "diagonal"]) == 2
    assert "the case file's directions: diag" in capsys.readouterr().err
    assert main(["study", str(path), "--scheme", "ridders(h=1)"]) == 2
    assert "--scheme: scheme 'ridders(h=1)': unknown parameter h=1" in capsys.readouterr().err
    np.save(tmp_path / "d.npy", np.array([0.0, 1.0]))
    assert main(["study", str(path), "--dtype", "float64", "--direction-file", str(tmp_path / "d.npy"),
                 "--scheme", "central", "--steps", "1e-4", "--no-color"]) == 0
    assert "rosen-nd › x[1] › float64" not in capsys.readouterr().out  # a user direction keeps its label


def test_cli_study_one_sided_at_a_kink(capsys):
    case = ROOT / "cases" / "kinks-relu-l1.toml"
    assert main(["study", str(case), "--dtype", "float64", "--one-sided", "--steps", "1e-6,1e-4", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "one-sided derivatives d- = 0.25000000000000000000, d+ = 1.2500000000000000000" in out
    assert "forward (order 1)" in out and "backward (order 1)" in out


def test_adaptive_study_splits_the_returned_entry_exactly():
    from verigrad.fd import coordinate_direction
    from verigrad.studies.adaptive import run_adaptive_study

    case = load_case(ROOT / "cases" / "squire-trapp.toml")
    model = compile_case(case)
    d = coordinate_direction(model)
    st = run_adaptive_study(model, dtype=Dtype.FLOAT64, method=get_scheme("ridders()"), direction=d,
                            steps=[1e-3, 1e-2, 0.1, 0.2])
    with mpmath.workdps(30):
        assert abs(st.truth - mpmath.mpf("4.0534278938986206577")) < 1e-18
    for r in st.rows:
        assert r.finite and r.status == "converged"
        assert abs(r.error - (r.truncation + r.step + r.roundoff)) <= 1e-14 * abs(r.error) + 1e-30
        assert r.order == 2 * (r.entry[0] + 1)
    assert min(abs(r.error) for r in st.rows) < 1e-12
    assert st.grade.rows == 4 and st.grade.verdict in ("trustworthy", "understated")
    # numDeriv in float32: its last correction misses the round-off of its finest differences
    nd = run_adaptive_study(model, dtype=Dtype.FLOAT32, method=get_scheme("numderiv()"), direction=d,
                            steps=[1e-3, 1e-2])
    assert nd.grade.understated >= 1 and any("understates" in n for n in nd.notes)


def test_grade_error_estimates_flags_understatement():
    from verigrad.studies import grade_error_estimates

    g = grade_error_estimates([1e-3, 1e-2, 1e-1], [1e-12, -5e-9, 2e-6], [1e-11, 1e-10, 1e-6])
    assert (g.rows, g.understated, g.verdict) == (3, 1, "understated")
    assert g.max_ratio == pytest.approx(50) and g.worst_step == 1e-2
    assert grade_error_estimates([1.0], [float("nan")], [1.0]).verdict == "no estimate"
