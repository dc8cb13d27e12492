"""verigrad performance benchmarks (issue 2: certified truth; issue 3: finite-difference splits;
issue 16: realistic sizes, 10^3 to 10^6 parameters).

    python benchmarks/run.py                  # full set (about 20 minutes on 2026-12-06; every process
                                              # is capped at 600 s, so at most a few hours)
    python benchmarks/run.py --quick          # reduced set, about a minute (at most a few)
    python benchmarks/run.py --only mlp       # only the measurements whose id contains "mlp"
    python benchmarks/run.py --list           # print the measurement ids and exit
    python benchmarks/run.py --json out.json  # also write every raw number

Every measurement runs in a fresh process: either a worker (``run.py --worker ...``)
that imports verigrad first and only then starts the clock, so process start and
imports are excluded (they are measured on their own by timing
``python -c "import verigrad.engine.model, verigrad.engine.truth, verigrad.engine.fastball"`` in a
subprocess; the fast engine's modules, which ``certify`` imports on first use, are imported
by the workers before their clocks too),
or a ``python -m verigrad ...`` command timed whole, as a user runs it.  Processes
run one after another (never in parallel), so the two cores do not compete.  The
wall time, the CPU time (user + system, the process and every descendant it waited
for) and the peak resident set size of every process come from ``os.wait4``.

Every process has a time limit (``--timeout``, default 600 s; 300 s with
``--quick``) and a memory cap (``--mem-limit``, default 4 GB resident, polled
every 0.2 s): a process that exceeds either is killed with its process group and
its row says "timed out after N s" or "killed at N GB" (a MISS where the row has
a target), never a hang.

Every measured number is printed next to its target with PASS or MISS; a miss
is never hidden.  One number is extrapolated, and its row says so: the plain
numpy loop of 2N central-difference loss calls for a case where 2N calls would
take more than a minute (20 s with ``--quick``) is timed on an evenly spread
subset of coordinates and scaled by the measured time per call.  The exit
status is 0 when the benchmarks ran (misses, time-outs and memory kills
included), 1 when a worker or command crashed.

Case files live in ``benchmarks/cases/`` (regenerate with
``python benchmarks/make_cases.py``; run.py writes them if any is missing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
ROOT = HERE.parent

NET3 = "net3-47.toml"
SOFTMAX = "softmax-500.toml"
LOGISTIC = "logistic-200x1000.toml"
ROSEN = "rosenbrock-1000.toml"

# issue 2: (case file, label, target total seconds, target one-more-evaluation seconds)
TRUTH_TARGETS = [
    (NET3, "3-layer ReLU net, 47 params", 0.5, 0.002),
    (SOFTMAX, "softmax CE, W 10x50, 32 samples (500 params)", 2.0, 0.030),
    (LOGISTIC, "L2 logistic, 200 x 1000 (1001 params)", 10.0, 0.5),
    (ROSEN, "Rosenbrock, 1000 dims", 2.0, 0.020),
]
# issue 3: (case file, label, target whole-sweep seconds, target ratio)
FD_TARGETS = [
    (NET3, "3-layer ReLU net, 47 params", 0.5, 1.5),
    (SOFTMAX, "softmax CE, 500 params", 5.0, 1.5),
    (ROSEN, "Rosenbrock, 1000 dims", 5.0, 1.5),
    (LOGISTIC, "L2 logistic, 200 x 1000", 60.0, 1.5),
]
SCALING = [("rosenbrock-10.toml", 10), ("rosenbrock-100.toml", 100), ("rosenbrock-1000.toml", 1000),
           ("logistic-200x10.toml", 10), ("logistic-200x100.toml", 100), ("logistic-200x1000.toml", 1000)]

K_STEPS = 30

#: the modules every worker imports before its clock starts (the import row times them on their own);
#: the fast engine's modules are imported lazily by the first ``certify`` and belong here
ENGINE_IMPORTS = ("verigrad.engine.model, verigrad.engine.truth, verigrad.engine.fastball, "
                  "verigrad.engine.ballsum")
SCHEME = "central"

# issue 16: realistic sizes, each case with one correct hand-written numpy gradient (cases/impl/)
MLP32 = "mlp-784-32-10.toml"
MLP128 = "mlp-784-128-10.toml"
LOG1K = "logistic-1000x1000.toml"
LOG10K = "logistic-1000x10000.toml"
ROS4 = "rosenbrock-10000.toml"
ROS5 = "rosenbrock-100000.toml"
ROS6 = "rosenbrock-1000000.toml"
CONV = "conv-16x16-3x3.toml"
BIG = [  # (case file, label), in the order of the tables
    (CONV, "conv net 16x16, 3x3 filter, 1980 params"),
    (MLP32, "MLP 784-32-10, batch 64 (25,450 params)"),
    (MLP128, "MLP 784-128-10, batch 64 (101,770 params)"),
    (LOG1K, "L2 logistic 1000 x 1000 (1001 params)"),
    (LOG10K, "L2 logistic 1000 x 10,000 (10,001 params)"),
    (ROS4, "Rosenbrock 10^4"),
    (ROS5, "Rosenbrock 10^5"),
    (ROS6, "Rosenbrock 10^6"),
]
BIG_LABEL = dict(BIG)
PARAMS = {CONV: 1980, MLP32: 25_450, MLP128: 101_770, LOG1K: 1001, LOG10K: 10_001, ROS4: 10**4, ROS5: 10**5,
          ROS6: 10**6}
CERT_RATIO_TARGET = 100.0     # certified truth / one float64 numpy gradient, CPU, for N >= 10^4
CERT_REPEATS = 5              # certify again at this many nearby points: the steady-state figure of the ratio
RUN_RATIO_TARGET = 1.0        # verigrad run (both dtypes) / 2N-call central-difference loop, CPU, N >= 10^4
TARGET_MIN_PARAMS = 10_000
RUN_WALL_TARGETS = {MLP128: 15.0}   # verigrad run both dtypes, one correct candidate, wall seconds
# `verigrad truth CASE` (both dtypes, default digits): (case file, CPU-seconds target, peak-RSS target bytes)
# the Rosenbrock 10^6 row also writes the JSON (every entry as a decimal string), as `--json FILE` does
CLI_TRUTH = [(ROS4, None, None), (MLP32, None, None), (ROS6, 30.0, 1e9)]
CLI_TRUTH_JSON = {ROS6}
# `verigrad study CASE --variable V --index I --dtype float64`: (file, variable, index, CPU s target, RSS target)
# The issue's "MLP 784-128-10 / Rosenbrock 10^6: <= 10 s / <= 2 GB" is read pairwise: the MLP study's time,
# the Rosenbrock 10^6 study's peak memory; the other number of each row is shown without a target.
STUDY = [(ROS4, "x", "0", None, None), (MLP128, "W1", "0,0", 10.0, None), (ROS6, "x", "0", None, 2e9)]
GB = 1e9
# issue 22: one certified Hessian-vector product / one certified gradient, CPU (same point, float64, 24 digits)
HVP_TARGETS = [(NET3, "3-layer ReLU net, 47 params"), (SOFTMAX, "softmax CE, 500 params"),
               (ROSEN, "Rosenbrock, 1000 dims"), (LOGISTIC, "L2 logistic, 200 x 1000"),
               (MLP32, "MLP 784-32-10, batch 64 (25,450 params)")]
HVP_RATIO_TARGET = 4.0


# ---------------------------------------------------------------------------------------------
# plain numpy implementations of the same losses (the "2NK raw calls" baseline)
# ---------------------------------------------------------------------------------------------

def _np_net3(X, Y, W1, b1, W2, b2, W3, b3):
    import numpy as np

    A1 = np.maximum(0, W1 @ X + b1)
    A2 = np.maximum(0, W2 @ A1 + b2)
    A3 = 1 / (1 + np.exp(-(W3 @ A2 + b3)))
    return np.mean(-Y * np.log(A3) - (1 - Y) * np.log(1 - A3))


def _np_softmax(X, Y, W):
    import numpy as np

    Z = X @ W.T
    m = Z.max(axis=1, keepdims=True)
    lse = np.log(np.sum(np.exp(Z - m), axis=1, keepdims=True)) + m
    return np.mean(-np.sum(Y * (Z - lse), axis=1))


def _np_logistic(X, y, lam, w, b):
    import numpy as np

    A = 1 / (1 + np.exp(-(X @ w + b)))
    return np.mean(-y * np.log(A) - (1 - y) * np.log(1 - A)) + lam / 2 * np.sum(w**2)


def _np_rosenbrock(x):
    import numpy as np

    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


RAW_LOSS = {"bench-net3-47": _np_net3, "bench-softmax-500": _np_softmax,
            "bench-logistic-200x10": _np_logistic, "bench-logistic-200x100": _np_logistic,
            "bench-logistic-200x1000": _np_logistic, "bench-rosenbrock-10": _np_rosenbrock,
            "bench-rosenbrock-100": _np_rosenbrock, "bench-rosenbrock-1000": _np_rosenbrock}


# ---------------------------------------------------------------------------------------------
# workers (run in a fresh process; verigrad imported before any clock starts)
# ---------------------------------------------------------------------------------------------

def _other_point(model, point, seed):
    """A nearby point (variables moved by ~1% of their scale), float64."""
    import numpy as np

    rng = np.random.default_rng(1000 + seed)
    out = {}
    for name, v in point.items():
        if name in model.gradient:
            out[name] = (v + 0.01 * np.maximum(1.0, np.abs(v)) * rng.standard_normal(v.shape)).astype(np.float64)
        else:
            out[name] = v
    return out


def worker_truth(path: str, repeats: int) -> dict:
    from verigrad.casefile.loader import load_case, point_in_dtype
    from verigrad.engine.model import compile_case
    from verigrad.spec import Dtype
    from verigrad.engine.truth import certify
    import verigrad.engine.fastball, verigrad.engine.ballsum  # noqa: F401,E401 - imports are not timed

    c0, t0 = time.process_time(), time.perf_counter()
    case = load_case(path)
    t1 = time.perf_counter()
    model = compile_case(case)
    t2 = time.perf_counter()
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    truth = certify(model, point, Dtype.FLOAT64)
    t3, c3 = time.perf_counter(), time.process_time()
    again, again_cpu = [], []
    for r in range(repeats):
        p = _other_point(model, point, r)
        c, s = time.process_time(), time.perf_counter()
        certify(model, p, Dtype.FLOAT64)
        again.append(time.perf_counter() - s)
        again_cpu.append(time.process_time() - c)
    return {"case": case.name, "params": case.parameter_count, "nodes": model.node_count,
            "load": t1 - t0, "compile": t2 - t1, "certify": t3 - t2, "total": t3 - t0, "total_cpu": c3 - c0,
            "again": again, "again_cpu": again_cpu, "precision": truth.precision, "digits": truth.digits}


def _raw_loop(fn, values: dict, variables: list[str], steps, dtype) -> tuple[float, int]:
    """2 N K calls of the plain numpy loss: central nodes x_i +- h for every coordinate and step."""
    import numpy as np

    vals = {k: np.array(v, dtype=dtype, copy=True) for k, v in values.items()}
    hs = [dtype.type(h) for h in steps]
    calls = 0
    t0 = time.perf_counter()
    for h in hs:
        for name in variables:
            flat = vals[name].reshape(-1)
            for i in range(flat.size):
                old = flat[i]
                flat[i] = old + h
                fn(**vals)
                flat[i] = old - h
                fn(**vals)
                flat[i] = old
                calls += 2
    return time.perf_counter() - t0, calls


def worker_fd(path: str, parts: list[str]) -> dict:
    import numpy as np

    from verigrad.casefile.loader import load_case, point_in_dtype
    from verigrad.engine.model import compile_case
    from verigrad.schemes import default_step_grid, get_scheme
    from verigrad.spec import Dtype
    from verigrad.fd import coordinate_direction, fd_gradient, random_direction
    from verigrad.studies import run_study
    from verigrad.engine.truth import certify

    case = load_case(path)
    model = compile_case(case)
    scheme = get_scheme(SCHEME)
    n = case.parameter_count
    out: dict = {"case": case.name, "params": n}
    for dtype in (Dtype.FLOAT32, Dtype.FLOAT64):
        d = dtype.value
        grid = default_step_grid(scheme, dtype.numpy, count=K_STEPS)
        if "study" in parts or "study-coord" in parts:
            directions = [("coord", coordinate_direction(model))]
            if "study" in parts:
                directions.append(("random", random_direction(model, 0)))
            for label, direction in directions:
                c0, t0 = time.process_time(), time.perf_counter()
                st = run_study(model, dtype=dtype, scheme=scheme, direction=direction, steps=grid)
                out[f"study_{label}_{d}"] = time.perf_counter() - t0
                out[f"study_{label}_{d}_cpu"] = time.process_time() - c0
                out[f"study_{label}_{d}_rows"] = len(st.rows)
                out[f"study_{label}_{d}_label"] = direction.label
        if "split" in parts:
            # the full split of every coordinate at every step of the grid, measured whole: truth + fd_sweep_split
            from verigrad.studies import fd_sweep_split

            point = point_in_dtype(model.point, dtype)
            c0, t0 = time.process_time(), time.perf_counter()
            truth = certify(model, point, dtype, digits=30)
            out[f"split_truth_{d}"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            from verigrad.errors import LimitError

            try:
                fd_sweep_split(model, dtype=dtype, scheme=scheme, steps=[float(h) for h in grid], truth=truth)
            except LimitError as exc:  # refused by a work bound: a row of its own (a MISS), not a crash
                out["split_refused"] = str(exc).splitlines()[0]
            else:
                out[f"split_per_step_{d}"] = (time.perf_counter() - t1) / K_STEPS
                out[f"split_full_{d}"] = time.perf_counter() - t0
                out[f"split_full_{d}_cpu"] = time.process_time() - c0
        if "float" in parts:
            fd_gradient(model, dtype=dtype, scheme=scheme, step=float(grid[K_STEPS // 2]))  # warm-up
            c0, t0 = time.process_time(), time.perf_counter()
            for h in grid:
                fd_gradient(model, dtype=dtype, scheme=scheme, step=float(h))
            out[f"fd_{d}"] = time.perf_counter() - t0
            out[f"fd_{d}_cpu"] = time.process_time() - c0
            fn = RAW_LOSS[case.name]
            point = point_in_dtype(model.point, dtype)
            # the raw loss is the same loss: agree with the expression's float evaluation
            ref = float(model.float_eval([model.loss], point, dtype.numpy)[0])
            got = float(fn(**{k: v.copy() for k, v in point.items()}))
            out[f"raw_check_{d}"] = abs(got - ref) / max(1.0, abs(ref))
            assert out[f"raw_check_{d}"] < 1e-4, (case.name, d, got, ref)
            c0 = time.process_time()
            t_raw, calls = _raw_loop(fn, point, list(model.gradient), [float(h) for h in grid], dtype.numpy)
            out[f"raw_{d}_cpu"] = time.process_time() - c0
            out[f"raw_{d}"] = t_raw
            out[f"raw_calls_{d}"] = calls
            out[f"ratio_{d}"] = out[f"fd_{d}"] / t_raw
            out[f"ratio_{d}_cpu"] = out[f"fd_{d}_cpu"] / out[f"raw_{d}_cpu"]
    return out


def _case_function(path: str, which: str):
    """The function ``which`` of the module named by the case's first ``[[candidate]] code``."""
    import importlib.util

    doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    module_path, _, fn = doc["candidate"][0]["code"].partition(":")
    file = (Path(path).parent / module_path).resolve()
    spec = importlib.util.spec_from_file_location(f"_bench_impl_{file.stem}", file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, which if which else fn), f"{module_path}:{which or fn}"


def worker_certgrad(path: str) -> dict:
    """Certified truth (float64 point, default digits) vs one float64 numpy gradient, same process."""
    import numpy as np

    from verigrad.casefile.loader import load_case, point_in_dtype
    from verigrad.engine.model import compile_case
    from verigrad.engine.truth import certify
    from verigrad.spec import Dtype
    import verigrad.engine.fastball, verigrad.engine.ballsum  # noqa: F401,E401 - imports are not timed

    grad, grad_name = _case_function(path, "")
    c0, t0 = time.process_time(), time.perf_counter()
    case = load_case(path)
    model = compile_case(case)
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    c1, t1 = time.process_time(), time.perf_counter()
    truth = certify(model, point, Dtype.FLOAT64)
    c2, t2 = time.process_time(), time.perf_counter()
    walls, cpus = [], []
    while len(walls) < 5 or (sum(walls) < 0.5 and len(walls) < 200):
        args = {k: v.copy() for k, v in point.items()}  # fresh copies, as verigrad passes them; not timed
        c, s = time.process_time(), time.perf_counter()
        g = grad(**args)
        walls.append(time.perf_counter() - s)
        cpus.append(time.process_time() - c)
    out = {"case": case.name, "params": case.parameter_count, "candidate": grad_name,
           "load_compile": t1 - t0, "load_compile_cpu": c1 - c0, "certify": t2 - t1, "certify_cpu": c2 - c1,
           "precision": getattr(truth, "precision", None), "backend": getattr(truth, "backend", None),
           "numpy_grad": statistics.median(walls), "numpy_grad_cpu": statistics.median(cpus),
           "numpy_grad_calls": len(walls), "numpy_grad_first": walls[0], "numpy_grad_first_cpu": cpus[0]}
    out["ratio"] = out["certify"] / out["numpy_grad"]
    out["ratio_cpu"] = out["certify_cpu"] / max(out["numpy_grad_cpu"], 1e-9)
    # steady state, like the numpy side (a median of repeated calls): certify at nearby points
    again, again_cpu = [], []
    for rep in range(CERT_REPEATS):
        p = _other_point(model, point, rep)
        c, s = time.process_time(), time.perf_counter()
        certify(model, p, Dtype.FLOAT64)
        again.append(time.perf_counter() - s)
        again_cpu.append(time.process_time() - c)
    out["certify_again"] = statistics.median(again)
    out["certify_again_cpu"] = statistics.median(again_cpu)
    out["ratio_again"] = out["certify_again"] / out["numpy_grad"]
    out["ratio_again_cpu"] = out["certify_again_cpu"] / max(out["numpy_grad_cpu"], 1e-9)
    try:  # sanity: the candidate is the gradient of the case (outside every clock)
        exact = truth.as_float64()
        scale = max(float(np.max(np.abs(v))) for v in exact.values()) or 1.0
        out["candidate_max_error"] = max(float(np.max(np.abs(np.asarray(g[k], dtype=np.float64) - exact[k])))
                                         for k in exact) / scale
    except Exception as exc:  # noqa: BLE001 - the engine's Truth API is in flux; the timing stands
        out["candidate_max_error"] = None
        out["candidate_check"] = f"not checked: {type(exc).__name__}: {exc}"
    return out


def worker_rawfd(path: str, budget: float, sample: float) -> dict:
    """A plain numpy loop of 2N central-difference calls of the case's loss, float64.

    If the estimated time of all 2N calls exceeds ``budget`` seconds, an evenly spread subset of
    coordinates is timed for about ``sample`` seconds and the total is extrapolated from the
    measured time per call (``extrapolated`` in the result says so).
    """
    import numpy as np

    from verigrad.casefile.loader import load_case, point_in_dtype
    from verigrad.engine.model import compile_case
    from verigrad.spec import Dtype

    fn, fn_name = _case_function(path, "forward")
    case = load_case(path)
    model = compile_case(case)
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    ref = float(model.float_eval([model.loss], point, np.float64)[0])
    got = float(fn(**{k: v.copy() for k, v in point.items()}))
    rel = abs(got - ref) / max(1.0, abs(ref))
    assert rel < 1e-10, (case.name, got, ref)  # the raw loss is the same loss
    vals = {k: np.array(v, dtype=np.float64, copy=True) for k, v in point.items()}
    flats = [(name, vals[name].reshape(-1)) for name in model.gradient]
    sizes = [f.size for _, f in flats]
    n = int(sum(sizes))
    starts = np.cumsum([0] + sizes[:-1])
    estimate = np.zeros(n)

    def loop(coords) -> tuple[float, float, int]:
        calls = 0
        c0, t0 = time.process_time(), time.perf_counter()
        for j in coords:
            v = int(np.searchsorted(starts, j, side="right") - 1)
            flat = flats[v][1]
            i = int(j - starts[v])
            old = flat[i]
            h = 6.0554544523933395e-06 * max(1.0, abs(old))  # cube root of float64 eps, relative
            flat[i] = old + h
            fp = fn(**vals)
            flat[i] = old - h
            fm = fn(**vals)
            flat[i] = old
            estimate[j] = (fp - fm) / (2 * h)
            calls += 2
        return time.perf_counter() - t0, time.process_time() - c0, calls

    pilot = np.linspace(0, n - 1, min(n, 10)).astype(np.int64)
    pw, pc, pcalls = loop(pilot)  # warm-up and estimate; not part of the result
    per_call = pw / pcalls
    out = {"case": case.name, "params": n, "loss": fn_name, "calls_total": 2 * n, "raw_check": rel}
    if per_call * 2 * n <= budget:
        wall, cpu, calls = loop(range(n))
        out.update(extrapolated=False, calls_measured=calls, wall=wall, cpu=cpu, measured_wall=wall,
                   measured_cpu=cpu)
    else:
        m = int(min(n, max(10, sample / (2 * per_call))))
        coords = np.unique(np.linspace(0, n - 1, m).astype(np.int64))
        wall, cpu, calls = loop(coords)
        out.update(extrapolated=True, calls_measured=calls, measured_wall=wall, measured_cpu=cpu,
                   wall=wall / calls * 2 * n, cpu=cpu / calls * 2 * n)
    out["per_call"] = out["measured_wall"] / out["calls_measured"]
    out["per_call_cpu"] = out["measured_cpu"] / out["calls_measured"]
    return out


def worker_hvp(path: str, repeats: int) -> dict:
    """CPU seconds of one certified gradient and one certified HVP (median of ``repeats``, after a warm-up)."""
    import numpy as np

    from verigrad.casefile.loader import load_case, point_in_dtype
    from verigrad.engine.hessian import certify_hvp, hvp_model
    from verigrad.engine.model import compile_case
    from verigrad.engine.truth import certify
    from verigrad.spec import Dtype

    model = compile_case(load_case(path))
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    c = time.process_time()
    hvp_model(model)
    build = time.process_time() - c
    rng = np.random.default_rng(0)
    v = {n: rng.standard_normal(model.shape(n)) for n in model.gradient}
    g, h = certify(model, point, Dtype.FLOAT64), certify_hvp(model, point, v, Dtype.FLOAT64)  # warm-up
    tg, th = [], []
    for _ in range(repeats):
        c = time.process_time()
        g = certify(model, point, Dtype.FLOAT64)
        tg.append(time.process_time() - c)
        c = time.process_time()
        h = certify_hvp(model, point, v, Dtype.FLOAT64)
        th.append(time.process_time() - c)
    return {"case": model.case.name, "params": model.case.parameter_count, "gradient_cpu": statistics.median(tg),
            "hvp_cpu": statistics.median(th), "build_cpu": build, "gradient_backend": g.backend,
            "hvp_backend": h.backend}


def _worker_main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "hvp":
        res = worker_hvp(argv[1], int(argv[2]))
    elif kind == "truth":
        res = worker_truth(argv[1], int(argv[2]))
    elif kind == "fd":
        res = worker_fd(argv[1], argv[2].split(","))
    elif kind == "certgrad":
        res = worker_certgrad(argv[1])
    elif kind == "rawfd":
        res = worker_rawfd(argv[1], float(argv[2]), float(argv[3]))
    else:
        raise SystemExit(f"unknown worker {kind}")
    print("RESULT " + json.dumps(res))


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------

def _warm_imports() -> None:
    """Import (not run) every module a measurement uses: imports are process start, excluded from every row."""
    import verigrad.engine.arb  # noqa: F401  (python-flint: about 50 ms to import)
    import verigrad.engine.ddfunctions  # noqa: F401
    import verigrad.engine.ddmatmul  # noqa: F401
    import verigrad.engine.fastball  # noqa: F401
    import verigrad.engine.model  # noqa: F401
    import verigrad.engine.truth  # noqa: F401
    import verigrad.grading  # noqa: F401
    import verigrad.kinks  # noqa: F401
    import verigrad.studies  # noqa: F401


def _stat(pid: int | str) -> list[bytes] | None:
    """Fields 3.. of /proc/PID/stat (fields[0] is the state, [2] the process group, [21] the RSS in pages)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            st = fh.read()
        return st[st.rindex(b")") + 2:].split()
    except (OSError, ValueError):
        return None


def _group_members(pgid: int) -> set[int]:
    """The live processes of process group ``pgid`` (a scan of /proc: a few ms)."""
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = _stat(d)
            if f is not None and len(f) > 21 and int(f[2]) == pgid:
                out.add(int(d))
    return out


def _group_rss(members: set[int], pgid: int) -> int:
    """The largest resident set (bytes) among ``members`` still in process group ``pgid``."""
    best = 0
    for pid in members:
        f = _stat(pid)
        if f is not None and len(f) > 21 and int(f[2]) == pgid:
            best = max(best, int(f[21]) * _PAGE)
    return best


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _tail(path: Path, limit: int = 65536) -> str:
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - limit))
        return fh.read().decode("utf-8", "replace")


BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_ENV: dict[str, str] | None = None  # the environment of every measured process (None: this one's)


def _set_blas_threads(n: int) -> None:
    """Every measured process gets ``n`` BLAS threads (0: the inherited environment, unchanged)."""
    global _ENV
    _ENV = None if n <= 0 else {**os.environ, **{k: str(n) for k in BLAS_ENV}}


def _launch(cmd: list[str], timeout: float, mem_limit: float) -> dict:
    """Run ``cmd`` in its own process group, output to files; wall, CPU and peak RSS from ``os.wait4``.

    The group is killed (SIGKILL) after ``timeout`` seconds, or as soon as one of its processes holds
    more than ``mem_limit`` bytes resident (polled every 0.2 s).
    """
    with tempfile.TemporaryDirectory(prefix="verigrad-bench-") as tmp:
        out_path, err_path = Path(tmp, "stdout"), Path(tmp, "stderr")
        with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, cwd=ROOT, env=_ENV,
                                    start_new_session=True)
            done: dict = {}

            def reap() -> None:
                _, status, usage = os.wait4(proc.pid, 0)
                done.update(end=time.perf_counter(), status=status, usage=usage)

            waiter = threading.Thread(target=reap, daemon=True)
            waiter.start()
            killed, peak, members, scanned = None, 0, {proc.pid}, t0
            while waiter.is_alive():
                waiter.join(0.2)
                if not waiter.is_alive():
                    break
                now = time.perf_counter()
                elapsed = now - t0
                if now - scanned > 1.0:  # forked children join the group: rescan once a second
                    members, scanned = _group_members(proc.pid) | {proc.pid}, now
                rss = _group_rss(members, proc.pid)
                peak = max(peak, rss)
                if elapsed > timeout:
                    killed = f"timed out after {timeout:.0f} s (killed)"
                elif rss > mem_limit:
                    killed = (f"killed at {rss / GB:.1f} GB resident after {elapsed:.0f} s "
                              f"(the harness's memory cap is {mem_limit / GB:.1f} GB)")
                if killed:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    waiter.join()
            proc.returncode = os.waitstatus_to_exitcode(done["status"])
        try:  # orphaned descendants (none expected) go with the group
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        size = out_path.stat().st_size
        lines = 0
        with open(out_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                lines += chunk.count(b"\n")
        usage = done["usage"]
        return {"rc": proc.returncode, "wall": done["end"] - t0, "cpu": usage.ru_utime + usage.ru_stime,
                "maxrss": usage.ru_maxrss * 1024, "sampled_peak_rss": peak, "killed": killed,
                "stdout_bytes": size, "stdout_lines": lines, "stdout_tail": _tail(out_path),
                "stderr_tail": _tail(err_path, 8192)}


def _spawn(args: list[str], timeout: float, mem_limit: float) -> dict:
    """One measurement worker (``run.py --worker ...``): its RESULT, plus the process's own figures."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    r = _launch(cmd, timeout, mem_limit)
    proc = {"process_wall": r["wall"], "process_cpu": r["cpu"], "process_maxrss": r["maxrss"]}
    if r["killed"]:
        return {"killed": r["killed"], **proc}
    for line in r["stdout_tail"].splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[7:]), **proc}
    tail = "\n".join((r["stderr_tail"] or r["stdout_tail"]).strip().splitlines()[-8:])
    return {"error": f"worker {' '.join(args)} failed (exit {r['rc']}):\n{tail}", **proc}


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _cli(args: list[str], timeout: float, mem_limit: float) -> dict:
    """A ``python -m verigrad ...`` command timed whole (start-up included), as a user runs it."""
    r = _launch([sys.executable, "-m", "verigrad", *args], timeout, mem_limit)
    shown = " ".join(_rel(Path(a)) if a.endswith(".toml") else a for a in args)
    out = {"command": f"verigrad {shown}", **{k: r[k] for k in ("rc", "wall", "cpu", "maxrss", "sampled_peak_rss",
                                                                   "killed", "stdout_bytes", "stdout_lines")}}
    if r["rc"] != 0 and not r["killed"]:
        text = (r["stdout_tail"].strip() + "\n" + r["stderr_tail"].strip()).strip()
        out["tail"] = "\n".join(text.splitlines()[-12:])
    return out


def _precompile() -> str:
    """Write the .pyc files of verigrad and of the benchmark candidates (``compileall``; an up-to-date file
    is left alone); the measured processes then import from bytecode, as from an installed package."""
    proc = subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "verigrad"), str(CASES / "impl")],
                          cwd=ROOT, env=_ENV, capture_output=True, text=True)
    return "precompiled" if proc.returncode == 0 else f"compileall failed ({proc.returncode})"


def _import_time(repeats: int) -> dict:
    def run(code):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=_ENV)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    return {"bare": run("pass"), "model_truth": run(f"import {ENGINE_IMPORTS}"),
            "with_studies": run(f"import {ENGINE_IMPORTS}, verigrad.studies")}


def _s(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x < 1e-3:
        return f"{x * 1e6:.0f} us"
    if x < 1:
        return f"{x * 1e3:.1f} ms"
    if x < 600:
        return f"{x:.2f} s"
    return f"{x:.0f} s ({x / 3600:.1f} h)"


def _verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "MISS"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def _slope(t_small: float, t_big: float, n_small: int, n_big: int) -> str:
    if t_small <= 0 or t_big <= 0:
        return "n/a"
    return f"{math.log(t_big / t_small) / math.log(n_big / n_small):.2f}"


def _job_list(quick: bool) -> list[tuple[str, str, tuple]]:
    """(id, section, arguments) of every measurement of the set, in the order they run."""
    jobs: list[tuple[str, str, tuple]] = []
    truth_repeats = {NET3: 20, SOFTMAX: 10, ROSEN: 10, LOGISTIC: 1 if quick else 3}
    truth_files = {f for f, *_ in TRUTH_TARGETS} | {f for f, _ in SCALING}
    for f in sorted(truth_files):
        jobs.append((f"truth/{f}", "truth", (f, truth_repeats.get(f, 3))))
    for f, *_ in FD_TARGETS:
        if quick and f == LOGISTIC:
            continue
        # --quick: one-coordinate sweep only (no random direction, no full split)
        jobs.append((f"fd/{f}", "fd", (f, ["study-coord", "float"] if quick else ["study", "float", "split"])))
    small = {CONV, MLP32, LOG1K, ROS4}
    for f, _ in BIG:
        if not quick or f in small:
            jobs.append((f"cert/{f}", "cert", (f,)))
    for f, _ in BIG:
        if not quick or f in {CONV, ROS4}:
            jobs.append((f"run/{f}", "run", (f,)))
    for f, *_ in CLI_TRUTH:
        if not quick or f == ROS4:
            jobs.append((f"cli-truth/{f}", "cli_truth", (f,)))
    for f, var, idx, *_ in STUDY:
        if not quick or f == ROS4:
            jobs.append((f"study/{f}", "study", (f, var, idx)))
    for f, _ in HVP_TARGETS:
        if not quick or f in (NET3, ROSEN):
            jobs.append((f"hvp/{f}", "hvp", (f, 3 if quick else 5)))
    return jobs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="reduced set (a few minutes): no logistic finite differences, no random-direction sweeps, "
                         "no full-gradient split; issue-16 rows for the small and medium cases only")
    ap.add_argument("--only", action="append", metavar="TEXT",
                    help="run only the measurements whose id contains TEXT (repeatable; see --list)")
    ap.add_argument("--list", action="store_true", help="print the measurement ids of the set and exit")
    ap.add_argument("--timeout", type=float, metavar="S",
                    help="seconds per process before it is killed (default 600; 300 with --quick)")
    ap.add_argument("--mem-limit", type=float, default=4.0, metavar="GB",
                    help="resident memory per process before it is killed (default 4 GB)")
    ap.add_argument("--blas-threads", type=int, default=1, metavar="N",
                    help="BLAS threads of every measured process (default 1; 0 leaves the environment alone)")
    ap.add_argument("--json", metavar="FILE", help="write all raw numbers to FILE")
    ap.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        _warm_imports()
        _worker_main(a.worker)
        return 0

    quick = a.quick
    jobs = _job_list(quick)
    if a.only:
        jobs = [j for j in jobs if any(t in j[0] for t in a.only)]
    if a.list:
        print("\n".join(j[0] for j in jobs))
        return 0
    if not jobs:
        print(f"no measurement id contains {' or '.join(map(repr, a.only))} (see --list)", file=sys.stderr)
        return 2
    timeout = a.timeout or (300.0 if quick else 600.0)
    _set_blas_threads(a.blas_threads)
    blas = (f"{a.blas_threads} BLAS thread{'s' if a.blas_threads > 1 else ''} per process" if a.blas_threads > 0 else
            "BLAS threads as inherited (" + ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in BLAS_ENV) + ")")
    mem = a.mem_limit * GB
    budget, sample = (20.0, 5.0) if quick else (60.0, 20.0)
    if any(not (CASES / j[2][0]).exists() for j in jobs):
        import importlib.util

        spec = importlib.util.spec_from_file_location("_make_cases", HERE / "make_cases.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mod.main()

    wall0 = time.perf_counter()
    results: dict = {"loadavg_start": os.getloadavg(), "mode": "quick" if quick else "full",
                     "only": a.only, "blas": blas, "timeout": timeout, "mem_limit": mem, "raw_budget": budget,
                     "python": sys.version.split()[0], "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                     "date": time.strftime("%Y-%m-%d %H:%M"), "truth": {}, "fd": {}, "cert": {}, "run": {},
                     "cli_truth": {}, "study": {}, "hvp": {}}
    errors: list[str] = []
    progress = lambda msg: print(f"[{time.perf_counter() - wall0:6.1f} s] {msg}", file=sys.stderr, flush=True)  # noqa: E731

    # Bytecode: an installed package has its .pyc files (pip compiles them); a source tree run with
    # PYTHONDONTWRITEBYTECODE=1 (as on the development machine) would recompile every module in every
    # measured process, about 0.4-0.8 s of CPU per `verigrad` command that no user pays.  Compile once, here.
    progress("compile bytecode")
    results["bytecode"] = _precompile()
    progress("import time")
    results["imports"] = _import_time(3 if quick else 5)

    for n, (job, section, args) in enumerate(jobs, 1):
        progress(f"({n}/{len(jobs)}) {job}")
        f = args[0]
        path = str(CASES / f)
        if section == "hvp":
            r = _spawn(["hvp", path, str(args[1])], timeout, mem)
        elif section == "truth":
            r = _spawn(["truth", path, str(args[1])], timeout, mem)
        elif section == "fd":
            r = _spawn(["fd", path, ",".join(args[1])], timeout, mem)
        elif section == "cert":
            r = _spawn(["certgrad", path], timeout, mem)
        elif section == "run":
            r = {"cli": _cli(["run", path, "--no-color"], timeout, mem)}
            progress(f"({n}/{len(jobs)}) {job}: plain numpy central-difference loop")
            r["raw"] = _spawn(["rawfd", path, str(budget), str(sample)], timeout, mem)
            if "error" in r["raw"]:
                errors.append(r["raw"]["error"])
        elif section == "cli_truth":
            if f in CLI_TRUTH_JSON:
                out_json = Path(tempfile.gettempdir()) / f"verigrad-bench-{os.getpid()}-truth.json"
                r = _cli(["truth", path, "--no-color", "--json", str(out_json)], timeout, mem)
                r["command"] = r["command"].replace(str(out_json), "FILE.json")
                r["json_bytes"] = out_json.stat().st_size if out_json.exists() else None
                out_json.unlink(missing_ok=True)
            else:
                r = _cli(["truth", path, "--no-color"], timeout, mem)
        else:  # study
            r = _cli(["study", path, "--variable", args[1], "--index", args[2], "--dtype", "float64",
                      "--no-color"], timeout, mem)
        results[section][f] = r
        if "error" in r:
            errors.append(r["error"])
    results["wall_seconds"] = time.perf_counter() - wall0
    results["loadavg_end"] = os.getloadavg()
    progress("done")

    print(report(results))
    for e in errors:
        print("\nERROR: " + e)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 1 if errors else 0


def _b(n: float | None) -> str:
    if n is None:
        return "n/a"
    if n >= GB:
        return f"{n / GB:.2f} GB"
    return f"{n / 1e6:.0f} MB"


def _x(r: float) -> str:
    if r >= 100:
        return f"{r:,.0f}x"
    if r >= 10:
        return f"{r:.1f}x"
    if r >= 0.1:
        return f"{r:.2f}x"
    return f"{r:.2g}x"


def _proc(r: dict) -> str:
    """wall, CPU and peak RSS of one timed command (or why it was stopped)."""
    if r.get("killed"):
        return f"{r['killed']}; cpu {_s(r['cpu'])} by then, peak RSS {_b(r['maxrss'])}"
    exit_note = "" if r["rc"] == 0 else f"EXIT {r['rc']} (see the note below); "
    return (f"{exit_note}wall {_s(r['wall'])}, cpu {_s(r['cpu'])}, peak RSS {_b(r['maxrss'])}; "
            f"stdout {r['stdout_lines']:,} lines")


def _report_issue16(res: dict, out: list[str], notes: list[str]) -> None:
    if res.get("cert"):
        out.append("Issue 16 - certified truth vs one float64 numpy gradient of the same loss (one worker: "
                   "certify at the float64 point, default digits, first call after load + compile, then again at "
                   f"{CERT_REPEATS} nearby points (median); the case's hand-written numpy gradient, median of "
                   "repeated calls; the verdict compares the two medians, the steady state of both sides)")
        rows = []
        for f, label in BIG:
            r = res["cert"].get(f)
            if r is None:
                continue
            n = r.get("params", PARAMS[f])
            target = f"<= {CERT_RATIO_TARGET:.0f}x cpu" if n >= TARGET_MIN_PARAMS else "- (N < 10^4)"
            if "killed" in r or "error" in r:
                why = r.get("killed") or "worker failed (error below)"
                rows.append([label, why, "", "", "", "", "", _b(r.get("process_maxrss")), target,
                             "MISS" if target.startswith("<=") else "-"])
                continue
            check = r.get("candidate_max_error")
            if check is None:
                notes.append(f"{f}: candidate {r.get('candidate_check', 'not checked')}")
            elif check > 1e-10:
                notes.append(f"{f}: the candidate differs from the truth by {check:.1e} of the gradient's scale")
            steady = "ratio_again_cpu" in r
            ratio = r["ratio_again_cpu"] if steady else r["ratio_cpu"]
            rows.append([label, f"{_s(r['load_compile'])} (cpu {_s(r['load_compile_cpu'])})",
                         f"{_s(r['certify'])} (cpu {_s(r['certify_cpu'])})",
                         (f"{_s(r['certify_again'])} (cpu {_s(r['certify_again_cpu'])}, median of {CERT_REPEATS})"
                          if steady else "n/a"),
                         f"{_s(r['numpy_grad'])} (cpu {_s(r['numpy_grad_cpu'])}, median of {r['numpy_grad_calls']})"
                         + (f"; first call cpu {_s(r['numpy_grad_first_cpu'])}" if "numpy_grad_first_cpu" in r else ""),
                         (f"{_x(ratio)} cpu ({_x(r['ratio_again'])} wall)" if steady else "n/a"),
                         f"{_x(r['ratio_cpu'])} cpu ({_x(r['ratio'])} wall)"
                         + (f"; first/first {_x(r['certify_cpu'] / max(r['numpy_grad_first_cpu'], 1e-9))} cpu"
                            if "numpy_grad_first_cpu" in r else ""), _b(r["process_maxrss"]),
                         target, _verdict(ratio, CERT_RATIO_TARGET) if target.startswith("<=") else "-"])
        out.append(_table(["case", "load + compile", "certify, first call", "certify again", "numpy gradient",
                           "ratio again / numpy (verdict)", "ratio first call / numpy", "worker peak RSS", "target",
                           "result"], rows))
        out.append("")

    if res.get("run"):
        out.append("Issue 16 - `verigrad run CASE` (subprocess, both dtypes, one correct candidate, start-up "
                   "included) vs a plain numpy loop of 2N central-difference calls of the same loss (float64, "
                   "the work every peer checker does)")
        rows = []
        for f, label in BIG:
            r = res["run"].get(f)
            if r is None:
                continue
            cli, raw = r["cli"], r["raw"]
            n = raw.get("params", PARAMS[f])
            wall_t = RUN_WALL_TARGETS.get(f)
            ok = cli["rc"] == 0 and not cli["killed"]
            if wall_t is not None:
                rows.append([label, f"`{cli['command']}`", _proc(cli), f"<= {_s(wall_t)} wall",
                             _verdict(cli["wall"], wall_t) if ok else "MISS"])
            else:
                rows.append([label, f"`{cli['command']}`", _proc(cli), "-", "-"])
            if cli.get("tail"):
                notes.append(f"`{cli['command']}` exited with {cli['rc']}:\n{cli['tail']}")
            if "error" in raw or "killed" in raw:
                rows.append(["", "plain numpy central-difference loop", raw.get("killed") or "worker failed", "", ""])
                continue
            calls = raw["calls_total"]
            if raw["extrapolated"]:
                what = (f"numpy loop, 2N = {calls:,} calls of {raw['loss']}: {raw['calls_measured']:,} calls MEASURED "
                        f"({_s(raw['measured_wall'])}, coordinates evenly spread), the rest EXTRAPOLATED from "
                        f"{_s(raw['per_call'])}/call")
                val = f"{_s(raw['wall'])} (cpu {_s(raw['cpu'])}) extrapolated"
            else:
                what = f"numpy loop, 2N = {calls:,} calls of {raw['loss']}, all measured"
                val = f"{_s(raw['wall'])} (cpu {_s(raw['cpu'])})"
            rows.append(["", what, val, "", ""])
            big = n >= TARGET_MIN_PARAMS
            target = f"<= {RUN_RATIO_TARGET:.0f}x cpu" if big else "- (N < 10^4)"
            if cli["killed"]:
                bound = cli["cpu"] / raw["cpu"]
                rows.append(["", "ratio verigrad run / numpy loop", f"> {_x(bound)} cpu (run stopped)", target,
                             "MISS" if big else "-"])
            elif ok:
                rows.append(["", "ratio verigrad run / numpy loop",
                             f"{_x(cli['cpu'] / raw['cpu'])} cpu ({_x(cli['wall'] / raw['wall'])} wall)", target,
                             _verdict(cli["cpu"] / raw["cpu"], RUN_RATIO_TARGET) if big else "-"])
            else:
                rows.append(["", "ratio verigrad run / numpy loop", "n/a (run failed)", target,
                             "MISS" if big else "-"])
        out.append(_table(["case", "measure", "measured", "target", "result"], rows))
        out.append("")

    if res.get("cli_truth") or res.get("study"):
        out.append("Issue 16 - `verigrad truth` and `verigrad study` as a user runs them (subprocess, start-up "
                   "included; peak RSS is the kernel's ru_maxrss of the command)")
        rows = []

        def add(label: str, r: dict, t_cpu: float | None, t_rss: float | None) -> None:
            ok = r["rc"] == 0 and not r["killed"]
            rows.append([label, f"`{r['command']}`", _proc(r),
                         f"<= {_s(t_cpu)} cpu" if t_cpu else "-",
                         (_verdict(r["cpu"], t_cpu) if ok else "MISS") if t_cpu else "-"])
            if t_rss:
                rows.append(["", "peak resident memory", _b(r["maxrss"]) + ("" if ok else " (before it stopped)"),
                             f"<= {_b(t_rss)}", _verdict(r["maxrss"], t_rss) if ok else "MISS"])
            if r.get("tail"):
                notes.append(f"`{r['command']}` exited with {r['rc']}:\n{r['tail']}")

        for f, t_cpu, t_rss in CLI_TRUTH:
            if f in res.get("cli_truth", {}):
                add(BIG_LABEL[f], res["cli_truth"][f], t_cpu, t_rss)
        for f, _, _, t_cpu, t_rss in STUDY:
            if f in res.get("study", {}):
                add(BIG_LABEL[f], res["study"][f], t_cpu, t_rss)
        out.append(_table(["case", "command", "measured", "target", "result"], rows))
        out.append("")


def report(res: dict) -> str:
    out: list[str] = []
    notes: list[str] = []
    imp = res["imports"]
    only = f"; only {', '.join(res['only'])}" if res.get("only") else ""
    out.append(f"verigrad benchmarks ({res['mode']}{only}; {res.get('date', '')}; Python {res['python']}; "
               f"{res['machine']}; harness wall time {res['wall_seconds']:.0f} s; per-process limits "
               f"{res['timeout']:.0f} s, {_b(res['mem_limit'])}; {res.get('blas', '')}; "
               f"bytecode {res.get('bytecode', 'as found')})")
    out.append("Load average (1/5/15 min) at start {:.2f}/{:.2f}/{:.2f}, at end {:.2f}/{:.2f}/{:.2f} "
               "(other processes on the machine inflate every number)".format(*res["loadavg_start"],
                                                                               *res["loadavg_end"]))
    out.append("")
    out.append("Issue 2 and 3 verdicts use wall-clock time; (cpu ...) is the measuring process's CPU time, which "
               "other load on the machine inflates less. Issue 16 verdicts use CPU time, as its targets do, "
               "except where the target says wall.")
    out.append("Process start and imports (excluded from every worker number below; subprocess wall time, median):")
    out.append(f"  python -c pass: {_s(imp['bare'])};  python -c \"import {ENGINE_IMPORTS}\": "
               f"{_s(imp['model_truth'])};  + verigrad.studies: {_s(imp['with_studies'])}")
    out.append("")

    # issue 2
    def failed(r: dict) -> str | None:
        if "killed" in r:
            return r["killed"]
        if "error" in r:
            return "ERROR (below)"
        return None

    if any(f in res["truth"] for f, *_ in TRUTH_TARGETS):
        out.append("Issue 2 - certified truth (float64 point, 24 digits)")
        rows = []
        for f, label, t_total, t_again in TRUTH_TARGETS:
            r = res["truth"].get(f)
            if r is None:
                continue
            if failed(r):
                rows.append([label, "case file -> truth", failed(r), _s(t_total), "MISS"])
                rows.append([label, "one more truth", failed(r), _s(t_again), "MISS"])
                continue
            rows.append([label, "case file -> truth, total", f"{_s(r['total'])} (cpu {_s(r['total_cpu'])})",
                         "< " + _s(t_total),
                         _verdict(r["total"], t_total)])
            again = statistics.median(r["again"])
            rows.append(["", f"one more truth (median of {len(r['again'])}, min {_s(min(r['again']))})",
                         f"{_s(again)} (cpu {_s(statistics.median(r['again_cpu']))})", "< " + _s(t_again),
                         _verdict(again, t_again)])
        out.append(_table(["case", "measure", "measured", "target", "result"], rows))
        out.append("")

    if any(f in res["truth"] for f, _ in SCALING):
        out.append("Issue 2 - parse/derive vs evaluate, growth with the parameter count")
        rows = []
        for f, n in SCALING:
            r = res["truth"].get(f)
            if r is None:
                continue
            if failed(r):
                rows.append([f, str(n), failed(r), "", "", "", ""])
                continue
            rows.append([f, str(r["params"]), str(r["nodes"]), _s(r["load"]), _s(r["compile"]), _s(r["certify"]),
                         _s(statistics.median(r["again"]))])
        out.append(_table(["case file", "params", "graph nodes", "load_case", "compile_case", "certify (1st)",
                           "certify (again)"], rows))
        for fam in ("rosenbrock", "logistic-200x"):
            pts = [(n, res["truth"].get(f) or {}) for f, n in SCALING if f.startswith(fam)]
            if all(r and not failed(r) for _, r in pts) and len(pts) == 3:
                (n1, r1), (n2, r2), (n3, r3) = pts
                pd = lambda r: r["load"] + r["compile"]  # noqa: E731
                ev = lambda r: statistics.median(r["again"])  # noqa: E731
                out.append(f"  {fam.rstrip('-x')}: growth exponent (t ~ N^k) parse+derive k = "
                           f"{_slope(pd(r1), pd(r2), n1, n2)} (10->100), {_slope(pd(r2), pd(r3), n2, n3)} (100->1000); "
                           f"evaluate k = {_slope(ev(r1), ev(r2), n1, n2)} (10->100), "
                           f"{_slope(ev(r2), ev(r3), n2, n3)} (100->1000)")
        out.append("")

    # issue 3
    if res["fd"]:
        out.append(f"Issue 3 - finite differences, scheme {SCHEME}, K = {K_STEPS} steps, float32 + float64 "
                   f"(times are the sum of both dtypes unless marked)")
        rows = []
        for f, label, t_sweep, ratio_t in FD_TARGETS:
            r = res["fd"].get(f)
            if r is None:
                continue
            if failed(r):
                rows.append([label, "all measures", failed(r), "", "MISS"])
                continue
            first = True
            for key, what in (("coord", "run_study T/S/R sweep, one coordinate"),
                              ("random", "run_study T/S/R sweep, random direction")):
                if f"study_{key}_float32" not in r:
                    rows.append(["", what, "skipped (--quick)", "< " + _s(t_sweep), "n/a"])
                    continue
                t = r[f"study_{key}_float32"] + r[f"study_{key}_float64"]
                rows.append([label if first else "", f"{what} (f32 {_s(r[f'study_{key}_float32'])} + "
                             f"f64 {_s(r[f'study_{key}_float64'])})",
                             f"{_s(t)} (cpu {_s(r[f'study_{key}_float32_cpu'] + r[f'study_{key}_float64_cpu'])})",
                             "< " + _s(t_sweep), _verdict(t, t_sweep)])
                first = False
            if "split_refused" in r:
                rows.append(["", f"full split, all {r['params']} coords x {K_STEPS} steps: refused by a work bound "
                             f"({r['split_refused']})", "not run", "< " + _s(t_sweep), "MISS"])
            elif "split_full_float32" in r:
                t = r["split_full_float32"] + r["split_full_float64"]
                cpu = r["split_full_float32_cpu"] + r["split_full_float64_cpu"]
                rows.append(["", f"full split, all {r['params']} coords x {K_STEPS} steps: truth + fd_sweep_split "
                             f"(f32 {_s(r['split_full_float32'])} + f64 {_s(r['split_full_float64'])}; per step "
                             f"f32 {_s(r['split_per_step_float32'])}, f64 {_s(r['split_per_step_float64'])})",
                             f"{_s(t)} (cpu {_s(cpu)})", "< " + _s(t_sweep), _verdict(t, t_sweep)])
            for d in ("float32", "float64"):
                rows.append(["", f"float part {d}: fd_gradient x {K_STEPS} steps {_s(r[f'fd_{d}'])} vs "
                             f"{r[f'raw_calls_{d}']} raw numpy calls {_s(r[f'raw_{d}'])}",
                             f"{r[f'ratio_{d}']:.2f}x (cpu {r[f'ratio_{d}_cpu']:.2f}x)", f"<= {ratio_t:.1f}x",
                             _verdict(r[f"ratio_{d}"], ratio_t)])
        out.append(_table(["case", "measure", "measured", "target", "result"], rows))
        out.append("")

    _report_issue16(res, out, notes)
    _report_issue22(res, out)
    for note in notes:
        out.append("NOTE: " + note.replace("\n", "\n    "))
    if notes:
        out.append("")
    cells = [line.rstrip(" |").rsplit("|", 1)[-1].strip() for line in out for line in line.splitlines()
             if line.startswith("| ")]
    n_pass, n_miss = cells.count("PASS"), cells.count("MISS")
    out.append(f"{n_pass} PASS, {n_miss} MISS")
    return "\n".join(out)


def _report_issue22(res: dict, out: list[str]) -> None:
    """Issue 22: one certified HVP within a small constant of one certified gradient (CPU, same point)."""
    rows = []
    for f, label in HVP_TARGETS:
        r = res.get("hvp", {}).get(f)
        if r is None:
            continue
        if "killed" in r or "error" in r:
            rows.append([label, r.get("killed", "ERROR (below)"), "", "", f"<= {HVP_RATIO_TARGET:.0f}x", "MISS"])
            continue
        ratio = r["hvp_cpu"] / r["gradient_cpu"]
        rows.append([label, f"{_s(r['gradient_cpu'])} ({r['gradient_backend']})",
                     f"{_s(r['hvp_cpu'])} ({r['hvp_backend']})", f"{ratio:.2f}x", f"<= {HVP_RATIO_TARGET:.0f}x",
                     _verdict(ratio, HVP_RATIO_TARGET)])
    if rows:
        out.append("Issue 22 - certified Hessian-vector product vs certified gradient (float64 point, 24 digits, "
                   "CPU, median; the HVP graph is built once, not timed)")
        out.append(_table(["case", "certified gradient", "certified H v", "ratio", "target", "result"], rows))
        out.append("")


if __name__ == "__main__":
    sys.exit(main())
