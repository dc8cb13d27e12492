"""Tests for verigrad.casefile.loader: reading, validating and drawing the point of case files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from verigrad.casefile import loader as cases_mod
from verigrad.casefile.loader import draw_point, find_case_files, load_case, load_case_text, point_in_dtype
from verigrad.errors import CaseError, DomainError, ExpressionError, LimitError, UsageError, VerigradError
from verigrad.expr.parser import ExprLimits
from verigrad.engine.model import compile_case
from verigrad.spec import CheckSpec, Dtype, Expect, Limits, RngKind, StepMode

REPO = Path(__file__).resolve().parents[1]

MINIMAL = """
name = "minimal"
loss = "sum(x**2)"
[symbols]
x = { shape = [3], init = "normal" }
"""

FULL = """
name = "full-case"
description = "every table"
seed = 7
rng = "numpy-legacy"
loss = "sum((W @ X + b - Y)**2) / 2 + lam * sum(W**2)"
loss_code = "impl/full.py:loss"

[symbols]
X   = { constant = true, shape = [3, 4], init = "uniform(-1, 1)" }
Y   = { constant = true, value = [[1.0, 2.0, 3.0, 4.0], [5, 6, 7, 8]] }
W   = { shape = [2, 3], init = "normal(0, 0.1)" }
b   = { shape = [2, 1], value = 0.5 }
lam = { constant = true, value = 0.01 }

[define]
H = "W @ X"
R = "H + b - Y"

[[candidate]]
name = "backprop"
code = "impl/full.py:grad"

[[candidate]]
name = "buggy"
code = "impl/full.py:grad_buggy"
expect = "fail"

[check]
dtypes = ["float64", "float32", "float64"]
schemes = ["central", "forward"]
steps = [1e-3, 1e-6]
step_mode = "absolute"
tolerance_factor = 8
floor_ulps = 4.5
digits = 30

[limits]
max_elements = 1000
max_symbol_elements = 500
max_intermediate_elements = 2000
max_precision_bits = 4096
symbolic_seconds = 5
candidate_seconds = 1.5
max_expression_length = 300
max_expression_depth = 20
max_expression_nodes = 400
"""


def test_minimal_case_defaults():
    case = load_case_text(MINIMAL, path="dir/minimal.toml")
    assert case.name == "minimal"
    assert case.path == Path("dir/minimal.toml")
    assert case.description == ""
    assert case.seed == 0
    assert case.rng is RngKind.NUMPY
    assert case.defines == ()
    assert case.candidates == ()
    assert case.loss_code is None
    assert case.check == CheckSpec()
    assert case.check.dtypes == (Dtype.FLOAT32, Dtype.FLOAT64)
    assert case.check.digits == 24
    assert case.limits == Limits()
    (x,) = case.symbols
    assert (x.name, x.shape, x.constant, str(x.init)) == ("x", (3,), False, "normal(0, 1)")


def test_full_case_every_table():
    case = load_case_text(FULL, path="/somewhere/cases/full.toml")
    assert (case.name, case.description, case.seed, case.rng) == ("full-case", "every table", 7,
                                                                    RngKind.NUMPY_LEGACY)
    assert [s.name for s in case.symbols] == ["X", "Y", "W", "b", "lam"]
    assert [s.name for s in case.variables] == ["W", "b"]
    assert [s.name for s in case.constants] == ["X", "Y", "lam"]
    X, Y, W, b, lam = case.symbols
    assert (X.init.kind, X.init.a, X.init.b) == ("uniform", -1.0, 1.0)
    assert (W.init.kind, W.init.a, W.init.b) == ("normal", 0.0, 0.1)
    assert Y.shape == (2, 4) and Y.value.dtype == np.float64 and Y.value[1, 0] == 5.0
    assert not Y.value.flags.writeable
    np.testing.assert_array_equal(b.value, np.full((2, 1), 0.5))  # a number with a shape is broadcast
    assert lam.shape == () and lam.value == 0.01
    assert case.defines == (("H", "W @ X"), ("R", "H + b - Y"))
    assert [(c.name, c.expect) for c in case.candidates] == [("backprop", Expect.PASS), ("buggy", Expect.FAIL)]
    assert case.candidates[0].code.path == Path("/somewhere/cases/impl/full.py")
    assert case.candidates[0].code.function == "grad"
    assert str(case.candidates[0].code) == "impl/full.py:grad"
    assert case.loss_code.path == Path("/somewhere/cases/impl/full.py")
    assert case.check.dtypes == (Dtype.FLOAT64, Dtype.FLOAT32)  # duplicates dropped, order kept
    assert case.check.schemes == ("central", "forward")
    assert case.check.steps == (1e-3, 1e-6)
    assert case.check.step_mode is StepMode.ABSOLUTE
    assert (case.check.tolerance_factor, case.check.floor_ulps, case.check.digits) == (8.0, 4.5, 30)
    lim = case.limits
    assert (lim.max_elements, lim.max_symbol_elements, lim.max_precision_bits) == (1000, 500, 4096)
    assert (lim.symbolic_seconds, lim.candidate_seconds) == (5.0, 1.5)
    assert lim.expression == ExprLimits(max_length=300, max_depth=20, max_nodes=400, max_elements=2000)
    assert case.parameter_count == 8


def test_full_case_compiles():
    model = compile_case(load_case_text(FULL))
    assert model.variables == ("W", "b")
    assert model.gradient["W"].shape == (2, 3)


def test_shipped_cases_load_and_compile():
    files = find_case_files([REPO / "cases"])
    assert len(files) >= 10
    for f in files:
        case = load_case(f)
        assert case.name == f.stem
        compile_case(case)


# -- the point: seeded, deterministic, numpy-compatible ---------------------------------------


def test_same_file_same_point():
    a = draw_point(load_case_text(FULL))
    b = draw_point(load_case_text(FULL))
    assert list(a) == ["X", "Y", "W", "b", "lam"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert a[k].dtype == np.float64


def test_numpy_legacy_reproduces_np_random_seed():
    text = """
name = "legacy"
seed = 1
rng = "numpy-legacy"
loss = "sum(X) + sum(W1) + s"
[symbols]
X = { shape = [4, 3], init = "normal" }
Y = { value = [[1, 1, 0]], constant = true }
W1 = { shape = [5, 4], init = "normal" }
s = { init = "normal(2, 0.5)" }
"""
    point = draw_point(load_case_text(text))
    np.random.seed(1)
    X = np.random.randn(4, 3)
    W1 = np.random.randn(5, 4)  # given values (Y) consume no draws
    s = np.random.normal(2, 0.5)
    np.testing.assert_array_equal(point["X"], X)
    np.testing.assert_array_equal(point["W1"], W1)
    assert point["s"].shape == () and float(point["s"]) == s


def test_shipped_gradient_checking_case_draws_like_the_exercise():
    point = draw_point(load_case(REPO / "cases" / "gradient-checking-3layer.toml"))
    rs = np.random.RandomState(1)
    for name, shape in [("X", (4, 3)), ("W1", (5, 4)), ("b1", (5, 1)), ("W2", (3, 5)), ("b2", (3, 1)),
                        ("W3", (1, 3)), ("b3", (1, 1))]:
        np.testing.assert_array_equal(point[name], rs.randn(*shape))


def test_numpy_default_rng_and_uniform():
    text = """
name = "modern"
seed = 42
loss = "sum(a) + sum(u)"
[symbols]
a = { shape = [2, 2], init = "normal(1, 3)" }
u = { shape = [3], init = "uniform(-2, 5)" }
"""
    point = draw_point(load_case_text(text))
    rng = np.random.default_rng(42)
    np.testing.assert_array_equal(point["a"], 1 + 3 * rng.standard_normal((2, 2)))
    np.testing.assert_array_equal(point["u"], rng.uniform(-2, 5, size=(3,)))
    assert np.all((point["u"] >= -2) & (point["u"] < 5))


def test_point_ignores_global_numpy_state():
    np.random.seed(123)
    a = draw_point(load_case_text(FULL))
    np.random.seed(456)
    np.random.rand(10)
    b = draw_point(load_case_text(FULL))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_seed_changes_the_point():
    p0 = draw_point(load_case_text(MINIMAL))
    p1 = draw_point(load_case_text(MINIMAL.replace('name = "minimal"', 'name = "minimal"\nseed = 1')))
    assert not np.array_equal(p0["x"], p1["x"])


def test_point_in_dtype_rounds_to_nearest():
    point = {"x": np.array([0.1, 1 / 3, 1e-50]), "s": np.array(2.0)}
    p32 = point_in_dtype(point, Dtype.FLOAT32)
    assert p32["x"].dtype == np.float32 and p32["s"].dtype == np.float32 and p32["s"].shape == ()
    np.testing.assert_array_equal(p32["x"], np.array([0.1, 1 / 3, 0.0], dtype=np.float32))
    p64 = point_in_dtype(point, Dtype.FLOAT64)
    np.testing.assert_array_equal(p64["x"], point["x"])


def test_point_in_dtype_overflow_names_the_entry():
    with pytest.raises(LimitError) as info:
        point_in_dtype({"x": np.array([1.0, 1e39])}, Dtype.FLOAT32)
    assert str(info.value).startswith("[symbols] x: x[1] = 1e+39 overflows float32 (largest 3.403e+38)")


def test_given_value_overflowing_a_checked_dtype_is_refused_at_load():
    text = MINIMAL + "big = { value = [1.0, 1e39], constant = true }\n"
    with pytest.raises(LimitError) as info:
        load_case_text(text, path="c.toml")
    assert str(info.value).startswith("c.toml::minimal::[symbols] big.value: 1e+39 at [1] overflows float32")
    assert "drop float32 from [check] dtypes" in info.value.hint
    ok = load_case_text(text + '[check]\ndtypes = ["float64"]\n')
    assert ok.symbol("big").value[1] == 1e39


# -- files ---------------------------------------------------------------------------------


def test_load_case_from_file_and_npy(tmp_path):
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "D.npy", data)
    f = tmp_path / "c.toml"
    f.write_text('name = "c"\nloss = "sum(D * w)"\n[symbols]\nD = { file = "D.npy", constant = true }\n'
                 'w = { shape = [3], init = "normal" }\n')
    case = load_case(f)
    D = case.symbol("D")
    assert D.shape == (2, 3) and D.value.dtype == np.float64
    np.testing.assert_array_equal(D.value, data)


@pytest.mark.parametrize("array,pattern", [
    (np.array([1 + 2j]), r"holds dtype complex128, not real numbers"),
    (np.array([True]), r"holds dtype bool, not real numbers"),
    (np.zeros((0, 3)), r"holds an empty array \(shape \[0, 3\]\)"),
    (np.array([1.0, np.nan]), r"contains nan or inf"),
    (np.zeros((1,) * 9), r"holds an array of 9 dimensions, over the maximum of 8"),
])
def test_bad_npy_files(tmp_path, array, pattern):
    np.save(tmp_path / "D.npy", array)
    f = tmp_path / "c.toml"
    f.write_text('name = "c"\nloss = "sum(w)"\n[symbols]\nD = { file = "D.npy", constant = true }\n'
                 'w = { shape = [3], init = "normal" }\n')
    with pytest.raises(CaseError, match=pattern) as info:
        load_case(f)
    assert info.value.where == f"{f}::c::[symbols] D.file"


def test_npy_over_the_symbol_limit(tmp_path):
    np.save(tmp_path / "D.npy", np.zeros(100))
    f = tmp_path / "c.toml"
    f.write_text('name = "c"\nloss = "sum(w)"\n[symbols]\nD = { file = "D.npy", constant = true }\n'
                 'w = { shape = [3], init = "normal" }\n[limits]\nmax_symbol_elements = 50\n')
    with pytest.raises(LimitError, match=r"holds 100 entries, over the limit of 50"):
        load_case(f)


def test_object_npy_is_never_unpickled(tmp_path):
    np.save(tmp_path / "D.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    f = tmp_path / "c.toml"
    f.write_text('name = "c"\nloss = "sum(w)"\n[symbols]\nD = { file = "D.npy", constant = true }\n'
                 'w = { shape = [3], init = "normal" }\n')
    with pytest.raises(CaseError, match=r"is not a readable \.npy array"):
        load_case(f)


def test_load_case_file_problems(tmp_path, monkeypatch):
    with pytest.raises(CaseError, match=r"no_such\.toml: no such file"):
        load_case(tmp_path / "no_such.toml")
    with pytest.raises(CaseError, match=r"is a directory, not a case file"):
        load_case(tmp_path)
    f = tmp_path / "latin1.toml"
    f.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(CaseError, match=r"not UTF-8 text: byte 0xe9 at line 1, column 12"):
        load_case(f)
    g = tmp_path / "big.toml"
    g.write_text(MINIMAL)
    monkeypatch.setattr(cases_mod, "_MAX_FILE_BYTES", 10)
    with pytest.raises(LimitError, match=r"file is \d+ bytes, over the 10-byte limit for case files"):
        load_case(g)


def test_find_case_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "_private").mkdir()
    (tmp_path / ".hidden").mkdir()
    for p in ["b.toml", "a.toml", "sub/c.toml", "_private/d.toml", ".hidden/e.toml", "notes.txt"]:
        (tmp_path / p).write_text(MINIMAL)
    found = find_case_files([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.toml", "b.toml", "sub/c.toml"]
    assert find_case_files([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]
    with pytest.raises(CaseError, match=r"no such file or directory"):
        find_case_files([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaseError, match=r"no case files \(\*\.toml\) found"):
        find_case_files([tmp_path / "empty"])


# -- messages: file::case::field, one naming scheme -------------------------------------------


@pytest.mark.parametrize("old,new,field", [
    ('name = "minimal"', 'name = "minimal"\nseeed = 1', "seeed"),
    ('x = { shape = [3], init = "normal" }', 'x = { shape = [3], innit = "normal" }', "[symbols] x.innit"),
    ('x = { shape = [3], init = "normal" }', 'x = { shape = [0], init = "normal" }', "[symbols] x.shape"),
    ('x = { shape = [3], init = "normal" }', 'x = { shape = [3], init = "gauss" }', "[symbols] x.init"),
    ('x = { shape = [3], init = "normal" }', 'x = { value = [] }', "[symbols] x.value"),
    ('x = { shape = [3], init = "normal" }', 'x = { shape = [3], init = "normal", constant = 1 }',
     "[symbols] x.constant"),
    ('x = { shape = [3], init = "normal" }', 'x = 3', "[symbols] x"),
    ("[symbols]", "[check]\ndtypes = [\"float8\"]\n[symbols]", "[check] dtypes"),
    ("[symbols]", "[limits]\nmax_elements = 0\n[symbols]", "[limits] max_elements"),
    ("[symbols]", "[define]\nexp = \"x\"\n[symbols]", "[define] exp"),
    ("[symbols]", "[[candidate]]\nname = \"c\"\ncode = \"c.py\"\n[symbols]", "[[candidate]] c.code"),
    ("[symbols]", "[[candidate]]\ncode = \"c.py:f\"\n[symbols]", "[[candidate]] #1"),
])
def test_fields_are_named_as_written(old, new, field):
    text = MINIMAL.replace(old, new, 1)
    assert text != MINIMAL
    with pytest.raises(CaseError) as info:
        load_case_text(text, path="cases/x.toml")
    assert info.value.where == f"cases/x.toml::minimal::{field}"
    assert str(info.value).startswith(f"cases/x.toml::minimal::{field}: ")


def test_case_name_appears_even_for_errors_found_before_it_is_validated():
    text = 'zzz = 1\nname = "early"\nloss = "x"\n[symbols]\nx = { value = 1.0 }\n'
    with pytest.raises(CaseError, match=r"^f\.toml::early::zzz: unknown key 'zzz'"):
        load_case_text(text, path="f.toml")


def test_unknown_key_suggests_and_lists():
    with pytest.raises(CaseError) as info:
        load_case_text(MINIMAL.replace('name = "minimal"', 'name = "minimal"\ndescripton = "x"'))
    assert info.value.reason == "unknown key 'descripton'"
    assert info.value.hint.startswith("did you mean 'description'? allowed keys: name, description, seed")


def test_case_error_composes_where_and_field():
    e = CaseError("bad thing", field="[define] Z1", hint="fix it")
    assert str(e) == "[define] Z1: bad thing\n  hint: fix it"
    e2 = CaseError(e.reason, where="f.toml::c", hint=e.hint, **{k: v for k, v in e.fields.items()
                                                                if k not in ("where", "hint")})
    assert str(e2) == "f.toml::c::[define] Z1: bad thing\n  hint: fix it"
    assert e2.where == "f.toml::c::[define] Z1"
    e3 = CaseError("x", where="f.toml::c::[check] dtypes", field="[check] dtypes")
    assert str(e3) == "f.toml::c::[check] dtypes: x"
    assert isinstance(e3, ValueError) and isinstance(e3, VerigradError) and e3.exit_code == 2


@pytest.mark.parametrize("err", [
    CaseError("bad", where="f.toml::c", field="[check] dtypes", hint="fix"),
    LimitError("too big", field="loss", column=3),
    ExpressionError("x"),
    UsageError("--digits=0 is out of range"),
    DomainError("log is undefined at -1", expression="log(x)", hint="change the point"),
])
def test_errors_survive_pickling(err):
    import pickle

    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.fields == err.fields and back.hint == err.hint
    assert getattr(back, "where", None) == getattr(err, "where", None)


def test_expression_errors_are_reported_at_compile_time_with_breadcrumb():
    case = load_case_text(MINIMAL.replace("sum(x**2)", "sum(x**2) + y"), path="cases/m.toml")
    with pytest.raises(ExpressionError) as info:
        compile_case(case)
    assert str(info.value).startswith("cases/m.toml::minimal::loss: unknown name 'y' at column 13")


# -- validation details ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["lambda", "None", "True", "class", "import"])
def test_python_keywords_are_refused_as_names(key):
    text = MINIMAL + f"{key} = {{ value = 1.0, constant = true }}\n"
    with pytest.raises(CaseError, match=rf"'{key}' is a Python keyword"):
        load_case_text(text)


@pytest.mark.parametrize("key", ["exp", "sum", "pi", "e", "softmax"])
def test_reserved_names_are_refused(key):
    text = MINIMAL + f"{key} = {{ value = 1.0, constant = true }}\n"
    with pytest.raises(CaseError, match=rf"'{key}' is a reserved name \(a (function|constant) of the expression"):
        load_case_text(text)


@pytest.mark.parametrize("table,pattern", [
    ("max_expression_depth = 100000", r"max_expression_depth=100000 is over the hard maximum of 250"),
    ("symbolic_seconds = inf", r"symbolic_seconds=inf must be a positive, finite number of seconds"),
    ("candidate_seconds = nan", r"candidate_seconds=nan must be a positive, finite number of seconds"),
    ("candidate_seconds = -1", r"candidate_seconds=-1 must be a positive, finite number of seconds"),
    ("max_elements = 1.5", r"expected a positive integer, got float 1\.5"),
    ("max_elements = true", r"expected a positive integer, got the boolean true"),
    ("max_precision_bits = 10", r"max_precision_bits=10 is too small"),
    ("max_elemnts = 10", r"unknown key 'max_elemnts'"),
])
def test_limits_validation(table, pattern):
    with pytest.raises(CaseError, match=pattern):
        load_case_text(MINIMAL + "[limits]\n" + table + "\n")


def test_symbol_limits():
    with pytest.raises(LimitError, match=r"shape=\[10, 10\] has 100 entries, over the limit of 50") as info:
        load_case_text(MINIMAL.replace("[3]", "[10, 10]") + "[limits]\nmax_symbol_elements = 50\n")
    assert info.value.hint == "raise [limits] max_symbol_elements"
    text = MINIMAL + 'y = { shape = [8], init = "normal" }\n[limits]\nmax_elements = 10\n'
    with pytest.raises(LimitError, match=r"the symbols have 11 entries in all, over the limit of 10") as info:
        load_case_text(text)
    assert info.value.hint == "raise [limits] max_elements"
    with pytest.raises(LimitError, match=r"has 9 dimensions, over the maximum of 8"):
        load_case_text(MINIMAL.replace("[3]", "[1, 1, 1, 1, 1, 1, 1, 1, 1]"))
    with pytest.raises(LimitError, match=r"the value has more than 5 entries"):
        load_case_text(MINIMAL + "v = { value = [1, 2, 3, 4, 5, 6] }\n[limits]\nmax_symbol_elements = 5\n")


def test_expression_limits_reach_the_parser():
    text = MINIMAL.replace("sum(x**2)", "sum(x**2) + " + " + ".join(["x[0]"] * 20))
    with pytest.raises(LimitError, match=r"loss: expression is \d+ characters long, over the limit of 50"):
        compile_case(load_case_text(text + "[limits]\nmax_expression_length = 50\n"))
    with pytest.raises(LimitError, match=r"loss: expression has more than 30 syntax nodes"):
        compile_case(load_case_text(text + "[limits]\nmax_expression_nodes = 30\n"))
    with pytest.raises(LimitError, match=r"loss: expression nesting depth exceeds 2"):
        compile_case(load_case_text(text + "[limits]\nmax_expression_depth = 2\n"))
    with pytest.raises(LimitError, match=r"would have shape \[3, 3\] = 9 entries, over the limit of 5"):
        compile_case(load_case_text(MINIMAL.replace("sum(x**2)", "sum(x[:, None] * x)")
                                    + "[limits]\nmax_intermediate_elements = 5\n"))


def test_symbolic_time_limit():
    with pytest.raises(LimitError) as info:
        compile_case(load_case_text(MINIMAL + "[limits]\nsymbolic_seconds = 1e-9\n", path="t.toml"))
    assert "symbolic work took" in str(info.value) and "over the limit of 1e-09 s" in str(info.value)
    assert info.value.hint == "raise [limits] symbolic_seconds"


def test_value_forms():
    text = MINIMAL + ('a = { value = 3, constant = true }\n'
                      'm = { value = [[1, 2], [3, 4]], constant = true }\n'
                      'k = { value = -0.0, shape = [2, 2], constant = true }\n'
                      'z = { value = 1.5, shape = [], constant = true }\n')
    case = load_case_text(text)
    assert case.symbol("a").shape == () and case.symbol("a").value.dtype == np.float64
    assert case.symbol("m").shape == (2, 2)
    assert case.symbol("k").shape == (2, 2) and np.all(np.signbit(case.symbol("k").value))
    assert case.symbol("z").shape == ()


def test_init_forms():
    text = MINIMAL + ('a = { init = " normal ( -1 , 2.5e-1 ) " }\n'
                      'u = { init = "uniform(0, 1e-3)", shape = [2] }\n'
                      'c = { init = "normal(3, 0)" }\n')
    case = load_case_text(text)
    assert (case.symbol("a").init.a, case.symbol("a").init.b) == (-1.0, 0.25)
    assert case.symbol("u").init.kind == "uniform"
    assert float(draw_point(case)["c"]) == 3.0  # sigma = 0 gives the mean


def test_expect_by_dtype():
    from verigrad.spec import Dtype, Expect

    text = ('name = "e"\nloss = "sum(x**2)"\n[symbols]\nx = { value = [1.0] }\n[[candidate]]\nname = "c"\n'
            'code = "impl/c.py:g"\nexpect = { float32 = "fail" }\n')
    cand = load_case_text(text, path="t.toml").candidates[0]
    assert cand.expectation(Dtype.FLOAT32) is Expect.FAIL and cand.expectation(Dtype.FLOAT64) is Expect.PASS
    with pytest.raises(CaseError, match=r"unknown dtype 'float8' in the expect table"):
        load_case_text(text.replace("float32", "float8"), path="t.toml")
    with pytest.raises(CaseError, match=r"expect='maybe' is not allowed"):
        load_case_text(text.replace('"fail"', '"maybe"'), path="t.toml")
