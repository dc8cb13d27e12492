"""Array-level, hash-consed expression graphs: the language every loss is parsed into.

A case's loss is parsed into a graph of array operations (``W1 @ X + b1``, not
one sympy expression per scalar entry), because per-entry symbolic calculus does
not scale (a 200 x 1000 logistic regression cannot even be built as a scalar
sympy expression in reasonable time).  The exact gradient is obtained by reverse
accumulation *symbolically*: :func:`verigrad.expr.reverse.gradient_graph` builds new
graph nodes, so the gradient is itself an expression of the same language.  The same
evaluator (:mod:`verigrad.expr.evaluate`) then gives

* the certified truth (mpmath numbers in numpy object arrays),
* the *float baseline* (the exact gradient expression evaluated naively in
  float32/float64),
* the float loss at finite-difference nodes (batched), and the complex step,
* scalar sympy expressions for display and for an independent ``sympy.diff``
  cross-check.

Here: the operations (:class:`Op`), the nodes (:class:`Node`), the hash-consing
:class:`Builder` with its shape checks, the hashable encoding of numpy indices,
exact constants, and :func:`topological` order.
"""

from __future__ import annotations

import enum
import math
import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable, Sequence

import numpy as np

from verigrad.errors import ShapeError
from verigrad.expr.functions import FUNCTIONS, ElemFn

__all__ = ["Op", "Node", "Builder", "topological", "ELEMENTWISE_BINARY", "encode_index", "decode_index",
           "has_array_index", "const_value"]


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
        return math.prod(self.shape)  # (np.prod costs ~10 us a call, and evaluators ask per node)

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
        elif isinstance(item, np.ndarray):
            # an integer-array (gather) index: its int64 bytes are hashable and compact
            arr = np.ascontiguousarray(item, dtype=np.int64)
            out.append(("array", tuple(arr.shape), arr.tobytes()))
        else:
            out.append(("int", int(item)))
    return tuple(out)


def has_array_index(code: tuple) -> bool:
    """Whether an encoded index holds an integer array (a gather, whose reverse adds)."""
    return any(item[0] == "array" for item in code)


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
        elif kind == "array":
            out.append(np.frombuffer(item[2], dtype=np.int64).reshape(item[1]))
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


#: labels (for messages) are cut to this many characters
_MAX_LABEL = 400


class Builder:
    """Creates hash-consed nodes with shape checking.

    Identical sub-expressions (same operation on the same arguments) are one node,
    so the gradient graph shares work the way a hand-written backward pass does.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple, Node] = {}
        self._counter = itertools.count()
        #: node id -> (name, arguments) of an array construct lowered onto several nodes
        #: (``conv2d``, ``einsum``, ...; :mod:`verigrad.expr.arrays`), so that displays show the call
        self.constructs: dict[int, tuple[str, tuple]] = {}

    def _make(self, op: Op, args: tuple[Node, ...], params: tuple, shape: tuple[int, ...], label: str) -> Node:
        key = (op, tuple(a.id for a in args), params)
        node = self._cache.get(key)
        if node is None:
            if len(label) > _MAX_LABEL:  # derived labels nest their arguments': bounded, or a chain doubles them
                label = label[:_MAX_LABEL - 3] + "..."
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
