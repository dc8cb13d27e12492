"""What a finite-difference study shows: the table a student quotes, the figure, the steps typed.

``verigrad study`` prints per scheme × dtype the measured and the modelled optimum and, per
regime, the steps, the measured and modelled slope and the dominant part
(:func:`verigrad.report.studyreport.study_summary`); the figure
(:func:`verigrad.report.plots.draw_study`) is framed where errors matter and marks the model's
h* only where it is usable (:attr:`verigrad.studies.Study.optimum_note` says why not);
``--steps`` takes a list or a grid whose decade points are exactly the decimals typed.
"""

from __future__ import annotations

import json
import math

import jsonschema
import numpy as np
import pytest

from verigrad.casefile.loader import load_case_text
from verigrad.cli.main import main
from verigrad.cli.study import parse_steps
from verigrad.engine.model import compile_case
from verigrad.errors import UsageError
from verigrad.fd import coordinate_direction
from verigrad.report import plots
from verigrad.report.studyreport import study_record, study_summary
from verigrad.report.terminal import lines_of
from verigrad.spec import Dtype
from verigrad.studies import run_study

SQUIRE = 'name = "st"\nloss = "exp(x)/sqrt(sin(x)**3 + cos(x)**3)"\n[symbols]\nx = { value = 1.5 }\n'
QUAD = 'name = "quad"\nloss = "3*x**2 + x"\n[symbols]\nx = { value = 0.75 }\n'


def _model(text):
    return compile_case(load_case_text(text, path="t.toml"))


@pytest.fixture(scope="module")
def squire():
    m = _model(SQUIRE)
    return run_study(m, dtype=Dtype.FLOAT64, scheme="central", direction=coordinate_direction(m),
                     steps=parse_steps("1e-12:1e-1:23"))


# -- --steps -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, want", [
    ("1e-9:1e-1:9", [1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]),  # logspace gives 9.999999999999999e-06
    ("2e-3:2e-1:3", [0.002, 0.02, 0.2]),
    ("0.001:10:5", [0.001, 0.01, 0.1, 1.0, 10.0]),
    ("1e-3,1e-5, 1e-7", [1e-7, 1e-5, 1e-3]),  # a list, sorted
    ("3e-4", [3e-4]),
])
def test_steps_are_exactly_the_decimals_typed(text, want):
    got = parse_steps(text)
    assert [float(h) for h in got] == want  # exact equality: the decimal rounded once


def test_steps_between_decades_are_log_spaced_and_the_decades_exact():
    got = parse_steps("1e-12:1e-1:23")
    assert len(got) == 23 and got[0] == 1e-12 and got[-1] == 0.1
    assert [float(h) for h in got[::2]] == [float(f"1e{k}") for k in range(-12, 0)]
    assert got[1] == pytest.approx(10 ** -11.5, rel=1e-15)
    assert np.all(np.diff(got) > 0)


@pytest.mark.parametrize("text, message", [
    ("1e-3:1e-5:4", "need 0 < FROM < TO and 2 <= COUNT <= 10000"),
    ("1e-5:1e-3:1", "need 0 < FROM < TO and 2 <= COUNT <= 10000"),
    ("1e-5:1e-3:x", "COUNT 'x' must be a whole number"),
    ("a:1:3", "FROM 'a' is not a number"),
    ("1e-3:1e-1", "must be FROM:TO:COUNT"),
    ("1e-3,,1e-5", "an empty step in the list"),
    ("1e-3,1e-3", "the step 0.001 is given twice"),
    ("1e-3,-1e-5", "step '-1e-5' must be a finite step > 0"),
    ("inf:1:3", "FROM 'inf' must be a finite step > 0"),
])
def test_bad_steps_are_refused_with_the_reason(text, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_steps(text)


# -- the table ---------------------------------------------------------------------------------------


def test_summary_quotes_optima_slopes_and_dominant_parts(squire):
    lines = lines_of(study_summary(squire))
    text = "\n".join(lines)
    assert lines[0].startswith("st › x › float64 › central (order 2): 23 steps 1.0e-12 … 1.0e-01")
    assert "exact derivative   4.0534278938986206577" in text
    measured = next(line for line in lines if line.lstrip().startswith("measured optimum")).split()
    model = next(line for line in lines if line.lstrip().startswith("model optimum")).split()
    assert float(measured[2]) == pytest.approx(squire.observed.optimal_step, rel=0.01)
    assert float(model[2]) == pytest.approx(squire.model.optimal_step, rel=0.01)
    small = next(line for line in lines if line.lstrip().startswith("small steps")).split()
    large = next(line for line in lines if line.lstrip().startswith("large steps")).split()
    assert small[-1] == "round-off" and float(small[-3]) == pytest.approx(-1, abs=0.15) and small[-2] == "-1"
    assert large[-1] == "truncation" and float(large[-3]) == pytest.approx(2, abs=0.15) and large[-2] == "+2"
    assert all(len(line) <= 80 for line in lines)
    assert "not marked" not in text  # h* is inside the sweep


def test_regimes_and_usable_steps_come_from_the_record(squire):
    kinds = {rg.kind: rg for rg in squire.regimes}
    assert set(kinds) == {"roundoff", "truncation"}
    assert kinds["roundoff"].h_max < kinds["truncation"].h_min
    assert kinds["truncation"].dominant == "truncation" and kinds["roundoff"].dominant in ("roundoff", "step")
    assert squire.usable_steps == (1e-12, 0.1)
    assert squire.optimum_note == ""


def test_an_optimum_outside_the_sweep_is_not_marked_and_says_why():
    m = _model(SQUIRE)
    st = run_study(m, dtype=Dtype.FLOAT64, scheme="central", direction=coordinate_direction(m),
                   steps=parse_steps("1e-12:1e-9:4"))
    assert math.isfinite(st.model.optimal_step) and st.model.optimal_step > 1e-9
    assert "is larger than every usable step of the sweep (the largest is 1e-09)" in st.optimum_note
    assert "model optimum not marked" in "\n".join(lines_of(study_summary(st)))
    rec = study_record(st)
    assert rec["model"]["optimal_step_note"] == st.optimum_note
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    handles = plots.draw_study(ax, rec)
    assert "model optimum h*" not in handles and "best measured step" in handles
    assert "h* not marked" in "".join(t.get_text() for t in ax.texts)


def test_no_optimum_when_the_truncation_vanishes():
    m = _model(QUAD)
    st = run_study(m, dtype=Dtype.FLOAT64, scheme="central", direction=coordinate_direction(m),
                   steps=parse_steps("1e-8:1e-1:8"))
    assert st.model.truncation_vanishes
    assert st.optimum_note.startswith("no optimal step: the truncation error vanishes along x")


# -- the figure --------------------------------------------------------------------------------------


def test_figure_is_framed_where_errors_matter(squire):
    from matplotlib.figure import Figure

    rec = study_record(squire)
    ax = Figure().add_subplot()
    handles = plots.draw_study(ax, rec)
    smallest = min(abs(r["error"]) for r in rec["rows"] if r["error"])
    lo, hi = ax.get_ylim()
    assert lo == pytest.approx(smallest / 10 ** plots.STUDY_DECADES_BELOW)
    assert min(abs(r["truncation"]) for r in rec["rows"] if r["truncation"]) < lo  # the 1e-30s stay out of frame
    assert {"|E| total", "|T| truncation", "|R| round-off", "best measured step", "model optimum h*"} <= set(handles)
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1  # outside
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "round-off\ndominates" in texts and "truncation\ndominates" in texts


def test_png_and_html_share_one_drawing(squire, tmp_path):
    from verigrad.report.html import study_html
    from verigrad.report.studyplot import study_figure
    from verigrad.report.studyreport import study_document

    rec = study_record(squire)
    one = plots.study_figure(rec)
    assert one.startswith(b"\x89PNG") and one == plots.study_figure(rec)  # reproducible
    grid = plots.study_grid_figure([rec, rec], title="t")
    assert grid.startswith(b"\x89PNG")
    path = tmp_path / "v.svg"
    study_figure([squire], str(path))
    assert path.read_bytes().startswith(b"<?xml")
    page = study_html(study_document([squire], version="0"), version="0")
    assert "small steps" in page and "large steps" in page and "measured optimum" in page
    with pytest.raises(ValueError, match="use .png, .svg, .pdf"):
        study_figure([squire], str(tmp_path / "v.gif"))


def test_the_document_keeps_its_schema_and_gains_documented_keys(squire):
    from importlib.resources import files

    from verigrad.report.studyreport import study_document

    schema = json.loads(files("verigrad").joinpath("schemas/study.schema.json").read_text("utf-8"))
    doc = json.loads(json.dumps(study_document([squire], version="0")))
    jsonschema.Draft202012Validator(schema).validate(doc)
    st = doc["studies"][0]
    assert set(st) >= {"usable_steps", "regimes"} and "optimal_step_note" in st["model"]
    assert set(st["rows"][0]["model"]) == {"truncation", "step", "roundoff"}
    assert {r["kind"] for r in st["regimes"]} == {"roundoff", "truncation"}


# -- the command ----------------------------------------------------------------------------------


def test_study_cli_takes_a_list_of_steps_and_prints_the_summary(tmp_path, capsys):
    case = tmp_path / "st.toml"
    case.write_text(SQUIRE)
    out = tmp_path / "s.json"
    assert main(["study", str(case), "--scheme", "central", "--dtype", "float64", "--steps", "1e-3,1e-5",
                 "--json", str(out), "--no-color"]) == 0
    printed = capsys.readouterr().out
    assert "measured optimum" in printed and "model optimum" in printed
    assert [r["h"] for r in json.loads(out.read_text())["studies"][0]["rows"]] == [1e-5, 1e-3]


def test_study_cli_refuses_an_unknown_figure_format_before_the_work(tmp_path, capsys):
    case = tmp_path / "st.toml"
    case.write_text(SQUIRE)
    assert main(["study", str(case), "--plot", str(tmp_path / "v.gif")]) == 2
    err = capsys.readouterr().err
    assert "--plot" in err and ".png, .svg, .pdf" in err
