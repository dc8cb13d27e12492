"""`verigrad run`, `truth`, `show` and the Python API, end to end on small cases."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import sympy

from verigrad.api import assert_gradient, check_gradient
from verigrad.cli.main import main
from verigrad.runner.case import run_case

CASE = """
name = "lin"
seed = 5
loss = "sum((y - X @ b)**2) / (2*20) + 0.5 * sum(W**2) * c"
[symbols]
X = { constant = true, shape = [20, 3], init = "normal" }
y = { constant = true, shape = [20], init = "normal" }
c = { constant = true, value = 0.1 }
b = { shape = [3], init = "normal" }
W = { shape = [2, 3], init = "normal" }
[[candidate]]
name = "good"
code = "impl/g.py:good"
[[candidate]]
name = "double-b"
code = "impl/g.py:double_b"
expect = "fail"
[[candidate]]
name = "crashes"
code = "impl/g.py:crashes"
expect = "fail"
[[candidate]]
name = "transposed"
code = "impl/g.py:transposed"
expect = "fail"
[[candidate]]
name = "upcast"
code = "impl/g.py:upcast"
[[candidate]]
name = "upcast-ok"
code = "impl/g.py:upcast"
allow_upcast = true
[[candidate]]
name = "upcast-wrong"
code = "impl/g.py:upcast_wrong"
expect = "fail"
"""

IMPL = """
import numpy as np

def good(X, y, b, W, c):
    r = X @ b - y
    return {"b": X.T @ r / len(y), "W": c * W}

def double_b(X, y, b, W, c):
    g = good(X, y, b, W, c)
    g["b"] = 2 * g["b"]
    return g

def crashes(**kw):
    raise RuntimeError("boom")

def transposed(X, y, b, W, c):
    g = good(X, y, b, W, c)
    g["W"] = g["W"].T
    return g

def upcast(X, y, b, W, c):
    g = good(X, y, b, W, c)
    return {k: v.astype(np.float64) for k, v in g.items()}

def upcast_wrong(X, y, b, W, c):
    g = upcast(X, y, b, W, c)
    g["W"] = 2 * g["W"]
    return g
"""


@pytest.fixture
def case_dir(tmp_path):
    (tmp_path / "impl").mkdir()
    (tmp_path / "impl" / "g.py").write_text(IMPL)
    (tmp_path / "lin.toml").write_text(CASE)
    return tmp_path


def test_run_case_verdicts(case_dir):
    rep = run_case(case_dir / "lin.toml")
    by = {(r.candidate, r.dtype): r for r in rep.results}
    for dt in ("float32", "float64"):
        assert by[("good", dt)].verdict == "pass"
        assert by[("double-b", dt)].verdict == "fail"
        d = by[("double-b", dt)].grade.to_dict()["diagnosis"]
        assert any(x["variable"] == "b" and x["factor"] == pytest.approx(2.0) for x in d)
        assert by[("crashes", dt)].verdict == "error"
        assert "RuntimeError: boom" in by[("crashes", dt)].message
        assert by[("transposed", dt)].verdict == "fail"
        assert "transposed" in by[("transposed", dt)].message
    # float64 returned for float32 inputs: float32 never ran, a verdict of its own
    up = by[("upcast", "float32")]
    assert up.grade.dtype_mismatch and up.verdict == "not exercised" and up.met is False
    assert up.grade.reason == ("float32 not exercised: returned b as float64, W as float64 "
                                      "for float32 inputs; all 9 entries within tolerance (max 1.54 ulps, norm-wise relative 3.45e-08)")
    assert by[("upcast-ok", "float32")].verdict == "not exercised" and by[("upcast-ok", "float32")].met is True
    # in float64 the same code is exercised and passes
    assert by[("upcast", "float64")].verdict == "pass" and by[("upcast", "float64")].met is True
    # a wrong gradient returned as float64 is still a failure, caught
    assert by[("upcast-wrong", "float32")].verdict == "fail" and by[("upcast-wrong", "float32")].met is True
    assert by[("crashes", "float32")].met is False  # crashed, not caught


def test_run_cli_exit_codes_and_json(case_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["run", str(case_dir), "--json", str(out), "--no-color"])
    assert code == 1  # the crashing fail-candidate is an unmet expectation
    doc = json.loads(out.read_text())
    assert doc["summary"]["expectations_not_met"] == 3  # crashes x 2, upcast in float32
    up = [r for r in doc["results"] if r["candidate"] == "upcast" and r["dtype"] == "float32"][0]
    assert up["verdict"] == "not exercised" and up["met"] is False
    keys = {"case", "candidate", "dtype", "verdict", "expect", "met", "errors", "wrong", "diagnosis"}
    assert all(keys <= set(r) for r in doc["results"])
    wrong = [r for r in doc["results"] if r["candidate"] == "double-b" and r["dtype"] == "float64"][0]["wrong"]
    assert {tuple(w["index"]) for w in wrong if w["variable"] == "b"} == {(0,), (1,), (2,)}
    text = capsys.readouterr().out
    # a caught bug is one line of its case; the unmet expectation (the crash) gets its block
    assert "scaled by 2" not in text and "crashes › float64: expected fail, but it could not be graded" in text
    assert main(["run", str(case_dir), "--no-color", "-v"]) == 1
    assert "double-b › float64" in capsys.readouterr().out  # -v: every diagnosis, named by candidate


def test_run_cli_bad_path(capsys):
    assert main(["run", "/nonexistent/dir"]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_truth_cli_json(case_dir, tmp_path):
    out = tmp_path / "t.json"
    assert main(["truth", str(case_dir / "lin.toml"), "--dtype", "float64", "--digits", "30", "--json", str(out),
                 "--no-color"]) == 0
    doc = json.loads(out.read_text())
    assert doc["case"] == "lin" and doc["dtype"] == "float64" and doc["digits"] == 30
    assert len(doc["gradient"]["W"]) == 2 and len(doc["gradient"]["W"][0]) == 3
    # W's gradient is c*W exactly: 0.1 * W (c = 0.1 as a float64 value)
    from fractions import Fraction

    import mpmath

    W = np.array(doc["point"]["W"])
    with mpmath.workdps(40):
        ref = mpmath.mpf(Fraction(0.1).numerator) / Fraction(0.1).denominator * mpmath.mpf(W[1, 2])
        assert abs(mpmath.mpf(doc["gradient"]["W"][1][2]) - ref) < 1e-29 * abs(ref)


def test_show_prints_gradient(case_dir, capsys):
    assert main(["show", str(case_dir / "lin.toml"), "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "∂ℒ/∂b" in out and "∂ℒ/∂W" in out
    assert main(["show", str(case_dir / "lin.toml"), "--latex"]) == 0
    assert r"\frac{\partial \mathcal{L}}{\partial W}" in capsys.readouterr().out


def test_api_sympy_and_case_file(case_dir):
    x, y = sympy.symbols("x y")
    good = check_gradient(sympy.exp(x) * sympy.cos(y), lambda x, y: {"x": np.exp(x) * np.cos(y),
                                                                      "y": -np.exp(x) * np.sin(y)},
                          point={"x": 0.3, "y": 1.1})
    assert good.passed
    with pytest.raises(AssertionError, match=r"y › float64: sign flipped|y › float64: scaled by -1"):
        assert_gradient(sympy.exp(x) * sympy.cos(y), lambda x, y: {"x": np.exp(x) * np.cos(y),
                                                                  "y": np.exp(x) * np.sin(y)},
                        point={"x": 0.3, "y": 1.1})
    import importlib.util

    spec = importlib.util.spec_from_file_location("g", case_dir / "impl" / "g.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert check_gradient(case_dir / "lin.toml", mod.good).passed


def test_one_ill_conditioned_entry_does_not_loosen_the_others(tmp_path):
    """(1 - cos x)/x^2: the float baseline has no correct digit at x = 1e-4; a 4x error at x = 3e-3
    (true gradient -2.5e-4) must still fail, and the stable gradient must pass."""
    case = tmp_path / "c.toml"
    case.write_text('name = "c"\nloss = "sum((1 - cos(x)) / x**2)"\n[symbols]\nx = { value = [0.0001, 0.003, 0.7] }\n')

    def stable(x):
        s = np.sin(x / 2)
        return {"x": (2 * s * np.cos(x / 2) * x - 4 * s * s) / x**3}  # d/dx 2 sin^2(x/2)/x^2, still cancels at 1e-4

    def series(x):
        return {"x": np.where(x < 0.5, -x / 12 + x**3 / 180 - x**5 / 6720, (x * np.sin(x) - 2 * (1 - np.cos(x))) / x**3)}

    def wrong_middle(x):
        g = series(x)["x"].copy()
        g[1] *= 5
        return {"x": g}

    assert check_gradient(case, series, dtypes=["float64"]).passed
    res = check_gradient(case, wrong_middle, dtypes=["float64"])
    assert not res.passed
    assert [w.index for w in res.grades[0].wrong] == [(1,)]
    assert any("no correct digit" in m for m in res.grades[0].warnings)


def test_jobs_give_byte_identical_reports(tmp_path):
    import pathlib

    data = pathlib.Path(__file__).parent / "data" / "reports"
    docs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"r{jobs}.json"
        code = main(["run", str(data / "linreg.toml"), str(data / "matrix.toml"), "--jobs", jobs, "--json", str(out),
                     "--no-color", "-q"])
        doc = json.loads(out.read_text())
        doc.pop("timing")
        docs.append((code, json.dumps(doc)))
    assert docs[0] == docs[1]


def test_interrupted_run_still_writes_valid_reports(tmp_path, monkeypatch):
    import pathlib
    import xml.etree.ElementTree as ET

    from verigrad.runner import case as runner

    data = pathlib.Path(__file__).parent / "data" / "reports"
    real = runner.run_case
    calls = []

    def flaky(path, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, **kw)

    monkeypatch.setattr(runner, "run_case", flaky)
    out, junit = tmp_path / "r.json", tmp_path / "j.xml"
    code = main(["run", str(data / "linreg.toml"), str(data / "matrix.toml"), "--json", str(out),
                 "--junit", str(junit), "--no-color", "-q"])
    assert code == 130
    doc = json.loads(out.read_text())
    assert doc["complete"] is False
    assert [c["case"] for c in doc["cases"]] == ["tiny-linreg"]
    assert doc["results"] and all(r["case"] == "tiny-linreg" for r in doc["results"])
    # interrupted is never green: not ok in the JSON, an error in the JUnit file
    assert doc["summary"]["interrupted"] is True and doc["summary"]["ok"] is False
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and int(root.get("errors")) >= 1
    (err,) = [e for e in root.iter("error") if e.get("type") == "verigrad.Interrupted"]
    assert "interrupted after 1 case(s)" in err.get("message")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.xml", "r.json"]  # no temp files left behind
