"""Array constructs of the expression language: their signatures, arguments and lowerings.

numpy's (PyTorch's for convolution and pooling) names, signatures and broadcasting:

* ``einsum(subscripts, *operands)``: :func:`verigrad.expr.contractions.einsum`;
* ``conv1d(x, w, stride=1, padding=0, dilation=1)``, ``conv2d(..., groups=1)``: an im2col
  gather and one ``@``; ``max_pool2d``/``avg_pool2d(x, kernel_size, stride=None)``: a window
  gather and ``max`` / mean;
* ``norm(x, ord=None, axis=None, keepdims=False)``: ``sqrt(sum(x*x))`` (2-norm), ``sum(abs)``,
  ``max(abs)``, column/row sums for matrices;
* ``var(x, axis=None, ddof=0, keepdims=False)``, ``std``: ``sum((x - mean)**2) / (n - ddof)``;
* ``concatenate(arrays, axis=0)``, ``stack``: one basic-slice SCATTER per operand, added;
* ``flip(x, axis=None)``: a ``::-1`` slice; ``roll(x, shift, axis=None)`` and
  ``pad(x, pad_width, mode='constant', constant_values=0)``: one gather;
  ``cumsum(x, axis=None)``: a gather of the prefixes, summed.

None adds a graph operation (see :mod:`verigrad.expr.contractions`): the exact gradient,
every backend, the kink and cone analyses follow from the operations they are built of.
Non-differentiable points come from those operations: ``norm`` and ``std`` at 0 are kinks
(:mod:`verigrad.kinks` recognises them by the marker in their ``sqrt``'s label), ``ord=1``/``inf`` norms are
``abs``/``max`` kinks, ``max_pool2d`` ties are ``max`` ties.

:data:`ARRAY_CALLS` maps each name to its :class:`ArrayCall`; the parser hands the call's
syntax tree to :func:`array_call`, which reads the literal options (naming the argument
in every message) and builds the nodes.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from verigrad.errors import ShapeError
from verigrad.expr import contractions as C
from verigrad.expr.graph import Builder, Node, Op, _fmt_shape, _norm_axes, const_value, encode_index

__all__ = ["ARRAY_CALLS", "ArrayCall", "array_call"]


@dataclass(frozen=True)
class ArrayCall:
    """One construct: its parameters (a leading ``*`` marks the variadic one), defaults,
    the kind of literal each option takes, and its lowering ``(builder, args, label) -> Node``."""

    params: tuple[str, ...]
    defaults: dict
    kinds: dict
    build: Callable[[Builder, dict, str], Node]


# -- lowerings -----------------------------------------------------------------------------


def _axis_list(axis, ndim: int, fn: str, label: str) -> tuple[int, ...]:
    axes = _norm_axes(axis, ndim, label)
    return tuple(range(ndim)) if axes is None else axes


def _var(b: Builder, x: Node, axis, ddof: int, keepdims: bool, label: str, fn: str) -> Node:
    axes = _axis_list(axis, len(x.shape), fn, label)
    n = math.prod(x.shape[a] for a in axes)
    if ddof < 0 or ddof >= n:
        raise ShapeError(f"{fn}(): 'ddof' must lie in 0..{n - 1} (the reduced axes hold {n} entries), got {ddof}",
                         hint="ddof=0 is the population variance, ddof=1 the sample variance")
    d = b.sub(x, b.mean(x, axes, True, f"mean in {label}"), label)
    ss = b.sum(b.mul(d, d, label), axes, keepdims, label)
    return b.mul(ss, b.const(Fraction(1, n - ddof)), label)


def _norm(b: Builder, a: dict, label: str) -> Node:
    x, ord_, axis, keep = a["x"], a["ord"], a["axis"], a["keepdims"]
    nd = len(x.shape)
    if axis is None:
        axes = None if ord_ is None else tuple(range(nd))
        if ord_ is not None and nd not in (1, 2):
            raise ShapeError(f"norm(): ord={ord_!r} needs a 1-D or 2-D 'x' when axis is None, got shape "
                             f"{_fmt_shape(x.shape)}", hint="give axis=..., or leave ord out (the 2-norm of all entries)")
    else:
        axes = _axis_list(axis, nd, "norm", label)
        if len(axes) > 2:
            raise ShapeError(f"norm(): 'axis' names {len(axes)} axes; a norm takes 1 (vector) or 2 (matrix)")
    matrix = axes is not None and len(axes) == 2
    # the sqrt carries the kink in its label: DomainError and kink-site messages say why
    two = lambda: b.unary("sqrt", b.sum(b.mul(x, x, label), axes, keep, label),  # noqa: E731
                          f"{label} (the 2-norm has a kink where all its entries are 0)")
    if ord_ is None or (ord_ == "fro" and matrix) or (ord_ == 2 and not matrix):
        return two()
    ax = b.unary("abs", x, label)
    if not matrix:
        if ord_ == "inf":
            return b.max(ax, axes, keep, label)
        if ord_ == "-inf":
            return b.min(ax, axes, keep, label)
        if ord_ == 1:
            return b.sum(ax, axes, keep, label)
        if isinstance(ord_, int) and ord_ > 1:
            s = b.sum(b.pow(ax, b.const(ord_), label), axes, keep, label)
            return b.pow(s, b.const(Fraction(1, ord_)), label)
        raise ShapeError(f"norm(): ord={ord_!r} is not supported for a vector norm",
                         hint="vector norms: ord=None, 1, 2, p > 2, inf, -inf")
    # numpy's (row axis, column axis) is the order given, not sorted
    r, c = (axes if axis is None else tuple(ax % nd for ax in axis))
    if ord_ in (1, -1):  # max / min column sum
        s = b.sum(ax, r, True, label)
        red = c
    elif ord_ in ("inf", "-inf"):  # max / min row sum
        s = b.sum(ax, c, True, label)
        red = r
    else:
        raise ShapeError(f"norm(): ord={ord_!r} is not supported for a matrix norm",
                         hint="matrix norms: ord=None or 'fro', 1, -1, inf, -inf (the spectral 2-norm is not)")
    axes2 = (r, c)
    m = b.max(s, red, True, label) if ord_ in (1, "inf") else b.min(s, red, True, label)
    shape = tuple(1 if i in axes2 else n for i, n in enumerate(x.shape)) if keep else \
        tuple(n for i, n in enumerate(x.shape) if i not in axes2)
    return b.reshape(m, shape, label)


def _concatenate(b: Builder, xs: list[Node], axis: int, label: str, fn: str = "concatenate") -> Node:
    if not xs:
        raise ShapeError(f"{fn}(): 'arrays' is empty", hint=f"{fn}((a, b), axis=0)")
    nd = len(xs[0].shape)
    if nd == 0:
        raise ShapeError(f"{fn}(): zero-dimensional arrays cannot be concatenated", hint="use stack")
    for k, x in enumerate(xs):
        if len(x.shape) != nd:
            raise ShapeError(f"{fn}(): array {k + 1} has {len(x.shape)} dimensions but array 1 has {nd}")
    (ax,) = _axis_list(axis, nd, fn, label)
    for k, x in enumerate(xs):
        if any(x.shape[i] != xs[0].shape[i] for i in range(nd) if i != ax):
            raise ShapeError(f"{fn}(): array {k + 1} has shape {_fmt_shape(x.shape)} but array 1 has "
                             f"{_fmt_shape(xs[0].shape)}; only axis {ax} may differ")
    total = sum(x.shape[ax] for x in xs)
    shape = xs[0].shape[:ax] + (total,) + xs[0].shape[ax + 1:]
    out = None
    start = 0
    for x in xs:
        index = (slice(None),) * ax + (slice(start, start + x.shape[ax]),)
        start += x.shape[ax]
        part = b.scatter(x, encode_index(index), shape, label)
        out = part if out is None else b.add(out, part, label)
    return out


def _stack(b: Builder, a: dict, label: str) -> Node:
    xs = a["arrays"]
    if not xs:
        raise ShapeError("stack(): 'arrays' is empty", hint="stack((a, b), axis=0)")
    for k, x in enumerate(xs):
        if x.shape != xs[0].shape:
            raise ShapeError(f"stack(): array {k + 1} has shape {_fmt_shape(x.shape)} but array 1 has "
                             f"{_fmt_shape(xs[0].shape)}", hint="stacked arrays have equal shapes")
    nd = len(xs[0].shape) + 1
    (ax,) = _axis_list(a["axis"], nd, "stack", label)
    shape = xs[0].shape[:ax] + (1,) + xs[0].shape[ax:]
    return _concatenate(b, [b.reshape(x, shape, label) for x in xs], ax, label, "stack")


def _flip(b: Builder, a: dict, label: str) -> Node:
    x = a["x"]
    axes = _axis_list(a["axis"], len(x.shape), "flip", label)
    index = tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(len(x.shape)))
    return b.getitem(x, index, label) if axes else x


def _ids(x: Node) -> np.ndarray:
    return np.arange(x.size, dtype=np.int64).reshape(x.shape)


def _roll(b: Builder, a: dict, label: str) -> Node:
    x, shift, axis = a["x"], a["shift"], a["axis"]
    if axis is None:
        if not isinstance(shift, int):
            raise ShapeError(f"roll(): 'shift' must be one integer when axis is None, got {shift!r}")
        table = np.roll(_ids(x).reshape(-1), shift).reshape(x.shape)
    else:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        shifts = (shift,) * len(axes) if isinstance(shift, int) else tuple(shift)
        if len(shifts) != len(axes):
            raise ShapeError(f"roll(): 'shift' {shift!r} and 'axis' {axis!r} differ in length")
        for ax in axes:
            _axis_list(ax, len(x.shape), "roll", label)
        table = np.roll(_ids(x), shifts, axes)
    return C.gather(b, x, table, label)


def _pad(b: Builder, a: dict, label: str) -> Node:
    x, width, mode, value = a["x"], a["pad_width"], a["mode"], a["constant_values"]
    if mode != "constant":
        raise ShapeError(f"pad(): mode={mode!r} is not supported", hint="only mode='constant' is")
    nd = len(x.shape)
    try:
        widths = np.broadcast_to(np.asarray(width, dtype=np.int64).reshape(-1, 2) if np.ndim(width) == 2
                                 else np.asarray(width, dtype=np.int64), (nd, 2))
    except ValueError:
        raise ShapeError(f"pad(): 'pad_width' {width!r} does not fit an array of {nd} dimensions",
                         hint="give n, (before, after) or one (before, after) per axis") from None
    if (widths < 0).any():
        raise ShapeError(f"pad(): 'pad_width' must be non-negative, got {width!r}")
    C.check_table([n + int(lo) + int(hi) for n, (lo, hi) in zip(x.shape, widths.tolist())], "pad")
    table = np.pad(_ids(x), [tuple(r) for r in widths.tolist()], mode="constant", constant_values=-1)
    out = C.gather(b, x, table, label)
    if value == 0:
        return out
    ones = C.gather(b, b.broadcast(b.const(1), x.shape), table, label)
    return b.add(out, b.mul(b.const(value), b.sub(b.const(1), ones, label), label), label)


def _cumsum(b: Builder, a: dict, label: str) -> Node:
    x, axis = a["x"], a["axis"]
    if axis is None:
        x = b.reshape(x, (x.size,), label)
        axis = 0
    if not x.shape:
        raise ShapeError("cumsum(): a scalar has no axis to accumulate along")
    (ax,) = _axis_list(axis, len(x.shape), "cumsum", label)
    n = x.shape[ax]
    C.check_table(x.shape + (n,), "cumsum")  # the n² prefix table, before it is allocated
    along = np.moveaxis(_ids(x), ax, -1)  # (..., n)
    tri = np.arange(n)[None, :] <= np.arange(n)[:, None]  # [i, j]: j <= i
    table = np.where(tri, along[..., None, :], -1)  # (..., n_i, n_j)
    table = np.moveaxis(table, -2, ax)  # the prefix end i back at the axis, j last
    return b.sum(C.gather(b, x, table, label), axis=-1, label=label)


def _conv(nd: int) -> Callable:
    fn = f"conv{nd}d"

    def build(b: Builder, a: dict, label: str) -> Node:
        return C.conv(b, a["x"], a["w"], nd, a["stride"], a["padding"], a["dilation"], a.get("groups", 1),
                      label, fn)

    return build


def _pool(kind: str) -> Callable:
    fn = f"{kind}_pool2d"
    return lambda b, a, label: C.pool(b, a["x"], a["kernel_size"], a["stride"], kind, label, fn)


_STAT = (("x", "axis", "ddof", "keepdims"), {"axis": None, "ddof": 0, "keepdims": False},
         {"axis": "axis", "ddof": "int", "keepdims": "bool"})

ARRAY_CALLS: dict[str, ArrayCall] = {
    "einsum": ArrayCall(("subscripts", "*operands"), {}, {"subscripts": "str"},
                        lambda b, a, label: C.einsum(b, a["subscripts"], a["operands"], label)),
    "conv1d": ArrayCall(("x", "w", "stride", "padding", "dilation"), {"stride": 1, "padding": 0, "dilation": 1},
                        {"stride": "ints", "padding": "ints", "dilation": "ints"}, _conv(1)),
    "conv2d": ArrayCall(("x", "w", "stride", "padding", "dilation", "groups"),
                        {"stride": 1, "padding": 0, "dilation": 1, "groups": 1},
                        {"stride": "ints", "padding": "ints", "dilation": "ints", "groups": "int"}, _conv(2)),
    "max_pool2d": ArrayCall(("x", "kernel_size", "stride"), {"stride": None},
                            {"kernel_size": "ints", "stride": "ints"}, _pool("max")),
    "avg_pool2d": ArrayCall(("x", "kernel_size", "stride"), {"stride": None},
                            {"kernel_size": "ints", "stride": "ints"}, _pool("avg")),
    "norm": ArrayCall(("x", "ord", "axis", "keepdims"), {"ord": None, "axis": None, "keepdims": False},
                      {"ord": "ord", "axis": "axis", "keepdims": "bool"}, _norm),
    "var": ArrayCall(*_STAT, lambda b, a, label: _var(b, a["x"], a["axis"], a["ddof"], a["keepdims"], label, "var")),
    "std": ArrayCall(*_STAT, lambda b, a, label: b.unary(
        "sqrt", _var(b, a["x"], a["axis"], a["ddof"], a["keepdims"], label, "std"),
        f"{label} (std has no derivative where the variance is 0)")),
    "concatenate": ArrayCall(("arrays", "axis"), {"axis": 0}, {"arrays": "arrays", "axis": "int"},
                             lambda b, a, label: _concatenate(b, a["arrays"], a["axis"], label)),
    "stack": ArrayCall(("arrays", "axis"), {"axis": 0}, {"arrays": "arrays", "axis": "int"}, _stack),
    "flip": ArrayCall(("x", "axis"), {"axis": None}, {"axis": "axis"}, _flip),
    "roll": ArrayCall(("x", "shift", "axis"), {"axis": None}, {"shift": "ints", "axis": "axis"}, _roll),
    "pad": ArrayCall(("x", "pad_width", "mode", "constant_values"), {"mode": "constant", "constant_values": 0},
                     {"pad_width": "widths", "mode": "str", "constant_values": "number"}, _pad),
    "cumsum": ArrayCall(("x", "axis"), {"axis": None}, {"axis": "int_or_none"}, _cumsum),
}


# -- reading the call ------------------------------------------------------------------------


def _int(p, node: ast.AST, fn: str, param: str) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        raise p.error(f"{fn}(): '{param}' must be an integer, got {node.value}", node)
    return p.int_literal(node, f"{fn}() '{param}'")


def _option(p, node: ast.AST, kind: str, fn: str, param: str):
    is_none = isinstance(node, ast.Constant) and node.value is None
    is_seq = isinstance(node, (ast.Tuple, ast.List))
    if kind == "array":
        return p.visit(node)
    if kind == "arrays":
        if not is_seq:
            raise p.error(f"{fn}(): '{param}' must be a tuple or list of arrays, e.g. {fn}((a, b)), "
                          f"got {p.segment(node)!r}", node)
        return [p.visit(e) for e in node.elts]
    if kind == "bool":
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return node.value
        raise p.error(f"{fn}(): '{param}' must be True or False, got {p.segment(node)!r}", node)
    if kind == "str":
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        raise p.error(f"{fn}(): '{param}' must be a string literal, got {p.segment(node)!r}", node,
                      hint="e.g. einsum('ij,jk->ik', A, B)" if fn == "einsum" else "")
    if kind == "int":
        return _int(p, node, fn, param)
    if kind == "int_or_none":
        return None if is_none else _int(p, node, fn, param)
    if kind in ("ints", "axis"):
        if is_none and (kind == "axis" or (param == "stride" and fn.endswith("pool2d"))):
            return None
        if is_seq:
            return tuple(_int(p, e, fn, param) for e in node.elts)
        return _int(p, node, fn, param)
    if kind == "widths":
        if is_seq:
            return tuple(_option(p, e, "ints", fn, param) for e in node.elts)
        return _int(p, node, fn, param)
    if kind == "ord":
        if is_none:
            return None
        if isinstance(node, ast.Constant) and node.value == "fro" and isinstance(node.value, str):
            return "fro"
        neg = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
        inner = node.operand if neg else node
        if isinstance(inner, ast.Name) and inner.id == "inf":
            return "-inf" if neg else "inf"
        if isinstance(inner, ast.Attribute) and inner.attr == "inf":
            raise p.error("norm(): write ord=inf without a module prefix", node)
        if isinstance(inner, ast.Constant) and type(inner.value) is int:
            return -inner.value if neg else inner.value
        raise p.error(f"norm(): 'ord' must be None, an integer, inf, -inf or 'fro', got {p.segment(node)!r}", node)
    if kind == "number":
        value = p.visit(node)
        if value.variables or value.op is not Op.CONST or not isinstance(const_value(value), Fraction):
            raise p.error(f"{fn}(): '{param}' must be a number literal, got {p.segment(node)!r}", node)
        return const_value(value)
    raise AssertionError(kind)  # pragma: no cover - every kind of ARRAY_CALLS is read above


def _shown(spec: ArrayCall, args: dict) -> tuple:
    """The arguments as displayed: nodes, then the options that differ from their defaults as text."""
    out: list = []
    for param in spec.params:
        key = param.lstrip("*")
        value = args[key]
        if isinstance(value, Node):
            out.append(value)
        elif isinstance(value, list):
            out.extend(value)
        elif (param in spec.defaults and value == spec.defaults[param]) or param == "keepdims":
            continue  # keepdims is a shape detail, as in the display of sum and mean
        elif spec.kinds.get(param) == "str" and param == spec.params[0]:
            out.append(repr(value))
        else:
            # "axis 1", "stride 2": textbook words, not code (displays never show keyword syntax)
            out.append(f"{param} {value!r}" if param in spec.defaults else repr(value))
    return tuple(out)


def array_call(p, name: str, node: ast.Call) -> Node:
    """Read the arguments of a call of an :data:`ARRAY_CALLS` construct and build its nodes.

    Parameters
    ----------
    p : verigrad.expr.parser._Parser
        Supplies ``bind_arguments``, ``visit``, ``int_literal``, ``error``, ``segment``, ``label``, ``build``.
    name : str
    node : ast.Call

    Returns
    -------
    Node
    """
    spec = ARRAY_CALLS[name]
    variadic = spec.params[-1].startswith("*")
    fixed = spec.params[:-1] if variadic else spec.params
    shown = ", ".join(spec.params)
    given, rest = p.bind_arguments(name, node, spec.params, variadic=variadic)
    args: dict[str, object] = {}
    for param in fixed:
        if param in given:
            args[param] = _option(p, given[param], spec.kinds.get(param, "array"), name, param)
        elif param in spec.defaults:
            args[param] = spec.defaults[param]
        else:
            raise p.error(f"{name}() is missing its argument '{param}'", node, hint=f"{name}({shown})")
    if variadic:
        args[spec.params[-1][1:]] = [p.visit(e) for e in rest]
    label = p.label(node)
    start = p.b.node_count
    token = C.TABLE_LIMIT.set(p.limits.max_elements)
    try:
        out = p.build(node, lambda: spec.build(p.b, args, label))
    finally:
        C.TABLE_LIMIT.reset(token)
    if out.id >= start:
        p.b.constructs[out.id] = (name, _shown(spec, args))
    # the intermediates (an im2col table of a large convolution) obey the size limit too
    stack, seen = [out], set()
    while stack:
        n = stack.pop()
        if n.id >= start and n.id not in seen:
            seen.add(n.id)
            p.check_size(n.shape, node)
            stack.extend(n.args)
    return out
