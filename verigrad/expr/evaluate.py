"""Evaluation of expression graphs with an arithmetic backend.

Every value carries a leading *batch* axis of length B (or 1, broadcast), so a
whole sweep of perturbed points is one vectorised evaluation.  The backend
(:mod:`verigrad.engine.backends`) supplies the arithmetic: exact (mpmath), float
(numpy float32/float64/complex) or sympy.

:func:`evaluate` and :func:`evaluate_all` are the plain evaluators;
:func:`evaluate_float` gives the same values, bit for bit, for the float backend
while recycling dead intermediate buffers through a :class:`Workspace`
(:func:`shared_workspace` is the process-wide one).  :func:`eval_node` is one
node's value from its arguments'.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Sequence

import numpy as np

from verigrad.expr.graph import ELEMENTWISE_BINARY, Node, Op, decode_index, topological

__all__ = ["binary", "evaluate", "evaluate_all", "eval_node", "Workspace", "evaluate_float", "shared_workspace"]


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


def binary(bk, n: Node, x, y):
    """Elementwise binary node ``n`` (an op of ``ELEMENTWISE_BINARY``) on operands that broadcast,
    with backend ``bk`` (its ``div``, ``pow``, ``maximum`` and ``tie_weight``)."""
    op = n.op
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


def eval_node(n: Node, args: list[np.ndarray], leaves, bk) -> np.ndarray:
    """One node's value from its arguments' (batched) values."""
    op = n.op
    nd = len(n.shape)
    if op is Op.LEAF:
        return leaves[n.params[0]]
    if op is Op.CONST:
        return bk.const(n.params)
    if op in ELEMENTWISE_BINARY:
        return binary(bk, n, _align(args[0], nd), _align(args[1], nd))
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
