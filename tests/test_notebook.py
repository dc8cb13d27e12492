"""Records in notebooks: a short ``repr``, a ``_repr_html_`` that Jupyter renders, and docs/notebook.md runs.

The rich views are fetched the way Jupyter does, through IPython's display formatter, and the
HTML is parsed: one ``<div class="verigrad">`` with balanced tags, tables, and the figure as an
embedded PNG.  The code cells of docs/notebook.md are executed in order, as a notebook would.
"""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import sympy

ROOT = Path(__file__).resolve().parents[1]
VOID = {"img", "meta", "br", "hr", "input", "link"}


class _Checker(HTMLParser):
    """Balanced tags, and what the fragment holds."""

    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.images = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))
        elif tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()


def rendered(obj) -> str:
    """The text/html Jupyter would show for ``obj`` (IPython's formatter when installed)."""
    try:
        from IPython.core.formatters import DisplayFormatter
    except ImportError:  # pragma: no cover - without IPython, what Jupyter would call
        return obj._repr_html_()
    data, _ = DisplayFormatter().format(obj)
    assert "text/plain" in data and len(data["text/plain"]) < 400, data.get("text/plain")
    return data["text/html"]


def check_fragment(page: str, *, figures: int) -> _Checker:
    assert page.startswith('<div class="verigrad"><style>') and page.endswith("</div>")
    assert "<script" not in page and "http://" not in page and "https://" not in page
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert not checker.stack, checker.stack
    assert "table" in checker.tags
    pngs = [src for src in checker.images if src.startswith("data:image/png;base64,")]
    assert len(pngs) >= figures
    for src in pngs:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    # the stylesheet is scoped: it styles nothing outside the fragment
    css = page[page.index("<style>") + 7:page.index("</style>")]
    assert all(sel.strip().startswith(".verigrad") for rule in re.findall(r"([^{}]+)\{", css)
               for sel in rule.split(","))
    return checker


@pytest.fixture(scope="module")
def studies():
    from verigrad.api import study

    return study(ROOT / "cases" / "squire-trapp.toml", schemes=["central"], steps=np.logspace(-12, -1, 12))


def test_a_study_shows_its_table_and_figure(studies):
    st = studies[0]
    assert repr(st).startswith("<Study squire-trapp › x › float32 › central: best h = ")
    page = rendered(st)
    check_fragment(page, figures=1)
    assert "measured optimum" in page and "model optimum" in page and "small steps" in page


def test_several_studies_show_one_table_and_a_grid(studies):
    assert repr(studies).startswith("<Studies squire-trapp › x: central/float32 best h ")
    page = rendered(studies)
    check_fragment(page, figures=1)
    assert page.count("<tr>") >= 3  # header + a row per study
    assert "central" in page and "float32" in page and "float64" in page


def test_run_records_show_like_the_html_report():
    from verigrad.runner.case import run_case
    from verigrad.runner.records import RunReport

    rep = run_case(ROOT / "tests" / "data" / "reports" / "matrix.toml")
    assert repr(rep) == ("<CaseReport matrix-ls: FAILED; expectations met 2, not met 2; grades 4; "
                         "parameters 6>")
    check_fragment(rendered(rep), figures=1)
    bad = rep.results[1]
    assert repr(bad).startswith("<Result matrix-ls › doubled › float64: fail (expected pass: NOT MET)")
    page = rendered(bad)
    check_fragment(page, figures=0)
    assert "scaled by 2" in page
    run = RunReport((rep,), 1.0)
    assert repr(run).startswith("<RunReport FAILED: cases 1, grades 4; expectations met 2, not met 2")
    assert "Summary" in rendered(run)


def test_a_check_result_is_short_and_has_attributes():
    from verigrad.api import check_gradient

    x, y = sympy.symbols("x y")
    res = check_gradient(x**2 * sympy.sin(y), lambda x, y: {"x": 2 * x * np.sin(y), "y": 2 * x**2 * np.cos(y)},
                         point={"x": 1.5, "y": 0.25})
    assert len(repr(res)) < 300 and "FAILED" in repr(res) and "scaled by 2" in repr(res)
    assert res.verdicts == {"float32": "fail", "float64": "fail"}
    assert set(res.max_ulps) == {"float32", "float64"} and all(u > 1e6 for u in res.max_ulps.values())
    assert {d.variable for d in res.diagnosis} == {"y"} and res.wrong and res.by_dtype["float64"].dtype == "float64"
    page = rendered(res)
    check_fragment(page, figures=0)
    assert "scaled by 2" in page


def _cells(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_docs_notebook_runs(monkeypatch):
    """docs/notebook.md, cell by cell; the last expression of a cell is displayed as Jupyter would."""
    import ast

    monkeypatch.chdir(ROOT)
    cells = _cells((ROOT / "docs" / "notebook.md").read_text(encoding="utf-8"))
    assert len(cells) >= 5
    namespace: dict = {}
    for code in cells:
        tree = ast.parse(code)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<cell>", "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
            if hasattr(value, "_repr_html_"):
                check_fragment(rendered(value), figures=0)
    central64 = namespace["central64"]
    assert central64.optimum_note == "" and [r.kind for r in central64.regimes] == ["roundoff", "truncation"]


def test_a_notebook_executes_when_nbclient_is_installed(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in _cells((ROOT / "docs" / "notebook.md").read_text("utf-8"))]
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    html = [o["data"]["text/html"] for cell in nb.cells for o in cell.get("outputs", [])
            if o.get("output_type") == "execute_result" and "text/html" in o.get("data", {})]
    assert html and all(h.startswith('<div class="verigrad">') for h in html)
