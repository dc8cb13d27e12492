"""The classic-check note at bounded cost: full while 2N loss calls are cheap, a seeded sample
(flagged entries first, random coordinates, random directions) beyond that; off with --no-fd
or ``[check] classic = false``."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from verigrad.runner import case as runner

N = 600  # more than CLASSIC_SAMPLE coordinates

CANDIDATES = '''
import numpy as np

def grad(x, c):
    return {"x": 2 * (x - c)}

def grad_one_wrong(x, c):
    g = 2 * (x - c)
    g[417] *= 1.5
    return {"x": g}
'''


def _write(tmp_path, extra_check: str = "") -> str:
    (tmp_path / "impl").mkdir()
    (tmp_path / "impl" / "q.py").write_text(CANDIDATES)
    path = tmp_path / "q.toml"
    path.write_text(textwrap.dedent(f'''
        name = "quadratic-{N}"
        seed = 3
        loss = "sum((x - c)**2)"
        [symbols]
        x = {{ shape = [{N}], init = "normal" }}
        c = {{ constant = true, shape = [{N}], init = "normal" }}
        [[candidate]]
        name = "right"
        code = "impl/q.py:grad"
        expect = "pass"
        [[candidate]]
        name = "one-wrong"
        code = "impl/q.py:grad_one_wrong"
        expect = "fail"
        [check]
        dtypes = ["float64"]
        {extra_check}
        '''))
    return str(path)


def _classic(report, candidate):
    (r,) = [r for r in report.results if r.candidate == candidate]
    return r.extra.get("classic")


def test_full_when_cheap(tmp_path):
    rep = runner.run_case(_write(tmp_path))
    note = _classic(rep, "right")
    assert note["coverage"] == {"mode": "full", "coordinates": N, "of": N, "flagged": 0, "directions": 0,
                                "seed": None}
    # a quadratic: no truncation error; round-off ~ ulp(f) / h keeps it under the 2e-7 threshold
    assert note["relative_difference"] < 2e-7 and note["outcome"] == "agree"


def test_sample_when_expensive(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "CLASSIC_FULL_SECONDS", 0.0)
    rep = runner.run_case(_write(tmp_path))
    right, wrong = _classic(rep, "right"), _classic(rep, "one-wrong")
    cov = right["coverage"]
    assert cov == {"mode": "sample", "coordinates": runner.CLASSIC_SAMPLE, "of": N, "flagged": 0,
                   "directions": runner.CLASSIC_DIRECTIONS, "seed": 3}
    assert right["outcome"] == "agree"
    # the one wrong entry is always in the sample (grading flagged it), so the sampled classic check sees it
    assert wrong["coverage"]["flagged"] == 1
    assert not wrong["classic_pass"] and wrong["outcome"] == "agree"
    # the same seed gives the same sample: the note is reproducible
    again = _classic(runner.run_case(rep.path), "one-wrong")
    assert again["relative_difference"] == wrong["relative_difference"]


def test_sampled_relative_difference_is_the_classic_formula(tmp_path, monkeypatch):
    """Recompute the sampled note by hand: the flagged entry, the seeded coordinates, the directions."""
    monkeypatch.setattr(runner, "CLASSIC_FULL_SECONDS", 0.0)
    import verigrad
    from verigrad.casefile.loader import point_in_dtype
    from verigrad.grading import relative_difference
    from verigrad.spec import Dtype

    path = _write(tmp_path)
    model = verigrad.compile_case(verigrad.load_case(path))
    point = point_in_dtype(model.point, Dtype.FLOAT64)
    x, c = point["x"], point["c"]
    value = {"x": 2 * (x - c)}
    value["x"][417] *= 1.5

    class G:  # the part of a grade the sample reads
        wrong = ()

    (cand, ref), cov = runner.classic_sample(model, Dtype.FLOAT64, value, G(), seed=11)
    assert cov["coordinates"] == runner.CLASSIC_SAMPLE and cov["flagged"] == 0 and cov["seed"] == 11
    assert cand["x"].size == ref["x"].size == runner.CLASSIC_SAMPLE
    exact = 2 * (x - c)
    # every sampled candidate entry is an entry of the candidate, and the central difference of a
    # quadratic is its gradient up to round-off (|R| ~ a few ulp(f ~ 1e3) / 2h = 1e-6)
    sampled = np.flatnonzero(np.isin(value["x"], cand["x"]))
    assert sampled.size == runner.CLASSIC_SAMPLE
    assert np.allclose(ref["x"], exact[sampled], rtol=0, atol=2e-5)
    assert len(cand["<directions>"]) == len(ref["<directions>"]) == runner.CLASSIC_DIRECTIONS
    # the classic formula over everything sampled: ||a - b|| / (||a|| + ||b||)
    a = np.concatenate([cand["x"], cand["<directions>"]])
    b = np.concatenate([ref["x"], ref["<directions>"]])
    want = np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b))
    assert relative_difference(cand, ref) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("how", ["no-fd", "key"])
def test_classic_can_be_turned_off(tmp_path, how):
    if how == "key":
        rep = runner.run_case(_write(tmp_path, "classic = false"))
    else:
        rep = runner.run_case(_write(tmp_path), with_fd=False)
    assert all("classic" not in (r.extra or {}) for r in rep.results)


def test_classic_key_is_validated(tmp_path):
    from verigrad.errors import CaseError

    with pytest.raises(CaseError, match=r"\[check\] classic.*expected true or false, got string 'no'"):
        import verigrad

        verigrad.load_case(_write(tmp_path, 'classic = "no"'))
