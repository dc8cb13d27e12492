"""Steps that keep a stencil on the point's side of every site.

Along one direction, the largest such step (:func:`safe_steps`); per entry of a
full finite-difference gradient, the rule of thumb reduced where it would cross a
site (:func:`recommend_steps`); and for a step sweep, which steps cross a site and,
on a kink, the value to measure the errors against (:func:`study_kinks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping, Sequence

import mpmath
import numpy as np

from verigrad.casefile.loader import point_in_dtype
from verigrad.engine.model import Model
from verigrad.fd.directions import Direction
from verigrad.fd.steps import entry_steps, recommended_step
from verigrad.kinks.conditions import DEFAULT_PREC
from verigrad.kinks.crossings import _crossings, _distances, _point_scale, _prec_for, _sci, _site_line
from verigrad.kinks.fdgradient import fd_crossings
from verigrad.kinks.onesided import directional_one_sided, kink_limit
from verigrad.kinks.sites import Site, _idx, find_sites
from verigrad.schemes import Scheme, SchemeKind, StepMode, get_scheme
from verigrad.spec import Dtype

__all__ = ["SafeStep", "safe_steps", "StudyKinks", "study_kinks", "RecommendedSteps", "recommend_steps"]


# ---------------------------------------------------------------------------
# safe steps along a direction
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SafeStep:
    """The largest step whose stencil stays on the point's side of every site, along one direction.

    Attributes
    ----------
    scheme : str
    direction : str
    limit : float
        Supremum of the safe steps (linearised): ``inf`` if no site can be
        crossed, 0 if the point is on a kink that the direction moves.
    step : float
        A step below ``limit`` verified exactly by :func:`stencil_crossings`
        (0 when none exists).
    site : Site or None
        The site that sets the limit.
    entry : tuple of int or None
    message : str
    """

    scheme: str
    direction: str
    limit: float
    step: float
    site: Site | None
    entry: tuple[int, ...] | None
    message: str


def safe_steps(model: Model, point: Mapping[str, np.ndarray], direction: Direction, scheme: Scheme | str, *,
               sites: Sequence[Site] | None = None, dtype: Dtype | None = None) -> SafeStep:
    """The largest step h such that no node x + c_k h e of ``scheme`` crosses a site.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
    direction : Direction
    scheme : Scheme or str
    sites : sequence of Site, optional
    dtype : Dtype, optional
        Check the verified step with nodes rounded to this dtype.

    Returns
    -------
    SafeStep

    Notes
    -----
    For a sign change at signed distance t* the nodes with ``c_k`` of the sign
    of t* stay before it while ``h < |t*| / max |c_k|``.  The limit is the
    minimum over all site entries; the reported ``step`` is ``limit (1 - 2^-8)``,
    halved until :func:`stencil_crossings` finds no crossing.
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    sites = find_sites(model) if sites is None else list(sites)
    offsets = list(scheme.offsets)
    cpos = max([c for c in offsets if c > 0], default=None)
    cneg = max([-c for c in offsets if c < 0], default=None)
    limit, which, entry = math.inf, None, None
    on_kink = False
    line = _site_line(model, point, direction, sites, 256) if (sites and offsets) else None
    for sd in _distances(model, point, direction, sites, prec=256, verify=False, line=line) if line else []:
        for idx in np.ndindex(*sd.site.shape):
            t = sd.crossing[idx]
            if not math.isfinite(t):
                continue
            if t == 0.0:
                bound = 0.0
                on_kink = True
            elif t > 0:
                if cpos is None:
                    continue
                bound = t / float(cpos)
            else:
                if cneg is None:
                    continue
                bound = -t / float(cneg)
            if bound < limit:
                limit, which, entry = bound, sd.site, idx
    label = scheme.name
    if which is None:
        return SafeStep(label, direction.label, math.inf, math.inf, None, None,
                        f"no node of {label} along {direction.label} can cross a kink or domain boundary")
    if on_kink and limit == 0.0:
        return SafeStep(label, direction.label, 0.0, 0.0, which, entry,
                        f"the point is on the kink of {which.describe(entry)}: every stencil along "
                        f"{direction.label} straddles it; compare {label} with its limit "
                        f"{kink_limit(scheme)[2]}")
    step = limit * (1 - 2.0**-8)
    pscale = _point_scale(point, direction)
    for _ in range(60):
        ts = [Fraction(c) * Fraction(step) for c in offsets]
        prec = _prec_for(ts, pscale)
        if prec > line.prec:
            line = _site_line(model, point, direction, sites, prec)
        if not _crossings(model, point, direction, ts, sites, label="", dtype=dtype, prec=prec, locate=False,
                          line=line):
            break
        step /= 2
    else:  # pragma: no cover - a site closer than 2^-60 of the linearised one
        step = 0.0
    return SafeStep(label, direction.label, float(limit), float(step), which, entry,
                    f"steps below {_sci(limit)} keep every node of {label} along {direction.label} on the point's "
                    f"side of {which.describe(entry)} (verified step {_sci(step)})")


# ---------------------------------------------------------------------------
# step sweeps
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StudyKinks:
    """Kinks and domain boundaries met by a step sweep along one direction.

    Attributes
    ----------
    reference : mpf or None
        When the point is exactly on a kink that the direction moves: the
        scheme's limit ``alpha d+ + beta d-`` (:func:`kink_limit`), the value a
        study should measure its errors against instead of the point-value
        directional derivative.  None otherwise.
    plus, minus : mpf or None
        The one-sided directional derivatives (set with ``reference``).
    crossing : ndarray of bool
        Per step: some node lies across a site the point is not on (the row's
        error is not a truncation/round-off error; exclude it from fits).
    leaves_domain : ndarray of bool
        Per step: some node is outside the loss's domain.
    notes : tuple of str
    """

    reference: Any
    plus: Any
    minus: Any
    crossing: np.ndarray
    leaves_domain: np.ndarray
    notes: tuple[str, ...] = ()


def study_kinks(model: Model, point: Mapping[str, np.ndarray], direction: Direction, scheme: Scheme | str,
                steps: Sequence[float], *, dtype: Dtype | None = None, scale=None) -> StudyKinks:
    """Which steps of a sweep cross a site, and the reference value at a point on a kink.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        x_p.
    direction : Direction
    scheme : Scheme or str
    steps : sequence of float
        The steps actually used (h_p).
    dtype : Dtype, optional
        Round the nodes to this dtype, as the study does.
    scale : mpf or callable, optional
        Scale of the gradient, for the agreement test of the one-sided derivatives (a callable
        is asked only when the point is on a kink).

    Returns
    -------
    StudyKinks
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    n = len(steps)
    crossing = np.zeros(n, dtype=bool)
    leaves = np.zeros(n, dtype=bool)
    sites = find_sites(model)
    if not sites or scheme.kind is SchemeKind.COMPLEX_STEP:
        return StudyKinks(None, None, None, crossing, leaves, ())
    notes: list[str] = []
    # one evaluator of the sites along the direction for every step (along a coordinate: the cone
    # of the line, so that each step costs the entries it moves), at the precision of the smallest
    pscale = _point_scale(point, direction)
    positive = [float(h) for h in steps if h > 0 and math.isfinite(h)]
    precs = [_prec_for([c * Fraction(h) for c in scheme.offsets], pscale) for h in positive]
    prec = max([256] + precs)
    line = _site_line(model, point, direction, sites, prec)
    on = [(sd.site, idx) for sd in _distances(model, point, direction, sites, prec=256, verify=False, line=line)
          for idx in np.ndindex(*sd.site.shape) if sd.crossing[idx] == 0.0]
    step_ts = {r: [c * Fraction(float(h)) for c in scheme.offsets] for r, h in enumerate(steps)
               if h > 0 and math.isfinite(h)}
    union = sorted({t for ts in step_ts.values() for t in ts})
    if len({float(t) for t in union}) == len(union):
        # every step's nodes in one batch (one walk of the sites per sweep, not per step); a crossing
        # names the nodes that cross (as floats, distinct here), which say which steps it belongs to
        crs = _crossings(model, point, direction, union, sites, label="", dtype=dtype,
                         prec=max(_prec_for(ts, pscale) for ts in step_ts.values()), locate=False, line=line)
        nodes = {r: {float(t) for t in ts} for r, ts in step_ts.items()}
        per_step = {r: [c for c in crs if not nodes[r].isdisjoint(c.nodes)] for r in step_ts}
    else:
        per_step = {r: _crossings(model, point, direction, ts, sites, label="", dtype=dtype,
                                  prec=_prec_for(ts, pscale), locate=False, line=line) for r, ts in step_ts.items()}
    first = None
    for r, crs in per_step.items():
        crossing[r] = any(not c.on_kink for c in crs)
        leaves[r] = any(c.leaves_domain for c in crs)
        if crossing[r] and (first is None or steps[r] < steps[first]):
            first = r
    if first is not None:
        h = float(steps[first])
        ts = [c * Fraction(h) for c in scheme.offsets]
        msg = next(c.message for c in _crossings(model, point, direction, ts, sites, label=f"{scheme.name} h={_sci(h)}",
                                                 dtype=dtype, prec=_prec_for(ts, pscale), locate=True, line=line)
                   if not c.on_kink)
        notes.append(f"{int(crossing.sum())} of {n} steps put a node across a kink or domain boundary "
                     f"(from h = {_sci(h)}: {msg}); their errors are not truncation or round-off and they are "
                     f"excluded from fits")
    ref = dp = dm = None
    if on:
        dp, dm = directional_one_sided(model, point, direction, scale=scale() if callable(scale) else scale)
        alpha, beta, text = kink_limit(scheme)
        with mpmath.workprec(DEFAULT_PREC + 128):
            ref = (mpmath.mpf(alpha.numerator) / alpha.denominator) * dp + (mpmath.mpf(beta.numerator)
                                                                            / beta.denominator) * dm
        site, idx = on[0]
        notes.append(f"the point is on the kink of {site.describe(idx)} along {direction.label}: the loss has no "
                     f"derivative there (d+ = {mpmath.nstr(dp, 10)}, d- = {mpmath.nstr(dm, 10)}); {scheme.name} "
                     f"tends to {text} = {mpmath.nstr(ref, 10)}, which the errors are measured against; its "
                     f"truncation error is O(h) whatever the order of the scheme")
    return StudyKinks(ref, dp, dm, crossing, leaves, tuple(notes))


# ---------------------------------------------------------------------------
# recommended steps for a full finite-difference gradient
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RecommendedSteps:
    """Per-entry nominal steps that keep every stencil inside the smooth region of the point.

    Attributes
    ----------
    steps : dict of str to ndarray
        Nominal step per entry (float64), for :func:`verigrad.fd.fd_gradient`.
    reduced : dict of str to ndarray of bool
        Entries whose step was reduced below the rule of thumb to stay away from a site.
    on_kink : dict of str to ndarray of bool
        Entries exactly on a kink: no step keeps a two-sided stencil smooth; their estimates
        are compared with the scheme's limit of the one-sided derivatives.
    notes : tuple of str
    """

    steps: dict
    reduced: dict
    on_kink: dict
    notes: tuple


def recommend_steps(model: Model, *, dtype: Dtype, scheme: Scheme | str,
                    step_mode: StepMode = StepMode.RELATIVE) -> RecommendedSteps:
    """The rule-of-thumb step eps^(1/(p+1)), reduced per entry where a stencil would cross a site.

    For each coordinate whose stencil at the rule-of-thumb step crosses a kink or a domain
    boundary (and touches no kink the point is on), the step becomes the located distance of
    the nearest sign change over the largest offset on its side, times ``1 - 2^-8``, halved
    until the stencil provably stays on the point's side (all such coordinates are tested at
    once, :func:`fd_crossings`' certified test); coordinates exactly on a kink keep the rule of
    thumb and are reported against the one-sided derivatives (see :func:`kink_limit`).
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    point = point_in_dtype(model.point, dtype)
    base = recommended_step(scheme, dtype)
    steps = {n: entry_steps(base, n, point[n], step_mode).reshape(model.shape(n)) for n in model.gradient}
    reduced = {n: np.zeros(model.shape(n), dtype=bool) for n in model.gradient}
    if scheme.kind is SchemeKind.COMPLEX_STEP:
        return RecommendedSteps(steps, reduced, {n: r.copy() for n, r in reduced.items()}, ())
    sites = find_sites(model)
    fdc = fd_crossings(model, dtype=dtype, scheme=scheme, step=base, step_mode=step_mode, sites=sites, point=point)
    offsets = [float(c) for c in scheme.offsets]
    cpos = max([c for c in offsets if c > 0], default=None)
    cneg = max([-c for c in offsets if c < 0], default=None)
    # the nearest crossing of each excluded coordinate (fd_crossings lists the nearest per coordinate)
    nearest: dict[str, float] = {}
    for c in fdc.crossings:
        if not c.on_kink and math.isfinite(c.distance) and c.nodes:
            big = cpos if c.nodes[0] > 0 else cneg
            if big:
                nearest[c.where] = min(nearest.get(c.where, math.inf), c.distance / big)
    trial = {n: np.array(s, dtype=np.float64, copy=True) for n, s in steps.items()}
    todo: dict[str, np.ndarray] = {}
    for name, mask in fdc.excluded.items():
        flat = []
        shape = model.shape(name)
        for i in np.flatnonzero(mask.reshape(-1)):
            idx = tuple(int(q) for q in np.unravel_index(i, shape)) if shape else ()
            where = f"{name}{_idx(idx)}"
            if fdc.on_kink[name].reshape(-1)[i] or where not in nearest:
                continue
            trial[name].reshape(-1)[i] = nearest[where] * (1 - 2.0**-8)
            flat.append(int(i))
        if flat:
            todo[name] = np.asarray(flat, dtype=np.int64)
    for _ in range(60):
        if not todo:
            break
        left: dict[str, np.ndarray] = {}
        for name, flat in todo.items():
            sub = {n: trial[n] for n in model.gradient}
            bad = _still_crossing(model, point, sites, dtype, scheme, sub, name, flat)
            if bad.size:
                trial[name].reshape(-1)[bad] /= 2
                left[name] = bad
        todo = left
    for name in model.gradient:
        for i in np.flatnonzero(trial[name].reshape(-1) != steps[name].reshape(-1)):
            new, old = float(trial[name].reshape(-1)[i]), float(steps[name].reshape(-1)[i])
            if name in todo and i in set(todo[name].tolist()):
                continue  # no verified step found: keep the rule of thumb (the crossing is reported)
            if 0 < new < old:
                steps[name].reshape(-1)[i] = new
                reduced[name].reshape(-1)[i] = True
    notes = []
    n_red = sum(int(r.sum()) for r in reduced.values())
    if n_red:
        notes.append(f"step reduced at {n_red} coordinate{'s' if n_red > 1 else ''} to keep {scheme.name}'s "
                     f"stencil inside the smooth region")
    n_k = sum(int(m.sum()) for m in fdc.on_kink.values())
    if n_k:
        notes.append(f"{n_k} coordinate{'s are' if n_k > 1 else ' is'} exactly on a kink: compared with "
                     f"{scheme.name}'s limit of the one-sided derivatives")
    return RecommendedSteps(steps, reduced, dict(fdc.on_kink), tuple(notes))


def _still_crossing(model: Model, point, sites, dtype: Dtype, scheme: Scheme, steps: dict, name: str,
                    flat: np.ndarray) -> np.ndarray:
    """The flat indices among ``flat`` whose stencil at ``steps`` (absolute, per entry) still crosses a site."""
    from verigrad.kinks.ballscreen import certified_signs
    from verigrad.kinks.fdgradient import _screen

    np_dt = dtype.numpy
    offsets = list(scheme.offsets)
    hp = np.asarray(steps[name], dtype=np.float64).reshape(-1).astype(np_dt).astype(np.float64)
    pscale = max([1.0] + [float(np.max(np.abs(point[n]))) for n in model.gradient if point[n].size])
    small = float(np.min(hp[flat])) if flat.size else 1.0
    prec = _prec_for([Fraction(small) * min((abs(c) for c in offsets if c), default=1)], pscale)
    m0, c0, _ = certified_signs(model, point, sites, None, [], [], prec=prec)
    hits, _ = _screen(model, point, sites, ([m[0] for m in m0], [c[0] for c in c0]), name, flat, hp[flat],
                      offsets, np_dt, prec, 4_000_000)
    return np.asarray(sorted(i for i, h in hits.items() if h.other or h.fails), dtype=np.int64)
