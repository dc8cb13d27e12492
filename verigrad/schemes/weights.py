"""Exact finite-difference weights and the moments that give a scheme its order.

A linear stencil is a set of offsets ``c_k`` and weights ``w_k`` (exact
:class:`fractions.Fraction`). Expanding each ``f(x + c_k h)`` in a Taylor series
gives the exact truncation series in terms of the *moments*
``m_j = sum_k w_k c_k**j``::

    D(h) - f'(x) = sum_{j >= 2} f^(j)(x) / j! * m_j * h^(j-1)

(a consistent first-derivative scheme has ``m_0 = 0`` and ``m_1 = 1``). The
first ``j >= 2`` with ``m_j != 0`` gives the order ``p = j - 1`` and the leading
coefficient ``C = m_j / j!``, so that ``T(h) = C f^(p+1)(x) h^p + O(h^(p+1))``.
Orders and leading coefficients are always computed from the moments, never
typed in. The complex step has the formal moments ``m_j = Im(i**j)``, which make
the same truncation formula hold.

:func:`fornberg_weights` computes the weights of maximal order on arbitrary
offsets (Fornberg's algorithm, in exact rational arithmetic). The helpers here
(exact conversion to Fraction, moments, the leading term) are shared by
:mod:`verigrad.schemes.scheme` and :mod:`verigrad.schemes.registry`.

This module depends on the standard library and numpy only.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import NamedTuple

import numpy as np

__all__ = ["TruncationTerm", "fornberg_weights"]


class TruncationTerm(NamedTuple):
    """One term ``coefficient * f^(derivative)(x) * h^(derivative - q)`` of a scheme for ``f^(q)``
    (``q = 1``: ``h^(derivative - 1)``).

    Attributes
    ----------
    derivative : int
        Order ``j`` of the derivative of ``f`` in the term.
    coefficient : Fraction
        Exact coefficient ``m_j / j!`` of ``f^(j)(x) h^(j-1)``.
    """

    derivative: int
    coefficient: Fraction


# --------------------------------------------------------------------------
# Exact arithmetic helpers
# --------------------------------------------------------------------------


def _as_fraction(value: object, *, what: str) -> Fraction:
    """Convert ``value`` to a Fraction exactly, naming ``what`` on failure."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a rational number, got bool {value!r}")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, numbers.Rational):
        return Fraction(int(value.numerator), int(value.denominator))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            raise ValueError(f"{what} must be finite, got {value!r}")
        # Binary floats convert exactly; 0.5 -> 1/2, 0.1 -> 3602879701896397/2**55.
        return Fraction(float(value))
    if isinstance(value, (int, np.integer)):
        return Fraction(int(value))
    if isinstance(value, str):
        try:
            return Fraction(value)
        except ValueError:
            raise ValueError(
                f"{what} must be a rational number such as '1/2' or '-3', got {value!r}"
            ) from None
    raise TypeError(
        f"{what} must be an int, Fraction, float or string such as '1/2', "
        f"got {type(value).__name__} {value!r}"
    )


def _fmt(q: Fraction) -> str:
    """Format a Fraction compactly: ``-2``, ``1/12``."""
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def _formal_complex_moment(j: int) -> Fraction:
    """``Im(i**j)``: the formal moments of the complex step."""
    return Fraction((0, 1, 0, -1)[j % 4])


def _linear_moment(offsets: tuple[Fraction, ...], weights: tuple[Fraction, ...], j: int) -> Fraction:
    return sum((w * c**j for c, w in zip(offsets, weights)), Fraction(0))


def _leading_term(moment: Callable[[int], Fraction], max_j: int, derivative: int = 1) -> tuple[int, Fraction, int]:
    """First ``j > q`` (``q = derivative``) with ``moment(j) != 0``: return ``(p, C, j)``, ``p = j - q``."""
    for j in range(derivative + 1, max_j + 1):
        m = moment(j)
        if m != 0:
            return j - derivative, m / math.factorial(j), j
    # Unreachable for a finite stencil with distinct offsets and nonzero weights:
    # moments q+1..n+q vanishing would force every weight at a nonzero offset to 0.
    raise ValueError(f"all moments {derivative + 1}..{max_j} vanish; the stencil is degenerate")


# --------------------------------------------------------------------------
# Fornberg's algorithm
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _fornberg_cached(offsets: tuple[Fraction, ...], derivative: int) -> tuple[Fraction, ...]:
    # Fornberg (1988), in the compact form of Fornberg (1998), SIAM Rev. 40, 685-691.
    # c[j][k]: weight of node j in the formula for the k-th derivative at 0,
    # using the nodes 0..i seen so far.
    n = len(offsets)
    m = derivative
    z = Fraction(0)
    c = [[Fraction(0)] * (m + 1) for _ in range(n)]
    c[0][0] = Fraction(1)
    c1 = Fraction(1)
    c4 = offsets[0] - z
    for i in range(1, n):
        mn = min(i, m)
        c2 = Fraction(1)
        c5 = c4
        c4 = offsets[i] - z
        for j in range(i):
            c3 = offsets[i] - offsets[j]
            c2 *= c3
            if j == i - 1:
                for k in range(mn, 0, -1):
                    c[i][k] = c1 * (k * c[i - 1][k - 1] - c5 * c[i - 1][k]) / c2
                c[i][0] = -c1 * c5 * c[i - 1][0] / c2
            for k in range(mn, 0, -1):
                c[j][k] = (c4 * c[j][k] - k * c[j][k - 1]) / c3
            c[j][0] = c4 * c[j][0] / c3
        c1 = c2
    return tuple(row[m] for row in c)


def _validate_offsets(offsets: Iterable[object], *, minimum: int) -> tuple[Fraction, ...]:
    if isinstance(offsets, (str, bytes)):
        raise TypeError(f"offsets must be a sequence of rationals, got the string {offsets!r}")
    try:
        items = list(offsets)
    except TypeError:
        raise TypeError(
            f"offsets must be a sequence of rationals, got {type(offsets).__name__} {offsets!r}"
        ) from None
    fr = tuple(_as_fraction(v, what=f"offsets[{i}]") for i, v in enumerate(items))
    if len(set(fr)) != len(fr):
        dupes = sorted({_fmt(q) for q in fr if fr.count(q) > 1})
        raise ValueError(f"offsets must be distinct, got repeated offset(s) {', '.join(dupes)}")
    if len(fr) < minimum:
        raise ValueError(
            f"need at least {minimum} distinct offsets for this derivative, got {len(fr)}: "
            f"[{', '.join(_fmt(q) for q in fr)}]"
        )
    return fr


def fornberg_weights(offsets: Iterable[object], derivative: int = 1) -> tuple[Fraction, ...]:
    """Exact finite-difference weights for a derivative at 0 on arbitrary offsets.

    Parameters
    ----------
    offsets : sequence of int, Fraction, float or str
        Distinct node offsets ``c_k`` (in units of ``h``); converted to
        :class:`~fractions.Fraction` exactly (floats by their binary value).
    derivative : int, default 1
        Order ``q`` of the derivative; needs ``len(offsets) > q``.

    Returns
    -------
    tuple of Fraction
        Weights ``w_k`` in the order of ``offsets`` such that
        ``f^(q)(x) ~ sum_k w_k f(x + c_k h) / h**q`` exactly for polynomials of
        degree ``< len(offsets)``. Zero weights are kept here (so the result
        aligns with ``offsets``); :class:`~verigrad.schemes.scheme.Scheme` constructors drop them.

    Raises
    ------
    ValueError
        If offsets repeat, ``derivative < 0``, or there are too few offsets.

    Notes
    -----
    The weights satisfy the moment conditions ``sum_k w_k c_k**j = q! [j == q]``
    for ``j = 0 .. n-1``; the scheme's error is then
    ``sum_{j >= n} f^(j)(x)/j! * m_j * h^(j-q)``. The recursion is Fornberg's
    algorithm, run here in exact rational arithmetic and cached by
    ``(offsets, derivative)``.

    References
    ----------
    B. Fornberg, "Generation of finite difference formulas on arbitrarily
    spaced grids", Math. Comp. 51 (1988), 699-706.

    Examples
    --------
    >>> [str(w) for w in fornberg_weights([-2, -1, 0, 1, 2])]
    ['1/12', '-2/3', '0', '2/3', '-1/12']
    """
    if isinstance(derivative, bool) or not isinstance(derivative, (int, np.integer)):
        raise TypeError(f"derivative must be an int, got {type(derivative).__name__} {derivative!r}")
    derivative = int(derivative)
    if derivative < 0:
        raise ValueError(f"derivative must be >= 0, got derivative={derivative}")
    fr = _validate_offsets(offsets, minimum=derivative + 1)
    return _fornberg_cached(fr, derivative)


fornberg_weights.cache_info = _fornberg_cached.cache_info  # type: ignore[attr-defined]
