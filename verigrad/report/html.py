"""Self-contained HTML reports: one file, no network, plots embedded as PNG data URIs.

:func:`run_html` renders a :class:`~verigrad.runner.case.RunReport` (``verigrad run
--html FILE``): the summary first, then each case with its table of grades,
a plot of the max error in ulps per candidate × dtype, and for every grade
that failed (or did not meet its expectation) the diagnosis breadcrumbs, the
wrong entries and a heatmap of them per variable.  :func:`study_html` renders a
study document (docs/report-schema.md) with its error-vs-step plots.

The page reads the same records as the JSON report
(:func:`verigrad.report.runjson.result_record`), so what a person sees and what
a machine reads cannot drift apart.  Every piece of user text (case names,
paths, descriptions, messages, captured output) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any, Iterable, Sequence

from verigrad.report import plots
from verigrad.report.runjson import result_record
from verigrad.report.words import plural

__all__ = ["run_html", "run_fragment", "case_fragment", "study_html", "study_section", "CSS", "MAX_HEATMAPS",
           "MAX_WRONG_ROWS"]

#: Heatmaps drawn per report at most (each costs a matplotlib figure).
MAX_HEATMAPS = 60
#: Wrong entries listed per grade at most (the JSON report has all of them).
MAX_WRONG_ROWS = 20
_MAX_HEATMAP_ENTRIES = 20_000
_MAX_STDOUT = 4_000

CSS = """
:root { --pass: #1a7f37; --fail: #cf222e; --warn: #9a6700; --info: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1.5em; color: #1f2328; }
h1 { margin: 0 0 .2em; font-size: 1.6em; }
h2 { margin: 1.8em 0 .3em; padding-top: .6em; border-top: 2px solid var(--line); font-size: 1.3em; }
h3 { margin: 1.2em 0 .3em; font-size: 1.05em; }
table { border-collapse: collapse; margin: .6em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; }
.verdict-pass { color: var(--pass); font-weight: 600; }
.verdict-fail, .verdict-error, .verdict-nonfinite { color: var(--fail); font-weight: 600; }
.verdict-not-exercised, .verdict-no-estimate { color: var(--warn, #b58900); font-weight: 600; }
.met-true { color: var(--pass); } .met-false { color: var(--fail); font-weight: 600; } .met-none { color: var(--info); }
.status { display: inline-block; padding: .1em .6em; border-radius: 1em; color: white; font-weight: 600; }
.status.ok { background: var(--pass); } .status.failed { background: var(--fail); }
.meta { color: var(--info); }
.crumbs { font-family: ui-monospace, Menlo, monospace; font-size: 12.5px; margin: .3em 0; padding-left: 1.2em; }
.crumbs li.warning { color: var(--warn); }
pre { background: #f6f8fa; padding: .6em; overflow-x: auto; white-space: pre-wrap; font-size: 12.5px; }
.grade { border-left: 4px solid var(--line); padding-left: .8em; margin: 1em 0; }
.grade.unmet { border-left-color: var(--fail); }
.grade.caught { border-left-color: var(--pass); }
img.plot { max-width: 100%; height: auto; display: block; margin: .4em 0; }
.heatmaps { display: flex; flex-wrap: wrap; gap: .6em; }
nav ul { columns: 2; }
"""


def _e(text: Any) -> str:
    """Escape any value for HTML text and attribute contexts."""
    return html.escape("" if text is None else str(text), quote=True)


def _num(value: Any, spec: str = ".3g") -> str:
    x = plots.to_float(value)
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return format(x, spec)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="plot" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "", numeric: Sequence[int] = ()
           ) -> str:
    """A table; ``rows`` hold already-escaped HTML cells; ``numeric`` columns are right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    cls_attr = f' class="{cls}"' if cls else ""
    return f"<table{cls_attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _page(title: str, body: str, *, version: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<meta name=\"generator\" content=\"verigrad {_e(version)}\">\n"
            f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
            f"<footer class=\"meta\"><p>verigrad {_e(version)} · every error is measured against the certified "
            "exact gradient; see docs/report-schema.md for the definitions.</p></footer>\n</body>\n</html>\n")


def _expect_cell(rec: dict) -> str:
    met, expect = rec.get("met"), rec.get("expect")
    if met is None:
        return '<span class="met-none">informational</span>'
    if met:
        word = "caught" if expect == "fail" else "met"
        return f'<span class="met-true">✓ {word} (expected {_e(expect)})</span>'
    return f'<span class="met-false">✗ NOT MET (expected {_e(expect)})</span>'


def _verdict_cell(verdict: Any) -> str:
    v = str(verdict)
    return f'<span class="verdict-{_e(v.replace(" ", "-"))}">{_e(v)}</span>'


def _label(rec: dict) -> str:
    if rec.get("kind") == "fd":
        return f"{rec.get('scheme')} h={_num(rec.get('step'), '.1e')}"
    return str(rec.get("candidate"))


# -- run report ---------------------------------------------------------------------------


class _Budget:
    """Counts the heatmaps drawn so that a huge corpus does not draw thousands."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.skipped = 0
        self.drawn: dict[tuple, str] = {}  # (case, candidate, variable, wrong indices) -> dtype drawn


def run_html(run, *, version: str) -> str:
    """Render a run as one self-contained HTML page.

    Parameters
    ----------
    run : verigrad.runner.case.RunReport
    version : str
        verigrad's version, shown in the header and footer.

    Returns
    -------
    str
        The page (UTF-8 text).  Plots are embedded PNG data URIs; the page
        loads nothing from the network.

    Examples
    --------
    >>> from verigrad.runner.case import RunReport
    >>> "0 cases" in run_html(RunReport((), 0.0), version="0.1")
    True
    """
    status = "INTERRUPTED" if run.interrupted else ("OK" if run.ok else "FAILED")
    return _page("verigrad report" + ("" if run.ok else f" — {status}"), run_fragment(run, version=version),
                 version=version)


def run_fragment(run, *, version: str) -> str:
    """The body of :func:`run_html` (no ``<html>`` page around it), e.g. for a notebook cell."""
    summary = run.summary()
    ok = summary["ok"]
    budget = _Budget(MAX_HEATMAPS)
    by_case = [(c, [_record(r) for r in c.results]) for c in run.cases]
    status = "INTERRUPTED" if run.interrupted else ("OK" if ok else "FAILED")
    parts = [f"<header><h1>verigrad report <span class=\"status {'ok' if ok else 'failed'}\">"
             f"{status}</span></h1>"
             f"<p class=\"meta\">verigrad {_e(version)} · {plural(summary['cases'], 'case')} · "
             f"{plural(summary['results'], 'grade')} · "
             f"{run.seconds:.1f} s</p>"
             + ("<p class=\"meta\">The run was interrupted: only the finished cases are reported, and the run "
                "is not ok.</p>" if run.interrupted else "") + "</header>"]
    parts.append(_summary_section(run, summary, by_case))
    for i, (case, recs) in enumerate(by_case):
        parts.append(_case_section(i, case, recs, budget))
    if budget.skipped:
        parts.append(f"<p class=\"meta\">{budget.skipped} heatmaps were not drawn (limit {MAX_HEATMAPS} per "
                     "report); the JSON report lists every wrong entry.</p>")
    return "\n".join(parts)


def case_fragment(case) -> str:
    """One case as HTML (its grades, plot, diagnoses and finite differences), e.g. for a notebook cell."""
    return _case_section(0, case, [_record(r) for r in case.results], _Budget(MAX_HEATMAPS))


def _record(result) -> dict:
    """The JSON record of a result plus the grade's warnings (dtype mismatch, poor baseline)."""
    rec = result_record(result)
    rec["warnings"] = list(getattr(result.grade, "warnings", ()) or ())
    return rec


def _summary_section(run, summary: dict, by_case) -> str:
    counts = _table(
        ["cases", "case errors", "grades", "expectations met", "not met", "informational"],
        [[str(summary["cases"]), str(summary["case_errors"]), str(summary["results"]),
          str(summary["expectations_met"]), str(summary["expectations_not_met"]), str(summary["informational"])]],
        cls="summary-counts", numeric=range(6))
    rows = []
    for i, (case, recs) in enumerate(by_case):
        code = [r for r in recs if r["kind"] == "code"]
        unmet = sum(1 for r in recs if r["met"] is False)
        status = ('<span class="met-false">case error</span>' if case.error else
                  '<span class="met-true">ok</span>' if case.ok else f'<span class="met-false">{unmet} not met</span>')
        rows.append([f'<a href="#case-{i}">{_e(case.name)}</a>', str(case.parameters), str(len(code)),
                     str(sum(1 for r in code if r["verdict"] == "pass")), str(len(recs) - len(code)), status])
    cases = _table(["case", "parameters", "grades", "passed", "finite differences", "status"], rows,
                   cls="summary-cases", numeric=(1, 2, 3, 4))
    unmet_items = []
    for case, recs in by_case:
        if case.error:
            unmet_items.append(f"<li>{_e(case.path)}: {_e(case.error)}</li>")
        for r in recs:
            if r["met"] is False:
                first = _first_message(r) or f"verdict {r['verdict']}"
                unmet_items.append(f"<li>{_e(r['case'])} › {_e(_label(r))} › {_e(r['dtype'])}: expected "
                                   f"{_e(r['expect'])}, verdict {_e(r['verdict'])} — {_e(first)}</li>")
    unmet = (f"<h3>Not met</h3><ul class=\"crumbs unmet\">{''.join(unmet_items)}</ul>" if unmet_items
             else "<p class=\"met-true\">Every expectation held.</p>")
    return f"<section id=\"summary\"><h2>Summary</h2>{counts}{cases}{unmet}</section>"


def _first_message(rec: dict) -> str:
    for d in rec.get("diagnosis") or []:
        if d.get("message"):
            return d["message"]
    return rec.get("message") or ""


def _case_section(i: int, case, recs: list[dict], budget: _Budget) -> str:
    head = (f"<section class=\"case\" id=\"case-{i}\"><h2>{_e(case.name)}</h2>"
            f"<p class=\"meta\">{_e(case.path)} · {plural(case.parameters, 'parameter')} · {case.seconds:.2f} s</p>")
    if case.description:
        head += f"<p class=\"description\">{_e(case.description.strip())}</p>"
    body = []
    if case.error:
        body.append(f"<h3>Case error</h3><pre class=\"case-error\">{_e(case.error)}</pre>")
    code = [r for r in recs if r["kind"] == "code"]
    fd = [r for r in recs if r["kind"] == "fd"]
    if code:
        rows = []
        for r in code:
            e = r.get("errors") or {}
            rows.append([_e(r["candidate"]), _e(r["dtype"]), _verdict_cell(r["verdict"]), _expect_cell(r),
                         _num(e.get("max_ulps")), _num(e.get("normwise_relative"), ".2e"),
                         _num(e.get("symmetric"), ".2e"), _e(r.get("returned_dtype", "—"))])
        body.append("<h3>Grades</h3>" + _table(
            ["candidate", "dtype", "verdict", "expectation", "max ulps", "norm-wise rel", "symmetric", "returned"],
            rows, cls="verdicts", numeric=(4, 5, 6)))
        points = [(r["candidate"], r["dtype"], r["verdict"], plots.to_float((r.get("errors") or {}).get("max_ulps")))
                  for r in code]
        if any(not math.isnan(p[3]) for p in points):
            body.append(_img(plots.ulps_figure(points, title=f"{case.name}: max error in ulps"),
                             f"max error in ulps per candidate and dtype for {case.name}"))
        for r in code:
            if r["verdict"] != "pass" or r["met"] is False:
                body.append(_grade_details(r, budget))
    if fd:
        rows = []
        for r in fd:
            e = r.get("errors") or {}
            split = (r.get("fd") or {}).get("split") or {}
            parts = {k: plots.to_float(split.get(k)) for k in ("truncation", "step", "roundoff")}
            known = {k: v for k, v in parts.items() if math.isfinite(v)}
            dominant = _PART_NAMES.get(max(known, key=known.get), "") if known else "—"
            rows.append([_e(r.get("scheme")), _num(r.get("step"), ".1e"), _e(r["dtype"]), _verdict_cell(r["verdict"]),
                         _num(e.get("normwise_relative"), ".2e"), _num((r.get("fd") or {}).get("tolerance"), ".1e"),
                         _num(parts["truncation"], ".1e"), _num(parts["step"], ".1e"), _num(parts["roundoff"], ".1e"),
                         _e(dominant)])
        body.append("<h3>Finite differences (informational)</h3>"
                    "<p class=\"meta\">pass: the norm-wise relative error is within 1000× of what the scheme can "
                    "reach in the dtype; ‖T‖, ‖S‖, ‖R‖: the exact truncation, step and round-off parts of the error "
                    "(norms over every entry).</p>" + _table(
            ["scheme", "step", "dtype", "verdict", "norm-wise rel", "reachable", "‖T‖", "‖S‖", "‖R‖", "dominant"],
            rows, cls="fd-verdicts", numeric=(1, 4, 5, 6, 7, 8)))
        for r in fd:
            if r["verdict"] != "pass" and r.get("message"):
                body.append(f"<ul class=\"crumbs\"><li class=\"warning\">{_e(r['message'])}</li></ul>")
    if not code and not fd and not case.error:
        body.append("<p class=\"meta\">No candidates.</p>")
    return head + "".join(body) + "</section>"


def _grade_details(rec: dict, budget: _Budget) -> str:
    cls = "unmet" if rec["met"] is False else "caught"
    title = f"{rec['candidate']} · {rec['dtype']} · {rec['verdict']}"
    parts = [f"<div class=\"grade {cls}\"><h3>{_e(title)} {_expect_cell(rec)}</h3>"]
    items = []
    if rec["met"] is False and rec["verdict"] == "pass":
        items.append("<li>expected to fail, but every entry is within tolerance: the bug was not caught "
                     "(or the candidate is correct and its expectation is wrong)</li>")
    for m, warning in _messages(rec):
        items.append(f"<li class=\"warning\">{_e(m)}</li>" if warning else f"<li>{_e(m)}</li>")
    if items:
        parts.append(f"<ul class=\"crumbs\">{''.join(items)}</ul>")
    wrong = rec.get("wrong") or []
    if wrong:
        rows = [[_e(f"{w['variable']}{_index(w.get('index'))}"), _e(w.get("truth")), _num(w.get("value"), ".9g"),
                 _num(w.get("ulps")), _num(w.get("rel_error"), ".2e"), _e(w.get("reason", ""))]
                for w in wrong[:MAX_WRONG_ROWS]]
        more = (f"<p class=\"meta\">… and {plural(len(wrong) - MAX_WRONG_ROWS, 'more wrong entry', 'more wrong entries')} (all are in the JSON "
                "report).</p>" if len(wrong) > MAX_WRONG_ROWS else "")
        parts.append(_table(["entry", "truth", "got", "ulps", "rel err", "reason"], rows, cls="wrong",
                            numeric=(2, 3, 4)) + more)
        parts.append(_heatmaps(rec, wrong, budget))
    if rec.get("stdout"):
        out = rec["stdout"]
        cut = out[:_MAX_STDOUT] + ("\n…" if len(out) > _MAX_STDOUT else "")
        parts.append(f"<details><summary>captured output</summary><pre>{_e(cut)}</pre></details>")
    parts.append("</div>")
    return "".join(parts)


def _messages(rec: dict) -> list[tuple[str, bool]]:
    """(breadcrumb, is_warning): warnings, the result's message, then the diagnoses (entries are in the table)."""
    out: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for m in rec.get("warnings") or []:
        out.append((m, True))
        seen.add(m)
    msg = rec.get("message") or ""
    if msg and msg not in seen:
        out.append((msg, False))
        seen.add(msg)
    for d in rec.get("diagnosis") or []:
        m = d.get("message")
        if m and m not in seen:
            out.append((m, False))
            seen.add(m)
    if rec.get("second_order"):  # hessian / hvp / hessian_diag: kind, direction seed, symmetry, kinks
        from verigrad.report.second import second_order_lines

        for m in second_order_lines({"second_order": rec["second_order"]}):
            if m not in seen:
                out.append((m, False))
                seen.add(m)
    return out


def _index(index: Any) -> str:
    if not index:
        return ""
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def _heatmaps(rec: dict, wrong: list[dict], budget: _Budget) -> str:
    shapes = {v["variable"]: v.get("shape", []) for v in rec.get("variables") or []}
    by_var: dict[str, list] = {}
    for w in wrong:
        by_var.setdefault(w["variable"], []).append((w.get("index") or [], plots.to_float(w.get("ulps"))))
    imgs = []
    for name, entries in by_var.items():
        shape = shapes.get(name)
        size = math.prod(shape) if shape is not None else 0
        # a heatmap says more than the table only for matrices and for long vectors
        if shape is None or size > _MAX_HEATMAP_ENTRIES or (len(shape) < 2 and size <= MAX_WRONG_ROWS):
            continue
        key = (rec["case"], rec["candidate"], name, tuple(tuple(i) for i, _ in entries))
        if key in budget.drawn:
            imgs.append(f"<p class=\"meta\">{_e(name)}: the same entries are wrong as in {_e(budget.drawn[key])} "
                        "(heatmap above).</p>")
            continue
        budget.drawn[key] = rec["dtype"]
        if budget.left <= 0:
            budget.skipped += 1
            continue
        budget.left -= 1
        title = f"{name}{list(shape)}: {len(entries)} wrong"
        imgs.append(_img(plots.wrong_entries_figure(shape, entries, title=title),
                         f"wrong entries of {name} for {rec['candidate']} in {rec['dtype']}"))
    return f"<div class=\"heatmaps\">{''.join(imgs)}</div>" if imgs else ""


# -- study report -------------------------------------------------------------------------


def study_html(doc: dict, *, version: str) -> str:
    """Render a study document (docs/report-schema.md, "study") as one self-contained page.

    Parameters
    ----------
    doc : dict
        ``{"case", "variable", "index", "direction", "truth", "studies": [...]}``.
    version : str

    Returns
    -------
    str
        Per scheme × dtype: the error-vs-step plot (total error and its
        truncation, step and round-off parts), the model's prediction next to
        the observation, and the table of rows.

    Examples
    --------
    >>> page = study_html({"case": "demo", "variable": "x", "index": [0], "direction": None,
    ...                    "truth": "1.0", "studies": []}, version="0.1")
    >>> "demo" in page
    True
    """
    where = doc.get("variable") or "direction"
    where = f"{where}{_index(doc.get('index'))}"
    parts = [f"<header><h1>verigrad study: {_e(doc.get('case'))}</h1>"
             f"<p class=\"meta\">d loss / d {_e(where)} · exact value {_e(doc.get('truth'))}</p></header>"]
    for i, st in enumerate(doc.get("studies") or []):
        label = f"{st.get('scheme')} · {st.get('dtype')}"
        parts.append(f"<section class=\"study\" id=\"study-{i}\"><h2>{_e(label)}</h2>")
        parts.append(study_section(st, label=label))
        parts.append("</section>")
    return _page(f"verigrad study: {doc.get('case')}", "\n".join(parts), version=version)


_REGIME_NAMES = {"roundoff": "small steps", "truncation": "large steps"}
_PART_NAMES = {"truncation": "truncation", "step": "step (nodes)", "roundoff": "round-off"}


def study_section(st: dict, *, label: str = "") -> str:
    """One study record as HTML: its figure, the optima, the regimes, the notes and (folded) every step.

    Shared by :func:`study_html` and the notebook view (:mod:`verigrad.report.notebook`).
    """
    label = label or f"{st.get('scheme')} · {st.get('dtype')}"
    parts = [_img(plots.study_figure(st, title=label), f"error against step for {label}")]
    model, observed = st.get("model") or {}, st.get("observed") or {}
    note = model.get("optimal_step_note") or ""
    parts.append(_table(["", "step h", "|error|"], [
        ["measured optimum", _num(observed.get("optimal_step"), ".2e"), _num(observed.get("min_error"), ".2e")],
        ["model optimum" + (" (not usable here)" if note else ""), _num(model.get("optimal_step"), ".2e"),
         _num(model.get("min_error"), ".2e")]], cls="study-model", numeric=(1, 2)))
    regimes = st.get("regimes")
    if regimes:
        rows = [[_e(_REGIME_NAMES.get(r.get("kind"), r.get("kind"))),
                 f"{_num(r.get('h_min'), '.1e')} … {_num(r.get('h_max'), '.1e')} ({_e(r.get('count'))})",
                 _num(r.get("slope"), "+.2f"), _num(r.get("model_slope"), "+.0f"),
                 _e(_PART_NAMES.get(r.get("dominant"), r.get("dominant")))] for r in regimes]
        parts.append(_table(["regime", "steps", "slope", "model slope", "dominant part"], rows, cls="study-regimes",
                            numeric=(2, 3)))
    else:
        slopes = observed.get("slopes")
        if isinstance(slopes, dict) and slopes:
            parts.append(f"<p class=\"meta\">slopes: {_e(', '.join(f'{k} {_num(v)}' for k, v in slopes.items()))}</p>")
    notes = ([f"model optimum not marked: {note}"] if note else []) + list(st.get("notes") or [])
    if notes:
        parts.append("<ul class=\"crumbs\">" + "".join(f"<li class=\"warning\">{_e(n)}</li>" for n in notes)
                     + "</ul>")
    rows = [[_num(r.get(k), ".3e") for k in ("h", "estimate", "error", "truncation", "step", "roundoff")]
            for r in st.get("rows") or []]
    parts.append("<details><summary>every step</summary>" + _table(
        ["h", "estimate", "error E", "truncation T", "step S", "round-off R"], rows, cls="study-rows",
        numeric=range(6)) + "</details>")
    return "".join(parts)
