"""SIGTERM (what CI timeouts send) and Ctrl-C, with real processes: the run stops at once, every
child is killed, and the finished work is reported as incomplete and not ok."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SLOW = '''
import os, time

def fast(x):
    return {"x": 2 * x}

def slow(x):
    with open(os.environ["VERIGRAD_TEST_PIDFILE"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)
    return {"x": 2 * x}
'''


def _corpus(tmp_path: Path) -> Path:
    d = tmp_path / "cases"
    (d / "impl").mkdir(parents=True)
    (d / "impl" / "m.py").write_text(SLOW)
    for name, fn in (("a-fast", "fast"), ("b-slow", "slow")):
        (d / f"{name}.toml").write_text(textwrap.dedent(f'''
            name = "{name}"
            loss = "sum(x**2)"
            [symbols]
            x = {{ shape = [3], init = "normal" }}
            [[candidate]]
            name = "{fn}"
            code = "impl/m.py:{fn}"
            expect = "pass"
            [check]
            dtypes = ["float64"]
            [limits]
            candidate_seconds = 120
            '''))
    return d


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[1][0] != "Z"


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_signal_stops_the_run_kills_children_and_reports(tmp_path, sig, code, jobs):
    cases = _corpus(tmp_path)
    pidfile = tmp_path / "pid"
    out = tmp_path / "r.json"
    junit = tmp_path / "j.xml"
    env = {**os.environ, "VERIGRAD_TEST_PIDFILE": str(pidfile)}
    proc = subprocess.Popen([sys.executable, "-m", "verigrad", "run", str(cases), "--json", str(out), "--junit",
                             str(junit), "--no-color", "-q", "--jobs", str(jobs)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "the slow candidate never started"
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    child = int(pidfile.read_text())
    t0 = time.monotonic()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=90)
    assert time.monotonic() - t0 < 40, "the run waited for the running case (it sleeps 60 s)"
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    doc = json.loads(out.read_text())
    assert doc["complete"] is False and doc["summary"]["ok"] is False and doc["summary"]["interrupted"] is True
    assert "verigrad.Interrupted" in junit.read_text()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the candidate's process outlived the run"
