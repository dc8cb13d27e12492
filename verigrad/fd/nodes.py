"""The nodes of a stencil and the batches that carry them.

A node is y_k = fl_p(x_p + c_k h_p e), rounded *once* from the exact value
(:func:`_nodes` per coordinate, :func:`rounded_line_nodes` for a whole dense direction);
:func:`batched_leaves` puts many points that differ from a base point in a few entries into
one batched evaluation of the graph.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Mapping, Sequence

import mpmath
import numpy as np

from verigrad.engine.backends import round_fraction

__all__ = ["batched_leaves", "exact_nodes", "node_arb", "node_equals", "node_mpf", "rounded_line_nodes"]


def _is_power_of_two(q: Fraction) -> bool:
    n, d = abs(q.numerator), q.denominator
    return n > 0 and n & (n - 1) == 0 and d & (d - 1) == 0


def _nodes(x: np.ndarray, h: np.ndarray, c: Fraction, dtype: np.dtype) -> np.ndarray:
    """fl_p(x + c h), rounded once from the exact value, for arrays x, h of ``dtype``.

    For power-of-two offsets c*h is exact in the dtype, so one IEEE addition *is* the
    correctly rounded node; other offsets (3 in central6/8) go through exact rationals.
    """
    if c == 0:
        return x.copy()
    if _is_power_of_two(c):
        with np.errstate(all="ignore"):
            return (x + dtype.type(float(c)) * h).astype(dtype)
    return np.array([round_fraction(Fraction(float(a)) + c * Fraction(float(b)), dtype) for a, b in zip(x, h)],
                    dtype=dtype)


def batched_leaves(base: Mapping[str, np.ndarray], rows: Sequence[Mapping[tuple[str, int], object]]) -> dict:
    """Leaves of a batch: the base point (arrays with a batch axis of 1) repeated once per row,
    with the entries ``{(variable, flat index): value}`` of each row replaced; untouched leaves stay
    unbatched (batch 1, broadcast)."""
    B = len(rows)
    touched = {name for row in rows for (name, _) in row}
    out = {}
    for name, arr in base.items():
        if name not in touched:
            out[name] = arr
            continue
        a = np.repeat(arr, B, axis=0)
        flat = a.reshape(B, -1)
        for b, row in enumerate(rows):
            for (n, i), v in row.items():
                if n == name:
                    flat[b, i] = v
        out[name] = a
    return out


def rounded_line_nodes(x: np.ndarray, e: np.ndarray, t: Fraction, dtype) -> np.ndarray:
    """fl_p(x + t e) entrywise, rounded once from the exact value, for a whole direction at once.

    x + t e is enclosed in double-double balls (:mod:`verigrad.engine.fastball`); where a ball
    cannot straddle a rounding boundary of ``dtype`` its midpoint's nearest value is the node,
    and the few other entries are rounded exactly from rationals. Returns float64 arrays
    holding ``dtype`` values.
    """
    from verigrad.engine import fastball as fb

    tb = fb.from_fraction(t)
    prod = fb.ball_mul(tb.map(lambda a: np.broadcast_to(np.asarray(a, dtype=np.float64), x.shape)), fb.from_float(e))
    z = fb.ball_add(fb.from_float(x), prod)
    hi, lo, rad = (np.broadcast_to(a, x.shape) for a in (z.hi, z.lo, z.rad))
    np_dt = np.dtype(dtype)
    with np.errstate(all="ignore"):
        if np_dt == np.float64:
            y = np.array(hi, dtype=np.float64)
            half = np.minimum(np.spacing(np.abs(hi)), np.spacing(np.nextafter(np.abs(hi), 0))) / 2
            ok = (np.abs(lo) + rad) * (1 + 2.0 ** -20) < half * (1 - 2.0 ** -20)
        else:
            y32 = hi.astype(np_dt)
            y = y32.astype(np.float64)
            up = np.nextafter(y32, np.array(np.inf, dtype=np_dt)).astype(np.float64)
            down = np.nextafter(y32, np.array(-np.inf, dtype=np_dt)).astype(np.float64)
            margin = (np.abs(lo) + rad) * (1 + 2.0 ** -20) + np.spacing(np.abs(hi)) * 2.0 ** -30
            ok = (((y + up) / 2 - hi) > margin) & ((hi - (y + down) / 2) > margin) & np.isfinite(y)
    bad = np.flatnonzero(~ok.reshape(-1))
    if bad.size:
        y = y.reshape(-1).copy()
        xf, ef = x.reshape(-1), e.reshape(-1)
        for i in bad.tolist():
            y[i] = float(round_fraction(Fraction(float(xf[i])) + t * Fraction(float(ef[i])), np_dt))
        y = y.reshape(x.shape)
    return y


# An exact node value is a float, a pair of floats (their exact sum, a double-double) or,
# for offsets whose product with a step is not a float, a Fraction.

def exact_nodes(chunk, x: np.ndarray, hps, offsets) -> list:
    """The exact stencil nodes x_i + c h_(m,i) of many (step, entry) units, without rationals where possible.

    Parameters
    ----------
    chunk : sequence of (int, int)
        Units (step index m, flat entry i).
    x : ndarray, shape (n,)
        The variable's values (any float dtype; used exactly).
    hps : sequence of ndarray, shape (n,)
        h_p per step (floats of the dtype).
    offsets : sequence of Fraction
        The scheme's c_k.

    Returns
    -------
    list of (int, node)
        ``len(chunk) * len(offsets)`` rows (i, x_i + c_k h), unit-major. A node is a float
        when x + c h is one, else a pair (s, e) of floats with s + e = x + c h exactly, else
        (an offset that is not 0 or ± a power of two, such as central6's 3) a Fraction.

    Notes
    -----
    For c = 0 or ± 2^k, c h is a float (checked: no bit lost to underflow) and Knuth's
    two-sum s = fl(x + c h), e = (x − (s − b)) + (c h − b), b = s − x gives x + c h = s + e
    exactly, vectorised over the chunk.
    """
    from verigrad.engine.dd import two_sum

    I = np.array([i for _, i in chunk], dtype=np.int64)
    H = np.array([float(hps[m][i]) for m, i in chunk], dtype=np.float64)
    X = x[I].astype(np.float64)

    def rational(c, xi, hi):
        return Fraction(xi) + c * Fraction(hi)

    cols = []
    for c in offsets:
        if c == 0 or _is_power_of_two(c):
            ch = float(c) * H  # a power of two times a float: exact unless it underflows (checked)
            with np.errstate(over="ignore", invalid="ignore"):
                s, e = two_sum(X, ch)
            ok = np.isfinite(s) & np.isfinite(e)
            if c:
                ok &= ch / float(c) == H
            cols.append([float(a) if b == 0 else (float(a), float(b)) if good else rational(c, xi, hi)
                         for a, b, good, xi, hi in zip(s.tolist(), e.tolist(), ok.tolist(), X.tolist(), H.tolist())])
        else:
            cols.append([rational(c, xi, hi) for xi, hi in zip(X.tolist(), H.tolist())])
    return [(int(i), cols[k][j]) for j, i in enumerate(I.tolist()) for k in range(len(offsets))]


def node_equals(q, y: float) -> bool:
    """Whether the exact node ``q`` is the float ``y``."""
    if isinstance(q, float):
        return q == y
    if isinstance(q, tuple):
        return False  # a pair with a non-zero low part is not a float
    return q == Fraction(y)


def node_arb(q):
    """The Arb ball of an exact node (exact where the working precision holds it)."""
    from verigrad.engine import arb as ab

    return _node_as(q, ab.arb)


def node_mpf(q):
    """The mpmath number of an exact node (at the working precision)."""
    return _node_as(q, mpmath.mpf)


def _node_as(q, number):
    """A node in a number type that converts floats and integers exactly and rounds its arithmetic."""
    if isinstance(q, float):
        return number(q)
    if isinstance(q, tuple):
        return number(q[0]) + number(q[1])
    return number(q.numerator) / q.denominator
