"""Tests for ``verigrad new`` (verigrad.casefile.scaffold)."""

from __future__ import annotations

import json

import pytest

from verigrad.casefile.loader import load_case
from verigrad.cli.main import main
from verigrad.errors import UsageError
from verigrad.casefile.scaffold import case_text, module_name, module_text, scaffold


def test_scaffold_writes_a_valid_case_that_passes_out_of_the_box(tmp_path):
    out = scaffold("my-loss", tmp_path)
    assert out.case_file == tmp_path / "my-loss.toml"
    assert out.module == tmp_path / "impl" / "my_loss.py"
    case = load_case(out.case_file)
    assert case.name == "my-loss"
    assert [v.name for v in case.variables] == ["w"]
    assert [(c.name, c.expect.value) for c in case.candidates] == [("hand-written", "pass"),
                                                                   ("descent-direction", "fail")]
    report = tmp_path / "r.json"
    assert main(["run", str(out.case_file), "--json", str(report), "-q", "--no-color"]) == 0
    doc = json.loads(report.read_text("utf-8"))
    assert doc["summary"]["ok"] is True and doc["summary"]["expectations_met"] == 4
    caught = [r for r in doc["results"] if r["candidate"] == "descent-direction"]
    assert {r["diagnosis"][0]["shape"] for r in caught} == {"sign_flip"}


def test_scaffold_is_commented_where_the_user_changes_it():
    text = case_text("demo")
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert len(comments) >= 15
    for needle in ("# Run it:   verigrad run demo.toml", "[define]", "expect = \"fail\"", "schemes ="):
        assert needle in text
    module = module_text("demo")
    compile(module, "demo.py", "exec")
    assert "def gradient(A, b, lam, w):" in module and "Replace the body" in module


def test_cli_new_refuses_to_overwrite_without_force(tmp_path, capsys):
    assert main(["new", "thing", "--dir", str(tmp_path), "--no-color"]) == 0
    printed = capsys.readouterr().out
    assert "thing.toml" in printed and "verigrad run" in printed
    module = tmp_path / "impl" / "thing.py"
    module.write_text("# my own work\n", encoding="utf-8")
    assert main(["new", "thing", "--dir", str(tmp_path), "--no-color"]) == 2
    err = capsys.readouterr().err
    assert "already exist" in err and "--force" in err
    assert module.read_text(encoding="utf-8") == "# my own work\n"  # nothing was touched
    assert main(["new", "thing", "--dir", str(tmp_path), "--force", "--no-color"]) == 0
    assert "def gradient" in module.read_text(encoding="utf-8")


def test_scaffold_refuses_when_only_one_file_exists(tmp_path):
    (tmp_path / "solo.toml").write_text("name = 'mine'\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"solo\.toml already exists; not overwriting \(use --force"):
        scaffold("solo", tmp_path)
    assert not (tmp_path / "impl").exists()


@pytest.mark.parametrize("name", ["bad name", "-dash-first", "", "a/b", "x" * 101, "dotted.name"])
def test_invalid_names_are_refused(tmp_path, name):
    with pytest.raises(UsageError, match="invalid case name"):
        scaffold(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("", encoding="utf-8")
    with pytest.raises(UsageError, match="is a file, not a directory"):
        scaffold("ok", f)


@pytest.mark.parametrize("name, stem", [("my-loss", "my_loss"), ("plain", "plain"), ("3d-thing", "case_3d_thing"),
                                        ("Under_score", "Under_score")])
def test_module_names(name, stem):
    assert module_name(name) == stem


def test_scaffold_in_a_new_nested_directory(tmp_path):
    out = scaffold("nested", tmp_path / "a" / "b")
    assert out.case_file.is_file() and out.module.is_file()
    assert load_case(out.case_file).candidates[0].code.path.resolve() == out.module.resolve()
