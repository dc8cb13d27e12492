"""The exact stencil nodes of the direct split (studies.split._exact_nodes) and the merged
evaluation of a small model's direct units: exact, and the same split as unit-by-unit."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest

from verigrad.spec import Dtype
from verigrad.studies import fd_sweep_split
from verigrad.fd import nodes
from verigrad.studies import split as sp

from casefiles import write_case


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_nodes_are_the_rationals_x_plus_c_h(dtype):
    """Every node equals Fraction(x) + c Fraction(h) exactly, whatever its representation (a float,
    a double-double pair, a Fraction), and equals a float y exactly when and only when it is y."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(400) * 10.0 ** rng.integers(-3, 4, 400)).astype(dtype)
    x[:5] = [0, 1, -1, 2 ** -20, 3]
    steps = (10.0 ** rng.uniform(-14, 0, (3, 400))).astype(dtype)
    offsets = [Fraction(-2), Fraction(-1), Fraction(0), Fraction(1, 2), Fraction(1), Fraction(3), Fraction(-1, 3)]
    chunk = [(m, i) for m in range(3) for i in range(400)]
    rows = nodes.exact_nodes(chunk, x, steps, offsets)
    assert len(rows) == len(chunk) * len(offsets)
    kinds = set()
    for j, (m, i) in enumerate(chunk):
        for k, c in enumerate(offsets):
            idx, q = rows[j * len(offsets) + k]
            want = Fraction(float(x[i])) + c * Fraction(float(steps[m][i]))
            kinds.add(type(q).__name__)
            got = Fraction(q) if isinstance(q, float) else (Fraction(q[0]) + Fraction(q[1]) if isinstance(q, tuple)
                                                            else q)
            assert idx == i and got == want
            y = float(dtype(float(want)))  # the float node
            assert nodes.node_equals(q, y) == (Fraction(y) == want)
            with mpmath.workprec(400):
                assert nodes.node_mpf(q) == mpmath.mpf(want.numerator) / want.denominator
    assert kinds == {"float", "tuple", "Fraction"}


def test_arb_of_a_node_contains_it():
    """The ball of a node contains the exact rational, and is exact when the precision holds it."""
    from verigrad.engine import arb as ab

    with ab.arb_precision(128):
        for q in (0.1, (1.0, 2.0 ** -60), Fraction(1, 3) + Fraction(0.25)):
            b = nodes.node_arb(q)
            exact = Fraction(q) if isinstance(q, float) else (Fraction(q[0]) + Fraction(q[1]) if isinstance(q, tuple)
                                                              else q)
            assert b.contains(ab.arb(exact.numerator) / exact.denominator)
            assert b.is_exact() == (exact.denominator & (exact.denominator - 1) == 0)


def test_merged_direct_units_give_the_unit_by_unit_split(tmp_path, monkeypatch):
    """A small ReLU model's direct units, evaluated in one batch at the highest starting precision,
    give the split the per-precision batches give (parts resolved to 2^-50: equal to the last bits)."""
    model = write_case(tmp_path, "sum(relu(W @ x - 0.1) ** 2) + sum(W ** 2) / 8",
                       'W = { value = [[0.5, -1.25, 0.75], [1.5, 0.25, -0.5]] }\n'
                       'x = { constant = true, value = [0.3, -0.7, 1.1] }')
    steps = [10.0 ** -e for e in (1, 3, 5, 8, 11)]
    merged = fd_sweep_split(model, dtype=Dtype.FLOAT64, scheme="central", steps=steps)
    monkeypatch.setattr(sp, "_MERGE_WORK", 0)
    apart = fd_sweep_split(model, dtype=Dtype.FLOAT64, scheme="central", steps=steps)
    assert merged[0].precision >= apart[0].precision
    for a, b in zip(merged, apart):
        for part in ("error", "truncation", "step_error", "roundoff"):
            np.testing.assert_allclose(getattr(a, part)["W"], getattr(b, part)["W"], rtol=2.0 ** -48, atol=0)
    # and T is the closed form: the loss is quadratic in each W entry where no relu switches,
    # so T = 0 exactly at the small steps (the h = 0.1 stencil may cross a kink)
    for r in merged[1:]:
        assert np.all(r.truncation["W"] == 0)


def test_long_series_reaches_larger_steps_with_exact_truncation(tmp_path, monkeypatch):
    """float32, f = sum(log(x)) near x = 1 (radius of convergence 1): at h = 0.1 the float32 round-off
    asks T to 2^-50 of R ~ 2^-12 T, which 16 series terms cannot give and 24 can. The long series takes
    those units, and its T is the closed form atanh(h/x)/h − 1/x (mpmath)."""
    from verigrad.studies import split as sp

    values = ", ".join(f"{1 + 0.01 * k:.2f}" for k in range(20))
    model = write_case(tmp_path, "sum(log(x))", f"x = {{ value = [{values}] }}")
    steps = [10.0 ** -e for e in np.linspace(4, 1, 30)]  # 20 entries x 30 steps: the long series
    seen = {}
    taylor = sp._Line.taylor

    def spy(self, wanted):
        out = taylor(self, wanted)
        seen[sp._SERIES_EXTRA] = {m for m, _ in out[0]}
        return out

    monkeypatch.setattr(sp._Line, "taylor", spy)
    res = fd_sweep_split(model, dtype=Dtype.FLOAT32, scheme="central", steps=steps)
    top = len(steps) - 1  # h = 0.1
    assert top in seen[21]
    monkeypatch.setattr(sp, "_SERIES_EXTRA", 13)
    fd_sweep_split(model, dtype=Dtype.FLOAT32, scheme="central", steps=steps)
    assert top not in seen[13] and len(seen[13]) < len(seen[21])
    r = res[top]
    for i in range(20):
        x, h = mpmath.mpf(float(np.float32(1 + 0.01 * i))), mpmath.mpf(float(r.h["x"][i]))
        with mpmath.workprec(300):
            want = mpmath.atanh(h / x) / h - 1 / x
        assert r.truncation["x"][i] == pytest.approx(float(want), rel=1e-12, abs=0)
