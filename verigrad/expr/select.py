"""Integer constants, gathers, comparisons and selections of the expression language.

numpy's (scipy.special's) names, signatures and semantics; every construct is lowered onto
existing graph operations, so the exact gradient, every backend and the kink and cone
analyses follow from the operations it is built of:

====================================================  ============================================================
``take_along_axis(arr, indices, axis)``               one integer-array GETITEM of the flattened array
``take(a, indices, axis=None)``, ``x[idx]``           the same (indices: an integer constant, or an expression of one)
``one_hot(indices, num_classes)``                     a constant 0/1 array (a SCATTER of ones)
``a < b``, ``<=``, ``>``, ``>=``, ``==``, ``!=``      0/1 masks from ``step(a - b)``: a jump site at ``a = b``
(of integer constants: ``y == 2``)                    a constant 0/1 mask, computed now (a SCATTER of ones)
``where(condition, x, y)``                            ``c x' + (1 - c) y'`` with guarded branches (below)
``clip(a, a_min, a_max)``                             ``minimum(maximum(a, a_min), a_max)``: kinks at both bounds
``sign(x)``                                           the ``sign`` function: a jump at 0
``logaddexp(x1, x2)``                                 ``x1 + softplus(x2 - x1)``: smooth, analytic
``xlogy(x, y)``                                       ``where(x == 0, 0, x log y)`` (scipy: 0 where x is 0)
====================================================  ============================================================

Integer constants (``dtype = "int64"`` in ``[symbols]``) are known when the case is compiled:
they are not graph leaves but :class:`IntConst` values in the parser's names, usable only where an
index is expected (and in indexing and ``reshape``/``.T`` of themselves, as in ``y[:, None]``). A
gather's indices are therefore part of the graph (the ``("array", ...)`` item of a GETITEM index):
never perturbed, never graded. Its reverse rule is the exact scatter-add of
:func:`verigrad.expr.reverse._gather_adjoint` (repeated indices add).

Masks are exact 0/1 values in every arithmetic (``a - b`` keeps the sign of the comparison in
IEEE arithmetic, subnormals included). ``where`` cannot be a blend of evaluated branches in the
exact arithmetics, which raise on a domain error anywhere in an array: the branches are *guarded*.
Every domain-restricted or overflowing operation inside a branch whose operand has the shape of
the result (``log``, ``sqrt``, ``gammaln``, a division, a power, the magnitude-sensitive ``exp`` ...)
gets the operand ``c u + (1 - c) s``, with ``s`` a fixed point of its domain, so the unselected
entries evaluate the function at ``s``: ``where(x > 0, log(x), 0)`` is defined at ``x < 0`` in every
backend, and its gradient there is exactly 0. The selected entries are unchanged (``1 u + 0 s = u``
exactly, also in floats). An operand smaller than the result (broadcast into it) feeds selected
and unselected entries alike and is not guarded; a product or sum of finite floats that overflows
in the unselected branch still gives ``0 * inf = nan`` in float evaluation (the exact truth is
unaffected).
"""

from __future__ import annotations

import ast
import weakref
from dataclasses import dataclass

import mpmath
import numpy as np

from verigrad.errors import ShapeError
from verigrad.expr.graph import ELEMENTWISE_BINARY, Builder, Node, Op, const_value, encode_index

__all__ = ["IntConst", "SELECT_CALLS", "select_call", "compare", "gather_subscript", "is_int_expression",
           "where", "is_mask"]


@dataclass(frozen=True, eq=False)
class IntConst:
    """An integer constant of the case: a name and its read-only int64 array (known when compiling)."""

    name: str
    value: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)


#: name -> (parameters, defaults, kinds): "array" an expression, "int" an integer literal,
#: "axis" an integer or None, "indices" an integer constant expression
SELECT_CALLS: dict[str, tuple[tuple[str, ...], dict, dict]] = {
    "take_along_axis": (("arr", "indices", "axis"), {}, {"indices": "indices", "axis": "axis"}),
    "take": (("a", "indices", "axis"), {"axis": None}, {"indices": "indices", "axis": "axis"}),
    "one_hot": (("indices", "num_classes"), {}, {"indices": "indices", "num_classes": "int"}),
    "where": (("condition", "x", "y"), {}, {}),
    "clip": (("a", "a_min", "a_max"), {}, {}),
    "sign": (("x",), {}, {}),
    "logaddexp": (("x1", "x2"), {}, {}),
    "xlogy": (("x", "y"), {}, {}),
}

_INT_HINT = ("an integer constant (dtype = \"int64\") is an index: use it in take_along_axis(arr, {n}, axis), "
             "take(a, {n}), arr[{n}] or one_hot({n}, num_classes)")


# -- integer expressions ----------------------------------------------------------------------------


def is_int_expression(p, node: ast.AST) -> bool:
    """Whether ``node`` is built from an integer constant (a name, indexed, reshaped or transposed)."""
    while True:
        if isinstance(node, ast.Name):
            return isinstance(p.names.get(node.id), IntConst)
        if isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Attribute) and node.attr == "T":
            node = node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "reshape"
              and node.args):
            node = node.args[0]
        else:
            return False


def int_array(p, node: ast.AST, fn: str, param: str) -> np.ndarray:
    """The int64 array of an index argument: an integer constant, ``y[:, None]``, ``y.T``,
    ``reshape(y, shape)``, or an integer literal (``-`` allowed)."""
    if isinstance(node, ast.Name):
        v = p.names.get(node.id)
        if isinstance(v, IntConst):
            return v.value
        if v is not None:
            raise p.error(f"{fn}(): '{param}' must be an integer constant, but '{node.id}' holds floats", node,
                          hint="declare the indices in [symbols] with dtype = \"int64\" and constant = true")
        return p.visit(node)  # raises: unknown name
    if isinstance(node, ast.Subscript) and is_int_expression(p, node.value):
        base = int_array(p, node.value, fn, param)
        sl = node.slice
        items = sl.elts if isinstance(sl, ast.Tuple) else [sl]
        index = tuple(p.index_item(i) for i in items)
        try:
            return base[index]
        except IndexError as exc:
            raise p.error(f"{fn}(): '{param}': {exc} (indices of shape {list(base.shape)})", node,
                          cls=ShapeError) from None
    if isinstance(node, ast.Attribute) and node.attr == "T" and is_int_expression(p, node.value):
        return int_array(p, node.value, fn, param).T
    if isinstance(node, ast.Call) and is_int_expression(p, node):
        base = int_array(p, node.args[0], fn, param)
        if len(node.args) != 2 or node.keywords:
            raise p.error(f"{fn}(): '{param}': write reshape(indices, shape) with a literal shape", node)
        sh = node.args[1]
        shape = p.int_tuple(sh, "shape") if isinstance(sh, (ast.Tuple, ast.List)) else (p.int_literal(sh, "'shape'"),)
        try:
            return base.reshape(shape)
        except ValueError:
            raise p.error(f"{fn}(): '{param}': cannot reshape indices of shape {list(base.shape)} into "
                          f"{list(shape)}", node, cls=ShapeError) from None
    if isinstance(node, (ast.Constant, ast.UnaryOp)):
        return np.array(p.int_literal(node, f"{fn}() '{param}'"), dtype=np.int64)
    raise p.error(f"{fn}(): '{param}' must be integer indices (an integer constant declared with "
                  f"dtype = \"int64\", or an integer literal), got {p.segment(node)!r}", node,
                  hint="indices are data known in advance; computed (float) indices have no derivative")


def _bounds(p, node: ast.AST, idx: np.ndarray, n: int, fn: str, param: str, axis_text: str) -> np.ndarray:
    """numpy's index rule: ``-n <= i < n``, negative counted from the end; an error names the first offender."""
    bad = (idx < -n) | (idx >= n)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" at {list(at)}" if at else ""
        raise p.error(f"{fn}(): '{param}' holds {int(idx[at])}{where}, out of bounds for {axis_text} of size {n}",
                      node, cls=ShapeError, hint=f"indices must lie in [-{n}, {n - 1}] (negative count from the end)")
    return np.where(idx < 0, idx + n, idx)


def _gather(b: Builder, x: Node, ids: np.ndarray, label: str) -> Node:
    """``x`` flattened, gathered at the flat ``ids`` (the result has the shape of ``ids``)."""
    flat = b.reshape(x, (x.size,), label) if len(x.shape) != 1 else x
    return b.getitem(flat, (np.ascontiguousarray(ids, dtype=np.int64),), label)


def _axis(p, node: ast.AST, axis, ndim: int, fn: str) -> int:
    if not -ndim <= axis < ndim:
        raise p.error(f"{fn}(): axis={axis} is out of range for an array of {ndim} dimensions", node,
                      cls=ShapeError, hint=f"use an axis between {-ndim} and {ndim - 1}" if ndim else
                      "a scalar has no axes")
    return axis % ndim


def _take_along_axis(p, node, a: dict, label: str) -> Node:
    x, idx, axis = a["arr"], a["indices"], a["axis"]
    fn = "take_along_axis"
    if axis is None:
        if idx.ndim != 1:
            raise p.error(f"{fn}(): with axis=None 'indices' must be 1-D, got shape {list(idx.shape)}", node,
                          cls=ShapeError)
        return _gather(p.b, x, _bounds(p, node, idx, x.size, fn, "indices", "the flattened array"), label)
    ax = _axis(p, node, axis, len(x.shape), fn)
    if idx.ndim != len(x.shape):
        raise p.error(f"{fn}(): 'indices' has {idx.ndim} dimensions but 'arr' has {len(x.shape)}", node,
                      cls=ShapeError, hint="numpy needs the same number of dimensions: e.g. y[:, None] for "
                                           "one label per row of a 2-D array")
    idx = _bounds(p, node, idx, x.shape[ax], fn, "indices", f"axis {axis}")
    ids = np.arange(x.size, dtype=np.int64).reshape(x.shape)
    try:
        out = np.take_along_axis(ids, idx, ax)
    except ValueError as exc:
        raise p.error(f"{fn}(): 'indices' of shape {list(idx.shape)} do not broadcast against 'arr' of shape "
                      f"{list(x.shape)} off axis {axis}: {exc}", node, cls=ShapeError) from None
    return _gather(p.b, x, out, label)


def _take(p, node, a: dict, label: str) -> Node:
    x, idx, axis = a["a"], a["indices"], a["axis"]
    if axis is None:
        return _gather(p.b, x, _bounds(p, node, idx, x.size, "take", "indices", "the flattened array"), label)
    ax = _axis(p, node, axis, len(x.shape), "take")
    idx = _bounds(p, node, idx, x.shape[ax], "take", "indices", f"axis {axis}")
    ids = np.take(np.arange(x.size, dtype=np.int64).reshape(x.shape), idx, axis=ax)
    return _gather(p.b, x, ids, label)


def _one_hot(p, node, a: dict, label: str) -> Node:
    idx, n = a["indices"], a["num_classes"]
    if n < 1:
        raise p.error(f"one_hot(): num_classes={n} must be a positive integer", node)
    p.check_size(tuple(idx.shape) + (n,), node)  # before m·n overflows int64 or is allocated
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise p.error(f"one_hot(): 'indices' holds {int(idx[at])}{f' at {list(at)}' if at else ''}, "
                      f"outside [0, {n - 1}] for num_classes={n}", node, cls=ShapeError,
                      hint="class labels are 0 .. num_classes - 1 (negative labels are refused, as in torch)")
    b = p.b
    m = int(idx.size)
    pos = (np.arange(m, dtype=np.int64) * n + idx.reshape(-1)).astype(np.int64)
    ones = b.broadcast(b.const(1), (m,), label)
    flat = b.scatter(ones, encode_index((pos,)), (m * n,), label)
    return b.reshape(flat, tuple(idx.shape) + (n,), label)


# -- masks: comparisons ---------------------------------------------------------------------------

_MASKS: "weakref.WeakKeyDictionary[Builder, set[int]]" = weakref.WeakKeyDictionary()


def _mark(b: Builder, n: Node) -> Node:
    _MASKS.setdefault(b, set()).add(n.id)
    return n


def is_mask(b: Builder, n: Node) -> bool:
    """Whether ``n`` is a 0/1 mask: a comparison, a product of masks, ``1 - mask``, a broadcast of one."""
    if n.id in _MASKS.get(b, ()):
        return True
    if n.op is Op.UNARY and n.params[0] == "step":
        return True
    if n.op is Op.CONST and n.params[0] == "rational" and const_value(n) in (0, 1):
        return True
    if n.op in (Op.BROADCAST, Op.RESHAPE, Op.TRANSPOSE, Op.GETITEM):
        return is_mask(b, n.args[0])
    if n.op is Op.MUL:
        return is_mask(b, n.args[0]) and is_mask(b, n.args[1])
    if n.op is Op.SUB and n.args[0].op is Op.CONST and n.args[0].params == ("rational", 1, 1):
        return is_mask(b, n.args[1])
    return False


_CMP = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!="}


def compare(p, node: ast.Compare) -> Node:
    """``a < b`` and friends: 0/1 masks (numpy booleans used as numbers)."""
    if len(node.ops) != 1:
        raise p.error("a chained comparison (a < b < c) is not allowed", node,
                      hint="numpy refuses it for arrays too; multiply masks instead: (a < b) * (b < c)")
    op = type(node.ops[0])
    if op not in _CMP:
        sym = {ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}.get(op, op.__name__)
        raise p.error(f"the comparison '{sym}' is not allowed", node, hint="allowed: < <= > >= == !=")
    label = p.label(node)
    sides = (node.left, node.comparators[0])
    if any(is_int_expression(p, n) for n in sides):
        # a comparison of integer data (labels == 2): a constant mask, known now
        a, c = (int_array(p, n, "comparison", p.segment(n)) for n in sides)
        try:
            mask = _NUMPY_CMP[_CMP[op]](a, c)
        except ValueError as exc:
            raise p.error(f"cannot compare {p.segment(node)!r}: {exc}", node, cls=ShapeError) from None
        return p.build(node, lambda: _mark(p.b, _constant_mask(p.b, np.asarray(mask), label)))
    left, right = p.visit(node.left), p.visit(node.comparators[0])
    return p.build(node, lambda: _compare(p.b, _CMP[op], left, right, label))


_NUMPY_CMP = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal, "==": np.equal,
              "!=": np.not_equal}


def _constant_mask(b: Builder, mask: np.ndarray, label: str) -> Node:
    """A constant 0/1 array: ones scattered at the true entries (exact in every arithmetic)."""
    shape = tuple(mask.shape)
    pos = np.flatnonzero(mask.ravel()).astype(np.int64)
    if pos.size == 0:
        return b.zeros(shape)
    flat = b.scatter(b.broadcast(b.const(1), (pos.size,), label), encode_index((pos,)), (mask.size,), label)
    return b.reshape(flat, shape, label)


def _compare(b: Builder, sym: str, x: Node, y: Node, label: str) -> Node:
    step = lambda d: b.unary("step", d, label)  # noqa: E731 - step(d) = [d > 0]
    prefix = label.split(": ", 1)[0] + ": " if ": " in label else ""
    tx, ty = (n.label.split(": ", 1)[-1] for n in (x, y))
    # the differences are labelled as such: a jump site reads "the mask (x > 0.5) at x - 0.5 = 0"
    d_xy = b.sub(x, y, f"{prefix}{tx} - {_paren_text(ty)}")
    d_yx = b.sub(y, x, f"{prefix}{ty} - {_paren_text(tx)}")
    one = b.const(1)
    if sym == ">":
        out = step(d_xy)
    elif sym == "<":
        out = step(d_yx)
    elif sym == ">=":
        out = b.sub(one, step(d_yx), label)
    elif sym == "<=":
        out = b.sub(one, step(d_xy), label)
    elif sym == "!=":
        out = b.add(step(d_xy), step(d_yx), label)
    else:
        out = b.sub(one, b.add(step(d_xy), step(d_yx), label), label)
    shape = np.broadcast_shapes(x.shape, y.shape)
    if out.shape != shape:
        out = b.broadcast(out, shape, label)
    return _mark(b, out)


def _paren_text(text: str) -> str:
    return text if text.replace("_", "").replace(".", "").isalnum() else f"({text})"


# -- where: guarded branches ----------------------------------------------------------------------


def _safe_point(fn) -> int:
    """A point inside the function's domain (1, or 0 where 1 is outside, as for arcsin)."""
    if fn.domain is None:
        return 0
    with mpmath.workprec(64):
        return 1 if fn.domain(mpmath.mpf(1)) else 0


def _elementwise(n: Node, shape: tuple[int, ...]) -> bool:
    return n.shape == shape and (n.op in (Op.UNARY, Op.NEG) or n.op in ELEMENTWISE_BINARY)


def _guard(b: Builder, root: Node, c: Node, shape: tuple[int, ...]) -> Node:
    """``root`` rebuilt with every domain-restricted operand ``u`` of the result's shape replaced by
    ``c u + (1 - c) s`` (``s`` in the domain): the unselected entries (``c = 0``) cannot fail.

    Only the elementwise nodes of the result's shape are rebuilt (walked without recursion, in
    creation order, which is topological); every other node is kept as it is."""
    seen: dict[int, Node] = {}
    stack = [root]
    while stack:
        n = stack.pop()
        if n.id in seen or not _elementwise(n, shape):
            continue
        seen[n.id] = n
        stack.extend(a for a in n.args if a.shape == shape)
    memo: dict[int, Node] = {}
    for n in sorted(seen.values(), key=lambda m: m.id):
        args = [memo.get(a.id, a) for a in n.args]
        if n.op is Op.UNARY:
            fn = n.fn
            if fn.domain is not None or fn.magnitude_sensitive:
                args[0] = _blend(b, c, args[0], _safe_point(fn))
            out = b.unary(fn.name, args[0], n.label)
        elif n.op is Op.NEG:
            out = b.neg(args[0], n.label)
        else:
            if n.op is Op.DIV and n.args[1].shape == shape:
                args[1] = _blend(b, c, args[1], 1)
            if n.op is Op.POW:  # a negative or zero base, or a float overflow, where not taken: 1**1
                for k in (0, 1):
                    if n.args[k].shape == shape and n.args[k].op is not Op.CONST:
                        args[k] = _blend(b, c, args[k], 1)
            out = b.binary(n.op, args[0], args[1], n.label)
        memo[n.id] = out
    return memo.get(root.id, root)


def _blend(b: Builder, c: Node, u: Node, s: int) -> Node:
    """``c u + (1 - c) s``: ``u`` where the mask is 1, the safe point ``s`` where it is 0."""
    # the blend keeps the operand's label: a domain site reads log(x) at x = 0, as the user wrote it
    keep = b.mul(c, u, u.label)
    if s == 0:
        return keep
    return b.add(keep, b.mul(b.sub(b.const(1), c), b.const(s)), u.label)


def where(b: Builder, c: Node, x: Node, y: Node, label: str) -> Node:
    """``where(c, x, y)`` for a mask ``c``: ``c x' + (1 - c) y'`` with guarded branches ``x'``, ``y'``."""
    shape = np.broadcast_shapes(c.shape, x.shape, y.shape)
    not_c = b.sub(b.const(1), c, label)
    xg = _guard(b, x, c, shape)
    yg = _guard(b, y, not_c, shape)
    out = b.add(b.mul(c, xg, label), b.mul(not_c, yg, label), label)
    return out if out.shape == shape else b.broadcast(out, shape, label)


# -- the calls ------------------------------------------------------------------------------------


def _read(p, name: str, node: ast.Call) -> dict:
    params, defaults, kinds = SELECT_CALLS[name]
    shown = ", ".join(params)
    given, _ = p.bind_arguments(name, node, params)
    args: dict[str, object] = {}
    for param in params:
        if param not in given:
            if param in defaults:
                args[param] = defaults[param]
                continue
            raise p.error(f"{name}() is missing its argument '{param}'", node, hint=f"{name}({shown})")
        arg = given[param]
        kind = kinds.get(param, "array")
        if kind == "indices":
            args[param] = int_array(p, arg, name, param)
        elif kind == "int":
            if isinstance(arg, ast.Constant) and isinstance(arg.value, bool):
                raise p.error(f"{name}(): '{param}' must be an integer, got {arg.value}", arg)
            args[param] = p.int_literal(arg, f"{name}() '{param}'")
        elif kind == "axis":
            if isinstance(arg, ast.Constant) and arg.value is None:
                args[param] = None
            elif isinstance(arg, ast.Constant) and isinstance(arg.value, bool):
                raise p.error(f"{name}(): 'axis' must be an integer or None, got {arg.value}", arg)
            else:
                args[param] = p.int_literal(arg, f"{name}() 'axis'")
        else:
            if is_int_expression(p, arg):
                raise p.error(f"{name}(): '{param}' is an integer constant; it holds indices, not values", arg,
                              hint=_INT_HINT.format(n=p.segment(arg)))
            args[param] = p.visit(arg)
    return args


def select_call(p, name: str, node: ast.Call) -> Node:
    """Read and build a call of a :data:`SELECT_CALLS` construct (the parser's hook).

    Parameters
    ----------
    p : verigrad.expr.parser._Parser
        Supplies ``visit``, ``int_literal``, ``index_item``, ``error``, ``segment``, ``label``, ``build``.
    name : str
    node : ast.Call
    """
    a = _read(p, name, node)
    label = p.label(node)
    b = p.b
    if name == "take_along_axis":
        return p.build(node, lambda: _take_along_axis(p, node, a, label))
    if name == "take":
        return p.build(node, lambda: _take(p, node, a, label))
    if name == "one_hot":
        return p.build(node, lambda: _one_hot(p, node, a, label))
    if name == "where":
        c = a["condition"]
        if not is_mask(b, c):
            raise p.error(f"where(): 'condition' must be a comparison such as x > 0, got "
                          f"{p.segment(node.args[0] if node.args else node)!r}", node,
                          hint="write where(x != 0, a, b) for numpy's truth of a number")
        return p.build(node, lambda: where(b, c, a["x"], a["y"], label))
    if name == "clip":
        return p.build(node, lambda: _clip(b, a["a"], a["a_min"], a["a_max"], label))
    if name == "sign":
        return p.build(node, lambda: b.unary("sign", a["x"], label))
    if name == "logaddexp":
        x1, x2 = a["x1"], a["x2"]
        return p.build(node, lambda: _broadcast_to(b, b.add(x1, b.unary("softplus", b.sub(x2, x1, label), label),
                                                            label), x1, x2, label))
    if name == "xlogy":
        x, y = a["x"], a["y"]

        def make() -> Node:
            c = _compare(b, "!=", x, b.const(0), label)
            return where(b, c, b.mul(x, b.unary("log", y, label), label), b.const(0), label)

        return p.build(node, make)
    raise AssertionError(name)  # pragma: no cover - every SELECT_CALLS name is built above


def _clip(b: Builder, x: Node, lo: Node, hi: Node, label: str) -> Node:
    """``minimum(maximum(x, lo), hi)``, labelled so that the kink sites read in those words."""
    prefix = label.split(": ", 1)[0] + ": " if ": " in label else ""
    tx, tlo, thi = (n.label.split(": ", 1)[-1] for n in (x, lo, hi))
    inner = f"maximum({tx}, {tlo})"
    return b.minimum(b.maximum(x, lo, prefix + inner), hi, f"{prefix}minimum({inner}, {thi})")


def _broadcast_to(b: Builder, out: Node, x1: Node, x2: Node, label: str) -> Node:
    shape = np.broadcast_shapes(x1.shape, x2.shape)
    return out if out.shape == shape else b.broadcast(out, shape, label)


# -- x[idx] ---------------------------------------------------------------------------------------


def gather_subscript(p, node: ast.Subscript, x: Node) -> Node:
    """``x[...]`` whose index holds integer arrays: numpy's advanced indexing, as one flat gather."""
    sl = node.slice
    items = sl.elts if isinstance(sl, ast.Tuple) else [sl]
    index = []
    for i in items:
        if is_int_expression(p, i):
            index.append(int_array(p, i, "indexing", p.segment(i)))
        else:
            index.append(p.index_item(i))
    ids = np.arange(x.size, dtype=np.int64).reshape(x.shape)
    try:
        out = ids[tuple(index)]
    except IndexError as exc:
        raise p.error(f"index out of bounds in {p.segment(node)!r}: {exc} (shape {list(x.shape)})", node,
                      cls=ShapeError, hint="indices must lie in [-n, n - 1] along their axis") from None
    if out.size == 0:
        raise p.error(f"{p.segment(node)!r} selects no entries", node, cls=ShapeError)
    label = p.label(node)
    return p.build(node, lambda: _gather(p.b, x, np.asarray(out), label))
