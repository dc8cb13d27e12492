"""One-sided derivatives at a point on kinks, and what a finite difference tends to there.

:func:`one_sided_gradient` computes the certified one-sided partial derivatives,
:func:`directional_one_sided` the one-sided derivatives along a direction, and
:func:`kink_limit` the limit ``alpha d+ + beta d-`` of a linear scheme at a kink.

Notes
-----
*One-sided derivatives.*  ``d+_i = lim_{t->0+} (f(x + t e_i) - f(x)) / t`` and
``d-_i`` (``t -> 0-``).  A piecewise-smooth ``f`` is smooth on ``[0, tau]`` for
small ``tau``, so ``D(t) = (f(x + t e) - f(x)) / t = d + c t + O(t^2)`` there;
:func:`one_sided_gradient` evaluates ``D`` exactly (mpmath) at ``t = ±2^-k``,
``±2^-(k+1)``, ``±2^-(k+2)`` and accepts the Richardson values
``R = 2 D(t/2) - D(t)`` when two of them agree, otherwise it halves ``t``
further.  The interval ``[min(d-, d+), max(d-, d+)]`` is the Clarke
subdifferential of the restriction ``t -> f(x + t e_i)``.  For a single kink
on the line it is the projection of the set of valid gradients
(:mod:`verigrad.kinks.subgradients`) on coordinate ``i``; when
several kinks interact it can be narrower than that projection (``|x + |y|| -
|y|`` at 0 has ``d+_y = d-_y = 0`` but gradients with ``y``-component 2), and
as a per-entry box it ignores the coupling between entries, so it is reported
for information and used by :func:`verigrad.kinks.accept_at_kinks`, while the joint set
decides the grade.

*Finite differences on a kink.*  Along ``e``, ``f(x + c h e) = f(x) + c h
d_sign(c) + O(h^2)``, so a linear scheme tends to ``alpha d+ + beta d-`` with
``alpha = sum_{c_k > 0} w_k c_k`` and ``beta = sum_{c_k < 0} w_k c_k``:
forward -> ``d+``, backward -> ``d-``, every symmetric scheme (central,
central4, ...) -> ``(d+ + d-) / 2`` (:func:`kink_limit`).  Its error is then
``O(h)`` in general, whatever the order of the scheme.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator, Mapping, Sequence

import mpmath
import numpy as np

from verigrad.casefile.loader import point_in_dtype
from verigrad.engine.backends import MPBackend
from verigrad.engine.model import Model
from verigrad.errors import CertificationError
from verigrad.expr.evaluate import evaluate
from verigrad.fd.directions import Direction
from verigrad.fd.nodes import batched_leaves
from verigrad.kinks.conditions import DEFAULT_PREC, _conditions, _eval_safe, _mp_base
from verigrad.kinks.crossings import _direction_rows
from verigrad.kinks.sites import Site, _idx, find_sites
from verigrad.kinks.subgradients import SubgradientSet, _frac_text, subgradient_set
from verigrad.schemes import Scheme, get_scheme
from verigrad.spec import Dtype

__all__ = ["OneSided", "one_sided_gradient", "directional_one_sided", "kink_limit"]


@dataclass(frozen=True, eq=False)
class OneSided:
    """Certified one-sided partial derivatives at a point.

    Attributes
    ----------
    minus, plus : dict of str to ndarray of mpf
        d-_i = lim_{t -> 0-} (f(x + t e_i) - f(x)) / t and d+_i (t -> 0+), per variable.
    lower, upper : dict of str to ndarray of mpf
        ``min(d-, d+)`` and ``max(d-, d+)``: the Clarke subdifferential of the
        restriction of f to the coordinate line.
    computed : dict of str to ndarray of bool
        Entries computed by Richardson extrapolation; the others equal the truth.
    precision : int

    Iterating gives ``(lower, upper)``, so ``lo, hi = one_sided_gradient(...)`` works.
    """

    minus: dict[str, np.ndarray]
    plus: dict[str, np.ndarray]
    lower: dict[str, np.ndarray]
    upper: dict[str, np.ndarray]
    computed: dict[str, np.ndarray]
    precision: int

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter((self.lower, self.upper))


Line = Sequence[tuple[str, int, Fraction]]


def _line_min_distance(model: Model, point, sites: Sequence[Site], lines: Sequence[Line], prec: int) -> list[float]:
    """Linearised distance along each line to the nearest site entry that is not exactly 0."""
    if not sites or not lines:
        return [math.inf] * len(lines)
    with mpmath.workprec(prec):
        base = _mp_base(model, point)
        v0 = _conditions(sites, base, MPBackend(), 1)[0]
        out = []
        for start in range(0, len(lines), 64):
            part = lines[start:start + 64]
            rows = []
            taus = []
            for line in part:
                big = max([mpmath.mpf(1)] + [abs(base[n].reshape(-1)[i]) for n, i, _ in line])
                tau = mpmath.ldexp(1, -(prec // 4)) * big
                taus.append(tau)
                rows.extend(_direction_rows(base, line, [tau, -tau]))
            vals, failed = _conditions(sites, batched_leaves(base, rows), MPBackend(), len(rows))
            for r, tau in enumerate(taus):
                d = math.inf
                if 2 * r in failed or 2 * r + 1 in failed:
                    out.append(0.0)
                    continue
                for k, site in enumerate(sites):
                    a, b, c = vals[k][2 * r, ...], vals[k][2 * r + 1, ...], v0[k][0, ...]
                    for idx in np.ndindex(*site.shape):
                        if not c[idx]:
                            continue
                        slope = (a[idx] - b[idx]) / (2 * tau)
                        if slope:
                            d = min(d, float(abs(c[idx] / slope)))
                out.append(d)
        return out


def _richardson(model: Model, point, lines: Sequence[Line], labels: Sequence[str], scale, *,
                max_rounds: int = 6) -> tuple[list[tuple[Any, Any]], int]:
    """Certified (d+, d-) along each line (see :func:`one_sided_gradient`, Notes); returns them and the precision."""
    sites = find_sites(model)
    dmin = _line_min_distance(model, point, sites, lines, DEFAULT_PREC)
    ks: list[int] = []
    pows: list[int] = []
    for line, d in zip(lines, dmin):
        x = max([1.0] + [abs(float(point[n].reshape(-1)[i])) for n, i, _ in line])
        p = int(math.floor(math.log2(x)))
        pows.append(p)
        k = 48
        if d == 0.0:
            k = 96
        elif math.isfinite(d):
            k = max(k, int(math.ceil(p + 3 - math.log2(d))))
        ks.append(k)
    results: list[tuple[Any, Any] | None] = [None] * len(lines)
    pending = list(range(len(lines)))
    prec_used = DEFAULT_PREC
    for _ in range(max_rounds):
        if not pending:
            break
        prec = max(ks[j] for j in pending) + 226
        prec_used = max(prec_used, prec)
        with mpmath.workprec(prec):
            base = _mp_base(model, point)
            f0 = evaluate([model.loss], base, MPBackend())[0][0]
            rows = []
            steps = []
            for j in pending:
                ts = [side * mpmath.ldexp(1, pows[j] - ks[j] - q) for side in (1, -1) for q in range(3)]
                steps.extend(ts)
                rows.extend(_direction_rows(base, lines[j], ts))
            F, failed = _eval_safe([model.loss], batched_leaves(base, rows), MPBackend(), len(rows))
            F = F[0]
            still = []
            tol_abs = mpmath.ldexp(scale, -72)
            for r, j in enumerate(pending):
                res = []
                ok = True
                for side in range(2):
                    ix = [6 * r + 3 * side + q for q in range(3)]
                    if any(b in failed for b in ix):
                        ok = False
                        break
                    D = [(F[b] - f0) / steps[b] for b in ix]
                    r1, r2 = 2 * D[1] - D[0], 2 * D[2] - D[1]
                    if abs(r1 - r2) > max(mpmath.ldexp(abs(r2), -72), tol_abs):
                        ok = False
                        break
                    res.append(r2)
                if not ok:
                    ks[j] += 16
                    still.append(j)
                    continue
                results[j] = (res[0], res[1])
            pending = still
    if pending:
        j = pending[0]
        raise CertificationError(
            f"{model.case.name}: the one-sided derivatives along {labels[j]} did not converge "
            f"(Richardson values disagree down to t = 2^-{ks[j] - 16})",
            hint="the loss may have kinks accumulating at the point; report the case")
    return [r for r in results if r is not None], prec_used


def one_sided_gradient(model: Model, point: Mapping[str, np.ndarray], dtype: Dtype, *,
                       truth=None, selection: SubgradientSet | None = None,
                       entries: Sequence[tuple[str, int]] | None = None, max_rounds: int = 6) -> OneSided:
    """Certified one-sided partial derivatives d-, d+ at a point on kinks.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        The point (rounded to ``dtype`` here if it is not already).
    dtype : Dtype
    truth : Truth, optional
        The certified point-value gradient (computed with :func:`verigrad.engine.truth.certify` if absent);
        entries that are not computed take its value for both sides.
    selection : SubgradientSet, optional
        Default :func:`subgradient_set`; its affected entries are the ones computed.
    entries : sequence of (str, int), optional
        (variable, flat index) to compute instead of the affected entries.
    max_rounds : int
        Times the step may be divided by 2^16 before giving up.

    Returns
    -------
    OneSided

    Raises
    ------
    CertificationError
        Two Richardson values never agreed (names the entry).

    Notes
    -----
    ``D(t) = (f(x + t e_i) - f(x)) / t`` at ``t = ±2^-k s``, ``±2^-(k+1) s``,
    ``±2^-(k+2) s`` (``s`` the power of two at ``max(1, |x_i|)``, ``k >= 48``
    and ``2^-k s`` below an eighth of the distance to the nearest other site
    entry), evaluated exactly at ``k + 226`` bits.  ``R1 = 2 D(t/2) - D(t)``,
    ``R2 = 2 D(t/4) - D(t/2)``; the result ``R2`` is accepted when
    ``|R1 - R2| <= 2^-72 max(|R2|, scale)``, an error O(t^2) ~ 2^-96 relative.
    """
    from verigrad.engine.truth import certify

    point = point_in_dtype({k: np.asarray(v) for k, v in point.items()}, dtype)
    if truth is None:
        truth = certify(model, point, dtype)
    names = tuple(model.gradient)
    if entries is None:
        if selection is None:
            selection = subgradient_set(model, point)
        entries = selection.affected_entries()
    entries = list(entries)
    minus = {n: np.array(truth.gradient[n], dtype=object, copy=True) for n in names}
    plus = {n: np.array(truth.gradient[n], dtype=object, copy=True) for n in names}
    computed = {n: np.zeros(model.shape(n), dtype=bool) for n in names}
    prec_used = truth.precision
    if entries:
        scale = truth.scale if truth.scale else mpmath.mpf(1)
        lines = [[(name, i, Fraction(1))] for name, i in entries]
        labels = []
        for name, i in entries:
            idx = np.unravel_index(i, model.shape(name)) if model.shape(name) else ()
            labels.append(f"{name}{_idx(idx)}")
        res, prec = _richardson(model, point, lines, labels, scale, max_rounds=max_rounds)
        prec_used = max(prec_used, prec)
        for (name, i), (dp, dm) in zip(entries, res):
            plus[name].reshape(-1)[i] = dp
            minus[name].reshape(-1)[i] = dm
            computed[name].reshape(-1)[i] = True
    lower, upper = {}, {}
    for n in names:
        lo = np.empty(model.shape(n), dtype=object)
        hi = np.empty(model.shape(n), dtype=object)
        for idx in np.ndindex(*model.shape(n)):
            a, b = minus[n][idx], plus[n][idx]
            lo[idx], hi[idx] = (a, b) if a <= b else (b, a)
        lower[n], upper[n] = lo, hi
    return OneSided(minus, plus, lower, upper, computed, prec_used)


def directional_one_sided(model: Model, point: Mapping[str, np.ndarray], direction: Direction, *,
                          scale=None) -> tuple[Any, Any]:
    """Certified one-sided directional derivatives ``(d+, d-)`` of the loss along ``direction``.

    Parameters
    ----------
    model : Model
    point : mapping of str to ndarray
        x_p.
    direction : Direction
    scale : mpf, optional
        Absolute scale for the agreement test (default 1).

    Returns
    -------
    (mpf, mpf)
        ``d+ = lim_{t->0+} (f(x + t e) - f(x)) / t`` and ``d-`` (t -> 0-); Richardson
        extrapolation as in :func:`one_sided_gradient`.
    """
    res, _ = _richardson(model, point, [direction.entries()], [direction.label],
                         scale if scale else mpmath.mpf(1))
    return res[0]


# ---------------------------------------------------------------------------
# finite differences at a kink
# ---------------------------------------------------------------------------


def kink_limit(scheme: Scheme | str) -> tuple[Fraction, Fraction, str]:
    """The limit of a linear scheme at a kink: ``alpha d+ + beta d-``.

    Returns
    -------
    (Fraction, Fraction, str)
        ``alpha = sum_{c_k > 0} w_k c_k``, ``beta = sum_{c_k < 0} w_k c_k`` and a sentence.

    Examples
    --------
    >>> kink_limit("central")[2]
    '(d+ + d-)/2, the mean of the one-sided derivatives'
    >>> kink_limit("forward")[:2]
    (Fraction(1, 1), Fraction(0, 1))
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    alpha = sum((w * c for c, w in zip(scheme.offsets, scheme.weights) if c > 0), Fraction(0))
    beta = sum((w * c for c, w in zip(scheme.offsets, scheme.weights) if c < 0), Fraction(0))
    if beta == 0:
        text = "d+, the right one-sided derivative"
    elif alpha == 0:
        text = "d-, the left one-sided derivative"
    elif alpha == beta:
        text = "(d+ + d-)/2, the mean of the one-sided derivatives"
    else:
        text = f"{_frac_text(alpha)} d+ + {_frac_text(beta)} d-"
    return alpha, beta, text
