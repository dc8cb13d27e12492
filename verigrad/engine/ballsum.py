"""Certified sums of double-double ball arrays along the last axis, by error-free extraction.

A pairwise tree of ball additions costs ``log2 n`` levels of a few dozen numpy calls each;
on the long reductions of elementwise losses (a sum over 10^4-10^6 terms) that was the
largest cost of a certified evaluation.  Here the midpoints are summed with Rump, Ogita
and Oishi's error-free vector extraction ("Accurate floating-point summation part I:
faithful rounding", SIAM J. Sci. Comput. 31(1), 2008, Algorithms 3.1-3.3): a few passes of
four numpy calls over the whole array, each pass summing exactly the leading bits of every
term, and one float sum of the radii.

Notes
-----
Notation: ``u = 2**-53`` (Rump's ``eps``), ``m`` the number of terms of a group (the
``hi`` and ``lo`` words of ``n`` balls: ``m = 2n``, or ``n`` when every ``lo`` is 0),
``M`` the smallest integer with ``2**M >= m``.

*Extraction* (Lemma 3.2 of the paper). For ``sigma = 2**k`` and a float ``p`` with
``|p| <= 2**-M sigma``, ``q = fl(fl(sigma + p) - sigma)`` and ``p' = fl(p - q)`` satisfy
``p = q + p'`` exactly, ``|p'| <= u sigma``, ``|q| <= 2**-M sigma`` and ``q`` is an integer
multiple of ``u sigma``.  Here ``sigma = 2**(M + E)`` with ``2**E >= max |p|`` of the group
(``E`` from ``frexp`` of the maximum, exact).

*Exact partial sums* (Lemma 3.3). Every partial sum of the ``q`` of a group, in any order,
is an integer multiple of ``u sigma`` of magnitude at most ``m 2**-M sigma <= sigma``, hence
a float: ``np.sum`` of the ``q`` (whatever its order) is exact, ``tau = sum q``.

*Passes.* Pass ``k`` extracts ``tau_k`` from the residuals of pass ``k - 1``; after ``k``
passes ``sum p = tau_1 + ... + tau_k + sum p'`` exactly.  Every residual of pass ``k`` is at
most ``u sigma_k`` (Lemma 3.2), so ``sigma_(k+1) = 2**(M - 53) sigma_k`` satisfies the
condition of the next pass without a reduction over the data, and ``|sum p'| <= m u sigma_k``
(exact in floats: a power of two times an integer below ``2**53``).  Pass 1 extracts the
``hi`` words only: a normalised pair has ``|lo| <= u |hi| <= u 2**E = 2**-M sigma_2``, so
the ``lo`` words meet pass 2's condition and the tail bound as they are (the count ``m``
includes them from the start).  Each pass gains ``53 - M`` bits; the loop stops when
``m u sigma_k <= 2**-110 |H|`` for every group, after :data:`MAX_PASSES` passes, or when
the next ``sigma`` would drop below ``2**-900`` (no extraction underflows above it).  A group
of exact zeros has ``sigma = 0`` (every ``q`` and residual is then 0).

*Combination.* ``(H, L)`` is built from the ``tau_j`` (exact floats) exactly with Fractions
(up to 4 groups: ``H = float(S)``, ``L = float(S - H)``, the error rounded up) or with
:func:`dd.add`, whose errors ``e_j`` are proved there; the residual term by ``T = m u sigma_k`` as above;
the radii by ``sum r <= fl(sum r) F_n``, with ``F_n >= 1 / (1 - gamma_{n-1})`` (a float sum
``s`` of ``n`` non-negative numbers in any order satisfies ``s >= (1 - gamma_{n-1})`` times the
exact sum; sums of non-negative numbers lose nothing to underflow).  The radius of the sum
is ``up(T + sum e_j + fl(R F_n))`` with :func:`dd.up` (its ``UP`` covers the few roundings
of this expression, its underflow term the product).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np

from verigrad.engine import dd
from verigrad.engine.ballcore import Ball, _check, _zero

__all__ = ["sum_last", "MAX_PASSES"]

#: at most this many extraction passes; each gains at least 53 - M bits (32 for 10^6 terms)
MAX_PASSES = 8
#: a pass's residual bound is small enough below this fraction of the partial result
_REL_STOP = 2.0 ** -110
#: the smallest sigma used (no extraction or residual underflows above it)
_SIGMA_MIN = 2.0 ** -900
#: up to this many groups the pass results are combined exactly with Fractions, beyond with dd.add
_FRACTION_GROUPS = 4
#: at most this many terms per group (M <= 40 keeps 13 bits per pass)
_MAX_TERMS = 2 ** 40


@functools.lru_cache(maxsize=256)
def _up_factor(n: int) -> float:
    """The smallest float >= 1 / (1 - gamma_{n-1}) (exact rational arithmetic).

    A float sum ``s`` of ``n`` non-negative numbers, in any order, is at least
    ``(1 - gamma_{n-1})`` times the exact sum, so ``s / (1 - gamma_{n-1})`` bounds it from above;
    ``1 / (1 - gamma_{n-1}) = (1 - (n-1)u) / (1 - 2(n-1)u)``.
    """
    from fractions import Fraction

    k = max(n - 1, 0)
    f = Fraction(2**53 - k, 2**53 - 2 * k)
    v = float(f)
    if Fraction(v) < f:
        v = float(np.nextafter(v, np.inf))
    return v


def _combine(taus: list[np.ndarray], groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(H, L, err)``: a normalised dd and a bound of ``|sum taus - (H + L)|`` (the taus are exact floats).

    Up to :data:`_FRACTION_GROUPS` groups, exactly with Fractions (a few Python operations instead of a few
    dozen numpy calls per pass; each Fraction operation costs microseconds, so only for a handful of groups): ``H = float(S)`` (correctly rounded, ties to even, so ``H = fl(H + L)``),
    ``L = float(S - H)``, ``err`` the smallest float ``>= |S - H - L|``.  Beyond, :func:`dd.add` chains
    with their proved errors.
    """
    shape = taus[0].shape
    if groups <= _FRACTION_GROUPS:
        cols = [t.reshape(-1).tolist() for t in taus]
        H, L, E = np.empty(groups), np.empty(groups), np.empty(groups)
        for g in range(groups):
            S = sum(Fraction(c[g]) for c in cols)
            h = float(S)
            rest = S - Fraction(h)
            lo = float(rest)
            H[g], L[g], E[g] = h, lo, _float_up(abs(rest - Fraction(lo)))
        return H.reshape(shape), L.reshape(shape), E.reshape(shape)
    H, L = taus[0], np.zeros(shape)
    err = np.zeros(shape)
    for t in taus[1:]:
        H, L, e = dd.add(H, L, t, np.zeros(shape))
        err = err + e
    return H, L, err


def _float_up(q: Fraction) -> float:
    """The smallest float >= q (q >= 0, finite)."""
    f = float(q)
    if Fraction(f) < q:
        f = float(np.nextafter(f, np.inf))
    return f


def sum_last(x) -> Ball | None:
    """Sum of the balls of ``x`` over its last axis (shape ``(..., n)`` to ``(...,)``); None if declined.

    Parameters
    ----------
    x : Ball or sequence of Ball
        Any shape with a last axis of length ``n >= 1``; broadcast views allowed.  A sequence
        of balls with the same leading shape is summed as one (the sum of a fused ``a + b``:
        the terms of every part, no dd addition of the parts first).

    Returns
    -------
    Ball or None
        A ball per group that contains the exact sum of every choice of points in the
        summed balls (see the module Notes for the proof), or None (the caller then uses the
        pairwise tree) for fewer than 2 or more than ``2**39`` terms, for more groups than terms
        per group (the tree is faster there), or for a group whose largest term is below
        ``2**-900`` times ``2**M`` (the underflow range).  A group whose sum cancels beyond
        :data:`MAX_PASSES` passes keeps a rigorous, wider radius.
    """
    parts = [x] if isinstance(x, Ball) else list(x)
    n = sum(b.shape[-1] for b in parts)
    if n < 2 or 2 * n > _MAX_TERMS:
        return None
    lead = parts[0].shape[:-1]
    if any(b.shape[:-1] != lead for b in parts):
        return None
    if math.prod(lead) > n:
        # many short groups: the passes' per-group work (and a cancelling group keeping every group in
        # the loop) costs more than the tree's log2(n) levels (measured: 784 groups of 64 terms, 4.6 ms
        # against 1.4 ms; 10 groups of 64, 0.35 ms against 0.84 ms)
        return None
    his = [np.broadcast_to(b.hi, b.shape) for b in parts]
    los = [np.broadcast_to(b.lo, b.shape) for b in parts if not _zero(b.lo)]
    shape = lead + (n,)
    m = n + sum(w.shape[-1] for w in los)  # the number of terms
    M = int(m - 1).bit_length()  # 2**M >= m
    # the largest |hi| of each group bounds every word (a normalised pair has |lo| <= u |hi|)
    top = np.max(np.abs(his[0]) if len(his) == 1 else np.concatenate([np.abs(h) for h in his], axis=-1),
                 axis=-1, keepdims=True)
    exact_zero = top == 0
    _, E = np.frexp(top)  # top < 2**E (exact)
    sigma = np.where(exact_zero, 0.0, np.ldexp(1.0, E + M))  # sigma = 0: an all-zero group, q = p = 0
    if np.any(sigma[~exact_zero] < _SIGMA_MIN):
        return None  # tiny sums: the tree's bounds handle the underflow range
    groups = int(np.prod(lead, dtype=np.int64)) if lead else 1
    smin = float(np.min(sigma, initial=np.inf, where=~exact_zero))  # sigma scales uniformly from here
    taus = []
    approx = None  # a float running sum: it only decides when to stop, the bounds never use it
    p = None
    for k in range(MAX_PASSES):
        if p is None:
            # pass 1 reads the hi words in place (no copy); every |lo| <= u top <= 2**-M sigma_2 enters at pass 2
            qs = [sigma + h for h in his]
            for q in qs:
                q -= sigma
            p = np.concatenate([h - q for h, q in zip(his, qs)] + los, axis=-1)
            tau = sum(np.sum(q, axis=-1) for q in qs)  # each partial sum exact (Lemma 3.3), so is their sum
        else:
            q = sigma + p
            q -= sigma
            p -= q  # p' = p - q, exact (Lemma 3.2); p now holds the residuals
            tau = np.sum(q, axis=-1)
        taus.append(tau)
        approx = tau if approx is None else approx + tau
        # every residual is at most u sigma (Lemma 3.2): the next sigma, and a bound of the whole tail
        sigma = sigma * 2.0 ** (M - 53)
        smin *= 2.0 ** (M - 53)
        tail = sigma[..., 0] * (m * 2.0 ** -M)  # m u sigma_k = m 2**-M sigma_(k+1), exact
        if smin < _SIGMA_MIN or bool(np.all(tail <= _REL_STOP * np.abs(approx))):
            break
    H, L, err = _combine(taus, groups)
    bound = tail + err  # the tail is exactly 0 for all-zero groups
    for b in parts:
        if not _zero(b.rad):
            R = np.sum(np.broadcast_to(b.rad, b.shape), axis=-1) * _up_factor(b.shape[-1])
            bound = R if bound is None else bound + R
    if bound is None:
        rad = np.zeros(H.shape)
    else:
        rad = dd.up(bound, maybe=bound > 0)
    return _check(Ball(H, L, rad))
