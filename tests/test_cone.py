"""Exact values along one coordinate from the line's cone (verigrad.engine.cone): against whole
evaluations in mpmath, in the studies (run_study) and the stencil checks (verigrad.kinks), and
the cost: a coordinate of a large sum touches a few entries, whatever the size."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest

from verigrad import Dtype, compile_case, load_case_text
from verigrad.casefile.loader import load_case, point_in_dtype
from verigrad.engine import arb as ab
from verigrad.engine.cone import Cone, forward_cone
from verigrad.fd import coordinate_direction
from verigrad.kinks import distance_along, stencil_crossings, study_kinks
from verigrad.studies import run_study

pytestmark = pytest.mark.skipif(not ab.available(), reason="python-flint is not installed")

CASES = Path(__file__).resolve().parent.parent / "cases"
F32, F64 = Dtype.FLOAT32, Dtype.FLOAT64


def _mp_change(model, point, var, idx, q, prec):
    """f(x with entry idx of var set to q) - f(x) by two whole mpmath evaluations."""
    with mpmath.workprec(prec):
        base = {n: model.mp_values(n, point[n]) for n in model.leaves}
        f0 = model.mp_eval([model.loss], base, prec=prec)[0]
        a = base[var].copy()
        a.reshape(-1)[idx] = mpmath.mpf(q.numerator) / q.denominator
        f1 = model.mp_eval([model.loss], {**base, var: a}, prec=prec)[0]
        g = model.mp_eval([model.gradient[var]], base, prec=prec)[0].reshape(-1)[idx]
        return f1 - f0, f0, g


@pytest.mark.parametrize("name", ["gradient-checking-3layer", "softmax-regression", "attention-head", "maxpool-ties",
                                  "spring-chain", "rosenbrock-10d", "huber-regression", "logsumexp-large"])
def test_cone_changes_match_whole_evaluations(name):
    """The change of the loss at a few points of a coordinate line, the loss and the partial
    derivative (restricted base values) agree with whole mpmath evaluations to the precision."""
    m = compile_case(load_case(CASES / f"{name}.toml"))
    pt = point_in_dtype(m.point, F64)
    prec = 300
    for var in m.gradient:
        n = pt[var].size
        for idx in sorted({0, n - 1}):
            x0 = Fraction(float(pt[var].reshape(-1)[idx]))
            qs = [x0 + Fraction(1, 1000), x0 - Fraction(3, 7), x0 + Fraction(1, 2**40)]
            cone = Cone(m, pt, var, idx, prec=prec, deltas=[m.loss], base={m.loss: [0], m.gradient[var]: [idx]})
            with ab.arb_precision(prec):
                run = cone.run([ab.arb(q.numerator) / q.denominator for q in qs])
            got = run.scalar_delta(m.loss)
            for q, d in zip(qs, got):
                ref, f0, g = _mp_change(m, pt, var, idx, q, prec + 64)
                assert d is not None
                assert d.contains(ab.arb(0)) if ref == 0 else abs(ab.to_mpf(d) - ref) <= abs(ref) * 2.0 ** -200
            assert abs(ab.to_mpf(cone.base(m.loss, [0])[0]) - f0) <= abs(f0) * 2.0 ** -250 + 2.0 ** -280
            gb = cone.base(m.gradient[var], [idx])[0]
            assert abs(ab.to_mpf(gb) - g) <= abs(g) * 2.0 ** -250 + 2.0 ** -280


def test_cone_of_a_large_sum_touches_a_few_entries():
    """A coordinate of a 200,000-term Rosenbrock sum: the cone and the base values it needs are a
    handful of entries (no object per entry of the data), and the change is exact."""
    n = 200_000
    m = compile_case(load_case_text(f'''
name = "rb"
seed = 2
loss = "sum(100*(x[1:] - x[:-1]**2)**2 + (1 - x[:-1])**2)"
[symbols]
x = {{ shape = [{n}], init = "uniform(-2, 2)" }}
''', path="rb.toml"))
    i = n // 2
    cone = Cone(m, m.point, "x", i, prec=256, deltas=[m.loss], base={m.gradient["x"]: [i]})
    assert max(c.size for c in cone.cone.values()) <= 2
    assert sum(p.size for p in cone.need.values()) <= 40
    x = m.point["x"].astype(np.float64)
    h = Fraction(1, 1024)
    xq = [Fraction(float(v)) for v in x[i - 1:i + 2]]

    def terms(a, b, c):  # the two terms that hold x[i] = b
        return 100 * (b - a * a) ** 2 + (1 - a) ** 2 + 100 * (c - b * b) ** 2 + (1 - b) ** 2

    a, b, c = xq
    exact = terms(a, b + h, c) - terms(a, b, c)
    g_exact = 200 * (b - a * a) - 400 * b * (c - b * b) - 2 * (1 - b)
    with ab.arb_precision(256):
        (d,) = cone.run([ab.arb(float(x[i])) + ab.arb(1) / 1024]).scalar_delta(m.loss)
        assert d.contains(ab.arb(exact.numerator) / exact.denominator)
        assert float(d.rad()) <= 2.0 ** -200 * abs(float(exact))
        g = cone.base(m.gradient["x"], [i])[0]
        assert g.contains(ab.arb(g_exact.numerator) / g_exact.denominator)


def test_forward_cone_of_a_one_hot_product_skips_exact_zeros():
    m = compile_case(load_case(CASES / "softmax-regression.toml"))
    C = forward_cone(m, __import__("verigrad.expr.graph", fromlist=["topological"]).topological([m.loss]), "W", 0)
    assert m.loss.id in C


@pytest.mark.parametrize("name,var,index", [("gradient-checking-3layer", "W1", (1, 2)),
                                            ("softmax-regression", "W", (0, 3)),
                                            ("maxpool-ties", "x", (1, 1)),
                                            ("squire-trapp", "x", ())])
def test_coordinate_study_matches_whole_evaluations(monkeypatch, name, var, index):
    """run_study along a coordinate from the cone gives the errors of the whole-graph path exactly
    and its parts to the last bits (a part that is 0 within its ball is reported as 0)."""
    from verigrad.studies import sweep

    m = compile_case(load_case(CASES / f"{name}.toml"))
    d = coordinate_direction(m, var, index)
    for dt in (F32, F64):
        a = run_study(m, dtype=dt, scheme="central", direction=d)
        with monkeypatch.context() as mp:
            mp.setattr(sweep, "_coordinate_line", lambda *args, **kw: None)
            b = run_study(m, dtype=dt, scheme="central", direction=d)
        assert float(a.truth) == float(b.truth)
        assert a.notes == b.notes
        for r1, r2 in zip(a.rows, b.rows):
            assert r1.finite == r2.finite
            assert r1.estimate == r2.estimate or (np.isnan(r1.estimate) and np.isnan(r2.estimate))
            if not r1.finite:
                continue
            assert r1.error == r2.error
            scale = max(abs(r1.error), abs(r1.truncation), abs(r1.roundoff), 1e-300)
            for k in ("truncation", "step", "roundoff", "noise"):
                assert getattr(r1, k) == pytest.approx(getattr(r2, k), rel=1e-14, abs=1e-60 * scale)


TINY_NET = """
name = "tiny-net"
loss = "sum(v * A1)"
[symbols]
W1 = { value = [[0.5, -0.25], [1.0, 0.5], [0.25, 0.75]] }
X  = { constant = true, value = [[1.0, 2.0], [-1.0, 0.5]] }
b1 = { value = [[0.0], [-0.5], [0.4996]] }
v  = { constant = true, value = [[1.0, 2.0], [-1.0, 0.5], [3.0, -2.0]] }
[define]
Z1 = "W1 @ X + b1"
A1 = "relu(Z1)"
"""


@pytest.mark.parametrize("case", ["tiny", "gradient-checking-3layer", "huber-regression", "squire-trapp",
                                  "maxpool-ties"])
def test_stencil_checks_on_the_cone_match_whole_evaluations(monkeypatch, case):
    """Crossings (with their exact distances and messages), distances and study kinks along a
    coordinate are the same from the cone as from whole mpmath evaluations."""
    from verigrad.kinks import crossings

    m = compile_case(load_case_text(TINY_NET, path="t.toml")) if case == "tiny" else \
        compile_case(load_case(CASES / f"{case}.toml"))
    full = crossings._FullSites

    def whole(model, point, direction, sites, prec):
        return full(model, point, sites)

    for var in list(m.gradient)[:2]:
        shape = m.shape(var)
        for flat in sorted({0, int(np.prod(shape, dtype=np.int64)) - 1}):
            d = coordinate_direction(m, var, tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ())
            ts = [Fraction(-1, 100), Fraction(1, 100), Fraction(-2), Fraction(2)]
            a = [(c.entry, c.nodes, c.distance, c.message) for c in stencil_crossings(m, m.point, d, ts, dtype=F32)]
            da = [(s.crossing.tolist(), s.verified.tolist()) for s in distance_along(m, m.point, d)]
            ka = study_kinks(m, m.point, d, "central", [1e-3, 0.1, 1.0, 3.0], dtype=F64)
            with monkeypatch.context() as mp:
                mp.setattr(crossings, "_site_line", whole)
                mp.setattr(__import__("verigrad.kinks.steps", fromlist=["_site_line"]), "_site_line", whole)
                b = [(c.entry, c.nodes, c.distance, c.message) for c in stencil_crossings(m, m.point, d, ts, dtype=F32)]
                db = [(s.crossing.tolist(), s.verified.tolist()) for s in distance_along(m, m.point, d)]
                kb = study_kinks(m, m.point, d, "central", [1e-3, 0.1, 1.0, 3.0], dtype=F64)
            assert [x[:2] + (x[3],) for x in a] == [x[:2] + (x[3],) for x in b]
            # located to 2^-30 of the bracket (Illinois): the two agree to that
            assert [x[2] for x in a] == pytest.approx([x[2] for x in b], rel=2.0 ** -28, nan_ok=True)
            assert da == db
            assert ka.crossing.tolist() == kb.crossing.tolist() and ka.notes == kb.notes


def test_site_line_along_a_coordinate_is_the_cone():
    from verigrad.kinks import crossings, find_sites

    m = compile_case(load_case(CASES / "gradient-checking-3layer.toml"))
    d = coordinate_direction(m, "W1", (0, 0))
    line = crossings._site_line(m, m.point, d, find_sites(m), 256)
    assert isinstance(line, crossings._ConeSites)
    # W1[0, 0] moves row 0 of Z1 and everything after the first relu
    assert [len(ix) for ix in line.index][0] == m.leaves["X"].shape[1]


def test_the_full_split_is_bounded_by_the_cones_it_would_touch():
    """fd_split refuses, before any exact evaluation, a split whose coordinates' cones exceed its
    work bound (each coordinate of X @ w moves a whole column); the runner then reports no split."""
    from verigrad.errors import LimitError
    from verigrad.studies import fd_split
    from verigrad.studies.split import _split_work

    m = compile_case(load_case(CASES / "logistic-regression-l2.toml"))
    work = _split_work(m, None)
    assert work > m.point["w"].size * m.leaves["X"].shape[0]  # a column of X w per coordinate
    with pytest.raises(LimitError, match="cones"):
        fd_split(m, dtype=F64, scheme="central", step=1e-5, max_work=work - 1)
    sp = fd_split(m, dtype=F64, scheme="central", step=1e-5, max_work=work)
    assert np.all(np.isfinite(sp.error["w"]))
