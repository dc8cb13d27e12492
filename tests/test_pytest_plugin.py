"""Tests for the pytest plugin: case files collected as tests (verigrad.integrations.pytest_items)."""

from __future__ import annotations

import textwrap

import verigrad.integrations.pytest_items as items

pytest_plugins = ["pytester"]

CASE = """
name = "{name}"
seed = 3
loss = "mean((X @ w - y)**2) / 2"

[symbols]
X = {{ constant = true, shape = [6, 3], init = "normal" }}
y = {{ constant = true, shape = [6], init = "normal" }}
w = {{ shape = [3], init = "normal" }}
{candidates}
[check]
dtypes = [{dtypes}]
"""

IMPL = '''
import numpy as np


def grad(X, y, w):
    return {"w": X.T @ (X @ w - y) / X.shape[0]}


def grad_doubled(X, y, w):
    return {"w": 2 * X.T @ (X @ w - y) / X.shape[0]}


def grad_single(X, y, w):
    # computes in float32 whatever it is given: wrong in float64 only
    Xs, ys, ws = (a.astype(np.float32) for a in (X, y, w))
    return {"w": (Xs.T @ (Xs @ ws - ys) / Xs.shape[0]).astype(X.dtype)}


def grad_crashes(X, y, w):
    print("hello from the candidate")
    raise ValueError("no gradient today")
'''


def run(pytester, *args: str):
    """Run pytest in-process, without plugins that only slow the inner run down."""
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark", *args)


def candidate(name: str, function: str, expect: str) -> str:
    return f'\n[[candidate]]\nname = "{name}"\ncode = "impl/lin.py:{function}"\nexpect = "{expect}"\n'


def write_case(pytester, name: str, cands: list[tuple[str, str, str]], dtypes=("float32", "float64")):
    text = CASE.format(name=name, candidates="".join(candidate(*c) for c in cands),
                       dtypes=", ".join(f'"{d}"' for d in dtypes))
    path = pytester.path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    impl = pytester.path / "impl"
    impl.mkdir(exist_ok=True)
    (impl / "lin.py").write_text(IMPL, encoding="utf-8")
    return path


def test_a_wrong_pass_candidate_fails_with_the_breadcrumb_not_a_traceback(pytester, monkeypatch):
    calls = []
    real = items.certify

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(items, "certify", counting)
    write_case(pytester, "crafted", [("correct", "grad", "pass"), ("single-precision", "grad_single", "pass")])
    result = run(pytester, "--verigrad")
    result.assert_outcomes(failed=1, passed=3)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*verigrad: crafted › single-precision › float64*",
        "crafted › w › float64: *",
        "  expected pass, verdict fail (max * ulps, norm-wise relative error *)",
        "*FAILED crafted.toml::single-precision?float64? - crafted › w › float64: *",
    ])
    assert "Traceback" not in out and "def runtest" not in out and "ExpectationNotMet" not in out
    assert "crafted.toml::single-precision[float32]" not in out.split("short test summary")[-1]
    # the truth is certified once per dtype for the whole file, not once per item
    assert sorted(d.value for d in calls) == ["float32", "float64"]


def test_expected_failures_pass_when_caught_and_fail_when_not(pytester):
    write_case(pytester, "expectations", [("doubled", "grad_doubled", "fail"), ("wrongly-accused", "grad", "fail")],
               dtypes=("float64",))
    result = run(pytester, "--verigrad", "-v")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "*expectations.toml::doubled?float64? PASSED*",
        "*expectations.toml::wrongly-accused?float64? FAILED*",
        "expectations › wrongly-accused › float64: expected fail, but every entry is within tolerance: "
        "the bug was not caught*",
    ])


def test_a_crashing_candidate_shows_its_error_and_output(pytester):
    write_case(pytester, "crashing", [("crashes", "grad_crashes", "pass")], dtypes=("float32",))
    result = run(pytester, "--verigrad")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "crashing › crashes › float32: impl/lin.py:grad_crashes raised ValueError: no gradient today*",
        "  expected pass, could not be run",
        "*Captured candidate output*",
        "hello from the candidate",
    ])
    assert "Traceback" not in result.stdout.str()


def test_scaled_bug_diagnosis_is_the_failure_headline(pytester):
    write_case(pytester, "scaled", [("doubled", "grad_doubled", "pass")], dtypes=("float32",))
    result = run(pytester, "--verigrad")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*FAILED scaled.toml::doubled[[]float32[]] - scaled › w › float32: scaled by 2*"])


def test_an_invalid_case_file_is_a_collection_error_with_verigrad_message(pytester):
    (pytester.path / "broken.toml").write_text(textwrap.dedent("""
        name = "broken"
        loss = "sum(x**2)"
        [symbols]
        x = { shape = [2], inti = "normal" }
    """), encoding="utf-8")
    result = run(pytester, "--verigrad")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["verigrad could not collect *broken.toml:",
                                 "*broken.toml::broken::*inti*: unknown key 'inti'",
                                 "  hint: did you mean 'init'? *"])
    assert "Traceback" not in result.stdout.str()


def test_an_undefined_loss_fails_every_item_with_the_reason(pytester):
    path = write_case(pytester, "undefined", [("correct", "grad", "pass")], dtypes=("float64",))
    path.write_text(path.read_text().replace('loss = "mean((X @ w - y)**2) / 2"', 'loss = "sum(log(w - 100))"'))
    result = run(pytester, "--verigrad")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["undefined › correct › float64: could not be graded:"])
    assert "Traceback" not in result.stdout.str()


def test_case_files_are_not_collected_unless_enabled(pytester):
    write_case(pytester, "quiet", [("correct", "grad", "pass")])
    result = run(pytester)
    result.assert_outcomes()
    assert "quiet.toml" not in result.stdout.str()


def test_the_ini_option_enables_collection(pytester):
    write_case(pytester, "by-ini", [("correct", "grad", "pass")], dtypes=("float64",))
    pytester.makeini("[pytest]\nverigrad = true\n")
    result = run(pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["by-ini.toml::correct[[]float64[]]"])


def test_items_report_their_location_and_properties(pytester):
    write_case(pytester, "props", [("correct", "grad", "pass")], dtypes=("float64",))
    result = run(pytester, "--verigrad", "--junitxml=out.xml")
    result.assert_outcomes(passed=1)
    xml = (pytester.path / "out.xml").read_text()
    assert 'name="verdict" value="pass"' in xml and 'name="expect" value="pass"' in xml


def test_pyproject_toml_is_never_collected(pytester):
    pytester.makepyprojecttoml("[tool.other]\nx = 1\n")
    result = run(pytester, "--verigrad")
    result.assert_outcomes()
