"""Grading a candidate at a point on kinks.

:func:`kink_acceptance` (the grading hook) grades a candidate against the element of
the set of valid gradients nearest to it (:mod:`verigrad.kinks.subgradients`), stating
the convention it used (``relu'(0) = 0 (the left derivative of relu) at Z1[2, 0]``);
:func:`kink_analysis` computes what that needs once per truth. :func:`accept_at_kinks`
is the per-entry test against the one-sided intervals (:mod:`verigrad.kinks.onesided`).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from fractions import Fraction
from collections import abc
from typing import Any, Mapping, NamedTuple, Sequence

import mpmath
import numpy as np

from verigrad.engine.model import Model
from verigrad.errors import VerigradError
from verigrad.kinks.conditions import DEFAULT_PREC
from verigrad.kinks.onesided import OneSided, one_sided_gradient
from verigrad.kinks.sites import Site, _idx, find_sites
from verigrad.kinks.subgradients import AtKink, Choice, SubgradientSet, at_kink, subgradient_set

__all__ = ["PerEntryAcceptance", "accept_at_kinks", "KinkAcceptance", "KinkAnalysis", "kink_analysis",
           "kink_acceptance"]


# ---------------------------------------------------------------------------
# per-entry acceptance
# ---------------------------------------------------------------------------


class PerEntryAcceptance(NamedTuple):
    """Result of :func:`accept_at_kinks`: the effective truth and the conventions found."""

    truth: dict[str, np.ndarray]
    conventions: list[str]


def accept_at_kinks(truth_gradient: Mapping[str, np.ndarray], value: Mapping[str, np.ndarray],
                    lo: Mapping[str, np.ndarray], hi: Mapping[str, np.ndarray],
                    tolerance: float | Mapping[str, float]) -> PerEntryAcceptance:
    """Per-entry acceptance at kinks: the candidate's value wherever it lies in ``[lo, hi]``.

    Parameters
    ----------
    truth_gradient : mapping of str to ndarray of mpf
        The point-value truth.
    value : mapping of str to ndarray
        The candidate's gradient.
    lo, hi : mapping of str to ndarray of mpf
        One-sided intervals (:func:`one_sided_gradient`).
    tolerance : float or mapping of str to float
        Absolute slack (per variable) for "lies in the interval".

    Returns
    -------
    PerEntryAcceptance
        ``(truth, conventions)``.  Entries with ``lo < hi`` whose value lies in
        ``[lo - tol, hi + tol]`` get the value clipped to ``[lo, hi]`` as their truth
        (so the normal grading passes them), and a convention string such as
        ``W[0, 2] = 0.25, the upper one-sided derivative (interval [-1.25, 0.25])``.
        Other entries keep the point-value truth, clipped to ``[lo, hi]`` (the
        nearest valid element), so they are graded against a valid subgradient.

    Notes
    -----
    This test is per entry; it cannot see a coupling between entries (a max-pool
    tie whose entries each lie in ``[0, C]`` but sum to ``2 C``).  The grading
    hook uses the joint set instead (:func:`kink_acceptance`).

    Examples
    --------
    >>> import mpmath, numpy as np
    >>> t = {"b": np.array(mpmath.mpf(0), dtype=object)}
    >>> eff, conv = accept_at_kinks(t, {"b": np.float64(1.5)}, {"b": np.array(mpmath.mpf(0), dtype=object)},
    ...                             {"b": np.array(mpmath.mpf(3), dtype=object)}, 1e-12)
    >>> float(eff["b"]), conv
    (1.5, ['b = 1.5, inside the one-sided interval [0, 3]'])
    """
    eff: dict[str, np.ndarray] = {}
    conventions: list[str] = []
    for name, g in truth_gradient.items():
        tol = tolerance[name] if isinstance(tolerance, Mapping) else tolerance
        g = np.asarray(g, dtype=object)
        v = np.asarray(value[name], dtype=np.float64).reshape(g.shape)
        out = np.array(g, dtype=object, copy=True)
        for idx in np.ndindex(*g.shape):
            a, b = lo[name][idx], hi[name][idx]
            if not a < b:
                continue
            x = float(v[idx])
            where = f"{name}{_idx(idx)}"
            if math.isfinite(x) and float(a) - tol <= x <= float(b) + tol:
                xm = mpmath.mpf(x)
                out[idx] = a if xm < a else (b if xm > b else xm)
                if abs(x - float(a)) <= tol:
                    kind = "the lower one-sided derivative"
                elif abs(x - float(b)) <= tol:
                    kind = "the upper one-sided derivative"
                else:
                    kind = "inside the one-sided interval"
                conventions.append(f"{where} = {x:.6g}, {kind} [{float(a):.6g}, {float(b):.6g}]"
                                   if kind.startswith("inside") else
                                   f"{where} = {x:.6g}, {kind} (interval [{float(a):.6g}, {float(b):.6g}])")
            else:
                gv = g[idx]
                out[idx] = a if gv < a else (b if gv > b else gv)
        eff[name] = out
    return PerEntryAcceptance(eff, conventions)


# ---------------------------------------------------------------------------
# joint acceptance (the grading hook)
# ---------------------------------------------------------------------------


def _snap(w: np.ndarray) -> tuple[Fraction, ...]:
    """LP weights -> exact simplex weights, snapped to simple fractions (denominator <= 12) within 1e-6."""
    out = []
    for x in np.clip(np.asarray(w, dtype=np.float64), 0.0, 1.0):
        fr = Fraction(float(x)).limit_denominator(12)
        out.append(fr if abs(float(fr) - float(x)) <= 1e-6 else Fraction(float(x)))
    total = sum(out)
    if total <= 0:
        return tuple(Fraction(1, len(out)) for _ in out)
    return tuple(q / total for q in out)


def _nearest_weights(sset: SubgradientSet, r: np.ndarray, rows: np.ndarray, weights: np.ndarray
                     ) -> list[tuple[Fraction, ...]] | None:
    """Weights of the element of the set nearest (weighted L1) to base + r on the given rows."""
    from scipy import sparse
    from scipy.optimize import linprog

    E = sset.effects[rows]
    m, n = E.shape
    groups: dict[int, list[int]] = {}
    for k, (j, _) in enumerate(sset.columns):
        groups.setdefault(j, []).append(k)
    A1 = sparse.hstack([sparse.csr_matrix(E), -sparse.identity(m, format="csr"), sparse.identity(m, format="csr")])
    data, ri, ci = [], [], []
    for g, cols in enumerate(groups[j] for j in range(len(sset.choices))):
        for k in cols:
            data.append(1.0)
            ri.append(g)
            ci.append(k)
    A2 = sparse.csr_matrix((data, (ri, ci)), shape=(len(sset.choices), n + 2 * m))
    A = sparse.vstack([A1, A2]).tocsr()
    b = np.concatenate([r, np.ones(len(sset.choices))])
    c = np.concatenate([np.zeros(n), weights, weights])
    res = linprog(c, A_eq=A, b_eq=b, bounds=(0, None), method="highs")
    if res.status != 0:
        return None
    lam = res.x[:n]
    return [_snap(lam[groups[j]]) for j in range(len(sset.choices))]


def _group_conventions(pairs: Sequence[tuple[Choice, tuple[Fraction, ...]]]) -> list[str]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for c, w in pairs:
        key = (c.site.label, c.describe(w))
        grouped.setdefault(key, []).append(c.where())
    out = []
    for (_, text), places in grouped.items():
        sep = "; " if any("," in p for p in places) else ", "
        shown = sep.join(places[:4]) + (f" and {len(places) - 4} more" if len(places) > 4 else "")
        out.append(f"{text} at {shown}")
    return out


class _TruthGradient(abc.Mapping):
    """``truth.gradient`` as a mapping that builds the mpf arrays only when an entry is read.

    Off kinks the effective truth is the point-value truth itself; a grader that reads the
    double-double form (``truth.gradient_hi/lo``) never needs an object per entry.
    """

    def __init__(self, truth) -> None:
        self._truth = truth

    @property
    def source(self):
        """The :class:`~verigrad.engine.truth.Truth` whose gradient this is."""
        return self._truth

    def __getitem__(self, name: str) -> np.ndarray:
        return self._truth.gradient[name]

    def __iter__(self):
        return iter(self._truth.exact_zero)

    def __len__(self) -> int:
        return len(self._truth.exact_zero)


@dataclass(frozen=True, eq=False)
class KinkAcceptance:
    """How a candidate is graded at a point on kinks.

    Attributes
    ----------
    truth : dict of str to ndarray of mpf
        Effective truth: the element of the set of valid gradients nearest to
        the candidate (the point-value truth away from kinks).  Pass it to
        :func:`verigrad.grading.grade` instead of the point-value truth.
    baseline : dict of str to ndarray or None
        The float baseline of the same convention (the gradient expression
        evaluated naively in the dtype with the chosen choices), so that the
        tolerance is not inflated by the convention; None when none was given.
    conventions : tuple of str
        The conventions the candidate used (or, if it is not a valid gradient,
        those of the nearest valid one), e.g. ``relu'(0) = 0 (the left
        derivative of relu) at Z1[2, 0]``, ``max tie split 1/2 each at x[0, 1], x[1, 0]``.
    matched : bool
        The candidate is within ``tolerance`` of a valid gradient on every entry the kinks affect.
    distance : float
        Max over those entries of |candidate - nearest| / the gradient's scale.
    notes : tuple of str
    lower, upper : dict of str to ndarray or None
        Per-entry one-sided intervals, for reports.
    weights : tuple of tuple of Fraction
        The chosen point of each choice's simplex.
    """

    truth: dict[str, np.ndarray]
    baseline: dict[str, np.ndarray] | None
    conventions: tuple[str, ...] = ()
    matched: bool = True
    distance: float = 0.0
    notes: tuple[str, ...] = ()
    lower: dict[str, np.ndarray] | None = None
    upper: dict[str, np.ndarray] | None = None
    weights: tuple[tuple[Fraction, ...], ...] = ()

    @property
    def at_kink(self) -> bool:
        return bool(self.weights)


@dataclass(frozen=True, eq=False)
class KinkAnalysis:
    """Everything about the kinks at one truth's point, computed once per dtype.

    Attributes
    ----------
    model : Model
    truth : Truth
    sites : tuple of Site
    kinks : tuple of AtKink
        Sites with entries exactly on their kink.
    selection : SubgradientSet or None
        None when the point is on no kink.
    one_sided : OneSided or None
    notes : tuple of str
    """

    model: Model
    truth: Any
    sites: tuple[Site, ...]
    kinks: tuple[AtKink, ...]
    selection: SubgradientSet | None
    one_sided: OneSided | None
    notes: tuple[str, ...] = ()

    def accept(self, value: Mapping[str, np.ndarray], baseline: Mapping[str, np.ndarray] | None = None, *,
               tolerance: float | None = None) -> KinkAcceptance:
        """Grade-ready truth and baseline for one candidate (see :func:`kink_acceptance`)."""
        truth = self.truth
        lower = self.one_sided.lower if self.one_sided is not None else None
        upper = self.one_sided.upper if self.one_sided is not None else None
        plain = KinkAcceptance(_TruthGradient(truth), dict(baseline) if baseline is not None else None,
                               notes=self.notes, lower=lower, upper=upper)
        sset = self.selection
        if sset is None or not sset.choices:
            return plain
        dt = truth.dtype.numpy
        scale = float(truth.scale) if truth.scale else 1.0
        tol = tolerance if tolerance is not None else 256 * float(np.finfo(dt).eps) * scale
        try:
            v = np.concatenate([np.asarray(value[n], dtype=np.float64).reshape(-1) for n in sset.names])
        except (KeyError, ValueError, TypeError):
            return plain
        base_f = np.array([float(x) for x in sset.base])
        rows = np.flatnonzero(sset.affected & np.isfinite(v))
        if rows.size == 0:
            return plain
        var_scale = []
        for n in sset.names:
            g = truth.gradient[n]
            s = max([abs(float(x)) for x in np.asarray(g).reshape(-1)] + [0.0])
            var_scale.extend([s if s > 0 else scale] * int(np.asarray(g).size))
        w = 1.0 / np.asarray(var_scale)[rows]
        weights = _nearest_weights(sset, v[rows] - base_f[rows], rows, w)
        notes = list(self.notes)
        if weights is None:
            notes.append("the nearest valid gradient could not be computed (linear program failed); "
                         "graded against the point-value convention")
            return KinkAcceptance(plain.truth, plain.baseline, (), False, math.nan, tuple(notes), lower, upper)
        eff_mp = sset.evaluate(weights)
        eff_f = sset.evaluate(weights, dtype=dt) if baseline is not None else None
        new_truth: dict[str, np.ndarray] = {}
        new_base: dict[str, np.ndarray] | None = {} if baseline is not None else None
        offset = 0
        dist = 0.0
        outside: list[str] = []
        for n, shape in zip(sset.names, sset.shapes):
            size = int(np.prod(shape, dtype=np.int64))
            aff = sset.affected[offset:offset + size]
            t = np.array(truth.gradient[n], dtype=object, copy=True).reshape(-1)
            e = np.asarray(eff_mp[n], dtype=object).reshape(-1)
            changed = aff | np.array([bool(e[i] != sset.base[offset + i]) for i in range(size)])
            t[changed] = e[changed]
            new_truth[n] = t.reshape(shape)
            if new_base is not None:
                b = np.array(baseline[n], copy=True).reshape(-1)
                b[changed] = np.asarray(eff_f[n]).reshape(-1)[changed]
                new_base[n] = b.reshape(shape)
            for i in np.flatnonzero(aff):
                x = v[offset + i]
                if math.isfinite(x):
                    dist = max(dist, abs(x - float(e[i])) / scale)
                if lower is not None and not (lower[n].reshape(-1)[i] - tol <= e[i] <= upper[n].reshape(-1)[i] + tol):
                    idx = np.unravel_index(i, shape) if shape else ()
                    outside.append(f"{n}{_idx(idx)}")
            offset += size
        matched = dist * scale <= tol
        pairs = list(zip(sset.choices, weights))
        conventions = _group_conventions(pairs)
        if not matched:
            conventions = [f"nearest valid: {c}" for c in conventions]
            notes.append(f"no choice of derivatives at the kinks reproduces the candidate (off by {dist:.2e} of "
                         f"the gradient's scale); it is graded against the nearest valid gradient")
        else:
            notes.append("the point is on a kink: the candidate is graded against the valid gradient with its "
                         "convention (" + "; ".join(conventions[:3]) + (" ..." if len(conventions) > 3 else "") + ")")
        if sset.interacting:
            notes.append("some kinks are nested (interacting): the set of valid gradients is linearised around "
                         "the point-value convention")
        if outside:
            notes.append(f"the chosen gradient lies outside the one-sided interval at {', '.join(outside[:4])}"
                         f"{' ...' if len(outside) > 4 else ''}: kinks interact along those coordinates")
        return KinkAcceptance(new_truth, new_base, tuple(conventions), bool(matched), float(dist), tuple(notes),
                              lower, upper, tuple(weights))


_CACHE: "weakref.WeakKeyDictionary[Any, tuple[int, KinkAnalysis]]" = weakref.WeakKeyDictionary()


def kink_analysis(model: Model, truth) -> KinkAnalysis:
    """Sites, kinks at the point, the set of valid gradients and the one-sided derivatives (cached per truth).

    Parameters
    ----------
    model : Model
    truth : Truth
        The certified truth at one dtype's point.

    Returns
    -------
    KinkAnalysis
        Computed once per ``truth`` object (weakly cached), so every candidate and
        finite difference of a dtype shares it.  Never raises for a problem of the
        analysis (a precision cap, say): it is recorded in ``notes``.
    """
    hit = _CACHE.get(truth)
    if hit is not None and hit[0] == id(model):
        return hit[1]
    sites = tuple(find_sites(model))
    kinks: tuple[AtKink, ...] = ()
    selection = one = None
    notes: list[str] = []
    try:
        kinks = tuple(at_kink(model, truth.point, sites=sites)) if sites else ()
        if kinks:
            selection = subgradient_set(model, truth.point, kinks, prec=max(truth.precision, DEFAULT_PREC))
    except VerigradError as exc:
        notes.append(f"the kinks at the point could not be analysed ({exc}); graded against the point value")
        selection = None
    if selection is not None:
        try:
            one = one_sided_gradient(model, truth.point, truth.dtype, truth=truth, selection=selection)
        except VerigradError as exc:
            notes.append(f"one-sided derivatives unavailable: {exc}")
    analysis = KinkAnalysis(model, truth, sites, kinks, selection, one, tuple(notes))
    try:
        _CACHE[truth] = (id(model), analysis)
    except TypeError:  # pragma: no cover - a truth that cannot be weakly referenced
        pass
    return analysis


def kink_acceptance(model: Model, truth, value: Mapping[str, np.ndarray],
                    baseline: Mapping[str, np.ndarray] | None = None, *, tolerance: float | None = None
                    ) -> KinkAcceptance:
    """The truth (and baseline) to grade a candidate with, when the point is on kinks.

    Parameters
    ----------
    model : Model
    truth : Truth
    value : mapping of str to ndarray
        The candidate's (validated) gradient.
    baseline : mapping of str to ndarray, optional
        The float baseline; returned adjusted to the candidate's convention.
    tolerance : float, optional
        Absolute distance under which the candidate counts as using a valid
        convention (for the messages; the grade decides the verdict).  Default
        ``256 eps_p`` times the gradient's scale.

    Returns
    -------
    KinkAcceptance
        Off kinks: the truth and baseline unchanged, no conventions.

    Notes
    -----
    The nearest element ``G(w*)`` of the set of valid gradients minimises
    ``sum_i |v_i - G_i(w)| / S_k(i)`` (``S_k`` the scale of entry i's variable)
    over the choice simplices, a linear program; ``w*`` is snapped to simple
    fractions and ``G(w*)`` re-evaluated exactly, and in the dtype for the baseline.
    """
    return kink_analysis(model, truth).accept(value, baseline, tolerance=tolerance)
