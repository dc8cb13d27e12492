"""Terminal summaries, step tables and JSON documents of adaptive-method studies (Ridders, numDeriv).

:func:`adaptive_summary` is what ``verigrad study --scheme "ridders(...)"`` prints: the best
first step, how many steps converged, and how far the method's error estimate can be trusted
(:class:`verigrad.studies.adaptive.EstimateGrade`); :func:`adaptive_table` lists every first
step with its estimate, error, error estimate, entry and exact T/S/R. Every figure comes from
the :class:`~verigrad.studies.adaptive.AdaptiveStudy` record; nothing is computed here.
"""

from __future__ import annotations

import math

from rich.table import Table

from verigrad.report.jsonio import SCHEMA_VERSION

__all__ = ["adaptive_document", "adaptive_record", "adaptive_summary", "adaptive_table"]


def _g(x, spec: str = ".2e") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _title(st) -> str:
    lo = min((r.h for r in st.rows), default=math.nan)
    hi = max((r.h for r in st.rows), default=math.nan)
    return (f"{st.case} › {st.direction.label} › {st.dtype.value} › {st.method.name}: "
            f"{len(st.rows)} first steps {_g(lo, '.1e')} … {_g(hi, '.1e')}")


def adaptive_summary(st) -> str:
    """Title, exact derivative, best first step, convergence and the error estimate's grade.

    ::

        squire-trapp › x › float64 › ridders(con=1.4, ntab=10, safe=2): 16 first steps 1.0e-04 … 1.0e+00
          exact derivative    4.0534278938986206577
          best first step     h0 = 1.6e-01: |error| 6.1e-14 (entry a[6][6], order 14)
          converged           15 of 16 first steps
          error estimate      trustworthy: |E|/estimate median 1.0, max 7.7 ...
    """
    from verigrad.engine.truth import format_mp

    lines = [_title(st), f"  {'exact derivative':<20}{format_mp(st.truth, 20)}"]
    b = st.best
    if b is not None:
        lines.append(f"  {'best first step':<20}h0 = {b.h:.1e}: |error| {abs(b.error):.1e} "
                     f"(entry a[{b.entry[0]}][{b.entry[1]}], order {b.order})")
    conv = sum(r.status == "converged" for r in st.rows)
    lines.append(f"  {'converged':<20}{conv} of {len(st.rows)} first steps")
    g = st.grade
    lines.append(f"  {'error estimate':<20}" + str(g).removeprefix("error estimate "))
    for note in st.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def adaptive_table(st) -> Table:
    """Every first step: estimate, E, the error estimate, status, entry and the exact T, S, R."""
    t = Table(title=_title(st), show_edge=False, pad_edge=False)
    for col in ("h0", "estimate", "E", "estimate of |E|", "status", "entry", "order", "T", "S", "R", "flag"):
        t.add_column(col, justify="right" if col not in ("status", "flag") else "left")
    for r in st.rows:
        t.add_row(_g(r.h, ".2e"), _g(r.estimate, ".15g"), _g(r.error, "+.2e"), _g(r.error_estimate, ".2e"),
                  r.status, f"{r.entry[0]},{r.entry[1]}", str(r.order), _g(r.truncation, "+.2e"),
                  _g(r.step, "+.2e"), _g(r.roundoff, "+.2e"),
                  "understated" if r.understated else ("excluded" if not r.finite else ""))
    return t


def _num(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def adaptive_record(st) -> dict:
    """One adaptive study as JSON-ready data."""
    from verigrad.engine.truth import format_mp

    g = st.grade
    return {
        "case": st.case, "direction": st.direction.label, "dtype": st.dtype.value, "method": st.method.name,
        "truth": format_mp(st.truth, 25), "step_mode": st.step_mode.value, "precision": st.precision,
        "error_estimate": {"verdict": g.verdict, "rows": g.rows, "understated": g.understated,
                           "factor": g.factor, "median_ratio": _num(g.median_ratio), "max_ratio": _num(g.max_ratio),
                           "worst_step": _num(g.worst_step)},
        "rows": [{"h": r.h, "nominal": r.nominal, "estimate": _num(r.estimate), "error": _num(r.error),
                  "error_estimate": _num(r.error_estimate), "status": r.status, "entry": list(r.entry),
                  "order": r.order, "truncation": _num(r.truncation), "step": _num(r.step),
                  "roundoff": _num(r.roundoff), "evaluations": r.evaluations, "understated": r.understated,
                  "finite": r.finite} for r in st.rows],
        "notes": list(st.notes),
    }


def adaptive_document(studies, *, version: str) -> dict:
    """Adaptive studies as a study document (docs/report-schema.md) whose linear ``studies`` are
    empty and whose ``adaptive_studies`` hold them (``kind: "adaptive-study"``)."""
    from verigrad.engine.truth import format_mp

    first = studies[0]
    d = first.direction
    f64 = [s for s in studies if s.dtype.value == "float64"]
    return {"verigrad": version, "schema_version": SCHEMA_VERSION, "kind": "adaptive-study",
            "case": first.case, "variable": d.variable, "index": list(d.index) if d.index is not None else None,
            "direction": d.label, "seed": d.seed, "truth": format_mp((f64[0] if f64 else first).truth, 20),
            "studies": [], "adaptive_studies": [adaptive_record(s) for s in studies],
            "timing": {"seconds": [s.seconds for s in studies]}}
