"""The Ridders study of docs/studies/ridders.md regenerates (quick path), and its claims hold:
Ridders beats central differences against the exact truth, numDeriv's last correction
understates the error, and a tableau across the pole of tan is flagged. The full regeneration
is part of the slow ``tests/test_studies_docs.py::test_full_regeneration``."""

from __future__ import annotations

import json

import pytest

from test_studies_docs import _make_studies


@pytest.fixture(scope="module")
def ridders(tmp_path_factory):
    out = tmp_path_factory.mktemp("ridders")
    return out, _make_studies().run(["ridders"], out=out, quick=True)


def test_ridders_study_page_tables_and_claims(ridders):
    out, results = ridders
    assert results["_failed_claims"] == []
    page = (out / "studies" / "ridders.md").read_text(encoding="utf-8")
    assert "$" not in page.replace("$$", "")
    assert "../figures/ridders.png" in page and (out / "figures" / "ridders.png").stat().st_size < 300_000
    saved = json.loads((out / "studies" / "tables" / "ridders.json").read_text(encoding="utf-8"))
    s = saved["studies"]
    assert s["ridders/float64"]["best_error"] < s["central/float64"]["best_error"] / 100
    assert s["ridders/float64"]["best_rel_error"] < 1e-13
    assert s["numderiv/float64"]["median_ratio"] > 1
    crossing = [p for p in saved["pole"] if p["crosses"]]
    assert crossing and all(p["status"] != "converged" for p in crossing)
