"""A full finite-difference gradient near sites: which stencils cross one, and what to grade against.

:func:`fd_crossings` marks the coordinates of :func:`verigrad.fd.fd_gradient` whose
stencil crosses a site (screened in float64, confirmed exactly);
:func:`fd_kink_adjustment` turns that into the truth to grade the estimate with:
crossing coordinates excluded, coordinates on a kink compared with the scheme's
limit of the one-sided derivatives (:func:`verigrad.kinks.kink_limit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Sequence

import mpmath
import numpy as np

from verigrad.casefile.loader import point_in_dtype
from verigrad.engine.backends import FloatBackend, MPBackend
from verigrad.engine.model import Model
from verigrad.fd.nodes import batched_leaves
from verigrad.fd.steps import entry_steps
from verigrad.kinks.acceptance import kink_analysis
from verigrad.kinks.conditions import (DEFAULT_PREC, _arg_nodes, _conditions, _float_base, _mp_base, _signs,
                                       _violates)
from verigrad.kinks.crossings import Crossing, _crossing_message, _locate, _prec_for, _round_fraction, _sci
from verigrad.kinks.onesided import kink_limit
from verigrad.kinks.sites import Site, SiteKind, _idx, find_sites
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


def _node_values(x: float, h: float, offsets: Sequence[Fraction], dt: np.dtype) -> list[Fraction]:
    xq, hq = Fraction(x), Fraction(h)
    return [_round_fraction(xq + c * hq, dt) for c in offsets]


def fd_crossings(model: Model, *, dtype: Dtype, scheme: Scheme | str, step: float | Mapping[str, np.ndarray],
                 step_mode: StepMode = StepMode.RELATIVE, sites: Sequence[Site] | None = None,
                 point: Mapping[str, np.ndarray] | None = None, max_batch_elements: int = 2_000_000,
                 margin: float = 1e-6) -> FDCrossings:
    """Mark the coordinates of :func:`verigrad.fd.fd_gradient` whose stencil crosses a site.

    Parameters
    ----------
    model : Model
    dtype : Dtype
    scheme : Scheme or str
    step : float
        Nominal step; steps and nodes are exactly those of ``fd_gradient``
        (``h_i = fl_p(h max(1, |x_i|))`` in relative mode, ``y = fl_p(x_i + c_k h_i)``).
    step_mode : StepMode
    sites : sequence of Site, optional
    point : mapping of str to ndarray, optional
        Default ``point_in_dtype(model.point, dtype)``.
    max_batch_elements : int
        Memory bound of the float screening.
    margin : float
        Screening margin, relative to the largest |condition| of a site.

    Returns
    -------
    FDCrossings

    Notes
    -----
    The conditions at every node are screened in float64; a node whose
    condition has another sign than at the point, or lies within ``margin``
    of 0 (either of them), or is not finite, is then checked exactly in mpmath,
    and only exact crossings are reported.  The distance of the nearest one per
    coordinate is located exactly (:func:`stencil_crossings` semantics).
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
    K = len(offsets)
    arg_sizes = sum(a.size for a in _arg_nodes(sites)) + sum(int(np.prod(s.shape, dtype=np.int64)) for s in sites)
    fbase = _float_base(model, point)
    with np.errstate(all="ignore"):
        c0f = _conditions(sites, fbase, FloatBackend(np.float64), 1)[0]
    margins = []
    for c in c0f:
        a = np.abs(np.asarray(c, dtype=np.float64))
        fin = a[np.isfinite(a)]
        margins.append(margin * (float(fin.max()) if fin.size else 1.0) + 1e-300)
    suspects: list[tuple[str, int, int, Fraction, Fraction]] = []  # (name, i, k, t, node value)
    for name in names:
        x = point[name]
        n = x.size
        xf = x.reshape(-1).astype(np.float64)
        hp = entry_steps(step, name, x, step_mode).astype(np_dt).astype(np.float64)
        per = max(1, max_batch_elements // max(1, K * arg_sizes))
        for start in range(0, n, per):
            idx = list(range(start, min(n, start + per)))
            nodes = {i: _node_values(float(xf[i]), float(hp[i]), offsets, np_dt) for i in idx}
            rows = [{(name, i): float(nodes[i][k])} for i in idx for k in range(K)]
            with np.errstate(all="ignore"):
                cf, _ = _conditions(sites, batched_leaves(fbase, rows), FloatBackend(np.float64), len(rows))
            flag = np.zeros(len(rows), dtype=bool)
            for s, c, c0, mg in zip(sites, cf, c0f, margins):
                c = np.asarray(c, dtype=np.float64).reshape(len(rows), -1)
                b0 = np.asarray(c0, dtype=np.float64).reshape(1, -1)
                with np.errstate(invalid="ignore"):
                    bad = (np.sign(c) != np.sign(b0)) | (np.abs(c) <= mg) | (np.abs(b0) <= mg) | ~np.isfinite(c)
                flag |= np.any(bad, axis=1)
            for r in np.flatnonzero(flag):
                i, k = idx[r // K], r % K
                suspects.append((name, i, k, offsets[k] * Fraction(float(hp[i])), nodes[i][k]))
    if not suspects:
        return FDCrossings(scheme.name, step, dtype, excluded, on_kink, ())
    # exact confirmation
    ts = [t for *_, t, _ in suspects]
    pscale = max([1.0] + [float(np.max(np.abs(point[n]))) for n in names])
    prec = _prec_for(ts, pscale)
    per_coord: dict[tuple[str, int], list] = {}
    with mpmath.workprec(prec):
        base = _mp_base(model, point)
        v0 = _conditions(sites, base, MPBackend(), 1)[0]
        s0 = [_signs(np.asarray(v[0, ...], dtype=object)) for v in v0]
        for start in range(0, len(suspects), 256):
            part = suspects[start:start + 256]
            rows = [{(name, i): mpmath.mpf(y.numerator) / y.denominator} for name, i, _, _, y in part]
            vals, failed = _conditions(sites, batched_leaves(base, rows), MPBackend(), len(rows))
            for r, (name, i, k, t, y) in enumerate(part):
                if r in failed:
                    per_coord.setdefault((name, i), []).append(("fail", None, (), t, None, failed[r]))
                    continue
                for j, site in enumerate(sites):
                    sg = _signs(np.asarray(vals[j][r, ...], dtype=object))
                    hit = _violates(site, s0[j], sg)
                    for e in zip(*np.nonzero(hit)) if site.shape else ([()] if bool(hit) else []):
                        e = tuple(int(q) for q in e)
                        per_coord.setdefault((name, i), []).append(("hit", j, e, t, vals[j][(r,) + e], ""))
        crossings: list[Crossing] = []
        locate_items, locate_meta = [], []
        for (name, i), hits in per_coord.items():
            shape = model.shape(name)
            idx = tuple(int(q) for q in np.unravel_index(i, shape)) if shape else ()
            coord = f"{name}{_idx(idx)}"
            h_i = float(entry_steps(step, name, point[name], step_mode)[i])
            prefix = f"{coord}: stencil of {scheme.name} h={_sci(h_i)}"
            real = [h for h in hits if h[0] == "hit"]
            kink_hits = [h for h in real if sites[h[1]].kind is SiteKind.KINK and s0[h[1]][h[2]] == 0]
            other = [h for h in real if h not in kink_hits]
            fails = [h for h in hits if h[0] == "fail"]
            if other or fails:
                excluded[name].reshape(-1)[i] = True
            elif kink_hits:
                on_kink[name].reshape(-1)[i] = True
            if other:
                # nearest by the secant estimate between the point and the node, then located exactly
                def secant(h):
                    a0 = v0[h[1]][(0,) + h[2]]
                    vt = h[4]
                    return abs(h[3]) * (abs(a0) / abs(a0 - vt)) if vt is not None and a0 != vt else abs(h[3])
                best = min(other, key=secant)
                j, e, t, vt = best[1], best[2], best[3], best[4]
                locate_items.append((j, e, v0[j][(0,) + e], mpmath.mpf(t.numerator) / t.denominator, vt))
                locate_meta.append((name, i, coord, prefix, best, sorted({float(h[3]) for h in other
                                                                          if h[1] == j and h[2] == e})))
            elif fails:
                crossings.append(Crossing(None, (), coord, tuple(sorted({float(h[3]) for h in fails})), math.nan,
                                          False, True, _crossing_message(prefix, None, (), math.nan, False, True,
                                                                         fails[0][5])))
            elif kink_hits:
                h = kink_hits[0]
                crossings.append(Crossing(sites[h[1]], h[2], coord, tuple(sorted({float(q[3]) for q in kink_hits})),
                                          0.0, True, False,
                                          _crossing_message(prefix, sites[h[1]], h[2], 0.0, True, False)))
        # locate per coordinate (each has its own line)
        for item, (name, i, coord, prefix, best, nodes) in zip(locate_items, locate_meta):
            entries = [(name, i, Fraction(1))]
            d = _locate(sites, base, entries, [item])[0]
            site = sites[item[0]]
            leaves = site.kind is SiteKind.DOMAIN
            crossings.append(Crossing(site, item[1], coord, tuple(nodes), d, False, leaves,
                                      _crossing_message(prefix, site, item[1], d, False, leaves)))
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
