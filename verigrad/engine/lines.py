"""The exact loss along coordinate lines, evaluated incrementally.

A full-gradient finite-difference split needs the exact loss at x + t e_i for every
coordinate i and many t: N K 2S evaluations of the loss. Perturbing one entry changes
only part of each intermediate array (one column of ``X @ W.T``, one row's logsumexp),
so instead of re-evaluating the graph this module propagates, per batch row, the
*sparse* set of entries that change, with their new values, on top of one evaluation
at the base point. Linear reductions (sums, matrix products, the sum of exponentials
inside a logsumexp) are updated by adding the change; every other operation
recomputes only the entries that depend on the perturbed one.

Values are Arb balls (:class:`LineEvaluator` with ``series=0``), or truncated Arb
power series in t (*Taylor mode*, ``series=L``): feeding x_i + t for the perturbed
entry yields φ_i(t) = f(x + t e_i) = Σ_{m<L} a_m t^m, from which the truncation and
step parts of every small step follow without cancellation
(:func:`verigrad.studies.fd_sweep_split`). Taylor mode needs an analytic path from
the variable to the loss (:func:`series_ok`).

Ball arithmetic makes the incremental updates as rigorous as a full evaluation: an
update that cancels shows up as a wide ball, which callers check.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np

from verigrad.engine import arb as ab
from verigrad.expr.evaluate import binary, eval_node, evaluate_all
from verigrad.engine.sharedseries import Scaled, SharedSeries, at_scaled, changed_at
from verigrad.expr.graph import ELEMENTWISE_BINARY, Node, Op, decode_index, topological

__all__ = ["LineEvaluator", "Unsupported", "coefficients", "object_array", "series_ok", "series_cap"]

_NON_ANALYTIC_OPS = (Op.MAXIMUM, Op.MAX, Op.TIE_WEIGHT, Op.ARGMAX_WEIGHT)
_STRUCTURAL = (Op.TRANSPOSE, Op.GETITEM, Op.RESHAPE, Op.BROADCAST, Op.SCATTER)
#: Bound on the entries of one intermediate (rows x candidates x contributors) of a batch.
_WORK_BUDGET = 4_000_000


class Unsupported(Exception):
    """The sparse propagation cannot handle this graph; evaluate the whole graph instead."""


def series_ok(model, variable: str) -> bool:
    """Whether every operation between ``variable`` and the loss is analytic (Taylor mode applies)."""
    for n in topological([model.loss]):
        if variable not in n.variables:
            continue
        if n.op in _NON_ANALYTIC_OPS or (n.op is Op.UNARY and not n.fn.analytic):
            return False
    return True


@contextlib.contextmanager
def series_cap(length: int):
    """Scoped length of Arb power series (python-flint's ``ctx.cap``)."""
    old = ab.flint.ctx.cap
    ab.flint.ctx.cap = int(length)
    try:
        yield
    finally:
        ab.flint.ctx.cap = old


def _piecewise_constant(n: Node) -> bool:
    """Whether the node's value can stay exactly the same when its argument moves (relu off,
    a step, a tie weight), so that unchanged entries are worth looking for."""
    return n.op in (Op.TIE_WEIGHT, Op.ARGMAX_WEIGHT) or (n.op is Op.UNARY and n.fn.piecewise_constant)


def _can_fail(n: Node) -> bool:
    """Whether evaluating the node can raise a domain or magnitude error (then every entry of
    its argument is needed, and checked)."""
    return n.op in (Op.DIV, Op.POW) or (n.op is Op.UNARY and n.fn.can_fail)


class _Sparse:
    """Changed entries of one node per batch row: ``idx`` (B, P) flat indices sorted per row,
    padded with the node's size; ``val`` (B, P) the new values (objects)."""

    __slots__ = ("idx", "val")

    def __init__(self, idx: np.ndarray, val: np.ndarray):
        self.idx, self.val = idx, val


def _unique_rows(c: np.ndarray, size: int) -> np.ndarray:
    """Per row: sorted distinct entries of ``c`` first, padding ``size`` after; trailing padding trimmed."""
    if c.shape[1] == 0:
        return c
    c = np.sort(c, axis=1)
    dup = np.zeros(c.shape, dtype=bool)
    dup[:, 1:] = c[:, 1:] == c[:, :-1]
    c = np.sort(np.where(dup, size, c), axis=1)
    width = int((c < size).sum(axis=1).max())
    return c[:, :width]


def _inverse(src: np.ndarray, in_size: int):
    """For a gather map out -> in (``-1``: no source), the outputs reading each input (CSR)."""
    valid = src >= 0
    order = np.argsort(np.where(valid, src, in_size), kind="stable")
    counts = np.bincount(src[valid], minlength=in_size)
    ptr = np.concatenate([[0], np.cumsum(counts)])
    return order, counts, ptr


def _image(inv, idx: np.ndarray, in_size: int, out_size: int) -> np.ndarray:
    """Outputs reading the inputs ``idx`` (B, P), padded with ``out_size``; (B, P * width)."""
    order, counts, ptr = inv
    valid = idx < in_size
    safe = np.where(valid, idx, 0)
    c = np.where(valid, counts[safe], 0)
    w = int(c.max()) if c.size else 0
    if w == 0:
        return np.empty((idx.shape[0], 0), dtype=np.int64)
    k = np.arange(w)
    pos = ptr[safe][..., None] + k
    ok = k < c[..., None]
    out = np.where(ok, order[np.minimum(pos, order.size - 1)], out_size)
    return out.reshape(idx.shape[0], -1)


def _segment_sums(keys: np.ndarray, values: np.ndarray):
    """Sums of ``values`` (object, 1-D) grouped by equal ``keys``: (distinct sorted keys, sums)."""
    order = np.argsort(keys, kind="stable")
    ks, vs = keys[order], values[order]
    starts = np.flatnonzero(np.concatenate([[True], ks[1:] != ks[:-1]]))
    return ks[starts], np.add.reduceat(vs, starts)


def _pack(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, B: int, size: int) -> _Sparse | None:
    """Entries (row, flat index, value), sorted by (row, index) and distinct, as a _Sparse."""
    if rows.size == 0:
        return None
    first = np.searchsorted(rows, rows, side="left")
    rank = np.arange(rows.size) - first
    width = int(rank.max()) + 1
    idx = np.full((B, width), size, dtype=np.int64)
    val = np.empty((B, width), dtype=object)
    idx[rows, rank] = cols
    val[rows, rank] = vals
    return _Sparse(idx, val)


def object_array(items) -> np.ndarray:
    """A 1-D object array of ``items`` (numpy would unpack power series, which have a length)."""
    items = list(items)
    out = np.empty(len(items), dtype=object)
    for i, v in enumerate(items):
        out[i] = v
    return out


def _ufunc(f):
    return np.frompyfunc(f, 1, 1)


def coefficients(s, length: int) -> list:
    """The first ``length`` Taylor coefficients of a series (or of a ball: a constant), zero-padded."""
    cs = list(s.coeffs()) if isinstance(s, ab.flint.arb_series) else [s]
    return (cs + [ab.arb(0)] * length)[:length]


def _const(s):
    # s[0] reads one coefficient (0 for an empty series); coeffs() would copy all of them
    return s[0] if isinstance(s, ab.flint.arb_series) else s


class _SeriesArithmetic:
    """Elementwise operations on 1-D object arrays of Arb series (or balls), with the
    domain decisions of :class:`verigrad.engine.arb.ArbBackend` made on the constant terms.
    The series rule of each function is its ``ElemFn.series``."""

    def __init__(self):
        self._arb = ab.ArbBackend()
        self._c = _ufunc(_const)

    def consts(self, x):
        return self._c(x).astype(object)

    def div(self, x, y, node):
        self._arb.div(self.consts(x), self.consts(y), node)  # raises on a zero divisor
        return x / y

    def pow(self, x, y, node):
        self._arb.pow(self.consts(x), self.consts(y), node)  # domain and magnitude checks
        out = np.empty(x.shape, dtype=object)
        for i, (a, e) in enumerate(zip(x, y)):
            if not isinstance(e, ab.flint.arb_series) and e.is_exact() and e.is_integer() and abs(e) <= 64:
                k = int(e.mid().man_exp()[0]) * 2 ** int(e.mid().man_exp()[1])
                out[i] = a ** k if k > 0 else (1 / a ** (-k) if k < 0 else ab.arb(1) + 0 * a)
            else:
                la = a.log() if isinstance(a, ab.flint.arb_series) else ab.flint.arb_series([a]).log()
                out[i] = (e * la).exp()
        return out

    def check_unary(self, fn, x, node) -> None:
        if not fn.analytic or fn.series is None:
            raise Unsupported(f"{fn.name} has no power series here")
        self._arb.check_unary(fn, self.consts(x), node)  # domain and magnitude, on the constant terms

    def apply_unary(self, fn, x):
        return _ufunc(fn.series)(x).astype(object)

    def maximum(self, x, y, node):
        raise Unsupported("maximum is not analytic")

    def tie_weight(self, x, y, node):
        raise Unsupported("tie weights are not analytic")


class LineEvaluator(SharedSeries):
    """Exact loss at points that differ from a base point in one entry of one variable.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        The base point (float values, used exactly).
    variable : str
        The variable whose entries are perturbed.
    prec : int
        Arb working precision in bits.
    series : int, default 0
        0: values are balls. L > 0: values are Arb power series truncated at order L
        (Taylor mode; the perturbed entry's new value is then a series such as x_i + t).

    Notes
    -----
    One evaluation of the whole graph at the base point is kept; :meth:`losses` then
    costs, per row, only the operations on entries that depend on the perturbed one.
    Operations it cannot update sparsely raise :class:`Unsupported` (the caller then
    evaluates the whole graph); domain errors and undecided balls propagate as from
    :class:`verigrad.engine.arb.ArbBackend`.
    """

    def __init__(self, model, point, variable: str, *, prec: int, series: int = 0):
        self.model, self.variable, self.prec, self.series = model, variable, int(prec), int(series)
        self.nodes = topological([model.loss])
        if series and not series_ok(model, variable):
            raise Unsupported(f"the loss is not analytic in {variable}")
        with ab.arb_precision(self.prec):
            leaves = {n: ab.from_float(np.asarray(point[n]))[None, ...] for n in model.leaves}
            values = evaluate_all([model.loss], leaves, ab.ArbBackend())
        self.flat = {k: np.asarray(v[0], dtype=object).reshape(-1) for k, v in values.items()}
        self._maps: dict = {}
        self._bk = _SeriesArithmetic() if series else ab.ArbBackend()
        self._chunk = None
        self._needed = self._needed_entries()
        # entries of elementwise operations in Taylor mode: on shared series, one series each
        self.elementwise = {"shared": 0, "own": 0}

    def with_series(self, series: int) -> "LineEvaluator":
        """This Taylor-mode evaluator with series of another length: the base evaluation and the
        index maps are shared (they do not depend on the length), not computed again."""
        if not (self.series and series > 0):
            raise ValueError("with_series changes the length of a Taylor-mode evaluator's series")
        other = copy.copy(self)
        other.series, other._chunk = int(series), None
        other.elementwise = {"shared": 0, "own": 0}
        return other

    def _needed_entries(self) -> dict[int, np.ndarray]:
        """Entries of each node that can change the loss (static, backwards from the loss).

        An entry is not needed when every use of it is multiplied by an exact constant 0
        (one-hot labels). Skipping never hides a domain error: a function that can fail
        (log, sqrt, exp's magnitude…) needs every entry of its argument, and is checked on
        all of them (:meth:`_node`) even where its own value is not needed; division and
        powers need all their entries."""
        needed = {n.id: np.zeros(n.size, dtype=bool) for n in self.nodes}
        needed[self.model.loss.id][:] = True
        for n in reversed(self.nodes):
            need = needed[n.id]
            if _can_fail(n):
                if n.op is Op.UNARY:
                    needed[n.args[0].id][:] = True
                else:
                    need[:] = True
            if not need.any() or not n.args:
                continue
            op = n.op
            if op in (Op.UNARY, Op.NEG):
                needed[n.args[0].id] |= need
            elif op in ELEMENTWISE_BINARY or op in _STRUCTURAL:
                for k, a in enumerate(n.args):
                    src = self._src(n, k)
                    use = need & (src >= 0)
                    if op is Op.MUL and not n.args[1 - k].variables:
                        use &= ~self._zero(n.args[1 - k])[self._src(n, 1 - k)]
                    needed[a.id][src[use]] = True
            elif op in (Op.SUM, Op.PROD, Op.MAX, Op.LOGSUMEXP):
                needed[n.args[0].id] |= need[self._red(n)]
            else:  # matrix products and anything else: every input entry may matter
                for a in n.args:
                    needed[a.id][:] = True
        return needed

    def _keep_needed(self, n: Node, cand: np.ndarray) -> np.ndarray:
        need = self._needed[n.id]
        if need.all():
            return cand
        drop = (cand < n.size) & ~need[np.minimum(cand, n.size - 1)]
        return _unique_rows(np.where(drop, n.size, cand), n.size) if drop.any() else cand

    # -- static index maps --------------------------------------------------------------------

    def _cached(self, key, make):
        if key not in self._maps:
            self._maps[key] = make()
        return self._maps[key]

    def _src(self, n: Node, arg: int) -> np.ndarray:
        """Gather map out -> input ``arg`` of an elementwise or structural node (``-1``: none)."""
        def make():
            a = n.args[arg]
            ar = np.arange(a.size, dtype=np.int64).reshape((1,) + a.shape)
            if n.op is Op.SCATTER:
                out = np.full((1,) + n.shape, -1, dtype=np.int64)
                out[(slice(None),) + decode_index(n.params[0])] = ar
                return out.reshape(-1)
            if n.op in _STRUCTURAL:
                return np.ascontiguousarray(eval_node(n, [ar], None, None)).reshape(-1)
            nd = len(n.shape)
            ar = ar.reshape((1,) + (1,) * (nd - len(a.shape)) + a.shape)
            return np.ascontiguousarray(np.broadcast_to(ar, (1,) + n.shape)).reshape(-1)
        return self._cached(("src", n.id, arg), make)

    def _inv(self, n: Node, arg: int):
        return self._cached(("inv", n.id, arg), lambda: _inverse(self._src(n, arg), n.args[arg].size))

    def _red(self, n: Node) -> np.ndarray:
        """Reduction map input flat -> output flat."""
        def make():
            a = n.args[0]
            axes = n.params[0]
            axes = tuple(range(len(a.shape))) if axes is None else tuple(axes)
            kshape = tuple(1 if d in axes else s for d, s in enumerate(a.shape))
            out = np.arange(int(np.prod(kshape, dtype=np.int64)), dtype=np.int64).reshape(kshape)
            return np.ascontiguousarray(np.broadcast_to(out, a.shape)).reshape(-1)
        return self._cached(("red", n.id), make)

    def _members(self, n: Node) -> np.ndarray:
        """Inputs of every output of a reduction, (out size, slice length)."""
        def make():
            red = self._red(n)
            return np.argsort(red, kind="stable").reshape(n.size, -1)
        return self._cached(("mem", n.id), make)

    # -- values ---------------------------------------------------------------------------------

    def _at(self, n: Node, J: np.ndarray, state) -> np.ndarray:
        """Values of node ``n`` at flat positions ``J`` (B, Q) (padding ``n.size`` gives filler), new where changed."""
        out = self.flat[n.id][np.minimum(J, n.size - 1)]
        sp = state.get(n.id)
        if sp is not None and J.size:
            hit, pos = changed_at(sp.idx, n.size, J)
            out[hit] = sp.val.reshape(-1)[pos[hit]]
        return out

    def _check_work(self, *dims: int) -> None:
        if int(np.prod(dims, dtype=np.int64)) > _WORK_BUDGET:
            raise Unsupported("the change spreads to too many entries for sparse propagation")

    def losses(self, index: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The loss with entry ``index[b]`` (flat) of the variable set to ``values[b]``, per row b.

        Parameters
        ----------
        index : ndarray of int, shape (B,)
        values : object ndarray, shape (B,)
            Balls (or series in Taylor mode) at the evaluator's precision.

        Returns
        -------
        object ndarray, shape (B,)
            Balls, or series of length ``series`` in Taylor mode.
        """
        index = np.asarray(index, dtype=np.int64)
        if not (isinstance(values, np.ndarray) and values.dtype == object and values.shape == index.shape):
            values = object_array(values)
        B = index.size
        out = np.empty(B, dtype=object)
        start = 0
        with ab.arb_precision(self.prec), series_cap(max(self.series, 1)):
            while start < B:
                chunk = self._chunk or min(B - start, 16)
                sl = slice(start, min(B, start + chunk))
                out[sl], work = self._run(index[sl], values[sl])
                if self._chunk is None:
                    per_row = max(1, work // max(1, sl.stop - sl.start))
                    self._chunk = int(max(1, min(4096, _WORK_BUDGET // (4 * per_row))))
                start = sl.stop
        return out

    def _run(self, index: np.ndarray, values: np.ndarray):
        B = index.size
        var = self.variable
        state: dict[int, _Sparse] = {}
        work = 0
        for n in self.nodes:
            if var not in n.variables:
                continue
            sp = self._node(n, state, index, values, B)
            if sp is not None and _piecewise_constant(n):
                sp = self._drop_unchanged(n, sp)
            if sp is not None and sp.idx.shape[1] > 0:
                state[n.id] = sp
                work += sp.idx.size
        loss = self.model.loss
        res = np.empty(B, dtype=object)
        res[:] = [self.flat[loss.id][0]] * B
        sp = state.get(loss.id)
        if sp is not None:
            hit = sp.idx[:, 0] == 0
            res[hit] = sp.val[hit, 0]
        return res, work

    def _node(self, n: Node, state, index, values, B) -> _Sparse | None:
        op = n.op
        if op is Op.LEAF:
            return _Sparse(index[:, None].copy(), values[:, None].copy())
        args_changed = [a.id in state for a in n.args]
        if not any(args_changed):
            return None
        if op in (Op.UNARY, Op.NEG):
            src = state[n.args[0].id]
            if self.series:
                sc = self._scaled_unary(n, state)
                if sc is not None:
                    return sc
            if op is Op.UNARY:
                # every changed argument entry is checked, also where the value is not needed
                self._bk.check_unary(n.fn, src.val[src.idx < n.size], n)
            idx = self._keep_needed(n, src.idx)
            if idx is not src.idx:
                if idx.shape[1] == 0:
                    return None
                src = _Sparse(idx, self._at(n.args[0], idx, state))
            val = np.empty(src.val.shape, dtype=object)
            ok = src.idx < n.size
            v = src.val[ok]
            val[ok] = -v if op is Op.NEG else self._bk.apply_unary(n.fn, v)
            self.elementwise["own"] += v.size
            return _Sparse(src.idx, val)
        if op in ELEMENTWISE_BINARY:
            return self._binary(n, state, B)
        if op in _STRUCTURAL:
            a = n.args[0]
            sp = state[a.id]
            cand = self._keep_needed(n, _unique_rows(_image(self._inv(n, 0), sp.idx, a.size, n.size), n.size))
            if cand.shape[1] == 0:
                return None
            src = self._src(n, 0)
            J = np.where(cand < n.size, src[np.minimum(cand, n.size - 1)], a.size)
            J = np.where(J < 0, a.size, J)
            if isinstance(sp, Scaled):
                key, scale = at_scaled(sp, a.size, J)
                return Scaled(cand, key, scale, sp.table)
            return _Sparse(cand, self._at(a, J, state))
        if op is Op.SUM:
            return self._sum(n, state, B, lambda v: v, lambda a: self.flat[a.id])
        if op is Op.LOGSUMEXP:
            exp = self._ufunc_exp()
            exp_base = self._cached(("exp", n.args[0].id), lambda: exp(self.flat[n.args[0].id]))
            sumexp = self._cached(("sumexp", n.id), lambda: self._base_sum(n, exp))
            if self.series:
                sc = self._scaled_logsumexp(n, state, B, exp_base, sumexp)
                if sc is not None:
                    return sc
            sp = self._sum(n, state, B, exp, lambda a: exp_base, base_out=sumexp)
            if sp is not None:
                ok = sp.idx < n.size
                sp.val[ok] = self._ufunc_log()(sp.val[ok])
            return sp
        if op in (Op.MAX, Op.PROD):
            return self._slices(n, state, B)
        if op is Op.MATMUL:
            return self._matmul(n, state, B)
        raise Unsupported(f"{op.value} is not updated sparsely")

    def _drop_unchanged(self, n: Node, sp: _Sparse) -> _Sparse | None:
        """``sp`` without the entries whose new value is provably the base value: both exact
        and equal (a ReLU that stays off). Nothing downstream of them is then recomputed, and
        a loss the change never reaches is returned as the very same ball as at the base."""
        ok = sp.idx < n.size
        base = self.flat[n.id][np.minimum(sp.idx, n.size - 1)]
        same = np.zeros(sp.idx.shape, dtype=bool)
        same[ok] = [v.is_exact() and b.is_exact() and v == b for v, b in zip(sp.val[ok], base[ok])]
        if not same.any():
            return sp
        rows, pos = np.nonzero(ok & ~same)  # row-major: still sorted by (row, index)
        return _pack(rows, sp.idx[rows, pos], sp.val[rows, pos], sp.idx.shape[0], n.size)

    def _zero(self, n: Node) -> np.ndarray:
        """Which entries of an unchanged node are exactly 0."""
        return self._cached(("zero", n.id), lambda: np.array([v.is_exact() and v == 0 for v in self.flat[n.id]],
                                                             dtype=bool))

    def _ufunc_exp(self):
        # balls: the method itself (no Python frame per entry); series: whatever type each value has
        return self._cached("uexp", lambda: _ufunc(ab.flint.arb.exp if not self.series else lambda v: v.exp()))

    def _ufunc_log(self):
        return self._cached("ulog", lambda: _ufunc(ab.flint.arb.log if not self.series else lambda v: v.log()))

    def _base_sum(self, n: Node, f) -> np.ndarray:
        a = n.args[0]
        vals = np.asarray(f(self.flat[a.id]), dtype=object)
        return np.asarray(vals[self._members(n)].sum(axis=1), dtype=object)

    def _binary(self, n: Node, state, B) -> _Sparse | None:
        parts = []
        for k, a in enumerate(n.args):
            if a.id in state:
                parts.append(_image(self._inv(n, k), state[a.id].idx, a.size, n.size))
        cand = _unique_rows(np.concatenate(parts, axis=1), n.size)
        if n.op is Op.MUL and len(parts) == 1:
            # times an exact zero that does not change: the product stays exactly 0 (one-hot labels)
            other = 1 if n.args[0].id in state else 0
            zero = self._zero(n.args[other])
            if zero.any():
                src = self._src(n, other)
                drop = (cand < n.size) & zero[src[np.minimum(cand, n.size - 1)]]
                cand = _unique_rows(np.where(drop, n.size, cand), n.size)
        cand = self._keep_needed(n, cand)
        if cand.shape[1] == 0:
            return None
        ok = cand < n.size
        safe = np.minimum(cand, n.size - 1)
        Js = [np.where(ok, self._src(n, k)[safe], a.size) for k, a in enumerate(n.args)]
        if self.series and (n.op in (Op.MUL, Op.DIV, Op.POW)
                            or any(isinstance(state.get(a.id), Scaled) for a in n.args)):
            # shared series pay from the first operation that makes a linear entry nonlinear on
            sc = self._scaled_binary(n, state, cand, ok, Js)
            if sc is not None:
                return sc
        x, y = (self._at(a, J, state)[ok] for a, J in zip(n.args, Js))
        self.elementwise["own"] += x.size
        val = np.empty(cand.shape, dtype=object)
        val[ok] = binary(self._bk, n, x, y)
        return _Sparse(cand, val)

    def _sum(self, n: Node, state, B, f, base_in, base_out=None) -> _Sparse | None:
        """Additive update of a sum over axes of f(input): out + Σ (f(new) − f(base)) over changed inputs."""
        a = n.args[0]
        sp = state[a.id]
        ok = sp.idx < a.size
        rows = np.nonzero(ok)[0]
        idx = sp.idx[ok]
        d = np.asarray(f(sp.val[ok]), dtype=object) - base_in(a)[idx]
        o = self._red(n)[idx]
        stride = n.size + 1
        keys, sums = _segment_sums(rows * stride + o, d)
        r, oo = keys // stride, keys % stride
        base = self.flat[n.id] if base_out is None else base_out
        return _pack(r, oo, base[oo] + sums, B, n.size)

    def _slices(self, n: Node, state, B) -> _Sparse | None:
        """Recompute every changed output of a max or product from its whole slice."""
        a = n.args[0]
        sp = state[a.id]
        red = self._red(n)
        cand = _unique_rows(np.where(sp.idx < a.size, red[np.minimum(sp.idx, a.size - 1)], n.size), n.size)
        cand = self._keep_needed(n, cand)
        if cand.shape[1] == 0:
            return None
        mem = self._members(n)
        L = mem.shape[1]
        self._check_work(B, cand.shape[1], L)
        ok = cand < n.size
        J = mem[np.minimum(cand, n.size - 1)].reshape(B, -1)
        vals = self._at(a, J, state).reshape(B, cand.shape[1], L)[ok]
        if n.op is Op.PROD:
            v = np.prod(vals, axis=1)
        else:
            v = self._bk.max(vals, (1,), False, n)
        val = np.empty(cand.shape, dtype=object)
        val[ok] = np.asarray(v, dtype=object)
        return _Sparse(cand, val)

    def _matmul(self, n: Node, state, B) -> _Sparse | None:
        """(A + dA)(B + dB) = AB + dA (B + dB) + A dB, for 1-D and 2-D operands."""
        A, Bm = n.args
        if len(A.shape) > 2 or len(Bm.shape) > 2:
            raise Unsupported("batched matrix products are not updated sparsely")
        m, k = (1, A.shape[0]) if len(A.shape) == 1 else A.shape
        ncol = 1 if len(Bm.shape) == 1 else Bm.shape[1]
        size = m * ncol
        spA, spB = state.get(A.id), state.get(Bm.id)
        parts = []
        if spA is not None:
            okA = spA.idx < A.size
            rA = spA.idx // k
            img = rA[..., None] * ncol + np.arange(ncol)
            parts.append(np.where(okA[..., None], img, size).reshape(B, -1))
        if spB is not None:
            okB = spB.idx < Bm.size
            cB = spB.idx % ncol
            img = np.arange(m)[None, None, :] * ncol + cB[..., None]
            parts.append(np.where(okB[..., None], img, size).reshape(B, -1))
        cand = self._keep_needed(n, _unique_rows(np.concatenate(parts, axis=1), size))
        if cand.shape[1] == 0:
            return None
        Q = cand.shape[1]
        ok = cand < size
        r, c = cand // ncol, cand % ncol
        total = self.flat[n.id][np.minimum(cand, size - 1)]
        contributions = []
        if spA is not None:
            self._check_work(B, Q, spA.idx.shape[1])
            qA = spA.idx % k
            dA = np.empty(spA.idx.shape, dtype=object)
            dA[okA] = spA.val[okA] - self.flat[A.id][spA.idx[okA]]
            M = (rA[:, None, :] == r[:, :, None]) & okA[:, None, :] & ok[:, :, None]
            J = np.where(M, qA[:, None, :] * ncol + c[:, :, None], Bm.size).reshape(B, -1)
            bnew = self._at(Bm, J, state).reshape(M.shape)
            b, q, p = np.nonzero(M)
            contributions.append((b * Q + q, dA[b, p] * bnew[b, q, p]))
        if spB is not None:
            self._check_work(B, Q, spB.idx.shape[1])
            qB = spB.idx // ncol
            dB = np.empty(spB.idx.shape, dtype=object)
            dB[okB] = spB.val[okB] - self.flat[Bm.id][spB.idx[okB]]
            M = (cB[:, None, :] == c[:, :, None]) & okB[:, None, :] & ok[:, :, None]
            b, q, p = np.nonzero(M)
            abase = self.flat[A.id][r[b, q] * k + qB[b, p]]
            contributions.append((b * Q + q, abase * dB[b, p]))
        keys = np.concatenate([kk for kk, _ in contributions])
        vals = np.concatenate([vv for _, vv in contributions])
        keys, sums = _segment_sums(keys, vals)
        flat_total = total.reshape(-1)
        flat_total[keys] = flat_total[keys] + sums
        return _Sparse(cand, flat_total.reshape(B, Q))
