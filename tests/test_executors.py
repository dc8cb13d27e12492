"""Where cases run: a process pool (--jobs) and a Dask cluster (--executor dask) give the local reports.

The JSON of a run is compared byte for byte with a serial run's, after removing its one
key that measures time (``timing``: seconds per run, case and result).  The Dask tests start
a real ``LocalCluster`` (skipped only when ``distributed`` cannot be found).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from verigrad.cli.main import main
from verigrad.report import jsonio
from verigrad.report.runjson import run_document
from verigrad.runner.case import case_reports, unique_name
from verigrad.runner.case import submission_order
from verigrad.runner.records import RunReport

CASES = Path(__file__).resolve().parent.parent / "cases"
#: a kink case, one with loss_code and finite differences, one with a truth from mpmath
FILES = [CASES / "scalar-warmup.toml", CASES / "kinks-relu-l1.toml", CASES / "cancellation-one-minus-cos.toml"]
HAS_DASK = importlib.util.find_spec("distributed") is not None
needs_dask = pytest.mark.skipif(not HAS_DASK, reason="dask.distributed is not installed (pip install 'verigrad[dask]')")


def _json_without_timing(reports) -> str:
    doc = run_document(RunReport(tuple(reports), 0.0), version="test")
    assert set(doc["timing"]) == {"total_seconds", "cases", "results"}  # the only measured figures
    doc.pop("timing")
    return jsonio.dumps(doc)


def _collect(executor, files) -> list:
    names: dict[str, str] = {}
    with executor as next_report:
        return [unique_name(next_report(f, lambda _msg: None), f, names) for f in files]


@pytest.fixture(scope="module")
def serial_json():
    return _json_without_timing(_collect(case_reports(FILES, None, True, 1), FILES))


def test_jobs_2_gives_the_serial_json(serial_json):
    assert _json_without_timing(_collect(case_reports(FILES, None, True, 2), FILES)) == serial_json


@needs_dask
def test_dask_local_cluster_gives_the_serial_json(serial_json):
    from verigrad.runner.executors import dask_case_reports

    reports = _collect(dask_case_reports(FILES, None, True, workers=2), FILES)
    assert [r.path for r in reports] == [str(f) for f in FILES]  # file order, whatever finished first
    assert _json_without_timing(reports) == serial_json


@needs_dask
def test_dask_on_a_running_scheduler_through_the_cli(tmp_path, serial_json):
    from distributed import LocalCluster

    out = tmp_path / "run.json"
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        code = main(["run", *map(str, FILES), "-q", "--executor", "dask", "--scheduler", cluster.scheduler_address,
                     "--json", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    doc.pop("timing")
    assert jsonio.dumps(doc).replace('"verigrad": "' + doc["verigrad"], '"verigrad": "test') == serial_json


def test_scheduler_without_dask_executor_is_a_usage_error(capsys):
    assert main(["run", str(FILES[0]), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "--executor dask" in capsys.readouterr().err


@needs_dask
def test_unreachable_scheduler_is_a_clear_error(capsys, monkeypatch):
    import verigrad.runner.executors as ex

    monkeypatch.setattr(ex, "CONNECT_SECONDS", 1)
    assert main(["run", str(FILES[0]), "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "could not reach a Dask scheduler" in err and "docs/distributed.md" in err


def test_submission_order_is_longest_first(tmp_path):
    sizes = {"a": 10, "b": 300, "c": 20, "d": 300}
    files = []
    for name, n in sizes.items():
        (tmp_path / f"{name}.toml").write_text("#" * n)
        files.append(tmp_path / f"{name}.toml")
    assert [f.stem for f in submission_order(files)] == ["b", "d", "c", "a"]
