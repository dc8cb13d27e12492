"""format_dd: exact double-double values printed exactly as format_mp (mpmath's nstr) prints them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from verigrad.engine.truth import _mpf_exact, format_dd, format_mp

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=400, deadline=None)
@given(hi=finite, frac=st.floats(-1, 1), digits=st.sampled_from([1, 2, 3, 5, 17, 20, 24, 30, 60]))
def test_format_dd_is_format_mp(hi, frac, digits):
    lo = float(np.float64(hi) * 2.0**-54 * frac)
    if hi + lo != hi:  # keep |lo| <= ulp(hi)/2, the double-double invariant
        lo = 0.0
    got = format_dd(np.array([hi]), np.array([lo]), digits)[0]
    assert got == format_mp(_mpf_exact(hi, lo), digits)


@pytest.mark.parametrize("hi, lo, digits, want", [
    (0.0, 0.0, 24, "0"), (-0.0, 0.0, 3, "0"),
    (0.125, 0.0, 2, "0.13"),        # an exact tie: decided as mpmath decides
    (2.5, 0.0, 1, "3."),
    (123456.7, 0.0, 5, "123460."),  # fixed notation up to exponent = digits, trailing point
    (1.5e-7, 0.0, 1, "1.e-7"),     # float(1.5e-7) is a little below 1.5e-7
    (1e-5, 0.0, 3, "1.00e-5"), (1e-4, 0.0, 3, "0.000100"),
    (1.0, 2.0**-60, 24, "1.00000000000000000086736"),  # the low word is not lost
])
def test_format_dd_examples(hi, lo, digits, want):
    assert format_dd(np.array([hi]), np.array([lo]), digits)[0] == want
    assert format_mp(_mpf_exact(hi, lo), digits) == want


def test_shape_is_kept():
    out = format_dd(np.zeros((2, 3)), np.zeros((2, 3)), 5)
    assert out.shape == (2, 3) and out.dtype == object and set(out.ravel()) == {"0"}
