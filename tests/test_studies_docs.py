"""The error-analysis studies of docs/studies/ regenerate, and their key numbers hold.

The fast tests run the ``--quick`` path of two studies (``v-curve`` and
``quadratic-loss``) into a temporary directory and check the numbers the pages
rely on; the full regeneration of all six studies is marked ``slow`` (opt-in:
``pytest --runslow`` or ``VERIGRAD_RUNSLOW=1``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "studies" / "make_studies.py"


def _make_studies():
    """Import docs/studies/make_studies.py (not a package) once."""
    name = "verigrad_docs_make_studies"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("studies")
    results = _make_studies().run(["v-curve", "quadratic-loss"], out=out, quick=True)
    return out, results


def test_quick_run_writes_pages_tables_and_figures(quick):
    out, results = quick
    for page in ("v-curve.md", "quadratic-loss.md", "index.md"):
        text = (out / "studies" / page).read_text(encoding="utf-8")
        assert "$" not in text.replace("$$", ""), f"unfilled template field in {page}"
    for fig in ("v-curve-overlay.png", "v-curve-split.png", "quadratic-loss.png"):
        path = out / "figures" / fig
        assert path.stat().st_size < 300_000, f"{fig} is {path.stat().st_size} bytes"
        assert f"../figures/{fig}" in "".join((out / "studies" / p).read_text(encoding="utf-8")
                                              for p in ("v-curve.md", "quadratic-loss.md"))
    for table in ("v-curve-summary.md", "v-curve-model.md", "quadratic-loss.md", "quadratic-loss-grade.md"):
        text = (out / "studies" / "tables" / table).read_text(encoding="utf-8")
        assert text.startswith("| ") and text in (out / "studies" / (
            "v-curve.md" if table.startswith("v-curve") else "quadratic-loss.md")).read_text(encoding="utf-8")
    saved = json.loads((out / "studies" / "tables" / "v-curve.json").read_text(encoding="utf-8"))
    assert saved["studies"]["central/float64"]["model_h"] == pytest.approx(
        results["v-curve"]["studies"]["central/float64"]["model_h"])
    assert results["_failed_claims"] == []


def test_v_curve_matches_its_model(quick):
    _, results = quick
    v = results["v-curve"]
    assert v["truth"].startswith("4.0534278938986206577")  # f'(1.5), certified
    c64 = v["studies"]["central/float64"]
    ratio = c64["observed_h"] / c64["model_h"]
    assert 0.1 <= ratio <= 10, f"central float64: observed best h {c64['observed_h']:.2e} vs h* {c64['model_h']:.2e}"
    assert v["studies"]["forward/float64"]["slope_truncation"] == pytest.approx(1, abs=0.15)
    assert v["studies"]["central/float64"]["slope_truncation"] == pytest.approx(2, abs=0.15)
    assert v["studies"]["central4/float64"]["slope_truncation"] == pytest.approx(4, abs=0.3)
    for scheme in ("forward", "central", "central4"):
        assert v["studies"][f"{scheme}/float64"]["slope_roundoff"] == pytest.approx(-1, abs=0.15)
    # the complex step reaches full precision: under 4 ulps of |f'(1.5)|
    assert v["studies"]["complex-step/float64"]["observed_min_error"] < 4 * v["ulp64"]
    assert v["studies"]["complex-step/float32"]["observed_min_error"] < 4 * v["ulp32"]
    # E = T + S + R, exactly up to the final rounding of the reported floats
    assert v["split_residual"] < 1e-12


def test_quadratic_loss_has_no_truncation(quick):
    _, results = quick
    q = results["quadratic-loss"]["studies"]
    for key, s in q.items():
        if s["scheme"] in ("central", "central4"):
            assert s["truncation_vanishes"] is True, key
            assert s["model_truncation_coefficient"] == 0.0, key
            assert "vanishes" in s["note"], key
            # the rows' T is the residue of the working precision (hundreds of bits): zero for any float
            assert s["max_abs_T"] < 1e-30 * abs(s["truth"]), key
            assert s["error_at_1"] < s["error_at_textbook"], key
        else:
            assert s["truncation_vanishes"] is False, key
            # forward differences of a quadratic: T = h * H_ii / 2 exactly
            assert s["T_over_h_max"] == pytest.approx(s["T_over_h_min"], rel=1e-12), key
            assert s["T_over_h_min"] == pytest.approx(s["model_truncation_coefficient"], rel=1e-12), key
    graded = results["quadratic-loss"]["graded"]
    assert graded["float64/1"]["verdict"] == "pass" and graded["float32/1"]["verdict"] == "pass"


def test_only_and_unknown_names_are_validated():
    module = _make_studies()
    with pytest.raises(SystemExit):
        module.main(["--only", "no-such-study"])


@pytest.mark.slow
def test_full_regeneration(tmp_path, request):
    if not (request.config.getoption("--runslow", default=False) or os.environ.get("VERIGRAD_RUNSLOW")):
        pytest.skip("slow: full regeneration of the six studies (use --runslow or VERIGRAD_RUNSLOW=1)")
    module = _make_studies()
    results = module.run(None, out=tmp_path)
    assert results["_failed_claims"] == []
    pages = sorted(p.name for p in (tmp_path / "studies").glob("*.md"))
    assert pages == sorted([f"{n}.md" for n in module.STUDY_NAMES] + ["index.md"])
    committed = sorted(p.name for p in (ROOT / "docs" / "figures").glob("*.png"))
    generated = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert set(generated) <= set(committed), "figures not committed: run python docs/studies/make_studies.py"
    for fig in (tmp_path / "figures").glob("*.png"):
        assert fig.stat().st_size < 300_000, fig.name
    # the headline numbers of the pages
    why = results["why-eps-1e-7"]["dtypes"]
    assert why["float64"]["at_1e-7"]["rd"] == pytest.approx(1.189e-7, rel=1e-3)
    assert why["float64"]["at_1e-7"]["R"] > 100 * why["float64"]["at_1e-7"]["T"]
    assert why["float32"]["best"]["rd"] > 1e-7
    rep = results["representable-steps"]["results"]
    assert all(r["max_abs_S"] == 0 for r in rep if r["representable"])
    fa = results["float32-false-alarms"]["counts"]
    assert sum(v["FALSE ALARM"] for v in fa["float32"].values()) > sum(v["FALSE ALARM"] for v in fa["float64"].values())
