"""A full finite-difference gradient near sites: which stencils cross one, and what to grade against.

:func:`fd_crossings` marks the coordinates of :func:`verigrad.fd.fd_gradient` whose
stencil crosses a site (signs proved on double-double balls, exactly where they cannot tell);
:func:`fd_kink_adjustment` turns that into the truth to grade the estimate with:
crossing coordinates excluded, coordinates on a kink compared with the scheme's
limit of the one-sided derivatives (:func:`verigrad.kinks.kink_limit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Mapping, Sequence

import mpmath
import numpy as np

from verigrad.casefile.loader import point_in_dtype
from verigrad.engine.model import Model
from verigrad.errors import DomainError
from verigrad.fd.steps import entry_steps
from verigrad.kinks.acceptance import kink_analysis
from verigrad.kinks.ballscreen import UNDECIDED, certified_signs
from verigrad.kinks.conditions import DEFAULT_PREC, _violates
from verigrad.kinks.crossings import Crossing, _crossing_message, _prec_for, _round_fraction, _sci
from verigrad.kinks.onesided import kink_limit
from verigrad.kinks.sites import Boundary, Site, SiteKind, _idx, find_sites
from verigrad.schemes import Scheme, SchemeKind, StepMode, get_scheme
from verigrad.spec import Dtype

__all__ = ["FDCrossings", "fd_crossings", "FDAdjustment", "fd_kink_adjustment"]


@dataclass(frozen=True, eq=False)
class FDCrossings:
    """Which coordinates of a full finite-difference gradient have a stencil across a site.

    Attributes
    ----------
    scheme : str
    step : float
        Nominal step.
    dtype : Dtype
    excluded : dict of str to ndarray of bool
        Coordinates whose stencil crosses a site the point is not on: exclude
        their estimates from verdicts.
    on_kink : dict of str to ndarray of bool
        Coordinates whose stencil straddles a kink the point is exactly on:
        compare them with :func:`kink_limit` of the one-sided derivatives.
    crossings : tuple of Crossing
        The nearest crossing of every flagged coordinate (``where`` names it).
    """

    scheme: str
    step: float
    dtype: Dtype
    excluded: dict[str, np.ndarray]
    on_kink: dict[str, np.ndarray]
    crossings: tuple[Crossing, ...]

    @property
    def count(self) -> int:
        return int(sum(int(m.sum()) for m in self.excluded.values()) + sum(int(m.sum()) for m in self.on_kink.values()))

    def messages(self) -> list[str]:
        return [c.message for c in self.crossings]


def _node_floats(xf: np.ndarray, hp: np.ndarray, offsets: Sequence[Fraction], dt: np.dtype) -> np.ndarray:
    """(n, K) nodes ``fl_p(x_i + c_k h_i)``, each rounded once from its exact value (as float64)."""
    out = np.empty((xf.size, len(offsets)))
    for i in range(xf.size):
        xq, hq = Fraction(float(xf[i])), Fraction(float(hp[i]))
        for k, c in enumerate(offsets):
            out[i, k] = float(_round_fraction(xq + c * hq, dt))
    return out


@dataclass
class _Hits:
    """What the stencil nodes of one coordinate do to the sites."""

    kink: list = field(default_factory=list)   # (site k, flat entry, node) on a kink the point is on
    other: list = field(default_factory=list)  # (site k, flat entry, node, secant distance)
    fails: list = field(default_factory=list)  # (node, message): the node left a domain


def _screen(model: Model, point: Mapping[str, np.ndarray], sites: Sequence[Site], base, name: str,
            idx: np.ndarray, hp: np.ndarray, offsets: Sequence[Fraction], dt: np.dtype, prec: int,
            max_batch_elements: int) -> tuple[dict[int, _Hits], np.ndarray]:
    """Certified crossing test of the stencils of coordinates ``idx`` of ``name`` (steps ``hp``).

    ``base`` is (midpoints, signs) of the conditions at the point.  Returns the hits per flat
    index (coordinates without any are left out) and the (n, K) float nodes.
    """
    K = len(offsets)
    x = np.asarray(point[name]).reshape(-1).astype(np.float64)
    nodes = _node_floats(x[idx], hp, offsets, dt)
    ns = [int(np.prod(s.shape, dtype=np.int64)) for s in sites]
    per = max(1, max_batch_elements // max(1, K * sum(ns)))
    out: dict[int, _Hits] = {}
    for start in range(0, idx.size, per):
        stop = min(idx.size, start + per)
        flat = np.repeat(idx[start:stop], K)
        vals = nodes[start:stop].reshape(-1)
        mids, codes, failed = certified_signs(model, point, sites, name, flat, vals, prec=prec)
        bad = np.zeros(flat.size, dtype=bool)
        for r, msg in failed.items():
            bad[r] = True
            out.setdefault(int(flat[r]), _Hits()).fails.append((r % K, msg))
        for k, (site, m0, c0, mid, code) in enumerate(zip(sites, base[0], base[1], mids, codes)):
            hit = _violates(site, c0[None, :], code) & ~bad[:, None]
            for r, e in zip(*np.nonzero(hit)):
                i, node = int(flat[r]), int(r % K)
                h = out.setdefault(i, _Hits())
                t = abs(float(vals[r]) - float(x[i]))
                if site.kind is SiteKind.KINK and c0[e] == 0:
                    h.kink.append((k, int(e), node))
                else:
                    a0, at = float(m0[e]), float(mid[r, e])
                    sec = t * abs(a0) / abs(a0 - at) if a0 != at and np.isfinite(at) else t
                    h.other.append((k, int(e), node, sec))
    return out, nodes


def _locate_floats(model: Model, point, sites: Sequence[Site], base, name: str, items: list, prec: int,
                   iterations: int = 60, rtol: float = 2.0**-12) -> list[float]:
    """|y - x_i| of the sign change of each item (flat index i, site k, flat entry e, node value y)
    between the point's coordinate x_i and the node.

    An Illinois iteration on float values of the coordinate, all items in one ball batch per
    step (:func:`certified_signs` without the exact fallback): the bracket's ends have proved
    signs.  A trial value where the ball cannot tell the sign is within a few double-double
    roundings of the change; then the two values ``d = rtol |y - x_i| / 4`` either side are tried
    once, and if they cannot be told either, the change is reported at the trial value (a
    distance for a message, far below its two digits).
    """
    x = np.asarray(point[name]).reshape(-1).astype(np.float64)
    n = len(items)
    a = np.array([x[it[0]] for it in items])
    b = np.array([it[3] for it in items], dtype=np.float64)
    fa = np.array([float(base[0][it[1]][it[2]]) for it in items])
    fb = np.full(n, np.nan)
    s0 = [int(base[1][it[1]][it[2]]) for it in items]
    side = np.zeros(n, dtype=np.int8)
    done = np.zeros(n, dtype=bool)
    width0 = np.abs(b - a)

    def beyond(j: int, code: int) -> bool:
        return code != 1 if sites[items[j][1]].boundary is Boundary.POSITIVE else code != s0[j]

    for _ in range(iterations):
        act = np.flatnonzero(~done & (np.abs(b - a) > rtol * width0))
        if not act.size:
            break
        with np.errstate(all="ignore"):
            sec = (a[act] * fb[act] - b[act] * fa[act]) / (fb[act] - fa[act])
        c = np.where(np.isfinite(fb[act]) & (fb[act] != fa[act]), sec, (a[act] + b[act]) / 2)
        lo, hi = np.minimum(a[act], b[act]), np.maximum(a[act], b[act])
        c = np.where((c > lo) & (c < hi), c, (a[act] + b[act]) / 2)
        stuck = (c == a[act]) | (c == b[act])
        done[act[stuck]] = True
        act, c = act[~stuck], c[~stuck]
        if not act.size:
            break
        mids, codes, failed = certified_signs(model, point, sites, name, [items[j][0] for j in act], c,
                                              prec=prec, exact=False)
        blind = [r for r, j in enumerate(act) if r not in failed and int(codes[items[j][1]][r, items[j][2]]) == UNDECIDED
                 and abs(b[j] - a[j]) > width0[j] / 4]
        if blind:
            # far from the change the balls should decide; where they cannot (a condition the ball
            # rules do not cover, such as tan's cos(x) != 0) the trial value is decided exactly, or the
            # distance would be the bracket's middle, not the change
            em, ec, ef = certified_signs(model, point, sites, name, [items[act[r]][0] for r in blind],
                                         c[blind], prec=prec, exact=True)
            for q, r in enumerate(blind):
                for k in range(len(codes)):
                    codes[k][r] = ec[k][q]
                    mids[k][r] = em[k][q]
                if q in ef:
                    failed[r] = ef[q]
        unsure = []
        for r, j in enumerate(act):
            k, e = items[j][1], items[j][2]
            code = 2 if r in failed else int(codes[k][r, e])
            if code == UNDECIDED:
                unsure.append((j, float(c[r])))
                continue
            if code == 0 and s0[j] != 0:
                a[j] = b[j] = c[r]
                done[j] = True
                continue
            fc = np.nan if r in failed else float(mids[k][r, e])
            if beyond(j, code):
                b[j], fb[j] = c[r], fc
                if side[j] == -1:
                    fa[j] /= 2
                side[j] = -1
            else:
                a[j], fa[j] = c[r], fc
                if side[j] == 1 and np.isfinite(fb[j]):
                    fb[j] /= 2
                side[j] = 1
        if unsure:
            js = [j for j, _ in unsure]
            d = np.array([rtol * width0[j] / 4 for j in js])
            cs = np.array([cv for _, cv in unsure])
            near_a = np.sign(a[js] - cs)  # toward a, then toward b
            probes = np.concatenate([cs + near_a * d, cs - near_a * d])
            _, pc, pf = certified_signs(model, point, sites, name, [items[j][0] for j in js] * 2, probes,
                                        prec=prec, exact=False)
            m = len(js)
            for q, j in enumerate(js):
                k, e = items[j][1], items[j][2]
                ca, cb = int(pc[k][q, e]), int(pc[k][m + q, e])
                if ca != UNDECIDED and cb != UNDECIDED and not beyond(j, ca) and beyond(j, cb):
                    a[j], b[j] = probes[q], probes[m + q]
                else:
                    a[j] = b[j] = cs[q]
                done[j] = True
    xs = [Fraction(float(x[it[0]])) for it in items]
    return [float(abs((Fraction(float(a[j])) + Fraction(float(b[j]))) / 2 - xs[j])) for j in range(n)]


def fd_crossings(model: Model, *, dtype: Dtype, scheme: Scheme | str, step: float | Mapping[str, np.ndarray],
                 step_mode: StepMode = StepMode.RELATIVE, sites: Sequence[Site] | None = None,
                 point: Mapping[str, np.ndarray] | None = None, max_batch_elements: int = 4_000_000,
                 locate: bool = True) -> FDCrossings:
    """Mark the coordinates of :func:`verigrad.fd.fd_gradient` whose stencil crosses a site.

    Parameters
    ----------
    model : Model
    dtype : Dtype
    scheme : Scheme or str
    step : float or mapping of str to ndarray
        Nominal step (or per-entry steps); steps and nodes are exactly those of ``fd_gradient``
        (``h_i = fl_p(h max(1, |x_i|))`` in relative mode, ``y = fl_p(x_i + c_k h_i)``).
    step_mode : StepMode
    sites : sequence of Site, optional
    point : mapping of str to ndarray, optional
        Default ``point_in_dtype(model.point, dtype)``.
    max_batch_elements : int
        Memory bound: (nodes in one batch) x (site condition entries).
    locate : bool
        Locate the nearest sign change of every crossing coordinate (for its message); with False
        the distance is the secant estimate between the point and the node.

    Returns
    -------
    FDCrossings

    Notes
    -----
    Every coordinate of a variable that some site's condition depends on is tested at each of
    its K nodes: the conditions of all sites are evaluated at all nodes at once on double-double
    balls (:func:`verigrad.kinks.ballscreen.certified_signs`), which prove the sign of almost
    every entry; the rows with an entry a ball cannot decide are evaluated exactly in mpmath.
    A node crosses when its proved sign differs from the point's (for a kink the point's sign
    may be 0: the point is on the kink).  Variables that no condition depends on cannot cross.
    The distance of the nearest crossing per coordinate is located by an Illinois iteration on
    the coordinate with proved signs, between the point and the node (a bracket of relative width
    2^-12: the two digits of a message).
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    sites = find_sites(model) if sites is None else list(sites)
    point = point_in_dtype(model.point, dtype) if point is None else {k: np.asarray(v) for k, v in point.items()}
    names = list(model.gradient)
    excluded = {n: np.zeros(model.shape(n), dtype=bool) for n in names}
    on_kink = {n: np.zeros(model.shape(n), dtype=bool) for n in names}
    if not sites or scheme.kind is SchemeKind.COMPLEX_STEP:
        return FDCrossings(scheme.name, step, dtype, excluded, on_kink, ())
    np_dt = dtype.numpy
    offsets = list(scheme.offsets)
    moving = {v for s in sites for a in s.arguments for v in a.variables}
    steps = {n: entry_steps(step, n, point[n], step_mode).astype(np_dt).astype(np.float64) for n in names}
    pscale = max([1.0] + [float(np.max(np.abs(point[n]))) for n in names if point[n].size])
    smallest = min([float(np.min(h[h > 0])) for h in steps.values() if np.any(h > 0)] or [1.0])
    prec = _prec_for([Fraction(smallest) * min((abs(c) for c in offsets if c), default=1)], pscale)
    m0, c0, f0 = certified_signs(model, point, sites, None, [], [], prec=prec)
    if f0:
        raise DomainError(f"cannot evaluate the sites at the point: {next(iter(f0.values()))}")
    base = ([m[0] for m in m0], [c[0] for c in c0])
    crossings: list[Crossing] = []
    for name in names:
        if name not in moving or not point[name].size:
            continue
        idx = np.arange(point[name].size)
        hits, nodes = _screen(model, point, sites, base, name, idx, steps[name], offsets, np_dt, prec,
                              max_batch_elements)
        shape = model.shape(name)
        loc_items, loc_meta = [], []
        for i, h in sorted(hits.items()):
            coord = f"{name}{_idx(tuple(int(q) for q in np.unravel_index(i, shape)) if shape else ())}"
            prefix = f"{coord}: stencil of {scheme.name} h={_sci(float(steps[name][i]))}"
            if h.other or h.fails:
                excluded[name].reshape(-1)[i] = True
            elif h.kink:
                on_kink[name].reshape(-1)[i] = True
            if h.other:
                k, e, node, sec = min(h.other, key=lambda q: q[3])
                entry = tuple(int(q) for q in np.unravel_index(e, sites[k].shape)) if sites[k].shape else ()
                ts = sorted({float(offsets[q[2]] * Fraction(float(steps[name][i]))) for q in h.other
                             if q[0] == k and q[1] == e})
                loc_items.append((i, k, e, float(nodes[i, node])))
                loc_meta.append((coord, prefix, k, entry, ts, sec))
            elif h.fails:
                ts = tuple(sorted({float(offsets[q[0]] * Fraction(float(steps[name][i]))) for q in h.fails}))
                crossings.append(Crossing(None, (), coord, ts, math.nan, False, True,
                                          _crossing_message(prefix, None, (), math.nan, False, True, h.fails[0][1])))
            elif h.kink:
                k, e, _ = h.kink[0]
                entry = tuple(int(q) for q in np.unravel_index(e, sites[k].shape)) if sites[k].shape else ()
                ts = tuple(sorted({float(offsets[q[2]] * Fraction(float(steps[name][i]))) for q in h.kink}))
                crossings.append(Crossing(sites[k], entry, coord, ts, 0.0, True, False,
                                          _crossing_message(prefix, sites[k], entry, 0.0, True, False)))
        dist = (_locate_floats(model, point, sites, base, name, loc_items, prec) if locate and loc_items
                else [meta[5] for meta in loc_meta])
        for d, (coord, prefix, k, entry, ts, _) in zip(dist, loc_meta):
            site = sites[k]
            leaves = site.kind is SiteKind.DOMAIN
            crossings.append(Crossing(site, entry, coord, tuple(ts), d, False, leaves,
                                      _crossing_message(prefix, site, entry, d, False, leaves)))
    crossings.sort(key=lambda c: (c.distance if math.isfinite(c.distance) else math.inf))
    return FDCrossings(scheme.name, step, dtype, excluded, on_kink, tuple(crossings))


@dataclass(frozen=True, eq=False)
class FDAdjustment:
    """The truth to grade a full finite-difference gradient with, given its crossings.

    Attributes
    ----------
    truth : dict of str to ndarray of mpf
        The point-value truth, except: coordinates whose stencil crosses a site
        take the estimate itself (excluded from the verdict: zero error), and
        coordinates on a kink take the scheme's limit ``alpha d+ + beta d-``.
    crossings : FDCrossings
    notes : tuple of str
        What was excluded or compared with one-sided derivatives, and why.
    """

    truth: dict[str, np.ndarray]
    crossings: FDCrossings
    notes: tuple[str, ...] = ()

    @property
    def excluded_count(self) -> int:
        return int(sum(int(m.sum()) for m in self.crossings.excluded.values()))

    @property
    def on_kink_count(self) -> int:
        return int(sum(int(m.sum()) for m in self.crossings.on_kink.values()))


def fd_kink_adjustment(model: Model, truth, estimate: Mapping[str, np.ndarray], *, scheme: Scheme | str,
                       step: float | Mapping[str, np.ndarray],
                       step_mode: StepMode = StepMode.RELATIVE) -> FDAdjustment:
    """Exclude stencils that cross sites, and grade on-kink coordinates against the scheme's limit.

    Parameters
    ----------
    model : Model
    truth : Truth
    estimate : mapping of str to ndarray
        The output of :func:`verigrad.fd.fd_gradient` for the same scheme and step.
    scheme : Scheme or str
    step : float
    step_mode : StepMode

    Returns
    -------
    FDAdjustment
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    fdc = fd_crossings(model, dtype=truth.dtype, scheme=scheme, step=step, step_mode=step_mode,
                       point=truth.point)
    eff = {n: np.array(g, dtype=object, copy=True) for n, g in truth.gradient.items()}
    if not fdc.crossings:
        return FDAdjustment(eff, fdc, ())
    notes: list[str] = []
    n_ex = sum(int(m.sum()) for m in fdc.excluded.values())
    n_k = sum(int(m.sum()) for m in fdc.on_kink.values())
    total = sum(int(np.asarray(g).size) for g in truth.gradient.values())
    with mpmath.workprec(max(truth.precision, DEFAULT_PREC)):
        for n, mask in fdc.excluded.items():
            est = np.asarray(estimate[n], dtype=np.float64).reshape(mask.shape)
            for idx in zip(*np.nonzero(mask)) if mask.shape else ([()] if bool(mask) else []):
                if math.isfinite(est[idx]):
                    eff[n][idx] = mpmath.mpf(float(est[idx]))
        if n_k:
            one = kink_analysis(model, truth).one_sided
            alpha, beta, text = kink_limit(scheme)
            am = mpmath.mpf(alpha.numerator) / alpha.denominator
            bm = mpmath.mpf(beta.numerator) / beta.denominator
            for n, mask in fdc.on_kink.items():
                for idx in zip(*np.nonzero(mask)) if mask.shape else ([()] if bool(mask) else []):
                    if one is None:
                        continue
                    eff[n][idx] = am * one.plus[n][idx] + bm * one.minus[n][idx]
            missing = "" if one is not None else " (unavailable: compared with the point value)"
            notes.append(f"{n_k} of {total} coordinates sit on a kink: {scheme.name} is compared with its limit "
                         f"there, {text}{missing}")
    if n_ex:
        first = next(c.message for c in fdc.crossings if not c.on_kink)
        notes.append(f"{n_ex} of {total} coordinates excluded from the verdict: their stencil crosses a kink or "
                     f"domain boundary ({first}{'; ...' if n_ex > 1 else ''})")
        if n_ex == total:
            notes.append("every coordinate was excluded: the verdict says nothing; use a smaller step "
                         "(see verigrad.kinks.safe_steps)")
    return FDAdjustment(eff, fdc, tuple(notes))
