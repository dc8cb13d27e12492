"""float16 and bfloat16 as grading dtypes (issue 23, part B): the point, the float baseline,
the tolerances, finite differences and their exact split, case files, reports.

Every figure is checked against an independent reference: mpmath rounding at the format's
precision, a per-op rounding done by hand, exact rationals.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from importlib import resources
from pathlib import Path

import ml_dtypes
import mpmath
import numpy as np
import pytest

from tests.casefiles import write_case
from verigrad.casefile.loader import load_case, point_in_dtype
from verigrad.engine.backends import round_fraction
from verigrad.errors import CaseError, UsageError
from verigrad.runner.case import baseline_gradient, run_case
from verigrad.spec import Dtype

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT / "cases" / "half-precision-logistic.toml"
BF16 = np.dtype(ml_dtypes.bfloat16)

#: (dtype, significand bits t, exponent of the smallest normal, largest finite)
FORMATS = [(Dtype.FLOAT16, 11, -14, 65504.0), (Dtype.BFLOAT16, 8, -126, float(ml_dtypes.finfo(BF16).max))]


def _mp_round(x: Fraction | float, t: int, emin: int, big: float) -> float:
    """Round to nearest-even at t bits with gradual underflow, by mpmath (independent of numpy).

    Normal range: ``mpmath.fdiv`` at ``prec=t``, rounding "n". Subnormal range: the multiple of
    the quantum 2**(emin - t + 1) nearest to x, by ``mpmath.nint`` (ties to even) on the exact quotient.
    """
    q = Fraction(x)
    if q == 0:
        return 0.0
    with mpmath.workprec(256):
        # exact for the dyadic inputs that reach the subnormal branch (float64 values: 53 bits)
        a = mpmath.mpf(q.numerator) / q.denominator
        if abs(a) >= mpmath.ldexp(1, emin):
            r = mpmath.fdiv(q.numerator, q.denominator, prec=t, rounding="n")
        else:
            quantum = mpmath.ldexp(1, emin - t + 1)
            r = mpmath.nint(a / quantum) * quantum
        v = float(r)
    return math.copysign(math.inf, v) if abs(v) > big else v


# -- the point ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,t,emin,big", FORMATS, ids=["float16", "bfloat16"])
def test_point_rounding_is_correct_rounding_against_mpmath(dtype, t, emin, big):
    rng = np.random.default_rng(23)
    # every binade from below the subnormals to the largest finite value, plus hand-made ties
    lo = emin - t - 2
    x = rng.uniform(1, 2, 3000) * np.exp2(rng.integers(lo, int(math.log2(big)), 3000).astype(float))
    x *= rng.choice([-1.0, 1.0], x.size)
    ties = [1 + 2.0 ** -t, 1 + 3 * 2.0 ** -t, 1 + 2.0 ** -t + 2.0 ** -40, 1 + 2.0 ** -t - 2.0 ** -40,
            2.0 ** (emin - t) * 3, 2.0 ** (emin - t)]  # mid-ulp at 1 (even, odd), just above/below, subnormal ties
    x = np.concatenate([x, ties, [-v for v in ties]])
    got = point_in_dtype({"x": x}, dtype)["x"]
    assert got.dtype == dtype.numpy
    ref = np.array([_mp_round(v, t, emin, big) for v in x.tolist()])
    assert np.array_equal(got.astype(np.float64), ref)
    assert np.count_nonzero(np.abs(ref) < 2.0 ** emin) > 50  # subnormals were exercised
    # the ties: 1 + 2^-t rounds down to 1 (even), 1 + 3 * 2^-t up to 1 + 2^(2-t); the double-rounding trap
    # 1 + 2^-t + 2^-40 (a float32 detour would land on the tie and round to 1) rounds up
    g = got.astype(np.float64)[-2 * len(ties):-len(ties)]
    assert list(g[:4]) == [1.0, 1 + 2.0 ** (2 - t), 1 + 2.0 ** (1 - t), 1.0]
    # and the exact-rational rounding used for nodes and constants agrees with it, 1/3 and 1/10 included
    for q in [Fraction(1, 3), Fraction(-1, 10), Fraction(2 ** 40 + 1, 2 ** 40)] + [Fraction(v) for v in x[:500]]:
        assert round_fraction(q, dtype.numpy) == _mp_round(q, t, emin, big)


def test_dtype_properties():
    f16, bf16 = Dtype("float16"), Dtype("bfloat16")
    assert (f16.eps, f16.unit_roundoff, f16.mantissa_bits, f16.min_exponent, f16.max) == (
        2.0 ** -10, 2.0 ** -11, 11, -14, 65504.0)
    assert (bf16.eps, bf16.unit_roundoff, bf16.mantissa_bits, bf16.min_exponent) == (2.0 ** -7, 2.0 ** -8, 8, -126)
    assert bf16.numpy == BF16 and f16.numpy == np.float16
    for dt in (f16, bf16):
        with pytest.raises(UsageError, match=f"complex step is not defined in {dt.value}: numpy has no complex"):
            dt.complex


def test_overflowing_point_is_refused_with_the_largest_value(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('name = "t"\nloss = "sum(x**2)"\n[symbols]\nx = { value = [1.0, 70000.0] }\n'
                 '[check]\ndtypes = ["float16", "float64"]\n')
    with pytest.raises(CaseError, match=r"70000 at \[1\] overflows float16 \(largest 6.55e\+04\)"):
        load_case(p)


# -- the float baseline ------------------------------------------------------------------------


def test_float16_baseline_is_one_rounding_per_op(tmp_path):
    """Gradient of sum(sin(x) * c) is cos(x) * c: two ops, each rounded once to float16."""
    x = [0.3, -1.7, 2.9, 0.001, 5.5, -0.75]
    c = [3.0, -0.1, 7.25, 1000.0, 0.3, -2.5]
    m = write_case(tmp_path, "sum(sin(x) * c)", f"x = {{ value = {x} }}\nc = {{ constant = true, value = {c} }}")
    point = point_in_dtype(m.point, Dtype.FLOAT16)
    got = baseline_gradient(m, point, Dtype.FLOAT16)["x"]
    assert got.dtype == np.float16
    t, emin, big = 11, -14, 65504.0
    with mpmath.workprec(200):
        hand = [_mp_round(Fraction(_mp_round(Fraction(float(mpmath.cos(mpmath.mpf(float(xi))))), t, emin, big))
                          * Fraction(float(ci)), t, emin, big)
                for xi, ci in zip(point["x"], point["c"])]
    assert got.astype(np.float64).tolist() == hand


@pytest.mark.parametrize("dtype", [np.dtype(np.float16), BF16], ids=["float16", "bfloat16"])
def test_every_elementary_function_stays_in_the_half_dtype(dtype):
    """No function of the table upcasts (a float32 result would make the baseline a float32 one)."""
    from verigrad.expr.functions import FUNCTIONS

    x = np.array([[0.3, 0.7, 0.45, 0.9]], dtype=dtype)  # inside every function's domain
    for name, fn in FUNCTIONS.items():
        with np.errstate(all="ignore"):
            r = fn.np_f(x)
        assert r.dtype == dtype, (name, r.dtype)
        assert np.all(np.isfinite(r.astype(np.float64))), name
    # exp and tanh of bfloat16 via ml_dtypes' loops: the float32 value rounded once (within 1/2 ulp + float32's error)
    for f, mf in ((np.exp, mpmath.exp), (np.tanh, mpmath.tanh), (np.log1p, mpmath.log1p)):
        got = f(x).astype(np.float64)[0]
        for g, xi in zip(got, x.astype(np.float64)[0]):
            exact = float(mf(mpmath.mpf(xi)))
            assert abs(g - exact) <= 0.5001 * float(np.spacing(np.array(abs(exact), dtype=dtype)).astype(np.float64))


def test_bfloat16_matmul_baseline_is_rounded_once_not_per_addition(tmp_path):
    """Gradient of sum((A @ x) * c) is A^T c: a product computed in float32 (exact here) and rounded once
    to bfloat16. Rounding after every addition (ml_dtypes' own reduction) gives another answer."""
    A = [[1.0, 1.0 / 128, 1.0 / 128, 1.0 / 128], [3.0, 1.0 / 64, -1.0 / 256, 1.0 / 128]]
    c = [1.0, 1.0]
    m = write_case(tmp_path, "sum((A @ x) * c)", f"x = {{ value = [0.5, 0.25, 1.0, 2.0] }}\n"
                   f"A = {{ constant = true, value = {A} }}\nc = {{ constant = true, value = {c} }}")
    got = baseline_gradient(m, point_in_dtype(m.point, Dtype.BFLOAT16), Dtype.BFLOAT16)["x"]
    assert got.dtype == BF16
    exact = [sum(Fraction(A[i][j]) * Fraction(c[i]) for i in range(2)) for j in range(4)]
    assert got.astype(np.float64).tolist() == [_mp_round(q, 8, -126, 3e38) for q in exact]
    # the sum A^T c for a longer column: 1 + 8 * 2^-9 is exact in float32, 1 + 2^-6 after one rounding;
    # rounding after each addition loses every 2^-9 (1 + 2^-9 rounds back to 1 in bfloat16)
    col = np.array([1.0] + [2.0 ** -9] * 8, dtype=BF16)
    from verigrad.engine.backends import FloatBackend

    once = FloatBackend(BF16).sum(col[None, :], (1,), False)[0]
    assert float(once) == 1 + 2.0 ** -6 and float(np.add.reduce(col)) == 1.0


def test_baseline_overflow_is_reported_not_blamed(tmp_path):
    """log(exp(a) + exp(b)) at a = 12: exp(12) = 162755 overflows float16 inside the naive gradient
    exp(a)/(exp(a) + exp(b)), whose value (0.62) is finite: the grade says so and a stable candidate passes."""
    impl = tmp_path / "impl.py"
    impl.write_text("import numpy as np\n"
                    "def stable(x):\n    e = np.exp(x - np.max(x))\n    return {'x': e / np.sum(e)}\n"
                    "def big(x):\n    return {'x': np.exp(x)}\n")
    p = tmp_path / "c.toml"
    p.write_text('name = "t"\nloss = "log(exp(x[0]) + exp(x[1]))"\n[symbols]\nx = { value = [12.0, 11.5] }\n'
                 '[[candidate]]\nname = "stable"\ncode = "impl.py:stable"\n[check]\ndtypes = ["float16"]\n'
                 'classic = false\n')
    (r,) = run_case(p).results
    assert r.verdict == "pass" and r.met
    text = " ".join(r.grade.warnings)
    assert "the float baseline is not finite at 2 entries" in text
    assert "0 inf, 2 nan: the gradient expression as written overflows float16 (largest 65504)" in text
    # an exact gradient beyond 65504 cannot be represented: no candidate is blamed for returning inf
    p.write_text('name = "t"\nloss = "sum(exp(x))"\n[symbols]\nx = { value = [12.0, 1.5] }\n'
                 '[[candidate]]\nname = "big"\ncode = "impl.py:big"\n[check]\ndtypes = ["float16", "float32"]\n'
                 'classic = false\n')
    r16, r32 = run_case(p).results
    assert (r16.verdict, r32.verdict) == ("error", "pass")
    assert "the exact gradient overflows float16 at x[0] (truth 162755, largest float16 65504)" in r16.message


# -- tolerances and verdicts on the shipped case ---------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return {(r.candidate, r.dtype): r for r in run_case(CASE).results}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_correct_half_candidate_passes_buggy_ones_fail(shipped, dtype):
    ok = shipped[("half-precision-analytic", dtype)]
    assert ok.verdict == "pass" and ok.met
    assert ok.grade.returned_dtype == dtype
    assert ok.grade.errors.max_ulps < 8  # a few ulps of the dtype, not a loose absolute tolerance
    for bug, factor in (("sum-not-mean", 16.0), ("residual-sign-flipped", -1.0)):
        r = shipped[(bug, dtype)]
        assert r.verdict == "fail" and r.met
        rel = r.grade.errors.normwise_relative
        assert rel == pytest.approx(abs(factor - 1), rel=0.05)
    # the bug shapes are named in 16 bits too; in bfloat16 the rounding noise of b (32 x the
    # baseline's error 4.8e-4 = 0.015) exceeds half of |b| (0.008): -b is within it, so b is
    # unresolved there (a correct b could be as far off), not wrong
    flipped = shipped[("residual-sign-flipped", dtype)].grade
    shapes = {d.variable: d.shape.name for d in flipped.diagnosis}
    if dtype == "float16":
        assert shapes == {"w": "SIGN_FLIP", "b": "SIGN_FLIP"}
    else:
        assert shapes == {"w": "SIGN_FLIP"}
        assert [v.verdict.value for v in flipped.variables] == ["fail", "unresolved"]
    scaled = {d.variable: d.factor for d in shipped[("sum-not-mean", dtype)].grade.diagnosis}
    assert scaled["w"] == 16
    up = shipped[("computed-in-float32", dtype)]
    assert up.verdict == "not exercised" and up.grade.returned_dtype == "float32"


def test_tolerance_scales_with_the_dtype_unit_roundoff(shipped):
    """The float16/bfloat16 tolerances are those of float32 with u = 2^-11 and 2^-8 in place of 2^-24:
    the ulp-floor part is floor_ulps ulps of the dtype at the gradient's scale."""
    tol = {d: shipped[("half-precision-analytic", d)].grade.variables[0].tolerance
           for d in ("float16", "bfloat16", "float32")}
    assert tol["float32"] < tol["float16"] < tol["bfloat16"]
    assert tol["float16"] / tol["float32"] == pytest.approx(2.0 ** 13, rel=0.5)


def test_candidates_receive_arrays_of_the_dtype(tmp_path):
    impl = tmp_path / "impl.py"
    impl.write_text("import numpy as np\n"
                    "def g(x, c):\n"
                    "    assert x.dtype.name == c.dtype.name == DT[0], (x.dtype, c.dtype)\n"
                    "    return {'x': (2 * x * c).astype(x.dtype)}\n"
                    "DT = []\n"
                    "def g16(x, c):\n    DT[:] = ['float16']\n    return g(x, c)\n"
                    "def gbf(x, c):\n    DT[:] = ['bfloat16']\n    return g(x, c)\n")
    for fn, dt in (("g16", "float16"), ("gbf", "bfloat16")):
        p = tmp_path / f"{fn}.toml"
        p.write_text(f'name = "t"\nloss = "sum(x**2 * c)"\n[symbols]\nx = {{ value = [0.5, -1.25, 3.0] }}\n'
                     f'c = {{ constant = true, value = [1.0, 0.5, 2.0] }}\n'
                     f'[[candidate]]\nname = "g"\ncode = "impl.py:{fn}"\n[check]\ndtypes = ["{dt}"]\nclassic = false\n')
        (r,) = run_case(p).results
        assert (r.verdict, r.dtype, r.grade.returned_dtype) == ("pass", dt, dt), r.message


# -- finite differences ------------------------------------------------------------------------


def test_default_steps_follow_the_dtype_eps():
    from verigrad.schemes import default_step, get_scheme

    from verigrad.schemes import default_step_grid

    for dt in (Dtype.FLOAT16, Dtype.BFLOAT16):
        assert default_step(get_scheme("forward"), dt.numpy) == dt.eps ** 0.5
        assert default_step(get_scheme("central"), dt.numpy) == pytest.approx(dt.eps ** (1 / 3), rel=1e-15)
        # the sweep starts at eps^(2/3) in 16 bits (100 eps would already be past the optimum)
        assert default_step_grid(get_scheme("central"), dt.numpy)[0] == pytest.approx(dt.eps ** (2 / 3), rel=1e-12)
    assert default_step(get_scheme("forward"), np.float16) == 2.0 ** -5
    assert default_step_grid(get_scheme("central"), np.float32)[0] == pytest.approx(100 * 2.0 ** -23, rel=1e-12)


def test_fd_split_in_float16_is_exact_and_has_a_step_part(tmp_path):
    """Forward differences of sum(exp(x)) in float16, absolute step 0.01: x + h is not a float16,
    so the nodes move (S != 0). T and S are recomputed here with mpmath at the nodes the split reports;
    R = D_float - D_nodes; and E = T + S + R."""
    from verigrad.schemes import StepMode
    from verigrad.studies import fd_split

    m = write_case(tmp_path, "sum(exp(x))", "x = { value = [1.3, -0.7, 2.2] }")
    sp = fd_split(m, dtype=Dtype.FLOAT16, scheme="forward", step=0.01, step_mode=StepMode.ABSOLUTE)
    x = point_in_dtype(m.point, Dtype.FLOAT16)["x"]
    assert sp.estimate["x"].dtype == np.float16
    h = sp.h["x"].astype(np.float64)
    assert np.all(h == float(np.float16(0.01)))
    with mpmath.workprec(300):
        for i, xi in enumerate(x.astype(np.float64)):
            xi, hi = mpmath.mpf(xi), mpmath.mpf(h[i])
            y1 = mpmath.mpf(_mp_round(Fraction(float(x[i])) + Fraction(h[i]), 11, -14, 65504.0))
            D_exact = (mpmath.exp(xi + hi) - mpmath.exp(xi)) / hi
            D_nodes = (mpmath.exp(y1) - mpmath.exp(xi)) / hi
            T, S = D_exact - mpmath.exp(xi), D_nodes - D_exact
            R = mpmath.mpf(float(sp.estimate["x"][i])) - D_nodes
            E = mpmath.mpf(float(sp.estimate["x"][i])) - mpmath.exp(xi)
            assert float(sp.truncation["x"][i]) == pytest.approx(float(T), rel=1e-12)
            assert float(sp.step_error["x"][i]) == pytest.approx(float(S), rel=1e-12)
            assert float(sp.roundoff["x"][i]) == pytest.approx(float(R), rel=1e-12)
            assert float(sp.error["x"][i]) == pytest.approx(float(E), rel=1e-12)
            assert abs(sp.error["x"][i] - (sp.truncation["x"][i] + sp.step_error["x"][i] + sp.roundoff["x"][i])) \
                <= 1e-12 * abs(sp.error["x"][i])
    assert np.all(sp.step_error["x"] != 0)
    # the estimate itself: fl(fl(F(y1) - F(x)) / h) with F the float16 loss
    F = lambda v: np.float16(np.sum(np.exp(v).astype(np.float32)))  # noqa: E731  numpy float16 sum
    for i in range(3):
        y = x.copy()
        y[i] = np.float16(_mp_round(Fraction(float(x[i])) + Fraction(h[i]), 11, -14, 65504.0))
        assert sp.estimate["x"][i] == np.float16((F(y) - F(x)) / np.float16(h[i]))


def test_complex_step_is_refused_in_half_precision(tmp_path):
    from verigrad.fd import fd_gradient

    m = write_case(tmp_path, "sum(exp(x))", "x = { value = [1.0, 2.0] }")
    for dt in (Dtype.FLOAT16, Dtype.BFLOAT16):
        with pytest.raises(UsageError, match=f"complex step is not defined in {dt.value}.*complex64 would "
                                             f"evaluate the loss in float32"):
            fd_gradient(m, dtype=dt, scheme="complex-step", step=1e-3)
    # float32 still has it
    assert fd_gradient(m, dtype=Dtype.FLOAT32, scheme="complex-step", step=1e-3)["x"].dtype == np.float32


def test_fd_rows_and_studies_run_in_half_precision(shipped):
    for dt in ("float16", "bfloat16"):
        rows = [r for (c, d), r in shipped.items() if d == dt and r.kind == "fd"]
        assert {r.scheme for r in rows} == {"forward", "central"}
        for r in rows:
            assert r.verdict == "pass"
            assert r.grade.errors.normwise_relative < 0.5  # the FD tolerance's cap in half precision


# -- case files, CLI, schema -------------------------------------------------------------------


def test_case_file_dtypes_and_expect_keys(tmp_path):
    p = tmp_path / "c.toml"
    base = 'name = "t"\nloss = "sum(x**2)"\n[symbols]\nx = { value = [1.0] }\n'
    p.write_text(base + '[[candidate]]\nname = "g"\ncode = "impl.py:g"\nexpect = { bfloat16 = "fail" }\n'
                        '[check]\ndtypes = ["float16", "bfloat16"]\n')
    (tmp_path / "impl.py").write_text("def g(x):\n    return {'x': 2 * x}\n")
    case = load_case(p)
    assert case.check.dtypes == (Dtype.FLOAT16, Dtype.BFLOAT16)
    assert case.candidates[0].expectation(Dtype.BFLOAT16).value == "fail"
    p.write_text(base + '[check]\ndtypes = ["float8"]\n')
    with pytest.raises(CaseError, match="allowed: float16, bfloat16, float32, float64"):
        load_case(p)
    p.write_text(base + '[[candidate]]\nname = "g"\ncode = "impl.py:g"\nexpect = { half = "fail" }\n')
    with pytest.raises(CaseError, match="allowed keys: float16, bfloat16, float32, float64"):
        load_case(p)


def test_cli_choices_and_schema_list_every_dtype():
    import argparse

    from verigrad.cli import run, study, truth

    every = [d.value for d in Dtype]
    for mod in (run, study, truth):
        parser = argparse.ArgumentParser()
        mod.add_arguments(parser)
        (action,) = [a for a in parser._actions if "--dtype" in a.option_strings]
        assert sorted(action.choices) == sorted(every)
    schemas = resources.files("verigrad").joinpath("schemas")
    run_schema = json.loads(schemas.joinpath("run.schema.json").read_text())
    assert sorted(run_schema["$defs"]["dtype"]["enum"]) == sorted(every)
    assert run_schema["properties"]["schema_version"]["const"] >= 3


def test_run_json_with_half_precision_validates(shipped):
    jsonschema = pytest.importorskip("jsonschema")
    from verigrad import __version__
    from verigrad.report.jsonio import dumps
    from verigrad.report.runjson import run_document
    from verigrad.runner.records import RunReport

    rep = run_case(CASE)
    doc = json.loads(dumps(run_document(RunReport((rep,), 0.0), version=__version__)))
    schema = json.loads(resources.files("verigrad").joinpath("schemas/run.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert {r["dtype"] for r in doc["results"]} == {"float16", "bfloat16", "float32", "float64"}


# -- the shipped study (docs/half-precision.md) -------------------------------------------------


def _study():
    import importlib.util

    spec = importlib.util.spec_from_file_location("verigrad_docs_half_precision_study",
                                                  ROOT / "docs" / "studies" / "half_precision_study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def study():
    mod = _study()
    return mod, mod.run(real=False)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_every_peer_default_differences_to_exactly_zero(study, dtype):
    _, res = study
    pe = res["peers"][dtype]
    assert pe["jax"]["numerical_jvp"] == 0.0 and pe["jax"]["exact_jvp"] == pytest.approx(0.4465, abs=2e-3)
    assert pe["torch"]["nodes_equal_to_point"] == pe["torch"]["entries"] == 5
    assert pe["scipy"]["nodes_equal_to_point"] == 5
    assert pe["torch"]["numerical"] == [0.0] * 5 and pe["scipy"]["numerical"] == [0.0] * 5
    c = pe["candidates"]["correct"]
    assert not (c["torch_pass"] or c["jax_pass"] or c["scipy_pass"])  # a false alarm from each
    # SciPy's check_grad then returns the norm of the gradient itself
    assert c["scipy_norm"] == pytest.approx(np.linalg.norm(pe["exact_gradient"]), rel=0.02)
    v = res["verigrad"][dtype]
    assert (v["correct"]["verdict"], v["sum-not-mean"]["verdict"], v["residual-sign-flipped"]["verdict"]) == (
        "pass", "fail", "fail")


def test_the_page_shows_the_measured_tables(study):
    mod, res = study
    page = (ROOT / "docs" / "half-precision.md").read_text(encoding="utf-8")
    for line in mod.tables(res).splitlines():
        assert line in page, line


def test_real_torch_gradcheck_sees_zeros_in_float16():
    pytest.importorskip("torch")
    real = _study().real_calls(Dtype.FLOAT16, libraries=("torch",))["torch"]
    assert real["pass"] is False and real["numerical_all_zero"]
    assert any("not a double precision floating point" in w for w in real["warnings"])


def test_truth_and_study_json_in_half_precision_validate(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    from verigrad.cli.main import main

    schemas = resources.files("verigrad").joinpath("schemas")
    case = str(ROOT / "cases" / "scalar-warmup.toml")
    assert main(["truth", case, "--dtype", "float16", "--dtype", "bfloat16", "--json", str(tmp_path / "t.json"),
                 "--no-color"]) == 0
    doc = json.loads((tmp_path / "t.json").read_text("utf-8"))
    jsonschema.validate(doc, json.loads(schemas.joinpath("truth.schema.json").read_text()))
    assert list(doc["by_dtype"]) == ["float16", "bfloat16"]
    # the default schemes leave the complex step out in half precision (it is refused there)
    assert main(["study", case, "--dtype", "bfloat16", "--json", str(tmp_path / "s.json"), "--no-color"]) == 0
    doc = json.loads((tmp_path / "s.json").read_text("utf-8"))
    jsonschema.validate(doc, json.loads(schemas.joinpath("study.schema.json").read_text()))
    assert {s["dtype"] for s in doc["studies"]} == {"bfloat16"}
    assert "complex-step" not in {s["scheme"] for s in doc["studies"]}
