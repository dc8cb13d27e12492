"""Report paths are checked before the run starts (exit 2, a clear message), and a write that
fails late still writes the other formats."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from verigrad.cli import main

CASE = str(Path(__file__).resolve().parent.parent / "cases" / "scalar-warmup.toml")


@pytest.mark.parametrize("make, want", [
    (lambda tmp: str(tmp), "this is a directory, not a file"),
    (lambda tmp: "/proc/verigrad-report.json", "cannot write in /proc"),
    (lambda tmp: (os.mkfifo(tmp / "fifo"), str(tmp / "fifo"))[1], "not a regular file"),
])
def test_bad_report_paths_are_refused_before_the_run(tmp_path, capsys, make, want):
    target = make(tmp_path)
    code = main(["run", CASE, "--json", target, "--no-color", "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--json {target}" in err and want in err
    assert "Traceback" not in err
    # refused before any work: nothing graded, nothing printed on stdout but the error
    assert "expectations met" not in capsys.readouterr().out


def test_two_reports_to_one_file_are_refused(tmp_path, capsys):
    f = tmp_path / "r.out"
    assert main(["run", CASE, "--json", str(f), "--html", str(f), "--no-color", "-q"]) == 2
    assert "the same file as --json" in capsys.readouterr().err


def test_missing_parent_directories_are_created(tmp_path):
    out = tmp_path / "a" / "b" / "r.json"
    assert main(["run", CASE, "--json", str(out), "--no-color", "-q"]) == 0
    assert out.is_file()


def test_a_late_write_failure_still_writes_the_other_formats(tmp_path, capsys, monkeypatch):
    from verigrad.report import jsonio

    real = jsonio.write_atomic

    def flaky(path, text):
        if str(path).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real(path, text)

    monkeypatch.setattr(jsonio, "write_atomic", flaky)
    j, x, h = tmp_path / "r.json", tmp_path / "r.xml", tmp_path / "r.html"
    code = main(["run", CASE, "--json", str(j), "--junit", str(x), "--html", str(h), "--no-color", "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"could not write --json {j}: No space left on device" in err
    assert x.is_file() and h.is_file() and not j.exists()


@pytest.mark.parametrize("argv", [
    ["truth", CASE, "--json", "/proc/verigrad-truth.json"],
    ["study", CASE, "--plot", "/proc/verigrad-study.png"],
])
def test_truth_and_study_check_their_paths_too(argv, capsys):
    assert main(argv + ["--no-color"]) == 2
    assert "cannot write in /proc" in capsys.readouterr().err
