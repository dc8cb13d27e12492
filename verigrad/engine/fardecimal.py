"""Decimal digits of numbers too far from 1 to expand exactly (``1.5^(2^64)``, ``2^-20000``).

:func:`verigrad.engine.truth.format_mp` rounds a binary number to decimal once, from its
exact decimal expansion; for a number like ``1.5^(2^64)`` (a chain of 64 squaring defines)
that expansion has 10^18 digits.  :func:`far_decimal` gives the same correctly rounded
digits from an interval enclosure instead.
"""

from __future__ import annotations

import mpmath

from verigrad.errors import LimitError

__all__ = ["EXACT_DECIMAL_BITS", "far_decimal"]

#: exact decimal conversion up to about this many bits (Python prints integers of at most 4300 digits)
EXACT_DECIMAL_BITS = 12_000


def far_decimal(man: int, exp: int, digits: int) -> tuple[int, int]:
    """``(n, k)`` with ``n * 10^k`` equal to ``man * 2^exp`` rounded once to ``digits`` digits, half to even.

    For values whose exact decimal expansion is too long to form (``1.5^(2^64)``): ``man 2^exp
    10^-k`` is enclosed in an interval (mpmath's interval arithmetic, outward rounding) at a
    precision that grows until both ends round to the same integer.
    """
    iv = mpmath.iv
    old = iv.prec
    prec = man.bit_length() + 2 * abs(exp).bit_length() + 4 * digits + 64
    try:
        for _ in range(6):
            iv.prec = prec
            with mpmath.workprec(prec):  # every step exact or enclosed: floor and nint need all the bits
                x = iv.mpf(mpmath.mpf((man, exp)))
                lg = iv.log10(x)
                e10 = int(mpmath.floor(lg.a))
                if int(mpmath.floor(lg.b)) == e10:
                    k = e10 - digits + 1
                    y = x * iv.mpf(10) ** (-k) if k <= 0 else x / iv.mpf(10) ** k
                    lo, hi = mpmath.nint(y.a), mpmath.nint(y.b)  # nint: nearest, half to even
                    if lo == hi:
                        return int(lo), k
            prec *= 2
    finally:
        iv.prec = old
    raise LimitError(f"cannot round {mpmath.nstr(mpmath.mpf((man, exp)), 10)} to {digits} decimal digits")
