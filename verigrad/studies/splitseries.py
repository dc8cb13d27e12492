"""T and S of the full-gradient split's Taylor mode, for all steps and entries at once.

Helper of :meth:`verigrad.studies.split._Line.taylor`. From the power series
φ_i(t) = f(x_p + t e_i) = Σ_{j<L} a_j t^j of each entry (Arb balls), per step m and entry i
(h = h_p, exact nodes x + c_k h, float nodes y_k, weights w_k, moments m_j = Σ_k w_k c_k^j):

    T = Σ_{j≥2, m_j≠0} a_j h^(j−1) m_j
    S = Σ_k w_k Σ_{j≥1} a_j q_j / h,   q_j = (y_k − x)^j − (c_k h)^j,

with q_j from q_j = (s + d) q_{j−1} + d s^(j−1) (s = c_k h, d = y_k − x − s, q_0 = 0), which
never subtracts nearly equal numbers. The sums run in double-double balls
(:mod:`verigrad.engine.ballcore`) on (steps, entries) arrays: a few hundred array operations
instead of Python loops over Arb balls per step. A step the fast engine cannot prove (values
outside [2^-900, 2^900], e.g. h^15 of a tiny h; a step of 0) is evaluated in Arb instead, as
before. The omitted terms j ≥ L are estimated in floats from the last two coefficients (an
estimate, not a bound: the caller checks the series against a direct evaluation).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import numpy as np

__all__ = ["series_parts"]

#: (steps x entries) below which the Arb rows are cheaper than the double-double pass (measured on
#: 2026-12-06: 30 x 1 and 30 x 3 units 9-12 ms in Arb against 20-25 ms; 30 x 10 equal; 30 x 80 64 ms
#: against 38-50 ms)
_FAST_MIN_UNITS = 512

_RAD = np.frompyfunc(lambda v: float(v.rad()), 1, 1)
_FINITE = np.frompyfunc(lambda v: v.is_finite(), 1, 1)


def series_parts(A: Sequence[np.ndarray], moments: Sequence[Fraction], offsets: Sequence[Fraction],
                 weights: Sequence[Fraction], x: np.ndarray, H: np.ndarray, Y: Sequence[np.ndarray],
                 absA: dict, min_terms: int | None = None):
    """T and S of every (step, entry) from the entries' power series, with error estimates.

    Call inside ``arb_precision(prec)``: the returned balls are rounded to that precision.

    Parameters
    ----------
    A : sequence of L object ndarrays, shape (W,)
        Coefficient a_j of each entry's series (``flint.arb``), j = 0 .. L−1.
    moments : sequence of L Fraction
        m_j = Σ_k w_k c_k^j of the scheme.
    offsets, weights : sequences of K Fraction
        c_k and w_k.
    x : ndarray, shape (W,), float64
        The entries' values at the point.
    H : ndarray, shape (M, W), float64
        h_p per step and entry (exact floats of the dtype; >= 0).
    Y : sequence of K ndarrays, shape (M, W), float64
        Float nodes y_k = fl(x + c_k h) per step and entry.
    absA : dict of int to ndarray (W,)
        |a_j| (float estimates) for j = L−2 and L−1, and for every j a shorter series may end
        with: the omitted-term estimates.
    min_terms : int, optional
        The shortest series a step may use when the full one would leave the double-double
        range (default: the full length L; shorter steps go to Arb then).

    Returns
    -------
    T, S : object ndarray, shape (M, W)
        Balls (``flint.arb``) containing the series' T and S (T measured from a_1).
    err_T, err_S : ndarray, shape (M, W), float64
        The balls' radii (rigorous) plus the estimated omitted terms:
        tail_T = max_{j∈{L−2,L−1}} |a_j| Σ_k |w_k| |c_k|^j h^(j−1),
        tail_S = Σ_k Σ_j |w_k| j |a_j| (|c_k| h)^(j−1) |d_k| / h.
    finite : ndarray, shape (M, W), bool
        Both balls finite (always true where the double-double path ran).
    """
    M, Wn = H.shape
    K = len(offsets)
    T = np.empty((M, Wn), dtype=object)
    S = np.empty((M, Wn), dtype=object)
    rad_T = np.zeros((M, Wn))
    rad_S = np.zeros((M, Wn))
    absd = np.zeros((K, M, Wn))
    finite = np.ones((M, Wn), dtype=bool)
    # A few hundred units cost less in Arb than the fixed few hundred array operations of the fast
    # pass. A step whose terms would leave the double-double range (below 2^-900) would only be
    # refused after a pass, and make every other step retry alone: each step keeps the full series,
    # or else the ``min_terms`` one, whose h^(L'-2) stays above 2^-700 (room for the coefficients
    # and d_k ~ ulp(x) that multiply it; the terms it drops are below 2^-700 of the first ones and
    # its tail estimate is that of its own last two coefficients), and goes to Arb if none does.
    L = len(A)
    L0 = min(L, min_terms or L)
    terms = np.full(M, L)
    groups: dict[int, list] = {}
    if M * Wn >= _FAST_MIN_UNITS:
        with np.errstate(under="ignore"):
            for m in range(M):
                if not (H[m] > 0).all():
                    continue
                hmin = float(H[m].min())
                fits = [n for n in dict.fromkeys((L, L0)) if hmin ** max(n - 2, 1) > 2.0 ** -700]
                if fits:
                    groups.setdefault(fits[0], []).append(m)
    from verigrad.engine.ballcore import FastPathUnavailable
    try:
        A_dd = [None] + [_from_arb(a) for a in A[1:]]  # a_0 enters neither part
    except FastPathUnavailable:
        groups = {}
    fast = {m for rows in groups.values() for m in rows}
    slow = [m for m in range(M) if m not in fast]
    for n, steps in groups.items():
        # all of a group's steps in one pass; if that is refused, step by step (only the refused go to Arb)
        pending = [steps]
        while pending:
            rows = pending.pop()
            try:
                T[rows], S[rows], rad_T[rows], rad_S[rows], absd[:, rows] = _dd_rows(
                    A_dd[:n], moments[:n], offsets, weights, x, H[rows], [y[rows] for y in Y])
                terms[rows] = n
            except FastPathUnavailable:
                if len(rows) > 1:
                    pending += [[m] for m in rows]
                else:
                    slow += rows
    for m in sorted(slow):
        T[m], S[m], rad_T[m], rad_S[m], absd[:, m] = _arb_row(A, moments, offsets, weights, x, H[m],
                                                             [y[m] for y in Y])
        finite[m] = _FINITE(T[m]).astype(bool) & _FINITE(S[m]).astype(bool)
    tail_T, tail_S = np.zeros((M, Wn)), np.zeros((M, Wn))
    for n in np.unique(terms):
        rows = np.flatnonzero(terms == n)
        tail_T[rows], tail_S[rows] = _tails({j: absA[j] for j in (n - 2, n - 1)}, offsets, weights, H[rows],
                                            absd[:, rows])
    with np.errstate(all="ignore"):
        return T, S, tail_T + rad_T, tail_S + rad_S, finite


def _from_arb(a: np.ndarray):
    from verigrad.engine.ballcore import from_arb

    return from_arb(a)


def _tails(absA: dict, offsets, weights, H: np.ndarray, absd: np.ndarray):
    """The float estimates of the omitted terms (the formulas of :func:`series_parts`).

    An offset whose d_k are all 0 at a step adds nothing there (its S terms are exactly 0)."""
    tail_j = sorted(absA)
    tail_S = np.zeros(H.shape)
    with np.errstate(all="ignore"):
        for k, (c, w) in enumerate(zip(offsets, weights)):
            active = absd[k].any(axis=1, keepdims=True)
            if not active.any():
                continue
            for j in tail_j:
                tail_S += np.where(active, float(abs(w)) * j * absA[j] * (float(abs(c)) * H) ** (j - 1) * absd[k], 0.0)
        tail_S = tail_S / H
        tail_T = np.maximum(*[absA[j] * float(sum(abs(w) * abs(c) ** j for c, w in zip(offsets, weights)))
                              * H ** (j - 1) for j in tail_j])
    return tail_T, tail_S


def _dd_rows(A_dd, moments, offsets, weights, x, H, Y):
    """T, S (Arb), their radii and |d_k| for steps H (shape (M', W), all h > 0) in double-double balls.

    Raises FastPathUnavailable where a value leaves the proved range."""
    from verigrad.engine.ballcore import (ball_add, ball_mul, ball_sub, exact, from_float, from_fraction,
                                          to_arb)
    from verigrad.engine.fastball import ball_div

    L = len(A_dd)
    h = from_float(H)
    T = None
    hj = None  # h^(j-1)
    for j in range(2, L):
        hj = h if hj is None else ball_mul(hj, h)
        if moments[j] != 0:
            term = ball_mul(ball_mul(A_dd[j], hj), from_fraction(moments[j]))
            T = term if T is None else ball_add(T, term)
    xb = from_float(x)
    S = None
    absd = np.zeros((len(offsets),) + H.shape)
    for k, (c, w) in enumerate(zip(offsets, weights)):
        yx = ball_sub(from_float(Y[k]), xb)  # y − x = s + d, exact (two_sum of floats)
        s = ball_mul(h, from_fraction(c))
        d = ball_sub(yx, s)
        absd[k] = np.abs(np.broadcast_to(d.hi, H.shape))
        if not absd[k].any():
            continue  # every node of this offset is exact: its S terms are exactly 0
        q = spow = acc = None  # q_j, s^(j-1), Σ a_j q_j
        for j in range(1, L):
            q = d if q is None else ball_add(ball_mul(yx, q), ball_mul(d, spow))  # (s + d)^j − s^j
            spow = s if spow is None else ball_mul(spow, s)
            term = ball_mul(A_dd[j], q)
            acc = term if acc is None else ball_add(acc, term)
        part = ball_mul(acc, from_fraction(w))
        S = part if S is None else ball_add(S, part)
    zero = exact(np.zeros(H.shape))
    T = zero if T is None else T
    S = zero if S is None else ball_div(S, h)
    T, S = (b.map(lambda a: np.broadcast_to(a, H.shape)) for b in (T, S))
    return to_arb(T), to_arb(S), np.array(T.rad), np.array(S.rad), absd


def _arb_row(A, moments, offsets, weights, x, hf, ys):
    """T, S, their radii and |d_k| of one step in Arb (the current precision): any h, any range."""
    from verigrad.engine import arb as ab

    def q(v: Fraction):
        return ab.arb(v.numerator) / v.denominator

    Wn = hf.size
    h = ab.from_float(hf)
    xs = ab.from_float(x)
    T = np.full(Wn, ab.arb(0), dtype=object)
    hj = np.full(Wn, ab.arb(1), dtype=object)  # h^(j-1)
    for j in range(2, len(A)):
        hj = hj * h
        if moments[j] != 0:
            T = T + A[j] * hj * q(moments[j])
    S = np.full(Wn, ab.arb(0), dtype=object)
    absd = np.zeros((len(offsets), Wn))
    for k, (c, w) in enumerate(zip(offsets, weights)):
        sk = h * q(c)
        dk = ab.from_float(ys[k]) - xs - sk
        absd[k] = np.abs(dk.astype(np.float64))
        if not absd[k].any():
            continue
        qj = np.full(Wn, ab.arb(0), dtype=object)
        spow = np.full(Wn, ab.arb(1), dtype=object)  # s^(j-1)
        acc = np.full(Wn, ab.arb(0), dtype=object)
        for j in range(1, len(A)):
            qj = (sk + dk) * qj + dk * spow  # (s + d)^j - s^j, without cancellation
            spow = spow * sk
            acc = acc + A[j] * qj
        S = S + acc * q(w)
    S = S / h
    return T, S, _RAD(T).astype(np.float64), _RAD(S).astype(np.float64), absd
