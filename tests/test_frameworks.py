"""PyTorch and JAX candidates (docs/frameworks.md): the real frameworks, in the worker process.

Each test skips when its framework cannot be found; the framework is never imported in the
test process itself (the candidate worker is forked from it, and JAX warns that forking a
process that has started JAX deadlocks).  Expected values come from closed forms in numpy.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from verigrad.casefile.loader import load_case
from verigrad.errors import CaseError
from verigrad.runner.case import run_case
from verigrad.spec import CandidateKind

CASES = Path(__file__).resolve().parent.parent / "cases" / "frameworks"
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_JAX = importlib.util.find_spec("jax") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install 'verigrad[torch]')")
needs_jax = pytest.mark.skipif(not HAS_JAX, reason="jax is not installed (pip install 'verigrad[jax]')")


def _by(rep):
    assert not rep.error, rep.error
    return {(r.candidate, r.dtype): r for r in rep.results if r.kind == "code"}


def _logistic_gradient(point) -> np.ndarray:
    """-X^T (y * sigmoid(-y X w)) / n in float64 (the closed form of the torch case's gradient)."""
    X, y, w = (np.asarray(point[k], np.float64) for k in ("X", "y", "w"))
    z = -y * (X @ w)
    return -(X.T @ (y / (1 + np.exp(-z)))) / X.shape[0]


@pytest.fixture(scope="module")
def torch_report():
    return run_case(CASES / "torch-logistic-softplus.toml")


@needs_torch
def test_torch_case_expectations_and_values(torch_report):
    by = _by(torch_report)
    assert all(r.met for r in by.values()), [(k, r.verdict, r.message) for k, r in by.items() if not r.met]
    for dt in ("float32", "float64"):
        for name in ("autograd-custom-softplus", "hand-written-torch", "function-whole-loss"):
            r = by[(name, dt)]
            assert r.verdict == "pass" and r.grade.to_dict()["returned_dtype"] == dt
        assert by[("softplus-backward-sign-slip", dt)].verdict == "fail"
        assert by[("function-forgot-mean", dt)].verdict == "fail"
    # the gradient autograd returned through the custom backward is the closed form, to float64 rounding
    truth = torch_report.truths["float64"]
    want = _logistic_gradient(truth.point)
    got = by[("autograd-custom-softplus", "float64")].value["w"]
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-16)
    # the whole-loss Function that forgot 1/n is diagnosed as the gradient scaled by n = 24
    diag = by[("function-forgot-mean", "float64")].grade.to_dict()["diagnosis"]
    assert diag and diag[0]["factor"] == pytest.approx(24.0)
    # the sign slip in the custom op's backward: sigmoid(-z) returned, entry by entry
    X, y, w = (np.asarray(truth.point[k], np.float64) for k in ("X", "y", "w"))
    z = -y * (X @ w)
    slip = -(X.T @ (y / (1 + np.exp(z)))) / X.shape[0]
    np.testing.assert_allclose(by[("softplus-backward-sign-slip", "float64")].value["w"], slip, rtol=1e-13)


def _write(tmp_path: Path, module: str, candidates: str, *, symbols: str = 'w = { value = [0.5, -1.25, 2.0] }',
           loss: str = "sum(w**3)") -> Path:
    (tmp_path / "impl.py").write_text(textwrap.dedent(module))
    p = tmp_path / "c.toml"
    p.write_text(f'name = "fw"\nloss = "{loss}"\n[symbols]\n{symbols}\n{textwrap.dedent(candidates)}\n'
                 '[check]\ndtypes = ["float32", "float64"]\nclassic = false\n')
    return p


TORCH_MODULE = '''
import torch

def cube(w):
    return (w ** 3).sum()

def cube_upcast(w):
    return (w.double() ** 3).sum()     # the forward runs in float64 whatever it is given

def grad_upcast(w):
    return {"w": 3 * w.double() ** 2}   # float64 out for float32 in

def grad(w):
    return [3 * w ** 2]

def vector(w):
    return w ** 3                        # not a scalar loss

class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        return (w ** 3).sum()

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        return g * 3 * w ** 2
'''


@needs_torch
def test_torch_kinds_dtypes_and_upcasts(tmp_path):
    p = _write(tmp_path, TORCH_MODULE, '''
        [[candidate]]
        name = "autograd"
        kind = "torch-autograd"
        code = "impl.py:cube"
        [[candidate]]
        name = "autograd-upcast"
        kind = "torch-autograd"
        code = "impl.py:cube_upcast"
        [[candidate]]
        name = "grad-upcast"
        kind = "torch"
        code = "impl.py:grad_upcast"
        [[candidate]]
        name = "grad-list"
        kind = "torch"
        code = "impl.py:grad"
        [[candidate]]
        name = "not-scalar"
        kind = "torch-autograd"
        code = "impl.py:vector"
        [[candidate]]
        name = "function-as-torch"
        kind = "torch"
        code = "impl.py:Cube"
        [[candidate]]
        name = "function"
        kind = "torch-autograd"
        code = "impl.py:Cube"
    ''')
    by = _by(run_case(p))
    want = 3 * np.array([0.5, -1.25, 2.0]) ** 2  # exact in float32 too
    for dt in ("float32", "float64"):
        for name in ("autograd", "grad-list", "function"):
            assert by[(name, dt)].verdict == "pass", by[(name, dt)].message
            assert by[(name, dt)].value["w"].dtype == np.dtype(dt)
            np.testing.assert_array_equal(by[(name, dt)].value["w"], want.astype(dt))
        assert by[("not-scalar", dt)].verdict == "error"
        assert "torch-autograd needs the scalar loss" in by[("not-scalar", dt)].message
        assert by[("function-as-torch", dt)].verdict == "error"
        assert 'set kind = "torch-autograd"' in by[("function-as-torch", dt)].message
    # a float64 result for float32 inputs is an upcast: float32 was not exercised
    assert by[("grad-upcast", "float32")].verdict == "not exercised"
    assert by[("autograd-upcast", "float32")].verdict == "not exercised"
    assert by[("autograd-upcast", "float64")].verdict == "pass"


@needs_torch
def test_torch_time_limit_counts_the_call_not_the_import(tmp_path):
    module = TORCH_MODULE + """
import time

def slow(w):
    time.sleep(60)
    return (w ** 3).sum()
"""
    p = _write(tmp_path, module, '''
        [[candidate]]
        name = "autograd"
        kind = "torch-autograd"
        code = "impl.py:cube"
        [[candidate]]
        name = "slow"
        kind = "torch-autograd"
        code = "impl.py:slow"
        expect = "fail"
    ''')
    # `import torch` in a fresh worker takes longer than 0.3 s; it is not the candidate's time
    p.write_text(p.read_text() + "[limits]\ncandidate_seconds = 0.3\n")
    by = _by(run_case(p, dtypes=None))
    assert by[("autograd", "float64")].verdict == "pass", by[("autograd", "float64")].message
    slow = by[("slow", "float64")]
    assert slow.verdict == "error" and "did not return within 0.3 s (killed)" in slow.message


@needs_torch
def test_torch_device_that_is_not_here(tmp_path):
    p = _write(tmp_path, TORCH_MODULE, '''
        [[candidate]]
        name = "on-a-gpu"
        kind = "torch-autograd"
        device = "cuda:7"
        code = "impl.py:cube"
    ''')
    r = _by(run_case(p))[("on-a-gpu", "float64")]
    if r.verdict != "error":
        pytest.skip("this machine has eight CUDA devices")
    assert "device='cuda:7' is not available on this machine" in r.message and "cpu" in r.message


JAX_MODULE = '''
import jax
import jax.numpy as jnp

@jax.custom_vjp
def cube(w):
    return (w ** 3).sum()

def _fwd(w):
    return cube(w), w

def _bwd(w, g):
    return (g * 2 * w ** 2,)    # BUG: 2 instead of 3

cube.defvjp(_fwd, _bwd)

def forward(w):
    return cube(w)

def plain(w):
    return (w ** 3).sum()

def grad(w):
    return {"w": 3 * w ** 2}
'''


@needs_jax
def test_jax_custom_vjp_bug_and_x64(tmp_path):
    p = _write(tmp_path, JAX_MODULE, '''
        [[candidate]]
        name = "custom-vjp"
        kind = "jax-grad"
        code = "impl.py:forward"
        expect = "fail"
        [[candidate]]
        name = "plain"
        kind = "jax-grad"
        code = "impl.py:plain"
        [[candidate]]
        name = "hand"
        kind = "jax"
        code = "impl.py:grad"
    ''')
    by = _by(run_case(p))
    w = np.array([0.5, -1.25, 2.0])
    for dt in ("float32", "float64"):
        for name in ("plain", "hand"):
            r = by[(name, dt)]
            assert r.verdict == "pass" and r.value["w"].dtype == np.dtype(dt)  # float64 really ran in float64
            np.testing.assert_array_equal(r.value["w"], (3 * w ** 2).astype(dt))
        bad = by[("custom-vjp", dt)]
        assert bad.verdict == "fail" and bad.met
        np.testing.assert_array_equal(bad.value["w"], (2 * w ** 2).astype(dt))
        assert bad.grade.to_dict()["diagnosis"][0]["factor"] == pytest.approx(2 / 3)


@needs_jax
def test_jax_case_expectations():
    by = _by(run_case(CASES / "jax-logsumexp-custom-vjp.toml"))
    assert all(r.met for r in by.values()), [(k, r.verdict, r.message) for k, r in by.items() if not r.met]
    assert by[("grad-custom-vjp", "float64")].verdict == "pass"
    assert by[("custom-vjp-forgot-normalisation", "float32")].verdict == "fail"
    assert "missing the gradient of" in by[("hand-written-forgot-labels", "float64")].message


def test_missing_framework_is_skipped_not_failed(monkeypatch, tmp_path):
    # the worker is forked from this process: with None in sys.modules, `import torch` fails there
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "verigrad.integrations.torch", raising=False)
    rep = run_case(CASES / "torch-logistic-softplus.toml")
    assert not rep.error and rep.ok
    code = [r for r in rep.results if r.kind == "code"]
    assert len(code) == 10 and all(r.verdict == "skipped" and r.met is None for r in code)
    assert 'torch is not installed: pip install "verigrad[torch]"' in code[0].message
    from verigrad.report.terminal import case_details, lines_of

    text = "\n".join(lines_of(case_details(rep)))
    assert "skipped 5 candidates" in text and 'pip install "verigrad[torch]"' in text
    # the JSON says so too, and its schema knows the verdict (met is null for it, and only for it)
    import json
    from importlib.resources import files

    import jsonschema

    from verigrad.report.runjson import run_document
    from verigrad.runner.records import RunReport

    doc = json.loads(json.dumps(run_document(RunReport((rep,), 0.0), version="test")))
    schema = json.loads(files("verigrad.schemas").joinpath("run.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert doc["summary"]["ok"] and doc["summary"]["informational"] == 10
    doc["results"][0]["verdict"] = "pass"
    with pytest.raises(jsonschema.ValidationError, match="None is not of type 'boolean'"):
        jsonschema.Draft202012Validator(schema).validate(doc)


@pytest.mark.parametrize("extra, message", [
    ('kind = "pytorch"', "kind='pytorch' is not a candidate kind"),
    ('kind = "torch-autograd"\ndevice = "cuda 0"', "is not a device name"),
    ('device = "cpu"', "device='cpu' is for torch and JAX candidates"),
    ("kind = 3", "expected a string"),
])
def test_kind_and_device_are_validated(tmp_path, extra, message):
    p = _write(tmp_path, "def g(w):\n    return {'w': 3 * w ** 2}\n",
               f'[[candidate]]\nname = "c"\ncode = "impl.py:g"\n{extra}\n')
    with pytest.raises(CaseError, match=r"\[\[candidate\]\] c"):
        load_case(p)
    with pytest.raises(CaseError) as info:
        load_case(p)
    assert message in str(info.value)


def test_kinds_parse(tmp_path):
    p = _write(tmp_path, "", '[[candidate]]\nname = "c"\ncode = "impl.py:g"\nkind = "jax-grad"\ndevice = "gpu:1"\n')
    cand = load_case(p).candidates[0]
    assert cand.kind is CandidateKind.JAX_GRAD and cand.device == "gpu:1" and cand.kind.framework == "jax"
