"""Integer constants, gathers, comparisons, where/clip/sign and the special functions (issue 18, part A).

Values are compared with numpy/scipy in float64 and float32, exact truths with mpmath at high
precision, and every misuse must raise an error that names the argument.
"""

from __future__ import annotations

import json

import mpmath
import numpy as np
import pytest
import scipy.special as sps

from verigrad.casefile.loader import load_case_text, point_in_dtype
from verigrad.engine.model import compile_case
from verigrad.engine.truth import certify
from verigrad.errors import CaseError, DomainError, ExpressionError, ShapeError
from verigrad.spec import Dtype

RNG = np.random.default_rng(18)
Z = RNG.standard_normal((5, 4))
X = RNG.standard_normal(6)
Y = np.array([3, 0, 1, 3, -1], dtype=np.int64)  # a repeated label and a negative (from the end) one


def case(loss: str, symbols: str = "", defines: dict | None = None) -> str:
    lines = ['name = "sel"', f"loss = {json.dumps(loss)}", "[symbols]",
             f"Z = {{ value = {Z.tolist()!r} }}", f"x = {{ value = {X.tolist()!r} }}",
             f'y = {{ constant = true, dtype = "int64", value = {Y.tolist()!r} }}', symbols]
    if defines:
        lines.append("[define]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in defines.items()]
    return "\n".join(lines) + "\n"


def model_of(loss: str, symbols: str = "", defines=None):
    return compile_case(load_case_text(case(loss, symbols, defines)))


def float_value_and_grad(loss: str, dtype=np.float64, symbols: str = ""):
    m = model_of(loss, symbols)
    p = point_in_dtype(m.point, Dtype(np.dtype(dtype).name))
    vals = m.float_eval([m.loss, m.gradient["Z"], m.gradient["x"]], p, dtype)
    return vals, p


# -- integer constants ------------------------------------------------------------------------------


def test_integer_constant_is_int64_and_passed_unrounded():
    m = model_of("sum(take(Z, y))")
    assert m.point["y"].dtype == np.int64 and m.point["y"].tolist() == Y.tolist()
    for dt in (Dtype.FLOAT32, Dtype.FLOAT64):
        p = point_in_dtype(m.point, dt)
        assert p["y"].dtype == np.int64 and p["Z"].dtype == dt.numpy
    assert "y" not in m.leaves  # known when compiling: part of the graph, never perturbed


@pytest.mark.parametrize("spec, field, message", [
    ('{ constant = true, dtype = "int64", value = [1, 2.0] }', "y.value", r'dtype = "int64" needs integer entries, '
                                                                       r"got float 2\.0"),
    ('{ constant = true, dtype = "int64", value = [1, 9223372036854775808] }', "y.value", r"beyond the int64 range"),
    ('{ dtype = "int64", value = [1, 2] }', "y.dtype", r'declares integer data, but the symbol is a variable'),
    ('{ constant = true, dtype = "int32", value = [1] }', "y.dtype", r"dtype='int32' is not a symbol dtype"),
    ('{ constant = true, dtype = "int64", init = "normal", shape = [2] }', "y.init",
     r"an integer constant cannot be drawn"),
    ('{ constant = true, dtype = "int64", value = [true] }', "y.value", r"got boolean"),
])
def test_integer_constant_errors_name_the_field(spec, field, message):
    text = 'name = "c"\nloss = "sum(x)"\n[symbols]\nx = { value = [1.0] }\n' + f"y = {spec}\n"
    with pytest.raises(CaseError, match=message) as info:
        load_case_text(text)
    assert info.value.fields["field"] == f"[symbols] {field}"


def test_integer_constant_from_npy(tmp_path):
    np.save(tmp_path / "labels.npy", np.array([2, 0, 1], dtype=np.int32))
    np.save(tmp_path / "floats.npy", np.array([2.0, 0.0]))
    base = 'name = "c"\nloss = "sum(take(x, y))"\n[symbols]\nx = { value = [1.0, 2.0, 4.0] }\n'
    c = load_case_text(base + 'y = { constant = true, dtype = "int64", file = "labels.npy" }\n',
                       path=tmp_path / "c.toml")
    (y,) = [s for s in c.symbols if s.name == "y"]
    assert y.integer and y.value.dtype == np.int64 and y.value.tolist() == [2, 0, 1]
    m = compile_case(c)
    (v,) = m.float_eval([m.loss], point_in_dtype(m.point, Dtype.FLOAT64), np.float64)
    assert v == 7.0
    with pytest.raises(CaseError, match=r"holds dtype float64, but the symbol has dtype = \"int64\""):
        load_case_text(base + 'y = { constant = true, dtype = "int64", file = "floats.npy" }\n',
                       path=tmp_path / "c.toml")


# -- gathers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("expr, ref", [
    ("take_along_axis(Z, y[:, None], axis=1)", lambda Z, y: np.take_along_axis(Z, (y % 4)[:, None], axis=1)),
    ("take_along_axis(Z, reshape(y[:4], (1, 4)), axis=0)", lambda Z, y: np.take_along_axis(Z, y[None, :4] % 5, 0)),
    ("take(Z, y)", lambda Z, y: np.take(Z, y)),
    ("take(Z, y, axis=1)", lambda Z, y: np.take(Z, y, axis=1)),
    ("take(Z, 3, axis=0)", lambda Z, y: np.take(Z, 3, axis=0)),
    ("Z[y]", lambda Z, y: Z[y]),
    ("Z[:, y]", lambda Z, y: Z[:, y]),
    ("Z[y[:4], y[1:]]", lambda Z, y: Z[y[:4], y[1:]]),
    ("x[y]", lambda Z, y: Z[y]),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gathers_are_numpys_and_their_reverse_adds_repeats(expr, ref, dtype):
    # weights make every gathered entry's cotangent distinct
    got_shape = np.shape(ref(X if expr.startswith("x") else Z, Y))
    W = np.arange(1, int(np.prod(got_shape)) + 1, dtype=np.float64).reshape(got_shape)
    loss = f"sum(({expr}) * Wt)"
    sym = f"Wt = {{ constant = true, value = {W.tolist()!r} }}" if W.ndim else f"Wt = {{ constant = true, value = {float(W)} }}"
    (v, gZ, gx), p = float_value_and_grad(loss, dtype, sym)
    src = X.astype(dtype) if expr.startswith("x") else Z.astype(dtype)
    want = ref(src, Y)
    assert np.asarray(want).dtype == dtype
    np.testing.assert_allclose(v, np.sum(want * W.astype(dtype)), rtol=1e-6 if dtype == np.float32 else 1e-14)
    # the exact scatter-add: numpy's add.at of the weights at the gathered positions
    ids = ref(np.arange(src.size).reshape(src.shape), Y)
    expect = np.zeros(src.size)
    np.add.at(expect, np.ravel(ids), np.ravel(np.broadcast_to(W, np.shape(ids))))
    g = gx if expr.startswith("x") else gZ
    np.testing.assert_array_equal(np.ravel(g), expect.astype(dtype))


def test_cross_entropy_with_integer_labels_is_exact():
    labels = [0, 3, 1, 3, 2]
    sym = f'lab = {{ constant = true, dtype = "int64", value = {labels} }}'
    m = model_of("-mean(take_along_axis(log_softmax(Z, axis=1), lab[:, None], axis=1)) + 0*sum(x)", sym)
    t = certify(m, point_in_dtype(m.point, Dtype.FLOAT64), Dtype.FLOAT64, digits=30)
    with mpmath.workprec(300):
        Zm = [[mpmath.mpf(float(v)) for v in row] for row in Z]
        loss = 0
        grad = []
        for row, k in zip(Zm, labels):
            lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row))
            loss -= (row[k] - lse) / 5
            grad.append([(mpmath.exp(v - lse) - (j == k)) / 5 for j, v in enumerate(row)])
        assert abs(t.loss - loss) < mpmath.mpf(10) ** -28
        gz = t.gradient["Z"]
        for i in range(5):
            for j in range(4):
                assert abs(gz[i, j] - grad[i][j]) < mpmath.mpf(10) ** -28


def test_one_hot_is_a_constant_array():
    m = model_of("sum(one_hot(y[:3], 4) * Z[:3])")
    p = point_in_dtype(m.point, Dtype.FLOAT64)
    (v,) = m.float_eval([m.loss], p, np.float64)
    assert v == Z[0, 3] + Z[1, 0] + Z[2, 1]
    want = np.zeros((5, 4))
    want[[0, 1, 2], [3, 0, 1]] = 1
    for backend in ("arb", "fast", "mpmath"):
        t = certify(m, p, Dtype.FLOAT64, backend=backend)
        assert np.array_equal(np.array(t.gradient["Z"], dtype=float), want), backend


@pytest.mark.parametrize("loss, cls, message", [
    ("sum(y * Z[:, 0])", ExpressionError, r"'y' is an integer constant: it holds indices, not values"),
    ("sum(take_along_axis(Z, y, axis=1))", ShapeError, r"take_along_axis\(\): 'indices' has 1 dimensions but 'arr' has 2"),
    ("sum(take(Z, y, axis=2))", ShapeError, r"take\(\): axis=2 is out of range for an array of 2 dimensions"),
    ("sum(take(x, Z))", ExpressionError, r"take\(\): 'indices' must be an integer constant, but 'Z' holds floats"),
    ("sum(one_hot(y, 3))", ShapeError, r"one_hot\(\): 'indices' holds 3 at \[0\], outside \[0, 2\] for num_classes=3"),
    ("sum(where(x, x, 0))", ExpressionError, r"where\(\): 'condition' must be a comparison such as x > 0"),
    ("sum(where(x > 0, x))", ExpressionError, r"where\(\) is missing its argument 'y'"),
    ("sum(clip(x, 0, 1, 2))", ExpressionError, r"clip\(\) takes at most 3 positional arguments \(a, a_min, a_max\)"),
    ("sum(take(x, y, axes=0))", ExpressionError, r"take\(\) has no option 'axes'"),
    ("sum(Z[y[:, None], 7])", ShapeError, r"index out of bounds"),
])
def test_misuse_names_the_argument(loss, cls, message):
    with pytest.raises(cls, match=message) as info:
        model_of(loss)
    assert info.value.fields["field"] == "loss"


def test_bounds_errors_name_indices():
    y2 = 'y2 = { constant = true, dtype = "int64", value = [0, 6, 2, -7, 1] }'
    with pytest.raises(ShapeError, match=r"take\(\): 'indices' holds 6 at \[1\], out of bounds for the flattened "
                                         r"array of size 6"):
        model_of("sum(take(x, y2))", y2)
    with pytest.raises(ShapeError, match=r"take_along_axis\(\): 'indices' holds 6 at \[1, 0\], out of bounds for "
                                         r"axis 1 of size 4") as info:
        model_of("sum(take_along_axis(Z, y2[:, None], axis=1))", y2)
    assert "[-4, 3]" in info.value.hint


# -- comparisons, where, clip, sign ----------------------------------------------------------------


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "==", "!="])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_comparisons_are_numpys_masks(op, dtype):
    sym = "c = { constant = true, value = [0.5, -1.0, 0.25, 0.0, 3.0, -2.0] }"
    vals = np.array([0.5, -1.5, 0.3, 0.0, 3.0, -1.0])
    sym2 = f"u = {{ value = {vals.tolist()!r} }}"
    m = model_of(f"sum((u {op} c) * x) + 0*sum(Z)", sym + "\n" + sym2)
    p = point_in_dtype(m.point, Dtype(np.dtype(dtype).name))
    v, gx = m.float_eval([m.loss, m.gradient["x"]], p, dtype)
    mask = eval(f"p['u'] {op} p['c']")  # noqa: S307 - the reference is numpy's own operator on fixed arrays
    assert v == np.sum(mask.astype(dtype) * p["x"])
    np.testing.assert_array_equal(gx, mask.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_where_does_not_evaluate_the_unselected_branch(dtype):
    loss = "sum(where(t > 0, log(t), 0)) + sum(where(t < 80, exp(t), 0)) + sum(where(t != 0, 1/t, 7)) + 0*sum(Z) + 0*sum(x)"
    m = model_of(loss, "t = { value = [-2.0, 0.0, 1000.0] }")
    p = point_in_dtype(m.point, Dtype(np.dtype(dtype).name))
    v, gt = m.float_eval([m.loss, m.gradient["t"]], p, dtype)
    rtol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(v, np.log(1000.0) + np.exp(-2.0) + 1 + 7 + 1e-3 - 0.5, rtol=rtol)
    np.testing.assert_allclose(gt, [np.exp(-2.0) - 0.25, 1.0, 1e-3 - 1e-6], rtol=rtol)  # finite: no nan, no inf
    # exact, in mpmath: no DomainError for log(-2), 1/0, and the gradient is exactly that of the kept branches
    for backend in ("arb", "mpmath", "fast"):
        t = certify(m, point_in_dtype(m.point, Dtype.FLOAT64), Dtype.FLOAT64, digits=25, backend=backend)
        with mpmath.workprec(200):
            want = [mpmath.exp(-2) - mpmath.mpf(1) / 4, 1 / mpmath.mpf(1000) - mpmath.mpf(10) ** -6]
            got = t.gradient["t"]
            assert abs(got[0] - want[0]) < 1e-24 and abs(got[2] - want[1]) < 1e-24, backend
            assert got[1] == 1, backend  # t = 0: exp's branch (0 < 80), derivative 1; log's and 1/t's not taken


def test_clip_sign_logaddexp_xlogy_against_numpy_and_scipy():
    c = np.array([0.0, 1.0, 0.0, 2.0, 0.5, 0.0])
    sym = f"c = {{ constant = true, value = {c.tolist()!r} }}"
    for expr, ref in [("clip(x, -0.5, 0.25)", np.clip(X, -0.5, 0.25)), ("sign(x)", np.sign(X)),
                      ("logaddexp(x, 2*x)", np.logaddexp(X, 2 * X)), ("xlogy(c, x*x)", sps.xlogy(c, X * X)),
                      ("xlogy(c, x - 5)", sps.xlogy(c, np.where(c == 0, -1.0, 1.0)) * 0)]:
        if expr == "xlogy(c, x - 5)":  # zero wherever c is 0, even though log(x - 5) is undefined everywhere
            sym_c = "c = { constant = true, value = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0] }"
            m = model_of(f"sum(({expr}) * x) + 0*sum(Z)", sym_c)
            t = certify(m, point_in_dtype(m.point, Dtype.FLOAT64), Dtype.FLOAT64)
            assert t.loss == 0 and all(v == 0 for v in np.ravel(t.gradient["x"]))
            continue
        m = model_of(f"sum(({expr}) * x) + 0*sum(Z)", sym)
        (v,) = m.float_eval([m.loss], point_in_dtype(m.point, Dtype.FLOAT64), np.float64)
        np.testing.assert_allclose(v, np.sum(ref * X), rtol=1e-14, err_msg=expr)
    with pytest.raises(DomainError, match=r"log is undefined"):
        m = model_of("sum(xlogy(c, x - 5)) + 0*sum(Z)", sym)
        certify(m, point_in_dtype(m.point, Dtype.FLOAT64), Dtype.FLOAT64)


def test_logaddexp_exact_and_smooth():
    m = model_of("logaddexp(x[0], x[1]) + 0*sum(Z)")
    t = certify(m, point_in_dtype(m.point, Dtype.FLOAT64), Dtype.FLOAT64, digits=25)
    with mpmath.workprec(200):
        a, b = mpmath.mpf(float(X[0])), mpmath.mpf(float(X[1]))
        assert abs(t.loss - mpmath.log(mpmath.exp(a) + mpmath.exp(b))) < 1e-24
        assert abs(t.gradient["x"][0] - mpmath.exp(a) / (mpmath.exp(a) + mpmath.exp(b))) < 1e-24
    from verigrad.kinks.sites import find_sites

    assert find_sites(m) == []  # no spurious kink at x[0] = x[1]


def test_comparison_and_gammaln_sites():
    from verigrad.kinks.conditions import site_values
    from verigrad.kinks.sites import SiteRule, find_sites

    m = model_of("sum(where(x > 0.5, x, 0)) + sum(gammaln(x - 2)) + 0*sum(Z)")
    sites = find_sites(m)
    (jump,) = [s for s in sites if s.rule is SiteRule.JUMP]
    assert jump.text == "the mask (x > 0.5) at x - 0.5 = 0", jump.text
    (pole,) = [s for s in sites if s.rule is SiteRule.FUNCTION_DOMAIN]
    assert pole.name == "gammaln"
    pt = dict(m.point)
    pt["x"] = np.array([-1.0, 0.5, 2.5, 3.0, 0.25, 1.0])  # x - 2 = -3 (pole), ..., 1 (not a pole), -1 (pole)
    vals = site_values(m, pt, [pole])[0]
    assert [v == 0 for v in np.ravel(vals)] == [True, False, False, False, False, True]


# -- the special functions --------------------------------------------------------------------------


def test_special_values_against_closed_forms():
    from verigrad.expr.functions import FUNCTIONS as F

    with mpmath.workprec(200):
        sq = mpmath.sqrt(mpmath.pi)
        cases = [("gammaln", 0.5, mpmath.log(sq)), ("gammaln", -2.5, mpmath.log(8 * sq / 15)),
                 ("digamma", 1.0, -mpmath.euler), ("digamma", 0.5, -mpmath.euler - 2 * mpmath.log(2)),
                 ("trigamma", 1.0, mpmath.pi ** 2 / 6), ("sinc", 0.5, 2 / mpmath.pi), ("sinc", 0.0, 1),
                 ("dsinc", 0.5, -4 / mpmath.pi), ("dsinc", 0.0, 0),
                 ("log_sigmoid", 0.0, -mpmath.log(2))]
        for name, x, want in cases:
            got = F[name].mp_f(mpmath.mpf(x))
            assert abs(got - want) <= mpmath.mpf(2) ** -190 * (1 + abs(want)), (name, x, got, want)
            f64 = F[name].np_f(np.array([x]))[0]
            assert abs(f64 - float(want)) <= 4e-16 * max(1, abs(float(want))), (name, x, f64)


def test_float_rules_match_scipy_in_both_dtypes():
    from verigrad.expr.functions import FUNCTIONS as F

    x = np.array([-2.75, -0.5, 0.125, 1.0, 3.5, 40.0, 700.0])
    for dt in (np.float32, np.float64):
        xd = x.astype(dt)
        for name, ref in [("gammaln", sps.gammaln), ("digamma", sps.psi), ("log_sigmoid", sps.log_expit)]:
            got = F[name].np_f(xd)
            assert got.dtype == dt, name
            want = np.asarray(ref(xd.astype(np.float64))).astype(dt)
            np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dt).eps, err_msg=name)
        np.testing.assert_array_equal(F["sinc"].np_f(xd), np.sinc(xd))  # numpy's own, in the dtype
    assert F["log_sigmoid"].np_f(np.array([-800.0, 800.0])).tolist() == [-800.0, -0.0]
    assert np.isinf(F["gammaln"].np_f(np.array([-3.0]))[0])  # a pole: scipy's +inf


def test_dsinc_float_near_zero_and_at_the_switch():
    from verigrad.expr.functions import FUNCTIONS as F

    xs = np.array([1e-300, 1e-8, 0.01, 0.0625, 0.2499999, 0.25, 0.3, 0.9])
    with mpmath.workprec(300):
        want = [float(F["dsinc"].mp_f(mpmath.mpf(float(v)))) for v in xs]
        # dsinc is the derivative of sincpi, at 60 digits
        for v, w in zip(xs[2:], want[2:]):
            d = mpmath.diff(mpmath.sincpi, mpmath.mpf(float(v)))
            assert abs(d - w) < 1e-15 * abs(d)
    np.testing.assert_allclose(F["dsinc"].np_f(xs), want, rtol=3e-15)


def test_trigamma_rule_is_the_derivative_of_digamma_at_high_precision():
    from verigrad.expr.functions import FUNCTIONS as F

    with mpmath.workprec(300):
        for v in (-2.25, -0.5, 0.3125, 1.75, 30.0):
            x = mpmath.mpf(v)
            d = mpmath.diff(mpmath.digamma, x)
            assert abs(F["trigamma"].mp_f(x) - d) < mpmath.mpf(10) ** -70 * abs(d)
            d2 = mpmath.diff(F["gammaln"].mp_f, x)
            assert abs(F["digamma"].mp_f(x) - d2) < mpmath.mpf(10) ** -70 * (1 + abs(d2))


def test_poles_are_domain_errors_in_every_exact_backend():
    from verigrad.engine import arb as ab
    from verigrad.expr.functions import FUNCTIONS as F, Undecided

    class _Node:
        label = "t"

    with ab.arb_precision(100):
        for name in ("gammaln", "digamma"):
            with pytest.raises(DomainError, match=rf"{name} is undefined at -2"):
                ab.ArbBackend().unary(F[name], ab.from_float(np.array([0.5, -2.0])), _Node())
            with pytest.raises(Undecided):
                ab.ArbBackend().check_unary(F[name], np.array([ab.arb(-2, 1e-10)], dtype=object), _Node())
    m = model_of("sum(gammaln(x - x[0] - 1)) + 0*sum(Z)")  # the first entry is at the pole -1
    with pytest.raises(DomainError, match=r"gammaln is undefined at -1"):
        certify(m, point_in_dtype(m.point, Dtype.FLOAT64), Dtype.FLOAT64)


def test_fast_engine_certifies_the_new_functions():
    """The fast double-double engine (log_sigmoid natively, the others through Arb per node) agrees with mpmath."""
    loss = "sum(gammaln(x*x + 0.5) + digamma(x*x + 1) + log_sigmoid(3*x) + sinc(x)) + 0*sum(Z)"
    m = model_of(loss)
    p = point_in_dtype(m.point, Dtype.FLOAT64)
    t = certify(m, p, Dtype.FLOAT64, digits=25, backend="fast")
    assert t.backend == "fast"
    with mpmath.workprec(250):
        (ref,) = m.mp_eval([m.gradient["x"]], p, prec=250)
        for a, b in zip(np.ravel(t.gradient["x"]), np.ravel(ref)):
            assert abs(a - b) <= mpmath.mpf(10) ** -24 * (1 + abs(b))


def test_complex_step_refused_through_comparisons_and_allowed_through_gammaln():
    from verigrad.fd.estimate import fd_gradient

    m = model_of("sum(where(x > 0, x, 0)) + 0*sum(Z)")
    with pytest.raises(Exception, match=r"not analytic|complex step"):
        fd_gradient(m, dtype=Dtype.FLOAT64, scheme="complex-step", step=1e-20)
    m = model_of("sum(gammaln(x*x + 1) + sinc(x) + log_sigmoid(x)) + 0*sum(Z)")
    g = fd_gradient(m, dtype=Dtype.FLOAT64, scheme="complex-step", step=1e-20)["x"]
    want = 2 * X * sps.psi(X * X + 1) + sps.expit(-X)
    want += np.where(X == 0, 0, (np.cos(np.pi * X) - np.sinc(X)) / X)
    np.testing.assert_allclose(g, want, rtol=1e-13)


def test_where_mask_at_its_jump_accepts_both_one_sided_conventions(tmp_path):
    """Like relu'(0): at x = 0 the mask of where(x > 0, ...) may be taken as 0 or 1; a wrong value fails."""
    from verigrad.runner.case import run_case

    (tmp_path / "g.py").write_text(
        "import numpy as np\n"
        "def left(x):\n    return {'x': np.where(x > 0, 2 * x, -np.ones_like(x)) + np.sign(x) * 0}\n"
        "def right(x):\n    return {'x': np.where(x >= 0, 2 * x, -np.ones_like(x))}\n"
        "def bad(x):\n    return {'x': np.where(x > 0, 2 * x, np.ones_like(x))}\n")
    (tmp_path / "c.toml").write_text(
        'name = "where-kink"\nloss = "sum(where(x > 0, x**2, -x))"\n[symbols]\nx = { value = [0.0, 1.5, -1.0] }\n'
        + "".join(f'[[candidate]]\nname = "{n}"\ncode = "g.py:{n}"\nexpect = "{e}"\n'
                  for n, e in (("left", "pass"), ("right", "pass"), ("bad", "fail"))))
    rep = run_case(tmp_path / "c.toml")
    assert not rep.error, rep.error
    verdicts = {(r.candidate, r.dtype): r.verdict for r in rep.results if r.kind == "code"}
    assert all(r.met for r in rep.results if r.kind == "code"), verdicts
    assert verdicts[("right", "float64")] == "pass" and verdicts[("bad", "float64")] == "fail"


def test_second_derivatives_of_the_special_functions():
    """Hessians differentiate the derivative rules again: sinc'' (exact at 0), ψ' and ψ'' against mpmath."""
    from verigrad.engine.hessian import certify_hessian

    w = [0.0, 0.375, -1.25, 2.5]
    c = load_case_text('name = "h"\nloss = "sum(sinc(w) + gammaln(w + 3) + digamma(w + 4) + log_sigmoid(w))"\n'
                       f"[symbols]\nw = {{ value = {w} }}\n")
    m = compile_case(c)
    p = point_in_dtype(m.point, Dtype.FLOAT64)
    H = certify_hessian(m, p, Dtype.FLOAT64, digits=24)
    assert H.exact_zero[~np.eye(4, dtype=bool)].all()
    with mpmath.workdps(60):
        for i, x in enumerate(w):
            x = mpmath.mpf(x)
            ref = (mpmath.diff(mpmath.sincpi, x, 2) + mpmath.psi(1, x + 3) + mpmath.psi(2, x + 4)
                   - mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2)
            got = mpmath.fadd(H.hi[i, i], H.lo[i, i], exact=True)
            assert abs(got - ref) <= mpmath.mpf(10) ** -23 * abs(ref), (i, got, ref)


def test_d2sinc_rules_near_zero():
    from verigrad.engine import arb as ab
    from verigrad.expr.functions import FUNCTIONS as F

    xs = np.array([0.0, 1e-9, 0.01, 0.2499999, 0.25, 0.7])
    with mpmath.workprec(300):
        want = [mpmath.diff(mpmath.sincpi, mpmath.mpf(float(v)), 2) for v in xs]
        for v, r in zip(xs, want):
            assert abs(F["d2sinc"].mp_f(mpmath.mpf(float(v))) - r) < mpmath.mpf(10) ** -60
    np.testing.assert_allclose(F["d2sinc"].np_f(xs), [float(r) for r in want], rtol=4e-15)
    with ab.arb_precision(200):
        ball = F["d2sinc"].ball(ab.arb(0, 1e-6))  # a ball around the removable singularity
        assert ball.contains(ab.arb(float(want[0]))) and float(ball.rad()) < 1e-10
        assert F["dsinc"].ball(ab.arb(0)).is_exact() and F["dsinc"].ball(ab.arb(0)) == 0


def test_comparisons_of_integer_constants_are_constant_masks():
    m = model_of("sum(where(y == 3, x[:5], -x[:5])) + sum((y[:, None] != 0) * Z) + 0*sum(x)")
    p = point_in_dtype(m.point, Dtype.FLOAT64)
    v, gx, gz = m.float_eval([m.loss, m.gradient["x"], m.gradient["Z"]], p, np.float64)
    np.testing.assert_allclose(v, np.sum(np.where(Y == 3, X[:5], -X[:5])) + np.sum((Y[:, None] != 0) * Z), rtol=1e-15)
    np.testing.assert_array_equal(gx[:5], np.where(Y == 3, 1.0, -1.0))
    np.testing.assert_array_equal(gz, np.broadcast_to((Y[:, None] != 0).astype(float), Z.shape))
    from verigrad.kinks.sites import find_sites

    assert find_sites(m) == []  # data masks: no variable can move them
