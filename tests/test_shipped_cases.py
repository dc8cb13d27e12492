"""The shipped case library runs as tests: every expectation holds, and published values are reproduced."""

from __future__ import annotations

from pathlib import Path

import pytest

from verigrad.casefile.loader import find_case_files
from verigrad.runner.case import run_case

CASES = Path(__file__).resolve().parent.parent / "cases"
FILES = find_case_files([CASES])


@pytest.fixture(scope="module")
def reports():
    return {f.stem: run_case(f) for f in FILES}


def test_at_least_18_cases():
    assert len(FILES) >= 18


@pytest.mark.parametrize("name", [f.stem for f in FILES])
def test_every_expectation_holds(reports, name):
    rep = reports[name]
    assert not rep.error, rep.error
    unmet = [f"{r.candidate} {r.dtype}: {r.verdict} ({r.message})" for r in rep.results if r.met is False]
    assert not unmet, "\n".join(unmet)
    kinds = {(r.expect, r.dtype) for r in rep.results if r.kind == "code"}
    # each case has a correct candidate and a buggy one, graded in both dtypes
    assert {("pass", "float32"), ("pass", "float64"), ("fail", "float32"), ("fail", "float64")} <= kinds


def test_gradient_checking_exercise_published_differences(reports):
    """The deeplearning.ai "Gradient Checking" assignment prints, with central differences at
    epsilon = 1e-7 in float64: difference = 1.1890913024229996e-07 for the correct backward pass and
    0.2850931567761624 for the buggy one. verigrad's classic check reproduces both."""
    rep = reports["gradient-checking-3layer"]
    by = {(r.candidate, r.dtype): r for r in rep.results if r.kind == "code"}
    good = by[("backprop", "float64")].extra["classic"]
    assert good["relative_difference"] == pytest.approx(1.1890913024229996e-07, rel=1e-9)
    bad = [r for (c, d), r in by.items() if d == "float64" and r.expect == "fail"][0].extra["classic"]
    assert bad["relative_difference"] == pytest.approx(0.2850931567761624, rel=1e-12)
    # and the truth names the two planted bugs
    diag = [d for d in [r for (c, dt), r in by.items() if dt == "float64" and r.expect == "fail"][0]
            .grade.to_dict()["diagnosis"]]
    factors = {d["variable"]: d["factor"] for d in diag}
    assert factors["W2"] == pytest.approx(2.0) and factors["b1"] == pytest.approx(4.0)
    # in float32 the classic check raises a false alarm on the correct backprop; the truth does not
    f32 = by[("backprop", "float32")]
    assert f32.verdict == "pass" and f32.extra["classic"]["outcome"] == "false alarm"
