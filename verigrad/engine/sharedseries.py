"""Taylor mode's series shared by position, for the incremental line evaluator.

Along coordinate w_i of ``X @ w``, row r of the product is z_r(t) = z_r + X_ri t: linear in t,
and the same function of t in every coordinate up to the scale X_ri. Every elementwise
function downstream is then G_r(X_ri t), with G_r the series of the same function at z_r + s,
which depends on the row but not on the coordinate: one series per row serves all the
coordinates of a batch (:class:`Scaled`), and is composed with X_ri t only where a sum, a
product or another non-elementwise node needs the series themselves. Used by
:class:`verigrad.engine.lines.LineEvaluator` in Taylor mode; see ``docs/numerics.md``.
"""

from __future__ import annotations

import numpy as np

from verigrad.engine import arb as ab
from verigrad.expr.evaluate import binary
from verigrad.expr.graph import Node, Op

__all__ = ["Scaled", "SharedSeries", "at_scaled", "changed_at"]


class Scaled:
    """Changed entries in Taylor mode whose series are G(c t): ``table[key]`` a power series G
    shared by every batch row (the same function of t at the same position, up to the scale of
    t), ``scale`` (B, P) its row's c (balls). ``key`` is -1 on padding; ``idx`` as in _Sparse.

    Downstream of an entry that is linear in t, z(t) = z_0 + c t, every elementwise function of
    it is G(c t) with G the series of the same function at z_0 + s: it depends only on the
    position (z_0 is the base value there; every row is the same at t = 0), so one series per
    position serves every row of a batch (the coordinates of ``X @ w``, hundreds of rows each)
    instead of one per row. ``val`` composes G with c t per entry when a node needs the series
    themselves (sums, products, other arguments), and keeps them."""

    __slots__ = ("idx", "key", "scale", "table", "_val")

    def __init__(self, idx: np.ndarray, key: np.ndarray, scale: np.ndarray, table: np.ndarray):
        self.idx, self.key, self.scale, self.table, self._val = idx, key, scale, table, None

    @property
    def val(self) -> np.ndarray:
        if self._val is None:
            ok = self.key >= 0
            out = np.empty(self.key.shape, dtype=object)
            out[ok] = _COMPOSE(self.table[self.key[ok]], self.scale[ok])
            self._val = out
        return self._val


def _compose(g, c):
    # G(c t): Arb's composition with a linear series, O(L) (a constant G is its own value; python-flint
    # refuses to compose with the zero series: G(0 t) is G's constant term)
    if not isinstance(g, ab.flint.arb_series):
        return g
    return ab.flint.arb_series([g[0]]) if c == 0 else g(ab.flint.arb_series([0, c]))  # c == 0: exactly 0


def _slope(s):
    # the scale c of a series linear in t (0 for a constant); None for any higher degree
    if not isinstance(s, ab.flint.arb_series):
        return ab.arb(0)
    n = s.length()
    return s[1] if n == 2 else (ab.arb(0) if n < 2 else None)


_COMPOSE = np.frompyfunc(_compose, 2, 1)
_SLOPE = np.frompyfunc(_slope, 1, 1)
_IDENTICAL = np.frompyfunc(lambda u, v: u is v, 2, 1)
#: Changed entries per distinct position from which a linear argument is worth sharing (below it
#: the compositions cost more than the per-row series they replace: Rosenbrock's x_i, one row each).
_SHARE_MIN = 4


def at_scaled(sp: Scaled, size: int, J: np.ndarray):
    """Keys and scales of ``sp`` at flat positions ``J`` (B, Q): -1 and None where unchanged."""
    key = np.full(J.shape, -1, dtype=np.int64)
    scale = np.empty(J.shape, dtype=object)
    if J.size:
        hit, pos = changed_at(sp.idx, size, J)
        key[hit] = sp.key.reshape(-1)[pos[hit]]
        scale[hit] = sp.scale.reshape(-1)[pos[hit]]
    return key, scale


def changed_at(idx: np.ndarray, size: int, J: np.ndarray):
    """Which flat positions ``J`` (B, Q) of a node are among its changed entries ``idx`` (B, P;
    sorted per row, padded with ``size``), and where: (hit, pos), pos indexing ``idx.reshape(-1)``."""
    B = J.shape[0]
    stride = size + 1
    rows = np.arange(B, dtype=np.int64)[:, None]
    keys = (rows * stride + idx).reshape(-1)
    q = rows * stride + J
    pos = np.minimum(np.searchsorted(keys, q.reshape(-1)).reshape(J.shape), keys.size - 1)
    return (keys[pos] == q) & (J < size), pos


class SharedSeries:
    """Taylor mode's shared series, for :class:`verigrad.engine.lines.LineEvaluator` (a mixin: it
    uses the evaluator's base values ``flat``, backend ``_bk``, ``_keep_needed``, ``_red``,
    ``_ufunc_exp``, ``_ufunc_log`` and its counts of ``elementwise`` entries)."""

    def _scaled(self, a: Node, state) -> Scaled | None:
        """The changed entries of node ``a`` as a Scaled: themselves, or, where every changed
        entry is linear in t and positions repeat across rows often enough to pay, one unit-slope
        series [z_0, 1] per position (z_0 the base value: each entry's own constant term encloses
        the same number, the node's value at t = 0) and each entry's slope as its scale; else None.

        A conversion replaces the node's state (its series are kept as the values), so that every
        user of the node sees the same scale objects: z * z stays shared."""
        sp = state[a.id]
        if isinstance(sp, Scaled):
            return sp
        ok = sp.idx < a.size
        pos = sp.idx[ok]
        u, inv = np.unique(pos, return_inverse=True)
        if pos.size < _SHARE_MIN * u.size:
            return None
        vals = sp.val[ok]
        if _slope(vals[0]) is None:  # the usual refusal (a series already nonlinear), at the cost of one entry
            return None
        slopes = _SLOPE(vals)
        if any(c is None for c in slopes):
            return None
        base = self.flat[a.id]
        table = _objects([ab.flint.arb_series([base[p], 1]) for p in u.tolist()])
        key = np.full(sp.idx.shape, -1, dtype=np.int64)
        key[ok] = inv.reshape(-1)
        scale = np.empty(sp.idx.shape, dtype=object)
        scale[ok] = slopes
        sc = Scaled(sp.idx, key, scale, table)
        sc._val = sp.val
        state[a.id] = sc
        return sc

    def _scaled_unary(self, n: Node, state) -> Scaled | None:
        """A unary function (or negation) on shared series: once per series used, not per entry."""
        sc = self._scaled(n.args[0], state)
        if sc is None:
            return None
        used = np.unique(sc.key[sc.key >= 0])
        g = sc.table[used]
        if n.op is Op.UNARY:
            # the domain decisions, on every changed entry's constant term (its position's base value)
            self._bk.check_unary(n.fn, g, n)
        idx = self._keep_needed(n, sc.idx)
        if idx.shape[1] == 0:
            return None
        table = np.empty(sc.table.shape, dtype=object)
        table[used] = -g if n.op is Op.NEG else self._bk.apply_unary(n.fn, g)
        if idx is sc.idx:
            self.elementwise["shared"] += int((sc.key >= 0).sum())
            return Scaled(idx, sc.key, sc.scale, table)
        key, scale = at_scaled(sc, n.size, idx)
        self.elementwise["shared"] += int((key >= 0).sum())
        return Scaled(idx, key, scale, table)

    def _scaled_binary(self, n: Node, state, cand, ok, Js) -> Scaled | None:
        """An elementwise binary operation on shared series, once per distinct pair of operands.

        An argument that did not change enters with its base value; one that changed must carry
        the same scale object as the other wherever both changed (the same linear entry upstream);
        otherwise (two differently scaled entries meet, or an unshared changed argument) None."""
        codes, scales, pools = [], [], []
        for a, J in zip(n.args, Js):
            sp = state.get(a.id)
            Jo = J[ok]
            if sp is None:
                key, scale = np.full(Jo.shape, -1, dtype=np.int64), None
                table = np.empty(0, dtype=object)
            else:
                sp = self._scaled(a, state)
                if sp is None:
                    return None
                key, scale = at_scaled(sp, a.size, J)
                key, scale, table = key[ok], scale[ok], sp.table
            hit = key >= 0
            codes.append(np.where(hit, key, table.size + np.minimum(Jo, a.size - 1)))
            scales.append((hit, scale))
            pools.append((table, self.flat[a.id]))
        (hx, sx), (hy, sy) = scales
        if not (hx | hy).all():
            return None
        both = hx & hy
        if both.any() and not _IDENTICAL(sx[both], sy[both]).astype(bool).all():
            return None
        scale = np.empty(Jo.shape, dtype=object)
        if sx is not None:
            scale[hx] = sx[hx]
        if sy is not None:
            scale[~hx] = sy[~hx]
        width = pools[1][0].size + pools[1][1].size
        u, inv = np.unique(codes[0] * width + codes[1], return_inverse=True)
        xy = []
        for c, (table, flat) in zip((u // width, u % width), pools):
            v = np.empty(c.size, dtype=object)
            own = c < table.size
            v[own] = table[c[own]]
            v[~own] = flat[c[~own] - table.size]
            xy.append(v)
        key = np.full(cand.shape, -1, dtype=np.int64)
        key[ok] = inv.reshape(-1)
        sc_full = np.empty(cand.shape, dtype=object)
        sc_full[ok] = scale
        self.elementwise["shared"] += int(ok.sum())
        return Scaled(cand, key, sc_full, np.asarray(binary(self._bk, n, *xy), dtype=object))

    def _scaled_logsumexp(self, n: Node, state, B: int, exp_base: np.ndarray, sumexp: np.ndarray) -> Scaled | None:
        """A logsumexp whose changed inputs share series, with one changed input per slice and row
        (a column of ``X @ W.T`` along W_cj): output n of the row is H(c t),
        H = log(Σ_n − e^(z_p) + e^(G(s))) for its one changed input p (series G, scale c), once per
        distinct (G, p) instead of once per row. None where a slice has two changed inputs."""
        a = n.args[0]
        sc = self._scaled(a, state)
        if sc is None:
            return None
        ok = sc.idx < a.size
        rows, _ = np.nonzero(ok)
        pos = sc.idx[ok]
        if not pos.size:
            return None
        red = self._red(n)
        out = red[pos]
        ro = rows * (n.size + 1) + out
        order = np.argsort(ro, kind="stable")
        ro = ro[order]
        if (ro[1:] == ro[:-1]).any():
            return None
        u, inv = np.unique(sc.key[ok] * a.size + pos, return_inverse=True)
        g, p = sc.table[u // a.size], u % a.size
        # the eager update's own formula, Σ_n + (e^new − e^base), on the distinct series only
        table = self._ufunc_log()(sumexp[red[p]] + (self._ufunc_exp()(g) - exp_base[p]))
        rows, out = rows[order], out[order]
        rank = np.arange(rows.size) - np.searchsorted(rows, rows, side="left")
        shape = (B, int(rank.max()) + 1)
        idx, key, scale = np.full(shape, n.size, dtype=np.int64), np.full(shape, -1, dtype=np.int64), np.empty(shape, dtype=object)
        idx[rows, rank], key[rows, rank] = out, inv.reshape(-1)[order]
        scale[rows, rank] = sc.scale[ok][order]
        self.elementwise["shared"] += int(pos.size)
        return Scaled(idx, key, scale, np.asarray(table, dtype=object))

    def shared_fraction(self) -> float:
        """The fraction of the elementwise entries so far that ran on shared series (0 before any)."""
        total = self.elementwise["shared"] + self.elementwise["own"]
        return self.elementwise["shared"] / total if total else 0.0


def _objects(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, v in enumerate(items):
        out[i] = v
    return out
