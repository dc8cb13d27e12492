"""Contractions of the expression language lowered onto existing graph operations.

``einsum``, ``conv1d``/``conv2d`` and ``max_pool2d``/``avg_pool2d`` add no graph
operation: each becomes an integer-array *gather* (one ``GETITEM`` node whose index is
a constant table; its reverse is a scatter-add, :func:`verigrad.expr.reverse.gradient_graph`),
``RESHAPE``/``TRANSPOSE``/``BROADCAST`` and one ``MATMUL`` (contractions) or a ``MAX``/``SUM``
reduction (pooling).  So every arithmetic that evaluates a graph (exact mpmath, Arb balls,
the fast certified engine with its exact matmul, floats, the complex step, sympy) and every
cone and line analysis covers them with no new rule, and a convolution is one product:

* ``conv2d(x, w)``: ``cols = x[idx]`` of shape ``(N, G, C/G·kh·kw, Ho·Wo)`` (im2col; entries
  outside the input read an exact zero), then ``w.reshape(G, O/G, C/G·kh·kw) @ cols`` and a
  reshape to ``(N, O, Ho, Wo)``: cross-correlation, PyTorch's NCHW / OIHW layout.
* ``max_pool2d(x, k, s)``: ``x[idx]`` of shape ``(N, C, Ho, Wo, kh·kw)`` then ``max`` over the
  last axis (its ties are ``max``'s kink sites); ``avg_pool2d`` sums and multiplies by ``1/(kh·kw)``.
* ``einsum``: repeated indices of one operand are a gather (the diagonal), indices no one
  else needs are summed, and operands are contracted pairwise, left to right, by ``@``
  (shared indices that remain are matmul batch axes) or by a broadcast ``*`` when nothing
  is contracted.

Every builder here raises :class:`~verigrad.errors.ShapeError` naming the argument at fault;
the parser adds the field and column.
"""

from __future__ import annotations

import math
import string
from contextvars import ContextVar
from typing import Sequence

import numpy as np

from verigrad.errors import ExpressionError, LimitError, ShapeError
from verigrad.expr.graph import Builder, Node, _fmt_shape, encode_index

__all__ = ["gather", "einsum", "conv", "pool", "TABLE_LIMIT", "check_table"]

#: ``[limits] max_intermediate_elements`` of the expression being parsed (set by
#: :func:`verigrad.expr.arrays.array_call`): index tables are checked against it *before* numpy
#: allocates them, so ``pad(x, 10**6)`` is a LimitError, not gigabytes of int64 or a numpy message.
TABLE_LIMIT: ContextVar[int | None] = ContextVar("verigrad_table_limit", default=None)


def check_table(shape: Sequence[int], fn: str) -> None:
    """Raise :class:`LimitError` if an array of ``shape`` built by ``fn`` exceeds the size limit."""
    limit = TABLE_LIMIT.get()
    size = math.prod(int(n) for n in shape)
    if limit is not None and size > limit:
        raise LimitError(f"{fn}() would build an array of shape {[int(n) for n in shape]} = {size} entries, "
                         f"over the limit of {limit}",
                         hint="raise [limits] max_intermediate_elements, or check the sizes given to " f"{fn}()")


def gather(b: Builder, x: Node, table: np.ndarray, label: str) -> Node:
    """``x.reshape(-1)[table]`` as one GETITEM node; entries ``-1`` of ``table`` read an exact zero.

    Parameters
    ----------
    b : Builder
    x : Node
        Any shape.
    table : ndarray of int
        Flat positions in ``x`` (C order), or -1 for zero; the result has its shape.
    label : str

    Returns
    -------
    Node
        Shape ``table.shape``.
    """
    table = np.asarray(table, dtype=np.int64)
    flat = b.reshape(x, (x.size,), label)
    if (table < 0).any():
        # one appended exact zero (an injective basic-slice scatter) serves every padded entry
        flat = b.scatter(flat, encode_index((slice(0, x.size),)), (x.size + 1,), label)
        table = np.where(table < 0, x.size, table)
    return b.getitem(flat, (table,), label)


# -- einsum ------------------------------------------------------------------------------

_LETTERS = set(string.ascii_letters)


def _parse_subscripts(subscripts: str, shapes: Sequence[tuple[int, ...]]):
    """Tokens of every operand and of the output ('...' expanded into tokens '.0', '.1', ...)."""
    text = subscripts.replace(" ", "")
    if "->" in text:
        lhs, _, rhs = text.partition("->")
        if "->" in rhs:
            raise ExpressionError(f"einsum(): subscripts {subscripts!r} have more than one '->'")
    else:
        lhs, rhs = text, None
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ShapeError(f"einsum(): subscripts {subscripts!r} name {len(terms)} operand(s) but "
                         f"{len(shapes)} were given",
                         hint="give one comma-separated term per operand, e.g. einsum('ij,jk->ik', A, B)")

    def tokens(term: str, where: str) -> tuple[list[str], bool]:
        if term.count("...") > 1:
            raise ExpressionError(f"einsum(): {where} {term!r} has more than one '...'")
        body = term.replace("...", "")
        bad = [c for c in body if c not in _LETTERS]
        if bad:
            raise ExpressionError(f"einsum(): {where} {term!r} contains {bad[0]!r}",
                                  hint="subscripts are letters a-z, A-Z, ',' '->' and '...'")
        if "..." not in term:
            return list(term), False
        head, tail = term.split("...")
        return [*head, "...", *tail], True

    ops: list[list[str]] = []
    ell = 0
    for k, (term, shape) in enumerate(zip(terms, shapes)):
        toks, has = tokens(term, f"operand {k + 1}'s subscripts")
        named = len(toks) - has
        if (not has and named != len(shape)) or (has and named > len(shape)):
            raise ShapeError(f"einsum(): operand {k + 1} has {len(shape)} dimension(s) (shape "
                             f"{_fmt_shape(shape)}) but its subscripts {term!r} name {named}",
                             hint="write one letter per axis, or '...' for the leading ones")
        if has:
            n_ell = len(shape) - named
            ell = max(ell, n_ell)
            i = toks.index("...")
            # ellipsis axes align from the right, like numpy broadcasting
            toks[i:i + 1] = [f".{j}" for j in range(n_ell - 1, -1, -1)]
        ops.append(toks)
    ell_toks = [f".{j}" for j in range(ell - 1, -1, -1)]
    if rhs is None:
        counts: dict[str, int] = {}
        for toks in ops:
            for t in toks:
                if not t.startswith("."):
                    counts[t] = counts.get(t, 0) + 1
        # numpy's implicit output: the indices that appear once, in character-code order
        out = ell_toks + sorted(t for t, c in counts.items() if c == 1)
    else:
        out_toks, has = tokens(rhs, "the output subscripts")
        if has:
            i = out_toks.index("...")
            out_toks[i:i + 1] = ell_toks
        seen = set()
        for t in out_toks:
            if t in seen:
                raise ExpressionError(f"einsum(): output subscript {t!r} is repeated in {subscripts!r}",
                                      hint="each output index appears once")
            seen.add(t)
            if not any(t in toks for toks in ops):
                raise ExpressionError(f"einsum(): output subscript {t!r} of {subscripts!r} appears in no operand")
        out = out_toks
    return ops, out


def einsum(b: Builder, subscripts: str, operands: Sequence[Node], label: str) -> Node:
    """numpy's ``einsum(subscripts, *operands)`` (explicit ``->`` or implicit output, ``...``).

    Parameters
    ----------
    b : Builder
    subscripts : str
    operands : sequence of Node
    label : str

    Returns
    -------
    Node
        The contraction; values equal to ``numpy.einsum`` in exact arithmetic.

    Raises
    ------
    ShapeError, ExpressionError
        When the subscripts do not match the operands (count, ranks, sizes of one index).

    Examples
    --------
    >>> b = Builder()
    >>> q, k = b.leaf("q", (2, 4, 5, 8), variable=True), b.leaf("k", (2, 4, 6, 8), variable=True)
    >>> s = einsum(b, "bhqd,bhkd->bhqk", [q, k], "scores")
    >>> s.shape, s.op.value          # one batched matmul over b and h
    ((2, 4, 5, 6), 'matmul')
    """
    if not operands:
        raise ShapeError("einsum(): no operands were given", hint="einsum('ij,jk->ik', A, B)")
    ops, out = _parse_subscripts(subscripts, [o.shape for o in operands])
    size: dict[str, int] = {}
    first: dict[str, int] = {}
    for k, (toks, node) in enumerate(zip(ops, operands)):
        for t, n in zip(toks, node.shape):
            m = size.get(t, 1)
            if n != m and n != 1 and m != 1:
                what = "an axis of '...'" if t.startswith(".") else f"index {t!r}"
                raise ShapeError(f"einsum(): {what} has size {n} in operand {k + 1} but {m} in operand "
                                 f"{first[t] + 1} ({subscripts!r})",
                                 hint="an index names the same axis length in every operand (or 1, broadcast)")
            if n != 1 or t not in size:
                size[t] = max(n, m)
                first.setdefault(t, k)
    terms = [_diagonal(b, node, toks, label) for node, toks in zip(operands, ops)]
    acc, acc_toks = terms[0]
    for k in range(1, len(terms) + 1):
        later = set(out).union(*(t for _, t in terms[k + 1:])) if k < len(terms) else set(out)
        if k == len(terms):
            acc, acc_toks = _sum_unneeded(b, acc, acc_toks, set(out), label)
            break
        node, toks = terms[k]
        acc, acc_toks = _sum_unneeded(b, acc, acc_toks, later | set(toks), label)
        node, toks = _sum_unneeded(b, node, toks, later | set(acc_toks), label)
        acc, acc_toks = _pair(b, acc, acc_toks, node, toks, later, size, label)
    perm = [acc_toks.index(t) for t in out]
    acc = b.transpose(acc, perm, label)
    full = tuple(size[t] for t in out)
    return b.broadcast(acc, full, label) if acc.shape != full else acc


def _diagonal(b: Builder, x: Node, toks: list[str], label: str) -> tuple[Node, list[str]]:
    """Repeated indices of one operand (``'ii'``): the diagonal, by one gather."""
    uniq = list(dict.fromkeys(toks))
    if len(uniq) == len(toks):
        return x, toks
    sizes = []
    for t in uniq:
        ns = {n for tt, n in zip(toks, x.shape) if tt == t}
        if len(ns) > 1:
            raise ShapeError(f"einsum(): repeated index {t!r} names axes of different sizes {sorted(ns)} "
                             f"in {label}", hint="a repeated index takes a diagonal of equal-length axes")
        sizes.append(ns.pop())
    grid = np.indices(sizes, dtype=np.int64)
    ids = np.arange(x.size, dtype=np.int64).reshape(x.shape)
    table = ids[tuple(grid[uniq.index(t)] for t in toks)]
    return gather(b, x, table, label), uniq


def _sum_unneeded(b: Builder, x: Node, toks: list[str], needed: set, label: str) -> tuple[Node, list[str]]:
    axes = tuple(i for i, t in enumerate(toks) if t not in needed)
    if not axes:
        return x, toks
    return b.sum(x, axis=axes, label=label), [t for t in toks if t in needed]


def _pair(b: Builder, a: Node, ta: list[str], c: Node, tc: list[str], later: set, size: dict,
          label: str) -> tuple[Node, list[str]]:
    batch = [t for t in ta if t in tc and t in later]
    contr = [t for t in ta if t in tc and t not in later]
    aonly = [t for t in ta if t not in tc]
    conly = [t for t in tc if t not in ta]

    def arrange(x: Node, toks: list[str], order: list[str]) -> Node:
        return b.transpose(x, [toks.index(t) for t in order], label)

    def dims(x: Node, toks: list[str], order: list[str]) -> tuple[int, ...]:
        return tuple(x.shape[toks.index(t)] for t in order)

    if not contr:
        # nothing summed: a broadcast product, no matmul
        x = arrange(a, ta, batch + aonly)
        y = arrange(c, tc, batch + conly)
        x = b.reshape(x, x.shape + (1,) * len(conly), label)
        y = b.reshape(y, dims(c, tc, batch) + (1,) * len(aonly) + dims(c, tc, conly), label)
        return b.mul(x, y, label), batch + aonly + conly
    x = arrange(a, ta, batch + aonly + contr)
    y = arrange(c, tc, batch + contr + conly)
    # contracted axes must match exactly (an axis of length 1 broadcasts first)
    xk = dims(a, ta, contr)
    yk = dims(c, tc, contr)
    full = tuple(size[t] for t in contr)
    if xk != full:
        x = b.broadcast(x, x.shape[:len(batch) + len(aonly)] + full, label)
    if yk != full:
        y = b.broadcast(y, y.shape[:len(batch)] + full + y.shape[len(batch) + len(contr):], label)
    xb, yb = dims(a, ta, batch), dims(c, tc, batch)
    na, nc, nk = math.prod(dims(a, ta, aonly)), math.prod(dims(c, tc, conly)), math.prod(full)
    x = b.reshape(x, xb + (na, nk), label)
    y = b.reshape(y, yb + (nk, nc), label)
    z = b.matmul(x, y, label)
    ob = tuple(np.broadcast_shapes(xb, yb)) if batch else ()
    z = b.reshape(z, ob + dims(a, ta, aonly) + dims(c, tc, conly), label)
    return z, batch + aonly + conly


# -- convolution and pooling ---------------------------------------------------------------


def _part(what: str, label: str) -> str:
    """The label of an intermediate: ``loss: the windows of max_pool2d(A, 2)`` (field prefix kept)."""
    field, sep, text = label.partition(": ")
    return f"{field}: {what} {text}" if sep else f"{what} {label}"


def _tuple(value, nd: int, name: str, fn: str, *, minimum: int) -> tuple[int, ...]:
    vals = (value,) * nd if isinstance(value, int) else tuple(value)
    if len(vals) != nd:
        raise ShapeError(f"{fn}(): '{name}' must be one integer or {nd} integers, got {value!r}")
    for v in vals:
        if v < minimum:
            raise ShapeError(f"{fn}(): '{name}' must be at least {minimum}, got {value!r}")
    return vals


def _windows(fn: str, spatial: tuple[int, ...], kernel: tuple[int, ...], stride, padding, dilation):
    """Output sizes and, per output position and kernel offset, the input coordinate (or -1)."""
    out = []
    for d, (n, k, s, p, dl) in enumerate(zip(spatial, kernel, stride, padding, dilation)):
        span = dl * (k - 1) + 1
        o = (n + 2 * p - span) // s + 1
        if o < 1:
            raise ShapeError(f"{fn}(): the kernel (extent {span} with dilation {dl}) is larger than the padded "
                             f"input ({n} + 2·{p}) along spatial axis {d}",
                             hint="use a smaller kernel or dilation, or more padding")
        out.append(o)
    check_table(tuple(out) + tuple(kernel), fn)
    coords = []
    for n, k, s, p, dl, o in zip(spatial, kernel, stride, padding, dilation, out):
        c = np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * dl  # (out, k)
        coords.append(np.where((c >= 0) & (c < n), c, -1))
    return tuple(out), coords


def _window_table(spatial, kernel, out, coords) -> np.ndarray:
    """Flat spatial position (or -1) of shape ``(*kernel, *out)``."""
    nd = len(spatial)
    table = np.zeros(tuple(kernel) + tuple(out), dtype=np.int64)
    valid = np.ones_like(table, dtype=bool)
    for d in range(nd):
        c = coords[d].T  # (k, out)
        shape = [1] * (2 * nd)
        shape[d], shape[nd + d] = kernel[d], out[d]
        cd = c.reshape(shape)
        valid = valid & (cd >= 0)
        table = table * spatial[d] + np.maximum(cd, 0)
    return np.where(valid, table, -1)


def conv(b: Builder, x: Node, w: Node, nd: int, stride, padding, dilation, groups: int, label: str,
         fn: str) -> Node:
    """PyTorch's ``conv1d``/``conv2d``: cross-correlation, layout ``(N, C, *S)`` by ``(O, C/groups, *K)``.

    An unbatched input ``(C, *S)`` gives an unbatched output, as in PyTorch.

    Returns
    -------
    Node
        Shape ``(N, O, *S_out)`` with ``S_out = floor((S + 2p - d(K - 1) - 1) / s) + 1``.
    """
    unbatched = len(x.shape) == nd + 1
    if len(x.shape) not in (nd + 1, nd + 2):
        raise ShapeError(f"{fn}(): 'x' must have {nd + 2} dimensions (N, C, {', '.join('HW'[-nd:] if nd < 3 else 'DHW')})"
                         f" or {nd + 1} unbatched, got shape {_fmt_shape(x.shape)}")
    if len(w.shape) != nd + 2:
        raise ShapeError(f"{fn}(): 'w' must have {nd + 2} dimensions (out_channels, in_channels/groups, "
                         f"kernel...), got shape {_fmt_shape(w.shape)}")
    if groups < 1:
        raise ShapeError(f"{fn}(): 'groups' must be a positive integer, got {groups}")
    xs = (1,) + x.shape if unbatched else x.shape
    n, c, spatial = xs[0], xs[1], xs[2:]
    o, cg, kernel = w.shape[0], w.shape[1], w.shape[2:]
    if c % groups or o % groups:
        raise ShapeError(f"{fn}(): groups={groups} must divide the input channels ({c}) and the output "
                         f"channels ({o})", hint="channels of x and of w are split into 'groups' equal parts")
    if cg * groups != c:
        raise ShapeError(f"{fn}(): 'w' expects {cg * groups} input channels (shape {_fmt_shape(w.shape)}, "
                         f"groups={groups}) but 'x' has {c} (shape {_fmt_shape(x.shape)})",
                         hint="w has shape (out_channels, in_channels / groups, *kernel)")
    stride = _tuple(stride, nd, "stride", fn, minimum=1)
    padding = _tuple(padding, nd, "padding", fn, minimum=0)
    dilation = _tuple(dilation, nd, "dilation", fn, minimum=1)
    out, coords = _windows(fn, spatial, kernel, stride, padding, dilation)
    check_table((n, c) + tuple(kernel) + tuple(out), fn)  # the im2col table, before it is allocated
    win = _window_table(spatial, kernel, out, coords)  # (*K, *out)
    nk, nl, ns = math.prod(kernel), math.prod(out), math.prod(spatial)
    win = win.reshape(nk, nl)
    base = (np.arange(n)[:, None, None, None, None] * c
            + (np.arange(groups)[None, :, None, None, None] * cg + np.arange(cg)[None, None, :, None, None])) * ns
    table = np.where(win[None, None, None] >= 0, base + win[None, None, None], -1)
    table = table.reshape(n, groups, cg * nk, nl)
    xx = b.reshape(x, xs, label) if unbatched else x
    cols = gather(b, xx, table, _part("the im2col columns of", label))
    opts = [f"{k} {v}" for k, v, d in (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1))
            if any(e != d for e in v)] + ([f"groups={groups}"] if groups != 1 else [])
    b.constructs.setdefault(cols.id, ("im2col", (xx, "×".join(map(str, kernel)), *opts)))
    wr = b.reshape(w, (groups, o // groups, cg * nk), label)
    y = b.matmul(wr, cols, label)  # (n, groups, o/groups, L)
    return b.reshape(y, ((o,) if unbatched else (n, o)) + out, label)


def pool(b: Builder, x: Node, kernel, stride, kind: str, label: str, fn: str) -> Node:
    """PyTorch's ``max_pool2d``/``avg_pool2d`` (no padding, floor mode) over the last two axes.

    Returns
    -------
    Node
        Shape ``(*lead, Ho, Wo)``: the max (ties are ``max``'s kink sites) or the mean of each window.
    """
    if len(x.shape) not in (3, 4):
        raise ShapeError(f"{fn}(): 'x' must have 4 dimensions (N, C, H, W) or 3 (C, H, W), got shape "
                         f"{_fmt_shape(x.shape)}")
    kernel = _tuple(kernel, 2, "kernel_size", fn, minimum=1)
    stride = kernel if stride is None else _tuple(stride, 2, "stride", fn, minimum=1)
    spatial = x.shape[-2:]
    out, coords = _windows(fn, spatial, kernel, stride, (0, 0), (1, 1))
    check_table(x.shape[:-2] + tuple(kernel) + tuple(out), fn)
    win = _window_table(spatial, kernel, out, coords)  # (kh, kw, Ho, Wo), no -1 without padding
    nk, ns = math.prod(kernel), math.prod(spatial)
    win = np.moveaxis(win.reshape(nk, *out), 0, -1)  # (Ho, Wo, k)
    lead = x.shape[:-2]
    base = np.arange(math.prod(lead), dtype=np.int64).reshape(lead + (1, 1, 1)) * ns
    cols = gather(b, x, base + win, _part("the windows of", label))
    b.constructs.setdefault(cols.id, ("windows", (x, "×".join(map(str, kernel)),
                                                  *([f"stride {stride}"] if stride != kernel else []))))
    if kind == "max":
        return b.max(cols, axis=-1, label=label)
    return b.mean(cols, axis=-1, label=label)
