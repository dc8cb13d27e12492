"""Terminal tables and JSON documents for finite-difference studies."""

from __future__ import annotations

import math

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from verigrad.report.jsonio import SCHEMA_VERSION

__all__ = ["study_table", "study_document", "study_record", "loss_code_line"]


def _e(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.2e}"


def study_table(st):
    """h, estimate, E, T, S, R per step, then predicted and observed optimum."""
    t = Table(title=f"{st.case} › {st.direction.label} › {st.dtype.value} › {st.scheme.name} "
                    f"(truth {float(st.truth):.12g})", title_justify="left", pad_edge=False)
    for col in ("h", "estimate", "E total", "T trunc.", "S step", "R round-off"):
        t.add_column(col, justify="right", no_wrap=True)
    best = st.observed.optimal_step
    for r in st.rows:
        style = "bold" if r.h == best else ("dim" if not r.finite else "")
        t.add_row(f"{r.h:.2e}", f"{r.estimate:.10g}", _e(r.error), _e(r.truncation), _e(r.step), _e(r.roundoff),
                  style=style)
    m, o = st.model, st.observed
    lines = [t]
    pred = ("no interior optimum (truncation vanishes)" if m.truncation_vanishes
            else f"h* = {m.optimal_step:.2e}, |E| ≈ {m.min_error:.2e}")
    lines.append(Text(f"  model: {pred}; noise of f_{st.dtype.value} at the nodes {m.noise:.2e}"))
    sl = o.slopes
    lines.append(Text(f"  observed: best h = {o.optimal_step:.2e}, |E| = {o.min_error:.2e}; slopes: truncation "
                      f"{sl['truncation']:.2f} (order {st.scheme.order}), round-off {sl['roundoff']:.2f} (≈ -1)"
                      if st.scheme.kind.value == "linear" else
                      f"  observed: best h = {o.optimal_step:.2e}, |E| = {o.min_error:.2e}; truncation slope "
                      f"{sl['truncation']:.2f} (order 2); no subtractive cancellation"))
    for n in st.notes:
        lines.append(Text("  note: " + n, style="yellow"))
    return Group(*lines)


def _num(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def study_record(st) -> dict:
    from verigrad.engine.truth import format_mp

    return {
        "dtype": st.dtype.value,
        "scheme": st.scheme.name,
        "order": st.scheme.order,
        "truth": format_mp(st.truth, 20),
        "source": st.source,
        "step_mode": st.step_mode.value,
        "representable": st.representable,
        "precision_bits": st.precision,
        "rows": [{"h": r.h, "nominal": r.nominal, "estimate": _num(r.estimate), "error": _num(r.error),
                  "truncation": _num(r.truncation), "step": _num(r.step), "roundoff": _num(r.roundoff),
                  "noise": _num(r.noise), "finite": r.finite} for r in st.rows],
        "model": {"optimal_step": _num(st.model.optimal_step), "min_error": _num(st.model.min_error),
                  "noise": _num(st.model.noise), "truncation_coefficient": _num(st.model.truncation_coefficient),
                  "truncation_power": st.model.truncation_power,
                  "roundoff_coefficient": _num(st.model.roundoff_coefficient),
                  "step_coefficient": _num(st.model.step_coefficient),
                  "truncation_vanishes": st.model.truncation_vanishes, "note": st.model.note},
        "observed": {"optimal_step": _num(st.observed.optimal_step), "min_error": _num(st.observed.min_error),
                     "slopes": {k: _num(v) for k, v in st.observed.slopes.items()}},
        "notes": list(st.notes),
    }


def study_document(studies, *, version: str) -> dict:
    from verigrad.engine.truth import format_mp

    first = studies[0]
    d = first.direction
    f64 = [s for s in studies if s.dtype.value == "float64"]
    return {
        "verigrad": version,
        "schema_version": SCHEMA_VERSION,
        "case": first.case,
        "variable": d.variable,
        "index": list(d.index) if d.index is not None else None,
        "direction": d.label,
        "seed": d.seed,
        "truth": format_mp((f64[0] if f64 else first).truth, 20),
        "studies": [study_record(s) for s in studies],
        "timing": {"seconds": [s.seconds for s in studies]},
    }


def loss_code_line(ref: str, records: list[dict]) -> Text:
    """How far the case's own forward pass is from the exact loss (records of
    :func:`verigrad.runner.case.grade_loss_code`), in ulps of each dtype."""
    parts = [f"{r['dtype']}: {r['ulps']:.2f} ulps" if "ulps" in r else r["error_message"] for r in records]
    return Text(f"loss_code {ref}: error against the exact loss: " + ", ".join(parts))
