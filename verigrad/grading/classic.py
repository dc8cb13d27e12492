"""The classic gradient-check metric, for comparison with grade().

``relative_difference(a, b) = ||a - b||_2 / (||a||_2 + ||b||_2)`` (computed exactly) and
``classic_check``, its pass/fail at a threshold: what most gradient checkers do, with a finite
difference as the oracle.  verigrad reports it beside its own grade, never instead of it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import mpmath
import numpy as np
from mpmath import libmp

from verigrad.grading.exact import _FZERO, _PREC, _RN, _convert_array

__all__ = ["classic_check", "relative_difference"]

# ---------------------------------------------------------------------------
# the classic metric
# ---------------------------------------------------------------------------


def _flat_raw(x: Any, what: str, keys: Sequence[str] | None = None) -> list[tuple | None]:
    if isinstance(x, Mapping):
        arrays = [x[k] for k in (keys if keys is not None else list(x))]
    elif isinstance(x, (list, tuple)) and x and all(
            isinstance(a, np.ndarray) for a in x):
        arrays = list(x)
    else:
        arrays = [x]
    out: list[tuple | None] = []
    for a in arrays:
        arr = np.asarray(a)
        try:
            out.extend(_convert_array(arr)[0])
        except TypeError as exc:
            raise ValueError(f"{what}: {exc.args[0]}") from None
    return out


def relative_difference(a: Any, b: Any) -> float:
    """The classic gradient-check metric ``||a - b||_2 / (||a||_2 + ||b||_2)``.

    Parameters
    ----------
    a, b : array_like, sequence of ndarray, or mapping of str to array_like
        Flattened and concatenated (a mapping in ``a``'s key order; ``b`` must
        have the same keys); any real dtype, object arrays of mpmath.mpf
        included.  The total sizes must agree.

    Returns
    -------
    float
        Computed exactly (192-bit sums of exact squares, rounded once to
        float); 0 when both are zero; NaN if any entry is NaN or infinite.

    Examples
    --------
    >>> relative_difference(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    0.0
    >>> relative_difference(np.array([1.0]), np.array([-1.0]))
    1.0
    """
    keys = None
    if isinstance(a, Mapping):
        if not isinstance(b, Mapping) or set(a) != set(b):
            raise ValueError("relative_difference: a and b must be mappings with the same "
                             f"keys, got {list(a)} and "
                             f"{list(b) if isinstance(b, Mapping) else type(b).__name__}")
        keys = list(a)
    ra = _flat_raw(a, "relative_difference(a)", keys)
    rb = _flat_raw(b, "relative_difference(b)", keys)
    if len(ra) != len(rb):
        raise ValueError(f"relative_difference: a has {len(ra)} entries, b has {len(rb)}")
    if any(t is None for t in ra) or any(t is None for t in rb):
        return math.nan
    mk = mpmath.mp.make_mpf
    with mpmath.workprec(_PREC):
        sd = sa = sb = mk(_FZERO)
        for x, y in zip(ra, rb):
            d = libmp.mpf_sub(x, y, 0)
            sd += mk(libmp.mpf_mul(d, d, _PREC, _RN))
            sa += mk(libmp.mpf_mul(x, x, _PREC, _RN))
            sb += mk(libmp.mpf_mul(y, y, _PREC, _RN))
        den = mpmath.sqrt(sa) + mpmath.sqrt(sb)
        return float(mpmath.sqrt(sd) / den) if den else 0.0


def classic_check(candidate_value: Any, fd_value: Any, threshold: float = 1e-7) -> bool:
    """The classic pass/fail check: ``relative_difference(candidate, fd) <= threshold``.

    This is what most gradient checkers do (with a finite difference as the
    oracle); verigrad provides it only for comparison with :func:`verigrad.grading.grade`.

    Parameters
    ----------
    candidate_value, fd_value : array_like or mapping of str to array_like
        See :func:`relative_difference`.
    threshold : float, default 1e-7
        Positive and finite.

    Returns
    -------
    bool
        False if the difference is NaN.

    Examples
    --------
    >>> classic_check(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]), 1e-7)
    True
    """
    t = float(threshold)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"classic_check(threshold={threshold!r}): threshold must be a "
                         "positive finite number, e.g. threshold=1e-7")
    r = relative_difference(candidate_value, fd_value)
    return bool(r <= t)
