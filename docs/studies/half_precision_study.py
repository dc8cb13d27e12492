#!/usr/bin/env python
"""The study of ``docs/half-precision.md``: the peers' default gradient checks in float16 and
bfloat16, and verigrad's verdicts on the same gradients.

Usage::

    python docs/studies/half_precision_study.py            # print the tables, write the JSON
    python docs/studies/half_precision_study.py --no-real  # simulation only (no torch / jax calls)

The loss is ``cases/half-precision-logistic.toml`` (16 x 4 logistic regression) at its point
rounded to each dtype; its forward pass and gradients are the case's own numpy code
(``cases/impl/half_precision_logistic.py``). Each peer's default check is *simulated* with that
numpy code in the dtype under test, following the peer's formula:

* PyTorch ``gradcheck``: central differences at the absolute step eps = 1e-6 per entry, the
  perturbed entry rounded to the dtype (the tensor keeps its dtype), ``(f+ - f-) / (2 eps)`` in the
  dtype; pass when ``|a - n| <= atol + rtol |n|`` for every entry, atol = 1e-5, rtol = 1e-3.
* JAX ``check_grads(f, args, order=1, modes=("fwd",))``: one tangent ``v`` per argument from
  ``np.random.RandomState(0).randn`` in the dtype, ``(f(x + eps v) - f(x - eps v)) * (0.5 / eps)``
  with eps = 1e-4, every operation in the dtype; pass when ``|a - n| <= atol + rtol |n|`` with JAX's
  ``default_gradient_tolerance``: 1e-2 (float16), 1e-1 (bfloat16), 2e-3 (float32).
* SciPy ``check_grad``: forward differences at the absolute step 2**-26 = 1.49e-8 per entry
  (``approx_fprime``), the node rounded to the dtype by the user's function, divided by the step;
  ``check_grad`` returns ``||a - n||_2``, judged like SciPy's own test: ``< 1.5e-7``.

Where PyTorch and JAX are installed, the real ``torch.autograd.gradcheck`` and
``jax.test_util.check_grads`` are also called (on the loss written in torch / jax.numpy, their own
autodiff as the gradient) and their numerical derivatives are recorded next to the simulation's.
Every other number comes from verigrad's public machinery: ``run_case`` (verdicts, errors,
tolerances), ``certify`` (the exact gradient at the dtype's point).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import warnings
from pathlib import Path

import numpy as np

from verigrad.casefile.loader import load_case, point_in_dtype
from verigrad.engine.model import compile_case
from verigrad.engine.truth import certify
from verigrad.runner.case import run_case
from verigrad.spec import Dtype

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "cases" / "half-precision-logistic.toml"
IMPL = ROOT / "cases" / "impl" / "half_precision_logistic.py"
OUT = Path(__file__).resolve().parent / "tables" / "half-precision.json"

DTYPES = (Dtype.FLOAT16, Dtype.BFLOAT16, Dtype.FLOAT32)
CANDIDATES = {"correct": "backward", "sum-not-mean": "backward_sum_not_mean",
              "residual-sign-flipped": "backward_residual_sign"}
TORCH = {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3}
JAX_EPS = 1e-4
JAX_TOL = {"float16": 1e-2, "bfloat16": 1e-1, "float32": 2e-3, "float64": 1e-5}
SCIPY = {"eps": 2.0 ** -26, "threshold": 1.5e-7}


def _impl():
    spec = importlib.util.spec_from_file_location("half_precision_logistic", IMPL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _flat(g: dict) -> np.ndarray:
    """Gradient dict {w, b} as one float64 vector (exact: every dtype embeds in float64)."""
    return np.concatenate([np.asarray(g["w"]).astype(np.float64).ravel(), np.asarray(g["b"]).astype(np.float64).ravel()])


def _loss(mod, p: dict, w, b) -> np.ndarray:
    return np.asarray(mod.forward(p["X"], p["y"], w, b))


def _coordinate_differences(mod, p: dict, dt: Dtype, eps: float, central: bool) -> tuple[np.ndarray, int]:
    """Per-entry differences of the forward pass in ``dt`` at the absolute step eps (PyTorch: central,
    SciPy: forward); returns the derivatives (float64 view) and how many nodes equal the point."""
    T = dt.numpy
    w, b = p["w"], p["b"]
    out, stuck = [], 0
    base = _loss(mod, p, w, b)
    for name, i in [("w", k) for k in range(w.size)] + [("b", None)]:
        def moved(sign):
            ww, bb = w.copy(), b.copy()
            if name == "w":
                ww[i] = (ww[i].astype(np.float64) + sign * eps).astype(T)  # the tensor keeps its dtype
            else:
                bb = np.asarray(bb.astype(np.float64) + sign * eps).astype(T)
            return ww, bb
        wp, bp = moved(+1)
        stuck += int(np.array_equal(wp, w) and np.array_equal(bp, b))
        fp = _loss(mod, p, wp, bp)
        if central:
            fm = _loss(mod, p, *moved(-1))
            d = (fp - fm) / T.type(2 * eps)  # in the dtype, as torch divides a tensor by 2 eps
        else:
            d = np.float64(fp.astype(np.float64) - base.astype(np.float64)) / eps  # approx_fprime: float64
        out.append(float(np.asarray(d).astype(np.float64)))
    return np.array(out), stuck


def _jax_jvp(mod, p: dict, dt: Dtype, eps: float = JAX_EPS) -> tuple[float, np.ndarray]:
    """JAX's numerical JVP along its tangent, every operation in ``dt``; and the tangent (float64)."""
    T = dt.numpy
    rng = np.random.RandomState(0)
    vw = np.asarray(rng.randn(*p["w"].shape), T)
    vb = np.asarray(rng.randn(*p["b"].shape), T)
    e = T.type(eps)
    dw, db = (vw * e).astype(T), (vb * e).astype(T)
    fp = _loss(mod, p, (p["w"] + dw).astype(T), (p["b"] + db).astype(T))
    fm = _loss(mod, p, (p["w"] - dw).astype(T), (p["b"] - db).astype(T))
    n = ((fp - fm) * T.type(0.5 / eps)).astype(T)
    return float(np.asarray(n).astype(np.float64)), np.concatenate([vw.astype(np.float64), [float(vb.astype(np.float64))]])


def peer_numbers(dt: Dtype) -> dict:
    """The three peers' numerical derivatives and verdicts on the case's candidates in ``dt``."""
    mod = _impl()
    model = compile_case(load_case(CASE))
    p = point_in_dtype(model.point, dt)
    truth = certify(model, p, dt, digits=20).as_float64()
    exact = np.concatenate([truth["w"].ravel(), truth["b"].ravel()])
    cands = {k: _flat(getattr(mod, f)(p["X"], p["y"], p["w"], p["b"])) for k, f in CANDIDATES.items()}
    torch_n, torch_stuck = _coordinate_differences(mod, p, dt, TORCH["eps"], central=True)
    scipy_n, scipy_stuck = _coordinate_differences(mod, p, dt, SCIPY["eps"], central=False)
    jax_n, v = _jax_jvp(mod, p, dt)
    tol = JAX_TOL[dt.value]
    # the same formulas with the step the dtype needs (eps_p^(1/3), verigrad's central default) but the
    # peers' tolerances: the finite difference is now an estimate, and the tolerances are the problem
    h3 = dt.eps ** (1 / 3)
    tuned_n, _ = _coordinate_differences(mod, p, dt, h3, central=True)
    tuned_jax, _ = _jax_jvp(mod, p, dt, eps=h3)
    rec = {"dtype": dt.value, "exact_gradient": exact.tolist(),
           "torch": {"numerical": torch_n.tolist(), "nodes_equal_to_point": torch_stuck, "entries": exact.size,
                     "error_of_numerical": float(np.linalg.norm(torch_n - exact) / np.linalg.norm(exact))},
           "jax": {"numerical_jvp": jax_n, "exact_jvp": float(exact @ v), "tolerance": tol},
           "scipy": {"numerical": scipy_n.tolist(), "nodes_equal_to_point": scipy_stuck, "entries": exact.size},
           "candidates": {}}
    for name, a in cands.items():
        t_ok = bool(np.all(np.abs(a - torch_n) <= TORCH["atol"] + TORCH["rtol"] * np.abs(torch_n)))
        ja = float(a @ v)
        j_ok = abs(ja - jax_n) <= tol + tol * abs(jax_n)
        s_r = float(np.linalg.norm(a - scipy_n))
        rec["candidates"][name] = {
            "torch_pass": t_ok,
            "torch_ratio": float(np.max(np.abs(a - torch_n) / (TORCH["atol"] + TORCH["rtol"] * np.abs(torch_n)))),
            "jax_pass": bool(j_ok), "jax_jvp": ja, "jax_ratio": abs(ja - jax_n) / (tol + tol * abs(jax_n)),
            "scipy_pass": s_r < SCIPY["threshold"], "scipy_norm": s_r, "scipy_ratio": s_r / SCIPY["threshold"],
            "torch_tuned_pass": bool(np.all(np.abs(a - tuned_n) <= TORCH["atol"] + TORCH["rtol"] * np.abs(tuned_n))),
            "torch_tuned_ratio": float(np.max(np.abs(a - tuned_n) / (TORCH["atol"] + TORCH["rtol"] * np.abs(tuned_n)))),
            "jax_tuned_pass": bool(abs(ja - tuned_jax) <= tol + tol * abs(tuned_jax)),
            "jax_tuned_ratio": abs(ja - tuned_jax) / (tol + tol * abs(tuned_jax))}
    rec["tuned"] = {"step": h3, "torch_error_of_numerical": float(np.linalg.norm(tuned_n - exact) / np.linalg.norm(exact)),
                    "jax_numerical_jvp": tuned_jax}
    return rec


def verigrad_numbers() -> dict:
    """verigrad's verdicts on the same candidates (``run_case`` of the shipped case)."""
    names = {"half-precision-analytic": "correct", "sum-not-mean": "sum-not-mean",
             "residual-sign-flipped": "residual-sign-flipped"}
    out: dict = {}
    for r in run_case(CASE).results:
        if r.kind == "code" and r.candidate in names:
            g = r.grade
            out.setdefault(r.dtype, {})[names[r.candidate]] = {
                "verdict": r.verdict, "max_ulps": g.errors.max_ulps, "normwise_relative": g.errors.normwise_relative,
                "tolerance_w": g.variables[0].tolerance}
        elif r.kind == "fd":
            out.setdefault(r.dtype, {})[f"fd {r.scheme}"] = {
                "verdict": r.verdict, "step": r.step, "normwise_relative": r.grade.errors.normwise_relative}
    return out


def real_calls(dt: Dtype, libraries: tuple[str, ...] = ("torch", "jax")) -> dict:
    """The real torch.autograd.gradcheck and jax check_grads (each library's autodiff as the gradient)."""
    out: dict = {}
    model = compile_case(load_case(CASE))
    p = point_in_dtype(model.point, dt)
    try:
        if "torch" not in libraries:
            raise ImportError
        import torch
    except ImportError:  # pragma: no cover - optional
        out["torch"] = None
    else:
        tdt = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dt.value]
        X, y, w, b = (torch.tensor(p[k].astype(np.float32)).to(tdt) for k in "Xywb")
        w.requires_grad_(True)
        b.requires_grad_(True)

        def f(w, b):
            z = X @ w + b
            return torch.mean(torch.nn.functional.softplus(z) - y * z)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ok, msg = bool(torch.autograd.gradcheck(f, (w, b), raise_exception=True)), ""
            except Exception as exc:  # noqa: BLE001  GradcheckError: record its text
                ok, msg = False, str(exc)
        out["torch"] = {"pass": ok, "numerical_all_zero": "numerical:tensor([[0.],\n        [0.]" in msg,
                        "message": msg.splitlines()[0] if msg else "",
                        "warnings": sorted({str(c.message).strip() for c in caught})}
    try:
        if "jax" not in libraries:
            raise ImportError
        import jax
        import jax.numpy as jnp
        from jax._src.public_test_util import numerical_jvp
        from jax.test_util import check_grads
    except ImportError:  # pragma: no cover - optional
        out["jax"] = None
    else:
        jdt = {"float16": jnp.float16, "bfloat16": jnp.bfloat16, "float32": jnp.float32}[dt.value]
        X, y = jnp.asarray(p["X"], jdt), jnp.asarray(p["y"], jdt)

        def g(w, b):
            z = X @ w + b
            return jnp.mean(jax.nn.softplus(z) - y * z)

        w, b = np.asarray(p["w"]), np.asarray(p["b"])
        try:
            check_grads(g, (w, b), order=1, modes=("fwd",))
            ok, msg = True, ""
        except AssertionError as exc:
            ok, msg = False, " ".join(str(exc).split())
        rng = np.random.RandomState(0)
        t = (np.asarray(rng.randn(*w.shape), w.dtype), np.asarray(rng.randn(*np.shape(b)), b.dtype))
        out["jax"] = {"pass": ok, "numerical_jvp": float(np.asarray(numerical_jvp(g, (w, b), t), np.float64)),
                      "message": msg[:200]}
    return out


def run(*, real: bool = True) -> dict:
    res = {"peers": {dt.value: peer_numbers(dt) for dt in DTYPES}, "verigrad": verigrad_numbers()}
    if real:
        res["real"] = {dt.value: real_calls(dt) for dt in DTYPES}
    return res


def _verdict(ok: bool, correct: bool) -> str:
    if correct:
        return "pass" if ok else "**false alarm**"
    return "**missed bug**" if ok else "caught"


def tables(res: dict) -> str:
    """The markdown tables of docs/half-precision.md."""
    lines = ["| dtype | gradient | PyTorch `gradcheck` | JAX `check_grads` | SciPy `check_grad` | verigrad |",
             "| :--- | :--- | ---: | ---: | ---: | ---: |"]
    for dt in (d.value for d in DTYPES):
        pe, vg = res["peers"][dt], res["verigrad"][dt]
        for name in CANDIDATES:
            c, v = pe["candidates"][name], vg[name]
            ok = name == "correct"
            vv = v["verdict"]
            lines.append(f"| {dt} | {name} | {_verdict(c['torch_pass'], ok)} ({c['torch_ratio']:.1e}) | "
                         f"{_verdict(c['jax_pass'], ok)} ({c['jax_ratio']:.1e}) | "
                         f"{_verdict(c['scipy_pass'], ok)} ({c['scipy_ratio']:.1e}) | "
                         f"{vv} ({v['max_ulps']:.3g} ulps) |")
    nums = ["| dtype | entries | PyTorch: nodes x ± 1e-6 equal to x | PyTorch numerical ‖n − g‖/‖g‖ | "
            "JAX numerical JVP | exact JVP | SciPy: nodes x + 1.5e-8 equal to x |",
            "| :--- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for dt in (d.value for d in DTYPES):
        pe = res["peers"][dt]
        nums.append(f"| {dt} | {pe['torch']['entries']} | {pe['torch']['nodes_equal_to_point']} | "
                    f"{pe['torch']['error_of_numerical']:.3g} | {pe['jax']['numerical_jvp']:.6g} | "
                    f"{pe['jax']['exact_jvp']:.6g} | {pe['scipy']['nodes_equal_to_point']} |")
    tuned = ["| dtype | step eps_p^(1/3) | gradient | PyTorch rule | JAX rule | PyTorch numerical ‖n − g‖/‖g‖ |",
             "| :--- | ---: | :--- | ---: | ---: | ---: |"]
    for dt in (d.value for d in DTYPES):
        pe = res["peers"][dt]
        for name in CANDIDATES:
            c, ok = pe["candidates"][name], name == "correct"
            tuned.append(f"| {dt} | {pe['tuned']['step']:.3g} | {name} | {_verdict(c['torch_tuned_pass'], ok)} "
                         f"({c['torch_tuned_ratio']:.1e}) | {_verdict(c['jax_tuned_pass'], ok)} "
                         f"({c['jax_tuned_ratio']:.1e}) | {pe['tuned']['torch_error_of_numerical']:.2g} |")
    return "\n".join(lines) + "\n\n" + "\n".join(nums) + "\n\n" + "\n".join(tuned) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-real", action="store_true", help="skip the real torch / jax calls")
    args = ap.parse_args(argv)
    res = run(real=not args.no_real)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2, default=lambda o: None if isinstance(o, float) and math.isnan(o)
                              else str(o)) + "\n", encoding="utf-8")
    print(tables(res))  # a docs script, not the package: printing is its output
    if not args.no_real:
        print(json.dumps(res["real"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
