"""The catalogue of bad inputs: every one is refused with one clear message.

Each entry is a case file (inline, or under ``tests/data/bad/``) with the error
class, the field of the ``file::case::field`` breadcrumb, a regex for the
message and (where it matters) one for the hint.  Every entry is checked twice:

* directly (``load_case_text`` + ``compile_case``, and ``certify`` for errors of
  the point), asserting the class, the breadcrumb and the message;
* through the CLI (``verigrad truth FILE``): exit code 2, ``verigrad: error: ...``
  on stderr with the same breadcrumb and message, and no traceback.

Misbehaving *candidates* are different: they never stop a run.  They are graded
``error`` (or ``nonfinite``) with a message, and the other candidates of the case
are still graded.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import mpmath
import numpy as np
import pytest

from verigrad.casefile.loader import load_case_text, point_in_dtype
from verigrad.cli.main import main
from verigrad.errors import (CaseError, CertificationError, DomainError, ExpressionError, LimitError, ShapeError,
                             VerigradError)
from verigrad.engine.model import compile_case
from verigrad.spec import Dtype
from verigrad.engine.truth import certify

DATA = Path(__file__).parent / "data" / "bad"

BASE = """name = "cat"
loss = "sum((W @ x - y)**2) / 2"

[symbols]
W = { shape = [2, 3], init = "normal" }
x = { shape = [3], init = "normal", constant = true }
y = { value = [1.0, -1.0], constant = true }
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def loss(expr: str, extra: str = "") -> str:
    return edit('loss = "sum((W @ x - y)**2) / 2"', f"loss = {expr_toml(expr)}") + extra


def expr_toml(expr: str) -> str:
    return "'" + expr + "'" if '"' in expr else '"' + expr + '"'


def symbol(line: str) -> str:
    """Replace the declaration of W."""
    return edit('W = { shape = [2, 3], init = "normal" }', line)


@dataclass(frozen=True)
class Bad:
    id: str
    cls: type
    field: str | None  # after "FILE::cat::"; "" = the file only; None = "FILE::cat"; "::f" = "FILE::f"
    message: str  # regex searched in the reason (the message without breadcrumb and hint)
    text: str | None = None  # None: tests/data/bad/<id>.toml
    hint: str | None = None  # regex searched in the hint

    def source(self) -> str:
        return self.text if self.text is not None else (DATA / f"{self.id}.toml").read_text()


CATALOGUE = [
    # -- the file and its top-level keys ---------------------------------------------------------
    Bad("invalid-toml", CaseError, "", r"^not valid TOML: Invalid value \(at line 2, column 7\)$",
        hint=r"see docs/case-files\.md"),
    Bad("duplicate-key", CaseError, "", r"^not valid TOML: Cannot overwrite a value",
        BASE + 'W = { value = 1 }\n'),
    Bad("missing-name", CaseError, "::name", r"^missing required key 'name'$", edit('name = "cat"\n', "")),
    Bad("name-not-a-string", CaseError, "::name", r"^expected a string, got integer 3$", edit('"cat"', "3")),
    Bad("bad-case-name", CaseError, "::name", r"^invalid case name 'my case!'$", edit('"cat"', '"my case!"')),
    Bad("unknown-key", CaseError, "[symbols] W.int", r"^unknown key 'int'$",
        hint=r"did you mean 'init'\? allowed keys: constant, shape, init, value, file"),
    Bad("unknown-top-key", CaseError, "los", r"^unknown key 'los'$", edit('name = "cat"', 'name = "cat"\nlos = "x"'),
        hint=r"did you mean 'loss'\?"),
    Bad("missing-loss", CaseError, "loss", r"^missing required key 'loss'$", hint=r'add e\.g\. loss = "sum\(x\*\*2\)"'),
    Bad("loss-not-a-string", CaseError, "loss", r"^expected an expression string, got integer 1$",
        edit('"sum((W @ x - y)**2) / 2"', "1")),
    Bad("bad-seed", CaseError, "seed", r"^seed=-1 is out of range$", edit('name = "cat"', 'name = "cat"\nseed = -1'),
        hint=r"0 to 2\*\*32 - 1"),
    Bad("bad-rng", CaseError, "rng", r"^unknown rng 'mt19937'$",
        edit('name = "cat"', 'name = "cat"\nrng = "mt19937"'), hint=r"allowed: numpy, numpy-legacy"),
    Bad("bad-loss-code", CaseError, "loss_code", r"^'impl/loss\.py' must be 'path/to/module\.py:function'$",
        edit('name = "cat"', 'name = "cat"\nloss_code = "impl/loss.py"')),
    # -- [symbols] ---------------------------------------------------------------------------
    Bad("missing-symbols", CaseError, "[symbols]", r"^missing table \[symbols\]$",
        'name = "cat"\nloss = "1"\n'),
    Bad("empty-symbols", CaseError, "[symbols]", r"^no symbols declared$", 'name = "cat"\nloss = "1"\n[symbols]\n'),
    Bad("all-constant", CaseError, "[symbols]", r"^every symbol is a constant: there is nothing to differentiate$",
        symbol('W = { shape = [2, 3], init = "normal", constant = true }'), hint=r"drop `constant = true`"),
    Bad("reserved-name", CaseError, "[symbols] exp",
        r"^'exp' is a reserved name \(a function of the expression language\)$", hint=r"rename it"),
    Bad("reserved-constant", CaseError, "[symbols] e",
        r"^'e' is a reserved name \(a constant of the expression language\)$", BASE + "e = { value = 2.7 }\n"),
    Bad("dunder-symbol", CaseError, "[symbols] __class__",
        r"^name '__class__' is not allowed \(dunder names are refused\)$", BASE + "__class__ = { value = 1 }\n"),
    Bad("keyword-symbol", CaseError, "[symbols] lambda",
        r"^'lambda' is a Python keyword and cannot be used as a name in expressions$", BASE + "lambda = { value = 1 }\n"),
    Bad("invalid-symbol-name", CaseError, "[symbols] W-1", r"^invalid name 'W-1'$", BASE + '"W-1" = { value = 1 }\n'),
    Bad("symbol-not-a-table", CaseError, "[symbols] W", r"^expected an inline table such as .* got integer 3$",
        symbol("W = 3"), hint=r"write W = \{ value = 3 \} for a given value"),
    Bad("no-source", CaseError, "[symbols] W", r"^give exactly one of init, value, file$", symbol("W = { shape = [2, 3] }")),
    Bad("two-sources", CaseError, "[symbols] W", r"^give exactly one of init, value, file \(got init, value\)$",
        symbol('W = { shape = [2, 3], init = "normal", value = 1 }')),
    Bad("negative-shape", CaseError, "[symbols] W.shape", r"^shape=\[2, -3\] must be a list of positive integers$",
        symbol('W = { shape = [2, -3], init = "normal" }'), hint=r"e\.g\. shape = \[5, 4\]"),
    Bad("zero-shape", CaseError, "[symbols] W.shape", r"^shape=\[0\] must be a list of positive integers$",
        symbol('W = { shape = [0], init = "normal" }')),
    Bad("shape-not-a-list", CaseError, "[symbols] W.shape", r"^expected a list of positive integers, got integer 3$",
        symbol('W = { shape = 3, init = "normal" }')),
    Bad("bad-init", CaseError, "[symbols] W.init", r"^invalid init 'gaussian\(0, 1\)'$",
        hint=r'allowed: "normal", "normal\(mu, sigma\)", "uniform\(a, b\)"'),
    Bad("misspelt-init", CaseError, "[symbols] W.init", r"^invalid init 'normall'$",
        symbol('W = { shape = [2, 3], init = "normall" }'), hint=r"did you mean 'normal'\?"),
    Bad("negative-sigma", CaseError, "[symbols] W.init", r"^invalid init 'normal\(0, -1\)': sigma=-1 must be >= 0$",
        symbol('W = { shape = [2, 3], init = "normal(0, -1)" }')),
    Bad("empty-uniform", CaseError, "[symbols] W.init", r"needs a < b, got a=1, b=-1$",
        symbol('W = { shape = [2, 3], init = "uniform(1, -1)" }')),
    Bad("init-not-numbers", CaseError, "[symbols] W.init", r"parameters must be number literals$",
        symbol('W = { shape = [2, 3], init = "normal(mu, 1)" }')),
    Bad("init-infinite", CaseError, "[symbols] W.init", r"parameters must be finite$",
        symbol('W = { shape = [2, 3], init = "normal(inf, 1)" }')),
    Bad("empty-value", CaseError, "[symbols] y.value", r"^the value contains an empty list$",
        edit("y = { value = [1.0, -1.0], constant = true }", "y = { value = [], constant = true }")),
    Bad("ragged-value", CaseError, "[symbols] D.value",
        r"^the value is not a rectangular array of numbers \(ragged rows\)$", hint=r"same length"),
    Bad("inf-value", CaseError, "[symbols] y.value", r"^the value contains inf at \[1\]$",
        edit("[1.0, -1.0]", "[1.0, inf]"), hint=r"values must be finite numbers"),
    Bad("nan-value", CaseError, "[symbols] y.value", r"^the value contains nan at \[0\]$",
        edit("[1.0, -1.0]", "[nan, 1.0]")),
    Bad("string-value", CaseError, "[symbols] y.value", r"^value entries must be numbers, got string 'a'$",
        edit("[1.0, -1.0]", '[1.0, "a"]')),
    Bad("boolean-value", CaseError, "[symbols] y.value", r"^value entries must be numbers, got boolean True$",
        edit("[1.0, -1.0]", "true")),
    Bad("value-shape-mismatch", CaseError, "[symbols] y.value", r"^the value has shape \[2\] but shape=\[3\]$",
        edit("y = { value", "y = { shape = [3], value")),
    Bad("constant-not-boolean", CaseError, "[symbols] x.constant", r"^expected true or false, got string 'yes'$",
        edit("constant = true }\ny", 'constant = "yes" }\ny')),
    Bad("missing-npy", CaseError, "[symbols] W.file", r"^file='nope\.npy' not found \(looked at .*nope\.npy\)$",
        symbol('W = { file = "nope.npy" }')),
    Bad("not-npy", CaseError, "[symbols] W.file", r"^file='W\.csv' is not a \.npy file$", symbol('W = { file = "W.csv" }')),
    Bad("max-elements", LimitError, "[symbols]", r"^the symbols have 600 entries in all, over the limit of 500$",
        hint=r"^raise \[limits\] max_elements$"),
    Bad("max-symbol-elements", LimitError, "[symbols] W.shape",
        r"^shape=\[2000, 1000\] has 2000000 entries, over the limit of 1000000$",
        symbol('W = { shape = [2000, 1000], init = "normal" }'), hint=r"^raise \[limits\] max_symbol_elements$"),
    Bad("too-many-dimensions", LimitError, "[symbols] W.shape", r"has 9 dimensions, over the maximum of 8$",
        symbol('W = { shape = [1, 1, 1, 1, 1, 1, 1, 1, 2], init = "normal" }')),
    Bad("float32-overflow", LimitError, "[symbols] y.value", r"^1e\+39 at \[1\] overflows float32",
        edit("[1.0, -1.0]", "[1.0, 1e39]"), hint=r"drop float32 from \[check\] dtypes"),
    # -- [define] ----------------------------------------------------------------------------
    Bad("define-shadows-symbol", CaseError, "[define] W", r"^'W' is already declared in \[symbols\]$",
        BASE + '[define]\nW = "x"\n'),
    Bad("define-not-a-string", CaseError, "[define] Z", r"^expected an expression string, got integer 1$",
        BASE + "[define]\nZ = 1\n"),
    Bad("define-reserved", CaseError, "[define] sum", r"^'sum' is a reserved name", BASE + '[define]\nsum = "x"\n'),
    # -- [[candidate]] -----------------------------------------------------------------------
    Bad("single-bracket-candidate", CaseError, "[[candidate]]", r"^candidates are an array of tables$",
        BASE + '[candidate]\nname = "bp"\ncode = "bp.py:grad"\n', hint=r"write \[\[candidate\]\] \(double brackets\)"),
    Bad("candidate-without-name", CaseError, "[[candidate]] #1", r"^missing required key 'name'$",
        BASE + '[[candidate]]\ncode = "bp.py:grad"\n'),
    Bad("candidate-without-code", CaseError, "[[candidate]] bp", r"^missing required key 'code'$",
        BASE + '[[candidate]]\nname = "bp"\n'),
    Bad("duplicate-candidate", CaseError, "[[candidate]] #2.name",
        r"^duplicate candidate name 'bp' \(also candidate #1\)$",
        BASE + '[[candidate]]\nname = "bp"\ncode = "bp.py:a"\n[[candidate]]\nname = "bp"\ncode = "bp.py:b"\n'),
    Bad("bad-expect", CaseError, "[[candidate]] bp.expect", r"^expect='maybe' is not allowed$",
        BASE + '[[candidate]]\nname = "bp"\ncode = "bp.py:grad"\nexpect = "maybe"\n', hint=r'use "pass" or "fail"'),
    Bad("code-without-function", CaseError, "[[candidate]] bp.code",
        r"^'impl/bp\.py' must be 'path/to/module\.py:function'$",
        BASE + '[[candidate]]\nname = "bp"\ncode = "impl/bp.py"\n', hint=r'e\.g\. code = "impl/net\.py:backward"'),
    Bad("code-not-python", CaseError, "[[candidate]] bp.code", r"the module 'impl/bp\.txt' must be a \.py file$",
        BASE + '[[candidate]]\nname = "bp"\ncode = "impl/bp.txt:grad"\n'),
    Bad("code-bad-function", CaseError, "[[candidate]] bp.code", r"'1grad' is not a function name$",
        BASE + '[[candidate]]\nname = "bp"\ncode = "impl/bp.py:1grad"\n'),
    Bad("allow-upcast-not-boolean", CaseError, "[[candidate]] bp.allow_upcast", r"^expected true or false, got string 'yes'$",
        BASE + '[[candidate]]\nname = "bp"\ncode = "bp.py:grad"\nallow_upcast = "yes"\n'),
    Bad("candidate-unknown-key", CaseError, "[[candidate]] #1.expected", r"^unknown key 'expected'$",
        BASE + '[[candidate]]\nname = "bp"\ncode = "bp.py:g"\nexpected = "pass"\n', hint=r"did you mean 'expect'\?"),
    # -- [check] and [limits] ----------------------------------------------------------------
    Bad("bad-dtype", CaseError, "[check] dtypes", r"^unknown dtype 'float8'$",
        hint=r"allowed: float16, bfloat16, float32, float64"),
    Bad("empty-dtypes", CaseError, "[check] dtypes", r"^the list is empty$", BASE + "[check]\ndtypes = []\n"),
    Bad("bad-scheme", CaseError, "[check] schemes", r"^unknown scheme 'centre'$",
        BASE + '[check]\nschemes = ["centre"]\n', hint=r"did you mean 'central'\? allowed: "),
    Bad("bad-step", CaseError, "[check] steps", r"^step 0 must be a positive finite number$",
        BASE + "[check]\nsteps = [0]\n"),
    Bad("bad-step-mode", CaseError, "[check] step_mode", r"^step_mode='abs' is not allowed$",
        BASE + '[check]\nstep_mode = "abs"\n', hint=r'use "absolute" or "relative"'),
    Bad("tolerance-below-one", CaseError, "[check] tolerance_factor",
        r"^tolerance_factor=0\.5 must be a finite number >= 1$", BASE + "[check]\ntolerance_factor = 0.5\n",
        hint=r"cannot be asked to beat the float baseline"),
    Bad("bad-digits", CaseError, "[check] digits", r"^digits=0 is out of range$", BASE + "[check]\ndigits = 0\n"),
    Bad("check-unknown-key", CaseError, "[check] dtype", r"^unknown key 'dtype'$", BASE + '[check]\ndtype = "float64"\n',
        hint=r"did you mean 'dtypes'\?"),
    Bad("limits-unknown-key", CaseError, "[limits] max_element", r"^unknown key 'max_element'$",
        BASE + "[limits]\nmax_element = 5\n", hint=r"did you mean 'max_elements'\?"),
    Bad("limits-not-positive", CaseError, "[limits] candidate_seconds",
        r"^candidate_seconds=0 must be a positive, finite number of seconds$", BASE + "[limits]\ncandidate_seconds = 0\n"),
    Bad("depth-over-ceiling", LimitError, "[limits] max_expression_depth",
        r"^max_expression_depth=1000 is over the hard maximum of 250", BASE + "[limits]\nmax_expression_depth = 1000\n"),
    # -- expressions: names and shapes ---------------------------------------------------------
    Bad("unknown-name", ExpressionError, "[define] Z1", r"^unknown name 'W3' at column 1$",
        hint=r"^did you mean 'W2'\? declared names: W1, W2, X$"),
    Bad("unknown-name-in-loss", ExpressionError, "loss", r"^unknown name 'xx' at column 10$",
        loss("sum((W @ xx - y)**2)"), hint=r"^did you mean 'x'\? declared names: W, x, y$"),
    Bad("syntax-error", ExpressionError, "loss", r"^syntax error at column 4: '\(' was never closed$",
        loss("sum(W")),
    Bad("broadcast", ShapeError, "loss", r"^shapes \(2, 3\) and \(2,\) do not broadcast in W \+ y at column 5$",
        hint=r"numpy broadcasting compares trailing dimensions"),
    Bad("matmul", ShapeError, "loss", r"^matmul shapes \(2, 3\) @ \(2,\) do not fit in W @ y at column 5$",
        hint=r"the last axis of the left operand must equal the second-to-last of the right one"),
    Bad("axis-out-of-range", ShapeError, "loss",
        r"^axis 2 is out of range for an array of 2 dimensions in sum\(W, axis=2\) at column 1$",
        loss("sum(W, axis=2)"), hint=r"use an axis between -2 and 1"),
    Bad("index-out-of-range", ShapeError, "loss",
        r"^index out of range in W\[2\]: index 2 is out of bounds for axis 0 with size 2", loss("sum(W[2])")),
    Bad("reshape-mismatch", ShapeError, "loss",
        r"^reshape\(\): cannot reshape shape \[2, 3\] \(6 entries\) into \[4, 2\] \(8 entries\) at column 5$",
        loss("sum(reshape(W, (4, 2)))"), hint=r"the new shape must have 6 entries"),
    Bad("loss-not-scalar", ShapeError, "loss", r"^the loss must be a scalar, but it has shape \[2\]$",
        loss("W @ x"), hint=r"reduce it with sum\(\.\.\.\) or mean\(\.\.\.\)"),
    Bad("loss-without-variable", CaseError, "loss", r"^the loss does not depend on any variable$",
        loss("sum(y) * 2")),
    # -- expressions: code is refused -------------------------------------------------------------
    Bad("attribute", ExpressionError, "loss",
        r"^attribute access '\.__class__' is not allowed at column 5$",
        hint=r"^only \.T \(transpose\) is allowed; expressions are data, never code"),
    Bad("method-call", ExpressionError, "loss", r"^a method call \.sum\(\.\.\.\) is not allowed at column 1$", loss("W.sum()"),
        hint=r"write sum\(W\) instead of W\.sum\(\)"),
    Bad("eval-call", ExpressionError, "loss", r"^call of 'eval' is not allowed \(not a whitelisted function\) at column 1$",
        hint=r"allowed functions: abs, arccos"),
    Bad("dunder-import", ExpressionError, "loss",
        r"^call of '__import__' is not allowed \(dunder names are refused\) at column 10$",
        loss("sum(W) * __import__('os')")),
    Bad("open-call", ExpressionError, "loss", r"^call of 'open' is not allowed \(not a whitelisted function\)",
        loss("sum(W) + open('/etc/passwd')")),
    Bad("import", ExpressionError, "loss", r"^syntax error at column 1: invalid syntax$"),
    Bad("lambda", ExpressionError, "loss", r"^a lambda is not allowed in an expression at column 5$",
        loss("sum(lambda: W)")),
    Bad("comprehension", ExpressionError, "loss", r"^a list comprehension is not allowed in an expression",
        loss("sum([w for w in W])")),
    Bad("f-string", ExpressionError, "loss", r"^an f-string is not allowed in an expression", loss("f'{W}'")),
    Bad("walrus", ExpressionError, "loss", r"^an assignment expression \(:=\) is not allowed", loss("sum((V := W))")),
    Bad("starred", ExpressionError, "loss", r"^a starred argument \(\*\) is not allowed", loss("sum(*W)")),
    Bad("chained-comparison", ExpressionError, "loss", r"^a chained comparison \(a < b < c\) is not allowed at column 5$",
        loss("sum(0 < W < 1)")),
    Bad("string", ExpressionError, "loss", r"^a string is not allowed in an expression at column 10$",
        loss("sum(W) + 'W'")),
    Bad("boolean-number", ExpressionError, "loss", r"^True is a boolean, not a number at column 10$",
        loss("sum(W) * True")),
    Bad("complex-literal", ExpressionError, "loss", r"^the complex number 1j is not allowed at column 10$",
        loss("sum(W) * 1j")),
    Bad("dunder-name", ExpressionError, "loss", r"^name '__builtins__' is not allowed \(dunder names are refused\)",
        loss("sum(W) + __builtins__")),
    Bad("caret-power", ExpressionError, "loss", r"^operator '\^' is not allowed", loss("sum(W ^ 2)"),
        hint=r"for a power write x\*\*2"),
    Bad("huge-literal", ExpressionError, "loss", r"^number 1e999 is too large: it overflows float64",
        loss("sum(W) * 1e999")),
    # -- expression limits -------------------------------------------------------------------
    Bad("expression-length", LimitError, "loss", r"^expression is 23 characters long, over the limit of 10$",
        BASE + "[limits]\nmax_expression_length = 10\n", hint=r"raise \[limits\] max_expression_length"),
    Bad("expression-depth", LimitError, "loss", r"^expression nesting depth exceeds 3$",
        BASE + "[limits]\nmax_expression_depth = 3\n", hint=r"raise \[limits\] max_expression_depth"),
    Bad("expression-nodes", LimitError, "loss", r"^expression has more than 5 syntax nodes$",
        BASE + "[limits]\nmax_expression_nodes = 5\n", hint=r"raise \[limits\] max_expression_nodes"),
    Bad("intermediate-elements", LimitError, "loss",
        r"^W\[:, :, None\] \* W\[:, None, :\] would have shape \[2, 3, 3\] = 18 entries, over the limit of 10",
        loss("sum(W[:, :, None] * W[:, None, :])", "[limits]\nmax_intermediate_elements = 10\n"),
        hint=r"raise \[limits\] max_intermediate_elements"),
    Bad("symbolic-seconds", LimitError, None, r"^symbolic work (took \d+\.\d s, over the limit of 1e-09 s|\(parsing and "
        r"differentiating the case\) was stopped at the time limit of 1e-09 s \(\[limits\] symbolic_seconds = 1e-09\))$",
        BASE + "[limits]\nsymbolic_seconds = 1e-9\n", hint=r"raise \[limits\] symbolic_seconds"),
    # -- domain messages name the user's expression and plain indices (issue 19, item 8) ------------
    Bad("derivative-power-at-zero", DomainError, "", r"derivative-power-at-zero\.toml::cat: 0 to a non-positive "
        r"power in the derivative of loss: x \*\* 0\.5 at entry \[1\]$",
        'name = "cat"\nloss = "sum(x ** 0.5)"\n[symbols]\nx = { value = [1.0, 0.0] }\n'),
    Bad("derivative-log-of-base", DomainError, "", r"log is undefined at 0(\.0)? \(it needs argument > 0\) in log\(y\) "
        r"\(the derivative of loss: y \*\* x by its exponent\) at entry \[1\]$",
        'name = "cat"\nloss = "sum(y ** x)"\n[symbols]\nx = { value = [1.0, 2.0] }\ny = { value = [1.0, 0.0] }\n'),
    Bad("precision-cap-entries", CertificationError, "", r"fewer than 24 digits of <loss>, w\[0, 0\], w\[0, 1\] are proved at "
        r"288 bits", 'name = "cat"\nloss = "sum(w * (exp(1e-100) - 1))"\n[symbols]\nw = { value = [[1.0, 2.0]] }\n'
        "[limits]\nmax_precision_bits = 400\n", hint=r"raise \[limits\] max_precision_bits"),
    # -- limits enforced while the work runs (issue 19, item 5) ------------------------------------
    Bad("certify-seconds", LimitError, None, r"^certification \(float64, 24 digits\) was stopped at the time limit of "
        r"1e-09 s \(\[limits\] certify_seconds = 1e-09\)$", BASE + "[limits]\ncertify_seconds = 1e-9\n",
        hint=r"^raise \[limits\] certify_seconds in the case file \(at most 86400 s\)"),
    Bad("certify-seconds-not-positive", CaseError, "[limits] certify_seconds",
        r"^certify_seconds=-1 must be a positive, finite number of seconds$", BASE + "[limits]\ncertify_seconds = -1\n"),
    Bad("certify-seconds-huge", LimitError, "[limits] certify_seconds",
        r"^certify_seconds=1000000(\.0)? is over the hard maximum of 86,400$", BASE + "[limits]\ncertify_seconds = 1e6\n"),
    # -- the point: the loss is undefined there, or cannot be certified -----------------------
    Bad("domain-log", DomainError, "", r"log is undefined at -1(\.0)? \(it needs argument > 0\) in loss: log\(x\)"),
    Bad("division-by-zero", DomainError, "", r"division by zero in loss: w / \(x - 1\)"),
    Bad("sqrt-at-zero", DomainError, "", r"sqrt is undefined at 0(\.0)? .* in loss: sqrt\(w - 1\)",
        'name = "cat"\nloss = "sqrt(w - 1)"\n[symbols]\nw = { value = 1.0 }\n'),
    Bad("precision-cap", CertificationError, "", r"fewer than 24 digits of <loss>, w are proved at 288 bits "
        r"\(ball arithmetic; precision cap 400 bits\)",
        'name = "cat"\nloss = "w * (exp(1e-100) - 1)"\n[symbols]\nw = { value = 1.0 }\n'
        "[limits]\nmax_precision_bits = 400\n", hint=r"raise \[limits\] max_precision_bits"),
    # -- numbers that pass a type check but cannot run (issue 19, item 7) ----------------------------
    Bad("huge-candidate-seconds", LimitError, "[limits] candidate_seconds",
        r"^candidate_seconds=1e\+300 is over the hard maximum of 86,400$", BASE + "[limits]\ncandidate_seconds = 1e300\n",
        hint=r"use at most 86,400"),
    Bad("huge-precision-cap", LimitError, "[limits] max_precision_bits",
        r"^max_precision_bits=1000000000000000000 is over the hard maximum of 262,144$",
        BASE + "[limits]\nmax_precision_bits = 1000000000000000000\n"),
    Bad("huge-element-limit", LimitError, "[limits] max_symbol_elements",
        r"^max_symbol_elements=4000000000 is over the hard maximum of 268,435,456$",
        BASE + "[limits]\nmax_symbol_elements = 4000000000\n"),
    Bad("uniform-too-wide", CaseError, "[symbols] W.init",
        r"^invalid init 'uniform\(-1e308, 1e308\)': the interval is wider than float64 can draw from$",
        symbol('W = { shape = [2, 3], init = "uniform(-1e308, 1e308)" }')),
    Bad("normal-overflows", CaseError, "[symbols] W.init",
        r"^invalid init 'normal\(0, 1e307\)': draws would overflow float64$",
        symbol('W = { shape = [2, 3], init = "normal(0, 1e307)" }')),
    Bad("step-too-large", CaseError, "[check] steps", r"^step 1e\+308 is too large$",
        BASE + '[check]\nschemes = ["central"]\nsteps = [1e308]\n', hint=r"use steps up to 1e\+15"),
    # -- messages that must not mislead (issue 19, item 8) -----------------------------------------
    Bad("integer-beyond-float64", CaseError, "[symbols] y.value",
        r"^the integer 10{30,} \.\.\. is beyond the float64 range \(about 1\.8e308\)$",
        edit("y = { value = [1.0, -1.0], constant = true }",
             "y = { value = [1.0, " + "1" + "0" * 400 + "], constant = true }")),
    Bad("precision-cap-digits", CertificationError, "", r"24 digits need at least 144 bits, over the precision cap "
        r"of 100 bits", 'name = "cat"\nloss = "w * 3"\n[symbols]\nw = { value = 1.0 }\n'
        "[limits]\nmax_precision_bits = 100\n", hint=r"raise \[limits\] max_precision_bits"),
]

IDS = [b.id for b in CATALOGUE]


def test_catalogue_is_large_and_distinct():
    assert len(CATALOGUE) >= 50
    assert len(set(IDS)) == len(IDS)
    assert len({b.source() for b in CATALOGUE}) == len(CATALOGUE)
    stored = {p.stem for p in DATA.glob("*.toml")} - {"candidates", "overflow-exp"}
    assert stored <= set(IDS), "every stored bad file is in the catalogue"


def _expected_where(bad: Bad, path: str) -> str:
    if bad.field is None:
        return f"{path}::cat"
    if bad.field == "":
        return path
    if bad.field.startswith("::"):  # before the case name is known
        return f"{path}{bad.field}"
    return f"{path}::cat::{bad.field}"


def _raise(bad: Bad, path: str) -> VerigradError:
    with pytest.raises(VerigradError) as info:
        model = compile_case(load_case_text(bad.source(), path=path))
        certify(model, point_in_dtype(model.point, Dtype.FLOAT64), Dtype.FLOAT64)
    return info.value


@pytest.mark.parametrize("bad", CATALOGUE, ids=IDS)
def test_direct(bad):
    path = f"{bad.id}.toml"
    err = _raise(bad, path)
    assert type(err) is bad.cls, f"{type(err).__name__}: {err}"
    if isinstance(err, CaseError):
        assert err.where == _expected_where(bad, path)
        assert str(err).startswith(f"{err.where}: {err.reason}")
        assert re.search(bad.message, err.reason), err.reason
        if bad.hint is not None:
            assert re.search(bad.hint, err.hint), err.hint
    else:  # errors of the point (DomainError, CertificationError) carry the sub-expression instead
        assert re.search(bad.message, str(err)), str(err)
        if bad.hint is not None:
            assert re.search(bad.hint, err.hint), err.hint
    assert err.exit_code == 2


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("bad", CATALOGUE, ids=IDS)
def test_cli(bad, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = f"{bad.id}.toml"
    Path(path).write_text(bad.source())
    rc = main(["truth", path, "--dtype", "float64", "--no-color"])
    captured = capsys.readouterr()
    assert rc == 2
    err = _normalise(captured.err)
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert err.startswith("verigrad: error: ")
    where = _expected_where(bad, path)
    if bad.cls in (DomainError, CertificationError):
        assert re.search(_normalise(bad.message), err), err
    else:
        assert err.startswith(f"verigrad: error: {where}: "), err
        reason = err[len(f"verigrad: error: {where}: "):].split(" hint: ")[0]
        assert re.search(bad.message, reason), reason
    if bad.hint is not None:
        assert " hint: " in err
        assert re.search(bad.hint.lstrip("^"), err.split(" hint: ", 1)[1]), err


def test_stored_files_from_the_repository_root(capsys, monkeypatch):
    """The files under tests/data/bad are usable as they are, e.g. `verigrad truth tests/data/bad/x.toml`."""
    monkeypatch.chdir(DATA.parents[2])
    rc = main(["truth", "tests/data/bad/unknown-name.toml", "--no-color"])
    err = _normalise(capsys.readouterr().err)
    assert rc == 2
    assert err == ("verigrad: error: tests/data/bad/unknown-name.toml::cat::[define] Z1: unknown name 'W3' at "
                   "column 1 hint: did you mean 'W2'? declared names: W1, W2, X")


def test_missing_file_and_bad_usage(capsys, tmp_path):
    assert main(["truth", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such file" in _normalise(capsys.readouterr().err)
    assert main(["truth", str(DATA / "overflow-exp.toml"), "--digits", "0"]) == 2
    assert "--digits=0 is out of range" in _normalise(capsys.readouterr().err)
    with pytest.raises(SystemExit) as info:
        main(["truth"])
    assert info.value.code == 2


# -- non-finite values -------------------------------------------------------------------------


def test_float32_overflow_does_not_break_the_truth(capsys, monkeypatch):
    """exp(100) overflows float32 (the float loss is inf) but the exact truth is finite."""
    monkeypatch.chdir(DATA)
    model = compile_case(load_case_text((DATA / "overflow-exp.toml").read_text()))
    p32 = point_in_dtype(model.point, Dtype.FLOAT32)
    (f32,) = model.float_eval([model.loss], p32, np.float32)
    assert np.isinf(f32)
    truth = certify(model, p32, Dtype.FLOAT32)
    with mpmath.workdps(40):
        assert mpmath.almosteq(truth.loss, mpmath.exp(100), rel_eps=mpmath.mpf(10) ** -30)
        assert mpmath.almosteq(truth.gradient["w"][()], 100 * mpmath.exp(100), rel_eps=mpmath.mpf(10) ** -30)
    assert main(["truth", "overflow-exp.toml", "--no-color"]) == 0
    out = _normalise(capsys.readouterr().out)
    assert "2.68811714181613544841263e+43" in out  # exp(100), 24 digits
    assert "2.68811714181613544841263e+45" in out  # its derivative


# -- candidates: a misbehaving candidate never stops the run --------------------------------------

CANDIDATE_ERRORS = {
    # name: (verdict, regex for the message)
    "missing-file": ("error", r"impl/no_such_module\.py:good: file .*no_such_module\.py not found"),
    "missing-function": ("error", r"impl/bad_candidates\.py:no_such_function: bad_candidates\.py has no function "
                                  r"'no_such_function' \(it defines: .*good.*\)"),
    "not-callable": ("error", r"'not_a_function' is not callable"),
    "wrong-signature": ("error", r"impl/bad_candidates\.py:wrong_signature: cannot be called with the symbols as "
                                 r"keyword arguments \(got an unexpected keyword argument 'c'\)"),
    "wrong-shape": ("error", r"bad-candidates › wrong-shape › float64: w has shape \[6\], expected \[3\]"),
    "missing-variable": ("error", r"bad-candidates › missing-variable › float64: missing variable\(s\) b"),
    "raising": ("error", r"impl/bad_candidates\.py:raising raised ZeroDivisionError: planted failure at "
                         r"bad_candidates\.py:\d+"),
    "nan": ("nonfinite", r"non-finite values in 3 of 3 entries: w\[0\]=nan"),
    "infinite-loop": ("error", r"impl/bad_candidates\.py:loop_forever did not return within 2 s \(killed\)"),
    "exits": ("error", r"impl/bad_candidates\.py:exits (raised SystemExit: 3|ended the process)"),
    # issue 19, item 1: untrusted text is escaped; closing every descriptor is the candidate's failure
    "surrogate-text": ("error", r"impl/bad_candidates\.py:surrogate_text raised ValueError: bad \\udfff text at "
                                r"bad_candidates\.py:\d+"),
    "closes-descriptors": ("error", r"impl/bad_candidates\.py:closes_descriptors closed file descriptors it did not "
                                    r"open \(os\.close / os\.closerange\), among them the worker's pipe to verigrad"),
}
CANDIDATE_PASSES = ["good", "chatty", "global-state", "raw-descriptors", "good-again"]


@pytest.fixture(scope="module")
def candidate_report():
    from verigrad.runner.case import run_case

    before = (np.geterr(), mpmath.mp.prec, mpmath.mp.dps)
    report = run_case(DATA / "candidates.toml", with_fd=False)
    after = (np.geterr(), mpmath.mp.prec, mpmath.mp.dps)
    return report, before, after


def test_candidates_run_goes_on(candidate_report):
    report, _, _ = candidate_report
    assert report.error == ""
    names = [r.candidate for r in report.results]
    assert names == ["good", "missing-file", "missing-function", "not-callable", "wrong-signature", "wrong-shape",
                     "missing-variable", "raising", "nan", "infinite-loop", "chatty", "exits", "global-state",
                     "surrogate-text", "raw-descriptors", "closes-descriptors", "good-again"]
    assert all(r.dtype == "float64" for r in report.results)


@pytest.mark.parametrize("name", list(CANDIDATE_ERRORS))
def test_misbehaving_candidate_is_reported(candidate_report, name):
    report, _, _ = candidate_report
    (res,) = [r for r in report.results if r.candidate == name]
    verdict, pattern = CANDIDATE_ERRORS[name]
    assert res.verdict == verdict
    assert re.search(pattern, res.message), res.message
    assert res.grade is None or verdict == "nonfinite"
    assert res.met is (name == "nan")  # "nan" expects to fail; the others expected to pass


@pytest.mark.parametrize("name", CANDIDATE_PASSES)
def test_other_candidates_are_still_graded(candidate_report, name):
    report, _, _ = candidate_report
    (res,) = [r for r in report.results if r.candidate == name]
    assert (res.verdict, res.met) == ("pass", True), res.message
    assert res.grade is not None


def test_candidate_output_is_captured(candidate_report):
    report, _, _ = candidate_report
    (res,) = [r for r in report.results if r.candidate == "chatty"]
    assert "hello from the candidate" in res.stdout
    assert "to stderr" in res.stdout
    (res,) = [r for r in report.results if r.candidate == "raw-descriptors"]
    assert res.stdout == "straight to fd 1\nstraight to fd 2\n"
    (res,) = [r for r in report.results if r.candidate == "surrogate-text"]
    assert res.stdout == "unpaired \\ud800 surrogate\n"


def test_candidates_cannot_change_the_parent_state(candidate_report):
    """np.seterr(all='raise') and mpmath.mp.prec = 10 in a candidate stay in its forked child."""
    _, before, after = candidate_report
    assert after == before
    assert after[0]["over"] != "raise"
    assert after[1] == 53


def test_run_with_bad_candidates_exits_1(capsys, tmp_path):
    shutil.copytree(DATA, tmp_path / "bad", ignore=shutil.ignore_patterns("*.toml", "__pycache__"))
    shutil.copy(DATA / "candidates.toml", tmp_path / "bad" / "candidates.toml")
    text = (tmp_path / "bad" / "candidates.toml").read_text()
    # Keep only quick candidates for the CLI run (the timeout is tested above).
    text = text.replace('[[candidate]]\nname = "infinite-loop"\ncode = "impl/bad_candidates.py:loop_forever"\n', "")
    (tmp_path / "bad" / "candidates.toml").write_text(text)
    rc = main(["run", str(tmp_path / "bad" / "candidates.toml"), "--no-fd", "--no-color", "-q"])
    capsys.readouterr()
    assert rc == 1
