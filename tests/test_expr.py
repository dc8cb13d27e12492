"""Tests for verigrad.expr.parser: the safe expression parser.

Valid constructs are compared, value for value, with numpy (through
``compile_case(...).float_eval`` in float64); refused constructs must raise the
documented error with the field and column.
"""

from __future__ import annotations

import builtins
import json
import math
from fractions import Fraction

import numpy as np
import pytest

from verigrad.casefile.loader import load_case_text, point_in_dtype
from verigrad.errors import CaseError, ExpressionError, LimitError, ShapeError
from verigrad.expr.parser import MAX_DEPTH_CEILING, RESERVED_NAMES, SIGNATURES, ExprLimits, parse_expression
from verigrad.expr.graph import Builder, Op
from verigrad.engine.model import compile_case
from verigrad.spec import Dtype

RNG = np.random.default_rng(20240601)
# Given values (exact float64 literals via repr) so that numpy sees the same numbers.
VALUES = {
    "x": RNG.standard_normal(3),
    "y": RNG.standard_normal(3),
    "W": RNG.standard_normal((2, 3)),
    "A": RNG.standard_normal((3, 3)),
    "T3": RNG.standard_normal((2, 3, 4)),
    "B": RNG.standard_normal((4, 2)),
    "p": RNG.uniform(0.2, 0.9, 3),  # in (0, 1): inside every domain
    "s": np.array(0.7),
}


def _toml_value(v: np.ndarray) -> str:
    return repr(v.tolist()) if v.ndim else repr(float(v))


def case_text(loss: str, defines: dict[str, str] | None = None, extra: str = "") -> str:
    lines = ['name = "expr-test"', f"loss = {json.dumps(loss)}", extra, "[symbols]"]
    for name, v in VALUES.items():
        lines.append(f"{name} = {{ value = {_toml_value(v)} }}")
    if defines:
        lines.append("[define]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in defines.items()]
    return "\n".join(lines) + "\n"


def compile_loss(loss: str, defines=None, extra: str = ""):
    return compile_case(load_case_text(case_text(loss, defines, extra)))


def float_loss(loss: str, defines=None) -> float:
    m = compile_loss(loss, defines)
    point = point_in_dtype(m.point, Dtype.FLOAT64)
    (value,) = m.float_eval([m.loss], point, np.float64)
    assert value.dtype == np.float64
    return float(value)


def parse(text: str, *, field: str = "loss", limits: ExprLimits = ExprLimits(), **shapes):
    b = Builder()
    names = {k: b.leaf(k, v, variable=True) for k, v in (shapes or {"x": (3,)}).items()}
    return parse_expression(text, builder=b, names=names, field=field, limits=limits)


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _lse(z, axis=None, keepdims=False):
    m = np.max(z, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


x, y, W, A, T3, B, p, s = (VALUES[k] for k in ("x", "y", "W", "A", "T3", "B", "p", "s"))

# (expression, numpy reference) - every construct of the grammar, with numpy semantics.
VALID = [
    ("sum(x + y)", lambda: np.sum(x + y)),
    ("sum(x - y * 2)", lambda: np.sum(x - y * 2)),
    ("sum(x / (2 + p))", lambda: np.sum(x / (2 + p))),
    ("sum(p ** 3)", lambda: np.sum(p**3)),
    ("sum(p ** 0.5)", lambda: np.sum(p**0.5)),
    ("sum(p ** x)", lambda: np.sum(p**x)),
    ("s ** -2", lambda: s**-2.0),
    ("sum(-x) + +s", lambda: np.sum(-x) + s),
    ("sum(2 ** x)", lambda: np.sum(2.0**x)),
    ("sum(W + x)", lambda: np.sum(W + x)),  # broadcast (2,3) + (3,)
    ("sum(W * W[0])", lambda: np.sum(W * W[0])),
    ("sum(T3 * B.T[:, None, :])", lambda: np.sum(T3 * B.T[:, None, :])),
    ("sum(W @ x)", lambda: np.sum(W @ x)),  # (2,3) @ (3,)
    ("x @ y", lambda: x @ y),  # (3,) @ (3,) -> scalar
    ("sum(x @ A)", lambda: np.sum(x @ A)),  # (3,) @ (3,3)
    ("sum(W @ A @ W.T)", lambda: np.sum(W @ A @ W.T)),
    ("sum(T3 @ B)", lambda: np.sum(T3 @ B)),  # batched (2,3,4) @ (4,2)
    ("sum(matmul(W, A))", lambda: np.sum(W @ A)),
    ("sum(dot(W, x))", lambda: np.sum(np.dot(W, x))),
    ("dot(x, y)", lambda: np.dot(x, y)),
    ("sum(dot(s, x))", lambda: np.sum(np.dot(s, x))),
    ("sum(W.T * 1)", lambda: np.sum(W.T)),
    ("sum(W.T[0])", lambda: np.sum(W.T[0])),
    ("sum(transpose(T3, axes=(2, 0, 1))[0])", lambda: np.sum(np.transpose(T3, (2, 0, 1))[0])),
    ("sum(transpose(T3)[1])", lambda: np.sum(np.transpose(T3)[1])),
    ("sum(transpose(T3, (-1, 0, 1))[0])", lambda: np.sum(np.transpose(T3, (-1, 0, 1))[0])),
    ("x[0] * x[-1]", lambda: x[0] * x[-1]),
    ("W[1, 2] + W[-1][0]", lambda: W[1, 2] + W[-1][0]),
    ("sum(x[1:])", lambda: np.sum(x[1:])),
    ("sum(x[::-1] * y)", lambda: np.sum(x[::-1] * y)),
    ("sum(x[::2])", lambda: np.sum(x[::2])),
    ("sum(T3[..., 1])", lambda: np.sum(T3[..., 1])),
    ("sum(T3[0, ..., 1:3])", lambda: np.sum(T3[0, ..., 1:3])),
    ("sum(x[:, None] * y[None, :])", lambda: np.sum(x[:, None] * y[None, :])),
    ("sum(W[:, None, :] @ A)", lambda: np.sum(W[:, None, :] @ A)),
    ("sum(T3[()] )", lambda: np.sum(T3[()])),
    ("sum(T3, axis=1)[0, 2]", lambda: np.sum(T3, axis=1)[0, 2]),
    ("sum(sum(T3, axis=(0, 2), keepdims=True))", lambda: np.sum(T3, axis=(0, 2), keepdims=True).sum()),
    ("sum(mean(T3, axis=-1))", lambda: np.sum(np.mean(T3, axis=-1))),
    ("mean(W)", lambda: np.mean(W)),
    ("prod(p)", lambda: np.prod(p)),
    ("sum(prod(W, axis=0))", lambda: np.sum(np.prod(W, axis=0))),
    ("max(x) - min(x)", lambda: np.max(x) - np.min(x)),
    ("sum(max(W, axis=1))", lambda: np.sum(np.max(W, axis=1))),
    ("sum(min(T3, axis=(0, 1)))", lambda: np.sum(np.min(T3, axis=(0, 1)))),
    ("logsumexp(W)", lambda: _lse(W)),
    ("sum(logsumexp(T3, axis=1))", lambda: np.sum(_lse(T3, axis=1))),
    ("sum(logsumexp(W, 0, True))", lambda: np.sum(_lse(W, axis=0, keepdims=True))),
    ("sum(softmax(W) * W)", lambda: np.sum(_softmax(W) * W)),
    ("sum(softmax(W, axis=0) * W)", lambda: np.sum(_softmax(W, axis=0) * W)),
    ("sum(log_softmax(T3, axis=1))", lambda: np.sum(np.log(_softmax(T3, axis=1)))),
    ("sum(maximum(x, y))", lambda: np.sum(np.maximum(x, y))),
    ("sum(minimum(W, 0.25))", lambda: np.sum(np.minimum(W, 0.25))),
    ("sum(reshape(T3, (-1, 3)) @ W.T)", lambda: np.sum(T3.reshape(-1, 3) @ W.T)),
    ("sum(reshape(W, 6) * reshape(A, (9,))[:6])", lambda: np.sum(W.reshape(6) * A.reshape(9)[:6])),
    ("sum(reshape(W, shape=[3, 2])[2])", lambda: np.sum(W.reshape(3, 2)[2])),
    ("sum(exp(x) + log(p) + log1p(p) + expm1(x))",
     lambda: np.sum(np.exp(x) + np.log(p) + np.log1p(p) + np.expm1(x))),
    ("sum(sqrt(p) + square(x))", lambda: np.sum(np.sqrt(p) + np.square(x))),
    ("sum(sin(x) + cos(x) + tan(x))", lambda: np.sum(np.sin(x) + np.cos(x) + np.tan(x))),
    ("sum(sinh(x) + cosh(x) + tanh(x))", lambda: np.sum(np.sinh(x) + np.cosh(x) + np.tanh(x))),
    ("sum(arcsin(p) + arccos(p) + arctan(x))", lambda: np.sum(np.arcsin(p) + np.arccos(p) + np.arctan(x))),
    ("sum(erf(x))", lambda: sum(math.erf(v) for v in x)),
    ("sum(sigmoid(x) + softplus(x))", lambda: np.sum(_sigmoid(x) + np.logaddexp(0, x))),
    ("sum(relu(x) + abs(x))", lambda: np.sum(np.maximum(x, 0) + np.abs(x))),
    ("pi * s + e", lambda: np.pi * s + np.e),
    ("s * 1e-3 + 1_000 * s + 0x10 * s + .5 * s + 2. * s", lambda: s * 1e-3 + 1000 * s + 16 * s + 0.5 * s + 2 * s),
    ("s * (1 + 2) * (3 - 1) / 4", lambda: s * 3 * 2 / 4),
    ("sum(sum(W, keepdims=True))", lambda: np.sum(W)),
    ("sum(W, axis=())[0, 0] + s", lambda: W[0, 0] + s),
    ("sum(x)\n  + s", lambda: np.sum(x) + s),  # line breaks are spaces
    ("  sum(x)  ", lambda: np.sum(x)),
    ("sum(x)  # a comment", lambda: np.sum(x)),
]


@pytest.mark.parametrize("expr,ref", VALID, ids=[e for e, _ in VALID])
def test_valid_expressions_match_numpy(expr, ref):
    got = float_loss(expr)
    want = float(ref())
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_defines_are_names_and_shapes_propagate():
    m = compile_loss("sum(Z ** 2)", {"H": "W @ A", "Z": "relu(H) - x"})
    assert m.defines["H"].shape == (2, 3)
    assert m.defines["Z"].shape == (2, 3)
    point = point_in_dtype(m.point, Dtype.FLOAT64)
    (v,) = m.float_eval([m.loss], point, np.float64)
    assert float(v) == pytest.approx(np.sum((np.maximum(W @ A, 0) - x) ** 2), rel=1e-13)


@pytest.mark.parametrize("expr,shape", [
    ("x", (3,)), ("W", (2, 3)), ("W.T", (3, 2)), ("W @ x", (2,)), ("x @ A", (3,)), ("x @ y", ()),
    ("T3 @ B", (2, 3, 2)), ("W[:, None]", (2, 1, 3)), ("T3[..., 0]", (2, 3)), ("T3[0]", (3, 4)),
    ("sum(T3, axis=(0, 2))", (3,)), ("sum(T3, axis=1, keepdims=True)", (2, 1, 4)), ("mean(W)", ()),
    ("softmax(T3, axis=0)", (2, 3, 4)), ("reshape(T3, (-1,))", (24,)), ("reshape(T3, 24)", (24,)),
    ("transpose(T3, (1, 2, 0))", (3, 4, 2)), ("maximum(W, x)", (2, 3)), ("x[None] + W", (2, 3)),
    ("dot(W, x)", (2,)), ("s * W", (2, 3)), ("logsumexp(T3, axis=-1)", (2, 3)), ("x[::-2]", (2,)),
])
def test_shapes_follow_numpy(expr, shape):
    shapes = {k: v.shape for k, v in VALUES.items()}
    assert parse(expr, **shapes).shape == shape


def test_size_one_loss_is_accepted_as_scalar():
    assert float_loss("sum(x, keepdims=True)") == pytest.approx(np.sum(x), rel=1e-15)
    assert float_loss("W[0:1, 0:1] * 2") == pytest.approx(W[0, 0] * 2, rel=1e-15)


@pytest.mark.parametrize("text,value", [
    ("0.1", Fraction(1, 10)), ("1e-3", Fraction(1, 1000)), ("2.5e2", Fraction(250)), ("1_000", Fraction(1000)),
    ("0x10", Fraction(16)), ("0b101", Fraction(5)), ("0o17", Fraction(15)), (".5", Fraction(1, 2)),
    ("3.", Fraction(3)), ("1E2", Fraction(100)), ("0.3333333333333333333333333", Fraction(3333333333333333333333333, 10**25)),
    ("1.7e308", Fraction(17 * 10**307)), ("5e-324", Fraction(5, 10**324)),
])
def test_number_literals_are_exact_decimals(text, value):
    node = parse(f"x * {text}")
    const = node.args[1]
    assert const.op is Op.CONST
    assert Fraction(const.params[1], const.params[2]) == value


def test_pi_and_e_are_exact_constants():
    node = parse("x * pi + e")
    consts = {n.params for n in (node.args[0].args[1], node.args[1])}
    assert consts == {("pi",), ("e",)}


# -- refused constructs: (expression, error class, message regex, column) -----------------------

REFUSED = [
    ("x.__class__", ExpressionError, r"attribute access '\.__class__' is not allowed at column 1\n", 1),
    ("x.shape", ExpressionError, r"attribute access '\.shape' is not allowed", 1),
    ("x.sum()", ExpressionError, r"a method call \.sum\(\.\.\.\) is not allowed", 1),
    ("np.exp(x)", ExpressionError, r"a method call \.exp\(\.\.\.\) is not allowed", 1),
    ("eval('1')", ExpressionError, r"call of 'eval' is not allowed \(not a whitelisted function\)", 1),
    ("exec('import os')", ExpressionError, r"call of 'exec' is not allowed", 1),
    ("__import__('os')", ExpressionError, r"call of '__import__' is not allowed \(dunder names are refused\)", 1),
    ("open('/etc/passwd')", ExpressionError, r"call of 'open' is not allowed", 1),
    ("getattr(x, 'T')", ExpressionError, r"call of 'getattr' is not allowed", 1),
    ("x + __builtins__", ExpressionError, r"name '__builtins__' is not allowed \(dunder names are refused\)", 5),
    ("(lambda: 1)()", ExpressionError, r"this call is not allowed: only whitelisted functions can be called", 1),
    ("sum(lambda: x)", ExpressionError, r"a lambda is not allowed in an expression", 5),
    ("sum([v for v in x])", ExpressionError, r"a list comprehension is not allowed", 5),
    ("sum(v for v in x)", ExpressionError, r"a generator expression is not allowed", 4),
    ("sum({v: v for v in x})", ExpressionError, r"a dict comprehension is not allowed", 5),
    ("f'{x}'", ExpressionError, r"an f-string is not allowed", 1),
    ("(z := x)", ExpressionError, r"an assignment expression \(:=\) is not allowed", 2),
    ("sum(*x)", ExpressionError, r"a starred argument \(\*\) is not allowed", 5),
    ("sum(x, **{'axis': 0})", ExpressionError, r"\*\*keyword unpacking is not allowed", 8),
    ("0 < x < 1", ExpressionError, r"a chained comparison \(a < b < c\) is not allowed", 1),
    ("x is x", ExpressionError, r"the comparison 'is' is not allowed", 1),
    ("x and x", ExpressionError, r"a boolean operator \(and/or\) is not allowed", 1),
    ("x if x else x", ExpressionError, r"a conditional expression is not allowed", 1),
    ("not x", ExpressionError, r"operator 'not' is not allowed", 1),
    ("~x", ExpressionError, r"operator '~' is not allowed", 1),
    ("x % 2", ExpressionError, r"operator '%' is not allowed", 1),
    ("x // 2", ExpressionError, r"operator '//' is not allowed", 1),
    ("x ^ 2", ExpressionError, r"operator '\^' is not allowed", 1),
    ("x << 1", ExpressionError, r"operator '<<' is not allowed", 1),
    ("x + 'a'", ExpressionError, r"a string is not allowed in an expression", 5),
    ("x + b'a'", ExpressionError, r"a bytes literal is not allowed", 5),
    ("x * True", ExpressionError, r"True is a boolean, not a number", 5),
    ("x + 1j", ExpressionError, r"the complex number 1j is not allowed at column 5\n", 5),
    ("x + None", ExpressionError, r"None is not a number", 5),
    ("x + ...", ExpressionError, r"'\.\.\.' is not a number", 5),
    ("x, x", ExpressionError, r"a tuple is not allowed in an expression", 1),
    ("[x]", ExpressionError, r"a list is not allowed", 1),
    ("{x}", ExpressionError, r"a set is not allowed", 1),
    ("{'a': x}", ExpressionError, r"a dict is not allowed", 1),
    ("import os", ExpressionError, r"syntax error at column 1: invalid syntax", None),
    ("x; import os", ExpressionError, r"syntax error", None),
    ("x = 1", ExpressionError, r"syntax error", None),
    ("await x", ExpressionError, r"await is not allowed", 1),
    ("x +", ExpressionError, r"syntax error at column 4 \(the end of the expression\): invalid syntax", None),
    ("sum(x", ExpressionError, r"syntax error at column 4: '\(' was never closed", None),
    ("", ExpressionError, r"the expression is empty", None),
    ("   \n  ", ExpressionError, r"the expression is empty", None),
    ("x\x00", ExpressionError, r"contains a NUL character at column 2", None),
    ("q + x", ExpressionError, r"unknown name 'q'", 1),
    ("x + X", ExpressionError, r"unknown name 'X'", 5),
    ("sum", ExpressionError, r"function 'sum' is used without a call", 1),
    ("x(2)", ExpressionError, r"'x' is a declared symbol, not a function", 1),
    ("summ(x)", ExpressionError, r"call of 'summ' is not allowed", 1),
    ("sum()", ExpressionError, r"sum\(\) is missing its argument 'x'", 1),
    ("sum(x, 0, False, 1)", ExpressionError, r"sum\(\) takes at most 3 positional arguments \(x, axis, keepdims\), got 4", 1),
    ("sum(x, axes=0)", ExpressionError, r"sum\(\) has no option 'axes'", 8),
    ("sum(x, axis=0, axis=0)", ExpressionError, r"sum\(\) got 'axis' twice", 16),
    ("sum(x, axis=x)", ExpressionError, r"'axis' must be an integer literal, got 'x'", 13),
    ("sum(x, axis=True)", ExpressionError, r"sum\(\): 'axis' must be an integer or a tuple of integers, got True", 13),
    ("sum(x, keepdims=1)", ExpressionError, r"sum\(\): keepdims must be True or False, got '1'", 17),
    ("softmax(x, axis=None)", ExpressionError, r"softmax\(\): axis must be one integer", 17),
    ("transpose(x, axes=0)", ExpressionError, r"transpose\(\): axes must be a tuple of integers", 19),
    ("reshape(x, None)", ExpressionError, r"reshape\(\): shape must be an integer or a tuple of integers, got None", 12),
    ("reshape(x, (1.5,))", ExpressionError, r"'shape' entry must be an integer literal, got '1.5'", 13),
    ("x[x]", ExpressionError, r"an index must be an integer literal, got 'x'", 3),
    ("x[[0, 1]]", ExpressionError, r"an index must be an integer literal", 3),
    ("x[True]", ExpressionError, r"an index must be an integer literal, got 'True'", 3),
    ("x[0.5]", ExpressionError, r"an index must be an integer literal", 3),
    ("x[::0]", ExpressionError, r"a slice step cannot be zero", 3),
    ("x[1:y]", ExpressionError, r"a slice bound must be an integer literal", 5),
    ("x[..., ...]", ExpressionError, r"an index can only have a single '\.\.\.'", 1),
    ("x[99999999999999999999999]", ExpressionError, r"integer 99999999999999999999999 is out of range", 3),
    ("x * 1e400", ExpressionError, r"number 1e400 is too large: it overflows float64", 5),
    ("x * 1e999999999", ExpressionError, r"number 1e999999999 is too large", 5),
    ("x * 1e-400", ExpressionError, r"number 1e-400 is too small: it underflows to 0 in float64", 5),
    ("x * 2e308", ExpressionError, r"number 2e308 is too large: it overflows float64", 5),
    ("x * 2e-324", ExpressionError, r"number 2e-324 is too small: it underflows to 0", 5),
    ("x * " + "1" * 101, LimitError, r"number 1111111111 \.\.\. 1111111111111111111111111 has 101 digits, over the "
     r"maximum of 100", 5),
    ("x + y", ShapeError, r"shapes \(3,\) and \(4,\) do not broadcast in x \+ y", 1),
    ("x @ W", ShapeError, r"matmul shapes \(3,\) @ \(2, 3\) do not fit in x @ W", 1),
    ("s @ x", ShapeError, r"matmul needs arrays, got a scalar operand", 1),
    ("x[3]", ShapeError, r"index out of range in x\[3\]: index 3 is out of bounds for axis 0 with size 3", 1),
    ("x[0, 0]", ShapeError, r"index out of range in x\[0, 0\]: too many indices", 1),
    ("x[2:1]", ShapeError, r"x\[2:1\] selects no entries", 1),
    ("sum(x, axis=1)", ShapeError, r"axis 1 is out of range for an array of 1 dimensions", 1),
    ("sum(W, axis=(0, -2))", ShapeError, r"repeated axis", 1),
    ("transpose(W, (0, 0))", ShapeError, r"transpose\(\): axes=\(0, 0\) is not a permutation of the 2 axes", 1),
    ("transpose(s, (0,))", ShapeError, r"is not a permutation of the 0 axes", 1),
    ("reshape(W, (4, -1))", ShapeError, r"cannot reshape shape \[2, 3\] \(6 entries\) into \[4, -1\]", 1),
    ("reshape(W, (5,))", ShapeError, r"cannot reshape shape \[2, 3\] \(6 entries\) into \[5\] \(5 entries\)", 1),
    ("reshape(W, (-1, -1))", ShapeError, r"cannot reshape shape \[2, 3\] into \[-1, -1\]", 1),
    ("reshape(W, (0, 6))", ShapeError, r"cannot reshape", 1),
    ("dot(T3, T3)", ShapeError, r"dot\(\) of arrays with more than 2 dimensions is not supported", 1),
    ("x[" + ", ".join(["None"] * 40) + "]", LimitError, r"would have 41 dimensions, over the maximum of 32", 1),
]


@pytest.mark.parametrize("text,cls,pattern,column", REFUSED, ids=[r[0][:40] for r in REFUSED])
def test_refused_constructs(text, cls, pattern, column):
    shapes = {"x": (3,), "y": (4,), "W": (2, 3), "s": (), "T3": (2, 3, 4)}
    with pytest.raises(cls, match=pattern) as info:
        parse(text, field="[define] Z1", **shapes)
    err = info.value
    assert type(err) is cls
    assert isinstance(err, CaseError) and isinstance(err, ValueError)
    assert str(err).startswith("[define] Z1: ")
    assert err.fields["field"] == "[define] Z1"
    if column is not None:
        assert f" at column {column}" in err.reason
        assert err.fields["column"] == column


def test_unknown_name_hint_suggests_and_lists_declared_names():
    with pytest.raises(ExpressionError) as info:
        parse("W1 @ X + b3", field="[define] Z1", W1=(3, 4), X=(4, 2), b1=(3, 1))
    err = info.value
    assert str(err) == ("[define] Z1: unknown name 'b3' at column 10\n"
                        "  hint: did you mean 'b1'? declared names: W1, X, b1")


def test_unknown_function_suggests_the_closest_whitelisted_one():
    with pytest.raises(ExpressionError, match=r"call of 'sigmod' is not allowed") as info:
        parse("sigmod(x)")
    assert "did you mean 'sigmoid'?" in info.value.hint
    assert "allowed functions: abs, arccos" in info.value.hint


def test_numpy_prefix_gets_a_specific_hint():
    with pytest.raises(ExpressionError) as info:
        parse("np + x")
    assert "bare names, e.g. exp(x), not np.exp(x)" in info.value.hint
    with pytest.raises(ExpressionError) as info:
        parse("numpy.exp(x)")
    assert info.value.hint == "write exp(...) without the 'numpy.' prefix"


def test_columns_are_characters_not_utf8_bytes():
    # A fullwidth 'ｘ' is NFKC-normalised to the declared 'x' by Python's parser; the
    # error column of what follows counts characters (ast reports UTF-8 byte offsets).
    with pytest.raises(ExpressionError, match=r"unknown name 'q' at column 5"):
        parse("ｘ + q")


@pytest.mark.parametrize("text,column", [
    ("sum(x)\n  + q", 12),      # a line break counts as one character
    ("x  +   q", 8),            # runs of spaces are kept
    ("   q + x", 4),            # leading whitespace too
    ("\tx +\tq", 6),
])
def test_columns_count_characters_of_the_text_as_written(text, column):
    with pytest.raises(ExpressionError, match=rf"unknown name 'q' at column {column}\n"):
        parse(text)


def test_syntax_error_columns_count_leading_whitespace():
    with pytest.raises(ExpressionError, match=r"syntax error at column 6 \(the end of the expression\)"):
        parse("  x + ")
    with pytest.raises(ExpressionError, match=r"syntax error at column 6: '\(' was never closed"):
        parse("  sum(x")


def test_shape_error_messages_do_not_repeat_the_field():
    with pytest.raises(ShapeError) as info:
        parse("W @ x", field="[define] H", W=(2, 3), x=(4,))
    assert str(info.value).count("[define] H") == 1


def test_not_a_string():
    with pytest.raises(ExpressionError, match=r"loss: expected an expression string, got int 3"):
        parse(3)


# -- limits --------------------------------------------------------------------------------------


def test_max_length():
    text = "x + " * 30 + "x"
    with pytest.raises(LimitError) as info:
        parse(text, limits=ExprLimits(max_length=50))
    assert str(info.value).startswith(f"loss: expression is {len(text)} characters long, over the limit of 50")
    assert "raise [limits] max_expression_length" in info.value.hint
    parse(text, limits=ExprLimits(max_length=len(text)))


def test_max_depth():
    text = "sum(" * 10 + "x" + ")" * 10
    with pytest.raises(LimitError, match=r"expression nesting depth exceeds 5") as info:
        parse(text, limits=ExprLimits(max_depth=5))
    assert "raise [limits] max_expression_depth" in info.value.hint
    parse(text, limits=ExprLimits(max_depth=20))


def test_long_chains_are_not_deep():
    # 2000 terms: a flat sum is one level, not 2000 (and walking it does not recurse).
    text = " + ".join(f"x[{i % 3}]" for i in range(2000))
    node = parse(text, limits=ExprLimits(max_depth=10, max_nodes=100_000, max_length=100_000))
    assert node.shape == ()


def test_max_nodes():
    text = " + ".join(["x"] * 100)
    with pytest.raises(LimitError, match=r"expression has more than 50 syntax nodes") as info:
        parse(text, limits=ExprLimits(max_nodes=50))
    assert "raise [limits] max_expression_nodes" in info.value.hint


def test_max_intermediate_elements():
    with pytest.raises(LimitError) as info:
        parse("sum(x[:, None] * y[None, :])", x=(4000,), y=(3000,))
    err = info.value
    assert ("x[:, None] * y[None, :] would have shape [4000, 3000] = 12000000 entries, over the limit of "
            "10000000 at column 5") in str(err)
    assert "raise [limits] max_intermediate_elements" in err.hint
    parse("sum(x[:, None] * y[None, :])", x=(4000,), y=(3000,), limits=ExprLimits(max_elements=12_000_000))


def test_matmul_result_size_is_checked_before_it_is_built():
    with pytest.raises(LimitError, match=r"would have shape \[3000, 3000\] = 9000000 entries"):
        parse("sum(a @ b)", a=(3000, 1), b=(1, 3000), limits=ExprLimits(max_elements=1_000_000))


@pytest.mark.parametrize("text", [
    "(" * 300 + "x" + ")" * 300,          # Python's parser: too many nested parentheses
    "-" * 5000 + "x",                    # parser stack
    "sum(" * 150 + "x" + ")" * 150,       # our depth limit
    "x" + "[0]" * 3000,                  # ast construction recursion
    "x" + ".T" * 6000,
])
def test_deep_nesting_is_a_limit_error_never_a_crash(text):
    with pytest.raises(LimitError, match=r"nest|deep"):
        parse(text, limits=ExprLimits(max_length=100_000))


def test_depth_ceiling_is_safe_to_walk():
    text = "-(" * (MAX_DEPTH_CEILING // 2 - 2) + "x" + ")" * (MAX_DEPTH_CEILING // 2 - 2)
    node = parse(text, limits=ExprLimits(max_depth=MAX_DEPTH_CEILING))
    assert node.shape == (3,)


# -- safety ------------------------------------------------------------------------------------


def test_parser_never_evaluates(monkeypatch, tmp_path):
    """Refused text is never executed: eval/exec/sympify are not even called."""
    import sympy

    def boom(*args, **kwargs):
        raise AssertionError("the parser called an evaluator")

    monkeypatch.setattr(builtins, "eval", boom)
    monkeypatch.setattr(builtins, "exec", boom)
    monkeypatch.setattr(sympy, "sympify", boom)
    target = tmp_path / "pwned"
    attacks = [
        f"__import__('os').system('touch {target}')",
        f"open('{target}', 'w').write('x')",
        "().__class__.__bases__[0].__subclasses__()",
        "x.__class__.__init__.__globals__",
        f"[c for c in ().__class__.__base__.__subclasses__()][0]",
        f"(lambda: __import__('os').system('touch {target}'))()",
        f"exp.__globals__['__builtins__']['exec']('open(\"{target}\", \"w\")')",
        "sum.__call__(x)",
        "x.T.__class__",
        "breakpoint()",
    ]
    for text in attacks:
        with pytest.raises(ExpressionError):
            parse(text)
    assert not target.exists()
    assert parse("sum(x ** 2)").shape == ()


def test_reserved_names_cover_functions_and_constants():
    assert set(SIGNATURES) <= RESERVED_NAMES
    assert {"pi", "e", "exp", "sum", "softmax", "reshape"} <= RESERVED_NAMES
    assert "dsigmoid" not in SIGNATURES  # internal derivative functions are not callable


def test_internal_functions_are_not_callable():
    with pytest.raises(ExpressionError, match=r"call of 'dsigmoid' is not allowed"):
        parse("dsigmoid(x)")


def test_errors_through_compile_case_carry_file_case_and_field():
    text = case_text("sum(Z1)", {"Z1": "W @ W3"})
    with pytest.raises(ExpressionError) as info:
        compile_case(load_case_text(text, path="cases/x.toml"))
    assert str(info.value).startswith("cases/x.toml::expr-test::[define] Z1: unknown name 'W3' at column 5\n"
                                      "  hint: did you mean 'W'? declared names: x, y, W, A, T3, B, p, s")
    assert info.value.where == "cases/x.toml::expr-test::[define] Z1"
