"""Buffer-recycling float evaluation (verigrad.expr.evaluate.evaluate_float, Workspace).

The reference is the plain evaluator (:func:`verigrad.expr.evaluate.evaluate`), which allocates
every intermediate afresh: recycling must give the same bits, in the same dtype, and must
never hand out a buffer that a live value (a view, a broadcast, an output) still sees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from verigrad.engine.backends import FloatBackend
from verigrad.casefile.loader import point_in_dtype
from verigrad.expr.evaluate import Workspace, evaluate, evaluate_float
from verigrad.spec import Dtype
from verigrad.fd import fd_gradient

from casefiles import model_of, write_case

ROOT = Path(__file__).resolve().parents[1]
CASES = sorted((ROOT / "cases").glob("*.toml"))


def _batched(model, point, dtype, B, seed):
    """Leaves with a batch of B randomly moved copies of every variable."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in model.leaves:
        v = point[k][None, ...]
        if k in model.gradient:
            v = (v + 0.01 * rng.standard_normal((B,) + point[k].shape)).astype(dtype)
        out[k] = v
    return out


def _same_bits(a, b):
    assert a.dtype == b.dtype
    assert a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_recycling_is_bit_identical_on_shipped_cases(path, dtype):
    """Loss and gradient of every shipped case, twice through one workspace (so the second
    evaluation runs on recycled buffers), equal the plain evaluator bit for bit."""
    model = model_of(path)
    point = point_in_dtype(model.point, Dtype.FLOAT32 if dtype == np.float32 else Dtype.FLOAT64)
    nodes = [model.loss, *model.gradient.values()]
    ws = Workspace()
    for seed in (0, 1):
        leaves = _batched(model, point, dtype, 5, seed)
        with np.errstate(all="ignore"):
            want = evaluate(nodes, leaves, FloatBackend(dtype))
            got = evaluate_float(nodes, leaves, FloatBackend(dtype), ws)
        for g, w in zip(got, want):
            _same_bits(g, w)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
@pytest.mark.parametrize("cdtype", [np.complex64, np.complex128])
def test_recycling_is_bit_identical_in_complex(path, cdtype):
    """The complex-step evaluation (complex64 / complex128) recycles too, bit for bit; cases with
    a non-analytic operation are refused by both evaluators alike."""
    model = model_of(path)
    real = Dtype.FLOAT32 if cdtype == np.complex64 else Dtype.FLOAT64
    point = point_in_dtype(model.point, real)
    leaves = {k: (v + 1j * np.asarray(1e-20, dtype=v.dtype)).astype(cdtype)
              for k, v in _batched(model, point, real.numpy, 3, 0).items()}
    try:
        with np.errstate(all="ignore"):
            want = evaluate([model.loss], leaves, FloatBackend(cdtype))
    except TypeError:
        with pytest.raises(TypeError), np.errstate(all="ignore"):
            evaluate_float([model.loss], leaves, FloatBackend(cdtype), Workspace())
        return
    ws = Workspace()
    for _ in range(2):
        with np.errstate(all="ignore"):
            got = evaluate_float([model.loss], leaves, FloatBackend(cdtype), ws)
        _same_bits(got[0], want[0])


def test_views_keep_their_buffer_alive(tmp_path):
    """``t`` dies after ``t * 2`` is formed, but slices and a transpose of it are used later:
    its buffer must not be reused while they live (a wrong reuse changes the loss)."""
    model = write_case(tmp_path, "sum(t[1:, :] * (t * 2)[:-1, :]) + sum(t.T[0] * log(t[:, 0]))",
                   'A = { shape = [4, 3], init = "normal" }', 't = "exp(A) + 1"')
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    leaves = _batched(model, point, np.float64, 3, 7)
    want = evaluate([model.loss], leaves, FloatBackend(np.float64))[0]
    ws = Workspace()
    for _ in range(3):
        got = evaluate_float([model.loss], leaves, FloatBackend(np.float64), ws)[0]
        _same_bits(got, want)


def test_outputs_are_not_overwritten_by_later_evaluations(tmp_path):
    """Outputs are never recycled: a second evaluation through the same workspace leaves the
    first one's results untouched, and intermediates do come back for reuse."""
    model = write_case(tmp_path, "sum(exp(x) * x + x**2)", 'x = { shape = [50], init = "normal" }')
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    ws = Workspace()
    first = _batched(model, point, np.float64, 4, 0)
    out1 = evaluate_float([model.loss, model.gradient["x"]], first, FloatBackend(np.float64), ws)
    keep = [o.copy() for o in out1]
    assert ws._bytes > 0  # dead intermediates were kept
    evaluate_float([model.loss, model.gradient["x"]], _batched(model, point, np.float64, 4, 1),
                   FloatBackend(np.float64), ws)
    for o, k in zip(out1, keep):
        _same_bits(o, k)


def test_workspace_is_bounded_and_keeps_what_was_used_last():
    ws = Workspace(max_bytes=1000)
    f64, f32 = np.dtype(np.float64), np.dtype(np.float32)
    old = np.empty(50, dtype=f64)  # 400 bytes
    ws.give(old)
    ws.give(np.empty(100, dtype=f32))  # 400 bytes: 800 kept
    ws.give(np.empty(60, dtype=f32))  # 240 bytes: over 1000, the least recently used shape goes
    assert ws._bytes == 640
    assert ws.take((50,), f64) is not old  # released: a new array
    kept = ws.take((100,), f32)
    assert ws._bytes == 240 and kept.shape == (100,) and kept.dtype == f32
    ws.give(np.empty(1000, dtype=f64))  # larger than the whole budget: not kept
    assert ws._bytes == 240


@pytest.mark.parametrize("dtype", [Dtype.FLOAT32, Dtype.FLOAT64])
def test_fd_gradient_does_not_depend_on_batching(dtype):
    """The recycled batches of fd_gradient give the same estimates, bit for bit, whatever the
    batch size (one row per batch, a few rows, everything at once)."""
    model = model_of(ROOT / "cases" / "softmax-regression.toml")
    ref = fd_gradient(model, dtype=dtype, scheme="central4", step=1e-3, max_batch_elements=10**9)
    for budget in (1, 37, 1000):
        got = fd_gradient(model, dtype=dtype, scheme="central4", step=1e-3, max_batch_elements=budget)
        for k in ref:
            _same_bits(got[k], ref[k])


@pytest.mark.parametrize("path", [p for p in CASES if p.stem in ("gradient-checking-3layer", "softmax-regression",
                                                                  "layer-norm", "kinks-relu-l1", "rosenbrock-10d")],
                         ids=lambda p: p.stem)
@pytest.mark.parametrize("dtype", [Dtype.FLOAT32, Dtype.FLOAT64])
def test_fd_gradients_stacks_steps_without_changing_a_bit(path, dtype):
    """fd_gradients (all steps of a sweep in shared batches) gives, per step, fd_gradient's estimate
    bit for bit, also for chosen entries and for a chunk bound that splits the steps."""
    from verigrad.fd import fd_gradients

    model = model_of(path)
    steps = [10.0 ** -e for e in (1, 2.5, 4, 6, 9)]
    for scheme in ("central", "forward", "central6"):
        many = fd_gradients(model, dtype=dtype, scheme=scheme, steps=steps)
        split = fd_gradients(model, dtype=dtype, scheme=scheme, steps=steps, max_batch_elements=53)
        assert len(many) == len(split) == len(steps)
        for h, got, got_small in zip(steps, many, split):
            one = fd_gradient(model, dtype=dtype, scheme=scheme, step=h)
            for k in one:
                _same_bits(got[k], one[k])
                _same_bits(got_small[k], one[k])
    first = next(iter(model.gradient))
    chosen = {first: np.array([0, model.leaves[first].size - 1])}
    for h, got in zip(steps, fd_gradients(model, dtype=dtype, scheme="central", steps=steps, entries=chosen)):
        ref = fd_gradient(model, dtype=dtype, scheme="central", step=h, entries=chosen)
        for k in ref:
            _same_bits(got[k], ref[k])


def test_fd_gradients_matches_a_plain_loop_of_loss_calls(tmp_path):
    """An independent reference: central differences of f(w) = sum(w**3) / 3 by hand, in float32."""
    from verigrad.fd import fd_gradients

    model = write_case(tmp_path, "sum(w**3) / 3", "w = { value = [0.5, -1.25, 2.0, 3.0] }")
    w = np.array([0.5, -1.25, 2.0, 3.0], dtype=np.float32)
    steps = [1e-1, 1e-2, 1e-3]
    for h, got in zip(steps, fd_gradients(model, dtype=Dtype.FLOAT32, scheme="central", steps=steps)):
        f = lambda v: np.float32(np.sum(v ** np.float32(3)) / np.float32(3))
        for i in range(w.size):
            hi = np.float32(h * max(1.0, abs(float(w[i]))))
            up, down = w.copy(), w.copy()
            up[i] += hi
            down[i] -= hi
            want = (np.float32(0.5) * f(up) + np.float32(-0.5) * f(down)) / hi
            # the same sum, rounded the same way: within a few float32 ulps of the hand loop
            assert abs(float(got["w"][i]) - float(want)) <= 8 * np.spacing(np.float32(abs(want)))
            # and the exact central difference of a cubic, w^2 + h^2/3, up to round-off (|f| <= 12.6)
            exact = float(w[i]) ** 2 + float(hi) ** 2 / 3
            assert abs(float(got["w"][i]) - exact) <= 4 * 2.0 ** -24 * 12.6 / float(hi)
