#!/usr/bin/env python
"""Regenerate the error-analysis studies of ``docs/studies/``: pages, tables and figures.

Usage::

    python docs/studies/make_studies.py                 # all seven studies
    python docs/studies/make_studies.py --only v-curve  # one study
    python docs/studies/make_studies.py --quick         # coarse grids (seconds; used by the tests)
    python docs/studies/make_studies.py --out /tmp/d    # write somewhere else than docs/

Every number in the pages comes from verigrad's public machinery
(:func:`verigrad.studies.run_study`, :func:`verigrad.fd.fd_gradient`,
:func:`verigrad.runner.fdcheck.classic_verdict`, :func:`verigrad.grading.grade`,
:func:`verigrad.runner.case.grade_candidate`, :func:`verigrad.report.studyplot.study_axes`);
this script only aggregates (norms, ratios, minima over a grid) and formats.
The pages are rendered from the templates at the bottom of this file, the tables
are also written to ``docs/studies/tables/*.md`` and the key numbers of each
study to ``docs/studies/tables/<study>.json`` (read by ``tests/test_studies_docs.py``).

Each page also lists the *claims* its prose makes about the numbers; they are
checked here, and a claim the numbers no longer support is printed as a warning
(and, with ``--strict``, fails the run), so the prose cannot silently drift from
the data when a case or the engine changes.
"""

from __future__ import annotations

import argparse
import json
import math
import string
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from verigrad.runner.candidates import call_isolated, normalise_gradient
from verigrad.casefile.loader import find_case_files, load_case, load_case_text, point_in_dtype
from verigrad.errors import UsageError, VerigradError
from verigrad.runner.fdcheck import classic_verdict
from verigrad.grading import grade, relative_difference, ulp
from verigrad.engine.model import compile_case
from verigrad.report.studyplot import study_axes
from verigrad.runner.case import baseline_gradient, grade_candidate
from verigrad.schemes import StepMode, default_step_grid, get_scheme
from verigrad.spec import Dtype, Expect
from verigrad.fd import Direction, coordinate_direction, fd_gradient, recommended_step
from verigrad.studies import run_study
from verigrad.runner.candidates import loss_code_evaluator
from verigrad.engine.truth import certify, format_mp

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "cases"
DTYPES = (Dtype.FLOAT32, Dtype.FLOAT64)
DPI = 110

STUDY_NAMES = ("v-curve", "why-eps-1e-7", "float32-false-alarms", "representable-steps",
               "complex-step-richardson", "quadratic-loss", "ridders")


# --------------------------------------------------------------------------------------------
# output context and formatting helpers
# --------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    """Where outputs go and how thorough the sweeps are."""

    root: Path
    quick: bool = False
    strict: bool = False
    failed_claims: list[str] = field(default_factory=list)

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def studies(self) -> Path:
        return self.root / "studies"

    @property
    def tables(self) -> Path:
        return self.root / "studies" / "tables"

    def prepare(self) -> None:
        for d in (self.figures, self.studies, self.tables):
            d.mkdir(parents=True, exist_ok=True)

    def table(self, name: str, md: str) -> str:
        (self.tables / f"{name}.md").write_text(md + "\n", encoding="utf-8")
        return md

    def save(self, fig, name: str) -> str:
        """Write a PNG at DPI, quantised to a 256-colour palette (a third of the size, same look)."""
        import io

        from PIL import Image

        buf = io.BytesIO()
        fig.savefig(buf, dpi=DPI, format="png")
        buf.seek(0)
        img = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        img.save(self.figures / name, format="PNG", optimize=True)
        return f"../figures/{name}"

    def numbers(self, name: str, data: dict) -> None:
        (self.tables / f"{name}.json").write_text(json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n",
                                                  encoding="utf-8")

    def page(self, name: str, template: str, values: dict) -> None:
        text = string.Template(template).substitute(values)
        (self.studies / f"{name}.md").write_text(text.lstrip("\n"), encoding="utf-8")

    def claim(self, ok: bool, text: str, *, full_only: bool = False) -> None:
        """A statement the prose makes about the numbers; warn if the numbers disagree.

        ``full_only`` marks statements that only the full run supports (individual points of the fine
        grids, such as lucky minima; cases left out by ``--quick``); they are not checked with ``--quick``.
        """
        if full_only and self.quick:
            return
        if not ok:
            self.failed_claims.append(text)
            print(f"  WARNING: claim not supported by the numbers: {text}", file=sys.stderr)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def e(x, digits: int = 2) -> str:
    """``1.23e-04``; a dash for NaN/None."""
    if x is None:
        return "—"
    x = float(x)
    if math.isnan(x):
        return "—"
    if x == 0:
        return "0"
    return f"{x:.{digits}e}"


def se(x, digits: int = 2) -> str:
    """Signed ``+1.23e-04``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    x = float(x)
    return "0" if x == 0 else f"{x:+.{digits}e}"


def f2(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{float(x):.{digits}f}"


def md_table(headers, rows, align=None) -> str:
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    sep = {"l": ":---", "r": "---:", "c": ":---:"}
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep[a] for a in align) + " |"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def new_figure(w: float, h: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), constrained_layout=True)


def finite_rows(st):
    return [r for r in st.rows if r.finite]


def nearest_row(st, h):
    """The finite row whose step is nearest to ``h`` on a log scale."""
    rows = finite_rows(st)
    if not rows or not (h and math.isfinite(h) and h > 0):
        return None
    return min(rows, key=lambda r: abs(math.log(r.h / h)))


def best_row(st):
    rows = finite_rows(st)
    return min(rows, key=lambda r: abs(r.error)) if rows else None


def load(name: str):
    case = load_case(CASES / f"{name}.toml")
    return case, compile_case(case)


def candidate_value(model, cand, point, *, timeout: float):
    """Call a candidate in isolation at ``point``; (dict of arrays or None, error text)."""
    call = call_isolated(cand.code, [{k: np.array(v, copy=True) for k, v in point.items()}], timeout=timeout)
    if not call.ok:
        return None, call.error
    value, problems = normalise_gradient(call.values[0], {n: model.shape(n) for n in model.gradient},
                                         f"{model.case.name} › {cand.name}")
    if problems:
        return None, "; ".join(problems)
    return value, ""


def truth_floats(truth) -> dict[str, np.ndarray]:
    return {k: np.array([float(v) for v in a.ravel()], dtype=np.float64).reshape(a.shape)
            for k, a in truth.gradient.items()}


def norm(d) -> float:
    """2-norm over all variables of a dict of arrays (float64 aggregation)."""
    return math.sqrt(sum(float(np.sum(np.asarray(v, np.float64) ** 2)) for v in d.values()))


def diff(a: dict, b: dict) -> dict:
    return {k: np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64) for k in a}


def summarize(st) -> dict:
    """Model vs observation of one study, as plain numbers."""
    m, o = st.model, st.observed
    g = abs(float(st.truth))
    best = best_row(st)
    near = nearest_row(st, m.optimal_step)
    u = float(ulp(float(st.truth), st.dtype.numpy)) if g else float("nan")
    return {
        "scheme": st.scheme.name, "dtype": st.dtype.value, "order": st.scheme.order,
        "sum_abs_weights": float(st.scheme.sum_abs_weights()) if st.scheme.offsets else 1.0,
        "truth": float(st.truth),
        "rule_of_thumb_step": recommended_step(st.scheme, st.dtype),
        "model_h": m.optimal_step, "model_min_error": m.min_error,
        "model_truncation_coefficient": m.truncation_coefficient, "model_truncation_power": m.truncation_power,
        "model_roundoff_coefficient": m.roundoff_coefficient, "model_step_coefficient": m.step_coefficient,
        "noise": m.noise, "truncation_vanishes": m.truncation_vanishes,
        "observed_h": o.optimal_step, "observed_min_error": o.min_error,
        "observed_min_error_ulps": o.min_error / u if u == u and u else float("nan"),
        "slope_truncation": o.slopes.get("truncation"), "slope_roundoff": o.slopes.get("roundoff"),
        "error_near_model_h": abs(near.error) if near else float("nan"),
        "h_near_model_h": near.h if near else float("nan"),
        "best_T": best.truncation if best else float("nan"), "best_S": best.step if best else float("nan"),
        "best_R": best.roundoff if best else float("nan"),
        "rows": len(st.rows), "finite_rows": len(finite_rows(st)), "notes": list(st.notes),
        "max_abs_T": max((abs(r.truncation) for r in finite_rows(st)), default=float("nan")),
        "max_abs_S": max((abs(r.step) for r in finite_rows(st)), default=float("nan")),
        "precision_bits": st.precision,
    }


def split_check(st) -> float:
    """max |E - (T + S + R)| / max(|E|) over the finite rows (the split is exact: this is rounding only)."""
    rows = finite_rows(st)
    big = max((abs(r.error) for r in rows), default=0.0) or 1.0
    return max((abs(r.error - (r.truncation + r.step + r.roundoff)) for r in rows), default=0.0) / big


# --------------------------------------------------------------------------------------------
# 1. the V-curve
# --------------------------------------------------------------------------------------------


def study_v_curve(ctx: Ctx) -> dict:
    case, model = load("squire-trapp")
    lv = loss_code_evaluator(case) if case.loss_code is not None else None
    d = coordinate_direction(model)
    schemes = ("forward", "central", "central4", "complex-step")
    count = 30 if ctx.quick else 60
    studies = []
    for dt in DTYPES:
        for name in schemes:
            sch = get_scheme(name)
            cs = name == "complex-step"
            st = run_study(model, dtype=dt, scheme=sch, direction=d, steps=_v_grid(sch, dt, count),
                           loss_values=None if cs else lv)
            studies.append(st)
    summ = {f"{s.scheme.name}/{s.dtype.value}": summarize(s) for s in studies}
    truth = studies[-1].truth

    # figure 1: all schemes' |E| on one axes per dtype (the "V"s)
    colors = {"forward": "tab:orange", "central": "tab:blue", "central4": "tab:green", "complex-step": "tab:purple"}
    fig = new_figure(9.6, 3.9)
    axes = fig.subplots(1, 2)
    for ax, dt in zip(axes, DTYPES):
        for st in (s for s in studies if s.dtype is dt):
            rows = finite_rows(st)
            h = np.array([r.h for r in rows])
            err = np.array([abs(r.error) / abs(float(st.truth)) for r in rows])
            ok = err > 0
            ax.loglog(h[ok], err[ok], "o-", ms=2.5, lw=1.2, color=colors[st.scheme.name],
                      label=f"{st.scheme.name} (order {st.scheme.order})")
            if math.isfinite(st.model.optimal_step):
                ax.axvline(st.model.optimal_step, color=colors[st.scheme.name], ls=":", lw=0.9)
        ax.axhline(dt.eps, color="gray", lw=0.8, ls="--")
        ax.annotate(f"eps({dt.value})", (ax.get_xlim()[0], dt.eps), xytext=(4, 3), textcoords="offset points",
                    fontsize=7, color="gray")
        ax.set_xlabel("step h")
        ax.set_ylabel("relative error |E| / |f'(1.5)|")
        ax.set_title(f"{dt.value}: dotted lines = model h*", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left" if dt is Dtype.FLOAT32 else "upper left")
    fig.suptitle("squire-trapp: f(x) = e^x / sqrt(sin^3 x + cos^3 x) at x = 1.5", fontsize=10)
    fig_overlay = ctx.save(fig, "v-curve-overlay.png")

    # figure 2: the exact split, one panel per scheme x dtype (verigrad's own study_axes)
    fig = new_figure(8.4, 11.2)
    axes = fig.subplots(len(schemes), 2, squeeze=False)
    handles = {}
    for st in studies:
        i, j = schemes.index(st.scheme.name), DTYPES.index(st.dtype)
        # study_axes frames the panel on the measured error (the truncation arm goes down to 1e-60)
        handles.update(study_axes(axes[i][j], st, legend=False))
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=5, fontsize=7, frameon=False)
    fig.suptitle("squire-trapp at x = 1.5: |E| = |T + S + R| and its parts", fontsize=10)
    fig_split = ctx.save(fig, "v-curve-split.png")

    # tables
    rows = []
    for s in studies:
        k = summ[f"{s.scheme.name}/{s.dtype.value}"]
        rows.append([f"`{k['scheme']}`", k["dtype"], k["order"], e(k["rule_of_thumb_step"]), e(k["model_h"]),
                     e(k["observed_h"]), e(k["model_min_error"]), e(k["observed_min_error"]),
                     e(k["error_near_model_h"]), f2(k["slope_truncation"]),
                     "flat" if s.scheme.name == "complex-step" else f2(k["slope_roundoff"])])
    t_summary = ctx.table("v-curve-summary", md_table(
        ["scheme", "dtype", "p", "default step (eps^(1/(p+1)); eps for the complex step)", "model h*",
         "observed best h", "model min abs(E)",
         "observed min abs(E)", "abs(E) at grid step nearest h*", "slope, truncation arm", "slope, round-off arm"],
        rows))
    rows = []
    for s in studies:
        k = summ[f"{s.scheme.name}/{s.dtype.value}"]
        rows.append([f"`{k['scheme']}`", k["dtype"], se(k["model_truncation_coefficient"]),
                     f"h^{k['model_truncation_power']}", e(k["noise"]), e(k["model_roundoff_coefficient"]),
                     e(k["model_step_coefficient"]), se(k["best_T"]), se(k["best_S"]), se(k["best_R"])])
    t_model = ctx.table("v-curve-model", md_table(
        ["scheme", "dtype", "A (T ≈ A h^p)", "power", "noise ν of f", "B_r (R ≈ B_r/h)", "B_s (abs(S) ≤ B_s/h)",
         "T at best h", "S at best h", "R at best h"], rows))

    f64 = certify(model, point_in_dtype(model.point, Dtype.FLOAT64), Dtype.FLOAT64, digits=20)
    c = summ["central/float64"]
    fwd = summ["forward/float64"]
    c4 = summ["central4/float64"]
    cs64 = summ["complex-step/float64"]
    cs32 = summ["complex-step/float32"]
    fwd32 = summ["forward/float32"]
    u64 = float(ulp(float(truth), np.float64))
    u32 = float(ulp(float(truth), np.float32))
    ctx.claim(abs(c["observed_h"] / c["model_h"] - 1) < 9, "central float64: observed best h within 10x of h*")
    ctx.claim(abs(fwd["slope_truncation"] - 1) < 0.15, "forward truncation slope ~ 1")
    ctx.claim(abs(c["slope_truncation"] - 2) < 0.15, "central truncation slope ~ 2")
    ctx.claim(abs(c4["slope_truncation"] - 4) < 0.3, "central4 truncation slope ~ 4")
    ctx.claim(all(abs(summ[k]["slope_roundoff"] + 1) < 0.15 for k in ("forward/float64", "central/float64",
                                                                       "central4/float64")),
              "float64 round-off slopes ~ -1")
    ctx.claim(cs64["observed_min_error"] < 4 * u64, "complex step float64 within 4 ulps")
    ctx.claim(fwd32["observed_min_error"] < 0.25 * fwd32["error_near_model_h"],
              "float32 forward: observed minimum is a lucky cancellation (4x below the error at h*)", full_only=True)
    ctx.claim(all(summ[k]["error_near_model_h"] <= 1.5 * summ[k]["model_min_error"] for k in summ),
              "the model's minimum error is an upper estimate of the error at h*, up to the noise's scatter",
              full_only=True)
    ctx.claim(max(split_check(s) for s in studies) < 1e-6, "E = T + S + R to rounding")
    numbers = {"truth": format_mp(truth, 20), "ulp64": u64, "ulp32": u32, "studies": summ,
               "split_residual": max(split_check(s) for s in studies), "quick": ctx.quick, "grid_count": count}
    values = {k.replace("-", "_").replace("/", "_") + "_" + f: v
              for k, d_ in summ.items() for f, v in d_.items() if not isinstance(v, (list, dict))}
    fmt = {}
    for k, v in values.items():
        if k.endswith(("slope_truncation", "slope_roundoff")):
            fmt[k] = f2(v)
        elif k.endswith("_ulps"):
            fmt[k] = f2(v, 1)
        else:
            fmt[k] = e(v) if isinstance(v, float) else v
    fmt.update(dict(
        truth=format_mp(truth, 20), t_summary=t_summary, t_model=t_model, fig_overlay=fig_overlay,
        fig_split=fig_split, count=count, u64=e(u64), u32=e(u32),
        cs64_ulps=f2(cs64["observed_min_error"] / u64), cs32_ulps=f2(cs32["observed_min_error"] / u32),
        c64_ratio=f2(c["model_h"] / c["observed_h"], 1), fwd32_luck=f2(fwd32["error_near_model_h"] /
                                                                       fwd32["observed_min_error"], 0),
        split_residual=e(numbers["split_residual"]),
        f3=f"{6 * c['model_truncation_coefficient']:.3g}", fval=f"{float(f64.loss):.4g}",
        c64_T_rel=e(abs(c["best_T"]) / abs(c["observed_min_error"]) if c["observed_min_error"] else float("nan")),
    ))
    ctx.page("v-curve", V_CURVE_PAGE, fmt)
    ctx.numbers("v-curve", numbers)
    return numbers


# --------------------------------------------------------------------------------------------
# 2. why eps = 1e-7?
# --------------------------------------------------------------------------------------------


def _coordinate_studies(model, dt, scheme, steps, lv, *, representable=False, truth=None):
    """One study per coordinate of every variable (the exact split of each entry of the FD gradient)."""
    out = []
    for name in model.gradient:
        for idx in np.ndindex(*model.shape(name)):
            out.append(run_study(model, dtype=dt, scheme=scheme, direction=coordinate_direction(model, name, idx),
                                 steps=steps, loss_values=lv, representable=representable, truth=truth))
    return out


def _assemble(model, studies, k, attr):
    """Per-variable arrays of row ``k``'s ``attr`` over the coordinate studies (NaN for non-finite rows)."""
    out = {n: np.full(model.shape(n), np.nan) for n in model.gradient}
    for st in studies:
        r = st.rows[k]
        out[st.direction.variable][st.direction.index] = getattr(r, attr) if (r.finite or attr == "estimate") \
            else np.nan
    return out


def _metrics(g: dict, gt: dict) -> dict:
    """The variants of the relative difference between a gradient g and an FD gradient gt."""
    num = norm(diff(g, gt))
    ng, ngt = norm(g), norm(gt)
    n = sum(np.asarray(v).size for v in g.values())
    return {"symmetric": relative_difference(g, gt), "over_2g": num / (2 * ng), "over_g": num / ng,
            "rms": num / math.sqrt(n), "numerator": num, "norm_g": ng, "norm_fd": ngt, "N": n}


def study_why_eps(ctx: Ctx) -> dict:
    case, model = load("gradient-checking-3layer")
    lv = loss_code_evaluator(case)
    eps = 1e-7
    per_decade = 2 if ctx.quick else 4
    steps = np.logspace(-12, -1, 11 * per_decade + 1)
    steps[np.argmin(abs(np.log10(steps) + 7))] = eps  # exactly the exercise's step
    k7 = int(np.flatnonzero(steps == eps)[0])
    scheme = get_scheme("central")
    cands = {c.name: c for c in case.candidates}
    good = next(c for c in case.candidates if c.expect is Expect.PASS)
    buggy = [c for c in case.candidates if c.expect is Expect.FAIL]
    timeout = case.limits.candidate_seconds
    res: dict = {"dtypes": {}}
    sweeps = {}
    for dt in (Dtype.FLOAT64, Dtype.FLOAT32):
        point = point_in_dtype(model.point, dt)
        truth = certify(model, point, dt, digits=max(case.check.digits, 20))
        gstar = truth_floats(truth)
        base = baseline_gradient(model, point, dt)
        grades = {c.name: grade_candidate(model, c, truth, base, timeout=timeout) for c in case.candidates}
        values = {c.name: candidate_value(model, c, point, timeout=timeout)[0] for c in case.candidates}
        # the exercise's own computation: central differences of forward_propagation_n at eps, all coordinates
        fd7 = fd_gradient(model, dtype=dt, scheme=scheme, step=eps, step_mode=StepMode.ABSOLUTE, loss_values=lv)
        studies = _coordinate_studies(model, dt, scheme, steps, lv)
        # the per-coordinate studies reproduce fd_gradient's estimates exactly (same nodes, same arithmetic)
        est7 = _assemble(model, studies, k7, "estimate")
        same = all(np.array_equal(np.asarray(est7[n], dtype=dt.numpy), fd7[n]) for n in fd7)
        sweep = []
        for k, h in enumerate(steps):
            est = _assemble(model, studies, k, "estimate")
            parts = {a: _assemble(model, studies, k, a) for a in ("error", "truncation", "step", "roundoff")}
            ok = all(np.all(np.isfinite(v)) for v in est.values())
            m = _metrics(values[good.name], est) if ok else None
            den = norm(values[good.name]) + norm(est) if ok else float("nan")
            flat_zero = sum(1 for st in studies if st.rows[k].estimate == 0 and float(st.truth) != 0)
            crossing = sum(1 for st in studies if not st.rows[k].finite and math.isfinite(st.rows[k].estimate))
            sweep.append({"eps": float(h), "finite": ok, "rd": m["symmetric"] if m else float("nan"),
                          "fd_zero_live": flat_zero, "excluded": crossing,
                          "E": norm(parts["error"]), "T": norm(parts["truncation"]), "S": norm(parts["step"]),
                          "R": norm(parts["roundoff"]), "den": den,
                          "rd_truth": relative_difference(gstar, est) if ok else float("nan")})
        # model: each coordinate's StudyModel predicts |T|, |S|, |R|; aggregate the norms
        hh = np.logspace(-12, -1, 441)
        pred = {key: np.zeros_like(hh) for key in ("truncation", "roundoff", "step", "total")}
        for st in studies:
            p = st.model.predict(hh)
            for key in pred:
                pred[key] += p[key] ** 2
        pred = {key: np.sqrt(v) for key, v in pred.items()}
        ng = norm(gstar)
        model_rd = pred["total"] / (2 * ng)
        i_model = int(np.argmin(model_rd))
        fin = [s for s in sweep if s["finite"]]
        best = min(fin, key=lambda s: s["rd"])
        kbest = [s["eps"] for s in sweep].index(best["eps"])
        est_best = _assemble(model, studies, kbest, "estimate")
        # per-coordinate split at eps = 1e-7
        coords = []
        for st in studies:
            r = st.rows[k7]
            coords.append({"label": st.direction.label, "g": float(st.truth), "E": r.error, "T": r.truncation,
                           "S": r.step, "R": r.roundoff, "noise": r.noise, "h_star": st.model.optimal_step,
                           "vanishes": st.model.truncation_vanishes})
        # per-variable view at eps = 1e-7 (the same metric on blocks of different sizes)
        per_var = []
        for n in model.gradient:
            gv, fv = {n: values[good.name][n]}, {n: fd7[n]}
            mm = _metrics(gv, fv)
            per_var.append({"variable": n, "N": mm["N"], "norm_g": mm["norm_g"], "symmetric": mm["symmetric"],
                            "rms": mm["rms"]})
        # the classic check for every candidate at eps = 1e-7 and at the best eps
        classic = {}
        for c in case.candidates:
            v = values[c.name]
            tp = grades[c.name].verdict == "pass"
            classic[c.name] = {
                "verigrad": grades[c.name].verdict, "expect": c.expect.value,
                "at_1e-7": classic_verdict(v, fd7, truth_verdict_pass=tp, threshold=1e-7),
                "at_1e-7_thr_2e-7": classic_verdict(v, fd7, truth_verdict_pass=tp, threshold=2e-7),
                "at_best": classic_verdict(v, est_best, truth_verdict_pass=tp, threshold=1e-7),
                "metrics_1e-7": _metrics(v, fd7), "metrics_best": _metrics(v, est_best),
                "messages": grades[c.name].grade.messages()[:4] if grades[c.name].grade is not None else
                [grades[c.name].message],
                "returned_dtype": grades[c.name].grade.returned_dtype if grades[c.name].grade is not None else "?",
                "normwise": grades[c.name].grade.normwise_relative if grades[c.name].grade is not None else None,
            }
        sweeps[dt] = (sweep, hh, pred, ng, model_rd)
        a3 = np.asarray(model.float_eval([model.defines["A3"]], point, dt.numpy)[0], np.float64).ravel()
        s7 = sweep[k7]
        res["dtypes"][dt.value] = {
            "fd_gradient_matches_studies": same, "norm_gstar": ng, "at_1e-7": s7, "best": best,
            "model_best_eps": float(hh[i_model]), "model_best_rd": float(model_rd[i_model]),
            "model_rd_at_1e-7": float(np.interp(math.log(eps), np.log(hh), model_rd)),
            "classic": classic, "coords": coords, "per_variable": per_var,
            "median_coordinate_h_star": float(np.nanmedian([c["h_star"] for c in coords])),
            "n_vanishing": sum(1 for c in coords if c["vanishes"]),
            "fd7_vs_truth_normwise": norm(diff(fd7, gstar)) / ng,
            "sweep": sweep,
            "loss_noise_median": float(np.median([c["noise"] for c in coords if c["g"] != 0])),
            "loss": float(truth.loss), "loss_ulp": float(ulp(float(truth.loss), dt.numpy)),
            "dead_exact_zero": all(c["E"] == 0 for c in coords if c["g"] == 0),
            "n_zero_truth": sum(1 for c in coords if c["g"] == 0),
            "A3": a3.tolist(), "A3_spacing": [float(np.spacing(dt.numpy.type(v))) for v in a3],
        }
    return _why_eps_render(ctx, res, sweeps, steps, k7, good.name, [b.name for b in buggy])


def _why_eps_render(ctx: Ctx, res, sweeps, steps, k7, good, buggy) -> dict:
    d64, d32 = res["dtypes"]["float64"], res["dtypes"]["float32"]

    # figure: relative difference vs eps and its parts, per dtype
    fig = new_figure(9.6, 4.0)
    axes = fig.subplots(1, 2)
    for ax, dt in zip(axes, (Dtype.FLOAT64, Dtype.FLOAT32)):
        sweep, hh, pred, ng, model_rd = sweeps[dt]
        h = np.array([s["eps"] for s in sweep])
        rd = np.array([s["rd"] for s in sweep])
        den = np.array([s["den"] for s in sweep])
        ax.loglog(h, rd, "o-", color="black", ms=3, lw=1.6, label="relative difference (backprop vs FD)")
        for key, col, lab in (("T", "tab:blue", "‖T‖ / den  truncation"), ("S", "tab:green", "‖S‖ / den  step"),
                              ("R", "tab:red", "‖R‖ / den  round-off")):
            v = np.array([s[key] for s in sweep]) / den
            ok = v > 0
            ax.loglog(h[ok], v[ok], ".-", color=col, lw=0.9, ms=3, alpha=0.85, label=lab)
        ax.loglog(hh, model_rd, "--", color="gray", lw=0.9, label="model (sum of the coordinates' StudyModels)")
        ax.axhline(1e-7, color="tab:purple", lw=0.8, ls=":")
        ax.axvline(1e-7, color="tab:purple", lw=0.8, ls=":")
        ax.annotate("threshold 1e-7", (h[0], 1e-7), xytext=(2, 3), textcoords="offset points", fontsize=7,
                    color="tab:purple")
        ax.set_ylim(1e-12, 2)
        ax.set_xlabel("eps (central difference, absolute step)")
        ax.set_ylabel("‖g − g̃‖ / (‖g‖ + ‖g̃‖)")
        ax.set_title(f"{dt.value}", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        if dt is Dtype.FLOAT64:
            ax.legend(fontsize=6.5, loc="upper center")
    fig.suptitle("gradient-checking-3layer (47 parameters): what the exercise's 'difference' measures", fontsize=10)
    fig_sweep = ctx.save(fig, "why-eps-1e-7.png")

    # table: the exercise's numbers at eps = 1e-7
    rows = []
    for dtv, dd in (("float64", d64), ("float32", d32)):
        for name, c in dd["classic"].items():
            rows.append([f"`{name}`", dtv, c["returned_dtype"], e(c["metrics_1e-7"]["symmetric"], 10)
                         if dtv == "float64" and name != good else e(c["metrics_1e-7"]["symmetric"], 4),
                         "pass" if c["at_1e-7"]["classic_pass"] else "fail",
                         "pass" if c["at_1e-7_thr_2e-7"]["classic_pass"] else "fail",
                         c["verigrad"], c["at_1e-7"]["outcome"]])
    t_exercise = ctx.table("why-eps-exercise", md_table(
        ["candidate", "dtype", "returned dtype", "difference at eps = 1e-7", "classic < 1e-7",
         "exercise < 2e-7", "verigrad (exact truth)", "classic check vs verigrad"], rows))

    # table: the numerator split at eps = 1e-7
    rows = []
    for dtv, dd in (("float64", d64), ("float32", d32)):
        s = dd["at_1e-7"]
        rows.append([dtv, e(s["rd"], 4), e(s["E"]), e(s["T"]), e(s["S"]), e(s["R"]), e(s["den"]),
                     e(dd["model_rd_at_1e-7"])])
    t_split = ctx.table("why-eps-split", md_table(
        ["dtype", "difference", "‖E‖ = ‖g* − g̃‖", "‖T‖ truncation", "‖S‖ step", "‖R‖ round-off",
         "‖g‖ + ‖g̃‖", "model difference"], rows))

    # table: the five coordinates with the largest |E| at eps = 1e-7 (float64)
    rows = []
    for c in sorted(d64["coords"], key=lambda c: -abs(c["E"]))[:6]:
        rows.append([f"`{c['label']}`", se(c["g"], 4), se(c["E"]), se(c["T"]), se(c["S"]), se(c["R"]),
                     e(c["noise"])])
    t_coords = ctx.table("why-eps-coordinates", md_table(
        ["entry", "g* (exact)", "E", "T", "S", "R", "noise of f at the nodes"], rows))

    # table: the sweep (every other grid point)
    rows = []
    s64, s32 = sweeps[Dtype.FLOAT64][0], sweeps[Dtype.FLOAT32][0]
    per = max(1, round((len(steps) - 1) / 11))  # one row per decade
    for k in range(0, len(steps), per):
        a, b = s64[k], s32[k]
        def dominant(row):
            if row["excluded"]:
                return f"({row['excluded']} entries: stencil across a kink)"
            return max(("T", "S", "R"), key=lambda p: row[p])

        dom, dom32 = dominant(a), dominant(b)
        rows.append([e(steps[k], 0) if steps[k] != 1e-7 else "**1e-07**", e(a["rd"]), dom, e(b["rd"]), dom32,
                     b["fd_zero_live"]])
    t_sweep = ctx.table("why-eps-sweep", md_table(
        ["eps", "difference, float64", "largest part", "difference, float32", "largest part",
         "float32: entries with FD = 0 exactly (of %d nonzero)" % sum(1 for c in d32["coords"] if c["g"] != 0)],
        rows))

    # table: denominators
    rows = []
    for dtv, dd in (("float64", d64), ("float32", d32)):
        for name in [good] + buggy[:1]:
            c = dd["classic"][name]
            for where, key, epsv in (("1e-7", "metrics_1e-7", 1e-7), ("best", "metrics_best", dd["best"]["eps"])):
                if name != good and where == "best":
                    continue
                m = c[key]
                rows.append([f"`{name}`", dtv, e(epsv, 1), e(m["symmetric"]), e(m["over_2g"]), e(m["over_g"]),
                             e(m["rms"]), e(m["numerator"])])
    t_den = ctx.table("why-eps-denominators", md_table(
        ["candidate", "dtype", "eps", "‖g−g̃‖/(‖g‖+‖g̃‖)", "‖g−g̃‖/(2‖g‖)", "‖g−g̃‖/‖g‖",
         "‖g−g̃‖/√N",
         "‖g−g̃‖"], rows))

    rows = []
    for pv in d64["per_variable"]:
        rows.append([f"`{pv['variable']}`", pv["N"], e(pv["norm_g"]), e(pv["symmetric"]), e(pv["rms"])])
    t_blocks = ctx.table("why-eps-blocks", md_table(
        ["variable", "N", "‖g‖", "difference on this block", "‖g−g̃‖/√N on this block"], rows))

    s7 = d64["at_1e-7"]
    i3 = int(np.argmax(d32["A3"]))
    a3_max, a3_sp = d32["A3"][i3], d32["A3_spacing"][i3]
    k_dec = len(steps) - 1 - per  # one decade below the largest eps
    ctx.claim(s64[-1]["rd"] > 10 * s64[k_dec]["rd"] * (s64[-1]["eps"] / s64[k_dec]["eps"]) ** 2,
              "at the largest eps the difference jumps above the eps^2 law (a ReLU kink)")
    ctx.claim(sorted(pv["variable"] for pv in d64["per_variable"] if pv["symmetric"] > 2e-7) == ["b1", "b3"],
              "blocks b1 and b3 fail 2e-7")
    ctx.claim(all(pv["symmetric"] < 2e-7 for pv in d64["per_variable"] if pv["variable"] == "W2"),
              "W2 block passes")
    ctx.claim(all(s["fd_zero_live"] > 0 for s in s32 if 1e-8 < s["eps"] < 1e-4),
              "float32: some live entries have FD = 0 exactly for every eps between 1e-8 and 1e-4")
    ctx.claim(d64["fd_gradient_matches_studies"] and d32["fd_gradient_matches_studies"],
              "the per-coordinate studies reproduce fd_gradient bit for bit")
    ctx.claim(s7["R"] > 10 * max(s7["T"], s7["S"]), "float64 eps=1e-7: round-off dominates the numerator")
    ctx.claim(s7["T"] < 1e-6 * s7["R"], "float64 eps=1e-7: truncation is negligible (1e-6 of R)")
    ctx.claim(1e-5 < d64["best"]["eps"] < 1e-3, "float64 optimum eps between 1e-5 and 1e-3")
    ctx.claim(d64["best"]["rd"] < 1e-8, "float64 optimum difference below 1e-8")
    ctx.claim(d32["best"]["rd"] > 1e-5, "float32 never gets below 1e-5")
    ctx.claim(d32["at_1e-7"]["rd"] > 0.1, "float32 at eps = 1e-7 is garbage (> 0.1)")
    ctx.claim(all(s["rd"] == 1.0 for s in sweeps[Dtype.FLOAT32][0][:4]),
              "float32 tiny eps: difference exactly 1 (FD = 0)")
    gcl = d64["classic"][good]
    ctx.claim(not gcl["at_1e-7"]["classic_pass"] and gcl["at_1e-7_thr_2e-7"]["classic_pass"],
              "the correct backprop fails 1e-7 and passes the exercise's 2e-7 in float64")
    ctx.claim(all(d64["classic"][b]["at_1e-7"]["outcome"] == "agree" for b in buggy),
              "the classic check catches the buggy backprops in float64")
    ctx.claim(d64["n_vanishing"] > 0, "some coordinates have vanishing truncation (dead units)")
    ctx.claim(d64["dead_exact_zero"] and d32["dead_exact_zero"], "entries with g* = 0 have E = 0 exactly")
    ctx.claim(d64["classic"][good]["normwise"] < 1e-14, "the float64 backprop itself is accurate to 1e-14")
    ctx.claim(d64["best"]["rd"] < d64["at_1e-7"]["rd"] / 100, "the best eps is 100x better than 1e-7 in float64")

    bug = d64["classic"][buggy[0]]
    fmt = dict(
        fig_sweep=fig_sweep, t_exercise=t_exercise, t_split=t_split, t_coords=t_coords, t_sweep=t_sweep,
        t_den=t_den, t_blocks=t_blocks,
        rd64=e(s7["rd"], 4), rd64_full=repr(s7["rd"]), rd32=e(d32["at_1e-7"]["rd"]),
        bug_rd=repr(bug["metrics_1e-7"]["symmetric"]),
        bug_rd_fdgrade=repr(bug["at_1e-7"]["relative_difference"]),
        bug_over_noise=e(bug["metrics_1e-7"]["symmetric"] / s7["rd"], 0),
        g_rms=f2(d64["norm_gstar"] / math.sqrt(len(d64["coords"]))),
        E64=e(s7["E"]), T64=e(s7["T"]), S64=e(s7["S"]), R64=e(s7["R"]), R_share=f2(100 * s7["R"] / s7["E"], 2),
        TR_ratio=e(s7["T"] / s7["R"], 1),
        best64=e(d64["best"]["eps"], 1), best64_rd=e(d64["best"]["rd"]), best32=e(d32["best"]["eps"], 1),
        best32_rd=e(d32["best"]["rd"]), model64=e(d64["model_best_eps"], 1), model64_rd=e(d64["model_best_rd"]),
        model32=e(d32["model_best_eps"], 1), model32_rd=e(d32["model_best_rd"]),
        model_rd7=e(d64["model_rd_at_1e-7"]),
        hstar_med=e(d64["median_coordinate_h_star"], 1), hstar_med32=e(d32["median_coordinate_h_star"], 1),
        n_vanish=d64["n_vanishing"], norm_g=e(d64["norm_gstar"], 3),
        noise64=e(d64["loss_noise_median"]), noise32=e(d32["loss_noise_median"]),
        fd7_rel=e(d64["fd7_vs_truth_normwise"]), fd7_rel32=e(d32["fd7_vs_truth_normwise"]),
        bug_msgs="\n".join(bug["messages"]),
        good=good, buggy=buggy[0], gain=f2(s7["rd"] / d64["best"]["rd"], 0),
        good32_ret=d32["classic"][good]["returned_dtype"],
        margin=f2(2e-7 / s7["rd"], 1),
        blocks_fail=" and ".join(f"`{pv['variable']}`" for pv in d64["per_variable"] if pv["symmetric"] > 2e-7),
        a3=f"{a3_max:.5f}", one_minus_a3=f"{1 - a3_max:.3g}", a3_spacing=e(a3_sp, 1),
        a3_rel=e(a3_sp / (1 - a3_max), 1),
        rd_last=e(s64[-1]["rd"]), eps_last=e(s64[-1]["eps"], 0),
        rd_last_pred=e(s64[k_dec]["rd"] * (s64[-1]["eps"] / s64[k_dec]["eps"]) ** 2),
        good_err64=e(d64["classic"][good]["normwise"]), good_err32=e(d32["classic"][good]["normwise"]),
        loss64=f"{d64['loss']:.6g}", loss_ulp64=e(d64["loss_ulp"]),
        noise_ulps=f2(d64["loss_noise_median"] / d64["loss_ulp"], 0), n_zero=d64["n_zero_truth"],
        n_live=len(d64["coords"]) - d64["n_zero_truth"], N=len(d64["coords"]),
        noise32_rel=e(d32["loss_noise_median"] / d32["loss"]),
        quick=ctx.quick,
    )
    ctx.page("why-eps-1e-7", WHY_EPS_PAGE, fmt)
    out = {k: v for k, v in res.items()}
    ctx.numbers("why-eps-1e-7", out)
    return out


# --------------------------------------------------------------------------------------------
# 3. float32 false alarms of fixed-tolerance checkers
# --------------------------------------------------------------------------------------------

#: The checkers' documented defaults (see the page for the sources).
CHECKERS = (
    {"key": "gradcheck", "label": "PyTorch `gradcheck`", "scheme": "central", "step": 1e-6,
     "rule": "every entry: abs(a − n) ≤ 1e-5 + 1e-3·abs(n)", "atol": 1e-5, "rtol": 1e-3},
    {"key": "jax", "label": "JAX `check_grads`", "scheme": "central", "step": 1e-4,
     "rule": "JVP along a random tangent: abs(a − n) ≤ tol + tol·abs(n), tol = 2e-3 (float32) / 1e-5 (float64)",
     "tol": {"float32": 2e-3, "float64": 1e-5}},
    {"key": "scipy", "label": "SciPy `check_grad`", "scheme": "forward", "step": 2.0 ** -26,
     "rule": "‖a − n‖₂ < 1.5e-7", "threshold": 1.5e-7},
    {"key": "classic", "label": "classic relative difference", "scheme": "central", "step": 1e-7,
     "rule": "‖a − n‖ / (‖a‖ + ‖n‖) < 1e-7", "threshold": 1e-7},
)


def _jax_tangent(model, dt: Dtype) -> Direction:
    """JAX's tangent: ``np.random.RandomState(0).randn`` per variable, in the dtype (not normalised)."""
    rng = np.random.RandomState(0)
    vec = {n: np.asarray(rng.randn(*model.shape(n)), dtype=dt.numpy).astype(np.float64) for n in model.gradient}
    return Direction("jax tangent (RandomState(0), unnormalised)", vec)


def _checker_verdict(chk, dt: Dtype, value: dict, oracle, gstar) -> dict:
    """Apply one checker's rule to a candidate value and the checker's own finite difference."""
    with np.errstate(all="ignore"):
        if chk["key"] == "jax":
            st, tangent = oracle
            r = st.rows[0]
            n = float(r.estimate)
            a = sum(float(np.sum(np.asarray(value[k], np.float64) * tangent.vector[k])) for k in value)
            tol = chk["tol"][dt.value]
            metric = abs(a - n) / (tol + tol * abs(n))
            fd_err = abs(n - float(st.truth)) / abs(float(st.truth)) if float(st.truth) else abs(n)
            return {"metric": metric, "passed": bool(metric <= 1), "value": abs(a - n), "fd_error": fd_err}
        fd = oracle
        fd_err = norm(diff(fd, gstar)) / norm(gstar) if norm(gstar) else norm(fd)
        if chk["key"] == "gradcheck":
            worst = max(float(np.max(np.abs(np.asarray(value[k], np.float64) - np.asarray(fd[k], np.float64))
                                     / (chk["atol"] + chk["rtol"] * np.abs(np.asarray(fd[k], np.float64)))))
                        for k in value)
            return {"metric": worst, "passed": bool(worst <= 1), "value": worst, "fd_error": fd_err}
        if chk["key"] == "scipy":
            v = norm(diff(value, fd))
            return {"metric": v / chk["threshold"], "passed": bool(v < chk["threshold"]), "value": v,
                    "fd_error": fd_err}
        out = classic_verdict(value, fd, truth_verdict_pass=True, threshold=chk["threshold"])
        v = out["relative_difference"]
        return {"metric": v / chk["threshold"], "passed": bool(out["classic_pass"]), "value": v, "fd_error": fd_err}


OUTCOMES = ("FALSE ALARM", "ok", "disputed", "n/a", "missed", "both fail")


def _expectation(cand, dt: Dtype) -> Expect:
    """The case file's expectation for ``cand`` in ``dt`` (per-dtype expectations where the engine has them)."""
    return cand.expectation(dt) if hasattr(cand, "expectation") else cand.expect


def _outcome(checker_pass: bool, verigrad_pass: bool, *, expected_pass: bool = True,
             inaccurate: bool = False) -> str:
    """``FALSE ALARM``: the checker fails a gradient verigrad passes.  ``disputed``: verigrad passes a
    gradient that has an entry without a correct digit (as accurate as the formula allows in the dtype,
    with a warning), and the checker fails it.  ``n/a``: the case expects a failure in this dtype."""
    if not expected_pass:
        return "n/a"
    if verigrad_pass:
        if checker_pass:
            return "ok"
        return "disputed" if inaccurate else "FALSE ALARM"
    return "missed" if checker_pass else "both fail"


def study_false_alarms(ctx: Ctx) -> dict:
    files = find_case_files([CASES])
    if ctx.quick:
        files = [f for f in files if f.stem in ("squire-trapp", "linear-regression", "logsumexp-large")]
    cases = []
    for path in files:
        entry = {"case": path.stem, "file": f"cases/{path.name}", "error": "", "candidates": []}
        cases.append(entry)
        try:
            case = load_case(path)
            model = compile_case(case)
        except VerigradError as exc:
            entry["error"] = str(exc).splitlines()[0]
            continue
        entry["case"] = case.name
        entry["loss_code"] = case.loss_code is not None
        entry["N"] = case.parameter_count
        lv = loss_code_evaluator(case) if case.loss_code is not None else None
        passing = [c for c in case.candidates if any(_expectation(c, dt) is Expect.PASS for dt in DTYPES)]
        per_dtype = {}
        try:
            for dt in DTYPES:
                point = point_in_dtype(model.point, dt)
                truth = certify(model, point, dt, digits=max(case.check.digits, 20))
                gstar = truth_floats(truth)
                base = baseline_gradient(model, point, dt)
                oracles = {}
                for chk in CHECKERS:
                    try:
                        if chk["key"] == "scipy" and dt is Dtype.FLOAT64:
                            # approx_fprime divides by dx = (x0 + h) - x0 computed in float64: the
                            # representable step (S = 0), one entry at a time
                            t_fine = certify(model, point, dt, digits=40)
                            sts = _coordinate_studies(model, dt, get_scheme(chk["scheme"]), [chk["step"]], lv,
                                                      representable=True, truth=t_fine)
                            oracles[chk["key"]] = _assemble(model, sts, 0, "estimate")
                        elif chk["key"] == "jax":
                            tangent = _jax_tangent(model, dt)
                            st = run_study(model, dtype=dt, scheme=chk["scheme"], direction=tangent,
                                           steps=[chk["step"]], loss_values=lv, truth=truth)
                            oracles[chk["key"]] = (st, tangent)
                        else:
                            oracles[chk["key"]] = fd_gradient(model, dtype=dt, scheme=chk["scheme"], step=chk["step"],
                                                              step_mode=StepMode.ABSOLUTE, loss_values=lv)
                    except VerigradError as exc:
                        oracles[chk["key"]] = exc
                per_dtype[dt] = (truth, gstar, base, oracles)
        except VerigradError as exc:
            entry["error"] = str(exc).splitlines()[0]
            continue
        for cand in passing:
            ce = {"candidate": cand.name, "dtypes": {}}
            for dt in DTYPES:
                truth, gstar, base, oracles = per_dtype[dt]
                res = grade_candidate(model, cand, truth, base, timeout=case.limits.candidate_seconds)
                value, err = candidate_value(model, cand, truth.point, timeout=case.limits.candidate_seconds)
                de = {"verigrad": res.verdict, "verigrad_message": res.message.splitlines()[0] if res.message else "",
                      "checkers": {}, "expect": _expectation(cand, dt).value,
                      "max_rel": res.grade.errors.max_rel if res.grade is not None else float("nan"),
                      "warnings": list(res.grade.warnings) if res.grade is not None else []}
                vpass = res.verdict == "pass"
                how = {"expected_pass": de["expect"] == "pass", "inaccurate": de["max_rel"] >= 1}
                for chk in CHECKERS:
                    o = oracles[chk["key"]]
                    if value is None or isinstance(o, Exception):
                        why = err if value is None else str(o).splitlines()[0]
                        de["checkers"][chk["key"]] = {"metric": float("nan"), "passed": False, "value": float("nan"),
                                                     "fd_error": float("nan"), "error": why,
                                                     "outcome": _outcome(False, vpass, **how)}
                        continue
                    v = _checker_verdict(chk, dt, value, o, gstar)
                    v["outcome"] = _outcome(v["passed"], vpass, **how)
                    de["checkers"][chk["key"]] = v
                ce["dtypes"][dt.value] = de
            entry["candidates"].append(ce)
    return _false_alarms_render(ctx, cases)


def _false_alarms_render(ctx: Ctx, cases) -> dict:
    keys = [c["key"] for c in CHECKERS]
    # summary table: one row per (case, passing candidate), float32 outcome per checker
    rows = []
    counts = {dt.value: {k: dict.fromkeys(OUTCOMES, 0) for k in keys} for dt in DTYPES}
    disputed = []
    n_graded = {dt.value: 0 for dt in DTYPES}
    verigrad_disagrees = []
    for c in cases:
        if c["error"]:
            rows.append([f"`{c['case']}`", "—", "case error"] + ["—"] * len(keys))
            continue
        for ce in c["candidates"]:
            d32 = ce["dtypes"]["float32"]
            for dtv, de in ce["dtypes"].items():
                if de["expect"] != "pass":
                    continue
                if de["verigrad"] != "pass":
                    verigrad_disagrees.append((c["case"], ce["candidate"], dtv, de["verigrad"],
                                               de["verigrad_message"]))
                if any(v["outcome"] == "disputed" for v in de["checkers"].values()):
                    disputed.append((c["case"], ce["candidate"], dtv, de["max_rel"], de["warnings"]))
                n_graded[dtv] += 1
                for k in keys:
                    counts[dtv][k][de["checkers"][k]["outcome"]] += 1
            cells = []
            for k in keys:
                o = d32["checkers"][k]
                mark = {"FALSE ALARM": "**false alarm**", "ok": "ok", "missed": "missed", "both fail": "both fail",
                        "disputed": "disputed", "n/a": "n/a (expected to fail)"}
                cells.append(mark[o["outcome"]] if o["outcome"] == "n/a" else f"{mark[o['outcome']]} ({e(o['metric'], 1)})")
            rows.append([f"`{c['case']}`", f"`{ce['candidate']}`", d32["verigrad"]] + cells)
    t_summary = ctx.table("false-alarms-summary", md_table(
        ["case", "correct candidate", "verigrad (float32)"] + [c["label"] for c in CHECKERS], rows))

    rows = []
    for dt in DTYPES:
        rows.append([dt.value, n_graded[dt.value]] + [
            f"{counts[dt.value][k]['FALSE ALARM']} false alarm(s), {counts[dt.value][k]['ok']} ok"
            + "".join(f", {counts[dt.value][k][o]} {o}" for o in ("disputed", "both fail", "missed")
                      if counts[dt.value][k][o])
            for k in keys])
    t_counts = ctx.table("false-alarms-counts", md_table(
        ["dtype", "correct candidates"] + [c["label"] for c in CHECKERS], rows))

    # per-case tables
    blocks = []
    for c in cases:
        if c["error"]:
            blocks.append(f"### `{c['case']}`\n\nThe case could not be loaded: `{c['error']}`\n")
            continue
        for ce in c["candidates"]:
            head = (f"### `{c['case']}` › `{ce['candidate']}`\n\n"
                    f"{c['N']} parameters; finite differences of "
                    f"{'the case’s own `loss_code`' if c['loss_code'] else 'the loss expression'}. verigrad: "
                    f"**{ce['dtypes']['float32']['verigrad']}** in float32, "
                    f"**{ce['dtypes']['float64']['verigrad']}** in float64.\n")
            rows = []
            for chk in CHECKERS:
                a = ce["dtypes"]["float32"]["checkers"][chk["key"]]
                b = ce["dtypes"]["float64"]["checkers"][chk["key"]]
                rows.append([chk["label"], e(a["value"]), "pass" if a["passed"] else "fail", e(a["fd_error"]),
                             a["outcome"] if a["outcome"] != "FALSE ALARM" else "**FALSE ALARM**",
                             e(b["value"]), "pass" if b["passed"] else "fail",
                             b["outcome"] if b["outcome"] != "FALSE ALARM" else "**FALSE ALARM**"])
            blocks.append(head + "\n" + md_table(
                ["checker", "float32 value", "float32 check", "its FD's error vs truth", "float32 vs verigrad",
                 "float64 value", "float64 check", "float64 vs verigrad"], rows) + "\n")
    t_cases = ctx.table("false-alarms-cases", "\n".join(blocks))

    # figure: metric / threshold per case, per checker, float32 (filled) vs float64 (hollow)
    labels, m32, m64 = [], {k: [] for k in keys}, {k: [] for k in keys}
    for c in cases:
        if c["error"]:
            continue
        for ce in c["candidates"]:
            lab = c["case"] if len(c["candidates"]) == 1 else f"{c['case']} ({ce['candidate']})"
            if any(de["expect"] == "pass" and de["verigrad"] != "pass" for de in ce["dtypes"].values()):
                lab += " [verigrad: fail]"
            if any(de["expect"] != "pass" for de in ce["dtypes"].values()):
                lab += " [" + ", ".join(f"{dtv} only" for dtv, de in ce["dtypes"].items()
                                       if de["expect"] == "pass") + "]"
            labels.append(lab)
            for k in keys:
                for store, dtv in ((m32, "float32"), (m64, "float64")):
                    de = ce["dtypes"][dtv]
                    # -inf marks "not drawn": the case expects this candidate to fail in this dtype
                    store[k].append(de["checkers"][k]["metric"] if de["expect"] == "pass" else -np.inf)
    fig = new_figure(9.6, 0.26 * len(labels) + 1.6)
    ax = fig.subplots(1, 1)
    y = np.arange(len(labels))
    markers = {"gradcheck": "o", "jax": "s", "scipy": "^", "classic": "D"}
    colors = {"gradcheck": "tab:red", "jax": "tab:blue", "scipy": "tab:green", "classic": "tab:purple"}
    lo, hi = 1e-6, 1e12
    for j, chk in enumerate(CHECKERS):
        k = chk["key"]
        off = (j - 1.5) * 0.17
        a32, a64 = np.array(m32[k], float), np.array(m64[k], float)
        k32, k64 = a32 != -np.inf, a64 != -np.inf
        v32 = np.clip(np.nan_to_num(a32[k32], nan=hi), lo, hi)
        v64 = np.clip(np.nan_to_num(a64[k64], nan=hi), lo, hi)
        name = chk["label"].replace("`", "")
        ax.scatter(v32, (y + off)[k32], marker=markers[k], color=colors[k], s=16, label=f"{name} · float32")
        ax.scatter(v64, (y + off)[k64], marker=markers[k], facecolors="none", edgecolors=colors[k], s=16, lw=0.8,
                   label=f"{name} · float64")
    ax.axvline(1, color="black", lw=1)
    ax.set_xscale("log")
    ax.set_xlim(lo / 2, hi * 2)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("checker's measure / its threshold  (> 1: the checker fails the gradient; NaN at the right edge, "
                  "≤ 1e-6 at the left)", fontsize=8.5)
    ax.set_title("correct gradients only: every point right of the line is a false alarm (verigrad: pass)", fontsize=9)
    ax.grid(True, axis="x", which="major", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=6.5, ncol=4, loc="outside lower center")
    fig_scatter = ctx.save(fig, "float32-false-alarms.png")

    fa32 = sum(counts["float32"][k]["FALSE ALARM"] for k in keys)
    fa64 = sum(counts["float64"][k]["FALSE ALARM"] for k in keys)
    ctx.claim(fa32 > fa64, "more false alarms in float32 than in float64")
    for k in keys:
        ctx.claim(counts["float32"][k]["FALSE ALARM"] >= counts["float64"][k]["FALSE ALARM"],
                  f"{k}: float32 has at least as many false alarms as float64")
    n_fair = max(1, n_graded["float32"] - len(verigrad_disagrees))
    ctx.claim(counts["float32"]["classic"]["FALSE ALARM"] >= 0.8 * n_fair,
              "the classic 1e-7 rule raises a false alarm on (almost) every correct float32 gradient")
    fa_lists = {}
    for k in keys:
        errs = [ce["dtypes"]["float32"]["checkers"][k]["fd_error"] for c in cases if not c["error"]
                for ce in c["candidates"]]
        errs = [x for x in errs if x == x]
        fa_lists[f"med_fd_err32_{k}"] = e(float(np.median(errs))) if errs else "—"
        fa_lists[f"ok_float32_{k}"] = ", ".join(dict.fromkeys(
            f"`{c['case']}`" for c in cases if not c["error"] for ce in c["candidates"]
            if ce["dtypes"]["float32"]["checkers"][k]["outcome"] == "ok")) or "none"
        for dtv in ("float32", "float64"):
            names = [f"`{c['case']}`" for c in cases if not c["error"] for ce in c["candidates"]
                     if ce["dtypes"][dtv]["checkers"][k]["outcome"] == "FALSE ALARM"]
            fa_lists[f"list_{dtv}_{k}"] = ", ".join(dict.fromkeys(names)) or "none"
    ctx.claim("`logsumexp-large`" in fa_lists["list_float32_jax"]
              and "`gradient-checking-3layer`" in fa_lists["list_float32_jax"],
              "JAX float32 false alarms include logsumexp-large and gradient-checking-3layer", full_only=True)
    kinkish = {"`kinks-relu-l1`", "`maxpool-ties`", "`maxpool-ties-nested`", "`softplus-overflow`"}
    ctx.claim("`kinks-relu-l1`" in fa_lists["list_float64_gradcheck"], "kinks-relu-l1 alarms in float64 too",
              full_only=True)
    ctx.claim(all(n in kinkish for k in ("gradcheck", "jax") for n in fa_lists[f"list_float64_{k}"].split(", ")
                  if n != "none"), "float64 gradcheck/JAX false alarms are kinks, ties or the overflow case",
              full_only=True)
    disagree_txt = "\n".join(f"- `{a}` › `{b}` › {c}: verigrad says **{d}**" + (f" — {m}" if m else "")
                             for a, b, c, d, m in verigrad_disagrees) or "- none"
    disputed_block = ""
    if disputed:
        disputed_block = (
            "* **Disputed** rows (not counted as false alarms): verigrad passes the gradient because it is as "
            "accurate as its formula allows in that dtype — the exact gradient's own expression, evaluated in the "
            "dtype, is just as far off — and says so in a warning; but the gradient has an entry without a single "
            "correct digit, so a checker that fails it is not wrong:\n\n"
            + "\n".join(f"  - `{a}` › `{b}` › {c}: largest relative error of an entry {e(m)}"
                        + (f"; verigrad warns: {w[0]}" if w else "") for a, b, c, m, w in disputed) + "\n")
    if verigrad_disagrees:
        both_fail_note = (' ("both fail": verigrad fails the candidate too although the case file expects it to '
                          'pass; see the exceptions below.)')
        disagree_block = (f"* {len(verigrad_disagrees)} rows where verigrad's own verdict differs from the case "
                          "file's expectation are counted as \"both fail\", not as false alarms:\n\n"
                          + disagree_txt + "\n")
    else:
        both_fail_note = " verigrad passes every one of them, in both dtypes."
        disagree_block = ""
    fmt = dict(t_summary=t_summary, t_counts=t_counts, t_cases=t_cases, fig_scatter=fig_scatter,
               both_fail_note=both_fail_note, disagree_block=disagree_block, disputed_block=disputed_block,
               n32=n_graded["float32"], n64=n_graded["float64"], fa32=fa32, fa64=fa64,
               n_cases=sum(1 for c in cases if not c["error"]), disagree=disagree_txt,
               n_disagree=len(verigrad_disagrees), **fa_lists,
               **{f"fa32_{k}": counts["float32"][k]["FALSE ALARM"] for k in keys},
               **{f"fa64_{k}": counts["float64"][k]["FALSE ALARM"] for k in keys},
               **{f"ok32_{k}": counts["float32"][k]["ok"] for k in keys},
               **{f"ok64_{k}": counts["float64"][k]["ok"] for k in keys})
    ctx.page("float32-false-alarms", FALSE_ALARMS_PAGE, fmt)
    out = {"cases": cases, "counts": counts, "graded": n_graded, "verigrad_disagrees": verigrad_disagrees,
           "disputed": disputed,
           "checkers": [{k: v for k, v in c.items()} for c in CHECKERS]}
    ctx.numbers("float32-false-alarms", out)
    return out


# --------------------------------------------------------------------------------------------
# 4. steps that are not representable
# --------------------------------------------------------------------------------------------

#: The squire-trapp function moved to x = 1000: same values and derivatives (x - 998.5 = 1.5 exactly),
#: but the coordinate is large, so x + h is rounded to a spacing of ulp(1000) = 1.1e-13 (float64).
SHIFTED_CASE = """
name = "squire-trapp-at-1000"
description = "f(x - 998.5) with f the squire-trapp function: the same curve as at 1.5, moved to x = 1000."
loss = "exp(x - 998.5) / sqrt(sin(x - 998.5)**3 + cos(x - 998.5)**3)"

[symbols]
x = { value = 1000.0 }
"""


def _v_grid(scheme, dt: Dtype, count: int, top: float = 0.3) -> np.ndarray:
    """verigrad's default grid (100 eps, or eps^2 for the complex step), capped at ``top``.

    The squire-trapp function has a pole where sin^3 x + cos^3 x = 0, at x = 3 pi/4 ~ 2.356; steps that
    put a node near it measure the blow-up, not the finite difference (and inflate the noise estimate).
    """
    lo = float(default_step_grid(scheme, dt.numpy, 2)[0])
    return np.logspace(math.log10(lo), math.log10(top), count)


def study_representable(ctx: Ctx) -> dict:
    count = 30 if ctx.quick else 60
    st_case, st_model = load("squire-trapp")
    shifted = compile_case(load_case_text(SHIFTED_CASE, path=REPO / "docs" / "studies" / "shifted.toml"))
    lse_case, lse_model = load("logsumexp-large")
    lse_lv = loss_code_evaluator(lse_case) if lse_case.loss_code is not None else None
    # the entry of logsumexp-large with the largest |x|
    x0 = lse_model.point["x"]
    lse_index = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.abs(x0))), x0.shape))
    settings = [
        ("squire-trapp, x = 1.5", st_model, None, None, "squire-trapp"),
        ("same function at x = 1000", shifted, None, None, "shifted"),
        (f"logsumexp-large, x{list(lse_index)} = {x0[lse_index]:.6g}", lse_model, lse_lv, lse_index, "logsumexp"),
    ]
    results = []
    studies = {}
    for label, model, lv, index, key in settings:
        d = coordinate_direction(model, "x", index) if index is not None else coordinate_direction(model)
        for dt in DTYPES:
            for scheme in ("forward", "central"):
                sch = get_scheme(scheme)
                for rep in (False, True):
                    st = run_study(model, dtype=dt, scheme=sch, direction=d, steps=_v_grid(sch, dt, count),
                                   representable=rep, loss_values=lv)
                    studies[(key, dt.value, scheme, rep)] = st
                    k = summarize(st)
                    rows = finite_rows(st)
                    s_h = [abs(r.step) * r.h for r in rows if r.step != 0 and r.h <= 1e-2]
                    pt = point_in_dtype(model.point, dt)
                    fx = float(certify(model, pt, dt, digits=20).loss)
                    xv = float(pt["x"][d.index] if d.index else pt["x"])
                    k.update({"setting": label, "key": key, "representable": rep, "x": xv,
                        "rows_with_S": sum(1 for r in rows if r.step != 0),
                        "max_S_times_h_over_Bs": (max(s_h) / k["model_step_coefficient"])
                        if s_h and k["model_step_coefficient"] else float("nan"),
                        "median_abs_S_over_R": float(np.median([abs(r.step) / abs(r.roundoff) for r in rows
                                                                if r.roundoff != 0])) if rows else float("nan"),
                        "zero_steps": sum(1 for r in st.rows if r.h == 0), "loss": fx,
                        "condition": abs(xv * float(st.truth) / fx)})
                    results.append(k)

    # figure: |S| and |E| against h, three settings (rows) x dtype (cols), central, both modes
    fig = new_figure(9.6, 10.2)
    axes = fig.subplots(3, 2, squeeze=False)
    for i, (label, _m, _lv, _ix, key) in enumerate(settings):
        for j, dt in enumerate(DTYPES):
            ax = axes[i][j]
            for rep, ls, alpha in ((False, "-", 1.0), (True, "--", 0.9)):
                st = studies[(key, dt.value, "central", rep)]
                rows = finite_rows(st)
                h = np.array([r.h for r in rows])
                E = np.abs([r.error for r in rows])
                S = np.abs([r.step for r in rows])
                R = np.abs([r.roundoff for r in rows])
                tag = "(x+h)−x steps" if rep else "steps h"
                ok = E > 0
                ax.loglog(h[ok], E[ok], "o" + ls, color="black", ms=2.5, lw=1.3 if not rep else 1.0, alpha=alpha,
                          mfc="black" if not rep else "white", label=f"|E|, {tag}")
                if S.any():
                    ok = S > 0
                    ax.loglog(h[ok], S[ok], "." + ls, color="tab:green", ms=3, lw=0.9, alpha=alpha, label=f"|S|, {tag}")
                ok = R > 0
                ax.loglog(h[ok], R[ok], ls, color="tab:red", lw=0.8, alpha=0.7, label=f"|R|, {tag}")
                if not rep and st.model.step_coefficient:
                    ax.loglog(h, st.model.step_coefficient / h, ":", color="tab:green", lw=1,
                              label="model bound B_s / h")
            ax.set_title(f"{label} · {dt.value} · central", fontsize=8.5)
            ax.set_xlabel("step h (as used)")
            ax.set_ylabel("absolute error")
            ax.grid(True, which="major", alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=6.2, loc="upper right")
    fig.suptitle("The step error S: nodes x ± h that are not floats. With h = (x+h)−x it is exactly 0.",
                 fontsize=10)
    fig_steps = ctx.save(fig, "representable-steps.png")

    rows = []
    for k in results:
        rows.append([k["setting"], k["dtype"], f"`{k['scheme']}`", "(x+h)−x" if k["representable"] else "h",
                     f"{k['condition']:.3g}", e(k["model_step_coefficient"]), e(k["max_abs_S"]),
                     f"{k['rows_with_S']}/{k['finite_rows']}",
                     f2(k["median_abs_S_over_R"]), e(k["model_h"]), e(k["model_min_error"]),
                     e(k["error_near_model_h"]), e(k["observed_min_error"])])
    t_table = ctx.table("representable-steps", md_table(
        ["coordinate", "dtype", "scheme", "steps", "abs(x f′/f)", "B_s (model: abs(S) ≤ B_s/h)", "max abs(S)",
         "rows with S ≠ 0", "median abs(S)/abs(R)", "model h*", "model min abs(E)", "abs(E) nearest h*",
         "observed min abs(E)"], rows))

    def find(key, dt, scheme, rep):
        return next(k for k in results if k["key"] == key and k["dtype"] == dt and k["scheme"] == scheme
                    and k["representable"] == rep)

    for k in results:
        if k["representable"]:
            ctx.claim(k["max_abs_S"] == 0, f"{k['setting']} {k['dtype']} {k['scheme']}: S = 0 with (x+h)-x")
        else:
            ctx.claim(k["rows_with_S"] > 0, f"{k['setting']} {k['dtype']} {k['scheme']}: some S != 0 with h")
    sh = find("shifted", "float64", "central", False)
    shr = find("shifted", "float64", "central", True)
    base = find("squire-trapp", "float64", "central", True)
    ctx.claim(sh["median_abs_S_over_R"] > 30, "x = 1000: S dominates R by more than 30x (median)")
    ctx.claim(sh["model_min_error"] > 20 * shr["model_min_error"], "x = 1000: model error 20x smaller with (x+h)-x")
    ctx.claim(0.3 < shr["model_min_error"] / base["model_min_error"] < 3,
              "x = 1000 with (x+h)-x is as good as x = 1.5")
    bounded = [k for k in results if not k["representable"] and math.isfinite(k["max_S_times_h_over_Bs"])]
    worst_bound = max(k["max_S_times_h_over_Bs"] for k in bounded)
    ctx.claim(worst_bound <= 1.05, "the model bound |S| <= B_s/h holds for h <= 1e-2")
    lse = find("logsumexp", "float64", "central", False)
    ctx.claim(lse["median_abs_S_over_R"] < 1, "logsumexp-large: S below R although |x| ~ 1000 (f is large too)")
    st32 = find("squire-trapp", "float32", "central", False)
    st32r = find("squire-trapp", "float32", "central", True)
    fmt = dict(fig_steps=fig_steps, t_table=t_table, count=count,
               sh_ratio=f2(sh["median_abs_S_over_R"], 0), sh_Bs=e(sh["model_step_coefficient"]),
               sh_min=e(sh["model_min_error"]), shr_min=e(shr["model_min_error"]), base_min=e(base["model_min_error"]),
               sh_h=e(sh["model_h"]), shr_h=e(shr["model_h"]),
               sh_near=e(sh["error_near_model_h"]), shr_near=e(shr["error_near_model_h"]),
               st32_ratio=f2(st32["median_abs_S_over_R"]), st32_Bs=e(st32["model_step_coefficient"]),
               st32_Br=e(st32["model_roundoff_coefficient"]), st32_min=e(st32["model_min_error"]),
               st32r_min=e(st32r["model_min_error"]),
               worst_bound=f2(worst_bound), shr_zero=shr["zero_steps"], lse_index=",".join(map(str, lse_index)),
               lse_x=f"{x0[lse_index]:.10g}", ulp1000_64=e(float(np.spacing(np.float64(1000.0)))),
               ulp1000_32=e(float(np.spacing(np.float32(1000.0)))),
               ulp15_32=e(float(np.spacing(np.float32(1.5)))),
               lse_ratio=f2(lse["median_abs_S_over_R"]), lse_cond=f"{lse['condition']:.2g}", lse_f=f"{lse['loss']:.6g}",
               sh_cond=f"{sh['condition']:.3g}", base_cond=f"{base['condition']:.3g}", base_ratio=f2(
                   find("squire-trapp", "float64", "central", False)["median_abs_S_over_R"]))
    ctx.page("representable-steps", REPRESENTABLE_PAGE, fmt)
    out = {"results": results, "lse_index": list(lse_index)}
    ctx.numbers("representable-steps", out)
    return out


# --------------------------------------------------------------------------------------------
# 5. complex step and Richardson
# --------------------------------------------------------------------------------------------


def _usable_decades(st, target: float) -> float:
    """Decades of the step grid on which the relative error is at most ``target``."""
    rows = finite_rows(st)
    g = abs(float(st.truth))
    good = sorted(r.h for r in rows if abs(r.error) <= target * g)
    if not good:
        return 0.0
    # grid spacing in decades
    hs = sorted(r.h for r in rows)
    step = (math.log10(hs[-1]) - math.log10(hs[0])) / max(1, len(hs) - 1)
    return len(good) * step


def study_complex_richardson(ctx: Ctx) -> dict:
    case, model = load("squire-trapp")
    lv = loss_code_evaluator(case) if case.loss_code is not None else None
    d = coordinate_direction(model)
    count = 30 if ctx.quick else 60
    schemes = ("forward", "central", "richardson-forward", "central4", "richardson-central", "complex-step")
    targets = {"float32": 1e-5, "float64": 1e-10}
    studies = []
    for dt in DTYPES:
        for name in schemes:
            sch = get_scheme(name)
            cs = name == "complex-step"
            studies.append(run_study(model, dtype=dt, scheme=sch, direction=d, steps=_v_grid(sch, dt, count),
                                     loss_values=None if cs else lv))
    summ = {}
    rows = []
    for st in studies:
        k = summarize(st)
        k["evaluations"] = 1 if st.scheme.name == "complex-step" else len(st.scheme.offsets)
        k["usable_decades"] = _usable_decades(st, targets[st.dtype.value])
        k["target"] = targets[st.dtype.value]
        k["formula"] = st.scheme.formula()
        summ[f"{st.scheme.name}/{st.dtype.value}"] = k
        rows.append([f"`{k['scheme']}`", k["dtype"], k["order"], k["evaluations"], f2(k["sum_abs_weights"]),
                     e(k["model_h"]), e(k["model_min_error"]), e(k["error_near_model_h"]),
                     e(k["observed_min_error"]), f2(k["observed_min_error_ulps"], 1),
                     f2(k["usable_decades"], 1)])
    t_table = ctx.table("complex-richardson", md_table(
        ["scheme", "dtype", "order", "f evaluations", "Σ abs(w)", "model h*", "model min abs(E)",
         "abs(E) nearest h*", "observed min abs(E)", "in ulps of f'", "decades of h with rel. error ≤ target"],
        rows))
    rows = [[f"`{n}`", get_scheme(n).order, "`" + get_scheme(n).formula() + "`"] for n in schemes]
    t_formulas = ctx.table("complex-richardson-formulas", md_table(["scheme", "order", "formula"], rows,
                                                                    align=["l", "r", "l"]))

    fig = new_figure(9.6, 4.0)
    axes = fig.subplots(1, 2)
    colors = {"forward": "tab:orange", "central": "tab:blue", "richardson-forward": "tab:brown",
              "central4": "tab:green", "richardson-central": "tab:olive", "complex-step": "tab:purple"}
    for ax, dt in zip(axes, DTYPES):
        for st in (s for s in studies if s.dtype is dt):
            rr = finite_rows(st)
            h = np.array([r.h for r in rr])
            err = np.abs([r.error for r in rr]) / abs(float(st.truth))
            ok = err > 0
            ax.loglog(h[ok], err[ok], "o-", ms=2, lw=1.1, color=colors[st.scheme.name],
                      label=f"{st.scheme.name} (order {st.scheme.order})")
        ax.axhline(targets[dt.value], color="gray", ls="--", lw=0.8)
        ax.annotate("target", (ax.get_xlim()[0], targets[dt.value]), xytext=(3, 3), textcoords="offset points",
                    fontsize=7, color="gray")
        ax.set_xlabel("step h")
        ax.set_ylabel("relative error |E| / |f'|")
        ax.set_title(dt.value, fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=6.5, loc="lower left" if dt is Dtype.FLOAT32 else "upper left")
    fig.suptitle("squire-trapp at x = 1.5: Richardson extrapolation and the complex step", fontsize=10)
    fig_cmp = ctx.save(fig, "complex-step-richardson.png")

    # Richardson of central differences at h is the 4th-order central formula at h/2: compare bit for bit
    rc = next(st for st in studies if st.scheme.name == "richardson-central" and st.dtype is Dtype.FLOAT64)
    half = run_study(model, dtype=Dtype.FLOAT64, scheme="central4", direction=d,
                     steps=np.array([r.h for r in rc.rows]) / 2, loss_values=lv)
    same_est = sum(1 for a, b in zip(rc.rows, half.rows) if a.estimate == b.estimate)

    # when they cannot be used: verigrad's refusals, verbatim
    refusals = []
    for name in ("gradient-checking-3layer", "kinks-relu-l1"):
        c_, m_ = load(name)
        try:
            run_study(m_, dtype=Dtype.FLOAT64, scheme="complex-step", direction=coordinate_direction(m_))
            refusals.append((name, "run_study", "(no refusal!)"))
        except UsageError as exc:
            refusals.append((name, "run_study", str(exc)))
    try:
        lc = run_study(model, dtype=Dtype.FLOAT64, scheme="complex-step", direction=d, steps=[1e-20],
                       loss_values=lv)
        r0 = lc.rows[0]
        loss_code_text = (
            "A user's own forward pass (`loss_code`) is called with complex arrays; it must be complex-safe "
            "(`np.abs`, `np.maximum`, `x.conj()`, a softmax shift by `x.max()` all break it — and verigrad "
            "cannot see inside the code, so that responsibility is the user's). `squire_trapp.forward` uses only "
            f"`np.exp`, `np.sin`, `np.cos` and `np.sqrt`: at h = 1e-20 its complex-step error in float64 is "
            f"{e(abs(r0.error))} ({f2(abs(r0.error) / float(ulp(float(lc.truth), np.float64)), 1)} ulp of f').")
    except UsageError as exc:
        refusals.append(("squire-trapp", "run_study(..., loss_values=<the case's loss_code>)", str(exc)))
        loss_code_text = (
            "A user's own forward pass (`loss_code`) is refused as well (message above): verigrad cannot know "
            "whether it is complex-safe (`np.abs`, `np.maximum`, `x.conj()`, a softmax shift by `x.max()` all "
            "break it), so the complex step differentiates the declared expression.")
    cli = subprocess.run([sys.executable, "-m", "verigrad", "study", "cases/gradient-checking-3layer.toml",
                          "--scheme", "complex-step"], cwd=REPO, capture_output=True, text=True,
                         env={**__import__("os").environ, "COLUMNS": "240", "NO_COLOR": "1"})
    cli_text = (cli.stdout + cli.stderr).strip()

    # Richardson where the loss has kinks: the 3-layer network along the entry whose central-difference
    # truncation breaks away from h^2 first (a ReLU switches inside the stencil)
    k_case, k_model = load("gradient-checking-3layer")
    k_lv = loss_code_evaluator(k_case)
    ksteps = np.logspace(-6, -0.5, 12 if ctx.quick else 23)
    kink = None
    for name in k_model.gradient:
        for idx in np.ndindex(*k_model.shape(name)):
            st = run_study(k_model, dtype=Dtype.FLOAT64, scheme="central",
                           direction=coordinate_direction(k_model, name, idx), steps=ksteps, loss_values=k_lv)
            if st.model.truncation_vanishes:
                continue
            pred = st.model.predict(np.array([r.h for r in st.rows]))["truncation"]
            first = next((r.h for r, p in zip(st.rows, pred)
                          if not r.finite or not (0.1 < abs(r.truncation) / p < 10)), float("inf"))
            if kink is None or first < kink[0]:
                kink = (first, name, idx, st)
    kink_h, kname, kidx, kc = kink
    kink_prev = max((r.h for r in kc.rows if r.h < kink_h), default=float("nan"))
    kr = run_study(k_model, dtype=Dtype.FLOAT64, scheme="richardson-central",
                   direction=coordinate_direction(k_model, kname, kidx), steps=ksteps, loss_values=k_lv)
    krows = []
    g_k = float(kc.truth)
    for a, b in zip(kc.rows, kr.rows):
        pa = kc.model.predict(np.array([a.h]))["truncation"][0]
        pb = kr.model.predict(np.array([b.h]))["truncation"][0]
        krows.append([e(a.h), se(a.estimate - g_k), se(a.truncation) if a.finite else "excluded", e(pa),
                      se(b.estimate - g_k), se(b.truncation) if b.finite else "excluded", e(pb)])
    t_kink = ctx.table("complex-richardson-kink", md_table(
        ["h", "E central", "T central", "model abs(T) = A h²", "E richardson-central", "T richardson-central",
         "model abs(T) = A h⁴"], krows))
    kink_notes = list(dict.fromkeys(n for n in (*kc.notes, *kr.notes) if "kink" in n))
    before = [(a, b) for a, b in zip(kc.rows, kr.rows) if a.h < kink_h]
    after = [(a, b) for a, b in zip(kc.rows, kr.rows) if a.h >= kink_h]
    jump_c = min((abs(a.estimate - g_k) for a, _ in after), default=float("nan"))
    jump_r = min((abs(b.estimate - g_k) for _, b in after), default=float("nan"))

    c64, c4_64, rc64, cs64 = (summ[f"{n}/float64"] for n in ("central", "central4", "richardson-central",
                                                             "complex-step"))
    cs32, rc32, c4_32 = (summ[f"{n}/float32"] for n in ("complex-step", "richardson-central", "central4"))
    ctx.claim(cs64["observed_min_error_ulps"] < 4, "complex step float64 within 4 ulps")
    ctx.claim(cs32["observed_min_error_ulps"] < 4, "complex step float32 within 4 ulps")
    ctx.claim(all(cs64["usable_decades"] > summ[f"{n}/float64"]["usable_decades"] for n in schemes[:-1]),
              "complex step has the widest usable range in float64")
    ctx.claim(abs(rc64["slope_truncation"] - 4) < 0.4, "richardson-central truncation slope ~ 4")
    ctx.claim(rc64["model_min_error"] < c64["model_min_error"], "richardson beats central in float64 (model)")
    ctx.claim(all(x[2] != "(no refusal!)" for x in refusals), "complex step refused for relu/abs")
    ctx.claim(kink_h < 0.3, "a ReLU kink breaks the h^2 law within the sweep")
    ctx.claim(all(abs(a.truncation) <= 1.01 * kc.model.predict(np.array([a.h]))["truncation"][0] + 1e-300
                  for a, _ in before if a.finite), "central T follows A h^2 below the kink")
    ctx.claim(jump_c > 1e3 * max(abs(a.estimate - g_k) for a, _ in before) and jump_r > 1e-6,
              "beyond the kink both estimates jump")
    ctx.claim(same_est == len(rc.rows), "richardson-central(h) == central4(h/2) bit for bit")
    fmt = dict(t_table=t_table, t_formulas=t_formulas, fig_cmp=fig_cmp, t_kink=t_kink,
               refusals="\n\n".join(f"`{a}` via `{b}`:\n\n```text\n{c}\n```" for a, b, c in refusals),
               cli_text=cli_text, cli_rc=cli.returncode, same_est=same_est, n_rc=len(rc.rows),
               loss_code_text=loss_code_text,
               kink_notes="\n".join(f"> {n}\n" for n in kink_notes) or "> (no note)",
               jump_c=e(jump_c), jump_r=e(jump_r),
               kink_entry=f"{kname}[{', '.join(map(str, kidx))}]",
               kink_h=e(kink_h, 1), kink_prev=e(kink_prev, 1), count=count,
               c4_gain=f2(math.log10(c64["model_min_error"] / c4_64["model_min_error"]), 1),
               cs64_ulps=f2(cs64["observed_min_error_ulps"], 1), cs32_ulps=f2(cs32["observed_min_error_ulps"], 1),
               cs64_dec=f2(cs64["usable_decades"], 0), c64_dec=f2(c64["usable_decades"], 1),
               c4_64_dec=f2(c4_64["usable_decades"], 1), rc64_dec=f2(rc64["usable_decades"], 1),
               rc64_min=e(rc64["model_min_error"]), c4_64_min=e(c4_64["model_min_error"]),
               c64_min=e(c64["model_min_error"]), rc64_h=e(rc64["model_h"]), c4_64_h=e(c4_64["model_h"]),
               rc32_min=e(rc32["model_min_error"]), c4_32_min=e(c4_32["model_min_error"]),
               cs32_min=e(cs32["observed_min_error"]), cs64_min=e(cs64["observed_min_error"]),
               rc64_A=se(rc64["model_truncation_coefficient"]), c4_64_A=se(c4_64["model_truncation_coefficient"]))
    ctx.page("complex-step-richardson", COMPLEX_PAGE, fmt)
    out = {"studies": summ, "refusals": refusals, "cli": {"returncode": cli.returncode, "output": cli_text},
           "kink": {"entry": fmt["kink_entry"], "first_h": kink_h}}
    ctx.numbers("complex-step-richardson", out)
    return out


# --------------------------------------------------------------------------------------------
# 6. a quadratic loss
# --------------------------------------------------------------------------------------------


def study_quadratic(ctx: Ctx) -> dict:
    case, model = load("linear-regression")
    lv = loss_code_evaluator(case) if case.loss_code is not None else None
    count = 24 if ctx.quick else 52
    top = 1e3
    studies = []
    for dt in DTYPES:
        lo = 100 * dt.eps
        steps = np.logspace(math.log10(lo), math.log10(top), count)
        for name in ("forward", "central", "central4"):
            # forward: up to h = 1 (its optimum is tiny); central: up to 1e3, to show where round-off grows again
            st_steps = steps[steps <= 1.0] if name == "forward" else steps
            for idx in np.ndindex(*model.shape("beta")):
                d = coordinate_direction(model, "beta", idx)
                studies.append(run_study(model, dtype=dt, scheme=name, direction=d, steps=st_steps, loss_values=lv))
    rows, summ = [], {}
    for st in studies:
        k = summarize(st)
        rr = finite_rows(st)
        textbook = recommended_step(st.scheme, st.dtype)
        at_tb = nearest_row(st, textbook)
        at_1 = nearest_row(st, 1.0)
        k.update({"entry": st.direction.label, "note": st.model.note,
                  "T_over_h_min": min(r.truncation / r.h for r in rr),
                  "T_over_h_max": max(r.truncation / r.h for r in rr),
                  "error_at_textbook": abs(at_tb.error), "textbook_h": at_tb.h, "error_at_1": abs(at_1.error),
                  "rel_error_at_textbook": abs(at_tb.error) / abs(float(st.truth)),
                  "rel_error_at_1": abs(at_1.error) / abs(float(st.truth)),
                  "all_T_zero_exactly": all(r.truncation == 0 for r in rr),
                  "min_error_large_h": min(abs(r.error) for r in rr if r.h >= 0.1),
                  "error_at_top": abs(rr[-1].error), "top_h": rr[-1].h})
        summ[f"{st.scheme.name}/{st.dtype.value}/{st.direction.label}"] = k
        rows.append([f"`{k['entry']}`", k["dtype"], f"`{k['scheme']}`",
                     "**yes**" if k["truncation_vanishes"] else "no", e(k["max_abs_T"]),
                     e(k["error_at_textbook"]) + f" (h = {e(k['textbook_h'], 1)})", e(k["error_at_1"]),
                     e(k["observed_h"]), e(k["observed_min_error"]), f2(k["slope_roundoff"])])
    t_table = ctx.table("quadratic-loss", md_table(
        ["entry", "dtype", "scheme", "verigrad: truncation vanishes", "max abs(T) over the sweep",
         "abs(E) at the textbook step eps^(1/(p+1))", "abs(E) at h = 1", "observed best h", "observed min abs(E)",
         "round-off slope"], rows))

    # the full gradient by central differences at the textbook step and at h = 1, graded like a candidate
    grows = []
    graded = {}
    for dt in DTYPES:
        point = point_in_dtype(model.point, dt)
        truth = certify(model, point, dt, digits=max(case.check.digits, 20))
        base = baseline_gradient(model, point, dt)
        for h in (recommended_step(get_scheme("central"), dt), 1.0):
            est = fd_gradient(model, dtype=dt, scheme="central", step=h, step_mode=StepMode.ABSOLUTE, loss_values=lv)
            g = grade(truth=truth.gradient, value=est, baseline=base, dtype=dt.numpy, case=case.name,
                      candidate=f"central h={h:.1e}")
            graded[f"{dt.value}/{h:.3g}"] = {"verdict": g.verdict.value, "normwise": g.normwise_relative,
                                             "max_ulps": g.max_ulps, "baseline_max_ulps": g.baseline.max_ulps}
            grows.append([dt.value, e(h, 1), e(g.normwise_relative), f2(g.max_ulps, 1), f2(g.baseline.max_ulps, 1),
                          g.verdict.value])
    t_grade = ctx.table("quadratic-loss-grade", md_table(
        ["dtype", "central step h", "normwise relative error", "max error in ulps", "float baseline max ulps",
         "verigrad grade (as if hand-written)"], grows))

    fig = new_figure(9.6, 7.4)
    axes = fig.subplots(2, 2, squeeze=False)
    pick = [s for s in studies if s.direction.label == "beta[0]" and s.scheme.name in ("forward", "central")]
    handles = {}
    for st in pick:
        i = 0 if st.scheme.name == "forward" else 1
        j = DTYPES.index(st.dtype)
        handles.update(study_axes(axes[i][j], st, legend=False))
        if st.model.truncation_vanishes:
            # T is zero; what the rows hold is the residue of the working precision (~1e-100): keep it out of frame
            lo = 1e-3 * min(abs(r.error) for r in finite_rows(st) if r.error)
            axes[i][j].set_ylim(lo, None)
            axes[i][j].annotate(f"T = 0 (rows: below {e(summarize(st)['max_abs_T'], 0)}, the working precision)",
                                (0.02, 0.04), xycoords="axes fraction", fontsize=7, color="tab:blue")
        axes[i][j].axvline(recommended_step(st.scheme, st.dtype), color="tab:orange", ls="--", lw=0.9)
        axes[i][j].annotate("textbook eps^(1/(p+1))", (recommended_step(st.scheme, st.dtype),
                                                      axes[i][j].get_ylim()[1]), xytext=(3, -10),
                            textcoords="offset points", fontsize=6.5, color="tab:orange", rotation=90, va="top")
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=5, fontsize=7, frameon=False)
    fig.suptitle("linear-regression (quadratic loss) along beta[0]: central differences have no truncation error",
                 fontsize=10)
    fig_q = ctx.save(fig, "quadratic-loss.png")

    cent = [k for k in summ.values() if k["scheme"] in ("central", "central4")]
    fwd = [k for k in summ.values() if k["scheme"] == "forward"]
    ctx.claim(all(k["truncation_vanishes"] for k in cent), "verigrad: central/central4 truncation vanishes")
    ctx.claim(all(k["max_abs_T"] < 1e-30 * abs(k["truth"]) for k in cent),
              "central T below 1e-30 relative on every row (the working precision's residue)")
    ctx.claim(not any(k["truncation_vanishes"] for k in fwd), "forward truncation does not vanish")
    ctx.claim(all(abs(k["T_over_h_max"] / k["T_over_h_min"] - 1) < 1e-12 for k in fwd), "forward T/h constant")
    ctx.claim(all(k["error_at_1"] < k["error_at_textbook"] for k in cent), "central: h = 1 beats the textbook step")
    ctx.claim(all(k["min_error_large_h"] <= 1.5 * k["observed_min_error"] for k in cent),
              "central: the best error is reached with h >= 0.1")
    ctx.claim(all(v["verdict"] == "pass" for key, v in graded.items() if key.endswith("/1")),
              "central at h = 1 grades as pass, like a hand-written gradient")
    k64 = summ["central/float64/beta[0]"]
    k32 = summ["central/float32/beta[0]"]
    f64 = summ["forward/float64/beta[0]"]
    fmt = dict(t_table=t_table, t_grade=t_grade, fig_q=fig_q, note=k64["note"],
               maxT=e(max(k["max_abs_T"] for k in cent)), prec=min(k["precision_bits"] for k in cent),
               k64_tb=e(k64["error_at_textbook"]), k64_1=e(k64["error_at_1"]), k64_best=e(k64["observed_h"]),
               k64_bestE=e(k64["observed_min_error"]), k32_tb=e(k32["error_at_textbook"]), k32_1=e(k32["error_at_1"]),
               k32_best=e(k32["observed_h"]), k64_rel1=e(k64["rel_error_at_1"]), k32_rel1=e(k32["rel_error_at_1"]),
               k64_reltb=e(k64["rel_error_at_textbook"]), k32_reltb=e(k32["rel_error_at_textbook"]),
               f64_A=f"{f64['T_over_h_min']:.15g}", f64_Amax=f"{f64['T_over_h_max']:.15g}",
               f64_model_A=f"{f64['model_truncation_coefficient']:.15g}",
               gain64=f2(k64["error_at_textbook"] / k64["error_at_1"], 0),
               gain32=f2(k32["error_at_textbook"] / k32["error_at_1"], 0), top=e(top, 0),
               tb64=e(recommended_step(get_scheme("central"), Dtype.FLOAT64)))
    ctx.claim(all(k["slope_roundoff"] > -0.95 for k in cent), "central round-off slopes flatter than -1")
    ctx.page("quadratic-loss", QUADRATIC_PAGE, fmt)
    out = {"studies": summ, "graded": graded}
    ctx.numbers("quadratic-loss", out)
    return out


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------

STUDIES = {
    "v-curve": lambda ctx: study_v_curve(ctx),
    "why-eps-1e-7": lambda ctx: study_why_eps(ctx),
    "float32-false-alarms": lambda ctx: study_false_alarms(ctx),
    "representable-steps": lambda ctx: study_representable(ctx),
    "complex-step-richardson": lambda ctx: study_complex_richardson(ctx),
    "quadratic-loss": lambda ctx: study_quadratic(ctx),
    "ridders": lambda ctx: _study_ridders(ctx),
}


def _study_ridders(ctx: Ctx) -> dict:
    """Ridders against central differences and the truth (its code: ``ridders_study.py`` beside this file)."""
    import importlib.util

    name = "verigrad_docs_ridders_study"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("ridders_study.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name].study_ridders(ctx, sys.modules[__name__])


def run(names=None, *, out: Path | None = None, quick: bool = False, strict: bool = False) -> dict:
    """Regenerate the named studies (default: all) under ``out`` (default: the repository's docs/)."""
    ctx = Ctx(root=Path(out) if out else REPO / "docs", quick=quick, strict=strict)
    ctx.prepare()
    results = {}
    for name in names or STUDY_NAMES:
        t0 = time.perf_counter()
        print(f"{name} ...", file=sys.stderr, flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            results[name] = STUDIES[name](ctx)
        print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    (ctx.studies / "index.md").write_text(INDEX_PAGE.lstrip("\n"), encoding="utf-8")
    if ctx.failed_claims:
        print(f"{len(ctx.failed_claims)} claim(s) not supported by the numbers:", file=sys.stderr)
        for c in ctx.failed_claims:
            print(f"  - {c}", file=sys.stderr)
        if strict:
            raise SystemExit(1)
    results["_failed_claims"] = list(ctx.failed_claims)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=STUDY_NAMES, metavar="NAME",
                   help=f"regenerate only this study (repeatable): {', '.join(STUDY_NAMES)}")
    p.add_argument("--quick", action="store_true", help="coarse grids and fewer cases (for tests; seconds)")
    p.add_argument("--out", type=Path, help="output root with figures/ and studies/ (default: docs/)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a claim of the prose is not supported")
    args = p.parse_args(argv)
    run(args.only, out=args.out, quick=args.quick, strict=args.strict)
    return 0


# --------------------------------------------------------------------------------------------
# page templates (string.Template: $name is filled from the numbers above)
# --------------------------------------------------------------------------------------------

V_CURVE_PAGE = r"""
# The V-curve: where a finite difference is most accurate, and why

*Regenerate this page, its tables and figures:* `python docs/studies/make_studies.py --only v-curve`.
*One sweep from the command line:* `verigrad study cases/squire-trapp.toml --plot v.png`
*(the script uses the same `run_study` with steps from verigrad's default lower end up to h = 0.3, $count steps).*

## The test function

Squire and Trapp (1998) and Martins, Sturdza and Alonso (2003) test derivative
approximations on

    f(x) = e^x / sqrt(sin(x)^3 + cos(x)^3)   at x = 1.5

(`cases/squire-trapp.toml`). It is smooth and analytic near 1.5, and its
derivative is known exactly. verigrad's certified truth is

    f'(1.5) = $truth

(one ulp of f' is $u64 in float64 and $u32 in float32; 1.5 is exact in both).

## Four estimates of f'

| scheme | formula | order p | leading truncation error |
|---|---|---:|---|
| `forward` | (f(x+h) − f(x)) / h | 1 | (h/2) f''(x) |
| `central` | (f(x+h) − f(x−h)) / (2h) | 2 | (h²/6) f'''(x) |
| `central4` | (f(x−2h) − 8 f(x−h) + 8 f(x+h) − f(x+2h)) / (12h) | 4 | −(h⁴/30) f⁽⁵⁾(x) |
| `complex-step` | Im f(x + ih) / h | 2 | −(h²/6) f'''(x) |

## Three sources of error, measured exactly

In a float type every finite difference is computed with three kinds of
mistakes. verigrad evaluates the same formula three ways — exactly at the
intended points x + c·h (D_exact), exactly at the rounded points the float code
really used (D_nodes), and in floating point (D_float) — and splits the error
E = D_float − f'(x) exactly into

* **T, truncation** = D_exact − f'(x): the formula's own error. Taylor's theorem
  says T ≈ A·h^p, so it falls as h shrinks.
* **S, step** = D_nodes − D_exact: x + h is rounded to a float, so f is
  evaluated at slightly wrong points, but the formula still divides by h.
  |S| ≲ |f'(x)|·ulp(x)/2·Σ|w| / h, where w are the formula's weights.
* **R, round-off** = D_float − D_nodes: f itself is computed with rounding
  errors of some size ν (the *noise* of f), and the formula subtracts nearly
  equal values and divides by h: |R| ≈ ν·Σ|w| / h.

E = T + S + R holds to $split_residual (relative) in every row of every sweep below.

## The V

![Relative error of the four schemes against h, float32 and float64]($fig_overlay)

Read each curve from right to left. For large h the truncation error
dominates, and it falls like h^p: on a log–log plot it is a straight line of
slope p. For small h the step and round-off errors dominate, and they grow like
1/h: a line of slope −1. The bottom of the V is where the two arms meet.
The complex step (purple) has no left arm at all: it subtracts nothing.

## The model

For each sweep verigrad predicts the three parts from exact derivatives and the
measured noise of f:

* |T| ≈ A·h^p, with A = (leading coefficient of the scheme)·f^(p+1)(x);
* |R| ≈ B_r / h, with B_r = ν·Σ|w|;
* |S| ≤ B_s / h, with B_s = |f'(x)|·ulp(x)/2·Σ|w|.

The total A·h^p + B/h (B = B_r + B_s) is smallest where its derivative
vanishes, p·A·h^(p−1) = B/h², that is

    h* = (B / (p·A))^(1/(p+1)),     E* = A·h*^p + B/h* = (1 + 1/p)·B/h*.

For a well-scaled function (A ≈ 1, B ≈ eps) this is the familiar rule of thumb
h* ≈ eps^(1/(p+1)) with error ≈ eps^(p/(p+1)): √eps for forward differences,
eps^(1/3) for central ones. The coefficients verigrad measured:

$t_model

## Model against measurement

$t_summary

*"default step" is verigrad's `recommended_step`, the rule of thumb;
"observed best h" is the grid step with the smallest |E|; "abs(E) at grid step
nearest h\*" is the error at the grid step closest to the model's h\*.*

What the table says:

1. **The slopes are the orders.** On the truncation arm the fitted slopes are
   $forward_float64_slope_truncation (forward), $central_float64_slope_truncation (central) and
   $central4_float64_slope_truncation (central4) in float64; on the round-off arm they are
   $forward_float64_slope_roundoff, $central_float64_slope_roundoff and $central4_float64_slope_roundoff — the
   1/h law. In float32 the round-off arm is noisier (few steps lie on it, and
   S and R change sign from step to step), so its fitted slope is less clean.
2. **Where the minimum is.** For central differences in float64 the model puts
   the optimum at h* = $central_float64_model_h; the best grid step is
   $central_float64_observed_h, $c64_ratio times smaller — the bottom of a V on a log scale is
   wide, and the grid's best point is partly luck (next item). The rule of thumb
   eps^(1/3) = $central_float64_rule_of_thumb_step is close, because this f is well scaled (f(1.5) = $fval, f'''(1.5) = $f3).
3. **How low it gets.** The model's E* ($central_float64_model_min_error for central in float64)
   is an upper estimate up to the scatter of the noise (the complex step's flat
   error can sit a little above it): it adds S and R with the same sign, which in
   reality have random signs, and uses the median noise of f over the sweep. The error at the grid step nearest h* is
   $central_float64_error_near_model_h. The smallest error on the grid is often lower still — that
   is luck, not a better step: near the bottom of the V, T, S and R are of
   similar size and sometimes cancel. For forward differences in float32 the
   error at h* is $forward_float32_error_near_model_h but one grid step happens to reach
   $forward_float32_observed_min_error ($fwd32_luck× smaller). Do not tune h to a lucky grid point: at
   another x it will not be lucky.
4. **The complex step has no V.** It reaches $complex_step_float64_observed_min_error in float64 ($cs64_ulps ulp of f')
   and $complex_step_float32_observed_min_error in float32 ($cs32_ulps ulp), for every h below about
   $complex_step_float64_model_h (float64). Its "model h*" is the step above which the truncation
   rises above the noise floor; any smaller step is just as good.
5. **float32 against float64.** float32's eps is 2^29 times larger. The optimal
   step moves up by that factor to the power 1/(p+1), the best error by the power
   p/(p+1): central differences reach about $central_float32_error_near_model_h in float32 against
   $central_float64_error_near_model_h in float64 (f' ≈ 4).

## The split, panel by panel

![|E| and its parts T, S, R for each scheme and dtype]($fig_split)

Black: |E|; blue: |T|; green: |S|; red: |R|; dashed: verigrad's model of T and
R; dotted vertical line: the model's h*. Note how S and R are of the same size
at x = 1.5: both are "rounding at the nodes", one in the argument, one in the
value. [Steps that are not representable](representable-steps.md) shows a
coordinate where S dominates, and how to remove it.

**Why the sweep stops at h = 0.3.** sin³x + cos³x vanishes at x = 3π/4 ≈ 2.356,
where f has a pole. Steps that put a node near it measure the blow-up of f, not
the derivative at 1.5 (and verigrad's noise estimate ν, the rms over every node
of the sweep, would be dominated by them).

## References

* W. Squire and G. Trapp, "Using complex variables to estimate derivatives of
  real functions", *SIAM Review* 40(1), 110–112, 1998.
* J. R. R. A. Martins, P. Sturdza and J. J. Alonso, "The complex-step
  derivative approximation", *ACM TOMS* 29(3), 245–262, 2003.
* J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., §8.1
  (the √eps step of forward differences).
* N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
  SIAM, 2002 (rounding error analysis).
"""

WHY_EPS_PAGE = r"""
# Why eps = 1e-7? What the gradient-checking "difference" measures

*Regenerate:* `python docs/studies/make_studies.py --only why-eps-1e-7`
*(47 studies per dtype, one per parameter, each sweeping eps; about 15 s).*

## The exercise

The "Gradient Checking" assignment of Andrew Ng's deep-learning course checks
the backward pass of a three-layer network (LINEAR → RELU → LINEAR → RELU →
LINEAR → SIGMOID, cross-entropy cost J, m = 3 examples, $N parameters θ) with
central differences of the cost:

    gradapprox_i = (J(θ + ε e_i) − J(θ − ε e_i)) / (2ε),      ε = 1e-7

    difference = ‖grad − gradapprox‖₂ / (‖grad‖₂ + ‖gradapprox‖₂)

and a rule of thumb: a difference below 1e-7 means the gradient is correct
(the exercise itself uses 2e-7). `cases/gradient-checking-3layer.toml` draws the
same point and uses the exercise's own forward pass as `loss_code`;
`fd_gradient(scheme="central", step=1e-7, step_mode=ABSOLUTE)` performs exactly
the exercise's loop. The result, next to verigrad's verdict against the exact
gradient:

$t_exercise

* The planted bugs give $bug_rd (verigrad's `grading.relative_difference`,
  computed exactly from sums of exact squares). The exercise prints
  0.2850931567761624, computed with numpy's rounded norms: the same number up to
  the last digit.
* The verbatim exercise code returns float64 for some variables when given
  float32 inputs ("mixed" above): its `np.int64` ReLU masks upcast the backward pass.
* The **correct** backprop gives **$rd64_full**, which is *above* 1e-7. The
  popular rule calls this correct gradient wrong; the exercise's 2e-7 lets it
  through by a factor $margin. The threshold sits right where this network's
  numbers happen to fall.
* The backprop itself is accurate to $good_err64 (normwise, float64): whatever
  the difference measures, it is not the backprop.

## What 1.19e-7 is made of

gradapprox = g* + E, where g* is the exact gradient and, for each entry,
E = T + S + R exactly (truncation, step, round-off; see [the V-curve](v-curve.md)).
verigrad computes the split for all $N entries (one `run_study` per parameter;
the 47 estimates reproduce `fd_gradient` bit for bit). The numerator of the
difference is ‖grad − gradapprox‖ ≈ ‖E‖:

$t_split

At ε = 1e-7 in float64, **‖R‖ = $R64 is $R_share % of ‖E‖**; ‖T‖ = $T64
is only $TR_ratio of ‖R‖, and ‖S‖ = $S64. The difference measures
**round-off**: the rounding noise of the float64 forward pass, divided by ε.
The cost is J = $loss64 (one ulp: $loss_ulp64), and the forward pass computes it
with a typical error of $noise64 (median over the live entries) — about
$noise_ulps ulps, accumulated through the matrix products, the sigmoid and
log(1 − A3). The difference of two such errors, divided by 2ε = 2e-7, is about
1e-7 per entry. The
entries with the largest error:

$t_coords

$n_zero of the $N entries belong to ReLU units that are dead at this point: the
cost does not depend on them at all, their exact gradient is 0, and both
evaluations J(θ ± ε e_i) are bit-identical, so their E is exactly 0. Only the
$n_live live entries contribute to the numerator.

## How the difference moves with ε

![The difference and its parts against eps, float64 and float32]($fig_sweep)

$t_sweep

**float64.** For ε below $best64 the difference is round-off, ∝ 1/ε (slope −1);
above it, truncation, ∝ ε² (T_i ≈ (ε²/6)·∂³J/∂θ_i³). At the largest ε of the
sweep, $eps_last, the difference is $rd_last instead of the $rd_last_pred that the ε² law
predicts: a ReLU pre-activation changes sign inside [θ − ε, θ + ε], and T jumps
(verigrad flags those entries, last row of the table; see also
[Richardson at a kink](complex-step-richardson.md)). The best grid ε is
**$best64, where the difference is $best64_rd** — $gain times smaller than at 1e-7.
Summing the 47 per-entry models of verigrad (|T| ≈ A_i ε², |R| ≈ B_i/ε) predicts
the optimum at ε ≈ $model64 with difference $model64_rd, and $model_rd7 at
ε = 1e-7 (the model counts noise for the dead entries, whose real R is 0, so it
is somewhat pessimistic). The median over entries of verigrad's per-entry h* is
$hstar_med.

**float32.** Nothing works.

* For ε ≲ 1e-8, θ_i ± ε rounds back to θ_i (float32's spacing is 1.2e-7 at 1
  and 1.5e-8 at 0.2), both evaluations are identical, gradapprox = 0, and the difference is exactly
  ‖g‖/(‖g‖ + 0) = 1. verigrad books it as S = −g*: the nodes are not where the
  formula assumes.
* At ε = 1e-7 the difference is $rd32.
* Even with larger ε, many entries still get gradapprox = 0 exactly (last
  column of the table). The float32 cost is a staircase: for the third example
  A3 = $a3 (float32), and 1 − A3 = $one_minus_a3 is known only to within float32's spacing at
  A3 ($a3_spacing), that is $a3_rel relative; log(1 − A3) moves in steps. The noise of the
  float32 cost is $noise32 ($noise32_rel relative), and J(θ ± ε) only changes
  once ε is large enough to step over a stair.
* The best grid ε is **$best32, with difference $best32_rd** (model: ε ≈ $model32,
  $model32_rd). No ε brings it anywhere near 1e-7: **in float32 the classic check
  cannot pass a correct gradient of this network at any ε.** (The float32
  backprop itself is accurate to $good_err32, as float32 allows.)

## Why the numerator behaves like this

Per entry, with noise δ± ~ ν in the two evaluations of J,

    E_i ≈ A_i·ε² + (δ+ − δ−)/(2ε) + S_i,     A_i = (1/6)·∂³J/∂θ_i³

so, roughly, ‖E‖ ≈ a·ε² + b/ε with a = √(Σ A_i²) and b = √(N_live)·ν/√2: a V
in ε, like a single derivative, with its bottom at ε* = (b/(2a))^(1/3). The numerator knows nothing about
the backprop: it is a property of J's implementation (ν), of J's third
derivatives (A) and of ε.

## The denominators

Three denominators are in use: ‖g‖ + ‖g̃‖ (the exercise, symmetric), 2‖g‖ and
‖g‖ (plain relative error); a fourth variant divides the norm of the
difference by √N (the root-mean-square difference per entry):

$t_den

* For a correct gradient g̃ ≈ g, so ‖g‖ + ‖g̃‖ ≈ 2‖g‖: the first two columns
  agree and the third is twice as large. The choice moves the threshold by a
  factor 2, no more.
* For a wrong gradient they differ: the symmetric one never exceeds 1; the
  others are unbounded. All of them flag the planted bugs.
* ‖g − g̃‖/√N is an *absolute* number, in the units of the gradient: multiply
  the loss by 1000 and it grows 1000 times. It is close to the others here only
  because ‖g*‖/√N = $g_rms for this network.
* The whole-vector difference averages over blocks of very different sizes. Per
  variable, at ε = 1e-7:

$t_blocks

  The same noise, divided by a smaller gradient block, gives a larger
  difference: $blocks_fail fail even the exercise's 2e-7, although the backprop
  is correct everywhere.

## The buggy backprop

The classic check flags it (0.285 ≫ 2e-7): the bugs are factors of 2 and 4, and
the difference they cause is $bug_over_noise times the finite-difference noise. It says only that
something is wrong. Against the exact gradient verigrad says what and where:

```text
$bug_msgs
```

## Lessons

1. With ε = 1e-7 in float64 the difference (≈ 1e-7) measures the round-off of
   the forward pass divided by ε — a property of J's code and of ε, not of the
   backprop. Its closeness to the threshold is a coincidence of this network.
2. The best ε is where truncation and round-off balance; here about $best64,
   which makes the check $gain times sharper. It depends on J (its noise and its
   third derivatives): a universal ε does not exist.
3. In float32 no ε reaches 1e-7. Check float32 code against float64 finite
   differences, or against the exact gradient.
4. A threshold should come from the noise of J and the scheme (verigrad's
   float baseline and `fd_tolerance`), not from a universal constant.

## References

* A. Ng et al., *Deep Learning Specialization*, course 2, week 1, programming
  assignment "Gradient Checking" (the network, ε = 1e-7, the 2e-7 threshold).
* CS231n notes, "Neural Networks Part 3: gradient checks" (the 1e-7 rule of
  thumb for the relative error).
"""

FALSE_ALARMS_PAGE = r"""
# float32 false alarms: fixed tolerances against the exact verdict

*Regenerate:* `python docs/studies/make_studies.py --only float32-false-alarms`
*(every shipped case, both dtypes; about 10 s).*

Every gradient checker in common use compares the gradient with a finite
difference and reports failure when the two differ by more than a fixed
tolerance. In float32 the finite difference is often the least accurate number
in that comparison. This page takes every candidate that a shipped case marks as
correct (`expect = "pass"`), applies four checkers' rules with their documented
defaults, and compares their verdicts with verigrad's verdict against the exact
gradient. A **false alarm** is a checker failing a gradient that verigrad passes.

## The checkers and their defaults

| checker | finite difference | pass rule | where the defaults come from |
|---|---|---|---|
| PyTorch `gradcheck` | central, ε = 1e-6 (absolute), every entry | abs(a − n) ≤ atol + rtol·abs(n), atol = 1e-5, rtol = 1e-3 (`torch.allclose`) | `torch.autograd.gradcheck(func, inputs, *, eps=1e-06, atol=1e-05, rtol=0.001, ...)`; its documentation: "The default values are designed for input of double precision. This check will likely fail if input is of less precision, e.g., FloatTensor." At run time it warns: "Input #0 requires gradient and is not a double precision floating point or complex. This check will likely fail if all the inputs are not of double precision floating point or complex." |
| JAX `check_grads(f, args, order=1)` | central, ε = 1e-4, along one random tangent v (`np.random.RandomState(0).randn`, in the argument's dtype, not normalised) | abs(a − n) ≤ atol + rtol·abs(n) on the directional derivative, atol = rtol = 2e-3 (float32), 1e-5 (float64) | `jax/_src/public_test_util.py`: `EPS = 1e-4`, `default_gradient_tolerance = {float32: 2e-3, float64: 1e-5, ...}`, `numerical_jvp` = (f(x + εv) − f(x − εv))·(0.5/ε), compared with `np.testing.assert_allclose` |
| SciPy `check_grad` | forward, ε = √eps₆₄ = 2⁻²⁶ ≈ 1.49e-8 (absolute), every entry | ‖a − n‖₂ < 1.5e-7 | `scipy.optimize.check_grad(func, grad, x0, *args, epsilon=1.4901161193847656e-08, ...)` returns ‖grad(x0) − approx_fprime(x0, func, epsilon)‖₂ and no verdict; the threshold is the one of SciPy's own test, `assert_almost_equal(r, 0)` (7 decimals, i.e. r < 1.5e-7) in `scipy/optimize/tests/test_optimize.py::test_check_grad` |
| classic relative difference | central, ε = 1e-7 (absolute), every entry | ‖a − n‖ / (‖a‖ + ‖n‖) < 1e-7 | the gradient-checking exercise and the CS231n rule of thumb; see [Why eps = 1e-7?](why-eps-1e-7.md); `verigrad.runner.fdcheck.classic_verdict` |

**How the checkers are reproduced.** verigrad computes each checker's finite
difference with its own machinery — `fd_gradient` with the checker's scheme and
absolute step, or `run_study` along JAX's tangent — in the dtype under test,
using the case's `loss_code` (the user's own forward pass) when it has one. That
is the arithmetic the checker would perform on that forward pass: nodes
fl(x ± ε), f evaluated in the dtype, the difference divided by ε. Then the
checker's rule is applied to the candidate's gradient. Two simplifications: JAX
draws a tangent for every argument, here only the variables are perturbed (the
constants are data); SciPy's `approx_fprime` converts x0 to float64 and divides by
dx = (x0 + ε) − x0 computed in float64: in float64 that is the representable
step, so its step error S is 0 (computed here with `run_study(...,
representable=True)` entry by entry); a float32 model rounds x0 + ε back to
float32 while dx stays 2⁻²⁶, which is what `fd_gradient` computes for float32.

## The count

$t_counts

Over the four checkers, **$fa32 false alarms in float32 against $fa64 in float64**
($n32 correct gradients in float32, $n64 in float64).$both_fail_note

![Each checker's measure divided by its threshold, per case; filled = float32, hollow = float64]($fig_scatter)

Right of the vertical line the checker reports a failure. Every point there
belongs to a gradient that is correct.

## Case by case (float32)

In parentheses: the checker's measure divided by its threshold (above 1 = the
checker fails the gradient).

$t_summary

## Why each checker fails in float32

* **PyTorch `gradcheck`** (false alarms: $fa32_gradcheck in float32, $fa64_gradcheck in float64).
  ε = 1e-6 is a float64 step. In float32 the nodes x ± 1e-6 are rounded to
  float32's spacing (1.2e-7 at 1, 6e-5 at 1000), and the round-off of f,
  about 6e-8·|f|, is divided by 2e-6: the median normwise error of gradcheck's
  own float32 finite difference over these cases is $med_fd_err32_gradcheck, while rtol = 1e-3
  asks for 0.1 %. It passes only $ok_float32_gradcheck.
* **JAX `check_grads`** ($fa32_jax in float32: $list_float32_jax). ε = 1e-4 is a reasonable float32
  step and 2e-3 a loose tolerance, and only one directional derivative is
  compared. It still fails where a float32 finite difference cannot work:
  coordinates near 1000 (`logsumexp-large`: the spacing of float32 at 1000 is
  6e-5, comparable to ε), a float32 loss that is a staircase
  (`gradient-checking-3layer`, see [Why eps = 1e-7?](why-eps-1e-7.md)), and the
  exceptions below.
* **SciPy `check_grad`** ($fa32_scipy in float32, $fa64_scipy in float64). 2⁻²⁶ ≈ 1.5e-8 is less than
  half of float32's spacing for every |x| ≥ 0.5: x + ε rounds back to x, the forward
  difference is 0 (or one spacing divided by ε), and ‖a − n‖ is about ‖a‖
  (median normwise error of its float32 finite difference: $med_fd_err32_scipy).
  Its threshold is absolute as well, and a forward difference at √eps is only
  accurate to about √eps·(scale of f''), so even in float64 it fails
  $list_float64_scipy (the kink, tie and overflow cases among them are the
  exceptions below).
* **The classic 1e-7 rule** ($fa32_classic in float32, $fa64_classic in float64). ε = 1e-7 is about
  float32's spacing at 1 (1.2e-7), so the nodes land up to half a spacing away
  from x ± ε, and the rule asks for seven digits that float32 does not have: it
  fails every correct float32 gradient.

verigrad does not have this problem because its reference is the exact gradient
and its tolerance comes from the float baseline (the exact gradient's own
expression evaluated in the dtype under test), not from a constant.

## Exceptions

* Points exactly on a kink or a tie (`kinks-relu-l1`: a ReLU input and an L1
  weight exactly 0; the `maxpool-ties` cases: tied maxima). There every element
  of the subdifferential is a correct gradient. A central difference returns the
  average of the one-sided slopes (relu'(0) = 1/2, a tie split evenly), a
  candidate may use another valid element (relu'(0) = 0, the first maximum),
  and the comparison fails although both are valid. These alarms appear in
  float64 too — kink alarms, not float32 alarms. In float64 the false alarms of
  `gradcheck` are exactly $list_float64_gradcheck; of JAX, $list_float64_jax.
* `softplus-overflow` has no `loss_code`, and its loss written as
  log(1 + exp(x)) overflows at x = 100 in float32 and at x = 800 in float64:
  every finite difference is NaN, and every checker fails.
$disputed_block$disagree_block

## Every case in detail

"value" is the checker's own measure: for `gradcheck` the worst entry's
abs(a − n)/(atol + rtol·abs(n)), for JAX abs(a − n) of the directional derivative,
for SciPy ‖a − n‖₂, for the classic rule the relative difference. "its FD's
error vs truth" is verigrad's normwise relative error of the checker's finite
difference against the exact gradient (for JAX: of the directional
derivative) — the reason for the alarm.

$t_cases
"""

REPRESENTABLE_PAGE = r"""
# Steps that are not representable: the step error S and the (x + h) − x remedy

*Regenerate:* `python docs/studies/make_studies.py --only representable-steps`
*From the command line:* `verigrad study cases/squire-trapp.toml --dtype float32 --scheme central --representable`
(and the same without `--representable`).

## The problem

A finite difference needs f at x + h. In floating point x + h is rounded: the
point actually used is y = fl(x + h), not x + h. The formula, however, still
divides by h. The error this causes is what verigrad calls the **step error**

    S = D_nodes − D_exact = Σ_k w_k (f(y_k) − f(x + c_k h)) / h,

measured exactly (D_nodes: the formula at the rounded nodes, D_exact: at the
intended ones). To first order f(y_k) − f(x + c_k h) ≈ f'(x)·(y_k − x − c_k h), and
the rounding moves each node by at most half a spacing, so

    |S| ≲ |f'(x)|·(ulp(x)/2)·Σ|w_k| / h = B_s / h.

Like round-off, S grows as 1/h; unlike round-off it does not depend on how f is
computed, only on where x is.

## The remedy

Use the step that was actually taken: h' = (x + h) − x. For h ≤ |x| this
subtraction is exact (Sterbenz's lemma), so x + h' is a float, so the nodes are exactly where the
formula assumes and **S = 0**. SciPy's `approx_derivative` does this
(`h = (x0 + h) - x0`); Press et al. recommend it in *Numerical Recipes* (§5.7).
In verigrad: `run_study(..., representable=True)`, or `--representable` on the
command line.

## When S matters: compare it with R

The round-off of f is about ν ≈ (a few)·ulp(f), so

    |S| / |R| ≈ |f'(x)|·ulp(x) / ulp(f(x)) ≈ |x·f'(x) / f(x)|,

the condition number of f along the coordinate. A large |x| alone is not enough;
f must be small compared with x·f'. Three coordinates:

1. **squire-trapp at x = 1.5** (|x f'/f| = $base_cond): S and R are of the same size
   (median |S|/|R| = $base_ratio in float64, $st32_ratio in float32 central).
2. **The same function at x = 1000**: the loss exp(x − 998.5)/√(sin³(x − 998.5) +
   cos³(x − 998.5)) at x = 1000 (x − 998.5 = 1.5 exactly, so f, f' and every
   derivative are the same numbers as above). Only the coordinate is large:
   |x f'/f| = $sh_cond, and the spacing of float64 at 1000 is $ulp1000_64
   (float32: $ulp1000_32). S is **$sh_ratio times R** (median, float64 central).
3. **logsumexp-large, x[$lse_index] = $lse_x**: |x| is as large, but the loss is
   f = $lse_f, so |x f'/f| = $lse_cond and S is *smaller* than R (median ratio
   $lse_ratio): here the round-off of f is the problem, and the remedy changes little.

![|E|, |S| and |R| against h with steps h (solid) and (x+h)−x steps (dashed)]($fig_steps)

$t_table

What the table shows:

* With (x + h) − x steps, **|S| is exactly 0 in every row of every sweep** —
  verigrad computes S exactly, so the rows are the proof, not an estimate.
* With plain steps h, S ≠ 0 in almost every row, and it stays below the model's
  bound B_s/h (the largest |S|·h/B_s for h ≤ 1e-2 is $worst_bound; for larger h, f'
  changes across the stencil and the first-order bound no longer applies).
* At x = 1000 in float64 the model's best error with plain steps is $sh_min
  (at h* = $sh_h); with (x + h) − x steps it is $shr_min (at h* = $shr_h), the same as
  at x = 1.5 ($base_min). Removing S restores what f's round-off allows.
* A step below half the spacing of x gives (x + h) − x = 0: those rows have no
  estimate ($shr_zero such steps at x = 1000 in float64). With the remedy you learn
  that the step is too small; without it you get D = 0, silently.
* In float32 at x = 1.5 (spacing $ulp15_32) S is comparable to R, and the remedy
  moves the model's best central-difference error from $st32_min to $st32r_min.

## Lessons

* Always use h' = (x + h) − x: it costs one subtraction, removes S exactly, and
  tells you when the step is too small to move x at all.
* It matters most when |x·f'/f| is large: large coordinates (positions,
  offsets, times, biases around 1000) of a function whose value is not
  correspondingly large.
* It does not remove R: the round-off of f divided by h is still there.

## References

* W. H. Press, S. A. Teukolsky, W. T. Vetterling and B. P. Flannery,
  *Numerical Recipes*, 3rd ed., §5.7 "Numerical derivatives".
* SciPy, `scipy/optimize/_numdiff.py` (`approx_derivative`: "Recompute dx as
  exactly representable number").
"""

COMPLEX_PAGE = r"""
# Complex step and Richardson extrapolation: when they win, when they cannot be used

*Regenerate:* `python docs/studies/make_studies.py --only complex-step-richardson`
*From the command line:* `verigrad study cases/squire-trapp.toml --scheme richardson-central --scheme central4 --scheme complex-step`

## Two ways to beat the V

**Richardson extrapolation** combines two estimates whose leading error is
known. The central difference has D(h) = f'(x) + C·h² + O(h⁴), so

    (4·D(h/2) − D(h)) / 3 = f'(x) + O(h⁴):

the h² term cancels. Applied to the forward difference it gives
2·D(h/2) − D(h) = f'(x) + O(h²).

**The complex step** evaluates f at a complex point. For f analytic near x,

    f(x + ih) = f(x) + ih·f'(x) − (h²/2)·f''(x) − i(h³/6)·f'''(x) + …

so Im f(x + ih)/h = f'(x) − (h²/6)·f'''(x) + … . Nothing is subtracted: there is
no cancellation, no 1/h round-off arm, and h can be as small as you like.

$t_formulas

## When they win

![Relative error against h of six schemes on the squire-trapp function]($fig_cmp)

$t_table

*The last column counts the decades of h (on a grid of $count steps) where the
relative error is at most 1e-10 in float64 or 1e-5 in float32 — how forgiving
the scheme is about h.*

* **The complex step wins outright** when it can be used: $cs64_min in float64, that
  is $cs64_ulps ulp of f', and $cs32_ulps ulp in float32, for every step below about 1e-8
  (float64). It stays within the target over $cs64_dec decades of h, against $c64_dec
  for central differences and $c4_64_dec for `central4`. One complex evaluation per
  coordinate.
* **Richardson-central is `central4` in disguise.** Written out,
  (4·D(h/2) − D(h))/3 uses the nodes x ± h/2 and x ± h with weights
  ±4/3 and ∓1/6 — exactly the fourth-order central formula with step h/2.
  verigrad's sweeps agree bit for bit: $same_est of $n_rc steps give identical
  estimates for richardson-central at h and central4 at h/2. So their best
  errors coincide ($rc64_min and $c4_64_min in float64) and h* simply doubles
  ($rc64_h against $c4_64_h). Extrapolation is a way to *derive* higher-order
  formulas; it improves on the plain central difference ($c64_min → $rc64_min)
  at the price of two more evaluations of f.
* **Richardson-forward** is second order with Σ|w| = 8 and three evaluations;
  the central difference is second order with Σ|w| = 1 and two evaluations —
  better on both counts.
* **In float32 a higher order buys less**: the best error scales like
  eps^(p/(p+1)), and eps is large. central4 reaches $c4_32_min (model), the complex
  step $cs32_min.

## When they cannot be used

**The complex step needs an analytic function, and code that carries complex
numbers through.** abs, max/maximum, relu, comparisons and `conj` have no
complex extension that yields the derivative (and a forward pass may silently
drop the imaginary part). verigrad refuses, naming the offending
sub-expressions:

$refusals

and on the command line (exit status $cli_rc):

```text
verigrad study cases/gradient-checking-3layer.toml --scheme complex-step
$cli_text
```

$loss_code_text

**Richardson needs the error expansion C·h² + O(h⁴), that is, a function that is
smooth on the whole stencil [x − h, x + h].** A ReLU network is only piecewise
smooth. Along the entry of the three-layer network of
`gradient-checking-3layer` whose stencil reaches a kink first ($kink_entry); E is
the estimate's error against the exact derivative, T verigrad's exact
truncation error (not split for the excluded steps):

$t_kink

Up to h = $kink_prev the truncation follows verigrad's model A·h² (central) and A·h⁴
(Richardson) to every printed digit. From h = $kink_h on, a ReLU pre-activation
changes sign inside [x − h, x + h]: the errors jump to at least $jump_c (central) and
$jump_r (Richardson), and Richardson is no better than the plain central
difference. verigrad knows where the kinks are — it has the expression — so it
flags those steps, keeps them out of its fits and optima, and says why:

$kink_notes
Near kinks keep h below the distance to the nearest kink, or do not
extrapolate.

## Lessons

* If the loss is analytic and you control its implementation, use the complex
  step: one evaluation per coordinate, full precision, almost any h (verigrad's
  default is h = eps).
* Otherwise fourth-order central differences (or Richardson, the same thing)
  beat second-order ones by $c4_gain digits in float64 here — on smooth
  functions, at a step that is large enough to stay out of the round-off arm
  and small enough to stay inside the smooth region.

## References

* W. Squire and G. Trapp, *SIAM Review* 40(1), 110–112, 1998.
* J. R. R. A. Martins, P. Sturdza and J. J. Alonso, *ACM TOMS* 29(3),
  245–262, 2003.
* L. F. Richardson, "The deferred approach to the limit", *Phil. Trans. R. Soc.
  A* 226, 299–361, 1927.
"""

QUADRATIC_PAGE = r"""
# A quadratic loss: all of the error is round-off

*Regenerate:* `python docs/studies/make_studies.py --only quadratic-loss`
*From the command line:* `verigrad study cases/linear-regression.toml --variable beta --index 0 --steps 1e-14:1e3:52`

## The loss

`cases/linear-regression.toml` is least squares,

    L(β) = (1/2n)·‖y − Xβ‖²,    n = 20 samples, 2 features,

with gradient −(1/n)·Xᵀ(y − Xβ). Along any coordinate, L is a polynomial of
degree two:

    L(β + t·e_i) = L(β) + t·g_i + (t²/2)·H_ii,     H = XᵀX/n.

So the central difference is **exact** in exact arithmetic,

    (L(β + h·e_i) − L(β − h·e_i)) / (2h) = g_i     for every h,

and the forward difference has a truncation error that is exactly linear in h:

    (L(β + h·e_i) − L(β)) / h = g_i + h·H_ii/2.

## What verigrad reports

verigrad finds the leading truncation term from exact derivatives. For the
central and fourth-order central schemes its model says:

> $note

and the truncation it measures on every row of every central/central4 sweep is
at most $maxT — zero up to the mpmath working precision (the "exact" values of
L are rounded at a precision of hundreds of bits, and T divides their
difference by h); for comparison, float64's eps² is 4.9e-32. For forward differences T/h ranges from $f64_A to $f64_Amax
over the sweep: constant, equal to the model's H_00/2 = $f64_model_A.

![linear-regression along beta[0]: forward (top) and central (bottom) differences]($fig_q)

*Top: forward differences still have a V, with the textbook bottom near √eps.
Bottom: for central differences there is no truncation arm; the error is S + R
and falls like 1/h. (The dashed "model R" line lies far above the measured R:
verigrad estimates the noise ν of f as the rms over every node of the sweep,
and at h = 1000 the loss values at the nodes are orders of magnitude larger, and
so is their rounding.)*

$t_table

## What it means for the choice of eps

* **Larger is better, up to a point.** With no truncation error the V has only
  its left arm. The textbook step eps^(1/3) ($tb64 in float64) balances a
  truncation error that does not exist: along beta[0] the error is $k64_tb there,
  against $k64_1 at h = 1 ($gain64 times smaller); in float32, $k32_tb against
  $k32_1 ($gain32 times smaller).
* **Not without limit.** For h beyond about 1 the loss values at the nodes grow
  like h², and their rounding with them: the error rises again towards h = $top
  (which is why the fitted "round-off slope" is flatter than −1). The best
  errors are reached for h between about 0.1 and a few units.
* **A finite difference can be as good as a hand-written gradient.** Graded
  with verigrad's candidate rule (tolerance from the float baseline), the full
  central-difference gradient

$t_grade

  fails at the textbook step and passes at h = 1, within a few ulps, like a
  careful hand-written gradient.
* **Forward differences do not share this.** Their truncation h·H_ii/2 is real,
  so their optimum stays near √eps, with √eps-sized errors.
* **Why it matters beyond least squares.** Near a minimum every smooth loss is
  close to quadratic, and its third derivatives — which set the central
  difference's truncation — are small. The optimal central step is then larger
  than the rule of thumb, and a check with a too-small step measures mostly
  round-off.

## References

* J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., §8.1.
"""

INDEX_PAGE = r"""
# Error-analysis studies

Seven studies of finite differences, each measured with verigrad against the
exact gradient, with the error split exactly into truncation T, step S and
round-off R (E = T + S + R). Every number, table and figure is produced by one
script:

    python docs/studies/make_studies.py                  # all seven (about a minute)
    python docs/studies/make_studies.py --only v-curve   # one of them
    python docs/studies/make_studies.py --quick          # coarse grids, fewer cases (the tests' path)

The tables are also written to `docs/studies/tables/*.md`, the key numbers to
`docs/studies/tables/*.json`, the figures to `docs/figures/`.

1. [The V-curve](v-curve.md) — forward, central, fourth-order central and
   complex-step differences of the Squire–Trapp function in float32 and float64:
   where each error curve bottoms out, why, and how well verigrad's model
   predicts it.
2. [Why eps = 1e-7?](why-eps-1e-7.md) — what the "difference < 1e-7" of the
   classic gradient-checking exercise actually measures (round-off), how it
   moves with eps, where its optimum is, the denominators people use, and why
   it cannot work in float32.
3. [float32 false alarms](float32-false-alarms.md) — PyTorch `gradcheck`, JAX
   `check_grads`, SciPy `check_grad` and the classic rule with their default
   tolerances, on every shipped case's correct gradient, against verigrad's
   verdict.
4. [Steps that are not representable](representable-steps.md) — the step error
   S, when it dominates, and the (x + h) − x remedy that removes it exactly.
5. [Complex step and Richardson](complex-step-richardson.md) — when they win,
   why Richardson-central is the fourth-order formula in disguise, and when they
   cannot be used (non-analytic losses, kinks).
6. [A quadratic loss](quadratic-loss.md) — linear regression, where central
   differences have no truncation error at all, and what that means for eps.
7. [Ridders' method](ridders.md) — Ridders (Numerical Recipes `dfridr`), numDeriv
   and three-term Richardson against central differences and the exact truth;
   how far each method's error estimate can be trusted, and a tableau across a pole.

Reading order for a course: 1, 4, 6, 5, 7, 2, 3.

In 16 bits: [half precision](../half-precision.md) — the peers' default checks in float16 and
bfloat16 (every numerical derivative exactly 0), and verigrad's verdicts on the same gradients
(`python docs/studies/half_precision_study.py`).
"""

if __name__ == "__main__":
    sys.exit(main())
