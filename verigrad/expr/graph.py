"""Array-level, hash-consed expression graphs and their reverse-mode gradient.

A case's loss is parsed into a graph of array operations (``W1 @ X + b1``, not
one sympy expression per scalar entry), because per-entry symbolic calculus does
not scale (a 200 x 1000 logistic regression cannot even be built as a scalar
sympy expression in reasonable time).  The exact gradient is obtained by reverse
accumulation *symbolically*: :func:`gradient_graph` builds new graph nodes, so the
gradient is itself an expression of the same language.  The same evaluator then
gives

* the certified truth (mpmath numbers in numpy object arrays),
* the *float baseline* (the exact gradient expression evaluated naively in
  float32/float64),
* the float loss at finite-difference nodes (batched), and the complex step,
* scalar sympy expressions for display and for an independent ``sympy.diff``
  cross-check.

Every value carries a leading *batch* axis of length B (or 1, broadcast), so a
whole sweep of perturbed points is one vectorised evaluation.

Conventions at non-differentiable points (the point-value gradient; the kink
analysis reports the full set of one-sided derivatives): ``relu'(0) = 0``,
``abs'(0) = 0``, ``maximum`` and ``max`` split the cotangent equally among
ties.  Each is an element of the Clarke subdifferential.
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from verigrad.errors import ShapeError
from verigrad.expr.functions import FUNCTIONS, ElemFn

__all__ = ["Op", "Node", "Builder", "gradient_graph", "topological", "evaluate", "evaluate_all", "eval_node",
           "Workspace", "evaluate_float", "shared_workspace"]


class Op(enum.Enum):
    LEAF = "leaf"
    CONST = "const"
    UNARY = "unary"
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    POW = "pow"
    NEG = "neg"
    MAXIMUM = "maximum"
    TIE_WEIGHT = "tie_weight"
    MATMUL = "matmul"
    TRANSPOSE = "transpose"
    GETITEM = "getitem"
    SCATTER = "scatter"
    RESHAPE = "reshape"
    BROADCAST = "broadcast"
    SUM = "sum"
    PROD = "prod"
    MAX = "max"
    ARGMAX_WEIGHT = "argmax_weight"
    LOGSUMEXP = "logsumexp"


ELEMENTWISE_BINARY = (Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.POW, Op.MAXIMUM, Op.TIE_WEIGHT)


@dataclass(frozen=True, eq=False)
class Node:
    """One array operation.  Identity is structural (hash-consed by :class:`Builder`).

    Attributes
    ----------
    op : Op
    args : tuple of Node
    params : tuple
        Hashable operation parameters (axes, index, function name, constant value).
    shape : tuple of int
        Shape of the value, without the batch axis.
    label : str
        Where the node came from in the case file, for error messages.
    variables : frozenset of str
        Names of the variables the value depends on.
    id : int
        Creation order; sorting by id is a topological order.
    """

    op: Op
    args: tuple["Node", ...]
    params: tuple
    shape: tuple[int, ...]
    label: str
    variables: frozenset[str]
    id: int = field(compare=False)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def fn(self) -> ElemFn:
        return FUNCTIONS[self.params[0]]

    def __repr__(self) -> str:
        return f"Node#{self.id}({self.op.value}, shape={self.shape}, label={self.label!r})"


# -- index encoding: hashable tuples for numpy basic indexing -----------------------


def encode_index(index: tuple) -> tuple:
    out = []
    for item in index:
        if item is None:
            out.append(("newaxis",))
        elif item is Ellipsis:
            out.append(("ellipsis",))
        elif isinstance(item, slice):
            out.append(("slice", item.start, item.stop, item.step))
        else:
            out.append(("int", int(item)))
    return tuple(out)


def decode_index(code: tuple) -> tuple:
    out: list = []
    for item in code:
        kind = item[0]
        if kind == "newaxis":
            out.append(None)
        elif kind == "ellipsis":
            out.append(Ellipsis)
        elif kind == "slice":
            out.append(slice(item[1], item[2], item[3]))
        else:
            out.append(item[1])
    return tuple(out)


def _matmul_shape(sa: tuple[int, ...], sb: tuple[int, ...]) -> tuple[int, ...]:
    """numpy's matmul result shape (ValueError when the operands do not fit), without computing."""
    a = (1,) + sa if len(sa) == 1 else sa
    b = sb + (1,) if len(sb) == 1 else sb
    if a[-1] != b[-2]:
        raise ValueError("inner dimensions differ")
    batch = np.broadcast_shapes(a[:-2], b[:-2])
    out = batch + (a[-2], b[-1])
    if len(sa) == 1:
        out = out[:-2] + out[-1:]
    if len(sb) == 1:
        out = out[:-1]
    return tuple(out)


def _dummy(shape: tuple[int, ...]) -> np.ndarray:
    # zero-stride array: shape inference without allocating the data
    return np.broadcast_to(np.zeros((), dtype=np.int8), shape)


def _norm_axes(axis, ndim: int, label: str) -> tuple[int, ...] | None:
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(
                f"axis {a} is out of range for an array of {ndim} dimensions in {label}",
                hint=f"use an axis between {-ndim} and {ndim - 1}" if ndim else "a scalar has no axes",
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {axes} in {label}")
    return tuple(sorted(out))


def _reduced_shape(shape, axes, keepdims: bool) -> tuple[int, ...]:
    if axes is None:
        axes = tuple(range(len(shape)))
    if keepdims:
        return tuple(1 if i in axes else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class Builder:
    """Creates hash-consed nodes with shape checking.

    Identical sub-expressions (same operation on the same arguments) are one node,
    so the gradient graph shares work the way a hand-written backward pass does.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple, Node] = {}
        self._counter = itertools.count()

    def _make(self, op: Op, args: tuple[Node, ...], params: tuple, shape: tuple[int, ...], label: str) -> Node:
        key = (op, tuple(a.id for a in args), params)
        node = self._cache.get(key)
        if node is None:
            variables = frozenset().union(*(a.variables for a in args)) if args else frozenset()
            node = Node(op, args, params, tuple(int(s) for s in shape), label, variables, next(self._counter))
            self._cache[key] = node
        return node

    @property
    def node_count(self) -> int:
        return len(self._cache)

    # -- leaves ----------------------------------------------------------------------
    def leaf(self, name: str, shape: tuple[int, ...], *, variable: bool) -> Node:
        node = self._make(Op.LEAF, (), (name,), shape, name)
        if variable and not node.variables:
            node = Node(node.op, node.args, node.params, node.shape, node.label, frozenset([name]), node.id)
            self._cache[(Op.LEAF, (), (name,))] = node
        return node

    def const(self, value: Fraction | int | str, label: str = "") -> Node:
        """A scalar constant: an exact ``Fraction`` or one of ``"pi"``, ``"e"``."""
        if isinstance(value, str):
            params = (value,)
        else:
            value = Fraction(value)
            params = ("rational", value.numerator, value.denominator)
        return self._make(Op.CONST, (), params, (), label or _const_text(params))

    def zeros(self, shape: tuple[int, ...]) -> Node:
        return self.broadcast(self.const(0), shape)

    # -- elementwise -----------------------------------------------------------------
    def unary(self, fn: str, x: Node, label: str = "") -> Node:
        return self._make(Op.UNARY, (x,), (fn,), x.shape, label or f"{fn}({x.label})")

    def neg(self, x: Node, label: str = "") -> Node:
        if x.op is Op.NEG:
            return x.args[0]
        if _rational(x) is not None:
            return self.const(-_rational(x))
        return self._make(Op.NEG, (x,), (), x.shape, label or f"-({x.label})")

    def binary(self, op: Op, a: Node, b: Node, label: str = "") -> Node:
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ShapeError(
                f"shapes {_fmt_shape(a.shape)} and {_fmt_shape(b.shape)} do not broadcast "
                f"in {label or op.value}",
                hint="numpy broadcasting compares trailing dimensions; they must be equal or 1",
            ) from None
        folded = self._fold(op, a, b, shape)
        if folded is not None:
            return folded
        return self._make(op, (a, b), (), shape, label or f"{op.value}({a.label}, {b.label})")

    def _fold(self, op: Op, a: Node, b: Node, shape) -> Node | None:
        """Exact simplifications only: x*1, 1*x, x/1, x+0, 0+x, x-0, and rational constant arithmetic."""
        ra = _rational(a)
        rb = _rational(b)
        if ra is not None and rb is not None and op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV) and not (op is Op.DIV and rb == 0):
            v = {Op.ADD: ra + rb, Op.SUB: ra - rb, Op.MUL: ra * rb, Op.DIV: ra / rb if rb else None}[op]
            return self.const(v)
        keep = None
        if op is Op.MUL and ra == 1:
            keep = b
        elif op in (Op.MUL, Op.DIV) and rb == 1:
            keep = a
        elif op is Op.ADD and ra == 0:
            keep = b
        elif op in (Op.ADD, Op.SUB) and rb == 0:
            keep = a
        elif op is Op.MUL and ra == -1:
            keep = self.neg(b)
        if keep is None:
            return None
        return keep if keep.shape == shape else self.broadcast(keep, shape)

    def add(self, a: Node, b: Node, label: str = "") -> Node:
        return self.binary(Op.ADD, a, b, label)

    def sub(self, a: Node, b: Node, label: str = "") -> Node:
        return self.binary(Op.SUB, a, b, label)

    def mul(self, a: Node, b: Node, label: str = "") -> Node:
        return self.binary(Op.MUL, a, b, label)

    def div(self, a: Node, b: Node, label: str = "") -> Node:
        return self.binary(Op.DIV, a, b, label)

    def pow(self, a: Node, b: Node, label: str = "") -> Node:
        return self.binary(Op.POW, a, b, label)

    def maximum(self, a: Node, b: Node, label: str = "") -> Node:
        return self.binary(Op.MAXIMUM, a, b, label)

    def minimum(self, a: Node, b: Node, label: str = "") -> Node:
        # min(a, b) = -max(-a, -b): exact in every arithmetic, one tie rule for both.
        return self.neg(self.maximum(self.neg(a), self.neg(b), label), label)

    # -- linear algebra and shape ----------------------------------------------------
    def matmul(self, a: Node, b: Node, label: str = "") -> Node:
        label = label or f"{a.label} @ {b.label}"
        if not a.shape or not b.shape:
            raise ShapeError(f"matmul needs arrays, got a scalar operand in {label}",
                             hint="use * to multiply by a scalar")
        try:
            shape = _matmul_shape(a.shape, b.shape)
        except ValueError:
            raise ShapeError(
                f"matmul shapes {_fmt_shape(a.shape)} @ {_fmt_shape(b.shape)} do not fit in {label}",
                hint="the last axis of the left operand must equal the second-to-last of the right one",
            ) from None
        return self._make(Op.MATMUL, (a, b), (), shape, label)

    def transpose(self, x: Node, axes: Sequence[int] | None = None, label: str = "") -> Node:
        nd = len(x.shape)
        axes = tuple(reversed(range(nd))) if axes is None else tuple(a % nd if nd else a for a in axes)
        if sorted(axes) != list(range(nd)):
            raise ShapeError(f"axes {axes} are not a permutation of the {nd} axes in {label or x.label}")
        if axes == tuple(range(nd)):
            return x
        return self._make(Op.TRANSPOSE, (x,), axes, tuple(x.shape[a] for a in axes), label or f"({x.label}).T")

    def getitem(self, x: Node, index: tuple, label: str = "") -> Node:
        label = label or f"{x.label}[...]"
        try:
            shape = _dummy(x.shape)[index].shape
        except IndexError as exc:
            raise ShapeError(f"index out of range in {label}: {exc} (shape {_fmt_shape(x.shape)})") from None
        if 0 in shape:
            raise ShapeError(f"{label} selects no entries (shape {_fmt_shape(shape)})",
                             hint="check slice bounds")
        return self._make(Op.GETITEM, (x,), encode_index(index), shape, label)

    def scatter(self, g: Node, index_code: tuple, shape: tuple[int, ...], label: str = "") -> Node:
        return self._make(Op.SCATTER, (g,), (index_code, shape), shape, label or f"scatter({g.label})")

    def reshape(self, x: Node, shape: Sequence[int], label: str = "") -> Node:
        label = label or f"reshape({x.label})"
        try:
            new = np.empty(x.shape, dtype=np.int8).reshape(tuple(shape)).shape
        except ValueError:
            raise ShapeError(f"cannot reshape {_fmt_shape(x.shape)} into {tuple(shape)} in {label}",
                             hint=f"the new shape must have {x.size} entries") from None
        if tuple(new) == x.shape:
            return x
        return self._make(Op.RESHAPE, (x,), tuple(new), tuple(new), label)

    def broadcast(self, x: Node, shape: tuple[int, ...], label: str = "") -> Node:
        shape = tuple(shape)
        if x.shape == shape:
            return x
        np.broadcast_shapes(x.shape, shape)
        return self._make(Op.BROADCAST, (x,), shape, shape, label or f"broadcast({x.label})")

    # -- reductions ------------------------------------------------------------------
    def reduce(self, op: Op, x: Node, axis=None, keepdims: bool = False, label: str = "") -> Node:
        label = label or f"{op.value}({x.label})"
        axes = _norm_axes(axis, len(x.shape), label)
        if axes == ():
            return x
        shape = _reduced_shape(x.shape, axes, keepdims)
        return self._make(op, (x,), (axes, bool(keepdims)), shape, label)

    def sum(self, x: Node, axis=None, keepdims: bool = False, label: str = "") -> Node:
        return self.reduce(Op.SUM, x, axis, keepdims, label)

    def mean(self, x: Node, axis=None, keepdims: bool = False, label: str = "") -> Node:
        axes = _norm_axes(axis, len(x.shape), label or x.label)
        count = x.size if axes is None else int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        s = self.sum(x, axis, keepdims, label)
        return self.mul(s, self.const(Fraction(1, count)), label)

    def max(self, x: Node, axis=None, keepdims: bool = False, label: str = "") -> Node:
        return self.reduce(Op.MAX, x, axis, keepdims, label)

    def min(self, x: Node, axis=None, keepdims: bool = False, label: str = "") -> Node:
        return self.neg(self.max(self.neg(x), axis, keepdims, label), label)

    def logsumexp(self, x: Node, axis=None, keepdims: bool = False, label: str = "") -> Node:
        return self.reduce(Op.LOGSUMEXP, x, axis, keepdims, label)


def _const_text(params: tuple) -> str:
    if params[0] == "rational":
        num, den = params[1], params[2]
        if max(num.bit_length(), den.bit_length()) > 200:
            # never str() huge integers (CPython refuses > 4300 digits); a label needs no more
            return f"{float(Fraction(num, den)):.17g}" if abs(Fraction(num, den)) < 1e308 else "<huge constant>"
        return str(num) if den == 1 else f"{num}/{den}"
    return params[0]


def _rational(node: Node) -> Fraction | None:
    if node.op is Op.CONST and node.params[0] == "rational":
        return Fraction(node.params[1], node.params[2])
    return None


def const_value(node: Node) -> Fraction | str:
    """The exact value of a CONST node (``Fraction`` or ``"pi"``/``"e"``)."""
    p = node.params
    return Fraction(p[1], p[2]) if p[0] == "rational" else p[0]


def topological(outputs: Iterable[Node]) -> list[Node]:
    """Every node reachable from ``outputs``, arguments before users."""
    seen: dict[int, Node] = {}
    stack = list(outputs)
    while stack:
        n = stack.pop()
        if n.id in seen:
            continue
        seen[n.id] = n
        stack.extend(n.args)
    return [seen[k] for k in sorted(seen)]


# -- symbolic reverse accumulation --------------------------------------------------


def _unbroadcast(b: Builder, g: Node, shape: tuple[int, ...]) -> Node:
    """Sum a cotangent of a broadcast result back to an operand's shape."""
    if g.shape == shape:
        return g
    lead = len(g.shape) - len(shape)
    if lead:
        g = b.sum(g, axis=tuple(range(lead)))
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, g.shape)) if n == 1 and m != 1)
    if axes:
        g = b.sum(g, axis=axes, keepdims=True)
    return b.reshape(g, shape) if g.shape != shape else g


def _swap_last(b: Builder, x: Node) -> Node:
    nd = len(x.shape)
    axes = list(range(nd))
    axes[-1], axes[-2] = axes[-2], axes[-1]
    return b.transpose(x, axes)


def _expand_reduced(b: Builder, g: Node, x: Node, axes, keepdims: bool) -> Node:
    """Broadcast a cotangent of a reduction back to the shape of its input."""
    keep_shape = _reduced_shape(x.shape, axes, True)
    return b.broadcast(b.reshape(g, keep_shape), x.shape)


def _vjp(b: Builder, n: Node, g: Node) -> list[Node | None]:
    """Cotangents of the arguments of ``n`` given the cotangent ``g`` of ``n``."""
    op = n.op
    a = n.args
    if op is Op.NEG:
        return [b.neg(g)]
    if op is Op.ADD:
        return [_unbroadcast(b, g, a[0].shape), _unbroadcast(b, g, a[1].shape)]
    if op is Op.SUB:
        return [_unbroadcast(b, g, a[0].shape), _unbroadcast(b, b.neg(g), a[1].shape)]
    if op is Op.MUL:
        return [_unbroadcast(b, b.mul(g, a[1]), a[0].shape) if a[0].variables else None,
                _unbroadcast(b, b.mul(g, a[0]), a[1].shape) if a[1].variables else None]
    if op is Op.DIV:
        ga = _unbroadcast(b, b.div(g, a[1]), a[0].shape) if a[0].variables else None
        gb = (_unbroadcast(b, b.neg(b.div(b.mul(g, n), a[1])), a[1].shape) if a[1].variables else None)
        return [ga, gb]
    if op is Op.POW:
        base, ex = a
        ga = gb = None
        if base.variables:
            if ex.op is Op.CONST and const_value(ex) != "pi" and const_value(ex) != "e":
                e = const_value(ex)
                if e == 0:
                    ga = None
                else:
                    d = b.mul(ex, base) if e == 2 else b.mul(ex, b.pow(base, b.const(e - 1)))
                    ga = _unbroadcast(b, b.mul(g, d), base.shape)
            else:
                d = b.mul(ex, b.pow(base, b.sub(ex, b.const(1))))
                ga = _unbroadcast(b, b.mul(g, d), base.shape)
        if ex.variables:
            gb = _unbroadcast(b, b.mul(g, b.mul(n, b.unary("log", base, f"log({base.label})"))), ex.shape)
        return [ga, gb]
    if op is Op.MAXIMUM:
        return [_unbroadcast(b, b.mul(g, b.binary(Op.TIE_WEIGHT, a[0], a[1])), a[0].shape) if a[0].variables else None,
                _unbroadcast(b, b.mul(g, b.binary(Op.TIE_WEIGHT, a[1], a[0])), a[1].shape) if a[1].variables else None]
    if op is Op.UNARY:
        return [b.mul(g, _derivative(b, n))]
    if op is Op.MATMUL:
        return _vjp_matmul(b, n, g)
    if op is Op.TRANSPOSE:
        inv = tuple(np.argsort(n.params))
        return [b.transpose(g, inv)]
    if op is Op.GETITEM:
        return [b.scatter(g, n.params, a[0].shape)]
    if op is Op.SCATTER:
        return [b.getitem(g, decode_index(n.params[0]))]
    if op is Op.RESHAPE:
        return [b.reshape(g, a[0].shape)]
    if op is Op.BROADCAST:
        return [_unbroadcast(b, g, a[0].shape)]
    if op in (Op.SUM, Op.PROD, Op.MAX, Op.LOGSUMEXP):
        axes, keepdims = n.params
        x = a[0]
        gx = _expand_reduced(b, g, x, axes, keepdims)
        if op is Op.SUM:
            return [gx]
        if op is Op.PROD:
            # d prod / d x_i = prod / x_i: undefined (a DomainError) where an entry is 0.
            return [b.div(b.mul(gx, _expand_reduced(b, n, x, axes, keepdims)), x)]
        if op is Op.MAX:
            return [b.mul(gx, b._make(Op.ARGMAX_WEIGHT, (x,), (axes,), x.shape, f"argmax({x.label})"))]
        soft = b.unary("exp", b.sub(x, _expand_reduced(b, n, x, axes, keepdims)), f"softmax({x.label})")
        return [b.mul(gx, soft)]
    if op in (Op.TIE_WEIGHT, Op.ARGMAX_WEIGHT):
        return [None] * len(a)  # piecewise constant: zero almost everywhere
    raise NotImplementedError(f"no derivative rule for {op}")  # pragma: no cover - every Op is covered


def _derivative(b: Builder, n: Node) -> Node:
    """d fn(x)/dx as a node; the rule is checked against sympy.diff in the tests."""
    name = n.params[0]
    x = n.args[0]
    one = b.const(1)
    rules: dict[str, Callable[[], Node]] = {
        "exp": lambda: n,
        "log": lambda: b.div(one, x),
        "log1p": lambda: b.div(one, b.add(one, x)),
        "expm1": lambda: b.add(n, one),
        "sqrt": lambda: b.div(b.const(Fraction(1, 2)), n),
        "square": lambda: b.mul(b.const(2), x),
        "sin": lambda: b.unary("cos", x),
        "cos": lambda: b.neg(b.unary("sin", x)),
        "tan": lambda: b.add(one, b.mul(n, n)),
        "sinh": lambda: b.unary("cosh", x),
        "cosh": lambda: b.unary("sinh", x),
        "tanh": lambda: b.unary("dtanh", x),
        "arcsin": lambda: b.div(one, b.unary("sqrt", b.sub(one, b.mul(x, x)))),
        "arccos": lambda: b.neg(b.div(one, b.unary("sqrt", b.sub(one, b.mul(x, x))))),
        "arctan": lambda: b.div(one, b.add(one, b.mul(x, x))),
        "erf": lambda: b.mul(b.div(b.const(2), b.unary("sqrt", b.const("pi"))),
                             b.unary("exp", b.neg(b.mul(x, x)))),
        "sigmoid": lambda: b.unary("dsigmoid", x),
        "softplus": lambda: b.unary("sigmoid", x),
        "relu": lambda: b.unary("step", x),
        "abs": lambda: b.unary("sign", x),
    }
    if name not in rules:
        raise NotImplementedError(f"{name} is only differentiated to first order here")
    return rules[name]()


def _vjp_matmul(b: Builder, n: Node, g: Node) -> list[Node | None]:
    a, c = n.args
    a2 = b.reshape(a, (1,) + a.shape) if len(a.shape) == 1 else a
    c2 = b.reshape(c, c.shape + (1,)) if len(c.shape) == 1 else c
    out2 = _matmul_shape(a2.shape, c2.shape)
    g2 = b.reshape(g, out2)
    ga = gc = None
    if a.variables:
        ga = b.reshape(_unbroadcast(b, b.matmul(g2, _swap_last(b, c2)), a2.shape), a.shape)
    if c.variables:
        gc = b.reshape(_unbroadcast(b, b.matmul(_swap_last(b, a2), g2), c2.shape), c.shape)
    return [ga, gc]


def gradient_graph(b: Builder, loss: Node, variables: Mapping[str, Node]) -> dict[str, Node]:
    """Symbolic reverse accumulation: the gradient of a scalar ``loss`` as nodes.

    Parameters
    ----------
    b : Builder
        The builder that made ``loss`` (nodes are shared with the loss graph).
    loss : Node
        A node of shape ``()``.
    variables : mapping of str to Node
        The LEAF nodes to differentiate with respect to, by name.

    Returns
    -------
    dict of str to Node
        One node per variable, of that variable's shape.  A variable the loss does
        not depend on gets a broadcast exact zero.
    """
    if loss.shape != ():
        raise ShapeError(f"the loss must be a scalar, but {loss.label!r} has shape {_fmt_shape(loss.shape)}",
                         hint="reduce it with sum(...) or mean(...)")
    cot: dict[int, Node] = {loss.id: b.const(1)}
    order = [n for n in topological([loss]) if n.variables]
    for n in reversed(order):
        g = cot.pop(n.id, None)
        if g is None or n.op is Op.LEAF:
            if n.op is Op.LEAF and g is not None:
                cot[n.id] = g
            continue
        for arg, ga in zip(n.args, _vjp(b, n, g)):
            if ga is None or not arg.variables:
                continue
            prev = cot.get(arg.id)
            cot[arg.id] = ga if prev is None else b.add(prev, ga)
    out = {}
    for name, leaf in variables.items():
        g = cot.get(leaf.id)
        out[name] = b.zeros(leaf.shape) if g is None else g
    return out


# -- evaluation ---------------------------------------------------------------------


def _align(x: np.ndarray, ndim: int) -> np.ndarray:
    """Insert axes after the batch axis so ``x`` has ``ndim`` non-batch axes."""
    missing = ndim - (x.ndim - 1)
    if missing <= 0:
        return x
    return x.reshape((x.shape[0],) + (1,) * missing + x.shape[1:])


def _batched_axes(axes: tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
    return tuple(range(1, ndim + 1)) if axes is None else tuple(a + 1 for a in axes)


def evaluate(outputs: Sequence[Node], leaves: Mapping[str, np.ndarray], backend) -> list[np.ndarray]:
    """Evaluate nodes with a backend.

    Parameters
    ----------
    outputs : sequence of Node
    leaves : mapping of str to ndarray
        Value of every LEAF reached, with a leading batch axis: shape ``(B, *leaf.shape)``
        or ``(1, *leaf.shape)``.
    backend : object
        Supplies the arithmetic: :class:`verigrad.engine.backends.FloatBackend`,
        :class:`verigrad.engine.backends.MPBackend` or :class:`verigrad.engine.backends.SympyBackend`.

    Returns
    -------
    list of ndarray
        ``(B, *node.shape)`` (or batch 1) per output.
    """
    values = evaluate_all(outputs, leaves, backend)
    return [values[o.id] for o in outputs]


def evaluate_all(outputs: Sequence[Node], leaves: Mapping[str, np.ndarray], backend) -> dict[int, np.ndarray]:
    """Like :func:`evaluate`, but the value of every node reached, by node id."""
    values: dict[int, np.ndarray] = {}
    for n in topological(outputs):
        values[n.id] = eval_node(n, [values[a.id] for a in n.args], leaves, backend)
    return values


class Workspace:
    """Dead intermediate arrays of float evaluations, kept for reuse by later ones.

    Batched float evaluation allocates one array per graph node and batch. Arrays of a
    few megabytes are served by fresh ``mmap`` pages, so every allocation pays a page
    fault per 4 KiB: for cheap losses that costs more than the arithmetic (a
    1000-dimensional Rosenbrock sweep ran 3-9x slower than with recycled buffers). A
    workspace hands dead buffers of the right shape and dtype back to the ufuncs of
    :func:`evaluate_float` (``out=``), within one evaluation and across the batches of a
    sweep that share it. The results are bit-identical: the same ufunc loops run.

    Parameters
    ----------
    max_bytes : int
        At most this many bytes of dead buffers are kept; beyond it those of the shapes
        used least recently are released.
    """

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._free: OrderedDict[tuple, list[np.ndarray]] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._plans: dict[tuple, tuple] = {}

    def plan(self, outputs: Sequence[Node]) -> list[tuple[Node, tuple[int, ...]]]:
        """Evaluation order, each node with the ids of the values that die once it is computed
        (arguments it is the last user of; never an output), cached."""
        key = tuple(outputs)  # nodes hash by identity, and the key keeps them alive
        plan = self._plans.get(key)
        if plan is None:
            order = topological(outputs)
            last: dict[int, int] = {}  # value id -> position of its last user
            for pos, n in enumerate(order):
                for a in n.args:
                    last[a.id] = pos
            keep = {o.id for o in outputs}
            plan = [(n, tuple(sorted({a.id for a in n.args if last[a.id] == pos and a.id not in keep})))
                    for pos, n in enumerate(order)]
            if len(self._plans) >= 256:  # a bound, for callers that evaluate ever new node lists
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An array of ``shape`` and ``dtype`` with arbitrary contents (a dead buffer or a new one)."""
        free = self._free.get((shape, dtype))
        if free:
            self._free.move_to_end((shape, dtype))
            arr = free.pop()
            self._bytes -= arr.nbytes
            return arr
        return np.empty(shape, dtype=dtype)

    def give(self, arr: np.ndarray) -> None:
        """Return a buffer that nothing references any more.

        Beyond ``max_bytes`` the buffers of the shapes used least recently are released (a
        sweep in another dtype or of another model must not find the room taken)."""
        if arr.nbytes > self.max_bytes:
            return
        key = (arr.shape, arr.dtype)
        self._free.setdefault(key, []).append(arr)
        self._free.move_to_end(key)
        self._bytes += arr.nbytes
        while self._bytes > self.max_bytes:
            _, old = self._free.popitem(last=False)
            self._bytes -= sum(a.nbytes for a in old)


_SHARED = Workspace()


def shared_workspace() -> Workspace:
    """The process-wide workspace that float evaluations use by default.

    One for all models, so that the memory it keeps is bounded (64 MiB of dead buffers and
    256 evaluation plans) however many models a process compiles; taking and giving back a
    buffer are single list operations, safe between threads under the GIL.
    """
    return _SHARED


_UFUNC_BINARY = {Op.ADD: np.add, Op.SUB: np.subtract, Op.MUL: np.multiply, Op.DIV: np.divide, Op.POW: np.power}


def _pooled(n: Node, args: list[np.ndarray], dtype: np.dtype, ws: Workspace) -> np.ndarray | None:
    """The node computed by a ufunc into a workspace buffer, or None where that does not apply.

    Only operations that the float backend itself performs with exactly this ufunc are
    taken here (so the result is bit-identical), and only when every operand already has
    ``dtype`` (``out=`` would otherwise cast silently).
    """
    op = n.op
    if op in _UFUNC_BINARY:
        nd = len(n.shape)
        x, y = _align(args[0], nd), _align(args[1], nd)
        if x.dtype != dtype or y.dtype != dtype:
            return None
        shape = x.shape if x.shape == y.shape else np.broadcast_shapes(x.shape, y.shape)
        return _UFUNC_BINARY[op](x, y, out=ws.take(shape, dtype))
    if op is Op.NEG or (op is Op.UNARY and isinstance(n.fn.np_f, np.ufunc)
                        and (dtype.kind != "c" or n.fn.analytic)):
        x = args[0]
        if x.dtype != dtype:
            return None
        uf = np.negative if op is Op.NEG else n.fn.np_f
        return uf(x, out=ws.take(x.shape, dtype))
    return None


def evaluate_float(outputs: Sequence[Node], leaves: Mapping[str, np.ndarray], backend,
                   workspace: Workspace | None = None) -> list[np.ndarray]:
    """:func:`evaluate` for :class:`verigrad.engine.backends.FloatBackend`, recycling dead buffers.

    Same values, bit for bit, as :func:`evaluate`. Elementwise ufunc operations write into
    buffers of ``workspace`` that no live value references, and every intermediate is
    returned to it after its last use. Aliasing is tracked conservatively: a value that
    does not own its memory (a view, a broadcast, a leaf) is assumed to reference every
    buffer its arguments reference, so a buffer is only reused once no live value can
    see it. The outputs are never handed back.

    Parameters
    ----------
    outputs : sequence of Node
    leaves : mapping of str to ndarray
        As for :func:`evaluate`; never written to or recycled.
    backend : FloatBackend
    workspace : Workspace, optional
        Shared by consecutive calls (the batches of one sweep); a fresh one otherwise.

    Returns
    -------
    list of ndarray
        ``(B, *node.shape)`` per output, of the backend's dtype.
    """
    ws = Workspace() if workspace is None else workspace
    dtype = backend.dtype
    values: dict[int, np.ndarray] = {}
    refs: dict[int, tuple[int, ...]] = {}  # node id -> ids of tracked buffers its value may reference
    live: dict[int, list] = {}  # buffer id -> [array, number of live values referencing it]
    for n, dying in ws.plan(outputs):
        args = [values[a.id] for a in n.args]
        value = _pooled(n, args, dtype, ws)
        if value is None:
            value = eval_node(n, args, leaves, backend)
            owns = (n.op not in (Op.LEAF, Op.CONST) and value.flags.owndata
                    and all(value is not a for a in args))
        else:
            owns = True
        if owns:
            mine = refs[n.id] = (id(value),)
            live[id(value)] = [value, 0]
        else:
            mine = refs[n.id] = tuple({b for a in n.args for b in refs[a.id]})
        for b in mine:
            live[b][1] += 1
        values[n.id] = value
        for d in dying:
            del values[d]
            for b in refs.pop(d):
                entry = live[b]
                entry[1] -= 1
                if entry[1] == 0:
                    del live[b]
                    ws.give(entry[0])
    return [values[o.id] for o in outputs]


def eval_node(n: Node, args: list[np.ndarray], leaves, bk) -> np.ndarray:
    """One node's value from its arguments' (batched) values."""
    op = n.op
    nd = len(n.shape)
    if op is Op.LEAF:
        return leaves[n.params[0]]
    if op is Op.CONST:
        return bk.const(n.params)
    if op in ELEMENTWISE_BINARY:
        x, y = _align(args[0], nd), _align(args[1], nd)
        if op is Op.ADD:
            return x + y
        if op is Op.SUB:
            return x - y
        if op is Op.MUL:
            return x * y
        if op is Op.DIV:
            return bk.div(x, y, n)
        if op is Op.POW:
            return bk.pow(x, y, n)
        if op is Op.MAXIMUM:
            return bk.maximum(x, y, n)
        return bk.tie_weight(x, y, n)
    if op is Op.NEG:
        return -args[0]
    if op is Op.UNARY:
        return bk.unary(n.fn, args[0], n)
    if op is Op.MATMUL:
        x, y = args
        xs, ys = n.args[0].shape, n.args[1].shape
        if len(xs) == 1:
            x = x[:, None, :]
        if len(ys) == 1:
            y = y[..., None]
        k = max(x.ndim, y.ndim) - 1
        out = bk.matmul(_align(x, k), _align(y, k))
        if len(xs) == 1:
            out = out[..., 0, :] if len(ys) > 1 else out[..., 0, :]
        if len(ys) == 1:
            out = out[..., 0]
        return out
    if op is Op.TRANSPOSE:
        return np.transpose(args[0], (0,) + tuple(a + 1 for a in n.params))
    if op is Op.GETITEM:
        return args[0][(slice(None),) + decode_index(n.params)]
    if op is Op.SCATTER:
        g = args[0]
        index_code, shape = n.params
        out = bk.zeros((g.shape[0],) + shape, like=g)
        out[(slice(None),) + decode_index(index_code)] = g
        return out
    if op is Op.RESHAPE:
        x = args[0]
        return x.reshape((x.shape[0],) + n.shape)
    if op is Op.BROADCAST:
        x = _align(args[0], nd)
        return np.broadcast_to(x, (x.shape[0],) + n.shape)
    if op in (Op.SUM, Op.PROD, Op.MAX, Op.LOGSUMEXP):
        axes, keepdims = n.params
        x = args[0]
        bax = _batched_axes(axes, x.ndim - 1)
        if op is Op.SUM:
            return bk.sum(x, bax, keepdims)
        if op is Op.PROD:
            return bk.prod(x, bax, keepdims)
        if op is Op.MAX:
            return bk.max(x, bax, keepdims, n)
        return bk.logsumexp(x, bax, keepdims, n)
    if op is Op.ARGMAX_WEIGHT:
        (axes,) = n.params
        x = args[0]
        return bk.argmax_weight(x, _batched_axes(axes, x.ndim - 1), n)
    raise NotImplementedError(op)  # pragma: no cover
