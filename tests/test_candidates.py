"""User code runs in one reused worker process per case, and stays isolated.

The worker is started at the first call of a :func:`worker_scope` (``run_case`` holds
one per case) and reused; a crash, ``os._exit``, a timeout or a thread left running
ends it and the next call gets a fresh one; every batch sees a freshly imported
module and the process state the worker started with; no worker outlives its scope.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import textwrap
from pathlib import Path

import mpmath
import numpy as np
import pytest

from verigrad.runner.candidates import call_isolated, loss_code_evaluator, worker_scope, workers_started
from verigrad.spec import CodeRef

PROBE = '''
import os
import sys
import threading
import time

import mpmath
import numpy as np

CALLS = 0  # module state: counts the calls of one batch


def grad(w, c):
    global CALLS
    CALLS += 1
    print(f"pid={os.getpid()} calls={CALLS}")
    return {"w": np.array(c * w)}


def exit3(w, c):
    os._exit(3)


def forever(w, c):
    while True:
        pass


def loud(w, c):
    sys.stdout.write("x" * 10_000_000)
    return grad(w=w, c=c)


def raises(w, c):
    raise ValueError("planted")


def sysexit(w, c):
    sys.exit(4)


def unpicklable(w, c):
    return {"w": threading.Lock()}


def leaves_a_thread(w, c):
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    return grad(w=w, c=c)


def pollute(w, c):
    np.seterr(all="raise")
    np.set_printoptions(precision=2)
    np.random.seed(123)
    mpmath.mp.prec = 10
    np.dot = None
    os.environ["VERIGRAD_TEST_POLLUTION"] = "1"
    os.chdir("/")
    sys.path.insert(0, "/nonexistent")
    return grad(w=w, c=c)


def observe(w, c):
    print(repr({"err": np.geterr()["over"], "precision": np.get_printoptions()["precision"],
                "prec": mpmath.mp.prec, "dot": np.dot is not None,
                "env": "VERIGRAD_TEST_POLLUTION" in os.environ, "cwd": os.getcwd(),
                "path": "/nonexistent" in sys.path, "calls": CALLS}))
    return grad(w=w, c=c)


def break_restoring(w, c):
    import warnings

    warnings.filters = None  # the worker cannot put its warning filters back after this
    return grad(w=w, c=c)


def mutate_and_sum(w, c):
    total = float(np.sum(w)) + float(np.signbit(w).sum()) * 1e9
    w *= 0  # the caller's arrays (and the next call's) must not see this
    return np.float64(total)


def loss(w, c):
    return np.float64(c * np.sum(w * w) / 2)
'''


@pytest.fixture()
def probe(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(PROBE)

    def ref(function: str) -> CodeRef:
        return CodeRef(path=path, function=function, text=f"probe.py:{function}")

    return ref


def _point():
    return {"w": np.array([1.0, -2.0, 3.0]), "c": np.array(2.0)}


def _pid(res) -> int:
    return int(re.search(r"pid=(\d+)", res.stdout).group(1))


def _child_pids() -> set[int]:
    """Live children of this process, from /proc (zombies count: they were not reaped)."""
    me, out = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                out.add(int(entry.name))
    return out


def _assert_no_workers_left():
    assert mp.active_children() == []
    assert _child_pids() == set()


def _good(res):
    assert res.ok, res.error
    np.testing.assert_array_equal(res.values[0]["w"], 2.0 * _point()["w"])


def test_one_worker_serves_every_call_of_a_scope(probe):
    before = workers_started()
    with worker_scope():
        results = [call_isolated(probe("grad"), [_point()], timeout=30) for _ in range(4)]
        assert len(mp.active_children()) == 1
    for res in results:
        _good(res)
    assert workers_started() - before == 1
    assert len({_pid(r) for r in results}) == 1 and _pid(results[0]) != os.getpid()
    _assert_no_workers_left()


def test_each_batch_sees_a_freshly_imported_module(probe):
    """Module state lives for one batch (one candidate call, one batch of loss calls), never longer."""
    with worker_scope():
        single = [call_isolated(probe("grad"), [_point()], timeout=30) for _ in range(2)]
        batch = call_isolated(probe("grad"), [_point()] * 3, timeout=30)
    assert [re.search(r"calls=(\d+)", r.stdout).group(1) for r in single] == ["1", "1"]
    assert re.findall(r"calls=(\d+)", batch.stdout) == ["1", "2", "3"]


@pytest.mark.parametrize("function, kind, message, same_worker", [
    ("exit3", "crashed", r"probe\.py:exit3 ended the process \(exit code 3\) without returning", False),
    ("forever", "timeout", r"probe\.py:forever did not return within 1 s \(killed\)", False),
    ("raises", "raised", r"probe\.py:raises raised ValueError: planted at probe\.py:\d+ \(raise ValueError", True),
    ("sysexit", "raised", r"probe\.py:sysexit raised SystemExit: 4 at probe\.py:\d+", True),
    # user objects never cross the pipe (their pickling would run code in verigrad): their repr does
    ("unpicklable", "ok", r"^$", True),
    ("leaves_a_thread", "ok", r"^$", False),
    ("loud", "ok", r"^$", True),
    ("break_restoring", "ok", r"^$", False),
    ("no_such_function", "load", r"probe\.py has no function 'no_such_function'", True),
])
def test_a_misbehaving_call_is_reported_and_the_next_call_runs(probe, function, kind, message, same_worker):
    before = workers_started()
    with worker_scope():
        first = call_isolated(probe("grad"), [_point()], timeout=30)
        bad = call_isolated(probe(function), [_point()], timeout=1 if function == "forever" else 30)
        after = call_isolated(probe("grad"), [_point()], timeout=30)
    assert bad.kind == kind, bad.error
    assert re.search(message, bad.error), bad.error
    if function == "loud":  # 10 MB of output crosses the pipe; its start and end are kept, 100,000 characters
        assert len(bad.stdout) < 100_200
        assert bad.stdout.startswith("x" * 50_000) and bad.stdout.endswith("pid=%d calls=1\n" % _pid(bad))
        assert re.search(r"\[\.\.\. 99\d{5} characters left out \.\.\.\]", bad.stdout)
    if function == "unpicklable":
        assert isinstance(bad.values[0]["w"], str) and "lock" in bad.values[0]["w"]
    _good(first)
    _good(after)
    assert (_pid(first) == _pid(after)) is same_worker
    assert workers_started() - before == (1 if same_worker else 2)
    _assert_no_workers_left()


def test_global_state_is_restored_between_batches(probe):
    with worker_scope():
        assert call_isolated(probe("pollute"), [_point()], timeout=30).ok
        seen = call_isolated(probe("observe"), [_point()], timeout=30)
    assert seen.ok, seen.error
    state = eval(seen.stdout.splitlines()[0])  # noqa: S307 - our own probe's repr of a dict
    assert state == {"err": np.geterr()["over"], "precision": 8, "prec": mpmath.mp.prec, "dot": True,
                     "env": False, "cwd": os.getcwd(), "path": False, "calls": 0}
    assert "VERIGRAD_TEST_POLLUTION" not in os.environ


def test_arguments_are_fresh_copies_and_exact(probe):
    """Large arrays cross the pipe once per worker; every call still gets its own bit-exact copy."""
    big = np.linspace(-1.0, 1.0, 50_000)
    other = big.copy()
    other[7] = 5.0
    negzero = np.zeros_like(big)
    negzero[3] = -0.0
    calls = [{"w": big.copy(), "c": np.array(1.0)} for _ in range(3)] + [
        {"w": other, "c": np.array(1.0)}, {"w": big.copy(), "c": np.array(1.0)},
        {"w": np.zeros_like(big), "c": np.array(1.0)}, {"w": negzero, "c": np.array(1.0)}]
    expect = [float(np.sum(c["w"])) + float(np.signbit(c["w"]).sum()) * 1e9 for c in calls]
    with worker_scope():
        for _ in range(2):  # the second batch refers to the arrays the worker kept from the first
            res = call_isolated(probe("mutate_and_sum"), calls, timeout=30)
            assert res.ok, res.error
            assert [float(v) for v in res.values] == expect
    assert np.array_equal(calls[0]["w"], big)


def test_outside_a_scope_each_batch_has_its_own_worker(probe):
    before = workers_started()
    a = call_isolated(probe("grad"), [_point()], timeout=30)
    b = call_isolated(probe("grad"), [_point()], timeout=30)
    _good(a)
    _good(b)
    assert workers_started() - before == 2 and _pid(a) != _pid(b)
    _assert_no_workers_left()


def test_leaving_a_scope_during_a_call_kills_the_worker(probe):
    class Interrupted(Exception):
        pass

    def interrupt(*_):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(Interrupted), worker_scope():
            call_isolated(probe("forever"), [_point()], timeout=60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    _assert_no_workers_left()


def test_run_case_uses_one_worker_for_candidates_and_loss_code(tmp_path):
    from verigrad.runner.case import run_case

    (tmp_path / "impl").mkdir()
    (tmp_path / "impl" / "probe.py").write_text(PROBE)
    (tmp_path / "probe.toml").write_text(textwrap.dedent('''
        name = "probe"
        loss = "c * sum(w * w) / 2"
        loss_code = "impl/probe.py:loss"

        [symbols]
        w = { value = [1.0, -2.0, 3.0] }
        c = { value = 2.0, constant = true }

        [[candidate]]
        name = "first"
        code = "impl/probe.py:grad"

        [[candidate]]
        name = "crash"
        code = "impl/probe.py:exit3"

        [[candidate]]
        name = "second"
        code = "impl/probe.py:grad"

        [check]
        dtypes = ["float32", "float64"]
        schemes = ["central"]
        '''))
    before = workers_started()
    report = run_case(tmp_path / "probe.toml")
    assert report.error == ""
    by = {(r.candidate, r.dtype): r for r in report.results}
    for dt in ("float32", "float64"):
        assert by[("first", dt)].verdict == "pass" and by[("second", dt)].verdict == "pass"
        assert "ended the process (exit code 3)" in by[("crash", dt)].message
    pids = {dt: (_pid(by[("first", dt)]), _pid(by[("second", dt)])) for dt in ("float32", "float64")}
    # one worker until a crash, the next until the next crash: three for the case, never one per call
    assert pids["float32"][0] != pids["float32"][1] == pids["float64"][0] != pids["float64"][1]
    assert workers_started() - before == 3
    assert "loss_code" in {r.extra.get("source") for r in report.results if r.kind == "fd"}
    _assert_no_workers_left()


def test_loss_code_evaluator_uses_the_scope_worker(probe, tmp_path):
    class _Case:  # what loss_code_evaluator reads of a case
        path = tmp_path / "x.toml"
        name = "x"
        loss_code = probe("loss")

        class limits:
            candidate_seconds = 5

    before = workers_started()
    with worker_scope():
        ev = loss_code_evaluator(_Case)
        vals = [ev([_point(), _point()]) for _ in range(3)]
        call_isolated(probe("grad"), [_point()], timeout=30)
    assert workers_started() - before == 1
    for v in vals:
        np.testing.assert_array_equal(v, [14.0, 14.0])
    _assert_no_workers_left()


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("function", ["grad", "forever"])
def test_a_killed_verigrad_process_leaves_no_worker(probe, tmp_path, function):
    """Idle (end of file on its pipe) or busy (the kernel's parent-death signal), the worker goes too."""
    import subprocess
    import sys
    import time

    ref = probe(function)
    script = textwrap.dedent(f'''
        import os, sys, time
        import numpy as np
        from pathlib import Path
        from verigrad.runner import candidates as C
        from verigrad.spec import CodeRef
        ref = CodeRef(path=Path({str(ref.path)!r}), function={function!r}, text="probe")
        with C.worker_scope() as workers:
            point = {{"w": np.array([1.0]), "c": np.array(2.0)}}
            if {function!r} == "grad":
                C.call_isolated(ref, [point], timeout=30)
                print(workers._worker.proc.pid, flush=True)
                time.sleep(60)
            else:
                import threading
                threading.Timer(1.0, lambda: print(workers._worker.proc.pid, flush=True)).start()
                C.call_isolated(ref, [point], timeout=60)
        ''')
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        assert Path(f"/proc/{worker}").exists()
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            break  # gone (reaped by init)
        if state == "Z":
            break  # dead, waiting to be reaped
        time.sleep(0.05)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail(f"worker {worker} outlived its killed parent")
