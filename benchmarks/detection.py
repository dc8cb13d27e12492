"""Detection power in float32 (issue 17, item 4): does a single entry off by 1e-6 relative fail?

    python benchmarks/detection.py            # seven functions, about a minute
    python benchmarks/detection.py --json out.json

For each of seven losses (shipped case files with a correct hand-written candidate), in float32:

1. the correct candidate is graded with the per-variable rule (``tau_k``) and with the per-entry
   rule (``grade(error_model=baseline_error_model(...))``): both must pass (no false alarm);
2. every entry (at most ``--entries`` per case, evenly spread) of the candidate's gradient is
   perturbed alone, ``v_i -> fl32(v_i (1 + 1e-6))`` (8 to 17 float32 ulps), and graded with both
   rules.  An entry counts as *accurate* when the float baseline is within 4 ulps of the truth
   there; the table gives, over the accurate entries, how many of the perturbed candidates fail;
3. the detection threshold per variable (``VariableGrade.detection_threshold``: the tolerance of
   the variable's largest true entry over its magnitude) and, per case, the median over the
   accurate entries of ``tau_i / |g_i|``.

Nothing is timed; the numbers are what the grade decides.  The candidates are imported in this
process (they are the shipped, trusted ones), not through the isolated worker of ``verigrad run``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASES = ["mlp-weight-decay", "gaussian-mixture", "layer-norm", "softmax-ce-labels", "cauchy-regression",
         "logistic-regression-l2", "rosenbrock-10d"]
REL = 1e-6


def _candidate(case):
    from verigrad.spec import Dtype

    cand = next(c for c in case.candidates if c.expectation(Dtype.FLOAT32).value == "pass")
    spec = importlib.util.spec_from_file_location(f"_bench_{cand.code.path.stem}", cand.code.path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return cand.name, getattr(mod, cand.code.function)


def run_one(name: str, max_entries: int) -> dict:
    from verigrad.casefile.loader import load_case, point_in_dtype
    from verigrad.engine.model import compile_case
    from verigrad.engine.truth import certify
    from verigrad.grading import baseline_error_model, grade, ulp
    from verigrad.runner.case import baseline_gradient, truth_digits
    from verigrad.spec import Dtype

    case = load_case(ROOT / "cases" / f"{name}.toml")
    model = compile_case(case)
    dt = Dtype.FLOAT32
    point = point_in_dtype(model.point, dt)
    truth = certify(model, point, dt, digits=truth_digits(case))
    base = baseline_gradient(model, point, dt)
    em = baseline_error_model(model, point, np.float32)
    cname, fn = _candidate(case)
    value = {k: np.asarray(v) for k, v in fn(**{k: np.array(v, copy=True) for k, v in point.items()}).items()}
    kw = dict(truth=truth.gradient, baseline=base, dtype=np.float32, case=name, candidate=cname)
    plain = grade(value=value, **kw)
    entry = grade(value=value, error_model=em, **kw)
    out = {"case": name, "candidate": cname, "pass_tau_k": plain.verdict.value, "pass_entry": entry.verdict.value,
           "variables": {v.variable: {"old": v.detection_threshold} for v in plain.variables}}
    for v in entry.variables:
        out["variables"][v.variable]["new"] = v.detection_threshold
    # every (variable, entry), evenly spread
    slots = [(k, i) for k in value for i in range(value[k].size)]
    pick = np.unique(np.linspace(0, len(slots) - 1, min(max_entries, len(slots))).astype(int))
    acc = caught_old = caught_new = 0
    rel_thr = []
    for j in pick:
        k, i = slots[j]
        g = float(np.asarray(truth.gradient[k], dtype=object).reshape(-1)[i]) if not hasattr(truth, "gradient_hi") \
            or truth.gradient_hi is None else float(np.asarray(truth.gradient_hi[k]).reshape(-1)[i])
        b = float(np.asarray(base[k]).reshape(-1)[i])
        if g == 0 or abs(b - g) > 4 * ulp(g, np.float32):
            continue
        acc += 1
        v2 = {kk: vv.copy() for kk, vv in value.items()}
        flat = v2[k].reshape(-1)
        flat[i] = np.float32(float(flat[i]) * (1 + REL))
        caught_old += grade(value=v2, **kw).verdict.value == "fail"
        ge = grade(value=v2, error_model=em, **kw)
        caught_new += ge.verdict.value == "fail"
        vg = next(v for v in ge.variables if v.variable == k)
        thr = vg.tolerance if not ge.wrong else ge.wrong[0].tolerance
        rel_thr.append(thr / abs(g))
    out.update(entries=int(pick.size), accurate=acc, caught_old=int(caught_old), caught_new=int(caught_new),
               median_rel_threshold_new=float(np.median(rel_thr)) if rel_thr else float("nan"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=200)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    rows = [run_one(n, args.entries) for n in CASES]
    print(f"single entry off by {REL:g} relative, float32; accurate = baseline within 4 ulps")
    print(f"{'case':24s} {'correct cand. (tau_k/entry)':28s} {'accurate':>8s} {'caught tau_k':>12s} "
          f"{'caught entry':>12s}  detection threshold per variable (tau_k -> entry)")
    for r in rows:
        det = ", ".join(f"{k} {v['old']:.1e}->{v['new']:.1e}" for k, v in r["variables"].items())
        print(f"{r['case']:24s} {r['pass_tau_k'] + '/' + r['pass_entry']:28s} {r['accurate']:>8d} "
              f"{r['caught_old']:>12d} {r['caught_new']:>12d}  {det}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
