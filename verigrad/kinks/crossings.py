"""Where a line through the point meets a site, and which stencil nodes lie across one.

:func:`distance_along` gives, per site entry, the signed distance along a direction
at which its condition changes sign; :func:`stencil_crossings` checks exactly which
sites the nodes x_p + t e of a stencil put on another side than the point (or
outside the domain), locates each sign change and words it
(``stencil of central h=1e-3 crosses relu(Z1[2, 0]) at distance 4.0e-4``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping, Sequence

import mpmath
import numpy as np

from verigrad.engine.backends import round_fraction
from verigrad.engine.model import Model
from verigrad.errors import DomainError
from verigrad.fd.directions import Direction
from verigrad.kinks.conditions import DEFAULT_PREC, _sgn, _signs, _violates
from verigrad.kinks.sitelines import _ConeSites, _DenseSites, _FullSites, _site_line
from verigrad.kinks.sites import Site, SiteKind, SiteRule, find_sites
from verigrad.spec import Dtype

__all__ = ["SiteDistance", "distance_along", "Crossing", "stencil_crossings"]


# ---------------------------------------------------------------------------
# distances along a direction
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SiteDistance:
    """How far along a direction each entry of a site's condition is from changing sign.

    Attributes
    ----------
    site : Site
    value : ndarray of mpf
        Exact condition values at the point, ``site.shape``.
    slope : ndarray of float64
        d value / dt along the direction (exact directional derivative, rounded).
    crossing : ndarray of float64
        Signed t of the linearised sign change ``-value / slope``; ``inf`` where the
        condition does not depend on the direction; 0 where the value is exactly 0.
    distance : ndarray of float64
        ``|crossing|``.
    verified : ndarray of bool
        The sign change was confirmed by exact evaluation at ``t (1 -+ 2^-12)``.
    """

    site: Site
    value: np.ndarray
    slope: np.ndarray
    crossing: np.ndarray
    distance: np.ndarray
    verified: np.ndarray

    def nearest(self) -> tuple[tuple[int, ...], float]:
        """The entry nearest to a sign change and its distance (``((), inf)`` if none)."""
        if self.distance.size == 0 or not np.any(np.isfinite(self.distance)):
            return (), math.inf
        flat = int(np.nanargmin(self.distance.reshape(-1)))
        idx = tuple(int(i) for i in np.unravel_index(flat, self.distance.shape)) if self.distance.shape else ()
        return idx, float(self.distance.reshape(-1)[flat])


def _direction_rows(line, entries: Sequence[tuple[str, int, Fraction]], ts: Sequence[Any]) -> list[dict]:
    """The points x + t e as rows {(name, i): value}; ``line`` is a site line or exact leaves (a dict)."""
    if hasattr(line, "line_rows"):
        return line.line_rows(ts)
    x = line.x if hasattr(line, "x") else (lambda name, i: line[name].reshape(-1)[i])
    rows = []
    for t in ts:
        row = {}
        for name, i, e in entries:
            row[(name, i)] = x(name, i) + t * (mpmath.mpf(e.numerator) / e.denominator)
        rows.append(row)
    return rows


def distance_along(model: Model, point: Mapping[str, np.ndarray], direction: Direction,
                   sites: Sequence[Site] | None = None, *, prec: int = 256, verify: bool = True
                   ) -> list[SiteDistance]:
    """Distance along ``direction`` at which each site entry's condition changes sign.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        The point x_p (float arrays, converted exactly).
    direction : Direction
        A coordinate or random direction e (:mod:`verigrad.fd`).
    sites : sequence of Site, optional
        Default :func:`find_sites`.
    prec : int
        Working precision in bits.
    verify : bool
        Confirm each linearised crossing by exact evaluation just before and after it.

    Returns
    -------
    list of SiteDistance
        One per site, in the order of ``sites``.

    Notes
    -----
    With v(t) the condition at x_p + t e, the slope is the central difference
    ``(v(tau) - v(-tau)) / (2 tau)`` at ``tau = 2^-(prec/4)`` (exact to
    O(tau^2) relative, far below what a distance needs) and the crossing is
    ``t* = -v(0) / v'(0)``; a condition that does not depend on the direction
    has slope exactly 0 and distance ``inf``.  The crossing is *verified* when
    ``v(t*(1 - 2^-12))`` has the sign of ``v(0)`` and ``v(t*(1 + 2^-12))`` does not.
    """
    sites = find_sites(model) if sites is None else list(sites)
    if not sites:
        return []
    return _distances(model, point, direction, sites, prec=prec, verify=verify, full=True)


def _distances(model: Model, point: Mapping[str, np.ndarray], direction: Direction, sites: Sequence[Site], *,
               prec: int, verify: bool, line=None, full: bool = False) -> list[SiteDistance]:
    """:func:`distance_along` on the entries that ``line`` evaluates (along a coordinate: those the
    direction moves; the others keep slope 0 and distance inf). With ``full`` the values of the
    entries a coordinate line does not reach are evaluated too (whole graphs)."""
    entries = direction.entries()
    out: list[SiteDistance] = []
    with mpmath.workprec(prec):
        line = line if line is not None else _site_line(model, point, direction, sites, prec)
        scale = _point_scale(point, direction)
        # the slope's step: tiny for exact values; for double-double midpoints (a dense line) as
        # large as keeps the central difference's truncation below its rounding
        tau = mpmath.ldexp(1, -(prec // 4 if not isinstance(line, _DenseSites) else 26)
                           + int(math.ceil(math.log2(scale))))
        rows = _direction_rows(line, entries, [mpmath.mpf(0), tau, -tau])
        conds, failed = line.at(rows)
        if failed:
            raise DomainError(f"cannot evaluate the sites next to the point: {next(iter(failed.values()))}")
        v_full = None
        if full and isinstance(line, _ConeSites):
            v_full = _FullSites(model, point, sites).base()
        results = []
        for k, (site, c) in enumerate(zip(sites, conds)):
            v0, vp, vm = c[0], c[1], c[2]
            slope = np.asarray((vp - vm) / (2 * tau), dtype=object) if c.shape[1] else np.empty(0, dtype=object)
            crossing = np.full(site.shape, math.inf)
            sl = np.zeros(site.shape)
            value = np.empty(site.shape, dtype=object)
            if v_full is not None:
                value.reshape(-1)[:] = v_full[k]
            elif not isinstance(line, _ConeSites):
                value.reshape(-1)[:] = v0
            for j, idx in enumerate(line.index[k]):
                value[idx] = v0[j]
                d = slope[j]
                sl[idx] = float(d)
                if not d:
                    continue
                crossing[idx] = 0.0 if not v0[j] else float(-v0[j] / d)
            results.append((site, value, sl, crossing))
        verified = [np.asarray(cr == 0.0, dtype=bool) for _, _, _, cr in results]
        if verify:
            items = [(k, idx) for k, (_, _, _, cr) in enumerate(results) for idx in line.index[k]
                     if math.isfinite(cr[idx]) and cr[idx] != 0.0]
            if items:
                delta = mpmath.ldexp(1, -12)
                ts = []
                for k, idx in items:
                    t = mpmath.mpf(results[k][3][idx])
                    ts.extend([t * (1 - delta), t * (1 + delta)])
                vals, failed = line.at(_direction_rows(line, entries, ts))
                pos = [{idx: j for j, idx in enumerate(ix)} for ix in line.index]
                for j, (k, idx) in enumerate(items):
                    s0 = _sgn(results[k][1][idx])
                    before = None if 2 * j in failed else vals[k][2 * j, pos[k][idx]]
                    after = None if 2 * j + 1 in failed else vals[k][2 * j + 1, pos[k][idx]]
                    ok_before = before is not None and _sgn(before) == s0
                    ok_after = (2 * j + 1 in failed) or (after is not None and _sgn(after) != s0)
                    verified[k][idx] = bool(ok_before and ok_after)
        for (site, v0, sl, cr), ver in zip(results, verified):
            out.append(SiteDistance(site, v0, sl, cr, np.abs(cr), np.asarray(ver, dtype=bool)))
    return out


# ---------------------------------------------------------------------------
# stencil crossings
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Crossing:
    """A stencil node on another side of a site than the point (or outside the domain).

    Attributes
    ----------
    site : Site or None
        None when evaluating the site's argument itself left a domain (the message says where).
    entry : tuple of int
        Entry of the site's condition.
    where : str
        What was perturbed: a stencil label (``central h=1e-3``) or a coordinate (``b1[2, 0]``).
    nodes : tuple of float
        Offsets t of the stencil nodes on the other side.
    distance : float
        |t| of the sign change nearest to the point along the direction (0 on a kink),
        located exactly between the point and the nearest crossing node.
    on_kink : bool
        The point itself is on the kink (condition exactly 0): every stencil straddles it.
    leaves_domain : bool
        A node is outside the loss's domain.
    message : str
    """

    site: Site | None
    entry: tuple[int, ...]
    where: str
    nodes: tuple[float, ...]
    distance: float
    on_kink: bool
    leaves_domain: bool
    message: str


def _sci(x: float) -> str:
    """``4.0e-4``: two significant digits, compact exponent."""
    if not math.isfinite(x):
        return str(x)
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def _crossing_message(prefix: str, site: Site | None, entry, distance: float, on_kink: bool,
                      leaves_domain: bool, failure: str = "") -> str:
    if site is None:
        return f"{prefix} leaves the domain of the loss: {failure}"
    where = site.describe(entry)
    if on_kink:
        return (f"{prefix} straddles {where}: the point is on the kink ({site.location(entry)} "
                f"{'= 0 ' if site.rule is not SiteRule.MAXIMUM else ''}exactly)").replace("  ", " ")
    if leaves_domain:
        return f"{prefix} leaves the domain of {where} ({site.domain_text}) at distance {_sci(distance)}"
    return f"{prefix} crosses {where} at distance {_sci(distance)}"


def _round_fraction(q: Fraction, dtype: np.dtype) -> Fraction:
    """The nearest value of ``dtype`` to an exact rational, as a Fraction (any binary format)."""
    return Fraction(round_fraction(q, dtype))


def _locate(sites: Sequence[Site], line, entries, items: list[tuple[int, tuple, Any, Any, Any]], *,
            iterations: int = 48, rtol: float = 2.0**-30) -> list[float]:
    """Exact sign-change location of each item (site k, entry, v0, t_hi, v_hi) on [0, t_hi].

    Illinois (modified regula falsi) on the exact condition along the line (``line``: a
    :class:`_FullSites` or :class:`_ConeSites`); call inside a precision scope.  Returns |t| of
    the located change.
    """
    if not hasattr(line, "at"):  # exact leaves with a batch axis (the callers of the whole-graph form)
        line = _FullSites(None, {}, sites, base=line)
    n = len(items)
    a = [mpmath.mpf(0)] * n
    fa = [it[2] for it in items]
    b = [mpmath.mpf(it[3]) for it in items]
    fb = [it[4] for it in items]
    side = [0] * n
    root: list[Any] = [None] * n
    pos = [{idx: j for j, idx in enumerate(ix)} for ix in line.index]
    for j in range(n):
        if fb[j] is not None and not fb[j]:
            root[j] = b[j]
    for _ in range(iterations):
        active = [j for j in range(n) if root[j] is None and abs(b[j] - a[j]) > rtol * abs(items[j][3])]
        if not active:
            break
        cs = []
        for j in active:
            if fb[j] is None or fb[j] == fa[j]:
                cs.append((a[j] + b[j]) / 2)
            else:
                cs.append((a[j] * fb[j] - b[j] * fa[j]) / (fb[j] - fa[j]))
        vals, failed = line.at(_direction_rows(line, entries, cs))
        for r, (j, c) in enumerate(zip(active, cs)):
            k, idx = items[j][0], items[j][1]
            fc = None if r in failed else vals[k][r, pos[k][idx]]
            if fc is not None and not fc:
                root[j] = c
                continue
            beyond = fc is None or (_violates(sites[k], np.array(_sgn(items[j][2])), np.array(_sgn(fc))).item())
            if beyond:
                b[j], fb[j] = c, fc
                if side[j] == -1 and fa[j] is not None:
                    fa[j] = fa[j] / 2
                side[j] = -1
            else:
                a[j], fa[j] = c, fc
                if side[j] == 1 and fb[j] is not None:
                    fb[j] = fb[j] / 2
                side[j] = 1
    return [float(abs(root[j])) if root[j] is not None else float(abs((a[j] + b[j]) / 2)) for j in range(n)]


def _point_scale(point: Mapping[str, np.ndarray], direction: Direction) -> float:
    """max(1, |x_i|) over the entries the direction moves."""
    out = 1.0
    for n, v in direction.vector.items():
        moved = np.asarray(v).reshape(-1) != 0
        if moved.any():
            out = max(out, float(np.max(np.abs(np.asarray(point[n], dtype=np.float64).reshape(-1)[moved]))))
    return out


#: a failure message is re-derived by a whole evaluation (naming the entry) up to this many graph entries
_MESSAGE_ENTRIES = 200_000


def _failure_messages(model: Model, point, sites, rows, failed: dict[int, str]) -> dict[int, str]:
    """Messages of rows that left a domain, naming the entry as a whole evaluation does (the
    cone's own messages count entries of its compact arrays); kept as they are for large graphs."""
    from verigrad.expr.graph import topological

    if sum(n.size for n in topological([a for s in sites for a in s.arguments])) > _MESSAGE_ENTRIES:
        return failed
    full = _FullSites(model, point, sites)
    _, again = full.at([rows[r] for r in failed])
    return {r: again.get(j, msg) for j, (r, msg) in enumerate(failed.items())}


def _prec_for(ts: Sequence[Fraction], point_scale: float) -> int:
    smallest = min((abs(t) for t in ts if t), default=Fraction(1))
    gap = max(0.0, math.log2(max(point_scale, 1.0)) - math.log2(float(smallest)))
    return int(DEFAULT_PREC + 64 + gap)


def stencil_crossings(model: Model, point: Mapping[str, np.ndarray], direction: Direction,
                      nodes_t: Sequence[Fraction | float], sites: Sequence[Site] | None = None, *,
                      label: str = "", dtype: Dtype | None = None, prec: int | None = None,
                      locate: bool = True) -> list[Crossing]:
    """Exact check: which sites a stencil's nodes put on another side than the point.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        x_p.
    direction : Direction
    nodes_t : sequence of Fraction or float
        Offsets t of the nodes x_p + t e, normally ``c_k h_p`` exactly.
    sites : sequence of Site, optional
        Default :func:`find_sites`.
    label : str
        What the stencil is, for messages (``central h=1e-3``).
    dtype : Dtype, optional
        Round each node entry to the dtype once, as the finite difference does
        (``y_k = fl_p(x_p + c_k h_p e)``); default: the exact nodes.
    prec : int, optional
        Working precision; default enough for the smallest offset.
    locate : bool
        Locate each sign change exactly (Illinois iteration on the exact line);
        with False the distance is the secant estimate between the point and the node.

    Returns
    -------
    list of Crossing
        One per (site, entry) with a node on the other side, nearest first.
        Message: ``stencil of central h=1e-3 crosses relu(Z1[2, 0]) at distance 4.0e-4``.

    Notes
    -----
    A node crosses a KINK or NONZERO site when the sign of its condition
    differs from the point's (for a kink the point's sign may be 0: the point
    is on the kink), and a POSITIVE site when its condition is not > 0.  Only
    the nodes are checked: for a condition that is not monotone along the
    line, a double crossing between two nodes is not seen.
    """
    sites = find_sites(model) if sites is None else list(sites)
    if not sites or not nodes_t:
        return []
    ts = [t if isinstance(t, Fraction) else Fraction(float(t)) for t in nodes_t]
    prec = prec or _prec_for(ts, _point_scale(point, direction))
    return _crossings(model, point, direction, ts, sites, label=label, dtype=dtype, prec=prec, locate=locate)


def _crossings(model: Model, point: Mapping[str, np.ndarray], direction: Direction, ts: Sequence[Fraction],
               sites: Sequence[Site], *, label: str, dtype: Dtype | None, prec: int, locate: bool,
               line=None) -> list[Crossing]:
    """:func:`stencil_crossings` with the offsets as Fractions and a precision, on ``line`` (the
    sites' conditions along the direction; built here when not given)."""
    entries = direction.entries()
    prefix = f"stencil of {label}" if label else "stencil"
    out: list[Crossing] = []
    with mpmath.workprec(prec):
        line = line if line is not None else _site_line(model, point, direction, sites, prec)
        v0 = line.base()
        if hasattr(line, "stencil_rows"):
            rows = line.stencil_rows(ts, dtype)
        else:
            rows = []
            for t in ts:
                row = {}
                for name, i, e in entries:
                    q = Fraction(float(point[name].reshape(-1)[i])) + t * e
                    if dtype is not None:
                        q = _round_fraction(q, dtype.numpy)
                    row[(name, i)] = mpmath.mpf(q.numerator) / q.denominator
                rows.append(row)
        vals, failed = line.at(rows)
        if failed and isinstance(line, _ConeSites):
            failed = _failure_messages(model, point, sites, rows, failed)
        elif failed and isinstance(line, _DenseSites):
            failed = line.messages(rows, failed)
        pending: list[tuple[int, tuple, Any, Any, Any]] = []
        found: list[tuple[int, tuple, tuple[float, ...], bool, bool]] = []
        for k, site in enumerate(sites):
            s0 = _signs(np.asarray(v0[k], dtype=object))
            hit = np.zeros((len(ts), len(line.index[k])), dtype=bool)
            for r in range(len(ts)):
                if r in failed:
                    continue
                hit[r] = _violates(site, s0, _signs(np.asarray(vals[k][r], dtype=object)))
            for j in np.flatnonzero(np.any(hit, axis=0)):
                idx = line.index[k][j]
                rs = [r for r in range(len(ts)) if hit[r, j]]
                on_kink = site.kind is SiteKind.KINK and int(s0[j]) == 0
                leaves = site.kind is SiteKind.DOMAIN
                found.append((k, idx, tuple(float(ts[r]) for r in rs), on_kink, leaves))
                if not on_kink:
                    r = min(rs, key=lambda r: abs(ts[r]))
                    pending.append((len(found) - 1, int(j), r, None, None))
        # exact location of each sign change between the point and its nearest crossing node
        loc_items = []
        for fi, j, r, _, _ in pending:
            k, idx = found[fi][0], found[fi][1]
            t = ts[r]
            loc_items.append((k, idx, v0[k][j], mpmath.mpf(t.numerator) / t.denominator, vals[k][r, j]))
        if locate:
            dist = _locate(sites, line, entries, loc_items) if loc_items else []
        else:
            dist = [float(abs(t) * abs(f0) / abs(f0 - ft)) if ft is not None and f0 != ft else float(abs(t))
                    for _, _, f0, t, ft in loc_items]
        dmap = {p[0]: d for p, d in zip(pending, dist)}
        for fi, (k, idx, nodes, on_kink, leaves) in enumerate(found):
            d = 0.0 if on_kink else dmap[fi]
            out.append(Crossing(sites[k], idx, label, nodes, d, on_kink, leaves,
                                _crossing_message(prefix, sites[k], idx, d, on_kink, leaves)))
        for r, msg in failed.items():
            out.append(Crossing(None, (), label, (float(ts[r]),), math.nan, False, True,
                                _crossing_message(prefix, None, (), math.nan, False, True, msg)))
    out.sort(key=lambda c: (c.distance if math.isfinite(c.distance) else math.inf))
    return out
