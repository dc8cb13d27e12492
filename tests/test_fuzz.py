"""Fuzzing the expression parser and the case loader (Hypothesis).

The contract: for *any* expression text and *any* case-file text, the loader and
``compile_case`` either return a valid case/model or raise a
:class:`~verigrad.errors.CaseError` - never another exception, never a hang.
Examples are small and bounded (the whole file runs in well under a minute);
deeply nested and huge inputs are covered by explicit examples at the end.
"""

from __future__ import annotations

import json
import math
import os
import re
import time

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from verigrad.casefile.loader import LIMIT_KEYS, TOP_KEYS, load_case_text, point_in_dtype
from verigrad.errors import CaseError
from verigrad.expr.parser import SIGNATURES, ExprLimits, parse_expression
from verigrad.expr.graph import Builder
from verigrad.engine.model import compile_case
from verigrad.spec import Dtype

# VERIGRAD_FUZZ_EXAMPLES=5000 for a long local run (random seeds then, to explore further).
_EXAMPLES = int(os.environ.get("VERIGRAD_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=_EXAMPLES, deadline=None, derandomize=_EXAMPLES <= 200,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
SECONDS = 10.0  # per example: anything slower is a hang

SYMBOLS = {"x": (3,), "y": (3,), "W": (2, 3), "s": (), "T": (2, 3, 4)}
BASE = """name = "fuzz"
[symbols]
x = { shape = [3], init = "normal" }
y = { value = [0.25, 0.5, 0.75], constant = true }
W = { shape = [2, 3], init = "uniform(-1, 1)" }
s = { value = 0.5 }
T = { shape = [2, 3, 4], init = "normal(0, 0.1)" }
"""


# -- a tiny TOML writer (inline tables and arrays), enough to serialise any generated document --


def toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(i) for i in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(i)}" for k, i in v.items()) + " }"
    raise TypeError(type(v))  # pragma: no cover


def toml_document(doc: dict) -> str:
    return "\n".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items()) + "\n"


def outcome(text: str):
    """Load and compile; return the model or the CaseError.  Anything else fails the test."""
    t0 = time.perf_counter()
    try:
        model = compile_case(load_case_text(text, path="fuzz/case.toml"))
        result = model
    except CaseError as exc:
        assert str(exc).strip(), "an error without a message"
        result = exc
    elapsed = time.perf_counter() - t0
    assert elapsed < SECONDS, f"took {elapsed:.1f} s"
    try:
        event("compiled" if not isinstance(result, CaseError) else type(result).__name__)
    except Exception:  # noqa: BLE001 - outside a Hypothesis test
        pass
    return result


def evaluate_float(model) -> None:
    """Evaluate loss and gradient in both dtypes: values may be inf/nan, but nothing may raise."""
    for dt in (Dtype.FLOAT32, Dtype.FLOAT64):
        try:
            point = point_in_dtype(model.point, dt)
        except CaseError:
            continue
        out = model.float_eval([model.loss, *model.gradient.values()], point, dt.numpy)
        assert all(o.dtype == dt.numpy for o in out)
        assert out[0].shape == ()


# -- expression strategies --------------------------------------------------------------------

NAMES = st.sampled_from(["x", "y", "W", "s", "T", "pi", "e", "q", "X", "__class__", "np", "exp", "sum"])
NUMBERS = st.sampled_from(["0", "1", "2", "0.5", "1e-3", "3.", ".25", "1_0", "0x1f", "1e308", "1e400", "1e-400",
                           "1j", "True", "None", "...", "'s'", "b'x'", "99999999999999999999"])
FUNCS = sorted(SIGNATURES)


@st.composite
def grammar_expr(draw, depth=0):
    """Mostly well-formed expressions over the whole grammar (names, ops, calls, indexing, options)."""
    if depth > 4 or draw(st.integers(0, 3)) == 0:
        return draw(NAMES | NUMBERS)
    kind = draw(st.sampled_from(["bin", "bin", "unary", "call", "call", "index", "attr", "paren", "junk"]))
    sub = lambda: draw(grammar_expr(depth + 1))  # noqa: E731
    if kind == "bin":
        op = draw(st.sampled_from(["+", "-", "*", "/", "**", "@", "%", "//", "<", "and", "^"]))
        return f"{sub()} {op} {sub()}"
    if kind == "unary":
        return draw(st.sampled_from(["-", "+", "~", "not "])) + sub()
    if kind == "paren":
        return f"({sub()})"
    if kind == "attr":
        return sub() + draw(st.sampled_from([".T", ".T", ".sum()", ".__class__", ".shape"]))
    if kind == "index":
        item = st.sampled_from(["0", "-1", "1:", "::-1", "::0", "None", "...", "0, 1", ":, None", "x", "[0]",
                                "True", "1.5", "5", ":2, ...", "..., ..."])
        return f"{sub()}[{draw(item)}]"
    if kind == "call":
        name = draw(st.sampled_from(FUNCS + ["eval", "__import__", "open", "summ", "x", "getattr"]))
        args = [sub() for _ in range(draw(st.integers(0, 2)))]
        opts = draw(st.lists(st.sampled_from(
            ["axis=0", "axis=-1", "axis=(0, 1)", "axis=None", "axis=True", "keepdims=True", "keepdims=1",
             "axes=(1, 0)", "axes=0", "shape=(-1,)", "shape=(2, 3)", "shape=6", "shape=(0, -1)", "*x", "**{}",
             "axis=5", "axis=(0, 0)", "shape=None"]), max_size=2))
        return f"{name}({', '.join(args + opts)})"
    return draw(st.sampled_from(["lambda: x", "[v for v in x]", "f'{x}'", "(z := x)", "x if s else y",
                                 "{x}", "x, y", "x = 1", "import os", "x;y", "'a' + 'b'", "", "   ", "(",
                                 "x)", "x[", "@", "\\", "#", "\x00", "\n"]))


LEAVES = {(): ["s", "0.5", "2", "pi", "x[0]", "W[1, 2]"], (3,): ["x", "y"], (2, 3): ["W"], (2,): ["W[:, 0]"],
          (3, 2): ["W.T"], (2, 3, 4): ["T"]}
ELEMENTWISE = ["exp", "tanh", "sigmoid", "sin", "cos", "square", "abs", "relu", "softplus", "arctan", "erf",
               "log1p", "sqrt", "log", "expm1", "sinh"]


@st.composite
def shaped_expr(draw, shape=(), depth=0):
    """Well-formed expressions of a known shape: most of them compile (domain errors appear only later)."""
    leaves = LEAVES.get(shape, [])
    if depth >= 4 or (leaves and draw(st.integers(0, 2)) == 0):
        if leaves:
            return draw(st.sampled_from(leaves))
    sub = lambda sh: draw(shaped_expr(sh, depth + 1))  # noqa: E731
    choices = ["unary", "binary", "scalar-binary", "maximum", "neg"]
    if shape == ():
        choices += ["reduce", "dot", "index"]
    if shape in ((3,), (2,)):
        choices += ["matvec", "axis-reduce", "softmax"]
    if shape == (2, 3):
        choices += ["transpose", "reshape", "t-reduce", "softmax"]
    if shape == (3, 2):
        choices += ["transpose"]
    kind = draw(st.sampled_from(choices))
    if kind == "unary":
        return f"{draw(st.sampled_from(ELEMENTWISE))}({sub(shape)})"
    if kind == "neg":
        return f"-({sub(shape)})"
    if kind == "binary":
        return f"({sub(shape)} {draw(st.sampled_from(['+', '-', '*', '/']))} {sub(shape)})"
    if kind == "scalar-binary":
        op = draw(st.sampled_from(["+", "-", "*", "/", "**"]))
        return f"({sub(shape)} {op} {sub(())})" if op != "**" else f"({sub(shape)} ** 2)"
    if kind == "maximum":
        return f"{draw(st.sampled_from(['maximum', 'minimum']))}({sub(shape)}, {sub(shape)})"
    if kind == "reduce":
        fn = draw(st.sampled_from(["sum", "mean", "max", "min", "logsumexp", "prod"]))
        return f"{fn}({sub(draw(st.sampled_from([(3,), (2, 3), (2, 3, 4), (2,)])))})"
    if kind == "dot":
        return f"({sub((3,))} @ {sub((3,))})"
    if kind == "index":
        return f"{sub((3,))}[{draw(st.sampled_from(['0', '-1', '2']))}]"
    if kind == "matvec":
        return f"({sub((2, 3))} @ {sub((3,))})" if shape == (2,) else f"({sub((2,))} @ {sub((2, 3))})"
    if kind == "axis-reduce":
        fn = draw(st.sampled_from(["sum", "mean", "max", "logsumexp"]))
        return f"{fn}({sub((2, 3))}, axis={1 if shape == (2,) else 0})"
    if kind == "softmax":
        fn = draw(st.sampled_from(["softmax", "log_softmax"]))
        return f"{fn}({sub(shape)}, axis={draw(st.sampled_from([0, -1]))})"
    if kind == "transpose":
        return f"({sub(shape[::-1])}).T"
    if kind == "reshape":
        return f"reshape({sub((3, 2))}, (2, -1))"
    return f"sum({sub((2, 3, 4))}, axis=2)"  # t-reduce


@FUZZ
@given(expr=shaped_expr())
@example(expr="sum(softmax(W, axis=0) @ x) + logsumexp(T, axis=2)[1, 0]")
def test_well_formed_expressions_compile_and_evaluate(expr):
    text = BASE.replace('name = "fuzz"', f'name = "fuzz"\nloss = {json.dumps(expr)}')
    result = outcome(text)
    if not isinstance(result, CaseError):
        evaluate_float(result)
    else:
        # The only refusals of well-formed expressions: a loss of constants only.
        assert "does not depend on any variable" in str(result), str(result)


TOKENS = st.sampled_from(list(" xyWsTqe0123456789.+-*/@()[],:_=<>!~%^&|'\"{}#\\\n\tj") +
                         ["sum", "exp", "log", "axis", "keepdims", "None", "True", "lambda", "for", "in", "if",
                          "__", ".T", "**", "...", "1e400", "pi", "reshape", "softmax", "θ", "ｘ", "\u200b"])
TOKEN_TEXT = st.lists(TOKENS, max_size=30).map("".join)


def parse_only(text: str):
    b = Builder()
    names = {k: b.leaf(k, shape, variable=True) for k, shape in SYMBOLS.items()}
    return parse_expression(text, builder=b, names=names, field="loss", limits=ExprLimits())


@FUZZ
@given(text=st.text(max_size=80) | TOKEN_TEXT)
@example(text="x.__class__.__bases__[0].__subclasses__()")
@example(text="__import__('os').system('true')")
@example(text="sum(x)" + "\udcff")
def test_parser_on_arbitrary_text(text):
    t0 = time.perf_counter()
    try:
        parse_only(text)
    except CaseError as exc:
        assert str(exc).startswith("loss: ")
    assert time.perf_counter() - t0 < SECONDS


@FUZZ
@given(expr=grammar_expr())
@example(expr="sum(softmax(W, axis=0) @ x) + logsumexp(T, axis=(0, 2))[1]")
@example(expr="sum(reshape(T, (4, -1))) ** s")
def test_grammar_expressions_compile_or_fail_cleanly(expr):
    text = BASE.replace('name = "fuzz"', f'name = "fuzz"\nloss = {json.dumps(expr)}')
    result = outcome(text)
    if not isinstance(result, CaseError):
        evaluate_float(result)


@FUZZ
@given(expr=grammar_expr(), define=grammar_expr())
def test_defines_compile_or_fail_cleanly(expr, define):
    text = BASE.replace('name = "fuzz"', f'name = "fuzz"\nloss = {json.dumps("sum(Z) + " + expr)}')
    text += f"[define]\nZ = {json.dumps(define)}\n"
    result = outcome(text)
    if isinstance(result, CaseError):
        assert str(result).startswith("fuzz/case.toml::fuzz")


# -- case-document strategies -------------------------------------------------------------------

JUNK = st.recursive(
    st.none().map(lambda _: "") | st.booleans() | st.integers(-10**20, 10**20).filter(lambda i: -2**63 <= i < 2**63)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
IDENT = st.sampled_from(["x", "W", "b", "s", "X", "exp", "__x", "e", "lambda", "W1", "q", "x y", ""]) | \
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True)
SHAPE = st.lists(st.integers(-1, 4), max_size=4) | st.lists(st.integers(1, 3), max_size=3) | JUNK
INIT = st.sampled_from(["normal", "uniform(-1, 1)", "normal(0, 0.1)", "gauss", "uniform(1, 0)", "normal(0, -1)",
                        "normal(nan, 1)", "normal(1e999, 1)", "uniform(a, b)", "normal()"]) | st.text(max_size=12)
VALUE = st.recursive(st.floats(allow_nan=True, allow_infinity=True, width=64) | st.integers(-5, 5)
                     | st.booleans(), lambda c: st.lists(c, min_size=0, max_size=3), max_leaves=12)
SYMBOL = st.fixed_dictionaries({}, optional={"shape": SHAPE, "init": INIT, "value": VALUE,
                                             "constant": st.booleans() | JUNK, "file": st.text(max_size=8),
                                             "colour": JUNK}) | JUNK
EXPR = grammar_expr() | TOKEN_TEXT
CANDIDATE = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["a", "a", "b c", ""]) | st.text(max_size=5),
    "code": st.sampled_from(["impl/x.py:f", "impl/x.py", "x.txt:f", "a:b:c", "impl/x.py:1f", "x.py:class"]),
    "expect": st.sampled_from(["pass", "fail", "maybe"]) | JUNK,
    "extra": JUNK})
CHECK = st.fixed_dictionaries({}, optional={
    "dtypes": st.lists(st.sampled_from(["float32", "float64", "float16", 1]), max_size=3) | JUNK,
    "schemes": st.lists(st.sampled_from(["central", "forward", "centre", "complex-step"]), max_size=3) | JUNK,
    "steps": st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=2) | JUNK,
    "step_mode": st.sampled_from(["absolute", "relative", "abs"]) | JUNK,
    "tolerance_factor": st.floats() | JUNK, "floor_ulps": st.floats() | JUNK,
    "digits": st.integers(-5, 2000) | JUNK, "bogus": JUNK})
LIMITS = st.dictionaries(st.sampled_from(list(LIMIT_KEYS) + ["max_elemnts"]),
                         st.integers(-1, 10**7) | st.floats(allow_nan=True, allow_infinity=True) | JUNK, max_size=3)
DOCUMENT = st.fixed_dictionaries(
    {"name": st.sampled_from(["fuzz-case", "a", "bad name", ""]) | st.text(max_size=8),
     "loss": EXPR,
     "symbols": st.dictionaries(IDENT, SYMBOL, max_size=4)},
    optional={"define": st.dictionaries(IDENT, EXPR | JUNK, max_size=3),
              "seed": st.integers(-1, 2**33) | JUNK,
              "rng": st.sampled_from(["numpy", "numpy-legacy", "mt19937"]) | JUNK,
              "description": st.text(max_size=10) | JUNK,
              "loss_code": st.sampled_from(["impl/x.py:loss", "nope"]) | JUNK,
              "candidate": st.lists(CANDIDATE | JUNK, max_size=3) | JUNK,
              "check": CHECK | JUNK,
              "limits": LIMITS | JUNK,
              "unknown_key": JUNK})


@FUZZ
@given(doc=DOCUMENT)
def test_generated_documents_load_or_fail_cleanly(doc):
    result = outcome(toml_document(doc))
    if not isinstance(result, CaseError):
        evaluate_float(result)
        assert set(result.case.check.dtypes) <= set(Dtype)


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(list(TOP_KEYS) + ["extra"]), JUNK, max_size=6))
def test_junk_documents_fail_cleanly(doc):
    outcome(toml_document(doc))


VALID_TEXT = """name = "two-layer"
seed = 3
rng = "numpy-legacy"
loss = "mean(-Y*log(A2) - (1 - Y)*log(1 - A2))"
[symbols]
X = { constant = true, shape = [4, 3], init = "normal" }
Y = { constant = true, value = [[1, 0, 1]] }
W1 = { shape = [5, 4], init = "normal(0, 0.5)" }
b1 = { shape = [5, 1], init = "normal" }
W2 = { shape = [1, 5], init = "uniform(-1, 1)" }
[define]
Z1 = "W1 @ X + b1"
A1 = "tanh(Z1)"
A2 = "sigmoid(W2 @ A1)"
[[candidate]]
name = "bp"
code = "impl/bp.py:grad"
[check]
dtypes = ["float32", "float64"]
schemes = ["central"]
[limits]
candidate_seconds = 5
"""


@FUZZ
@given(data=st.data())
def test_mutated_valid_file_loads_or_fails_cleanly(data):
    text = VALID_TEXT
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 12)))
        insert = data.draw(st.sampled_from(["", "[", "]", "{", "}", "\"", "'", "=", "\n", "0", "-1", "x", ".T",
                                            "__", "[[candidate]]\n", "inf", "nan", ",", "#", "\\", "é"])
                           | st.text(max_size=3))
        text = text[:i] + insert + text[j:]
    result = outcome(text)
    if not isinstance(result, CaseError):
        evaluate_float(result)


def test_the_unmutated_file_is_valid():
    model = outcome(VALID_TEXT)
    assert not isinstance(model, CaseError), model
    evaluate_float(model)


# -- deeply nested and huge inputs ------------------------------------------------------------------


def _loss_case(expr: str, extra: str = "") -> str:
    return BASE.replace('name = "fuzz"', f'name = "fuzz"\nloss = {json.dumps(expr)}') + extra


DEEP_AND_HUGE = {
    "parens-300": _loss_case("(" * 300 + "s" + ")" * 300),
    "parens-150": _loss_case("(" * 150 + "s" + ")" * 150),
    "calls-200": _loss_case("exp(" * 200 + "s" + ")" * 200),
    "unary-19000": _loss_case("-" * 19000 + "s"),
    "index-3000": _loss_case("s" + ".T" * 3000),
    "sum-of-4000-terms": _loss_case(" + ".join(["s"] * 4000)),
    "sum-of-9000-terms": _loss_case("s" + "+s" * 9000),
    "power-tower": _loss_case("**".join(["s"] * 3000)),
    "length-over-limit": _loss_case("s" + " + s" * 6000),
    "one-megabyte-loss": _loss_case("s" * 1_000_000),
    "long-number": _loss_case("s * " + "1" * 5000),
    "long-decimal": _loss_case("s * 0." + "3" * 15000),
    "huge-exponent": _loss_case("s * 1e99999999999"),
    "toml-array-nesting": _loss_case("s", "v = { value = " + "[" * 5000 + "1" + "]" * 5000 + " }\n"),
    "toml-inline-table-nesting": _loss_case("s", "v = " + "{ a = " * 3000 + "1" + " }" * 3000 + "\n"),
    "value-nesting-9": _loss_case("s", "v = { value = " + "[" * 9 + "1" + "]" * 9 + " }\n"),
    "many-symbols": "name = \"many\"\nloss = \"s0\"\n[symbols]\n"
                    + "".join(f"s{i} = {{ value = {i}.5 }}\n" for i in range(3000)),
    "define-chain-800": _loss_case("D799", "[define]\nD0 = \"s\"\n"
                                   + "".join(f"D{i} = \"D{i - 1} * 2 + s\"\n" for i in range(1, 800))),
    "broadcast-explosion": _loss_case("sum(" + "[:, None]".join(["x"] * 1) + "x[:, None, None, None, None, None, "
                                      "None, None, None, None, None, None, None, None, None] * x)"),
    "huge-shape": _loss_case("s", "big = { shape = [100000, 100000], init = \"normal\" }\n"),
    "huge-seed": _loss_case("s").replace('name = "fuzz"', 'name = "fuzz"\nseed = 99999999999999999999'),
    "null-byte": _loss_case("s") + "\x00",
    "long-key": _loss_case("s", "k" * 100_000 + " = { value = 1 }\n"),
}


@pytest.mark.parametrize("name", list(DEEP_AND_HUGE))
def test_deep_and_huge_inputs(name):
    result = outcome(DEEP_AND_HUGE[name])
    if not isinstance(result, CaseError):
        evaluate_float(result)


def _nested_constant_product(n: int) -> str:
    expr = "s"
    for _ in range(n):
        expr = f"1e-300 * ({expr})"
    return expr


def test_gradient_constant_folding_of_many_literals():
    # folded rationals of > 4300 digits must never be str()'d (CPython's int-to-str limit)
    outcome(_loss_case(_nested_constant_product(15)))
