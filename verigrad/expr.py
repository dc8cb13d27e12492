"""The safe expression parser: case-file text -> graph nodes.

Expression strings are parsed by Python's ``ast`` module *as data* and walked
against a whitelist; nothing is ever evaluated.  No ``eval``, ``exec``,
``sympify`` or ``parse_expr`` touches case-file text.  Only these constructs are
accepted (numpy semantics):

* numbers (exact decimals: ``0.1`` means 1/10), declared names, ``pi``, ``e``;
* ``+ - * / ** @``, unary ``-`` and ``+``;
* ``x.T``;
* basic indexing: integers, slices with integer bounds, ``None`` (new axis), ``...``;
* calls of the whitelisted functions in :data:`SIGNATURES`, with integer /
  tuple / boolean literal options (``axis=0``, ``keepdims=True``).

Everything else (attribute access other than ``.T``, other calls, lambdas,
comprehensions, f-strings, walrus, starred arguments, comparisons, strings,
dunder names, ...) is refused with an :class:`~verigrad.errors.ExpressionError`
naming the construct and its column.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping

from .errors import ExpressionError, LimitError, ShapeError
from .functions import FUNCTIONS, PUBLIC_FUNCTIONS
from .graph import Builder, Node

__all__ = ["parse_expression", "ExprLimits", "SIGNATURES", "RESERVED_NAMES"]


@dataclass(frozen=True)
class ExprLimits:
    """Resource limits for one expression string.

    Attributes
    ----------
    max_length : int
        Characters per expression (``[limits] max_expression_length``).
    max_depth : int
        Nesting depth of the syntax tree (``[limits] max_expression_depth``).
    max_nodes : int
        Syntax-tree nodes per expression (``[limits] max_expression_nodes``).
    """

    max_length: int = 20_000
    max_depth: int = 100
    max_nodes: int = 20_000


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
}
_LITERAL_PARAMS = {"axis", "keepdims", "axes", "shape"}
RESERVED_NAMES = frozenset(SIGNATURES) | {"pi", "e"}

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.MatMult: "@"}

_REFUSED = {
    ast.Lambda: "a lambda",
    ast.ListComp: "a list comprehension",
    ast.SetComp: "a set comprehension",
    ast.DictComp: "a dict comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string",
    ast.NamedExpr: "an assignment expression (:=)",
    ast.Starred: "a starred argument",
    ast.Compare: "a comparison",
    ast.BoolOp: "a boolean operator (and/or)",
    ast.IfExp: "a conditional expression (use maximum/minimum for piecewise definitions)",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.List: "a list",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


def _col(node: ast.AST) -> int:
    return getattr(node, "col_offset", 0) + 1


class _Parser:
    def __init__(self, builder: Builder, names: Mapping[str, Node], field: str, text: str) -> None:
        self.b = builder
        self.names = names
        self.field = field
        self.text = text

    def error(self, message: str, node: ast.AST | None = None, hint: str = "", cls=ExpressionError):
        at = f" at column {_col(node)}" if node is not None else ""
        return cls(f"{self.field}: {message}{at}", hint=hint, field=self.field, expression=self.text)

    def label(self, node: ast.AST) -> str:
        seg = ast.get_source_segment(self.text, node) or self.text
        return f"{self.field}: {seg}" if seg != self.text or True else seg

    # -- dispatch ----------------------------------------------------------------------
    def visit(self, node: ast.AST) -> Node:
        for cls, what in _REFUSED.items():
            if isinstance(node, cls):
                raise self.error(f"{what} is not allowed in an expression", node,
                                 hint="expressions are data: only arithmetic, names, indexing and the "
                                      "whitelisted functions are accepted")
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            raise self.error(f"unsupported syntax ({type(node).__name__})", node)
        try:
            return method(node)
        except ShapeError as exc:
            if exc.fields.get("field"):
                raise
            raise self.error(exc.reason, node, hint=exc.hint, cls=ShapeError) from None

    def visit_Constant(self, node: ast.Constant) -> Node:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            kind = "a string" if isinstance(v, str) else repr(v)
            raise self.error(f"{kind} is not a number", node)
        text = (ast.get_source_segment(self.text, node) or repr(v)).replace("_", "")
        try:
            value = Fraction(text)
        except ValueError:
            value = Fraction(v)
        return self.b.const(value, text)

    def visit_Name(self, node: ast.Name) -> Node:
        name = node.id
        if name.startswith("__"):
            raise self.error(f"name '{name}' is not allowed (dunder names are refused)", node)
        if name in self.names:
            return self.names[name]
        if name in ("pi", "e"):
            return self.b.const(name)
        if name in SIGNATURES:
            raise self.error(f"'{name}' is a function; call it as {name}(...)", node)
        declared = ", ".join(self.names) or "none"
        close = difflib.get_close_matches(name, list(self.names) + list(SIGNATURES), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "declare it in [symbols] or [define]"
        raise self.error(f"unknown name '{name}'", node, hint=f"{hint} (declared: {declared})")

    def visit_BinOp(self, node: ast.BinOp) -> Node:
        sym = _BINOPS.get(type(node.op))
        if sym is None:
            raise self.error(f"operator {type(node.op).__name__} is not allowed", node,
                             hint="allowed operators: + - * / ** @")
        a, b = self.visit(node.left), self.visit(node.right)
        label = self.label(node)
        if sym == "+":
            return self.b.add(a, b, label)
        if sym == "-":
            return self.b.sub(a, b, label)
        if sym == "*":
            return self.b.mul(a, b, label)
        if sym == "/":
            return self.b.div(a, b, label)
        if sym == "**":
            return self.b.pow(a, b, label)
        return self.b.matmul(a, b, label)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Node:
        if isinstance(node.op, ast.USub):
            return self.b.neg(self.visit(node.operand), self.label(node))
        if isinstance(node.op, ast.UAdd):
            return self.visit(node.operand)
        raise self.error(f"operator {type(node.op).__name__} is not allowed", node)

    def visit_Attribute(self, node: ast.Attribute) -> Node:
        if node.attr != "T":
            raise self.error(f"attribute access '.{node.attr}' is not allowed; only .T (transpose)", node)
        return self.b.transpose(self.visit(node.value), None, self.label(node))

    def visit_Subscript(self, node: ast.Subscript) -> Node:
        x = self.visit(node.value)
        sl = node.slice
        items = sl.elts if isinstance(sl, ast.Tuple) else [sl]
        index = tuple(self.index_item(i) for i in items)
        return self.b.getitem(x, index, self.label(node))

    def index_item(self, node: ast.AST):
        if isinstance(node, ast.Slice):
            return slice(*(None if p is None else self.int_literal(p, "a slice bound")
                           for p in (node.lower, node.upper, node.step)))
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        if isinstance(node, ast.Constant) and node.value is Ellipsis:
            return Ellipsis
        return self.int_literal(node, "an index")

    def int_literal(self, node: ast.AST, what: str) -> int:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self.int_literal(node.operand, what)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        raise self.error(f"{what} must be an integer literal", node,
                         hint="indices are fixed integers; advanced (array) indexing is not supported")

    def literal(self, node: ast.AST, param: str):
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Tuple):
            return tuple(self.int_literal(e, f"'{param}'") for e in node.elts)
        return self.int_literal(node, f"'{param}'")

    def visit_Call(self, node: ast.Call) -> Node:
        if not isinstance(node.func, ast.Name):
            what = "a method call" if isinstance(node.func, ast.Attribute) else "this call"
            raise self.error(f"{what} is not allowed; only whitelisted functions can be called", node)
        name = node.func.id
        if name in self.names:
            raise self.error(f"'{name}' is a declared symbol, not a function", node)
        if name not in SIGNATURES:
            close = difflib.get_close_matches(name, list(SIGNATURES), n=1)
            hint = (f"did you mean '{close[0]}'? " if close else "") + "allowed functions: " + ", ".join(sorted(SIGNATURES))
            raise self.error(f"call of '{name}' is not allowed (not a whitelisted function)", node, hint=hint)
        params, defaults = SIGNATURES[name]
        if len(node.args) > len(params):
            raise self.error(f"{name}() takes at most {len(params)} positional arguments "
                             f"({', '.join(params)}), got {len(node.args)}", node)
        given: dict[str, ast.AST] = dict(zip(params, node.args))
        for kw in node.keywords:
            if kw.arg is None:
                raise self.error("**keyword unpacking is not allowed", node)
            if kw.arg not in params:
                raise self.error(f"{name}() has no option '{kw.arg}' (options: {', '.join(params[1:]) or 'none'})", kw)
            if kw.arg in given:
                raise self.error(f"{name}() got '{kw.arg}' twice", kw)
            given[kw.arg] = kw.value
        args: dict[str, object] = {}
        for p in params:
            if p in given:
                args[p] = self.literal(given[p], p) if p in _LITERAL_PARAMS else self.visit(given[p])
            elif p in defaults:
                args[p] = defaults[p]
            else:
                raise self.error(f"{name}() is missing its argument '{p}'", node)
        return self.build_call(name, args, self.label(node), node)

    def build_call(self, name: str, a: dict, label: str, node: ast.AST) -> Node:
        b = self.b
        if name in FUNCTIONS:
            return b.unary(name, a["x"], label)
        if name == "maximum":
            return b.maximum(a["a"], a["b"], label)
        if name == "minimum":
            return b.minimum(a["a"], a["b"], label)
        if name in ("sum", "mean", "prod", "max", "min", "logsumexp"):
            if not isinstance(a["keepdims"], bool):
                raise self.error(f"{name}(): keepdims must be True or False", node)
            if isinstance(a["axis"], bool):
                raise self.error(f"{name}(): axis must be an integer or a tuple of integers", node)
            fn = {"sum": b.sum, "mean": b.mean, "max": b.max, "min": b.min, "logsumexp": b.logsumexp}.get(name)
            if fn is None:
                return b.reduce(_prod_op(), a["x"], a["axis"], a["keepdims"], label)
            return fn(a["x"], a["axis"], a["keepdims"], label)
        if name in ("softmax", "log_softmax"):
            x = a["x"]
            if a["axis"] is None or isinstance(a["axis"], (bool, tuple)):
                raise self.error(f"{name}(): axis must be one integer", node)
            lse = b.logsumexp(x, a["axis"], True, f"logsumexp in {label}")
            z = b.sub(x, lse, label)
            return z if name == "log_softmax" else b.unary("exp", z, label)
        if name == "transpose":
            return b.transpose(a["x"], a["axes"], label)
        if name in ("dot", "matmul"):
            x, y = a["a"], a["b"]
            if name == "dot" and (not x.shape or not y.shape):
                return b.mul(x, y, label)
            if name == "dot" and (len(x.shape) > 2 or len(y.shape) > 2):
                raise self.error("dot() of arrays with more than 2 dimensions is not supported; use matmul", node)
            return b.matmul(x, y, label)
        if name == "reshape":
            shape = a["shape"]
            shape = (shape,) if isinstance(shape, int) else shape
            if not isinstance(shape, tuple):
                raise self.error("reshape(): shape must be an integer or a tuple of integers", node)
            if shape.count(-1) == 1:
                known = 1
                for s in shape:
                    known *= s if s != -1 else 1
                x = a["x"]
                if known <= 0 or x.size % known:
                    raise self.error(f"cannot reshape {x.shape} into {shape}", node, cls=ShapeError)
                shape = tuple(x.size // known if s == -1 else s for s in shape)
            return b.reshape(a["x"], shape, label)
        raise self.error(f"function '{name}' is declared but not implemented", node)  # pragma: no cover


def _prod_op():
    from .graph import Op

    return Op.PROD


def _check_limits(tree: ast.AST, text: str, field: str, limits: ExprLimits) -> None:
    count = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > limits.max_depth:
            raise LimitError(f"{field}: expression nesting depth exceeds {limits.max_depth}",
                             hint="simplify the expression with [define] steps, or raise "
                                  "[limits] max_expression_depth", field=field)
        if count > limits.max_nodes:
            raise LimitError(f"{field}: expression has more than {limits.max_nodes} syntax nodes",
                             hint="raise [limits] max_expression_nodes", field=field)
        stack.extend((c, depth + 1) for c in ast.iter_child_nodes(node))


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
    LimitError
        When the text exceeds a configured limit.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"{field}: expected an expression string, got {type(text).__name__} {text!r}",
                              hint='write the expression in quotes, e.g. "sum(x**2)"', field=field)
    if not text.strip():
        raise ExpressionError(f"{field}: the expression is empty", field=field)
    if len(text) > limits.max_length:
        raise LimitError(f"{field}: expression is {len(text)} characters long, over the limit of "
                         f"{limits.max_length}", hint="raise [limits] max_expression_length", field=field)
    if "\n" in text.strip() or "\r" in text:
        text = " ".join(text.split())
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        col = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"{field}: syntax error{col}: {exc.msg}", field=field, expression=text) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise LimitError(f"{field}: expression too deeply nested to parse ({type(exc).__name__})",
                         hint="simplify the expression with [define] steps", field=field) from None
    _check_limits(tree, text, field, limits)
    return _Parser(builder, names, field, text.strip()).visit(tree.body)
