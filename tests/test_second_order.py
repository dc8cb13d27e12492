"""Second order (issue 22): exact HVPs and Hessians against closed forms and 60-digit finite
differences, symmetry and exact zeros, the FD Hessian's exact T + S + R split, second-order bug
shapes, and the shipped second-order cases."""

from __future__ import annotations

from pathlib import Path

import mpmath
import numpy as np
import pytest

from verigrad.casefile.loader import load_case, load_case_text, point_in_dtype
from verigrad.engine.backends import MPBackend
from verigrad.engine.hessian import (certify_hessian, certify_hvp, flat_offsets, hessian_baseline, hvp_baseline,
                                     hvp_model)
from verigrad.engine.model import compile_case
from verigrad.fd.second import GRADIENT_CENTRAL, SECOND_DIFFERENCE, default_step, fd_hessian, fd_hvp, hessian_entry_splits, hvp_split
from verigrad.grading.second import SecondShape, diagnose_hessian
from verigrad.runner.case import baseline_gradient, run_case
from verigrad.spec import Dtype

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "cases"


@pytest.fixture(scope="module")
def logistic():
    return compile_case(load_case(CASES / "newton-logistic-regression.toml"))


@pytest.fixture(scope="module")
def mlp():
    return compile_case(load_case(CASES / "mlp-hvp.toml"))


def _mp(a):
    return MPBackend.from_float(np.asarray(a))


@pytest.mark.parametrize("dtype", [Dtype.FLOAT32, Dtype.FLOAT64])
def test_logistic_hessian_is_the_newton_closed_form(logistic, dtype):
    """H = X_a^T diag(p(1-p)) X_a / n + lam I (w block), at 60 digits from the exact binary point."""
    p = point_in_dtype(logistic.point, dtype)
    H = certify_hessian(logistic, p, dtype, digits=24)
    with mpmath.workdps(60):
        X, w, b, lam = _mp(p["X"]), _mp(p["w"]), _mp(p["b"])[()], _mp(p["lam"])[()]
        n, k = X.shape
        Xa = np.concatenate([X, np.array([[mpmath.mpf(1)]] * n, dtype=object)], axis=1)
        z = X.dot(w) + b
        d = np.array([1 / (1 + mpmath.exp(-zi)) * (1 - 1 / (1 + mpmath.exp(-zi))) for zi in z], dtype=object) / n
        ref = Xa.T.dot(Xa * d[:, None])
        for i in range(k):
            ref[i, i] += lam
        worst = mpmath.mpf(0)
        for i in range(k + 1):
            for j in range(k + 1):
                got = mpmath.fadd(H.hi[i, j], H.lo[i, j], exact=True)
                err = abs(got - ref[i, j]) / abs(ref[i, j])
                worst = max(worst, err)
                # every reported digit is proved: the closed form lies in the certified ball
                assert abs(got - ref[i, j]) <= H.rad[i, j] + mpmath.mpf(10) ** -50 * abs(ref[i, j])
        assert worst < mpmath.mpf(10) ** -24
    assert H.symmetric and H.exact_zero.sum() == 0
    # the float baseline of the same graph is float-accurate, and the diagonal/blocks are views of H
    base = hessian_baseline(logistic, p, dtype)
    assert np.max(np.abs(base - H.hi)) <= 64 * dtype.eps * np.max(np.abs(H.hi))
    hw, _ = H.block("w", "b")
    assert hw.shape == (5,) and np.array_equal(hw, H.hi[:5, 5])
    assert np.array_equal(H.diagonal("w")[0], np.diag(H.hi)[:5])


def test_mlp_hvp_matches_60_digit_finite_differences(mlp):
    """H v against central differences of the exact gradient at 60 digits (h = 1e-25: error ~1e-50)."""
    dtype = Dtype.FLOAT64
    p = point_in_dtype(mlp.point, dtype)
    rng = np.random.default_rng(7)
    v = {n: rng.standard_normal(mlp.shape(n)) for n in mlp.gradient}
    T = certify_hvp(mlp, p, v, dtype, digits=30)
    names = list(mlp.gradient)
    with mpmath.workdps(60):
        h = mpmath.mpf(10) ** -25
        vals = {}
        for sgn in (1, -1):
            q = {k: _mp(a) for k, a in p.items()}
            for n in names:
                q[n] = q[n] + sgn * h * _mp(v[n])
            vals[sgn] = mlp.mp_eval([mlp.gradient[n] for n in names], q, prec=200)
        scale = max(abs(x) for n in names for x in T.gradient[n].ravel())
        for n, gp, gm in zip(names, vals[1], vals[-1]):
            fd = (gp - gm) / (2 * h)
            for got, ref in zip(T.gradient[n].ravel(), fd.ravel()):
                assert abs(got - ref) <= mpmath.mpf(10) ** -29 * scale
    # the shipped R-op candidate, run in float64, agrees with the certified H v to rounding error
    import importlib.util

    spec = importlib.util.spec_from_file_location("mlp_hvp_impl", CASES / "impl" / "mlp_hvp.py")
    impl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(impl)
    got = impl.hvp(vector=v, **p)
    for n in names:
        assert np.max(np.abs(got[n] - T.gradient_hi[n])) <= 1e-13 * float(scale)


def test_relu_network_hessian_symmetric_and_exact_zeros():
    """The 3-layer ReLU net: symmetric within the certificates, and the exact zeros are exactly the
    entries that 60-digit differences of the exact gradient find below 1e-40."""
    model = compile_case(load_case(CASES / "gradient-checking-3layer.toml"))
    p = point_in_dtype(model.point, Dtype.FLOAT64)
    H = certify_hessian(model, p, Dtype.FLOAT64, digits=20)
    assert H.symmetric and H.size == 47
    names = list(model.gradient)
    offs = flat_offsets(model)
    fd_zero = np.zeros((H.size, H.size), dtype=bool)
    with mpmath.workdps(60):
        h = mpmath.mpf(10) ** -25
        base = {k: _mp(a) for k, a in p.items()}
        for name in names:
            for k in range(offs[name][1] - offs[name][0]):
                cols = []
                for sgn in (1, -1):
                    q = dict(base)
                    arr = q[name].copy()
                    arr.reshape(-1)[k] += sgn * h
                    q[name] = arr
                    cols.append(model.mp_eval([model.gradient[n] for n in names], q, prec=200))
                col = np.concatenate([((a - b) / (2 * h)).reshape(-1) for a, b in zip(*cols)])
                fd_zero[:, offs[name][0] + k] = [abs(x) < mpmath.mpf(10) ** -40 for x in col]
    assert H.exact_zero.sum() > 1000
    assert np.array_equal(H.exact_zero, fd_zero)


def test_second_derivatives_of_sigmoid_tanh_relu():
    """d2/dw2 of sum(sigmoid(w) + tanh(w) + relu(w)) is s(1-s)(1-2s) - 2 t (1 - t^2) + 0 exactly."""
    case = load_case_text('name = "t"\nloss = "sum(sigmoid(w) + tanh(w) + relu(w))"\n'
                          '[symbols]\nw = { value = [-1.5, 0.25, 2.0] }\n')
    model = compile_case(case)
    p = point_in_dtype(model.point, Dtype.FLOAT64)
    H = certify_hessian(model, p, Dtype.FLOAT64, digits=24)
    assert H.exact_zero[~np.eye(3, dtype=bool)].all()
    with mpmath.workdps(40):
        for i, x in enumerate(p["w"]):
            s = 1 / (1 + mpmath.exp(-mpmath.mpf(x)))
            t = mpmath.tanh(mpmath.mpf(x))
            ref = s * (1 - s) * (1 - 2 * s) - 2 * t * (1 - t * t)
            got = mpmath.fadd(H.hi[i, i], H.lo[i, i], exact=True)
            assert abs(got - ref) <= mpmath.mpf(10) ** -24 * abs(ref)


def test_kink_note_on_and_off_the_kink():
    from verigrad.runner.second import kink_note

    case = load_case_text('name = "k"\nloss = "sum(relu(w)**2) + sum(abs(w))"\n'
                          '[symbols]\nw = { value = [0.0, 1.0] }\n')
    model = compile_case(case)
    notes, on = kink_note(model, point_in_dtype(model.point, Dtype.FLOAT64))
    assert on and "abs, relu" in notes[0] and "undefined" in notes[1]
    H = certify_hessian(model, point_in_dtype(model.point, Dtype.FLOAT64), Dtype.FLOAT64)
    # relu(w)^2'' = 2 step(w): 0 at the kink by convention, 2 at w = 1; abs'' = 0 away from 0
    assert H.hi.tolist() == [[0.0, 0.0], [0.0, 2.0]]
    notes, on = kink_note(model, {"w": np.array([0.5, 1.0])})
    assert not on and len(notes) == 1


def test_hvp_costs_a_small_constant_times_the_gradient(mlp):
    """Graph size (the cost model of every backend): the HVP graph is a small multiple of the gradient's."""
    from verigrad.expr.graph import topological

    g = len(topological([mlp.loss, *mlp.gradient.values()]))
    hm = hvp_model(mlp)
    hv = len(topological([hm.loss, *hm.gradient.values()]))
    assert hv < 4 * g


def test_fd_hessian_split_is_exact_and_truncation_is_second_order(logistic):
    dtype = Dtype.FLOAT64
    p = point_in_dtype(logistic.point, dtype)
    H = certify_hessian(logistic, p, dtype, digits=24)
    splits = {h: hessian_entry_splits(logistic, p, dtype, H, [(0, 0), (1, 4)], step=h) for h in (2.0 ** -6, 2.0 ** -7)}
    with mpmath.workprec(320):
        for rows in splits.values():
            for s in rows:
                total = s.truncation + s.step_error + s.roundoff
                assert abs(total - s.error) <= mpmath.mpf(2) ** -250 * abs(s.error)
                assert s.error == mpmath.mpf(s.estimate) - s.truth
        for k in range(2):
            ratio = splits[2.0 ** -6][k].truncation / splits[2.0 ** -7][k].truncation
            assert abs(ratio - 4) < 0.01  # T ~ h^2
    # the 3-point rule at its own step reaches ~u^(1/2), the classic eps = 1e-7 step does not
    F = fd_hessian(logistic, p, dtype)
    rel = np.max(np.abs(F - H.hi)) / np.max(np.abs(H.hi))
    assert 1e-10 < rel < 1e-6
    F7 = fd_hessian(logistic, p, dtype, step=1e-7)
    assert np.max(np.abs(F7 - H.hi)) / np.max(np.abs(H.hi)) > 100 * rel
    Fr = fd_hessian(logistic, p, dtype, richardson=True)
    assert np.max(np.abs(Fr - H.hi)) / np.max(np.abs(H.hi)) < rel
    assert default_step(SECOND_DIFFERENCE, dtype) == pytest.approx((dtype.eps / 2) ** 0.25)
    assert default_step(GRADIENT_CENTRAL, dtype) == pytest.approx((dtype.eps / 2) ** (1 / 3))


@pytest.mark.parametrize("dtype", [Dtype.FLOAT32, Dtype.FLOAT64])
def test_fd_hvp_of_gradient_code_split(logistic, dtype):
    p = point_in_dtype(logistic.point, dtype)
    rng = np.random.default_rng(3)
    v = {n: rng.standard_normal(logistic.shape(n)).astype(dtype.numpy) for n in logistic.gradient}
    T = certify_hvp(logistic, p, v, dtype, digits=24)
    grad = lambda q: baseline_gradient(logistic, q, dtype)  # noqa: E731 - the "user's gradient code"
    est = fd_hvp(grad, p, v, dtype)
    assert est["w"].dtype == dtype.numpy
    rows = hvp_split(logistic, grad, p, v, dtype, T)
    assert len(rows) == 6
    with mpmath.workprec(320):
        for s in rows:
            assert abs(s.truncation + s.step_error + s.roundoff - s.error) <= mpmath.mpf(2) ** -250 * abs(s.error)
    scale = max(abs(float(x)) for x in np.concatenate([T.gradient_hi["w"], [T.gradient_hi["b"]]]))
    worst = max(abs(float(s.error)) for s in rows) / scale
    u = dtype.eps / 2
    assert u ** 0.8 < worst < 30 * u ** (2 / 3)  # attainable ~u^(2/3) at h ~ u^(1/3)


def test_diagnose_second_order_shapes():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 4))
    H = A + A.T
    offs, shapes = {"x": (0, 4)}, {"x": (4,)}
    tau = {"H[x,x]": 1e-12}
    assert diagnose_hessian(np.triu(H), H, offs, shapes, tau)[0].shape is SecondShape.MISSING_SYMMETRIC_HALF
    d = diagnose_hessian(H + np.diag(np.diag(H)), H, offs, shapes, tau)
    assert d[0].shape is SecondShape.DIAGONAL_FACTOR and "scaled by 2" in d[0].message
    assert diagnose_hessian(H, H, offs, shapes, tau) == []
    # a 2 x 3 matrix variable flattened in column order
    B = rng.standard_normal((6, 6))
    H = B + B.T
    offs, shapes = {"W": (0, 6)}, {"W": (2, 3)}
    full = H.reshape(2, 3, 2, 3)
    fortran = np.transpose(full, (1, 0, 2, 3)).reshape(6, 6)
    d = diagnose_hessian(fortran, H, offs, shapes, {"H[W,W]": 1e-12})
    assert d and d[0].shape is SecondShape.TRANSPOSED_BLOCK and "column order" in d[0].message


def test_shipped_second_order_cases_name_the_bugs():
    rep = run_case(CASES / "newton-logistic-regression.toml", with_fd=False)
    by = {(r.candidate, r.dtype): r for r in rep.results}
    assert all(r.met for r in rep.results), [(r.candidate, r.dtype, r.verdict, r.message) for r in rep.results]
    for dt in ("float32", "float64"):
        assert "missing the second derivative of lam/2 * sum(w**2)" in by[("forgot-penalty-hessian", dt)].message
        assert "missing symmetric half" in by[("upper-triangle-only", dt)].message
        assert "diagonal is scaled by 2" in by[("diagonal-doubled", dt)].message
        so = by[("hvp", dt)].extra["second_order"]
        assert so["vector_seed"] == [11, 22] and so["kind"] == "hvp"
        assert by[("newton-hessian", dt)].extra["second_order"]["symmetric"] is True
    # gradgradcheck's construction (eps = 1e-6, rtol = 1e-3) raises a false alarm on the correct float32
    # Hessian and HVP (round-off ~u/eps ~ 1e-1 of the gradient's scale), and agrees in float64
    for name in ("newton-hessian", "hvp"):
        assert by[(name, "float32")].extra["second_order"]["classic"]["outcome"] == "false alarm"
        assert by[(name, "float64")].extra["second_order"]["classic"]["outcome"] == "agree"
    assert by[("diagonal-doubled", "float64")].extra["second_order"]["classic"]["outcome"] == "agree"
    rep = run_case(CASES / "gaussian-nll-variance-hessian.toml")
    by = {(r.candidate, r.dtype): r for r in rep.results}
    assert all(r.met for r in rep.results if r.kind == "code")
    assert "transposed block" in by[("mixed-block-transposed", "float64")].message
    assert "scaled by 2" in by[("diagonal-variance-factor-2", "float32")].message


def test_truth_hessian_and_run_json_validate(tmp_path):
    import importlib.resources
    import json

    import jsonschema

    from verigrad.cli.main import main

    def validator(name):
        text = importlib.resources.files("verigrad").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
        return jsonschema.Draft202012Validator(json.loads(text))

    out = tmp_path / "t.json"
    assert main(["truth", str(CASES / "gaussian-nll-variance-hessian.toml"), "--hessian", "--dtype", "float64",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    validator("truth").validate(doc)
    h = doc["hessian"]["float64"]
    assert h["n"] == 6 and h["symmetric"] and len(h["entries"]) == 6
    assert h["entries"][0][3] == h["entries"][3][0]  # H[w0,v0] = H[v0,w0], to every certified digit
    run = tmp_path / "r.json"
    main(["run", str(CASES / "mlp-hvp.toml"), "--no-fd", "--json", str(run)])
    doc = json.loads(run.read_text())
    validator("run").validate(doc)
    so = [r["second_order"] for r in doc["results"] if r["candidate"] == "r-op-hvp"]
    assert so and so[0]["vector_seed"] == [5, 22]


def test_api_check_hvp_and_assert_hessian():
    import sympy

    from verigrad.api import assert_hessian, check_hessian, check_hvp

    x, y = sympy.symbols("x y")
    loss = sympy.exp(x * y) + x ** 3
    pt = {"x": 0.7, "y": -1.3}

    def hvp(x, y, vector):
        e = np.exp(x * y)
        hxx, hxy, hyy = y * y * e + 6 * x, e + x * y * e, x * x * e
        return {"x": hxx * vector["x"] + hxy * vector["y"], "y": hxy * vector["x"] + hyy * vector["y"]}

    res = check_hvp(loss, hvp, point=pt)
    assert res.passed and set(res.verdicts) == {"float32", "float64"}

    def hess(x, y):
        e = np.exp(x * y)
        return np.array([[y * y * e + 6 * x, e + x * y * e], [e + x * y * e, x * x * e]])

    assert_hessian(loss, hess, point=pt)

    def hess_diag_doubled(x, y):
        H = hess(x, y)
        return H + np.diag(np.diag(H))

    with pytest.raises(AssertionError, match="diagonal is scaled by 2"):
        assert_hessian(loss, hess_diag_doubled, point=pt)
    assert not check_hessian(loss, lambda x, y: hess(x, y).T * np.array([[1, 1], [0, 1]]), point=pt).passed


pytest_plugins = ["pytester"]

_LIN_CASE = '''
name = "lin-hessian"
seed = 3
loss = "mean((X @ w - y)**2) / 2"

[symbols]
X = { constant = true, shape = [6, 3], init = "normal" }
y = { constant = true, shape = [6], init = "normal" }
w = { shape = [3], init = "normal" }

[[candidate]]
name = "gram"
kind = "hessian"
code = "impl/h.py:hessian"

[[candidate]]
name = "gram-hvp-wrongly-accused"
kind = "hvp"
code = "impl/h.py:hvp"
expect = "fail"

[[candidate]]
name = "returns-a-vector"
kind = "hessian"
code = "impl/h.py:bad_shape"

[check]
dtypes = ["float64"]
'''

_LIN_IMPL = '''
def hessian(X, y, w):
    return X.T @ X / X.shape[0]


def hvp(X, y, w, vector):
    return {"w": X.T @ (X @ vector["w"]) / X.shape[0]}


def bad_shape(X, y, w):
    return w
'''


def test_pytest_plugin_grades_second_order_candidates(pytester):
    (pytester.path / "lin.toml").write_text(_LIN_CASE, encoding="utf-8")
    (pytester.path / "impl").mkdir()
    (pytester.path / "impl" / "h.py").write_text(_LIN_IMPL, encoding="utf-8")
    result = pytester.runpytest("-p", "no:cacheprovider", "--verigrad", "-v")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*lin.toml::gram?float64? PASSED*",
                                 "*gram-hvp-wrongly-accused?float64? FAILED*",
                                 "*returns-a-vector?float64? FAILED*"])
    result.stdout.fnmatch_lines(["*the Hessian has shape (3,), expected (3, 3)*"])


def test_second_order_bad_inputs(tmp_path):
    from verigrad.errors import CaseError

    base = ('name = "b"\nloss = "sum(vector**2 * w**2)"\n[symbols]\nvector = { constant = true, value = [1.0, 2.0] }\n'
            'w = { value = [0.5, -1.0] }\n[[candidate]]\nname = "c"\ncode = "impl/h.py:hvp"\n')
    with pytest.raises(CaseError, match=r"(?s)kind='hesian' is not a candidate kind.*did you mean 'hessian'"):
        load_case_text(base + 'kind = "hesian"\n', path=tmp_path / "b.toml")
    with pytest.raises(CaseError, match="device='cuda' is for torch and JAX candidates"):
        load_case_text(base + 'kind = "hvp"\ndevice = "cuda"\n', path=tmp_path / "b.toml")
    (tmp_path / "impl").mkdir()
    (tmp_path / "impl" / "h.py").write_text("def hvp(**kw):\n    return kw['w']\n", encoding="utf-8")
    (tmp_path / "b.toml").write_text(base + 'kind = "hvp"\n[check]\ndtypes = ["float64"]\n', encoding="utf-8")
    (res,) = run_case(tmp_path / "b.toml", with_fd=False).results
    assert res.verdict == "error" and "symbol named 'vector'" in res.message


# -- second-order step studies (verigrad study --second-order), FD rows of run, the diagonal at scale --------

EXP_CASE = 'name = "e2"\nloss = "exp(x + 2*y)"\n[symbols]\nx = { value = 0.25 }\ny = { value = 0.125 }\n'


@pytest.fixture(scope="module")
def exp2():
    return compile_case(load_case_text(EXP_CASE))


def test_second_study_model_coefficients_are_the_closed_forms(exp2):
    """f = exp(x + 2y) at x = 1/4, y = 1/8 (exact in binary): the truncation coefficients A of every
    scheme in closed form, and T(h)/h^p measured at h = 2^-8 within O(h^2) of A."""
    from verigrad.studies.second import run_second_study, second_target

    with mpmath.workprec(200):
        e = mpmath.exp(mpmath.mpf(0.5))  # f = f_xx = ... at the point, to 60 digits
        expected = {  # (entry, scheme): (H*, A, p)
            ((0, 0), "second3"): (e, e / 12, 2),                    # f_xxxx / 12
            ((0, 1), "mixed4"): (2 * e, 10 * e / 6, 2),              # (f_xxxy + f_xyyy) / 6 = (2 + 8) e / 6
            ((0, 1), "grad-central"): (2 * e, 8 * e / 6, 2),         # d^3/dt^3 g_x(x, y + t) / 6
            ((0, 0), "richardson(second3)"): (e, -e / 1440, 4),      # -f^(6) / 1440
        }
    for (entry, scheme), (hstar, a, p) in expected.items():
        st = run_second_study(exp2, dtype=Dtype.FLOAT64, scheme=scheme, target=second_target(exp2, Dtype.FLOAT64,
                              entry=entry), steps=[2.0 ** -8, 2.0 ** -4])
        with mpmath.workprec(200):
            assert abs(st.truth - hstar) < 1e-28 * hstar
        assert st.model.truncation_power == p
        assert st.model.truncation_coefficient == pytest.approx(float(a), rel=1e-12), scheme
        row = st.rows[0]  # h = 2^-8: T/h^p = A (1 + O(h^2))
        assert row.truncation / row.h ** p == pytest.approx(float(a), rel=2e-4), scheme
        # E = T + S + R exactly (each part stored as a float64: within their rounding)
        for r in st.rows:
            assert abs(r.truncation + r.step + r.roundoff - r.error) <= 4e-16 * (abs(r.truncation) + abs(r.step)
                                                                             + abs(r.roundoff))
            assert r.step == 0.0  # x +- h, y +- h are exact at these power-of-two steps


def test_second_study_domain_edges_and_tiny_steps():
    """f = y log x at x = 1/2, y = 3/2: A of [1,-2,1] is y f_xxxx/12 = -y 6/x^4/12 = -12, of the 4-point
    rule (f_xxxy + f_xyyy)/6 = 2/(6 x^3) = 8/3; at h = 1 a node leaves the domain and at h = 1e-17 every
    node rounds to x: both rows are excluded, with notes, and the rest of the sweep stands."""
    from verigrad.studies.second import run_second_study, second_target

    m = compile_case(load_case_text('name = "l"\nloss = "log(x) * y"\n[symbols]\nx = { value = 0.5 }\n'
                                    'y = { value = 1.5 }\n'))
    st = run_second_study(m, dtype=Dtype.FLOAT64, scheme="second3", target=second_target(m, Dtype.FLOAT64),
                          steps=[1e-17, 1e-3, 1e-2, 1.0])
    assert st.model.truncation_coefficient == pytest.approx(-12.0, rel=1e-12)
    assert [r.finite for r in st.rows] == [False, True, True, False]
    assert any("leaves the loss's domain" in n for n in st.notes)
    assert any("rounds to the same point" in n for n in st.notes)
    assert st.rows[2].truncation / 1e-4 == pytest.approx(-12.0, rel=1e-3)
    st = run_second_study(m, dtype=Dtype.FLOAT64, scheme="mixed4", target=second_target(m, Dtype.FLOAT64,
                          entry=(0, 1)), steps=[1e-3, 1e-2])
    assert st.model.truncation_coefficient == pytest.approx(8 / 3, rel=1e-12)


def test_second_study_v_curve_slopes_and_optimum(logistic):
    """The V-curve of the [1, -2, 1] rule and of central differences of the gradient on the shipped
    newton-logistic-regression case: truncation slope +2, round-off slope -2 (loss) and -1
    (gradient), measured optimum near the model's, and h* scaling as u^(1/4) resp. u^(1/3)."""
    from verigrad.studies.second import run_second_study, second_target

    opt = {}
    for dtype in (Dtype.FLOAT32, Dtype.FLOAT64):
        for scheme, q in (("second3", 2), ("grad-central", 1)):
            st = run_second_study(logistic, dtype=dtype, scheme=scheme,
                                  target=second_target(logistic, dtype, entry=(0, 0)))
            o, m = st.observed, st.model
            assert m.roundoff_power == q
            assert abs(o.slopes["truncation"] - 2) < 0.15, (scheme, dtype, o.slopes)
            assert abs(o.slopes["roundoff"] + q) < 0.25, (scheme, dtype, o.slopes)
            assert 1 / 4 < o.optimal_step / m.optimal_step < 4, (scheme, dtype, o.optimal_step, m.optimal_step)
            assert o.min_error <= 3 * m.min_error
            u = dtype.eps / 2
            # attainable error: ~u^(1/2) for the loss (x |H*| scale), ~u^(2/3) for the gradient
            assert o.min_error < 30 * u ** (2 / (2 + q)) and o.min_error > u ** (2 / (2 + q)) / 1000
            opt[scheme, dtype] = m.optimal_step
            ok = [r for r in st.rows if r.finite]
            assert all(abs(r.error - (r.truncation + r.step + r.roundoff)) <= 1e-15 * abs(r.error) + 1e-300
                       for r in ok)
    ratio = (Dtype.FLOAT32.eps / Dtype.FLOAT64.eps)
    # h* ~ u^(1/(p+q)): float32/float64 ratio 2^29^(1/4) = 151 for the loss, 2^29^(1/3) = 812 for the gradient
    assert ratio ** 0.25 / 3 < opt["second3", Dtype.FLOAT32] / opt["second3", Dtype.FLOAT64] < 3 * ratio ** 0.25
    grad_ratio = opt["grad-central", Dtype.FLOAT32] / opt["grad-central", Dtype.FLOAT64]
    assert ratio ** (1 / 3) / 3 < grad_ratio < 3 * ratio ** (1 / 3)


def test_study_second_order_cli_json_plot_and_errors(tmp_path, capsys):
    import importlib.resources
    import json

    import jsonschema

    from verigrad.cli.main import main

    out, png = tmp_path / "s.json", tmp_path / "s.png"
    case = str(CASES / "gaussian-nll-variance-hessian.toml")
    assert main(["study", case, "--second-order", "--entry", "0,3", "--dtype", "float64", "--steps",
                 "1e-6:1e-1:11", "--json", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "mixed-4point" in text and "gradient-central" in text and "model optimum" in text
    doc = json.loads(out.read_text())
    for name in ("study", "second-study"):
        schema = json.loads(importlib.resources.files("verigrad").joinpath(f"schemas/{name}.schema.json")
                            .read_text("utf-8"))
        jsonschema.Draft202012Validator(schema).validate(doc)
    so = doc["second_order"]
    assert so["kind"] == "hessian" and so["entry"]["row"] == 0 and so["entry"]["column"] == 3
    assert [s["divided_by_power"] for s in so["schemes"]] == [2, 1]
    rows = doc["studies"][0]["rows"]
    assert len(rows) == 11 and rows[0]["h"] == 1e-6
    assert png.read_bytes()[:4] == b"\x89PNG"
    from verigrad.api import study_second_order

    api = study_second_order(case, entry=(0, 3), dtypes=["float64"], steps=[1e-3, 1e-2])
    assert [s.scheme.name for s in api] == ["mixed-4point", "gradient-central"]
    cli_row = next(r for r in doc["studies"][0]["rows"] if r["h"] == 1e-3)
    assert api[0].rows[0].estimate == cli_row["estimate"] and api[0].rows[0].error == cli_row["error"]
    # labels work as entries; an HVP entry; clear errors
    assert main(["study", case, "--second-order", "--hvp", "--entry", "w[0]", "--dtype", "float32",
                 "--steps", "1e-4,1e-2"]) == 0
    assert "(H v)[w[0]]" in capsys.readouterr().out
    assert main(["study", case, "--second-order", "--entry", "0,3", "--scheme", "second3"]) == 2
    assert "estimates diagonal entries only" in capsys.readouterr().err
    assert main(["study", case, "--second-order", "--entry", "0,99"]) == 2
    assert "outside the 6 variable entries" in capsys.readouterr().err
    assert main(["study", case, "--second-order", "--scheme", "fourth9"]) == 2
    assert "allowed: second3" in capsys.readouterr().err
    assert main(["study", case, "--entry", "0,1"]) == 2
    assert "add --second-order" in capsys.readouterr().err


def test_run_grades_fd_hessians_as_informational_rows(tmp_path):
    from verigrad.errors import CaseError
    from verigrad.fd.second import SecondSplit  # noqa: F401 - the split records behind extra["split"]

    rep = run_case(CASES / "newton-logistic-regression.toml")
    fd = {(r.scheme, r.dtype): r for r in rep.results if r.kind == "fd"}
    assert set(fd) == {(s, d) for s in ("mixed4", "second3", "grad-central") for d in ("float32", "float64")}
    for (scheme, dt), r in fd.items():
        assert r.met is None and r.verdict == "pass", (scheme, dt, r.message)
        rel = r.grade.errors.normwise_relative
        u = Dtype(dt).eps / 2
        # what each scheme reaches at its default step: ~u^(1/2) (loss), ~u^(2/3) (gradient)
        reach = u ** (2 / 3) if scheme == "grad-central" else u ** 0.5
        assert reach / 100 < rel < 100 * reach, (scheme, dt, rel)
        sp = r.extra["split"]
        w = sp["worst"]
        assert w["error"] == pytest.approx(w["truncation"] + w["step"] + w["roundoff"], rel=1e-12, abs=1e-300)
        assert "dominates (norms: T" in r.message and "worst E = T + S + R" in r.message
    # float64 [1,-2,1] at h = u^(1/4): round-off dominates the worst entries (R ~ 4u|f|/h^2 > h^2 f''''/12)
    assert fd[("second3", "float64")].extra["split"]["roundoff"] > fd[("second3", "float64")].extra["split"]["truncation"]
    text = (CASES / "gaussian-nll-variance-hessian.toml").read_text()
    (tmp_path / "impl").mkdir()
    for f in (CASES / "impl").glob("gaussian_nll*.py"):
        (tmp_path / "impl" / f.name).write_text(f.read_text())
    assert text.count("[check]\n") == 1
    (tmp_path / "g.toml").write_text(text.replace("[check]\n", '[check]\nsecond_order_schemes = '
                                                  '["richardson(grad-central)"]\n'))
    rep = run_case(tmp_path / "g.toml")
    fd = [r for r in rep.results if r.kind == "fd"]
    assert [r.scheme for r in fd] == ["richardson(grad-central)"] * 2 and all(r.verdict == "pass" for r in fd)
    with pytest.raises(CaseError, match=r"(?s)\[check\] second_order_schemes.*unknown second-order scheme"
                                        r".*allowed: second3"):
        load_case_text(EXP_CASE + '[check]\nsecond_order_schemes = ["second5"]\n', path=tmp_path / "b.toml")
    off = load_case_text(EXP_CASE + '[check]\nsecond_order_schemes = []\n', path=tmp_path / "b.toml")
    assert off.check.second_order_schemes == ()
    # the case-file names are the study's, and the study's HVP direction is the candidates'
    from verigrad.casefile.fdkeys import SECOND_ORDER_SCHEMES
    from verigrad.runner.second import hvp_vector
    from verigrad.studies.second import SECOND_ALIASES, second_target

    assert set(SECOND_ORDER_SCHEMES) == set(SECOND_ALIASES) | set(SECOND_ALIASES.values())
    m = compile_case(load_case(CASES / "mlp-hvp.toml"))
    for dt in (Dtype.FLOAT32, Dtype.FLOAT64):
        v_run, seed = hvp_vector(m, dt)
        t = second_target(m, dt, entry=(3, None), hvp=True)
        assert t.vector_seed == seed and all(np.array_equal(t.vector[k], v_run[k]) for k in v_run)


def test_exact_diagonal_without_the_full_hessian(logistic, tmp_path, monkeypatch):
    from verigrad.engine import hessian as eh
    from verigrad.errors import LimitError

    p = point_in_dtype(logistic.point, Dtype.FLOAT64)
    H = certify_hessian(logistic, p, Dtype.FLOAT64)
    D = eh.certify_hessian_diagonal(logistic, p, Dtype.FLOAT64)
    assert np.array_equal(D.hi, np.diag(H.hi)) and np.array_equal(D.lo, np.diag(H.lo))
    assert np.array_equal(eh.hessian_diagonal_baseline(logistic, p, Dtype.FLOAT64, chunk=4),
                          np.diag(hessian_baseline(logistic, p, Dtype.FLOAT64)))
    # 450 entries (over the full Hessian's 400): H = diag(3 x^2) + 2 (all ones), diagonal 3 x^2 + 2
    (tmp_path / "impl").mkdir()
    (tmp_path / "impl" / "d.py").write_text("def good(x):\n    return {'x': 3 * x**2 + 2}\n\n"
                                            "def no_coupling(x):\n    return {'x': 3 * x**2}\n", encoding="utf-8")
    (tmp_path / "big.toml").write_text(
        'name = "big"\nloss = "sum(x**4)/4 + sum(x)**2"\n[symbols]\nx = { shape = [450], init = "normal" }\n'
        '[check]\ndtypes = ["float64"]\nsecond_order_schemes = []\n'
        '[[candidate]]\nname = "good"\nkind = "hessian_diag"\ncode = "impl/d.py:good"\n'
        '[[candidate]]\nname = "no-coupling"\nkind = "hessian_diag"\ncode = "impl/d.py:no_coupling"\nexpect = "fail"\n',
        encoding="utf-8")
    rep = run_case(tmp_path / "big.toml")
    by = {r.candidate: r for r in rep.results}
    assert by["good"].verdict == "pass" and by["no-coupling"].verdict == "fail", [r.message for r in rep.results]
    so = by["good"].extra["second_order"]
    assert so["diagonal_only"] and so["n"] == 450
    monkeypatch.setattr(eh, "MAX_DIAGONAL_ENTRIES", 100)
    with pytest.raises(LimitError, match=r"450 entries, over the limit of 100 .*MAX_DIAGONAL_ENTRIES"):
        eh.certify_hessian_diagonal(compile_case(load_case(tmp_path / "big.toml")),
                                    point_in_dtype(compile_case(load_case(tmp_path / "big.toml")).point,
                                                   Dtype.FLOAT64), Dtype.FLOAT64)
