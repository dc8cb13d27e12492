"""The nodes of a stencil and the batches that carry them.

A node is y_k = fl_p(x_p + c_k h_p e), rounded *once* from the exact value
(:func:`_nodes`); :func:`batched_leaves` puts many points that differ from a base
point in a few entries into one batched evaluation of the graph.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np

from verigrad.engine.backends import round_fraction

__all__ = ["batched_leaves"]


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
