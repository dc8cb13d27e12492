"""Array constructs (einsum, conv1d/conv2d, pooling, norm, var/std, concatenate, stack, flip,
roll, pad, cumsum): values against numpy / PyTorch, exact gradients against mpmath central
differences at 50 digits, dtypes, the complex step, kink sites, certified truths of the
engines, and misuse messages that name the argument."""

from __future__ import annotations

import zlib

import mpmath
import numpy as np
import pytest

from verigrad import certify, compile_case, load_case_text
from verigrad.casefile.loader import point_in_dtype
from verigrad.engine.backends import FloatBackend, MPBackend
from verigrad.errors import CaseError, ExpressionError, ShapeError
from verigrad.expr.evaluate import evaluate
from verigrad.expr.graph import Builder, Op, topological
from verigrad.expr.parser import parse_expression
from verigrad.expr.reverse import gradient_graph
from verigrad.spec import Dtype

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _build(expr: str, shapes: dict, const=()):
    b = Builder()
    names = {k: b.leaf(k, tuple(s), variable=k not in const) for k, s in shapes.items()}
    return b, names, parse_expression(expr, builder=b, names=names, field="loss")


def _float(expr: str, vals: dict, dtype=np.float64):
    b, names, out = _build(expr, {k: np.shape(v) for k, v in vals.items()})
    return evaluate([out], {k: np.asarray(v, dtype)[None] for k, v in vals.items()}, FloatBackend(dtype))[0][0]


def _grads(expr: str, vals: dict, const=(), backend=None, dtype=np.float64):
    b, names, out = _build(expr, {k: np.shape(v) for k, v in vals.items()}, const)
    var = {k: n for k, n in names.items() if k not in const}
    g = gradient_graph(b, out, var)
    leaves = {k: np.asarray(v, dtype)[None] if backend is None else v for k, v in vals.items()}
    res = evaluate([g[k] for k in var], leaves, backend or FloatBackend(dtype))
    return {k: r[0] for k, r in zip(var, res)}


RNG = np.random.default_rng(20261206)
X4 = RNG.normal(size=(2, 4, 7, 6))
W4 = RNG.normal(size=(6, 2, 3, 2))


@pytest.mark.parametrize("opts", [{}, {"stride": 2}, {"padding": 1}, {"groups": 2},
                                  {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1), "groups": 2}])
def test_conv2d_equals_torch_values_and_gradients(opts):
    w = W4 if opts.get("groups") == 2 else RNG.normal(size=(6, 4, 3, 2))
    text = ", ".join(f"{k}={v}" for k, v in opts.items())
    expr = f"conv2d(x, w{', ' + text if text else ''})"
    xt = torch.tensor(X4, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    ref = F.conv2d(xt, wt, **opts)
    got = _float(expr, {"x": X4, "w": w})
    assert got.shape == tuple(ref.shape)
    np.testing.assert_allclose(got, ref.detach().numpy(), rtol=0, atol=1e-13)
    c = RNG.normal(size=ref.shape)
    (ref * torch.tensor(c)).sum().backward()
    g = _grads(f"sum(C * {expr})", {"x": X4, "w": w, "C": c}, const=("C",))
    np.testing.assert_allclose(g["x"], xt.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(g["w"], wt.grad.numpy(), rtol=0, atol=1e-12)


def test_conv1d_and_unbatched_conv2d_equal_torch():
    x, w = RNG.normal(size=(2, 3, 9)), RNG.normal(size=(4, 3, 3))
    got = _float("conv1d(x, w, stride=2, padding=1, dilation=2)", {"x": x, "w": w})
    ref = F.conv1d(torch.tensor(x), torch.tensor(w), stride=2, padding=1, dilation=2).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13)
    x3 = X4[0]
    w3 = RNG.normal(size=(5, 4, 3, 3))
    got = _float("conv2d(x, w, padding=1)", {"x": x3, "w": w3})
    ref = F.conv2d(torch.tensor(x3), torch.tensor(w3), padding=1).numpy()
    assert got.shape == ref.shape == (5, 7, 6)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("expr,ref", [
    ("max_pool2d(x, 2)", lambda t: F.max_pool2d(t, 2)),
    ("max_pool2d(x, (3, 2), stride=1)", lambda t: F.max_pool2d(t, (3, 2), stride=1)),
    ("avg_pool2d(x, 2)", lambda t: F.avg_pool2d(t, 2)),
    ("avg_pool2d(x, (3, 2), stride=(2, 1))", lambda t: F.avg_pool2d(t, (3, 2), stride=(2, 1))),
])
def test_pooling_equals_torch(expr, ref):
    xt = torch.tensor(X4, requires_grad=True)
    r = ref(xt)
    np.testing.assert_allclose(_float(expr, {"x": X4}), r.detach().numpy(), rtol=0, atol=1e-15)
    c = RNG.normal(size=r.shape)
    (r * torch.tensor(c)).sum().backward()
    g = _grads(f"sum(C * {expr})", {"x": X4, "C": c}, const=("C",))
    np.testing.assert_allclose(g["x"], xt.grad.numpy(), rtol=0, atol=1e-14)


A, B = RNG.normal(size=(3, 4)), RNG.normal(size=(4, 5))
T, S = RNG.normal(size=(3, 4, 4)), RNG.normal(size=(4, 4))
Q, K = RNG.normal(size=(2, 3, 5, 4)), RNG.normal(size=(2, 3, 6, 4))
V = RNG.normal(size=4)

EINSUMS = [("ij,jk->ik", [A, B]), ("ij,jk", [A, B]), ("bhqd,bhkd->bhqk", [Q, K]), ("ii->i", [S]),
           ("ii", [S]), ("bii->b", [T]), ("ij->ji", [A]), ("ij->", [A]), ("i,i->", [V, V]),
           ("i,j->ij", [V, V]), ("...ij,...jk->...ik", [T, S]), ("ij,kj->ik", [B, np.ones((1, 5))]),
           ("...i->...", [Q]), ("bA", [A]), ("ij,jk,kl->il", [A, B, RNG.normal(size=(5, 2))]),
           ("ii,i->i", [S, V])]


@pytest.mark.parametrize("sub,ops", EINSUMS, ids=[s for s, _ in EINSUMS])
def test_einsum_equals_numpy(sub, ops):
    names = [f"x{i}" for i in range(len(ops))]
    got = _float(f"einsum('{sub}', {', '.join(names)})", dict(zip(names, ops)))
    ref = np.einsum(sub, *ops)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13)


def test_attention_scores_are_one_matmul():
    """Q K^T over batch and heads lowers to one MATMUL (batch axes b, h), no elementwise product."""
    b, _, out = _build("einsum('bhqd,bhkd->bhqk', q, k)", {"q": Q.shape, "k": K.shape})
    ops = [n.op for n in topological([out])]
    assert ops.count(Op.MATMUL) == 1 and Op.MUL not in ops


X34 = RNG.normal(size=(3, 4))
Y34 = RNG.normal(size=(3, 4))
Z24 = RNG.normal(size=(2, 4))
V5 = RNG.normal(size=5)
VALS = {"x": X34, "y": Y34, "z": Z24, "v": V5}
LN = np.linalg.norm
SHAPED = [
    ("norm(x)", lambda: LN(X34)), ("norm(x, axis=1)", lambda: LN(X34, axis=1)),
    ("norm(v, ord=1)", lambda: LN(V5, 1)), ("norm(v, ord=inf)", lambda: LN(V5, np.inf)),
    ("norm(v, ord=-inf)", lambda: LN(V5, -np.inf)), ("norm(v, 3)", lambda: LN(V5, 3)),
    ("norm(x, 'fro')", lambda: LN(X34, "fro")), ("norm(x, ord=1)", lambda: LN(X34, 1)),
    ("norm(x, ord=inf)", lambda: LN(X34, np.inf)),
    ("norm(x, ord=-1, keepdims=True)", lambda: LN(X34, -1, keepdims=True)),
    ("norm(x, axis=(1, 0), ord=1)", lambda: LN(X34, 1, axis=(1, 0))),
    ("var(x)", lambda: np.var(X34)), ("var(x, axis=0, ddof=1)", lambda: np.var(X34, axis=0, ddof=1)),
    ("std(x, axis=-1, keepdims=True)", lambda: np.std(X34, axis=-1, keepdims=True)),
    ("concatenate((x, y, z), axis=0)", lambda: np.concatenate((X34, Y34, Z24), 0)),
    ("concatenate([x, y], axis=1)", lambda: np.concatenate((X34, Y34), 1)),
    ("stack((x, y))", lambda: np.stack((X34, Y34))), ("stack((x, y), axis=-1)", lambda: np.stack((X34, Y34), -1)),
    ("flip(x)", lambda: np.flip(X34)), ("flip(x, axis=1)", lambda: np.flip(X34, 1)),
    ("roll(x, 2)", lambda: np.roll(X34, 2)), ("roll(x, -1, axis=1)", lambda: np.roll(X34, -1, 1)),
    ("roll(x, (1, 2), axis=(0, 1))", lambda: np.roll(X34, (1, 2), (0, 1))),
    ("pad(x, 1)", lambda: np.pad(X34, 1)), ("pad(x, ((0, 1), (2, 0)))", lambda: np.pad(X34, ((0, 1), (2, 0)))),
    ("pad(x, (1, 2), constant_values=-0.5)", lambda: np.pad(X34, (1, 2), constant_values=-0.5)),
    ("cumsum(x)", lambda: np.cumsum(X34)), ("cumsum(x, axis=0)", lambda: np.cumsum(X34, 0)),
    ("cumsum(x, axis=1)", lambda: np.cumsum(X34, axis=1)),
]


@pytest.mark.parametrize("expr,ref", SHAPED, ids=[e for e, _ in SHAPED])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shape_and_statistics_equal_numpy(expr, ref, dtype):
    vals = {k: v.astype(dtype) for k, v in VALS.items()}
    got = _float(expr, vals, dtype)
    want = np.asarray(ref())
    assert got.shape == want.shape and got.dtype == dtype
    tol = 1e-14 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


# Gradients of small losses, one per construct, exact (MPBackend at 50 digits) against mpmath
# central differences of the loss at 50 digits (h = 1e-20: truncation ~1e-40, rounding ~1e-30).
SMALL = [
    ("sum(C * conv2d(x, w, padding=1, stride=(1, 2)))", {"x": (1, 2, 4, 4), "w": (3, 2, 2, 3)}),
    ("sum(C * conv1d(x, w, dilation=2))", {"x": (2, 2, 6), "w": (2, 2, 2)}),
    ("sum(C * max_pool2d(x, 2))", {"x": (1, 2, 4, 4)}),
    ("sum(C * avg_pool2d(x, (2, 3), stride=1))", {"x": (1, 1, 3, 4)}),
    ("sum(C * einsum('ij,kj->ik', x, w))", {"x": (2, 3), "w": (4, 3)}),
    ("sum(C * einsum('bii,bi->bi', x, w))", {"x": (2, 3, 3), "w": (2, 3)}),
    ("norm(x)", {"x": (3, 2)}), ("sum(C * norm(x, ord=1, axis=1))", {"x": (3, 2)}),
    ("sum(C * var(x, axis=0, ddof=1))", {"x": (3, 2)}), ("sum(C * std(x, axis=1))", {"x": (3, 2)}),
    ("sum(C * concatenate((x, w), axis=1))", {"x": (3, 2), "w": (3, 1)}),
    ("sum(C * stack((x, w), axis=1))", {"x": (3, 2), "w": (3, 2)}),
    ("sum(C * flip(x, axis=0) * roll(x, 1, axis=1))", {"x": (3, 2)}),
    ("sum(C * pad(x, (1, 0), constant_values=2) ** 2)", {"x": (3, 2)}),
    ("sum(C * cumsum(x * x, axis=0))", {"x": (3, 2)}),
]


@pytest.mark.parametrize("expr,shapes", SMALL, ids=[e for e, _ in SMALL])
def test_exact_gradient_against_mpmath_central_differences(expr, shapes):
    rng = np.random.default_rng(zlib.crc32(expr.encode()))  # str hash() is salted per process
    vals = {k: rng.normal(size=s) for k, s in shapes.items()}
    b, names, out = _build(expr.replace("C * ", ""), {k: v.shape for k, v in vals.items()})
    if "C * " in expr:
        vals["C"] = rng.normal(size=parse_expression(expr.split("C * ", 1)[1][:-1], builder=b, names=names,
                                                     field="x").shape)
    b, names, loss = _build(expr, {k: v.shape for k, v in vals.items()}, const=("C",))
    var = [k for k in names if k != "C"]
    grads = gradient_graph(b, loss, {k: names[k] for k in var})
    with mpmath.workdps(50):
        mp = {k: MPBackend.from_float(v[None]) for k, v in vals.items()}
        exact = evaluate([grads[k] for k in var], mp, MPBackend())
        h = mpmath.mpf(10) ** -20
        for k, g in zip(var, exact):
            for idx in np.ndindex(vals[k].shape):
                plus, minus = dict(mp), dict(mp)
                plus[k], minus[k] = mp[k].copy(), mp[k].copy()
                plus[k][(0,) + idx] += h
                minus[k][(0,) + idx] -= h
                fp = evaluate([loss], plus, MPBackend())[0][0]
                fm = evaluate([loss], minus, MPBackend())[0][0]
                fd = (fp - fm) / (2 * h)
                assert abs(g[(0,) + idx] - fd) < mpmath.mpf(10) ** -25, (k, idx)


@pytest.mark.parametrize("expr,shapes", [
    ("sum(C * conv2d(x, w, padding=1))", {"x": (1, 2, 3, 3), "w": (2, 2, 2, 2)}),
    ("sum(C * einsum('bqd,bkd->bqk', x, w))", {"x": (2, 3, 2), "w": (2, 4, 2)}),
    ("sum(C * var(x, axis=1))", {"x": (2, 3)}), ("norm(x)", {"x": (2, 3)}),
    ("sum(C * avg_pool2d(x, 2))", {"x": (1, 1, 4, 4)}),
])
def test_complex_step_gives_the_exact_gradient(expr, shapes):
    rng = np.random.default_rng(5)
    vals = {k: rng.normal(size=s) for k, s in shapes.items()}
    out_shape = _float(expr.replace("sum(C * ", "(").replace("C * ", ""), vals).shape
    vals["C"] = rng.normal(size=out_shape)
    g = _grads(expr, vals, const=("C",))
    h = 1e-30
    for k in shapes:
        for idx in np.ndindex(shapes[k]):
            cv = {n: v.astype(np.complex128) for n, v in vals.items()}
            cv[k][idx] += 1j * h
            f = _float(expr, cv, np.complex128)
            assert abs(f.imag / h - g[k][idx]) <= 1e-13 * (1 + abs(g[k][idx]))


@pytest.mark.parametrize("expr", ["max_pool2d(x, 2)", "norm(x[0, 0], ord=1)"])
def test_complex_step_is_refused_where_not_analytic(expr):
    with pytest.raises(TypeError, match="not analytic"):
        _float(f"sum({expr})", {"x": X4.astype(np.complex128)}, np.complex128)


CASE = """
name = "t"
seed = 3
rng = "numpy"
loss = "{loss}"
[symbols]
X = {{ constant = true, shape = [2, 1, 6, 6], init = "normal" }}
W = {{ shape = [3, 1, 3, 3], init = "normal(0, 0.5)" }}
"""


def test_kink_sites_of_pooling_norm_and_std():
    from verigrad.kinks.sites import find_sites
    model = compile_case(load_case_text(CASE.format(loss="sum(max_pool2d(conv2d(X, W), 2)) + norm(W) + "
                                                         "sum(std(W, axis=0))"), path="t.toml"))
    sites = find_sites(model)
    fns = sorted(s.name for s in sites)
    assert fns == ["max", "norm", "std"]  # the 2-norm and std at 0 are kinks, not sqrt's domain edge
    mx = next(s for s in sites if s.name == "max")
    assert "max_pool2d" in mx.label
    assert any("norm(W)" in s.label for s in sites) and any("std(W, axis=0)" in s.label for s in sites)
    by = {s.name: s for s in sites}
    assert all(by[n].kind.value == "kink" for n in ("norm", "std"))
    assert by["norm"].text == "norm(W) at W = 0 (every entry)"
    assert by["std"].text == "std(W) at var(W) = 0 (all entries of W equal)" and by["std"].shape == (1, 3, 3)


@pytest.mark.parametrize("backend", ["fast", "arb", "mpmath"])
def test_certified_truth_of_a_convolution_matches_torch(backend):
    loss = "sum(tanh(conv2d(X, W, padding=1)) ** 2) / 7 + sum(avg_pool2d(conv2d(X, W), 2))"
    model = compile_case(load_case_text(CASE.format(loss=loss), path="t.toml"))
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    truth = certify(model, point, Dtype.FLOAT64, digits=20, backend=backend)
    xt = torch.tensor(np.asarray(point["X"], np.float64))
    wt = torch.tensor(np.asarray(point["W"], np.float64), requires_grad=True)
    ref = (torch.tanh(F.conv2d(xt, wt, padding=1)) ** 2).sum() / 7 + F.avg_pool2d(F.conv2d(xt, wt), 2).sum()
    ref.backward()
    assert truth.backend == backend
    got = truth.gradient_hi["W"] + truth.gradient_lo["W"]
    np.testing.assert_allclose(got, wt.grad.numpy(), rtol=1e-13, atol=1e-14)


MISUSE = [
    ("conv2d(x4, w3)", ShapeError, r"conv2d\(\): 'w' must have 4 dimensions"),
    ("conv2d(v, w4)", ShapeError, r"conv2d\(\): 'x' must have 4 dimensions"),
    ("conv2d(x4, w4, stride=0)", ShapeError, r"'stride' must be at least 1"),
    ("conv2d(x4, w4, stride=(1, 2, 3))", ShapeError, r"'stride' must be one integer or 2 integers"),
    ("conv2d(x4, w4, padding=-1)", ShapeError, r"'padding' must be at least 0"),
    ("conv2d(x4, w4, groups=3)", ShapeError, r"groups=3 must divide the input channels \(4\)"),
    ("conv2d(x4, w4g)", ShapeError, r"'w' expects 2 input channels .* but 'x' has 4"),
    ("conv2d(x4, w4, dilation=9)", ShapeError, r"kernel .* is larger than the padded input"),
    ("conv2d(x4, w4, strides=2)", ExpressionError, r"conv2d\(\) has no option 'strides'"),
    ("conv2d(x4, w4, stride=s)", ExpressionError, r"'stride' must be an integer literal"),
    ("conv2d(x4, w4, stride=None)", ExpressionError, r"'stride' must be an integer literal, got 'None'"),
    ("max_pool2d(v, 2)", ShapeError, r"max_pool2d\(\): 'x' must have 4 dimensions"),
    ("max_pool2d(x4)", ExpressionError, r"missing its argument 'kernel_size'"),
    ("einsum('ij,jk->ik', a)", ShapeError, r"name 2 operand\(s\) but 1 were given"),
    ("einsum('ijk,jk->ik', a, b)", ShapeError, r"operand 1 has 2 dimension\(s\) .* subscripts 'ijk' name 3"),
    ("einsum('ij,jk->il', a, b)", ExpressionError, r"output subscript 'l' .* appears in no operand"),
    ("einsum('ij,ik->jk', a, b)", ShapeError, r"index 'i' has size 4 in operand 2 but 3 in operand 1"),
    ("einsum('ij,jk->ii', a, b)", ExpressionError, r"output subscript 'i' is repeated"),
    ("einsum('i1', a)", ExpressionError, r"contains '1'"),
    ("einsum(a, b)", ExpressionError, r"einsum\(\): 'subscripts' must be a string literal"),
    ("var(a, ddof=12)", ShapeError, r"var\(\): 'ddof' must lie in 0..11"),
    ("norm(x4, ord=1)", ShapeError, r"norm\(\): ord=1 needs a 1-D or 2-D 'x'"),
    ("norm(a, ord=2)", ShapeError, r"ord=2 is not supported for a matrix norm"),
    ("norm(a, ord='nuc')", ExpressionError, r"'ord' must be None, an integer, inf, -inf or 'fro'"),
    ("concatenate((a, v), axis=0)", ShapeError, r"array 2 has 1 dimensions but array 1 has 2"),
    ("concatenate((a, b), axis=1)", ShapeError, r"only axis 1 may differ"),
    ("concatenate(a)", ExpressionError, r"'arrays' must be a tuple or list of arrays"),
    ("stack((a, b))", ShapeError, r"stack\(\): array 2 has shape \(4, 5\) but array 1 has \(3, 4\)"),
    ("pad(a, 1, mode='reflect')", ShapeError, r"mode='reflect' is not supported"),
    ("pad(a, (1, 2, 3))", ShapeError, r"'pad_width' .* does not fit"),
    ("roll(a, (1, 2))", ShapeError, r"'shift' must be one integer when axis is None"),
    ("cumsum(a, axis=2)", ShapeError, r"axis 2 is out of range"),
]


@pytest.mark.parametrize("expr,cls,match", MISUSE, ids=[m[0] for m in MISUSE])
def test_misuse_messages_name_the_argument(expr, cls, match):
    shapes = {"x4": (2, 4, 5, 5), "w3": (3, 4, 3), "w4": (6, 4, 3, 3), "w4g": (6, 2, 3, 3), "v": (5,),
              "a": (3, 4), "b": (4, 5), "s": ()}
    with pytest.raises(cls, match=match) as info:
        _build(expr, shapes)
    assert isinstance(info.value, CaseError) and info.value.fields.get("field") == "loss"


def test_show_writes_the_constructs_as_calls():
    """`verigrad show` writes conv2d(X, W) and max_pool2d(A, 2), not their gathers, and defines them."""
    from verigrad.report.formulas import show_text
    text = CASE.format(loss="sum(P)") + '[define]\nA = "relu(conv2d(X, W, padding=1))"\nP = "max_pool2d(A, 2)"\n'
    shown = show_text(compile_case(load_case_text(text, path="t.toml")), width=100)
    assert "A = relu(conv2d(X, W, padding 1))" in shown
    assert "P = max_pool2d(A, 2)" in shown
    assert "max_pool2d(x, k), avg_pool2d: the max / mean of each k×k window" in shown
    assert "keepdims" not in shown and "axis=" not in shown


def test_float32_convolution_stays_float32_and_matches_torch():
    x, w = X4.astype(np.float32), W4.astype(np.float32)
    got = _float("avg_pool2d(conv2d(x, w, padding=1, groups=2), 2)", {"x": x, "w": w}, np.float32)
    ref = F.avg_pool2d(F.conv2d(torch.tensor(x), torch.tensor(w), padding=1, groups=2), 2).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * np.abs(ref).max())
    g = _grads("sum(einsum('nchw,nchw->', conv2d(x, w, groups=2), conv2d(x, w, groups=2)))",
               {"x": x, "w": w}, dtype=np.float32)
    assert g["x"].dtype == np.float32 and g["w"].dtype == np.float32


def test_the_two_norm_at_zero_is_refused_naming_its_kink():
    from verigrad import DomainError
    model = compile_case(load_case_text('name = "t"\nloss = "norm(w) + sum(w)"\n[symbols]\nw = { shape = [3], value = 0.0 }\n',
                                        path="t.toml"))
    with pytest.raises(DomainError, match=r"in loss: norm\(w\) \(the 2-norm has a kink where all its entries are 0\)"):
        certify(model, point_in_dtype(model.point, Dtype.FLOAT64), Dtype.FLOAT64)
