"""Hostile inputs for the constructs, dtypes, candidate kinds and executors added last.

Each test states what a user could write, and asserts a clear message (and the documented exit
code) or a value that agrees with an independent reference (PyTorch in float64, mpmath).  The
case files and candidate modules are in tests/data/hostile/.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import mpmath
import numpy as np
import pytest

from verigrad.cli.main import main

DATA = Path(__file__).parent / "data" / "hostile"

SYMBOLS = """x = { shape = [2, 3, 6, 6], init = "normal" }
w = { shape = [4, 3, 3, 3], init = "normal" }
xg = { shape = [1, 4, 5, 7], init = "normal" }
wg = { shape = [6, 2, 2, 3], init = "normal" }
v = { shape = [7], init = "normal" }
A = { shape = [3, 4], init = "normal" }
long = { shape = [200000], init = "normal" }
y = { constant = true, dtype = "int64", value = [0, 2, 3] }"""


def _case(tmp_path: Path, loss: str, symbols: str = SYMBOLS, extra: str = "") -> Path:
    p = tmp_path / "c.toml"
    p.write_text(f'name = "t"\nloss = "{loss}"\n[symbols]\n{symbols}\n{extra}\n')
    return p


# -- sizes given in an expression are checked before numpy allocates anything -----------------------

@pytest.mark.parametrize("loss, message", [
    # was: "cannot reshape (13835058055282163709,) ... must have -4611686018427387907 entries" (int64 overflow)
    ("sum(one_hot(y, 4611686018427387903))",
     "one_hot(y, 4611686018427387903) would have shape [3, 4611686018427387903]"),
    # was: "cannot build ...: Maximum allowed dimension exceeded" (numpy's words)
    ("sum(pad(A, 4611686018427387903))", "pad() would build an array of shape [9223372036854775809, "),
    ("sum(conv2d(x, w, padding=4611686018427387903))", "conv2d() would build an array of shape"),
    # was: a 40000 x 200003 int64 table (64 GB) requested from numpy before the size check
    ("sum(pad(A, 100000))", "pad() would build an array of shape [200003, 200004] = 40001400012 entries"),
    ("sum(cumsum(long))", "cumsum() would build an array of shape [200000, 200000]"),
    ("sum(conv2d(x, w, padding=3000))",
     "conv2d() would build an array of shape [6004, 6004, 3, 3] = 324432144 entries"),
])
def test_sizes_from_options_are_limit_errors(tmp_path, capsys, loss, message):
    assert main(["truth", str(_case(tmp_path, loss)), "--dtype", "float64"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "over the limit of 10000000" in err and "max_intermediate_elements" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("loss, message", [
    ("sum(einsum('ij,jk->ikk', A, A.T))", "einsum(): output subscript 'k' is repeated"),
    ("sum(einsum('ij,jk', A))", "subscripts 'ij,jk' name 2 operand(s) but 1 were given"),
    ("sum(einsum('i..j', A))", "contains '.'"),
    ("sum(conv2d(x, w, groups=2))", "groups=2 must divide the input channels (3)"),
    ("sum(conv2d(x, w, stride=0))", "'stride' must be at least 1, got 0"),
    ("sum(conv2d(x, w, dilation=3))", "the kernel (extent 7 with dilation 3) is larger than the padded input"),
    ("sum(max_pool2d(v, 2))", "'x' must have 4 dimensions (N, C, H, W) or 3 (C, H, W), got shape (7,)"),
    ("norm(A, ord=2)", "ord=2 is not supported for a matrix norm"),
    ("var(v, ddof=7)", "'ddof' must lie in 0..6 (the reduced axes hold 7 entries), got 7"),
    ("sum(stack([]))", "stack(): 'arrays' is empty"),
    ("sum(one_hot(y, 3))", "'indices' holds 3 at [2], outside [0, 2] for num_classes=3"),
    ("sum(0 < v < 1)", "a chained comparison (a < b < c) is not allowed"),
    ("sum(where(v, v, 0))", "'condition' must be a comparison"),
])
def test_misuse_of_the_new_constructs_names_the_argument(tmp_path, capsys, loss, message):
    assert main(["truth", str(_case(tmp_path, loss)), "--dtype", "float64"]) == 2
    err = capsys.readouterr().err
    assert message in err and "t::loss" in err and "at column" in err


# -- values against PyTorch (float64) ----------------------------------------------------------------

def test_conv_pool_norm_var_agree_with_torch(tmp_path):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    loss = ("sum(sin(conv2d(x, w, stride=2, padding=1, dilation=2))) "
            "+ sum(tanh(conv2d(xg, wg, stride=(2, 1), padding=1, groups=2))) "
            "+ sum(max_pool2d(x, (2, 3), stride=(1, 2))**3) + sum(avg_pool2d(x, 3, stride=2)**2) "
            "+ norm(v, ord=3) + norm(A, ord=-1) + sum(std(A, axis=1, ddof=2)) "
            "+ sum(cumsum(A, axis=0)**3) + sum(roll(A, (1, -5), axis=(0, 1)) * flip(A, axis=1))")
    p = _case(tmp_path, loss, SYMBOLS.replace("long = { shape = [200000]", "long = { shape = [2]"))
    out = tmp_path / "t.json"
    assert main(["truth", str(p), "--dtype", "float64", "--digits", "16", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    t = {k: torch.tensor(np.array(a, dtype=np.float64), requires_grad=True)
         for k, a in doc["point"].items() if k != "y"}
    ref = (torch.sin(F.conv2d(t["x"], t["w"], stride=2, padding=1, dilation=2)).sum()
           + torch.tanh(F.conv2d(t["xg"], t["wg"], stride=(2, 1), padding=1, groups=2)).sum()
           + (F.max_pool2d(t["x"], (2, 3), stride=(1, 2)) ** 3).sum() + (F.avg_pool2d(t["x"], 3, stride=2) ** 2).sum()
           + torch.linalg.vector_norm(t["v"], ord=3) + torch.linalg.matrix_norm(t["A"], ord=-1)
           + torch.std(t["A"], dim=1, correction=2).sum() + (torch.cumsum(t["A"], 0) ** 3).sum()
           + (torch.roll(t["A"], (1, -5), (0, 1)) * torch.flip(t["A"], (1,))).sum())
    ref.backward()
    assert abs(float(doc["loss"]) - ref.item()) <= 1e-12 * abs(ref.item())
    for k, tensor in t.items():
        g = np.array(doc["gradient"][k], dtype=np.float64)
        r = tensor.grad.numpy() if tensor.grad is not None else np.zeros_like(g)  # `long` is unused
        assert np.abs(g - r).max() <= 1e-12 * max(1.0, np.abs(r).max()), k


def test_gammaln_digamma_at_negative_non_integers_agree_with_mpmath(tmp_path):
    p = _case(tmp_path, "sum(gammaln(p)) + sum(digamma(p))", 'p = { value = [-4.5, -0.25, 0.001, 7.75] }')
    out = tmp_path / "t.json"
    assert main(["truth", str(p), "--dtype", "float64", "--digits", "20", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    with mpmath.workdps(40):  # not mp.dps = 40: the global precision would leak into later tests
        xs = [mpmath.mpf(v) for v in (-4.5, -0.25, 0.001, 7.75)]
        loss = sum(mpmath.log(abs(mpmath.gamma(x))) + mpmath.digamma(x) for x in xs)
        grad = [mpmath.digamma(x) + mpmath.polygamma(1, x) for x in xs]
        assert abs(mpmath.mpf(doc["loss"]) - loss) <= mpmath.mpf(10) ** -17 * abs(loss)
        for got, want in zip(doc["gradient"]["p"], grad):
            assert abs(mpmath.mpf(got) - want) <= mpmath.mpf(10) ** -17 * abs(want)


# -- framework and second-order candidates that return the wrong thing -------------------------------

def test_framework_candidates_returning_the_wrong_thing(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    assert main(["run", str(DATA / "fw.toml"), "--no-color", "-v"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    # the type actually returned (was "returned a str" for None and "returned a ndarray" for a str)
    assert "t-none › float64: returned a NoneType; expected a mapping" in out
    assert "t-string › float64: returned a str; expected a mapping" in out
    assert "t-generator › float64: returned a generator;" in out
    # about the user's tensor, not "raised TypeError ... at torch.py:98" (verigrad's own line)
    assert "impl/fw_bad.py:t_sparse: the code returned a torch.sparse_coo tensor of shape [3]" in out
    assert "impl/fw_bad.py:t_meta: the code returned a meta tensor (it has no data)" in out
    assert ("impl/fw_bad.py:ta_not_scalar: the forward returned a tensor of shape [4] and dtype torch.float64; "
            "torch-autograd needs the scalar loss") in out
    assert "impl/fw_bad.py:jg_not_scalar: the forward returned an array of shape [4] and dtype float64" in out
    assert "impl/fw_bad.py:jg_int: the forward returned int; jax-grad needs the scalar loss" in out
    # an error raised by torch's autograd engine about the user's backward: no line of torch/autograd/graph.py
    assert ("impl/fw_bad.py:WrongCount raised RuntimeError: function WrongCountBackward returned an incorrect "
            "number of gradients (expected 2, got 1)") in out
    assert "impl/fw_bad.py:BackwardRaises raised ValueError: backward broke at fw_bad.py:" in out
    assert "torch.py:" not in out and "jax.py:" not in out and "graph.py:" not in out
    assert "10 not met" in out  # ta-ok passes


def test_hessian_diag_returned_flat_says_how_to_return_it(capsys):
    assert main(["run", str(DATA / "second.toml"), "--no-color", "-v"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert ("a hessian_diag candidate returns one array per variable, like a gradient: "
            "{'a': array of shape [2], 'b': array of shape [2]} (got one array of shape [4])") in out
    # diag-ok and diag-lists (plain lists, read as numpy.asarray would; was "a is not a numeric array") pass,
    # the planted hvp and Hessian bugs are caught
    assert "4 expectations met, 1 not met" in out


# -- studies in half precision -------------------------------------------------------------------------

def test_study_step_that_overflows_float16_is_a_usage_error(tmp_path, capsys):
    p = _case(tmp_path, "sum(x**2)", "x = { value = [1e-3, 1.0] }")
    assert main(["study", str(p), "--dtype", "float16", "--steps", "1e5", "--no-color"]) == 2
    err = capsys.readouterr().err
    assert "the step 1e+05" in err and "overflows float16 (largest finite 6.55e+04)" in err


def test_study_with_steps_above_one_runs(tmp_path, capsys):
    # was: flint "prec must be >= 2" (a negative working precision from -log2(h) for h > 1)
    p = _case(tmp_path, "sum(x**2)", "x = { value = [1e-3, 1.0] }")
    assert main(["study", str(p), "--dtype", "float64", "--steps", "1e300", "--no-color"]) == 0
    assert main(["study", str(p), "--dtype", "float32", "--steps", "1e30", "--no-color"]) == 0


# -- executors -------------------------------------------------------------------------------------------

def test_jobs_is_capped_at_the_number_of_cases(monkeypatch, capsys):
    import verigrad.runner.case as rc

    seen = []
    real = rc.case_reports

    def spy(files, dtypes, with_fd, jobs):
        seen.append(jobs)
        return real(files, dtypes, with_fd, jobs)

    monkeypatch.setattr(rc, "case_reports", spy)
    # was: 99999 pool processes forked at once for one case
    main(["run", str(DATA / "second.toml"), "--jobs", "99999", "--no-color", "-q"])
    assert seen == [1]


def test_scheduler_address_of_a_non_dask_server_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("distributed")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]

    def serve():  # an HTTP server: its "HTTP/1.1" read as a Dask frame length is 3 EiB (was: "out of memory")
        for _ in range(4):
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + b"x" * 64)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        code = main(["run", str(DATA / "second.toml"), "--executor", "dask", "--scheduler",
                     f"tcp://127.0.0.1:{port}", "--no-color"])
    finally:
        srv.close()
    err = capsys.readouterr().err
    assert code == 2
    assert "not a Dask scheduler" in err and "out of memory" not in err


# -- studies along entries the loss does not depend on; complex step through gammaln ------------------

@pytest.mark.parametrize("loss", [
    "sum(v**2)",  # was: "ValueError: cannot reshape array of size 1 into shape (30,2)" (A is unused)
    "sum(A[y[1:]]**3)",  # was: KeyError in engine/cone.py (the gather drops row 0, so A[0, 0] does not move)
    "max(A[y[:2], 1:3]) * sum(v)",
])
def test_study_along_an_entry_the_loss_ignores_has_derivative_zero(tmp_path, capsys, loss):
    p = _case(tmp_path, loss, 'v = { shape = [3], init = "normal" }\nA = { shape = [3, 4], init = "normal" }\n'
                              'y = { constant = true, dtype = "int64", value = [0, 2, 1] }')
    assert main(["study", str(p), "--dtype", "float64", "--variable", "A", "--scheme", "central", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "exact derivative   0" in out


def test_complex_step_through_gammaln_at_a_negative_argument_is_refused_cleanly(tmp_path, capsys):
    # was: "TypeError: gammaln has no complex step ..." as a traceback from `run` and `study`
    p = _case(tmp_path, "sum(gammaln(p))", "p = { value = [-2.5, 3.0] }", '[check]\nschemes = ["complex-step"]')
    assert main(["run", str(p), "--no-color", "-v"]) == 0  # scheme rows are informational
    out = " ".join(capsys.readouterr().out.split())
    assert "complex-step is refused: gammaln has no complex step at arguments with real part <= 0" in out
    assert main(["study", str(p), "--dtype", "float64", "--scheme", "complex-step", "--no-color"]) == 2
    assert "use a real scheme such as central" in capsys.readouterr().err


def test_run_with_case_steps_that_overflow_float16_reports_rows(tmp_path, capsys):
    # was: "OverflowError: cannot convert Infinity to integer ratio", a traceback that ended the whole run
    p = _case(tmp_path, "sum(x**2)", "x = { value = [1e-3, 1.0] }",
              '[check]\ndtypes = ["float16", "float64"]\nschemes = ["central"]\nsteps = [1e5]')
    assert main(["run", str(p), "--no-color", "-v"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "central h=1.0e+05 float16 nonfinite" in out
    assert "central h=1.0e+05 float64 pass" in out


def test_a_pass_that_cannot_resolve_the_gradient_says_so(tmp_path):
    """float16: |g| = 2e-7 is subnormal (smallest normal 6.1e-5), so the tolerance (32 x 4 ulps of
    the subnormal spacing 6e-8) is 32 times the gradient: a zeroed gradient passes, and the grade
    must say that the pass says nothing.  float32 resolves it and catches the bug."""
    from verigrad.runner.case import run_case

    (tmp_path / "c.toml").write_text(
        'name = "sub16"\nloss = "sum(x**2)"\n[symbols]\nx = { value = [1e-7, 6e-8] }\n'
        '[[candidate]]\nname = "zero"\ncode = "c.py:zero"\nexpect = "fail"\n'
        '[check]\ndtypes = ["float16", "float32"]\nschemes = []\n')
    (tmp_path / "c.py").write_text("import numpy as np\n\ndef zero(x):\n    return {'x': np.zeros_like(x)}\n")
    by = {r.dtype: r for r in run_case(tmp_path / "c.toml").results}
    assert by["float16"].verdict == "pass"
    assert any("float16 cannot resolve this gradient" in w and "even a zero or sign-flipped" in w
               for w in by["float16"].grade.warnings)
    assert by["float16"].grade.variables[0].detection_threshold >= 1.0
    assert by["float32"].verdict == "fail"
    assert not any("cannot resolve" in w for w in by["float32"].grade.warnings)
