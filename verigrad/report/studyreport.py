"""Terminal summaries, step tables and JSON documents of finite-difference studies.

:func:`study_summary` is what ``verigrad study`` prints: for each scheme × dtype, the measured
and the modelled optimum, and per regime (small steps: round-off and step error; large steps:
truncation) its steps, the measured and modelled slope, and the part that dominates there —
a table a student can quote.  :func:`study_table` lists every step (``verigrad study -v``).
Every figure comes from the :class:`~verigrad.studies.Study` record; nothing is computed here.
"""

from __future__ import annotations

import math

from rich.console import Group
from rich.table import Table
from rich.text import Text

from verigrad.report.jsonio import SCHEMA_VERSION
from verigrad.report.terminal import Para, plural

__all__ = ["study_summary", "study_table", "study_document", "study_record", "loss_code_line",
           "PART_NAMES", "REGIME_NAMES"]

#: how a part of the error is called in words
PART_NAMES = {"truncation": "truncation", "step": "step (nodes)", "roundoff": "round-off", "error": "total"}
#: how a regime of a study is called in words
REGIME_NAMES = {"roundoff": "small steps", "truncation": "large steps"}


def _e(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.2e}"


def _g(x: float, spec: str = ".2e") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _slope(x: float) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:+.2f}"


def _title(st) -> str:
    lo = min((r.h for r in st.rows), default=math.nan)
    hi = max((r.h for r in st.rows), default=math.nan)
    return (f"{st.case} › {st.direction.label} › {st.dtype.value} › {st.scheme.name} (order {st.scheme.order}): "
            f"{plural(len(st.rows), 'step')} {_g(lo, '.1e')} … {_g(hi, '.1e')}")


def study_summary(st):
    """The table of one study a student can quote: optima, then slope and dominant part per regime.

    ::

        squire-trapp › x › float64 › central (order 2): 31 steps from 1.0e-12 to 1.0e-01
          exact derivative   4.0534278938986206577
                             step h     |error|
          measured optimum   6.1e-06    1.1e-11
          model optimum      5.9e-06    1.0e-11
          regime             steps                    slope  model  dominant part
          small steps        1.0e-12 … 3.2e-06 (14)   -1.00  -1     round-off
          large steps        3.2e-05 … 1.0e-01 (10)   +2.00  +2     truncation
    """
    from verigrad.engine.truth import format_mp

    m, o = st.model, st.observed
    lines = [f"  {'exact derivative':<19}{format_mp(st.truth, 20)}",
             f"  {'':<19}{'step h':<11}{'|error|':<11}",
             f"  {'measured optimum':<19}{_g(o.optimal_step):<11}{_g(o.min_error):<11}"]
    model_row = f"  {'model optimum':<19}{_g(m.optimal_step):<11}{_g(m.min_error):<11}"
    lines.append(model_row.rstrip())
    regimes = st.regimes
    if regimes:
        lines.append(f"  {'regime':<19}{'steps':<25}{'slope':>6}{'model':>7}  dominant part")
        for rg in regimes:
            steps = f"{_g(rg.h_min, '.1e')} … {_g(rg.h_max, '.1e')} ({rg.count})"
            model_slope = "—" if not math.isfinite(rg.model_slope) else f"{rg.model_slope:+.0f}"
            lines.append(f"  {REGIME_NAMES.get(rg.kind, rg.kind):<19}{steps:<25}{_slope(rg.slope):>6}"
                         f"{model_slope:>7}  {PART_NAMES.get(rg.dominant, rg.dominant)}")
    else:
        lines.append("  no step where one part of the error dominates the others tenfold")
    parts: list = [Para(_title(st), style="bold", hang=2), *(Text(line.rstrip()) for line in lines)]
    note = st.optimum_note
    if note:
        parts.append(Para(f"model optimum not marked: {note}", indent=2, hang=4, style="yellow"))
    for n in st.notes:
        parts.append(Para("note: " + n, indent=2, hang=4, style="yellow"))
    return Group(*parts)


def study_table(st):
    """Every step of a study (``verigrad study -v``): h, estimate, E, T, S, R; the best step in bold."""
    t = Table(title=f"{st.case} › {st.direction.label} › {st.dtype.value} › {st.scheme.name}: every step",
              title_justify="left", pad_edge=False)
    for col in ("h", "estimate", "E total", "T trunc.", "S step", "R round-off"):
        t.add_column(col, justify="right", no_wrap=True)
    best = st.observed.optimal_step
    for r in st.rows:
        style = "bold" if r.h == best else ("dim" if not r.finite else "")
        t.add_row(f"{r.h:.2e}", f"{r.estimate:.10g}", _e(r.error), _e(r.truncation), _e(r.step), _e(r.roundoff),
                  style=style)
    return t


def _num(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def study_record(st) -> dict:
    """One study as a JSON-ready dict (docs/report-schema.md, "Study document")."""
    import numpy as np

    from verigrad.engine.truth import format_mp

    hs = np.array([r.h for r in st.rows], dtype=np.float64)
    with np.errstate(all="ignore"):
        pred = st.model.predict(hs)
    lo, hi = st.usable_steps
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
                  "noise": _num(r.noise), "finite": r.finite,
                  "model": {k: _num(float(pred[k][i])) for k in ("truncation", "step", "roundoff")}}
                 for i, r in enumerate(st.rows)],
        "model": {"optimal_step": _num(st.model.optimal_step), "min_error": _num(st.model.min_error),
                  "noise": _num(st.model.noise), "truncation_coefficient": _num(st.model.truncation_coefficient),
                  "truncation_power": st.model.truncation_power,
                  "roundoff_coefficient": _num(st.model.roundoff_coefficient),
                  "step_coefficient": _num(st.model.step_coefficient),
                  "truncation_vanishes": st.model.truncation_vanishes, "note": st.model.note,
                  "optimal_step_note": st.optimum_note},
        "observed": {"optimal_step": _num(st.observed.optimal_step), "min_error": _num(st.observed.min_error),
                     "slopes": {k: _num(v) for k, v in st.observed.slopes.items()}},
        "usable_steps": [_num(lo), _num(hi)],
        "regimes": [{"kind": rg.kind, "h_min": rg.h_min, "h_max": rg.h_max, "count": rg.count,
                     "slope": _num(rg.slope), "model_slope": _num(rg.model_slope), "dominant": rg.dominant}
                    for rg in st.regimes],
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
    return Para(f"loss_code {ref}: error against the exact loss: " + ", ".join(parts), hang=4)
