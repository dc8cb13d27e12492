"""The JSON document of ``verigrad run`` (schema: docs/report-schema.md)."""

from __future__ import annotations

from verigrad.report.jsonio import SCHEMA_VERSION

__all__ = ["run_document", "result_record"]


def result_record(r) -> dict:
    """One result: case × candidate × dtype (or scheme × step for finite differences)."""
    g = r.grade.to_dict() if r.grade is not None else {}
    rec = {
        "case": r.case,
        "candidate": r.candidate,
        "kind": r.kind,
        "dtype": r.dtype,
        "verdict": r.verdict,
        "expect": r.expect,
        "met": r.met,
        "message": r.message,
        "errors": g.get("errors", {"normwise_relative": None, "symmetric": None, "max_ulps": None}),
        "wrong": g.get("wrong", []),
        "diagnosis": g.get("diagnosis", []),
    }
    if r.kind == "fd":
        rec["scheme"] = r.scheme
        rec["step"] = r.step
    for k in ("returned_dtype", "dtype_mismatch", "variables", "baseline_errors", "warnings"):
        if k in g:
            rec[k] = g[k]
    if r.extra:
        rest = {k: v for k, v in r.extra.items() if k != "second_order"}
        if rest:
            rec["fd"] = rest
        if "second_order" in r.extra:  # hessian / hvp / hessian_diag candidates (docs/second-order.md)
            rec["second_order"] = r.extra["second_order"]
    if r.stdout:
        rec["stdout"] = r.stdout[:10_000]
    return rec


def run_document(run, *, version: str, interrupted: bool | None = None) -> dict:
    """The JSON document of a run (docs/report-schema.md); ``interrupted`` defaults to ``run.interrupted``."""
    interrupted = run.interrupted if interrupted is None else interrupted
    return {
        "verigrad": version,
        "schema_version": SCHEMA_VERSION,
        "complete": not interrupted,
        "results": [result_record(r) for r in run.results],
        "cases": [{"case": c.name, "path": c.path, "description": c.description, "error": c.error or None,
                   "parameters": c.parameters, "seed": c.seed, "rng": c.rng, "ok": c.ok,
                   "loss_code": c.loss_code or None} for c in run.cases],
        "summary": run.summary(),
        "timing": {"total_seconds": run.seconds,
                   "cases": {c.name: c.seconds for c in run.cases},
                   "results": [r.seconds for r in run.results]},
    }
