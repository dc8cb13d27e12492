"""Verdicts that never mislead (issue 17): finite-difference rows with nothing left to grade, rows
whose verdict and lines agree, ``loss_code`` graded against the declared loss, and the bug
shapes that name a term of the loss."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest

from verigrad.cli.main import main
from verigrad.runner.case import run_case

# ---------------------------------------------------------------------------
# item 3: finite-difference rows
# ---------------------------------------------------------------------------

TAN = """
name = "tan-pole"
loss = "sum(tan(x))"
[symbols]
x = { value = [0.5, 0.25] }
[check]
schemes = ["central8", "central"]
steps = [0.5, 1e-3]
"""


@pytest.fixture(scope="module")
def tan_report(tmp_path_factory):
    d = tmp_path_factory.mktemp("tan")
    (d / "tan.toml").write_text(TAN)
    return run_case(d / "tan.toml")


def test_fd_row_with_every_stencil_across_a_pole_is_no_estimate(tan_report):
    by = {(r.candidate, r.dtype): r for r in tan_report.results}
    for dt in ("float32", "float64"):
        r = by[("central8 h=5.0e-01", dt)]
        # tan has a pole at pi/2 = 0.5 + 1.07: the 8-point stencil from h = 0.5 reaches x +- 2
        assert r.verdict == "no estimate"
        assert r.message.startswith(
            f"tan-pole › central8 h=5.0e-01 › {dt}: no estimate: all 2 coordinates are excluded, their stencil "
            "crosses a kink or domain boundary (x[0]: stencil of central8 h=5.0e-1 leaves the domain of tan(x[0]) "
            "(cos(x) != 0) at distance 1.1e0; ...); the estimate's norm-wise relative error against the truth is "
            "2.91e+00; use a smaller step")
        # the errors reported are the estimate's real ones (not the 0 of an excluded entry), none called wrong
        assert r.grade.errors.normwise_relative == pytest.approx(2.9114, rel=1e-3)
        assert r.grade.wrong == () and r.met is None
    # the same scheme at a small step is graded normally
    assert by[("central8 h=1.0e-03", "float32")].verdict == "pass"


def test_fd_row_verdict_and_lines_agree_and_name_the_scheme(tan_report):
    for r in tan_report.results:
        g = r.grade
        crumb = f"tan-pole › {r.candidate} › "
        if r.verdict == "pass":
            assert not g.wrong and not g.diagnosis
        if r.verdict == "fail":
            tol = r.extra["tolerance"]
            assert g.errors.normwise_relative > tol
        for line in (r.message, *g.messages()):
            head = line.split(": ", 1)[0]
            assert head.startswith(crumb) and head.endswith(f" › {r.dtype}"), line
    # central h=0.5: both entries alone beyond what the scheme can reach, said on the row
    r = next(r for r in tan_report.results if r.candidate == "central h=5.0e-01" and r.dtype == "float64")
    assert r.verdict == "fail" and len(r.grade.wrong) == 2
    assert "; 2 of 2 entries beyond 6.2e-08 (= 3.7e-08 x ‖g‖₂, each alone beyond what the scheme can reach)" \
        in r.message
    assert r.grade.diagnosis[0].message.startswith("tan-pole › central h=5.0e-01 › x › float64: 2 of 2 entries wrong")
    # float32 at h = 1e-3: 159 ulps off, a pass for central differences, and no entry is called wrong
    r = next(r for r in tan_report.results if r.candidate == "central h=1.0e-03" and r.dtype == "float32")
    assert r.verdict == "pass" and r.grade.wrong == () and r.grade.errors.max_ulps > 100


def test_no_estimate_in_json_and_terminal(tmp_path, capsys):
    (tmp_path / "tan.toml").write_text(TAN)
    out = tmp_path / "r.json"
    assert main(["run", str(tmp_path / "tan.toml"), "--json", str(out), "--no-color"]) == 0
    doc = json.loads(out.read_text())
    rows = [r for r in doc["results"] if r["verdict"] == "no estimate"]
    assert len(rows) == 2 and all(r["wrong"] == [] for r in rows)
    text = capsys.readouterr().out
    assert "! tan-pole › central8 h=5.0e-01 › float32: no estimate: all 2 coordinates" in text


# ---------------------------------------------------------------------------
# item 1: loss_code graded against the declared loss
# ---------------------------------------------------------------------------

LOGREG = """
name = "logreg"
seed = 3
rng = "numpy"
loss = "mean(-y*log(A) - (1 - y)*log(1 - A)) + lam/2 * sum(w**2)"
loss_code = "impl/lr.py:{forward}"
[symbols]
X   = {{ constant = true, shape = [50, 5], init = "normal" }}
y   = {{ constant = true, shape = [50], init = "uniform(0, 1)" }}
lam = {{ constant = true, value = 0.1 }}
w   = {{ shape = [5], init = "normal(0, 0.5)" }}
b   = {{ value = 0.1 }}
[define]
A = "sigmoid(X @ w + b)"
[[candidate]]
name = "analytic"
code = "impl/lr.py:backward"
"""

LR_IMPL = '''
import numpy as np

def _data(X, y, w, b):
    a = 1 / (1 + np.exp(-(X @ w + b)))
    return a, np.sum(-y * np.log(a) - (1 - y) * np.log(1 - a)) / X.shape[0]

def forward(X, y, lam, w, b):
    return _data(X, y, w, b)[1] + lam / 2 * np.sum(w * w)

def forward_no_penalty(X, y, lam, w, b):
    return _data(X, y, w, b)[1]

def forward_sign(X, y, lam, w, b):
    return _data(X, y, w, b)[1] - lam / 2 * np.sum(w * w)

def forward_scaled(X, y, lam, w, b):
    return 1.5 * forward(X, y, lam, w, b)

def backward(X, y, lam, w, b):
    a = _data(X, y, w, b)[0]
    dz = (a - y) / X.shape[0]
    return {"w": X.T @ dz + lam * w, "b": np.asarray(np.sum(dz))}
'''


def _logreg(tmp_path, forward):
    (tmp_path / "impl").mkdir(exist_ok=True)
    (tmp_path / "impl" / "lr.py").write_text(LR_IMPL)
    (tmp_path / "lr.toml").write_text(LOGREG.format(forward=forward))
    return tmp_path / "lr.toml"


def test_loss_code_that_agrees_passes(tmp_path):
    rep = run_case(_logreg(tmp_path, "forward"))
    assert rep.ok and not rep.loss_code_mismatch
    for dt, lc in rep.loss_code.items():
        assert lc["verdict"] == "pass" and lc["message"] == "" and lc["ulps"] < 8
        # the tolerance is the candidate rule's floor: 32 x 4 ulps of the loss in the dtype
        ulp = float(np.spacing(np.dtype(dt).type(lc["value"])))
        assert lc["tolerance"] == pytest.approx(128 * ulp)
    for r in rep.results:
        assert r.extra["classic"]["outcome"] in ("agree", "false alarm")


def test_loss_code_missing_a_term_fails_the_case_and_names_the_term(tmp_path, capsys):
    path = _logreg(tmp_path, "forward_no_penalty")
    rep = run_case(path)
    assert rep.loss_code_mismatch and not rep.ok
    lc = rep.loss_code["float64"]
    assert lc["verdict"] == "fail"
    assert lc["explained_by"]["term"] == "lam/2 * sum(w**2)" and lc["explained_by"]["how"] == "missing"
    # the residual of "L - term" is a rounding error of the forward pass, far below the tolerance
    assert lc["explained_by"]["residual"] < lc["tolerance"]
    assert lc["error"] == pytest.approx(lc["explained_by"]["term_value"], rel=1e-12)
    assert lc["message"].startswith("logreg › loss_code › float64: loss_code disagrees with the declared loss: "
                                    "it returned ")
    assert "it equals the declared loss without the term lam/2 * sum(w**2) (= " in lc["message"]
    assert rep.loss_code["float32"]["explained_by"]["how"] == "missing"
    # the classic check differenced loss_code: never a "false alarm" about the correct backprop
    for r in rep.results:
        assert r.verdict == "pass" and r.met is True
        assert r.extra["classic"]["outcome"] == "other loss"
    # exit 1, the case line is red and the loss_code line says why
    assert main(["run", str(path), "--no-color"]) == 1
    out = capsys.readouterr().out
    assert "✗ logreg › loss_code › float64: loss_code disagrees with the" in out
    assert "1 loss_code\n    mismatch" in out or "1 loss_code mismatch" in out
    assert main(["run", str(path), "--no-color", "-v"]) == 1
    out = capsys.readouterr().out
    assert "false alarm" not in out.split("FAILED")[0] and "not comparable" in out


def test_loss_code_with_a_flipped_sign_and_an_unexplained_mismatch(tmp_path):
    rep = run_case(_logreg(tmp_path, "forward_sign"))
    lc = rep.loss_code["float32"]
    assert lc["verdict"] == "fail" and lc["explained_by"]["how"] == "sign flipped"
    assert "with the sign of the term lam/2 * sum(w**2) (= " in lc["message"]
    rep = run_case(_logreg(tmp_path, "forward_scaled"))
    lc = rep.loss_code["float64"]
    assert lc["verdict"] == "fail" and lc["explained_by"] is None and not rep.ok
    assert "equals the declared loss" not in lc["message"]


def test_loss_code_mismatch_in_json_and_junit(tmp_path):
    path = _logreg(tmp_path, "forward_no_penalty")
    out, xml = tmp_path / "r.json", tmp_path / "j.xml"
    assert main(["run", str(path), "--json", str(out), "--junit", str(xml), "--no-color", "-q"]) == 1
    doc = json.loads(out.read_text())
    assert doc["summary"]["loss_code_mismatches"] == 1 and doc["summary"]["ok"] is False
    assert doc["cases"][0]["loss_code"]["float64"]["verdict"] == "fail"
    text = xml.read_text()
    assert 'type="verigrad.LossCodeMismatch"' in text and "loss_code › float32" in text


# ---------------------------------------------------------------------------
# item 5: bug shapes beyond scale and transpose
# ---------------------------------------------------------------------------

CASES = __import__("pathlib").Path(__file__).resolve().parents[1] / "cases"


@pytest.fixture(scope="module")
def shipped_bug_shapes():
    out = {}
    for name in ("logistic-regression-l2", "linear-regression", "matrix-factorisation", "lasso-regression"):
        rep = run_case(CASES / f"{name}.toml", with_fd=False)
        assert rep.ok
        for r in rep.results:
            out[(name, r.candidate, r.dtype)] = r
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case, candidate, shape, text", [
    ("logistic-regression-l2", "forgot-l2-penalty", "missing_term",
     "w › {dt}: missing the gradient of lam/2 * sum(w**2) (w[2]: truth 0.3046, got 0.1906, that term's gradient "
     "0.114)"),
    ("lasso-regression", "forgot-l1-term", "missing_term",
     "w › {dt}: missing the gradient of lam * sum(abs(w)) (w[0]: truth 1.537, got 1.237, that term's gradient 0.3)"),
    ("logistic-regression-l2", "penalty-sign-flipped", "term_sign_flipped",
     "w › {dt}: the gradient of lam/2 * sum(w**2) has its sign flipped (w[2]: truth 0.3046, got 0.07656, that "
     "term's gradient 0.114)"),
    ("logistic-regression-l2", "w-summed-and-broadcast", "broadcast",
     "w › {dt}: the same value 0.4449 in every entry = the sum of every true entry: a reduction over every axis "
     "broadcast back (truth from -0.1088 to 0.3046)"),
    ("linear-regression", "constant-offset", "offset",
     "beta › {dt}: offset by 0.1 in every entry (truth 1.977, got 2.077)"),
    ("matrix-factorisation", "U-rows-reversed", "reversed",
     "U › {dt}: reversed along axis 0: got U[::-1, :] (U[0, 1]: truth -6.957, got 18.43)"),
])
def test_shipped_bug_shapes(shipped_bug_shapes, case, candidate, shape, text, dtype):
    r = shipped_bug_shapes[(case, candidate, dtype)]
    assert r.verdict == "fail" and r.met is True
    (d,) = r.grade.diagnosis
    assert d.shape.value == shape
    assert d.message == f"{case} › " + text.format(dt=dtype)
    rec = d.to_dict()
    if shape in ("missing_term", "term_sign_flipped"):
        assert rec["term"] in d.message
    else:
        assert "term" not in rec


def test_term_shapes_and_reversed_kernel_in_grade():
    """grade() alone: the term shapes need the terms' gradients; a flipped 2-D kernel is found on both axes."""
    import mpmath

    from verigrad.grading import BugShape, grade

    rng = np.random.default_rng(0)
    k = rng.standard_normal((3, 3))
    truth = {"k": np.array([[mpmath.mpf(float(x)) for x in row] for row in k], dtype=object)}
    g = grade(truth=truth, value={"k": k[::-1, ::-1].copy()}, baseline={"k": k}, dtype=np.float64, case="conv",
              candidate="c")
    (d,) = g.diagnosis
    assert d.shape is BugShape.REVERSED and d.region == "k[::-1, ::-1]"
    assert g.reason == "8 of 9 entries wrong in 1 variable: k (reversed: k[::-1, ::-1])"  # the centre stays
    # v = g - d_term: named only when the term's gradient is given
    d_term = 0.01 * 2 * k
    v = k - d_term
    g = grade(truth=truth, value={"k": v}, baseline={"k": k}, dtype=np.float64, case="conv", candidate="c",
              term_gradients={"0.01*sum(k**2)": {"k": d_term}})
    assert g.diagnosis[0].shape is BugShape.MISSING_TERM and g.diagnosis[0].term == "0.01*sum(k**2)"
    assert "missing the gradient of 0.01*sum(k**2)" in g.reason
    g = grade(truth=truth, value={"k": v}, baseline={"k": k}, dtype=np.float64, case="conv", candidate="c")
    assert g.diagnosis[0].shape is BugShape.SCALED  # 0.98 k: without the terms, a scale factor


# ---------------------------------------------------------------------------
# item 4 (part): the detection power of each grade, reported per variable
# ---------------------------------------------------------------------------


def test_detection_threshold_per_variable(shipped_bug_shapes):
    r = shipped_bug_shapes[("logistic-regression-l2", "analytic", "float32")]
    w, b = r.grade.variables
    # float32: the floor 32 x 4 ulps of the gradient's scale 0.3046 (ulp 2**-25) binds: tau = 2**-18
    assert w.tolerance == b.tolerance == 2.0 ** -18
    # the per-entry tolerance at the largest entry (docs/numerics.md) binds below that floor, and never
    # below 2 ulps of the entry itself: 2**-24 / 0.3046 = 1.96e-7 <= threshold < 2**-18 / 0.3046 = 1.25e-5
    assert 2.0 ** -24 / 0.30462460501 <= w.detection_threshold < 2.0 ** -18 / 0.30462460501
    assert w.detection_threshold == pytest.approx(4.12e-06, rel=0.1)  # 9 sigma, a seeded 128-run estimate (~6%)
    assert b.detection_threshold < 5.453e-05  # b's largest entry is only 0.07: the floor gave 5.45e-5
    assert w.to_dict()["detects_relative"] == w.detection_threshold
    r64 = shipped_bug_shapes[("logistic-regression-l2", "analytic", "float64")]
    assert r64.grade.variables[0].detection_threshold == pytest.approx(7.8346e-15, rel=1e-3)
