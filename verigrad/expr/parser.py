"""The safe expression parser: case-file text -> graph nodes.

Expression strings are parsed by Python's ``ast`` module *as data* and walked
against a whitelist; nothing is ever evaluated.  No ``eval``, ``exec``,
``compile``, ``sympify`` or ``parse_expr`` touches case-file text, and no
attribute of any object is looked up by a name taken from the text.  Only these
constructs are accepted (numpy semantics):

* numbers (exact decimals: ``0.1`` means 1/10), declared names, ``pi``, ``e``;
* ``+ - * / ** @``, unary ``-`` and ``+``;
* ``x.T``;
* basic indexing: integers, slices with integer bounds, ``None`` (new axis), ``...``;
  advanced indexing with integer constants (:mod:`verigrad.expr.select`);
* single comparisons ``< <= > >= == !=`` (0/1 masks, :mod:`verigrad.expr.select`);
* calls of the whitelisted functions in :data:`SIGNATURES`, with integer /
  tuple / boolean literal options (``axis=0``, ``keepdims=True``).

Everything else (attribute access other than ``.T``, other calls, lambdas,
comprehensions, f-strings, walrus, starred arguments, chained comparisons, strings,
dunder names, ...) is refused with an :class:`~verigrad.errors.ExpressionError`
naming the construct and its column.  Every way an expression can fail raises a
:class:`~verigrad.errors.CaseError` subclass (``ExpressionError``,
``ShapeError``, ``LimitError``); the ``field`` of the error says which
expression (``loss``, ``[define] Z1``) and the message gives the column.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
import warnings
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Callable, Mapping

from verigrad.errors import CaseError, ExpressionError, LimitError, ShapeError
from verigrad.expr.arrays import ARRAY_CALLS, array_call
from verigrad.expr.functions import FUNCTIONS, PUBLIC_FUNCTIONS
from verigrad.expr.graph import Builder, Node, Op
from verigrad.expr.select import SELECT_CALLS, IntConst, compare, gather_subscript, is_int_expression, select_call
from verigrad.spec import ExprLimits

__all__ = ["parse_expression", "ExprLimits", "SIGNATURES", "RESERVED_NAMES", "MAX_DEPTH_CEILING", "MAX_NDIM",
           "MAX_LITERAL_DIGITS"]

#: The largest ``[limits] max_expression_depth`` that can be configured: deeper
#: nesting would exhaust Python's recursion limit while the tree is walked.
MAX_DEPTH_CEILING = 250
#: The largest number of dimensions of any array an expression builds.
MAX_NDIM = 32
#: Significant digits of a number literal.
MAX_LITERAL_DIGITS = 100
#: Integer literals (indices, axes, shapes) must lie within +-2**62.
_MAX_INT_LITERAL = 2**62


# name -> (positional parameter names, keyword defaults)
_REDUCE = (("x", "axis", "keepdims"), {"axis": None, "keepdims": False})
SIGNATURES: dict[str, tuple[tuple[str, ...], dict]] = {
    **{name: (("x",), {}) for name in PUBLIC_FUNCTIONS},
    "maximum": (("a", "b"), {}),
    "minimum": (("a", "b"), {}),
    "sum": _REDUCE,
    "mean": _REDUCE,
    "prod": _REDUCE,
    "max": _REDUCE,
    "min": _REDUCE,
    "logsumexp": _REDUCE,
    "softmax": (("x", "axis"), {"axis": -1}),
    "log_softmax": (("x", "axis"), {"axis": -1}),
    "transpose": (("x", "axes"), {"axes": None}),
    "dot": (("a", "b"), {}),
    "matmul": (("a", "b"), {}),
    "reshape": (("x", "shape"), {}),
    # einsum, conv2d, norm, concatenate, ...: arguments read and nodes built by verigrad.expr.arrays
    **{name: (spec.params, spec.defaults) for name, spec in ARRAY_CALLS.items()},
    # take_along_axis, take, one_hot, where, clip, sign, logaddexp, xlogy: read and built by verigrad.expr.select
    **{name: (params, defaults) for name, (params, defaults, _) in SELECT_CALLS.items()},
}
_LITERAL_PARAMS = {"axis", "keepdims", "axes", "shape"}
RESERVED_NAMES = frozenset(SIGNATURES) | {"pi", "e"}

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.MatMult: "@"}
_OPERATOR_TEXT = {ast.Mod: "%", ast.FloorDiv: "//", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|",
                  ast.BitXor: "^", ast.BitAnd: "&", ast.Not: "not", ast.Invert: "~"}
_OPERATOR_HINT = {
    "^": "for a power write x**2 (^ is Python's exclusive or)",
    "//": "write the division with / (floor division has no useful derivative)",
    "%": "the remainder is not supported",
}
_ALLOWED_OPERATORS = "allowed operators: + - * / ** @, unary - and +"
_DATA_HINT = ("expressions are data, never code: only numbers, declared names, arithmetic, indexing, .T "
              "and the whitelisted functions are accepted")
_WHITESPACE = re.compile(r"\s")
_NUMPY_PREFIXES = {"np", "numpy", "math", "jnp", "jax", "torch", "tf", "sympy", "sp", "scipy", "mpmath"}

_REFUSED = {
    ast.Lambda: "a lambda",
    ast.ListComp: "a list comprehension",
    ast.SetComp: "a set comprehension",
    ast.DictComp: "a dict comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string",
    ast.NamedExpr: "an assignment expression (:=)",
    ast.Starred: "a starred argument (*)",
    ast.BoolOp: "a boolean operator (and/or)",
    ast.IfExp: "a conditional expression",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.List: "a list",
    ast.Tuple: "a tuple",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "a slice",
}


def _did_you_mean(name: str, options, cutoff: float = 0.5) -> str | None:
    """The closest option: same spelling up to case, else difflib's best."""
    options = list(options)
    lower = {o.lower(): o for o in options}
    if name.lower() in lower:
        return lower[name.lower()]
    close = difflib.get_close_matches(name, options, n=1, cutoff=cutoff)
    return close[0] if close else None


def _shorten(text: str, width: int = 100) -> str:
    if len(text) <= width:
        return text
    return text[: width - 30] + " ... " + text[-25:]


class _Parser:
    def __init__(self, builder: Builder, names: Mapping[str, Node], field: str, text: str,
                 limits: ExprLimits, lead: int = 0) -> None:
        self.lead = lead  # characters of leading whitespace stripped from the text
        self.b = builder
        self.names = names
        self.field = field
        self.text = text
        self.limits = limits
        self._bytes = text.encode("utf-8")

    # -- messages ----------------------------------------------------------------------
    def column(self, node: ast.AST) -> int:
        """1-based *character* column (ast gives UTF-8 byte offsets)."""
        off = getattr(node, "col_offset", 0) or 0
        return self.lead + len(self._bytes[:off].decode("utf-8", errors="replace")) + 1

    def segment(self, node: ast.AST) -> str:
        start, end = getattr(node, "col_offset", None), getattr(node, "end_col_offset", None)
        if start is None or end is None:
            return self.text
        return self._bytes[start:end].decode("utf-8", errors="replace")

    def error(self, message: str, node: ast.AST | None = None, hint: str = "", cls=ExpressionError) -> CaseError:
        col = self.column(node) if node is not None else None
        at = f" at column {col}" if col is not None else ""
        return cls(f"{message}{at}", hint=hint, field=self.field, expression=self.text, column=col)

    def label(self, node: ast.AST) -> str:
        """Node label: where the value comes from, named in DomainError messages."""
        return f"{self.field}: {_shorten(self.segment(node))}"

    # -- building, with every failure turned into a CaseError ----------------------------
    def build(self, node: ast.AST, make: Callable[[], Node]) -> Node:
        try:
            out = make()
        except CaseError as exc:
            if exc.fields.get("field"):
                raise
            # Builder messages quote the label ("... in loss: x @ W"); the field is in the breadcrumb.
            reason = exc.reason.replace(f"{self.field}: ", "")
            raise self.error(reason, node, hint=exc.hint, cls=type(exc)) from None
        except (ValueError, IndexError, TypeError, OverflowError, ZeroDivisionError, MemoryError) as exc:
            raise self.error(f"cannot build {_shorten(self.segment(node), 60)!r}: {exc}", node,
                             cls=ShapeError) from None
        self.check_size(out.shape, node)
        return out

    def check_size(self, shape: tuple[int, ...], node: ast.AST) -> None:
        if len(shape) > MAX_NDIM:
            raise self.error(f"{_shorten(self.segment(node), 60)} would have {len(shape)} dimensions, over the "
                             f"maximum of {MAX_NDIM}", node, cls=LimitError)
        size = math.prod(shape)
        if size > self.limits.max_elements:
            raise self.error(f"{_shorten(self.segment(node), 60)} would have shape {list(shape)} = {size} entries, "
                             f"over the limit of {self.limits.max_elements}", node, cls=LimitError,
                             hint="raise [limits] max_intermediate_elements, or check the shapes "
                                  "(an unintended broadcast such as (n, 1) * (1, n) multiplies sizes)")

    # -- dispatch ----------------------------------------------------------------------
    def visit(self, node: ast.AST) -> Node:
        what = _REFUSED.get(type(node))
        if what is not None:
            hint = _DATA_HINT
            if isinstance(node, (ast.Tuple, ast.List)):
                hint = "tuples and lists are only allowed as literal options, e.g. sum(x, axis=(0, 1))"
            elif isinstance(node, ast.IfExp):
                hint = "write piecewise definitions with where(condition, x, y), maximum, minimum, relu or abs"
            raise self.error(f"{what} is not allowed in an expression", node, hint=hint)
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            raise self.error(f"unsupported syntax ({type(node).__name__})", node, hint=_DATA_HINT)
        return method(node)

    def visit_Constant(self, node: ast.Constant) -> Node:
        v = node.value
        if isinstance(v, bool):
            raise self.error(f"{v} is a boolean, not a number", node,
                             hint=f"write {int(v)} for a number; True/False are only allowed as keepdims=...")
        if isinstance(v, complex):
            raise self.error(f"the complex number {self.segment(node)} is not allowed", node,
                             hint="losses are real; the complex step is a finite-difference scheme "
                                  "([check] schemes), not part of the loss")
        if isinstance(v, str):
            raise self.error("a string is not allowed in an expression", node, hint=_DATA_HINT)
        if isinstance(v, bytes):
            raise self.error("a bytes literal is not allowed in an expression", node, hint=_DATA_HINT)
        if v is None:
            raise self.error("None is not a number", node, hint="None is only allowed inside an index (new axis)")
        if v is Ellipsis:
            raise self.error("'...' is not a number", node, hint="'...' is only allowed inside an index")
        if not isinstance(v, (int, float)):  # pragma: no cover - Python has no other literal
            raise self.error(f"{v!r} is not a number", node)
        value = self.number(node, v)
        return self.b.const(value, self.segment(node))

    def number(self, node: ast.Constant, v: int | float) -> Fraction:
        """The exact value of a number literal as written (``0.1`` is 1/10)."""
        text = self.segment(node).replace("_", "")
        digits = len(text.lower().split("e")[0].replace(".", "").lstrip("0"))
        if digits > MAX_LITERAL_DIGITS:
            raise self.error(f"number {_shorten(text, 40)} has {digits} digits, over the maximum of "
                             f"{MAX_LITERAL_DIGITS}", node, cls=LimitError,
                             hint="exact constants need far fewer digits (float64 needs 17)")
        if isinstance(v, int):
            value = Fraction(v)
        else:
            try:
                dec = Decimal(text)
            except InvalidOperation:  # pragma: no cover - ast accepted it as a float literal
                dec = Decimal(v)
            if not dec.is_finite():  # pragma: no cover - Python literals are finite
                raise self.error(f"number {text} is not finite", node)
            if dec and dec.adjusted() > 308:
                raise self.error(f"number {_shorten(text, 40)} is too large: it overflows float64 "
                                 f"(largest 1.8e308)", node)
            if dec and dec.adjusted() < -324:
                raise self.error(f"number {_shorten(text, 40)} is too small: it underflows to 0 in float64 "
                                 f"(smallest 4.9e-324)", node, hint="write 0, or rescale the loss")
            value = Fraction(dec)
        if value:
            try:
                f = float(value)
            except OverflowError:
                f = math.inf
            if math.isinf(f):
                raise self.error(f"number {_shorten(text, 40)} is too large: it overflows float64 "
                                 f"(largest 1.8e308)", node)
            if f == 0.0:
                raise self.error(f"number {_shorten(text, 40)} is too small: it underflows to 0 in float64 "
                                 f"(smallest 4.9e-324)", node, hint="write 0, or rescale the loss")
        return value

    def visit_Name(self, node: ast.Name) -> Node:
        name = node.id
        if name.startswith("__"):
            raise self.error(f"name '{name}' is not allowed (dunder names are refused)", node, hint=_DATA_HINT)
        if name in self.names:
            value = self.names[name]
            if isinstance(value, IntConst):
                raise self.error(f"'{name}' is an integer constant: it holds indices, not values", node,
                                 hint=f"use it in take_along_axis(arr, {name}, axis), take(a, {name}), "
                                      f"arr[{name}] or one_hot({name}, num_classes)")
            return value
        if name in ("pi", "e"):
            return self.b.const(name)
        if name in SIGNATURES:
            raise self.error(f"function '{name}' is used without a call", node, hint=f"call it as {name}(...)")
        declared = ", ".join(self.names) or "none"
        close = _did_you_mean(name, [*self.names, "pi", "e"])
        hint = f"did you mean '{close}'? " if close else "declare it in [symbols] or [define]; "
        if name in _NUMPY_PREFIXES:
            hint = "call the functions by their bare names, e.g. exp(x), not np.exp(x); "
        raise self.error(f"unknown name '{name}'", node, hint=f"{hint}declared names: {declared}")

    def visit_BinOp(self, node: ast.BinOp) -> Node:
        # A left-leaning chain a + b - c + ... is walked iteratively: long sums are not deep.
        chain = []
        n: ast.AST = node
        while isinstance(n, ast.BinOp):
            chain.append(n)
            n = n.left
        for op_node in chain:
            self.check_operator(op_node)
        value = self.visit(n)
        for op_node in reversed(chain):
            right = self.visit(op_node.right)
            value = self.binop(op_node, value, right)
        return value

    def check_operator(self, node: ast.BinOp) -> None:
        if type(node.op) not in _BINOPS:
            sym = _OPERATOR_TEXT.get(type(node.op), type(node.op).__name__)
            raise self.error(f"operator '{sym}' is not allowed", node,
                             hint=_OPERATOR_HINT.get(sym, _ALLOWED_OPERATORS))

    def binop(self, node: ast.BinOp, a: Node, c: Node) -> Node:
        sym = _BINOPS[type(node.op)]
        label = self.label(node)
        b = self.b
        if sym == "@":
            self.check_matmul(a, c, node)
        make = {"+": b.add, "-": b.sub, "*": b.mul, "/": b.div, "**": b.pow, "@": b.matmul}[sym]
        return self.build(node, lambda: make(a, c, label))

    def check_matmul(self, a: Node, c: Node, node: ast.AST) -> None:
        """Refuse a matmul whose result is over the size limit before the builder infers its shape."""
        if len(a.shape) < 1 or len(c.shape) < 1:
            return  # the builder explains
        rows = a.shape[-2] if len(a.shape) > 1 else 1
        cols = c.shape[-1] if len(c.shape) > 1 else 1
        try:
            batch = _broadcast_shape(a.shape[:-2], c.shape[:-2])
        except ValueError:
            return  # the builder explains
        self.check_size(batch + (rows, cols), node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Node:
        if isinstance(node.op, ast.USub):
            x = self.visit(node.operand)
            return self.build(node, lambda: self.b.neg(x, self.label(node)))
        if isinstance(node.op, ast.UAdd):
            return self.visit(node.operand)
        sym = _OPERATOR_TEXT.get(type(node.op), type(node.op).__name__)
        raise self.error(f"operator '{sym}' is not allowed", node, hint=_ALLOWED_OPERATORS)

    def visit_Attribute(self, node: ast.Attribute) -> Node:
        if node.attr != "T":
            hint = _DATA_HINT
            if isinstance(node.value, ast.Name) and node.value.id in _NUMPY_PREFIXES and node.attr in SIGNATURES:
                hint = f"write {node.attr}(...) without the '{node.value.id}.' prefix"
            raise self.error(f"attribute access '.{node.attr}' is not allowed", node,
                             hint=f"only .T (transpose) is allowed; {hint}" if hint == _DATA_HINT else hint)
        x = self.visit(node.value)
        return self.build(node, lambda: self.b.transpose(x, None, self.label(node)))

    def visit_Compare(self, node: ast.Compare) -> Node:
        return compare(self, node)

    def visit_Subscript(self, node: ast.Subscript) -> Node:
        x = self.visit(node.value)
        sl = node.slice
        items = sl.elts if isinstance(sl, ast.Tuple) else [sl]
        if any(is_int_expression(self, i) for i in items):
            return gather_subscript(self, node, x)  # advanced indexing with integer constants
        index = tuple(self.index_item(i) for i in items)
        if sum(1 for i in index if i is Ellipsis) > 1:
            raise self.error("an index can only have a single '...'", node)
        ndim = len(x.shape) + sum(1 for i in index if i is None) - sum(1 for i in index if isinstance(i, int))
        if ndim > MAX_NDIM:
            self.check_size((1,) * ndim, node)
        return self.build(node, lambda: self.b.getitem(x, index, self.label(node)))

    def index_item(self, node: ast.AST):
        if isinstance(node, ast.Slice):
            parts = tuple(None if p is None else self.int_literal(p, "a slice bound") for p in
                          (node.lower, node.upper, node.step))
            if parts[2] == 0:
                raise self.error("a slice step cannot be zero", node)
            return slice(*parts)
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        if isinstance(node, ast.Constant) and node.value is Ellipsis:
            return Ellipsis
        return self.int_literal(node, "an index")

    def int_literal(self, node: ast.AST, what: str) -> int:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = self.int_literal(node.operand, what)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.Constant) and type(node.value) is int:
            if abs(node.value) > _MAX_INT_LITERAL:
                raise self.error(f"integer {_shorten(str(node.value), 30)} is out of range for {what}", node)
            return node.value
        given = _shorten(self.segment(node), 40)
        raise self.error(f"{what} must be an integer literal, got {given!r}", node,
                         hint="indices, axes and shapes are fixed integers written in the expression; "
                              "integer-array indices are integer constants (dtype = \"int64\" in [symbols]); "
                              "boolean indexing is not supported (use where)")

    def int_tuple(self, node: ast.AST, param: str) -> tuple[int, ...]:
        return tuple(self.int_literal(e, f"'{param}' entry") for e in node.elts)

    def literal(self, node: ast.AST, param: str, fn: str):
        """The value of a literal option; each option accepts only its own kinds."""
        is_none = isinstance(node, ast.Constant) and node.value is None
        is_seq = isinstance(node, (ast.Tuple, ast.List))
        if param == "keepdims":
            if isinstance(node, ast.Constant) and isinstance(node.value, bool):
                return node.value
            raise self.error(f"{fn}(): keepdims must be True or False, got {self.segment(node)!r}", node)
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            raise self.error(f"{fn}(): '{param}' must be an integer or a tuple of integers, "
                             f"got {node.value}", node)
        if param == "axis":
            if fn in ("softmax", "log_softmax"):
                if is_none or is_seq:
                    raise self.error(f"{fn}(): axis must be one integer, got {self.segment(node)!r}", node)
                return self.int_literal(node, "'axis'")
            if is_none:
                return None
            if is_seq:
                return self.int_tuple(node, param)
            return self.int_literal(node, "'axis'")
        if param == "axes":
            if is_none:
                return None
            if is_seq:
                return self.int_tuple(node, param)
            raise self.error(f"{fn}(): axes must be a tuple of integers such as (1, 0), "
                             f"got {self.segment(node)!r}", node)
        # shape
        if is_seq:
            return self.int_tuple(node, param)
        if is_none:
            raise self.error(f"{fn}(): shape must be an integer or a tuple of integers, got None", node)
        return (self.int_literal(node, "'shape'"),)

    def visit_Call(self, node: ast.Call) -> Node:
        func = node.func
        if not isinstance(func, ast.Name):
            if isinstance(func, ast.Attribute):
                hint = "only the whitelisted functions can be called, by name; " + _DATA_HINT
                if func.attr in SIGNATURES:
                    owner = self.segment(func.value)
                    hint = (f"write {func.attr}(...) without the '{owner}.' prefix"
                            if isinstance(func.value, ast.Name) and func.value.id in _NUMPY_PREFIXES
                            else f"write {func.attr}({_shorten(owner, 30)}) instead of "
                                 f"{_shorten(owner, 30)}.{func.attr}()")
                raise self.error(f"a method call .{func.attr}(...) is not allowed", node, hint=hint)
            raise self.error("this call is not allowed: only whitelisted functions can be called, by name", node,
                             hint=_DATA_HINT)
        name = func.id
        if name.startswith("__"):
            raise self.error(f"call of '{name}' is not allowed (dunder names are refused)", node,
                             hint=_DATA_HINT)
        if name in self.names:
            raise self.error(f"'{name}' is a declared symbol, not a function", node,
                             hint="multiply with * (implicit calls such as x(y) are not products)")
        if name not in SIGNATURES:
            close = _did_you_mean(name, SIGNATURES, cutoff=0.6)
            hint = (f"did you mean '{close}'? " if close else "") + "allowed functions: " + ", ".join(sorted(SIGNATURES))
            raise self.error(f"call of '{name}' is not allowed (not a whitelisted function)", node, hint=hint)
        params, defaults = SIGNATURES[name]
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.error("a starred argument (*) is not allowed in an expression", arg, hint=_DATA_HINT)
        if name in ARRAY_CALLS:
            return array_call(self, name, node)
        if name in SELECT_CALLS:
            return select_call(self, name, node)
        given, _ = self.bind_arguments(name, node, params)
        args: dict[str, object] = {}
        for p in params:
            if p in given:
                args[p] = self.literal(given[p], p, name) if p in _LITERAL_PARAMS else self.visit(given[p])
            elif p in defaults:
                args[p] = defaults[p]
            else:
                raise self.error(f"{name}() is missing its argument '{p}'", node,
                                 hint=f"{name}({', '.join(params)})")
        return self.build_call(name, args, self.label(node), node)

    def bind_arguments(self, name: str, node: ast.Call, params, *,
                       variadic: bool = False) -> tuple[dict[str, ast.AST], list[ast.AST]]:
        """The call's positional, then keyword arguments bound to ``params`` (every call's rules).

        With ``variadic`` the last parameter (``*arrays``) takes the positional arguments beyond
        the others, returned as the list; keywords bind only the others.  Too many positional
        arguments, ``**`` unpacking, an unknown or repeated keyword are errors naming the call."""
        shown = ", ".join(params)
        fixed = params[:-1] if variadic else params
        if not variadic and len(node.args) > len(fixed):
            raise self.error(f"{name}() takes at most {len(fixed)} positional arguments ({shown}), "
                             f"got {len(node.args)}", node)
        given: dict[str, ast.AST] = dict(zip(fixed, node.args))
        for kw in node.keywords:
            if kw.arg is None:
                raise self.error("**keyword unpacking is not allowed", kw, hint=_DATA_HINT)
            if kw.arg not in fixed:
                close = _did_you_mean(kw.arg, fixed)
                raise self.error(f"{name}() has no option '{kw.arg}'", kw,
                                 hint=(f"did you mean '{close}'? " if close else "") + f"{name}({shown})")
            if kw.arg in given:
                raise self.error(f"{name}() got '{kw.arg}' twice", kw)
            given[kw.arg] = kw.value
        return given, (list(node.args[len(fixed):]) if variadic else [])

    def build_call(self, name: str, a: dict, label: str, node: ast.AST) -> Node:
        b = self.b
        if name in FUNCTIONS:
            return self.build(node, lambda: b.unary(name, a["x"], label))
        if name == "maximum":
            return self.build(node, lambda: b.maximum(a["a"], a["b"], label))
        if name == "minimum":
            return self.build(node, lambda: b.minimum(a["a"], a["b"], label))
        if name in ("sum", "mean", "prod", "max", "min", "logsumexp"):
            fn = {"sum": b.sum, "mean": b.mean, "max": b.max, "min": b.min, "logsumexp": b.logsumexp}.get(name)
            if fn is None:
                return self.build(node, lambda: b.reduce(Op.PROD, a["x"], a["axis"], a["keepdims"], label))
            return self.build(node, lambda: fn(a["x"], a["axis"], a["keepdims"], label))
        if name in ("softmax", "log_softmax"):
            x = a["x"]

            def make() -> Node:
                lse = b.logsumexp(x, a["axis"], True, f"logsumexp in {label}")
                z = b.sub(x, lse, label)
                return z if name == "log_softmax" else b.unary("exp", z, label)

            return self.build(node, make)
        if name == "transpose":
            x, axes = a["x"], a["axes"]
            if axes is not None:
                nd = len(x.shape)
                if sorted(ax % nd if nd and -nd <= ax < nd else ax for ax in axes) != list(range(nd)):
                    raise self.error(f"transpose(): axes={axes} is not a permutation of the {nd} axes of an "
                                     f"array of shape {list(x.shape)}", node, cls=ShapeError,
                                     hint=f"give each of 0..{nd - 1} once" if nd else "a scalar has no axes")
            return self.build(node, lambda: b.transpose(x, axes, label))
        if name in ("dot", "matmul"):
            x, y = a["a"], a["b"]
            if name == "dot" and (not x.shape or not y.shape):
                return self.build(node, lambda: b.mul(x, y, label))
            if name == "dot" and (len(x.shape) > 2 or len(y.shape) > 2):
                raise self.error("dot() of arrays with more than 2 dimensions is not supported", node,
                                 cls=ShapeError, hint="use matmul (or @), which broadcasts leading dimensions")
            self.check_matmul(x, y, node)
            return self.build(node, lambda: b.matmul(x, y, label))
        if name == "reshape":
            x, shape = a["x"], a["shape"]
            if len(shape) > MAX_NDIM:
                self.check_size((1,) * len(shape), node)
            if shape.count(-1) > 1 or any(s < -1 or s == 0 for s in shape):
                raise self.error(f"reshape(): cannot reshape shape {list(x.shape)} into {list(shape)}", node,
                                 cls=ShapeError, hint="dimensions are positive integers; at most one may be -1")
            if shape.count(-1) == 1:
                known = math.prod(s for s in shape if s != -1)
                if x.size % known:
                    raise self.error(f"reshape(): cannot reshape shape {list(x.shape)} ({x.size} entries) "
                                     f"into {list(shape)}", node, cls=ShapeError,
                                     hint=f"{x.size} is not a multiple of {known}")
                shape = tuple(x.size // known if s == -1 else s for s in shape)
            if math.prod(shape) != x.size:
                raise self.error(f"reshape(): cannot reshape shape {list(x.shape)} ({x.size} entries) into "
                                 f"{list(shape)} ({math.prod(shape)} entries)", node, cls=ShapeError,
                                 hint=f"the new shape must have {x.size} entries")
            return self.build(node, lambda: b.reshape(x, shape, label))
        raise self.error(f"function '{name}' is declared but not implemented", node)  # pragma: no cover


def _broadcast_shape(s1: tuple[int, ...], s2: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for i in range(1, max(len(s1), len(s2)) + 1):
        p = s1[-i] if i <= len(s1) else 1
        q = s2[-i] if i <= len(s2) else 1
        if p != q and p != 1 and q != 1:
            raise ValueError("shapes do not broadcast")
        out.append(max(p, q))
    return tuple(reversed(out))


def _tree_size(tree: ast.AST, field: str, limits: ExprLimits) -> None:
    """Check node count and nesting depth without recursion.

    Depth counts nesting; the left operand of a binary operator that is itself a
    binary operator stays at the same depth (``a + b + c`` is one level).
    Contexts and operator tokens are not counted.
    """
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)):
            continue
        count += 1
        if depth > limits.max_depth:
            raise LimitError(f"expression nesting depth exceeds {limits.max_depth}",
                             hint="split the expression into [define] steps, or raise [limits] "
                                  f"max_expression_depth (at most {MAX_DEPTH_CEILING})", field=field)
        if count > limits.max_nodes:
            raise LimitError(f"expression has more than {limits.max_nodes} syntax nodes",
                             hint="split the expression into [define] steps, or raise [limits] max_expression_nodes",
                             field=field)
        for child in ast.iter_child_nodes(node):
            same = isinstance(node, ast.BinOp) and child is node.left and isinstance(child, ast.BinOp)
            stack.append((child, depth if same else depth + 1))


def parse_expression(text: object, *, builder: Builder, names: Mapping[str, Node], field: str,
                     limits: ExprLimits = ExprLimits()) -> Node:
    """Parse one expression string into a graph node, safely.

    Parameters
    ----------
    text : str
        The expression, as written in the case file.
    builder : Builder
        Node factory shared by the whole case.
    names : mapping of str to Node
        Declared symbols and earlier definitions.
    field : str
        Where the text came from (``"loss"``, ``"[define] Z1"``), for messages.
    limits : ExprLimits

    Returns
    -------
    Node

    Raises
    ------
    ExpressionError
        With the field and column of the offending construct.
    ShapeError
        When operand shapes do not fit (broadcasting, matmul, indexing, axes).
    LimitError
        When the text exceeds a configured limit.

    Examples
    --------
    >>> from verigrad.expr.graph import Builder
    >>> b = Builder()
    >>> x = b.leaf("x", (3,), variable=True)
    >>> parse_expression("sum(x**2) / 2", builder=b, names={"x": x}, field="loss").shape
    ()
    """
    if not isinstance(text, str):
        raise ExpressionError(f"expected an expression string, got {type(text).__name__} {text!r}",
                              hint='write the expression in quotes, e.g. "sum(x**2)"', field=field)
    if len(text) > limits.max_length:
        raise LimitError(f"expression is {len(text)} characters long, over the limit of {limits.max_length}",
                         hint="split the expression into [define] steps, or raise [limits] max_expression_length",
                         field=field)
    if "\x00" in text:
        raise ExpressionError(f"the expression contains a NUL character at column {text.index(chr(0)) + 1}",
                              field=field)
    # Every whitespace character (line breaks of multi-line TOML strings, tabs) becomes one space, so the
    # text is one line and a column counts characters from the start of the string as written.
    text = _WHITESPACE.sub(" ", text)
    body = text.strip()
    if not body:
        raise ExpressionError("the expression is empty", hint='write e.g. "sum(x**2)"', field=field)
    lead = len(text) - len(text.lstrip())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for "1if", invalid escapes, ...
            tree = ast.parse(body, mode="eval")
    except SyntaxError as exc:
        if exc.offset and exc.offset <= len(body):
            col = f" at column {exc.offset + lead}"
        else:
            col = f" at column {lead + len(body) + 1} (the end of the expression)"
        msg = exc.msg
        if "too many nested parentheses" in msg:
            raise LimitError(f"expression too deeply nested to parse ({msg}){col}",
                             hint="split the expression into [define] steps", field=field,
                             expression=text) from None
        raise ExpressionError(f"syntax error{col}: {msg}", field=field, expression=text,
                              hint="expressions use Python/numpy syntax, e.g. \"sum((W @ x - y)**2) / 2\"") from None
    except (RecursionError, MemoryError) as exc:
        raise LimitError(f"expression too deeply nested to parse ({type(exc).__name__})",
                         hint="split the expression into [define] steps", field=field) from None
    except ValueError as exc:
        raise ExpressionError(f"cannot parse the expression: {exc}", field=field) from None
    _tree_size(tree, field, limits)
    try:
        return _Parser(builder, names, field, body, limits, lead).visit(tree.body)
    except RecursionError:
        raise LimitError("expression too deeply nested to walk (Python's recursion limit)",
                         hint="split the expression into [define] steps, or lower [limits] max_expression_depth",
                         field=field) from None
