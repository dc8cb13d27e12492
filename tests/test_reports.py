"""Tests for the reports of ``verigrad run``/``truth``/``study``: JSON (schemas), JUnit XML, HTML.

The data are the small cases under ``tests/data/reports``:

- ``linreg.toml`` (tiny-linreg): a correct candidate and a factor-2 bug declared
  ``expect = "fail"``, graded in float32 and float64 -> 4 met expectations;
- ``matrix.toml`` (matrix-ls, float64 only): correct; ``doubled`` (scaled by 2
  but declared "pass" -> a failure); ``crashes`` (raises -> an error);
  ``row-bug`` (row 1 scaled by 3, declared "fail" -> caught);
- ``_broken.toml``: an invalid case file (unknown key), passed explicitly.
"""

from __future__ import annotations

import base64
import importlib.resources
import json
import math
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from verigrad import __version__
from verigrad.cli.main import main
from verigrad.report import plots
from verigrad.report.html import run_html, study_html
from verigrad.report.junit import junit_xml
from verigrad.runner.case import CaseReport, Result, RunReport

DATA = Path(__file__).parent / "data" / "reports"
BROKEN = DATA / "_broken.toml"
N_TESTCASES = 4 + 4 + 1  # tiny-linreg 2 candidates x 2 dtypes, matrix-ls 4 x 1, the broken file


def schema(name: str) -> dict:
    text = importlib.resources.files("verigrad").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
    doc = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(doc)
    return doc


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema(name))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Two complete runs over the test data: (exit codes, [dir of run 1, dir of run 2])."""
    dirs, codes = [], []
    for i in range(2):
        d = tmp_path_factory.mktemp(f"run{i}")
        codes.append(main(["run", str(DATA), str(BROKEN), "--json", str(d / "r.json"), "--junit",
                           str(d / "j.xml"), "--html", str(d / "r.html"), "-q", "--no-color"]))
        dirs.append(d)
    return codes, dirs


@pytest.fixture(scope="module")
def run_doc(outputs) -> dict:
    return json.loads((outputs[1][0] / "r.json").read_text("utf-8"))


def find(doc: dict, case: str, candidate: str, dtype: str) -> dict:
    hits = [r for r in doc["results"] if (r["case"], r["candidate"], r["dtype"]) == (case, candidate, dtype)]
    assert len(hits) == 1, (case, candidate, dtype, hits)
    return hits[0]


# -- JSON --------------------------------------------------------------------------------


def test_schemas_are_valid_json_schemas_and_shipped_with_the_package():
    for name in ("run", "truth", "study"):
        doc = schema(name)
        assert doc["$schema"].startswith("https://json-schema.org/draft/2020-12")
        assert doc["title"].startswith("verigrad")


def test_run_exit_code_reflects_unmet_expectations(outputs):
    codes, _ = outputs
    assert codes == [1, 1]


def test_run_json_validates_and_carries_the_diagnosis(run_doc):
    validator("run").validate(run_doc)
    assert run_doc["verigrad"] == __version__
    assert run_doc["schema_version"] == 4
    assert run_doc["complete"] is True
    assert run_doc["summary"] == {"cases": 3, "case_errors": 1, "results": 8, "expectations_met": 6,
                                  "expectations_not_met": 2, "informational": 0, "loss_code_mismatches": 0,
                                  "interrupted": False, "ok": False}
    for dtype in ("float32", "float64"):
        caught = find(run_doc, "tiny-linreg", "doubled", dtype)
        assert (caught["verdict"], caught["expect"], caught["met"]) == ("fail", "fail", True)
        (diag,) = caught["diagnosis"]
        assert (diag["variable"], diag["shape"], diag["factor"], diag["factor_text"]) == ("w", "scaled", 2.0, "2")
        assert f"tiny-linreg › w › {dtype}: scaled by 2" in diag["message"]
        assert len(caught["wrong"]) == 3
        good = find(run_doc, "tiny-linreg", "correct", dtype)
        assert (good["verdict"], good["met"], good["wrong"], good["diagnosis"]) == ("pass", True, [], [])
        assert 0 <= good["errors"]["max_ulps"] < 16
    unmet = find(run_doc, "matrix-ls", "doubled", "float64")
    assert (unmet["verdict"], unmet["expect"], unmet["met"]) == ("fail", "pass", False)
    assert unmet["diagnosis"][0]["shape"] == "scaled" and unmet["diagnosis"][0]["factor"] == 2.0
    assert {tuple(w["index"]) for w in unmet["wrong"]} == {(i, j) for i in range(3) for j in range(2)}
    assert math.isclose(unmet["errors"]["normwise_relative"], 1.0, rel_tol=1e-12)
    block = find(run_doc, "matrix-ls", "row-bug", "float64")
    assert block["met"] is True
    assert block["diagnosis"][0]["region"] == "W[1, :]" and block["diagnosis"][0]["factor"] == 3.0
    crash = find(run_doc, "matrix-ls", "crashes", "float64")
    assert (crash["verdict"], crash["met"]) == ("error", False)
    assert "RuntimeError: not implemented <yet>" in crash["message"]
    assert crash["errors"] == {"normwise_relative": None, "symmetric": None, "max_ulps": None}
    assert crash["stdout"] == "about to fail <here> & now\n"
    cases = {c["case"]: c for c in run_doc["cases"]}
    assert cases["tiny-linreg"]["ok"] is True and cases["tiny-linreg"]["error"] is None
    assert cases["matrix-ls"]["ok"] is False and cases["matrix-ls"]["parameters"] == 6
    assert "unknown key 'colour'" in cases["_broken"]["error"]


def test_run_json_is_byte_identical_between_runs_except_timing(outputs):
    _, (d1, d2) = outputs
    t1, t2 = (d / "r.json" for d in (d1, d2))
    b1, b2 = t1.read_bytes(), t2.read_bytes()
    # "timing" is the last key: everything before it is identical byte for byte
    cut1, cut2 = b1.index(b'"timing"'), b2.index(b'"timing"')
    assert b1[:cut1] == b2[:cut2]
    docs = [json.loads(b) for b in (b1, b2)]
    assert list(docs[0])[-1] == "timing"
    assert docs[0]["timing"]["total_seconds"] > 0
    for d in docs:
        del d["timing"]
    assert json.dumps(docs[0]) == json.dumps(docs[1])
    # and nothing time-like hides outside "timing"
    assert b"seconds" not in b1[:cut1]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["results"][0].__setitem__("verdict", "maybe"), "maybe"),
    (lambda d: d.pop("summary"), "summary"),
    (lambda d: d["results"][0]["errors"].__setitem__("max_ulps", "lots"), "lots"),
    (lambda d: d["results"][0].__setitem__("met", None), "None"),
    (lambda d: d.__setitem__("schema_version", 1), "4 was expected"),
    (lambda d: d["results"][0]["diagnosis"].append({"variable": "w", "shape": "wobbly"}), "wobbly"),
])
def test_run_schema_rejects_invalid_documents(run_doc, mutate, message):
    doc = json.loads(json.dumps(run_doc))
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError, match=message):
        validator("run").validate(doc)


def test_truth_json_validates(tmp_path):
    out = tmp_path / "t.json"
    assert main(["truth", str(DATA / "linreg.toml"), "--json", str(out), "--no-color"]) == 0
    doc = json.loads(out.read_text("utf-8"))
    validator("truth").validate(doc)
    assert list(doc)[:3] == ["verigrad", "schema_version", "case"]
    assert set(doc["by_dtype"]) == {"float32", "float64"}
    assert doc["dtype"] == "float32" and doc["by_dtype"]["float32"]["gradient"] == doc["gradient"]
    w32, w64 = doc["by_dtype"]["float32"]["gradient"]["w"], doc["by_dtype"]["float64"]["gradient"]["w"]
    assert len(w32) == 3 and all(isinstance(x, str) for x in w32)
    # the float32 point differs from the float64 one, and so does the truth
    assert w32 != w64 and abs(float(w32[2]) - float(w64[2])) < 1e-6
    assert len(doc["point"]["X"]) == 6 and len(doc["point"]["X"][0]) == 3
    bad = json.loads(json.dumps(doc))
    bad["gradient"]["w"][0] = "about 0.3"
    with pytest.raises(jsonschema.ValidationError, match="about 0.3"):
        validator("truth").validate(bad)


def study_document() -> dict:
    """A study document in the shape the study command writes (docs/report-schema.md)."""
    hs = [10.0 ** -k for k in range(1, 13)]
    rows = []
    for h in hs:
        t, r = h * h / 6, 1e-16 / h
        rows.append({"h": h, "estimate": 1.0 + t + r, "error": t + r, "truncation": t, "step": 0.0,
                     "roundoff": r, "extra_note": "allowed"})
    return {
        "verigrad": __version__, "schema_version": 4, "case": "demo <&> case", "variable": "x", "index": [0],
        "direction": None, "truth": "1.00000000000000000000",
        "studies": [{"dtype": "float64", "scheme": "central", "rows": rows,
                     "model": {"optimal_step": 6.7e-6, "min_error": 2.2e-11, "noise": 1e-16},
                     "observed": {"optimal_step": 1e-5, "min_error": 2.6e-11,
                                  "slopes": {"truncation": 2.0, "roundoff": -1.0}}}],
    }


def test_study_schema_accepts_the_documented_shape_and_rejects_missing_parts():
    doc = study_document()
    validator("study").validate(doc)
    doc["studies"][0]["rows"][0]["truncation"] = "1.6666666666666666667e-3"  # exact values as decimals
    doc["studies"][0]["model"]["noise"] = None
    validator("study").validate(doc)
    del doc["studies"][0]["rows"][3]["roundoff"]
    with pytest.raises(jsonschema.ValidationError, match="roundoff"):
        validator("study").validate(doc)


# -- JUnit XML ---------------------------------------------------------------------------


def _is_float(text: str | None) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def check_junit(root: ET.Element) -> None:
    """The structure of the common JUnit XML schema (Jenkins junit-10.xsd / Ant), with consistent counts."""
    assert root.tag == "testsuites"
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for suite in root:
        assert suite.tag == "testsuite"
        assert suite.get("name")
        for key in ("tests", "failures", "errors", "skipped"):
            assert suite.get(key, "").isdigit(), (suite.attrib, key)
        assert _is_float(suite.get("time"))
        children = [c.tag for c in suite]
        assert set(children) <= {"properties", "testcase", "system-out", "system-err"}
        if "properties" in children:
            assert children.index("properties") == 0
            for prop in suite.find("properties"):
                assert prop.tag == "property" and prop.get("name") and prop.get("value") is not None
        cases = suite.findall("testcase")
        counts = {"tests": len(cases), "failures": 0, "errors": 0}
        for tc in cases:
            assert tc.get("name") and tc.get("classname") and _is_float(tc.get("time"))
            kinds = [c.tag for c in tc]
            assert set(kinds) <= {"failure", "error", "skipped", "system-out", "system-err"}
            assert kinds.count("failure") + kinds.count("error") <= 1
            for c in tc:
                if c.tag in ("failure", "error"):
                    assert c.get("message") and c.get("type")
                    counts[c.tag + "s"] += 1
        for key, n in counts.items():
            assert int(suite.get(key)) == n, (suite.get("name"), key)
            totals[key] += n
    for key, n in totals.items():
        assert int(root.get(key)) == n
    assert _is_float(root.get("time"))


def test_junit_xml_structure_and_content(outputs):
    _, (d1, _) = outputs
    root = ET.parse(d1 / "j.xml").getroot()
    check_junit(root)
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == N_TESTCASES
    assert {(tc.get("classname"), tc.get("name")) for tc in cases} >= {
        ("verigrad.tiny-linreg", "correct[float32]"), ("verigrad.tiny-linreg", "doubled[float64]"),
        ("verigrad.matrix-ls", "crashes[float64]"), ("verigrad._broken", "(case)")}
    failures = root.findall(".//failure")
    assert len(failures) == 1
    assert "matrix-ls › W › float64: scaled by 2" in failures[0].get("message")
    assert "W[2, 1]" in failures[0].text  # every wrong entry is in the body
    errors = {e.get("type"): e for e in root.findall(".//error")}
    assert set(errors) == {"verigrad.CandidateError", "verigrad.CaseError"}
    assert "RuntimeError: not implemented <yet>" in errors["verigrad.CandidateError"].get("message")
    assert "unknown key 'colour'" in errors["verigrad.CaseError"].get("message")
    # a caught bug passes and keeps its diagnosis in system-out
    caught = root.find(".//testcase[@name='row-bug[float64]']")
    assert caught.find("failure") is None and "W[1, :] › float64: scaled by 3" in caught.find("system-out").text


def test_junit_xml_is_deterministic_except_times(outputs):
    _, dirs = outputs
    texts = []
    for d in dirs:
        root = ET.parse(d / "j.xml").getroot()
        for el in root.iter():
            el.attrib.pop("time", None)
        texts.append(ET.tostring(root))
    assert texts[0] == texts[1]


def test_junit_xml_survives_control_characters_and_fd_results():
    crash = Result("c<1>", "cand&", "code", "float64", "pass", "error", False, None,
                   "boom \x07 <b>", stdout="\x00bell\x1b[31m red")
    fd = Result("c<1>", "central", "fd", "float32", None, "fail", None, None, "c<1> › central: rel err 1e-3",
                scheme="central", step=1e-7)
    run = RunReport((CaseReport("x.toml", "c<1>", results=(crash, fd)),), 0.5)
    root = ET.fromstring(junit_xml(run).encode("utf-8"))
    check_junit(root)
    err = root.find(".//error")
    assert err.get("message") == "boom \ufffd <b>"
    assert "bell" in root.find(".//testcase[@name='cand&[float64]']/system-out").text
    fd_case = root.find(".//testcase[@name='fd:central h=1.0e-07[float32]']")
    assert fd_case is not None and fd_case.find("failure") is None and fd_case.find("error") is None
    assert "verdict fail" in fd_case.find("system-out").text


# -- HTML --------------------------------------------------------------------------------


def test_html_is_self_contained_and_escaped(outputs):
    _, (d1, _) = outputs
    page = (d1 / "r.html").read_text("utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.index('id="summary"') < page.index('id="case-0"')  # summary first
    assert "&lt;mean((X W - Y)^2) / 2&gt; with a &lt;3 x 2&gt; matrix W &amp; friends" in page
    assert "<mean(" not in page and "<3 x 2>" not in page
    assert "not implemented &lt;yet&gt;" in page and "about to fail &lt;here&gt; &amp; now" in page
    assert "http://" not in page and "https://" not in page  # nothing loaded from the network
    images = [chunk.split('"', 1)[0] for chunk in page.split('src="data:image/png;base64,')[1:]]
    # one ulps plot per case with grades, and a heatmap for the matrix bugs
    assert len(images) >= 4
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    assert 'alt="wrong entries of W for doubled in float64"' in page


def test_html_escapes_hostile_names():
    nasty = '<script>alert("x")</script>'
    res = Result(nasty, nasty, "code", "float64", "pass", "error", False, None, nasty, stdout=nasty)
    run = RunReport((CaseReport(nasty, nasty, description=nasty, error=nasty, results=(res,)),), 0.0)
    page = run_html(run, version=nasty)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_study_html_has_the_plot_and_escapes():
    page = study_html(study_document(), version=__version__)
    assert "demo &lt;&amp;&gt; case" in page and "<&>" not in page
    assert page.count("data:image/png;base64,") == 1
    assert "central · float64" in page


def test_plots_are_deterministic_pngs_without_pyplot():
    rows = [("a", "float32", "pass", 1.5), ("a", "float64", "fail", math.inf), ("b", "float64", "error", math.nan),
            ("b", "float32", "pass", 0.0)]
    one, two = plots.ulps_figure(rows, title="t"), plots.ulps_figure(rows, title="t")
    assert one == two and one.startswith(b"\x89PNG")
    heat = plots.wrong_entries_figure((2, 3, 2), [((1, 2, 1), 1e9), ((0, 0, 0), math.inf)], title="W")
    assert heat.startswith(b"\x89PNG")
    code = ("import sys, verigrad.report.html as h, verigrad.report.plots as p; "
            "p.ulps_figure([('a', 'float64', 'pass', 2.0)]); print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_study_figure_formats_are_reproducible(fmt, magic):
    study = study_document()["studies"][0]
    one, two = (plots.study_figure(study, format=fmt) for _ in range(2))
    assert one.startswith(magic) and one == two


def test_unknown_figure_format_is_refused():
    with pytest.raises(ValueError, match="format='gif' is not supported; use one of png, svg, pdf"):
        plots.study_figure(study_document()["studies"][0], format="gif")


def _chromium() -> str | None:
    for name in (os.environ.get("VERIGRAD_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.browser
def test_html_renders_in_headless_chromium(outputs, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install chromium, or set VERIGRAD_CHROMIUM)")
    _, (d1, _) = outputs
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--dump-dom", (d1 / "r.html").as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "<title>verigrad report — FAILED</title>" in dom
    assert "tiny-linreg" in dom and "matrix-ls" in dom
    assert dom.count('<table class="verdicts">') == 2
    assert "scaled by 2" in dom and "✗ NOT MET (expected pass)" in dom
    # the parsed DOM kept the rows of both verdict tables: 4 + 4 grades
    verdict_tables = dom.split('<table class="verdicts">')[1:]
    rows = sum(t.split("</table>", 1)[0].count("<tr>") - 1 for t in verdict_tables)
    assert rows == 8
    assert "<script" not in dom


@pytest.mark.browser
def test_study_page_and_notebook_view_render_in_headless_chromium(tmp_path):
    """The study page (one figure style with --plot) and a notebook fragment, as a browser parses them."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install chromium, or set VERIGRAD_CHROMIUM)")
    from verigrad.api import study
    from verigrad.report.notebook import studies_html
    from verigrad.report.studyreport import study_document as document

    studies = study(Path(__file__).resolve().parents[1] / "cases" / "squire-trapp.toml", schemes=["central"],
                    dtypes=["float64"], steps=[10.0 ** k for k in range(-12, 0)])
    (tmp_path / "s.html").write_text(study_html(document(list(studies), version=__version__), version=__version__),
                                     encoding="utf-8")
    (tmp_path / "n.html").write_text("<!DOCTYPE html><html><body>" + studies_html(list(studies)) + "</body></html>",
                                     encoding="utf-8")
    for name, want in (("s.html", ('<table class="study-model">', '<table class="study-regimes">')),
                       ("n.html", ('<div class="verigrad">', '<table class="study-regimes">'))):
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (tmp_path / name).as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        dom = proc.stdout
        for fragment in want:
            assert fragment in dom, (name, fragment)
        assert "measured optimum" in dom and "small steps" in dom and "round-off" in dom
        assert dom.count("data:image/png;base64,") == 1


def test_html_counts_are_plural_only_when_they_should_be():
    fd = Result("c", "central h=1.0e-07", "fd", "float64", None, "pass", None, None, "c › central",
                scheme="central", step=1e-7,
                extra={"tolerance": 1e-5, "split": {"error": 2e-9, "truncation": 1e-12, "step": 1e-11, "roundoff": 2e-9}})
    page = run_html(RunReport((CaseReport("c.toml", "c", results=(fd,), parameters=1),), 0.0), version="0")
    assert "1 parameter ·" in page and "1 parameters" not in page
    assert "1 case ·" in page and "1 grade ·" in page
    # the finite-difference table carries the exact split and the part that dominates
    assert "‖T‖" in page and "2.0e-09" in page and "<td>round-off</td>" in page
