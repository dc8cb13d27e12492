"""Terminal rendering with rich: tables that fit 80 columns and degrade when piped."""

from __future__ import annotations

import numpy as np
from rich.table import Table
from rich.text import Text

__all__ = ["truth_table", "show_text", "fmt_index"]


def fmt_index(idx: tuple) -> str:
    return "" if not idx else "[" + ", ".join(str(int(i)) for i in idx) + "]"


#: a gradient with more entries than this is summarised (per variable, and its largest entries)
TRUTH_TABLE_ENTRIES = 40
#: how many of the largest entries a summarised truth shows
TRUTH_TOP_ENTRIES = 10


def _float_gradient(truth) -> dict:
    """The truth rounded to float64 per variable, without building per-entry objects when avoidable."""
    hi = getattr(truth, "gradient_hi", None)
    return dict(hi) if hi else truth.as_float64()


def _entry_row(t: Table, truth, name: str, idx: tuple) -> None:
    g = truth.gradient[name] if not hasattr(truth, "entry") else None
    value = truth.entry(name, idx) if g is None else g[idx]
    note = ""
    if truth.exact_zero[name][idx]:
        note = " (exact zero)"
    elif truth.absolute[name][idx]:
        note = f" (|g| < 1e-{truth.digits + 8}·scale)"
    t.add_row(f"d loss/d {name}{fmt_index(idx)}", repr(truth.point[name][idx].item()), truth.decimal(value) + note)


def truth_table(model, truth, *, verbose: bool = False):
    """Loss and certified gradient entries of one dtype's point.

    Every entry when the gradient has at most :data:`TRUTH_TABLE_ENTRIES` entries (or with
    ``verbose``); otherwise a row per variable (shape, exact zeros, largest |g|) and the
    :data:`TRUTH_TOP_ENTRIES` largest entries, so that rendering never grows with the size
    of the gradient (every entry is in the JSON).
    """
    from rich.console import Group

    total = sum(g.size for g in truth.exact_zero.values())
    t = Table(title=f"{truth.case} · {truth.dtype.value} point · {truth.digits} certified digits "
                    f"({truth.precision} bits)", title_justify="left", expand=False)
    t.add_column("quantity", no_wrap=True)
    t.add_column("value at x_p", no_wrap=True)
    t.add_column("exact gradient", no_wrap=True)
    t.add_row("loss", "", truth.decimal(truth.loss[()]))
    if verbose or total <= TRUTH_TABLE_ENTRIES:
        for name, zeros in truth.exact_zero.items():
            for idx in np.ndindex(*zeros.shape):
                _entry_row(t, truth, name, idx)
        return t
    floats = _float_gradient(truth)
    s = Table(title=f"{total:,} gradient entries: a summary per variable (every entry: -v or --json)",
              title_justify="left", expand=False)
    for col in ("variable", "shape", "exact zeros", "max |g|", "at"):
        s.add_column(col, no_wrap=True, justify="left" if col in ("variable", "at") else "right")
    for name, g in floats.items():
        a = np.abs(g)
        i = np.unravel_index(int(np.argmax(a)), g.shape) if g.size else ()
        s.add_row(name, "×".join(map(str, g.shape)) or "scalar", f"{int(truth.exact_zero[name].sum()):,}",
                  f"{float(a[i]) if g.size else 0.0:.3e}", f"{name}{fmt_index(i)}")
    flat = [(float(v), name, j) for name, g in floats.items()
            for j, v in zip(*_top(np.abs(g).ravel(), TRUTH_TOP_ENTRIES))]
    flat.sort(key=lambda r: -r[0])
    for _, name, j in flat[:TRUTH_TOP_ENTRIES]:
        _entry_row(t, truth, name, tuple(int(k) for k in np.unravel_index(j, floats[name].shape)))
    t.title += f" · the {min(TRUTH_TOP_ENTRIES, total)} largest of {total:,} entries"
    return Group(t, s)


def _top(a: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest entries of a 1-D array, largest first (O(n))."""
    if a.size > k:
        idx = np.argpartition(-a, k - 1)[:k]
    else:
        idx = np.arange(a.size)
    idx = idx[np.argsort(-a[idx], kind="stable")]
    return idx, a[idx]


def show_text(model, *, latex: bool = False) -> str:
    """The loss and its exact gradient: case-file form, array program, scalar form when small."""
    from verigrad.engine import symbolic

    case = model.case
    lines = [f"case {case.name}: {model.case.parameter_count} parameters in "
             f"{', '.join(f'{v.name}{list(v.shape)}' for v in case.variables)}"]
    if case.description:
        lines.append(case.description.strip())
    lines.append("")
    prog = symbolic.array_program(model, latex=latex)
    if latex:
        lines.append(r"\begin{aligned}")
        lines += [f"{n} &= {e} \\\\" for n, e in prog.lines]
        lines.append(r"\end{aligned}")
    else:
        lines.append("loss and exact gradient (reverse accumulation; t1, t2, ... are shared sub-expressions):")
        lines.append(prog.render())
    scalar = symbolic.scalar_gradient(model)
    if scalar is not None:
        import sympy

        loss = symbolic.scalar_loss(model)
        lines.append("")
        lines.append("per entry (sympy):")
        render = sympy.latex if latex else (lambda e: sympy.pretty(e, use_unicode=True))
        lines.append("L =" + ("\n" if not latex else " ") + render(loss))
        for name, g in scalar.items():
            for idx in np.ndindex(*g.shape):
                lines.append(f"dL/d{name}{fmt_index(idx)} =" + ("\n" if not latex else " ") + render(g[idx]))
    return "\n".join(lines)


_VERDICT_STYLE = {"pass": "green", "fail": "red", "nonfinite": "magenta", "error": "red bold"}


def _fmt(x, spec: str = ".2e") -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    if x != x:
        return "—"
    return format(x, spec)


def _errors(r) -> dict:
    if r.grade is None:
        return {}
    d = r.grade.to_dict()
    return d.get("errors", {})


def case_details(rep, *, verbose: bool = False, quiet: bool = False):
    """One case: a row per candidate × dtype, then the diagnosis of each failure."""
    from rich.console import Group

    parts = []
    if rep.error:
        return Text(f"✗ {rep.path}: {rep.error}", style="red")
    t = Table(title=f"{rep.name}  ({rep.parameters} parameters, {rep.seconds:.2f} s)", title_justify="left",
              expand=False, pad_edge=False)
    t.add_column("candidate", no_wrap=True, max_width=24)
    t.add_column("dtype", no_wrap=True)
    t.add_column("verdict", no_wrap=True)
    t.add_column("max ulps", justify="right", no_wrap=True)
    t.add_column("rel err", justify="right", no_wrap=True)
    t.add_column("expect", no_wrap=True)
    shown = 0
    for r in rep.results:
        if quiet and r.met is not False:
            continue
        e = _errors(r)
        name = r.candidate if r.kind == "code" else f"{r.scheme} h={r.step:.1e}"
        exp = {True: "✓ " + (r.expect or ""), False: "✗ expected " + (r.expect or ""), None: "info"}[r.met]
        t.add_row(name, r.dtype, Text(r.verdict, style=_VERDICT_STYLE.get(r.verdict, "")),
                  _fmt(e.get("max_ulps"), ".3g"), _fmt(e.get("normwise_relative")),
                  Text(exp, style="green" if r.met else ("red" if r.met is False else "dim")))
        shown += 1
    if shown:
        parts.append(t)
    for dt, lc in (rep.loss_code or {}).items():
        if "error_message" in lc:
            parts.append(Text(f"  loss_code › {dt}: {lc['error_message']}", style="red"))
        elif verbose or lc["ulps"] > 64:
            parts.append(Text(f"  loss_code › {dt}: {lc['value']:.9g}, {lc['ulps']:.3g} ulps from the exact loss",
                              style="" if lc["ulps"] <= 64 else "yellow"))
    for r in rep.results:
        if quiet and r.met is not False:
            continue
        classic = r.extra.get("classic") if r.extra else None
        if r.verdict == "pass" and not verbose and not (classic and classic["outcome"] != "agree"):
            continue
        lines = []
        if r.grade is not None and hasattr(r.grade, "messages"):
            msgs = r.grade.messages()
            lines.extend(msgs if verbose else msgs[:12])
            if not verbose and len(msgs) > 12:
                lines.append(f"… {len(msgs) - 12} more (use -v or --json for all)")
        elif r.message:
            lines.append(r.message)
        classic = r.extra.get("classic") if r.extra else None
        if classic and classic["outcome"] != "agree":
            cov = classic.get("coverage") or {}
            where = (f", on {cov['coordinates']:,} of {cov['of']:,} coordinates and {cov['directions']} random "
                     f"directions, seed {cov['seed']}" if cov.get("mode") == "sample" else "")
            lines.append(f"{r.case} › {r.candidate} › {r.dtype}: the classic check (central, eps={classic['eps']:g}"
                         f"{where}, relative difference {classic['relative_difference']:.1e} vs "
                         f"{classic['threshold']:g}) would say {'pass' if classic['classic_pass'] else 'fail'}: "
                         f"{classic['outcome']}")
        for line in lines:
            parts.append(Text("  " + line, style="red" if r.met is False else "yellow" if r.verdict != "pass" else ""))
        if verbose and r.value is not None and r.dtype in rep.truths:
            parts.append(entry_table(r, rep.truths[r.dtype]))
    return Group(*parts) if parts else Text("")


def run_summary(run, *, quiet: bool = False):
    """The closing table: counts and every unmet expectation."""
    s = run.summary()
    style = "green" if s["ok"] else "red"
    words = (f"{s['cases']} cases, {s['results']} grades: {s['expectations_met']} expectations met, "
             f"{s['expectations_not_met']} not met, {s['informational']} informational"
             + (f", {s['case_errors']} case errors" if s["case_errors"] else "") + f" ({run.seconds:.1f} s)")
    head = "INTERRUPTED  " if s.get("interrupted") else ("OK  " if s["ok"] else "FAILED  ")
    return Text(head + words, style=style)


def entry_table(r, truth) -> Table:
    """Every entry of one grade (``-v``): truth, value, absolute error, error in ulps of the dtype."""
    import mpmath

    dt = np.dtype(r.dtype)
    t = Table(title=f"{r.case} › {r.candidate} › {r.dtype}: every entry", title_justify="left", pad_edge=False)
    for col in ("entry", "truth", "value", "abs err", "ulps"):
        t.add_column(col, justify="right" if col != "entry" else "left", no_wrap=True)
    for name, g in truth.gradient.items():
        v = r.value.get(name)
        if v is None:
            continue
        for idx in np.ndindex(*g.shape):
            val = float(np.asarray(v)[idx])
            with mpmath.workprec(256):
                err = float(abs(mpmath.mpf(val) - g[idx])) if np.isfinite(val) else float("nan")
            ref = abs(float(g[idx])) or float(truth.scale) or 1.0
            ulp = float(np.spacing(dt.type(ref)))
            t.add_row(f"{name}{fmt_index(idx)}", truth.decimal(g[idx])[:18], f"{val:.9g}", f"{err:.2e}",
                      f"{err / ulp:.3g}")
    return t
