"""Rich display of verigrad's records in Jupyter: ``_repr_html_`` of studies, results, runs and checks.

The records (:class:`~verigrad.studies.Study`, :class:`~verigrad.runner.records.Result`,
:class:`~verigrad.runner.records.CaseReport`, :class:`~verigrad.runner.records.RunReport`,
:class:`~verigrad.api.CheckResult`) define ``_repr_html_``; it lands here (through
``verigrad.repr_html`` for the records of lower layers, which may not import this layer) and returns an HTML fragment:
the same tables and figures as the HTML reports (:mod:`verigrad.report.html`), in one
``<div class="verigrad">`` whose style applies to nothing else in the notebook.

:func:`studies_html` shows several studies at once (the usual result of a sweep over
schemes and dtypes): their grid figure and a table with a row per scheme × dtype.
"""

from __future__ import annotations

import re
from typing import Sequence

from verigrad.report import html as _html
from verigrad.report.words import plural

__all__ = ["html", "repr_html", "studies_html", "check_html", "scoped_css"]


def scoped_css(prefix: str = ".verigrad") -> str:
    """The report's stylesheet with every selector under ``prefix`` (so a notebook keeps its own style)."""
    out = []
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", _html.CSS):
        scoped = []
        for sel in selectors.split(","):
            sel = sel.strip()
            if sel in (":root", "body"):
                scoped.append(prefix)
            elif sel == "*":
                scoped.append(f"{prefix} *")
            else:
                scoped.append(f"{prefix} {sel}")
        out.append(f"{', '.join(scoped)} {{{body}}}")
    # headings of a notebook cell: smaller than a page's
    out.append(f"{prefix} h1 {{ font-size: 1.3em; }} {prefix} h2 {{ font-size: 1.1em; margin-top: .8em; }}")
    return "\n".join(out)


def _wrap(body: str) -> str:
    return f'<div class="verigrad"><style>{scoped_css()}</style>{body}</div>'


def html(obj) -> str:
    """The notebook view of a verigrad record (see the module docstring); TypeError for anything else."""
    from verigrad.runner.records import CaseReport, Result, RunReport
    from verigrad.studies import Study

    if isinstance(obj, Study):
        return studies_html([obj])
    if isinstance(obj, RunReport):
        from verigrad import __version__

        return _wrap(_html.run_fragment(obj, version=__version__))
    if isinstance(obj, CaseReport):
        return _wrap(_html.case_fragment(obj))
    if isinstance(obj, Result):
        return _wrap(_result_fragment(obj))
    if hasattr(obj, "grades") and hasattr(obj, "passed"):
        return check_html(obj)
    raise TypeError(f"no notebook view for {type(obj).__name__}")


#: the name the lazy top-level namespace resolves for the records' ``_repr_html_`` (``verigrad.repr_html``)
repr_html = html


def _result_fragment(r) -> str:
    from verigrad.runner.records import CaseReport

    return _html.case_fragment(CaseReport(path="", name=r.case, results=(r,)))


def studies_html(studies: Sequence) -> str:
    """Several studies: one table (a row per scheme × dtype), the figure(s), the notes.

    One study shows its own figure and regimes (:func:`verigrad.report.html.study_section`);
    several show their grid figure (:func:`verigrad.report.plots.study_grid_figure`).
    """
    from verigrad.report import plots
    from verigrad.report.studyplot import figure_title
    from verigrad.report.studyreport import PART_NAMES, REGIME_NAMES, study_record

    if not studies:
        return _wrap('<p class="meta">no study</p>')
    records = [study_record(s) for s in studies]
    first = studies[0]
    head = (f"<h2>{_html._e(first.case)} › {_html._e(first.direction.label)}</h2>"
            f"<p class=\"meta\">finite-difference error against the exact derivative, split into truncation, "
            f"step and round-off; {plural(len(studies), 'study', 'studies')}</p>")
    if len(studies) == 1:
        return _wrap(head + _html.study_section(records[0]))
    rows = []
    for st, rec in zip(studies, records):
        regimes = "; ".join(f"{REGIME_NAMES.get(rg.kind, rg.kind)}: slope {_html._num(rg.slope, '+.2f')} "
                            f"(model {_html._num(rg.model_slope, '+.0f')}), {PART_NAMES.get(rg.dominant, rg.dominant)}"
                            for rg in st.regimes)
        model_h = _html._num(st.model.optimal_step, ".2e") + (" (not usable)" if st.optimum_note else "")
        rows.append([_html._e(st.scheme.name), _html._e(st.dtype.value), _html._num(st.observed.optimal_step, ".2e"),
                     _html._num(st.observed.min_error, ".2e"), model_h, _html._num(st.model.min_error, ".2e"),
                     _html._e(regimes or "—")])
    table = _html._table(["scheme", "dtype", "best h", "|E| there", "model h*", "model |E|",
                          "regimes: slope, dominant part"], rows, cls="study-summary", numeric=(2, 3, 4, 5))
    image = _html._img(plots.study_grid_figure(records, title=figure_title(studies)),
                       f"error against step for {first.case}")
    notes = [f"{st.scheme.name} · {st.dtype.value}: {n}" for st in studies
             for n in ([f"model optimum not marked: {st.optimum_note}"] if st.optimum_note else []) + list(st.notes)]
    note_html = ("<details><summary>" + plural(len(notes), "note") + "</summary><ul class=\"crumbs\">"
                 + "".join(f"<li class=\"warning\">{_html._e(n)}</li>" for n in notes) + "</ul></details>"
                 if notes else "")
    return _wrap(head + table + image + note_html)


def check_html(res) -> str:
    """A :class:`~verigrad.api.CheckResult`: a row per dtype, then the diagnoses and the worst wrong entries."""
    rows, crumbs = [], []
    for g in res.grades:
        rows.append([_html._e(g.dtype), _html._verdict_cell(g.verdict.value), _html._num(g.errors.max_ulps),
                     _html._num(g.errors.normwise_relative, ".2e"), _html._e(g.returned_dtype),
                     _html._e(plural(len(g.wrong), "wrong entry", "wrong entries"))])
        crumbs.extend(g.messages(max_entries=5))
    status = ('<span class="status ok">passed</span>' if res.passed
              else '<span class="status failed">failed</span>')
    name = res.grades[0].candidate if res.grades else "gradient"
    body = (f"<h2>{_html._e(name)} {status}</h2>"
            + _html._table(["dtype", "verdict", "max ulps", "norm-wise rel", "returned", "wrong"], rows,
                           numeric=(2, 3))
            + ("<ul class=\"crumbs\">" + "".join(f"<li>{_html._e(m)}</li>" for m in crumbs) + "</ul>"
               if crumbs else ""))
    return _wrap(body)
