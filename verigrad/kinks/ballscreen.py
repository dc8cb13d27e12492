"""Certified signs of the sites' conditions at many single-coordinate nodes at once.

A full finite-difference gradient moves one coordinate per stencil node, so deciding which
stencils cross a site means reading the sign of every site condition at ``K n`` points
(``K`` nodes, ``n`` coordinates).  :func:`certified_signs` evaluates the sites' arguments
for a whole batch of such points on the vectorised double-double ball engine
(:mod:`verigrad.engine.fastball`): every ball provably contains the exact condition value,
so its sign is decided wherever the ball does not contain 0 (or is exactly 0).  Only the
rows with an entry the balls cannot decide (or whose ball evaluation cannot be made: an
undecidable ``relu`` upstream, a value out of the fast range, a domain edge) are evaluated
again exactly, in mpmath (:func:`verigrad.kinks.conditions._conditions`).

The ``max`` sites (pooling windows, reductions) have the condition
``x_i - max_{j != i} x_j``, 0 exactly at a tie; on balls it is decided from outward-rounded
interval bounds of the entries (:func:`_max_gap_signs`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import mpmath
import numpy as np

from verigrad.engine.model import Model
from verigrad.errors import DomainError
from verigrad.kinks.sites import POLE_FUNCTIONS, Site, SiteRule

__all__: list[str] = []

#: the sign code of an entry the balls cannot decide
UNDECIDED = 3

#: bound on (rows in one ball batch) x (entries of the sites' argument graph), for memory
_BATCH_ENTRIES = 4_000_000

#: groups of a ``max`` site up to this size are checked for exact ties pairwise
_PAIRWISE_GROUP = 64


def _upper(b) -> np.ndarray:
    """An upper bound of every value in the balls, rounded outward (one ulp per rounded operation)."""
    with np.errstate(over="ignore", invalid="ignore"):
        s = np.nextafter(b.lo + b.rad, np.inf)
        return np.nextafter(b.hi + s, np.inf)


def _lower(b) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        s = np.nextafter(b.lo - b.rad, -np.inf)
        return np.nextafter(b.hi + s, -np.inf)


def _grouped(a: np.ndarray, axes: tuple[int, ...] | None):
    """(view with the reduced axes flattened last, inverse): ``a`` has a batch axis first."""
    nd = a.ndim - 1
    red = tuple(range(1, nd + 1)) if axes is None else tuple(ax + 1 for ax in axes)
    kept = tuple(ax for ax in range(1, nd + 1) if ax not in red)
    perm = (0,) + kept + red
    xt = np.transpose(a, perm)
    shp = xt.shape
    m = int(np.prod([a.shape[ax] for ax in red], dtype=np.int64))
    flat = np.ascontiguousarray(xt).reshape(shp[:1 + len(kept)] + (m,))
    inv = np.argsort(perm)
    return flat, (lambda g: np.transpose(g.reshape(shp), inv))


def _others_max(v: np.ndarray) -> np.ndarray:
    """``max_{j != i} v_j`` along the last axis (no sort: the top value, and the top of the rest)."""
    top1 = np.max(v, axis=-1, keepdims=True)
    is_top = v == top1
    rest = np.max(np.where(is_top, -np.inf, v), axis=-1, keepdims=True)
    # an entry equal to the top one: the max of the others is the second, the top itself when tied
    top2 = np.where(np.sum(is_top, axis=-1, keepdims=True) > 1, top1, rest)
    return np.where(is_top, top2, top1)


def _max_gap_signs(site: Site, x) -> tuple[np.ndarray, np.ndarray]:
    """(midpoints, sign codes) of ``x_i - max_{j != i} x_j`` per reduction group, from balls ``x``.

    Notes
    -----
    With every exact value of entry i in ``[L_i, U_i]`` (outward-rounded), the gap is certainly
    > 0 when ``L_i > max_{j != i} U_j`` and certainly < 0 when ``U_i < max_{j != i} L_j``.  It is
    exactly 0 when entry i is exact (radius 0) and some other exact entry has the same
    double-double value while every entry of another value is certainly below it.  Anything
    else is undecided.
    """
    shape = np.broadcast_shapes(x.hi.shape, x.lo.shape, x.rad.shape)
    hi, lo, rad = (np.broadcast_to(a, shape) for a in (x.hi, x.lo, x.rad))
    U, _ = _grouped(_upper(x) + np.zeros(shape), site.axes)
    L, _ = _grouped(_lower(x) + np.zeros(shape), site.axes)
    H, back = _grouped(hi, site.axes)
    Lo, _ = _grouped(lo, site.axes)
    Rd, _ = _grouped(rad, site.axes)
    with np.errstate(invalid="ignore"):
        pos = L > _others_max(U)
        neg = U < _others_max(L)
    zero = np.zeros(H.shape, dtype=bool)
    m = H.shape[-1]
    if m <= _PAIRWISE_GROUP:
        exact = Rd == 0
        same = ((H[..., :, None] == H[..., None, :]) & (Lo[..., :, None] == Lo[..., None, :])
                & exact[..., :, None] & exact[..., None, :])
        eye = np.eye(m, dtype=bool)
        tied = np.any(same & ~eye, axis=-1)
        below = U[..., None, :] < L[..., :, None]  # [i, j]: entry j certainly below entry i
        zero = tied & np.all(same | below, axis=-1)
    code = np.where(pos, 1, np.where(neg, -1, np.where(zero, 0, UNDECIDED))).astype(np.int8)
    mid = np.where(zero, 0.0, H - _others_max(H))
    n = int(np.prod(site.shape, dtype=np.int64))
    return back(mid).reshape(-1, n), back(code).reshape(-1, n)


def _ball_site(site: Site, args) -> tuple[np.ndarray, np.ndarray]:
    """(midpoints, sign codes), each (B, entries), of one site from its arguments' balls."""
    from verigrad.engine import fastball as fb
    from verigrad.kinks.sitelines import _align_b, _ball_condition

    nd = len(site.shape)
    n = int(np.prod(site.shape, dtype=np.int64))
    if site.rule is SiteRule.MAX:
        return _max_gap_signs(site, args[0])
    bs = [a.map(lambda v: _align_b(v, nd)) for a in args]
    c = _ball_condition(site, bs)
    B = max(c.hi.shape[0], c.lo.shape[0], c.rad.shape[0])
    c = c.map(lambda v: np.broadcast_to(v, (B,) + site.shape))
    pos, neg, zero = fb._signs(c)
    code = np.where(pos, 1, np.where(neg, -1, np.where(zero, 0, UNDECIDED))).astype(np.int8)
    mid = np.where(zero, 0.0, c.hi)
    return mid.reshape(B, n), code.reshape(B, n)


def _ball_ready(sites: Sequence[Site]) -> bool:
    """Whether every site's condition has a ball rule (tan and the Γ poles have none)."""
    return not any(s.rule is SiteRule.FUNCTION_DOMAIN and (s.name == "tan" or s.name in POLE_FUNCTIONS)
                   for s in sites)


def _ball_batch(model: Model, point: Mapping[str, np.ndarray], sites: Sequence[Site], args, var: str | None,
                flat_idx: np.ndarray, values: np.ndarray):
    """Ball evaluation of one batch (rows: ``var[flat_idx[r]] = values[r]``); raises when it cannot."""
    from verigrad.engine import fastball as fb

    leaves = {}
    for name in model.leaves:
        x = np.asarray(point[name], dtype=np.float64)
        if name == var and len(values):
            a = np.repeat(x[None, ...], len(values), axis=0)
            a.reshape(len(values), -1)[np.arange(len(values)), flat_idx] = values
            leaves[name] = fb.from_float(a)
        else:
            leaves[name] = fb.from_float(x[None, ...])
    vals = fb.evaluate(args, leaves)
    by_id = {a.id: v for a, v in zip(args, vals)}
    return [_ball_site(s, [by_id[a.id] for a in s.arguments]) for s in sites]


def _exact_rows(model: Model, point, sites: Sequence[Site], rows: list[dict], prec: int
                ) -> tuple[list[np.ndarray], list[np.ndarray], dict[int, str]]:
    """(midpoints as float, exact signs, failed rows) of rows {(name, i): float} in mpmath."""
    from verigrad.engine.backends import MPBackend
    from verigrad.fd.nodes import batched_leaves
    from verigrad.kinks.conditions import _conditions, _mp_base, _signs

    with mpmath.workprec(prec):
        base = _mp_base(model, point)
        mrows = [{k: mpmath.mpf(float(v)) for k, v in row.items()} for row in rows]
        vals, failed = _conditions(sites, batched_leaves(base, mrows), MPBackend(), len(rows)) if rows else ([], {})
        mids, codes = [], []
        for s, v in zip(sites, vals):
            v = np.asarray(v, dtype=object).reshape(len(rows), -1)
            for r in failed:
                v[r] = mpmath.mpf(0)
            codes.append(_signs(v).astype(np.int8))
            mids.append(np.asarray([[float(q) for q in row] for row in v], dtype=np.float64).reshape(v.shape))
    return mids, codes, failed


def _graph_entries(sites: Sequence[Site]) -> int:
    from verigrad.expr.graph import topological

    return sum(n.size for n in topological([a for s in sites for a in s.arguments]))


def certified_signs(model: Model, point: Mapping[str, np.ndarray], sites: Sequence[Site], var: str | None,
                    flat_idx: Sequence[int], values: Sequence[float], *, prec: int = 256, exact: bool = True
                    ) -> tuple[list[np.ndarray], list[np.ndarray], dict[int, str]]:
    """Proved signs of every site's condition at points that change one entry of ``var`` each.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        The base point (float arrays, taken exactly).
    sites : sequence of Site
    var : str or None
        The variable the rows change (None: the point itself, one row).
    flat_idx : sequence of int
        Flat entry of ``var`` that row r sets.
    values : sequence of float
        The float value it sets (exactly).
    prec : int
        mpmath precision (bits) of the rows evaluated exactly.
    exact : bool
        With False, entries the balls cannot decide keep the code :data:`UNDECIDED` (3) and
        nothing is evaluated in mpmath (a row the ball engine cannot evaluate at all is undecided
        in every entry).

    Returns
    -------
    mids : list of ndarray
        Per site, (R, entries) float64 approximations of the condition values (0 exactly
        where the value is exactly 0).
    signs : list of ndarray
        Per site, (R, entries) int8 sign codes -1, 0, 1, each proved: by a double-double ball
        that excludes 0 (or is exactly 0), else by an exact mpmath evaluation of the row.
    failed : dict of int to str
        Rows whose exact evaluation left a domain (their signs are meaningless), with the message.
    """
    flat_idx = np.asarray(flat_idx, dtype=np.int64).reshape(-1)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    R = 1 if var is None else len(values)
    ns = [int(np.prod(s.shape, dtype=np.int64)) for s in sites]
    mids = [np.zeros((R, n)) for n in ns]
    codes = [np.full((R, n), UNDECIDED, dtype=np.int8) for n in ns]
    args = list({a.id: a for s in sites for a in s.arguments}.values())
    redo = np.zeros(R, dtype=bool)
    if _ball_ready(sites) and args:
        per = max(1, _BATCH_ENTRIES // max(1, _graph_entries(sites)))
        stack = [(s, min(R, s + per)) for s in range(0, R, per)][::-1]
        while stack:
            a, b = stack.pop()
            try:
                out = _ball_batch(model, point, sites, args, var, flat_idx[a:b], values[a:b])
            except (ArithmeticError, DomainError):  # Undecided, FastPathUnavailable, a domain edge
                if b - a == 1:
                    redo[a] = True
                else:  # split: the rows that the balls can decide keep their fast answer
                    c = (a + b) // 2
                    stack.extend([(c, b), (a, c)])
                continue
            for k, (mid, code) in enumerate(out):
                mids[k][a:b] = mid
                codes[k][a:b] = code
    else:
        redo[:] = True
    for k in range(len(sites)):
        redo |= np.any(codes[k] == UNDECIDED, axis=1)
    failed: dict[int, str] = {}
    if not exact:  # rows the ball engine could not evaluate are UNDECIDED everywhere already
        return mids, codes, failed
    rows = np.flatnonzero(redo)
    if rows.size:
        exact_rows = [{} if var is None else {(var, int(flat_idx[r])): float(values[r])} for r in rows]
        em, ec, ef = _exact_rows(model, point, sites, exact_rows, prec)
        for k in range(len(sites)):
            mids[k][rows] = em[k]
            codes[k][rows] = ec[k]
        failed = {int(rows[j]): msg for j, msg in ef.items()}
    return mids, codes, failed


#: a vertex row of a subgradient set whose change of every gradient entry is proved below this
#: fraction of the gradient's largest entry (and of 1) needs no exact evaluation: it is taken as
#: no change (verigrad.kinks.subgradients.subgradient_set)
BALL_DROP = 2.0 ** -64


def _compiled(entries, conv: dict) -> tuple:
    """(batch rows, index arrays per axis, hi, lo, rad) of assignments [(row, index, Fraction)]."""
    from verigrad.engine import fastball as fb

    for q in {e[2] for e in entries} - conv.keys():
        w = fb.from_fraction(q)
        conv[q] = (float(w.hi), float(w.lo), float(w.rad))
    rows = np.array([r for r, _, _ in entries], dtype=np.int64)
    nd = len(entries[0][1]) if entries else 0
    idx = tuple(np.array([e[1][d] for e in entries], dtype=np.int64) for d in range(nd))
    vals = np.array([conv[e[2]] for e in entries], dtype=np.float64).reshape(-1, 3)
    return (rows,) + idx, vals


def _ball_evaluate_with(nodes, leaves, common: dict, per_row: dict, B: int):
    """:func:`verigrad.kinks.subgradients._evaluate_with` on double-double balls: ``common`` and
    ``per_row`` map node ids to compiled assignments (:func:`_compiled`): the first replace the
    entries in every row (their row index is 0, on a batch axis of 1), the second in their row."""
    from verigrad.engine import fastball as fb
    from verigrad.expr.graph import topological

    values: dict = {}
    for n in topological(nodes):
        v = fb.eval_ball(n, [values[a.id] for a in n.args], leaves)
        for table in (common, per_row):
            if n.id not in table:
                continue
            where, vals = table[n.id]
            shp = (v.shape[0] if table is common else max(B, v.shape[0]),) + tuple(n.shape)
            v = fb.Ball(*(np.array(np.broadcast_to(a, shp), dtype=np.float64) for a in (v.hi, v.lo, v.rad)))
            if not vals.size:
                continue
            sel = (slice(None),) + where[1:] if table is common else where  # common: the same in every row
            v.hi[sel], v.lo[sel], v.rad[sel] = vals[:, 0], vals[:, 1], vals[:, 2]
        values[n.id] = v
    return [values[o.id] for o in nodes]


def negligible_rows(model: Model, point: Mapping[str, np.ndarray], nodes, common, extras,
                    max_entries: int = 2_000_000) -> np.ndarray:
    """Which rows of overrides provably change no entry of ``nodes`` by more than :data:`BALL_DROP`.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
    nodes : sequence of Node
        The gradient nodes.
    common : list of (Node, index, Fraction)
        The assignments of the base row (every row has them).
    extras : list of list of (Node, index, Fraction)
        Each row's assignments on top of them.
    max_entries : int
        Memory bound: rows x graph entries per ball batch.

    Returns
    -------
    ndarray of bool, (len(extras),)
        True where ``|G(row) - G(base)| <= BALL_DROP max(1, max |G(base)|)`` holds for every
        entry, proved with outward-rounded bounds of the balls' difference.  False where it does
        not or cannot be told (a batch the ball engine cannot evaluate: all False).
    """
    from verigrad.engine import fastball as fb
    from verigrad.engine.ballcore import ball_sub
    from verigrad.expr.graph import topological

    out = np.zeros(len(extras), dtype=bool)
    conv: dict = {}
    by_node: dict = {}
    for node, idx, q in common:
        by_node.setdefault(node.id, []).append((0, tuple(idx), q))
    com = {k: _compiled(v, conv) for k, v in by_node.items()}
    try:
        leaves = {n: fb.from_float(np.asarray(point[n], dtype=np.float64)[None, ...]) for n in model.leaves}
        base = _ball_evaluate_with(nodes, leaves, com, {}, 1)
    except (ArithmeticError, DomainError, ValueError):
        return out
    scale = 1.0
    for b in base:
        lo = np.abs(b.hi) - np.abs(b.lo) - b.rad
        if lo.size:
            scale = max(scale, float(np.max(lo)) * (1 - 2.0 ** -40))
    limit = BALL_DROP * scale
    per = max(1, max_entries // max(1, sum(n.size for n in topological(list(nodes)))))
    for start in range(0, len(extras), per):
        part = extras[start:start + per]
        rows: dict = {}
        for r, row in enumerate(part):
            for node, idx, q in row:
                rows.setdefault(node.id, []).append((r, tuple(idx), q))
        rows = {k: _compiled(v, conv) for k, v in rows.items()}
        try:
            vals = _ball_evaluate_with(nodes, leaves, com, rows, len(part))
        except (ArithmeticError, DomainError, ValueError):
            continue
        ok = np.ones(len(part), dtype=bool)
        for v, b in zip(vals, base):
            d = ball_sub(v, b)
            shp = (len(part),) + tuple(np.broadcast_shapes(d.hi.shape, d.lo.shape, d.rad.shape)[1:])
            up = np.abs(np.broadcast_to(d.hi, shp)) + np.abs(np.broadcast_to(d.lo, shp)) + np.broadcast_to(d.rad, shp)
            with np.errstate(invalid="ignore"):
                ok &= np.all((up * (1 + 2.0 ** -40) <= limit).reshape(len(part), -1), axis=1)
        out[start:start + len(part)] = ok
    return out
