"""The Ridders study of ``docs/studies/ridders.md``: Ridders' method against plain central
differences and against the exact truth, and how far each method's error estimate can be trusted.

Run through ``make_studies.py`` (``--only ridders``); ``h`` is the ``make_studies`` module, whose
helpers (tables, figures, claims) this study uses. Every number comes from verigrad's public
machinery: :func:`verigrad.studies.run_study` (central, Richardson) and
:func:`verigrad.studies.adaptive.run_adaptive_study` (Ridders, numDeriv), whose rows carry the
true error E, its exact parts T, S, R and the method's error estimate; this script only
aggregates and formats.
"""

from __future__ import annotations

import math

import numpy as np

from verigrad.casefile.loader import load_case_text
from verigrad.engine.model import compile_case
from verigrad.fd import coordinate_direction
from verigrad.schemes import get_scheme
from verigrad.spec import Dtype
from verigrad.studies import run_study
from verigrad.studies import grade_error_estimates, run_adaptive_study

#: tan near its pole at pi/2 = 1.5708: a first step above 0.07 puts a node across it
TAN_CASE = """
name = "tan-near-pole"
description = "tan(x) at x = 1.5, 0.0708 from its pole at pi/2."
loss = "tan(x)"

[symbols]
x = { value = 1.5 }
"""

METHODS = ("central", "central4", 'richardson(base="central", terms=3)', "ridders()", "numderiv()")
SHORT = {"central": "central", "central4": "central4", 'richardson(base="central", terms=3)': "richardson-3",
         "ridders()": "ridders", "numderiv()": "numderiv"}
TARGETS = {"float32": 1e-5, "float64": 1e-10}


def _linear_rows(st):
    """(h, E, estimate or NaN) of a linear study's finite rows (Richardson: |D - D_ref| from its rows)."""
    rows = [r for r in st.rows if r.finite]
    est = [getattr(r, "error_estimate", math.nan) for r in rows]
    return [r.h for r in rows], [r.error for r in rows], est


def _richardson_estimates(model, dt, scheme, direction, steps, lv):
    """The Richardson tableau's error estimate |D(h) - D_ref(h)| per step, from two linear sweeps."""
    a = run_study(model, dtype=dt, scheme=scheme, direction=direction, steps=steps, loss_values=lv)
    b = run_study(model, dtype=dt, scheme=scheme.error_reference, direction=direction, steps=steps, loss_values=lv)
    out = []
    for ra, rb in zip(a.rows, b.rows):
        out.append(abs(ra.estimate - rb.estimate) if ra.finite and rb.finite else math.nan)
    return a, out


def _usable(hs, errs, truth, target):
    ok = [h for h, e in zip(hs, errs) if math.isfinite(e) and abs(e) <= target * abs(truth)]
    return math.log10(max(ok) / min(ok)) if len(ok) >= 2 else 0.0


def study_ridders(ctx, h) -> dict:
    case, model = h.load("squire-trapp")
    lv = h.loss_code_evaluator(case) if case.loss_code is not None else None
    d = coordinate_direction(model)
    count = 16 if ctx.quick else 40
    results = {}
    table_rows, grade_rows = [], []
    curves = {}
    for dt in h.DTYPES:
        eps = float(np.finfo(dt.numpy).eps)
        for spec in METHODS:
            m = get_scheme(spec)
            key = f"{SHORT[spec]}/{dt.value}"
            if spec in ("ridders()", "numderiv()"):
                steps = np.logspace(-4, math.log10(0.3), count)
                st = run_adaptive_study(model, dtype=dt, method=m, direction=d, steps=steps, loss_values=lv)
                rows = [r for r in st.rows if r.finite]
                hs, errs, ests = [r.h for r in rows], [r.error for r in rows], [r.error_estimate for r in rows]
                evaluations = max(r.evaluations for r in st.rows)
                grade, truth = st.grade, float(st.truth)
                entries = sorted({r.entry for r in rows})
                extra = {"not_converged": sum(r.status != "converged" for r in st.rows),
                         "entries": [list(e) for e in entries]}
            else:
                steps = h._v_grid(m, dt, 2 * count)
                if spec.startswith("richardson"):
                    st, est_all = _richardson_estimates(model, dt, m, d, steps, lv)
                    fin = [i for i, r in enumerate(st.rows) if r.finite]
                    hs = [st.rows[i].h for i in fin]
                    errs = [st.rows[i].error for i in fin]
                    ests = [est_all[i] for i in fin]
                    grade = grade_error_estimates(hs, errs, ests)
                else:
                    st = run_study(model, dtype=dt, scheme=m, direction=d, steps=steps, loss_values=lv)
                    hs, errs, ests = _linear_rows(st)
                    grade = None
                evaluations = len(m.offsets)
                truth = float(st.truth)
                extra = {}
            best = min(range(len(errs)), key=lambda i: abs(errs[i]))
            res = {"method": m.name, "dtype": dt.value, "evaluations": evaluations, "best_h": hs[best],
                   "best_error": abs(errs[best]), "best_rel_error": abs(errs[best]) / abs(truth),
                   "best_ulps": abs(errs[best]) / (eps * abs(truth)),
                   "usable_decades": _usable(hs, errs, truth, TARGETS[dt.value]), "truth": truth, **extra}
            if grade is not None:
                res.update({"estimate_rows": grade.rows, "understated": grade.understated,
                            "median_ratio": grade.median_ratio, "max_ratio": grade.max_ratio,
                            "worst_h": grade.worst_step, "verdict": grade.verdict})
            results[key] = res
            curves[key] = (np.array(hs), np.abs(np.array(errs)) / abs(truth), np.array(ests) / abs(truth))
            table_rows.append([f"`{SHORT[spec]}`", dt.value, evaluations, h.e(res["best_h"]), h.e(res["best_error"]),
                               h.f2(res["best_ulps"], 1), h.f2(res["usable_decades"], 1)])
            if grade is not None:
                grade_rows.append([f"`{SHORT[spec]}`", dt.value, grade.rows, h.f2(grade.median_ratio),
                                   h.e(grade.max_ratio), h.e(grade.worst_step), grade.understated, grade.verdict])

    # the pole: tan at 1.5, first steps from 1e-3 to 0.5
    tan = compile_case(load_case_text(TAN_CASE, path="tan-near-pole.toml"))
    td = coordinate_direction(tan)
    tsteps = np.logspace(-3, math.log10(0.5), 12 if ctx.quick else 24)
    pole = run_adaptive_study(tan, dtype=Dtype.FLOAT64, method=get_scheme("ridders()"), direction=td, steps=tsteps)
    pole_rows = []
    for r in pole.rows:
        rel = abs(r.error) / abs(float(pole.truth)) if math.isfinite(r.error) else math.nan
        pole_rows.append({"h0": r.h, "status": r.status, "rel_error": rel, "estimate": r.error_estimate,
                          "understated": r.understated, "crosses": r.h > math.pi / 2 - 1.5})
    crossing = [p for p in pole_rows if p["crosses"]]
    safe = [p for p in pole_rows if not p["crosses"]]
    flagged = sum(p["status"] != "converged" for p in crossing)
    pole_table = [[h.e(p["h0"]), "yes" if p["crosses"] else "no", p["status"], h.e(p["rel_error"]),
                   h.e(p["estimate"])] for p in pole_rows[:: 1 if ctx.quick else 2]]

    t_main = ctx.table("ridders-summary", h.md_table(
        ["method", "dtype", "f evaluations", "best step", "min abs(E)", "in ulps of f'",
         "decades of h with rel. error ≤ target"], table_rows))
    t_grade = ctx.table("ridders-estimates", h.md_table(
        ["method", "dtype", "steps", "median abs(E)/estimate", "max abs(E)/estimate", "at h", "understated > 10x",
         "verdict"], grade_rows))
    t_pole = ctx.table("ridders-pole", h.md_table(["h0", "tableau spans the pole", "status", "rel. error",
                                                   "error estimate"], pole_table))

    fig = h.new_figure(9.6, 7.2)
    axes = fig.subplots(2, 2)
    colors = {"central": "tab:blue", "central4": "tab:green", "richardson-3": "tab:olive", "ridders": "tab:red",
              "numderiv": "tab:purple"}
    for col, dt in enumerate(h.DTYPES):
        ax = axes[0][col]
        for spec in METHODS:
            hh, rel, _ = curves[f"{SHORT[spec]}/{dt.value}"]
            ok = rel > 0
            ax.loglog(hh[ok], rel[ok], "o-", ms=2, lw=1.1, color=colors[SHORT[spec]], label=SHORT[spec])
        ax.axhline(TARGETS[dt.value], color="gray", ls="--", lw=0.8)
        ax.set_xlabel("step h (Ridders, numDeriv: first step)")
        ax.set_ylabel("relative error |E| / |f'|")
        ax.set_title(f"{dt.value}: error against the exact derivative", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6.5, loc="lower left")
        ax = axes[1][col]
        for name in ("ridders", "numderiv", "richardson-3"):
            hh, rel, est = curves[f"{name}/{dt.value}"]
            ok = (rel > 0) & (est > 0) & np.isfinite(est)
            ax.loglog(hh[ok], rel[ok], "o-", ms=2, lw=1.1, color=colors[name], label=f"{name}: true |E|")
            ax.loglog(hh[ok], est[ok], "x--", ms=3, lw=0.9, color=colors[name], label=f"{name}: its estimate")
        ax.set_xlabel("step h")
        ax.set_ylabel("relative to |f'|")
        ax.set_title(f"{dt.value}: error estimates against the true error", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, loc="upper left", ncol=1)
    fig.suptitle("squire-trapp at x = 1.5: Ridders, numDeriv, Richardson and central differences", fontsize=10)
    fig_path = ctx.save(fig, "ridders.png")

    r64, c64 = results["ridders/float64"], results["central/float64"]
    r32, c32 = results["ridders/float32"], results["central/float32"]
    ctx.claim(r64["best_error"] < c64["best_error"] / 100, "float64: Ridders' best error is 100x below central's")
    ctx.claim(r64["usable_decades"] > c64["usable_decades"], "float64: Ridders reaches the target over more decades")
    ctx.claim(r64["verdict"] in ("trustworthy", "understated") and r64["median_ratio"] < 10,
              "float64: Ridders' error estimate is within 10x of the true error at the median step")
    ctx.claim(results["numderiv/float64"]["median_ratio"] > 1,
              "numDeriv's last correction understates the true error at the median step")
    ctx.claim(flagged == len(crossing) and len(crossing) > 0,
              "every first step whose tableau spans the pole of tan is flagged (not converged or non-finite)")
    ctx.claim(all(p["status"] == "converged" for p in safe[: max(1, len(safe) // 2)]),
              "small first steps at the pole converge")

    data = {"studies": results, "pole": pole_rows, "quick": ctx.quick, "count": count}
    ctx.numbers("ridders", data)
    values = {
        "count": count, "t_main": t_main, "t_grade": t_grade, "t_pole": t_pole, "fig": fig_path,
        "r64_best": h.e(r64["best_error"]), "r64_h": h.e(r64["best_h"]), "c64_best": h.e(c64["best_error"]),
        "r64_ulps": h.f2(r64["best_ulps"], 1), "r64_dec": h.f2(r64["usable_decades"], 1),
        "c64_dec": h.f2(c64["usable_decades"], 1), "r32_best": h.e(r32["best_error"]),
        "c32_best": h.e(c32["best_error"]), "r64_med": h.f2(r64["median_ratio"]), "r64_max": h.e(r64["max_ratio"]), "r64_worst_h": h.e(r64["worst_h"]),
        "r64_under": r64["understated"], "r64_rows": r64["estimate_rows"],
        "n64_med": h.f2(results["numderiv/float64"]["median_ratio"]),
        "n64_under": results["numderiv/float64"]["understated"],
        "n64_rows": results["numderiv/float64"]["estimate_rows"],
        "r3_med": h.f2(results["richardson-3/float64"]["median_ratio"]),
        "r32_med": h.f2(r32["median_ratio"]), "r32_under": r32["understated"], "r32_rows": r32["estimate_rows"],
        "r64_evals": r64["evaluations"], "flagged": flagged, "crossing": len(crossing),
    }
    ctx.page("ridders", RIDDERS_PAGE, values)
    return data


RIDDERS_PAGE = r"""
# Ridders' method against central differences, and how far an error estimate can be trusted

*Regenerate this page, its tables and figure:* `python docs/studies/make_studies.py --only ridders`
(about half a minute; marked slow in the tests).
*One sweep from the command line:*
`verigrad study cases/squire-trapp.toml --scheme "ridders()" --scheme "numderiv()" --scheme central -v`

## The methods

* **Central differences** `(f(x+h) - f(x-h)) / 2h`, order 2, and `central4`, order 4.
* **Richardson, three terms** `richardson(base="central", terms=3)`: central differences at h, h/2,
  h/4 combined with exact weights (order 6); its error estimate is the last correction,
  |R₃(h) − R₂(h/2)|.
* **Ridders' method** `ridders()` (Numerical Recipes, 3rd ed., §5.7, `dfridr`): central differences
  at h0/1.4ⁱ, i < 10, a Richardson tableau extrapolated by 1.4²ʲ, and the entry whose
  error estimate max(|a[j][i] − a[j−1][i]|, |a[j][i] − a[j−1][i−1]|) is smallest; it stops
  early when the diagonal grows by more than 2×. Up to $r64_evals evaluations.
* **numDeriv** `numderiv()` (R package numDeriv, `grad`'s default): four central differences at
  h/2ᵏ, extrapolated by 4ᵐ (order 8). numDeriv returns no error estimate; verigrad reports the last
  correction |final − previous level on the finest steps| as one.

Each method is swept over its (first) step on the Squire–Trapp function at x = 1.5, and every
value is compared with the certified derivative. For Ridders and numDeriv the returned tableau
entry is itself a linear scheme with exact weights, so its error splits exactly into truncation,
step and round-off like any other scheme (`verigrad study -v` prints the split).

## Accuracy

$t_main

![Ridders, numDeriv, Richardson and central differences: error and error estimates]($fig)

In float64 Ridders' best error is $r64_best ($r64_ulps ulps of f′, at h0 = $r64_h), against
$c64_best for central differences; more usefully, it reaches a relative error of 1e-10 over
$r64_dec decades of first steps (central: $c64_dec). A first step "over which f changes
substantially" (Numerical Recipes) is the right advice: the tableau then has room to
extrapolate before round-off takes over. In float32 the picture is the same at a larger scale
($r32_best against $c32_best).

## How far each error estimate can be trusted

An estimate is *understated* when the true error exceeds it more than tenfold: the method then
promises digits it does not have.

$t_grade

* **Ridders**' estimate compares neighbouring tableau entries, so it sees both the truncation
  that is left and the round-off that the extrapolation amplifies: the median ratio |E|/estimate
  in float64 is $r64_med, and $r64_under of $r64_rows first steps are understated (the worst
  by $r64_max, at h0 = $r64_worst_h: a difference of neighbouring entries can be small by
  chance, when they happen to agree better than either agrees with the derivative).
* **numDeriv**'s last correction measures only how much the final extrapolation changed the value;
  the round-off of its finest differences is common to both and cancels out of it. The median
  ratio is $n64_med and $n64_under of $n64_rows steps are understated in float64: use it as a
  truncation estimate only.
* **Richardson**'s last correction behaves alike (median ratio $r3_med).
* In float32 Ridders' median ratio is $r32_med ($r32_under of $r32_rows understated).

## Non-convergence: a tableau across a pole

tan(x) at x = 1.5 is 0.0708 from its pole at π/2. A first step larger than that puts nodes on the
other side, where tan has changed sign; Ridders' tableau cannot settle and its error estimate
grows with it, so verigrad flags the result (`not converged`: the estimate exceeds √ε of the
value). All $crossing first steps whose tableau spans the pole are flagged ($flagged flagged):

$t_pole

## Reproduce

```sh
verigrad scheme "ridders()" "numderiv()" 'richardson(base="central", terms=3)'
verigrad study cases/squire-trapp.toml --dtype float64 --scheme "ridders()" --steps 1e-4:0.3:16 -v
```
"""
