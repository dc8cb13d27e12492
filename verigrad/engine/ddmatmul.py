"""Certified matrix products of double-double ball matrices with BLAS.

The midpoint product is computed with the error-free splitting of Ozaki, Ogita, Oishi and
Rump ("Error-free transformations of matrix multiplication by using fast routines of
matrix multiplication and its applications", Numer. Algorithms 59, 2012): each operand is
cut into float64 *slices* whose entries lie on a coarse per-row (per-column) grid, so that
every float64 product of two slices is computed *exactly* by any matrix-multiplication
routine (BLAS, any summation order, with or without FMA).  The exact slice products are
accumulated in double-double; the few slice pairs that are left out and the remainders of
the splitting are bounded analytically.  The radius part ``|A| rad(B) + rad(A) |B| +
rad(A) rad(B)`` is computed with float64 products of non-negative matrices and rounded up.

Public function: :func:`ball_matmul`.
"""

from __future__ import annotations

import math

import numpy as np

from verigrad.engine.dd import TINY, UP, gamma, two_sum

__all__ = ["ball_matmul", "slice_width", "FastMatmulUnavailable"]

#: bits of the midpoint product that the splitting resolves below the scale ``n 2^(e_i + f_j)``
TARGET_BITS = 113


class FastMatmulUnavailable(ArithmeticError):
    """The operands are outside the range where the splitting is proved exact."""


def slice_width(n: int) -> int:
    """The slice width ``w`` (bits per slice) for inner dimension ``n``.

    The largest ``w`` with ``n (2^w + 2)^2 <= 2^53`` (exact integer arithmetic): then every
    entry of a product of two slices is an integer multiple of its grid of magnitude at
    most ``2^53`` times that grid, so it is exactly representable (see :func:`ball_matmul`).
    """
    n = max(int(n), 1)
    w = 26
    while n * (2**w + 2) ** 2 > 2**53:
        w -= 1
    if w < 4:
        raise FastMatmulUnavailable(f"inner dimension {n} too large for exact slices")
    return w


def _exponents(h: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row (axis=-1) or column (axis=-2) exponent E with max|h| < 2^E, and a nonzero mask."""
    m = np.max(np.abs(h), axis=axis, keepdims=True)
    _, e = np.frexp(m)
    return e.astype(np.int64), m > 0


def _slices(h: np.ndarray, l: np.ndarray | None, E: np.ndarray, w: int, k: int, axis: int,
            reuse: bool = False):
    """Yield the k slices of the dd matrix ``h + l`` on the grids ``2^(E - t w)``, t = 1..k.

    Notes
    -----
    ``beta = 53 - w``; slice t uses ``sigma_t = 2^(E + beta - (t - 1) w)`` (per row or
    column, via broadcasting) and ``S_t = fl(fl(R + sigma_t) - sigma_t)`` where ``R`` is the
    high word of the current residual ``V = R + L`` (normalised with :func:`two_sum`).
    Invariant: ``|V_t| <= (1 + 2^-28) 2^(E - t w)``.  Proof: ``|R_{t-1}| <= (1+2^-27)
    2^(E-(t-1)w) <= sigma_t 2^(1-beta)`` so ``R + sigma_t`` lies in ``[sigma_t/2, 2 sigma_t)``,
    its rounding error is at most half an ulp of ``2 sigma_t``'s binade, ``2^(E - t w)``, and
    the subtraction of ``sigma_t`` is exact (Sterbenz); ``R - S_t`` is exact, and the low
    word carried along is at most ``u |R_{t-1}| <= 2^(E - t w) 2^(w-53)(1+2^-27)``, which
    gives the invariant for ``w <= 24``.  Also yielded: where the residual is exactly zero
    after this slice (per row, ``axis=-1``, or per column, ``axis=-2``).  So ``S_t`` is an integer multiple of
    ``2^(E - t w)`` with ``|S_t| <= |R_{t-1}| + 2^(E - tw) <= (2^w + 2) 2^(E - t w)``.
    """
    beta = 53 - w
    R = np.array(h, dtype=np.float64, copy=True)
    L = None if l is None else np.array(l, dtype=np.float64, copy=True)
    per_row = R.size <= (1 << 20)
    buf = None
    for t in range(1, k + 1):
        sigma = np.ldexp(1.0, E + beta - (t - 1) * w)
        if reuse:
            buf = np.add(R, sigma, out=buf)
            S = buf
        else:
            S = R + sigma
        S -= sigma
        R -= S
        if L is not None:
            R, L = two_sum(R, L)
        if per_row:
            done = ~np.any(R != 0, axis=axis, keepdims=True)  # the residual is exactly 0 (then L = 0 too)
        else:
            done = np.full((1,) * R.ndim, not np.any(R))
        yield S, done
        if per_row and done.all() or not per_row and done.item():
            return


def _is_zero(a) -> bool:
    return a is None or not np.any(a)


def ball_matmul(ah: np.ndarray, al: np.ndarray | None, ar: np.ndarray | None,
                bh: np.ndarray, bl: np.ndarray | None, br: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Certified product of ball matrices ``[A ± rA] @ [B ± rB]`` with dd midpoints.

    Parameters
    ----------
    ah, al, ar : ndarray of float64, shape (L, m, n) or (1, m, n)
        Midpoint ``ah + al`` (normalised dd, ``|al| <= u |ah|``) and radius ``ar >= 0`` of A;
        ``al``/``ar`` may be None for zero.
    bh, bl, br : ndarray of float64, shape (L, n, p) or (1, n, p)
        The same for B.  The leading (batch) axes broadcast.

    Returns
    -------
    hi, lo, rad : ndarray of float64, shape (L, m, p)
        Every exact product ``A B`` with ``A``, ``B`` in the balls lies in ``[hi + lo ± rad]``.

    Raises
    ------
    FastMatmulUnavailable
        When an exponent condition of the proof fails (tiny or huge magnitudes): the
        caller falls back to Arb.

    Notes
    -----
    *Midpoint.*  With ``w = slice_width(n)``, ``k = ceil(TARGET_BITS / w)``, row exponents
    ``e_i`` of A (``max_l |ah_il| < 2^e_i``) and column exponents ``f_j`` of B, the slices of
    :func:`_slices` give ``A = sum_{s<=k} S_s + V^A_k`` and ``B = sum_{t<=k} T_t + V^B_t``
    exactly.  Then, exactly,
    ``A B = sum_{s+t<=k+1} S_s T_t + sum_{s<=k} S_s V^B_{k+1-s} + V^A_k B``.
    Each product ``S_s T_t`` has entries that are sums of ``n`` integer multiples of the grid
    ``g = 2^(e_i + f_j - (s+t) w)`` each of magnitude at most ``(2^w+2)^2 g``; as
    ``n (2^w+2)^2 <= 2^53`` every partial sum, in any order, is an integer multiple of ``g``
    below ``2^53 g`` and hence exactly representable provided ``g >= 2^-1074`` and
    ``2^53 g < 2^1023`` (checked: ``FastMatmulUnavailable`` otherwise).  So BLAS returns
    ``S_s T_t`` exactly.  The neglected terms are bounded entrywise by
    ``n 2^(e_i + f_j - k w) (k (1 + 2^(1-w))(1 + 2^-28) + (1 + 2^-28)) <= (k+2) n 2^(e_i+f_j-kw)``
    (powers of two times an integer: computed exactly with ``ldexp``, its exponent clamped
    at -1000 from below, which only enlarges it).  Where the residual of row ``i`` of A is
    exactly zero after ``j_i`` slices and that of column ``j`` of B after ``l_j`` slices, with
    ``j_i + l_j <= k + 1``, every non-zero pair was multiplied and every remainder vanishes:
    the neglected part is exactly 0 (so exact products stay exact).  The exact products are accumulated in dd
    with :func:`two_sum`; the low words dropped in the accumulation are computed exactly and
    their absolute values summed (at most 64 terms, sums only) and rounded up.

    *Radius.*  ``|A_mid| <= (1 + u)|ah|``, so the exact radius term satisfies
    ``rho <= (1 + u)((|ah| + ar) br + ar |bh|)``.  ``G = fl((fl(|ah| + ar)) @ br) + fl(ar @ |bh|)``
    is computed with float64 products of non-negative matrices: each dot product has
    relative error at most ``gamma_n`` in any summation order, plus at most ``n eta``
    absolute error from underflowed products; so ``rho <= G (1 + gamma_{n+3})/(1 - gamma_n) + ...``
    and the result uses the factor ``(1 + 2 gamma_{n+4}) UP``.  Underflow: when the smallest
    non-zero factors cannot give a product below ``2^-1000`` nothing underflows; otherwise a
    0/1 indicator product (exact: integer counts) finds the entries with a product of non-zero
    factors, and ``n TINY >= n eta`` is added there where ``G < 2^-1000`` (elsewhere the slack of
    ``UP`` covers ``n eta``, as in :func:`verigrad.engine.dd.up`, for ``n <= 2^28``).
    """
    n = ah.shape[-1]
    if bh.shape[-2] != n:
        raise ValueError("inner dimensions differ")
    out_shape = np.broadcast_shapes(ah.shape[:-2], bh.shape[:-2]) + (ah.shape[-2], bh.shape[-1])
    al = None if _is_zero(al) else al
    bl = None if _is_zero(bl) else bl
    ar = None if _is_zero(ar) else ar
    br = None if _is_zero(br) else br

    w = slice_width(n)
    k = -(-TARGET_BITS // w)
    e, anz = _exponents(ah, -1)  # (L, m, 1)
    f, bnz = _exponents(bh, -2)  # (L, 1, p)
    if anz.any() and bnz.any():
        emin, emax = int(e[anz].min()), int(e[anz].max())
        fmin, fmax = int(f[bnz].min()), int(f[bnz].max())
        if emin + fmin - (k + 1) * w < -1074 or emax + fmax + 2 > 1023 - 53 + 2 * w:
            raise FastMatmulUnavailable("magnitudes outside the exact-splitting range")
        if emax + 53 - w > 1000 or fmax + 53 - w > 1000:
            raise FastMatmulUnavailable("magnitudes too large to split")

    # -- midpoint: exact slice products accumulated in dd ---------------------------------
    hi = np.zeros(out_shape)
    lo = np.zeros(out_shape)
    dropped = np.zeros(out_shape)
    a_big = ah.size >= bh.size
    ja = np.full(e.shape, k + 1, dtype=np.int64)  # slices after which a row of A is exhausted
    jb = np.full(f.shape, k + 1, dtype=np.int64)
    if a_big:
        small = list(_slices(bh, bl, f, w, k, -2))
        big = _slices(ah, al, e, w, k, -1, reuse=True)
    else:
        small = list(_slices(ah, al, e, w, k, -1))
        big = _slices(bh, bl, f, w, k, -2, reuse=True)
    js, jbig = (jb, ja) if a_big else (ja, jb)
    for t, (_, done) in enumerate(small, start=1):
        js[...] = np.where(done & (js > k), t, js)
    small_nz = [bool(np.any(S)) for S, _ in small] + [False] * (k - len(small))
    for s, (S, done) in enumerate(big, start=1):
        jbig[...] = np.where(done & (jbig > k), s, jbig)
        for t in range(1, k + 2 - s):
            if not small_nz[t - 1]:
                continue
            P = np.matmul(S, small[t - 1][0]) if a_big else np.matmul(small[t - 1][0], S)
            hi, c = two_sum(hi, P)
            g, dg = two_sum(lo, c)
            hi, lo = two_sum(hi, g)
            dropped += np.abs(dg)
    # the neglected slice pairs and remainders: (k + 2) n 2^(e_i + f_j - k w)
    expo = np.maximum(e + f - k * w, -1000)
    neglect = np.ldexp(float((k + 2) * n), expo)
    neglect = np.where(anz & bnz & (ja + jb > k + 1), neglect, 0.0)
    err = (dropped * UP) + neglect  # dropped: <= 64 additions; neglect exact; one more rounding below

    # -- radius ----------------------------------------------------------------------------
    rad = None
    if ar is not None or br is not None:
        terms = []
        if br is not None:
            left = np.abs(ah) if ar is None else np.abs(ah) + ar
            terms.append((left, br))
        if ar is not None:
            terms.append((ar, np.abs(bh)))
        g = gamma(n + 4)
        fac = (1.0 + 2.0 * g) * UP
        rad = None
        for x, y in terms:
            G = np.matmul(x, y)
            xm = np.min(x, where=x > 0, initial=np.inf)
            ym = np.min(y, where=y > 0, initial=np.inf)
            if float(xm) * float(ym) < 2.0 ** -1000:
                # a product of non-zero factors may underflow: add n eta where one exists
                P = np.matmul((x > 0).astype(np.float64), (y > 0).astype(np.float64))
                G = G + np.where((P > 0) & (G < 2.0 ** -1000), float(n) * TINY, 0.0)
            rad = G if rad is None else rad + G
        rad = rad * fac
    total = err if rad is None else rad + err
    total = total * UP  # the final additions (no underflow: sums only, products checked above)
    if total.shape != out_shape:
        total = np.broadcast_to(total, out_shape).copy()
    return hi, lo, total
