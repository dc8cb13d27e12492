"""Decimal output of the truth: every printed digit correctly rounded (half to even) from the exact
binary value, whether the truth is held as mpf (format_mp) or as double-double (format_dd).

The reference is Python's decimal module at 5,000 digits (exact for any float sum), rounded once."""

from __future__ import annotations

import decimal

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from verigrad.engine.truth import _mpf_exact, format_dd, format_mp

_EXACT = decimal.Context(prec=5000, Emin=-9999, Emax=9999)


def reference(hi: float, lo: float, digits: int) -> str:
    x = _EXACT.add(decimal.Decimal(hi), decimal.Decimal(lo))
    if x == 0:
        return "0"
    q = decimal.Context(prec=digits, rounding=decimal.ROUND_HALF_EVEN, Emin=-9999, Emax=9999).plus(x)
    e10 = q.adjusted()
    if -5 < e10 < digits + 1:  # mpmath.nstr's layout with min_fixed=-5, max_fixed=digits+1
        k = digits - 1 - e10
        return format(q, f".{k}f") if k > 0 else format(q, ".0f") + "."
    t = format(q, f".{digits - 1}e")
    if digits == 1:
        j = t.index("e")
        t = t[:j] + "." + t[j:]
    return t


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=500, deadline=None)
@given(hi=finite, frac=st.floats(-1, 1), digits=st.sampled_from([1, 2, 3, 5, 17, 20, 24, 30, 60]))
def test_format_dd_and_format_mp_are_correctly_rounded(hi, frac, digits):
    lo = float(np.float64(hi) * 2.0**-54 * frac)
    if hi + lo != hi:  # keep |lo| <= ulp(hi)/2, the double-double invariant
        lo = 0.0
    want = reference(hi, lo, digits)
    assert format_dd(np.array([hi]), np.array([lo]), digits)[0] == want
    assert format_mp(_mpf_exact(hi, lo), digits) == want


@pytest.mark.parametrize("hi, lo, digits, want", [
    (0.0, 0.0, 24, "0"), (-0.0, 0.0, 3, "0"),
    (0.55, 0.0, 1, "0.6"),          # float 0.55 is 0.55000000000000004...: above the tie (nstr said 0.5)
    (0.125, 0.0, 2, "0.12"),        # an exact tie: half to even
    (2.5, 0.0, 1, "2."),
    (123456.7, 0.0, 5, "123460."),  # fixed notation up to exponent = digits, trailing point
    (1.5e-7, 0.0, 1, "1.e-7"),      # float(1.5e-7) is a little below 1.5e-7
    (1e-5, 0.0, 3, "1.00e-5"), (1e-4, 0.0, 3, "0.000100"),
    (9.9999, 0.0, 3, "10.0"),
    (5e-324, 0.0, 3, "4.94e-324"),
    (1.0, 2.0**-60, 24, "1.00000000000000000086736"),  # the low word is not lost
])
def test_examples(hi, lo, digits, want):
    assert format_dd(np.array([hi]), np.array([lo]), digits)[0] == want
    assert format_mp(_mpf_exact(hi, lo), digits) == want


def test_shape_is_kept():
    out = format_dd(np.zeros((2, 3)), np.zeros((2, 3)), 5)
    assert out.shape == (2, 3) and out.dtype == object and set(out.ravel()) == {"0"}
