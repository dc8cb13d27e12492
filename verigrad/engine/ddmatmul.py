"""Certified matrix products of double-double ball matrices with BLAS.

The midpoint product is computed with the error-free splitting of Ozaki, Ogita, Oishi and
Rump ("Error-free transformations of matrix multiplication by using fast routines of
matrix multiplication and its applications", Numer. Algorithms 59, 2012): each operand is
cut into float64 *slices* whose entries lie on a coarse per-row (per-column) grid, so that
every float64 product of slices is computed *exactly* by any matrix-multiplication
routine (BLAS, any summation order, with or without FMA).  The slice products of one
"diagonal" (``s + t`` constant, all on one grid) are added exactly in float64 (the number of
pairs counts in the slice width), the exact diagonal sums are accumulated in double-double, and the few slice
pairs that are left out and the remainders of the splitting are bounded analytically.  The
radius part ``|A| rad(B) + rad(A) |B| + rad(A) rad(B)`` is computed with float64 products of
non-negative matrices and rounded up.

The larger operand is processed in blocks of rows that stay in cache: its slices are
computed block by block, multiplied and dropped, so a large constant matrix (a data matrix
``X`` entering ``X @ w`` and ``X.T @ r``) is never held in several sliced copies and is read
from memory once per product (its per-row grid is the natural one for each orientation).

Public function: :func:`ball_matmul`.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from verigrad.engine.dd import TINY, UP, gamma, two_sum

__all__ = ["ball_matmul", "slice_width", "FastMatmulUnavailable"]

#: bits of the midpoint product that the splitting resolves below the scale ``n 2^(e_i + f_j)``
TARGET_BITS = 128
#: largest slice width used (the invariants of :func:`_slice_rows` are proved for w <= 24)
MAX_WIDTH = 24
#: elements of the large operand per block (its k slices then take a few MB: cache resident)
BLOCK_ELEMS = 1 << 17


class FastMatmulUnavailable(ArithmeticError):
    """The operands are outside the range where the splitting is proved exact."""


def slice_width(n: int, pairs: int = 1) -> int:
    """The slice width ``w`` (bits per slice) for inner dimension ``n``.

    The largest ``w <= MAX_WIDTH`` with ``pairs * n * (2^w + 2)^2 <= 2^53`` (exact integer
    arithmetic), where ``pairs`` slice products are summed by one BLAS call: then every entry
    of such a sum is an integer multiple of its grid of magnitude at most ``2^53`` times that
    grid, so it is exactly representable (see :func:`ball_matmul`).
    """
    n = max(int(n), 1) * max(int(pairs), 1)
    w = MAX_WIDTH
    while n * (2**w + 2) ** 2 > 2**53:
        w -= 1
    if w < 4:
        raise FastMatmulUnavailable(f"inner dimension {n} too large for exact slices")
    return w


def _width_and_count(n: int) -> tuple[int, int]:
    """``(w, k)``: ``k = ceil(TARGET_BITS / w)`` slices and ``k n (2^w + 2)^2 <= 2^53``."""
    w = MAX_WIDTH
    while w >= 4:
        k = -(-TARGET_BITS // w)
        if k * max(n, 1) * (2**w + 2) ** 2 <= 2**53:
            return w, k
        w -= 1
    raise FastMatmulUnavailable(f"inner dimension {n} too large for exact slices")


def _neglect_constant(n: int, w: int, k: int) -> float:
    """A float upper bound of ``n (k (1 + 2^(1-w))(1 + 2^-27) + (1 + 2^-27)(1 + 2^-52))``.

    See the Notes of :func:`ball_matmul` (exact rational arithmetic, rounded up).
    """
    c = Fraction(1) + Fraction(1, 2**27)
    q = n * (k * (1 + Fraction(2, 2**w)) * c + c * (1 + Fraction(1, 2**52)))
    f = float(q)
    if Fraction(f) < q:
        f = float(np.nextafter(f, np.inf))
    return f


def _row_exponents(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: ``E`` with ``max_l |h_il| < 2^E`` (0 for a zero row), and the non-zero mask; shape (r, 1)."""
    m = np.max(np.abs(h), axis=1, keepdims=True) if h.shape[1] else np.zeros((h.shape[0], 1))
    _, e = np.frexp(m)
    return e.astype(np.int64), m > 0


def _slice_rows(h: np.ndarray, l: np.ndarray | None, E: np.ndarray, w: int, k: int, out: np.ndarray
                ) -> tuple[int, np.ndarray]:
    """Write up to k slices of the dd matrix ``h + l`` (r, n) on the row grids ``2^(E - t w)``.

    Slice ``t`` goes to ``out[:, (t-1) n : t n]``.  Returns the number ``kk`` of slices
    written (fewer than k once every row's residual is exactly zero) and, per row, the slice
    count ``j`` after which its residual is exactly zero (``k + 1``: not within k slices).

    Notes
    -----
    ``beta = 53 - w`` (``w <= 24``); slice t uses ``sigma_t = 2^(E + beta - (t - 1) w) = 2^(E - tw + 53)``
    and ``S_t = fl(fl(R + sigma_t) - sigma_t)`` where ``R`` is the high word of the current
    residual ``V = R + L`` (renormalised with :func:`two_sum`, so ``|L| <= u |R|``).

    Invariant: ``|V_t| <= (1 + 2^-27) 2^(E - t w)`` and ``|R_t| <= (1 + 2^-26) 2^(E - tw)``
    (for exact input, ``L = 0``: ``|V_t| <= 2^(E - t w)``).  Proof by induction (``t = 0``:
    ``|h| < 2^E``): ``|R_{t-1}| <= sigma_t 2^(1 - beta) <= sigma_t / 4``, so ``R + sigma_t`` lies
    in ``[3 sigma_t / 4, 5 sigma_t / 4]``; there the float grid has spacing at least
    ``sigma_t 2^-53 = 2^(E - tw)``, so ``fl(R + sigma_t)`` and ``S_t`` (Sterbenz: the
    subtraction is exact) are integer multiples of ``2^(E - t w)``, and ``R - S_t`` is minus
    the rounding error of ``R + sigma_t``: exact, at most ``2^(E - t w)`` in magnitude.  The
    low word adds ``|L_{t-1}| <= u |R_{t-1}| <= 2^(E - tw) 2^(w - 53)(1 + 2^-26) <= 2^(E - tw) 2^-28.9``
    (``w <= 24``); ``R_t = fl(V_t)`` adds a factor ``1 + u``.  Hence also
    ``|S_t| <= |R_{t-1}| + 2^(E - tw) <= (2^w + 2) 2^(E - t w)``.  A residual that is exactly
    zero has ``R = 0`` and ``L = 0`` (the error of a two_sum whose sum is 0 is 0).
    """
    r, n = h.shape
    beta = 53 - w
    R = np.array(h, dtype=np.float64, copy=True, order="C")
    L = None if l is None else np.array(l, dtype=np.float64, copy=True, order="C")
    j = np.full((r, 1), k + 1, dtype=np.int64)
    kk = 0
    for t in range(1, k + 1):
        sigma = np.ldexp(1.0, E + (beta - (t - 1) * w))
        S = out[:, (t - 1) * n:t * n]
        np.add(R, sigma, out=S)
        S -= sigma
        R -= S
        if L is not None:
            R, L = two_sum(R, L)
        kk = t
        done = ~np.any(R, axis=1, keepdims=True)
        j[done & (j > k)] = t
        if done.all():
            break
    return kk, j


def _is_zero(a) -> bool:
    """Whether ``a`` is None or all zeros (a zero-stride view is checked by its one value)."""
    if a is None:
        return True
    a = np.asarray(a)
    if a.size == 0:
        return True
    if not any(a.strides):
        return a.reshape(-1)[0] == 0
    return not np.any(a)


def _pos_min(x: np.ndarray) -> float:
    return float(np.min(x, where=x > 0, initial=np.inf))


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
    Each batch entry is a 2-D product; the operand with more entries is called A (the other
    is transposed into place: ``A B = (B^T A^T)^T``), and A is processed in blocks of rows.

    *Midpoint.*  With ``(w, k)`` from :func:`_width_and_count` (``k = ceil(128 / w)``,
    ``k n (2^w + 2)^2 <= 2^53``, ``w <= 24``), row exponents ``e_i`` of A (``max_l |ah_il| < 2^e_i``)
    and column exponents ``f_j`` of B, :func:`_slice_rows` gives ``A = sum_{s<=k} S_s + V^A_k``
    and ``B = sum_{t<=k} T_t + V^B_t`` exactly (B's slices per column, on ``2^(f_j - t w)``).
    Then, exactly,
    ``A B = sum_{s+t<=k+1} S_s T_t + sum_{s<=k} S_s V^B_{k+1-s} + V^A_k B``.
    The pairs of one diagonal ``d = s + t`` have entries that are integer multiples of
    ``g = 2^(e_i + f_j - d w)``.  Each slice ``S_s`` is multiplied by ``[T_1 | T_2 | ...]`` (B's slices
    side by side) in one BLAS call, and the pair products of a diagonal are added in float64 into
    ``D_d = sum_{s+t=d} S_s T_t``: all are sums of at most ``k n`` terms, each an integer multiple
    of ``g`` of magnitude at most ``(2^w+2)^2 g``.  As ``k n (2^w+2)^2 <= 2^53``, every partial
    sum, in any order (BLAS's, the pair additions, the blocks of :func:`_mm2_inner_blocks`), is
    an integer multiple of ``g`` below ``2^53 g`` and hence exactly representable provided
    ``g >= 2^-1074`` and ``2^53 g < 2^1023`` (checked: ``FastMatmulUnavailable`` otherwise).
    So ``D_d`` is exact.  The neglected terms are bounded entrywise by
    ``k n (2^w + 2)(1 + 2^-27) 2^(e_i + f_j - (k+1) w) + n (1 + 2^-27) 2^(e_i - kw) (1 + u) 2^(f_j)``
    (``|B_lj| <= (1 + u)|bh_lj| < (1 + u) 2^f_j``), i.e. by ``c 2^(e_i + f_j - k w)`` with the constant
    ``c`` of :func:`_neglect_constant` (rounded up; the power of two is applied exactly with
    ``ldexp``, its exponent clamped at -1000 from below, which only enlarges it).  Where the
    residual of row ``i`` of A is exactly zero after ``j_i`` slices and that of column ``j``
    of B after ``l_j`` slices, with ``j_i + l_j <= k + 1``, every non-zero pair was multiplied
    and every remainder vanishes: the neglected part is exactly 0 (so exact products stay
    exact).  The exact diagonal sums are accumulated in dd with :func:`two_sum`; the low
    words dropped in the accumulation are computed exactly and their absolute values summed
    (at most 30 terms, sums only) and rounded up.

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
    lead = np.broadcast_shapes(ah.shape[:-2], bh.shape[:-2])
    m, p = ah.shape[-2], bh.shape[-1]
    al = None if _is_zero(al) else al
    bl = None if _is_zero(bl) else bl
    ar = None if _is_zero(ar) else ar
    br = None if _is_zero(br) else br
    L = int(np.prod(lead, dtype=np.int64))
    if L == 1:
        hi, lo, rad = _mm2(*(None if x is None else x.reshape(x.shape[-2:]) for x in (ah, al, ar, bh, bl, br)))
        shp = lead + (m, p)
        return hi.reshape(shp), lo.reshape(shp), rad.reshape(shp)
    hi = np.empty(lead + (m, p))
    lo = np.empty(lead + (m, p))
    rad = np.empty(lead + (m, p))
    la, lb = ah.shape[:-2], bh.shape[:-2]
    A = [None if x is None else np.broadcast_to(x, ah.shape) for x in (ah, al, ar)]
    B = [None if x is None else np.broadcast_to(x, bh.shape) for x in (bh, bl, br)]
    for idx in np.ndindex(*lead):
        ia = tuple(i if s > 1 else 0 for i, s in zip(idx[len(idx) - len(la):], la))
        ib = tuple(i if s > 1 else 0 for i, s in zip(idx[len(idx) - len(lb):], lb))
        hi[idx], lo[idx], rad[idx] = _mm2(*(None if x is None else x[ia] for x in A),
                                          *(None if x is None else x[ib] for x in B))
    return hi, lo, rad


def _accumulate(diags: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """dd sum of exact float arrays (smallest first); also the summed |dropped low words| (or None).

    Notes
    -----
    Each step ``h, c = two_sum(h, D)``; ``g, dg = two_sum(l, c)``; ``h, l = two_sum(h, g)`` is
    error free except for ``dg``, which is computed exactly: ``sum D = h + l + sum dg``.
    """
    h = l = dropped = None
    for D in diags:
        if D is None:
            continue
        if h is None:
            h, l = D, np.zeros_like(D)
            continue
        h, c = two_sum(h, D)
        gg, dg = two_sum(l, c)
        h, l = two_sum(h, gg)
        ad = np.abs(dg)
        dropped = ad if dropped is None else dropped + ad
    return h, l, dropped


def _diag_range(d: int, ka: int, kb: int) -> tuple[int, int]:
    """The slices ``s_lo..s_hi`` of A paired with ``t = d - s`` of B on diagonal ``d`` (``s <= ka``, ``t <= kb``)."""
    return max(1, d - kb), min(ka, d - 1)


def _check_range(e: np.ndarray, anz: np.ndarray, f: np.ndarray, bnz: np.ndarray, w: int, k: int) -> None:
    """``FastMatmulUnavailable`` unless every grid is a representable float and nothing overflows."""
    if not (anz.any() and bnz.any()):
        return
    emin, emax = int(e[anz].min()), int(e[anz].max())
    fmin, fmax = int(f[bnz].min()), int(f[bnz].max())
    if emin + fmin - (k + 1) * w < -1074 or emax + fmax + 2 > 1023 - 53 + 2 * w:
        raise FastMatmulUnavailable("magnitudes outside the exact-splitting range")
    if emax + 53 - w > 1000 or fmax + 53 - w > 1000:
        raise FastMatmulUnavailable("magnitudes too large to split")


class _Radius:
    """The radius product ``(|ah| + ar) br + ar |bh|`` accumulated over blocks (see :func:`ball_matmul`)."""

    def __init__(self, ar, bh, br, n: int) -> None:
        self.has_ar, self.has_br = ar is not None, br is not None
        self.abs_bh = np.abs(bh) if ar is not None else None
        self.ym_br = _pos_min(br) if br is not None else np.inf
        self.ym_bh = _pos_min(self.abs_bh) if ar is not None else np.inf
        self.n = n

    def __bool__(self) -> bool:
        return self.has_ar or self.has_br

    def product(self, hc, arc, brc, abs_bhc) -> np.ndarray | None:
        """``fl(fl(|hc| + arc) @ brc) + fl(arc @ abs_bhc)`` plus ``n TINY`` where a product may underflow."""
        G = None
        terms = []
        if self.has_br:
            left = np.abs(hc) if arc is None else np.abs(hc) + arc
            terms.append((left, brc, self.ym_br))
        if self.has_ar:
            terms.append((arc, abs_bhc, self.ym_bh))
        for x, y, ym in terms:
            Gt = x @ y
            if _pos_min(x) * ym < 2.0 ** -1000:
                # a product of non-zero factors may underflow: add n eta where one exists
                P = (x > 0).astype(np.float64) @ (y > 0).astype(np.float64)
                Gt = Gt + np.where((P > 0) & (Gt < 2.0 ** -1000), float(self.n) * TINY, 0.0)
            G = Gt if G is None else G + Gt
        return G


def _finish(hi, lo, rad, dropped, neglect, G, n: int) -> None:
    """``rad = up(G (1 + 2 gamma_{n+4}) UP + dropped UP + neglect)`` written in place."""
    err = None
    if dropped is not None:
        err = dropped * UP
    if neglect is not None:
        err = neglect if err is None else err + neglect
    if G is not None:
        G = G * ((1.0 + 2.0 * gamma(n + 4)) * UP)
        err = G if err is None else G + err
    if err is not None:
        rad[...] = err * UP  # the final additions (no underflow: sums only, products checked above)


def _b_slices(bh, bl, w: int, k: int):
    """Per-column slices of B (n, p): ``f`` (1, p), non-zero mask, count ``kb``, exhaustion ``jb`` (1, p),
    and ``Bcols`` (n, kb p) = ``[T_1 | T_2 | ... | T_kb]``."""
    n, p = bh.shape
    f, bnz = _row_exponents(bh.T)
    Tcat = np.empty((p, k * n))
    kb, jb = _slice_rows(bh.T, None if bl is None else bl.T, f, w, k, Tcat)
    Bcols = np.empty((n, kb * p))
    for t in range(1, kb + 1):
        Bcols[:, (t - 1) * p:t * p] = Tcat[:, (t - 1) * n:t * n].T
    return f.T, bnz.T, kb, jb.T, Bcols


def _mm2(ah, al, ar, bh, bl, br):
    """One 2-D certified product (see :func:`ball_matmul`); None for zero parts."""
    m, n = ah.shape
    p = bh.shape[1]
    if m * n < n * p:
        T = lambda x: None if x is None else x.T
        hi, lo, rad = _mm2(bh.T, T(bl), T(br), ah.T, T(al), T(ar))
        return hi.T, lo.T, rad.T
    if m == 0 or p == 0 or n == 0:
        return np.zeros((m, p)), np.zeros((m, p)), np.zeros((m, p))
    w, k = _width_and_count(n)
    if ah.strides[0] < ah.strides[1] and m * n > BLOCK_ELEMS:
        return _mm2_inner_blocks(ah, al, ar, bh, bl, br, w, k)
    return _mm2_row_blocks(ah, al, ar, bh, bl, br, w, k)


def _add_pairs(diags: dict, Q: np.ndarray, s: int, tmax: int, p: int, transpose: bool = False) -> None:
    """Add the pair products ``Q[:, (t-1)p : tp] = S_s T_t`` into the diagonal sums ``diags[s + t]`` (exact)."""
    for t in range(1, tmax + 1):
        P = Q[:, (t - 1) * p:t * p]
        d = s + t
        if d in diags:
            diags[d] += P
        else:
            diags[d] = P.copy()


def _mm2_row_blocks(ah, al, ar, bh, bl, br, w, k):
    """A processed in blocks of rows: grids, slices and products per block (rows of A contiguous)."""
    m, n = ah.shape
    p = bh.shape[1]
    hi = np.zeros((m, p))
    lo = np.zeros((m, p))
    rad = np.zeros((m, p))
    cn = _neglect_constant(n, w, k)
    f, bnz, kb, jb, Bcols = _b_slices(bh, bl, w, k)
    radius = _Radius(ar, bh, br, n)
    rows = max(1, min(m, BLOCK_ELEMS // n))
    beta = 53 - w
    S = np.empty((rows, n))
    for i0 in range(0, m, rows):
        i1 = min(m, i0 + rows)
        r = i1 - i0
        hc = ah[i0:i1]
        e, anz = _row_exponents(hc)
        dropped = neglect = None
        if anz.any() and bnz.any():
            _check_range(e, anz, f, bnz, w, k)
            R = np.array(hc, dtype=np.float64, copy=True, order="C")
            Lw = None if al is None else np.array(al[i0:i1], dtype=np.float64, copy=True, order="C")
            ja = np.full((r, 1), k + 1, dtype=np.int64)
            diags: dict[int, np.ndarray] = {}
            Sb = S[:r]
            for s in range(1, k + 1):
                # slice s of the block (the step of _slice_rows)
                sigma = np.ldexp(1.0, e + (beta - (s - 1) * w))
                np.add(R, sigma, out=Sb)
                Sb -= sigma
                R -= Sb
                if Lw is not None:
                    R, Lw = two_sum(R, Lw)
                tmax = min(kb, k + 1 - s)
                if tmax >= 1:
                    _add_pairs(diags, Sb @ Bcols[:, :tmax * p], s, tmax, p)
                done = ~np.any(R, axis=1, keepdims=True)
                ja[done & (ja > k)] = s
                if done.all():
                    break
            h, l, dropped = _accumulate([diags[d] for d in sorted(diags, reverse=True)])
            if h is not None:
                hi[i0:i1], lo[i0:i1] = h, l
            neglect = _neglect(cn, e, f, w, k, anz, bnz, ja, jb)
        G = radius.product(hc, None if ar is None else ar[i0:i1], br, radius.abs_bh) if radius else None
        _finish(hi[i0:i1], lo[i0:i1], rad[i0:i1], dropped, neglect, G, n)
    return hi, lo, rad


def _neglect(cn, e, f, w, k, anz, bnz, ja, jb):
    """``cn 2^(e_i + f_j - k w)`` where some pair or remainder was left out, else 0 (see :func:`ball_matmul`)."""
    expo = np.maximum(e + f - k * w, -1000)
    out = np.ldexp(cn, expo)
    return np.where(anz & bnz & (ja + jb > k + 1), out, 0.0)


def _mm2_inner_blocks(ah, al, ar, bh, bl, br, w, k):
    """A whose columns are contiguous (``A = X^T``) processed in blocks of its inner dimension.

    Notes
    -----
    The row grids of A (column maxima of X) are computed first; then for each block of
    the inner dimension the slices of ``X[l0:l1]`` (contiguous) on those grids are exactly the
    corresponding columns of the slices of A, and the block's part of each pair product is one
    exact BLAS product.  The block parts of a diagonal are integer multiples of its grid
    whose every partial sum is a partial sum of the whole diagonal, bounded by ``2^53 g``:
    adding them in float64 is exact.  Radius parts are sums of non-negative products in some
    order (the bound of :func:`ball_matmul` holds for any order).
    """
    m, n = ah.shape
    p = bh.shape[1]
    X = ah.T  # (n, m), rows contiguous
    XL = None if al is None else al.T
    XR = None if ar is None else ar.T
    cn = _neglect_constant(n, w, k)
    f, bnz, kb, jb, Bcols = _b_slices(bh, bl, w, k)
    # row grids of A: column maxima of X, in blocks (no full-size temporary)
    # blocks of at least 64 inner indices (each block adds its pair products into the m x p
    # diagonal sums), at most ~2 MB
    b = min(n, max(BLOCK_ELEMS // m, min(64, (1 << 18) // m), 1))
    colmax = np.zeros(m)
    for l0 in range(0, n, b):
        np.maximum(colmax, np.max(np.abs(X[l0:l0 + b]), axis=0), out=colmax)
    _, e = np.frexp(colmax)
    e = e.astype(np.int64)[None, :]  # (1, m): grids of the rows of A, along the columns of X
    anz = colmax[None, :] > 0
    radius = _Radius(ar, bh, br, n)
    diags: dict[int, np.ndarray] = {}
    ja = np.ones((1, m), dtype=np.int64)  # slices needed per row of A (k + 1: not exhausted)
    G = None
    active = bool(anz.any() and bnz.any())
    if active:
        _check_range(e, anz, f, bnz, w, k)
        beta = 53 - w
        sig = [np.ldexp(1.0, e + (beta - (t - 1) * w)) for t in range(1, k + 1)]
        S = np.empty((b, m))
    for l0 in range(0, n, b):
        l1 = min(n, l0 + b)
        if active:
            R = np.array(X[l0:l1], dtype=np.float64, copy=True, order="C")
            Lw = None if XL is None else np.array(XL[l0:l1], dtype=np.float64, copy=True, order="C")
            Sb = S[:l1 - l0]
            jblk = np.full((1, m), k + 1, dtype=np.int64)
            for s in range(1, k + 1):
                np.add(R, sig[s - 1], out=Sb)
                Sb -= sig[s - 1]
                R -= Sb
                if Lw is not None:
                    R, Lw = two_sum(R, Lw)
                tmax = min(kb, k + 1 - s)
                if tmax >= 1:
                    _add_pairs(diags, Sb.T @ Bcols[l0:l1, :tmax * p], s, tmax, p)
                done = ~np.any(R, axis=0, keepdims=True)
                jblk[done & (jblk > k)] = s
                if done.all():
                    break
            np.maximum(ja, jblk, out=ja)
        if radius:
            Gb = radius.product(X[l0:l1].T, None if XR is None else XR[l0:l1].T,
                                None if br is None else br[l0:l1],
                                None if radius.abs_bh is None else radius.abs_bh[l0:l1])
            G = Gb if G is None else G + Gb
    hi = np.zeros((m, p))
    lo = np.zeros((m, p))
    rad = np.zeros((m, p))
    h, l, dropped = _accumulate([diags[d] for d in sorted(diags, reverse=True)])
    if h is not None:
        hi[...], lo[...] = h, l
    neglect = _neglect(cn, e.T, f, w, k, anz.T, bnz, ja.T, jb) if active else None
    _finish(hi, lo, rad, dropped, neglect, G, n)
    return hi, lo, rad
