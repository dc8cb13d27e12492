"""What ``verigrad run`` prints, pinned at 80 columns without colour (as in a CI log).

The records are built by hand from real grades of a 3-entry gradient (no truth engine, no
candidate process), so the text depends only on the report: one line per case, a short block
per unmet expectation naming ``case › candidate › dtype``, a note for a finite difference
beyond its reach with its T/S/R split, the case error, the closing counts.
"""

from __future__ import annotations

from pathlib import Path

import mpmath
import numpy as np
import pytest

from verigrad.grading import grade
from verigrad.report.terminal import Para, case_details, case_line, lines_of, run_header, run_summary
from verigrad.report.words import plural
from verigrad.runner.records import CaseReport, Result, RunReport


def _grade(candidate: str, value, dtype=np.float64):
    truth = {"w": np.array([mpmath.mpf(1) / 2, mpmath.mpf(-1) / 4, mpmath.mpf(2)], dtype=object)}
    baseline = {"w": np.array([0.5, -0.25, 2.0], dtype=dtype)}
    return grade(truth=truth, value={"w": np.asarray(value, dtype=dtype)}, baseline=baseline, dtype=dtype,
                 case="demo", candidate=candidate)


@pytest.fixture(scope="module")
def run() -> RunReport:
    ok = Result("demo", "correct", "code", "float64", "pass", "pass", True, _grade("correct", [0.5, -0.25, 2.0]))
    caught = Result("demo", "doubled", "code", "float64", "fail", "fail", True, _grade("doubled", [1.0, -0.5, 4.0]))
    unmet = Result("demo", "halved", "code", "float64", "pass", "fail", False, _grade("halved", [0.25, -0.125, 1.0]))
    crash = Result("demo", "crashes", "code", "float64", "pass", "error", False, None,
                   "impl/demo.py:crashes raised RuntimeError: not implemented", stdout="about to fail\n")
    fd = Result("demo", "central h=4.9e-03", "fd", "float32", None, "fail", None,
                _grade("central h=4.9e-03", [0.5, -0.25, 2.1], dtype=np.float32), "", scheme="central", step=4.9e-3,
                extra={"tolerance": 2.4e-2,
                       "split": {"error": 0.1, "truncation": 0.1, "step": 4.9e-6, "roundoff": 4.7e-5}})
    return RunReport((
        CaseReport("cases/demo.toml", "demo", results=(ok, caught), seconds=0.12, parameters=3),
        CaseReport("cases/demo.toml", "demo-failing", results=(ok, unmet, crash, fd), seconds=0.5, parameters=1),
        CaseReport("cases/broken.toml", "broken",
                   error="cases/broken.toml::broken::colour: unknown key 'colour'\n  hint: allowed keys: name, loss"),
    ), 1.25)


def _printed(run: RunReport, **mode) -> list[str]:
    """What the CLI prints: the header, each case (-q: only the failing ones), the summary."""
    out = lines_of(run_header())
    for rep in run.cases:
        if not mode.get("quiet") or not rep.ok:
            out += lines_of(case_details(rep, **mode))
    return out + lines_of(run_summary(run, quiet=mode.get("quiet", False)))


DEFAULT = """\
  case                         params  passed  caught  not met  fd ok    time
✓ demo                              3       1       1        0      —  0.12 s
✗ demo-failing                      1       1       0        2    0/1  0.50 s
  ✗ demo › halved › float64: expected pass, got fail
    w: scaled by 1/2 = 0.5 (truth 2, got 1)
    w[0]: truth 0.5, got 0.25 (err 2.5e-01 > tol 5.7e-14)
    w[1]: truth -0.25, got -0.125 (err 1.2e-01 > tol 5.7e-14)
    w[2]: truth 2, got 1 (err 1.0e+00 > tol 5.7e-14)
  ✗ demo › crashes › float64: expected pass, but it could not be graded
    impl/demo.py:crashes raised RuntimeError: not implemented
    the candidate printed 1 line (-v shows them)
  ! demo › central h=4.9e-03 › float32: normwise relative error 4.82e-02, beyond
    the 2.4e-02 the scheme can reach; truncation dominates (‖T‖ 1.0e-01, ‖S‖
    4.9e-06, ‖R‖ 4.7e-05)
✗ broken                       case error
    cases/broken.toml::broken::colour: unknown key 'colour'
      hint: allowed keys: name, loss
FAILED  3 cases: 3 expectations met, 2 not met, 1 informational, 1 case error
    (1.2 s)"""

QUIET = """\
  case                         params  passed  caught  not met  fd ok    time
✗ demo-failing                      1       1       0        2    0/1  0.50 s
  ✗ demo › halved › float64: expected pass, got fail
    w: scaled by 1/2 = 0.5 (truth 2, got 1)
    w[0]: truth 0.5, got 0.25 (err 2.5e-01 > tol 5.7e-14)
    w[1]: truth -0.25, got -0.125 (err 1.2e-01 > tol 5.7e-14)
    w[2]: truth 2, got 1 (err 1.0e+00 > tol 5.7e-14)
  ✗ demo › crashes › float64: expected pass, but it could not be graded
    impl/demo.py:crashes raised RuntimeError: not implemented
    the candidate printed 1 line (-v shows them)
✗ broken                       case error
    cases/broken.toml::broken::colour: unknown key 'colour'
      hint: allowed keys: name, loss
FAILED  3 cases: 3 expectations met, 2 not met, 1 informational, 1 case error
    (1.2 s)"""

VERBOSE_DEMO = """\
✓ demo                              3       1       1        0      —  0.12 s
candidate      dtype     verdict   max ulps    rel err   expect
───────────────────────────────────────────────────────────────
correct        float64   pass             0   0.00e+00   ✓ pass
doubled        float64   fail       4.5e+15   1.00e+00   ✓ fail
  demo › correct › float64
    would catch relative errors above 2.8e-14 (w) here
  demo › doubled › float64
    w: scaled by 2 (truth 2, got 4)
    w[0]: truth 0.5, got 1 (err 5.0e-01 > tol 5.7e-14)
    w[1]: truth -0.25, got -0.5 (err 2.5e-01 > tol 5.7e-14)
    w[2]: truth 2, got 4 (err 2.0e+00 > tol 5.7e-14)
    would catch relative errors above 2.8e-14 (w) here"""


def test_default_output_is_a_line_per_case_and_a_block_per_unmet_expectation(run):
    assert "\n".join(_printed(run)) == DEFAULT


def test_quiet_output_keeps_only_the_failing_cases(run):
    assert "\n".join(_printed(run, quiet=True)) == QUIET


def test_verbose_output_has_the_table_and_every_diagnosis_named_by_candidate(run):
    text = "\n".join(lines_of(case_details(run.cases[0], verbose=True)))
    assert text == VERBOSE_DEMO
    failing = "\n".join(lines_of(case_details(run.cases[1], verbose=True)))
    assert "| about to fail" in failing  # what the candidate printed
    assert "demo › central h=4.9e-03 › float32\n    normwise relative error 4.82e-02" in failing
    assert "truncation dominates (‖T‖ 1.0e-01, ‖S‖ 4.9e-06, ‖R‖ 4.7e-05)" in failing


@pytest.mark.parametrize("mode", [{}, {"quiet": True}, {"verbose": True}])
def test_every_line_fits_80_columns_and_nothing_is_cut(run, mode):
    for line in _printed(run, **mode):
        assert len(line) <= 80, line
        assert not line.endswith("…"), line
    # the dtype column of the -v table is never cut to "float…"
    assert "float…" not in "\n".join(_printed(run, verbose=True))


def test_no_colour_codes_without_a_terminal(run):
    assert all("\x1b[" not in line for line in _printed(run, verbose=True))


def test_a_green_case_is_one_line(run):
    assert lines_of(case_details(run.cases[0])) == lines_of(case_line(run.cases[0]))


def test_plural_words():
    assert [plural(n, "parameter") for n in (0, 1, 2)] == ["0 parameters", "1 parameter", "2 parameters"]
    assert plural(1, "entry", "entries") == "1 entry" and plural(12_345, "entry", "entries") == "12,345 entries"


def test_para_wraps_with_a_hanging_indent_and_breaks_long_words():
    lines = lines_of(Para("word " * 30 + "x" * 100, indent=2, hang=6), width=40)
    assert lines[0].startswith("  word") and all(line.startswith("      ") for line in lines[1:])
    assert all(len(line) <= 40 for line in lines) and "".join(lines).count("x") == 100


def test_truth_digits_are_never_cut_when_piped(capsys):
    from verigrad.cli.main import main

    case = Path(__file__).resolve().parents[1] / "cases" / "squire-trapp.toml"
    assert main(["truth", str(case), "--digits", "60", "--dtype", "float64", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    assert "4.05342789389862065771418792560800071438265670520258532293242" in out  # 60 digits, one line
