"""Exact values along one coordinate line, at the cost of that line's cone.

A study or a stencil check along the coordinate e_i of a variable needs the exact loss (or a
site's condition) at many points x + t e_i. Moving one entry changes only the entries of each
intermediate that depend on it: its *cone* (one column of ``X @ W``, two terms of a
Rosenbrock sum). :class:`Cone` evaluates, per batch of points, only the changes of the cone
entries (their *deltas*), on top of base values at the point that are themselves evaluated
only where the cone reads them (*restricted* evaluation: a few entries of an elementwise
node, the rows and columns of a matrix product that the cone meets). Nothing is ever
evaluated as a Python object per entry of the whole data unless the cone reaches it, and the
cost per point is O(cone).

Deltas make the loss's change f(x + t e_i) - f(x) exact without evaluating f(x) where the
loss is a linear reduction of the cone (a sum of a million terms of which two move): sums,
matrix products with an unchanged factor, additions and structural operations propagate the
deltas linearly; every other operation recomputes its cone entries from the new values of its
arguments (base + delta) and subtracts its base value.

Values are Arb balls at the cone's precision (every digit proved by the radii), or, with
``series=L``, truncated power series in t (the perturbed entry is x_i + t), whose coefficients
are the exact Taylor coefficients of t -> f(x + t e_i); non-analytic operations (``relu``,
``abs``, ``maximum``, ``max``) take the piece of the point's side, and raise
:class:`ConeUnsupported` exactly on a kink.

Matrix products whose operands are floats of the point (a leaf, a transpose or slice of one)
are evaluated with python-flint's ``arb_mat`` (compiled code, exact for float inputs at the
usual precisions); other restricted products entry by entry or with ``arb_mat`` on the rows
and columns needed.
"""

from __future__ import annotations

import weakref
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np

from verigrad.engine import arb as ab
from verigrad.errors import DomainError, LimitError
from verigrad.expr.evaluate import eval_node
from verigrad.engine.coneops import BallOps, ComplexOps, ConeUnsupported, SeriesOps
from verigrad.expr.graph import ELEMENTWISE_BINARY, Node, Op, decode_index, topological

__all__ = ["Cone", "ConeRun", "ConeUnsupported", "forward_cone", "exact_ball"]

_STRUCTURAL = (Op.TRANSPOSE, Op.GETITEM, Op.RESHAPE, Op.BROADCAST, Op.SCATTER)
_REDUCTIONS = (Op.SUM, Op.PROD, Op.MAX, Op.LOGSUMEXP)
#: operations whose deltas are linear in their arguments' deltas
_LINEAR = (Op.NEG, Op.ADD, Op.SUB, Op.MUL, Op.SUM, Op.MATMUL) + _STRUCTURAL
#: entries of object arrays one chunk of rows may hold (bounds memory and keeps batches in cache)
_CHUNK_ENTRIES = 400_000
#: a matrix product whose restricted evaluation would exceed this many scalar products is refused
_MATMUL_WORK = 50_000_000


# -- static index maps, cached per model -------------------------------------------------------

_MAPS: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()


def _maps(model) -> dict:
    try:
        return _MAPS.setdefault(model, {})
    except TypeError:  # pragma: no cover - a model that cannot be weakly referenced
        return {}


def _src(model, n: Node, k: int) -> np.ndarray | None:
    """Gather map out flat -> flat entry of argument ``k`` (``-1``: none) of an elementwise or
    structural node; None for the identity (unary, negation)."""
    if n.op in (Op.UNARY, Op.NEG):
        return None
    cache = _maps(model)
    key = ("src", n.id, k)
    hit = cache.get(key)
    if hit is not None:
        return hit
    a = n.args[k]
    ar = np.arange(a.size, dtype=np.int64).reshape((1,) + a.shape)
    if n.op is Op.SCATTER:
        out = np.full((1,) + n.shape, -1, dtype=np.int64)
        out[(slice(None),) + decode_index(n.params[0])] = ar
        m = out.reshape(-1)
    elif n.op in _STRUCTURAL:
        m = np.ascontiguousarray(eval_node(n, [ar], None, None)).reshape(-1)
    else:
        nd = len(n.shape)
        ar = ar.reshape((1,) + (1,) * (nd - len(a.shape)) + a.shape)
        m = np.ascontiguousarray(np.broadcast_to(ar, (1,) + n.shape)).reshape(-1)
    cache[key] = m
    return m


def _groups(model, n: Node) -> tuple[np.ndarray, np.ndarray]:
    """For a reduction (or an argmax weight): the group of every input entry, and the members
    of every group (groups x group length), in C order."""
    cache = _maps(model)
    key = ("groups", n.id)
    hit = cache.get(key)
    if hit is not None:
        return hit
    a = n.args[0]
    axes = n.params[0]
    axes = tuple(range(len(a.shape))) if axes is None else tuple(axes)
    kshape = tuple(1 if d in axes else s for d, s in enumerate(a.shape))
    out = np.arange(int(np.prod(kshape, dtype=np.int64)), dtype=np.int64).reshape(kshape)
    red = np.ascontiguousarray(np.broadcast_to(out, a.shape)).reshape(-1)
    G = int(np.prod(kshape, dtype=np.int64))
    members = np.argsort(red, kind="stable").reshape(G, -1) if a.size else np.zeros((G, 0), dtype=np.int64)
    cache[key] = (red, members)
    return red, members


def _mm_dims(n: Node) -> tuple[int, int, int]:
    A, B = n.args
    if len(A.shape) > 2 or len(B.shape) > 2:
        raise ConeUnsupported("batched matrix products are not evaluated on cones")
    m, k = (1, A.shape[0]) if len(A.shape) == 1 else A.shape
    p = 1 if len(B.shape) == 1 else B.shape[1]
    return int(m), int(k), int(p)


def _union(*arrays) -> np.ndarray:
    parts = [np.asarray(a, dtype=np.int64).reshape(-1) for a in arrays if a is not None and len(a)]
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(parts))


def _lookup(keys: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``q`` in the sorted ``keys`` and which of them are present."""
    if keys.size == 0:
        return np.zeros(q.shape, dtype=np.int64), np.zeros(q.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
    return pos, keys[pos] == q


def _objects(items, shape=None) -> np.ndarray:
    """An object array of ``items`` (never unpacking power series, which have a length)."""
    items = list(items)
    out = np.empty(len(items), dtype=object)
    for i, v in enumerate(items):
        out[i] = v
    return out if shape is None else out.reshape(shape)


def _filled(shape, value) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.fill(value)
    return out


def forward_cone(model, order: Sequence[Node], variable: str, index: int, float_exact=None, floats=None
                 ) -> dict[int, np.ndarray]:
    """Flat entries of every node of ``order`` (topological) that move with entry ``index`` of
    ``variable``, by node id (nodes that do not move are absent).

    An entry multiplied by an unchanged exact zero of the point (a one-hot label; needs
    ``float_exact(node)`` and ``floats(node)``) does not move.
    """
    C: dict[int, np.ndarray] = {}
    for n in order:
        if variable not in n.variables:
            continue
        op = n.op
        if op is Op.LEAF:
            c = np.array([index], dtype=np.int64)
        elif op in (Op.UNARY, Op.NEG):
            c = C.get(n.args[0].id)
        elif op in ELEMENTWISE_BINARY or op in _STRUCTURAL:
            parts = []
            for k, a in enumerate(n.args):
                ca = C.get(a.id)
                if ca is not None:
                    parts.append(np.flatnonzero(np.isin(_src(model, n, k), ca)))
            c = _union(*parts)
            if op is Op.MUL and len(parts) == 1 and float_exact is not None:
                other = 1 if n.args[0].id in C else 0
                if float_exact(n.args[other]) and c.size:
                    vals = floats(n.args[other])[_src(model, n, other)[c]]
                    c = c[vals != 0]
        elif op in _REDUCTIONS:
            red, _ = _groups(model, n)
            c = np.unique(red[C[n.args[0].id]]) if n.args[0].id in C else None  # a gather may drop the entry
        elif op is Op.ARGMAX_WEIGHT:
            red, members = _groups(model, n)
            c = (np.unique(members[np.unique(red[C[n.args[0].id]])].reshape(-1)) if n.args[0].id in C
                 else None)
        elif op is Op.MATMUL:
            m, k, p = _mm_dims(n)
            A, B = n.args
            parts = []
            if A.id in C:
                rows = np.unique(C[A.id] // k)
                parts.append((rows[:, None] * p + np.arange(p)[None, :]).reshape(-1))
            if B.id in C:
                cols = np.unique(C[B.id] % p)
                parts.append((np.arange(m)[:, None] * p + cols[None, :]).reshape(-1))
            c = _union(*parts)
        else:
            raise ConeUnsupported(f"{op.value} is not evaluated on cones")  # pragma: no cover
        if c is not None and c.size:
            C[n.id] = np.asarray(c, dtype=np.int64)
    return C


# -- the cone ---------------------------------------------------------------------------------


class Cone:
    """Exact changes of a graph's nodes along one coordinate line x + t e_i.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        The base point (float arrays, used exactly).
    variable : str
    index : int
        Flat index of the perturbed entry.
    prec : int
        Arb working precision in bits.
    deltas : sequence of Node
        Nodes whose changes are wanted (normally the loss).
    values : sequence of Node
        Nodes whose new values are wanted at their cone entries (site arguments).
    base : mapping of Node to sequence of int
        Extra base values wanted (flat entries per node): the loss itself, a gradient entry.
    series : int
        0: balls; L > 0: power series of length L in t.
    complex : bool
        New values are ``mpmath.mpc`` (the exact complex step): deltas are evaluated in mpmath at
        ``prec`` with the rules of :class:`~verigrad.engine.backends.MPBackend` (base values are
        still proved Arb balls, used by their midpoints).

    Raises
    ------
    ConeUnsupported
        A graph this machinery does not evaluate (batched matrix products), or work beyond
        the bounds; the caller evaluates the whole graph instead.
    verigrad.engine.arb.Undecided
        A base value that decides a kink or domain at this precision (raise it).
    """

    def __init__(self, model, point: Mapping[str, np.ndarray], variable: str, index: int, *, prec: int,
                 deltas: Sequence[Node] = (), values: Sequence[Node] = (),
                 base: Mapping[Node, Sequence[int]] | None = None, series: int = 0, complex: bool = False):
        self.model, self.variable, self.index, self.prec = model, variable, int(index), int(prec)
        self.series = int(series)
        self.point = {k: np.asarray(v) for k, v in point.items()}
        base = dict(base or {})
        self.delta_nodes, self.value_nodes = list(deltas), list(values)
        self.order = topological(self.delta_nodes + self.value_nodes + list(base))
        self.moving = topological(self.delta_nodes + self.value_nodes)  # where deltas propagate
        self._floats: dict[int, np.ndarray] = {}
        self.x0 = float(np.asarray(self.point[variable], dtype=np.float64).reshape(-1)[self.index])
        self.cone = self._forward_cone()
        self._plan(base)
        self.ops = ComplexOps() if complex else (SeriesOps() if self.series else BallOps())
        self.complex = bool(complex)
        self._converted: dict[int, np.ndarray] = {}
        with ab.arb_precision(self.prec):
            self._evaluate_base()

    # -- planning --------------------------------------------------------------------------

    def _float_exact(self, n: Node) -> bool:
        """Whether the node's values are floats of the point (a leaf or a structural view of one)."""
        if n.op is Op.LEAF:
            return True
        if n.op in (Op.TRANSPOSE, Op.GETITEM, Op.RESHAPE, Op.BROADCAST):
            return self._float_exact(n.args[0])
        return False

    def floats(self, n: Node) -> np.ndarray:
        """Flat float64 values of a float-exact node at the point."""
        hit = self._floats.get(n.id)
        if hit is None:
            if n.op is Op.LEAF:
                v = np.asarray(self.point[n.params[0]], dtype=np.float64).reshape((1,) + n.shape)
            else:
                a = self.floats(n.args[0]).reshape((1,) + n.args[0].shape)
                v = eval_node(n, [a], None, None)
            hit = self._floats[n.id] = np.ascontiguousarray(v).reshape(-1)
        return hit

    def _forward_cone(self) -> dict[int, np.ndarray]:
        return forward_cone(self.model, self.moving, self.variable, self.index, self._float_exact, self.floats)

    def positions(self, n: Node) -> np.ndarray:
        """Flat entries of ``n`` that move along the line (sorted)."""
        return self.cone.get(n.id, np.zeros(0, dtype=np.int64))

    def _plan(self, extra: Mapping[Node, Sequence[int]]) -> None:
        """Which base values (node, entries) the deltas and the requests need, closed under
        the restricted evaluation of the nodes that are not float-exact."""
        C = self.cone
        need: dict[int, list] = {}
        def want(n: Node, pos) -> None:
            if pos is not None and len(pos):
                need.setdefault(n.id, []).append(np.asarray(pos, dtype=np.int64).reshape(-1))

        for n, pos in extra.items():
            want(n, pos)
        for n in self.value_nodes:
            want(n, C.get(n.id))
        for n in self.moving:
            c = C.get(n.id)
            if c is None or n.op is Op.LEAF:
                continue
            op = n.op
            if op is Op.MUL:
                for k in (0, 1):
                    if n.args[1 - k].id in C:  # d(other) * this: this one's base values
                        want(n.args[k], _src(self.model, n, k)[c])
            elif op is Op.MATMUL:
                m, k, p = _mm_dims(n)
                A, B = n.args
                if A.id in C:  # dA (B + dB): B's values on the rows that dA touches, all columns
                    q = np.unique(C[A.id] % k)
                    want(B, (q[:, None] * p + np.arange(p)[None, :]).reshape(-1))
                if B.id in C:  # A dB: A's base values on the columns dB touches
                    q = np.unique(C[B.id] // p)
                    want(A, (np.arange(m)[:, None] * k + q[None, :]).reshape(-1))
            elif op in _LINEAR:
                continue
            else:
                want(n, c)  # value mode: new - base
                for k, a in enumerate(n.args):
                    want(a, self._reads(n, k, c))
        # closure: a restricted node needs its arguments where it reads them
        self.need: dict[int, np.ndarray] = {}
        for n in reversed(self.order):
            parts = need.pop(n.id, None)
            if not parts:
                continue
            pos = _union(*parts)
            self.need[n.id] = pos
            if self._float_exact(n) or n.op is Op.CONST:
                continue
            if n.op is Op.MATMUL:
                m, k, p = _mm_dims(n)
                A, B = n.args
                rows, cols = np.unique(pos // p), np.unique(pos % p)
                if not self._float_exact(A):
                    want(A, (rows[:, None] * k + np.arange(k)[None, :]).reshape(-1))
                if not self._float_exact(B):
                    want(B, (np.arange(k)[:, None] * p + cols[None, :]).reshape(-1))
                continue
            for k, a in enumerate(n.args):
                want(a, self._reads(n, k, pos))

    def _reads(self, n: Node, k: int, pos: np.ndarray) -> np.ndarray:
        """Flat entries of argument ``k`` that node ``n`` reads to compute its entries ``pos``."""
        op = n.op
        if op in (Op.UNARY, Op.NEG):
            return pos
        if op in ELEMENTWISE_BINARY or op in _STRUCTURAL:
            s = _src(self.model, n, k)[pos]
            return s[s >= 0]
        if op in _REDUCTIONS:
            _, members = _groups(self.model, n)
            return members[pos].reshape(-1)
        if op is Op.ARGMAX_WEIGHT:
            red, members = _groups(self.model, n)
            return members[np.unique(red[pos])].reshape(-1)
        raise ConeUnsupported(f"{op.value} is not evaluated on cones")  # pragma: no cover

    # -- base values -----------------------------------------------------------------------

    def _evaluate_base(self) -> None:
        self._base: dict[int, np.ndarray] = {}
        self._aux: dict[int, object] = {}
        for n in self.order:
            pos = self.need.get(n.id)
            if pos is None:
                continue
            if self._float_exact(n):
                vals = _objects(ab.arb(v) for v in self.floats(n)[pos].tolist())
            elif n.op is Op.CONST:
                v = ab.ArbBackend().const(n.params)[0]
                vals = _filled(pos.size, v)
            elif n.op is Op.MATMUL:
                vals = self._matmul_base(n, pos)
            else:
                vals = self._compute(n, pos, self._base_get, 1, base=True)[0]
            self._base[n.id] = vals

    def base(self, n: Node, q) -> np.ndarray:
        """Base values (balls) of ``n`` at flat entries ``q`` (which the plan must include)."""
        q = np.asarray(q, dtype=np.int64).reshape(-1)
        if not q.size:
            return np.empty(0, dtype=object)
        pos, ok = _lookup(self.need.get(n.id, np.zeros(0, dtype=np.int64)), q)
        if not ok.all():  # pragma: no cover - a planning error
            raise ConeUnsupported(f"base value of {n.label} not planned")
        return self._base[n.id][pos]

    def _base_get(self, n: Node, q: np.ndarray) -> np.ndarray:
        return self.base(n, q)[None, :]

    def _bv(self, n: Node, q) -> np.ndarray:
        """Base values in the number type of the deltas (mpmath midpoints for the complex step)."""
        if not self.complex:
            return self.base(n, q)
        conv = self._converted.get(n.id)
        if conv is None:
            conv = self._converted[n.id] = self.ops.from_base(self._base[n.id])
        q = np.asarray(q, dtype=np.int64).reshape(-1)
        if not q.size:
            return np.empty(0, dtype=object)
        pos, _ = _lookup(self.need[n.id], q)
        return conv[pos]

    def _matmul_base(self, n: Node, pos: np.ndarray) -> np.ndarray:
        m, k, p = _mm_dims(n)
        A, B = n.args
        r, c = pos // p, pos % p
        rows, cols = np.unique(r), np.unique(c)
        if rows.size * k * cols.size > _MATMUL_WORK and pos.size * k > _MATMUL_WORK:
            raise ConeUnsupported("a matrix product too large for restricted evaluation")

        def block(node, idx2d):
            if self._float_exact(node):
                return self.floats(node)[idx2d]
            return self.base(node, idx2d.reshape(-1)).reshape(idx2d.shape)

        a_idx = rows[:, None] * k + np.arange(k)[None, :]
        b_idx = np.arange(k)[:, None] * p + cols[None, :]
        if pos.size * 4 < rows.size * cols.size:  # a few scattered entries: dot products
            av = block(A, r[:, None] * k + np.arange(k)[None, :])
            bv = block(B, np.arange(k)[None, :] * p + c[:, None])
            av = av if av.dtype == object else _objects(ab.arb(v) for v in av.reshape(-1).tolist()).reshape(av.shape)
            out = np.sum(av * bv, axis=1) if k else _filled(pos.size, ab.arb(0))
            return np.asarray(out, dtype=object).reshape(-1)
        Am = ab.flint.arb_mat(block(A, a_idx).tolist())
        Bm = ab.flint.arb_mat(block(B, b_idx).tolist())
        prod = (Am * Bm).tolist() if k else [[ab.arb(0)] * cols.size for _ in rows]
        ri = np.searchsorted(rows, r)
        ci = np.searchsorted(cols, c)
        return _objects(prod[i][j] for i, j in zip(ri.tolist(), ci.tolist()))

    # -- one node's values from its arguments' ---------------------------------------------

    def _compute(self, n: Node, pos: np.ndarray, get, B: int, *, base: bool = False) -> np.ndarray:
        """Values (B', |pos|) of ``n`` at ``pos`` from ``get(arg, entries) -> (1 or B, entries)``."""
        op = n.op
        ops = BallOps() if base else self.ops
        zero = ab.arb(0) if base else self.ops.zero
        P = pos.size
        if op is Op.UNARY:
            return ops.unary(n.fn, get(n.args[0], pos), n)
        if op is Op.NEG:
            return -get(n.args[0], pos)
        if op in ELEMENTWISE_BINARY:
            xs = []
            for k, a in enumerate(n.args):
                s = _src(self.model, n, k)[pos]
                xs.append(get(a, s))
            x, y = xs
            if op is Op.ADD:
                return x + y
            if op is Op.SUB:
                return x - y
            if op is Op.MUL:
                return x * y
            if op is Op.DIV:
                return ops.div(*np.broadcast_arrays(x, y), n)
            if op is Op.POW:
                y0 = y.reshape(-1)[0] if y.size else None
                if y.shape[0] == 1 and y.size and all(v is y0 or v == y0 for v in y.reshape(-1)):
                    y = y[:, :1]  # one exponent: the integer fast path of the backend
                out = ops.pow(x, y, n)
                return np.asarray(np.broadcast_to(out, np.broadcast_shapes(x.shape, (1, P))), dtype=object)
            if op is Op.MAXIMUM:
                return ops.maximum(*np.broadcast_arrays(x, y), n)
            return ops.tie_weight(*np.broadcast_arrays(x, y), n)
        if op in _STRUCTURAL:
            s = _src(self.model, n, 0)[pos]
            ok = s >= 0
            if ok.all():
                return get(n.args[0], s)
            out = _filled((1, P), zero)
            if ok.any():
                vals = get(n.args[0], s[ok])
                out = np.repeat(out, vals.shape[0], axis=0)
                out[:, ok] = vals
            return out
        if op in _REDUCTIONS:
            _, members = _groups(self.model, n)
            M = members[pos]
            v = get(n.args[0], M.reshape(-1)).reshape(-1, P, M.shape[1])
            if op is Op.SUM:
                return np.asarray(np.sum(v, axis=2), dtype=object) if M.shape[1] else _filled((1, P), zero)
            if op is Op.PROD:
                return np.asarray(np.prod(v, axis=2), dtype=object)
            if op is Op.MAX:
                return ops.max_last(v)
            return ops.logsumexp_last(v)
        if op is Op.ARGMAX_WEIGHT:
            red, members = _groups(self.model, n)
            G = np.unique(red[pos])
            M = members[G]
            v = get(n.args[0], M.reshape(-1)).reshape(-1, G.size, M.shape[1])
            w = ops.argmax_weight_last(v).reshape(v.shape[0], -1)
            flat = M.reshape(-1)
            order = np.argsort(flat)
            return w[:, order[np.searchsorted(flat[order], pos)]]
        raise ConeUnsupported(f"{op.value} is not evaluated on cones")  # pragma: no cover

    # -- the deltas of a batch of points ----------------------------------------------------

    def run(self, new_values: Sequence) -> "ConeRun":
        """Deltas of the planned nodes at the points where entry ``index`` is ``new_values[b]``.

        Parameters
        ----------
        new_values : sequence
            Balls (or, with ``series``, series) at the cone's precision, one per point.

        Returns
        -------
        ConeRun
            Rows whose evaluation left a domain are in ``failed`` (with the message).
        """
        vals = _objects(new_values)
        Bn = vals.size
        width = max(1, sum(c.size for c in self.cone.values()))
        per = max(1, _CHUNK_ENTRIES // (4 * width))
        run = ConeRun(self, Bn)
        import mpmath

        with ab.arb_precision(self.prec), _series_cap(self.series), mpmath.workprec(self.prec):
            for start in range(0, Bn, per):
                rows = np.arange(start, min(Bn, start + per))
                try:
                    run._put(rows, self._deltas(vals[rows]))
                except (DomainError, LimitError) as exc:
                    if rows.size == 1:
                        run.failed[int(rows[0])] = str(exc)
                        continue
                    for r in rows:
                        try:
                            run._put(np.array([r]), self._deltas(vals[[r]]))
                        except (DomainError, LimitError) as exc1:
                            run.failed[int(r)] = str(exc1)
        return run

    def _deltas(self, new: np.ndarray) -> dict[int, np.ndarray]:
        B = new.size
        C = self.cone
        D: dict[int, np.ndarray] = {}
        zero = self.ops.zero

        def gather(a: Node, q: np.ndarray) -> np.ndarray:
            out = _filled((B, q.size), zero)
            ca = C.get(a.id)
            if ca is not None:
                pos, hit = _lookup(ca, q)
                if hit.any():
                    out[:, hit] = D[a.id][:, pos[hit]]
            return out

        def values(a: Node, q: np.ndarray) -> np.ndarray:
            if a.id not in C:
                return self._bv(a, q)[None, :]
            out = np.repeat(self._bv(a, q)[None, :], B, axis=0)
            pos, hit = _lookup(C[a.id], q)
            if hit.any():
                out[:, hit] = out[:, hit] + D[a.id][:, pos[hit]]
            return out

        for n in self.moving:
            c = C.get(n.id)
            if c is None:
                continue
            op = n.op
            if op is Op.LEAF:
                D[n.id] = self.ops.leaf_delta(new, self.x0).reshape(B, 1)
            elif op is Op.NEG:
                D[n.id] = -D[n.args[0].id]
            elif op in (Op.ADD, Op.SUB) or op in _STRUCTURAL:
                ds = []
                for k, a in enumerate(n.args):
                    if a.id in C:
                        s = _src(self.model, n, k)[c]
                        ds.append(gather(a, np.where(s >= 0, s, -1)))
                    else:
                        ds.append(None)
                if op is Op.SUB and ds[1] is not None:
                    ds[1] = -ds[1]
                ds = [d for d in ds if d is not None]
                D[n.id] = ds[0] if len(ds) == 1 else ds[0] + ds[1]
            elif op is Op.MUL:
                x, y = n.args
                sx, sy = _src(self.model, n, 0)[c], _src(self.model, n, 1)[c]
                if x.id in C and y.id in C:
                    dx, dy = gather(x, sx), gather(y, sy)
                    D[n.id] = dx * values(y, sy) + self._bv(x, sx)[None, :] * dy
                elif x.id in C:
                    D[n.id] = gather(x, sx) * self._bv(y, sy)[None, :]
                else:
                    D[n.id] = self._bv(x, sx)[None, :] * gather(y, sy)
            elif op is Op.SUM:
                a = n.args[0]
                red, _ = _groups(self.model, n)
                ca = C[a.id]
                out_of = red[ca]
                order = np.argsort(out_of, kind="stable")
                keys = out_of[order]
                starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
                sums = np.add.reduceat(D[a.id][:, order], starts, axis=1)
                D[n.id] = np.asarray(sums, dtype=object).reshape(B, -1)
            elif op is Op.MATMUL:
                D[n.id] = self._matmul_delta(n, c, B, gather, values)
            else:
                new_vals = self._compute(n, c, values, B)
                new_vals = np.asarray(np.broadcast_to(new_vals, (B, c.size)), dtype=object)
                D[n.id] = new_vals - self._bv(n, c)[None, :]
        return D

    def _matmul_delta(self, n: Node, c: np.ndarray, B: int, gather, values) -> np.ndarray:
        """(A + dA)(B + dB) - AB = dA (B + dB) + A dB on the cone entries."""
        m, k, p = _mm_dims(n)
        A, Bm = n.args
        C = self.cone
        keys, terms = [], []
        if A.id in C:
            ca = C[A.id]
            r, q = ca // k, ca % k
            out = (r[:, None] * p + np.arange(p)[None, :]).reshape(-1)
            bpos = (q[:, None] * p + np.arange(p)[None, :]).reshape(-1)
            dA = np.repeat(self._delta_cols(A, ca, gather), p, axis=1)
            terms.append(dA * values(Bm, bpos))
            keys.append(out)
        if Bm.id in C:
            cb = C[Bm.id]
            q, col = cb // p, cb % p
            out = (np.arange(m)[None, :] * p + col[:, None]).reshape(-1)
            apos = (np.arange(m)[None, :] * k + q[:, None]).reshape(-1)
            dB = np.repeat(self._delta_cols(Bm, cb, gather), m, axis=1)
            terms.append(self._bv(A, apos)[None, :] * dB)
            keys.append(out)
        key = np.concatenate(keys)
        val = np.concatenate(terms, axis=1)
        order = np.argsort(key, kind="stable")
        ks = key[order]
        starts = np.flatnonzero(np.concatenate([[True], ks[1:] != ks[:-1]]))
        sums = np.asarray(np.add.reduceat(val[:, order], starts, axis=1), dtype=object).reshape(B, -1)
        uk = ks[starts]
        pos, hit = _lookup(uk, c)
        out = _filled((B, c.size), self.ops.zero)
        out[:, hit] = sums[:, pos[hit]]
        return out

    @staticmethod
    def _delta_cols(a: Node, q: np.ndarray, gather) -> np.ndarray:
        return gather(a, q)


class ConeRun:
    """The deltas of one batch of points (see :meth:`Cone.run`)."""

    def __init__(self, cone: Cone, B: int):
        self.cone, self.B = cone, B
        self.failed: dict[int, str] = {}
        self._d: dict[int, np.ndarray] = {}

    def _put(self, rows: np.ndarray, D: dict[int, np.ndarray]) -> None:
        for n in self.cone.delta_nodes + self.cone.value_nodes:
            d = D.get(n.id)
            if d is None:
                continue
            arr = self._d.get(n.id)
            if arr is None:
                arr = self._d[n.id] = np.empty((self.B, d.shape[1]), dtype=object)
            arr[rows] = d

    def delta(self, n: Node) -> np.ndarray:
        """(B, |cone of n|) deltas; rows in ``failed`` hold None; an unmoved node gives (B, 0)."""
        d = self._d.get(n.id)
        if d is None:
            return np.empty((self.B, 0), dtype=object)
        return d

    def scalar_delta(self, n: Node) -> list:
        """The change of a scalar node per point: a ball (series), exactly 0 where it does not
        move, None where the point left the domain."""
        d = self._d.get(n.id)
        out = []
        for b in range(self.B):
            if b in self.failed:
                out.append(None)
            elif d is None or d.shape[1] == 0:
                out.append(self.cone.ops.zero)
            else:
                out.append(d[b, 0])
        return out

    def values(self, n: Node) -> np.ndarray:
        """(B, |cone of n|) new values at the cone entries (base + delta)."""
        c = self.cone.positions(n)
        d = self.delta(n)
        if not c.size:
            return d
        if d.shape[1] != c.size:  # every row failed
            return np.full((self.B, c.size), None, dtype=object)
        with ab.arb_precision(self.cone.prec):
            out = np.repeat(self.cone.base(n, c)[None, :], self.B, axis=0)
            good = np.array([b not in self.failed for b in range(self.B)], dtype=bool)
            out[good] = out[good] + d[good]
            out[~good] = None
        return out


class _series_cap:
    """Scoped length of Arb power series (python-flint's ``ctx.cap``); no-op for 0."""

    def __init__(self, length: int):
        self.length = int(length)

    def __enter__(self):
        self.old = ab.flint.ctx.cap
        if self.length:
            ab.flint.ctx.cap = self.length

    def __exit__(self, *exc):
        ab.flint.ctx.cap = self.old
        return False


def exact_ball(q: Fraction):
    """The ball of a rational at the current precision (exact for dyadic ones that fit)."""
    return ab.arb(q.numerator) / q.denominator if q.denominator != 1 else ab.arb(q.numerator)
