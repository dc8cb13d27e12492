"""Symbolic reverse accumulation: the exact gradient of a loss graph, as graph nodes.

:func:`gradient_graph` walks the loss graph backwards and builds, with the same
:class:`~verigrad.expr.graph.Builder`, one cotangent node per variable: the gradient
is itself an expression of the same language, evaluated exactly or in floats like
the loss.

Conventions at non-differentiable points (the point-value gradient; the kink
analysis reports the full set of one-sided derivatives): ``relu'(0) = 0``,
``abs'(0) = 0``, ``maximum`` and ``max`` split the cotangent equally among
ties.  Each is an element of the Clarke subdifferential.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from verigrad.errors import ShapeError
from verigrad.expr.graph import (
    Builder,
    Node,
    Op,
    _fmt_shape,
    _matmul_shape,
    _reduced_shape,
    const_value,
    decode_index,
    encode_index,
    has_array_index,
    topological,
)

__all__ = ["gradient_graph"]


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
                    # labelled for messages: "0 to a non-positive power in the derivative of loss: x ** 0.5"
                    d = b.mul(ex, base) if e == 2 else b.mul(ex, b.pow(base, b.const(e - 1),
                                                                       f"the derivative of {n.label}"))
                    ga = _unbroadcast(b, b.mul(g, d), base.shape)
            else:
                d = b.mul(ex, b.pow(base, b.sub(ex, b.const(1)), f"the derivative of {n.label}"))
                ga = _unbroadcast(b, b.mul(g, d), base.shape)
        if ex.variables:
            gb = _unbroadcast(b, b.mul(g, b.mul(n, b.unary("log", base, f"log({base.label}) (the derivative of "
                                                                      f"{n.label} by its exponent)"))), ex.shape)
        return [ga, gb]
    if op is Op.MAXIMUM:
        return [_unbroadcast(b, b.mul(g, b.binary(Op.TIE_WEIGHT, a[0], a[1])), a[0].shape) if a[0].variables else None,
                _unbroadcast(b, b.mul(g, b.binary(Op.TIE_WEIGHT, a[1], a[0])), a[1].shape) if a[1].variables else None]
    if op is Op.UNARY:
        d = _derivative(b, n)
        z = d.args[0] if d.op is Op.BROADCAST else d
        if z.op is Op.CONST and z.params == ("rational", 0, 1):
            return [None]  # step' = sign' = 0 (away from the kink): no term, an exact zero
        return [b.mul(g, d)]
    if op is Op.MATMUL:
        return _vjp_matmul(b, n, g)
    if op is Op.TRANSPOSE:
        inv = tuple(np.argsort(n.params))
        return [b.transpose(g, inv)]
    if op is Op.GETITEM:
        if has_array_index(n.params):
            return [_gather_adjoint(b, g, n)]
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


def _gather_adjoint(b: Builder, g: Node, n: Node) -> Node:
    """The reverse of an integer-array gather ``x[idx]``: the scatter-add of ``g``, as a gather plus a sum.

    Entry ``i`` of ``x`` receives the sum of the (at most ``k``) entries of ``g`` gathered from it.
    ``g`` is flattened and one exact zero appended (a basic-slice SCATTER); a constant index
    table ``(x.size, k)`` points at those entries, or at the zero where fewer than ``k`` do; the
    table is gathered and summed over its last axis.  Only GETITEM, SCATTER (injective), RESHAPE
    and SUM nodes, so every backend and every cone and line evaluator handles it unchanged.
    """
    x = n.args[0]
    src = np.arange(x.size, dtype=np.int64).reshape(x.shape)[decode_index(n.params)].reshape(-1)
    m = src.size
    counts = np.bincount(src, minlength=x.size)
    k = int(counts.max()) if m else 0
    if k == 0:
        return b.zeros(x.shape)
    order = np.argsort(src, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    table = np.full((x.size, k), m, dtype=np.int64)
    rank = np.arange(m) - starts[src[order]]
    table[src[order], rank] = order
    label = f"scatter-add({g.label})"
    flat = b.reshape(g, (m,), label)
    padded = b.scatter(flat, encode_index((slice(0, m),)), (m + 1,), label)
    if k == 1:
        out = b.reshape(b.getitem(padded, (table[:, 0],), label), x.shape, label)
    else:
        out = b.reshape(b.sum(b.getitem(padded, (table,), label), axis=1, label=label), x.shape, label)
    # displayed as one call (engine/symbolic.py), not as its gather and sum
    b.constructs.setdefault(out.id, ("scatter_add", (g, "into " + "×".join(map(str, x.shape)))))
    return out


def _derivative(b: Builder, n: Node) -> Node:
    """d fn(x)/dx as a node: the ``derivative`` rule of the function's :class:`~verigrad.expr.functions.ElemFn`."""
    rule = n.fn.derivative
    if rule is None:
        raise NotImplementedError(f"{n.fn.name} is only differentiated to first order here")
    return rule(b, n, n.args[0])


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
