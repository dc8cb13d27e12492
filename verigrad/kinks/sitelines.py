"""Evaluators of the sites' condition values at points along a direction.

:func:`verigrad.kinks.crossings.stencil_crossings`, :func:`~verigrad.kinks.crossings.distance_along`
and the location of a sign change need the conditions of the sites at many points x + t e.
Three evaluators give them, behind one small interface (``index``: the condition entries each
evaluates per site; ``base()``: their values at the point; ``at(rows)``: their values at a
batch of points, with the rows that left a domain):

* :class:`_FullSites` evaluates the sites' arguments everywhere, in mpmath (any direction);
* :class:`_ConeSites`, along a coordinate, only the condition entries the coordinate's cone
  reaches (:class:`verigrad.engine.cone.Cone`): the others cannot change sign;
* :class:`_DenseSites`, along a dense direction of a large graph, on the vectorised
  double-double engine, with the balls proving the signs (rows they cannot decide are
  evaluated exactly).

:func:`_site_line` picks the cheapest that applies.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Mapping, Sequence

import mpmath
import numpy as np

from verigrad.engine.backends import MPBackend
from verigrad.engine.model import Model
from verigrad.fd.directions import Direction
from verigrad.fd.nodes import batched_leaves, rounded_line_nodes
from verigrad.kinks.conditions import _conditions, _gap, _mp_base
from verigrad.kinks.sites import POLE_FUNCTIONS, Site, SiteRule

__all__: list[str] = []


class _FullSites:
    """Condition values of sites at points along a direction: the sites' arguments evaluated
    everywhere, in mpmath at the ambient precision (any direction)."""

    prec = math.inf  # evaluates at the ambient precision, whatever it is

    def __init__(self, model: Model | None, point: Mapping[str, np.ndarray], sites: Sequence[Site], *,
                 base: Mapping[str, np.ndarray] | None = None):
        self.sites = list(sites)
        self._base = base if base is not None else _mp_base(model, point)
        self.index = [list(np.ndindex(*s.shape)) for s in self.sites]

    def x(self, name: str, i: int):
        return self._base[name].reshape(-1)[i]

    def base(self) -> list[np.ndarray]:
        """Condition values at the point, flat per site (raises DomainError outside the domain)."""
        v0 = _conditions(self.sites, self._base, MPBackend(), 1)[0]
        return [np.asarray(v[0], dtype=object).reshape(-1) for v in v0]

    def at(self, rows: list[dict]) -> tuple[list[np.ndarray], dict[int, str]]:
        """(B, entries) condition values per site at the points ``rows`` ({(name, i): value}), and
        the rows whose evaluation left a domain (with the message)."""
        if not rows:
            return [np.empty((0, len(ix)), dtype=object) for ix in self.index], {}
        vals, failed = _conditions(self.sites, batched_leaves(self._base, rows), MPBackend(), len(rows))
        return [np.asarray(v, dtype=object).reshape(len(rows), -1) for v in vals], failed


class _ConeSites:
    """The same along a coordinate, from the line's cone (:class:`verigrad.engine.cone.Cone`):
    only the condition entries whose arguments the cone reaches can change, and only they are
    evaluated (in Arb at ``prec`` bits, then as mpmath numbers at the ambient precision).
    ``index`` lists those entries per site."""

    def __init__(self, model: Model, point: Mapping[str, np.ndarray], direction: Direction,
                 sites: Sequence[Site], prec: int):
        from verigrad.engine.cone import Cone, forward_cone
        from verigrad.expr.graph import topological

        self.model, self.sites, self.prec, self.point = model, list(sites), int(prec), point
        self.var = direction.variable
        shape = model.shape(self.var)
        self.i = int(np.ravel_multi_index(direction.index, shape)) if direction.index else 0
        self.x0 = float(np.asarray(point[self.var], dtype=np.float64).reshape(-1)[self.i])
        args = {a.id: a for s in self.sites for a in s.arguments}
        moving = [a for a in args.values() if self.var in a.variables]
        C = forward_cone(model, topological(moving), self.var, self.i) if moving else {}
        self.cp, self.maps, self.groups = [], [], []
        want: dict[int, list] = {}
        for s in self.sites:
            if s.rule is SiteRule.MAX:
                from verigrad.engine.cone import _groups

                red, members = _groups(model, s.node)
                x = s.arguments[0]
                touched = np.unique(red[C[x.id]]) if x.id in C else np.zeros(0, dtype=np.int64)
                mem = members[touched]
                cp = np.unique(mem.reshape(-1))
                self.groups.append(mem)
                self.maps.append(None)
                want.setdefault(x.id, []).append(mem.reshape(-1))
            else:
                nd = len(s.shape)
                maps = []
                hit = np.zeros(int(np.prod(s.shape, dtype=np.int64)), dtype=bool)
                for a in s.arguments:
                    ar = np.arange(a.size, dtype=np.int64).reshape((1,) * (nd - len(a.shape)) + a.shape)
                    m = np.ascontiguousarray(np.broadcast_to(ar, s.shape)).reshape(-1)
                    maps.append(m)
                    if a.id in C:
                        hit |= np.isin(m, C[a.id])
                cp = np.flatnonzero(hit)
                for a, m in zip(s.arguments, maps):
                    want.setdefault(a.id, []).append(m[cp])
                self.groups.append(None)
                self.maps.append(maps)
            self.cp.append(cp)
        self.index = [[tuple(int(v) for v in np.unravel_index(p, s.shape)) if s.shape else () for p in cp]
                      for s, cp in zip(self.sites, self.cp)]
        base = {args[a]: np.unique(np.concatenate(ps)) for a, ps in want.items() if sum(len(p) for p in ps)}
        self.cone = Cone(model, point, self.var, self.i, prec=self.prec, values=moving, base=base)

    def x(self, name: str, i: int):
        return mpmath.mpf(self.x0)

    def _arg_values(self, a, q: np.ndarray, run) -> np.ndarray:
        """Values (B or 1, |q|) of argument node ``a`` at flat entries ``q`` (balls)."""
        base = self.cone.base(a, q)[None, :]
        if run is None:
            return base
        c = self.cone.positions(a)
        out = np.repeat(base, run.B, axis=0)
        if c.size:
            pos = np.searchsorted(c, q)
            pos = np.minimum(pos, c.size - 1)
            hit = c[pos] == q
            if hit.any():
                new = run.values(a)
                out[:, hit] = new[:, pos[hit]]
        return out

    def _conditions(self, run) -> list[np.ndarray]:
        """Condition values per site at its entries ``cp``: at the point (``run`` None) or per row."""
        from verigrad.engine.arb import to_mpf

        conv = np.frompyfunc(lambda v: mpmath.mpf(0) if v is None else to_mpf(v), 1, 1)  # failed rows: None later
        out = []
        for s, cp, maps, mem in zip(self.sites, self.cp, self.maps, self.groups):
            if not cp.size:
                out.append(np.empty((1 if run is None else run.B, 0), dtype=object))
                continue
            if s.rule is SiteRule.MAX:
                x = conv(self._arg_values(s.arguments[0], mem.reshape(-1), run)).astype(object)
                x = x.reshape(x.shape[0], mem.shape[0], mem.shape[1])
                gap = _gap(x, (1,)).reshape(x.shape[0], -1)
                flat = mem.reshape(-1)
                order = np.argsort(flat, kind="stable")
                out.append(gap[:, order[np.searchsorted(flat[order], cp)]])
                continue
            vals = [conv(self._arg_values(a, m[cp], run)).astype(object) for a, m in zip(s.arguments, maps)]
            out.append(_compact_condition(s, vals))
        return out

    def base(self) -> list[np.ndarray]:
        return [v[0] for v in self._conditions(None)]

    def at(self, rows: list[dict]) -> tuple[list[np.ndarray], dict[int, str]]:
        from verigrad.engine import arb as ab
        from verigrad.engine.cone import Cone

        if not rows:
            return [np.empty((0, len(ix)), dtype=object) for ix in self.index], {}
        cone = self.cone
        for _ in range(3):
            new = [_exact_arb(row[(self.var, self.i)], cone.prec) for row in rows]
            try:
                with ab.arb_precision(cone.prec):
                    run = cone.run(new)
                break
            except ab.Undecided:  # a node next to a kink upstream of a site: more bits, then mpmath
                cone = Cone(self.model, self.point, self.var, self.i, prec=2 * cone.prec, values=self.cone.value_nodes,
                            base={n: self.cone.need[n.id] for n in self.cone.order if n.id in self.cone.need})
        else:
            vals, failed = _FullSites(self.model, self.point, self.sites).at(rows)
            return [v[:, cp] for v, cp in zip(vals, self.cp)], failed
        vals = self._conditions(run)
        for r in run.failed:
            for v in vals:
                v[r] = None
        return vals, dict(run.failed)


def _exact_arb(v, prec: int):
    """The exact Arb ball of an mpmath number."""
    from verigrad.engine import arb as ab

    sign, man, exp, _ = v._mpf_
    if not man:
        return ab.arb(0)
    m = -int(man) if sign else int(man)
    with ab.arb_precision(max(prec, int(man).bit_length() + 16)):
        return ab.arb(m) * ab.arb(2) ** int(exp)


def _compact_condition(site: Site, args: Sequence[np.ndarray]) -> np.ndarray:
    """:func:`verigrad.kinks.conditions._condition` on arguments already gathered per entry
    ((B, n) arrays of the condition's entries), for the elementwise rules."""
    r = site.rule
    if r in (SiteRule.RELU, SiteRule.ABS, SiteRule.PRODUCT, SiteRule.NORM):
        return args[0]
    if r is SiteRule.MAXIMUM:
        return args[0] - args[1] if site.name == "maximum" else args[1] - args[0]
    if r is SiteRule.FUNCTION_DOMAIN:
        x = args[0]
        if site.name == "log1p":
            return x + 1
        if site.name in ("arcsin", "arccos"):
            return 1 - x * x
        if site.name == "tan":
            return np.frompyfunc(mpmath.cos, 1, 1)(x).astype(object)
        if site.name in POLE_FUNCTIONS:
            return np.frompyfunc(mpmath.rgamma, 1, 1)(x).astype(object)
        return x
    return args[0]  # DIVISION, POWER


def _site_line(model: Model, point: Mapping[str, np.ndarray], direction: Direction, sites: Sequence[Site],
               prec: int):
    """The cheapest evaluator of the sites' conditions along ``direction`` (see :class:`_ConeSites`)."""
    if direction.variable is not None:
        from verigrad.engine import arb as ab

        if ab.available():
            from verigrad.engine.cone import ConeUnsupported

            try:
                return _ConeSites(model, point, direction, sites, prec)
            except (ConeUnsupported, ArithmeticError):  # Undecided or a domain edge at the point: evaluate fully
                pass
    elif _site_entries(sites) > _DENSE_SITE_ENTRIES:
        try:
            return _DenseSites(model, point, direction, sites)
        except ArithmeticError:  # FastPathUnavailable, Undecided, a domain edge: evaluate fully
            pass
    return _FullSites(model, point, sites)


#: along a dense direction, sites whose arguments hold more entries than this are checked with the
#: vectorised double-double engine (:class:`_DenseSites`); smaller ones exactly in mpmath
_DENSE_SITE_ENTRIES = 20_000


def _site_entries(sites: Sequence[Site]) -> int:
    from verigrad.expr.graph import topological

    return sum(n.size for n in topological([a for s in sites for a in s.arguments]))


class _DenseSites:
    """Condition values along a dense direction (every entry moves) from the vectorised
    double-double engine (:mod:`verigrad.engine.fastball`): the points are rows of descriptors
    (``{"t": t}`` for x + t e, ``{"y": arrays}`` for a rounded stencil node), the sites' arguments
    are evaluated for a batch of rows at once, and the values returned are the balls' midpoints
    (float64) whose signs the balls prove. Rows the balls cannot decide (or that leave a domain)
    are evaluated again exactly, in mpmath (:class:`_FullSites`)."""

    prec = math.inf

    def __init__(self, model: Model, point: Mapping[str, np.ndarray], direction: Direction, sites: Sequence[Site]):
        for s in sites:
            if s.rule is SiteRule.MAX or (s.rule is SiteRule.FUNCTION_DOMAIN
                                          and (s.name == "tan" or s.name in POLE_FUNCTIONS)):
                raise ArithmeticError("a site rule without a double-double condition")
        self.model, self.point, self.sites = model, point, list(sites)
        self.direction = direction
        self.e = {n: np.asarray(v, dtype=np.float64) for n, v in direction.vector.items()}
        self.index = [list(np.ndindex(*s.shape)) for s in self.sites]
        self._full = None
        self._base = self._evaluate([{}])
        if self._base[1]:
            raise ArithmeticError("the sites cannot be decided at the point")
        self._base = [v[0] for v in self._base[0]]

    def full(self) -> _FullSites:
        if self._full is None:
            self._full = _FullSites(self.model, self.point, self.sites)
        return self._full

    def base(self) -> list[np.ndarray]:
        return self._base

    def line_rows(self, ts) -> list[dict]:
        return [{"t": t} for t in ts]

    def stencil_rows(self, ts, dtype) -> list[dict]:
        if dtype is None:
            return [{"t": t} for t in ts]
        rows = []
        for t in ts:
            y = {}
            for name, e in self.e.items():
                x = np.asarray(self.point[name], dtype=np.float64)
                y[name] = rounded_line_nodes(x, e, Fraction(t), dtype.numpy)
            rows.append({"y": y, "t": t})
        return rows

    def _exact_rows(self, rows: list[dict]) -> list[dict]:
        """The rows as {(name, i): mpf} points, for an exact evaluation."""
        out = []
        for row in rows:
            d = {}
            for name, e in self.e.items():
                x = np.asarray(self.point[name], dtype=np.float64).reshape(-1)
                ef = e.reshape(-1)
                if "y" in row:
                    yv = row["y"][name].reshape(-1)
                    for i in np.flatnonzero(ef):
                        d[(name, int(i))] = mpmath.mpf(float(yv[i]))
                else:
                    t = row.get("t", 0)
                    t = mpmath.mpf(t.numerator) / t.denominator if isinstance(t, Fraction) else mpmath.mpf(t)
                    for i in np.flatnonzero(ef):
                        d[(name, int(i))] = mpmath.mpf(float(x[i])) + t * mpmath.mpf(float(ef[i]))
            out.append(d)
        return out

    def _leaves(self, rows: list[dict]):
        from verigrad.engine import fastball as fb

        B = len(rows)
        out = {}
        for name in self.model.leaves:
            x = np.asarray(self.point[name], dtype=np.float64)
            e = self.e.get(name)
            if e is None or not np.any(e) or not any(rows):
                out[name] = fb.from_float(x[None, ...])
                continue
            hi, lo, rad = (np.zeros((B,) + x.shape) for _ in range(3))
            for b, row in enumerate(rows):
                if "y" in row:
                    hi[b] = row["y"][name]
                elif "t" in row:
                    t = row["t"]
                    t = t if isinstance(t, Fraction) else _mpf_fraction(t)
                    tb = fb.from_fraction(t)
                    prod = fb.ball_mul(tb.map(lambda a: np.broadcast_to(np.asarray(a, dtype=np.float64), x.shape)),
                                       fb.from_float(e))
                    z = fb.ball_add(fb.from_float(x), prod)
                    hi[b], lo[b], rad[b] = (np.broadcast_to(a, x.shape) for a in (z.hi, z.lo, z.rad))
                else:
                    hi[b] = x
            out[name] = fb.Ball(hi, lo, rad)
        return out

    def _evaluate(self, rows: list[dict]) -> tuple[list[np.ndarray], list[int]]:
        """Midpoints (B, entries) per site and the rows the balls do not decide."""
        from verigrad.engine import fastball as fb

        args = list({a.id: a for s in self.sites for a in s.arguments}.values())
        vals = fb.evaluate(args, self._leaves(rows))
        by_id = {a.id: v for a, v in zip(args, vals)}
        B = len(rows)
        out, bad = [], np.zeros(B, dtype=bool)
        for s in self.sites:
            nd = len(s.shape)
            bs = [by_id[a.id].map(lambda v: _align_b(v, nd)) for a in s.arguments]
            c = _ball_condition(s, bs)
            c = c.map(lambda v: np.broadcast_to(v, (c.shape[0],) + s.shape))
            pos, neg, zero = fb._signs(c)
            undecided = ~(pos | neg | zero)
            bad |= np.broadcast_to(undecided.reshape(undecided.shape[0], -1).any(axis=1), (B,))
            mid = np.where(zero, 0.0, np.broadcast_to(c.hi, c.shape))
            out.append(np.broadcast_to(mid.reshape(mid.shape[0], -1), (B, int(np.prod(s.shape, dtype=np.int64)))))
        return out, [int(b) for b in np.flatnonzero(bad)]

    def at(self, rows: list[dict]) -> tuple[list[np.ndarray], dict[int, str]]:
        from verigrad.engine.fastball import FastPathUnavailable

        if not rows:
            return [np.empty((0, len(ix)), dtype=object) for ix in self.index], {}
        try:
            vals, bad = self._evaluate(rows)
        except (FastPathUnavailable, ArithmeticError):  # Undecided or a domain error in some row
            vals, bad = [np.zeros((len(rows), len(ix))) for ix in self.index], list(range(len(rows)))
        vals = [np.asarray(v, dtype=object).copy() for v in vals]
        failed: dict[int, str] = {}
        if bad:
            exact, fails = self.full().at(self._exact_rows([rows[r] for r in bad]))
            for j, r in enumerate(bad):
                if j in fails:
                    failed[r] = fails[j]
                    for v in vals:
                        v[r] = None
                else:
                    for v, ex in zip(vals, exact):
                        v[r] = ex[j]
        return vals, failed

    def messages(self, rows, failed):
        return failed


def _mpf_fraction(v) -> Fraction:
    sign, man, exp, _ = v._mpf_
    q = Fraction(int(man)) * (Fraction(2) ** int(exp))
    return -q if sign else q


def _align_b(a: np.ndarray, nd: int) -> np.ndarray:
    missing = nd - (a.ndim - 1)
    return a if missing <= 0 else a.reshape((a.shape[0],) + (1,) * missing + a.shape[1:])


def _ball_condition(site: Site, args):
    """:func:`verigrad.kinks.conditions._condition` on double-double balls (the rules with one)."""
    from verigrad.engine import fastball as fb

    r = site.rule
    if r is SiteRule.MAXIMUM:
        return fb.ball_sub(args[0], args[1]) if site.name == "maximum" else fb.ball_sub(args[1], args[0])
    if r is SiteRule.FUNCTION_DOMAIN:
        x = args[0]
        if site.name == "log1p":
            return fb.ball_add(x, fb.from_float(np.ones((1,) * x.ndim)))
        if site.name in ("arcsin", "arccos"):
            return fb.ball_sub(fb.from_float(np.ones((1,) * x.ndim)), fb.ball_mul(x, x))
        return x
    return args[0]
